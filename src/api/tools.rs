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
use crate::transform::{Output, Transform};

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

/// `POST /v1/test/transform` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestTransform {
    /// The transformation: the Tencent form (`Extraction`, `EtlFilter`, `Transform`) or the
    /// EventBridge form (`input_path` or `input_transformer`); see docs/DELIVERY.md.
    #[schema(value_type = Object)]
    pub transform: Value,
    /// The event, as CloudEvents JSON.
    #[schema(value_type = Object)]
    pub event: Value,
}

/// `POST /v1/test/transform` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestTransformResult {
    /// What would be delivered: a JSON document, or a string for a text output; `null` when
    /// the transformation's `EtlFilter` drops the event.
    #[schema(value_type = Object)]
    pub output: Value,
    /// True when the `EtlFilter` dropped the event (nothing would be delivered).
    pub dropped: bool,
}

/// Apply a transformation to an event (400 with the path of a bad transformation, or of the
/// part that could not be applied to this event).
#[utoipa::path(post, path = "/v1/test/transform", tag = "tools", request_body = TestTransform,
    responses((status = 200, body = TestTransformResult), (status = 400, body = ErrorBody)))]
pub async fn test_transform(
    State(_st): State<AppState>,
    _caller: Caller,
    JsonBody(body): JsonBody<TestTransform>,
) -> ApiResult<Json<TestTransformResult>> {
    let t = Transform::compile_under(&body.transform, "$.transform")?;
    let out = t.apply(&body.event, crate::config::now_ms())?;
    Ok(Json(match out {
        None => TestTransformResult {
            output: Value::Null,
            dropped: true,
        },
        Some(Output::Json(v)) => TestTransformResult {
            output: v,
            dropped: false,
        },
        Some(Output::Text(s)) => TestTransformResult {
            output: Value::String(s),
            dropped: false,
        },
    }))
}
