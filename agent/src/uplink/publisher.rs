//! The event publisher: one task that publishes journaled run events to `pf.evt.<id>.run`, in
//! journal order, each with `Nats-Msg-Id = AgentEvent::msg_id()`, and deletes the journal entry
//! only after the stream acknowledged it. A timeout or an outage is retried with the same id
//! (the stream's duplicate window makes the retry a no-op if the first try was stored).
//!
//! [`EventSink`] is the cloneable handle: [`EventSink::emit`] journals (fsync) and queues;
//! the returned [`Stored`] resolves once the event is stored on the server.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use phonefarm_shared::{AgentEvent, EventKind, WorkOrder, subjects};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::journal::{Admission, Journal, JournalError, JournaledEvent};

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
    pub fn spawn(
        journal: Arc<Journal>,
        js: jetstream::Context,
        agent_id: &str,
        options: PublisherOptions,
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

    /// Journals a new order with its `Accepted` event, or reports it as known.
    pub async fn accept(&self, order: &WorkOrder) -> Result<Option<Stored>, EmitError> {
        let journal = self.journal.clone();
        let o = order.clone();
        match blocking(move || journal.accept_order(&o)).await? {
            Admission::New(entry) => Ok(Some(self.queue(entry).await?)),
            Admission::Known { .. } => Ok(None),
        }
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
        let journal = self.journal.clone();
        match blocking(move || journal.pending_events()).await {
            Ok(replay) => {
                if !replay.is_empty() {
                    tracing::info!(events = replay.len(), "replaying journaled events");
                }
                self.pending.extend(replay);
            }
            Err(e) => tracing::error!(error = %e, "cannot read the event journal"),
        }
        let mut backoff = self.options.min_backoff;
        loop {
            while let Ok(cmd) = self.rx.try_recv() {
                self.on_command(cmd);
            }
            let Some(entry) = self.pending.front().cloned() else {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    cmd = self.rx.recv() => match cmd {
                        Some(cmd) => self.on_command(cmd),
                        None => return,
                    },
                }
                continue;
            };
            let published = tokio::select! {
                () = self.shutdown.cancelled() => return,
                r = self.publish(&entry.event) => r,
            };
            match published {
                Ok(()) => {
                    backoff = self.options.min_backoff;
                    self.pending.pop_front();
                    let journal = self.journal.clone();
                    let removed = entry.clone();
                    if let Err(e) = blocking(move || journal.remove(&removed)).await {
                        // It stays on disk and is republished after a restart: a no-op thanks
                        // to its msg id.
                        tracing::warn!(error = %e, "cannot delete a published journal entry");
                    }
                    for w in self
                        .waiters
                        .remove(&entry.event.msg_id())
                        .unwrap_or_default()
                    {
                        let _ = w.send(());
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        msg_id = %entry.event.msg_id(),
                        queue_item_id = %entry.event.queue_item_id,
                        error = %e,
                        retry_in = ?backoff,
                        "event publish failed; retrying with the same id"
                    );
                    let sleep = tokio::time::sleep(backoff);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            () = &mut sleep => break,
                            cmd = self.rx.recv() => match cmd {
                                Some(cmd) => self.on_command(cmd),
                                None => return,
                            },
                        }
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    async fn publish(&self, event: &AgentEvent) -> Result<(), String> {
        let msg = PublishMessage::build()
            .payload(phonefarm_shared::encode(event).into())
            .message_id(event.msg_id());
        let ack = tokio::time::timeout(self.options.ack_timeout, async {
            let fut = self
                .js
                .send_publish(self.subject.clone(), msg)
                .await
                .map_err(|e| e.to_string())?;
            fut.await.map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| "publish ack timed out".to_string())??;
        if ack.duplicate {
            tracing::debug!(msg_id = %event.msg_id(), "event was already stored");
        }
        Ok(())
    }
}
