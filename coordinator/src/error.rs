//! The one HTTP error type: every failure leaves the API as RFC 9457 problem JSON with the
//! machine-readable `errors` strings of the contract. 5xx bodies say little; the cause goes to
//! the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    pub errors: Vec<String>,
}

/// An RFC 9457 problem: the body of every error answer (`application/problem+json`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Unprocessable Entity", "status": 422,
    "detail": "the request is invalid: capability_not_live_verified:fyp_warmup",
    "errors": ["capability_not_live_verified:fyp_warmup"]}))]
pub struct Problem<'a> {
    /// Always `about:blank`: the status and `errors` say what happened.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    /// The status code's reason phrase.
    pub title: &'a str,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: &'a str,
    /// One or more machine strings, `reason` or `reason:detail`.
    #[schema(example = json!(["capability_not_live_verified:fyp_warmup"]))]
    pub errors: &'a [String],
}

/// The error answers an operation can give, for its OpenAPI `responses` (each references the
/// one [`Problem`] schema with the problem media type).
pub mod answers {
    use utoipa::ToResponse;

    use super::Problem;

    macro_rules! answer {
        ($name:ident, $status:literal, $title:literal, $detail:literal, $error:literal, $doc:literal) => {
            #[doc = $doc]
            #[derive(ToResponse)]
            #[response(
                content_type = "application/problem+json",
                example = json!({"type": "about:blank", "title": $title, "status": $status,
                                 "detail": $detail, "errors": [$error]})
            )]
            pub struct $name(#[allow(dead_code)] Problem<'static>);
        };
    }

    answer!(
        BadRequest,
        400,
        "Bad Request",
        "the path or query could not be decoded",
        "invalid_path",
        "A path or query that cannot be decoded."
    );
    answer!(
        Unauthorized,
        401,
        "Unauthorized",
        "a valid bearer token is required",
        "unauthorized",
        "No bearer token, or not a valid one."
    );
    answer!(
        Forbidden,
        403,
        "Forbidden",
        "this endpoint needs role operator or higher",
        "insufficient_role",
        "The caller's role or bound system does not allow this."
    );
    answer!(
        NotFound,
        404,
        "Not Found",
        "not found",
        "process_not_found:0190c6f0-0000-7000-8000-000000000001",
        "The resource does not exist (or belongs to another system)."
    );
    answer!(
        Conflict,
        409,
        "Conflict",
        "the resource is in a conflicting state",
        "not_cancellable:EXECUTING",
        "The resource's state does not allow this."
    );
    answer!(
        PayloadTooLarge,
        413,
        "Payload Too Large",
        "the body is larger than 256 KiB",
        "body_too_large",
        "The body is over 256 KiB."
    );
    answer!(
        UnsupportedMediaType,
        415,
        "Unsupported Media Type",
        "the body must be application/json",
        "unsupported_media_type",
        "The body is not `application/json`."
    );
    answer!(
        Unprocessable,
        422,
        "Unprocessable Entity",
        "the request is invalid: missing:request_id",
        "missing:request_id",
        "The body is not valid JSON or breaks the rules; every problem is listed."
    );
    answer!(
        Internal,
        500,
        "Internal Server Error",
        "unexpected error",
        "internal_error",
        "Unexpected (the cause is logged), or no API key or secret is configured at all \
         (`auth_not_configured`)."
    );
    answer!(
        Unavailable,
        503,
        "Service Unavailable",
        "a dependency is unavailable, retry later",
        "dependency_unavailable:postgres",
        "Postgres is unreachable: retry later."
    );
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
