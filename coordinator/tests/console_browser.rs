//! The console in a real browser (testkit's `webdriver`: Debian's chromium over WebDriver),
//! against a real coordinator and Postgres with no agent: signs in, sees a phone go offline live
//! (no reload), disables it from its page, and checks that the browser logged no error and no
//! request failed (a CSP violation would be one). The whole-system scenarios, with a real agent
//! and simulated phones, are in `tests/e2e/tests/system/console.rs`. Screenshots are saved
//! under `<target dir>/console-screenshots/` (or `$PF_ARTIFACTS`).
//!
//! Skipped, loudly, when chromium or chromium-driver is missing, unless `PF_REQUIRE_BROWSER=1`
//! (`deploy/local/test` sets it and installs them): then it fails.

use std::time::Duration;

use phonefarm_testkit::coordinator::app::{TestApp, spawn_app};
use phonefarm_testkit::wait_until;
use phonefarm_testkit::webdriver::{Browser, PAGE_WAIT};

async fn seed(app: &TestApp) {
    sqlx::query(
        "INSERT INTO agents (agent_id, version, host, online, last_seen_at, phone_count) \
         VALUES ('rack-1', '0.1.0', 'host-1', true, now(), 1)",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO phones (phone_id, agent_id, state, model, battery_level, temperature_c, \
         app_version, last_seen_at) VALUES ('ph-live', 'rack-1', 'online', 'Pixel 7', 80, 31.0, \
         '34.1.2', now())",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn sign_in_watch_a_phone_go_offline_live_and_disable_it() {
    if !Browser::available("sign_in_watch_a_phone_go_offline_live_and_disable_it") {
        return;
    }
    let app = spawn_app().await;
    seed(&app).await;
    let d = Browser::start().await;

    d.sign_in(&app.base, &app.admin_key).await;
    let cookie = d.script("return document.cookie").await;
    assert_eq!(
        cookie, "",
        "the HttpOnly session cookie is not readable by scripts"
    );
    let stored = d
        .script("return JSON.stringify(sessionStorage) + JSON.stringify(localStorage)")
        .await;
    assert!(
        !stored.as_str().unwrap().contains(&app.admin_key),
        "the key is not kept in the browser: {stored}"
    );
    assert_eq!(
        d.attribute("#phone-ph-live", "data-state").await.as_deref(),
        Some("online")
    );
    d.screenshot("fleet-online").await;

    // The agent drops out; the page changes without a reload (the marker survives).
    d.script("window.__noReload = 42; return null").await;
    sqlx::query("UPDATE agents SET online = false WHERE agent_id = 'rack-1'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    d.wait_attribute("#phone-ph-live", "data-state", "offline", PAGE_WAIT)
        .await;
    assert_eq!(
        d.script("return window.__noReload").await,
        42,
        "no reload happened"
    );
    d.screenshot("fleet-offline-live").await;

    d.go(&format!("{}/ui/phones/ph-live", app.base)).await;
    d.click("button[value=disable]").await;
    let pool = app.db.pool.clone();
    wait_until("the phone disabled", Duration::from_secs(15), || {
        let pool = pool.clone();
        async move {
            !sqlx::query_scalar::<_, bool>("SELECT enabled FROM phones WHERE phone_id = 'ph-live'")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    })
    .await;
    d.wait_script(
        "the page showing it disabled",
        "return document.body.innerText.includes('disabled')",
        PAGE_WAIT,
    )
    .await;
    d.screenshot("phone-disabled").await;
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'phone.disable' AND target = 'ph-live'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);

    // The check below can fail: a request that fails is reported (then drained).
    let status = d
        .wait_script(
            "a fetch of a missing asset answered",
            "if (window.__probe === undefined) { window.__probe = 0;
                 fetch('/ui/assets/missing.css').then(r => window.__probe = r.status,
                                                       e => window.__probe = String(e)); }
             return window.__probe",
            PAGE_WAIT,
        )
        .await;
    assert_eq!(status, 404);
    let seen = d.problems().await;
    assert!(
        seen.iter().any(|p| p.to_string().contains("missing.css")),
        "a failed request is seen: {seen:#?}"
    );
    let problems = d.problems().await;
    assert!(
        problems.is_empty(),
        "the browser logged errors or failed requests: {problems:#?}"
    );
    d.quit().await;
}
