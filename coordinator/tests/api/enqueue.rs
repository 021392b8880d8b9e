//! Enqueue and maintenance: validation strings, routing, idempotency under concurrency.

use serde_json::{Value, json};

use phonefarm_testkit::coordinator::app::*;

#[tokio::test]
async fn every_validation_problem_is_reported_as_problem_json() {
    let app = spawn_app().await;
    let r = app
        .enqueue(&json!({
            "request_id": "x".repeat(201),
            "capability": "fyp_warmup",
            "mode": "unattended",
            "target": {"routing": "group", "phone_ids": []},
            "inputs": {"duration_seconds": 10},
            "callback": {"url": "mailto:a@b"},
            "requested_by": {}
        }))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body["type"], "about:blank");
    assert_eq!(r.body["status"], 422);
    assert_eq!(
        r.body["errors"],
        json!([
            "out_of_range:request_id:length_1_to_200",
            "missing_field:target.phone_ids|account_ids",
            "out_of_range:inputs.duration_seconds:60_to_3600",
            "missing_fyp_judge_prompt",
            "invalid_value:callback.url:expected_http_url",
            "missing_field:requested_by.system",
            "capability_not_live_verified:fyp_warmup"
        ])
    );
}

#[tokio::test]
async fn documented_strings() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    let mut fyp = keyword_request("f1", "acc-1", "http://127.0.0.1:9/cb");
    fyp["capability"] = json!("fyp_warmup");
    fyp["inputs"] = json!({"judge_prompt": "fitness"});
    let r = app.enqueue(&fyp).await;
    assert_eq!(
        r.body["errors"],
        json!(["capability_not_live_verified:fyp_warmup"])
    );
    fyp["mode"] = json!("manual");
    assert_eq!(app.enqueue(&fyp).await.status, 202);

    let mut kw = keyword_request("k1", "acc-1", "http://127.0.0.1:9/cb");
    kw["inputs"]["comment_plan"] = json!({"fitness": {"text": "great form"}});
    let r = app.enqueue(&kw).await;
    assert_eq!(
        r.body["errors"],
        json!(["needs_comment_plan:comment_plan_keys_must_match_keywords"])
    );

    let mut m = keyword_request("m1", "acc-1", "http://127.0.0.1:9/cb");
    m["capability"] = json!("maintenance");
    m["target"] = json!({"routing": "group", "account_ids": ["acc-1"]});
    m["inputs"] = json!({"steps": [{"action": "edit_profile", "params": {"bio": "hi"}}]});
    let r = app.enqueue(&m).await;
    assert_eq!(
        r.body["errors"],
        json!(["routing_not_supported:maintenance:group"])
    );
}

#[tokio::test]
async fn bad_bodies() {
    let app = spawn_app().await;
    let url = format!("{}/capability-requests/enqueue", app.base);
    let send = |ct: &'static str, body: Vec<u8>| {
        app.client
            .post(&url)
            .bearer_auth(&app.admin_key)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = send("application/json", b"{\"request_id\": ".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("malformed_json"),
        "{body}"
    );
    let r = send("text/plain", b"{}".to_vec()).await.unwrap();
    assert_eq!(r.status(), 415);
    // U+0000 cannot be stored by Postgres: refused by path, nothing written.
    let mut nul = keyword_request("nul-1", "acc-1", "http://127.0.0.1:9/cb");
    nul["inputs"]["keywords"] = json!(["ok", "b\u{0}d"]);
    let r = send("application/json", serde_json::to_vec(&nul).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"],
        json!(["invalid_value:inputs.keywords.1:nul_character"])
    );
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(300 * 1024));
    let r = send("application/json", big.into_bytes()).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = send("application/json", b"[1, 2]".to_vec()).await.unwrap();
    assert_eq!(r.status(), 422);
    let unknown = app
        .get(&format!("/processes/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(unknown.status, 404);
    let garbage = app.get("/processes/not-a-uuid").await;
    assert_eq!(garbage.status, 404);
    assert_eq!(
        garbage.body["errors"],
        json!(["process_not_found:not-a-uuid"])
    );
}

#[tokio::test]
async fn routing_resolution() {
    let app = spawn_app().await;
    for (a, p) in [("a1", "p1"), ("a2", "p2"), ("a3", "p3"), ("a3b", "p3")] {
        app.account(a, p).await;
    }
    let cb = "http://127.0.0.1:9/cb";
    let mut direct = keyword_request("d1", "a1", cb);
    direct["target"] = json!({"routing": "direct", "phone_id": "p1", "account_id": "a2"});
    let r = app.enqueue(&direct).await;
    assert_eq!(
        (r.status.as_u16(), r.body["errors"].clone()),
        (422, json!(["account_not_on_phone:a2"]))
    );
    direct["target"] = json!({"routing": "direct", "phone_id": "p9", "account_id": "nope"});
    let r = app.enqueue(&direct).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body["errors"],
        json!(["phone_not_found:p9", "account_not_found:nope"])
    );

    let mut group = keyword_request("g1", "a1", cb);
    group["target"] =
        json!({"routing": "group", "phone_ids": ["p1", "p2"], "account_ids": ["a1", "a2"]});
    let r = app.enqueue(&group).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let p = app
        .get(&format!(
            "/processes/{}",
            r.body["process_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        p.body["linked_ids"]["queue_item_ids"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "duplicates collapse"
    );
    assert_eq!(
        p.body["partial_progress"],
        json!({"total": 2, "queued": 2, "executing": 0, "retrying": 0, "completed": 0, "failed": 0, "cancelled": 0})
    );
    group["request_id"] = json!("g2");
    group["target"] = json!({"routing": "group", "phone_ids": ["p3"]});
    let r = app.enqueue(&group).await;
    assert_eq!(r.body["errors"], json!(["ambiguous_phone_account:p3"]));

    // Deactivated accounts are not found.
    let r = app
        .put("/accounts/a2", &json!({"phone_id": "p2", "active": false}))
        .await;
    assert_eq!(r.status, 200);
    let r = app.enqueue(&keyword_request("q1", "a2", cb)).await;
    assert_eq!(r.body["errors"], json!(["account_not_found:a2"]));
}

#[tokio::test]
async fn fifty_concurrent_identical_enqueues_make_one_process() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    let body = keyword_request("same-request", "acc-1", "http://127.0.0.1:9/cb");
    let futures = (0..50).map(|_| app.enqueue(&body));
    let results = futures::future::join_all(futures).await;
    let created: Vec<_> = results.iter().filter(|r| r.status == 202).collect();
    let dups: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        created.len(),
        1,
        "statuses: {:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(dups.len(), 49);
    let id = &created[0].body["process_id"];
    for d in &dups {
        assert_eq!(&d.body["process_id"], id);
        assert_eq!(d.body["duplicate"], true);
        assert_eq!(d.body["process_status"], "queued");
        assert!(d.body.get("payload_mismatch").is_none());
    }
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM processes")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (items,): (i64,) = sqlx::query_as("SELECT count(*) FROM queue_items")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(items, 1);

    let mut changed = body.clone();
    changed["inputs"]["videos_per_keyword"] = json!(5);
    let r = app.enqueue(&changed).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["payload_mismatch"], true);
    assert_eq!(&r.body["process_id"], id);
}

#[tokio::test]
async fn maintenance_requests() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    let body = json!({
        "request_id": "m-1",
        "account_id": "acc-1",
        "inputs": {"steps": [{"action": "edit_profile", "params": {"display_name": "Ana", "username": "ana.fit"}}]},
        "callback": {"url": "http://127.0.0.1:9/cb"},
        "requested_by": {"system": "control-plane"}
    });
    let r = app.post("/maintenance/requests", &body).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["process_type"], "maintenance");
    let again = app.post("/maintenance/requests", &body).await;
    assert_eq!(
        (again.status.as_u16(), again.body["duplicate"].clone()),
        (200, json!(true))
    );
    let mut missing = body.clone();
    missing["request_id"] = json!("m-2");
    missing["account_id"] = json!("ghost");
    let r = app.post("/maintenance/requests", &missing).await;
    assert_eq!(
        (r.status.as_u16(), r.body["errors"].clone()),
        (404, json!(["account_not_found:ghost"]))
    );
}

#[tokio::test]
async fn ssrf_guard_refuses_private_callbacks_at_request_time() {
    let app = spawn_with(Options {
        no_allow_list: true,
        ..Options::default()
    })
    .await;
    app.account("acc-1", "phone-1").await;
    for (i, url) in [
        "http://127.0.0.1/cb",
        "http://10.0.0.1/cb",
        "http://169.254.169.254/latest",
        "http://[::1]/cb",
        "http://[::ffff:127.0.0.1]/cb",
        "http://localhost/cb",
    ]
    .iter()
    .enumerate()
    {
        let r = app
            .enqueue(&keyword_request(&format!("s{i}"), "acc-1", url))
            .await;
        assert_eq!(r.status, 422, "{url} was accepted");
        assert!(
            r.body["errors"][0]
                .as_str()
                .unwrap()
                .starts_with("callback_url_not_allowed:"),
            "{url}: {:?}",
            r.body
        );
    }
}
