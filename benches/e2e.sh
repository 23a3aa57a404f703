#!/usr/bin/env bash
# End-to-end benchmark against the simulator (separate process), file sink, with the plain
# fetch baseline:
#
#   benches/e2e.sh [SESSIONS] [EVENTS_PER_SESSION] [PAGE_SIZE]
#
# Defaults: 1000 sessions × 1000 events (≈1M events), page_size 1000. Runs, against the same
# simulator process:
#   1. fetch:    examples/fetch_only — every session and event page fetched by one sequential
#                client, records not decoded (the floor the pipeline is compared with);
#   2. pipeline: `veeam-siem run --once` → file sink (decode, map, encode, write, fsync,
#                checkpoint).
# Prints one `RESULT key=value …` line per run (events, seconds, events/s, peak RSS from
# GNU time; for the pipeline also its CPU seconds, user + system, and events per CPU second)
# and the ratio pipeline/fetch. Release builds; BIN / FETCH override them.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SESSIONS=${1:-1000}
EVENTS=${2:-1000}
PAGE=${3:-1000}
BIN=${BIN:-target/release/veeam-siem}
FETCH=${FETCH:-target/release/examples/fetch_only}
[ -x "$BIN" ] || cargo build --release --locked --quiet --bin veeam-siem
[ -x "$FETCH" ] || cargo build --release --locked --quiet --example fetch_only
PORT=${PORT:-18443}
WORK=$(mktemp -d)
trap 'kill "${SIM_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_simulator "$BIN" "$PORT" "$SESSIONS" "$EVENTS" "$WORK"
TOTAL=$SIM_TOTAL
echo "simulator: $TOTAL events in $SESSIONS sessions; page_size $PAGE; $(nproc) cores"

/usr/bin/time -v "$FETCH" "https://127.0.0.1:$PORT" svc-siem sim-password "$PAGE" "$SIM_CA" \
  >"$WORK/fetch.out" 2>"$WORK/fetch.time"
fetch_s=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$WORK/fetch.out")
fetch_n=$(sed -n 's/.*events=\([0-9]*\).*/\1/p' "$WORK/fetch.out")
fetch_rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$WORK/fetch.time")
awk -v n="$fetch_n" -v t="$fetch_s" -v r="$fetch_rss" 'BEGIN {
  printf "RESULT run=fetch events=%d seconds=%.2f events_per_s=%.0f peak_rss_mib=%.1f\n", n, t, n / t, r / 1024 }'

source_toml "$WORK/state" "$PORT" "$PAGE" >"$WORK/bench.toml"
cat >>"$WORK/bench.toml" <<TOML
[sinks.archive]
type = "file"
inputs = ["bench"]
path = "$WORK/out.ndjson"
TOML

start=$(date +%s.%N)
/usr/bin/time -v "$BIN" --log-level warn run --config "$WORK/bench.toml" --once 2>"$WORK/time.txt"
end=$(date +%s.%N)
events=$(wc -l <"$WORK/out.ndjson")
[ "$events" -eq "$TOTAL" ] || { echo "delivered $events of $TOTAL events" >&2; exit 1; }
rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$WORK/time.txt")
cpu_s=$(awk -F: '/User time|System time/ {c += $2} END {print c}' "$WORK/time.txt")
awk -v n="$events" -v s="$start" -v e="$end" -v r="$rss_kb" -v f="$fetch_s" -v c="$cpu_s" 'BEGIN {
  t = e - s
  printf "RESULT run=file events=%d seconds=%.2f events_per_s=%.0f peak_rss_mib=%.1f cpu_s=%.2f events_per_cpu_s=%.0f\n", n, t, n / t, r / 1024, c, n / c
  printf "RESULT run=ratio pipeline_over_fetch=%.2f\n", t / f }'
