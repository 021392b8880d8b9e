//! The benchmark's figures for one phase of the run (`--calm-minutes`: the workload without
//! the nemesis first, then under it): processes completed per minute and the time from
//! enqueue to the `completed` callback, by the requests sent in the phase. Pure, tested.

use crate::checker::{Callback, Request};

/// Figures of the requests sent in `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Processes created in the phase (first sends; not duplicates, not cancels).
    pub created: usize,
    /// Of those, how many completed (a `completed` callback arrived).
    pub completed: usize,
    /// `completed` per minute of the phase.
    pub per_minute: f64,
    /// Enqueue to the first `completed` callback received, p50 and p99 (ms).
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

/// The figures of one phase.
pub fn phase(requests: &[Request], callbacks: &[Callback], from_ms: i64, to_ms: i64) -> Phase {
    let mut latencies: Vec<i64> = Vec::new();
    let mut created = 0;
    for r in requests.iter().filter(|r| {
        !r.duplicate && !r.kind.starts_with("cancel") && r.sent_ms >= from_ms && r.sent_ms < to_ms
    }) {
        let Some(pid) = &r.process_id else { continue };
        created += 1;
        let done = callbacks
            .iter()
            .filter(|c| &c.process_id == pid && c.status == "completed")
            .map(|c| c.received_ms)
            .min();
        if let Some(at) = done {
            latencies.push((at - r.sent_ms).max(0));
        }
    }
    latencies.sort_unstable();
    let minutes = (to_ms - from_ms).max(1) as f64 / 60_000.0;
    Phase {
        created,
        completed: latencies.len(),
        per_minute: latencies.len() as f64 / minutes,
        p50_ms: percentile(&latencies, 50),
        p99_ms: percentile(&latencies, 99),
    }
}

/// The `p`th percentile of sorted values (nearest rank).
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, kind: &str, sent_ms: i64, duplicate: bool) -> Request {
        Request {
            request_id: id.into(),
            kind: kind.into(),
            process_id: Some(format!("p-{id}")),
            duplicate,
            sent_ms,
        }
    }

    fn cb(id: &str, status: &str, received_ms: i64) -> Callback {
        Callback {
            process_id: format!("p-{id}"),
            status: status.into(),
            received_ms,
            ..Callback::default()
        }
    }

    #[test]
    fn a_phase_counts_its_own_completed_processes_and_their_latency() {
        let requests = vec![
            req("a", "keyword_warmup", 1_000, false),
            req("b", "maintenance", 2_000, false),
            req("a", "duplicate", 2_500, true),
            req("c", "cancel:soft", 3_000, false),
            req("d", "keyword_warmup", 70_000, false), // the next phase
            req("e", "group", 4_000, false),           // never completed
        ];
        let callbacks = vec![
            cb("a", "executing", 1_500),
            cb("a", "completed", 11_000),
            cb("a", "completed", 12_000), // redelivered: the first counts
            cb("b", "completed", 32_000),
            cb("c", "completed", 5_000),
            cb("d", "completed", 71_000),
            cb("e", "failed_terminal", 9_000),
        ];
        let p = phase(&requests, &callbacks, 0, 60_000);
        assert_eq!(
            p.created, 3,
            "a, b and e; not the duplicate, the cancel or d"
        );
        assert_eq!(p.completed, 2);
        assert!((p.per_minute - 2.0).abs() < 1e-9);
        assert_eq!(p.p50_ms, Some(10_000));
        assert_eq!(p.p99_ms, Some(30_000));
        let next = phase(&requests, &callbacks, 60_000, 120_000);
        assert_eq!(
            (next.created, next.completed, next.p99_ms),
            (1, 1, Some(1_000))
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<i64> = (1..=200).collect();
        assert_eq!(percentile(&v, 50), Some(100));
        assert_eq!(percentile(&v, 99), Some(198));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
