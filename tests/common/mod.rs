//! A real local HTTP receiver for delivery tests: an axum server on 127.0.0.1 that records
//! every request and answers as the test's policy says (per path).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    /// The CloudEvents in the body (one object or a batch array), structured mode.
    pub fn events(&self) -> Vec<Value> {
        match serde_json::from_slice::<Value>(&self.body).expect("JSON body") {
            Value::Array(a) => a,
            v => vec![v],
        }
    }
    pub fn ids(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_string())
            .collect()
    }
}

/// How the receiver answers: status, optional Retry-After seconds, optional delay.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub delay: Duration,
}

impl Answer {
    pub fn ok() -> Answer {
        Answer::status(200)
    }
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }
}

/// Decides the answer from the request and how many requests this path had before it.
pub type Policy = Arc<dyn Fn(&Received, usize) -> Answer + Send + Sync>;

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Requests answered with 2xx.
    accepted: Mutex<Vec<Received>>,
    policies: Mutex<HashMap<String, Policy>>,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port (every path answers 200 until told otherwise).
    pub async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/{*path}", axum::routing::post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Sets how `path` answers.
    pub fn set_policy(
        &self,
        path: &str,
        p: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static,
    ) {
        self.shared
            .policies
            .lock()
            .unwrap()
            .insert(format!("/{}", path.trim_start_matches('/')), Arc::new(p));
    }

    /// Every request to `path`, in arrival order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        on_path(&self.shared.received, path)
    }

    /// Requests to `path` answered with success, in arrival order.
    pub fn accepted(&self, path: &str) -> Vec<Received> {
        on_path(&self.shared.accepted, path)
    }

    /// Ids of the events accepted on `path`, in arrival order (with repeats).
    pub fn accepted_ids(&self, path: &str) -> Vec<String> {
        self.accepted(path).iter().flat_map(|r| r.ids()).collect()
    }

    /// Waits until `cond` holds (checked every 10 ms), failing the test after `secs`.
    pub async fn wait_until(&self, secs: u64, what: &str, mut cond: impl FnMut(&Receiver) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The requests of `list` to `path` (with or without its leading slash).
fn on_path(list: &Mutex<Vec<Received>>, path: &str) -> Vec<Received> {
    let p = format!("/{}", path.trim_start_matches('/'));
    list.lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == p)
        .cloned()
        .collect()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        path: format!("/{path}"),
        headers,
        body,
        at: Instant::now(),
    };
    let (policy, n) = {
        let mut all = shared.received.lock().unwrap();
        let n = all.iter().filter(|x| x.path == r.path).count();
        all.push(r.clone());
        (shared.policies.lock().unwrap().get(&r.path).cloned(), n)
    };
    let answer = policy.map_or(Answer::ok(), |p| p(&r, n));
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let status = StatusCode::from_u16(answer.status).unwrap();
    if status.is_success() {
        shared.accepted.lock().unwrap().push(r);
    }
    let mut resp = (status, "").into_response();
    if let Some(s) = answer.retry_after {
        resp.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    resp
}

/// The binding's stored dead letters once there are `n` of them (failing the test after 15 s).
/// A binding's `dead_lettered` counter moves when its worker gives an event up; the dead letter
/// itself is stored by the next commit, so a test waits for both.
pub async fn wait_dead_letters(
    engine: &eventbus::delivery::Engine,
    id: &eventbus::catalog::BindingId,
    n: usize,
) -> Vec<eventbus::catalog::DeadLetter> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let dl = engine.dead_letters(id, None, 1000).await.unwrap();
        if dl.len() >= n {
            return dl;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} stored dead letters: {dl:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `eventbus serve` (the real binary) on a free loopback port, over `data`, with an optional
/// config file; killed if a test fails before it is stopped.
pub struct Server {
    child: Option<std::process::Child>,
    pub base: String,
    stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Server {
    pub fn start(data: &std::path::Path, config: Option<&std::path::Path>) -> Server {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("EVENTBUS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd.spawn().expect("start eventbus serve");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = stdout.next().expect("a first line").unwrap();
        let base = first
            .strip_prefix("eventbus: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        Server {
            child: Some(child),
            base,
            stdout,
        }
    }

    /// SIGTERM, then the exit status and the rest of stdout.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        let rest = self.stdout.by_ref().map(|l| l.unwrap()).collect();
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Creates rule `name` with `pattern` (enabled, no transform) on `set`.
pub fn create_rule(bus: &eventbus::bus::EventBus, set: &str, name: &str, pattern: Value) {
    bus.catalog()
        .create_rule(
            set,
            eventbus::catalog::RuleSpec {
                name: name.into(),
                description: String::new(),
                pattern,
                enabled: true,
                transform: None,
            },
        )
        .unwrap();
}

/// Starts replay `name` of every event stored in `set` so far, to all of the set's rules.
pub async fn replay_everything(engine: &eventbus::delivery::Engine, set: &str, name: &str) {
    engine
        .create_replay(
            set,
            eventbus::delivery::ReplayRequest {
                name: name.into(),
                start_ms: 0,
                end_ms: eventbus::config::now_ms() + 1,
                rules: None,
            },
        )
        .await
        .unwrap();
}

/// The binding's delivery status once `cond` holds (checked every 10 ms), failing the test
/// after `secs` with `what` and the last status.
pub async fn wait_status(
    engine: &eventbus::delivery::Engine,
    id: &eventbus::catalog::BindingId,
    secs: u64,
    what: &str,
    cond: impl Fn(&eventbus::delivery::BindingStatus) -> bool,
) -> eventbus::delivery::BindingStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = engine.status(id).await.unwrap();
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
