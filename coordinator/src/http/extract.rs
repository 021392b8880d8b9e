//! Extractors whose rejections are problem JSON: a JSON body (415 / 413 / 422), path
//! parameters (400), a query string (422) and the caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 256 * 1024;

/// A JSON body parsed into a `Value`; validation happens in `domain::requests`.
pub struct ApiJson(pub Value);

fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for ApiJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be application/json",
                vec!["unsupported_media_type".into()],
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {} KiB", BODY_LIMIT / 1024),
                    vec!["body_too_large".into()],
                )
            } else {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the body could not be read",
                    vec!["unreadable_body".into()],
                )
            }
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the body is not valid JSON: {e}"),
                vec![format!(
                    "malformed_json:line_{}_column_{}",
                    e.line(),
                    e.column()
                )],
            )
        })?;
        // Postgres cannot store U+0000 in text or jsonb: refuse it here, by path, instead of
        // failing the insert.
        if let Some(path) = nul_path(&value) {
            return Err(ApiError::unprocessable(vec![format!(
                "invalid_value:{path}:nul_character"
            )]));
        }
        Ok(ApiJson(value))
    }
}

/// The dotted path of the first string (key or value) that contains U+0000, if any; the body
/// itself is `body`.
fn nul_path(v: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut Vec<String>) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push(i.to_string());
                let found = walk(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, item)| {
                path.push(k.replace('\0', "\\u0000"));
                let found = k.contains('\0') || walk(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    walk(v, &mut path).then(|| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.join(".")
        }
    })
}

/// Path parameters; an undecodable one (bad percent-encoding, not UTF-8) is a 400 problem.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the path could not be decoded: {e}"),
                vec!["invalid_path".into()],
            )),
        }
    }
}

/// A query string; one that does not fit (a repeated parameter) is a 422 problem.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the query string is invalid: {e}"),
                vec!["invalid_query".into()],
            )),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.auth.authenticate(&state.db, header).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_content_types() {
        assert!(super::is_json("application/json"));
        assert!(super::is_json("application/json; charset=utf-8"));
        assert!(super::is_json("application/merge-patch+json"));
        assert!(!super::is_json("text/plain"));
        assert!(!super::is_json(""));
    }

    #[test]
    fn nul_characters_are_found_by_path() {
        use serde_json::json;
        assert_eq!(super::nul_path(&json!({"a": ["x", "y"]})), None);
        assert_eq!(
            super::nul_path(&json!({"inputs": {"keywords": ["ok", "b\u{0}d"]}})).as_deref(),
            Some("inputs.keywords.1")
        );
        assert_eq!(
            super::nul_path(&json!({"meta": {"k\u{0}": 1}})).as_deref(),
            Some("meta.k\\u0000")
        );
        assert_eq!(super::nul_path(&json!("\u{0}")).as_deref(), Some("body"));
    }
}
