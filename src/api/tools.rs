//! `POST /v1/test/pattern` and `POST /v1/test/transform`: try a pattern or a transformation
//! on an event without storing anything.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ApiResult, ErrorBody};
use crate::pattern::Pattern;

/// `POST /v1/test/pattern` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestPattern {
    /// The event pattern.
    #[schema(value_type = Object)]
    pub pattern: Value,
    /// The event (any JSON; only objects can match).
    #[schema(value_type = Object)]
    pub event: Value,
}

/// `POST /v1/test/pattern` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestPatternResult {
    /// Whether the event matches the pattern.
    pub matched: bool,
}

/// Whether an event matches a pattern (400 with the path of a bad pattern).
#[utoipa::path(post, path = "/v1/test/pattern", tag = "tools", request_body = TestPattern,
    responses((status = 200, body = TestPatternResult), (status = 400, body = ErrorBody)))]
pub async fn test_pattern(
    State(_st): State<AppState>,
    _caller: Caller,
    JsonBody(body): JsonBody<TestPattern>,
) -> ApiResult<Json<TestPatternResult>> {
    let pattern = Pattern::parse(&body.pattern).map_err(|e| {
        ApiError::invalid(
            "InvalidParameterValue.EventPattern",
            e.path_under("$.pattern"),
            e.message,
        )
    })?;
    Ok(Json(TestPatternResult {
        matched: pattern.matches(&body.event),
    }))
}

/// Apply a transformation to an event (transformations are not in this version: 501).
#[utoipa::path(post, path = "/v1/test/transform", tag = "tools",
    responses((status = 501, body = ErrorBody)))]
pub async fn test_transform(
    State(_st): State<AppState>,
    _caller: Caller,
    JsonBody(_body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    Err(ApiError::not_implemented("testing a transformation"))
}
