//! A flow pack replaced while a run is in progress. The agent's runner takes a snapshot of its
//! `PackStore` when a run starts and hands the chosen pack to the executor by reference; these
//! tests drive exactly that path and reload the store from disk in the middle of a step.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use phonefarm_flows::flows::{
    FlowCtx, FlowFailure, FlowOptions, KeywordWarmupInputs, MilestoneSink, RecordingSink,
    WatchSeconds, keyword_warmup, select_pack,
};
use phonefarm_flows::{PackSet, PackStore};
use phonefarm_phonemodel::{Action, PhoneConfig};
use tokio_util::sync::CancellationToken;

use crate::model::{ModelDevice, VARIANTS, ui};
use crate::packs::{APP, packs_dir};

/// A copy of the shipped packs with `revision = 2` and a `like_button` selector that matches
/// nothing, so a run on the new packs cannot like a video.
fn broken_copy(dir: &Path) {
    for entry in std::fs::read_dir(packs_dir()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\nrevision = 1\n"), "{}", path.display());
        let text = text.replace("\nrevision = 1\n", "\nrevision = 2\n");
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("like_button = ") {
                    "like_button = [{ resource_id = \"com.example:id/no_such_button\" }]"
                        .to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join(entry.file_name()), text).unwrap();
    }
}

/// Records milestones and, when `reload_at` steps have started, reloads the store from `dir`:
/// the swap happens inside a step, between two of the executor's UI actions.
struct ReloadingSink {
    inner: RecordingSink,
    store: Arc<PackStore>,
    dir: PathBuf,
    reload_at: usize,
    started: AtomicUsize,
    reloaded: Mutex<Option<Result<(), String>>>,
}

impl MilestoneSink for ReloadingSink {
    fn step_started(&self, step: &str) {
        if self.started.fetch_add(1, Ordering::SeqCst) + 1 == self.reload_at {
            let r = self.store.reload(&self.dir).map_err(|e| e.to_string());
            *self.reloaded.lock().unwrap() = Some(r);
        }
        self.inner.step_started(step);
    }
    fn step_finished(&self, step: &str, ok: bool) {
        self.inner.step_finished(step, ok);
    }
    fn progress(&self, progress: &serde_json::Value) {
        self.inner.progress(progress);
    }
}

fn inputs() -> KeywordWarmupInputs {
    KeywordWarmupInputs {
        keywords: vec!["cooking".into(), "home workout".into()],
        videos_per_keyword: 2,
        watch_seconds: WatchSeconds { min: 2, max: 3 },
        like_probability: 1.0,
        comment_plan: None,
    }
}

/// One run as the runner does it: snapshot the store, pick the pack, run on that pack.
async fn run_once<S: MilestoneSink>(
    device: &ModelDevice,
    store: &PackStore,
    sink: &S,
) -> (u32, Result<serde_json::Value, FlowFailure>) {
    let ui = ui(device);
    let set = store.snapshot();
    let pack = select_pack(&ui, &set, APP).await.unwrap();
    let cancel = CancellationToken::new();
    let ctx = FlowCtx {
        ui: &ui,
        pack: &pack,
        sink,
        cancel: &cancel,
        options: FlowOptions {
            seed: 11,
            ..FlowOptions::default()
        },
    };
    let result = keyword_warmup(&ctx, &inputs()).await;
    (pack.revision(), result.map_err(|e| e.failure))
}

fn likes(device: &ModelDevice) -> usize {
    device
        .phone()
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::Liked { .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_pack_reloaded_mid_run_applies_to_the_next_run_not_the_running_one() {
    for variant in VARIANTS {
        let new_dir = tempfile::tempdir().unwrap();
        broken_copy(new_dir.path());
        let store = Arc::new(PackStore::new(PackSet::load_path(&packs_dir()).unwrap()));
        let device = ModelDevice::new(PhoneConfig {
            variant,
            ..PhoneConfig::default()
        });

        // Reload while the third step ("watch:cooking:1") is under way: every like of this run,
        // including the first, happens after the store already holds the broken packs.
        let sink = ReloadingSink {
            inner: RecordingSink::default(),
            store: Arc::clone(&store),
            dir: new_dir.path().to_path_buf(),
            reload_at: 3,
            started: AtomicUsize::new(0),
            reloaded: Mutex::new(None),
        };
        let (revision, result) = run_once(&device, &store, &sink).await;
        assert_eq!(
            sink.reloaded.lock().unwrap().clone(),
            Some(Ok(())),
            "the reload happened mid-run ({variant:?})"
        );
        assert_eq!(revision, 1, "{variant:?}");
        let result =
            result.unwrap_or_else(|e| panic!("{variant:?}: the running flow failed: {e:?}"));
        assert_eq!(
            result["keywords"]["home workout"]["liked"], 2,
            "{variant:?}: {result}"
        );
        assert_eq!(
            likes(&device),
            4,
            "{variant:?}: every video liked on the old pack"
        );
        assert_eq!(
            store
                .snapshot()
                .packs()
                .iter()
                .map(|p| p.revision())
                .collect::<Vec<_>>(),
            [2, 2],
            "the store holds the new packs"
        );

        // The next run takes the new packs: it cannot find the like button.
        let next = RecordingSink::default();
        let (revision, result) = run_once(&device, &store, &next).await;
        assert_eq!(revision, 2, "{variant:?}");
        let failure = result.expect_err("the broken pack cannot like");
        assert!(
            failure.code().starts_with("flow_error:"),
            "{variant:?}: {failure:?}"
        );
        assert_eq!(likes(&device), 4, "{variant:?}: no like on the new pack");
    }
}

#[tokio::test(start_paused = true)]
async fn a_pack_that_fails_validation_leaves_the_running_set_in_place() {
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("bad.toml"),
        "[pack]\nname = \"bad\"\npackage = \"com.zhiliaoapp.musically\"\nversions = \"not a range\"\nrevision = 1\n",
    )
    .unwrap();
    let store = PackStore::new(PackSet::load_path(&packs_dir()).unwrap());
    let err = store.reload(bad.path()).expect_err("a bad pack is refused");
    assert!(err.to_string().contains("bad"), "{err}");
    let device = ModelDevice::new(PhoneConfig::default());
    let (revision, result) = run_once(&device, &store, &RecordingSink::default()).await;
    assert_eq!(revision, 1);
    assert!(result.is_ok(), "{result:?}");
}
