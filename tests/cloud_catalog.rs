//! The cloud-service event catalog and simulator (src/cloud) from the outside:
//! `GET /v1/catalog` and `GET /v1/catalog/{product}` through the router (`oneshot`), every
//! simulated event type put into `default` through the real put path, and `eventbus simulate`
//! against the real binary serving on a free port.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use eventbus::api::auth::Auth;
use eventbus::api::{ApiOptions, AppState, router};
use eventbus::bus::{BusConfig, EventBus};
use eventbus::cloud::{self, Simulator};
use eventbus::config::{Role, TokenConfig};
use eventbus::delivery::{Engine, EngineOptions};
use serde_json::Value;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const PRODUCER: &str = "producer-token-0123456789";
const CLOUD: &str = "cloud-token-0123456789";

// ----- router fixture -----------------------------------------------------------------------

struct App {
    _dir: tempfile::TempDir,
    bus: Arc<EventBus>,
    engine: Arc<Engine>,
    state: AppState,
    router: Router,
}

async fn app(with_tokens: bool) -> App {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(
        EventBus::open(BusConfig {
            data_dir: dir.path().to_path_buf(),
            ..BusConfig::default()
        })
        .unwrap(),
    );
    let engine = Arc::new(Engine::start(
        bus.clone(),
        EngineOptions {
            drain_timeout: Duration::from_secs(2),
            ..EngineOptions::default()
        },
    ));
    let auth = if with_tokens {
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
    } else {
        Auth::default()
    };
    let state = AppState::new(
        bus.clone(),
        engine.clone(),
        ApiOptions {
            auth,
            ..ApiOptions::default()
        },
    );
    let router = router(state.clone());
    App {
        _dir: dir,
        bus,
        engine,
        state,
        router,
    }
}

impl App {
    async fn close(self) {
        self.state.begin_shutdown();
        self.engine.shutdown().await;
        self.bus.shutdown().unwrap();
    }

    /// A request with an optional token and JSON body; the status and the JSON answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }
}

// ----- routes -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_all_23_products_with_their_event_types() {
    let app = app(false).await;
    let (status, body) = app.get("/v1/catalog", None).await;
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
    let app = app(false).await;
    let (status, oceanus) = app.get("/v1/catalog/oceanus", None).await;
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
        let (status, p) = app.get(&format!("/v1/catalog/{name}"), None).await;
        assert_eq!(status, StatusCode::OK, "{name}: {p}");
        assert_eq!(p["key"], "mysql", "{name}");
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_unknown_product_is_404_resource_not_found_product() {
    let app = app(false).await;
    let (status, body) = app.get("/v1/catalog/s3", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "ResourceNotFound.Product");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("s3") && msg.contains("cvm"), "{msg}");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_is_readable_by_every_role_but_needs_a_valid_token() {
    let app = app(true).await;
    for token in [ADMIN, PRODUCER, CLOUD] {
        let (status, _) = app.get("/v1/catalog", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{token}");
        let (status, _) = app.get("/v1/catalog/cvm", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{token}");
    }
    let (status, body) = app.get("/v1/catalog", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "AuthFailure.TokenMissing");
    let (status, body) = app
        .get("/v1/catalog/cvm", Some("wrong-token-0123456789"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "AuthFailure.InvalidToken");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_describes_the_catalog_routes() {
    let app = app(false).await;
    let (status, doc) = app.get("/v1/openapi.json", None).await;
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
    let app = app(true).await;
    let mut sim = Simulator::new(11);
    // Every type, three times (recoverable ones: an alarm, then alarms or recoveries).
    let events: Vec<Value> = cloud::catalog()
        .event_types()
        .flat_map(|(p, t)| [sim.event(p, t), sim.event(p, t), sim.event(p, t)])
        .collect();
    let n = events.len();
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/event-sets/default/events",
            Some(CLOUD),
            Some(Value::Array(events.clone())),
        )
        .await;
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
        .get("/v1/event-sets/default/events?start=0&limit=5", Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["events"][0]["type"], events[0]["type"]);
    assert_eq!(stored["events"][0]["data"], events[0]["data"]);
    assert_eq!(stored["events"][0]["status"], events[0]["status"]);

    // A producer token may not write to `default`, simulated or not.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/event-sets/default/events",
            Some(PRODUCER),
            Some(events[0].clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    app.close().await;
}

// ----- the CLI against the real binary ------------------------------------------------------

fn eventbus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(args)
        .env_remove("EVENTBUS_TOKEN")
        .env_remove("EVENTBUS_SERVER")
        .env("EVENTBUS_LOG", "warn")
        .output()
        .expect("run eventbus")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_simulate_puts_cvm_events_into_default_of_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), None);
    let out = eventbus(&[
        "simulate",
        "--product",
        "cvm",
        "--count",
        "5",
        "--server",
        &server.base,
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let results: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 5, "{results:?}");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["offset"], i, "{r}");
        assert!(r["type"].as_str().unwrap().starts_with("cvm:"), "{r}");
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored = rt.block_on(async {
        reqwest::get(format!(
            "{}/v1/event-sets/default/events?start=0&limit=10",
            server.base
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
    });
    let stored: Value = serde_json::from_str(&stored).unwrap();
    let events = stored["events"].as_array().expect("events");
    assert_eq!(events.len(), 5, "{stored}");
    for (e, r) in events.iter().zip(&results) {
        assert_eq!(e["source"], "cvm.cloud.tencent", "{e}");
        assert_eq!(e["id"], r["id"]);
        assert_eq!(e["subject"], r["subject"]);
        assert!(e["subject"].as_str().unwrap().starts_with("ins-"), "{e}");
        // The sample data names the resource (`instanceId`; `resourceName` in audit records).
        let subject = e["subject"].as_str().unwrap();
        assert!(e["data"].to_string().contains(subject), "{e}");
        assert_eq!(e["datacontenttype"], "application/json;charset=utf-8");
        assert!(e["region"].as_str().unwrap().contains('-'), "{e}");
    }

    // The table output: a header and one row per event, with the type and the offset.
    let out = eventbus(&[
        "simulate",
        "--product",
        "cvm",
        "--type",
        "DiskReadonly",
        "--count",
        "2",
        "--seed",
        "5",
        "--server",
        &server.base,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("#  ID"), "{stdout}");
    assert!(lines[1].contains("cvm:ErrorEvent:DiskReadonly"), "{stdout}");
    assert!(lines[1].contains("  5  "), "offset 5: {stdout}");
}

#[test]
fn cli_simulate_needs_a_cloud_or_admin_token_when_tokens_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("eventbus.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[auth.tokens]]\ntoken = \"{PRODUCER}\"\nrole = \"producer\"\n\
             [[auth.tokens]]\ntoken = \"{CLOUD}\"\nrole = \"cloud\"\n"
        ),
    )
    .unwrap();
    let server = common::Server::start(&dir.path().join("data"), Some(&cfg));
    let run = |token: &str| {
        eventbus(&[
            "simulate",
            "--product",
            "redis",
            "--count",
            "3",
            "--server",
            &server.base,
            "--token",
            token,
        ])
    };
    let out = run(PRODUCER);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("`cloud` and `admin`"), "{err}");
    assert!(!err.contains(PRODUCER), "the token leaked: {err}");
    let out = run(CLOUD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 4, "header and 3 rows");
}

#[test]
fn cli_simulate_unknown_product_or_type_fails_listing_the_valid_ones() {
    // No server: the choice is checked before anything is sent.
    let out = eventbus(&["simulate", "--product", "s3", "--server", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("unknown product `s3`"), "{err}");
    assert!(err.contains("cvm") && err.contains("oceanus"), "{err}");

    let out = eventbus(&["simulate", "--product", "cvm", "--type", "Nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("unknown event type `Nope`"), "{err}");
    assert!(err.contains("cvm:ErrorEvent:GuestReboot"), "{err}");
}

#[test]
fn cli_simulate_list_prints_the_catalog_offline() {
    let out = eventbus(&["simulate", "--list", "--server", "127.0.0.1:9"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let n_types = cloud::catalog().event_types().count();
    assert_eq!(stdout.lines().count(), 1 + n_types, "{stdout}");
    assert!(stdout.contains("cvm:ErrorEvent:DiskReadonly"));
    assert!(stdout.contains("antiddos.cloud.tencent"));

    let out = eventbus(&[
        "simulate",
        "--list",
        "--product",
        "oceanus",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["source"], "oceanus.cloud.tencent");
    assert!(
        lines[0]["event_types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["type"] == "oceanus:ErrorEvent:OceanusTaskmanagerLoadTooHigh")
    );
}
