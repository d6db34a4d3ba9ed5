#!/usr/bin/env bash
# Runs, in one go on this machine, everything docs/BENCHMARKS.md reports:
#   1. the disk's own limits (eventbus bench disk: write+fdatasync rounds, sequential bandwidth);
#   2. Redis Streams (appendfsync always) with the peers harness from ../shared/tools/peers;
#   3. eventbus bench append --mode embedded: 64 producers x 1 KiB, Always; then batches of 100;
#   4. eventbus bench reopen (recovery time after a torn tail; EVENTS=N to change the size).
# Every result is a JSON line on stdout; a summary with the ratios goes to stderr.
# Needs redis-server on PATH (Debian: apt-get install redis-server) for step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
EVENTS=${EVENTS:-10000000}
PEERS_SRC=${PEERS_SRC:-../shared/tools/peers}
out=$(mktemp)
cargo build --release --quiet
eb=target/release/eventbus

$eb bench disk | tee -a "$out"
if [ -d "$PEERS_SRC" ] && command -v redis-server >/dev/null; then
    # Build a private copy: the shared folder stays untouched.
    peers_dir=${PEERS_DIR:-/tmp/eventbus-peers}
    mkdir -p "$peers_dir" && cp -r "$PEERS_SRC"/. "$peers_dir"/
    (cd "$peers_dir" && cargo build --release --quiet)
    for _ in $(seq "$RUNS"); do
        "$peers_dir/target/release/peers" --peer redis 2>/dev/null | grep '"append"' | tee -a "$out"
    done
else
    echo "peers harness or redis-server missing: skipping the Redis baseline" >&2
fi
for _ in $(seq "$RUNS"); do
    $eb bench append --mode embedded 2>/dev/null | tee -a "$out"
done
$eb bench append --mode embedded --threads 2 2>/dev/null | tee -a "$out"
for _ in $(seq "$RUNS"); do
    $eb bench append --mode embedded --batch 100 --events 1000000 2>/dev/null | tee -a "$out"
done
$eb bench reopen --events "$EVENTS" 2>/dev/null | tee -a "$out"

python3 - "$out" >&2 <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = lambda xs: statistics.median(xs) if xs else float("nan")
redis = med([r["msgs_per_s"] for r in rows if r.get("peer") == "redis-streams"])
single = [r for r in rows if r.get("workload") == "append" and r.get("mode") == "embedded"
          and r["batch"] == 1 and r["producer_threads"] == 1]
batch = [r for r in rows if r.get("workload") == "append" and r.get("mode") == "embedded"
         and r["batch"] == 100]
sync = next(r for r in rows if r.get("test") == "write+fdatasync")
bw = next(r for r in rows if r.get("test") == "sequential-write")
eb1 = med([r["events_per_s"] for r in single])
limit = sync["syncs_per_s"] * 64
print(f"embedded 64x1KiB Always: median {eb1:.0f} ev/s over {len(single)} runs")
print(f"redis XADD appendfsync always: median {redis:.0f} msg/s -> ratio {eb1 / redis:.2f}x")
print(f"disk limit: {sync['syncs_per_s']:.0f} rounds/s of 64 KiB+fdatasync = {limit:.0f} ev/s "
      f"-> {100 * eb1 / limit:.0f}% reached")
mb = med([r["mb_per_s"] for r in batch])
print(f"batches of 100: median {mb:.1f} MB/s vs sequential {bw['mb_per_s']:.1f} MB/s "
      f"-> {100 * mb / bw['mb_per_s']:.0f}%")
PY
rm -f "$out"
