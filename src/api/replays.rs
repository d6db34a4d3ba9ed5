//! `/v1/event-sets/{set}/replays`: replay of stored events to rules' targets. The replay
//! engine is not in this version; the routes exist (with auth and the set's existence
//! checked) and answer 501 `UnsupportedOperation.NotImplemented`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiResult, ErrorBody};

/// List replays (501 in this version).
#[utoipa::path(get, path = "/v1/event-sets/{set}/replays", tag = "replays",
    params(("set" = String, Path)),
    responses((status = 404, body = ErrorBody), (status = 501, body = ErrorBody)))]
pub async fn list_replays(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
) -> ApiResult<Json<Value>> {
    super::not_served(&st, &caller, set, "replay").await
}

/// Start a replay `{"name","start","end","rules"?}` (501 in this version).
#[utoipa::path(post, path = "/v1/event-sets/{set}/replays", tag = "replays",
    params(("set" = String, Path)),
    responses((status = 404, body = ErrorBody), (status = 501, body = ErrorBody)))]
pub async fn create_replay(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
) -> ApiResult<Json<Value>> {
    super::not_served(&st, &caller, set, "replay").await
}

/// A replay's status (501 in this version).
#[utoipa::path(get, path = "/v1/event-sets/{set}/replays/{name}", tag = "replays",
    params(("set" = String, Path), ("name" = String, Path)),
    responses((status = 404, body = ErrorBody), (status = 501, body = ErrorBody)))]
pub async fn get_replay(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, _name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    super::not_served(&st, &caller, set, "replay").await
}

/// Cancel a replay (501 in this version).
#[utoipa::path(delete, path = "/v1/event-sets/{set}/replays/{name}", tag = "replays",
    params(("set" = String, Path), ("name" = String, Path)),
    responses((status = 404, body = ErrorBody), (status = 501, body = ErrorBody)))]
pub async fn cancel_replay(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, _name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    super::not_served(&st, &caller, set, "replay").await
}
