//! Liveness, readiness and Prometheus metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: Postgres answers within a second, and NATS does too when this coordinator
/// dispatches (`"nats": null` when it runs without a bus).
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200), (status = 503)))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    let pg = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query("SELECT 1").execute(&st.db),
    )
    .await
    .map(|r| r.is_ok())
    .unwrap_or(false);
    let nats = match &st.bus {
        None => None,
        Some(bus) => Some(
            bus.connected()
                && tokio::time::timeout(Duration::from_secs(1), bus.client.flush())
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false),
        ),
    };
    let ready = pg && nats.unwrap_or(true);
    let body = json!({"status": if ready { "ready" } else { "unavailable" },
                      "checks": {"postgres": pg, "nats": nats}});
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format. Needs a bearer token (any role) unless the
/// coordinator runs with `--public-metrics`.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
              (status = 401, body = super::docs::Problem)),
    security((), ("bearer" = [])))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}
