//! Criterion benchmarks of the append path.
//!
//! - `frame/*`: the CPU cost of framing and decoding one 1 KiB record (no I/O).
//! - `append/never/*`: appends through the writer thread without fsync (the CPU path of a
//!   group commit: encode, frame, write to the page cache, acknowledge).
//! - `append/always/1`: one producer, every append waits for its fdatasync (disk latency).
//!
//! Throughput with many concurrent producers is measured by `eventbus bench append`, which
//! reports latency percentiles and group-commit sizes; see docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventbus::cli::bench::sample_event;
use eventbus::codec::{decode_record, encode_event, record_payload};
use eventbus::store::frame::{decode_frame, encode_frame};
use eventbus::{EventLog, LogOptions, PersistPolicy};

fn frame_benches(c: &mut Criterion) {
    let event = sample_event(1, 1024);
    let payload = record_payload(42, 1_700_000_000_000, &event).expect("encode");
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("encode_event_1k", |b| {
        b.iter(|| encode_event(black_box(&event)).expect("encode"))
    });
    g.bench_function("frame_encode_1k", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&payload), &mut out);
        })
    });
    let mut framed = Vec::new();
    encode_frame(&payload, &mut framed);
    g.bench_function("frame_decode_and_record_decode_1k", |b| {
        b.iter(|| match decode_frame(black_box(&framed)) {
            eventbus::store::frame::FrameDecode::Frame { payload, .. } => {
                decode_record(payload).expect("decode")
            }
            other => panic!("bad frame {other:?}"),
        })
    });
    g.finish();
}

fn append_benches(c: &mut Criterion) {
    let event = sample_event(1, 1024);
    let mut g = c.benchmark_group("append");
    for batch in [1usize, 100] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("never/{batch}"), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = EventLog::open(
                dir.path().join("s"),
                LogOptions {
                    persist: PersistPolicy::Never,
                    ..LogOptions::default()
                },
            )
            .expect("open");
            let events = vec![event.clone(); batch];
            b.iter_batched(
                || events.clone(),
                |evs| log.append_blocking(&evs).expect("append"),
                BatchSize::SmallInput,
            );
        });
    }
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function("always/1", |b| {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EventLog::open(dir.path().join("s"), LogOptions::default()).expect("open");
        b.iter(|| {
            log.append_blocking(std::slice::from_ref(&event))
                .expect("append")
        });
    });
    g.finish();
}

criterion_group!(benches, frame_benches, append_benches);
criterion_main!(benches);
