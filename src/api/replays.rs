//! `/v1/event-sets/{set}/replays`: re-deliver a window of stored events to rules' targets
//! (docs/DELIVERY.md "Replay"). Creating, reading and cancelling replays is for `admin`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::{AppState, created};
use crate::delivery::{INVALID_REPLAY, ReplayRequest, ReplayStatus};

/// `POST …/replays` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReplay {
    /// Unique in the set: 2–60 of `[A-Za-z0-9_-]`, starting with a letter.
    pub name: String,
    /// Window start (inclusive): ingest time as epoch ms, or an RFC 3339 string.
    #[schema(value_type = Object)]
    pub start: Value,
    /// Window end (exclusive), as `start`; a time after now means now.
    #[schema(value_type = Object)]
    pub end: Value,
    /// Rules to replay to. Default = every enabled rule of the set.
    pub rules: Option<Vec<String>>,
}

/// `GET …/replays` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayList {
    /// The set's replays, by name.
    pub replays: Vec<ReplayStatus>,
}

/// `field` as epoch ms: read as an event's `time` is ([`crate::event::parse_time`]: epoch
/// milliseconds, as a number or a string of digits, or RFC 3339), and not before 1970.
fn time_field(v: &Value, field: &str) -> ApiResult<u64> {
    let ms = crate::event::parse_time(v)
        .and_then(|ms| u64::try_from(ms).map_err(|_| format!("time {ms} is before 1970")));
    ms.map_err(|e| {
        ApiError::invalid(
            INVALID_REPLAY,
            format!("$.{field}"),
            format!("`{field}`: {e}"),
        )
    })
}

/// List a set's replays with their status.
#[utoipa::path(get, path = "/v1/event-sets/{set}/replays", tag = "replays",
    params(("set" = String, Path)),
    responses((status = 200, body = ReplayList), (status = 404, body = ErrorBody)))]
pub async fn list_replays(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
) -> ApiResult<Json<ReplayList>> {
    caller.require_admin()?;
    let replays = st.inner.engine.list_replays(&set).await?;
    Ok(Json(ReplayList { replays }))
}

/// Start a replay `{"name","start","end","rules"?}`: every stored event ingested in
/// `[start, end)` that a chosen rule matches goes again to that rule's targets, through retries
/// and dead letters, without moving the live cursors. Replayed events carry the extension
/// attribute `replayname`.
#[utoipa::path(post, path = "/v1/event-sets/{set}/replays", tag = "replays",
    request_body = CreateReplay,
    params(("set" = String, Path)),
    responses((status = 201, body = ReplayStatus), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_replay(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
    JsonBody(body): JsonBody<CreateReplay>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let req = ReplayRequest {
        start_ms: time_field(&body.start, "start")?,
        end_ms: time_field(&body.end, "end")?,
        name: body.name,
        rules: body.rules,
    };
    let status = st.inner.engine.create_replay(&set, req).await?;
    Ok(created(status))
}

/// A replay's status: `state` (`running`, `completed`, `cancelled`, `failed`), `replayed` of
/// `total`, per-binding progress, start and finish times.
#[utoipa::path(get, path = "/v1/event-sets/{set}/replays/{name}", tag = "replays",
    params(("set" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ReplayStatus), (status = 404, body = ErrorBody)))]
pub async fn get_replay(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, name)): Path<(String, String)>,
) -> ApiResult<Json<ReplayStatus>> {
    caller.require_admin()?;
    Ok(Json(st.inner.engine.replay_status(&set, &name).await?))
}

/// Cancel a running replay (it stays listed as `cancelled`); on a finished replay, delete it
/// and its state (dead letters included). Answers the last status.
#[utoipa::path(delete, path = "/v1/event-sets/{set}/replays/{name}", tag = "replays",
    params(("set" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ReplayStatus), (status = 404, body = ErrorBody)))]
pub async fn cancel_replay(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, name)): Path<(String, String)>,
) -> ApiResult<Json<ReplayStatus>> {
    caller.require_admin()?;
    Ok(Json(st.inner.engine.cancel_replay(&set, &name).await?))
}
