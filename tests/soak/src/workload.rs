//! The steady mixed workload: every capability (keyword_warmup, fyp_warmup, maintenance and
//! legacy post_video), group fan-out, cancels of each strategy and duplicate requests, sent
//! through either coordinator replica, failing over to the other (same request id) until one
//! answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::Rng;
use crate::checker::{Post, Request};
use crate::topology::{PHONES, now_ms};

/// What the workload needs of the system (cloned into its task).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub bases: Vec<String>,
    pub key: String,
    pub callback_url: String,
    pub video_url: String,
}

#[derive(Default)]
pub struct Record {
    pub requests: Vec<Request>,
    pub posts: Vec<Post>,
    /// (request id, path, body) of what was sent, for duplicates.
    sent: Vec<(String, String, Value)>,
    pub cancels: Vec<(String, String)>,
}

impl Api {
    /// POSTs until a replica answers other than 5xx (or 60 s pass): (status, body).
    pub async fn post(&self, rng_start: usize, path: &str, body: &Value) -> Option<(u16, Value)> {
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut i = rng_start;
        loop {
            let base = &self.bases[i % self.bases.len()];
            i += 1;
            let r = self
                .http
                .post(format!("{base}{path}"))
                .bearer_auth(&self.key)
                .json(body)
                .send()
                .await;
            if let Ok(r) = r {
                let s = r.status().as_u16();
                if s < 500 && s != 429 {
                    return Some((s, r.json().await.unwrap_or(Value::Null)));
                }
            }
            if tokio::time::Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Option<Value> {
        for base in &self.bases {
            let r = self
                .http
                .get(format!("{base}{path}"))
                .bearer_auth(&self.key)
                .send()
                .await;
            if let Ok(r) = r
                && r.status().is_success()
            {
                return r.json().await.ok();
            }
        }
        None
    }
}

fn request(
    api: &Api,
    id: &str,
    capability: &str,
    mode: &str,
    target: Value,
    inputs: Value,
) -> Value {
    json!({
        "request_id": id, "capability": capability, "mode": mode, "target": target,
        "inputs": inputs, "callback": {"url": api.callback_url}, "requested_by": {"system": "soak"}
    })
}

/// Sends requests at a steady rate until `stop`.
pub async fn run(
    api: Api,
    seed: u64,
    record: Arc<Mutex<Record>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut rng = Rng::new(seed ^ 0x5eed_0001);
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1500));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        let id = format!("soak-{seed}-{n}");
        let acc = |r: &mut Rng| format!("acc-{}", 2 + r.below(PHONES as u64 - 1));
        let roll = rng.below(100);
        let start = rng.below(2) as usize;
        let (kind, path, body) = match roll {
            0..=29 => (
                "keyword_warmup",
                "/capability-requests/enqueue",
                request(
                    &api,
                    &id,
                    "keyword_warmup",
                    "unattended",
                    json!({"routing": "queue", "account_id": acc(&mut rng)}),
                    json!({"keywords": ["fitness"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 2}}),
                ),
            ),
            30..=39 => {
                let mut accs: Vec<String> = (0..3).map(|_| acc(&mut rng)).collect();
                accs.sort();
                accs.dedup();
                (
                    "group",
                    "/capability-requests/enqueue",
                    request(
                        &api,
                        &id,
                        "keyword_warmup",
                        "unattended",
                        json!({"routing": "group", "account_ids": accs}),
                        json!({"keywords": ["cooking"], "videos_per_keyword": 1, "watch_seconds": {"min": 1, "max": 2}}),
                    ),
                )
            }
            40..=49 => (
                "maintenance",
                "/maintenance/requests",
                json!({
                "request_id": id, "account_id": acc(&mut rng),
                "inputs": {"steps": [{"action": "edit_profile", "params": {"bio": format!("soak {n}")}}]},
                "callback": {"url": api.callback_url}, "requested_by": {"system": "soak"}}),
            ),
            // fyp_warmup runs 60 s and only on the attended SIM0001: one in fifty.
            50..=51 => (
                "fyp_warmup",
                "/capability-requests/enqueue",
                request(
                    &api,
                    &id,
                    "fyp_warmup",
                    "manual",
                    json!({"routing": "direct", "phone_id": "SIM0001", "account_id": "acc-1"}),
                    json!({"duration_seconds": 60, "watch_seconds": {"min": 1, "max": 2}, "judge_prompt": "fitness"}),
                ),
            ),
            52..=68 => {
                let cid = format!("soak-{seed}-post-{n}");
                let body = json!({"content_id": cid, "account_id": acc(&mut rng),
                    "video_path": api.video_url, "caption": format!("soak {cid} #soak")});
                let answer = api.post(start, "/ingest", &body).await;
                let qid = answer
                    .as_ref()
                    .and_then(|(_, b)| b["queue_item_id"].as_str().map(String::from));
                let mut r = record.lock().unwrap_or_else(|e| e.into_inner());
                r.posts.push(Post {
                    content_id: cid,
                    queue_item_id: qid,
                    final_state: String::new(),
                });
                continue;
            }
            69..=84 => {
                let strategy = ["soft", "hard", "soft_then_force"][rng.below(3) as usize];
                (
                    if strategy == "soft" {
                        "cancel:soft"
                    } else if strategy == "hard" {
                        "cancel:hard"
                    } else {
                        "cancel:soft_then_force"
                    },
                    "/capability-requests/enqueue",
                    request(
                        &api,
                        &id,
                        "keyword_warmup",
                        "unattended",
                        json!({"routing": "queue", "account_id": acc(&mut rng)}),
                        json!({"keywords": ["travel", "food"], "videos_per_keyword": 3, "watch_seconds": {"min": 4, "max": 8}}),
                    ),
                )
            }
            _ => {
                let again = {
                    let r = record.lock().unwrap_or_else(|e| e.into_inner());
                    if r.sent.is_empty() {
                        None
                    } else {
                        Some(r.sent[rng.below(r.sent.len() as u64) as usize].clone())
                    }
                };
                let Some((rid, path, body)) = again else {
                    continue;
                };
                let answer = api.post(start, &path, &body).await;
                let pid = answer.and_then(|(_, b)| b["process_id"].as_str().map(String::from));
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .requests
                    .push(Request {
                        request_id: rid,
                        kind: "duplicate".into(),
                        process_id: pid,
                        duplicate: true,
                        sent_ms: now_ms(),
                    });
                continue;
            }
        };
        let sent_ms = now_ms();
        let answer = api.post(start, path, &body).await;
        let pid = answer
            .as_ref()
            .filter(|(s, _)| (200..300).contains(s))
            .and_then(|(_, b)| b["process_id"].as_str().map(String::from));
        if answer.is_none() {
            tracing::warn!(request_id = %id, "no replica answered for 60 s");
        }
        if let Some(p) = &pid
            && let Some(strategy) = kind.strip_prefix("cancel:")
        {
            let (api, p, strategy) = (api.clone(), p.clone(), strategy.to_string());
            let after = Duration::from_millis(2000 + rng.below(6000));
            let rec = Arc::clone(&record);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let mut body = json!({"reason": "soak", "requested_by": {"system": "soak"}, "strategy": strategy});
                if strategy == "soft_then_force" {
                    body["force_after_seconds"] = json!(5);
                }
                let answer = api.post(0, &format!("/processes/{p}/cancel"), &body).await;
                let status = answer
                    .map(|(s, _)| s.to_string())
                    .unwrap_or_else(|| "no answer".into());
                rec.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .cancels
                    .push((p, status));
            });
        }
        let mut r = record.lock().unwrap_or_else(|e| e.into_inner());
        r.requests.push(Request {
            request_id: id.clone(),
            kind: kind.into(),
            process_id: pid,
            duplicate: false,
            sent_ms,
        });
        r.sent.push((id, path.to_string(), body));
    }
}
