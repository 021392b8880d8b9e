//! Liveness, readiness and Prometheus metrics (the recorder's counters, then the gauges of
//! `http::gauges`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::answers::{Internal, Unauthorized, Unavailable};

/// `status` of `GET /healthz`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Alive {
    Ok,
}

/// The answer to `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: Alive,
}

/// `status` of `GET /readyz`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    Unavailable,
}

/// Which dependency answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    pub postgres: bool,
    /// `null` when this coordinator runs without NATS.
    pub nats: Option<bool>,
}

/// The answer to `GET /readyz` (200 ready, 503 not).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "checks": {"postgres": true, "nats": true}}))]
pub struct Readiness {
    pub status: ReadyStatus,
    pub checks: ReadyChecks,
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health),
              (status = 500, response = Internal)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: Alive::Ok })
}

/// `GET /readyz`: Postgres answers within a second, and NATS does too when this coordinator
/// dispatches (`"nats": null` when it runs without a bus).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready", body = Readiness),
              (status = 503, description = "A dependency does not answer", body = Readiness,
               example = json!({"status": "unavailable", "checks": {"postgres": false, "nats": true}})),
              (status = 500, response = Internal)))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    let pg = tokio::time::timeout(Duration::from_secs(1), crate::db::ping(&st.db))
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
    let body = Readiness {
        status: if ready {
            ReadyStatus::Ready
        } else {
            ReadyStatus::Unavailable
        },
        checks: ReadyChecks { postgres: pg, nats },
    };
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
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
              (status = 401, response = Unauthorized), (status = 500, response = Internal),
              (status = 503, response = Unavailable)),
    security((), ("bearer" = [])))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut text = st.metrics.render();
    // The operators' gauges (http::gauges), read now; a slow or failed read serves the
    // counters with `phonefarm_gauges_up 0` instead of failing the scrape.
    let read = tokio::time::timeout(Duration::from_secs(3), crate::db::gauges::read(&st.db)).await;
    match read {
        Ok(Ok(snap)) => text.push_str(&super::gauges::render(&snap)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the gauges");
            text.push_str(&super::gauges::unavailable());
        }
        Err(_) => {
            tracing::warn!("reading the gauges took over 3 s");
            text.push_str(&super::gauges::unavailable());
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
