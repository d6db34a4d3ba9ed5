//! The HTTP facade (src/api) through its axum router, request by request with
//! `tower::ServiceExt::oneshot`: every route of INTERFACE.md "HTTP API" with its success
//! answer, each class of error (status and exact Tencent-style code), and the token roles of
//! INTERFACE.md "Auth". Deliveries go to a real local receiver (tests/common).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use common::{Answer, Receiver};
use eventbus::api::auth::Auth;
use eventbus::api::{ApiOptions, AppState, router};
use eventbus::bus::{BusConfig, EventBus};
use eventbus::cloud::{self, Simulator};
use eventbus::config::{Role, TokenConfig};
use eventbus::delivery::{Engine, EngineOptions};
use http_body_util::BodyExt;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const PRODUCER: &str = "producer-token-0123456789";
const CLOUD: &str = "cloud-token-0123456789";

const SET: &str = "orders";

// ----- fixture ------------------------------------------------------------------------------

/// A bus, its delivery engine and the router over them, in a fresh directory.
struct App {
    _dir: tempfile::TempDir,
    bus: Arc<EventBus>,
    engine: Arc<Engine>,
    state: AppState,
    router: Router,
    /// The bearer token the plain helpers (`get`, `post`, ...) send.
    token: Option<&'static str>,
}

/// A response, its body read whole.
#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The status and the JSON body (Null when empty).
    #[track_caller]
    fn status_json(&self) -> (StatusCode, Value) {
        let body = if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        };
        (self.status, body)
    }

    /// Asserts the status; returns the JSON body (Null when empty).
    #[track_caller]
    fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an error response `{"error":{"code","message",...}}` with this status and
    /// code, served as JSON; returns the `error` object.
    #[track_caller]
    fn error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "error content type {ct:?}"
        );
        let body = self.json();
        let err = &body["error"];
        assert_eq!(err["code"], code, "body: {body}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error needs a message: {body}"
        );
        err.clone()
    }
}

fn bus_config(dir: &std::path::Path) -> BusConfig {
    BusConfig {
        data_dir: dir.to_path_buf(),
        max_segment_bytes: 64 * 1024,
        ..BusConfig::default()
    }
}

fn engine_options() -> EngineOptions {
    EngineOptions {
        restart_delay: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(2),
        ..EngineOptions::default()
    }
}

fn tokens() -> Auth {
    let t = |token: &str, role| TokenConfig {
        token: token.into(),
        role,
        name: None,
    };
    Auth::new(&[
        t(ADMIN, Role::Admin),
        t(PRODUCER, Role::Producer),
        t(CLOUD, Role::Cloud),
    ])
    .unwrap()
}

/// No tokens configured: everyone is admin.
async fn app() -> App {
    app_with(ApiOptions::default(), None).await
}

/// Tokens for every role; the plain helpers send the admin token.
async fn app_with_auth() -> App {
    app_with(
        ApiOptions {
            auth: tokens(),
            ..ApiOptions::default()
        },
        Some(ADMIN),
    )
    .await
}

async fn app_with(opts: ApiOptions, token: Option<&'static str>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EventBus::open(bus_config(dir.path())).unwrap());
    let engine = Arc::new(Engine::start(bus.clone(), engine_options()));
    let state = AppState::new(bus.clone(), engine.clone(), opts);
    let router = router(state.clone());
    App {
        _dir: dir,
        bus,
        engine,
        state,
        router,
        token,
    }
}

impl App {
    async fn close(self) {
        self.state.begin_shutdown();
        self.engine.shutdown().await;
        self.bus.shutdown().unwrap();
    }

    /// Sends a request and reads the whole response.
    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            axum::body::to_bytes(body, usize::MAX),
        )
        .await
        .expect("response body within 10 s")
        .unwrap();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// A request with `token` (if any), extra headers and a raw body.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(body.into()).unwrap()).await
    }

    /// A request as `token`, with a JSON body when `body` is given.
    async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        match body {
            Some(v) => {
                self.raw(
                    method,
                    path,
                    token,
                    &[("content-type", "application/json")],
                    v.to_string(),
                )
                .await
            }
            None => self.raw(method, path, token, &[], Body::empty()).await,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.call_as(self.token, Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call_as(self.token, Method::POST, path, Some(body))
            .await
    }
    async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call_as(self.token, Method::PATCH, path, Some(body))
            .await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.call_as(self.token, Method::DELETE, path, None).await
    }

    async fn create_set(&self, name: &str) -> Value {
        self.post("/v1/event-sets", json!({"name": name}))
            .await
            .expect(StatusCode::CREATED)
    }

    async fn create_rule(&self, set: &str, rule: &str, pattern: Value) -> Value {
        self.post(
            &format!("/v1/event-sets/{set}/rules"),
            json!({"name": rule, "pattern": pattern}),
        )
        .await
        .expect(StatusCode::CREATED)
    }

    async fn create_target(&self, set: &str, rule: &str, body: Value) -> Value {
        self.post(&format!("/v1/event-sets/{set}/rules/{rule}/targets"), body)
            .await
            .expect(StatusCode::CREATED)
    }

    /// Puts `events` (a JSON object or array) into `set`; asserts 200 and returns the body.
    async fn put(&self, set: &str, events: Value) -> Value {
        self.post(&format!("/v1/event-sets/{set}/events"), events)
            .await
            .expect(StatusCode::OK)
    }

    /// GETs `path` until `cond` holds on the JSON body, failing after `secs`.
    async fn wait_json(
        &self,
        path: &str,
        secs: u64,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.get(path).await.expect(StatusCode::OK);
            if cond(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every event of `set` through `GET …/events`, following `after` tokens.
    async fn all_events(&self, set: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v1/event-sets/{set}/events?limit=1000");
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let page = self.get(&path).await.expect(StatusCode::OK);
            out.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => return out,
            }
        }
    }
}

fn event(id: &str, ty: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "shop", "type": ty, "data": {"id": id}})
}

fn cloud_event(id: &str, ty: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "cvm.cloud.tencent", "type": ty,
           "region": "ap-guangzhou", "data": {"instanceId": "ins-1"}})
}

/// An http target body to `url` with fast retries; `extra` is merged over it.
fn http_target(name: &str, url: &str, extra: Value) -> Value {
    let mut body = json!({
        "name": name, "type": "http",
        "http": {"url": url, "timeout_ms": 2000},
        "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 40},
        "start": "earliest",
    });
    merge(&mut body, extra);
    body
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn enc(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

fn stored_offset(entry: &Value) -> u64 {
    assert!(entry.get("error").is_none(), "entry failed: {entry}");
    entry["offset"].as_u64().expect("offset")
}

const TARGET_PATH: &str = "/v1/event-sets/orders/rules/all/targets/hook";

/// Set `orders`, rule `all` (every `shop` event) and an http target `hook` on it (`extra`
/// merged over the body); the engine has applied it when this returns.
async fn with_hook(app: &App, rx: &Receiver, extra: Value) -> Value {
    app.create_set(SET).await;
    app.create_rule(SET, "all", json!({"source": ["shop"]}))
        .await;
    let created = app
        .create_target(SET, "all", http_target("hook", &rx.url("hook"), extra))
        .await;
    app.engine.sync().await.unwrap();
    created
}

// ----- system routes ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_200() {
    let app = app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text().trim(), "ok");
    app.close().await;
}

/// Every route of INTERFACE.md with its methods.
const INTERFACE_ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["get"]),
    ("/metrics", &["get"]),
    ("/v1/openapi.json", &["get"]),
    ("/v1/event-sets", &["get", "post"]),
    ("/v1/event-sets/{set}", &["get", "patch", "delete"]),
    ("/v1/event-sets/{set}/events", &["get", "post"]),
    ("/v1/event-sets/{set}/events/{id}", &["get"]),
    ("/v1/event-sets/{set}/events/{id}/trace", &["get"]),
    ("/v1/event-sets/{set}/rules", &["get", "post"]),
    (
        "/v1/event-sets/{set}/rules/{rule}",
        &["get", "patch", "delete"],
    ),
    (
        "/v1/event-sets/{set}/rules/{rule}/targets",
        &["get", "post"],
    ),
    (
        "/v1/event-sets/{set}/rules/{rule}/targets/{target}",
        &["get", "patch", "delete"],
    ),
    (
        "/v1/event-sets/{set}/rules/{rule}/targets/{target}/seek",
        &["post"],
    ),
    (
        "/v1/event-sets/{set}/rules/{rule}/targets/{target}/dead-letters",
        &["get"],
    ),
    (
        "/v1/event-sets/{set}/rules/{rule}/targets/{target}/dead-letters/redrive",
        &["post"],
    ),
    ("/v1/event-sets/{set}/replays", &["get", "post"]),
    ("/v1/event-sets/{set}/replays/{name}", &["get", "delete"]),
    ("/v1/test/pattern", &["post"]),
    ("/v1/test/transform", &["post"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_openapi_3_and_lists_every_interface_route() {
    let app = app().await;
    let r = app.get("/v1/openapi.json").await;
    let doc = r.expect(StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let version = doc["openapi"].as_str().expect("openapi member");
    assert!(version.starts_with("3."), "openapi {version}");
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in INTERFACE_ROUTES {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from the OpenAPI paths"));
        for m in *methods {
            assert!(
                item.get(*m).is_some(),
                "{} {path} missing from the OpenAPI document",
                m.to_uppercase()
            );
        }
    }
    // And the router serves every operation the document describes (none falls through to
    // the unknown-route or wrong-method fallbacks).
    for (path, item) in paths {
        let concrete = path
            .replace("{set}", "default")
            .replace("{rule}", "nope")
            .replace("{target}", "nope")
            .replace("{id}", "nope")
            .replace("{name}", "nope");
        for method in item.as_object().unwrap().keys() {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !matches!(
                m,
                Method::GET | Method::POST | Method::PATCH | Method::DELETE
            ) {
                continue;
            }
            let req = Request::builder()
                .method(m.clone())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            // Only the status and the head of the body: `…/tail` streams forever.
            let resp = app.router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {concrete}");
            if status == StatusCode::NOT_FOUND {
                let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_ne!(
                    v["error"]["code"], "ResourceNotFound.Route",
                    "{m} {concrete}"
                );
            }
        }
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_ingest_binding_lag_and_fsync_histogram() {
    let app = app().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    app.put(SET, event("m-1", "paid")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let r = app.get("/metrics").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "{:?}",
            r.headers
        );
        let text = r.text();
        if text.contains("eventbus_binding_lag{") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no eventbus_binding_lag:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        text.contains(r#"eventbus_ingest_events_total{set="orders",outcome="accepted"} 1"#),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("eventbus_binding_lag{")
            && l.contains(r#"set="orders""#)
            && l.contains(r#"rule="all""#)
            && l.contains(r#"target="hook""#)),
        "{text}"
    );
    assert!(
        text.contains("eventbus_log_fsync_latency_seconds_bucket"),
        "{text}"
    );
    app.close().await;
}

// ----- event sets ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_list_includes_the_default_cloud_set() {
    let app = app().await;
    let v = app.get("/v1/event-sets").await.expect(StatusCode::OK);
    let sets = v["event_sets"].as_array().expect("event_sets");
    let default = sets
        .iter()
        .find(|s| s["name"] == "default")
        .unwrap_or_else(|| panic!("no default set in {v}"));
    assert_eq!(default["kind"], "cloud");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_create_answers_201_with_name_custom_kind_and_stats() {
    let app = app().await;
    let r = app
        .post(
            "/v1/event-sets",
            json!({"name": SET, "description": "shop orders",
                   "retention": {"max_age_hours": 48, "max_bytes": 1048576}}),
        )
        .await;
    let v = r.expect(StatusCode::CREATED);
    assert_eq!(v["name"], SET);
    assert_eq!(v["kind"], "custom");
    assert_eq!(v["description"], "shop orders");
    assert_eq!(
        v["retention"],
        json!({"max_age_hours": 48, "max_bytes": 1048576})
    );
    let stats = &v["stats"];
    assert_eq!(stats["events"], 0, "{v}");
    assert!(stats["bytes"].is_u64(), "{v}");
    assert_eq!(stats["first_offset"], 0, "{v}");
    assert!(stats["last_offset"].is_null(), "{v}");

    // Read back, and listed.
    app.put(SET, event("s-1", "paid")).await;
    let v = app
        .get("/v1/event-sets/orders")
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["name"], SET);
    assert_eq!(v["stats"]["events"], 1, "{v}");
    assert_eq!(v["stats"]["last_offset"], 0, "{v}");
    let list = app.get("/v1/event-sets").await.expect(StatusCode::OK);
    let names: Vec<&str> = list["event_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"default") && names.contains(&SET),
        "{names:?}"
    );
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_create_duplicate_is_409() {
    let app = app().await;
    app.create_set(SET).await;
    app.post("/v1/event-sets", json!({"name": SET}))
        .await
        .error(StatusCode::CONFLICT, "ResourceInUse.EventSet");
    app.post("/v1/event-sets", json!({"name": "default"}))
        .await
        .error(StatusCode::CONFLICT, "ResourceInUse.EventSet");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_create_with_a_bad_name_is_400_with_its_path() {
    let app = app().await;
    for name in ["1abc", "a", "has space", "semi;colon"] {
        let e = app
            .post("/v1/event-sets", json!({"name": name}))
            .await
            .error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue.EventSetName",
            );
        assert_eq!(e["path"], "$.name", "{name}: {e}");
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_create_with_an_unknown_member_is_400_naming_it() {
    let app = app().await;
    let e = app
        .post("/v1/event-sets", json!({"name": SET, "nmae": "x"}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert!(e["message"].as_str().unwrap().contains("nmae"), "{e}");
    // A wrong type names the member's path.
    let e = app
        .post(
            "/v1/event-sets",
            json!({"name": SET, "retention": {"max_age_hours": "x"}}),
        )
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert_eq!(e["path"], "$.retention.max_age_hours", "{e}");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_create_with_malformed_or_empty_json_is_400_malformed_json() {
    let app = app().await;
    for body in ["{\"name\":", "{} x", ""] {
        app.raw(
            Method::POST,
            "/v1/event-sets",
            None,
            &[("content-type", "application/json")],
            body,
        )
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter.MalformedJson");
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_unknown_set_is_404_for_get_patch_and_delete() {
    let app = app().await;
    app.get("/v1/event-sets/nope")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.patch("/v1/event-sets/nope", json!({"description": "x"}))
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.delete("/v1/event-sets/nope")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_patch_changes_description_and_retention() {
    let app = app().await;
    app.create_set(SET).await;
    let v = app
        .patch(
            "/v1/event-sets/orders",
            json!({"description": "new text", "retention": {"max_age_hours": 1}}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["description"], "new text");
    assert_eq!(v["retention"]["max_age_hours"], 1);
    let v = app
        .get("/v1/event-sets/orders")
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["description"], "new text");
    // A bad value names its path.
    let e = app
        .patch(
            "/v1/event-sets/orders",
            json!({"retention": {"max_age_hours": 0}}),
        )
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue.Retention");
    assert_eq!(e["path"], "$.retention.max_age_hours");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_default_cannot_be_patched_or_deleted() {
    let app = app().await;
    app.patch("/v1/event-sets/default", json!({"description": "mine"}))
        .await
        .error(StatusCode::FORBIDDEN, "OperationDenied.ResourceImmutable");
    app.delete("/v1/event-sets/default")
        .await
        .error(StatusCode::FORBIDDEN, "OperationDenied.ResourceImmutable");
    let v = app
        .get("/v1/event-sets/default")
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["kind"], "cloud");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_delete_is_409_while_rules_exist_then_204() {
    let app = app().await;
    app.create_set(SET).await;
    app.create_rule(SET, "all", json!({"source": ["shop"]}))
        .await;
    app.delete("/v1/event-sets/orders")
        .await
        .error(StatusCode::CONFLICT, "ResourceInUse.EventSet");
    let r = app.delete("/v1/event-sets/orders/rules/all").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = app.delete("/v1/event-sets/orders").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(r.body.is_empty());
    app.get("/v1/event-sets/orders")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.close().await;
}

// ----- putting events -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_single_object_answers_its_id_and_offset() {
    let app = app().await;
    app.create_set(SET).await;
    let v = app.put(SET, event("p-1", "paid")).await;
    assert_eq!(v["failed"], 0);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], "p-1");
    assert_eq!(entries[0]["offset"], 0);
    // Without an id the bus assigns one.
    let v = app
        .put(
            SET,
            json!({"specversion": "1.0", "source": "shop", "type": "paid"}),
        )
        .await;
    assert!(!v["entries"][0]["id"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["entries"][0]["offset"], 1);
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_array_with_one_bad_entry_stores_the_rest_and_names_the_bad_one() {
    let app = app().await;
    app.create_set(SET).await;
    let v = app
        .put(
            SET,
            json!([
                event("a-0", "paid"),
                {"specversion": "1.0", "id": "a-1", "source": "shop"},
                event("a-2", "paid"),
            ]),
        )
        .await;
    assert_eq!(v["failed"], 1, "{v}");
    let e = &v["entries"];
    assert_eq!(stored_offset(&e[0]), 0);
    assert_eq!(e[1]["error"]["code"], "MissingParameter.Type", "{v}");
    assert_eq!(e[1]["error"]["path"], "$[1].type", "{v}");
    assert!(e[1].get("offset").is_none(), "{v}");
    assert_eq!(stored_offset(&e[2]), 1);
    assert_eq!(ids(&app.all_events(SET).await), ["a-0", "a-2"]);
    // A single bad object: the path is the root's.
    let v = app
        .put(SET, json!({"specversion": "1.0", "id": "x", "source": "shop", "type": "t", "time": "yesterday"}))
        .await;
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["entries"][0]["error"]["path"], "$.time", "{v}");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_tencent_event_list_is_stored_and_errors_name_event_list_paths() {
    let app = app().await;
    app.create_set(SET).await;
    let v = app
        .put(
            SET,
            json!({"EventList": [
                {"Source": "shop", "Type": "order.created", "Id": "t-0", "Subject": "order/1",
                 "Data": "{\"total\":3}", "TagList": [{"Key": "team", "Value": "ops"}]},
                {"Source": "shop", "Type": "order.created", "Id": "t-1", "Data": "{not json"},
                {"Source": "shop", "Id": "t-2", "Data": "{}"},
            ]}),
        )
        .await;
    assert_eq!(v["failed"], 2, "{v}");
    assert_eq!(stored_offset(&v["entries"][0]), 0);
    assert_eq!(
        v["entries"][1]["error"]["code"], "InvalidParameterValue.Data",
        "{v}"
    );
    assert_eq!(
        v["entries"][1]["error"]["path"], "$.EventList[1].Data",
        "{v}"
    );
    assert_eq!(
        v["entries"][2]["error"]["code"], "MissingParameter.Type",
        "{v}"
    );
    assert_eq!(
        v["entries"][2]["error"]["path"], "$.EventList[2].Type",
        "{v}"
    );
    let events = app.all_events(SET).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (&e["id"], &e["source"], &e["type"], &e["subject"]),
        (
            &json!("t-0"),
            &json!("shop"),
            &json!("order.created"),
            &json!("order/1")
        )
    );
    assert_eq!(e["data"], json!({"total": 3}), "{e}");
    assert_eq!(e["tags"], json!({"team": "ops"}), "{e}");
    assert_eq!(e["specversion"], "1.0");
    // A member other than EventList (and EventBusId) is refused with its path.
    let e = app
        .post(
            "/v1/event-sets/orders/events",
            json!({"EventList": [], "Extra": 1}),
        )
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert_eq!(e["path"], "$.Extra");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_cloudevents_structured_and_batch_content_types() {
    let app = app().await;
    app.create_set(SET).await;
    let path = "/v1/event-sets/orders/events";
    let v = app
        .raw(
            Method::POST,
            path,
            None,
            &[(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )],
            event("c-0", "paid").to_string(),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (v["failed"].clone(), stored_offset(&v["entries"][0])),
        (json!(0), 0)
    );
    let v = app
        .raw(
            Method::POST,
            path,
            None,
            &[("content-type", "application/cloudevents-batch+json")],
            json!([event("c-1", "paid"), event("c-2", "paid")]).to_string(),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(stored_offset(&v["entries"][1]), 2);
    // Structured mode carries one object, batch mode an array.
    app.raw(
        Method::POST,
        path,
        None,
        &[("content-type", "application/cloudevents+json")],
        json!([event("c-3", "paid")]).to_string(),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.raw(
        Method::POST,
        path,
        None,
        &[("content-type", "application/cloudevents-batch+json")],
        event("c-4", "paid").to_string(),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert_eq!(ids(&app.all_events(SET).await), ["c-0", "c-1", "c-2"]);
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_binary_mode_is_stored_and_visible_through_query() {
    let app = app().await;
    app.create_set(SET).await;
    let v = app
        .raw(
            Method::POST,
            "/v1/event-sets/orders/events",
            None,
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "b-1"),
                ("ce-source", "shop%20eu"),
                ("ce-type", "order.created"),
                ("ce-subject", "order/7"),
                ("ce-traceid", "trace-1"),
                ("content-type", "application/json"),
            ],
            r#"{"total":3,"items":["a"]}"#,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["entries"][0]["id"], "b-1");
    let events = app.all_events(SET).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["id"], "b-1");
    assert_eq!(e["source"], "shop eu", "percent-decoded: {e}");
    assert_eq!(e["type"], "order.created");
    assert_eq!(e["subject"], "order/7");
    assert_eq!(e["traceid"], "trace-1", "extension attribute: {e}");
    assert_eq!(e["data"], json!({"total": 3, "items": ["a"]}), "{e}");
    // A missing attribute is named by its header.
    let v = app
        .raw(
            Method::POST,
            "/v1/event-sets/orders/events",
            None,
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "b-2"),
                ("ce-source", "shop"),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["entries"][0]["error"]["path"], "header:ce-type", "{v}");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_body_over_the_limit_is_413_json() {
    let app = app_with(
        ApiOptions {
            max_body_bytes: 4096,
            ..ApiOptions::default()
        },
        None,
    )
    .await;
    app.create_set(SET).await;
    let big: Vec<Value> = (0..40)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("big-{i}"), "source": "shop",
                   "type": "paid", "data": {"pad": "x".repeat(100)}})
        })
        .collect();
    let body = Value::Array(big).to_string();
    assert!(body.len() > 4096);
    let e = app
        .raw(
            Method::POST,
            "/v1/event-sets/orders/events",
            None,
            &[("content-type", "application/json")],
            body,
        )
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "LimitExceeded.RequestBody");
    assert!(e["message"].as_str().unwrap().contains("4096"), "{e}");
    // Nothing was stored; a management route has the same limit.
    let v = app
        .get("/v1/event-sets/orders")
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["stats"]["events"], 0);
    app.post(
        "/v1/event-sets",
        json!({"name": "other", "description": "d".repeat(5000)}),
    )
    .await
    .error(StatusCode::PAYLOAD_TOO_LARGE, "LimitExceeded.RequestBody");
    // A streamed body (no length known up front) is cut off at the limit too.
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..10).map(|_| Ok(Bytes::from(vec![b' '; 1000]))).collect();
    app.raw(
        Method::POST,
        "/v1/event-sets/orders/events",
        None,
        &[("content-type", "application/json")],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
    .await
    .error(StatusCode::PAYLOAD_TOO_LARGE, "LimitExceeded.RequestBody");
    // Under the limit is fine.
    app.put(SET, event("small", "paid")).await;
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_text_plain_is_415() {
    let app = app().await;
    app.create_set(SET).await;
    app.raw(
        Method::POST,
        "/v1/event-sets/orders/events",
        None,
        &[("content-type", "text/plain")],
        event("x", "paid").to_string(),
    )
    .await
    .error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "InvalidParameter.ContentType",
    );
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_malformed_or_empty_bodies_are_400() {
    let app = app().await;
    app.create_set(SET).await;
    let path = "/v1/event-sets/orders/events";
    app.raw(
        Method::POST,
        path,
        None,
        &[("content-type", "application/json")],
        "{\"id\":",
    )
    .await
    .error(StatusCode::BAD_REQUEST, "InvalidParameter.MalformedJson");
    app.post(path, json!([]))
        .await
        .error(StatusCode::BAD_REQUEST, "MissingParameter");
    app.post(path, json!(42))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_into_an_unknown_set_is_404() {
    let app = app().await;
    app.post("/v1/event-sets/nope/events", event("x", "paid"))
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_event_over_64_kib_fails_its_entry_only() {
    let app = app().await;
    app.create_set(SET).await;
    let mut big = event("huge", "paid");
    big["data"] = json!({"pad": "x".repeat(70 * 1024)});
    let v = app.put(SET, json!([event("small", "paid"), big])).await;
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(stored_offset(&v["entries"][0]), 0);
    assert_eq!(v["entries"][1]["error"]["code"], "LimitExceeded.EventSize");
    assert_eq!(v["entries"][1]["error"]["path"], "$[1]");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_repeated_source_and_id_is_reported_as_a_duplicate() {
    let app = app().await;
    app.create_set(SET).await;
    app.put(SET, event("dup", "paid")).await;
    let v = app.put(SET, event("dup", "paid")).await;
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["entries"][0]["offset"], 0, "{v}");
    assert_eq!(v["entries"][0]["duplicate"], true, "{v}");
    assert_eq!(app.all_events(SET).await.len(), 1);
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_time_in_any_accepted_form_is_stored_as_epoch_ms() {
    let app = app().await;
    app.create_set(SET).await;
    let mut rfc = event("t-rfc", "paid");
    rfc["time"] = json!("2024-01-02T03:04:05Z");
    let mut num = event("t-num", "paid");
    num["time"] = json!(1704164645000u64);
    let mut text = event("t-text", "paid");
    text["time"] = json!("1704164645000");
    let v = app
        .put(SET, json!([rfc, num, text, event("t-none", "paid")]))
        .await;
    assert_eq!(v["failed"], 0, "{v}");
    let events = app.all_events(SET).await;
    for e in &events[..3] {
        assert_eq!(e["time"], json!(1704164645000u64), "{e}");
    }
    let ingest = events[3]["time"].as_u64().expect("time set at ingest");
    assert!(ingest > 1704164645000, "{}", events[3]);
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_custom_set_refuses_a_cloud_source_per_entry() {
    let app = app().await;
    app.create_set(SET).await;
    let v = app
        .put(
            SET,
            json!([
                event("ok", "paid"),
                cloud_event("spoof", "cvm:ErrorEvent:PingUnreachable")
            ]),
        )
        .await;
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(
        v["entries"][1]["error"]["code"],
        "OperationDenied.ReservedSource"
    );
    assert_eq!(v["entries"][1]["error"]["path"], "$[1].source");
    app.close().await;
}

// ----- querying events ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_with_after_are_complete_and_in_order() {
    let app = app().await;
    app.create_set(SET).await;
    let want: Vec<String> = (0..5).map(|i| format!("q-{i}")).collect();
    for id in &want {
        app.put(SET, event(id, "paid")).await;
    }
    let mut got = Vec::new();
    let mut pages = 0;
    let mut path = format!(
        "/v1/event-sets/orders/events?start=0&end={}&limit=2",
        u64::MAX
    );
    loop {
        let page = app.get(&path).await.expect(StatusCode::OK);
        pages += 1;
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2, "{page}");
        got.extend(ids(events));
        match page["after"].as_str() {
            Some(a) => path = format!("/v1/event-sets/orders/events?limit=2&after={}", enc(a)),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(got, want);
    assert_eq!(pages, 3);
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_time_range_is_start_inclusive_end_exclusive() {
    let app = app().await;
    app.create_set(SET).await;
    app.put(
        SET,
        json!([event("early-0", "paid"), event("early-1", "paid")]),
    )
    .await;
    let set = app
        .get("/v1/event-sets/orders")
        .await
        .expect(StatusCode::OK);
    let t1 = set["stats"]["last_time_ms"].as_u64().expect("last_time_ms");
    // The second put must get a later ingest time.
    while eventbus::config::now_ms() <= t1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    app.put(
        SET,
        json!([event("late-0", "paid"), event("late-1", "paid")]),
    )
    .await;
    let set = app
        .get("/v1/event-sets/orders")
        .await
        .expect(StatusCode::OK);
    let t2 = set["stats"]["last_time_ms"].as_u64().unwrap();
    assert!(t2 > t1, "{set}");
    let page = app
        .get(&format!("/v1/event-sets/orders/events?start=0&end={t2}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        ids(page["events"].as_array().unwrap()),
        ["early-0", "early-1"]
    );
    assert!(page["after"].is_null(), "{page}");
    let page = app
        .get(&format!("/v1/event-sets/orders/events?start={t2}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        ids(page["events"].as_array().unwrap()),
        ["late-0", "late-1"]
    );
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pattern_filters_events() {
    let app = app().await;
    app.create_set(SET).await;
    app.put(
        SET,
        json!([
            event("f-0", "paid"),
            event("f-1", "refunded"),
            event("f-2", "paid")
        ]),
    )
    .await;
    let pattern = enc(&json!({"type": ["paid"]}).to_string());
    let page = app
        .get(&format!("/v1/event-sets/orders/events?pattern={pattern}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(page["events"].as_array().unwrap()), ["f-0", "f-2"]);
    // With paging, the filter still holds on every page.
    let page = app
        .get(&format!(
            "/v1/event-sets/orders/events?pattern={pattern}&limit=1"
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(page["events"].as_array().unwrap()), ["f-0"]);
    let after = enc(page["after"].as_str().unwrap());
    let page = app
        .get(&format!(
            "/v1/event-sets/orders/events?pattern={pattern}&limit=1&after={after}"
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(page["events"].as_array().unwrap()), ["f-2"]);
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_bad_pattern_after_limit_and_set_are_refused() {
    let app = app().await;
    app.create_set(SET).await;
    let e = app
        .get(&format!(
            "/v1/event-sets/orders/events?pattern={}",
            enc(r#"{"type":[{"begins-with":"p"}]}"#)
        ))
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.EventPattern",
        );
    assert_eq!(e["path"], "pattern.type[0].begins-with", "{e}");
    app.get(&format!(
        "/v1/event-sets/orders/events?pattern={}",
        enc("{not json")
    ))
    .await
    .error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValue.EventPattern",
    );
    let e = app
        .get("/v1/event-sets/orders/events?after=bogus")
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue");
    assert_eq!(e["path"], "after");
    let e = app
        .get("/v1/event-sets/orders/events?limit=0")
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue");
    assert_eq!(e["path"], "limit");
    app.get("/v1/event-sets/orders/events?start=yesterday")
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.get("/v1/event-sets/orders/events?bogus=1")
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.get("/v1/event-sets/nope/events")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_streams_new_events_as_server_sent_events() {
    let app = app().await;
    app.create_set(SET).await;
    app.put(SET, event("before", "paid")).await;
    let pattern = enc(&json!({"type": ["paid"]}).to_string());
    let req = Request::builder()
        .uri(format!("/v1/event-sets/orders/tail?pattern={pattern}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    app.put(
        SET,
        json!([event("skip", "refunded"), event("live", "paid")]),
    )
    .await;
    let mut body = resp.into_body();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, body.frame())
            .await
            .expect("an SSE message within 10 s")
            .expect("stream open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let message = text.split("\n\n").next().unwrap();
    assert!(message.lines().any(|l| l == "id: 2"), "{text}");
    let data = message
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line: {text}"));
    let ev: Value = serde_json::from_str(data).unwrap();
    assert_eq!(ev["id"], "live");
    drop(body);
    app.get("/v1/event-sets/nope/tail")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.close().await;
}

// ----- the default (cloud service) set ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_set_refuses_producer_tokens() {
    let app = app_with_auth().await;
    let e = app
        .call_as(
            Some(PRODUCER),
            Method::POST,
            "/v1/event-sets/default/events",
            Some(cloud_event("c-1", "cvm:ErrorEvent:PingUnreachable")),
        )
        .await
        .error(StatusCode::FORBIDDEN, "AuthFailure.UnauthorizedOperation");
    assert!(!e.to_string().contains(PRODUCER));
    let v = app
        .get("/v1/event-sets/default")
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["stats"]["events"], 0);
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_set_takes_cloud_events_from_cloud_tokens_and_fails_bad_types_per_entry() {
    let app = app_with_auth().await;
    let v = app
        .call_as(
            Some(CLOUD),
            Method::POST,
            "/v1/event-sets/default/events",
            Some(json!([
                cloud_event("c-1", "cvm:ErrorEvent:PingUnreachable"),
                cloud_event("c-2", "PingUnreachable"),
                {"specversion": "1.0", "id": "c-3", "source": "shop", "type": "cvm:ErrorEvent:PingUnreachable"},
            ])),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["failed"], 2, "{v}");
    assert_eq!(stored_offset(&v["entries"][0]), 0);
    assert_eq!(
        v["entries"][1]["error"]["code"], "InvalidParameterValue.Type",
        "{v}"
    );
    assert_eq!(v["entries"][1]["error"]["path"], "$[1].type", "{v}");
    assert_eq!(
        v["entries"][2]["error"]["code"], "InvalidParameterValue.Source",
        "{v}"
    );
    assert_eq!(v["entries"][2]["error"]["path"], "$[2].source", "{v}");
    let events = app.all_events("default").await;
    assert_eq!(ids(&events), ["c-1"]);
    assert_eq!(events[0]["source"], "cvm.cloud.tencent");
    app.close().await;
}

// ----- rules --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_create_get_list_patch_and_delete() {
    let app = app().await;
    app.create_set(SET).await;
    let v = app
        .post(
            "/v1/event-sets/orders/rules",
            json!({"name": "paid", "pattern": {"type": ["paid"]}, "description": "paid orders",
                   "transform": {"input_path": "$.data"}}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(v["name"], "paid");
    assert_eq!(v["set"], SET);
    assert_eq!(v["pattern"], json!({"type": ["paid"]}));
    assert_eq!(v["enabled"], true);
    assert_eq!(v["description"], "paid orders");
    assert_eq!(v["transform"], json!({"input_path": "$.data"}));

    let v = app
        .get("/v1/event-sets/orders/rules/paid")
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["pattern"], json!({"type": ["paid"]}));
    app.create_rule(SET, "all", json!({"source": ["shop"]}))
        .await;
    let v = app
        .get("/v1/event-sets/orders/rules")
        .await
        .expect(StatusCode::OK);
    let names: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["all", "paid"]);

    // Disable and drop the transformation; the pattern stays.
    let v = app
        .patch(
            "/v1/event-sets/orders/rules/paid",
            json!({"enabled": false, "transform": null}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["enabled"], false, "{v}");
    assert!(v["transform"].is_null(), "{v}");
    assert_eq!(v["pattern"], json!({"type": ["paid"]}));
    let v = app
        .patch(
            "/v1/event-sets/orders/rules/paid",
            json!({"pattern": {"type": ["refunded"]}}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["pattern"], json!({"type": ["refunded"]}));
    assert_eq!(v["enabled"], false, "a patch keeps absent members: {v}");
    let e = app
        .patch("/v1/event-sets/orders/rules/paid", json!({"enabled": "no"}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert_eq!(e["path"], "$.enabled");
    let e = app
        .patch("/v1/event-sets/orders/rules/paid", json!({"patern": {}}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert_eq!(e["path"], "$.patern");

    let r = app.delete("/v1/event-sets/orders/rules/paid").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.get("/v1/event-sets/orders/rules/paid")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Rule");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_bad_pattern_is_400_with_a_path_into_the_pattern() {
    let app = app().await;
    app.create_set(SET).await;
    let e = app
        .post(
            "/v1/event-sets/orders/rules",
            json!({"name": "bad", "pattern": {"type": [{"begins-with": "cvm"}]}}),
        )
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.EventPattern",
        );
    assert_eq!(e["path"], "$.pattern.type[0].begins-with", "{e}");
    let e = app
        .post(
            "/v1/event-sets/orders/rules",
            json!({"name": "bad", "pattern": {"data": {"n": [{"numeric": [">", "5"]}]}}}),
        )
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.EventPattern",
        );
    assert_eq!(e["path"], "$.pattern.data.n[0].numeric[1]", "{e}");
    let e = app
        .post(
            "/v1/event-sets/orders/rules",
            json!({"name": "bad", "pattern": {}}),
        )
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.EventPattern",
        );
    assert_eq!(e["path"], "$.pattern", "{e}");
    // An update is checked the same way and leaves the rule as it was.
    app.create_rule(SET, "good", json!({"type": ["paid"]}))
        .await;
    let e = app
        .patch(
            "/v1/event-sets/orders/rules/good",
            json!({"pattern": {"type": [{"begins-with": "cvm"}]}}),
        )
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.EventPattern",
        );
    assert_eq!(e["path"], "$.pattern.type[0].begins-with", "{e}");
    let v = app
        .get("/v1/event-sets/orders/rules")
        .await
        .expect(StatusCode::OK);
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "no bad rule was created: {v}");
    assert_eq!(rules[0]["pattern"], json!({"type": ["paid"]}));
    let e = app
        .post(
            "/v1/event-sets/orders/rules",
            json!({"name": "1bad", "pattern": {"source": ["shop"]}}),
        )
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue.RuleName");
    assert_eq!(e["path"], "$.name");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_unknown_set_or_rule_is_404_and_duplicates_409() {
    let app = app().await;
    app.post(
        "/v1/event-sets/nope/rules",
        json!({"name": "r1", "pattern": {"source": ["shop"]}}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.get("/v1/event-sets/nope/rules")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.create_set(SET).await;
    app.create_rule(SET, "r1", json!({"source": ["shop"]}))
        .await;
    app.post(
        "/v1/event-sets/orders/rules",
        json!({"name": "r1", "pattern": {"source": ["shop"]}}),
    )
    .await
    .error(StatusCode::CONFLICT, "ResourceInUse.Rule");
    app.get("/v1/event-sets/orders/rules/none")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Rule");
    app.patch("/v1/event-sets/orders/rules/none", json!({"enabled": true}))
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Rule");
    app.delete("/v1/event-sets/orders/rules/none")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Rule");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_delete_is_409_while_targets_exist() {
    let app = app().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    app.delete("/v1/event-sets/orders/rules/all")
        .await
        .error(StatusCode::CONFLICT, "ResourceInUse.Rule");
    let r = app.delete(TARGET_PATH).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = app.delete("/v1/event-sets/orders/rules/all").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.close().await;
}

// ----- targets ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_deliver_events_put_after_creation_and_report_delivery_status() {
    let app = app().await;
    let rx = Receiver::start().await;
    let created = with_hook(&app, &rx, json!({})).await;
    assert_eq!(created["name"], "hook");
    assert_eq!(created["type"], "http");
    assert_eq!(created["set"], SET);
    assert_eq!(created["rule"], "all");
    assert_eq!(created["http"]["url"], rx.url("hook"));

    let v = app.get(TARGET_PATH).await.expect(StatusCode::OK);
    let d = &v["delivery"];
    for member in [
        "cursor",
        "lag",
        "in_flight",
        "delivered",
        "retrying",
        "dead_lettered",
    ] {
        assert!(d[member].is_u64(), "delivery.{member}: {v}");
    }
    assert!(d.get("last_error").is_some(), "delivery.last_error: {v}");
    assert_eq!(d["cursor"], 0);

    app.put(SET, json!([event("d-0", "paid"), event("d-1", "refunded")]))
        .await;
    app.put(
        SET,
        json!({"specversion": "1.0", "id": "other", "source": "elsewhere", "type": "paid"}),
    )
    .await;
    rx.wait_until(10, "2 deliveries", |r| r.accepted_ids("hook").len() >= 2)
        .await;
    let v = app
        .wait_json(TARGET_PATH, 10, "cursor at the end", |v| {
            v["delivery"]["cursor"] == 3 && v["delivery"]["delivered"] == 2
        })
        .await;
    assert_eq!(v["delivery"]["lag"], 0, "{v}");
    assert_eq!(v["delivery"]["dead_lettered"], 0, "{v}");
    // Not `ordered`: either order, each once.
    let mut got = rx.accepted_ids("hook");
    got.sort();
    assert_eq!(got, ["d-0", "d-1"]);

    // Listed (without delivery status).
    let list = app
        .get("/v1/event-sets/orders/rules/all/targets")
        .await
        .expect(StatusCode::OK);
    let targets = list["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["name"], "hook");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_create_refusals_name_the_field() {
    let app = app().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    let path = "/v1/event-sets/orders/rules/all/targets";
    app.post(path, http_target("hook", &rx.url("x"), json!({})))
        .await
        .error(StatusCode::CONFLICT, "ResourceInUse.Target");
    let e = app
        .post(path, json!({"name": "t2", "type": "smoke-signal"}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue.TargetType");
    assert_eq!(e["path"], "$.type");
    let e = app
        .post(path, http_target("t2", "ftp://x", json!({})))
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.TargetDescription",
        );
    assert_eq!(e["path"], "$.http.url");
    let e = app
        .post(
            path,
            http_target(
                "t2",
                &rx.url("x"),
                json!({"dead_letter": {"mode": "shred"}}),
            ),
        )
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.DeadLetterConfig",
        );
    assert_eq!(e["path"], "$.dead_letter.mode");
    app.post(
        "/v1/event-sets/orders/rules/none/targets",
        http_target("t2", &rx.url("x"), json!({})),
    )
    .await
    .error(StatusCode::NOT_FOUND, "ResourceNotFound.Rule");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_never_show_secrets_and_a_redacted_patch_keeps_them() {
    const SECRET: &str = "signing-secret-QWERTY-0123456789";
    const CREDENTIAL: &str = "Bearer hook-credential-ZXCVB-98765";
    let app = app().await;
    let rx = Receiver::start().await;
    let created = with_hook(
        &app,
        &rx,
        json!({"http": {"secret": SECRET,
                        "headers": {"Authorization": CREDENTIAL, "X-Team": "ops"}}}),
    )
    .await;
    let leaks = |what: &str, text: &str| {
        assert!(
            !text.contains(SECRET) && !text.contains("QWERTY"),
            "{what} shows the secret: {text}"
        );
        assert!(
            !text.contains("ZXCVB"),
            "{what} shows the Authorization header: {text}"
        );
    };
    leaks("create", &created.to_string());
    assert_eq!(created["http"]["secret"], "<redacted>");
    assert_eq!(created["http"]["headers"]["Authorization"], "<redacted>");
    assert_eq!(created["http"]["headers"]["X-Team"], "ops");

    let r = app.get(TARGET_PATH).await;
    r.expect(StatusCode::OK);
    leaks("get", &r.text());
    let r = app.get("/v1/event-sets/orders/rules/all/targets").await;
    r.expect(StatusCode::OK);
    leaks("list", &r.text());

    // Read-modify-write with the placeholders keeps the stored credentials.
    let mut body = app.get(TARGET_PATH).await.expect(StatusCode::OK);
    body["http"]["headers"]["X-Team"] = json!("sre");
    let patch = json!({"http": body["http"].clone()});
    let r = app.patch(TARGET_PATH, patch).await;
    let v = r.expect(StatusCode::OK);
    leaks("patch", &r.text());
    assert_eq!(v["http"]["secret"], "<redacted>");
    assert_eq!(v["http"]["headers"]["X-Team"], "sre");
    let stored = app.bus.catalog().get_target(SET, "all", "hook").unwrap();
    let config: Value = serde_json::from_str(&stored.config).unwrap();
    assert_eq!(config["http"]["secret"], SECRET, "{config}");
    assert_eq!(config["http"]["headers"]["Authorization"], CREDENTIAL);
    assert_eq!(config["http"]["headers"]["X-Team"], "sre");

    // And the receiver gets signed requests with the credential.
    app.engine.sync().await.unwrap();
    app.put(SET, event("s-1", "paid")).await;
    rx.wait_until(10, "a signed delivery", |r| !r.accepted("hook").is_empty())
        .await;
    let req = &rx.accepted("hook")[0];
    let h = |n: &str| {
        req.headers
            .get(n)
            .unwrap_or_else(|| panic!("no {n} header"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(h("authorization"), CREDENTIAL);
    assert_eq!(h("x-team"), "sre");
    let key = eventbus::targets::http::SigningKey::from_secret(SECRET).unwrap();
    let ts: i64 = h("webhook-timestamp").parse().unwrap();
    assert_eq!(
        h("webhook-signature"),
        key.sign(&h("webhook-id"), ts, &req.body)
    );
    let r = app.get(TARGET_PATH).await;
    leaks("get after delivery", &r.text());

    // Refusals of bad credentials do not repeat them either.
    for (settings, path) in [
        (json!({"secret": "shortLEAKY1"}), "$.http.secret"),
        (
            json!({"headers": {"X-Token": "bad\nLEAKY2"}}),
            "$.http.headers.X-Token",
        ),
    ] {
        let mut body = http_target("t2", &rx.url("t2"), json!({}));
        merge(&mut body, json!({"http": settings.clone()}));
        let r = app
            .post("/v1/event-sets/orders/rules/all/targets", body)
            .await;
        let e = r.error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.TargetDescription",
        );
        assert_eq!(e["path"], path);
        assert!(!r.text().contains("LEAKY"), "{}", r.text());
        let r = app.patch(TARGET_PATH, json!({"http": settings})).await;
        let e = r.error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.TargetDescription",
        );
        assert_eq!(e["path"], path);
        assert!(!r.text().contains("LEAKY"), "{}", r.text());
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_patch_changes_settings_and_refuses_renames() {
    let app = app().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    let v = app
        .patch(
            TARGET_PATH,
            json!({"retry": {"max_attempts": 7}, "ordered": true}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["retry"]["max_attempts"], 7);
    assert_eq!(v["retry"]["initial_backoff_ms"], 10, "merge patch: {v}");
    assert_eq!(v["ordered"], true);
    app.patch(TARGET_PATH, json!({"name": "other"}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue.TargetName");
    let e = app
        .patch(TARGET_PATH, json!({"batch": {"max_events": 0}}))
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.BatchEventCount",
        );
    assert_eq!(e["path"], "$.batch.max_events");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_seek_by_offset_and_time_moves_the_cursor() {
    let app = app().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    app.put(
        SET,
        json!([
            event("k-0", "paid"),
            event("k-1", "paid"),
            event("k-2", "paid")
        ]),
    )
    .await;
    rx.wait_until(10, "3 deliveries", |r| r.accepted_ids("hook").len() >= 3)
        .await;
    app.wait_json(TARGET_PATH, 10, "cursor 3", |v| {
        v["delivery"]["cursor"] == 3
    })
    .await;
    let seek = format!("{TARGET_PATH}/seek");

    let v = app
        .post(&seek, json!({"offset": 1}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(v, json!({"cursor": 1}));
    // Events from offset 1 come again.
    rx.wait_until(10, "redelivery after the seek", |r| {
        r.accepted_ids("hook").len() >= 5
    })
    .await;
    // Not `ordered`: the two may arrive in either order.
    let mut again = rx.accepted_ids("hook")[3..].to_vec();
    again.sort();
    assert_eq!(again, ["k-1", "k-2"]);

    let v = app
        .post(&seek, json!({"offset": 1000}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(v, json!({"cursor": 3}), "clamped to the end of the log");
    let v = app
        .post(&seek, json!({"time": eventbus::config::now_ms() + 60_000}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(v, json!({"cursor": 3}));
    let v = app
        .post(&seek, json!({"time": 0}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(v, json!({"cursor": 0}));

    app.post(&seek, json!({"offset": 1, "time": 0}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.post(&seek, json!({}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.post(&seek, json!({"offset": -1}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_dead_letters_are_listed_and_redriven() {
    let app = app().await;
    let rx = Receiver::start().await;
    // 400 is not retryable: the first failure dead-letters the event.
    let accept = Arc::new(AtomicBool::new(false));
    let a = accept.clone();
    rx.set_policy("hook", move |_, _| {
        Answer::status(if a.load(Ordering::SeqCst) { 200 } else { 400 })
    });
    with_hook(&app, &rx, json!({"dead_letter": {"mode": "dlq"}})).await;
    app.put(SET, event("dl-0", "paid")).await;
    let dl_path = format!("{TARGET_PATH}/dead-letters");
    let v = app
        .wait_json(&dl_path, 10, "a dead letter", |v| {
            v["dead_letters"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let letters = v["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{v}");
    assert_eq!(letters[0]["offset"], 0);
    assert_eq!(letters[0]["event"]["id"], "dl-0");
    assert!(letters[0]["attempts"].as_u64().unwrap() >= 1, "{v}");
    assert!(letters[0]["last_error"].is_string(), "{v}");
    assert!(v["after"].is_null(), "{v}");
    let t = app
        .wait_json(TARGET_PATH, 10, "dead_lettered 1", |v| {
            v["delivery"]["dead_lettered"] == 1
        })
        .await;
    assert!(!t["delivery"]["last_error"].is_null(), "{t}");
    app.get(&format!("{dl_path}?limit=0"))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue");

    accept.store(true, Ordering::SeqCst);
    let v = app
        .post(&format!("{dl_path}/redrive"), json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(v, json!({"redriven": 1}));
    rx.wait_until(10, "the redriven event", |r| {
        r.accepted_ids("hook") == ["dl-0"]
    })
    .await;
    app.wait_json(&dl_path, 10, "no dead letters", |v| {
        v["dead_letters"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    // An empty body redrives too (nothing left).
    let v = app
        .raw(
            Method::POST,
            &format!("{dl_path}/redrive"),
            None,
            &[],
            Body::empty(),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v, json!({"redriven": 0}));
    app.post(&format!("{dl_path}/redrive"), json!({"offsetz": [1]}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_unknown_target_is_404_on_every_route() {
    let app = app().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    let t = "/v1/event-sets/orders/rules/all/targets/nope";
    app.get(t)
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Target");
    app.patch(t, json!({"ordered": true}))
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Target");
    app.delete(t)
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Target");
    app.post(&format!("{t}/seek"), json!({"offset": 0}))
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Target");
    app.get(&format!("{t}/dead-letters"))
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Target");
    app.post(&format!("{t}/dead-letters/redrive"), json!({}))
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Target");
    app.get("/v1/event-sets/orders/rules/none/targets")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Rule");
    app.get("/v1/event-sets/orders/rules/none/targets/hook")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Rule");
    app.get("/v1/event-sets/nope/rules/all/targets/hook")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.post(
        "/v1/event-sets/nope/rules/all/targets/hook/seek",
        json!({"offset": 0}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    // Deleted targets are gone.
    let r = app.delete(TARGET_PATH).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.get(TARGET_PATH)
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Target");
    app.close().await;
}

// ----- routes not served yet ----------------------------------------------------------------

// ----- replays -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_create_read_list_cancel_and_refuse_bad_requests() {
    let app = app().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    app.put(SET, json!([event("e-1", "paid"), event("e-2", "paid")]))
        .await;
    rx.wait_until(10, "live delivery", |r| r.accepted_ids("hook").len() == 2)
        .await;
    let end = eventbus::config::now_ms() + 1;
    let created = app
        .post(
            "/v1/event-sets/orders/replays",
            json!({"name": "r1", "start": 0, "end": end, "rules": ["all"]}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["name"], "r1");
    assert_eq!(created["state"], "running");
    assert_eq!(created["rules"], json!(["all"]));
    assert_eq!(created["bindings"][0]["target"], "hook");
    rx.wait_until(10, "replayed events", |r| r.accepted_ids("hook").len() == 4)
        .await;
    let replayed: Vec<Value> = rx.accepted("hook")[2..]
        .iter()
        .flat_map(|r| r.events())
        .collect();
    assert!(
        replayed.iter().all(|e| e["replayname"] == "r1"),
        "{replayed:?}"
    );
    let mut status = Value::Null;
    for _ in 0..500 {
        status = app
            .get("/v1/event-sets/orders/replays/r1")
            .await
            .expect(StatusCode::OK);
        if status["state"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(
        (status["replayed"].as_u64(), status["total"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(status["finished"].as_u64().is_some());
    let list = app
        .get("/v1/event-sets/orders/replays")
        .await
        .expect(StatusCode::OK);
    assert_eq!(list["replays"].as_array().unwrap().len(), 1);

    // Bad requests name the field.
    let err = app
        .post(
            "/v1/event-sets/orders/replays",
            json!({"name": "r2", "start": 5, "end": 5}),
        )
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue.Replay");
    assert_eq!(err["path"], "$.end");
    let err = app
        .post(
            "/v1/event-sets/orders/replays",
            json!({"name": "r2", "start": "yesterday", "end": 5}),
        )
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameterValue.Replay");
    assert_eq!(err["path"], "$.start");
    let err = app
        .post(
            "/v1/event-sets/orders/replays",
            json!({"name": "r2", "start": 0, "end": 5, "rules": ["nope"]}),
        )
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Rule");
    assert_eq!(err["path"], "$.rules[0]");
    app.post(
        "/v1/event-sets/orders/replays",
        json!({"name": "r1", "start": 0, "end": 5}),
    )
    .await
    .error(StatusCode::CONFLICT, "ResourceInUse.Replay");
    app.post(
        "/v1/event-sets/orders/replays",
        json!({"name": "r 1", "start": 0, "end": 5}),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "InvalidParameterValue.ReplayName");
    app.post(
        "/v1/event-sets/orders/replays",
        json!({"name": "r3", "start": 0, "end": 5, "extra": 1}),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.get("/v1/event-sets/orders/replays/nope")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Replay");
    app.get("/v1/event-sets/nope/replays")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");

    // DELETE on a finished replay removes it.
    let last = app
        .delete("/v1/event-sets/orders/replays/r1")
        .await
        .expect(StatusCode::OK);
    assert_eq!(last["state"], "completed");
    app.get("/v1/event-sets/orders/replays/r1")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Replay");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_by_id_answers_the_newest_event_with_that_id() {
    let app = app().await;
    app.create_set(SET).await;
    // Enough events for the set's 64 KiB segments to roll: lookups cross sealed segments
    // (their id index is built by the first lookup) and the active one.
    let pad = "x".repeat(900);
    for chunk in 0..4 {
        let batch: Vec<Value> = (0..50)
            .map(|i| {
                let n = chunk * 50 + i;
                json!({"specversion": "1.0", "id": format!("o-{n}"), "source": "shop",
                       "type": "paid", "data": {"n": n, "pad": pad}})
            })
            .collect();
        app.put(SET, Value::Array(batch)).await;
    }
    let set = app
        .get("/v1/event-sets/orders")
        .await
        .expect(StatusCode::OK);
    assert!(set["stats"]["segments"].as_u64().unwrap() > 2, "{set}");
    for n in [0, 77, 199] {
        let v = app
            .get(&format!("/v1/event-sets/orders/events/o-{n}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(v["id"], format!("o-{n}"));
        assert_eq!(v["source"], "shop");
        assert_eq!(v["data"]["n"], n);
        assert_eq!(v["specversion"], "1.0");
    }
    // The same id from another source: the newest wins; `source` picks one.
    let mut other = event("o-5", "refunded");
    other["source"] = json!("billing");
    app.put(SET, other).await;
    let v = app
        .get("/v1/event-sets/orders/events/o-5")
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (v["source"].as_str(), v["type"].as_str()),
        (Some("billing"), Some("refunded"))
    );
    let v = app
        .get("/v1/event-sets/orders/events/o-5?source=shop")
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (v["source"].as_str(), v["type"].as_str()),
        (Some("shop"), Some("paid"))
    );
    // Ids travel percent-encoded in the path.
    app.put(SET, event("a/b c?", "paid")).await;
    let v = app
        .get(&format!("/v1/event-sets/orders/events/{}", enc("a/b c?")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["id"], "a/b c?");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_by_id_is_404_for_an_unknown_id_source_or_set() {
    let app = app().await;
    app.create_set(SET).await;
    app.put(SET, event("e-1", "paid")).await;
    let e = app
        .get("/v1/event-sets/orders/events/e-2")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Event");
    assert!(e["message"].as_str().unwrap().contains("e-2"), "{e}");
    let e = app
        .get("/v1/event-sets/orders/events/e-1?source=other")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Event");
    assert!(e["message"].as_str().unwrap().contains("other"), "{e}");
    app.get("/v1/event-sets/nope/events/e-1")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.get("/v1/event-sets/orders/events/e-1?sauce=x")
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_by_id_needs_an_admin_token() {
    let app = app_with_auth().await;
    app.create_set(SET).await;
    app.put(SET, event("e-1", "paid")).await;
    let path = "/v1/event-sets/orders/events/e-1";
    let r = app.call_as(None, Method::GET, path, None).await;
    r.error(StatusCode::UNAUTHORIZED, "AuthFailure.TokenMissing");
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    for token in [PRODUCER, CLOUD] {
        app.call_as(Some(token), Method::GET, path, None)
            .await
            .error(StatusCode::FORBIDDEN, "AuthFailure.UnauthorizedOperation");
    }
    let v = app.get(path).await.expect(StatusCode::OK);
    assert_eq!(v["id"], "e-1");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_trace_shows_rules_and_attempts_and_404s() {
    let app = app().await;
    let rx = Receiver::start().await;
    rx.set_policy("hook", |_, n| {
        if n == 0 {
            Answer::status(503)
        } else {
            Answer::ok()
        }
    });
    with_hook(&app, &rx, json!({})).await;
    app.put(SET, event("e-1", "paid")).await;
    rx.wait_until(10, "delivery", |r| r.accepted_ids("hook").len() == 1)
        .await;
    let mut t = Value::Null;
    for _ in 0..500 {
        t = app
            .get("/v1/event-sets/orders/events/e-1/trace")
            .await
            .expect(StatusCode::OK);
        if t["rules"][0]["targets"][0]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (t["id"].as_str(), t["offset"].as_u64()),
        (Some("e-1"), Some(0))
    );
    let rule = &t["rules"][0];
    assert_eq!(
        (rule["rule"].as_str(), rule["matched"].as_bool()),
        (Some("all"), Some(true))
    );
    let hook = &rule["targets"][0];
    assert_eq!(hook["state"], "delivered", "{t}");
    assert_eq!(hook["attempts"], 2);
    assert_eq!(hook["first_attempts"][0]["status"], 503);
    assert_eq!(hook["first_attempts"][1]["ok"], true);
    app.get("/v1/event-sets/orders/events/nope/trace")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Event");
    app.get("/v1/event-sets/orders/events/e-1/trace?source=elsewhere")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.Event");
    app.get("/v1/event-sets/nope/events/e-1/trace")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_transform_applies_both_forms_and_refuses_bad_ones_with_paths() {
    let app = app().await;
    let ev = json!({"specversion": "1.0", "id": "e1", "source": "cvm.cloud.tencent",
        "type": "cvm:ErrorEvent:GuestReboot", "subject": "ins-1", "region": "ap-guangzhou",
        "data": {"instanceId": "ins-1", "status": 1}});
    // Tencent form: extract data, build fields.
    let tencent = json!({
        "Extraction": {"ExtractionInputPath": "$.data", "Format": "JSON"},
        "Transform": {"OutputStructs": [
            {"Key": "instance", "Value": "$.instanceId", "ValueType": "JSONPATH"},
            {"Key": "kind", "Value": "reboot", "ValueType": "STRING"},
            {"Key": "n", "Value": "3", "ValueType": "NUMBER"}
        ]}
    });
    let r = app
        .post(
            "/v1/test/transform",
            json!({"transform": tencent, "event": ev}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        r["output"],
        json!({"instance": "ins-1", "kind": "reboot", "n": 3})
    );
    assert_eq!(r["dropped"], false);
    // EventBridge form, text template.
    let eb = json!({"input_transformer": {"input_paths_map": {"id": "$.subject"},
        "input_template": "instance <id> rebooted"}});
    let r = app
        .post("/v1/test/transform", json!({"transform": eb, "event": ev}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(r["output"], "instance ins-1 rebooted");
    // An EtlFilter that drops the event.
    let filtered = json!({"Extraction": {"ExtractionInputPath": "$.data"},
        "EtlFilter": {"Filter": "{\"status\":[2]}"}});
    let r = app
        .post(
            "/v1/test/transform",
            json!({"transform": filtered, "event": ev}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (r["output"].clone(), r["dropped"].clone()),
        (Value::Null, json!(true))
    );
    // A bad transformation names the field.
    let bad =
        json!({"Transform": {"OutputStructs": [{"Key": "k", "Value": "v", "ValueType": "DATE"}]}});
    let err = app
        .post("/v1/test/transform", json!({"transform": bad, "event": ev}))
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.Transformations",
        );
    assert_eq!(
        err["path"],
        "$.transform.Transform.OutputStructs[0].ValueType"
    );
    // So does rule creation.
    app.create_set(SET).await;
    let err = app
        .post(
            "/v1/event-sets/orders/rules",
            json!({"name": "r1", "pattern": {"source": ["shop"]}, "transform": bad}),
        )
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.Transformations",
        );
    assert_eq!(
        err["path"],
        "$.transform.Transform.OutputStructs[0].ValueType"
    );
    app.close().await;
}

// ----- tools --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_pattern_reports_matches_and_refuses_bad_patterns() {
    let app = app().await;
    let v = app
        .post(
            "/v1/test/pattern",
            json!({"pattern": {"type": ["paid"]}, "event": event("e", "paid")}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v, json!({"matched": true}));
    let v = app
        .post(
            "/v1/test/pattern",
            json!({"pattern": {"type": ["paid"]}, "event": event("e", "refunded")}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v, json!({"matched": false}));
    let e = app
        .post(
            "/v1/test/pattern",
            json!({"pattern": {"type": [{"begins-with": "p"}]}, "event": event("e", "paid")}),
        )
        .await
        .error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue.EventPattern",
        );
    assert_eq!(e["path"], "$.pattern.type[0].begins-with", "{e}");
    let e = app
        .post("/v1/test/pattern", json!({"pattern": {}}))
        .await
        .error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert!(e["message"].as_str().unwrap().contains("event"), "{e}");
    app.close().await;
}

// ----- fallbacks ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404_json() {
    let app = app().await;
    for path in ["/nope", "/v1/event-sets/orders/whatever", "/v1/test"] {
        app.get(path)
            .await
            .error(StatusCode::NOT_FOUND, "ResourceNotFound.Route");
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_json() {
    let app = app().await;
    app.call_as(None, Method::PUT, "/v1/event-sets", Some(json!({})))
        .await
        .error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedOperation.Method",
        );
    app.call_as(None, Method::DELETE, "/healthz", None)
        .await
        .error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedOperation.Method",
        );
    app.call_as(None, Method::GET, "/v1/test/pattern", None)
        .await
        .error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedOperation.Method",
        );
    app.close().await;
}

// ----- auth ---------------------------------------------------------------------------------

/// Asserts a 401/403 body names no configured token.
#[track_caller]
fn no_token_in(r: &Resp) {
    let text = r.text();
    for t in [ADMIN, PRODUCER, CLOUD, "wrong-token-0123456789"] {
        assert!(!text.contains(t), "the error echoes a token: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_missing_token_is_401_with_www_authenticate() {
    let app = app_with_auth().await;
    for (m, path) in [
        (Method::GET, "/v1/event-sets"),
        (Method::POST, "/v1/event-sets/default/events"),
        (Method::GET, "/metrics"),
        (Method::POST, "/v1/test/pattern"),
    ] {
        let r = app
            .call_as(None, m.clone(), path, Some(json!({"name": "x"})))
            .await;
        r.error(StatusCode::UNAUTHORIZED, "AuthFailure.TokenMissing");
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer", "{m} {path}");
        no_token_in(&r);
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_wrong_token_is_401_invalid_token() {
    let app = app_with_auth().await;
    let r = app
        .call_as(
            Some("wrong-token-0123456789"),
            Method::GET,
            "/v1/event-sets",
            None,
        )
        .await;
    r.error(StatusCode::UNAUTHORIZED, "AuthFailure.InvalidToken");
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    no_token_in(&r);
    // Not a bearer token at all.
    let r = app
        .raw(
            Method::GET,
            "/v1/event-sets",
            None,
            &[("authorization", "Basic YWRtaW46YWRtaW4=")],
            Body::empty(),
        )
        .await;
    r.error(StatusCode::UNAUTHORIZED, "AuthFailure.InvalidToken");
    // A valid token of another case is another token.
    let upper = ADMIN.to_uppercase();
    let r = app
        .call_as(Some(&upper), Method::GET, "/v1/event-sets", None)
        .await;
    r.error(StatusCode::UNAUTHORIZED, "AuthFailure.InvalidToken");
    assert!(!r.text().contains(&upper));
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_healthz_and_openapi_need_no_token() {
    let app = app_with_auth().await;
    let r = app.call_as(None, Method::GET, "/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .call_as(None, Method::GET, "/v1/openapi.json", None)
        .await;
    let doc = r.expect(StatusCode::OK);
    assert!(doc["paths"].is_object());
    // The document declares bearer auth.
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "{}",
        doc["components"]
    );
    app.close().await;
}

/// Management requests (method, path, body) on `orders` / rule `all` / target `hook`.
fn management_requests() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/event-sets", None),
        (
            Method::POST,
            "/v1/event-sets",
            Some(json!({"name": "new-set"})),
        ),
        (Method::GET, "/v1/event-sets/orders", None),
        (
            Method::PATCH,
            "/v1/event-sets/orders",
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, "/v1/event-sets/orders", None),
        (Method::GET, "/v1/event-sets/orders/events", None),
        (Method::GET, "/v1/event-sets/orders/tail", None),
        (Method::GET, "/v1/event-sets/orders/events/e-1", None),
        (Method::GET, "/v1/event-sets/orders/events/e-1/trace", None),
        (Method::GET, "/v1/event-sets/orders/rules", None),
        (
            Method::POST,
            "/v1/event-sets/orders/rules",
            Some(json!({"name": "r2", "pattern": {"source": ["shop"]}})),
        ),
        (Method::GET, "/v1/event-sets/orders/rules/all", None),
        (
            Method::PATCH,
            "/v1/event-sets/orders/rules/all",
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, "/v1/event-sets/orders/rules/all", None),
        (Method::GET, "/v1/event-sets/orders/rules/all/targets", None),
        (
            Method::POST,
            "/v1/event-sets/orders/rules/all/targets",
            Some(http_target("t2", "http://127.0.0.1:9/x", json!({}))),
        ),
        (Method::GET, TARGET_PATH, None),
        (Method::PATCH, TARGET_PATH, Some(json!({"ordered": true}))),
        (Method::DELETE, TARGET_PATH, None),
        (
            Method::POST,
            "/v1/event-sets/orders/rules/all/targets/hook/seek",
            Some(json!({"offset": 0})),
        ),
        (
            Method::GET,
            "/v1/event-sets/orders/rules/all/targets/hook/dead-letters",
            None,
        ),
        (
            Method::POST,
            "/v1/event-sets/orders/rules/all/targets/hook/dead-letters/redrive",
            Some(json!({})),
        ),
        (Method::GET, "/v1/event-sets/orders/replays", None),
        (
            Method::POST,
            "/v1/event-sets/orders/replays",
            Some(json!({"name": "r", "start": 0, "end": 1})),
        ),
        (Method::GET, "/v1/event-sets/orders/replays/r", None),
        (Method::DELETE, "/v1/event-sets/orders/replays/r", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_producer_may_put_to_custom_sets_test_patterns_and_read_metrics_only() {
    let app = app_with_auth().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    for (m, path, body) in management_requests() {
        let r = app.call_as(Some(PRODUCER), m.clone(), path, body).await;
        r.error(StatusCode::FORBIDDEN, "AuthFailure.UnauthorizedOperation");
        no_token_in(&r);
        assert!(
            r.text().contains("producer"),
            "{m} {path}: the refusal names the role: {}",
            r.text()
        );
    }
    // Nothing changed.
    app.get(TARGET_PATH).await.expect(StatusCode::OK);
    app.get("/v1/event-sets/new-set")
        .await
        .error(StatusCode::NOT_FOUND, "ResourceNotFound.EventSet");

    let v = app
        .call_as(
            Some(PRODUCER),
            Method::POST,
            "/v1/event-sets/orders/events",
            Some(event("p-1", "paid")),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(stored_offset(&v["entries"][0]), 0);
    let v = app
        .call_as(
            Some(PRODUCER),
            Method::POST,
            "/v1/test/pattern",
            Some(json!({"pattern": {"type": ["t"]}, "event": event("e", "t")})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["matched"], true);
    let r = app
        .call_as(Some(PRODUCER), Method::GET, "/metrics", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_cloud_may_put_to_default_but_not_manage() {
    let app = app_with_auth().await;
    let rx = Receiver::start().await;
    with_hook(&app, &rx, json!({})).await;
    let v = app
        .call_as(
            Some(CLOUD),
            Method::POST,
            "/v1/event-sets/default/events",
            Some(cloud_event("c-1", "cvm:ErrorEvent:PingUnreachable")),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["failed"], 0, "{v}");
    let v = app
        .call_as(
            Some(CLOUD),
            Method::POST,
            "/v1/event-sets/orders/events",
            Some(event("c-2", "paid")),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["failed"], 0, "{v}");
    for (m, path, body) in management_requests() {
        let r = app.call_as(Some(CLOUD), m.clone(), path, body).await;
        r.error(StatusCode::FORBIDDEN, "AuthFailure.UnauthorizedOperation");
        no_token_in(&r);
    }
    let r = app
        .call_as(Some(CLOUD), Method::GET, "/metrics", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_admin_may_do_everything() {
    let app = app_with_auth().await;
    let rx = Receiver::start().await;
    // Every request of `with_hook` is an admin request.
    with_hook(&app, &rx, json!({})).await;
    app.get("/v1/event-sets/orders/rules")
        .await
        .expect(StatusCode::OK);
    app.put(SET, event("a-1", "paid")).await;
    app.put(
        "default",
        cloud_event("a-2", "cvm:ErrorEvent:PingUnreachable"),
    )
    .await;
    app.get("/v1/event-sets/orders/events")
        .await
        .expect(StatusCode::OK);
    app.post(&format!("{TARGET_PATH}/seek"), json!({"offset": 0}))
        .await
        .expect(StatusCode::OK);
    app.post(&format!("{TARGET_PATH}/dead-letters/redrive"), json!({}))
        .await
        .expect(StatusCode::OK);
    app.post(
        "/v1/test/pattern",
        json!({"pattern": {"type": ["t"]}, "event": event("e", "t")}),
    )
    .await
    .expect(StatusCode::OK);
    let r = app.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    app.post("/v1/event-sets", json!({"name": "more"}))
        .await
        .expect(StatusCode::CREATED);
    let r = app.delete("/v1/event-sets/more").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    app.close().await;
}

// ----- regressions: bugs found by these tests, fixed in src/api ----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_entry_error_messages_name_the_path_the_client_sent() {
    let app = app().await;
    app.create_set(SET).await;
    // A single object: the client sent no array.
    let v = app
        .put(
            SET,
            json!({"specversion": "1.0", "id": "m-1", "source": "shop"}),
        )
        .await;
    let err = &v["entries"][0]["error"];
    assert_eq!(err["path"], "$.type", "{v}");
    let message = err["message"].as_str().unwrap();
    assert!(
        !message.contains("$[0]"),
        "message names a path not in the request: {v}"
    );
    // PutEvents: the entry is $.EventList[1].
    let v = app
        .put(
            SET,
            json!({"EventList": [
                {"Source": "shop", "Type": "t", "Data": "{}"},
                {"Source": "shop", "Data": "{}"},
            ]}),
        )
        .await;
    let err = &v["entries"][1]["error"];
    assert_eq!(err["path"], "$.EventList[1].Type", "{v}");
    let message = err["message"].as_str().unwrap();
    assert!(
        !message.contains("$[1]"),
        "message names a path not in the request: {v}"
    );
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_never_show_a_url_password() {
    let app = app().await;
    let rx = Receiver::start().await;
    let url = format!("http://hookuser:URLPASSWORD123@{}/hook", rx.addr);
    let created = with_hook(&app, &rx, json!({"http": {"url": url}})).await;
    assert!(
        !created.to_string().contains("URLPASSWORD123"),
        "create shows the URL password: {created}"
    );
    let r = app.get(TARGET_PATH).await;
    assert!(
        !r.text().contains("URLPASSWORD123"),
        "GET shows the URL password: {}",
        r.text()
    );
    let r = app.get("/v1/event-sets/orders/rules/all/targets").await;
    assert!(
        !r.text().contains("URLPASSWORD123"),
        "list shows the URL password: {}",
        r.text()
    );
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_scheme_is_case_insensitive() {
    let app = app_with_auth().await;
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let r = app
            .raw(
                Method::GET,
                "/v1/event-sets",
                None,
                &[("authorization", &format!("{scheme} {ADMIN}"))],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", r.text());
    }
    app.close().await;
}

// ----- the cloud event catalog (src/cloud) ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_all_23_products_with_their_event_types() {
    let app = app().await;
    let (status, body) = app
        .call_as(None, Method::GET, "/v1/catalog", None)
        .await
        .status_json();
    assert_eq!(status, StatusCode::OK, "{body}");
    let products = body["products"].as_array().expect("products");
    assert_eq!(products.len(), 23);
    let keys: Vec<&str> = products
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    for key in [
        "cvm", "tke", "clb", "mysql", "redis", "ckafka", "oceanus", "ddos",
    ] {
        assert!(keys.contains(&key), "{key} missing: {keys:?}");
    }
    let cvm = products.iter().find(|p| p["key"] == "cvm").unwrap();
    assert_eq!(cvm["source"], "cvm.cloud.tencent");
    assert_eq!(cvm["name_zh"], "云服务器");
    assert_eq!(cvm["prefix_provenance"], "documented");
    let types: Vec<&str> = cvm["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"cvm:ErrorEvent:DiskReadonly"), "{types:?}");
    assert!(types.contains(&"cvm:ErrorEvent:GuestReboot"), "{types:?}");
    let disk = &cvm["event_types"][types
        .iter()
        .position(|t| *t == "cvm:ErrorEvent:DiskReadonly")
        .unwrap()];
    assert_eq!(disk["name"], "DiskReadonly");
    assert_eq!(disk["category"], "exception");
    assert_eq!(disk["status"], "recoverable");
    assert_eq!(disk["documented"], true);
    assert!(
        disk.get("sample_data").is_none(),
        "the list is a summary: {disk}"
    );
    // Every product says where its prefix comes from, every type where its name does.
    for p in products {
        assert!(p["prefix_provenance"].is_string(), "{p}");
        for t in p["event_types"].as_array().unwrap() {
            assert!(
                ["documented", "unofficial", "assumed"]
                    .contains(&t["provenance"].as_str().unwrap()),
                "{t}"
            );
        }
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_product_is_found_by_key_prefix_or_source_with_sample_data() {
    let app = app().await;
    let (status, oceanus) = app
        .call_as(None, Method::GET, "/v1/catalog/oceanus", None)
        .await
        .status_json();
    assert_eq!(status, StatusCode::OK, "{oceanus}");
    assert_eq!(oceanus["key"], "oceanus");
    let t = oceanus["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "OceanusTaskmanagerLoadTooHigh")
        .expect("the best practice's event");
    assert!(t["sample_data"]["instanceId"].is_string(), "{t}");
    assert_eq!(t["documented"], false, "the oceanus prefix is assumed");
    assert!(oceanus["note"].as_str().unwrap().contains("assumed"));

    for name in ["cdb", "cdb.cloud.tencent", "MySQL"] {
        let (status, p) = app
            .call_as(None, Method::GET, &format!("/v1/catalog/{name}"), None)
            .await
            .status_json();
        assert_eq!(status, StatusCode::OK, "{name}: {p}");
        assert_eq!(p["key"], "mysql", "{name}");
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_unknown_product_is_404_resource_not_found_product() {
    let app = app().await;
    let (status, body) = app
        .call_as(None, Method::GET, "/v1/catalog/s3", None)
        .await
        .status_json();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "ResourceNotFound.Product");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("s3") && msg.contains("cvm"), "{msg}");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_is_readable_by_every_role_but_needs_a_valid_token() {
    let app = app_with_auth().await;
    for token in [ADMIN, PRODUCER, CLOUD] {
        let (status, _) = app
            .call_as(Some(token), Method::GET, "/v1/catalog", None)
            .await
            .status_json();
        assert_eq!(status, StatusCode::OK, "{token}");
        let (status, _) = app
            .call_as(Some(token), Method::GET, "/v1/catalog/cvm", None)
            .await
            .status_json();
        assert_eq!(status, StatusCode::OK, "{token}");
    }
    let (status, body) = app
        .call_as(None, Method::GET, "/v1/catalog", None)
        .await
        .status_json();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "AuthFailure.TokenMissing");
    let (status, body) = app
        .call_as(
            Some("wrong-token-0123456789"),
            Method::GET,
            "/v1/catalog/cvm",
            None,
        )
        .await
        .status_json();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "AuthFailure.InvalidToken");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_describes_the_catalog_routes() {
    let app = app().await;
    let (status, doc) = app
        .call_as(None, Method::GET, "/v1/openapi.json", None)
        .await
        .status_json();
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["paths"]["/v1/catalog"]["get"].is_object(),
        "{}",
        doc["paths"]
    );
    assert!(doc["paths"]["/v1/catalog/{product}"]["get"].is_object());
    app.close().await;
}

// ----- simulated events into `default` ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulated_event_type_is_accepted_into_default() {
    let app = app_with_auth().await;
    let mut sim = Simulator::new(11);
    // Every type, three times (recoverable ones: an alarm, then alarms or recoveries).
    let events: Vec<Value> = cloud::catalog()
        .event_types()
        .flat_map(|(p, t)| [sim.event(p, t), sim.event(p, t), sim.event(p, t)])
        .collect();
    let n = events.len();
    let (status, body) = app
        .call_as(
            Some(CLOUD),
            Method::POST,
            "/v1/event-sets/default/events",
            Some(Value::Array(events.clone())),
        )
        .await
        .status_json();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["failed"], 0, "{body}");
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), n);
    for (i, (e, ev)) in entries.iter().zip(&events).enumerate() {
        assert_eq!(e["offset"], i, "{e}");
        assert_eq!(e["id"], ev["id"], "{e}");
    }
    // Stored as sent.
    let (status, stored) = app
        .call_as(
            Some(ADMIN),
            Method::GET,
            "/v1/event-sets/default/events?start=0&limit=5",
            None,
        )
        .await
        .status_json();
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["events"][0]["type"], events[0]["type"]);
    assert_eq!(stored["events"][0]["data"], events[0]["data"]);
    assert_eq!(stored["events"][0]["status"], events[0]["status"]);

    // A producer token may not write to `default`, simulated or not.
    let (status, body) = app
        .call_as(
            Some(PRODUCER),
            Method::POST,
            "/v1/event-sets/default/events",
            Some(events[0].clone()),
        )
        .await
        .status_json();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    app.close().await;
}
