//! `/ui/failures`: the last 24 h of failed runs grouped by reason, flow pack revision, app
//! version and phone model; `/ui/evidence/{item}/{attempt}`: a failed attempt's screenshot and
//! UI dump as a tree with the nodes the failed selector names highlighted (or, on a screen no
//! pack knows, the screen the flow expected named as what failed), the pack and revision the
//! run used (from the agent's message) and the phone's app version. Evidence the agent has
//! announced but not yet stored is said to be on its way, never shown as a broken image.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use phonefarm_flows::quoted::{pairs_match, quoted_pairs};
use phonefarm_flows::{Node, parse_dump_bytes};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use super::session::Signed;
use super::{fields, layout, when};
use crate::db;
use crate::db::console_views as queries;
use crate::error::ApiError;
use crate::http::AppState;

/// Evidence objects larger than this are not fetched.
const MAX_OBJECT: usize = 16 << 20;

/// `GET /ui/failures`
pub async fn page(State(st): State<AppState>, who: Signed) -> Response {
    let groups = match queries::failures_24h(&st.db).await {
        Ok(g) => g,
        Err(e) => return super::error_page(Some(&who), e.into()),
    };
    layout("Failures, last 24 h", Some(&who), html! {
        p.muted { "Failed runs grouped by reason, the flow pack the run used, the app version and the phone model." }
        table.failures {
            thead { tr { th { "Runs" } th { "Reason" } th { "Flow pack" } th { "App version" }
                         th { "Model" } th { "Last" } th { "Example" } } }
            tbody {
                @for g in &groups {
                    tr {
                        td { (g.runs) } td { code { (g.reason) } }
                        td { (g.pack.as_deref().unwrap_or("—")) }
                        td { (g.app_version.as_deref().unwrap_or("—")) }
                        td { (g.model.as_deref().unwrap_or("—")) }
                        td { (when(Some(g.last_at))) }
                        td { a href={ "/ui/evidence/" (g.example) "/last" } { "evidence" } }
                    }
                }
            }
        }
        @if groups.is_empty() { p { "No failed run in the last 24 hours." } }
    })
    .into_response()
}

/// Reads one evidence object from the agent's store (`None` without NATS or when absent).
async fn fetch(st: &AppState, object: &str) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(bus) = &st.bus else { return Ok(None) };
    let bucket = evidence_bucket(object);
    let Ok(store) = bus.js.get_object_store(&bucket).await else {
        return Ok(None);
    };
    let Ok(mut obj) = store.get(object).await else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    let mut limited = (&mut obj).take(MAX_OBJECT as u64);
    limited
        .read_to_end(&mut buf)
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(Some(buf))
}

/// Whether `object` is in its agent's store yet.
async fn stored(st: &AppState, object: &str) -> bool {
    let Some(bus) = &st.bus else { return false };
    let Ok(store) = bus.js.get_object_store(&evidence_bucket(object)).await else {
        return false;
    };
    store.info(object).await.is_ok()
}

/// The pack and revision the failed run used, as the agent's message ends: `… (screen S,
/// pack NAME rN)` (agent/src/runner/run.rs).
fn run_pack(message: &str) -> Option<String> {
    let (_, rest) = message.rsplit_once(", pack ")?;
    let pack = rest.strip_suffix(')')?;
    let (name, revision) = pack.rsplit_once(" r")?;
    (!name.is_empty() && revision.parse::<u32>().is_ok()).then(|| pack.to_string())
}

/// The bucket holding `object`: an agent's own (`<agent_id>/<item>/<attempt>/<name>`), or the
/// shared one of evidence from before per-agent buckets (as `GET /queue-items/{id}` names it).
fn evidence_bucket(object: &str) -> String {
    let first = object.split('/').next().unwrap_or_default();
    if object.split('/').count() < 4 || Uuid::parse_str(first).is_ok() {
        phonefarm_shared::subjects::EVIDENCE_BUCKET.to_string()
    } else {
        phonefarm_shared::subjects::evidence_bucket(first)
    }
}

/// The attempt a path names: a number, or `last` for the item's current attempt.
async fn attempt_of(st: &AppState, item: Uuid, attempt: &str) -> Result<i32, ApiError> {
    if attempt == "last" {
        let d = db::dispatch::detail(&st.db, item)
            .await?
            .ok_or_else(|| not_found(&item))?;
        return Ok(d.attempt);
    }
    attempt
        .parse()
        .map_err(|_| ApiError::not_found(vec![format!("attempt_not_found:{attempt}")]))
}

fn not_found(item: &Uuid) -> ApiError {
    ApiError::not_found(vec![format!("queue_item_not_found:{item}")])
}

/// `GET /ui/evidence/{queue_item_id}/{attempt}`
pub async fn evidence(
    State(st): State<AppState>,
    who: Signed,
    Path((item, attempt)): Path<(String, String)>,
) -> Response {
    match evidence_body(&st, &item, &attempt).await {
        Ok((title, body)) => layout(&title, Some(&who), body).into_response(),
        Err(e) => super::error_page(Some(&who), e),
    }
}

async fn evidence_body(
    st: &AppState,
    item: &str,
    attempt: &str,
) -> Result<(String, Markup), ApiError> {
    let id = Uuid::parse_str(item)
        .map_err(|_| ApiError::not_found(vec![format!("queue_item_not_found:{item}")]))?;
    let attempt = attempt_of(st, id, attempt).await?;
    let d = db::dispatch::detail(&st.db, id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let error = queries::attempt_error(&st.db, id, attempt).await?;
    let objects = queries::evidence(&st.db, id, attempt).await?;
    let phone = match &d.phone_id {
        Some(p) => db::phones::get(&st.db, p).await?,
        None => None,
    };
    let packs = match &d.agent_id {
        Some(a) => running_packs(st, a).await?,
        None => Vec::new(),
    };
    let message = error
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // The agent announces evidence before its uploader has stored it: what is announced but
    // not stored yet is said to be on its way, so the page never shows a broken image.
    let mut dump = None;
    let (mut has_screenshot, mut pending) = (false, false);
    for o in &objects {
        match (o.kind.as_deref(), &o.object) {
            (Some("ui_dump"), Some(obj)) => {
                dump = fetch(st, obj).await?;
                pending |= dump.is_none();
            }
            (Some("screenshot"), Some(obj)) => {
                has_screenshot = stored(st, obj).await;
                pending |= !has_screenshot;
            }
            _ => {}
        }
    }
    let run_pack = run_pack(&message);
    let app_version = phone.as_ref().and_then(|p| p.app_version.as_deref());
    let title = format!("Evidence of {} attempt {attempt}", d.kind);
    let body = html! {
        dl.facts {
            dt { "Item" } dd { code { (id) } @if let Some(p) = d.process_id {
                " · " a href={ "/ui/processes/" (p) } { "process" } } }
            dt { "Phone" } dd { (d.phone_id.as_deref().unwrap_or("—")) }
            dt { "Agent" } dd { (d.agent_id.as_deref().unwrap_or("—")) }
            dt { "Flow pack of the run" } dd data-run-pack=[run_pack.as_deref()] { (run_pack.as_deref().unwrap_or("—")) }
            dt { "Flow packs on the agent" } dd { @if packs.is_empty() { "—" } @else { (packs.join(", ")) } }
            dt { "App version" } dd data-app-version=[app_version] { (app_version.unwrap_or("—")) }
            dt { "Model" } dd { (phone.as_ref().and_then(|p| p.model.as_deref()).unwrap_or("—")) }
            dt { "Error" } dd.error { (error.as_ref().map(fields).unwrap_or(html! { "none" })) }
        }
        @if objects.is_empty() { p.muted { "No evidence was uploaded for this attempt." } }
        @if pending { p.muted.pending { "The agent is still uploading evidence; reload in a moment." } }
        section.evidence {
            @if has_screenshot {
                figure.screenshot {
                    img src={ "/ui/evidence/" (id) "/" (attempt) "/screenshot" } alt="screenshot of the failed step";
                    figcaption { "Screenshot" }
                }
            }
            @if let Some(xml) = &dump { (dump_tree(xml, &message)) }
        }
    };
    Ok((title, body))
}

async fn running_packs(st: &AppState, agent: &str) -> Result<Vec<String>, ApiError> {
    let running = queries::running_packs(&st.db, agent)
        .await?
        .unwrap_or(Value::Null);
    Ok(running
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some(format!(
                        "{} r{}",
                        p.get("name")?.as_str()?,
                        p.get("revision")?
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The screens a flow waited for when the message says `… expected A or B (screen …`: on a
/// screen no pack knows, that expectation is what failed (no node of it is there to highlight).
fn expected_screens(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("expected ")?;
    let names = rest.split(" (").next()?.trim();
    (!names.is_empty()).then_some(names)
}

fn dump_tree(xml: &[u8], message: &str) -> Markup {
    let Ok(tree) = parse_dump_bytes(xml) else {
        return html! { p.error { "The UI dump could not be read." } };
    };
    let pairs = quoted_pairs(message);
    let nodes = tree.nodes();
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        children.entry(n.parent).or_default().push(i);
    }
    let hits = nodes.iter().filter(|n| pairs_match(n, &pairs)).count();
    let expected = expected_screens(message);
    html! {
        figure.dump {
            figcaption { "UI dump (" (nodes.len()) " nodes)"
                @if !pairs.is_empty() { " · selector "
                    code { @for (k, v) in &pairs { (k) "=" (v) " " } } " · "
                    (hits) " matching node(s) highlighted" }
                @if let Some(e) = expected { " · the flow expected screen "
                    code.miss data-expected=(e) { (e) } ", which this is not" } }
            (subtree(nodes, &children, None, &pairs))
        }
    }
}

fn subtree(
    nodes: &[Node],
    children: &HashMap<Option<usize>, Vec<usize>>,
    parent: Option<usize>,
    pairs: &[(String, String)],
) -> Markup {
    let Some(kids) = children.get(&parent) else {
        return html! {};
    };
    html! {
        ul.tree {
            @for &i in kids {
                @let n = &nodes[i];
                li.(if pairs_match(n, pairs) { "hit" } else { "" }) {
                    span.class { (n.class.rsplit('.').next().unwrap_or("")) }
                    @if !n.resource_id.is_empty() { " " span.rid { "#" (n.resource_id) } }
                    @if !n.text.is_empty() { " " span.text { "“" (n.text) "”" } }
                    @if !n.content_desc.is_empty() { " " span.desc { "[" (n.content_desc) "]" } }
                    (subtree(nodes, children, Some(i), pairs))
                }
            }
        }
    }
}

/// `GET /ui/evidence/{queue_item_id}/{attempt}/screenshot`: the PNG from the agent's store.
pub async fn screenshot(
    State(st): State<AppState>,
    who: Signed,
    Path((item, attempt)): Path<(String, String)>,
) -> Response {
    let found = async {
        let id = Uuid::parse_str(&item)
            .map_err(|_| ApiError::not_found(vec!["queue_item_not_found".into()]))?;
        let attempt = attempt_of(&st, id, &attempt).await?;
        let objects = queries::evidence(&st.db, id, attempt).await?;
        let Some(obj) = objects
            .iter()
            .find(|o| o.kind.as_deref() == Some("screenshot"))
            .and_then(|o| o.object.clone())
        else {
            return Err(ApiError::not_found(vec!["screenshot_not_found".into()]));
        };
        fetch(&st, &obj)
            .await?
            .ok_or_else(|| ApiError::not_found(vec!["screenshot_not_found".into()]))
    }
    .await;
    match found {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            png,
        )
            .into_response(),
        Err(e) => {
            let _ = who;
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_run_pack_is_read_from_the_message() {
        let m = "flow_error:unknown in step search: timed out (screen unknown, pack tiktok-32 r7)";
        assert_eq!(super::run_pack(m).as_deref(), Some("tiktok-32 r7"));
        assert_eq!(super::run_pack("no pack here"), None);
        assert_eq!(
            super::expected_screens(m.replace("timed out", "expected search_results").as_str()),
            Some("search_results")
        );
        assert_eq!(super::expected_screens(m), None);
        assert_eq!(super::run_pack("x (screen s, pack p rx)"), None);
    }
}
