//! `GET /healthz`, `GET /metrics`, `GET /v1/openapi.json`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiResult, ErrorBody};

/// 200 once the server is up (the bus is open and delivery runs before it listens).
#[utoipa::path(get, path = "/healthz", tag = "system", security(()),
    responses((status = 200, description = "ready", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Prometheus text exposition of ingest, log and per-binding delivery metrics. Needs any
/// valid token when tokens are configured.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody)))]
pub async fn metrics(State(st): State<AppState>, _caller: Caller) -> ApiResult<Response> {
    let text = super::metrics::render(&st).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// This API's OpenAPI 3 document, generated from the handlers.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system", security(()),
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object)))]
pub async fn openapi(State(st): State<AppState>) -> Response {
    let doc = st.inner.openapi.get().map_or("{}", |d| d.as_str());
    ([(header::CONTENT_TYPE, "application/json")], doc.to_owned()).into_response()
}
