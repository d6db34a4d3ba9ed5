//! `eventbus bench query`: the audit-trail reads on a large log.
//!
//! Fills a fresh [`EventLog`] (or reuses one with `--keep`) with `--events` events whose
//! ingest times are spread evenly over `--span-hours` (a fake clock, advanced before each
//! append of `--fill-batch` events: one group commit, one ingest time), then times:
//! - `--queries` random time windows of `--window-seconds`, read the way the HTTP query
//!   handler reads them: `offset_at_time(start)`, then records until the window's end or
//!   `--limit` events, each turned into its JSON form;
//! - id lookups ([`EventLog::find_by_id`]): the first one, which builds every sealed
//!   segment's `.ids` file (any left from an earlier run are deleted first, so this is always
//!   the build), then `--lookups` random ids that exist and as many that do not, then the
//!   first lookup after a reopen (which loads and checks the `.ids` files).
//!
//! Prints two JSON lines: `"test":"time-range"` and `"test":"id-lookup"`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{bench_dir, max_rss_mib, round3, sample_event};
use crate::codec::encode_event;
use crate::config::PersistPolicy;
use crate::store::segment::parse_ids_name;
use crate::store::{EventLog, LogOptions, ReadOutcome};

/// Ingest time of the first event of a filled log (2023-11-14T22:13:20Z).
const FILL_START_MS: u64 = 1_700_000_000_000;

/// Arguments of `bench query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Events in the log.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Size of each event as CloudEvents JSON, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Ingest times are spread evenly over this many hours (10 M events over 24 h is about
    /// 116 events/s).
    #[arg(long, default_value_t = 24.0)]
    pub span_hours: f64,
    /// Events per append while filling; each append gets one ingest time.
    #[arg(long, default_value_t = 100)]
    pub fill_batch: u64,
    /// Time-range queries to time.
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Width of each query's time window, in seconds.
    #[arg(long, default_value_t = 60)]
    pub window_seconds: u64,
    /// Most events one query returns (the HTTP API's page limit is 1000).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Id lookups to time once the id index is built (as many again for absent ids).
    #[arg(long, default_value_t = 100)]
    pub lookups: usize,
    /// Seed of the random windows and ids.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Parent directory for the bench's data directory. Default = the system temp dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the filled log here and reuse it on the next run (skips the fill when it holds
    /// `--events` already; `.ids` files are deleted before the build is timed).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Segment size. Default = 128 MiB.
    #[arg(long, default_value_t = crate::config::DEFAULT_MAX_SEGMENT_BYTES)]
    pub max_segment_bytes: u64,
}

/// The ingest time the fill gives event `i` of `events` spread over `span_ms` from `start`.
pub fn fill_time_ms(start: u64, span_ms: u64, i: u64, events: u64) -> u64 {
    if events == 0 {
        return start;
    }
    start + (i as u128 * span_ms as u128 / events as u128) as u64
}

/// A random window start so that `[start, start + window)` lies within `[first, last]`
/// (or starts at `first` when the log spans less than a window).
pub fn window_start(rng: &mut impl Rng, first: u64, last: u64, window_ms: u64) -> u64 {
    let latest = last.saturating_sub(window_ms).max(first);
    rng.gen_range(first..=latest)
}

/// `(min, p50, max)` of some counts (zeros when there are none).
pub fn spread(counts: &mut [u64]) -> (u64, u64, u64) {
    if counts.is_empty() {
        return (0, 0, 0);
    }
    counts.sort_unstable();
    (
        counts[0],
        counts[counts.len() / 2],
        counts[counts.len() - 1],
    )
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?)
}

fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros().max(1) as u64
}

/// Runs `bench query`.
pub fn run(a: QueryArgs) -> anyhow::Result<ExitCode> {
    if a.events == 0 || a.fill_batch == 0 || a.limit == 0 || a.window_seconds == 0 {
        bail!("--events, --fill-batch, --limit and --window-seconds must be at least 1");
    }
    let tmp;
    let dir = match &a.keep {
        Some(k) => k.clone(),
        None => {
            tmp = bench_dir(a.data_dir.as_deref(), "eventbus-query-")?;
            tmp.path().join("set")
        }
    };
    let span_ms = (a.span_hours * 3_600_000.0) as u64;
    let now = Arc::new(AtomicU64::new(FILL_START_MS));
    let clock_now = now.clone();
    let opts = LogOptions {
        persist: PersistPolicy::Never,
        max_segment_bytes: a.max_segment_bytes,
        clock: Arc::new(move || clock_now.load(Ordering::SeqCst)),
        ..LogOptions::default()
    };

    // Fill.
    let log = EventLog::open(&dir, opts.clone())?;
    let have = log.next_offset();
    let fill_seconds = if have < a.events {
        eprintln!(
            "bench query: writing {} events of {} B over {} h to {}",
            a.events - have,
            a.payload_bytes,
            a.span_hours,
            dir.display()
        );
        let started = Instant::now();
        let mut ev = sample_event(0, a.payload_bytes);
        let mut i = have;
        while i < a.events {
            let n = (a.events - i).min(a.fill_batch);
            let mut batch = Vec::with_capacity(n as usize);
            for j in i..i + n {
                ev.id = format!("bench-{j:012}");
                batch.push(encode_event(&ev)?);
            }
            now.store(
                fill_time_ms(FILL_START_MS, span_ms, i, a.events),
                Ordering::SeqCst,
            );
            log.submit_encoded(batch)?.wait()?;
            i += n;
        }
        log.sync_blocking()?;
        Some(round3(started.elapsed().as_secs_f64()))
    } else {
        None
    };
    let stats = log.stats();
    let (Some(first_t), Some(last_t)) = (stats.first_time_ms, stats.last_time_ms) else {
        bail!("the log at {} is empty", dir.display());
    };
    eprintln!(
        "bench query: {} events in {} segments ({:.1} GiB), {} {}-second windows",
        stats.records,
        stats.segments,
        stats.bytes as f64 / (1u64 << 30) as f64,
        a.queries,
        a.window_seconds
    );

    // Time-range queries, as the HTTP handler does them.
    let mut rng = StdRng::seed_from_u64(a.seed);
    let window_ms = a.window_seconds * 1000;
    let mut h = histogram()?;
    let mut returned = Vec::with_capacity(a.queries);
    for _ in 0..a.queries {
        let start = window_start(&mut rng, first_t, last_t, window_ms);
        let end = start + window_ms;
        let t = Instant::now();
        let from = log.offset_at_time(start)?;
        let mut reader = log.read_from(from);
        let mut n = 0u64;
        while let ReadOutcome::Record(r) = reader.next()? {
            if r.ingest_time_ms >= end {
                break;
            }
            std::hint::black_box(r.event.to_json());
            n += 1;
            if n as usize == a.limit {
                break;
            }
        }
        h.record(micros(t))?;
        returned.push(n);
    }
    let (rmin, rp50, rmax) = spread(&mut returned);
    println!(
        "{}",
        json!({
            "workload": "query", "test": "time-range", "events": stats.records,
            "segments": stats.segments, "log_bytes": stats.bytes,
            "payload_bytes": a.payload_bytes, "span_hours": a.span_hours,
            "fill_seconds": fill_seconds, "window_seconds": a.window_seconds,
            "limit": a.limit, "queries": a.queries,
            "p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99),
            "max_us": h.max(),
            "events_per_query_min": rmin, "events_per_query_p50": rp50,
            "events_per_query_max": rmax, "seed": a.seed,
        })
    );

    // Id lookups. Delete any index an earlier run left, so the first lookup builds them all.
    let mut removed = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if parse_ids_name(&entry.file_name().to_string_lossy()).is_some() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        eprintln!("bench query: deleted {removed} .ids files of an earlier run");
    }
    drop(log);
    let log = EventLog::open(&dir, opts.clone())?;
    let id_of = |rng: &mut StdRng| format!("bench-{:012}", rng.gen_range(0..stats.next_offset));
    let first_id = id_of(&mut rng);
    let t = Instant::now();
    let found = log.find_by_id(&first_id)?;
    let build_ms = t.elapsed().as_secs_f64() * 1000.0;
    if found.len() != 1 {
        bail!("{first_id}: {} events found, 1 expected", found.len());
    }
    let built = log.id_index_stats();
    let ids_bytes: u64 = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| parse_ids_name(&e.file_name().to_string_lossy()).is_some())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mut hit = histogram()?;
    let mut miss = histogram()?;
    for k in 0..a.lookups {
        let id = id_of(&mut rng);
        let t = Instant::now();
        let found = log.find_by_id(&id)?;
        hit.record(micros(t))?;
        if found.len() != 1 || found[0].event.id != id {
            bail!("{id}: {} events found, 1 expected", found.len());
        }
        let absent = format!("absent-{k:012}");
        let t = Instant::now();
        let found = log.find_by_id(&absent)?;
        miss.record(micros(t))?;
        if !found.is_empty() {
            bail!("{absent}: found {} events", found.len());
        }
    }
    drop(log);
    let log = EventLog::open(&dir, opts)?;
    let id = id_of(&mut rng);
    let t = Instant::now();
    let found = log.find_by_id(&id)?;
    let reload_ms = t.elapsed().as_secs_f64() * 1000.0;
    if found.len() != 1 {
        bail!(
            "{id}: {} events found after reopen, 1 expected",
            found.len()
        );
    }
    let reloaded = log.id_index_stats();
    log.close()?;
    println!(
        "{}",
        json!({
            "workload": "query", "test": "id-lookup", "events": stats.records,
            "segments": stats.segments,
            "build_ms": round3(build_ms), "ids_files_built": built.files_built,
            "ids_bytes": ids_bytes, "active_records_scanned": built.active_records_scanned,
            "lookups": a.lookups,
            "p50_us": hit.value_at_quantile(0.5), "p99_us": hit.value_at_quantile(0.99),
            "max_us": hit.max(),
            "absent_p50_us": miss.value_at_quantile(0.5),
            "absent_p99_us": miss.value_at_quantile(0.99),
            "reopen_first_lookup_ms": round3(reload_ms),
            "ids_files_loaded": reloaded.files_loaded,
            "max_rss_mib": max_rss_mib(), "seed": a.seed,
        })
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_times_spread_evenly_and_never_pass_the_span() {
        let day = 86_400_000;
        assert_eq!(fill_time_ms(5, day, 0, 10_000_000), 5);
        // 10 M events over 24 h: one every 8.64 ms.
        assert_eq!(fill_time_ms(0, day, 100, 10_000_000), 864);
        assert_eq!(fill_time_ms(0, day, 5_000_000, 10_000_000), day / 2);
        assert!(fill_time_ms(0, day, 9_999_999, 10_000_000) < day);
        // No overflow with large spans and counts.
        assert_eq!(fill_time_ms(0, u64::MAX / 2, 3, 6), u64::MAX / 4);
        assert_eq!(fill_time_ms(7, day, 0, 0), 7);
    }

    #[test]
    fn windows_lie_inside_the_log_or_start_at_its_beginning() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            let s = window_start(&mut rng, 1_000, 200_000, 60_000);
            assert!((1_000..=140_000).contains(&s), "{s}");
        }
        assert_eq!(window_start(&mut rng, 1_000, 30_000, 60_000), 1_000);
    }

    #[test]
    fn spread_is_min_median_max() {
        assert_eq!(spread(&mut []), (0, 0, 0));
        assert_eq!(spread(&mut [5, 1, 9, 3, 7]), (1, 5, 9));
    }
}
