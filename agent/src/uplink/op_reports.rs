//! Reports on operators' phone actions (`PhoneOpReport` on `pf.evt.<agent_id>.ops`): `phoneops`
//! queues one when an action starts or is refused and when it ends; [`run_op_reports`]
//! publishes them in order, each retried under its own message id (`op:<request_id>:<outcome>`,
//! so a retry is stored once) until stored, for at most [`GIVE_UP`].

use std::time::Duration;

use async_nats::jetstream;
use phonefarm_shared::{OpOutcome, PhoneOpReport, subjects};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::uplink::{now_ms, publish_stored};

/// How long one report is retried before it is dropped (logged): the console then shows the
/// action as sent, without the agent's answer.
pub const GIVE_UP: Duration = Duration::from_secs(120);

/// Where `phoneops` sends its reports; cloneable.
#[derive(Debug, Clone)]
pub struct OpReports {
    agent_id: String,
    tx: mpsc::UnboundedSender<PhoneOpReport>,
}

impl OpReports {
    /// Reports for `agent_id`, and the receiver [`run_op_reports`] publishes from.
    pub fn new(agent_id: &str) -> (Self, mpsc::UnboundedReceiver<PhoneOpReport>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                agent_id: agent_id.to_string(),
                tx,
            },
            rx,
        )
    }

    pub fn send(&self, phone_id: &str, request_id: Uuid, action: &str, outcome: OpOutcome) {
        let _ = self.tx.send(PhoneOpReport {
            agent_id: self.agent_id.clone(),
            phone_id: phone_id.to_string(),
            request_id,
            action: action.to_string(),
            at_unix_ms: now_ms(),
            outcome,
        });
    }
}

/// Publishes the queued reports one by one until `shutdown`.
pub async fn run_op_reports(
    js: jetstream::Context,
    agent_id: String,
    mut reports: mpsc::UnboundedReceiver<PhoneOpReport>,
    shutdown: CancellationToken,
) {
    let subject = subjects::phone_ops(&agent_id);
    loop {
        let report = tokio::select! {
            () = shutdown.cancelled() => return,
            r = reports.recv() => match r { Some(r) => r, None => return },
        };
        let payload: bytes::Bytes = phonefarm_shared::encode(&report).into();
        let msg_id = format!("op:{}:{}", report.request_id, report.outcome.as_str());
        let until = tokio::time::Instant::now() + GIVE_UP;
        let mut delay = Duration::from_millis(200);
        loop {
            match publish_stored(&js, &subject, payload.clone(), &msg_id).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(%agent_id, %msg_id, error = %e, "phone action report not stored")
                }
            }
            if tokio::time::Instant::now() >= until {
                tracing::error!(%agent_id, %msg_id, "phone action report dropped after retrying");
                break;
            }
            if !crate::uplink::pause(delay, &shutdown).await {
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
