//! `/ui/fleet`: agents and phones by state and the counts that need attention, live.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::session::Signed;
use super::{ago, layout, live};
use crate::db;
use crate::db::phones::PhoneRow;
use crate::domain::time::now_ms;
use crate::error::ApiError;
use crate::http::AppState;

/// A phone this hot (°C) is overheating.
pub const HOT_C: f32 = 45.0;
/// A phone at or below this battery level (%) is low.
pub const LOW_BATTERY: i32 = 20;

/// The states a phone is shown in (`PhoneRow::effective_state`), in the page's order.
pub const PHONE_STATES: [&str; 5] = [
    "online",
    "busy",
    "offline",
    "unauthorized",
    "needs_attention",
];

/// Everything that can need an operator about a phone, as [`attention`] says it.
pub const ATTENTION: [&str; 6] = [
    "offline",
    "unauthorized",
    "needs attention",
    "overheating",
    "low battery",
    "disabled",
];

/// What needs an operator about a phone, if anything (in [`ATTENTION`]'s order).
pub fn attention(p: &PhoneRow) -> Vec<&'static str> {
    let state = p.effective_state();
    let needs = [
        state == "offline",
        state == "unauthorized",
        state == "needs_attention",
        p.temperature_c.is_some_and(|t| t >= HOT_C),
        p.battery_level.is_some_and(|b| b <= LOW_BATTERY),
        !p.enabled,
    ];
    ATTENTION
        .iter()
        .zip(needs)
        .filter_map(|(why, n)| n.then_some(*why))
        .collect()
}

/// The live part of the page.
pub async fn fragment(st: &AppState) -> Result<Markup, ApiError> {
    let agents = db::agents::list(&st.db).await?;
    let phones = db::phones::list(&st.db).await?;
    let now = now_ms();
    let count = |pred: &dyn Fn(&PhoneRow) -> bool| phones.iter().filter(|p| pred(p)).count();
    let tiles = [
        ("offline", count(&|p| p.effective_state() == "offline")),
        (
            "unauthorized",
            count(&|p| p.effective_state() == "unauthorized"),
        ),
        (
            "overheating",
            count(&|p| p.temperature_c.is_some_and(|t| t >= HOT_C)),
        ),
        (
            "low battery",
            count(&|p| p.battery_level.is_some_and(|b| b <= LOW_BATTERY)),
        ),
        ("disabled", count(&|p| !p.enabled)),
    ];
    Ok(html! {
        section.tiles {
            div.tile { span.n { (phones.len()) } " phones" }
            div.tile { span.n { (agents.iter().filter(|a| a.online).count()) } " of "
                (agents.len()) " agents online" }
            @for (name, n) in tiles {
                div.tile.(if n > 0 { "warn" } else { "ok" }) data-count=(name) {
                    span.n { (n) } " " (name)
                }
            }
        }
        h2 { "Agents" }
        table {
            thead { tr { th { "Agent" } th { "State" } th { "Version" } th { "Host" }
                         th { "Phones" } th { "Last heartbeat" } } }
            tbody {
                @for a in &agents {
                    tr {
                        td { (a.agent_id) }
                        td { span.state.(if a.online { "online" } else { "offline" }) {
                            (if a.online { "online" } else { "offline" }) } }
                        td { (a.version.as_deref().unwrap_or("—")) }
                        td { (a.host.as_deref().unwrap_or("—")) }
                        td { (a.phone_count) }
                        td { (ago(a.last_seen_at, now)) }
                    }
                }
            }
        }
        @for state in PHONE_STATES {
            @let mine: Vec<&PhoneRow> = phones.iter().filter(|p| p.effective_state() == state).collect();
            @if !mine.is_empty() {
                h2 { "Phones " span.state.(state) { (state) } " (" (mine.len()) ")" }
                table.phones {
                    thead { tr { th { "Phone" } th { "Label" } th { "Agent" } th { "Model" }
                                 th { "Battery" } th { "°C" } th { "App" } th { "Attention" } } }
                    tbody {
                        @for p in mine {
                            tr id={ "phone-" (p.phone_id) } data-state=(p.effective_state()) {
                                td { a href={ "/ui/phones/" (p.phone_id) } { (p.phone_id) } }
                                td { (p.label.as_deref().unwrap_or("")) }
                                td { (p.agent_id.as_deref().unwrap_or("—")) }
                                td { (p.model.as_deref().unwrap_or("—")) }
                                td { (p.battery_level.map(|b| format!("{b} %")).unwrap_or_default()) }
                                td { (p.temperature_c.map(|t| format!("{t:.1}")).unwrap_or_default()) }
                                td { (p.app_version.as_deref().unwrap_or("—")) }
                                td.attention { (attention(p).join(", ")) }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// `GET /ui/fleet`
pub async fn page(State(st): State<AppState>, who: Signed) -> Response {
    match fragment(&st).await {
        Ok(body) => layout("Fleet", Some(&who), live::wrap("fleet", body)).into_response(),
        Err(e) => super::error_page(Some(&who), e),
    }
}
