//! Natural batching of concurrent database work: requests that arrive while the workers are
//! busy are served together by one statement (or one transaction) instead of one each.
//!
//! No timer is involved: a worker takes the first waiting request at once, plus whatever else
//! is already queued (up to `max`), so a lone request is not delayed and a burst shares round
//! trips, one pool checkout and one commit. `workers` batches run at the same time.
//!
//! Metrics: `phonefarm_batches_total` and `phonefarm_batched_requests_total`, by `batcher`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, mpsc, oneshot};

type Job<Req, Resp> = (Req, oneshot::Sender<Resp>);

/// Counters of a batcher: how many batches ran and how many requests they served.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub batches: AtomicU64,
    pub requests: AtomicU64,
}

impl BatchStats {
    /// (batches, requests) so far.
    pub fn read(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
    }
}

/// A handle to submit requests; cheap to clone. The workers stop when the last handle is
/// dropped.
pub struct Batcher<Req, Resp> {
    tx: mpsc::Sender<Job<Req, Resp>>,
    stats: Arc<BatchStats>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

/// The batch's workers are gone (the runtime is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl<Req, Resp> Batcher<Req, Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    /// Spawns `workers` tasks on the current runtime. Each keeps a state between its batches
    /// (a held database connection, say): `init` makes it; `run` gets it with a batch of
    /// 1..=`max` requests and hands it back with exactly one response per request, in order.
    pub fn spawn<S, I, F, Fut>(
        name: &'static str,
        workers: usize,
        max: usize,
        init: I,
        run: F,
    ) -> Self
    where
        S: Send + 'static,
        I: Fn() -> S,
        F: Fn(S, Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (S, Vec<Resp>)> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Job<Req, Resp>>(max * workers * 4);
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        let stats = Arc::new(BatchStats::default());
        for _ in 0..workers.max(1) {
            let (rx, run, stats) = (Arc::clone(&rx), Arc::clone(&run), Arc::clone(&stats));
            let mut state = init();
            tokio::spawn(async move {
                loop {
                    let jobs = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { break };
                        let mut jobs = Vec::with_capacity(max.min(16));
                        jobs.push(first);
                        while jobs.len() < max {
                            match rx.try_recv() {
                                Ok(job) => jobs.push(job),
                                Err(_) => break,
                            }
                        }
                        jobs
                    };
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("phonefarm_batches_total", "batcher" => name).increment(1);
                    metrics::counter!("phonefarm_batched_requests_total", "batcher" => name)
                        .increment(jobs.len() as u64);
                    stats
                        .requests
                        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    let (reqs, replies): (Vec<Req>, Vec<_>) = jobs.into_iter().unzip();
                    let n = reqs.len();
                    let (next, resps) = run(state, reqs).await;
                    state = next;
                    if resps.len() != n {
                        tracing::error!(
                            batcher = name,
                            expected = n,
                            got = resps.len(),
                            "batch returned the wrong number of responses"
                        );
                    }
                    // A missing response drops its sender: that caller sees `Closed`.
                    for (reply, resp) in replies.into_iter().zip(resps) {
                        let _ = reply.send(resp);
                    }
                }
            });
        }
        Self { tx, stats }
    }

    /// Submits one request and waits for its response.
    pub async fn call(&self, req: Req) -> Result<Resp, Closed> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((req, reply)).await.map_err(|_| Closed)?;
        rx.await.map_err(|_| Closed)
    }

    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn answers_each_request_in_order_and_batches_a_burst() {
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let b = Batcher::spawn(
            "test",
            1,
            8,
            || (),
            move |(), reqs: Vec<u32>| {
                let mut gate = gate_rx.clone();
                async move {
                    // The first batch waits for the gate so the rest of the burst queues up.
                    let _ = gate.wait_for(|open| *open).await;
                    ((), reqs.into_iter().map(|r| r * 10).collect())
                }
            },
        );
        let calls: Vec<_> = (0..9u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.call(i).await })
            })
            .collect();
        // Wait until every call is queued or taken (deadline, not a sleep).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let queued = |b: &Batcher<u32, u32>| b.tx.max_capacity() - b.tx.capacity();
        while queued(&b) + (b.stats.requests.load(Ordering::Relaxed) as usize) < 9 {
            assert!(tokio::time::Instant::now() < deadline, "calls never queued");
            tokio::task::yield_now().await;
        }
        gate_tx.send(true).unwrap();
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), Ok(i as u32 * 10));
        }
        let (batches, requests) = b.stats().read();
        assert_eq!(requests, 9);
        // The first batch took what was there; the other calls queued and share one batch.
        assert!(batches <= 2, "a queued burst shares batches: {batches}");
    }

    #[tokio::test]
    async fn a_short_batch_answer_closes_only_the_unanswered() {
        let b = Batcher::spawn(
            "test",
            2,
            4,
            || (),
            |(), reqs: Vec<u32>| async move {
                ((), reqs.into_iter().filter(|r| *r != 3).collect::<Vec<_>>())
            },
        );
        assert_eq!(b.call(1).await, Ok(1));
        assert_eq!(b.call(3).await, Err(Closed));
        assert_eq!(b.call(2).await, Ok(2));
    }

    #[tokio::test]
    async fn a_worker_keeps_its_state_between_batches() {
        // The state counts the worker's batches; each answer says which batch served it.
        let b = Batcher::spawn(
            "test",
            1,
            4,
            || 0u32,
            |n, reqs: Vec<u32>| async move { (n + 1, reqs.into_iter().map(|_| n).collect()) },
        );
        for want in 0..3 {
            assert_eq!(b.call(7).await, Ok(want));
        }
    }
}
