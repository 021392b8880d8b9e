//! The operators' console over real HTTP against a real coordinator and Postgres: sign-in and
//! its cookie, CSRF, refused keys, expiry, revocation, the admins' sessions page, the audit
//! log (`/ui/audit` and `GET /audit`), and every page rendering real data.

use std::time::Duration;

use phonefarm_testkit::coordinator::app::{
    Receiver, TestApp, keyword_request, spawn_app, wait_until,
};
use phonefarm_testkit::coordinator::console::{form, no_redirects};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// actor, action, target, address, via
type AuditRow = (String, String, Option<String>, Option<String>, String);

struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

/// Signs in with `key`: the answer, and the `Set-Cookie` header when there is one.
async fn sign_in_raw(app: &TestApp, key: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut req = no_redirects()
        .post(format!("{}/ui/sign-in", app.base))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("key", key)]));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn sign_in(app: &TestApp, key: &str) -> Browser {
    let r = sign_in_raw(app, key, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    Browser {
        http: no_redirects(),
        base: app.base.clone(),
        cookie,
    }
}

impl Browser {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> (StatusCode, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(pairs))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// The session's CSRF token, read from a page's hidden field.
    async fn csrf(&self) -> String {
        let (_, page) = self.get("/ui/fleet").await;
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        page[at..].split('"').next().unwrap().to_string()
    }
}

async fn phone(app: &TestApp, id: &str, label: &str) {
    sqlx::query(
        "INSERT INTO phones (phone_id, label, model, battery_level, temperature_c, app_version) \
         VALUES ($1, $2, 'Pixel 7', 15, 47.5, '34.1.2')",
    )
    .bind(id)
    .bind(label)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_stores_only_a_hash() {
    let app = spawn_app().await;
    let anon = no_redirects()
        .get(format!("{}/ui/fleet", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    assert_eq!(anon.headers()[LOCATION], "/ui/sign-in");

    let r = sign_in_raw(&app, &app.admin_key, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain HTTP gets no Secure flag: {set}"
    );
    let id = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("pf_session=")
        .to_string();
    assert!(id.len() >= 40, "a long random id: {id}");
    let (hash, key_name): (Vec<u8>, String) =
        sqlx::query_as("SELECT id_hash, key_name FROM console_sessions")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    use sha2::Digest;
    assert_eq!(hash, sha2::Sha256::digest(id.as_bytes()).to_vec());
    assert_eq!(key_name, "test-admin");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM console_sessions WHERE csrf_token = $1 OR encode(id_hash, 'escape') = $1",
    )
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0, "the session id is not stored in clear");

    let https = sign_in_raw(&app, &app.admin_key, &[("x-forwarded-proto", "https")]).await;
    let set = https.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("; Secure"),
        "behind HTTPS the cookie is Secure: {set}"
    );

    let b = sign_in(&app, &app.admin_key).await;
    let (status, page) = b.get("/ui/fleet").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(&app.admin_key), "the key is not on the page");
}

#[tokio::test]
async fn integrator_and_wrong_keys_and_cross_site_posts_cannot_sign_in() {
    let app = spawn_app().await;
    let integrator = app.key("int", "integrator", Some("ugc-tracker")).await;
    let r = sign_in_raw(&app, &integrator, &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("integrator keys cannot sign in")
    );
    let r = sign_in_raw(&app, "pf_wrong", &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = sign_in_raw(&app, &app.admin_key, &[("origin", "https://evil.example")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let operator = app.key("op", "operator", None).await;
    let r = sign_in_raw(&app, &operator, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM console_sessions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 1, "only the operator got a session");
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_are_audited() {
    let app = spawn_app().await;
    phone(&app, "ph-1", "rack A").await;
    let b = sign_in(&app, &app.admin_key).await;
    let (status, _) = b.post("/ui/phones/ph-1/disable", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no token");
    let (status, _) = b
        .post("/ui/phones/ph-1/disable", &[("csrf", "forged")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "wrong token");
    let enabled: bool = sqlx::query_scalar("SELECT enabled FROM phones WHERE phone_id = 'ph-1'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(enabled, "a refused action changes nothing");

    let csrf = b.csrf().await;
    let (status, _) = b.post("/ui/phones/ph-1/disable", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = b
        .post(
            "/ui/phones/ph-1/label",
            &[("csrf", &csrf), ("label", "shelf 3")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (enabled, label): (bool, String) =
        sqlx::query_as("SELECT enabled, label FROM phones WHERE phone_id = 'ph-1'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(!enabled);
    assert_eq!(label, "shelf 3");

    // The API's operator action is audited too.
    let r = app.put("/phones/ph-1", &json!({"attended": true})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let rows: Vec<AuditRow> =
        sqlx::query_as("SELECT actor, action, target, address, via FROM audit_log ORDER BY id")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        actions,
        [
            "sign_in",
            "phone.disable",
            "phone.label",
            "PUT /phones/{phone_id}"
        ]
    );
    for (actor, _, _, address, _) in &rows {
        assert_eq!(actor, "test-admin");
        assert_eq!(address.as_deref(), Some("127.0.0.1"));
    }
    assert_eq!(rows[1].2.as_deref(), Some("ph-1"));
    assert_eq!(
        rows[3].2.as_deref(),
        Some("ph-1"),
        "the route's parameter, not the path"
    );
    assert_eq!(rows[1].4, "console");
    assert_eq!(rows[3].4, "api");

    let (status, page) = b.get("/ui/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("phone.disable") && page.contains("PUT /phones/{phone_id}"));

    let api = app.get("/audit?limit=2").await;
    assert_eq!(api.status, 200);
    assert_eq!(api.body["entries"].as_array().unwrap().len(), 2);
    assert_eq!(api.body["entries"][0]["action"], "PUT /phones/{phone_id}");
    let older = app
        .get(&format!("/audit?before={}", api.body["next_before"]))
        .await;
    assert_eq!(older.body["entries"][0]["action"], "phone.disable");
    let operator = app.key("op", "operator", None).await;
    let refused = app
        .call(reqwest::Method::GET, "/audit", Some(&operator), None)
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.headers[CONTENT_TYPE.as_str()],
        "application/problem+json"
    );
    let bad = app.get("/audit?limit=0").await;
    assert_eq!(bad.status, 422);
}

#[tokio::test]
async fn expired_signed_out_and_revoked_sessions_go_to_sign_in() {
    let app = spawn_app().await;
    let expiring = sign_in(&app, &app.admin_key).await;
    assert_eq!(expiring.get("/ui/fleet").await.0, StatusCode::OK);
    sqlx::query("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(expiring.get("/ui/fleet").await.0, StatusCode::SEE_OTHER);

    let leaving = sign_in(&app, &app.admin_key).await;
    let csrf = leaving.csrf().await;
    let (status, _) = leaving.post("/ui/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(leaving.get("/ui/fleet").await.0, StatusCode::SEE_OTHER);

    let operator = app.key("op", "operator", None).await;
    let revoked = sign_in(&app, &operator).await;
    assert_eq!(revoked.get("/ui/processes").await.0, StatusCode::OK);
    assert!(
        phonefarm_coordinator::db::api_keys::revoke(&app.db.pool, "op")
            .await
            .unwrap()
    );
    assert_eq!(revoked.get("/ui/processes").await.0, StatusCode::SEE_OTHER);
    let live = revoked
        .http
        .get(format!("{}/ui/live/fleet", app.base))
        .header(COOKIE, &revoked.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        StatusCode::SEE_OTHER,
        "no stream for a revoked key"
    );
}

#[tokio::test]
async fn every_page_renders_real_data_and_escapes_it() {
    let app = spawn_app().await;
    let receiver = Receiver::start(|_| 200).await;
    phone(
        &app,
        "ph-xss",
        "<script>alert(1)</script><img src=x onerror=alert(2)>",
    )
    .await;
    app.account("acc-1", "ph-xss").await;
    let mut request = keyword_request("req-console-1", "acc-1", &receiver.url);
    request["target"] = json!({"routing": "direct", "phone_id": "ph-xss", "account_id": "acc-1"});
    let r = app.enqueue(&request).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let pid = r.body["process_id"].as_str().unwrap().to_string();
    let pool = app.db.pool.clone();
    wait_until(
        "the accepted callback's attempt",
        Duration::from_secs(15),
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM callback_attempts")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    > 0
            }
        },
    )
    .await;
    let b = sign_in(&app, &app.admin_key).await;

    let (status, fleet) = b.get("/ui/fleet").await;
    assert_eq!(status, StatusCode::OK);
    assert!(fleet.contains("/ui/phones/ph-xss"));
    assert!(
        fleet.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{fleet}"
    );
    assert!(!fleet.contains("<script>alert(1)"));
    assert!(fleet.contains("overheating") && fleet.contains("low battery"));
    assert!(fleet.contains("sse-connect=\"/ui/live/fleet\""));

    let (status, page) = b.get("/ui/phones/ph-xss").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Pixel 7") && page.contains("34.1.2"));
    assert!(
        page.contains("<svg"),
        "a health chart from the trigger's sample"
    );
    assert!(
        page.contains(&format!("/ui/processes/{pid}")),
        "its last runs"
    );
    assert!(!page.contains("<script>alert(1)"));

    let (status, list) = b
        .get("/ui/processes?status=queued&capability=keyword_warmup")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(&pid));
    let (_, found) = b.get("/ui/processes?q=req-console-1").await;
    assert!(found.contains(&pid));
    let (_, none) = b.get("/ui/processes?status=completed").await;
    assert!(!none.contains(&pid));
    let (status, _) = b.get("/ui/processes?status=bogus").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, process) = b.get(&format!("/ui/processes/{pid}")).await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "accepted",
        "process.updated",
        "tr class=\"attempt\"",
        " ms",
        "fitness",
        "ugc-tracker",
    ] {
        assert!(process.contains(needle), "the process page shows {needle}");
    }
    assert!(process.contains("Cancel (soft)"));

    let (status, failures) = b.get("/ui/failures").await;
    assert_eq!(status, StatusCode::OK);
    assert!(failures.contains("No failed run"));

    // The live stream's first event is the fleet fragment.
    let mut live = b
        .http
        .get(format!("{}/ui/live/fleet", app.base))
        .header(COOKIE, &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()[CONTENT_TYPE], "text/event-stream");
    let mut got = String::new();
    while !got.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), live.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(got.starts_with("event: update"), "{got}");
    assert!(got.contains("ph-xss"));

    // Cancel from the console: the pending item is cancelled at once.
    let csrf = b.csrf().await;
    let (status, _) = b
        .post(
            &format!("/ui/processes/{pid}/cancel"),
            &[("csrf", &csrf), ("reason", "test"), ("strategy", "soft")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let p = app.get(&format!("/processes/{pid}")).await;
    assert_eq!(p.body["status"], "cancelled");
    let audited: Value =
        sqlx::query_scalar("SELECT detail FROM audit_log WHERE action = 'process.cancel'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(audited["strategy"], "soft");
    assert_eq!(audited["status"], "cancel_requested");
}

#[tokio::test]
async fn admins_list_sessions_without_their_ids_and_revoke_one() {
    let app = spawn_app().await;
    let admin = sign_in(&app, &app.admin_key).await;
    let operator_key = app.key("op", "operator", None).await;
    let operator = sign_in(&app, &operator_key).await;

    let (status, page) = admin.get("/ui/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("data-session=").count(), 2, "{page}");
    assert!(page.contains("test-admin") && page.contains("(this session)"));
    assert!(
        page.contains(">op") && page.contains(">operator<"),
        "{page}"
    );
    assert!(page.contains("127.0.0.1"), "the address: {page}");
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT id_hash FROM console_sessions")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    for b in [&admin, &operator] {
        let id = b.cookie.trim_start_matches("pf_session=");
        assert!(!page.contains(id), "a session id on the page");
    }
    for h in &hashes {
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            !page.to_lowercase().contains(&hex),
            "a session hash on the page"
        );
    }
    assert!(
        admin
            .get("/ui/fleet")
            .await
            .1
            .contains("href=\"/ui/sessions\"")
    );

    let (status, page) = operator.get("/ui/sessions").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("needs an admin key"));
    assert!(
        !operator
            .get("/ui/fleet")
            .await
            .1
            .contains("href=\"/ui/sessions\"")
    );

    let r: i64 = sqlx::query_scalar("SELECT ref FROM console_sessions WHERE key_name = 'op'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let path = format!("/ui/sessions/{r}/revoke");
    let (status, _) = admin.post(&path, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let op_csrf = operator.csrf().await;
    let (status, _) = operator.post(&path, &[("csrf", &op_csrf)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "operators cannot revoke");
    assert_eq!(operator.get("/ui/fleet").await.0, StatusCode::OK);

    let csrf = admin.csrf().await;
    let (status, _) = admin.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let r2 = operator
        .http
        .get(format!("{}/ui/processes", app.base))
        .header(COOKIE, &operator.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), StatusCode::SEE_OTHER);
    assert_eq!(r2.headers()[LOCATION], "/ui/sign-in");
    assert_eq!(admin.get("/ui/fleet").await.0, StatusCode::OK);
    let (_, page) = admin.get("/ui/sessions").await;
    assert_eq!(page.matches("data-session=").count(), 1);
    let (status, _) = admin.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "revoked already");

    let audit: Vec<(String, String, Option<String>, Value)> = sqlx::query_as(
        "SELECT actor, action, target, detail FROM audit_log WHERE action = 'session.revoke'",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (audit[0].0.as_str(), audit[0].2.as_deref()),
        ("test-admin", Some("op"))
    );
    assert_eq!(audit[0].3["session"], r);
}

/// Without NATS (and for a phone no agent holds) the phone page still renders its screen panel;
/// the screen stream answers, says why there is no live view and stays a valid event stream;
/// the image endpoint is a problem, not a broken image; reboot and locate say the phone is
/// offline and send nothing.
#[tokio::test]
async fn phone_actions_and_the_live_view_without_an_agent() {
    let app = spawn_app().await;
    phone(&app, "ph-x", "rack 9").await;
    let b = sign_in(&app, &app.admin_key).await;
    let (status, page) = b.get("/ui/phones/ph-x").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("sse-connect=\"/ui/live/screen/ph-x\""),
        "{page}"
    );
    for action in ["reboot", "locate"] {
        assert!(page.contains(&format!("value=\"{action}\"")), "{page}");
    }

    let mut r = b
        .http
        .get(format!("{}/ui/live/screen/ph-x", b.base))
        .header(COOKIE, &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/event-stream");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = r.chunk().await.unwrap().expect("an event");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: frame\n"), "{text}");
    assert!(
        text.contains("No live view: dependency_unavailable:nats"),
        "{text}"
    );

    let img = b
        .http
        .get(format!("{}/ui/phones/ph-x/screen", b.base))
        .header(COOKIE, &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(img.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(img.headers()[CONTENT_TYPE], "application/problem+json");

    let csrf = b.csrf().await;
    for action in ["reboot", "locate"] {
        let (status, body) = b
            .post(&format!("/ui/phones/ph-x/{action}"), &[("csrf", &csrf)])
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {body}");
        assert!(body.contains("the phone is offline"), "{body}");
    }
    let (status, _) = b.post("/ui/phones/nope/reboot", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0, "nothing was ordered");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action LIKE 'phone.%'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(audited, 0, "refused actions are not audited as done");
}
