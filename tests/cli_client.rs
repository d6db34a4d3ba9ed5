//! Scenario: the client commands of the `eventbus` binary (`put`, `tail`, `sets`, `rules`,
//! `targets`, `dead-letters`) against a fake HTTP server started in the test. The fake records
//! every request and answers with canned JSON, so these tests check what the CLI sends and how
//! it shows answers and errors; the end-to-end run against the real server is elsewhere.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "tok-very-secret-123";

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Decoded query parameters, in order.
    fn query_pairs(&self) -> Vec<(String, String)> {
        let q = self.query.clone().unwrap_or_default();
        reqwest::Url::parse(&format!("http://x/?{q}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// A canned answer: status, content type, body.
struct Reply(u16, &'static str, String);

fn ok_json(v: Value) -> Reply {
    Reply(200, "application/json", v.to_string())
}

type Responder = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// An HTTP server on 127.0.0.1:<random port> answering every request with `respond`.
/// Dropping it stops it (its runtime goes with it).
struct FakeServer {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    _rt: tokio::runtime::Runtime,
}

#[derive(Clone)]
struct FakeState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    respond: Arc<Responder>,
}

impl FakeServer {
    fn start(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> FakeServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = FakeState {
            requests: requests.clone(),
            respond: Arc::new(respond),
        };
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = Router::new().fallback(handle).with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
        FakeServer {
            url,
            requests,
            _rt: rt,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn handle(State(state): State<FakeState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: body.to_vec(),
    };
    let Reply(status, ctype, text) = (state.respond)(&rec);
    state.requests.lock().unwrap().push(rec);
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from(text))
        .unwrap()
}

/// The binary with no EVENTBUS_* variables inherited from the developer's shell.
fn eventbus(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
    cmd.args(args)
        .env_remove("EVENTBUS_SERVER")
        .env_remove("EVENTBUS_TOKEN")
        .env_remove("EVENTBUS_LOG");
    cmd
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start eventbus");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run eventbus")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// A fake `POST …/events` that stores every event: entry offsets count up across requests,
/// and an event whose id is "bad" is rejected, as the real server does per entry.
fn put_server() -> FakeServer {
    let next = AtomicU64::new(0);
    FakeServer::start(move |r| {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/event-sets/orders/events")
        );
        let events = r.json();
        let mut failed = 0;
        let entries: Vec<Value> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                if e["id"] == "bad" {
                    failed += 1;
                    json!({"error":{"code":"InvalidParameterValue.EventSource",
                                    "message":"source is required","path":"$.source"}})
                } else {
                    json!({"id": e["id"], "offset": next.fetch_add(1, Ordering::SeqCst)})
                }
            })
            .collect();
        ok_json(json!({"entries": entries, "failed": failed}))
    })
}

#[test]
fn put_sends_json_lines_as_array_chunks_with_the_bearer_token() {
    let server = put_server();
    let input: String = (0..5)
        .map(|i| {
            format!(
                "{{\"specversion\":\"1.0\",\"id\":\"e{i}\",\"source\":\"shop\",\"type\":\"t\"}}\n"
            )
        })
        .collect();
    let mut cmd = eventbus(&[
        "put",
        "orders",
        "--batch",
        "2",
        "--output",
        "json",
        "--server",
        &server.url,
    ]);
    cmd.env("EVENTBUS_TOKEN", TOKEN);
    let out = run_with_stdin(cmd, &input);
    assert!(out.status.success(), "stderr: {}", stderr(&out));

    let reqs = server.requests();
    let ids: Vec<Vec<Value>> = reqs
        .iter()
        .map(|r| {
            r.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone())
                .collect()
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            vec![json!("e0"), json!("e1")],
            vec![json!("e2"), json!("e3")],
            vec![json!("e4")]
        ]
    );
    for r in &reqs {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    // The events go out as read, fields intact.
    assert_eq!(
        reqs[0].json()[0],
        json!({"specversion":"1.0","id":"e0","source":"shop","type":"t"})
    );
    let results = json_lines(&out);
    assert_eq!(
        results,
        (0..5)
            .map(|i| json!({"id": format!("e{i}"), "offset": i}))
            .collect::<Vec<_>>()
    );
    assert!(!stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN));
}

#[test]
fn put_reads_a_file_holding_an_array() {
    let server = put_server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    std::fs::write(
        &file,
        r#"[{"id":"a","source":"s","type":"t"},{"id":"b","source":"s","type":"t"}]"#,
    )
    .unwrap();
    let out = run(eventbus(&[
        "put",
        "orders",
        file.to_str().unwrap(),
        "--server",
        &server.url,
    ]));
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].json().as_array().unwrap().len(), 2);
    // No token configured: no Authorization header at all.
    assert_eq!(reqs[0].header("authorization"), None);
    // Default output is a table: header, then one row per event.
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("#") && lines[0].contains("ID") && lines[0].contains("OFFSET"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("2") && lines[2].contains('b') && lines[2].contains('1'),
        "{text}"
    );
}

#[test]
fn put_with_a_rejected_entry_shows_its_error_and_exits_1() {
    let server = put_server();
    let input =
        "{\"id\":\"ok\",\"source\":\"s\",\"type\":\"t\"}\n{\"id\":\"bad\",\"type\":\"t\"}\n";
    let out = run_with_stdin(
        eventbus(&["put", "orders", "-", "--server", &server.url]),
        input,
    );
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("InvalidParameterValue.EventSource: source is required"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("1 of 2 events were rejected"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn put_of_input_that_is_not_json_names_the_line_and_sends_nothing() {
    let server = put_server();
    let input = "{\"id\":\"a\"}\n\n{\"id\": oops}\n{\"id\":\"c\"}\n";
    let out = run_with_stdin(eventbus(&["put", "orders", "--server", &server.url]), input);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("line 3")
            && err.contains("not valid JSON")
            && err.contains("nothing was sent"),
        "{err}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn put_that_the_server_refuses_prints_the_error_code_and_exits_1() {
    let server = FakeServer::start(|_| {
        Reply(
            403,
            "application/json",
            json!({"error":{"code":"OperationDenied.Unauthorized","message":"token may not write to default"}})
                .to_string(),
        )
    });
    let mut cmd = eventbus(&["put", "default", "--server", &server.url]);
    cmd.env("EVENTBUS_TOKEN", TOKEN);
    let out = run_with_stdin(cmd, "{\"id\":\"a\"}");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("OperationDenied.Unauthorized: token may not write to default"),
        "{err}"
    );
    // One chunk: the error is printed plain, exactly as for any other command.
    assert_eq!(
        err,
        "error: OperationDenied.Unauthorized: token may not write to default\n"
    );
    assert!(!err.contains(TOKEN) && !stdout(&out).contains(TOKEN));
}

#[test]
fn put_refused_after_the_first_chunk_reports_what_was_stored() {
    let calls = AtomicU64::new(0);
    let server = FakeServer::start(move |r| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            let n = r.json().as_array().unwrap().len() as u64;
            let entries: Vec<Value> = (0..n)
                .map(|i| json!({"id": format!("e{i}"), "offset": i}))
                .collect();
            ok_json(json!({"entries": entries, "failed": 0}))
        } else {
            Reply(
                413,
                "application/json",
                json!({"error":{"code":"LimitExceeded.RequestSize","message":"body too large"}})
                    .to_string(),
            )
        }
    });
    let input =
        "{\"id\":\"e0\"}\n{\"id\":\"e1\"}\n{\"id\":\"e2\"}\n{\"id\":\"e3\"}\n{\"id\":\"e4\"}\n";
    let out = run_with_stdin(
        eventbus(&[
            "put",
            "orders",
            "--batch",
            "2",
            "--output",
            "json",
            "--server",
            &server.url,
        ]),
        input,
    );
    assert_eq!(out.status.code(), Some(1));
    // The first chunk's results are printed; the command stopped at the refused chunk.
    assert_eq!(
        json_lines(&out),
        vec![json!({"id":"e0","offset":0}), json!({"id":"e1","offset":1})]
    );
    assert_eq!(server.requests().len(), 2);
    let err = stderr(&out);
    assert!(
        err.contains("events 1-2 were sent") && err.contains("events 3-5 were not stored"),
        "{err}"
    );
    assert!(
        err.contains("error: putting events 3-4 of 5 into \"orders\": LimitExceeded.RequestSize: body too large"),
        "{err}"
    );
}

#[test]
fn error_answer_prints_code_message_and_path_on_stderr_and_exits_1() {
    let server = FakeServer::start(|_| {
        Reply(
            404,
            "application/json",
            json!({"error":{"code":"ResourceNotFound.Rule","message":"no rule \"r\" in \"s\"","path":"$.rule"}})
                .to_string(),
        )
    });
    let mut cmd = eventbus(&[
        "rules",
        "get",
        "s",
        "r",
        "--server",
        &server.url,
        "--token",
        TOKEN,
    ]);
    cmd.env("EVENTBUS_TOKEN", "other-secret");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: ResourceNotFound.Rule: no rule \"r\" in \"s\" (at $.rule)\n"
    );
    assert_eq!(stdout(&out), "");
    let reqs = server.requests();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/v1/event-sets/s/rules/r")
    );
    // --token wins over the environment.
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

fn sets_server() -> FakeServer {
    FakeServer::start(|r| match r.path.as_str() {
        "/v1/event-sets" => ok_json(json!({"event_sets":[
            {"name":"default","description":"cloud service events","kind":"cloud",
             "retention":{"max_age_hours":24},"dedup_window_ms":0,"created_ms":0,"updated_ms":0,
             "stats":{"events":12,"bytes":3400,"first_offset":0,"last_offset":11,"next_offset":12}},
            {"name":"orders","description":"","kind":"custom","retention":{},"dedup_window_ms":0,
             "created_ms":0,"updated_ms":0,
             "stats":{"events":0,"bytes":0,"first_offset":0,"last_offset":null,"next_offset":0}}]})),
        _ => Reply(
            404,
            "application/json",
            r#"{"error":{"code":"ResourceNotFound.EventSet","message":"no"}}"#.into(),
        ),
    })
}

#[test]
fn list_with_output_json_prints_one_parseable_object_per_line() {
    let server = sets_server();
    // The client options may come before or after the nested subcommand, or from the env.
    let mut env_cmd = eventbus(&["sets", "list", "--output", "json"]);
    env_cmd.env("EVENTBUS_SERVER", &server.url);
    for cmd in [
        eventbus(&["sets", "list", "--output", "json", "--server", &server.url]),
        eventbus(&["sets", "--output", "json", "--server", &server.url, "list"]),
        env_cmd,
    ] {
        let out = run(cmd);
        assert!(out.status.success(), "stderr: {}", stderr(&out));
        let items = json_lines(&out);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["name"], "default");
        assert_eq!(items[1]["stats"]["last_offset"], Value::Null);
    }
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn list_as_table_shows_the_chosen_columns() {
    let server = sets_server();
    let out = run(eventbus(&["sets", "list", "--server", &server.url]));
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "KIND",
            "EVENTS",
            "BYTES",
            "FIRST_OFFSET",
            "LAST_OFFSET",
            "DESCRIPTION"
        ]
    );
    assert_eq!(
        rows[1],
        [
            "default", "cloud", "12", "3400", "0", "11", "cloud", "service", "events"
        ]
    );
    assert_eq!(rows[2], ["orders", "custom", "0", "0", "0", "-"]);
}

#[test]
fn management_commands_send_the_documented_requests() {
    let server = FakeServer::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p.ends_with("/seek") => ok_json(json!({"cursor": 42})),
        ("POST", p) if p.ends_with("/redrive") => ok_json(json!({"redriven": 2})),
        ("DELETE", _) => Reply(204, "application/json", String::new()),
        // `sets update` reads the retention it must keep.
        ("GET", "/v1/event-sets/orders") => ok_json(json!({"name":"orders",
            "retention":{"max_age_hours":72,"max_bytes":null}})),
        _ => ok_json(json!({"name": "echo", "request": r.json()})),
    });
    let dir = tempfile::tempdir().unwrap();
    let pattern_file = dir.path().join("p.json");
    std::fs::write(
        &pattern_file,
        "{\n  \"source\": [\"cvm.cloud.tencent\"]\n}\n",
    )
    .unwrap();
    let at_file = format!("@{}", pattern_file.display());
    let s = server.url.as_str();
    let cases: Vec<(Vec<&str>, &str, &str, Option<Value>)> = vec![
        (
            vec![
                "sets",
                "create",
                "orders",
                "--description",
                "shop",
                "--max-age-hours",
                "72",
            ],
            "POST",
            "/v1/event-sets",
            Some(json!({"name":"orders","description":"shop","retention":{"max_age_hours":72}})),
        ),
        (
            vec!["sets", "update", "orders", "--max-bytes", "1000"],
            "PATCH",
            "/v1/event-sets/orders",
            Some(json!({"retention":{"max_age_hours":72,"max_bytes":1000}})),
        ),
        (
            vec!["sets", "delete", "orders"],
            "DELETE",
            "/v1/event-sets/orders",
            None,
        ),
        (
            vec![
                "rules",
                "create",
                "default",
                "cvm",
                "--pattern",
                &at_file,
                "--disabled",
            ],
            "POST",
            "/v1/event-sets/default/rules",
            Some(json!({"name":"cvm","pattern":{"source":["cvm.cloud.tencent"]},"enabled":false})),
        ),
        (
            vec![
                "rules",
                "update",
                "default",
                "cvm",
                "--enable",
                "--description",
                "d",
            ],
            "PATCH",
            "/v1/event-sets/default/rules/cvm",
            Some(json!({"enabled":true,"description":"d"})),
        ),
        (
            vec!["rules", "update", "default", "cvm", "--no-transform"],
            "PATCH",
            "/v1/event-sets/default/rules/cvm",
            Some(json!({"transform":null})),
        ),
        (
            vec![
                "targets",
                "create",
                "default",
                "cvm",
                "hook",
                "--url",
                "http://127.0.0.1:9/h",
            ],
            "POST",
            "/v1/event-sets/default/rules/cvm/targets",
            Some(json!({"name":"hook","type":"http","http":{"url":"http://127.0.0.1:9/h"}})),
        ),
        (
            vec![
                "targets",
                "update",
                "default",
                "cvm",
                "hook",
                "--patch",
                r#"{"retry":{"max_attempts":3}}"#,
            ],
            "PATCH",
            "/v1/event-sets/default/rules/cvm/targets/hook",
            Some(json!({"retry":{"max_attempts":3}})),
        ),
        (
            vec![
                "targets",
                "seek",
                "default",
                "cvm",
                "hook",
                "--time",
                "2023-11-14T22:13:20.123Z",
            ],
            "POST",
            "/v1/event-sets/default/rules/cvm/targets/hook/seek",
            Some(json!({"time":1_700_000_000_123_i64})),
        ),
        (
            vec!["targets", "seek", "default", "cvm", "hook", "--offset", "0"],
            "POST",
            "/v1/event-sets/default/rules/cvm/targets/hook/seek",
            Some(json!({"offset":0})),
        ),
        (
            vec![
                "dead-letters",
                "redrive",
                "default",
                "cvm",
                "hook",
                "--offsets",
                "3,5",
            ],
            "POST",
            "/v1/event-sets/default/rules/cvm/targets/hook/dead-letters/redrive",
            Some(json!({"offsets":[3,5]})),
        ),
        (
            vec!["dead-letters", "redrive", "default", "cvm", "hook"],
            "POST",
            "/v1/event-sets/default/rules/cvm/targets/hook/dead-letters/redrive",
            Some(json!({})),
        ),
    ];
    for (args, method, path, body) in &cases {
        let mut all = args.clone();
        all.extend(["--server", s]);
        let out = run(eventbus(&all));
        assert!(out.status.success(), "{args:?}: stderr: {}", stderr(&out));
        let reqs = server.requests();
        let last = reqs.last().unwrap();
        assert_eq!(
            (last.method.as_str(), last.path.as_str()),
            (*method, *path),
            "{args:?}"
        );
        match body {
            Some(b) => assert_eq!(&last.json(), b, "{args:?}"),
            None => assert!(last.body.is_empty(), "{args:?}"),
        }
    }
    // One request per command, plus the read of `sets update`.
    assert_eq!(server.requests().len(), cases.len() + 1);

    // Table-mode answers of the cursor and redrive calls.
    let out = run(eventbus(&[
        "targets", "seek", "default", "cvm", "hook", "--offset", "42", "--server", s,
    ]));
    assert!(
        stdout(&out).contains("cursor now at offset 42"),
        "{}",
        stdout(&out)
    );
    let out = run(eventbus(&[
        "dead-letters",
        "redrive",
        "default",
        "cvm",
        "hook",
        "--server",
        s,
    ]));
    assert!(
        stdout(&out).contains("2 dead letter(s) redriven"),
        "{}",
        stdout(&out)
    );
    // JSON mode prints the server's answer.
    let out = run(eventbus(&[
        "targets", "seek", "default", "cvm", "hook", "--offset", "42", "--output", "json",
        "--server", s,
    ]));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!({"cursor":42})
    );
}

#[test]
fn bad_json_argument_fails_before_any_request() {
    let server = FakeServer::start(|_| ok_json(json!({})));
    let out = run(eventbus(&[
        "rules",
        "create",
        "s",
        "r",
        "--pattern",
        "{source:",
        "--server",
        &server.url,
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--pattern: the argument is not valid JSON"),
        "{}",
        stderr(&out)
    );
    assert!(server.requests().is_empty());
}

#[test]
fn dead_letters_list_pages_until_the_limit_and_says_how_to_continue() {
    let server = FakeServer::start(|r| {
        let q = r.query_pairs();
        let after = q.iter().find(|(k, _)| k == "after").map(|(_, v)| v.clone());
        let dl = |o: u64| {
            json!({"offset":o,"ingest_time_ms":0,"attempts":10,"last_error":"HTTP 503",
                   "dead_lettered_ms":1_700_000_000_000_i64,
                   "event":{"id":format!("e{o}"),"type":"order.created"}})
        };
        match after.as_deref() {
            None => ok_json(json!({"dead_letters":[dl(0), dl(1)], "after": 1})),
            Some("1") => ok_json(json!({"dead_letters":[dl(2)], "after": 2})),
            other => panic!("unexpected after {other:?}"),
        }
    });
    let out = run(eventbus(&[
        "dead-letters",
        "list",
        "s",
        "r",
        "t",
        "--limit",
        "3",
        "--output",
        "json",
        "--server",
        &server.url,
    ]));
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let offsets: Vec<Value> = json_lines(&out)
        .iter()
        .map(|d| d["offset"].clone())
        .collect();
    assert_eq!(offsets, [json!(0), json!(1), json!(2)]);
    assert!(stderr(&out).contains("--after 2"), "{}", stderr(&out));
    let queries: Vec<Vec<(String, String)>> = server
        .requests()
        .iter()
        .map(Recorded::query_pairs)
        .collect();
    assert_eq!(
        queries,
        vec![
            vec![("limit".to_owned(), "3".to_owned())],
            vec![
                ("after".to_owned(), "1".to_owned()),
                ("limit".to_owned(), "1".to_owned())
            ],
        ]
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.path == "/v1/event-sets/s/rules/r/targets/t/dead-letters")
    );
}

#[test]
fn targets_list_table_shows_delivery_status_read_per_target() {
    // The list answer has no `delivery`; each target read has it (as the real server does).
    let server = FakeServer::start(|r| match r.path.as_str() {
        "/v1/event-sets/s/rules/r/targets" => ok_json(json!({"targets":[
            {"name":"hook","type":"http","http":{"url":"u"}},
            {"name":"gone","type":"http","http":{"url":"u"}}]})),
        "/v1/event-sets/s/rules/r/targets/hook" => ok_json(json!({"name":"hook","type":"http",
            "delivery":{"state":"running","cursor":7,"lag":2,"in_flight":1,"delivered":5,
                        "retrying":1,"dead_lettered":3,"last_error":"connection refused"}})),
        _ => Reply(
            404,
            "application/json",
            r#"{"error":{"code":"ResourceNotFound.Target","message":"deleted meanwhile"}}"#.into(),
        ),
    });
    let out = run(eventbus(&[
        "targets",
        "list",
        "s",
        "r",
        "--server",
        &server.url,
    ]));
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "STATE",
            "CURSOR",
            "LAG",
            "RETRYING",
            "DEAD_LETTERED",
            "LAST_ERROR"
        ]
    );
    assert_eq!(
        rows[1],
        [
            "hook",
            "http",
            "running",
            "7",
            "2",
            "1",
            "3",
            "connection",
            "refused"
        ]
    );
    assert_eq!(rows[2], ["gone", "http", "-", "-", "-", "-", "-", "-"]);
    assert_eq!(server.requests().len(), 3);

    // JSON output is the list answer as it came: one request, one line per target.
    let out = run(eventbus(&[
        "targets",
        "list",
        "s",
        "r",
        "--output",
        "json",
        "--server",
        &server.url,
    ]));
    assert_eq!(json_lines(&out).len(), 2);
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn connection_refused_names_the_server_and_suggests_serve() {
    // A port that was free a moment ago and has no listener now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = eventbus(&["sets", "list"]);
    cmd.env("EVENTBUS_SERVER", &url)
        .env("EVENTBUS_TOKEN", TOKEN);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("eventbus serve"),
        "{err}"
    );
    assert!(!err.contains(TOKEN));
}

#[test]
fn help_does_not_show_the_token_from_the_environment() {
    let mut cmd = eventbus(&["put", "--help"]);
    cmd.env("EVENTBUS_TOKEN", TOKEN);
    let out = run(cmd);
    assert!(out.status.success());
    assert!(stdout(&out).contains("--token"));
    assert!(!stdout(&out).contains(TOKEN));
}

#[test]
fn tail_prints_the_data_of_each_sse_message_and_exits_when_the_stream_ends() {
    let server = FakeServer::start(|_| {
        Reply(
            200,
            "text/event-stream",
            ": connected\n\nid: 5\ndata: {\"id\":\"a\",\"data\":{\"n\":1}}\n\n: keep-alive\n\n\
             id: 6\ndata: {\"id\":\"b\"}\n\n"
                .into(),
        )
    });
    let mut cmd = eventbus(&[
        "tail",
        "orders",
        "--pattern",
        r#"{"source": ["a b&c"]}"#,
        "--from",
        "5",
        "--server",
        &server.url,
    ]);
    cmd.env("EVENTBUS_TOKEN", TOKEN);
    let out = run(cmd);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"id\":\"a\",\"data\":{\"n\":1}}\n{\"id\":\"b\"}\n"
    );
    let reqs = server.requests();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/v1/event-sets/orders/tail")
    );
    assert_eq!(
        reqs[0].query_pairs(),
        [
            ("pattern".to_owned(), r#"{"source":["a b&c"]}"#.to_owned()),
            ("from".to_owned(), "5".to_owned())
        ]
    );
    assert_eq!(reqs[0].header("accept"), Some("text/event-stream"));
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[test]
fn tail_prints_each_event_while_the_stream_is_still_open() {
    // A hand-written HTTP/1.1 server, so the test controls when the stream ends: it sends one
    // event, then holds the stream open until the test has read that event's line.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before sending its request");
            head.extend_from_slice(&buf[..n]);
        }
        sock.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
              : hello\n\nid: 0\ndata: {\"first\":true}\n\n",
        )
        .await
        .unwrap();
        release_rx.await.unwrap();
        sock.write_all(b"id: 1\ndata: {\"second\":true}\n\n")
            .await
            .unwrap();
        sock.shutdown().await.unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });

    let mut child = eventbus(&["tail", "orders", "--server", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Read on a thread so that a CLI that never flushes fails the test instead of hanging it.
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            if line_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let first = line_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("first event line");
    assert_eq!(first, r#"{"first":true}"#);
    release_tx.send(()).unwrap();
    let second = line_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("second event line");
    assert_eq!(second, r#"{"second":true}"#);
    let status = child.wait().unwrap();
    assert!(status.success());
    let head = rt.block_on(server).unwrap();
    assert!(
        head.starts_with("GET /v1/event-sets/orders/tail HTTP/1.1\r\n"),
        "{head}"
    );
}

#[test]
fn tail_reports_an_error_answer_before_the_stream() {
    let server = FakeServer::start(|_| {
        Reply(
            400,
            "application/json",
            json!({"error":{"code":"InvalidParameterValue.EventPattern","message":"unknown operator",
                            "path":"$.source[0].nope"}})
                .to_string(),
        )
    });
    let out = run(eventbus(&[
        "tail",
        "orders",
        "--pattern",
        r#"{"source":[{"nope":1}]}"#,
        "--server",
        &server.url,
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: InvalidParameterValue.EventPattern: unknown operator (at $.source[0].nope)\n"
    );
}

/// A fake `GET /v1/event-sets/orders/events` serving three pages (two events, one, none
/// left) chained by `after` tokens, and `GET …/events/{id}`: `o-1` exists, anything else is
/// a 404 as the real server answers it.
fn events_server() -> FakeServer {
    FakeServer::start(|r| {
        let after = r
            .query_pairs()
            .into_iter()
            .find(|(k, _)| k == "after")
            .map(|(_, v)| v);
        let ev = |id: &str, time: i64| {
            json!({"specversion":"1.0","id":id,"source":"shop","type":"paid","time":time,
                   "data":{"id":id}})
        };
        match (r.path.as_str(), after.as_deref()) {
            ("/v1/event-sets/orders/events", None) => ok_json(json!({
                "events": [ev("o-1", 1_714_521_600_000), ev("o-2", 1_714_521_600_001)],
                "after": "tok-1"})),
            ("/v1/event-sets/orders/events", Some("tok-1")) => {
                ok_json(json!({"events": [ev("o-3", 1_714_521_600_002)], "after": "tok-2"}))
            }
            ("/v1/event-sets/orders/events", Some("tok-2")) => {
                ok_json(json!({"events": [], "after": null}))
            }
            ("/v1/event-sets/orders/events/o-1", None) => ok_json(ev("o-1", 1_714_521_600_000)),
            _ => Reply(
                404,
                "application/json",
                json!({"error":{"code":"ResourceNotFound.Event",
                                "message":"no stored event with id `o-9` in event set `orders`"}})
                .to_string(),
            ),
        }
    })
}

#[test]
fn events_query_sends_the_range_and_pattern_and_all_follows_every_page() {
    let server = events_server();
    let out = run(eventbus(&[
        "events",
        "query",
        "orders",
        "--start",
        "2024-05-01T00:00:00Z",
        "--end",
        "1714607999999",
        "--pattern",
        r#"{"source": ["shop"]}"#,
        "--limit",
        "2",
        "--all",
        "--output",
        "json",
        "--server",
        &server.url,
        "--token",
        TOKEN,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<Value> = json_lines(&out).iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids, vec![json!("o-1"), json!("o-2"), json!("o-3")]);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let pairs = |r: &Recorded| r.query_pairs();
    let own = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let base = [
        ("start", "1714521600000"),
        ("end", "1714607999999"),
        ("pattern", r#"{"source":["shop"]}"#),
    ];
    assert_eq!(
        pairs(&reqs[0]),
        own(&[base[0], base[1], base[2], ("limit", "2")])
    );
    assert_eq!(
        pairs(&reqs[1]),
        own(&[
            base[0],
            base[1],
            base[2],
            ("after", "tok-1"),
            ("limit", "2")
        ])
    );
    assert_eq!(
        pairs(&reqs[2]),
        own(&[
            base[0],
            base[1],
            base[2],
            ("after", "tok-2"),
            ("limit", "2")
        ])
    );
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/v1/event-sets/orders/events")
        );
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[test]
fn events_query_without_all_prints_one_page_as_a_table_and_how_to_continue() {
    let server = events_server();
    let out = run(eventbus(&[
        "events",
        "query",
        "orders",
        "--server",
        &server.url,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "TIME                      ID   SOURCE  TYPE  SUBJECT\n\
         2024-05-01T00:00:00.000Z  o-1  shop    paid  -\n\
         2024-05-01T00:00:00.001Z  o-2  shop    paid  -\n"
    );
    assert!(stderr(&out).contains("--after tok-1"), "{}", stderr(&out));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].query.as_deref(), Some("limit=100"));

    let out = run(eventbus(&[
        "events",
        "query",
        "orders",
        "--start",
        "yesterday",
        "--server",
        &server.url,
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--start \"yesterday\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.requests().len(), 1, "nothing sent for a bad --start");
}

#[test]
fn events_get_fetches_one_event_by_id_and_source_and_reports_a_404() {
    let server = events_server();
    let out = run(eventbus(&[
        "events",
        "get",
        "orders",
        "o-1",
        "--output",
        "json",
        "--server",
        &server.url,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["id"], "o-1");
    let out = run(eventbus(&[
        "events",
        "get",
        "orders",
        "o-9",
        "--source",
        "shop eu",
        "--server",
        &server.url,
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: ResourceNotFound.Event: no stored event with id `o-9` in event set `orders`\n"
    );
    let reqs = server.requests();
    assert_eq!(reqs[1].path, "/v1/event-sets/orders/events/o-9");
    assert_eq!(
        reqs[1].query_pairs(),
        vec![("source".to_string(), "shop eu".to_string())]
    );
}
