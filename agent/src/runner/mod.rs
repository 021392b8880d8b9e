//! The runner: admits work orders (journal the order, journal and publish `Accepted`), runs at
//! most one order per phone, and routes cancels to the run they name.
//!
//! An operator's action on a phone (reboot, locate: `crate::phoneops`) first *holds* the phone
//! ([`RunnerHandle::hold`]): refused while a run executes on it, and while held no order starts
//! on it (orders are handed back as [`Admission::Held`]). The runner's actor decides both, so a
//! run and an action never overlap on one phone.
//!
//! [`RunnerHandle`] is the cloneable handle to the runner actor. Each admitted order runs in
//! its own task ([`run`]): the flow from `phonefarm-flows` over a [`device::PhoneDevice`],
//! milestones and heartbeats as [`phonefarm_shared::AgentEvent`]s, evidence on failure
//! (journaled for upload), then `Finished`.

pub mod device;
pub mod exec;
pub mod local;
pub mod run;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use phonefarm_flows::{FlowOptions, PackStore, UiConfig};
use phonefarm_shared::{CancelMode, EventKind, Outcome, RunError, WorkOrder};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fleet::FleetHandle;
use crate::uplink::evidence::EvidenceSpool;
use crate::uplink::publisher::{EmitError, EventSink, Stored};

/// Knobs of every run.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// A `Heartbeat` event this often while a run is going (extends the coordinator's lease).
    pub heartbeat_interval: Duration,
    /// The app the flows drive (its installed version chooses the flow pack).
    pub app_package: String,
    /// UI timings (command deadline, dump polling).
    pub ui: UiConfig,
    /// Flow knobs; the seed is replaced per run (derived from the run id).
    pub flow: FlowOptions,
    /// How long a hard abort (force-stop, home) may take.
    pub abort_timeout: Duration,
    /// Which addresses asset downloads (`post_video`'s video) may reach: public unicast only by
    /// default.
    pub asset_policy: crate::assets::SsrfPolicy,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            app_package: "com.zhiliaoapp.musically".into(),
            ui: UiConfig::default(),
            flow: FlowOptions::default(),
            abort_timeout: Duration::from_secs(30),
            asset_policy: crate::assets::SsrfPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot journal the order")]
    Emit(#[from] EmitError),
    #[error("the runner has stopped")]
    Stopped,
}

/// What became of a submitted order.
#[derive(Debug)]
pub enum Admission {
    /// Journaled and started; `Stored` resolves once `Accepted` is stored on the server.
    Accepted(Stored),
    /// Seen before (a redelivery): resolves once its `Accepted` is stored (at once if it is).
    Duplicate(Stored),
    /// The phone is running another order: try again later.
    Busy { running: Uuid },
    /// An operator's action holds the phone (`reboot`, `locate`): try again later.
    Held { by: &'static str },
}

/// Why a phone could not be held for an operator's action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefused {
    #[error("a run is executing on the phone (queue item {0})")]
    Running(Uuid),
    #[error("the phone is busy with a {0}")]
    Held(&'static str),
    #[error("the runner has stopped")]
    Stopped,
}

/// A phone held for an operator's action; released when dropped.
#[derive(Debug)]
pub struct PhoneHold {
    phone_id: String,
    tx: mpsc::Sender<Command>,
}

impl Drop for PhoneHold {
    fn drop(&mut self) {
        let cmd = Command::Release {
            phone_id: std::mem::take(&mut self.phone_id),
        };
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.tx.try_send(cmd) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }
}

/// Everything a run needs, shared by all runs.
#[derive(Debug)]
pub struct RunnerDeps {
    pub agent_id: String,
    pub events: EventSink,
    pub fleet: FleetHandle,
    pub packs: Arc<PackStore>,
    /// Where a failed run's evidence is kept for upload (None: evidence is not collected).
    pub evidence: Option<EvidenceSpool>,
    pub options: RunnerOptions,
}

type Reply = oneshot::Sender<Result<Admission, RunnerError>>;

/// Most orders admitted together.
const MAX_ADMISSIONS: usize = 64;

enum Command {
    Submit {
        order: WorkOrder,
        reply: Reply,
    },
    Cancel {
        queue_item_id: Uuid,
        attempt: u32,
        mode: CancelMode,
        reply: oneshot::Sender<bool>,
    },
    Done {
        phone_id: String,
        queue_item_id: Uuid,
        attempt: u32,
    },
    Hold {
        phone_id: String,
        by: &'static str,
        reply: oneshot::Sender<Result<(), HoldRefused>>,
    },
    Release {
        phone_id: String,
    },
}

struct Active {
    queue_item_id: Uuid,
    attempt: u32,
    soft: CancellationToken,
    hard: CancellationToken,
}

/// Cloneable handle to the runner actor.
#[derive(Debug, Clone)]
pub struct RunnerHandle {
    tx: mpsc::Sender<Command>,
}

impl RunnerHandle {
    pub fn spawn(deps: RunnerDeps, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let actor = Actor {
            deps: Arc::new(deps),
            active: HashMap::new(),
            held: HashMap::new(),
            early_cancels: VecDeque::new(),
            rx,
            tx: tx.downgrade(),
            shutdown,
        };
        tokio::spawn(actor.run());
        Self { tx }
    }

    /// Admits an order (see [`Admission`]).
    pub async fn submit(&self, order: WorkOrder) -> Result<Admission, RunnerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Submit { order, reply })
            .await
            .map_err(|_| RunnerError::Stopped)?;
        rx.await.map_err(|_| RunnerError::Stopped)?
    }

    /// Cancels the named run; false if no such run is going (the control is then ignored).
    pub async fn cancel(&self, queue_item_id: Uuid, attempt: u32, mode: CancelMode) -> bool {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(Command::Cancel {
                queue_item_id,
                attempt,
                mode,
                reply,
            })
            .await;
        sent.is_ok() && rx.await.unwrap_or(false)
    }

    /// Holds `phone_id` for an operator's action `by` (`reboot`, `locate`) until the returned
    /// guard is dropped; refused while a run executes on it or another action holds it.
    pub async fn hold(&self, phone_id: &str, by: &'static str) -> Result<PhoneHold, HoldRefused> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Hold {
                phone_id: phone_id.to_string(),
                by,
                reply,
            })
            .await
            .map_err(|_| HoldRefused::Stopped)?;
        rx.await.map_err(|_| HoldRefused::Stopped)??;
        Ok(PhoneHold {
            phone_id: phone_id.to_string(),
            tx: self.tx.clone(),
        })
    }
}

/// Finishes every order a previous agent process left unfinished (its run died with it):
/// `Finished{Failed}` with the retryable code `agent_restarted`.
pub async fn finish_orphans(events: &EventSink) -> Result<usize, EmitError> {
    let orphans = events.journal().unfinished_orders();
    for o in &orphans {
        tracing::warn!(queue_item_id = %o.queue_item_id, attempt = o.attempt, phone_id = %o.phone_id, "run cut short by an agent restart");
        let finished = EventKind::Finished {
            outcome: Outcome::Failed,
            result_json: "null".into(),
            error: Some(RunError {
                code: "agent_restarted".into(),
                message: "the agent restarted during the run".into(),
                retryable: true,
            }),
        };
        events.emit(o.queue_item_id, o.attempt, finished).await?;
    }
    Ok(orphans.len())
}

/// Cancels remembered for runs not (yet) known: a cancel may overtake its work order (they
/// travel on different streams).
const EARLY_CANCELS: usize = 1024;

struct Actor {
    deps: Arc<RunnerDeps>,
    active: HashMap<String, Active>,
    /// Phones held for an operator's action, and by which.
    held: HashMap<String, &'static str>,
    early_cancels: VecDeque<(Uuid, u32)>,
    rx: mpsc::Receiver<Command>,
    tx: mpsc::WeakSender<Command>,
    shutdown: CancellationToken,
}

impl Actor {
    async fn run(mut self) {
        let mut deferred: Option<Command> = None;
        loop {
            let cmd = match deferred.take() {
                Some(cmd) => Some(cmd),
                None => tokio::select! {
                    () = self.shutdown.cancelled() => break,
                    cmd = self.rx.recv() => cmd,
                },
            };
            let Some(cmd) = cmd else { break };
            match cmd {
                Command::Submit { order, reply } => {
                    // Submits already queued behind this one are admitted with it (their
                    // journal writes share fsyncs); the first other command waits its turn.
                    let mut batch = vec![(order, reply)];
                    while batch.len() < MAX_ADMISSIONS {
                        match self.rx.try_recv() {
                            Ok(Command::Submit { order, reply }) => batch.push((order, reply)),
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.submit_all(batch).await;
                }
                Command::Cancel {
                    queue_item_id,
                    attempt,
                    mode,
                    reply,
                } => {
                    let run = self
                        .active
                        .values()
                        .find(|a| a.queue_item_id == queue_item_id && a.attempt == attempt);
                    let found = match run {
                        Some(a) => {
                            tracing::info!(%queue_item_id, attempt, ?mode, "cancelling run");
                            match mode {
                                CancelMode::Soft => a.soft.cancel(),
                                CancelMode::Hard => a.hard.cancel(),
                            }
                            true
                        }
                        None => {
                            let key = (queue_item_id, attempt);
                            if !self.early_cancels.contains(&key) {
                                if self.early_cancels.len() >= EARLY_CANCELS {
                                    self.early_cancels.pop_front();
                                }
                                self.early_cancels.push_back(key);
                            }
                            false
                        }
                    };
                    let _ = reply.send(found);
                }
                Command::Done {
                    phone_id,
                    queue_item_id,
                    attempt,
                } => {
                    if self
                        .active
                        .get(&phone_id)
                        .is_some_and(|a| a.queue_item_id == queue_item_id && a.attempt == attempt)
                    {
                        self.active.remove(&phone_id);
                        self.deps.fleet.set_running(&phone_id, None).await;
                    }
                }
                Command::Hold {
                    phone_id,
                    by,
                    reply,
                } => {
                    let r = if let Some(a) = self.active.get(&phone_id) {
                        Err(HoldRefused::Running(a.queue_item_id))
                    } else if let Some(other) = self.held.get(&phone_id) {
                        Err(HoldRefused::Held(other))
                    } else {
                        self.held.insert(phone_id, by);
                        Ok(())
                    };
                    let _ = reply.send(r);
                }
                Command::Release { phone_id } => {
                    self.held.remove(&phone_id);
                }
            }
        }
        // Runs end with the agent: their orders stay unfinished in the journal and are
        // reported as `agent_restarted` by the next process.
        for a in self.active.values() {
            a.hard.cancel();
        }
    }

    /// Admits orders in the order given: a redelivery is a duplicate, an order cancelled before
    /// it came is journaled and finished unrun, an order for a busy phone (or for a phone an
    /// earlier order of the batch takes) is handed back; the rest are journaled together and
    /// started.
    async fn submit_all(&mut self, batch: Vec<(WorkOrder, Reply)>) {
        let events = self.deps.events.clone();
        let mut to_accept: Vec<(WorkOrder, Reply, bool)> = Vec::with_capacity(batch.len());
        let mut taken: HashMap<String, Uuid> = HashMap::new();
        for (order, reply) in batch {
            if events.journal().knows(order.queue_item_id, order.attempt) {
                let stored = events.stored(accepted_id(&order)).await;
                let _ = reply.send(stored.map(Admission::Duplicate).map_err(Into::into));
                continue;
            }
            let key = (order.queue_item_id, order.attempt);
            let cancelled_early = self.early_cancels.contains(&key);
            if !cancelled_early {
                if let Some(by) = self.held.get(&order.phone_id) {
                    let _ = reply.send(Ok(Admission::Held { by }));
                    continue;
                }
                let running = self
                    .active
                    .get(&order.phone_id)
                    .map(|a| a.queue_item_id)
                    .or_else(|| taken.get(&order.phone_id).copied());
                if let Some(running) = running {
                    let _ = reply.send(Ok(Admission::Busy { running }));
                    continue;
                }
                taken.insert(order.phone_id.clone(), order.queue_item_id);
            }
            to_accept.push((order, reply, cancelled_early));
        }
        if to_accept.is_empty() {
            return;
        }
        let orders = to_accept.iter().map(|(o, _, _)| o.clone()).collect();
        let accepted = events.accept_all(orders).await;
        for ((order, reply, cancelled_early), result) in to_accept.into_iter().zip(accepted) {
            let r = match result {
                Err(e) => Err(e.into()),
                Ok(None) => events
                    .stored(accepted_id(&order))
                    .await
                    .map(Admission::Duplicate)
                    .map_err(Into::into),
                Ok(Some(stored)) if cancelled_early => self
                    .finish_unrun(&order)
                    .await
                    .map(|()| Admission::Accepted(stored)),
                Ok(Some(stored)) => {
                    self.start(order).await;
                    Ok(Admission::Accepted(stored))
                }
            };
            let _ = reply.send(r);
        }
    }

    /// An order cancelled before it arrived: journaled (so it is acked), finished unrun.
    async fn finish_unrun(&mut self, order: &WorkOrder) -> Result<(), RunnerError> {
        let key = (order.queue_item_id, order.attempt);
        if let Some(i) = self.early_cancels.iter().position(|k| *k == key) {
            self.early_cancels.remove(i);
        }
        tracing::info!(queue_item_id = %order.queue_item_id, attempt = order.attempt, "order cancelled before it arrived; not run");
        let finished = EventKind::Finished {
            outcome: Outcome::Cancelled,
            result_json: "null".into(),
            error: None,
        };
        self.deps
            .events
            .emit(order.queue_item_id, order.attempt, finished)
            .await?;
        Ok(())
    }

    /// Starts the run of an admitted order on its phone.
    async fn start(&mut self, order: WorkOrder) {
        let soft = CancellationToken::new();
        let hard = self.shutdown.child_token();
        self.active.insert(
            order.phone_id.clone(),
            Active {
                queue_item_id: order.queue_item_id,
                attempt: order.attempt,
                soft: soft.clone(),
                hard: hard.clone(),
            },
        );
        self.deps
            .fleet
            .set_running(&order.phone_id, Some(order.queue_item_id))
            .await;
        let deps = self.deps.clone();
        let done = self.tx.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let (phone_id, queue_item_id, attempt) =
                (order.phone_id.clone(), order.queue_item_id, order.attempt);
            run::execute(&deps, order, soft, hard, shutdown).await;
            if let Some(tx) = done.upgrade() {
                let _ = tx
                    .send(Command::Done {
                        phone_id,
                        queue_item_id,
                        attempt,
                    })
                    .await;
            }
        });
    }
}

/// The message id of an order's `Accepted` event.
fn accepted_id(order: &WorkOrder) -> String {
    format!("{}:{}:1", order.queue_item_id, order.attempt)
}
