//! The event publisher: one task that publishes journaled run events to `pf.evt.<id>.run`, in
//! journal order and pipelined (up to [`WINDOW`] sent before their acks are awaited), each with
//! `Nats-Msg-Id = AgentEvent::msg_id()`, and forgets the journal entry only after the stream
//! acknowledged it. A timeout or an outage is retried with the same id
//! (the stream's duplicate window makes the retry a no-op if the first try was stored).
//!
//! [`EventSink`] is the cloneable handle: [`EventSink::emit`] journals (fsync) and queues;
//! the returned [`Stored`] resolves once the event is stored on the server.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use phonefarm_shared::{AgentEvent, EventKind, WorkOrder, subjects};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::journal::{Admission, Journal, JournalError, JournaledEvent};

/// Most events in flight at once: sent before their acks are awaited, so the `Accepted`s of a
/// burst of admitted orders do not wait one round trip for each event queued before them.
const WINDOW: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the event publisher has stopped")]
    Stopped,
}

/// Resolves once the event is stored by the stream (or never, if the agent stops first).
#[derive(Debug)]
pub struct Stored(oneshot::Receiver<()>);

impl Stored {
    /// Waits for the store ack; false if the publisher stopped first.
    pub async fn wait(self) -> bool {
        self.0.await.is_ok()
    }
}

enum Command {
    Publish(JournaledEvent, Option<oneshot::Sender<()>>),
    /// Notify when the event with this msg id is stored (now, if it is not pending).
    Watch(String, oneshot::Sender<()>),
}

/// Cloneable handle to the publisher: journals events and hands them to the task.
#[derive(Debug, Clone)]
pub struct EventSink {
    journal: Arc<Journal>,
    tx: mpsc::Sender<Command>,
}

/// Timings of the publisher.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// How long to wait for one publish ack before retrying.
    pub ack_timeout: Duration,
    /// First retry delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(JournalError::Io {
            path: "(blocking task)".into(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

impl EventSink {
    /// Starts the publisher task; it first replays everything still in the journal.
    /// `connects` changes when the NATS connection comes (back) up: a publisher waiting out
    /// a retry backoff then goes at once.
    pub fn spawn(
        journal: Arc<Journal>,
        js: jetstream::Context,
        agent_id: &str,
        options: PublisherOptions,
        connects: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let task = Task {
            journal: journal.clone(),
            js,
            subject: subjects::run_events(agent_id),
            options,
            rx,
            pending: VecDeque::new(),
            waiters: HashMap::new(),
            connects: Some(connects),
            shutdown,
        };
        tokio::spawn(task.run());
        Self { journal, tx }
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    async fn queue(&self, entry: JournaledEvent) -> Result<Stored, EmitError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Publish(entry, Some(done)))
            .await
            .map_err(|_| EmitError::Stopped)?;
        Ok(Stored(rx))
    }

    /// Journals the next event of an attempt (durably) and queues it for publishing.
    pub async fn emit(
        &self,
        queue_item_id: Uuid,
        attempt: u32,
        kind: EventKind,
    ) -> Result<(AgentEvent, Stored), EmitError> {
        let journal = self.journal.clone();
        let entry = blocking(move || journal.append(queue_item_id, attempt, kind)).await?;
        let event = entry.event.clone();
        Ok((event, self.queue(entry).await?))
    }

    /// Journals new orders with their `Accepted` events, together (see
    /// [`Journal::accept_orders`]): per order, `Some` (resolves once `Accepted` is stored) or
    /// `None` if the order was journaled before. One result per order, in order.
    pub async fn accept_all(
        &self,
        orders: Vec<WorkOrder>,
    ) -> Vec<Result<Option<Stored>, EmitError>> {
        let n = orders.len();
        let journal = self.journal.clone();
        let admissions = match blocking(move || Ok(journal.accept_orders(&orders))).await {
            Ok(a) => a,
            Err(e) => {
                let e = e.to_string();
                return (0..n)
                    .map(|_| {
                        Err(EmitError::Journal(JournalError::Io {
                            path: "(blocking task)".into(),
                            source: std::io::Error::other(e.clone()),
                        }))
                    })
                    .collect();
            }
        };
        let mut out = Vec::with_capacity(n);
        for admission in admissions {
            out.push(match admission {
                Ok(Admission::New(entry)) => self.queue(entry).await.map(Some),
                Ok(Admission::Known { .. }) => Ok(None),
                Err(e) => Err(EmitError::Journal(e)),
            });
        }
        out
    }

    /// Resolves once the event with `msg_id` is stored (at once if it is not pending).
    pub async fn stored(&self, msg_id: String) -> Result<Stored, EmitError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Watch(msg_id, done))
            .await
            .map_err(|_| EmitError::Stopped)?;
        Ok(Stored(rx))
    }
}

struct Task {
    journal: Arc<Journal>,
    js: jetstream::Context,
    subject: String,
    options: PublisherOptions,
    rx: mpsc::Receiver<Command>,
    pending: VecDeque<JournaledEvent>,
    waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
    /// `None` once the connection's watch is gone.
    connects: Option<watch::Receiver<u64>>,
    shutdown: CancellationToken,
}

impl Task {
    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(entry, done) => {
                if let Some(done) = done {
                    self.waiters
                        .entry(entry.event.msg_id())
                        .or_default()
                        .push(done);
                }
                self.pending.push_back(entry);
            }
            Command::Watch(id, done) => {
                if self.pending.iter().any(|e| e.event.msg_id() == id) {
                    self.waiters.entry(id).or_default().push(done);
                } else {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn run(mut self) {
        let replay = self.journal.replay_events();
        if !replay.is_empty() {
            tracing::info!(events = replay.len(), "replaying journaled events");
        }
        self.pending.extend(replay);
        let mut backoff = self.options.min_backoff;
        loop {
            while let Ok(cmd) = self.rx.try_recv() {
                self.on_command(cmd);
            }
            if self.pending.is_empty() {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    cmd = self.rx.recv() => match cmd {
                        Some(cmd) => self.on_command(cmd),
                        None => return,
                    },
                }
                continue;
            }
            // Up to WINDOW events from the front, all sent before any ack is awaited.
            let batch: Vec<JournaledEvent> = self.pending.iter().take(WINDOW).cloned().collect();
            // A reconnect from now on ends the backoff of a failure of this attempt.
            if let Some(c) = &mut self.connects {
                c.mark_unchanged();
            }
            let results = tokio::select! {
                () = self.shutdown.cancelled() => return,
                r = self.publish_all(&batch) => r,
            };
            let mut stored = Vec::with_capacity(batch.len());
            let mut failure: Option<(JournaledEvent, String)> = None;
            for (entry, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(()) => stored.push(entry),
                    Err(e) => {
                        if failure.is_none() {
                            failure = Some((entry, e));
                        }
                    }
                }
            }
            if !stored.is_empty() {
                backoff = self.options.min_backoff;
                let done: HashSet<u64> = stored.iter().map(|e| e.id).collect();
                self.pending.retain(|e| !done.contains(&e.id));
                for entry in &stored {
                    for w in self
                        .waiters
                        .remove(&entry.event.msg_id())
                        .unwrap_or_default()
                    {
                        let _ = w.send(());
                    }
                }
                let journal = self.journal.clone();
                let ids: Vec<u64> = done.into_iter().collect();
                if let Err(e) = blocking(move || journal.acked(&ids)).await {
                    // They stay journaled and are republished after a restart: a no-op thanks
                    // to their msg ids.
                    tracing::warn!(error = %e, "cannot journal the acks of published events");
                }
            }
            if let Some((entry, e)) = failure {
                // The failed events stay in front, in journal order, and go again with the same
                // ids. A later event of the same run may have been stored meanwhile: the
                // coordinator applies a run's events in seq order regardless.
                tracing::warn!(
                    msg_id = %entry.event.msg_id(),
                    queue_item_id = %entry.event.queue_item_id,
                    error = %e,
                    retry_in = ?backoff,
                    "event publish failed; retrying with the same id"
                );
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                backoff = (backoff * 2).min(self.options.max_backoff);
                loop {
                    let reconnected = async {
                        match &mut self.connects {
                            Some(c) => c.changed().await.is_ok(),
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = &mut sleep => break,
                        up = reconnected => {
                            if up {
                                // Back online: the failed events go now, not after the backoff.
                                backoff = self.options.min_backoff;
                                break;
                            }
                            self.connects = None;
                        }
                        cmd = self.rx.recv() => match cmd {
                            Some(cmd) => self.on_command(cmd),
                            None => return,
                        },
                    }
                }
            }
        }
    }

    /// Publishes `events` pipelined: every publish is sent, then the acks are awaited together,
    /// each for at most `ack_timeout`. One result per event, in order.
    async fn publish_all(&self, events: &[JournaledEvent]) -> Vec<Result<(), String>> {
        let mut sent = Vec::with_capacity(events.len());
        for entry in events {
            let msg = PublishMessage::build()
                .payload(phonefarm_shared::encode(&entry.event).into())
                .message_id(entry.event.msg_id());
            let publish = tokio::time::timeout(
                self.options.ack_timeout,
                self.js.send_publish(self.subject.clone(), msg),
            )
            .await;
            sent.push(match publish {
                Ok(Ok(ack)) => Ok(ack),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("publish timed out".to_string()),
            });
        }
        let timeout = self.options.ack_timeout;
        futures::future::join_all(events.iter().zip(sent).map(|(entry, sent)| async move {
            let ack = tokio::time::timeout(timeout, sent?)
                .await
                .map_err(|_| "publish ack timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if ack.duplicate {
                tracing::debug!(msg_id = %entry.event.msg_id(), "event was already stored");
            }
            Ok(())
        }))
        .await
    }
}
