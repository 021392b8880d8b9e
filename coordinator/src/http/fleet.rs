//! The fleet (operator endpoints): agents and phones as mirrored from NATS, the operators'
//! phone fields, and moving a phone to another agent (with its recorded moves).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tracing::instrument;

use super::AppState;
use super::extract::ApiJson;
use crate::auth::Caller;
use crate::config::Role;
use crate::db::{
    self, agents::AgentRow, phone_moves::MoveRow, phone_moves::OperatorMove, phones::PhoneRow,
};
use crate::domain::time::{fmt, fmt_opt, now_ms};
use crate::error::ApiError;

fn agent_view(st: &AppState, a: &AgentRow) -> Value {
    // This replica may have seen a fresher heartbeat than the (coarsely written) stored one.
    let live = st
        .bus
        .as_ref()
        .and_then(|b| b.heartbeats.last_seen(&a.agent_id));
    let last = match (live, a.last_seen_at) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    json!({
        "agent_id": a.agent_id,
        "version": a.version,
        "host": a.host,
        "started_at": fmt_opt(a.started_at),
        "last_heartbeat_at": fmt_opt(last),
        "online": a.online,
        "state": if a.online { "online" } else { "offline" },
        "phone_count": a.phone_count,
        "enrolled_at": fmt_opt(a.enrolled_at),
    })
}

fn phone_view(p: &PhoneRow) -> Value {
    json!({
        "phone_id": p.phone_id,
        "label": p.label.clone().unwrap_or_else(|| p.phone_id.clone()),
        "serial": p.serial,
        "agent_id": p.agent_id,
        "location": p.port_path,
        "transport": p.transport,
        "state": p.effective_state(),
        "reported_state": p.state,
        "attended": p.attended,
        "enabled": p.enabled,
        "model": p.model,
        "android_version": p.android_version,
        "battery_level": p.battery_level,
        "temperature_c": p.temperature_c.map(|t| (f64::from(t) * 10.0).round() / 10.0),
        "storage_free_bytes": p.storage_free_bytes,
        "screen_state": p.screen_state,
        "app_version": p.app_version,
        "current_queue_item_id": p.running_queue_item_id.or(p.current_queue_item_id),
        "last_seen_at": fmt_opt(p.last_seen_at),
        "updated_at": fmt(p.updated_at),
    })
}

/// `GET /agents`
#[utoipa::path(get, path = "/agents", tag = "fleet",
    responses((status = 200, body = super::docs::AgentList), (status = 403, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn agents(State(st): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let rows = db::agents::list(&st.db).await?;
    let agents: Vec<Value> = rows.iter().map(|a| agent_view(&st, a)).collect();
    Ok(Json(json!({"agents": agents})))
}

/// `GET /phones`
#[utoipa::path(get, path = "/phones", tag = "fleet",
    responses((status = 200, body = super::docs::PhoneList), (status = 403, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all)]
pub async fn phones(State(st): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let rows = db::phones::list(&st.db).await?;
    Ok(Json(
        json!({"phones": rows.iter().map(phone_view).collect::<Vec<_>>()}),
    ))
}

/// `GET /phones/{phone_id}`
#[utoipa::path(get, path = "/phones/{phone_id}", tag = "fleet", params(("phone_id" = String, Path)),
    responses((status = 200, body = super::docs::PhoneDoc), (status = 404, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn phone(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let row = db::phones::get(&st.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("phone_not_found:{id}")]))?;
    Ok(Json(phone_view(&row)))
}

/// `PUT /phones/{phone_id}` `{label?, attended?, enabled?}`: absent fields stay as they are;
/// `label: null` goes back to the default (the phone id).
#[utoipa::path(put, path = "/phones/{phone_id}", tag = "fleet", params(("phone_id" = String, Path)),
    request_body = super::docs::PhonePatch,
    responses((status = 200, body = super::docs::PhoneDoc), (status = 404, body = super::docs::Problem),
              (status = 422, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn put_phone(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson,
) -> Result<Json<Value>, ApiError> {
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

fn move_view(m: &MoveRow) -> Value {
    json!({
        "phone_id": m.phone_id,
        "from_agent_id": m.from_agent_id,
        "to_agent_id": m.to_agent_id,
        "reason": m.reason,
        "moved_by": m.moved_by,
        "note": m.note,
        "moved_at": fmt(m.moved_at),
    })
}

/// `POST /phones/{phone_id}/move` `{agent_id, note?}`: an operator moves a phone to another
/// agent. Recorded in the phone's moves; the previous holder's reports of it are refused
/// claims from then on. Moving a phone to the agent that holds it changes nothing.
#[utoipa::path(post, path = "/phones/{phone_id}/move", tag = "fleet", params(("phone_id" = String, Path)),
    request_body = super::docs::PhoneMoveRequest,
    responses((status = 200, body = super::docs::PhoneDoc), (status = 403, body = super::docs::Problem),
              (status = 404, body = super::docs::Problem), (status = 422, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn move_phone(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson,
) -> Result<Json<Value>, ApiError> {
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
    responses((status = 200, body = super::docs::PhoneMoveList), (status = 403, body = super::docs::Problem),
              (status = 404, body = super::docs::Problem)),
    security(("bearer" = [])))]
#[instrument(skip_all, fields(phone_id = %id))]
pub async fn phone_moves(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    if db::phones::get(&st.db, &id).await?.is_none() {
        return Err(ApiError::not_found(vec![format!("phone_not_found:{id}")]));
    }
    let moves = db::phone_moves::list(&st.db, &id).await?;
    Ok(Json(
        json!({"moves": moves.iter().map(move_view).collect::<Vec<_>>()}),
    ))
}
