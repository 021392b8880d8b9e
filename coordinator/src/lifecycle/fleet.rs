//! Registry writes of the operators and the legacy integrators: an account put, a runtime
//! snapshot upsert; operators' actions on a phone (reboot, locate) as `Control` orders.

use phonefarm_shared::{Control, subjects};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{self, accounts::AccountRow};
use crate::domain::requests::{AccountPut, Snapshot};

/// How long the console's and the API's locate shows its colour.
pub const LOCATE_SECONDS: u32 = 60;

/// An operator's action on one phone, carried out by its agent (`phoneops` there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneAction {
    Reboot,
    Locate { for_seconds: u32 },
}

impl PhoneAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneAction::Reboot => "reboot",
            PhoneAction::Locate { .. } => "locate",
        }
    }
}

/// Why an action was not ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionRefused {
    NotFound,
    /// No agent holds it, or its agent or the phone is not online.
    Offline,
    /// A run is executing (or claimed) on it.
    Busy(Uuid),
}

/// Orders `action` on `phone_id`: checks the phone as stored (known, online with its agent, no
/// run on it), then writes the `Control` order for its agent to the outbox and `audit` to the
/// audit log, in one transaction with the phone's row locked. Returns the order's request id;
/// the caller wakes the relay. The action is kept in `phone_actions` (state `sent`); the agent
/// checks again (a run may start before the order arrives) and reports it started or refused,
/// then done or failed ([`phone_action_report`]).
pub async fn phone_action(
    db: &PgPool,
    phone_id: &str,
    action: PhoneAction,
    audit: &db::audit_log::New<'_>,
) -> Result<Result<Uuid, ActionRefused>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(phone) = db::phones::get_for_update(&mut tx, phone_id).await? else {
        return Ok(Err(ActionRefused::NotFound));
    };
    if let Some(q) = phone.running_queue_item_id.or(phone.current_queue_item_id) {
        return Ok(Err(ActionRefused::Busy(q)));
    }
    let agent = match (&phone.agent_id, phone.effective_state()) {
        (Some(agent), "online" | "needs_attention") => agent.clone(),
        _ => return Ok(Err(ActionRefused::Offline)),
    };
    let request_id = Uuid::new_v4();
    let msg = match action {
        PhoneAction::Reboot => Control::Reboot {
            phone_id: phone_id.to_string(),
            request_id,
        },
        PhoneAction::Locate { for_seconds } => Control::Locate {
            phone_id: phone_id.to_string(),
            request_id,
            for_seconds,
        },
    };
    let msg_id = format!("ctl:phone:{phone_id}:{}:{request_id}", action.as_str());
    db::outbox::insert(
        &mut tx,
        &subjects::control(&agent),
        &msg_id,
        &phonefarm_shared::encode(&msg),
    )
    .await?;
    db::audit_log::insert(&mut *tx, audit).await?;
    db::phone_actions::insert(
        &mut *tx,
        &db::phone_actions::NewAction {
            request_id,
            phone_id,
            agent_id: &agent,
            action: action.as_str(),
            requested_by: audit.actor,
            at: audit.at,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(phone_id, agent_id = %agent, %request_id, action = action.as_str(), "phone action ordered");
    Ok(Ok(request_id))
}

/// Creates or replaces account `id` (pre-provisioning its phone); true if it was created.
pub async fn put_account(
    db: &PgPool,
    id: &str,
    put: &AccountPut,
) -> Result<(AccountRow, bool), sqlx::Error> {
    let mut tx = db.begin().await?;
    let out = db::accounts::upsert(
        &mut tx,
        id,
        put.phone_id.as_deref(),
        put.platform_username.as_deref(),
        put.active,
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// Stores snapshot `s` unless a newer one is stored (one statement; concurrent upserts never
/// let an older one win): its `strategy_synced_at` as stored, or `None` when stale.
pub async fn upsert_snapshot(
    db: &PgPool,
    s: &Snapshot,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    db::snapshots::upsert(db, s).await
}

/// Records an agent's `PhoneOpReport` on one of its actions (`pf.evt.<agent_id>.ops`); a
/// report from another agent than the one ordered, or one going backwards, changes nothing.
/// True if it changed the action.
pub async fn phone_action_report(
    conn: &mut sqlx::PgConnection,
    agent_id: &str,
    report: &phonefarm_shared::PhoneOpReport,
) -> Result<bool, sqlx::Error> {
    use phonefarm_shared::OpOutcome;
    let reason = match &report.outcome {
        OpOutcome::Refused { reason } | OpOutcome::Failed { reason } => Some(reason.as_str()),
        OpOutcome::Started | OpOutcome::Done => None,
    };
    let at = crate::domain::time::from_unix_ms_or_now(report.at_unix_ms);
    let changed = db::phone_actions::report(
        conn,
        agent_id,
        &report.phone_id,
        report.request_id,
        report.outcome.as_str(),
        reason,
        at,
    )
    .await?;
    if changed {
        tracing::info!(agent_id, phone_id = %report.phone_id, request_id = %report.request_id,
            action = %report.action, outcome = report.outcome.as_str(), reason, "phone action reported");
    } else {
        tracing::debug!(agent_id, request_id = %report.request_id, "phone action report changed nothing");
    }
    Ok(changed)
}
