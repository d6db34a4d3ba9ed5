//! Lock-free latency histograms shared by the layers that measure (the log's fsyncs, delivery
//! requests, HTTP ingest) and the one that reports them (`GET /metrics`, in `api::metrics`).
//!
//! Observing is a few relaxed atomic adds, so the hot paths (group commit, every delivery
//! request) pay no lock. Buckets are fixed Prometheus-style upper bounds in seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (a final `+Inf` bucket is implied).
pub const LATENCY_BUCKETS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A cumulative latency histogram (Prometheus semantics: counts never decrease).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A point-in-time copy of a [`LatencyHistogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of all observations, seconds.
    pub sum_s: f64,
    /// Number of observations.
    pub count: u64,
    /// `(upper bound in seconds, cumulative count)`, ending with `(+Inf, count)`.
    pub buckets: Vec<(f64, u64)>,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS_S
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS_S.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The current figures, with cumulative buckets.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_S.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let bound = LATENCY_BUCKETS_S.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            // The bucket total, not `count`: a scrape between the two adds of an observation
            // must still see `+Inf == count`.
            count: cumulative,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_count() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(50)); // first bucket
        h.observe(Duration::from_millis(1)); // exactly the 1 ms bound: counted in it
        h.observe(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0001, 1));
        let one_ms = s.buckets.iter().find(|(b, _)| *b == 0.001).unwrap();
        assert_eq!(one_ms.1, 2);
        assert_eq!(s.buckets[s.buckets.len() - 2], (10.0, 2));
        assert_eq!(*s.buckets.last().unwrap(), (f64::INFINITY, 3));
        assert!((s.sum_s - 60.00105).abs() < 1e-9);
    }
}
