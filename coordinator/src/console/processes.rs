//! `/ui/processes` (filters, search, pages) and `/ui/processes/{id}`: items per phone with
//! attempts, the timeline of milestones and agent events, every callback with each delivery
//! attempt, progress and result as fields; the cancel action, and an admin's retry of a
//! dead-lettered item while its process is still open (decision 0005).

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::session::{CsrfForm, Signed};
use super::{audit, fields, layout, live, see_other, when};
use crate::auth::Caller;
use crate::config::Role;
use crate::db;
use crate::db::console_views::{self as queries, ProcessFilter};
use crate::domain::status::Status;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiPath};

const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
struct ListQuery {
    status: Option<String>,
    capability: Option<String>,
    system: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    /// `<created_at rfc3339>|<process_id>` of the last row of the previous page.
    after: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// A `datetime-local` value (`2026-03-22T08:30`, UTC) or RFC 3339.
fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .or_else(|| OffsetDateTime::parse(&format!("{s}:00Z"), &Rfc3339).ok())
}

fn filter(q: &ListQuery) -> Result<ProcessFilter, ApiError> {
    let mut errors = Vec::new();
    let status = nonempty(&q.status);
    if status
        .as_deref()
        .is_some_and(|s| Status::parse(s).is_none())
    {
        errors.push("invalid_value:status".to_string());
    }
    let mut time = |name: &str, v: &Option<String>| match nonempty(v) {
        None => None,
        Some(s) => parse_time(&s).or_else(|| {
            errors.push(format!("invalid_value:{name}"));
            None
        }),
    };
    let since = time("since", &q.since);
    let until = time("until", &q.until);
    let before = match nonempty(&q.after) {
        None => None,
        Some(a) => a
            .split_once('|')
            .and_then(|(t, id)| Some((parse_time(t)?, Uuid::parse_str(id).ok()?)))
            .or_else(|| {
                errors.push("invalid_value:after".into());
                None
            }),
    };
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors));
    }
    Ok(ProcessFilter {
        status,
        capability: nonempty(&q.capability),
        system: nonempty(&q.system),
        since,
        until,
        search: nonempty(&q.q),
        before,
        limit: PAGE,
    })
}

fn parse_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    match raw {
        None | Some("") => Ok(ListQuery::default()),
        Some(r) => serde_urlencoded_query(r),
    }
}

fn serde_urlencoded_query(raw: &str) -> Result<ListQuery, ApiError> {
    let uri: axum::http::Uri = format!("/?{raw}")
        .parse()
        .map_err(|_| ApiError::unprocessable(vec!["invalid_query".into()]))?;
    axum::extract::Query::<ListQuery>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|_| ApiError::unprocessable(vec!["invalid_query".into()]))
}

/// The live part of the list: the table and the next-page link.
pub async fn list_fragment(st: &AppState, raw: Option<&str>) -> Result<Markup, ApiError> {
    let q = parse_query(raw)?;
    let f = filter(&q)?;
    let rows = queries::processes(&st.db, &f).await?;
    let next = (rows.len() as i64 == PAGE)
        .then(|| rows.last())
        .flatten()
        .map(|r| {
            let mut params: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("status", &q.status),
                ("capability", &q.capability),
                ("system", &q.system),
                ("since", &q.since),
                ("until", &q.until),
                ("q", &q.q),
            ] {
                if let Some(v) = nonempty(v) {
                    params.push((k, v));
                }
            }
            let after = format!(
                "{}|{}",
                crate::domain::time::fmt(r.created_at),
                r.process_id
            );
            params.push(("after", after));
            let qs: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect();
            format!("/ui/processes?{}", qs.join("&"))
        });
    Ok(html! {
        table.processes {
            thead { tr { th { "Created (UTC)" } th { "Process" } th { "Capability" }
                         th { "Request" } th { "System" } th { "Status" } th { "Finished" } } }
            tbody {
                @for r in &rows {
                    tr data-process=(r.process_id) {
                        td { (when(Some(r.created_at))) }
                        td { a href={ "/ui/processes/" (r.process_id) } { code { (r.process_id) } } }
                        td { (r.process_type) } td { (r.request_id) } td { (r.system) }
                        td { span.status.(r.status) data-status=(r.status) { (r.status) } }
                        td { (when(r.finished_at)) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No process matches." } }
        @if let Some(n) = next { p { a href=(n) { "Older →" } } }
    })
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /ui/processes`
pub async fn list_page(
    State(st): State<AppState>,
    who: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = parse_query(raw.as_deref()).unwrap_or_default();
    let body = match list_fragment(&st, raw.as_deref()).await {
        Ok(b) => b,
        Err(e) => return super::error_page(Some(&who), e),
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let statuses = [
        "",
        "queued",
        "executing",
        "retrying",
        "completed",
        "failed_terminal",
        "cancelled",
    ];
    let caps = ["", "keyword_warmup", "fyp_warmup", "maintenance"];
    let view = match raw.as_deref() {
        Some(r) if !r.is_empty() => format!("processes?{r}"),
        _ => "processes".into(),
    };
    layout("Processes", Some(&who), html! {
        form.filters method="get" action="/ui/processes" {
            label { "Status " select name="status" {
                @for s in statuses { option value=(s) selected[q.status.as_deref() == Some(s)] {
                    (if s.is_empty() { "any" } else { s }) } } } }
            label { "Capability " select name="capability" {
                @for c in caps { option value=(c) selected[q.capability.as_deref() == Some(c)] {
                    (if c.is_empty() { "any" } else { c }) } } } }
            label { "System " input type="text" name="system" value=(v(&q.system)); }
            label { "From (UTC) " input type="datetime-local" name="since" value=(v(&q.since)); }
            label { "To (UTC) " input type="datetime-local" name="until" value=(v(&q.until)); }
            label { "process_id or request_id " input type="search" name="q" value=(v(&q.q)); }
            button type="submit" { "Filter" }
        }
        (live::wrap(&view, body))
    })
    .into_response()
}

fn not_found(id: &impl std::fmt::Display) -> ApiError {
    ApiError::not_found(vec![format!("process_not_found:{id}")])
}

/// The live part of a process page.
pub async fn fragment(st: &AppState, who: &Signed, id: Uuid) -> Result<Markup, ApiError> {
    let p = db::processes::get(&st.db, id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let items = queries::items_of_process(&st.db, id).await?;
    let events = queries::events_of_process(&st.db, id).await?;
    let deliveries = queries::deliveries_of_process(&st.db, id).await?;
    let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
    let mut attempts: HashMap<i64, Vec<queries::AttemptRow>> = HashMap::new();
    for a in queries::attempts_of(&st.db, &ids).await? {
        attempts.entry(a.delivery_id).or_default().push(a);
    }
    let terminal = p.status.is_terminal();
    let status = p.status.as_str();
    let milestones = [
        ("accepted", p.accepted_at),
        ("queued", p.queued_at),
        ("executing", p.executing_at),
        ("retrying", p.retrying_at),
        ("cancel requested", p.cancel_requested_at),
        ("finished", p.finished_at),
    ];
    Ok(html! {
        dl.facts {
            dt { "Status" } dd { span.status.(status) data-status=(status) { (status) } }
            dt { "Capability" } dd { (p.process_type) " (" (p.mode) ")" }
            dt { "Request" } dd { (p.request_id) } dt { "System" } dd { (p.system) }
            dt { "Requested by" } dd { (fields(&p.requested_by)) }
            dt { "Target" } dd { (fields(&p.target)) }
            dt { "Inputs" } dd { (fields(&p.inputs)) }
            dt { "Partial progress" } dd { (fields(&p.partial_progress)) }
            dt { "Result" } dd { (fields(&p.result)) }
            dt { "Error" } dd.error { (p.error.as_ref().map(fields).unwrap_or(html! { "none" })) }
        }
        @if !terminal { (cancel_forms(who, id)) }
        h2 { "Milestones" }
        ol.milestones {
            @for (name, at) in milestones { @if at.is_some() { li { strong { (name) } " " (when(at)) } } }
        }
        h2 { "Items" }
        table {
            thead { tr { th { "Item" } th { "Phone" } th { "Account" } th { "Agent" } th { "State" }
                         th { "Attempt" } th { "Step" } th { "Error" } th { "Retry" } } }
            tbody {
                @for i in &items {
                    tr data-item=(i.queue_item_id) {
                        td { code { (i.queue_item_id) } }
                        td { @if let Some(ph) = &i.phone_id { a href={ "/ui/phones/" (ph) } { (ph) } } }
                        td { (i.account_id.as_deref().unwrap_or("—")) }
                        td { (i.agent_id.as_deref().unwrap_or("—")) }
                        td { (i.state) } td { (i.attempt) "/" (i.max_attempts) }
                        td { (i.step.as_deref().unwrap_or("—")) }
                        td { @if let Some(e) = &i.error { (fields(e)) " "
                            @if i.attempt > 0 { a href={ "/ui/evidence/" (i.queue_item_id) "/" (i.attempt) } { "evidence" } } } }
                        td { @if i.state == "DEAD_LETTER" { (retry_cell(who, i.queue_item_id, status, terminal)) } }
                    }
                }
            }
        }
        h2 { "Timeline" }
        table.timeline {
            thead { tr { th { "When (UTC)" } th { "Item" } th { "Attempt" } th { "Source" } th { "Event" } th { "Detail" } } }
            tbody {
                @for e in &events {
                    tr {
                        td { (when(Some(e.at))) }
                        td { code { (short(&e.queue_item_id)) } }
                        td { (e.attempt) }
                        td { (if e.attempt == 0 { "coordinator" } else { "agent" }) }
                        td { (e.kind) }
                        td { (fields(&e.payload)) }
                    }
                }
            }
        }
        h2 { "Callbacks" }
        @if deliveries.is_empty() { p.muted { "None." } }
        @for d in &deliveries {
            @let milestone = serde_json::from_str::<Value>(&d.body).ok()
                .and_then(|b| b.get("milestone").and_then(Value::as_str).map(String::from));
            section.delivery data-delivery=(d.id) {
                h3 { (d.event_type) " · " (milestone.as_deref().unwrap_or("")) " · #"
                    (d.sequence.unwrap_or_default()) " · " (d.state) " · " (d.attempts) " attempts" }
                p.muted { (d.url) " · created " (when(Some(d.created_at)))
                    @if d.state == "pending" { " · next try " (when(Some(d.next_attempt_at))) } }
                table {
                    thead { tr { th { "Attempt" } th { "When (UTC)" } th { "Status" } th { "Latency" } th { "Error" } } }
                    tbody {
                        @for a in attempts.get(&d.id).map(Vec::as_slice).unwrap_or(&[]) {
                            tr.attempt {
                                td { (a.attempt) } td { (when(Some(a.at))) }
                                td { (a.status_code.map(|s| s.to_string()).unwrap_or("—".into())) }
                                td { (a.duration_ms) " ms" }
                                td { (a.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    })
}

fn short(id: &Uuid) -> String {
    id.to_string()
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// What the process page offers for a dead-lettered item: the retry button (admins, while
/// the process is open), or why there is none.
fn retry_cell(who: &Signed, item: Uuid, status: &str, terminal: bool) -> Markup {
    html! {
        @if terminal {
            span.muted { "final: the process is " (status) }
        } @else if who.role < Role::Admin {
            span.muted { "an admin can retry it" }
        } @else {
            form.actions method="post" action={ "/ui/queue-items/" (item) "/retry" } {
                (who.csrf_field())
                button type="submit" { "Retry (one more attempt)" }
            }
        }
    }
}

fn cancel_forms(who: &Signed, id: Uuid) -> Markup {
    html! {
        form.actions method="post" action={ "/ui/processes/" (id) "/cancel" } {
            (who.csrf_field())
            label { "Reason " input type="text" name="reason" required maxlength="500"
                value="cancelled by an operator"; }
            button type="submit" name="strategy" value="soft" { "Cancel (soft)" }
            button type="submit" name="strategy" value="hard" { "Cancel (hard)" }
            button type="submit" name="strategy" value="soft_then_force" { "Cancel (soft, then force)" }
        }
    }
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    /// The item a retry just re-queued (said once above the page).
    retried: Option<String>,
}

/// `GET /ui/processes/{process_id}`
pub async fn page(
    State(st): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Ok(pid) = Uuid::parse_str(&id) else {
        return super::error_page(Some(&who), not_found(&id));
    };
    let retried = raw
        .and_then(|r| {
            let uri: axum::http::Uri = format!("/?{r}").parse().ok()?;
            Query::<PageQuery>::try_from_uri(&uri).ok()?.0.retried
        })
        .and_then(|r| Uuid::parse_str(&r).ok());
    match fragment(&st, &who, pid).await {
        Ok(body) => layout(
            &format!("Process {pid}"),
            Some(&who),
            html! {
                @if let Some(item) = retried {
                    p.notice data-retried=(item) { "Item " code { (item) } " is re-queued for one \
                        more attempt: it runs when its phone is free." }
                }
                (live::wrap(&format!("processes/{pid}"), body))
            },
        )
        .into_response(),
        Err(e) => super::error_page(Some(&who), e),
    }
}

#[derive(Deserialize)]
pub struct CancelForm {
    #[serde(flatten)]
    csrf: CsrfForm,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    strategy: String,
}

/// `POST /ui/processes/{process_id}/cancel`: the API's cancel, as this operator.
pub async fn cancel(
    State(st): State<AppState>,
    who: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Response {
    if let Some(r) = who.csrf_refusal(&headers, form.csrf.csrf.as_deref()) {
        return r;
    }
    let caller = Caller {
        role: who.role,
        system: None,
        name: who.key_name.clone(),
    };
    let body = json!({
        "reason": form.reason,
        "strategy": form.strategy,
        "requested_by": {"system": "console", "user": who.key_name},
    });
    let answer = crate::http::processes::cancel(
        State(st.clone()),
        caller,
        ApiPath(id.clone()),
        ApiJson(body),
    )
    .await;
    let answer = match answer {
        Ok(a) => serde_json::to_value(&a.0).unwrap_or_default(),
        Err(e) => return super::error_page(Some(&who), e),
    };
    let entry = audit::Entry::console(
        &who.key_name,
        "process.cancel",
        Some(id.clone()),
        who.address.clone(),
    )
    .with(json!({"strategy": form.strategy, "reason": form.reason,
                     "status": answer.get("status")}));
    if let Err(e) = audit::record(&st.db, entry).await {
        return super::error_page(Some(&who), e.into());
    }
    see_other(&format!("/ui/processes/{id}"))
}

/// `POST /ui/queue-items/{queue_item_id}/retry` (admin): the API's retry, as this admin; back
/// to the process page, which says what happened.
pub async fn retry(
    State(st): State<AppState>,
    who: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(r) = who.csrf_refusal(&headers, form.csrf.as_deref()) {
        return r;
    }
    // The refusal page links back to the item's process, when there is one.
    let process = match Uuid::parse_str(&id) {
        Ok(qid) => db::dispatch::detail(&st.db, qid)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.process_id),
        Err(_) => None,
    };
    let refused = |status, e: &ApiError| {
        super::page_with(
            status,
            "Not retried",
            Some(&who),
            html! {
                p.error { (e.detail) }
                p { code { (e.errors.join(", ")) } }
                p { @if let Some(pid) = process {
                        a href={ "/ui/processes/" (pid) } { "Back to the process" }
                    } @else { a href="/ui/processes" { "Back to the processes" } } }
            },
        )
    };
    if who.role < Role::Admin {
        let e = ApiError::forbidden(
            "insufficient_role",
            "Retrying a dead-lettered item needs an admin key; ask an admin.",
        );
        return refused(e.status, &e);
    }
    let caller = Caller {
        role: who.role,
        system: None,
        name: who.key_name.clone(),
    };
    let answer =
        crate::http::queue_items::retry(State(st.clone()), caller, ApiPath(id.clone())).await;
    let answer = match answer {
        Ok(a) => a.0,
        Err(e) if e.status.is_client_error() => return refused(e.status, &e),
        Err(e) => return super::error_page(Some(&who), e),
    };
    let entry = audit::Entry::console(&who.key_name, "item.retry", Some(id), who.address.clone())
        .with(
            json!({"process_id": answer.process_id, "next_attempt": answer.next_attempt,
                     "process_status": answer.process_status}),
        );
    if let Err(e) = audit::record(&st.db, entry).await {
        return super::error_page(Some(&who), e.into());
    }
    match answer.process_id {
        Some(pid) => see_other(&format!(
            "/ui/processes/{pid}?retried={}",
            answer.queue_item_id
        )),
        None => see_other("/ui/processes"),
    }
}
