//! `GET /metrics`: the Prometheus text format, encoded by `prometheus-client`.
//!
//! The figures live where they are measured (the log's writer counters and fsync histogram,
//! the delivery engine's per-binding atomics, the ingest counters here); a scrape takes a
//! snapshot of them and encodes it through a one-off [`Collector`]. Nothing is locked on the
//! hot paths beyond one short mutex per put request for the per-set ingest entry.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `eventbus_ingest_requests_total` | counter | set |
//! | `eventbus_ingest_events_total` | counter | set, outcome = accepted / failed / duplicate |
//! | `eventbus_ingest_latency_seconds` | histogram | set (put request, fsync included) |
//! | `eventbus_log_fsync_latency_seconds` | histogram | set |
//! | `eventbus_log_events`, `eventbus_log_bytes`, `eventbus_log_next_offset` | gauge | set |
//! | `eventbus_log_group_commits_total` | counter | set |
//! | `eventbus_binding_lag`, `_in_flight`, `_retrying`, `_dead_letters` | gauge | set, rule, target |
//! | `eventbus_binding_delivered_total`, `_failed_attempts_total`, `_dropped_total`, `_lost_to_retention_total` | counter | set, rule, target |
//! | `eventbus_binding_delivery_latency_seconds` | histogram | set, rule, target |
//! | `eventbus_binding_state` | gauge (1) | set, rule, target, state |
//! | `eventbus_http_requests_total` | counter | method, route, status |

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::error::{ApiError, ApiResult, codes};
use super::{AppState, blocking};
use crate::delivery::BindingMetrics;
use crate::metrics::{HistogramSnapshot, LatencyHistogram};
use crate::store::{LogStats, WriterStats};

/// Ingest figures of one set.
#[derive(Debug, Default)]
struct IngestStats {
    requests: u64,
    accepted: u64,
    failed: u64,
    duplicates: u64,
    latency: Arc<LatencyHistogram>,
}

/// Requests of one route by (method, status).
type RouteCounts = HashMap<(axum::http::Method, u16), u64>;

/// Counters kept by the HTTP layer.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    ingest: Mutex<HashMap<String, IngestStats>>,
    /// route → (method, status) → requests. Looked up by `&str` first, so a request on a
    /// known route allocates nothing.
    http: Mutex<HashMap<String, RouteCounts>>,
}

impl ApiMetrics {
    /// Records one put request.
    pub fn ingest(&self, set: &str, accepted: u64, failed: u64, duplicates: u64, took: Duration) {
        let latency = {
            let mut m = self.ingest.lock().unwrap_or_else(|p| p.into_inner());
            let s = match m.get_mut(set) {
                Some(s) => s,
                None => m.entry(set.to_string()).or_default(),
            };
            s.requests += 1;
            s.accepted += accepted;
            s.failed += failed;
            s.duplicates += duplicates;
            s.latency.clone()
        };
        latency.observe(took);
    }

    /// Records one HTTP request.
    pub fn http_request(&self, method: &axum::http::Method, route: &str, status: u16) {
        let mut m = self.http.lock().unwrap_or_else(|p| p.into_inner());
        let per_route = match m.get_mut(route) {
            Some(r) => r,
            None => m.entry(route.to_string()).or_default(),
        };
        *per_route.entry((method.clone(), status)).or_insert(0) += 1;
    }
}

struct SetFigures {
    name: String,
    stats: LogStats,
    writer: WriterStats,
    fsync: HistogramSnapshot,
    ingest: Option<(u64, u64, u64, u64, HistogramSnapshot)>,
}

/// One scrape's figures.
struct Snapshot {
    sets: Vec<SetFigures>,
    bindings: Vec<BindingMetrics>,
    http: Vec<((String, String, u16), u64)>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

/// Renders the Prometheus text for the current state.
pub async fn render(st: &AppState) -> ApiResult<String> {
    let sets = blocking(st, |bus| {
        bus.catalog()
            .list_sets()?
            .into_iter()
            .map(|meta| {
                let (stats, writer, fsync) = bus.log_metrics(&meta.name)?;
                Ok((meta.name, stats, writer, fsync))
            })
            .collect::<crate::Result<Vec<_>>>()
    })
    .await?;
    let bindings = st.inner.engine.metrics().await;
    let ingest = st
        .inner
        .metrics
        .ingest
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let sets = sets
        .into_iter()
        .map(|(name, stats, writer, fsync)| SetFigures {
            ingest: ingest.get(&name).map(|i| {
                (
                    i.requests,
                    i.accepted,
                    i.failed,
                    i.duplicates,
                    i.latency.snapshot(),
                )
            }),
            name,
            stats,
            writer,
            fsync,
        })
        .collect();
    drop(ingest);
    let http = st
        .inner
        .metrics
        .http
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .flat_map(|(route, per)| {
            per.iter()
                .map(|((method, status), n)| ((method.to_string(), route.clone(), *status), *n))
        })
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        sets,
        bindings,
        http,
    }));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).map_err(|e| {
        tracing::error!("encoding metrics: {e}");
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "internal error; see the server log",
        )
    })?;
    Ok(out)
}

/// A histogram snapshot as a metric `prometheus-client` can encode.
#[derive(Debug)]
struct Hist<'a>(&'a HistogramSnapshot);

impl EncodeMetric for Hist<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        // The encoder takes per-bucket counts and accumulates them itself; the snapshot's
        // are already cumulative.
        let mut below = 0;
        let per_bucket: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .map(|&(bound, cumulative)| {
                let n = cumulative - below;
                below = cumulative;
                (bound, n)
            })
            .collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.sum_s,
            self.0.count,
            &per_bucket,
            None,
        )
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes one metric family: `rows` of (labels, value).
fn family<'a, V>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, V)>,
    mut write: impl FnMut(prometheus_client::encoding::MetricEncoder, V) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        write(m.encode_family(&labels)?, v)?;
    }
    Ok(())
}

fn gauge(m: prometheus_client::encoding::MetricEncoder, v: u64) -> std::fmt::Result {
    let mut m = m;
    m.encode_gauge(&v)
}

fn counter(m: prometheus_client::encoding::MetricEncoder, v: u64) -> std::fmt::Result {
    let mut m = m;
    m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)
}

fn hist(m: prometheus_client::encoding::MetricEncoder, h: &HistogramSnapshot) -> std::fmt::Result {
    Hist(h).encode(m)
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge, Histogram};
        let sets = &self.sets;
        let ingest = sets
            .iter()
            .filter_map(|s| s.ingest.as_ref().map(|i| (s, i)));
        family(
            &mut enc,
            "eventbus_ingest_requests",
            "Put requests",
            Counter,
            ingest.clone().map(|(s, i)| (set_labels(s), i.0)),
            counter,
        )?;
        family(
            &mut enc,
            "eventbus_ingest_events",
            "Events in put requests by outcome",
            Counter,
            ingest.clone().flat_map(|(s, i)| {
                [("accepted", i.1), ("failed", i.2), ("duplicate", i.3)]
                    .into_iter()
                    .map(move |(o, v)| (vec![("set", s.name.as_str()), ("outcome", o)], v))
            }),
            counter,
        )?;
        family(
            &mut enc,
            "eventbus_ingest_latency_seconds",
            "Put request handling time, durable append included",
            Histogram,
            ingest.map(|(s, i)| (set_labels(s), &i.4)),
            hist,
        )?;
        family(
            &mut enc,
            "eventbus_log_fsync_latency_seconds",
            "fdatasync of the active segment",
            Histogram,
            sets.iter().map(|s| (set_labels(s), &s.fsync)),
            hist,
        )?;
        family(
            &mut enc,
            "eventbus_log_group_commits",
            "Group commits written",
            Counter,
            sets.iter().map(|s| (set_labels(s), s.writer.commits)),
            counter,
        )?;
        family(
            &mut enc,
            "eventbus_log_events",
            "Events stored",
            Gauge,
            sets.iter().map(|s| (set_labels(s), s.stats.records)),
            gauge,
        )?;
        family(
            &mut enc,
            "eventbus_log_bytes",
            "Bytes of segment files",
            Gauge,
            sets.iter().map(|s| (set_labels(s), s.stats.bytes)),
            gauge,
        )?;
        family(
            &mut enc,
            "eventbus_log_next_offset",
            "Offset the next event gets",
            Gauge,
            sets.iter().map(|s| (set_labels(s), s.stats.next_offset)),
            gauge,
        )?;

        let b = &self.bindings;
        let per = |f: fn(&BindingMetrics) -> u64| b.iter().map(move |m| (binding_labels(m), f(m)));
        family(
            &mut enc,
            "eventbus_binding_lag",
            "Events at or after the cursor",
            Gauge,
            per(|m| m.status.lag),
            gauge,
        )?;
        family(
            &mut enc,
            "eventbus_binding_in_flight",
            "Events in requests in flight",
            Gauge,
            per(|m| m.status.in_flight),
            gauge,
        )?;
        family(
            &mut enc,
            "eventbus_binding_retrying",
            "Events waiting for a retry",
            Gauge,
            per(|m| m.status.retrying),
            gauge,
        )?;
        family(
            &mut enc,
            "eventbus_binding_dead_letters",
            "Events in the dead-letter queue",
            Gauge,
            per(|m| m.status.dead_lettered),
            gauge,
        )?;
        family(
            &mut enc,
            "eventbus_binding_delivered",
            "Events delivered since start",
            Counter,
            per(|m| m.status.delivered),
            counter,
        )?;
        family(
            &mut enc,
            "eventbus_binding_failed_attempts",
            "Failed delivery requests since start",
            Counter,
            per(|m| m.status.failed_attempts),
            counter,
        )?;
        family(
            &mut enc,
            "eventbus_binding_dropped",
            "Events given up (dead_letter.mode = drop)",
            Counter,
            per(|m| m.status.dropped),
            counter,
        )?;
        family(
            &mut enc,
            "eventbus_binding_lost_to_retention",
            "Events retention removed before delivery",
            Counter,
            per(|m| m.status.lost_to_retention),
            counter,
        )?;
        family(
            &mut enc,
            "eventbus_binding_delivery_latency_seconds",
            "Duration of delivery requests",
            Histogram,
            b.iter().map(|m| (binding_labels(m), &m.latency)),
            hist,
        )?;
        family(
            &mut enc,
            "eventbus_binding_state",
            "1 for the binding's current state",
            Gauge,
            b.iter().map(|m| {
                let mut l = binding_labels(m);
                l.push(("state", m.status.state.as_str()));
                (l, 1u64)
            }),
            gauge,
        )?;

        let codes: Vec<String> = self
            .http
            .iter()
            .map(|((_, _, s), _)| s.to_string())
            .collect();
        family(
            &mut enc,
            "eventbus_http_requests",
            "HTTP requests by route and status",
            Counter,
            self.http
                .iter()
                .zip(&codes)
                .map(|(((method, route, _), n), code)| {
                    (
                        vec![
                            ("method", method.as_str()),
                            ("route", route.as_str()),
                            ("status", code.as_str()),
                        ],
                        *n,
                    )
                }),
            counter,
        )?;
        Ok(())
    }
}

fn set_labels(s: &SetFigures) -> Labels<'_> {
    vec![("set", s.name.as_str())]
}

fn binding_labels(m: &BindingMetrics) -> Labels<'_> {
    vec![
        ("set", m.id.set.as_str()),
        ("rule", m.id.rule.as_str()),
        ("target", m.id.target.as_str()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_histograms_are_cumulative_once_and_end_at_the_count() {
        let h = LatencyHistogram::default();
        for ms in [1, 1, 3, 40] {
            h.observe(Duration::from_millis(ms));
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot {
            sets: vec![SetFigures {
                name: "orders".into(),
                stats: LogStats::default(),
                writer: WriterStats::default(),
                fsync: h.snapshot(),
                ingest: None,
            }],
            bindings: Vec::new(),
            http: Vec::new(),
        }));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        let value = |le: &str| -> u64 {
            let key =
                format!("eventbus_log_fsync_latency_seconds_bucket{{set=\"orders\",le=\"{le}\"}} ");
            let line = out.lines().find(|l| l.starts_with(&key)).expect(&key);
            line[key.len()..].parse().unwrap()
        };
        assert_eq!(value("0.0001"), 0, "{out}");
        assert_eq!(value("0.001"), 2, "{out}");
        assert_eq!(value("0.005"), 3, "{out}");
        assert_eq!(value("0.05"), 4, "{out}");
        assert_eq!(value("+Inf"), 4, "{out}");
        assert!(
            out.contains("eventbus_log_fsync_latency_seconds_count{set=\"orders\"} 4"),
            "{out}"
        );
    }
}
