//! `phonefarm-agent run` and `devices` as a process, against simulated phones over TCP.

use std::path::PathBuf;
use std::process::Output;

use phonefarm_phonesim::model::Action;
use phonefarm_phonesim::{SimConfig, spawn};

fn packs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../flowpacks")
}

async fn agent(state: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-agent"))
        .arg("--state-dir")
        .arg(state)
        .args(["--usb-discovery", "off", "--timeout", "20"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("agent runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keyword_warmup_completes_and_the_phone_saw_it() {
    let sim = spawn(SimConfig::with_serial("SIMRUN")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = sim.address();
    let inputs = r#"{"keywords": ["cooking"], "videos_per_keyword": 2,
        "watch_seconds": {"min": 1, "max": 1}, "like_probability": 1.0}"#;
    let out = agent(
        dir.path(),
        &[
            "--tcp",
            &addr,
            "run",
            "SIMRUN",
            "keyword_warmup",
            "--inputs",
            inputs,
            "--packs",
            packs().to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"keywords": {
            "cooking": {"videos_watched": 2, "liked": 2, "commented": false}
        }})
    );
    let actions = sim.phone.lock().unwrap().actions().to_vec();
    let searched: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Searched { query } => Some(query.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(searched, ["cooking"]);
    let liked = actions
        .iter()
        .filter(|a| matches!(a, Action::Liked { .. }))
        .count();
    assert_eq!(liked, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_failures_exit_non_zero_with_one_line() {
    let sim = spawn(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = sim.address();
    let p = packs();
    let cases: [(&[&str], &str); 7] = [
        (
            &["run", &addr, "dance", "--packs", p.to_str().unwrap()],
            "invalid_input:capability",
        ),
        (
            &[
                "run",
                &addr,
                "keyword_warmup",
                "--inputs",
                "{\"keywords\": 3}",
                "--packs",
                p.to_str().unwrap(),
            ],
            "invalid_input:inputs",
        ),
        (
            &[
                "run",
                &addr,
                "keyword_warmup",
                "--inputs",
                "{\"keywords\": [\"cats\"]}",
                "--app",
                "com.example.none",
                "--packs",
                p.to_str().unwrap(),
            ],
            "flow_pack:",
        ),
        (
            &[
                "run",
                "1-9.9",
                "keyword_warmup",
                "--packs",
                p.to_str().unwrap(),
            ],
            "no phone",
        ),
        (
            &[
                "run",
                &addr,
                "keyword_warmup",
                "--inputs",
                "{\"keywords\": [\"receta fácil\"]}",
                "--packs",
                p.to_str().unwrap(),
            ],
            "invalid_input:keyword_not_typeable",
        ),
        (
            &[
                "run",
                &addr,
                "keyword_warmup",
                "--inputs",
                "@/no/such/inputs.json",
                "--packs",
                p.to_str().unwrap(),
            ],
            "cannot read --inputs /no/such/inputs.json",
        ),
        (
            &["run", &addr, "keyword_warmup", "--packs", "/no/such/packs"],
            "flow packs from /no/such/packs: reading /no/such/packs: ",
        ),
    ];
    for (args, want) in cases {
        let out = agent(dir.path(), args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(
            stderr.matches("(os error").count() <= 1,
            "said once: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_lists_tcp_phones_with_ids_and_polls_usb_without_crashing() {
    let sim = spawn(SimConfig::with_serial("SIMDEV")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = sim.address();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-agent"))
        .arg("--state-dir")
        .arg(dir.path())
        .args([
            "--usb-discovery",
            "poll",
            "--timeout",
            "5",
            "--tcp",
            &addr,
            "devices",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<_> = stdout.lines().collect();
    assert!(lines[0].starts_with("TRANSPORT"), "{stdout}");
    assert!(lines[0].contains("PHONE_ID"), "{stdout}");
    let row: Vec<_> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["tcp", addr.as_str(), "SIMDEV", "SIMDEV", "online"]
    );
}

/// The technician's run: inputs from a `.json` file or `@file`, dwells divided by `--speed`,
/// milestones on stderr one line each, the result on stdout; a `post_video` from a local file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_inputs_from_files_prints_milestones_and_posts_a_local_video() {
    let sim = spawn(SimConfig::with_serial("SIMCLI")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = sim.address();
    let p = packs();
    let inputs = dir.path().join("warmup.json");
    // 100 s watches at --speed 100 take a second each: without it the 60 s deadline would
    // end the run.
    std::fs::write(
        &inputs,
        r#"{"keywords": ["pets"], "videos_per_keyword": 2,
            "watch_seconds": {"min": 100, "max": 100}}"#,
    )
    .unwrap();
    for arg in [
        inputs.to_str().unwrap().to_string(),
        format!("@{}", inputs.display()),
    ] {
        let out = agent(
            dir.path(),
            &[
                "run",
                &addr,
                "keyword_warmup",
                "--inputs",
                &arg,
                "--speed",
                "100",
                "--deadline-secs",
                "60",
                "--packs",
                p.to_str().unwrap(),
            ],
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["keywords"]["pets"]["videos_watched"], 2, "{arg}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains(" INFO ") && !l.contains(" WARN "))
            .collect();
        for want in [
            "step search:pets",
            "step search:pets ok",
            "step watch:pets:1",
            "step watch:pets:2 ok",
        ] {
            assert!(lines.contains(&want), "{want:?} not in {lines:?}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("progress {") && l.contains("\"videos_watched\":2")),
            "{lines:?}"
        );
    }

    let video = dir.path().join("clip.mp4");
    std::fs::write(&video, b"\x00\x00\x00\x18ftypmp42 a local clip").unwrap();
    let post = serde_json::json!({"content_id": "cli-1", "video_path": video, "caption": "From the bench",
                                  "hashtags": ["bench"]});
    let out = agent(
        dir.path(),
        &[
            "run",
            &addr,
            "post_video",
            "--inputs",
            &post.to_string(),
            "--packs",
            p.to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["posted"], true);
    assert!(
        stderr.lines().any(|l| l == "step fetch_video ok"),
        "{stderr}"
    );
    let posts = sim.phone.lock().unwrap().posts().to_vec();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].caption, "From the bench #bench pf-cli-1");
}
