//! `/v1/event-sets/{set}/rules` and `/v1/event-sets/{set}/rules/{rule}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ApiResult, ErrorBody, codes};
use super::{AppState, blocking, created};
use crate::catalog::{RuleMeta, RulePatch, RuleSpec};

/// `POST …/rules` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    /// Unique within the set.
    pub name: String,
    /// The event pattern (Tencent / EventBridge syntax, see docs/PATTERNS.md).
    #[schema(value_type = Object)]
    pub pattern: Value,
    /// Default = true.
    pub enabled: Option<bool>,
    /// Free text. Default = empty.
    pub description: Option<String>,
    /// Transformation applied before delivery. Default = none.
    #[schema(value_type = Option<Object>)]
    pub transform: Option<Value>,
}

/// `PATCH …/rules/{rule}` body: members present are changed; `"transform": null` removes it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateRule {
    /// New pattern.
    #[schema(value_type = Option<Object>)]
    pub pattern: Option<Value>,
    /// Enable or disable (a disabled rule's bindings keep their cursors and pause).
    pub enabled: Option<bool>,
    /// New description.
    pub description: Option<String>,
    /// New transformation, or null to remove it.
    #[schema(value_type = Option<Object>)]
    pub transform: Option<Value>,
}

/// A rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    /// The event set.
    pub set: String,
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The event pattern.
    #[schema(value_type = Object)]
    pub pattern: Value,
    /// Whether events are matched against it.
    pub enabled: bool,
    /// The transformation, if any.
    #[schema(value_type = Option<Object>)]
    pub transform: Option<Value>,
    /// Created, epoch ms.
    pub created_ms: u64,
    /// Last changed, epoch ms.
    pub updated_ms: u64,
}

impl From<RuleMeta> for RuleView {
    fn from(m: RuleMeta) -> Self {
        // Stored texts were validated JSON when written.
        let parse = |t: &str| serde_json::from_str(t).unwrap_or(Value::String(t.to_string()));
        RuleView {
            pattern: parse(&m.pattern),
            transform: m.transform.as_deref().map(parse),
            set: m.set,
            name: m.name,
            description: m.description,
            enabled: m.enabled,
            created_ms: m.created_ms,
            updated_ms: m.updated_ms,
        }
    }
}

/// `GET …/rules` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    /// The set's rules, by name.
    pub rules: Vec<RuleView>,
}

/// List a set's rules.
#[utoipa::path(get, path = "/v1/event-sets/{set}/rules", tag = "rules",
    params(("set" = String, Path, description = "event set name")),
    responses((status = 200, body = RuleList), (status = 404, body = ErrorBody)))]
pub async fn list_rules(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
) -> ApiResult<Json<RuleList>> {
    caller.require_admin()?;
    let rules = blocking(&st, move |bus| bus.catalog().list_rules(&set)).await?;
    Ok(Json(RuleList {
        rules: rules.into_iter().map(RuleView::from).collect(),
    }))
}

/// Create a rule (400 with the pattern's path on a bad pattern).
#[utoipa::path(post, path = "/v1/event-sets/{set}/rules", tag = "rules", request_body = CreateRule,
    params(("set" = String, Path, description = "event set name")),
    responses((status = 201, body = RuleView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_rule(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
    JsonBody(body): JsonBody<CreateRule>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let spec = RuleSpec {
        name: body.name,
        description: body.description.unwrap_or_default(),
        pattern: body.pattern,
        enabled: body.enabled.unwrap_or(true),
        transform: body.transform,
    };
    let rule = blocking(&st, move |bus| bus.catalog().create_rule(&set, spec)).await?;
    Ok(created(RuleView::from(rule)))
}

/// Read a rule.
#[utoipa::path(get, path = "/v1/event-sets/{set}/rules/{rule}", tag = "rules",
    params(("set" = String, Path, description = "event set name"), ("rule" = String, Path, description = "rule name")),
    responses((status = 200, body = RuleView), (status = 404, body = ErrorBody)))]
pub async fn get_rule(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule)): Path<(String, String)>,
) -> ApiResult<Json<RuleView>> {
    caller.require_admin()?;
    let rule = blocking(&st, move |bus| bus.catalog().get_rule(&set, &rule)).await?;
    Ok(Json(rule.into()))
}

/// Update a rule's pattern, enabled flag, description or transformation.
#[utoipa::path(patch, path = "/v1/event-sets/{set}/rules/{rule}", tag = "rules", request_body = UpdateRule,
    params(("set" = String, Path, description = "event set name"), ("rule" = String, Path, description = "rule name")),
    responses((status = 200, body = RuleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_rule(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<RuleView>> {
    caller.require_admin()?;
    let patch = rule_patch(body)?;
    let rule = blocking(&st, move |bus| {
        bus.catalog().update_rule(&set, &rule, patch)
    })
    .await?;
    Ok(Json(rule.into()))
}

/// Builds a [`RulePatch`] from a JSON object; read by hand because `"transform": null`
/// (remove) must differ from an absent `transform` (keep).
fn rule_patch(body: Value) -> ApiResult<RulePatch> {
    let Value::Object(obj) = body else {
        return Err(ApiError::invalid(
            codes::INVALID_PARAMETER,
            "$",
            "a rule patch must be a JSON object",
        ));
    };
    let mut patch = RulePatch::default();
    for (k, v) in obj {
        let path = format!("$.{k}");
        match k.as_str() {
            "pattern" => patch.pattern = Some(v),
            "transform" => patch.transform = Some(v),
            "enabled" => {
                patch.enabled = Some(v.as_bool().ok_or_else(|| {
                    ApiError::invalid(codes::INVALID_PARAMETER, path, "must be true or false")
                })?)
            }
            "description" => {
                patch.description = Some(
                    v.as_str()
                        .ok_or_else(|| {
                            ApiError::invalid(codes::INVALID_PARAMETER, path, "must be a string")
                        })?
                        .to_string(),
                )
            }
            "name" => {
                return Err(ApiError::invalid(
                    codes::INVALID_PARAMETER,
                    path,
                    "a rule cannot be renamed; create a new one",
                ));
            }
            _ => {
                return Err(ApiError::invalid(
                    codes::INVALID_PARAMETER,
                    path,
                    format!(
                        "unknown member `{k}`; expected pattern, enabled, description, transform"
                    ),
                ));
            }
        }
    }
    Ok(patch)
}

/// Delete a rule (409 while it has targets).
#[utoipa::path(delete, path = "/v1/event-sets/{set}/rules/{rule}", tag = "rules",
    params(("set" = String, Path, description = "event set name"), ("rule" = String, Path, description = "rule name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_rule(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, rule)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    blocking(&st, move |bus| bus.catalog().delete_rule(&set, &rule)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_patch_tells_null_transform_from_absent() {
        let p = rule_patch(json!({"transform": null})).unwrap();
        assert_eq!(p.transform, Some(Value::Null));
        let p = rule_patch(json!({"enabled": false})).unwrap();
        assert_eq!((p.transform, p.enabled), (None, Some(false)));
        let e = rule_patch(json!({"enabled": "no"})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("$.enabled"));
        let e = rule_patch(json!({"patern": {}})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("$.patern"));
    }
}
