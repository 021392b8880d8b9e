//! `/ui/phones/{id}`: health now and over 24 h, the current run with its live step, the last
//! runs and their evidence; actions: enable/disable, attended on/off, label, and reboot and
//! locate, which the phone's agent carries out (`lifecycle::fleet::phone_action`: a `Control`
//! order through the outbox, written with its audit entry; refused here while a run executes
//! or the phone is offline, and again by the agent if a run started meanwhile). The live part
//! lists the latest of those actions with the agent's answer (`phone_actions`: sent, started
//! or refused with its reason, done or failed). The live screen is `super::screen`.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::session::Signed;
use super::{ago, audit, fleet, layout, live, page_with, see_other, when};
use crate::db;
use crate::db::console_views::{self as queries, HealthSample};
use crate::domain::time::now_ms;
use crate::error::ApiError;
use crate::http::AppState;
use crate::lifecycle::fleet::{ActionRefused, LOCATE_SECONDS, PhoneAction, phone_action};

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(vec![format!("phone_not_found:{id}")])
}

/// The live part: state, health now, the current run and the last runs.
pub async fn fragment(st: &AppState, _who: &Signed, id: &str) -> Result<Markup, ApiError> {
    let p = db::phones::get(&st.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let runs = queries::items_of_phone(&st.db, id, 20).await?;
    let ordered = db::phone_actions::of_phone(&st.db, id, 10).await?;
    let now = now_ms();
    let current = runs
        .iter()
        .find(|r| matches!(r.state.as_str(), "CLAIMED" | "EXECUTING"));
    let why = fleet::attention(&p);
    Ok(html! {
        dl.facts {
            dt { "State" } dd { span.state.(p.effective_state()) data-phone-state=(p.effective_state()) {
                (p.effective_state()) } }
            dt { "In rotation" } dd { (if p.enabled { "enabled" } else { "disabled" }) }
            dt { "Attended" } dd { (if p.attended { "yes" } else { "no" }) }
            dt { "Label" } dd { (p.label.as_deref().unwrap_or("—")) }
            dt { "Agent" } dd { (p.agent_id.as_deref().unwrap_or("—")) }
            dt { "Model / Android" } dd { (p.model.as_deref().unwrap_or("—")) " / "
                (p.android_version.as_deref().unwrap_or("—")) }
            dt { "App version" } dd { (p.app_version.as_deref().unwrap_or("—")) }
            dt { "Battery" } dd { (p.battery_level.map(|b| format!("{b} %")).unwrap_or("—".into())) }
            dt { "Temperature" } dd { (p.temperature_c.map(|t| format!("{t:.1} °C")).unwrap_or("—".into())) }
            dt { "Storage free" } dd { (p.storage_free_bytes.map(gib).unwrap_or("—".into())) }
            dt { "Screen" } dd { (p.screen_state.as_deref().unwrap_or("—")) }
            dt { "Last seen" } dd { (ago(p.last_seen_at, now)) }
            dt { "Needs attention" } dd.attention { @if why.is_empty() { "no" } @else { (why.join(", ")) } }
        }
        h2 { "Current run" }
        @match current {
            Some(r) => p.current {
                (r.kind) " · " (r.state) " · attempt " (r.attempt) " · step "
                strong.step { (r.step.as_deref().unwrap_or("starting")) } " · "
                @if let Some(pid) = r.process_id { a href={ "/ui/processes/" (pid) } { "process" } }
            },
            None => p.muted { "Idle." },
        }
        @if !ordered.is_empty() {
            h2 { "Reboot and locate" }
            table.phone-ops {
                thead { tr { th { "Ordered" } th { "Action" } th { "By" } th { "Agent's answer" }
                             th { "Why" } } }
                tbody {
                    @for a in &ordered {
                        tr data-request=(a.request_id) {
                            td { (when(Some(a.requested_at))) }
                            td { (a.action) }
                            td { (a.requested_by) }
                            td { span.op.(a.state) data-action-state=(a.state) { (action_state(&a.state)) }
                                 " " span.muted { (ago(Some(a.updated_at), now)) } }
                            td { (a.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Last runs" }
        table {
            thead { tr { th { "Created" } th { "Kind" } th { "State" } th { "Attempt" }
                         th { "Error" } th { "Evidence" } } }
            tbody {
                @for r in &runs {
                    tr {
                        td { @if let Some(pid) = r.process_id {
                            a href={ "/ui/processes/" (pid) } { (when(Some(r.created_at))) }
                        } @else { (when(Some(r.created_at))) } }
                        td { (r.kind) } td { (r.state) } td { (r.attempt) "/" (r.max_attempts) }
                        td { (r.error.as_ref().and_then(|e| e.get("code")).and_then(|c| c.as_str()).unwrap_or("")) }
                        td { @if r.error.is_some() && r.attempt > 0 {
                            a href={ "/ui/evidence/" (r.queue_item_id) "/" (r.attempt) } { "evidence" }
                        } }
                    }
                }
            }
        }
    })
}

/// What an action's state means to an operator.
fn action_state(state: &str) -> &'static str {
    match state {
        "sent" => "sent, no answer yet",
        "started" => "started",
        "refused" => "refused by the agent",
        "done" => "done",
        "failed" => "failed",
        _ => "unknown",
    }
}

fn gib(bytes: i64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// A small line chart of `values` (oldest first) as inline SVG; presentation attributes only
/// (the page's CSP allows no inline style).
fn chart(title: &str, values: &[f64], unit: &str) -> Markup {
    const W: f64 = 240.0;
    const H: f64 = 48.0;
    if values.is_empty() {
        return html! { figure.chart { figcaption { (title) } p.muted { "no samples yet" } } };
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let span = if hi - lo < 1e-9 { 1.0 } else { hi - lo };
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                H - 2.0 - (v - lo) / span * (H - 4.0)
            )
        })
        .collect();
    html! {
        figure.chart {
            figcaption { (title) " " span.muted { (format!("{lo:.0}–{hi:.0} {unit}")) } }
            svg width="240" height="48" viewBox="0 0 240 48" role="img" aria-label=(title) {
                polyline points=(points.join(" ")) fill="none" stroke="#2563eb" stroke-width="1.5" {}
            }
        }
    }
}

fn charts(samples: &[HealthSample]) -> Markup {
    let battery: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.battery_level.map(f64::from))
        .collect();
    let temp: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.temperature_c.map(f64::from))
        .collect();
    let storage: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.storage_free_bytes.map(|b| b as f64 / (1u64 << 30) as f64))
        .collect();
    html! {
        section.charts {
            (chart("Battery, 24 h", &battery, "%"))
            (chart("Temperature, 24 h", &temp, "°C"))
            (chart("Storage free, 24 h", &storage, "GiB"))
        }
        @if let Some(first) = samples.first() {
            p.muted { (samples.len()) " samples since " (when(Some(first.at))) }
        }
    }
}

fn actions(who: &Signed, id: &str) -> Markup {
    let post = |action: &str, label: &str| {
        html! {
            form.inline method="post" action={ "/ui/phones/" (id) "/" (action) } {
                (who.csrf_field())
                button type="submit" name="do" value=(action) { (label) }
            }
        }
    };
    html! {
        section.actions {
            (post("enable", "Enable")) (post("disable", "Disable"))
            (post("attend", "Attended on")) (post("unattend", "Attended off"))
            (post("reboot", "Reboot")) (post("locate", "Locate"))
            form.inline method="post" action={ "/ui/phones/" (id) "/label" } {
                (who.csrf_field())
                input type="text" name="label" maxlength="100" placeholder="label";
                button type="submit" { "Set label" }
            }
        }
    }
}

/// `GET /ui/phones/{phone_id}`
pub async fn page(State(st): State<AppState>, who: Signed, Path(id): Path<String>) -> Response {
    let body = match fragment(&st, &who, &id).await {
        Ok(b) => b,
        Err(e) => return super::error_page(Some(&who), e),
    };
    let samples = match queries::health_24h(&st.db, &id).await {
        Ok(s) => s,
        Err(e) => return super::error_page(Some(&who), e.into()),
    };
    let title = format!("Phone {id}");
    layout(
        &title,
        Some(&who),
        html! {
            (actions(&who, &id))
            (live::wrap(&format!("phones/{id}"), body))
            h2 { "Screen" }
            (super::screen::panel(&id))
            h2 { "Health" }
            (charts(&samples))
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

/// `POST /ui/phones/{phone_id}/{action}`: `enable`, `disable`, `attend`, `unattend`, `label`,
/// `reboot`, `locate`.
pub async fn act(
    State(st): State<AppState>,
    who: Signed,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(r) = who.csrf_refusal(&headers, form.csrf.as_deref()) {
        return r;
    }
    match action.as_str() {
        "reboot" => return order(&st, &who, &id, PhoneAction::Reboot).await,
        "locate" => {
            let locate = PhoneAction::Locate {
                for_seconds: LOCATE_SECONDS,
            };
            return order(&st, &who, &id, locate).await;
        }
        _ => {}
    }
    let label = form.label.as_deref().map(str::trim);
    let (label, attended, enabled) = match action.as_str() {
        "enable" => (None, None, Some(true)),
        "disable" => (None, None, Some(false)),
        "attend" => (None, Some(true), None),
        "unattend" => (None, Some(false), None),
        "label" => match label {
            Some("") | None => (Some(None), None, None),
            Some(l) if l.chars().count() <= 100 => (Some(Some(l)), None, None),
            Some(_) => {
                return page_with(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Not changed",
                    Some(&who),
                    html! { p.error { "out_of_range:label:length_1_to_100" } },
                );
            }
        },
        _ => {
            return super::error_page(
                Some(&who),
                ApiError::not_found(vec![format!("action_not_found:{action}")]),
            );
        }
    };
    match db::phones::update_operator_fields(&st.db, &id, label, attended, enabled, now_ms()).await
    {
        Ok(true) => {}
        Ok(false) => return super::error_page(Some(&who), not_found(&id)),
        Err(e) => return super::error_page(Some(&who), e.into()),
    }
    // A phone that became attended or enabled may take waiting work now.
    if let Some(bus) = &st.bus {
        bus.wakers.dispatch.notify_one();
    }
    let entry = audit::Entry::console(
        &who.key_name,
        &format!("phone.{action}"),
        Some(id.clone()),
        who.address.clone(),
    )
    .with(match label {
        Some(l) => json!({"label": l}),
        None => json!({}),
    });
    if let Err(e) = audit::record(&st.db, entry).await {
        return super::error_page(Some(&who), e.into());
    }
    see_other(&format!("/ui/phones/{id}"))
}

/// Orders a reboot or locate from the phone's agent, audited in the same transaction.
async fn order(st: &AppState, who: &Signed, id: &str, action: PhoneAction) -> Response {
    let what = action.as_str();
    let detail = match action {
        PhoneAction::Reboot => json!({}),
        PhoneAction::Locate { for_seconds } => json!({"for_seconds": for_seconds}),
    };
    let entry = audit::Entry::console(
        &who.key_name,
        &format!("phone.{what}"),
        Some(id.to_string()),
        who.address.clone(),
    )
    .with(detail);
    let refused = match phone_action(&st.db, id, action, &entry.row()).await {
        Ok(Ok(_)) => {
            if let Some(bus) = &st.bus {
                bus.wakers.relay.notify_one();
            }
            return see_other(&format!("/ui/phones/{id}"));
        }
        Ok(Err(r)) => r,
        Err(e) => return super::error_page(Some(who), e.into()),
    };
    let why = match refused {
        ActionRefused::NotFound => return super::error_page(Some(who), not_found(id)),
        ActionRefused::Offline => "the phone is offline (or its agent is): nothing was sent".into(),
        ActionRefused::Busy(q) => format!(
            "a run is executing on the phone (queue item {q}): cancel it or wait until it ends"
        ),
    };
    page_with(
        StatusCode::CONFLICT,
        &format!("Not sent: {what}"),
        Some(who),
        html! {
            p.error data-refused=(what) { "The phone was not sent the " (what) ": " (why) "." }
            p { a href={ "/ui/phones/" (id) } { "Back to the phone" } }
        },
    )
}
