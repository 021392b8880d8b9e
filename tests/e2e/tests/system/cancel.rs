//! Cancel on executing work, one process per strategy, with the response's `termination`
//! fields checked against what then happens on the phone.

use std::time::Duration;

use phonefarm_phonemodel::Action;
use serde_json::{Value, json};

use crate::harness::{AGENT_ID, Options, System, warmup};

/// Long enough that only a cancel ends it (30 s dwells).
fn long() -> Value {
    json!({"keywords": ["travel", "food", "music"], "videos_per_keyword": 5, "watch_seconds": {"min": 20, "max": 30}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_hard_and_soft_then_force_cancel_executing_work() {
    let sys = System::start(Options::phones(3)).await;
    let strategies = ["soft", "soft_then_force", "hard"];
    let mut procs = Vec::new();
    for (i, s) in strategies.iter().enumerate() {
        let id = sys
            .enqueue(warmup(
                &sys,
                &format!("cancel-{s}"),
                &format!("acc-{}", i + 1),
                long(),
            ))
            .await;
        procs.push(id);
    }
    let mut items = Vec::new();
    for id in &procs {
        sys.wait_status(id, "executing", Duration::from_secs(90))
            .await;
        let item = sys.item_of(id).await;
        sys.wait_watching(&item).await;
        items.push(item);
    }
    for (i, strategy) in strategies.iter().enumerate() {
        let (id, item_id) = (&procs[i], &items[i]);
        let item = sys.item(item_id).await;
        let mut body =
            json!({"reason": "stop", "requested_by": {"system": "e2e"}, "strategy": strategy});
        if *strategy == "soft_then_force" {
            body["force_after_seconds"] = json!(60);
        }
        let (status, r) = sys.post(&format!("/processes/{id}/cancel"), &body).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["status"], "cancel_requested", "{r}");
        assert_eq!(r["active_queue_item_ids"], json!([item_id]), "{r}");
        let t = &r["termination"];
        let (want, issued) = match *strategy {
            "soft" => ("requested", false),
            "hard" => ("issued", true),
            _ => ("scheduled", false),
        };
        assert_eq!(t["status"], want, "{strategy}: {r}");
        assert_eq!(t["terminate_issued"], issued, "{strategy}: {r}");
        assert_eq!(t["process_id"].as_str(), Some(id.as_str()), "{r}");
        assert_eq!(t["container"]["agent_id"], AGENT_ID, "{r}");
        assert_eq!(
            t["container"]["phone_id"],
            format!("SIM000{}", i + 1),
            "{r}"
        );
        assert_eq!(t["container"]["run_id"], item["run_id"], "{r}");
        assert!(item["run_id"].is_string(), "{item}");
    }
    // Every run ends long before its 15 videos would have (5 minutes and more): soft during the
    // dwell, soft_then_force by its soft half (the force is not needed), hard at once.
    for (i, strategy) in strategies.iter().enumerate() {
        let p = sys
            .wait_status(&procs[i], "cancelled", Duration::from_secs(60))
            .await;
        assert!(p["timestamps"]["cancel_requested_at"].is_string(), "{p}");
        sys.assert_milestones(
            &procs[i],
            &["accepted", "executing", "cancel_requested", "cancelled"],
        )
        .await;
        let item = sys.item(&items[i]).await;
        assert_eq!(item["state"], "CANCELLED", "{strategy}: {item}");
        assert_eq!(item["attempt"], 1, "{strategy}: {item}");
        let kinds: Vec<&str> = item["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        assert!(
            !kinds.contains(&"cancel_forced"),
            "{strategy}: the run ended before any force: {kinds:?}"
        );
        let a = crate::harness::attempt(&item, 1);
        assert_eq!(a["outcome"], "cancelled", "{strategy}: {item}");
        let stopped = sys.sims[i]
            .actions()
            .iter()
            .any(|a| matches!(a, Action::AppForceStopped));
        assert_eq!(
            stopped,
            *strategy == "hard",
            "{strategy}: only a hard cancel force-stops the app"
        );
    }
}
