//! The one HTTP error type: every failure leaves the API as RFC 9457 problem JSON with the
//! machine-readable `errors` strings of the contract. 5xx bodies say little; the cause goes to
//! the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    pub errors: Vec<String>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    errors: &'a [String],
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>, errors: Vec<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            errors,
        }
    }

    pub fn unprocessable(errors: Vec<String>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("the request is invalid: {one}"),
            many => format!("the request is invalid ({} problems)", many.len()),
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail, errors)
    }

    pub fn not_found(errors: Vec<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found", errors)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
            vec!["unauthorized".into()],
        )
    }

    pub fn forbidden(reason: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail, vec![reason.into()])
    }

    pub fn conflict(reason: String) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "the resource is in a conflicting state",
            vec![reason],
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "a dependency is unavailable, retry later",
            vec!["dependency_unavailable:postgres".into()],
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected error",
            vec!["internal_error".into()],
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = Problem {
            kind: "about:blank",
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            errors: &self.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.status, bytes).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}

/// Database errors: connectivity problems are 503 (the client may retry), anything else is a
/// 500 whose cause is logged, never shown.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            tracing::warn!(error = %err, "postgres unavailable");
            ApiError::unavailable()
        } else {
            tracing::error!(error = ?err, "database error");
            ApiError::internal()
        }
    }
}

pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
            // 08xxx connection exceptions.
            db.code()
                .map(|c| c.starts_with("57P") || c.starts_with("08"))
                .unwrap_or(false)
        }
        _ => false,
    }
}
