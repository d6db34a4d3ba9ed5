//! Criterion benchmarks of event-pattern matching, on the cloud-service workload of
//! `eventbus::cli::bench::match_workload` (the one `eventbus bench match` runs).
//!
//! - `match_set/N`: [`PatternSet::matching`] of one event against N rules (1, 100, 1 000,
//!   10 000), rotating over 1 024 pre-parsed events. Timed: flattening the event along the
//!   set's paths, the index look-ups, evaluating the candidates, and the result vector. Not
//!   timed: parsing the event JSON and building the set.
//! - `pattern/*`: parsing one typical rule, and [`Pattern::matches`] of a single pattern on
//!   a matching and a non-matching event.
//!
//! Throughput is in events. See docs/BENCHMARKS.md ("Pattern matching").

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventbus::cli::bench::match_workload::{cloud_events, cloud_rules, cloud_rules_scoped};
use eventbus::pattern::{Pattern, PatternSet};
use serde_json::json;

const EVENTS: usize = 1024;
const SEED: u64 = 1;

fn set_benches(c: &mut Criterion) {
    let events = cloud_events(EVENTS, SEED);
    // `match_set`: the same rule mix at every size; `match_set_scoped`: the first 100 rules
    // the same, then only resource- and team-scoped rules (matches per event stay level).
    for (group, rules, sizes) in [
        (
            "match_set",
            cloud_rules(10_000, SEED),
            &[1usize, 100, 1_000, 10_000][..],
        ),
        (
            "match_set_scoped",
            cloud_rules_scoped(10_000, SEED),
            &[1_000, 10_000][..],
        ),
    ] {
        set_group(c, group, &events, &rules, sizes);
    }
}

fn set_group(
    c: &mut Criterion,
    group: &str,
    events: &[serde_json::Value],
    rules: &[serde_json::Value],
    sizes: &[usize],
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    for &n in sizes {
        let patterns: Vec<Pattern> = rules[..n]
            .iter()
            .map(|r| Pattern::parse(r).expect("generated rules parse"))
            .collect();
        let set = PatternSet::new(patterns.iter().enumerate());
        g.bench_with_input(BenchmarkId::from_parameter(n), &set, |b, set| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % EVENTS;
                set.matching(black_box(&events[i])).len()
            })
        });
    }
    g.finish();
}

fn pattern_benches(c: &mut Criterion) {
    // The shape of most cloud-service rules: source, types, and instances to leave out.
    let rule = json!({
        "source": "cvm.cloud.tencent",
        "type": ["cvm:ErrorEvent:PingUnreachable", "cvm:ErrorEvent:DiskReadonly"],
        "subject": [{"anything-but": ["ins-jy9g0ekp", "ins-cipufxfl"]}],
        "data": {"ip": [{"cidr": "10.0.0.0/8"}]}
    });
    let pattern = Pattern::parse(&rule).expect("parse");
    let events = cloud_events(EVENTS, SEED);
    let hit = events
        .iter()
        .find(|e| pattern.matches(e))
        .cloned()
        .unwrap_or_else(|| {
            let mut e = events[0].clone();
            e["source"] = json!("cvm.cloud.tencent");
            e["type"] = json!("cvm:ErrorEvent:PingUnreachable");
            e
        });
    assert!(pattern.matches(&hit), "no event matches the sample rule");
    let miss = events
        .iter()
        .find(|e| e["source"] == "cvm.cloud.tencent" && !pattern.matches(e))
        .expect("a CVM event of another type")
        .clone();
    let mut g = c.benchmark_group("pattern");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| b.iter(|| Pattern::parse(black_box(&rule))));
    g.bench_function("matches_hit", |b| {
        b.iter(|| pattern.matches(black_box(&hit)))
    });
    g.bench_function("matches_miss", |b| {
        b.iter(|| pattern.matches(black_box(&miss)))
    });
    g.finish();
}

criterion_group!(benches, set_benches, pattern_benches);
criterion_main!(benches);
