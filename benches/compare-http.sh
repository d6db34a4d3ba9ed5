#!/usr/bin/env bash
# The HTTP ingest goal of docs/BENCHMARKS.md, measured the way it is stated: eventbus
# `bench append --mode http` (64 connections, one 1 KiB event per request, `persist = always`)
# against Redis Streams XADD from ../shared/tools/peers (64 connections, appendfsync always),
# and `--mode http-batch` (10 events per request), in one run of one script with the runs
# interleaved (eventbus, Redis, eventbus batch, eventbus, Redis, ...) so that a slow moment of the
# VM's disk or CPU hits both sides.
#   RUNS=7 EVENTS=200000 benches/compare-http.sh
# EVENTS defaults to the peers tool's own default (200000 messages). Every result is a JSON line
# on stdout; medians, ranges and the ratios go to stderr. Needs redis-server on PATH (Debian:
# apt-get install redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
EVENTS=${EVENTS:-200000}
PEERS_SRC=${PEERS_SRC:-../shared/tools/peers}
command -v redis-server >/dev/null || { echo "redis-server is not on PATH" >&2; exit 2; }
[ -d "$PEERS_SRC" ] || { echo "no peers tool at $PEERS_SRC" >&2; exit 2; }
out=$(mktemp)
cargo build --release --quiet
eb=target/release/eventbus
# Build a private copy: the shared folder stays untouched.
peers_dir=${PEERS_DIR:-/tmp/eventbus-peers}
mkdir -p "$peers_dir" && cp -r "$PEERS_SRC"/. "$peers_dir"/
(cd "$peers_dir" && cargo build --release --quiet)
for _ in $(seq "$RUNS"); do
    $eb bench append --mode http --events "$EVENTS" 2>/dev/null | tee -a "$out"
    "$peers_dir/target/release/peers" --peer redis --messages "$EVENTS" 2>/dev/null \
        | grep '"append"' | tee -a "$out"
    $eb bench append --mode http-batch --events "$((EVENTS * 3 / 2))" 2>/dev/null | tee -a "$out"
done

python3 - "$out" >&2 <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def summary(name, xs):
    print(f"{name}: median {statistics.median(xs):.0f}/s, range {min(xs):.0f}-{max(xs):.0f}, "
          f"{len(xs)} runs")
    return statistics.median(xs)
single = [r["events_per_s"] for r in rows if r.get("mode") == "http"]
batch = [r["events_per_s"] for r in rows if r.get("mode") == "http-batch"]
redis = [r["msgs_per_s"] for r in rows if r.get("peer") == "redis-streams"]
s, b, r = summary("eventbus http, 1 event/request", single), \
    summary("eventbus http-batch, 10 events/request", batch), summary("redis XADD", redis)
pairs = [a / c for a, c in zip(single, redis)]
print(f"single-event / redis: {s / r:.2f}x by medians; per interleaved pair "
      f"{' '.join(f'{p:.2f}' for p in pairs)} (ahead in {sum(p >= 1 for p in pairs)} of {len(pairs)})")
print(f"batch of 10 / redis: {b / r:.2f}x by medians")
cpu = [r["server_cpu_us_per_event"] for r in rows if r.get("mode") == "http"]
rcpu = [1e6 * r["server_cpu_s"] / r["messages"] for r in rows if r.get("peer") == "redis-streams"]
print(f"server CPU per event: eventbus median {statistics.median(cpu):.1f} us, "
      f"redis median {statistics.median(rcpu):.1f} us")
PY
rm -f "$out"
