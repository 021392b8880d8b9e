//! The request rules, through the public functions.

use serde_json::{Value, json};

use super::*;

fn base() -> Value {
    json!({
        "request_id": "req-1",
        "capability": "keyword_warmup",
        "mode": "unattended",
        "target": {"routing": "direct", "phone_id": "p1", "account_id": "a1"},
        "inputs": {"keywords": ["fitness", "cooking"]},
        "callback": {"url": "https://example.com/cb"},
        "requested_by": {"system": "ugc-tracker"}
    })
}

#[test]
fn a_valid_request_gets_defaults() {
    let r = enqueue(&base()).unwrap();
    assert_eq!(r.inputs["videos_per_keyword"], 3);
    assert_eq!(r.inputs["watch_seconds"], json!({"min": 8, "max": 25}));
    assert_eq!(r.inputs["like_probability"], 0.0);
    assert_eq!(r.callback.metadata, json!({}));
    assert_eq!(r.requested_by.metadata, json!({}));
    assert_eq!(
        serde_json::to_value(&r.target).unwrap(),
        json!({"routing": "direct", "phone_id": "p1", "account_id": "a1"})
    );
}

#[test]
fn every_problem_is_reported() {
    let body = json!({
        "request_id": "",
        "capability": "dance",
        "mode": 3,
        "target": {"routing": "direct"},
        "callback": {"url": "ftp://x"},
    });
    let errors = enqueue(&body).unwrap_err();
    for e in [
        "out_of_range:request_id:length_1_to_200",
        "invalid_value:capability:expected_one_of_keyword_warmup|fyp_warmup|maintenance",
        "invalid_type:mode:expected_string",
        "missing_field:target.phone_id",
        "missing_field:target.account_id",
        "missing_field:inputs",
        "invalid_value:callback.url:expected_http_url",
        "missing_field:requested_by",
    ] {
        assert!(
            errors.contains(&e.to_string()),
            "{e} missing from {errors:?}"
        );
    }
}

#[test]
fn comment_plan_keys_must_match_keywords() {
    let mut b = base();
    b["inputs"]["comment_plan"] = json!({"fitness": {"text": "nice"}});
    assert_eq!(
        enqueue(&b).unwrap_err(),
        vec!["needs_comment_plan:comment_plan_keys_must_match_keywords"]
    );
    b["inputs"]["comment_plan"] = json!({"fitness": {"text": "nice"}, "cooking": {"text": "yum"}});
    assert!(enqueue(&b).is_ok());
}

#[test]
fn keyword_rules() {
    let mut b = base();
    b["inputs"] = json!({"keywords": ["a", "a"], "videos_per_keyword": 21, "watch_seconds": {"min": 30, "max": 10}, "like_probability": 1.5});
    let errors = enqueue(&b).unwrap_err();
    assert_eq!(
        errors,
        vec![
            "invalid_value:inputs.keywords:duplicates",
            "out_of_range:inputs.videos_per_keyword:1_to_20",
            "out_of_range:inputs.watch_seconds:min_above_max",
            "out_of_range:inputs.like_probability:0_to_1",
        ]
    );
    b["inputs"] = json!({"keywords": []});
    assert_eq!(
        enqueue(&b).unwrap_err(),
        vec!["out_of_range:inputs.keywords:1_to_20_items"]
    );
}

#[test]
fn fyp_needs_a_judge_prompt() {
    let mut b = base();
    b["capability"] = json!("fyp_warmup");
    b["inputs"] = json!({"duration_seconds": 30});
    assert_eq!(
        enqueue(&b).unwrap_err(),
        vec![
            "out_of_range:inputs.duration_seconds:60_to_3600",
            "missing_fyp_judge_prompt"
        ]
    );
    b["inputs"] = json!({"judge_prompt": "home workouts"});
    assert_eq!(enqueue(&b).unwrap().inputs["duration_seconds"], 600);
}

#[test]
fn maintenance_steps() {
    let mut c = Checker::default();
    let inputs = json!({"steps": [{"action": "edit_profile", "params": {"username": "Bad Name"}}, {"action": "delete", "params": {}}]});
    assert!(maintenance_inputs(&mut c, inputs.as_object().unwrap()).is_none());
    assert_eq!(
        c.errors,
        vec![
            "invalid_value:inputs.steps[0].params.username:allowed_a-z0-9._",
            "invalid_value:inputs.steps[1].action:expected_one_of_edit_profile",
        ]
    );
    let mut c = Checker::default();
    let inputs = json!({"steps": [{"action": "edit_profile", "params": {"bio": ""}}]});
    let v = maintenance_inputs(&mut c, inputs.as_object().unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"steps": [{"action": "edit_profile", "params": {"bio": ""}}], "metadata": {}})
    );
}

#[test]
fn fingerprint_ignores_spelled_out_defaults() {
    let a = enqueue(&base()).unwrap();
    let mut b = base();
    b["inputs"]["videos_per_keyword"] = json!(3);
    b["unknown_field"] = json!("ignored");
    assert_eq!(a.fingerprint(), enqueue(&b).unwrap().fingerprint());
    b["inputs"]["videos_per_keyword"] = json!(4);
    assert_ne!(a.fingerprint(), enqueue(&b).unwrap().fingerprint());
}

#[test]
fn cancel_rules() {
    let errors = cancel(&json!({"reason": "x", "requested_by": {"system": "s"}, "strategy": "nuke", "force_after_seconds": -1})).unwrap_err();
    assert_eq!(
        errors,
        vec![
            "invalid_value:strategy:expected_one_of_soft|hard|soft_then_force",
            "out_of_range:force_after_seconds:0_to_86400",
        ]
    );
    let ok = cancel(&json!({"reason": "x", "requested_by": {"system": "s"}})).unwrap();
    assert_eq!(
        (ok.strategy, ok.force_after_seconds),
        (Strategy::SoftThenForce, 10)
    );
}

#[test]
fn ingest_rules() {
    let errors = ingest(&json!({"content_id": "c", "account_id": "a", "video_path": "file:///x", "caption": "", "hashtags": vec!["x"; 31], "scheduling_hint": "tomorrow"})).unwrap_err();
    assert_eq!(
        errors,
        vec![
            "invalid_value:video_path:expected_http_url",
            "out_of_range:caption:length_1_to_4000",
            "out_of_range:hashtags:at_most_30_items",
            "invalid_value:scheduling_hint:expected_rfc3339_timestamp",
        ]
    );
}

#[test]
fn snapshot_rules() {
    let errors = snapshot(&json!({"strategy_version": 0})).unwrap_err();
    assert!(errors.contains(&"out_of_range:strategy_version:1_to_9223372036854775807".to_string()));
    assert!(errors.contains(&"missing_field:personality".to_string()));
}
