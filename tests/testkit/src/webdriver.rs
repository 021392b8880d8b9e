//! Debian's chromium driven by chromium-driver over the W3C WebDriver protocol (plain HTTP
//! with reqwest, no WebDriver crate): the one browser helper of the console's browser tests
//! (`coordinator/tests/console_browser.rs`, and the whole-system scenario in
//! `tests/e2e/tests/system/console.rs`).
//!
//! - [`Browser::available`]: whether `/usr/bin/chromium` and `/usr/bin/chromedriver` are there;
//!   a test skips without them, saying so loudly, unless `PF_REQUIRE_BROWSER=1`
//!   (`deploy/local/test` sets it), where a missing browser fails the test.
//! - [`Browser::start`]: chromedriver on a free port in its own process group (killed with the
//!   browser on drop, also after a panic), one headless session with the browser log and the
//!   performance (network) log enabled; a navigation slower than [`PAGE_LOAD`] fails.
//! - Waits on the page ([`Browser::wait_attribute`], [`Browser::wait_script`]) poll with a
//!   deadline; nothing sleeps as synchronisation.
//! - [`Browser::problems`]: console errors (level `SEVERE`, which includes CSP violations and
//!   failed resource loads) and failed requests from the performance log (a response of 400 or
//!   more, or a load that failed and was not cancelled by the browser leaving the page, as a
//!   live page's event stream is on navigation).
//! - [`Browser::screenshot`]: a PNG under `$PF_ARTIFACTS`, or `<target dir>/console-screenshots`,
//!   whose path is printed.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::{free_port, wait_for, wait_until};

pub const DRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a navigation may take before the WebDriver command fails (chromedriver's default
/// is 300 s, which would hide a page stalled behind the browser's connection limit).
pub const PAGE_LOAD: Duration = Duration::from_secs(10);

/// How long a page condition is awaited by default.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

/// One chromedriver and its browser session.
pub struct Browser {
    child: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    /// What the performance log (drained on each read) told so far.
    network: Mutex<Network>,
}

#[derive(Default)]
struct Network {
    /// Request id → URL, from `Network.requestWillBeSent`.
    urls: HashMap<String, String>,
    /// Failed requests not yet reported by [`Browser::problems`].
    failed: Vec<Value>,
    /// Loads the browser cancelled itself (a live page's event stream when it navigates).
    cancelled: usize,
}

impl Drop for Browser {
    /// Ends chromedriver and the browser it started (its process group), also after a panic.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Whether the browser is installed. Without it, `false` after saying loudly that `test`
    /// is skipped; with `PF_REQUIRE_BROWSER=1`, a panic (the test fails).
    pub fn available(test: &str) -> bool {
        let missing: Vec<&str> = [DRIVER, CHROMIUM]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if missing.is_empty() {
            return true;
        }
        let required = std::env::var("PF_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "PF_REQUIRE_BROWSER=1 but {} missing (apt-get install chromium chromium-driver)",
            missing.join(" and ")
        );
        // Straight to the stderr stream: the test harness captures `eprintln!` of tests that
        // pass, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: {} missing (apt-get install chromium chromium-driver; \
             PF_REQUIRE_BROWSER=1 makes this a failure) ***\n",
            missing.join(" and ")
        );
        false
    }

    /// Starts chromedriver and one headless chromium session (1280x900).
    pub async fn start() -> Browser {
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
            .expect("an http client");
        let mut b = Browser {
            child,
            http,
            session: String::new(),
            base: format!("http://127.0.0.1:{port}"),
            network: Mutex::default(),
        };
        let (http, status) = (b.http.clone(), format!("{}/status", b.base));
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
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}
        }}});
        let r = b.raw("POST", "/session", Some(caps)).await;
        b.session = r["sessionId"].as_str().expect("a session id").to_string();
        // A console page that takes longer than this to load is a failure, not a wait.
        let page_load = PAGE_LOAD.as_millis() as u64;
        b.cmd("POST", "/timeouts", Some(json!({"pageLoad": page_load})))
            .await;
        b
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let v: Value = req
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("chromedriver answers JSON");
        assert!(
            v["value"]["error"].is_null(),
            "WebDriver {method} {path}: {v}"
        );
        v["value"].clone()
    }

    /// A command of this session (`path` below `/session/<id>`); a WebDriver error panics.
    pub async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    /// Navigates to `url` and waits until the page has loaded.
    pub async fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        let v = self.cmd("GET", "/url", None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The element `css` selects, if there is one now.
    pub async fn find(&self, css: &str) -> Option<String> {
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

    /// How many elements `css` selects now.
    pub async fn count(&self, css: &str) -> usize {
        let js = format!(
            "return document.querySelectorAll({}).length",
            Value::from(css)
        );
        self.script(&js).await.as_u64().unwrap_or(0) as usize
    }

    /// Attribute `name` of the element `css` selects, if both exist now. Read in the page in
    /// one step: a live part swapped in between a find and a read would leave a stale element.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let js = format!(
            "const e = document.querySelector({}); return e ? e.getAttribute({}) : null",
            Value::from(css),
            Value::from(name)
        );
        self.script(&js).await.as_str().map(String::from)
    }

    /// Waits until the element `css` has attribute `name` = `want`.
    pub async fn wait_attribute(&self, css: &str, name: &str, want: &str, deadline: Duration) {
        let last = Mutex::new(None);
        let found = crate::eventually(deadline, || async {
            let now = self.attribute(css, name).await;
            let hit = now.as_deref() == Some(want);
            *last.lock().expect("lock") = now;
            hit
        })
        .await;
        let last = last.into_inner().expect("lock");
        assert!(
            found,
            "timed out after {deadline:?} waiting for {css} [{name}={want}]; last {last:?}; \
             page: {}",
            self.text().await
        );
    }

    /// Clicks the element `css` selects (a WebDriver click: the browser's own mouse events),
    /// again if a live part replaced the element between the find and the click.
    pub async fn click(&self, css: &str) {
        wait_for(&format!("a click on {css}"), PAGE_WAIT, async || {
            let id = self.find(css).await?;
            let url = format!("{}/session/{}/element/{id}/click", self.base, self.session);
            let r = self.http.post(url).json(&json!({})).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            match v["value"]["error"].as_str() {
                None => Some(()),
                Some("stale element reference") => None,
                Some(e) => panic!("click on {css}: {e}: {v}"),
            }
        })
        .await;
    }

    /// Types `text` into the element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self
            .find(css)
            .await
            .unwrap_or_else(|| panic!("no element {css} to type into"));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Runs `js` (a function body) in the page and returns its value.
    pub async fn script(&self, js: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Waits until `js` returns something other than `null`, `false`, `0` or `""`, and
    /// returns it.
    pub async fn wait_script(&self, what: &str, js: &str, deadline: Duration) -> Value {
        wait_for(what, deadline, async || {
            let v = self.script(js).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            truthy.then_some(v)
        })
        .await
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        let v = self.script("return document.body.innerText").await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Signs in at `<base>/ui/sign-in` with `key` and waits until the fleet page has loaded.
    pub async fn sign_in(&self, base: &str, key: &str) {
        self.go(&format!("{base}/ui/fleet")).await;
        assert!(
            self.url().await.ends_with("/ui/sign-in"),
            "sent to sign in first: {}",
            self.url().await
        );
        self.type_into("input[name=key]", key).await;
        self.click("form.signin button").await;
        // The URL changes when the navigation commits, before the page has loaded.
        let loaded = crate::eventually(PAGE_WAIT, || async {
            let js =
                "return location.pathname === '/ui/fleet' && document.readyState === 'complete'";
            self.script(js).await == true
        })
        .await;
        assert!(
            loaded,
            "not on the fleet page: {} {}",
            self.url().await,
            self.text().await
        );
    }

    /// Saves a screenshot of the window as `<artifacts>/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.cmd("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("valid base64");
        let dir = artifacts();
        std::fs::create_dir_all(&dir).expect("the artifacts directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write the screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// What went wrong in the browser so far: console messages of level `SEVERE` and failed
    /// requests. Reading drains the browser's logs, so each problem is reported once.
    pub async fn problems(&self) -> Vec<Value> {
        let log = self
            .cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .await;
        let mut out: Vec<Value> = log
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .cloned()
            .collect();
        self.read_network().await;
        out.extend(std::mem::take(
            &mut self.network.lock().expect("lock").failed,
        ));
        out
    }

    /// Loads the browser cancelled itself so far (not failures: a live page's event stream
    /// ends so when the browser leaves the page).
    pub async fn cancelled_requests(&self) -> usize {
        self.read_network().await;
        self.network.lock().expect("lock").cancelled
    }

    /// Reads the performance log: URLs of requests, responses of 400 or more and failed loads.
    async fn read_network(&self) {
        let log = self
            .cmd("POST", "/se/log", Some(json!({"type": "performance"})))
            .await;
        let mut net = self.network.lock().expect("lock");
        for entry in log.as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(m) = entry["message"]
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
            else {
                continue;
            };
            let (method, p) = (&m["message"]["method"], &m["message"]["params"]);
            let id = p["requestId"].as_str().unwrap_or_default().to_string();
            match method.as_str() {
                Some("Network.requestWillBeSent") => {
                    let url = p["request"]["url"].as_str().unwrap_or_default();
                    net.urls.insert(id, url.to_string());
                }
                Some("Network.responseReceived")
                    if p["response"]["status"].as_u64() >= Some(400) =>
                {
                    net.failed
                        .push(json!({"failed_request": p["response"]["url"],
                        "status": p["response"]["status"]}));
                }
                Some("Network.loadingFailed") if p["canceled"] == true => net.cancelled += 1,
                Some("Network.loadingFailed") => {
                    let url = net.urls.get(&id).cloned().unwrap_or_default();
                    net.failed
                        .push(json!({"failed_request": url, "error": p["errorText"]}));
                }
                _ => {}
            }
        }
    }

    /// Ends the session (the browser closes; chromedriver ends on drop).
    pub async fn quit(&self) {
        self.cmd("DELETE", "", None).await;
    }
}

/// Where screenshots go: `$PF_ARTIFACTS`, else `<target dir>/console-screenshots`. The target
/// dir is the one holding the running test binary (`<target>/<profile>/deps/<binary>`), so the
/// screenshots land under the workspace's target whatever the test's working directory (cargo
/// runs each test in its crate's directory, where a relative `target` is not ignored by git).
pub fn artifacts() -> PathBuf {
    if let Some(dir) = std::env::var_os("PF_ARTIFACTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("console-screenshots")
}
