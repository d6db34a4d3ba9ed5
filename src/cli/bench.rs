//! `eventbus bench`: load generators. Each result is one JSON object on its own line on stdout;
//! progress and notes go to stderr.
//!
//! - `bench append --mode embedded`: P producers (tokio tasks) each append and wait for the
//!   acknowledgement before the next append, against an [`EventLog`] in a fresh directory.
//! - `bench append --mode http` / `--mode http-batch` ([`http`]): the same loop through the
//!   HTTP API of a real `eventbus serve` child process, one keep-alive connection per
//!   producer, one event (or a JSON array of `--batch` events) per request.
//! - `bench disk`: the disk's own limits in the same directory, for the ratios in
//!   docs/BENCHMARKS.md: rounds of "write B bytes + fdatasync", and sequential write bandwidth.
//! - `bench match --rules N`: one thread matching cloud-service events against a
//!   [`PatternSet`] of N rules from [`match_workload`] (the generator `benches/match.rs`
//!   uses too).
//! - `bench query` ([`query`]): time-window queries and id lookups on a large log.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::codec::encode_event;
use crate::config::{PersistPolicy, parse_persist};
use crate::event::Event;
use crate::pattern::{Pattern, PatternSet};
use crate::store::{EventLog, LogOptions};

pub mod deliver;
pub mod http;
pub mod match_workload;
pub mod query;

/// Arguments of `bench`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventbus bench append --mode embedded                    # 64 producers x 1 KiB, durable\n  \
    eventbus bench append --mode embedded --batch 100        # producers put 100 events at once\n  \
    eventbus bench append --mode http --events 100000        # through `eventbus serve`, 1 event/request\n  \
    eventbus bench append --mode http-batch --events 300000  # 10 events per request (--batch N)\n  \
    eventbus bench disk                                      # fdatasync rounds and bandwidth\n  \
    eventbus bench reopen --events 10000000                  # recovery time after a crash\n  \
    eventbus bench match --rules 1,100,1000,10000            # events matched per second\n  \
    eventbus bench deliver                                   # webhook delivery, batch 1 and 100\n  \
    eventbus bench deliver --bindings 10 --share false       # ten rules, each reading alone\n  \
    eventbus bench query --events 200000                     # time-window queries, id lookups\n\
    Output: one JSON object per line on stdout.")]
pub struct BenchArgs {
    #[command(subcommand)]
    pub workload: Workload,
}

/// Bench workloads.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Append throughput and latency.
    Append(AppendArgs),
    /// The disk's limits: write+fdatasync rounds per second, sequential bandwidth.
    Disk(DiskArgs),
    /// Recovery time: fill a log with N events, tear its tail as a crash would, time the open.
    Reopen(ReopenArgs),
    /// Pattern matching: cloud-service events against a set of N rules, on one thread.
    Match(MatchArgs),
    /// Delivery to a loopback webhook the bench runs itself: throughput (unbatched and
    /// batched) and put-to-webhook latency at a fixed rate.
    Deliver(deliver::DeliverArgs),
    /// Audit-trail reads on a large log: random time-window queries (as the HTTP query
    /// handler does them) and id lookups (building the id index, then warm).
    Query(query::QueryArgs),
}

/// Arguments of `bench match`.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Rules in the set; a comma list (`1,100,1000,10000`) runs each and prints one line each.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub rules: Vec<usize>,
    /// Distinct events, matched in turn until the time is up. Default = 1024 (about 6 MiB as
    /// `serde_json::Value`s); many more spend the time in cache misses on the events, which
    /// the bus does not have, as it matches an event right after parsing it.
    #[arg(long, default_value_t = 1024)]
    pub events: usize,
    /// Seconds of matching per rule count.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Seed of the event and rule generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Rule mix: `fixed` keeps RULE_MIX at every size (matches per event grow with the rule
    /// count); `scoped` grows only resource- and team-scoped rules past the first 100.
    #[arg(long, value_enum, default_value = "fixed")]
    pub mix: RuleMix,
}

/// How the rule set grows with `--rules`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RuleMix {
    /// The same kind proportions at every size.
    Fixed,
    /// The first 100 rules as `fixed`, then only resource- and team-scoped rules.
    Scoped,
}

/// Arguments of `bench reopen`.
#[derive(Debug, Args)]
pub struct ReopenArgs {
    /// Events to write before the simulated crash.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Size of each event as CloudEvents JSON, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Parent directory for the bench's data directory. Default = the system temp dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the filled log here and reuse it on the next run (skips the fill when it exists).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Segment size. Default = 128 MiB.
    #[arg(long, default_value_t = crate::config::DEFAULT_MAX_SEGMENT_BYTES)]
    pub max_segment_bytes: u64,
}

/// Where the appends go.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AppendMode {
    /// The library in this process (EventLog), no network.
    Embedded,
    /// `POST /v1/event-sets/bench/events` to an `eventbus serve` child process, one event
    /// object per request, one HTTP/1.1 keep-alive connection per producer.
    Http,
    /// As `http`, with a JSON array of `--batch` events (default 10) per request.
    HttpBatch,
}

/// Arguments of `bench append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Target of the appends.
    #[arg(long, value_enum, default_value = "embedded")]
    pub mode: AppendMode,
    /// Total events.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Concurrent producers; each waits for its acknowledgement before the next append. In
    /// the http modes each has its own connection.
    #[arg(long, default_value_t = 64)]
    pub producers: usize,
    /// Size of each event as CloudEvents JSON, in bytes (padded in `data`).
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Events per append call (embedded) or per request (http-batch). Default = 1, or 10 for
    /// `http-batch`; `http` sends exactly one event per request.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Persist policy: `always` (ack after fdatasync), `never`, or `interval-ms:N` (also
    /// written `interval:N`, as `serve --persist` takes it). The http modes pass it to the
    /// server.
    #[arg(long, default_value = "always", value_parser = parse_persist)]
    pub persist: PersistPolicy,
    /// Parent directory for the bench's fresh data directory (must be a real disk, not tmpfs).
    /// Default = the system temp dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// http modes: the `bench` set's de-duplication window in ms (`dedup_window_ms` of the
    /// set; 0 turns de-duplication off). Default = the server's default.
    #[arg(long)]
    pub dedup_window_ms: Option<u64>,
    /// Segment size (embedded only; the server uses its own). Default = 128 MiB.
    #[arg(long, default_value_t = crate::config::DEFAULT_MAX_SEGMENT_BYTES)]
    pub max_segment_bytes: u64,
    /// Runtime worker threads for the producer tasks. Default = 1 for embedded: the log's
    /// writer thread needs a core of its own, and on a 2-core machine a second producer
    /// thread mostly competes with it (see docs/BENCHMARKS.md for both settings). Default = 2
    /// for the http modes (the client's runtime; the server is another process).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Arguments of `bench disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Parent directory for the test file. Default = the system temp dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Bytes written before each fdatasync in the sync-rounds test.
    #[arg(long, default_value_t = 64 * 1024)]
    pub block_bytes: usize,
    /// Seconds for the sync-rounds test.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Bytes written in the bandwidth test (1 MiB writes, one fdatasync at the end).
    #[arg(long, default_value_t = 2 << 30)]
    pub bandwidth_bytes: u64,
}

/// Runs `bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.workload {
        Workload::Append(a) => append(a),
        Workload::Disk(a) => disk(a),
        Workload::Reopen(a) => reopen(a),
        Workload::Match(a) => match_rules(a),
        Workload::Deliver(a) => deliver::run(a),
        Workload::Query(a) => query::run(a),
    }
}

fn bench_dir(parent: Option<&Path>, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let parent = parent
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temp dir in {}", parent.display()))
}

/// An event whose structured JSON form is `payload_bytes` long (or as close as it can be).
pub fn sample_event(i: u64, payload_bytes: usize) -> Event {
    sample_event_from(i, payload_bytes, "cvm.cloud.tencent")
}

/// [`sample_event`] with another `source`: the server refuses sources ending in
/// `.cloud.tencent` in custom event sets, so the http benches put events from an application.
pub fn sample_event_from(i: u64, payload_bytes: usize, source: &str) -> Event {
    let mut e = Event::new(
        format!("bench-{i:012}"),
        source,
        "cvm:ErrorEvent:PingUnreachable",
    );
    e.subject = Some("ins-bench0001".into());
    e.region = Some("ap-guangzhou".into());
    e.status = Some("1".into());
    e.time_ms = 1_615_430_559_146;
    let base = |pad: usize| {
        format!(
            "{{\"instanceId\":\"ins-bench0001\",\"pad\":\"{}\"}}",
            "x".repeat(pad)
        )
    };
    e.data = base(0).into_bytes();
    let len0 = serde_json::to_vec(&e.to_json())
        .map(|v| v.len())
        .unwrap_or(0);
    e.data = base(payload_bytes.saturating_sub(len0)).into_bytes();
    e
}

fn append(a: AppendArgs) -> anyhow::Result<ExitCode> {
    match a.mode {
        AppendMode::Embedded => append_embedded(a),
        AppendMode::Http => http::run(a, false),
        AppendMode::HttpBatch => http::run(a, true),
    }
}

fn append_embedded(a: AppendArgs) -> anyhow::Result<ExitCode> {
    let batch = a.batch.unwrap_or(1);
    if a.producers == 0 || batch == 0 || a.events == 0 {
        bail!("--producers, --batch and --events must be at least 1");
    }
    let tmp = bench_dir(a.data_dir.as_deref(), "eventbus-bench-")?;
    let opts = LogOptions {
        persist: a.persist,
        max_segment_bytes: a.max_segment_bytes,
        ..LogOptions::default()
    };
    let log = Arc::new(EventLog::open(tmp.path().join("bench"), opts)?);
    let appends_total = a.events.div_ceil(batch as u64);
    let per_producer = appends_total.div_ceil(a.producers as u64);
    let threads = a.threads.unwrap_or(1).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    eprintln!(
        "bench append: {} events, {} producers x batch {}, {} B, persist {:?}, dir {}",
        per_producer * a.producers as u64 * batch as u64,
        a.producers,
        batch,
        a.payload_bytes,
        a.persist,
        tmp.path().display()
    );
    let template = sample_event(0, a.payload_bytes);
    let payload_bytes = serde_json::to_vec(&template.to_json())?.len();
    let started = Instant::now();
    let hist = rt.block_on(async {
        let mut tasks = Vec::with_capacity(a.producers);
        for p in 0..a.producers {
            let log = log.clone();
            let template = template.clone();
            tasks.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let mut events = vec![template; batch];
                for n in 0..per_producer {
                    for (k, e) in events.iter_mut().enumerate() {
                        e.id = format!("bench-{p:03}-{n:09}-{k:05}");
                    }
                    let t = Instant::now();
                    let encoded = events
                        .iter()
                        .map(encode_event)
                        .collect::<crate::Result<Vec<_>>>()?;
                    log.submit_encoded(encoded)?.await?;
                    h.record(t.elapsed().as_micros().max(1) as u64)?;
                }
                anyhow::Ok(h)
            }));
        }
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for t in tasks {
            all.add(t.await??)?;
        }
        anyhow::Ok(all)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let events = per_producer * a.producers as u64 * batch as u64;
    let stats = log.stats();
    let ws = log.writer_stats();
    log.close()?;
    if stats.next_offset != events {
        bail!(
            "log holds {} events after the run, {} were acknowledged",
            stats.next_offset,
            events
        );
    }
    let line = json!({
        "workload": "append",
        "mode": "embedded",
        "durable": matches!(a.persist, PersistPolicy::Always),
        "persist": format!("{:?}", a.persist),
        "events": events,
        "producers": a.producers,
        "producer_threads": threads,
        "batch": batch,
        "payload_bytes": payload_bytes,
        "seconds": round3(seconds),
        "events_per_s": (events as f64 / seconds).round(),
        "mb_per_s": round3(stats.bytes as f64 / seconds / 1e6),
        "log_bytes": stats.bytes,
        "p50_us": hist.value_at_quantile(0.50),
        "p99_us": hist.value_at_quantile(0.99),
        "p999_us": hist.value_at_quantile(0.999),
        "max_us": hist.max(),
        "commits": ws.commits,
        "events_per_commit": round3(ws.records as f64 / ws.commits.max(1) as f64),
        "fsync_avg_us": ws.fsync_micros / ws.fsyncs.max(1),
        "max_rss_mib": max_rss_mib(),
    });
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// Peak resident set size of this process, in MiB.
pub fn max_rss_mib() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    round3(ru.ru_maxrss as f64 / 1024.0)
}

fn reopen(a: ReopenArgs) -> anyhow::Result<ExitCode> {
    let tmp;
    let dir = match &a.keep {
        Some(k) => k.clone(),
        None => {
            tmp = bench_dir(a.data_dir.as_deref(), "eventbus-reopen-")?;
            tmp.path().join("set")
        }
    };
    let opts = || LogOptions {
        persist: PersistPolicy::Never,
        max_segment_bytes: a.max_segment_bytes,
        ..LogOptions::default()
    };
    let fill_started = Instant::now();
    {
        let log = EventLog::open(&dir, opts())?;
        let have = log.next_offset();
        if have < a.events {
            eprintln!(
                "bench reopen: writing {} events to {}",
                a.events - have,
                dir.display()
            );
            let template = encode_event(&sample_event(0, a.payload_bytes))?;
            let mut written = have;
            while written < a.events {
                let n = (a.events - written).min(1000) as usize;
                log.submit_encoded(vec![template.clone(); n])?.wait()?;
                written += n as u64;
            }
        }
        log.sync_blocking()?;
        log.close()?;
    }
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    // The crash: half a frame at the end of the active segment, as if the process died
    // inside a write.
    let active = crate::store::recovery::list_segments(&crate::store::io::OsIo, &dir, false)?
        .last()
        .copied()
        .context("no segments")?;
    let apath = dir.join(crate::store::segment::segment_file_name(active));
    let mut f = OpenOptions::new().append(true).open(&apath)?;
    let mut torn = Vec::new();
    crate::store::frame::encode_frame(&[7u8; 600], &mut torn);
    f.write_all(&torn[..300])?;
    f.sync_data()?;
    drop(f);
    let started = Instant::now();
    let log = EventLog::open(&dir, opts())?;
    let open_seconds = started.elapsed().as_secs_f64();
    let report = log.recovery_report().clone();
    let stats = log.stats();
    log.close()?;
    println!(
        "{}",
        json!({
            "workload": "reopen", "events": stats.next_offset, "segments": stats.segments,
            "log_bytes": stats.bytes, "fill_seconds": round3(fill_seconds),
            "open_ms": round3(open_seconds * 1000.0),
            "scanned_bytes": report.scanned_bytes,
            "torn_bytes_cut": report.torn_tail.as_ref().map(|t| t.bytes_cut),
            "max_rss_mib": max_rss_mib(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn match_rules(a: MatchArgs) -> anyhow::Result<ExitCode> {
    if a.events == 0 || a.rules.contains(&0) {
        bail!("--events and every --rules count must be at least 1");
    }
    let events = match_workload::cloud_events(a.events, a.seed);
    let event_bytes: usize = events.iter().map(|e| e.to_string().len()).sum();
    for &n in &a.rules {
        let rules = match a.mix {
            RuleMix::Fixed => match_workload::cloud_rules(n, a.seed),
            RuleMix::Scoped => match_workload::cloud_rules_scoped(n, a.seed),
        };
        let build = Instant::now();
        let patterns = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Pattern::parse(r).with_context(|| format!("generated rule {i}: {r}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let set = PatternSet::new(patterns.iter().enumerate());
        let build_ms = build.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "bench match: {n} rules (parsed and indexed in {build_ms:.1} ms), {} events of {} B on average, {} s",
            events.len(),
            event_bytes / events.len(),
            a.seconds
        );
        // One untimed pass warms the caches and the allocator, and counts how many rules
        // the index hands to full evaluation (the rest it rules out by lookups alone).
        let mut candidates = 0usize;
        for e in &events {
            std::hint::black_box(set.matching(e));
            candidates += set.candidates(e);
        }
        let limit = Duration::from_secs_f64(a.seconds);
        let mut done = 0u64;
        let mut matched = 0u64;
        let started = Instant::now();
        'outer: loop {
            for chunk in events.chunks(1024) {
                for e in chunk {
                    matched += std::hint::black_box(set.matching(e)).len() as u64;
                }
                done += chunk.len() as u64;
                if started.elapsed() >= limit {
                    break 'outer;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let events_per_s = done as f64 / secs;
        println!(
            "{}",
            json!({
                "workload": "match", "rules": n, "mix": format!("{:?}", a.mix).to_lowercase(),
                "events": done, "distinct_events": events.len(),
                "seconds": round3(secs), "events_per_s": events_per_s.round(),
                "rule_evals_per_s": (events_per_s * n as f64).round(),
                "matched_per_event": round3(matched as f64 / done as f64),
                "candidates_per_event": round3(candidates as f64 / events.len() as f64),
                "ns_per_event": round3(secs * 1e9 / done as f64),
                "build_ms": round3(build_ms), "seed": a.seed,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn disk(a: DiskArgs) -> anyhow::Result<ExitCode> {
    let tmp = bench_dir(a.data_dir.as_deref(), "eventbus-disk-")?;
    let path = tmp.path().join("disk.bin");
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    // Rounds of "append block + fdatasync", like fio --rw=write --bs=64k --fdatasync=1.
    let block = vec![0xa5u8; a.block_bytes];
    let mut pos = 0u64;
    let mut rounds = 0u64;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs_f64(a.seconds) {
        let t = Instant::now();
        file.write_all_at(&block, pos)?;
        file.sync_data()?;
        h.record(t.elapsed().as_micros().max(1) as u64)?;
        pos += block.len() as u64;
        rounds += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "workload": "disk", "test": "write+fdatasync", "block_bytes": a.block_bytes,
            "rounds": rounds, "seconds": round3(secs),
            "syncs_per_s": (rounds as f64 / secs).round(),
            "mb_per_s": round3(pos as f64 / secs / 1e6),
            "p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99),
        })
    );
    drop(file);
    std::fs::remove_file(&path)?;
    // Sequential bandwidth: 1 MiB writes, one fdatasync at the end.
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut written = 0u64;
    while written < a.bandwidth_bytes {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_data()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "workload": "disk", "test": "sequential-write", "bytes": written,
            "seconds": round3(secs), "mb_per_s": round3(written as f64 / secs / 1e6),
        })
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_event_has_the_requested_json_size() {
        for size in [512, 1024, 4096] {
            let e = sample_event(1, size);
            assert_eq!(serde_json::to_vec(&e.to_json()).unwrap().len(), size);
            let e = sample_event_from(1, size, "bench.app");
            assert_eq!(serde_json::to_vec(&e.to_json()).unwrap().len(), size);
        }
    }

    #[test]
    fn persist_flag_parses_every_policy_and_names_bad_input() {
        assert_eq!(parse_persist("always").unwrap(), PersistPolicy::Always);
        assert_eq!(parse_persist("never").unwrap(), PersistPolicy::Never);
        assert_eq!(
            parse_persist("interval-ms:50").unwrap(),
            PersistPolicy::IntervalMs(50)
        );
        assert_eq!(
            parse_persist("interval:50").unwrap(),
            PersistPolicy::IntervalMs(50)
        );
        assert!(
            parse_persist("interval-ms:x")
                .unwrap_err()
                .contains("number")
        );
        assert!(
            parse_persist("sometimes")
                .unwrap_err()
                .contains("sometimes")
        );
    }
}
