//! `eventbus bench deliver`: end-to-end delivery to a loopback webhook the bench runs itself
//! (an axum server in the same process, answering 200 at once).
//!
//! - Throughput (one line per `--batch` value): N events are put first, then a binding with
//!   `"start": "earliest"` is created and the clock runs until the engine reports all N
//!   delivered. With `--bindings K`, K rules each match a disjoint 1/K of the events (one
//!   target each), and `--share false` turns the shared tail reader off, for the comparison
//!   of shared and lone reads.
//! - Latency (`--rate R --latency-seconds S`): one producer puts single events at R per
//!   second while a live binding delivers them; each event carries its put time, and the
//!   receiver records put-to-arrival time (the put's own fsync included).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::bus::{BusConfig, EventBus, Producer};
use crate::catalog::{BindingId, RuleSpec};
use crate::delivery::{Engine, EngineOptions};

/// Arguments of `bench deliver`.
#[derive(Debug, Args)]
pub struct DeliverArgs {
    /// Events per throughput run.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// `batch.max_events` of the target; a comma list runs each (`1` = unbatched).
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    pub batch: Vec<u64>,
    /// `max_in_flight` of the target (concurrent requests).
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: u64,
    /// Rules (one target each) sharing the events; each matches 1/K of them.
    #[arg(long, default_value_t = 1)]
    pub bindings: u64,
    /// Fraction of the events that match some binding (the rest match none); below 1 the run
    /// measures scanning: every binding still reads (or is fed) every event.
    #[arg(long, default_value_t = 1.0)]
    pub selectivity: f64,
    /// Create the bindings first and put the events while they run (the shared tail reader
    /// serves caught-up bindings); without it the events are put first and every binding
    /// catches up on the backlog on its own. The clock and CPU count include the puts.
    #[arg(long)]
    pub live: bool,
    /// After each throughput run, also replay the whole set to every binding (a replay of the
    /// window [0, now)) and print a `"workload":"replay"` line: replay throughput.
    #[arg(long)]
    pub replay: bool,
    /// Record linkage traces of the attempts (as the server does by default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub trace: bool,
    /// Share one tail reader per set among caught-up bindings.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub share: bool,
    /// Size of each event as CloudEvents JSON, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Events per second of the latency run (0 skips it).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 5.0)]
    pub latency_seconds: f64,
    /// Runtime worker threads (engine, receiver and producer share them).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Give up (and print every binding's status) when a throughput run takes longer.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
    /// Parent directory for the bench's data directory. Default = the system temp dir.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

const SET: &str = "bench";

#[derive(Default)]
struct Sink {
    requests: AtomicU64,
    /// Latency run: put-to-arrival times, microseconds.
    latencies: std::sync::Mutex<Vec<u64>>,
    /// Latency run: the bench's epoch, for the `t_us` stamps.
    epoch: std::sync::OnceLock<Instant>,
}

async fn hook(
    axum::extract::State(sink): axum::extract::State<Arc<Sink>>,
    body: Bytes,
) -> &'static str {
    sink.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(epoch) = sink.epoch.get()
        && let Ok(v) = serde_json::from_slice::<Value>(&body)
        && let Some(t) = v["data"]["t_us"].as_u64()
    {
        let now = epoch.elapsed().as_micros() as u64;
        sink.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(now.saturating_sub(t));
    }
    ""
}

async fn start_receiver(sink: Arc<Sink>) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(sink);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("bench receiver stopped: {e}");
        }
    });
    Ok(format!("http://{addr}/hook"))
}

fn create_binding(bus: &EventBus, rule: &str, pattern: Value, body: Value) -> anyhow::Result<()> {
    bus.catalog().create_rule(
        SET,
        RuleSpec {
            name: rule.into(),
            description: String::new(),
            pattern,
            enabled: true,
            transform: None,
        },
    )?;
    bus.catalog().create_target(SET, rule, body)?;
    Ok(())
}

fn target_body(url: &str, batch: u64, max_in_flight: u64) -> Value {
    json!({"name": "hook", "type": "http", "http": {"url": url, "timeout_ms": 10_000},
           "start": "earliest", "max_in_flight": max_in_flight,
           "batch": {"max_events": batch, "max_wait_ms": 0}})
}

/// Events for the throughput runs: JSON of about `payload_bytes`, `data.k` cycling over the
/// bindings.
fn bench_event(i: u64, k: u64, pad: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("d-{i:012}"), "source": "bench.app",
           "type": "bench:Event:Delivered", "subject": "ins-bench0001",
           "region": "ap-guangzhou", "data": {"k": k, "pad": pad}})
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Runs `bench deliver`.
pub fn run(a: DeliverArgs) -> anyhow::Result<std::process::ExitCode> {
    if a.events == 0 || a.bindings == 0 || a.max_in_flight == 0 || a.batch.contains(&0) {
        bail!("--events, --bindings, --max-in-flight and --batch must be at least 1");
    }
    if !(a.selectivity > 0.0 && a.selectivity <= 1.0) {
        bail!("--selectivity must be in (0, 1]");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        for &batch in &a.batch {
            throughput(&a, batch).await?;
        }
        if a.rate > 0 {
            latency(&a).await?;
        }
        anyhow::Ok(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn open_bus(a: &DeliverArgs) -> anyhow::Result<(tempfile::TempDir, Arc<EventBus>)> {
    let tmp = super::bench_dir(a.data_dir.as_deref(), "eventbus-deliver-")?;
    let bus = Arc::new(EventBus::open(BusConfig {
        data_dir: tmp.path().to_path_buf(),
        ..BusConfig::default()
    })?);
    bus.create_set(SET, None, None, Some(0))?;
    Ok((tmp, bus))
}

/// Replays the whole set to every rule and times it to completion (counting included).
async fn replay(engine: &Engine, a: &DeliverArgs, batch: u64) -> anyhow::Result<Value> {
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let name = format!("bench-{batch}");
    engine
        .create_replay(
            SET,
            crate::delivery::ReplayRequest {
                name: name.clone(),
                start_ms: 0,
                end_ms: crate::config::now_ms() + 1,
                rules: None,
            },
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(a.timeout_seconds);
    let status = loop {
        let s = engine.replay_status(SET, &name).await?;
        if s.state.is_final() {
            break s;
        }
        if Instant::now() > deadline {
            bail!(
                "the replay did not finish in {} s: {s:?}",
                a.timeout_seconds
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    if status.state != crate::catalog::ReplayState::Completed {
        bail!("the replay ended {:?}: {:?}", status.state, status.error);
    }
    Ok(json!({
        "workload": "replay",
        "batch": batch,
        "events": status.end_offset - status.start_offset,
        "bindings": a.bindings,
        "replayed": status.replayed,
        "seconds": super::round3(seconds),
        "events_per_s": ((status.end_offset - status.start_offset) as f64 / seconds).round(),
        "replayed_per_s": (status.replayed as f64 / seconds).round(),
        "cpu_seconds": super::round3(cpu),
    }))
}

async fn throughput(a: &DeliverArgs, batch: u64) -> anyhow::Result<()> {
    let (_tmp, bus) = open_bus(a)?;
    let sink = Arc::new(Sink::default());
    let url = start_receiver(sink.clone()).await?;
    // Fill the set first.
    let pad = "x".repeat(a.payload_bytes.saturating_sub(230));
    // Event j carries k = j % space; binding k matches k, so only k < bindings match.
    let space = ((a.bindings as f64 / a.selectivity).round() as u64).max(a.bindings);
    let payload_bytes = serde_json::to_vec(&bench_event(0, 0, &pad))?.len();
    let ids: Vec<BindingId> = (0..a.bindings)
        .map(|k| BindingId::new(SET, &format!("r{k}"), "hook"))
        .collect();
    let engine = Engine::start(
        bus.clone(),
        EngineOptions {
            share_reads: a.share,
            trace: a.trace,
            ..EngineOptions::default()
        },
    );
    let fill = || async {
        let mut i = 0;
        while i < a.events {
            let n = (a.events - i).min(1000);
            let events: Vec<Value> = (i..i + n)
                .map(|j| bench_event(j, j % space, &pad))
                .collect();
            let out = bus.put_events(SET, &events, Producer::Custom).await?;
            if out.failed > 0 {
                bail!("{} events refused while filling the set", out.failed);
            }
            i += n;
        }
        anyhow::Ok(())
    };
    if !a.live {
        fill().await?;
    }
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    for (k, id) in ids.iter().enumerate() {
        create_binding(
            &bus,
            &id.rule,
            json!({"data": {"k": [k]}}),
            target_body(&url, batch, a.max_in_flight),
        )?;
    }
    engine.sync().await?;
    if a.live {
        fill().await?;
    }
    let per_binding = |k: u64| a.events / space + u64::from(k < a.events % space);
    let deadline = Instant::now() + Duration::from_secs(a.timeout_seconds);
    loop {
        let mut done = true;
        for (k, id) in ids.iter().enumerate() {
            let s = engine.status(id).await?;
            if s.delivered < per_binding(k as u64) {
                done = false;
                break;
            }
        }
        if done {
            break;
        }
        if Instant::now() > deadline {
            for id in &ids {
                eprintln!("{id}: {:?}", engine.status(id).await?);
            }
            bail!("delivery did not finish in {} s", a.timeout_seconds);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let mut following = 0;
    let mut failed_attempts = 0;
    for id in &ids {
        let s = engine.status(id).await?;
        following += u64::from(s.following);
        failed_attempts += s.failed_attempts;
    }
    let requests = sink.requests.load(Ordering::Relaxed);
    let replay_line = if a.replay {
        Some(replay(&engine, a, batch).await?)
    } else {
        None
    };
    engine.shutdown().await;
    let line = json!({
        "workload": "deliver",
        "mode": if batch == 1 { "unbatched" } else { "batched" },
        "batch": batch,
        "events": a.events,
        "bindings": a.bindings,
        "selectivity": a.selectivity,
        "matched_events": (0..a.bindings).map(per_binding).sum::<u64>(),
        "shared_reads": a.share,
        "trace": a.trace,
        "live": a.live,
        "bindings_following_at_end": following,
        "max_in_flight": a.max_in_flight,
        "payload_bytes": payload_bytes,
        "requests": requests,
        "failed_attempts": failed_attempts,
        "seconds": super::round3(seconds),
        "events_per_s": (a.events as f64 / seconds).round(),
        "delivered_per_s": ((0..a.bindings).map(per_binding).sum::<u64>() as f64 / seconds).round(),
        "cpu_seconds": super::round3(cpu),
        "cpu_us_per_event": super::round3(cpu * 1e6 / a.events as f64),
        "max_rss_mib": super::max_rss_mib(),
    });
    println!("{line}");
    if let Some(l) = replay_line {
        println!("{l}");
    }
    tokio::task::spawn_blocking(move || bus.shutdown())
        .await
        .context("bus shutdown")??;
    Ok(())
}

async fn latency(a: &DeliverArgs) -> anyhow::Result<()> {
    let (_tmp, bus) = open_bus(a)?;
    let sink = Arc::new(Sink::default());
    let epoch = Instant::now();
    let _ = sink.epoch.set(epoch);
    let url = start_receiver(sink.clone()).await?;
    let engine = Engine::start(bus.clone(), EngineOptions::default());
    create_binding(
        &bus,
        "live",
        json!({"source": ["bench.app"]}),
        target_body(&url, 1, a.max_in_flight),
    )?;
    engine.sync().await?;
    let total = (a.rate as f64 * a.latency_seconds).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let pad = "x".repeat(a.payload_bytes.saturating_sub(260));
    let started = Instant::now();
    // Puts run concurrently (each waits for its own fsync), as independent producers would.
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..total {
        ticker.tick().await;
        let bus = bus.clone();
        let pad = pad.clone();
        puts.spawn(async move {
            let t_us = epoch.elapsed().as_micros() as u64;
            let e = json!({"specversion": "1.0", "id": format!("l-{i:012}"),
                           "source": "bench.app", "type": "bench:Event:Latency",
                           "data": {"t_us": t_us, "pad": pad}});
            bus.put_events(SET, &[e], Producer::Custom).await
        });
        while let Some(r) = puts.try_join_next() {
            r??;
        }
    }
    while let Some(r) = puts.join_next().await {
        r??;
    }
    let put_seconds = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (sink
        .latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len() as u64)
        < total
    {
        if Instant::now() > deadline {
            bail!("latency run: not every event arrived within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    engine.shutdown().await;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for &l in sink
        .latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        h.record(l.max(1))?;
    }
    let line = json!({
        "workload": "deliver",
        "mode": "latency",
        "rate": a.rate,
        "events": total,
        "achieved_rate": (total as f64 / put_seconds).round(),
        "measures": "put (with its fsync) to arrival at the webhook",
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    });
    println!("{line}");
    tokio::task::spawn_blocking(move || bus.shutdown())
        .await
        .context("bus shutdown")??;
    Ok(())
}
