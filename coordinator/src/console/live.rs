//! Live parts of pages: `GET /ui/live/<view>` is a server-sent event stream that re-renders
//! the view about once a second and sends it (event `update`, the fragment's HTML) when it
//! changed; htmx's SSE extension swaps it in. The stream ends when the session does.
//! `screen/<phone_id>` is the phone's live screen instead (`super::screen`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use maud::{Markup, html};
use sha2::{Digest, Sha256};

use super::session::Signed;
use super::{fleet, phone, processes};
use crate::error::ApiError;
use crate::http::AppState;

/// How often a live view is re-rendered.
pub const TICK: Duration = Duration::from_secs(1);

/// A live part of a page: `view` is its path under `/ui/live/`.
pub fn wrap(view: &str, body: Markup) -> Markup {
    html! {
        div.live hx-ext="sse" sse-connect={ "/ui/live/" (view) } sse-swap="update" {
            (body)
            div hidden sse-swap="signed_out" {}
        }
    }
}

#[derive(Clone)]
enum View {
    Fleet,
    Phone(String),
    Process(uuid::Uuid),
    Processes(Option<String>),
}

impl View {
    fn parse(path: &str, query: Option<String>) -> Option<View> {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["fleet"] => Some(View::Fleet),
            ["phones", id] => Some(View::Phone((*id).to_string())),
            ["processes", id] => uuid::Uuid::parse_str(id).ok().map(View::Process),
            ["processes"] => Some(View::Processes(query)),
            _ => None,
        }
    }

    async fn render(&self, st: &AppState, who: &Signed) -> Result<Markup, ApiError> {
        match self {
            View::Fleet => fleet::fragment(st).await,
            View::Phone(id) => phone::fragment(st, who, id).await,
            View::Process(id) => processes::fragment(st, who, *id).await,
            View::Processes(q) => processes::list_fragment(st, q.as_deref()).await,
        }
    }
}

/// `GET /ui/live/{*view}`
pub async fn stream(
    State(st): State<AppState>,
    who: Signed,
    Path(view): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(phone_id) = view.strip_prefix("screen/") {
        return super::screen::stream(st, who, phone_id.to_string()).await;
    }
    let Some(view) = View::parse(&view, query) else {
        return ApiError::not_found(vec![format!("live_view_not_found:{view}")]).into_response();
    };
    Sse::new(events(st, who, view))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct Ticker {
    st: AppState,
    who: Signed,
    view: View,
    last: Option<[u8; 32]>,
    first: bool,
    done: bool,
}

fn events(st: AppState, who: Signed, view: View) -> impl Stream<Item = Result<Event, Infallible>> {
    let t = Ticker {
        st,
        who,
        view,
        last: None,
        first: true,
        done: false,
    };
    futures::stream::unfold(t, |mut t| async move {
        if t.done {
            return None;
        }
        loop {
            if !t.first {
                tokio::time::sleep(TICK).await;
            }
            t.first = false;
            match t.who.still_valid(&t.st.db).await {
                Ok(true) => {}
                Ok(false) => {
                    t.done = true;
                    let ev = Event::default().event("signed_out").data("signed out");
                    return Some((Ok(ev), t));
                }
                Err(_) => continue,
            }
            let html = match t.view.render(&t.st, &t.who).await {
                Ok(m) => m.into_string(),
                Err(e) => {
                    tracing::debug!(detail = %e.detail, "live view not rendered");
                    continue;
                }
            };
            let digest: [u8; 32] = Sha256::digest(html.as_bytes()).into();
            if t.last == Some(digest) {
                continue;
            }
            t.last = Some(digest);
            return Some((Ok(Event::default().event("update").data(html)), t));
        }
    })
}
