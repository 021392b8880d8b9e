//! The 401/403/404/500 rules of authentication: missing or wrong token 401, a key bound to
//! another system 403 (and 404 for its processes), no secret and no key at all 500.

use reqwest::Method;
use serde_json::json;

use phonefarm_testkit::coordinator::app::*;

#[tokio::test]
async fn no_secret_and_no_key_is_auth_not_configured() {
    let app = spawn_with(Options {
        no_keys: true,
        ..Options::default()
    })
    .await;
    let r = app
        .call(Method::GET, "/processes", Some("anything"), None)
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body["errors"], json!(["auth_not_configured"]));
    let r = app.call(Method::GET, "/processes", None, None).await;
    assert_eq!(r.status, 500);
    // Health stays open.
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
}

#[tokio::test]
async fn ingest_secret_compatibility_mode() {
    let app = spawn_with(Options {
        no_keys: true,
        ingest_secret: Some("s3cret".into()),
        ..Options::default()
    })
    .await;
    assert_eq!(
        app.call(Method::GET, "/processes", Some("s3cret"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.call(Method::GET, "/processes", Some("wrong"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        app.call(Method::GET, "/processes", None, None).await.status,
        401
    );
    // Every role: operator and admin endpoints too.
    let r = app
        .call(
            Method::PUT,
            "/accounts/a1",
            Some("s3cret"),
            Some(&json!({"phone_id": "p1"})),
        )
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn keys_roles_and_system_binding() {
    let app = spawn_app().await;
    app.account("acc-1", "phone-1").await;
    let bound = app.key("tracker", "integrator", Some("ugc-tracker")).await;
    let other = app.key("other", "integrator", Some("control-plane")).await;
    let free = app.key("free", "integrator", None).await;

    assert_eq!(
        app.call(Method::GET, "/processes", Some("pf_not_a_key"), None)
            .await
            .status,
        401
    );

    let body = keyword_request("r1", "acc-1", "http://127.0.0.1:9/cb");
    let r = app
        .call(
            Method::POST,
            "/capability-requests/enqueue",
            Some(&bound),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 202);
    let id = r.body["process_id"].as_str().unwrap().to_string();

    // Acting as another system: 403 system_mismatch.
    let r = app
        .call(
            Method::POST,
            "/capability-requests/enqueue",
            Some(&other),
            Some(&body),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["errors"].clone()),
        (403, json!(["system_mismatch"]))
    );

    // Another system's process is a 404, not a 403; an unbound integrator sees it.
    let path = format!("/processes/{id}");
    assert_eq!(
        app.call(Method::GET, &path, Some(&other), None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.call(Method::GET, &path, Some(&bound), None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.call(Method::GET, &path, Some(&free), None).await.status,
        200
    );
    let cancel = json!({"reason": "x", "requested_by": {"system": "control-plane"}});
    let r = app
        .call(
            Method::POST,
            &format!("{path}/cancel"),
            Some(&other),
            Some(&cancel),
        )
        .await;
    assert_eq!(r.status, 404);

    // Lists are scoped to the key's system.
    let r = app
        .call(Method::GET, "/processes", Some(&other), None)
        .await;
    assert_eq!(r.body["processes"], json!([]));
    let r = app
        .call(
            Method::GET,
            "/processes?system=ugc-tracker",
            Some(&other),
            None,
        )
        .await;
    assert_eq!(r.status, 403);

    // Operator endpoints need operator or admin.
    let r = app.call(Method::GET, "/accounts", Some(&bound), None).await;
    assert_eq!(
        (r.status.as_u16(), r.body["errors"].clone()),
        (403, json!(["insufficient_role"]))
    );
    let op = app.key("op", "operator", None).await;
    assert_eq!(
        app.call(Method::GET, "/accounts", Some(&op), None)
            .await
            .status,
        200
    );
    // Capabilities are readable by every role.
    assert_eq!(
        app.call(Method::GET, "/capabilities", Some(&bound), None)
            .await
            .status,
        200
    );

    // Keys are stored hashed, never in clear.
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT key_hash FROM api_keys")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert!(rows.iter().all(|(h,)| {
        h.len() == 32
            && !h
                .windows(8)
                .any(|w| bound.as_bytes().windows(8).any(|b| b == w))
    }));
}
