//! The console in a real browser: Debian's chromium driven by chromium-driver over the W3C
//! WebDriver protocol (plain HTTP with reqwest), against a real coordinator and Postgres. Signs
//! in, sees a phone go offline live (no reload), disables it from its page, and checks that the
//! browser logged no error (a CSP violation would be one). Screenshots are saved under
//! `<target dir>/console-screenshots/`.
//!
//! Skipped, saying so, when `/usr/bin/chromedriver` is missing; `deploy/local/test` installs it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use phonefarm_testkit::coordinator::app::{TestApp, spawn_app};
use phonefarm_testkit::{eventually, free_port, wait_for, wait_until};
use serde_json::{Value, json};

const DRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    child: Child,
    http: reqwest::Client,
    session: String,
    base: String,
}

impl Drop for Driver {
    /// Ends chromedriver and the browser it started (its process group), also after a panic.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let child = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut d = Driver {
            child,
            http,
            session: String::new(),
            base,
        };
        let (http, status) = (d.http.clone(), format!("{}/status", d.base));
        wait_until("chromedriver ready", Duration::from_secs(20), || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                match http.get(&status).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["value"]["ready"] == true),
                    Err(_) => false,
                }
            }
        })
        .await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900"]},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let r = d.raw("POST", "/session", Some(caps)).await;
        d.session = r["sessionId"].as_str().expect("a session id").to_string();
        d
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            v["value"]["error"].is_null(),
            "WebDriver {method} {path}: {v}"
        );
        v["value"].clone()
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The element `css` selects, if there is one now.
    async fn find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/elements", self.base, self.session);
        let v: Value = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        // A W3C element reference is an object with one entry (the element key).
        let reference = v["value"].as_array()?.first()?.as_object()?;
        reference.values().next()?.as_str().map(String::from)
    }

    async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let id = self.find(css).await?;
        let url = format!(
            "{}/session/{}/element/{id}/attribute/{name}",
            self.base, self.session
        );
        let v: Value = self.http.get(url).send().await.ok()?.json().await.ok()?;
        v["value"].as_str().map(String::from)
    }

    async fn script(&self, js: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    async fn screenshot(&self, name: &str) {
        let png = self.cmd("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        println!("screenshot: {}", path.display());
    }

    /// The browser's console messages of level SEVERE (errors, failed requests, CSP).
    async fn errors(&self) -> Vec<Value> {
        let log = self
            .cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .await;
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .cloned()
            .collect()
    }
}

fn artifacts() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Path::new(&target).join("console-screenshots")
}

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
    if !Path::new(DRIVER).exists() || !Path::new(CHROMIUM).exists() {
        println!(
            "skipped: {DRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let app = spawn_app().await;
    seed(&app).await;
    let d = Driver::start().await;

    d.go(&format!("{}/ui/fleet", app.base)).await;
    assert!(
        d.url().await.ends_with("/ui/sign-in"),
        "sent to sign in first"
    );
    let key = d.find("input[name=key]").await.expect("the key field");
    d.cmd(
        "POST",
        &format!("/element/{key}/value"),
        Some(json!({"text": app.admin_key})),
    )
    .await;
    let submit = d.find("form.signin button").await.unwrap();
    d.cmd("POST", &format!("/element/{submit}/click"), None)
        .await;
    let signed_in = eventually(Duration::from_secs(15), || async {
        d.url().await.ends_with("/ui/fleet")
    })
    .await;
    assert!(
        signed_in,
        "not on the fleet page: {} {}",
        d.url().await,
        d.script("return document.body.innerText").await
    );
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
    wait_for(
        "the phone shown offline",
        Duration::from_secs(15),
        async || {
            (d.attribute("#phone-ph-live", "data-state").await.as_deref() == Some("offline"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        d.script("return window.__noReload").await,
        42,
        "no reload happened"
    );
    d.screenshot("fleet-offline-live").await;

    d.go(&format!("{}/ui/phones/ph-live", app.base)).await;
    let disable = d
        .find("button[value=disable]")
        .await
        .expect("a disable button");
    d.cmd("POST", &format!("/element/{disable}/click"), None)
        .await;
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
    wait_for("the page showing it", Duration::from_secs(15), async || {
        let text = d.script("return document.body.innerText").await;
        text.as_str()
            .is_some_and(|t| t.contains("disabled"))
            .then_some(())
    })
    .await;
    d.screenshot("phone-disabled").await;
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'phone.disable' AND target = 'ph-live'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);

    let errors = d.errors().await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    d.cmd("DELETE", "", None).await;
}
