#!/usr/bin/env bash
# End-to-end benchmark: simulator (separate process) → `veeam-siem run --once` → kafka sink
# → tansu (a Kafka-protocol broker, in-memory storage, separate process).
#
#   benches/kafka_e2e.sh [SESSIONS] [EVENTS_PER_SESSION] [PAGE_SIZE] [COMPRESSION]
#
# Defaults: 100 sessions × 1000 events (≈100k events), page_size 1000, compression none.
# Prints events/s of the `run --once` process (wall clock, includes TLS login, every page
# fetch and waiting for every delivery report: acks=all, idempotent) and its peak RSS (GNU
# time's "Maximum resident set size"). Needs tansu (`cargo install tansu --version 0.6.0
# --locked --features dynostore`; set TANSU to override) and the release build (set BIN to override).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SESSIONS=${1:-100}
EVENTS=${2:-1000}
PAGE=${3:-1000}
COMPRESSION=${4:-none}
BIN=${BIN:-target/release/veeam-siem}
TANSU=${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}
[ -x "$TANSU" ] || { echo "tansu not found: cargo install tansu --version 0.6.0 --locked --features dynostore" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release --quiet
PORT=${PORT:-18443}
KPORT=${KPORT:-19092}
WORK=$(mktemp -d)
trap 'kill "${SIM_PID:-}" "${TANSU_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" \
  --storage-engine memory://tansu/ >"$WORK/tansu.out" 2>&1 &
TANSU_PID=$!
start_simulator "$BIN" "$PORT" "$SESSIONS" "$EVENTS" "$WORK"
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null && break; sleep 0.1; done
grep -m1 "events:" "$WORK/sim.out"
"$TANSU" topic create --broker "tcp://127.0.0.1:$KPORT" --partitions 6 veeam.vbo_restore >/dev/null

source_toml "$WORK/state" "$PORT" "$PAGE" >"$WORK/bench.toml"
cat >>"$WORK/bench.toml" <<TOML
[sinks.bus]
type = "kafka"
inputs = ["bench"]
brokers = "127.0.0.1:$KPORT"
topic = "{dataset}"
compression = "$COMPRESSION"
TOML

start=$(date +%s.%N)
/usr/bin/time -v "$BIN" --log-level info run --config "$WORK/bench.toml" --once 2>"$WORK/run.txt"
end=$(date +%s.%N)
events=$(sed -n 's/.*events_acked=\([0-9]*\).*/\1/p' "$WORK/run.txt" | tail -1)
rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$WORK/run.txt")
awk -v n="${events:-0}" -v s="$start" -v e="$end" -v r="$rss_kb" 'BEGIN {
  t = e - s; printf "events: %d  elapsed: %.2f s  throughput: %.0f events/s  peak RSS: %.1f MiB\n", n, t, n / t, r / 1024 }'
