//! Each capability through the API to `completed`, and group fan-out with a failing phone.

use std::time::Duration;

use phonefarm_phonemodel::AccountState;
use phonefarm_testkit::wait_until;
use serde_json::json;

use crate::harness::{Options, System, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_capability_runs_to_completed_with_callbacks_in_sequence() {
    let sys = System::start(Options::phones(2)).await;
    let kw = sys
        .enqueue(request(
            "kw-1",
            "keyword_warmup",
            "unattended",
            json!({"routing": "queue", "account_id": "acc-1"}),
            json!({"keywords": ["fitness"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}, "like_probability": 1.0}),
            &sys.callback_url,
        ))
        .await;
    let done = sys
        .wait_status(&kw, "completed", Duration::from_secs(120))
        .await;
    assert_eq!(
        done["result"]["keywords"]["fitness"]["videos_watched"], 1,
        "{done}"
    );
    assert!(
        done["timestamps"]["executing_at"].is_string()
            && done["timestamps"]["finished_at"].is_string()
    );
    let liked = sys.sims[0].phone.lock().unwrap().liked_videos().len();
    assert_eq!(liked, 1, "the like happened on the phone");

    // Maintenance: edit the profile on the second phone and read it back.
    let (status, m) = sys
        .post(
            "/maintenance/requests",
            &json!({"request_id": "m-1", "account_id": "acc-2",
                    "inputs": {"steps": [{"action": "edit_profile", "params": {"display_name": "Ana Fit", "bio": "home workouts"}}]},
                    "callback": {"url": sys.callback_url}, "requested_by": {"system": "e2e"}}),
        )
        .await;
    assert_eq!(status, 202, "{m}");
    let m_id = m["process_id"].as_str().unwrap().to_string();
    sys.wait_status(&m_id, "completed", Duration::from_secs(120))
        .await;
    let profile = sys.sims[1].phone.lock().unwrap().profile().clone();
    assert_eq!(profile.display_name, "Ana Fit");

    // fyp_warmup is manual-only: it runs once the phone is attended.
    let r = sys.put("/phones/SIM0001", &json!({"attended": true})).await;
    assert_eq!(r["attended"], true, "{r}");
    let fyp = sys
        .enqueue(request(
            "fyp-1",
            "fyp_warmup",
            "manual",
            json!({"routing": "direct", "phone_id": "SIM0001", "account_id": "acc-1"}),
            json!({"duration_seconds": 60, "watch_seconds": {"min": 1, "max": 2}, "judge_prompt": "fitness workouts"}),
            &sys.callback_url,
        ))
        .await;
    sys.wait_status(&fyp, "completed", Duration::from_secs(150))
        .await;

    // Callbacks: accepted, executing, completed, with strictly increasing sequence.
    for id in [&kw, &m_id, &fyp] {
        wait_until(
            "the completed callback",
            Duration::from_secs(20),
            || async { sys.milestones(id).iter().any(|(_, m)| m == "completed") },
        )
        .await;
        let ms = sys.milestones(id);
        let names: Vec<&str> = ms.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            names,
            vec!["accepted", "executing", "completed"],
            "{id}: {ms:?}"
        );
        assert!(ms.windows(2).all(|w| w[0].0 < w[1].0), "{ms:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_fan_out_with_one_failing_phone_is_failed_terminal_with_partial_progress() {
    let sys = System::start(Options::phones(3)).await;
    sys.sims[2].phone.lock().unwrap().config_mut().account = AccountState::Banned;
    let id = sys
        .enqueue(request(
            "group-1",
            "keyword_warmup",
            "unattended",
            json!({"routing": "group", "account_ids": ["acc-1", "acc-2", "acc-3"]}),
            json!({"keywords": ["cooking"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 1}}),
            &sys.callback_url,
        ))
        .await;
    let p = sys
        .wait_status(&id, "failed_terminal", Duration::from_secs(150))
        .await;
    assert_eq!(
        p["partial_progress"],
        json!({"total": 3, "queued": 0, "executing": 0, "retrying": 0, "completed": 2, "failed": 1, "cancelled": 0}),
        "{p}"
    );
    assert_eq!(p["error"]["code"], "account_outcome:banned", "{p}");
    assert_eq!(
        p["linked_ids"]["completed_queue_item_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        p["linked_ids"]["failed_queue_item_ids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The runs are counted per flow pack revision, as the agents reported choosing them: the
    // banned account failed after the app was open, so all three ran a pack. Counters are per
    // process (other tests of this binary add to them), hence at least.
    let text = sys
        .http
        .get(format!("{}/metrics", sys.coordinators[0].base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let runs = |outcome: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("phonefarm_flow_runs_total{"))
            .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
            .filter(|l| !l.contains("pack=\"none\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    assert!(runs("completed") >= 2.0, "{text}");
    assert!(runs("failed") >= 1.0, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("phonefarm_flow_runs_total{")
                && l.contains("pack=\"tiktok-")
                && l.contains("revision=\"")),
        "{text}"
    );
    // Every metric the alert rules and the Grafana dashboard read is served (after runs and
    // callbacks, when the counters exist too).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut used = std::collections::BTreeSet::new();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/phonefarm.json",
    ] {
        let body = std::fs::read_to_string(root.join(file)).unwrap();
        for (i, _) in body.match_indices("phonefarm_") {
            let name: String = body[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    let served: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !served.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "read by alerts or dashboard but not served: {missing:?}"
    );
}
