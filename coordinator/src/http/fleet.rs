//! The fleet (operator endpoints): agents and phones as mirrored from NATS, the operators'
//! phone fields, and moving a phone to another agent (with its recorded moves).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::bodies;
use super::extract::{ApiJson, ApiPath};
use crate::auth::Caller;
use crate::config::Role;
use crate::db::{
    self, agents::AgentRow, phone_moves::MoveRow, phone_moves::OperatorMove, phones::PhoneRow,
};
use crate::domain::time::{fmt, fmt_opt, now_ms};
use crate::error::ApiError;
use crate::error::answers::{
    BadRequest, Conflict, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthorized,
    Unavailable, Unprocessable, UnsupportedMediaType,
};
use crate::lifecycle::fleet::{ActionRefused, PhoneAction, phone_action};

/// `online`, or `offline` (silent for the offline window).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Online,
    Offline,
}

/// One agent as mirrored from its presence.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"agent_id": "rack-1", "version": "0.1.0", "host": "rack-1.lan",
    "started_at": "2026-03-22T08:00:00.000Z", "last_heartbeat_at": "2026-03-22T08:30:00.000Z",
    "online": true, "state": "online", "phone_count": 24, "enrolled_at": "2026-03-01T10:00:00.000Z"}))]
pub struct Agent {
    pub agent_id: String,
    pub version: Option<String>,
    pub host: Option<String>,
    pub started_at: Option<String>,
    pub last_heartbeat_at: Option<String>,
    pub online: bool,
    pub state: AgentState,
    pub phone_count: i32,
    pub enrolled_at: Option<String>,
}

/// `GET /agents`
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

/// One phone as its agent reports it, with the operators' fields.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"phone_id": "R58M123", "label": "shelf 2 / slot 4", "serial": "R58M123",
    "agent_id": "rack-1", "location": "1-2.3", "transport": "usb", "state": "online",
    "reported_state": "online", "attended": false, "enabled": true, "model": "SM-A125F",
    "android_version": "12", "battery_level": 87, "temperature_c": 31.5,
    "storage_free_bytes": 10_737_418_240_i64, "screen_state": "on", "app_version": "34.1.2",
    "current_queue_item_id": null, "last_seen_at": "2026-03-22T08:30:00.000Z",
    "updated_at": "2026-03-22T08:30:00.000Z"}))]
pub struct Phone {
    pub phone_id: String,
    /// Defaults to the phone id.
    pub label: String,
    pub serial: Option<String>,
    pub agent_id: Option<String>,
    /// USB port path (`1-2.3`) or `host:port`.
    pub location: Option<String>,
    /// `usb` or `tcp`.
    pub transport: Option<String>,
    /// `online`, `unauthorized`, `offline`, `busy` or `needs_attention`.
    pub state: String,
    /// The state as the agent last reported it.
    pub reported_state: String,
    pub attended: bool,
    pub enabled: bool,
    pub model: Option<String>,
    pub android_version: Option<String>,
    pub battery_level: Option<i32>,
    pub temperature_c: Option<f64>,
    pub storage_free_bytes: Option<i64>,
    pub screen_state: Option<String>,
    /// The TikTok app's version name.
    pub app_version: Option<String>,
    pub current_queue_item_id: Option<Uuid>,
    pub last_seen_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// `GET /phones`
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneList {
    pub phones: Vec<Phone>,
}

/// One change of a phone's agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneMove {
    pub phone_id: String,
    /// `null` for the first sighting.
    pub from_agent_id: Option<String>,
    pub to_agent_id: String,
    /// `first_seen`, `holder_gone` (the holder stopped reporting it for the offline window),
    /// `holder_offline` or `operator`.
    pub reason: String,
    /// `inventory`, or the name of the API key that moved it.
    pub moved_by: String,
    pub note: Option<String>,
    #[schema(format = DateTime)]
    pub moved_at: String,
}

/// `GET /phones/{phone_id}/moves`
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneMoveList {
    pub moves: Vec<PhoneMove>,
}

fn agent_view(st: &AppState, a: &AgentRow) -> Agent {
    // This replica may have seen a fresher heartbeat than the (coarsely written) stored one.
    let live = st
        .bus
        .as_ref()
        .and_then(|b| b.heartbeats.last_seen(&a.agent_id));
    let last = match (live, a.last_seen_at) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    Agent {
        agent_id: a.agent_id.clone(),
        version: a.version.clone(),
        host: a.host.clone(),
        started_at: fmt_opt(a.started_at),
        last_heartbeat_at: fmt_opt(last),
        online: a.online,
        state: if a.online {
            AgentState::Online
        } else {
            AgentState::Offline
        },
        phone_count: a.phone_count,
        enrolled_at: fmt_opt(a.enrolled_at),
    }
}

fn phone_view(p: &PhoneRow) -> Phone {
    Phone {
        phone_id: p.phone_id.clone(),
        label: p.label.clone().unwrap_or_else(|| p.phone_id.clone()),
        serial: p.serial.clone(),
        agent_id: p.agent_id.clone(),
        location: p.port_path.clone(),
        transport: p.transport.clone(),
        state: p.effective_state().to_owned(),
        reported_state: p.state.clone(),
        attended: p.attended,
        enabled: p.enabled,
        model: p.model.clone(),
        android_version: p.android_version.clone(),
        battery_level: p.battery_level,
        temperature_c: p
            .temperature_c
            .map(|t| (f64::from(t) * 10.0).round() / 10.0),
        storage_free_bytes: p.storage_free_bytes,
        screen_state: p.screen_state.clone(),
        app_version: p.app_version.clone(),
        current_queue_item_id: p.running_queue_item_id.or(p.current_queue_item_id),
        last_seen_at: fmt_opt(p.last_seen_at),
        updated_at: fmt(p.updated_at),
    }
}

fn move_view(m: &MoveRow) -> PhoneMove {
    PhoneMove {
        phone_id: m.phone_id.clone(),
        from_agent_id: m.from_agent_id.clone(),
        to_agent_id: m.to_agent_id.clone(),
        reason: m.reason.clone(),
        moved_by: m.moved_by.clone(),
        note: m.note.clone(),
        moved_at: fmt(m.moved_at),
    }
}

/// `GET /agents`
#[utoipa::path(get, path = "/agents", tag = "fleet",
    responses((status = 200, description = "Every agent", body = AgentList),
              (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn agents(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<AgentList>, ApiError> {
    caller.require(Role::Operator)?;
    let rows = db::agents::list(&st.db).await?;
    let agents = rows.iter().map(|a| agent_view(&st, a)).collect();
    Ok(Json(AgentList { agents }))
}

/// `GET /phones`
#[utoipa::path(get, path = "/phones", tag = "fleet",
    responses((status = 200, description = "Every phone", body = PhoneList),
              (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn phones(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<PhoneList>, ApiError> {
    caller.require(Role::Operator)?;
    let rows = db::phones::list(&st.db).await?;
    Ok(Json(PhoneList {
        phones: rows.iter().map(phone_view).collect(),
    }))
}

/// `GET /phones/{phone_id}`
#[utoipa::path(get, path = "/phones/{phone_id}", tag = "fleet", params(("phone_id" = String, Path)),
    responses((status = 200, description = "The phone", body = Phone),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn phone(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Phone>, ApiError> {
    caller.require(Role::Operator)?;
    let row = db::phones::get(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("phone_not_found:{id}")]))?;
    Ok(Json(phone_view(&row)))
}

/// `PUT /phones/{phone_id}` `{label?, attended?, enabled?}`: absent fields stay as they are;
/// `label: null` goes back to the default (the phone id).
#[utoipa::path(put, path = "/phones/{phone_id}", tag = "fleet", params(("phone_id" = String, Path)),
    request_body = bodies::PhonePatch,
    responses((status = 200, description = "The phone as updated", body = Phone),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
              (status = 422, response = Unprocessable), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn put_phone(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson,
) -> Result<Json<Phone>, ApiError> {
    caller.require(Role::Operator)?;
    let mut errors = Vec::new();
    if !body.is_object() {
        errors.push("invalid_type:body:object".to_string());
    }
    let label = match body.get("label") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if (1..=100).contains(&s.chars().count()) => Some(Some(s.as_str())),
        Some(Value::String(_)) => {
            errors.push("out_of_range:label:length_1_to_100".into());
            None
        }
        Some(_) => {
            errors.push("invalid_type:label:string".into());
            None
        }
    };
    let flag = |name: &str, errors: &mut Vec<String>| match body.get(name) {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errors.push(format!("invalid_type:{name}:boolean"));
            None
        }
    };
    let attended = flag("attended", &mut errors);
    let enabled = flag("enabled", &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors));
    }
    if !db::phones::update_operator_fields(&st.db, &id, label, attended, enabled, now_ms()).await? {
        return Err(ApiError::not_found(vec![format!("phone_not_found:{id}")]));
    }
    // A phone that became attended or enabled may take waiting work now.
    if let Some(bus) = &st.bus {
        bus.wakers.dispatch.notify_one();
    }
    let row = db::phones::get(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("phone_not_found:{id}")]))?;
    tracing::info!(phone_id = %id, ?attended, ?enabled, "phone updated by an operator");
    Ok(Json(phone_view(&row)))
}

/// `POST /phones/{phone_id}/move` `{agent_id, note?}`: an operator moves a phone to another
/// agent. Recorded in the phone's moves; the previous holder's reports of it are refused
/// claims from then on. Moving a phone to the agent that holds it changes nothing.
#[utoipa::path(post, path = "/phones/{phone_id}/move", tag = "fleet", params(("phone_id" = String, Path)),
    request_body = bodies::PhoneMoveRequest,
    responses((status = 200, description = "The phone as moved", body = Phone),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
              (status = 422, response = Unprocessable), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn move_phone(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson,
) -> Result<Json<Phone>, ApiError> {
    caller.require(Role::Operator)?;
    let mut errors = Vec::new();
    if !body.is_object() {
        errors.push("invalid_type:body:object".to_string());
    }
    let agent = match body.get("agent_id") {
        Some(Value::String(a)) if phonefarm_shared::is_subject_token(a) => Some(a.as_str()),
        Some(Value::String(_)) => {
            errors.push("invalid_format:agent_id:subject_token".into());
            None
        }
        Some(_) => {
            errors.push("invalid_type:agent_id:string".into());
            None
        }
        None if body.is_object() => {
            errors.push("missing:agent_id".into());
            None
        }
        None => None,
    };
    let note = match body.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if n.chars().count() <= 200 => Some(n.as_str()),
        Some(Value::String(_)) => {
            errors.push("out_of_range:note:length_0_to_200".into());
            None
        }
        Some(_) => {
            errors.push("invalid_type:note:string".into());
            None
        }
    };
    let Some(agent) = agent.filter(|_| errors.is_empty()) else {
        return Err(ApiError::unprocessable(errors));
    };
    let mut conn = st.db.acquire().await?;
    let by = caller.name.as_str();
    match db::phone_moves::move_by_operator(&mut conn, &id, agent, by, note, now_ms()).await? {
        OperatorMove::UnknownPhone => {
            return Err(ApiError::not_found(vec![format!("phone_not_found:{id}")]));
        }
        OperatorMove::UnknownAgent => {
            return Err(ApiError::unprocessable(vec![format!(
                "agent_not_found:{agent}"
            )]));
        }
        OperatorMove::Unchanged => {}
        OperatorMove::Moved(m) => {
            tracing::info!(phone_id = %id, from = m.from_agent_id.as_deref().unwrap_or(""), to = agent, by, "phone moved by an operator");
            if let Some(bus) = &st.bus {
                bus.wakers.dispatch.notify_one();
            }
        }
    }
    drop(conn);
    let row = db::phones::get(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("phone_not_found:{id}")]))?;
    Ok(Json(phone_view(&row)))
}

/// `GET /phones/{phone_id}/moves`: every change of the phone's agent, newest first (at most
/// 100): its first sighting, moves settled from another agent's reports, operators' moves.
#[utoipa::path(get, path = "/phones/{phone_id}/moves", tag = "fleet", params(("phone_id" = String, Path)),
    responses((status = 200, description = "The phone's moves, newest first", body = PhoneMoveList),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 500, response = Internal), (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn phone_moves(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PhoneMoveList>, ApiError> {
    caller.require(Role::Operator)?;
    if db::phones::get(&st.db, &id).await?.is_none() {
        return Err(ApiError::not_found(vec![format!("phone_not_found:{id}")]));
    }
    let moves = db::phone_moves::list(&st.db, &id).await?;
    Ok(Json(PhoneMoveList {
        moves: moves.iter().map(move_view).collect(),
    }))
}

/// An operator's action on a phone, ordered from its agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneActionOrdered {
    pub phone_id: String,
    /// `reboot` or `locate`.
    pub action: String,
    /// Names the order in the coordinator's and the agent's logs.
    pub request_id: Uuid,
    /// Always `ordered`: the agent carries it out (or refuses it, logged, if a run started on
    /// the phone meanwhile).
    pub status: String,
}

async fn order(
    st: &AppState,
    caller: &Caller,
    address: Option<String>,
    id: &str,
    action: PhoneAction,
) -> Result<(axum::http::StatusCode, Json<PhoneActionOrdered>), ApiError> {
    caller.require(Role::Operator)?;
    let what = action.as_str();
    let detail = match action {
        PhoneAction::Reboot => serde_json::json!({}),
        PhoneAction::Locate { for_seconds } => serde_json::json!({"for_seconds": for_seconds}),
    };
    let entry = crate::console::audit::Entry {
        actor: caller.name.clone(),
        action: format!("phone.{what}"),
        target: Some(id.to_string()),
        address,
        via: "api",
        detail,
    };
    match phone_action(&st.db, id, action, &entry.row()).await? {
        Ok(request_id) => {
            if let Some(bus) = &st.bus {
                bus.wakers.relay.notify_one();
            }
            let body = PhoneActionOrdered {
                phone_id: id.to_string(),
                action: what.into(),
                request_id,
                status: "ordered".into(),
            };
            Ok((axum::http::StatusCode::ACCEPTED, Json(body)))
        }
        Err(ActionRefused::NotFound) => {
            Err(ApiError::not_found(vec![format!("phone_not_found:{id}")]))
        }
        Err(ActionRefused::Offline) => Err(ApiError::conflict(format!("phone_offline:{id}"))),
        Err(ActionRefused::Busy(q)) => Err(ApiError::conflict(format!("phone_busy:{q}"))),
    }
}

/// `POST /phones/{phone_id}/reboot`: the phone's agent reboots it (`adb reboot`) and gives it
/// no work until it has booted again. Refused (409) while a run executes on the phone or the
/// phone or its agent is offline. Audited as `phone.reboot`.
#[utoipa::path(post, path = "/phones/{phone_id}/reboot", tag = "fleet", params(("phone_id" = String, Path)),
    responses((status = 202, description = "The reboot is ordered from the phone's agent", body = PhoneActionOrdered),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 409, response = Conflict), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn reboot_phone(
    State(st): State<AppState>,
    caller: Caller,
    crate::console::session::Address(address): crate::console::session::Address,
    ApiPath(id): ApiPath<String>,
) -> Result<(axum::http::StatusCode, Json<PhoneActionOrdered>), ApiError> {
    order(&st, &caller, address, &id, PhoneAction::Reboot).await
}

/// `POST /phones/{phone_id}/locate`: the phone's agent wakes it and shows a full-screen colour
/// for 60 s, so a technician finds it on the rack. Refused (409) while a run executes on the
/// phone or the phone or its agent is offline. Audited as `phone.locate`.
#[utoipa::path(post, path = "/phones/{phone_id}/locate", tag = "fleet", params(("phone_id" = String, Path)),
    responses((status = 202, description = "The locate is ordered from the phone's agent", body = PhoneActionOrdered),
              (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 409, response = Conflict), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn locate_phone(
    State(st): State<AppState>,
    caller: Caller,
    crate::console::session::Address(address): crate::console::session::Address,
    ApiPath(id): ApiPath<String>,
) -> Result<(axum::http::StatusCode, Json<PhoneActionOrdered>), ApiError> {
    let locate = PhoneAction::Locate {
        for_seconds: crate::lifecycle::fleet::LOCATE_SECONDS,
    };
    order(&st, &caller, address, &id, locate).await
}
