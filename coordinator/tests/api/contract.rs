//! The contract's example shapes, compared field by field with what the API answers.

use serde_json::{Value, json};

use phonefarm_testkit::coordinator::app::*;

/// Asserts `actual` has exactly the keys of `shape` (recursively for objects), plus `extra`
/// additive keys at the top level.
fn same_keys(path: &str, shape: &Value, actual: &Value, extra: &[&str]) {
    let (Some(s), Some(a)) = (shape.as_object(), actual.as_object()) else {
        return;
    };
    if s.is_empty() {
        return; // a free-form object (metadata, result)
    }
    for k in s.keys() {
        assert!(a.contains_key(k), "{path}: missing field {k:?} in {actual}");
        same_keys(&format!("{path}.{k}"), &s[k], &a[k], &[]);
    }
    for k in a.keys() {
        assert!(
            s.contains_key(k) || extra.contains(&k.as_str()),
            "{path}: unexpected field {k:?}"
        );
    }
}

#[tokio::test]
async fn process_shapes_match_the_contract() {
    let app = spawn_app().await;
    let rx = Receiver::start(|_| 200).await;
    app.account("acc-1", "phone-1").await;

    let r = app
        .enqueue(&keyword_request("req-1", "acc-1", &rx.url))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    same_keys(
        "accepted",
        &json!({"status": "", "process_id": "", "request_id": "", "process_type": ""}),
        &r.body,
        &[],
    );
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(r.body["request_id"], "req-1");
    assert_eq!(r.body["process_type"], "keyword_warmup");
    let id = r.body["process_id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    // Section 6 example.
    let shape = json!({
      "process_id": "…", "process_type": "keyword_warmup", "request_id": "…",
      "status": "executing",
      "target": {"account_id": "…"},
      "requested_by": {"system": "…", "user": "…", "metadata": {}},
      "callback": {"url": "…", "metadata": {}},
      "result": {}, "error": null,
      "timestamps": {"created_at": "…", "accepted_at": "…", "queued_at": "…",
                     "executing_at": "…", "retrying_at": null,
                     "cancel_requested_at": null, "finished_at": null},
      "linked_ids": {"queue_item_ids": [], "completed_queue_item_ids": [],
                     "failed_queue_item_ids": [], "cancelled_queue_item_ids": []},
      "partial_progress": {}
    });
    let p = app.get(&format!("/processes/{id}")).await;
    assert_eq!(p.status, 200);
    let mut target_shape = shape.clone();
    target_shape["target"] = json!({"routing": "", "account_id": ""});
    same_keys("process", &target_shape, &p.body, &[]);
    assert_eq!(p.body["status"], "queued");
    assert_eq!(
        p.body["target"],
        json!({"routing": "queue", "account_id": "acc-1"})
    );
    assert_eq!(
        p.body["requested_by"],
        json!({"system": "ugc-tracker", "user": "ana", "metadata": {}})
    );
    assert_eq!(
        p.body["callback"],
        json!({"url": rx.url, "metadata": {"campaign": "c-1"}})
    );
    assert_eq!(p.body["result"], json!({}));
    assert_eq!(p.body["error"], Value::Null);
    assert_eq!(p.body["partial_progress"], json!({}));
    assert_eq!(
        p.body["linked_ids"]["queue_item_ids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let ts = &p.body["timestamps"];
    let created = ts["created_at"].as_str().unwrap();
    assert_eq!(created.len(), "2026-03-22T08:30:00.000Z".len(), "{created}");
    assert!(created.ends_with('Z'));
    assert_eq!(ts["accepted_at"], ts["created_at"]);
    assert_eq!(ts["queued_at"], ts["created_at"]);
    for k in [
        "executing_at",
        "retrying_at",
        "cancel_requested_at",
        "finished_at",
    ] {
        assert_eq!(ts[k], Value::Null, "{k}");
    }

    // Section 8: the accepted callback.
    wait_until(
        "the accepted callback",
        std::time::Duration::from_secs(10),
        || async { rx.count() >= 1 },
    )
    .await;
    let cb = &rx.bodies()[0];
    same_keys(
        "callback",
        &json!({"event_type": "", "milestone": "", "emitted_at": "",
                "process": {"process_id": "", "process_type": "", "request_id": "", "status": "",
                            "callback_metadata": {}}}),
        cb,
        &["event_id", "sequence"],
    );
    assert_eq!(cb["event_type"], "process.updated");
    assert_eq!(cb["milestone"], "accepted");
    assert_eq!(cb["sequence"], 1);
    assert_eq!(cb["process"]["status"], "queued");
    assert_eq!(cb["process"]["process_id"], id.as_str());
    assert_eq!(
        cb["process"]["callback_metadata"],
        json!({"campaign": "c-1"})
    );
    let got = rx.got.lock().unwrap()[0].clone();
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["user-agent"], "phonefarm-callback/1.0");
}

#[tokio::test]
async fn list_is_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = app
            .enqueue(&keyword_request(
                &format!("r{i}"),
                "acc-1",
                "http://127.0.0.1:9/cb",
            ))
            .await;
        ids.push(r.body["process_id"].as_str().unwrap().to_string());
    }
    let page1 = app.get("/processes?limit=3").await;
    assert_eq!(page1.status, 200);
    let got: Vec<&str> = page1.body["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["process_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]);
    let cursor = page1.body["next_cursor"].as_str().unwrap();
    let page2 = app
        .get(&format!("/processes?limit=3&cursor={cursor}"))
        .await;
    let got: Vec<&str> = page2.body["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["process_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[1].as_str(), ids[0].as_str()]);
    assert_eq!(page2.body["next_cursor"], Value::Null);

    let filtered = app.get("/processes?status=completed").await;
    assert_eq!(filtered.body["processes"], json!([]));
    let bad = app.get("/processes?status=done&limit=0&cursor=zz").await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.body["errors"],
        json!([
            "invalid_value:status",
            "out_of_range:limit:1_to_200",
            "invalid_value:cursor"
        ])
    );
}

#[tokio::test]
async fn openapi_and_docs_are_served_without_internet() {
    let app = spawn_app().await;
    let spec = app
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(spec.status, 200);
    assert!(spec.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/capability-requests/enqueue",
        "/processes/{process_id}/cancel",
        "/ingest",
        "/runtime-snapshots/upsert",
        "/agents",
        "/phones",
        "/phones/{phone_id}",
        "/phones/{phone_id}/reboot",
        "/phones/{phone_id}/locate",
        "/queue-items/{queue_item_id}",
        "/queue-items/{queue_item_id}/retry",
        "/accounts/{account_id}",
        "/capabilities/{name}",
        "/metrics",
    ] {
        assert!(
            spec.body["paths"].get(path).is_some(),
            "{path} missing from the spec"
        );
    }
    let docs = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let ui = app
        .client
        .get(format!("{}/ui", app.base))
        .send()
        .await
        .unwrap();
    // Without a session the console sends the browser to its sign-in page.
    assert_eq!(ui.status(), 200);
    assert!(ui.url().path().ends_with("/ui/sign-in"), "{}", ui.url());
    let csp = ui.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = ui.text().await.unwrap();
    assert!(
        page.contains("<script src=\"/ui/assets/htmx.min.js\">"),
        "{page}"
    );
    let script = app
        .client
        .get(format!("{}/ui/assets/htmx.min.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.text().await.unwrap().contains("htmx"));
    let health = app.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200);
    let ready = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.body["checks"]["postgres"], true);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("phonefarm_http_requests_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn capabilities_registry_is_served_and_changeable_by_admins() {
    let app = spawn_app().await;
    let caps = app.get("/capabilities").await;
    let fyp = caps.body["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fyp_warmup")
        .unwrap()
        .clone();
    assert_eq!(
        fyp,
        json!({"name": "fyp_warmup", "manual": true, "unattended": false, "live_verified": false, "routings": ["direct", "queue", "group"]})
    );

    let operator = app.key("op", "operator", None).await;
    let body =
        json!({"manual": true, "unattended": true, "live_verified": true, "routings": ["queue"]});
    let r = app
        .call(
            reqwest::Method::PUT,
            "/capabilities/fyp_warmup",
            Some(&operator),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app.put("/capabilities/fyp_warmup", &body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["unattended"], true);
    app.account("acc-1", "phone-1").await;
    let mut req = keyword_request("fyp-1", "acc-1", "http://127.0.0.1:9/cb");
    req["capability"] = json!("fyp_warmup");
    req["inputs"] = json!({"judge_prompt": "home workouts"});
    assert_eq!(app.enqueue(&req).await.status, 202);
    let r = app.put("/capabilities/dance", &body).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["errors"], json!(["capability_not_found:dance"]));
}
