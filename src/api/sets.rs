//! `/v1/event-sets` and `/v1/event-sets/{set}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiResult, ErrorBody};
use super::{AppState, blocking, created};
use crate::bus::EventSetInfo;
use crate::catalog::{RetentionSpec, SetKind, SetPatch};

/// Retention of an event set: the oldest events go first when either limit is passed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// Keep events at most this many hours. Absent = no age limit.
    pub max_age_hours: Option<u64>,
    /// Keep at most this many bytes of log. Absent = no size limit.
    pub max_bytes: Option<u64>,
}

impl From<RetentionBody> for RetentionSpec {
    fn from(r: RetentionBody) -> Self {
        RetentionSpec {
            max_age_hours: r.max_age_hours,
            max_bytes: r.max_bytes,
        }
    }
}

/// `POST /v1/event-sets` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSet {
    /// 2–60 characters: letters, digits, `_`, `-`, starting with a letter.
    pub name: String,
    /// Free text, at most 200 characters. Default = empty.
    pub description: Option<String>,
    /// Default = 7 days, no byte cap.
    pub retention: Option<RetentionBody>,
    /// Window in which an event with a repeated (source, id) is not stored again, in ms.
    /// Default = 0 (off).
    pub dedup_window_ms: Option<u64>,
}

/// `PATCH /v1/event-sets/{set}` body; absent members stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSet {
    /// New description.
    pub description: Option<String>,
    /// New retention (replaces the whole policy).
    pub retention: Option<RetentionBody>,
    /// New de-duplication window in ms (0 turns it off).
    pub dedup_window_ms: Option<u64>,
}

/// Extent of a set's log.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetStats {
    /// Events stored.
    pub events: u64,
    /// Bytes of log files.
    pub bytes: u64,
    /// First stored offset (older ones were removed by retention).
    pub first_offset: u64,
    /// Newest stored offset; null when the log is empty.
    pub last_offset: Option<u64>,
    /// The offset the next event will get.
    pub next_offset: u64,
    /// Ingest time of the oldest stored event, epoch ms.
    pub first_time_ms: Option<u64>,
    /// Ingest time of the newest stored event, epoch ms.
    pub last_time_ms: Option<u64>,
    /// Segment files.
    pub segments: usize,
}

/// An event set.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetView {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// `cloud` for the built-in `default`, else `custom`.
    pub kind: String,
    /// Retention policy.
    pub retention: RetentionBody,
    /// De-duplication window in ms (0 = off).
    pub dedup_window_ms: u64,
    /// Created, epoch ms.
    pub created_ms: u64,
    /// Last changed, epoch ms.
    pub updated_ms: u64,
    /// The log's extent.
    pub stats: SetStats,
}

impl From<EventSetInfo> for SetView {
    fn from(i: EventSetInfo) -> Self {
        let m = i.meta;
        SetView {
            name: m.name,
            description: m.description,
            kind: match m.kind {
                SetKind::Cloud => "cloud",
                SetKind::Custom => "custom",
            }
            .to_string(),
            retention: RetentionBody {
                max_age_hours: m.retention.max_age_hours,
                max_bytes: m.retention.max_bytes,
            },
            dedup_window_ms: m.dedup_window_ms,
            created_ms: m.created_ms,
            updated_ms: m.updated_ms,
            stats: SetStats {
                events: i.stats.records,
                bytes: i.stats.bytes,
                first_offset: i.stats.first_offset,
                last_offset: i.stats.last_offset,
                next_offset: i.stats.next_offset,
                first_time_ms: i.stats.first_time_ms,
                last_time_ms: i.stats.last_time_ms,
                segments: i.stats.segments,
            },
        }
    }
}

/// `GET /v1/event-sets` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetList {
    /// Every event set, by name.
    pub event_sets: Vec<SetView>,
}

/// List event sets.
#[utoipa::path(get, path = "/v1/event-sets", tag = "event-sets",
    responses((status = 200, body = SetList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_sets(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<SetList>> {
    caller.require_admin()?;
    let sets = blocking(&st, |bus| bus.list_sets()).await?;
    Ok(Json(SetList {
        event_sets: sets.into_iter().map(SetView::from).collect(),
    }))
}

/// Create an event set.
#[utoipa::path(post, path = "/v1/event-sets", tag = "event-sets", request_body = CreateSet,
    responses((status = 201, body = SetView), (status = 400, body = ErrorBody),
        (status = 409, description = "exists already", body = ErrorBody)))]
pub async fn create_set(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateSet>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let info = blocking(&st, move |bus| {
        bus.create_set(
            &body.name,
            body.description.as_deref(),
            body.retention.map(Into::into),
            body.dedup_window_ms,
        )
    })
    .await?;
    Ok(created(SetView::from(info)))
}

/// Read an event set with its log's stats.
#[utoipa::path(get, path = "/v1/event-sets/{set}", tag = "event-sets",
    params(("set" = String, Path, description = "event set name")),
    responses((status = 200, body = SetView), (status = 404, body = ErrorBody)))]
pub async fn get_set(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
) -> ApiResult<Json<SetView>> {
    caller.require_admin()?;
    let info = blocking(&st, move |bus| bus.get_set(&set)).await?;
    Ok(Json(info.into()))
}

/// Update an event set's description, retention or de-duplication window (403 for `default`).
#[utoipa::path(patch, path = "/v1/event-sets/{set}", tag = "event-sets", request_body = UpdateSet,
    params(("set" = String, Path, description = "event set name")),
    responses((status = 200, body = SetView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_set(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
    JsonBody(body): JsonBody<UpdateSet>,
) -> ApiResult<Json<SetView>> {
    caller.require_admin()?;
    let patch = SetPatch {
        description: body.description,
        retention: body.retention.map(Into::into),
        dedup_window_ms: body.dedup_window_ms,
    };
    let info = blocking(&st, move |bus| bus.update_set(&set, patch)).await?;
    Ok(Json(info.into()))
}

/// Delete an event set and its log (409 while it has rules; 403 for `default`).
#[utoipa::path(delete, path = "/v1/event-sets/{set}", tag = "event-sets",
    params(("set" = String, Path, description = "event set name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete_set(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    blocking(&st, move |bus| bus.delete_set(&set)).await?;
    Ok(StatusCode::NO_CONTENT)
}
