//! A console client over plain HTTP (or HTTPS with the client given): signs in with an API
//! key, keeps the session cookie, follows no redirects (tests look at them), reads the CSRF
//! token from a page's hidden field and posts forms.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};

/// A client that follows no redirects.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A signed-in browser: the session cookie and the client that got it.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    /// `pf_session=<id>`.
    pub cookie: String,
}

/// Posts `key` to `/ui/sign-in` of `base` with `http`; the raw answer.
pub async fn sign_in_raw(http: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    http.post(format!("{base}/ui/sign-in"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("key", key)]))
        .send()
        .await
        .unwrap()
}

impl Browser {
    /// Signs in at `base` with `key` (asserting the redirect to the console).
    pub async fn sign_in(base: &str, key: &str) -> Browser {
        Self::sign_in_with(no_redirects(), base, key).await
    }

    /// As [`Browser::sign_in`] with a client of the caller's (one that trusts a test CA).
    pub async fn sign_in_with(http: reqwest::Client, base: &str, key: &str) -> Browser {
        let r = sign_in_raw(&http, base, key).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign-in refused");
        let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        Browser {
            http,
            base: base.into(),
            cookie,
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Posts a form; the status, the `Location` (if any) and the body.
    pub async fn post(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(pairs))
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        (r.status(), location, r.text().await.unwrap())
    }

    /// The session's CSRF token, read from a page's hidden field.
    pub async fn csrf(&self) -> String {
        let (_, page) = self.get("/ui/fleet").await;
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        page[at..].split('"').next().unwrap().to_string()
    }
}
