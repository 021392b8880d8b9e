//! The HTTP API: one file per resource, the shared state, the router and the serve loop.
//!
//! [`AppState`] holds the pool, the guarded HTTP client, auth, the callback `Notify`, metrics,
//! the capability registry cached for 2 s (single-flight: a burst that finds it stale waits for
//! one read) and the two batchers of [`batched`].

pub mod accounts;
pub mod batched;
pub mod bodies;
pub mod capabilities;
pub mod docs;
pub mod extract;
pub mod fleet;
pub mod gauges;
pub mod health;
pub mod legacy;
pub mod processes;
pub mod queue_items;
pub mod views;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use phonefarm_net::{GuardedClient, SsrfError};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::auth::Auth;
use crate::db;
use crate::domain::capabilities::CapabilityRule;
use crate::error::ApiError;

/// How long the capability registry is cached; an operator's change reaches every replica
/// within this time (at once on the replica that served the PUT).
const CAPABILITY_TTL: Duration = Duration::from_secs(2);

/// The cached capability registry.
#[derive(Default)]
struct CapabilityCache {
    state: Mutex<CachedRules>,
    /// Held while the registry is read, so a burst of requests that finds the cache stale (one
    /// per `CAPABILITY_TTL`) waits for one query instead of sending one each.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct CachedRules {
    /// The registry and when it was read; `None` when stale or invalidated.
    rules: Option<(Instant, Arc<Vec<CapabilityRule>>)>,
    /// Bumped by every invalidation: a read that started before one is not cached.
    generation: u64,
}

impl CapabilityCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CachedRules> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self) -> Option<Arc<Vec<CapabilityRule>>> {
        let (at, rules) = self.lock().rules.clone()?;
        (at.elapsed() < CAPABILITY_TTL).then_some(rules)
    }
}

/// Shared, cheap-to-clone state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub http: GuardedClient,
    pub auth: Arc<Auth>,
    /// Woken after each commit that enqueued callbacks.
    pub callbacks: Arc<Notify>,
    pub metrics: PrometheusHandle,
    pub public_metrics: bool,
    /// NATS, when this coordinator dispatches (readiness, cancel orders, fleet heartbeats).
    pub bus: Option<crate::bus::BusHandle>,
    /// Group commit of new processes.
    pub committer: batched::Committer,
    /// Batched reads of `GET /processes/{id}`.
    pub views: batched::ViewReader,
    capabilities: Arc<CapabilityCache>,
}

/// The process-wide Prometheus recorder (installed once, shared by every app in a process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests): then ours just renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

impl AppState {
    /// Spawns the batch workers ([`batched`]) on the current Tokio runtime.
    pub fn new(
        db: PgPool,
        http: GuardedClient,
        auth: Auth,
        callbacks: Arc<Notify>,
        public_metrics: bool,
    ) -> Self {
        Self {
            committer: batched::committer(db.clone()),
            views: batched::view_reader(db.clone()),
            db,
            http,
            auth: Arc::new(auth),
            callbacks,
            metrics: metrics_handle(),
            public_metrics,
            bus: None,
            capabilities: Arc::default(),
        }
    }

    /// The same state with a NATS bus.
    pub fn with_bus(mut self, bus: Option<crate::bus::BusHandle>) -> Self {
        self.bus = bus;
        self
    }

    /// The capability registry, cached for [`CAPABILITY_TTL`]; concurrent misses share one
    /// read.
    pub async fn capabilities(&self) -> Result<Arc<Vec<CapabilityRule>>, ApiError> {
        let cache = &self.capabilities;
        if let Some(rules) = cache.fresh() {
            return Ok(rules);
        }
        let _refreshing = cache.refresh.lock().await;
        if let Some(rules) = cache.fresh() {
            return Ok(rules);
        }
        let generation = cache.lock().generation;
        let rules = Arc::new(db::capabilities::list(&self.db).await?);
        let mut state = cache.lock();
        if state.generation == generation {
            state.rules = Some((Instant::now(), Arc::clone(&rules)));
        }
        Ok(rules)
    }

    /// Wakes what a committed lifecycle change needs: the callback deliverer, and with a bus the
    /// outbox relay and the dispatcher.
    pub fn wake(&self, wake: crate::lifecycle::Wake) {
        if wake.callbacks {
            self.callbacks.notify_one();
        }
        if let Some(bus) = &self.bus {
            if wake.relay {
                bus.wakers.relay.notify_one();
            }
            if wake.dispatch {
                bus.wakers.dispatch.notify_one();
            }
        }
    }

    pub fn invalidate_capabilities(&self) {
        let mut state = self.capabilities.lock();
        state.generation += 1;
        state.rules = None;
    }
}

/// Request-time SSRF check of a caller-supplied URL: refused addresses are a 422 with `reason`;
/// a name that does not resolve now is accepted (delivery checks again when it dials).
pub async fn check_url(st: &AppState, url: &str, reason: &str) -> Result<(), ApiError> {
    match st.http.check_url(url).await {
        Ok(()) | Err(SsrfError::Resolve { .. }) => Ok(()),
        Err(SsrfError::Refused { reason: why, .. })
        | Err(SsrfError::NoAllowedAddress { reason: why, .. }) => Err(ApiError::unprocessable(
            vec![format!("{reason}:{}", why.as_str())],
        )),
        Err(_) => Err(ApiError::unprocessable(vec![format!(
            "{reason}:invalid_url"
        )])),
    }
}

async fn fallback() -> ApiError {
    ApiError::not_found(vec!["route_not_found".into()])
}

async fn track(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("path", path), ("status", status)];
    metrics::counter!("phonefarm_http_requests_total", &labels).increment(1);
    metrics::histogram!("phonefarm_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    resp
}

async fn metrics_guarded(State(st): State<AppState>, req: Request) -> Response {
    if !st.public_metrics {
        let header = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = st.auth.authenticate(&st.db, header).await {
            return e.into_response();
        }
    }
    health::metrics(State(st)).await
}

/// Turns a panic inside a handler into a 500 problem (the panic itself is logged).
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal().into_response()
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/capability-requests/enqueue", post(processes::enqueue))
        .route("/maintenance/requests", post(processes::maintenance))
        .route("/processes", get(processes::list))
        .route("/processes/{process_id}", get(processes::get))
        .route("/processes/{process_id}/cancel", post(processes::cancel))
        .route("/ingest", post(legacy::ingest))
        .route("/cancel", post(legacy::cancel))
        .route("/runtime-snapshots/upsert", post(legacy::snapshot))
        .route("/accounts", get(accounts::list))
        .route(
            "/accounts/{account_id}",
            put(accounts::put).get(accounts::get),
        )
        .route("/agents", get(fleet::agents))
        .route("/phones", get(fleet::phones))
        .route(
            "/phones/{phone_id}",
            get(fleet::phone).put(fleet::put_phone),
        )
        .route("/phones/{phone_id}/move", post(fleet::move_phone))
        .route("/phones/{phone_id}/reboot", post(fleet::reboot_phone))
        .route("/phones/{phone_id}/locate", post(fleet::locate_phone))
        .route("/phones/{phone_id}/moves", get(fleet::phone_moves))
        .route("/queue-items/{queue_item_id}", get(queue_items::get))
        .route(
            "/queue-items/{queue_item_id}/retry",
            post(queue_items::retry),
        )
        .route("/capabilities", get(capabilities::list))
        .route("/capabilities/{name}", put(capabilities::put))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics_guarded))
        .merge(crate::console::router())
        .fallback(fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                vec!["method_not_allowed".into()],
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::console::audit::api_layer,
        ))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .with_state(state);
    let spec = docs::ApiDoc::openapi().merge_from(crate::console::audit::AuditDoc::openapi());
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", spec);
    Router::new()
        .merge(docs)
        .merge(api)
        .layer(middleware::from_fn(track))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Serves the API on an already bound listener until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // With the peer's address: the audit log records where actions came from.
    let app = router(state).into_make_service_with_connect_info::<crate::console::session::Peer>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
