//! The delivery loop: claim due rows, POST them concurrently, record every attempt.

use std::sync::Arc;
use std::time::Duration;

use phonefarm_net::{GuardedClient, SendError};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::backoff::Backoff;
use super::signing::Signer;
use super::store::{self, Claimed, Next, Recording};
use crate::batch::Batcher;
use crate::db::Held;

/// The `User-Agent` of every callback.
pub const USER_AGENT: &str = "phonefarm-callback/1.0";

/// Tuning of the [`Deliverer`]. The defaults are the production values.
#[derive(Debug, Clone, PartialEq)]
pub struct DelivererConfig {
    /// Deliveries in flight at once (default 32).
    pub concurrency: usize,
    /// Bound on one attempt, from connect to response status (default 10 s: a 2xx later than
    /// that is a failure). The [`GuardedClient`]'s own timeout applies as well.
    pub attempt_timeout: Duration,
    /// How long a claimed row stays invisible to other deliverers (default 60 s). Raised to at
    /// least `attempt_timeout + 10 s`.
    pub lease: Duration,
    /// The longest the loop sleeps without a `notify` before looking for due rows (default 5 s).
    pub poll_interval: Duration,
    /// The retry schedule.
    pub backoff: Backoff,
    /// On shutdown, how long in-flight attempts may finish before they are abandoned (their
    /// rows come back when the lease runs out) (default 5 s).
    pub shutdown_grace: Duration,
}

impl Default for DelivererConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            attempt_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            backoff: Backoff::default(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Delivers the callbacks of the outbox. Build it with [`Deliverer::new`], adjust with
/// [`Deliverer::with_config`], start it with [`Deliverer::run`] on its own task.
#[derive(Debug)]
pub struct Deliverer {
    pool: PgPool,
    http: GuardedClient,
    signer: Option<Signer>,
    notify: Arc<Notify>,
    config: DelivererConfig,
}

/// What the delivery tasks share.
struct Shared {
    pool: PgPool,
    http: GuardedClient,
    signer: Option<Signer>,
    config: DelivererConfig,
    /// Records attempts: the attempts that finish while one batch is being written go
    /// together in the next (one statement, one commit, one connection) instead of one
    /// statement and pool connection each.
    recorder: Batcher<Recording, Result<(), String>>,
}

/// Most attempts recorded by one statement.
const RECORD_BATCH: usize = 64;

/// One batch of recordings on the recorder's connection.
async fn record_batch(mut held: Held, batch: Vec<Recording>) -> (Held, Vec<Result<(), String>>) {
    let result = held
        .with(async |conn| store::record_many(conn, &batch).await)
        .await
        .map_err(|err| phonefarm_net::error_chain(&err).to_string());
    let n = batch.len();
    (held, vec![result; n])
}

impl Deliverer {
    /// A deliverer over `pool`, sending through `http`, signing with `secret` when set
    /// (`PHONE_FARM_WEBHOOK_SECRET`), woken by `notify` (the API calls `notify_one()` after each
    /// commit that enqueued callbacks) and by its own timer. Uses [`DelivererConfig::default`].
    pub fn new(
        pool: PgPool,
        http: GuardedClient,
        secret: Option<SecretString>,
        notify: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            http,
            signer: secret.map(Signer::new),
            notify,
            config: DelivererConfig::default(),
        }
    }

    /// Replaces the tuning (tests use a short backoff).
    #[must_use]
    pub fn with_config(mut self, config: DelivererConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs until `shutdown` is cancelled, then gives in-flight attempts
    /// [`DelivererConfig::shutdown_grace`] to finish. Database errors are logged and retried;
    /// this never returns early and never panics.
    pub async fn run(self, shutdown: CancellationToken) {
        let Deliverer {
            pool,
            http,
            signer,
            notify,
            mut config,
        } = self;
        config.concurrency = config.concurrency.max(1);
        config.lease = config
            .lease
            .max(config.attempt_timeout + Duration::from_secs(10));
        let poll_interval = config.poll_interval.max(Duration::from_millis(10));
        let recorder = Batcher::spawn(
            "callback_record",
            1,
            RECORD_BATCH,
            {
                let pool = pool.clone();
                move || Held::new(pool.clone())
            },
            record_batch,
        );
        let shared = Arc::new(Shared {
            pool,
            http,
            signer,
            config,
            recorder,
        });
        tracing::info!(
            concurrency = shared.config.concurrency,
            signed = shared.signer.is_some(),
            "callback deliverer started"
        );

        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut db_failures: u32 = 0;
        // After a task finishes, claim only once a batch of slots is free: claiming costs a
        // round trip to Postgres, and one claim per finished task would bound throughput by
        // claim latency. A notify or the timer claims for any free slot at once.
        let batch = (shared.config.concurrency / 4).max(1);
        let mut wake = Wake::Start;
        let mut next_look = Instant::now();
        loop {
            while let Some(done) = tasks.try_join_next() {
                log_join(done);
            }

            let free = shared.config.concurrency.saturating_sub(tasks.len());
            let now = Instant::now();
            let claim_now = free > 0
                && (wake != Wake::TaskDone
                    || free >= batch
                    || tasks.is_empty()
                    || now >= next_look);
            if claim_now {
                let wait = match claim_and_spawn(&shared, &mut tasks, free).await {
                    Ok(Some(next_due)) => {
                        db_failures = 0;
                        next_due.clamp(Duration::from_millis(10), poll_interval)
                    }
                    Ok(None) => {
                        db_failures = 0;
                        poll_interval
                    }
                    Err(err) => {
                        db_failures = db_failures.saturating_add(1);
                        let wait = db_retry_delay(db_failures)
                            .min(poll_interval.max(Duration::from_secs(1)));
                        tracing::warn!(
                            error = %phonefarm_net::error_chain(&err),
                            retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                            "callback deliverer cannot reach the database"
                        );
                        wait
                    }
                };
                next_look = Instant::now() + wait;
            } else if next_look <= now {
                // All slots busy: a finishing task wakes the loop; until then look rarely.
                next_look = now + poll_interval;
            }

            wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = notify.notified() => Wake::Notify,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    log_join(done);
                    Wake::TaskDone
                }
                () = tokio::time::sleep_until(next_look) => Wake::Timer,
            };
        }

        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "callback deliverer draining");
            let drained = tokio::time::timeout(shared.config.shutdown_grace, async {
                while let Some(done) = tasks.join_next().await {
                    log_join(done);
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    abandoned = tasks.len(),
                    "callback deliveries abandoned at shutdown; they resume when their lease ends"
                );
                tasks.shutdown().await;
            }
        }
        tracing::info!("callback deliverer stopped");
    }
}

/// Claims up to `free` due rows and spawns one task each. Returns how long until the next row
/// is due when the claim did not fill every free slot (`Some(ZERO)` when it did: look again at
/// once), `None` when nothing is pending.
async fn claim_and_spawn(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    free: usize,
) -> Result<Option<Duration>, sqlx::Error> {
    let claim = store::claim(&shared.pool, free, shared.config.lease).await?;
    let filled = claim.rows.len() >= free;
    for row in claim.rows {
        let span = tracing::info_span!(
            "callback",
            event_id = %row.event_id,
            event_type = %row.event_type,
            process_id = row.process_id.map(tracing::field::display),
            queue_item_id = row.queue_item_id.map(tracing::field::display),
            sequence = row.sequence,
            attempt = row.attempts,
        );
        tasks.spawn(deliver(Arc::clone(shared), row).instrument(span));
    }
    if filled {
        return Ok(Some(Duration::ZERO));
    }
    Ok(claim.next_due)
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done
        && err.is_panic()
    {
        tracing::error!("a callback delivery task panicked");
    }
}

fn db_retry_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(5);
    Duration::from_millis(250u64 << exp)
}

/// Why the loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Start,
    Notify,
    TaskDone,
    Timer,
}

/// How one attempt ended.
enum Outcome {
    Status(StatusCode),
    Failed(SendError),
}

/// One attempt of one delivery, recorded.
async fn deliver(shared: Arc<Shared>, row: Claimed) {
    let started = Instant::now();
    let headers = build_headers(shared.signer.as_ref(), &row);
    let send = shared
        .http
        .post_json_bytes(&row.url, headers, row.body.clone());
    let outcome = match tokio::time::timeout(shared.config.attempt_timeout, send).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(err)) => Outcome::Failed(err),
        Err(_) => Outcome::Failed(SendError::Timeout),
    };
    let elapsed = started.elapsed();
    let duration_ms = i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX);

    let (status_code, error) = match &outcome {
        Outcome::Status(status) if status.is_success() => (Some(status.as_u16()), None),
        Outcome::Status(status) if status.is_redirection() => (
            Some(status.as_u16()),
            Some("redirect not followed".to_owned()),
        ),
        Outcome::Status(status) => (Some(status.as_u16()), Some("non-2xx status".to_owned())),
        Outcome::Failed(err) => (None, Some(err.to_string())),
    };
    let attempt = u32::try_from(row.attempts).unwrap_or(1).max(1);
    let permanent = matches!(&outcome, Outcome::Failed(err) if err.is_permanent());
    let next = if error.is_none() {
        Next::Delivered
    } else if permanent {
        Next::GiveUp
    } else {
        let age =
            Duration::try_from_secs_f64(row.age_secs.max(0.0)).unwrap_or(Duration::ZERO) + elapsed;
        match shared
            .config
            .backoff
            .next(attempt, age, rand::random::<f64>())
        {
            Some(delay) => Next::RetryIn(delay),
            None => Next::GiveUp,
        }
    };

    let outcome_label = match next {
        Next::Delivered => "delivered",
        Next::RetryIn(_) => "retry",
        Next::GiveUp => "failed",
    };
    metrics::counter!("phonefarm_callback_attempts_total", "outcome" => outcome_label).increment(1);
    metrics::histogram!("phonefarm_callback_attempt_seconds").record(elapsed.as_secs_f64());
    match (&next, &error) {
        (Next::Delivered, _) => {
            tracing::info!(status = status_code, duration_ms, "callback delivered");
        }
        (Next::RetryIn(delay), error) => tracing::info!(
            status = status_code,
            error = error.as_deref(),
            duration_ms,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "callback attempt failed, will retry"
        ),
        (Next::GiveUp, error) => tracing::warn!(
            status = status_code,
            error = error.as_deref(),
            duration_ms,
            "callback delivery failed for good"
        ),
    }

    let recording = Recording {
        id: row.id,
        attempt: row.attempts,
        status_code: status_code.map(i32::from),
        error,
        duration_ms,
        next,
    };
    let recorded = match shared.recorder.call(recording).await {
        Ok(result) => result,
        Err(crate::batch::Closed) => Err("the recorder has stopped".to_owned()),
    };
    if let Err(error) = recorded {
        // The lease runs out and the delivery is attempted again: at least once.
        tracing::error!(%error, "cannot record a callback attempt");
    }
}

/// The headers of one attempt: user agent and, with a secret, fresh timestamp and signatures.
fn build_headers(signer: Option<&Signer>, row: &Claimed) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    if let Some(signer) = signer {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        signer.sign_into(
            &mut headers,
            &row.event_id.to_string(),
            timestamp,
            row.body.as_bytes(),
        );
    }
    headers
}
