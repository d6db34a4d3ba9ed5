//! `eventbus bench append --mode http` and `--mode http-batch`: appends through the HTTP API
//! of a real `eventbus serve`, as users run it.
//!
//! The bench starts the server as a child process (this same executable, `serve` on
//! 127.0.0.1 with a free port and a fresh data directory), so the server's CPU is counted
//! apart from the load generator's (from `/proc/<pid>/stat`, as `tools/peers` does for Redis
//! and NATS). It creates the event set `bench`, then P producers, each with its own HTTP/1.1
//! keep-alive connection, loop: POST `/v1/event-sets/bench/events`, wait for the 200, next.
//! `--mode http` sends one CloudEvent object per request, `--mode http-batch` a JSON array of
//! `--batch` events. Latencies are per request. The client is a bare HTTP/1.1 writer and
//! reader per producer ([`Conn`], in the style of wrk) on a 2-worker runtime, so that on a small
//! machine it takes as little CPU as possible away from the server it measures.
//!
//! The child is stopped (SIGTERM, SIGKILL after 10 s) and its directory removed at the end,
//! also when the run fails; `PR_SET_PDEATHSIG` stops it if the bench itself is killed.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{AppendArgs, round3, sample_event_from};
use crate::config::PersistPolicy;

/// The event set the bench creates and appends to.
const SET: &str = "bench";
/// What `eventbus serve` prints on stdout once it accepts connections, before the address.
const LISTENING_PREFIX: &str = "eventbus: listening on http://";
/// How long the server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to stop after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Share of the requests sent before the clock starts (not counted): fills the connections'
/// buffers, the allocators and the server's caches, as in a running system.
const WARMUP_FRACTION: f64 = 0.02;
/// Source of the bench's events (custom event sets refuse cloud-service sources).
const SOURCE: &str = "bench.app";
/// Event ids are `bench-` and 12 digits (the shape of [`sample_event_from`]'s), so at most
/// this many events per run.
const MAX_EVENTS: u64 = 1_000_000_000_000;

/// What one run sends.
#[derive(Debug, Clone, Copy)]
struct Plan {
    producers: usize,
    /// Events per request.
    batch: usize,
    /// `false`: one event object per request (`--mode http`); `true`: a JSON array.
    array: bool,
    /// Requests counted in the result.
    requests: u64,
    /// Requests before the clock starts.
    warmup: u64,
    payload_bytes: usize,
}

impl Plan {
    /// Requests of producer `p` in a run of `total` requests: an even split, the first
    /// `total % producers` producers one more.
    fn share(&self, total: u64, p: usize) -> u64 {
        let n = self.producers as u64;
        total / n + u64::from((p as u64) < total % n)
    }
}

/// Runs `bench append --mode http` (`array` false) or `--mode http-batch` (`array` true).
pub fn run(a: AppendArgs, array: bool) -> anyhow::Result<ExitCode> {
    let batch = match (array, a.batch) {
        (false, None | Some(1)) => 1,
        (false, Some(b)) => {
            bail!("--mode http sends one event per request; use --mode http-batch --batch {b}")
        }
        (true, b) => b.unwrap_or(10),
    };
    if a.producers == 0 || batch == 0 || a.events == 0 {
        bail!("--producers, --batch and --events must be at least 1");
    }
    let requests = a.events.div_ceil(batch as u64);
    let warmup = ((requests as f64 * WARMUP_FRACTION).ceil() as u64).max(a.producers as u64);
    if (requests + warmup) * batch as u64 >= MAX_EVENTS {
        bail!("--events must be below {MAX_EVENTS}");
    }
    let plan = Plan {
        producers: a.producers,
        batch,
        array,
        requests,
        warmup,
        payload_bytes: a.payload_bytes,
    };
    let mode = if array { "http-batch" } else { "http" };
    let threads = a.threads.unwrap_or(2).max(1);

    let tmp = super::bench_dir(a.data_dir.as_deref(), "eventbus-bench-http-")?;
    let data_dir = tmp.path().join("data");
    let exe = std::env::current_exe().context("locating the eventbus executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0", "--persist"])
        .arg(server_persist_arg(a.persist));
    let server = ServerProcess::start(cmd, tmp, START_TIMEOUT)?;
    eprintln!(
        "bench append --mode {mode}: {} events in {requests} requests of {batch}, {} producers \
         (one connection each), {} B, persist {:?}; server pid {} on {}, data in {}",
        requests * batch as u64,
        a.producers,
        a.payload_bytes,
        a.persist,
        server.pid(),
        server.addr,
        data_dir.display()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let dedup = create_set(server.addr, a.dedup_window_ms).await?;
        let result = load(server.addr, plan, Some(server.pid())).await?;
        let figures = log_figures(server.addr).await;
        anyhow::Ok((dedup, result, figures))
    })?;
    let (dedup_window_ms, result, figures) = result;
    let server_rss = server.max_rss_mib();
    drop(rt);
    drop(server);

    let events = plan.requests * plan.batch as u64;
    let s = result.seconds;
    let line = json!({
        "workload": "append",
        "mode": mode,
        "durable": matches!(a.persist, PersistPolicy::Always),
        "persist": format!("{:?}", a.persist),
        "events": events,
        "requests": plan.requests,
        "batch": plan.batch,
        "producers": plan.producers,
        "connections": plan.producers,
        "client_threads": threads,
        "payload_bytes": result.payload_bytes,
        "body_bytes": result.body_bytes,
        "seconds": round3(s),
        "events_per_s": (events as f64 / s).round(),
        "requests_per_s": (plan.requests as f64 / s).round(),
        "mb_per_s": round3((plan.requests * result.body_bytes as u64) as f64 / s / 1e6),
        "p50_us": result.hist.value_at_quantile(0.50),
        "p99_us": result.hist.value_at_quantile(0.99),
        "p999_us": result.hist.value_at_quantile(0.999),
        "max_us": result.hist.max(),
        "dedup_window_ms": dedup_window_ms,
        "warmup_requests": plan.warmup,
        "failed_requests": result.failed_requests,
        "failed_events": result.failed_events,
        "server_cpu_s": result.server_cpu_s.map(round2),
        "bench_cpu_s": round2(result.bench_cpu_s),
        "server_cpu_us_per_event": result.server_cpu_s.map(|c| round3(c * 1e6 / events as f64)),
        "commits": figures.as_ref().map(|f| f.commits),
        "events_per_commit": figures
            .as_ref()
            .map(|f| round3(result.accepted as f64 / f.commits.max(1) as f64)),
        "fsync_avg_us": figures.as_ref().map(|f| (f.fsync_seconds * 1e6 / f.fsyncs.max(1) as f64).round()),
        "server_max_rss_mib": server_rss,
        "max_rss_mib": super::max_rss_mib(),
    });
    println!("{line}");
    if let Some(e) = &result.first_error {
        eprintln!(
            "bench append --mode {mode}: {} of {} requests failed ({} events); first: {e}",
            result.failed_requests,
            plan.requests + plan.warmup,
            result.failed_events
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `serve --persist` syntax for a policy.
fn server_persist_arg(p: PersistPolicy) -> String {
    match p {
        PersistPolicy::Always => "always".into(),
        PersistPolicy::Never => "never".into(),
        PersistPolicy::IntervalMs(ms) => format!("interval:{ms}"),
    }
}

/// The bench set's group-commit figures from the server's `/metrics`, for the whole run
/// (warm-up included): how well concurrent requests share an fsync.
#[derive(Debug, PartialEq)]
struct LogFigures {
    commits: u64,
    fsyncs: u64,
    fsync_seconds: f64,
}

/// Reads [`LogFigures`] from `GET /metrics`; `None` (with a note on stderr) when they are not
/// there, since they only explain the result.
async fn log_figures(addr: SocketAddr) -> Option<LogFigures> {
    let text = async {
        let mut conn = Conn::open(addr).await?;
        let (status, body) = conn.send(Method::GET, "/metrics", &[]).await?;
        if status != StatusCode::OK {
            bail!("HTTP {status}");
        }
        anyhow::Ok(String::from_utf8_lossy(&body).into_owned())
    }
    .await;
    let figures = text.ok().and_then(|t| parse_log_figures(&t));
    if figures.is_none() {
        eprintln!("note: no group-commit figures for `{SET}` in the server's /metrics");
    }
    figures
}

/// The `set="bench"` samples of `eventbus_log_group_commits_total` and
/// `eventbus_log_fsync_latency_seconds_{sum,count}` in Prometheus text.
fn parse_log_figures(text: &str) -> Option<LogFigures> {
    let sample = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once('}')?;
            labels
                .split(',')
                .any(|kv| kv == format!("set=\"{SET}\""))
                .then(|| value.trim().parse::<f64>().ok())?
        })
    };
    Some(LogFigures {
        commits: sample("eventbus_log_group_commits_total")? as u64,
        fsyncs: sample("eventbus_log_fsync_latency_seconds_count")? as u64,
        fsync_seconds: sample("eventbus_log_fsync_latency_seconds_sum")?,
    })
}

/// The server address in `eventbus serve`'s listening line
/// (`eventbus: listening on http://127.0.0.1:PORT`, possibly followed by more text).
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix(LISTENING_PREFIX)?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A server child process and its directory: stopping it on drop (SIGTERM, then SIGKILL after
/// [`STOP_TIMEOUT`]) and only then removing the directory, on success and on error alike.
struct ChildGuard {
    child: Child,
    /// Holds the server's data directory and its stderr log; removed after the child stopped
    /// (fields drop after [`Drop::drop`]).
    dir: tempfile::TempDir,
}

impl ChildGuard {
    fn stderr_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("server.stderr")
    }

    /// The last few KiB of the server's stderr, for error messages.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read(Self::stderr_path(&self.dir)).unwrap_or_default();
        let from = text.len().saturating_sub(4096);
        String::from_utf8_lossy(&text[from..]).into_owned()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let pid = self.child.id();
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!("server pid {pid} had already exited ({status})");
            return;
        }
        // SAFETY: kill only sends a signal to the PID of our own, not yet reaped, child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!(
                            "server pid {pid} exited with {status}; its stderr:\n{}",
                            self.stderr_tail()
                        );
                    }
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("server pid {pid} did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed");
    }
}

/// A running `eventbus serve` child that printed its address.
struct ServerProcess {
    guard: ChildGuard,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Spawns `cmd` (stdout piped, stderr to a file in `dir`) and waits up to `timeout` for
    /// the listening line on its stdout. A thread keeps draining stdout afterwards (echoing it
    /// to stderr), so the server never blocks on a full pipe.
    fn start(mut cmd: Command, dir: tempfile::TempDir, timeout: Duration) -> anyhow::Result<Self> {
        let stderr_path = ChildGuard::stderr_path(&dir);
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // SAFETY: prctl is async-signal-safe, and nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the server: {cmd:?}"))?;
        let stdout = child.stdout.take();
        let mut guard = ChildGuard { child, dir };
        let stdout = stdout.context("the server's stdout was not piped")?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("bench-server-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match parse_listening(&line) {
                        Some(addr) => {
                            let _ = tx.send(addr);
                        }
                        None => eprintln!("server: {line}"),
                    }
                }
            })
            .context("spawning the server's stdout reader")?;
        match rx.recv_timeout(timeout) {
            Ok(addr) => Ok(ServerProcess { guard, addr }),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "the server printed no `{LISTENING_PREFIX}…` line within {timeout:?}; its stderr:\n{}",
                guard.stderr_tail()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stdout closed: the server exited (or is exiting) before it listened.
                let deadline = Instant::now() + Duration::from_secs(2);
                let mut status = None;
                while status.is_none() && Instant::now() < deadline {
                    status = guard.child.try_wait().ok().flatten();
                    std::thread::sleep(Duration::from_millis(10));
                }
                let status = status.map_or("still running".into(), |s| s.to_string());
                bail!(
                    "the server closed its stdout before listening ({status}); its stderr:\n{}",
                    guard.stderr_tail()
                )
            }
        }
    }

    fn pid(&self) -> u32 {
        self.guard.child.id()
    }

    /// The server's peak resident set size (VmHWM), in MiB.
    fn max_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(round3(kib / 1024.0))
    }
}

/// User+system CPU seconds of process `pid` so far, with its reaped children (fields 14-17
/// of `/proc/<pid>/stat`).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; count after it.
    let (_, rest) = stat.rsplit_once(')')?;
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// User+system CPU seconds of this process so far (all its threads).
fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Request bodies of one producer: the JSON of `batch` sample events, serialised once; each
/// request only rewrites the 12 id digits of every event in place (ids stay unique across the
/// run, and the client spends no CPU on JSON).
struct BodyTemplate {
    bytes: Vec<u8>,
    /// Where each event's 12 id digits start in `bytes`.
    digits: Vec<usize>,
}

impl BodyTemplate {
    /// `batch` events of `payload_bytes` each (as [`sample_event_from`] makes them), as one object
    /// (`array` false, `batch` 1) or a JSON array.
    fn new(payload_bytes: usize, batch: usize, array: bool) -> anyhow::Result<Self> {
        let event = serde_json::to_vec(&sample_event_from(0, payload_bytes, SOURCE).to_json())?;
        let id = br#""bench-000000000000""#;
        let at = event
            .windows(id.len())
            .position(|w| w == id)
            .context("the sample event has no `bench-` id")?
            + r#""bench-"#.len();
        if !array {
            if batch != 1 {
                bail!("one event per request, not {batch}");
            }
            return Ok(BodyTemplate {
                bytes: event,
                digits: vec![at],
            });
        }
        let mut bytes = Vec::with_capacity(batch * (event.len() + 1) + 1);
        let mut digits = Vec::with_capacity(batch);
        bytes.push(b'[');
        for k in 0..batch {
            if k > 0 {
                bytes.push(b',');
            }
            digits.push(bytes.len() + at);
            bytes.extend_from_slice(&event);
        }
        bytes.push(b']');
        Ok(BodyTemplate { bytes, digits })
    }

    /// The body whose events have ids `bench-{first:012}`, `bench-{first+1:012}`, ….
    fn render(&mut self, first: u64) -> &[u8] {
        for (k, &at) in self.digits.iter().enumerate() {
            let mut n = first + k as u64;
            for d in self.bytes[at..at + 12].iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        &self.bytes
    }
}

/// One producer's HTTP/1.1 keep-alive connection: a bare request writer and response reader
/// in the producer's own task, as load generators such as wrk do. Each request is one
/// `write` of head and body from a reused buffer; each response is read until its
/// `Content-Length` is complete. No connection task, channel or header map per request, so the
/// load generator takes as little CPU as possible from the server on the same machine.
struct Conn {
    stream: tokio::net::TcpStream,
    /// `Host` header value.
    host: String,
    /// The request being written (head, then body).
    out: Vec<u8>,
    /// Bytes read from the socket and not yet consumed.
    buf: Vec<u8>,
}

/// Longest response head the client accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

impl Conn {
    /// Connects to `addr` (TCP_NODELAY: requests are small and each waits for its answer).
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            host: addr.to_string(),
            out: Vec::with_capacity(4096),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one JSON request and reads the whole response.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        use std::io::Write as _;
        use tokio::io::AsyncWriteExt as _;
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            self.host,
            body.len()
        )?;
        self.out.extend_from_slice(body);
        self.stream
            .write_all(&self.out)
            .await
            .context("request to the server")?;
        self.read_response()
            .await
            .context("response from the server")
    }

    /// Reads one response: the head (parsed by httparse), then `Content-Length` bytes of body.
    async fn read_response(&mut self) -> anyhow::Result<(StatusCode, Bytes)> {
        let (status, head_len, body_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf)? {
                let status = StatusCode::from_u16(resp.code.context("no status code")?)?;
                let length = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .context("the response has no Content-Length (the bench client needs one)")?;
                let length: usize = std::str::from_utf8(length.value)?.trim().parse()?;
                break (status, n, length);
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                bail!("response head longer than {MAX_HEAD_BYTES} bytes");
            }
            self.fill().await?;
        };
        while self.buf.len() < head_len + body_len {
            self.fill().await?;
        }
        let body = Bytes::copy_from_slice(&self.buf[head_len..head_len + body_len]);
        self.buf.drain(..head_len + body_len);
        Ok((status, body))
    }

    /// Reads more bytes into `buf`; an error when the server closed the connection.
    async fn fill(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt as _;
        self.buf.reserve(4096);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// Creates the event set `bench` (201 expected), with `dedup_window_ms` when given; returns
/// the set's de-duplication window as the server reports it.
async fn create_set(addr: SocketAddr, dedup_window_ms: Option<u64>) -> anyhow::Result<Option<u64>> {
    let mut conn = Conn::open(addr).await?;
    let mut body = json!({ "name": SET });
    if let Some(ms) = dedup_window_ms {
        body["dedup_window_ms"] = ms.into();
    }
    let body = serde_json::to_vec(&body)?;
    let (status, resp) = conn.send(Method::POST, "/v1/event-sets", &body).await?;
    if status != StatusCode::CREATED {
        bail!(
            "creating the event set `{SET}`: HTTP {status}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    let created: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
    Ok(created["dedup_window_ms"].as_u64())
}

/// The body of a put-events response; only what the bench checks.
#[derive(Debug, Deserialize)]
struct PutResponse {
    entries: Vec<PutEntry>,
    failed: u64,
}

/// One entry: `{"id","offset"}` when accepted, `{"error":…}` when not.
#[derive(Debug, Deserialize)]
struct PutEntry {
    offset: Option<u64>,
}

/// What one put request did.
#[derive(Debug, Default, PartialEq)]
struct Reply {
    accepted: u64,
    failed: u64,
    max_offset: Option<u64>,
    /// Why the request counts as failed, if it does.
    error: Option<String>,
}

/// Reads a put-events response to a request of `batch` events.
fn check_reply(status: StatusCode, body: &[u8], batch: usize) -> Reply {
    let text = || {
        let s = String::from_utf8_lossy(body);
        match s.char_indices().nth(500) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s.into_owned(),
        }
    };
    if status != StatusCode::OK {
        return Reply {
            failed: batch as u64,
            error: Some(format!("HTTP {status}: {}", text())),
            ..Reply::default()
        };
    }
    let resp: PutResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Reply {
                failed: batch as u64,
                error: Some(format!("unreadable response ({e}): {}", text())),
                ..Reply::default()
            };
        }
    };
    let accepted = resp.entries.iter().filter(|e| e.offset.is_some()).count() as u64;
    let max_offset = resp.entries.iter().filter_map(|e| e.offset).max();
    let failed = resp.failed.max(batch as u64 - accepted.min(batch as u64));
    let error = if resp.entries.len() != batch {
        Some(format!(
            "{} entries for {batch} events: {}",
            resp.entries.len(),
            text()
        ))
    } else if failed > 0 {
        Some(format!("{failed} events refused: {}", text()))
    } else {
        None
    };
    Reply {
        accepted,
        failed,
        max_offset,
        error,
    }
}

/// What one producer (or the whole run, merged) saw.
struct Outcome {
    /// Latencies of the counted requests, microseconds.
    hist: Histogram<u64>,
    /// Requests (warm-up included) that failed, and their refused events.
    failed_requests: u64,
    failed_events: u64,
    /// Events acknowledged with an offset, warm-up included.
    accepted: u64,
    max_offset: Option<u64>,
    first_error: Option<String>,
}

impl Outcome {
    fn new() -> anyhow::Result<Self> {
        Ok(Outcome {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            failed_requests: 0,
            failed_events: 0,
            accepted: 0,
            max_offset: None,
            first_error: None,
        })
    }

    fn add_reply(&mut self, r: Reply) {
        self.accepted += r.accepted;
        self.failed_events += r.failed;
        self.max_offset = self.max_offset.max(r.max_offset);
        if let Some(e) = r.error {
            self.failed_requests += 1;
            self.first_error.get_or_insert(e);
        }
    }

    fn merge(&mut self, o: Outcome) -> anyhow::Result<()> {
        self.hist.add(&o.hist)?;
        self.failed_requests += o.failed_requests;
        self.failed_events += o.failed_events;
        self.accepted += o.accepted;
        self.max_offset = self.max_offset.max(o.max_offset);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        Ok(())
    }
}

/// The result of [`load`].
struct LoadResult {
    /// Counted requests' latencies, microseconds.
    hist: Histogram<u64>,
    seconds: f64,
    failed_requests: u64,
    failed_events: u64,
    first_error: Option<String>,
    /// Events acknowledged with an offset, warm-up included.
    accepted: u64,
    /// One event's JSON size and one request body's size, in bytes.
    payload_bytes: usize,
    body_bytes: usize,
    /// CPU seconds during the counted part: the server's (when its PID is known) and ours.
    server_cpu_s: Option<f64>,
    bench_cpu_s: f64,
}

/// Runs the plan against the server at `addr`: warm-up, then the counted requests, with the
/// clock and the CPU marks taken when every producer has finished its warm-up.
async fn load(addr: SocketAddr, plan: Plan, server_pid: Option<u32>) -> anyhow::Result<LoadResult> {
    let uri = format!("/v1/event-sets/{SET}/events");
    let template = BodyTemplate::new(plan.payload_bytes, plan.batch, plan.array)?;
    let body_bytes = template.bytes.len();
    let payload_bytes =
        serde_json::to_vec(&sample_event_from(0, plan.payload_bytes, SOURCE).to_json())?.len();
    let barrier = Arc::new(Barrier::new(plan.producers + 1));
    let mut tasks = JoinSet::new();
    let mut first_request = 0u64;
    for p in 0..plan.producers {
        let mut conn = Conn::open(addr).await?;
        let warmup = plan.share(plan.warmup, p);
        let total = warmup + plan.share(plan.requests, p);
        let start = first_request;
        first_request += total;
        let mut body = BodyTemplate {
            bytes: template.bytes.clone(),
            digits: template.digits.clone(),
        };
        let (barrier, uri) = (barrier.clone(), uri.clone());
        tasks.spawn(async move {
            let mut out = Outcome::new()?;
            let mut step = async |i: u64, out: &mut Outcome| {
                let body = body.render((start + i) * plan.batch as u64);
                let t = Instant::now();
                let (status, resp) = conn.send(Method::POST, &uri, body).await?;
                let us = t.elapsed().as_micros().max(1) as u64;
                out.add_reply(check_reply(status, &resp, plan.batch));
                anyhow::Ok(us)
            };
            let mut warm = anyhow::Ok(());
            for i in 0..warmup {
                if let Err(e) = step(i, &mut out).await {
                    warm = Err(e);
                    break;
                }
            }
            // Reached even when the warm-up failed, so that the others are not left waiting.
            barrier.wait().await;
            warm?;
            for i in warmup..total {
                let us = step(i, &mut out).await?;
                out.hist.record(us)?;
            }
            anyhow::Ok(out)
        });
    }
    barrier.wait().await;
    let server_cpu0 = server_pid.and_then(process_cpu_seconds);
    let bench_cpu0 = self_cpu_seconds();
    let started = Instant::now();
    let mut all = Outcome::new()?;
    while let Some(r) = tasks.join_next().await {
        // On an error, dropping `tasks` aborts the other producers.
        all.merge(r.context("producer task")??)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let bench_cpu_s = self_cpu_seconds() - bench_cpu0;
    let server_cpu_s = server_cpu0
        .zip(server_pid.and_then(process_cpu_seconds))
        .map(|(a, b)| b - a);
    // Offsets are dense from 0 in the fresh set, so the highest one tells whether the log
    // holds exactly the acknowledged events.
    let logged = all.max_offset.map_or(0, |m| m + 1);
    if logged != all.accepted && all.first_error.is_none() {
        all.first_error = Some(format!(
            "{} events acknowledged, but the highest offset is {:?}",
            all.accepted, all.max_offset
        ));
    }
    Ok(LoadResult {
        hist: all.hist,
        seconds,
        failed_requests: all.failed_requests,
        failed_events: all.failed_events,
        first_error: all.first_error,
        accepted: all.accepted,
        payload_bytes,
        body_bytes,
        server_cpu_s,
        bench_cpu_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::extract::State;
    use serde_json::Value;

    #[test]
    fn listening_line_gives_the_address_and_other_lines_none() {
        let a = "127.0.0.1:41234".parse::<SocketAddr>().unwrap();
        assert_eq!(
            parse_listening("eventbus: listening on http://127.0.0.1:41234"),
            Some(a)
        );
        assert_eq!(
            parse_listening("eventbus: listening on http://127.0.0.1:41234/ (data dir x)\n"),
            Some(a)
        );
        assert_eq!(
            parse_listening("eventbus: listening on http://[::1]:8080"),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(parse_listening("eventbus: data dir /x open"), None);
        assert_eq!(
            parse_listening("eventbus: listening on http://localhost"),
            None
        );
    }

    #[test]
    fn batch_body_is_an_array_of_events_of_the_requested_size_with_fresh_ids() {
        let mut t = BodyTemplate::new(1024, 10, true).unwrap();
        for first in [0, 10, 999_999_999_990] {
            let v: Value = serde_json::from_slice(t.render(first)).unwrap();
            let events = v.as_array().unwrap();
            assert_eq!(events.len(), 10);
            for (k, e) in events.iter().enumerate() {
                assert_eq!(serde_json::to_vec(e).unwrap().len(), 1024);
                let want = sample_event_from(first + k as u64, 1024, SOURCE).to_json();
                assert_eq!(e, &want);
            }
        }
    }

    #[test]
    fn single_body_is_one_event_object() {
        let mut t = BodyTemplate::new(512, 1, false).unwrap();
        let body = t.render(42);
        assert_eq!(body.len(), 512);
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["id"], "bench-000000000042");
        assert!(BodyTemplate::new(512, 2, false).is_err());
    }

    /// A scripted server: accepts one connection, reads `requests` requests (by their
    /// Content-Length), and after each writes the next of `replies` in the given pieces.
    async fn scripted(
        replies: Vec<Vec<&'static [u8]>>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = Vec::new();
            for pieces in replies {
                let len = loop {
                    let mut headers = [httparse::EMPTY_HEADER; 16];
                    let mut req = httparse::Request::new(&mut headers);
                    if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                        let cl = req
                            .headers
                            .iter()
                            .find(|h| h.name == "content-length")
                            .unwrap();
                        let cl: usize = std::str::from_utf8(cl.value).unwrap().parse().unwrap();
                        if buf.len() >= n + cl {
                            break n + cl;
                        }
                    }
                    assert!(s.read_buf(&mut buf).await.unwrap() > 0);
                };
                seen.push(buf.drain(..len).collect());
                for p in pieces {
                    s.write_all(p).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            seen
        });
        (addr, task)
    }

    #[tokio::test]
    async fn conn_reads_responses_split_across_reads_and_keeps_the_connection() {
        let (addr, server) = scripted(vec![
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-le",
                b"ngth: 5\r\n\r\nhel",
                b"lo",
            ],
            vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nx-a: b\r\n\r\n{}"],
        ])
        .await;
        let mut conn = Conn::open(addr).await.unwrap();
        let (status, body) = conn.send(Method::POST, "/a", b"[1,2]").await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
        let (status, body) = conn.send(Method::GET, "/b", b"").await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::NOT_FOUND, &b"{}"[..]));
        let seen = server.await.unwrap();
        let first = String::from_utf8(seen[0].clone()).unwrap();
        assert!(first.starts_with("POST /a HTTP/1.1\r\n"), "{first}");
        assert!(
            first.contains("\r\ncontent-type: application/json\r\n"),
            "{first}"
        );
        assert!(first.ends_with("content-length: 5\r\n\r\n[1,2]"), "{first}");
        assert!(String::from_utf8_lossy(&seen[1]).starts_with("GET /b HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn conn_refuses_a_response_without_length_and_a_closed_connection() {
        let (addr, _server) = scripted(vec![vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        ]])
        .await;
        let mut conn = Conn::open(addr).await.unwrap();
        let err = conn.send(Method::GET, "/", b"").await.unwrap_err();
        assert!(format!("{err:#}").contains("Content-Length"), "{err:#}");
        let (addr, server) = scripted(vec![vec![b"HTTP/1.1 200 OK\r\n"]]).await;
        let mut conn = Conn::open(addr).await.unwrap();
        let send = conn.send(Method::GET, "/", b"");
        let (res, _) = tokio::join!(send, server);
        let err = res.unwrap_err();
        assert!(
            format!("{err:#}").contains("closed the connection"),
            "{err:#}"
        );
    }

    #[test]
    fn replies_count_refused_events_and_bad_statuses() {
        let ok = br#"{"entries":[{"id":"a","offset":3},{"id":"b","offset":4}],"failed":0}"#;
        assert_eq!(
            check_reply(StatusCode::OK, ok, 2),
            Reply {
                accepted: 2,
                failed: 0,
                max_offset: Some(4),
                error: None
            }
        );
        let partial = br#"{"entries":[{"id":"a","offset":3},{"error":{"code":"X","message":"m"}}],"failed":1}"#;
        let r = check_reply(StatusCode::OK, partial, 2);
        assert_eq!((r.accepted, r.failed), (1, 1));
        assert!(r.error.unwrap().contains("1 events refused"));
        let r = check_reply(StatusCode::NOT_FOUND, br#"{"error":{}}"#, 3);
        assert_eq!(r.failed, 3);
        assert!(r.error.unwrap().contains("404"));
        let r = check_reply(StatusCode::OK, br#"{"entries":[],"failed":0}"#, 1);
        assert!(r.error.unwrap().contains("0 entries"));
    }

    #[test]
    fn log_figures_come_from_the_bench_sets_samples() {
        let text = "# HELP x\n\
            eventbus_log_group_commits_total{set=\"other\"} 7\n\
            eventbus_log_group_commits_total{set=\"bench\"} 1500\n\
            eventbus_log_fsync_latency_seconds_sum{set=\"bench\"} 0.75\n\
            eventbus_log_fsync_latency_seconds_count{set=\"bench\"} 1501\n";
        assert_eq!(
            parse_log_figures(text),
            Some(LogFigures {
                commits: 1500,
                fsyncs: 1501,
                fsync_seconds: 0.75
            })
        );
        assert_eq!(parse_log_figures("eventbus_up 1\n"), None);
    }

    #[test]
    fn persist_policies_map_to_the_server_flag() {
        assert_eq!(server_persist_arg(PersistPolicy::Always), "always");
        assert_eq!(server_persist_arg(PersistPolicy::Never), "never");
        assert_eq!(
            server_persist_arg(PersistPolicy::IntervalMs(5)),
            "interval:5"
        );
    }

    /// A stand-in for the server: counts offsets, remembers ids, refuses every `fail_every`-th
    /// request's events (0: none).
    #[derive(Default)]
    struct Stub {
        next: AtomicU64,
        requests: AtomicU64,
        ids: Mutex<HashSet<String>>,
        fail_every: u64,
    }

    async fn stub_put(State(s): State<Arc<Stub>>, body: Bytes) -> axum::Json<Value> {
        let v: Value = serde_json::from_slice(&body).unwrap();
        let events = match v {
            Value::Array(a) => a,
            one => vec![one],
        };
        let n = s.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if s.fail_every > 0 && n % s.fail_every == 0 {
            let entries: Vec<Value> = events
                .iter()
                .map(|_| json!({"error": {"code": "Stub", "message": "refused"}}))
                .collect();
            return axum::Json(json!({"entries": entries, "failed": events.len()}));
        }
        let mut entries = Vec::new();
        for e in &events {
            let id = e["id"].as_str().unwrap().to_string();
            assert!(s.ids.lock().unwrap().insert(id.clone()), "duplicate {id}");
            let offset = s.next.fetch_add(1, Ordering::Relaxed);
            entries.push(json!({"id": id, "offset": offset}));
        }
        axum::Json(json!({"entries": entries, "failed": 0}))
    }

    async fn stub_server(stub: Arc<Stub>) -> SocketAddr {
        let app = axum::Router::new()
            .route(
                "/v1/event-sets",
                axum::routing::post(|| async { (StatusCode::CREATED, "{}") }),
            )
            .route("/v1/event-sets/bench/events", axum::routing::post(stub_put))
            .with_state(stub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn plan(array: bool, batch: usize) -> Plan {
        Plan {
            producers: 4,
            batch,
            array,
            requests: 101,
            warmup: 6,
            payload_bytes: 600,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_sends_every_request_once_with_unique_ids() {
        for (array, batch) in [(false, 1), (true, 7)] {
            let stub = Arc::new(Stub::default());
            let addr = stub_server(stub.clone()).await;
            assert_eq!(create_set(addr, Some(0)).await.unwrap(), None);
            let r = load(addr, plan(array, batch), None).await.unwrap();
            assert_eq!(r.hist.len(), 101);
            assert_eq!(r.failed_requests, 0);
            assert!(r.first_error.is_none(), "{:?}", r.first_error);
            assert_eq!(stub.requests.load(Ordering::Relaxed), 107);
            assert_eq!(stub.ids.lock().unwrap().len(), 107 * batch);
            assert_eq!(r.payload_bytes, 600);
            assert!(r.server_cpu_s.is_none());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_counts_refused_requests() {
        let stub = Arc::new(Stub {
            fail_every: 10,
            ..Stub::default()
        });
        let addr = stub_server(stub.clone()).await;
        let r = load(addr, plan(true, 3), None).await.unwrap();
        assert_eq!(r.failed_requests, 10);
        assert_eq!(r.failed_events, 30);
        assert!(r.first_error.unwrap().contains("refused"));
    }

    #[test]
    fn server_process_reads_the_address_and_is_stopped_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo starting; echo 'eventbus: listening on http://127.0.0.1:4567'; exec sleep 60",
        ]);
        let s = ServerProcess::start(cmd, dir, Duration::from_secs(10)).unwrap();
        assert_eq!(s.addr, "127.0.0.1:4567".parse().unwrap());
        let pid = s.pid();
        assert!(process_cpu_seconds(pid).is_some());
        let t = Instant::now();
        drop(s);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(process_cpu_seconds(pid).is_none(), "pid {pid} still there");
        assert!(!path.exists());
    }

    #[test]
    fn server_process_reports_an_early_exit_with_its_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'bad flag --persist' >&2; exit 2"]);
        let err = ServerProcess::start(cmd, tempfile::tempdir().unwrap(), Duration::from_secs(10))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bad flag --persist"), "{err}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec sleep 60"]);
        let err = ServerProcess::start(
            cmd,
            tempfile::tempdir().unwrap(),
            Duration::from_millis(200),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("no `eventbus: listening"), "{err}");
    }
}
