#!/usr/bin/env bash
# End-to-end benchmark: simulator (separate process) → `veeam-siem run --once` → file sink.
#
#   benches/e2e_file.sh [SESSIONS] [EVENTS_PER_SESSION] [PAGE_SIZE]
#
# Defaults: 100 sessions × 1000 events (≈100k events), page_size 1000. Prints events/s of the
# `run --once` process (wall clock, includes TLS login and every page fetch) and its peak RSS
# (GNU time's "Maximum resident set size"). Uses the release build; set BIN to override.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-100}
EVENTS=${2:-1000}
PAGE=${3:-1000}
BIN=${BIN:-target/release/veeam-siem}
[ -x "$BIN" ] || cargo build --release --quiet
PORT=${PORT:-18443}
WORK=$(mktemp -d)
trap 'kill "${SIM_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" simulate --listen "127.0.0.1:$PORT" --sessions "$SESSIONS" \
  --events-per-session "$EVENTS" --write-ca "$WORK/ca.pem" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/ca.pem" ] && break; sleep 0.1; done
grep -m1 "events:" "$WORK/sim.out" || true

cat >"$WORK/bench.toml" <<TOML
[state]
dir = "$WORK/state"
[sources.bench]
type = "vbo"
url = "https://127.0.0.1:$PORT"
username = "svc-siem"
password = "sim-password"
page_size = $PAGE
start_time = "2000-01-01T00:00:00Z"
tls = { ca_file = "$WORK/ca.pem" }
[sinks.archive]
type = "file"
inputs = ["bench"]
path = "$WORK/out.ndjson"
TOML

start=$(date +%s.%N)
/usr/bin/time -v "$BIN" --log-level warn run --config "$WORK/bench.toml" --once 2>"$WORK/time.txt"
end=$(date +%s.%N)
events=$(wc -l <"$WORK/out.ndjson")
rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$WORK/time.txt")
awk -v n="$events" -v s="$start" -v e="$end" -v r="$rss_kb" 'BEGIN {
  t = e - s; printf "events: %d  elapsed: %.2f s  throughput: %.0f events/s  peak RSS: %.1f MiB\n", n, t, n / t, r / 1024 }'
