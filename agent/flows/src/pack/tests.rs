//! Pack loading, validation, identification, selection, reload and the pop-up reader.

use super::*;
use crate::dump::parse_dump;
use std::time::Duration;

const GOOD: &str = r#"
[pack]
name = "t-1"
package = "com.example.app"
versions = ">=1.0.0, <2.0.0"

[selectors]
title = [{ resource_id = "com.example.app:id/title" }, { text = "Home" }]
list = [{ class = "L" }]
popup = [{ text = "Update available" }]
not_now = [{ text = "Not now", clickable = true }]

[[screens]]
name = "home"
all = ["title"]
none = ["list"]

[[screens]]
name = "list"
all = ["list"]

[[watchers]]
name = "update"
match = "popup"
dismiss = "not_now"
"#;

fn problems(text: &str) -> Vec<PackProblem> {
    match FlowPack::from_toml_str("t.toml", text) {
        Err(PackError::Invalid { problems, .. }) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn identifies_watchers_first_then_screens_in_order() {
    let pack = FlowPack::from_toml_str("t.toml", GOOD).unwrap();
    let home =
        parse_dump(r#"<hierarchy><node text="Home" bounds="[0,0][1,1]"/></hierarchy>"#).unwrap();
    assert_eq!(pack.identify(&home).label(), "home");
    let both = parse_dump(
        r#"<hierarchy><node text="Home" bounds="[0,0][1,1]"/><node class="L" bounds="[0,0][1,1]"/></hierarchy>"#,
    )
    .unwrap();
    assert_eq!(pack.identify(&both).label(), "list", "`none` excludes home");
    let popup = parse_dump(
        r#"<hierarchy><node text="Home" bounds="[0,0][1,1]"/><node text="Update available" bounds="[0,0][1,1]"/></hierarchy>"#,
    )
    .unwrap();
    assert_eq!(pack.identify(&popup).label(), "popup:update");
    let other =
        parse_dump(r#"<hierarchy><node text="x" bounds="[0,0][1,1]"/></hierarchy>"#).unwrap();
    assert_eq!(pack.identify(&other), Identified::Unknown);
    assert!(pack.is_screen(&home, "home") && !pack.is_screen(&home, "list"));
}

#[test]
fn every_problem_is_reported() {
    let bad = GOOD
        .replace("package = \"com.example.app\"", "package = \"com..app\"")
        .replace(">=1.0.0, <2.0.0", ">=2, <1")
        .replace("list = [{ class = \"L\" }]", "list = []")
        .replace("dismiss = \"not_now\"", "dismiss = \"not-now\"")
        .replace("name = \"list\"\n", "name = \"home\"\n");
    let found = problems(&bad);
    assert!(
        found.contains(&PackProblem::BadPackage("com..app".into())),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| matches!(p, PackProblem::BadVersionRange(_))),
        "{found:?}"
    );
    assert!(found.contains(&PackProblem::BadSelector {
        name: "list".into(),
        reason: "empty fallback list".into()
    }));
    assert!(found.contains(&PackProblem::UnknownSelector {
        context: "watcher \"update\"".into(),
        selector: "not-now".into()
    }));
    assert!(found.contains(&PackProblem::DuplicateScreen("home".into())));
    assert_eq!(found.len(), 5, "{found:?}");
    let msg = FlowPack::from_toml_str("t.toml", &bad)
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("t.toml: "), "{msg}");
}

#[test]
fn unknown_keys_and_bad_selectors_are_rejected() {
    let err = FlowPack::from_toml_str("t.toml", &GOOD.replace("[[watchers]]", "[[watcher]]"))
        .unwrap_err();
    assert!(matches!(err, PackError::Toml { .. }), "{err}");
    assert!(err.to_string().contains("watcher"), "{err}");
    let err = FlowPack::from_toml_str(
        "t.toml",
        &GOOD.replace("{ text = \"Home\" }", "{ txt = \"Home\" }"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("txt"), "{err}");
    let found = problems(&GOOD.replace("all = [\"title\"]", "all = []"));
    assert_eq!(found, vec![PackProblem::EmptySignature("home".into())]);
    let found = problems(&GOOD.replace("all = [\"title\"]", "all = [\"titel\"]"));
    assert_eq!(
        found,
        vec![PackProblem::UnknownSelector {
            context: "screen \"home\"".into(),
            selector: "titel".into()
        }]
    );
}

#[test]
fn pack_set_selection_overlap_and_reload() {
    let v1 = FlowPack::from_toml_str("a", GOOD).unwrap();
    let v2 = FlowPack::from_toml_str(
        "b",
        &GOOD
            .replace("t-1", "t-2")
            .replace(">=1.0.0, <2.0.0", ">=2.0.0"),
    )
    .unwrap();
    let set = PackSet::new(vec![v1.clone(), v2.clone()]).unwrap();
    let pick = |v: &str| {
        set.select("com.example.app", &v.parse().unwrap())
            .map(|p| p.name().to_string())
    };
    assert_eq!(pick("1.5").unwrap(), "t-1");
    assert_eq!(pick("2.0.0").unwrap(), "t-2");
    assert!(matches!(pick("0.9"), Err(PackError::NoPack { .. })));
    assert!(set.select("com.other", &"1.5".parse().unwrap()).is_err());

    let overlapping = FlowPack::from_toml_str(
        "c",
        &GOOD
            .replace("t-1", "t-3")
            .replace(">=1.0.0, <2.0.0", ">=1.9"),
    )
    .unwrap();
    assert!(matches!(
        PackSet::new(vec![v1.clone(), overlapping]),
        Err(PackError::Overlap { .. })
    ));
    assert!(matches!(
        PackSet::new(vec![v1.clone(), v1.clone()]),
        Err(PackError::DuplicateName(_))
    ));

    let dir = std::env::temp_dir().join(format!("pf-packs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("one.toml"), GOOD).unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let store = PackStore::new(PackSet::default());
    store.reload(&dir).unwrap();
    let before = store.snapshot();
    assert_eq!(before.packs().len(), 1);
    // A broken file leaves the current set in place.
    std::fs::write(dir.join("two.toml"), "[pack]\nname = 1").unwrap();
    assert!(store.reload(&dir).is_err());
    assert_eq!(store.snapshot().packs().len(), 1);
    // A fixed one replaces it for the next reader; the old snapshot is untouched.
    std::fs::write(
        dir.join("two.toml"),
        GOOD.replace("t-1", "t-2")
            .replace(">=1.0.0, <2.0.0", ">=2.0.0"),
    )
    .unwrap();
    store.reload(&dir).unwrap();
    assert_eq!(store.snapshot().packs().len(), 2);
    assert_eq!(before.packs().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn read_screen_dismisses_pop_ups_and_gives_up_on_a_stuck_one() {
    use crate::ui::tests::FakeDevice;
    use crate::ui::{Ui, UiConfig};
    let pack = FlowPack::from_toml_str("t.toml", GOOD).unwrap();
    let popup = r#"<hierarchy><node text="Home" bounds="[0,0][10,10]"/><node text="Update available" bounds="[0,0][10,10]"/><node text="Not now" clickable="true" bounds="[20,40][60,80]"/></hierarchy>"#;
    let home = r#"<hierarchy><node text="Home" bounds="[0,0][10,10]"/></hierarchy>"#;
    let dev = FakeDevice::default();
    dev.push_dump(popup);
    dev.push_dump(home);
    let ui = Ui::new(&dev, UiConfig::default());
    let (_, label) = read_screen(&ui, &pack, Duration::from_secs(5), 3)
        .await
        .unwrap();
    assert_eq!(label, "home");
    assert!(
        dev.log().contains(&"input tap 40 60".to_string()),
        "{:?}",
        dev.log()
    );

    let dev = FakeDevice::default();
    dev.push_dump(popup);
    let ui = Ui::new(&dev, UiConfig::default());
    let err = read_screen(&ui, &pack, Duration::from_secs(5), 3)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UiError::PopupStuck(ref w) if w == "update"),
        "{err}"
    );
    assert_eq!(
        dev.log()
            .iter()
            .filter(|c| c.starts_with("input tap"))
            .count(),
        3
    );
}

#[test]
fn require_names_what_is_missing() {
    let pack = FlowPack::from_toml_str("t.toml", GOOD).unwrap();
    assert!(pack.require(&["title"], &["home"]).is_ok());
    let err = pack.require(&["title", "like"], &["feed"]).unwrap_err();
    assert!(
        matches!(&err, PackError::Invalid { problems, .. } if problems == &vec![
            PackProblem::MissingSelector("like".into()),
            PackProblem::MissingScreen("feed".into()),
        ])
    );
}
