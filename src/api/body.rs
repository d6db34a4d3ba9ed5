//! Request bodies: the size limit with a JSON 413, malformed JSON with a JSON 400, and
//! type errors naming the field (`serde_path_to_error`), instead of axum's plain-text
//! rejections.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Query, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::{ApiError, codes};

/// The raw body, within the configured `max_body_bytes`.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.inner.max_body_bytes;
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::BODY_TOO_LARGE,
                format!("the request body is larger than the limit of {limit} bytes"),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_PARAMETER,
                format!("could not read the request body: {e}"),
            )),
        }
    }
}

/// A JSON body deserialized into `T`; errors name the offending member.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body into `T`: malformed JSON → `InvalidParameter.MalformedJson`; a wrong
/// type, a missing or unknown member → `InvalidParameter` with the member's path. Syntax is
/// checked first, so a body that is both malformed and incomplete is reported as malformed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = parse_value(bytes)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = json_path(&e.path().to_string());
        ApiError::invalid(codes::INVALID_PARAMETER, path, e.into_inner().to_string())
    })
}

/// Parses a JSON body into a [`serde_json::Value`] (malformed → `InvalidParameter.MalformedJson`).
pub fn parse_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::MALFORMED_JSON,
            "the request body is empty; a JSON document is required",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::MALFORMED_JSON,
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

/// The query parameters, or 400 `InvalidParameter` saying which one is wrong.
pub fn query_params<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid(codes::INVALID_PARAMETER, "query", e.body_text()))
}

/// Most items one page may hold.
pub const MAX_PAGE: usize = 1000;
/// Items per page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;

/// The `limit` parameter of a paged listing: 1–[`MAX_PAGE`], default [`DEFAULT_PAGE`].
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(
            codes::INVALID_VALUE,
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ))
    }
}

/// `serde_path_to_error`'s `a.b[0]` (or `.` for the root) as a JSON path `$.a.b[0]`.
fn json_path(p: &str) -> String {
    if p == "." || p.is_empty() {
        "$".to_string()
    } else if p.starts_with('[') {
        format!("${p}")
    } else {
        format!("$.{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        retention: Option<Inner>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        max_age_hours: Option<u64>,
    }

    #[test]
    fn parse_json_names_the_member_at_fault() {
        let e =
            parse_json::<Body>(br#"{"name":"a","retention":{"max_age_hours":"x"}}"#).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("$.retention.max_age_hours"));
        assert_eq!(e.code, codes::INVALID_PARAMETER);
        let e = parse_json::<Body>(br#"{"name":"a","nmae":1}"#).unwrap_err();
        assert!(e.message.contains("nmae"), "{}", e.message);
        let e = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert!(e.message.contains("name"), "{}", e.message);
    }

    #[test]
    fn parse_json_reports_malformed_and_empty_bodies() {
        for body in [&b"{\"name\":"[..], b"{} x", b"", b"  "] {
            let e = parse_json::<Body>(body).unwrap_err();
            assert_eq!(e.code, codes::MALFORMED_JSON, "{body:?}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
