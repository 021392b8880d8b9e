//! The phone page's live screen: `GET /ui/live/screen/{phone_id}` is a server-sent event stream
//! that, while it is open, keeps this replica watching the phone (`bus::screen`) and sends an
//! event `frame` per new frame: an `<img>` of `GET /ui/phones/{phone_id}/screen?n=<n>`, which
//! htmx swaps in, so the browser loads the new PNG (same origin: the CSP's `img-src 'self'`
//! holds, and no script of ours is needed). Closing the page ends the stream, which drops the
//! viewer; the last viewer's going ends the watch and the agent stops capturing.
//!
//! The image endpoint serves this replica's latest frame (`no-store`). A replica without one
//! (behind a load balancer the stream and the image may land on different replicas) watches the
//! phone itself for a moment and serves the first frame that comes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use maud::{Markup, html};

use super::session::Signed;
use crate::bus::screen::{Frame, Viewer};
use crate::db;
use crate::error::ApiError;
use crate::http::AppState;

/// How often an open stream checks that its session still lives when no frame comes.
const SESSION_CHECK: Duration = Duration::from_secs(5);
/// How long the image endpoint waits for a first frame it does not have.
const FIRST_FRAME: Duration = Duration::from_secs(5);

/// The screen panel of the phone page.
pub fn panel(phone_id: &str) -> Markup {
    html! {
        div.screen hx-ext="sse" sse-connect={ "/ui/live/screen/" (phone_id) } {
            div.frame sse-swap="frame" { p.muted { "Waiting for the phone's screen…" } }
            div hidden sse-swap="signed_out" {}
        }
    }
}

fn unavailable(reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the live view is unavailable on this coordinator",
        vec![reason.into()],
    )
}

/// Starts watching `phone_id` through its agent.
async fn viewer(st: &AppState, phone_id: &str) -> Result<Viewer, ApiError> {
    let bus = st
        .bus
        .as_ref()
        .ok_or_else(|| unavailable("dependency_unavailable:nats"))?;
    let phone = db::phones::get(&st.db, phone_id)
        .await?
        .ok_or_else(|| ApiError::not_found(vec![format!("phone_not_found:{phone_id}")]))?;
    let agent = phone
        .agent_id
        .ok_or_else(|| ApiError::conflict(format!("phone_without_agent:{phone_id}")))?;
    bus.screens
        .watch(&agent, phone_id)
        .map_err(|_| unavailable("too_many_watched_phones"))
}

/// `GET /ui/live/screen/{phone_id}`. Where there is no live view (no NATS here, a phone without
/// agent, too many watched), the stream says why in its first event and stays open (an ended
/// stream would have the browser reconnect every few seconds).
pub async fn stream(st: AppState, who: Signed, phone_id: String) -> Response {
    let viewer = match viewer(&st, &phone_id).await {
        Ok(v) => Ok(v),
        Err(e) if e.status.is_server_error() && e.status != StatusCode::SERVICE_UNAVAILABLE => {
            return e.into_response();
        }
        Err(e) => Err(e.errors.join(", ")),
    };
    Sse::new(frames(st, who, phone_id, viewer))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn frame_html(phone_id: &str, f: &Frame) -> String {
    html! {
        img src={ "/ui/phones/" (phone_id) "/screen?n=" (f.n) } alt={ "Screen of " (phone_id) }
            data-frame=(f.n);
    }
    .into_string()
}

struct Watching {
    st: AppState,
    who: Signed,
    phone_id: String,
    /// The viewer, or why there is none (emptied once said).
    viewer: Result<Viewer, String>,
    done: bool,
}

fn frames(
    st: AppState,
    who: Signed,
    phone_id: String,
    viewer: Result<Viewer, String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let w = Watching {
        st,
        who,
        phone_id,
        viewer,
        done: false,
    };
    futures::stream::unfold(w, |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            let viewer = match &mut w.viewer {
                Ok(v) => v,
                Err(why) if !why.is_empty() => {
                    let html = html! {
                        p.muted data-no-live-view=(why) { "No live view: " (why) "." }
                    };
                    w.viewer = Err(String::new());
                    let ev = Event::default().event("frame").data(html.into_string());
                    return Some((Ok(ev), w));
                }
                Err(_) => {
                    // Nothing to send; only the session's end.
                    tokio::time::sleep(SESSION_CHECK).await;
                    if !w.who.still_valid(&w.st.db).await.unwrap_or(true) {
                        w.done = true;
                        let ev = Event::default().event("signed_out").data("signed out");
                        return Some((Ok(ev), w));
                    }
                    continue;
                }
            };
            let changed = tokio::time::timeout(SESSION_CHECK, viewer.frames.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                return None; // the feed ended
            }
            let html = viewer
                .frames
                .borrow_and_update()
                .as_ref()
                .map(|f| frame_html(&w.phone_id, f));
            if !w.who.still_valid(&w.st.db).await.unwrap_or(true) {
                w.done = true;
                let ev = Event::default().event("signed_out").data("signed out");
                return Some((Ok(ev), w));
            }
            if let (Ok(Ok(())), Some(html)) = (changed, html) {
                return Some((Ok(Event::default().event("frame").data(html)), w));
            }
        }
    })
}

/// `GET /ui/phones/{phone_id}/screen`: the latest frame as `image/png`.
pub async fn image(State(st): State<AppState>, _who: Signed, Path(id): Path<String>) -> Response {
    let mut viewer = match viewer(&st, &id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let first = tokio::time::timeout(FIRST_FRAME, viewer.frames.wait_for(|f| f.is_some())).await;
    let png = match first {
        Ok(Ok(f)) => f.as_ref().map(|f| f.png.clone()),
        _ => None,
    };
    match png {
        Some(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            png,
        )
            .into_response(),
        None => ApiError::not_found(vec![format!("no_screen_frame:{id}")]).into_response(),
    }
}
