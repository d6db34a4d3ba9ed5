//! The HTTP facade (INTERFACE.md "HTTP API"): axum handlers, one file per resource, over the
//! library ([`EventBus`], the delivery [`Engine`]).
//!
//! - [`router`] builds the routes and, from the same handler annotations, the OpenAPI
//!   document served at `GET /v1/openapi.json` (utoipa), so the two cannot drift apart.
//! - Every error is `{"error":{"code","message","path"?}}` ([`error::ApiError`]), including
//!   unknown routes, wrong methods, malformed JSON and over-large bodies.
//! - [`auth`] checks bearer tokens and roles.
//! - [`metrics`] renders `GET /metrics` in the Prometheus text format.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::bus::EventBus;
use crate::delivery::Engine;

pub mod auth;
pub mod body;
pub mod cloud;
pub mod error;
pub mod events;
pub mod metrics;
mod observe;
pub mod replays;
pub mod rules;
pub mod sets;
pub mod system;
pub mod targets;
pub mod tools;
pub mod trace;

use error::{ApiError, codes};

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Largest request body in bytes. Default = 4 MiB.
    pub max_body_bytes: usize,
    /// The configured tokens (none = no authentication).
    pub auth: auth::Auth,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            auth: auth::Auth::default(),
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub bus: Arc<EventBus>,
    pub engine: Arc<Engine>,
    pub auth: auth::Auth,
    pub max_body_bytes: usize,
    pub metrics: metrics::ApiMetrics,
    /// The generated OpenAPI document as JSON text, set once by [`router`].
    pub openapi: std::sync::OnceLock<String>,
    /// Flips to true when the server begins shutting down: long-lived responses (`tail`) end.
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
}

impl AppState {
    /// State over an open bus and its running delivery engine.
    pub fn new(bus: Arc<EventBus>, engine: Arc<Engine>, opts: ApiOptions) -> AppState {
        let (shutdown_tx, shutdown) = watch::channel(false);
        AppState {
            inner: Arc::new(Inner {
                bus,
                engine,
                auth: opts.auth,
                max_body_bytes: opts.max_body_bytes,
                metrics: metrics::ApiMetrics::default(),
                openapi: std::sync::OnceLock::new(),
                shutdown,
                shutdown_tx,
            }),
        }
    }

    /// Tells long-lived responses (`GET …/tail` streams) to end, so a graceful shutdown does
    /// not wait for clients that never hang up.
    pub fn begin_shutdown(&self) {
        let _ = self.inner.shutdown_tx.send(true);
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("auth", &self.inner.auth)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// Top-level OpenAPI information; the paths and schemas come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "eventbus",
        description = "A durable, embedded, single-node event bus for cloud-service events \
                       (CloudEvents 1.0). Errors are {\"error\":{\"code\",\"message\",\"path\"?}}.",
    ),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    tags(
        (name = "event-sets", description = "Event sets and their logs"),
        (name = "events", description = "Putting, querying and following events"),
        (name = "rules", description = "Rules: an event pattern per rule"),
        (name = "targets", description = "Targets, their delivery status, cursors and dead letters"),
        (name = "replays", description = "Replays of stored events"),
        (name = "tools", description = "Testing patterns and transformations"),
        (name = "catalog", description = "The official cloud-service event catalog (23 products)"),
        (name = "system", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The routes and the OpenAPI document they are described by.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
        .routes(routes!(sets::list_sets, sets::create_set))
        .routes(routes!(sets::get_set, sets::update_set, sets::delete_set))
        .routes(routes!(events::put_events, events::query_events))
        .routes(routes!(events::tail))
        .routes(routes!(events::get_event))
        .routes(routes!(trace::trace_event))
        .routes(routes!(rules::list_rules, rules::create_rule))
        .routes(routes!(
            rules::get_rule,
            rules::update_rule,
            rules::delete_rule
        ))
        .routes(routes!(targets::list_targets, targets::create_target))
        .routes(routes!(
            targets::get_target,
            targets::update_target,
            targets::delete_target
        ))
        .routes(routes!(targets::seek))
        .routes(routes!(targets::list_dead_letters))
        .routes(routes!(targets::redrive_dead_letters))
        .routes(routes!(replays::list_replays, replays::create_replay))
        .routes(routes!(replays::get_replay, replays::cancel_replay))
        .routes(routes!(tools::test_pattern))
        .routes(routes!(tools::test_transform))
        .routes(routes!(cloud::list_catalog))
        .routes(routes!(cloud::get_catalog_product))
        .split_for_parts()
}

/// The whole HTTP application over `state`.
///
/// Every layer here wraps each route separately (that is how `Router::layer` works), so they
/// run on every put: they are kept to what each request needs. The request span is added only
/// when debug logging is on for this module; at the default level it would be built and
/// dropped for nothing.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = routes();
    let doc = doc
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"openapi: {e}\"}}"));
    let _ = state.inner.openapi.set(doc);
    let app = routes
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(observe::ObserveLayer(state.clone()))
        .layer(DefaultBodyLimit::max(state.inner.max_body_bytes));
    let app = if tracing::enabled!(tracing::Level::DEBUG) {
        app.layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
                // The path, not the URI: a query string may hold a pattern, never a token,
                // but there is no need to log it.
                tracing::debug_span!(
                    "http",
                    method = %req.method(),
                    path = %req.uri().path(),
                    route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str),
                )
            }),
        )
    } else {
        app
    };
    app.with_state(state)
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::NO_ROUTE,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, ends
/// `tail` streams, and waits at most `drain` for requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let (stopping_tx, mut stopping_rx) = watch::channel(false);
    // Each response goes out at once: a request waits for its answer, and Nagle's algorithm
    // would hold a response back while an earlier segment is unacknowledged.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        state.begin_shutdown();
        let _ = stopping_tx.send(true);
    });
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return r,
        _ = stopping_rx.wait_for(|s| *s) => {}
    }
    match tokio::time::timeout(drain, server).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                "requests still in flight after {} ms; closing their connections",
                drain.as_millis()
            );
            Ok(())
        }
    }
}

/// `IntoResponse` for handlers returning `(StatusCode, Json)` or an error.
pub(crate) fn created<T: serde::Serialize>(body: T) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Runs catalog or log work that may block (sled flushes, directory fsyncs, file reads) on
/// the blocking pool, never on a runtime worker.
pub(crate) async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&EventBus) -> crate::Result<T> + Send + 'static,
) -> error::ApiResult<T> {
    let bus = st.inner.bus.clone();
    match tokio::task::spawn_blocking(move || f(&bus)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => {
            tracing::error!("blocking task failed: {e}");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                "internal error; see the server log",
            ))
        }
    }
}
