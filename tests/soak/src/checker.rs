//! The checker: Phonefarm's promises, verified over the whole history of a soak once the
//! system is quiet. Pure: it reads a [`History`] (what the workload sent and was answered,
//! what the callback receiver got, what the simulated phones did, what Postgres holds at the
//! end) and returns every violated promise, each with the ids it concerns.

use std::collections::{BTreeMap, BTreeSet};

/// Terminal process statuses.
pub const TERMINAL: [&str; 3] = ["completed", "failed_terminal", "cancelled"];

/// One request the workload sent.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub request_id: String,
    /// What it was (`keyword_warmup`, `group`, `cancel:soft`, `post_video`, ...).
    pub kind: String,
    /// The process the API answered with (None: refused, or no answer).
    pub process_id: Option<String>,
    /// Sent again with the same request id: it must get the same process.
    pub duplicate: bool,
    pub sent_ms: i64,
}

/// A callback the receiver got.
#[derive(Debug, Clone, Default)]
pub struct Callback {
    pub process_id: String,
    /// Every delivery of one event carries its id (at least once: it may come twice).
    pub event_id: String,
    /// When the coordinator emitted it (RFC 3339, milliseconds, UTC: sorts as text).
    pub emitted_at: String,
    pub sequence: i64,
    pub status: String,
    pub received_ms: i64,
}

/// A legacy `post_video` (`POST /ingest`).
#[derive(Debug, Clone, Default)]
pub struct Post {
    pub content_id: String,
    /// The queue item the ingest answer named.
    pub queue_item_id: Option<String>,
    /// The item's final state (`DONE`, `DEAD_LETTER`, `CANCELLED`, ...).
    pub final_state: String,
}

/// A queue item at the end.
#[derive(Debug, Clone, Default)]
pub struct Item {
    pub queue_item_id: String,
    pub state: String,
    /// `finished` events with outcome completed, over all its attempts.
    pub completions: i64,
    /// EXECUTING or CLAIMED with no lease in the future.
    pub executing_without_lease: bool,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    pub requests: Vec<Request>,
    /// Final `GET /processes/{id}`: its status.
    pub processes: BTreeMap<String, String>,
    pub callbacks: Vec<Callback>,
    pub posts: Vec<Post>,
    /// Captions (each holds the content id) of every video the phones posted.
    pub posted_captions: Vec<String>,
    pub items: Vec<Item>,
    pub outbox_unpublished: i64,
}

/// A broken promise and what it concerns (a process, request or item id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub promise: &'static str,
    pub subject: String,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.promise, self.subject, self.detail)
    }
}

pub fn check(h: &History) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut bad = |promise: &'static str, subject: &str, detail: String| {
        v.push(Violation {
            promise,
            subject: subject.to_string(),
            detail,
        })
    };

    // Accepted requests reach a terminal status; duplicates get the same process.
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    for r in h.requests.iter().filter(|r| !r.duplicate) {
        if let Some(p) = &r.process_id {
            first.insert(&r.request_id, p);
            match h.processes.get(p) {
                Some(status) if TERMINAL.contains(&status.as_str()) => {}
                Some(status) => bad(
                    "every accepted request terminal",
                    p,
                    format!("{} is {status}", r.request_id),
                ),
                None => bad(
                    "every accepted request terminal",
                    p,
                    format!("{}: GET /processes gave nothing", r.request_id),
                ),
            }
        }
    }
    for r in h.requests.iter().filter(|r| r.duplicate) {
        if let (Some(p), Some(orig)) = (&r.process_id, first.get(r.request_id.as_str()))
            && p != orig
        {
            bad(
                "duplicates get the same process",
                &r.request_id,
                format!("first {orig}, then {p}"),
            );
        }
    }

    // No item completed twice; no item left running without a lease.
    for i in &h.items {
        if i.completions > 1 {
            bad(
                "no item completed twice",
                &i.queue_item_id,
                format!("{} completed runs", i.completions),
            );
        }
        if i.executing_without_lease {
            bad(
                "nothing executing without a live lease",
                &i.queue_item_id,
                format!("state {}", i.state),
            );
        }
    }

    // Completed posts posted exactly once; nothing else posted.
    let mut posted: BTreeMap<&str, usize> = BTreeMap::new();
    for caption in &h.posted_captions {
        let owner = h
            .posts
            .iter()
            .find(|p| caption.split_whitespace().any(|w| w == p.content_id))
            .map(|p| p.content_id.as_str());
        match owner {
            Some(c) => *posted.entry(c).or_default() += 1,
            None => bad(
                "nothing posted that was not asked",
                caption,
                "no post_video has this caption".into(),
            ),
        }
    }
    for p in &h.posts {
        let n = posted.get(p.content_id.as_str()).copied().unwrap_or(0);
        if p.final_state == "DONE" && n != 1 {
            bad(
                "a completed post_video posted exactly once",
                &p.content_id,
                format!("posted {n} times"),
            );
        }
        if p.final_state != "DONE" && n > 1 {
            bad(
                "a post_video posted at most once",
                &p.content_id,
                format!("{} and posted {n} times", p.final_state),
            );
        }
    }

    // Callbacks: strictly increasing sequence per process, the last one matches the process,
    // each terminal process's last state delivered after the receiver came back.
    let mut by_process: BTreeMap<&str, Vec<&Callback>> = BTreeMap::new();
    for c in &h.callbacks {
        by_process.entry(&c.process_id).or_default().push(c);
    }
    let wanted: BTreeSet<&str> = first.values().copied().collect();
    for (p, cbs) in &by_process {
        // Deliveries are concurrent and at least once: receivers order by `sequence`. So, per
        // process and once per event, in the order emitted, sequences strictly increase (and
        // no two events share one).
        let mut events: Vec<&Callback> = Vec::new();
        for c in cbs.iter() {
            if !events.iter().any(|e| e.event_id == c.event_id) {
                events.push(c);
            }
        }
        events.sort_by(|a, b| (&a.emitted_at, a.sequence).cmp(&(&b.emitted_at, b.sequence)));
        for w in events.windows(2) {
            if w[1].sequence <= w[0].sequence {
                bad(
                    "callback sequence increasing",
                    p,
                    format!(
                        "#{} {} emitted {} after #{} {} emitted {}",
                        w[1].sequence,
                        w[1].status,
                        w[1].emitted_at,
                        w[0].sequence,
                        w[0].status,
                        w[0].emitted_at
                    ),
                );
            }
        }
    }
    for p in &wanted {
        let Some(status) = h.processes.get(*p) else {
            continue;
        };
        if !TERMINAL.contains(&status.as_str()) {
            continue;
        }
        let cbs = by_process.get(p).map(Vec::as_slice).unwrap_or_default();
        match cbs.iter().max_by_key(|c| c.sequence) {
            None => bad(
                "every callback delivered",
                p,
                format!("none received; it is {status}"),
            ),
            Some(c) if c.status != *status => bad(
                "the last callback matches GET /processes/{id}",
                p,
                format!(
                    "last callback #{} {}, the process {status}",
                    c.sequence, c.status
                ),
            ),
            Some(_) => {}
        }
    }

    if h.outbox_unpublished > 0 {
        bad(
            "no outbox row left unpublished",
            "outbox",
            format!("{} rows", h.outbox_unpublished),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One completed process with its callbacks, one completed post posted once.
    fn good() -> History {
        let mut h = History::default();
        h.requests.push(Request {
            request_id: "r1".into(),
            kind: "keyword_warmup".into(),
            process_id: Some("p1".into()),
            ..Default::default()
        });
        h.requests.push(Request {
            request_id: "r1".into(),
            kind: "keyword_warmup".into(),
            process_id: Some("p1".into()),
            duplicate: true,
            ..Default::default()
        });
        h.processes.insert("p1".into(), "completed".into());
        for (s, st) in [(1, "queued"), (2, "executing"), (3, "completed")] {
            h.callbacks.push(Callback {
                process_id: "p1".into(),
                event_id: format!("e{s}"),
                emitted_at: format!("2026-01-01T00:00:0{s}.000Z"),
                sequence: s,
                status: st.into(),
                received_ms: s,
            });
        }
        h.posts.push(Post {
            content_id: "c-1".into(),
            queue_item_id: Some("i2".into()),
            final_state: "DONE".into(),
        });
        h.posted_captions.push("soak c-1".into());
        h.items.push(Item {
            queue_item_id: "i1".into(),
            state: "DONE".into(),
            completions: 1,
            executing_without_lease: false,
        });
        h
    }

    fn promises(h: &History) -> Vec<&'static str> {
        check(h).into_iter().map(|v| v.promise).collect()
    }

    #[test]
    fn a_good_history_passes() {
        assert_eq!(check(&good()), vec![]);
    }

    #[test]
    fn a_double_post_fails() {
        let mut h = good();
        h.posted_captions.push("soak c-1".into());
        assert_eq!(
            promises(&h),
            vec!["a completed post_video posted exactly once"]
        );
    }

    #[test]
    fn a_caption_counts_for_its_own_post_only() {
        let mut h = good();
        h.posts.push(Post {
            content_id: "c-10".into(),
            queue_item_id: None,
            final_state: "DONE".into(),
        });
        h.posted_captions.push("soak c-10".into());
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn a_post_nobody_asked_for_fails() {
        let mut h = good();
        h.posted_captions.push("soak c-9".into());
        assert_eq!(promises(&h), vec!["nothing posted that was not asked"]);
    }

    #[test]
    fn a_lost_callback_fails() {
        let mut h = good();
        h.callbacks.pop();
        assert_eq!(
            promises(&h),
            vec!["the last callback matches GET /processes/{id}"]
        );
        h.callbacks.clear();
        assert_eq!(promises(&h), vec!["every callback delivered"]);
    }

    #[test]
    fn a_backwards_sequence_fails() {
        let mut h = good();
        // Delivered out of order (and one twice) is fine: receivers order by sequence.
        h.callbacks.swap(0, 1);
        h.callbacks.push(h.callbacks[0].clone());
        assert_eq!(check(&h), vec![]);
        // Emitted later with a lower sequence is not.
        h.callbacks[0].emitted_at = "2026-01-01T00:00:09.000Z".into();
        assert_eq!(promises(&h), vec!["callback sequence increasing"]);
    }

    #[test]
    fn a_stuck_item_or_process_fails() {
        let mut h = good();
        h.items[0].state = "EXECUTING".into();
        h.items[0].executing_without_lease = true;
        h.processes.insert("p1".into(), "executing".into());
        let p = promises(&h);
        assert!(
            p.contains(&"nothing executing without a live lease"),
            "{p:?}"
        );
        assert!(p.contains(&"every accepted request terminal"), "{p:?}");
    }

    #[test]
    fn a_duplicate_with_another_process_or_a_double_completion_fails() {
        let mut h = good();
        h.requests[1].process_id = Some("p2".into());
        h.items[0].completions = 2;
        h.outbox_unpublished = 1;
        assert_eq!(
            promises(&h),
            vec![
                "duplicates get the same process",
                "no item completed twice",
                "no outbox row left unpublished"
            ]
        );
    }
}
