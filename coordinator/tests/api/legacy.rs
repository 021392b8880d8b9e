//! POST /ingest, POST /cancel and POST /runtime-snapshots/upsert.

use axum::http::StatusCode;
use serde_json::json;

use phonefarm_testkit::coordinator::app::*;

async fn asset_server() -> String {
    let app = axum::Router::new()
        .route(
            "/video.mp4",
            axum::routing::head(|| async { StatusCode::OK }).get(|| async { "video" }),
        )
        .route(
            "/cover.jpg",
            axum::routing::head(|| async { StatusCode::OK }),
        )
        .route(
            "/moved.mp4",
            axum::routing::head(|| async {
                (StatusCode::FOUND, [("location", "http://10.0.0.1/x")])
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn ingest_checks_assets_and_is_idempotent_per_account_and_content() {
    let app = spawn_app().await;
    let assets = asset_server().await;
    let rx = Receiver::start(|_| 200).await;
    app.account("acc-1", "phone-1").await;
    let body = json!({
        "content_id": "content-1",
        "account_id": "acc-1",
        "video_path": format!("{assets}/video.mp4"),
        "caption": "morning routine",
        "hashtags": ["fitness", "morning"],
        "cover_image_path": format!("{assets}/cover.jpg"),
        "callback_url": rx.url,
    });
    let r = app.post("/ingest", &body).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(r.body["queue_status"], "QUEUED");
    assert_eq!(r.body["content_id"], "content-1");
    let item = r.body["queue_item_id"].clone();

    let dup = app.post("/ingest", &body).await;
    assert_eq!(dup.status, 200);
    assert_eq!(
        dup.body,
        json!({"status": "duplicate", "queue_item_id": item, "content_id": "content-1", "account_id": "acc-1", "queue_status": "QUEUED"})
    );

    let mut missing = body.clone();
    missing["content_id"] = json!("content-2");
    missing["video_path"] = json!(format!("{assets}/gone.mp4"));
    missing["cover_image_path"] = json!(format!("{assets}/moved.mp4"));
    let r = app.post("/ingest", &missing).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["errors"],
        json!([
            "asset_unreachable:video_path",
            "asset_unreachable:cover_image_path"
        ])
    );

    let mut future = body.clone();
    future["content_id"] = json!("content-3");
    future["scheduling_hint"] = json!("2999-01-01T00:00:00Z");
    let r = app.post("/ingest", &future).await;
    assert_eq!(r.body["queue_status"], "SCHEDULED");

    let mut ghost = body.clone();
    ghost["account_id"] = json!("ghost");
    let r = app.post("/ingest", &ghost).await;
    assert_eq!(
        (r.status.as_u16(), r.body["errors"].clone()),
        (404, json!(["account_not_found:ghost"]))
    );

    // Legacy cancel.
    let r = app
        .post(
            "/cancel",
            &json!({"content_id": "content-1", "account_id": "acc-1", "reason": "pulled"}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"status": "cancelled", "queue_item_id": item, "previous_status": "QUEUED"})
    );
    let r = app
        .post(
            "/cancel",
            &json!({"content_id": "content-1", "account_id": "acc-1"}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["errors"].clone()),
        (409, json!(["not_cancellable:CANCELLED"]))
    );
    let r = app
        .post(
            "/cancel",
            &json!({"content_id": "nope", "account_id": "acc-1"}),
        )
        .await;
    assert_eq!(r.status, 404);

    // The per-item callback: QUEUED then CANCELLED for content-1 (and SCHEDULED for content-3).
    wait_until(
        "item callbacks",
        std::time::Duration::from_secs(10),
        || async { rx.count() >= 3 },
    )
    .await;
    let mine: Vec<_> = rx
        .bodies()
        .into_iter()
        .filter(|b| b["queue_item_id"] == item)
        .collect();
    let mut states: Vec<_> = mine
        .iter()
        .map(|b| b["queue_status"].as_str().unwrap().to_string())
        .collect();
    states.sort();
    assert_eq!(states, vec!["CANCELLED", "QUEUED"]);
    assert!(
        mine.iter()
            .all(|b| b["event_type"] == "queue_item.updated" && b["content_id"] == "content-1")
    );
}

#[tokio::test]
async fn runtime_snapshots_never_let_an_older_one_win() {
    let app = spawn_app().await;
    let snap = |version: i64, synced: &str, id: &str| {
        json!({
            "account_id": "acc-1", "ugc_account_id": "ugc-1", "snapshot_id": id,
            "strategy_version": version, "content_hash": "h", "strategy_synced_at": synced,
            "stage": "warmup", "active_action": "watch", "active_skills": ["watch"], "personality": {"tone": "calm"}
        })
    };
    let r = app
        .post(
            "/runtime-snapshots/upsert",
            &snap(2, "2026-03-22T08:30:00Z", "s2"),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"status": "upserted", "account_id": "acc-1", "snapshot_id": "s2", "strategy_version": 2, "strategy_synced_at": "2026-03-22T08:30:00.000Z"})
    );
    let r = app
        .post(
            "/runtime-snapshots/upsert",
            &snap(1, "2026-03-23T00:00:00Z", "s1"),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"status": "ignored_stale", "account_id": "acc-1", "snapshot_id": "s1", "strategy_version": 1})
    );
    let r = app
        .post(
            "/runtime-snapshots/upsert",
            &snap(2, "2026-03-22T08:00:00Z", "s2-old"),
        )
        .await;
    assert_eq!(r.body["status"], "ignored_stale");
    let r = app
        .post(
            "/runtime-snapshots/upsert",
            &snap(2, "2026-03-22T09:00:00Z", "s2-new"),
        )
        .await;
    assert_eq!(r.body["status"], "upserted");

    // Concurrent upserts of versions 3..=22 in random order: the newest wins.
    let app_ref = &app;
    let futures = (3..=22).rev().map(|v| {
        let body = snap(v, "2026-03-24T00:00:00Z", &format!("s{v}"));
        async move { app_ref.post("/runtime-snapshots/upsert", &body).await }
    });
    futures::future::join_all(futures).await;
    let (version, id): (i64, String) = sqlx::query_as(
        "SELECT strategy_version, snapshot_id FROM runtime_snapshots WHERE account_id = 'acc-1'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((version, id.as_str()), (22, "s22"));
    let r = app
        .post("/runtime-snapshots/upsert", &json!({"account_id": "acc-1"}))
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body["errors"].as_array().unwrap().len() >= 8);
}
