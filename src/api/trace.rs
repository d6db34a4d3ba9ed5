//! `GET /v1/event-sets/{set}/events/{id}/trace`: the linkage trace of a stored event.

use axum::Json;
use axum::extract::{Path, Query, State};

use super::AppState;
use super::auth::Caller;
use super::body::query_params;
use super::error::{ApiResult, ErrorBody};
use super::events::{GetEventQuery, newest_by_id};
use crate::delivery::EventTraceView;

/// The linkage trace of an event: every rule of the set with whether it matches the event and,
/// per target, the attempts kept (the first five and the last five: time, `ok`, HTTP status,
/// error, latency) and where it stands (`delivered`, `retrying`,
/// `dead_lettered`, `dropped`, `ignored`, `pending`, `not_traced`); replays' attempts carry
/// `replay`. The event is the one `GET …/events/{id}` returns (`?source=` as there).
#[utoipa::path(get, path = "/v1/event-sets/{set}/events/{id}/trace", tag = "events",
    params(("set" = String, Path, description = "event set name"),
        ("id" = String, Path, description = "event id"), GetEventQuery),
    responses((status = 200, body = EventTraceView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn trace_event(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, id)): Path<(String, String)>,
    query: Result<Query<GetEventQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<EventTraceView>> {
    caller.require_admin()?;
    let source = query_params(query)?.source;
    let record = newest_by_id(&st, &set, &id, source).await?;
    Ok(Json(st.inner.engine.trace(&set, record).await?))
}
