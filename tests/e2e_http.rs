//! End to end through the real binary: `eventbus serve` on a free port, a set, a rule and an
//! `http` target pointing at a local receiver created over HTTP, events put with plain HTTP
//! requests (what curl sends) and with `eventbus put`, delivered to the receiver; then a
//! SIGTERM shuts the server down cleanly and a restart finds everything in place.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

fn event(id: &str) -> Value {
    json!({"specversion":"1.0","id":id,"source":"shop","type":"order.created",
           "data":{"id":id,"total":12}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_serve_create_put_over_http_and_cli_delivers_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = common::Receiver::start().await;
    let server = common::Server::start(&data, None);
    let base = server.base.clone();
    let http = reqwest::Client::new();
    use reqwest::Method as M;

    let (s, _) = send(&http, M::GET, format!("{base}/healthz"), None).await;
    assert_eq!(s, 200);
    let (s, body) = send(
        &http,
        M::POST,
        format!("{base}/v1/event-sets"),
        Some(json!({"name":"orders","description":"shop orders"})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = send(
        &http,
        M::POST,
        format!("{base}/v1/event-sets/orders/rules"),
        Some(json!({"name":"created","pattern":{"type":["order.created"]}})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = send(
        &http,
        M::POST,
        format!("{base}/v1/event-sets/orders/rules/created/targets"),
        Some(
            json!({"name":"hook","type":"http","http":{"url":receiver.url("/hook")},
                    "retry":{"initial_backoff_ms":10,"max_backoff_ms":50}}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{body}");

    // Plain HTTP, as curl would send it: one object, then an array with a refused entry.
    let (s, body) = send(
        &http,
        M::POST,
        format!("{base}/v1/event-sets/orders/events"),
        Some(event("h-1")),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["failed"], 0);
    assert_eq!(body["entries"][0]["id"], "h-1");
    let (s, body) = send(
        &http,
        M::POST,
        format!("{base}/v1/event-sets/orders/events"),
        Some(json!([event("h-2"), {"specversion":"1.0","source":"shop"}])),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["failed"], 1);
    assert!(
        body["entries"][1]["error"]["code"]
            .as_str()
            .unwrap()
            .starts_with("MissingParameter")
    );

    // `eventbus put` with JSON lines on stdin.
    let mut put = Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(["put", "orders", "-", "--server", &base, "--output", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = put.stdin.take().unwrap();
        for id in ["c-1", "c-2", "c-3"] {
            writeln!(stdin, "{}", event(id)).unwrap();
        }
    }
    let out = put.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    receiver
        .wait_until(20, "five deliveries", |r| {
            let mut ids = r.accepted_ids("/hook");
            ids.sort();
            ids.dedup();
            ids.len() == 5
        })
        .await;
    let mut ids = receiver.accepted_ids("/hook");
    ids.sort();
    ids.dedup();
    assert_eq!(ids, ["c-1", "c-2", "c-3", "h-1", "h-2"]);

    // The target read shows the binding caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, t) = send(
            &http,
            M::GET,
            format!("{base}/v1/event-sets/orders/rules/created/targets/hook"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{t}");
        if t["delivery"]["cursor"] == 5 && t["delivery"]["lag"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "binding never caught up: {t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, metrics) = send(&http, M::GET, format!("{base}/metrics"), None).await;
    assert_eq!(s, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains(r#"eventbus_ingest_events_total{set="orders",outcome="accepted"} 5"#),
        "{metrics}"
    );

    let (status, rest) = server.stop();
    assert!(status.success(), "{status}");
    assert_eq!(
        rest.last().map(String::as_str),
        Some("eventbus: closed cleanly")
    );

    // Restart: the events, the rule, the target and its cursor are all there.
    let server = common::Server::start(&data, None);
    let base = server.base.clone();
    let (s, set) = send(&http, M::GET, format!("{base}/v1/event-sets/orders"), None).await;
    assert_eq!(s, 200);
    assert_eq!(set["stats"]["events"], 5, "{set}");
    let (s, t) = send(
        &http,
        M::GET,
        format!("{base}/v1/event-sets/orders/rules/created/targets/hook"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["delivery"]["cursor"], 5, "{t}");
    let (s, page) = send(
        &http,
        M::GET,
        format!("{base}/v1/event-sets/orders/events?limit=10"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let stored: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(stored, ["h-1", "h-2", "c-1", "c-2", "c-3"]);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn serve_refuses_a_public_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.tokens"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing may be created before the refusal"
    );
}

#[test]
fn serve_with_tokens_requires_them_and_never_logs_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("eventbus.toml");
    std::fs::write(
        &cfg,
        "[[auth.tokens]]\ntoken = \"admin-secret-token-0123\"\nrole = \"admin\"\n\
         [[auth.tokens]]\ntoken = \"producer-secret-token-0123\"\nrole = \"producer\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("EVENTBUS_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = stdout
        .next()
        .unwrap()
        .unwrap()
        .replace("eventbus: listening on ", "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        // POST `body` to `path` with an optional bearer token; the status.
        let post = |path: &str, token: Option<&str>, body: String| {
            let mut req = http
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            async move { req.send().await.unwrap().status().as_u16() }
        };
        let set = || r#"{"name":"orders"}"#.to_string();
        assert_eq!(post("/v1/event-sets", None, set()).await, 401);
        let producer = Some("producer-secret-token-0123");
        assert_eq!(post("/v1/event-sets", producer, set()).await, 403);
        let admin = Some("admin-secret-token-0123");
        assert_eq!(post("/v1/event-sets", admin, set()).await, 201);
        let put = event("p-1").to_string();
        assert_eq!(
            post("/v1/event-sets/orders/events", producer, put).await,
            200
        );
    });
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        !logs.contains("secret-token"),
        "a token reached the log:\n{logs}"
    );
}

/// `eventbus events query` and `events get` against the real server (the id index built by
/// the server's first lookup), and the same event fetched with plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_cli_events_query_and_get_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path(), None);
    let base = server.base.clone();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_eventbus"))
            .args(args)
            .args(["--server", &base])
            .env_remove("EVENTBUS_TOKEN")
            .env_remove("EVENTBUS_SERVER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = cli(&["sets", "create", "orders"]);
    assert_eq!(code, Some(0), "{err}");
    let http = reqwest::Client::new();
    let events: Vec<Value> = (0..25).map(|i| event(&format!("q-{i}"))).collect();
    let (status, _) = send(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/event-sets/orders/events"),
        Some(Value::Array(events)),
    )
    .await;
    assert_eq!(status, 200);

    let (code, out, err) = cli(&[
        "events", "query", "orders", "--limit", "10", "--all", "--output", "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let ids: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, (0..25).map(|i| format!("q-{i}")).collect::<Vec<_>>());

    let (code, out, err) = cli(&["events", "get", "orders", "q-7", "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["id"].as_str(), v["data"]["id"].as_str()),
        (Some("q-7"), Some("q-7"))
    );
    let (code, _, err) = cli(&["events", "get", "orders", "q-7", "--source", "elsewhere"]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: ResourceNotFound.Event: "), "{err}");
    let (status, v) = send(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/event-sets/orders/events/q-24?source=shop"),
        None,
    )
    .await;
    assert_eq!((status, v["id"].as_str()), (200, Some("q-24")));
    let (status, _) = server.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_cli_replay_start_follows_to_completion_and_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path(), None);
    let base = server.base.clone();
    let rx = common::Receiver::start().await;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_eventbus"))
            .args(args)
            .args(["--server", &base])
            .env_remove("EVENTBUS_TOKEN")
            .env_remove("EVENTBUS_SERVER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        send(
            &http,
            reqwest::Method::POST,
            format!("{base}{path}"),
            Some(body),
        )
    };
    assert_eq!(
        post("/v1/event-sets", json!({"name": "orders"})).await.0,
        201
    );
    assert_eq!(
        post(
            "/v1/event-sets/orders/rules",
            json!({"name": "all", "pattern": {"source": ["shop"]}})
        )
        .await
        .0,
        201
    );
    let target = json!({"name": "hook", "type": "http", "http": {"url": rx.url("hook")}, "start": "earliest"});
    assert_eq!(
        post("/v1/event-sets/orders/rules/all/targets", target)
            .await
            .0,
        201
    );
    let events: Vec<Value> = (0..5).map(|i| event(&format!("r-{i}"))).collect();
    assert_eq!(
        post("/v1/event-sets/orders/events", Value::Array(events))
            .await
            .0,
        200
    );
    rx.wait_until(10, "live delivery", |r| r.accepted_ids("hook").len() == 5)
        .await;

    let end = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1)
    .to_string();
    let (code, out, err) = cli(&[
        "replay", "start", "orders", "again", "--start", "0", "--end", &end, "--output", "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(
        (status["replayed"].as_u64(), status["total"].as_u64()),
        (Some(5), Some(5))
    );
    let replayed: Vec<Value> = rx
        .accepted("hook")
        .iter()
        .flat_map(|r| r.events())
        .filter(|e| e["replayname"] == "again")
        .collect();
    assert_eq!(replayed.len(), 5);
    let (code, out, err) = cli(&["replay", "list", "orders"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("again") && out.contains("completed"), "{out}");
    let (code, _, err) = cli(&[
        "replay", "start", "orders", "again", "--start", "0", "--end", "1",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: ResourceInUse.Replay: "), "{err}");
    let (status, _) = server.stop();
    assert!(status.success());
}
