#!/usr/bin/env bash
# End-to-end benchmark of the compliance archive: the simulator (separate process), then
#   1. `veeam-siem run --once` → archive sink (map, encode, gzip per batch, fsync, seal,
#      sign), events/s and daemon CPU seconds;
#   2. `veeam-siem verify` over the result, MB/s of uncompressed content checked (and of
#      compressed bytes read).
#
#   benches/archive_e2e.sh [SESSIONS] [EVENTS_PER_SESSION] [PAGE_SIZE]
#
# Defaults: 200 sessions × 1000 events (200k events), page_size 1000. Release build; BIN
# overrides it. Prints `RESULT key=value …` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SESSIONS=${1:-200}
EVENTS=${2:-1000}
PAGE=${3:-1000}
BIN=${BIN:-target/release/veeam-siem}
[ -x "$BIN" ] || cargo build --release --locked --quiet --bin veeam-siem
PORT=${PORT:-18445}
WORK=$(mktemp -d)
trap 'kill "${SIM_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_simulator "$BIN" "$PORT" "$SESSIONS" "$EVENTS" "$WORK"
TOTAL=$SIM_TOTAL
echo "simulator: $TOTAL events in $SESSIONS sessions; page_size $PAGE; $(nproc) cores"

openssl genpkey -algorithm ed25519 -out "$WORK/archive.pem" 2>/dev/null
openssl pkey -in "$WORK/archive.pem" -pubout -out "$WORK/archive.pub.pem"
source_toml "$WORK/state" "$PORT" "$PAGE" >"$WORK/bench.toml"
cat >>"$WORK/bench.toml" <<TOML
[sinks.evidence]
type = "archive"
inputs = ["bench"]
path = "$WORK/archive"
signing_key_file = "$WORK/archive.pem"
TOML

start=$(date +%s.%N)
/usr/bin/time -v "$BIN" run --once --config "$WORK/bench.toml" 2>"$WORK/run.err" >/dev/null
end=$(date +%s.%N)
cpu=$(awk -F: '/User time|System time/ {s += $2} END {print s}' "$WORK/run.err")
rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$WORK/run.err")
awk -v n="$TOTAL" -v s="$start" -v e="$end" -v c="$cpu" -v r="$rss" 'BEGIN {
  printf "RESULT run=archive events=%d seconds=%.2f events_per_s=%.0f cpu_s=%.2f peak_rss_mib=%.1f\n", n, e - s, n / (e - s), c, r / 1024 }'

compressed=$(du -sb "$WORK/archive" | cut -f1)
start=$(date +%s.%N)
"$BIN" verify "$WORK/archive" --public-key "$WORK/archive.pub.pem" --format json >"$WORK/verify.json"
end=$(date +%s.%N)
bytes=$(sed -n 's/.*"bytes": \([0-9]*\).*/\1/p' "$WORK/verify.json")
awk -v b="$bytes" -v c="$compressed" -v s="$start" -v e="$end" 'BEGIN {
  printf "RESULT run=verify uncompressed_mb=%.1f compressed_mb=%.1f seconds=%.2f uncompressed_mb_per_s=%.0f compressed_mb_per_s=%.0f\n", b / 1e6, c / 1e6, e - s, b / 1e6 / (e - s), c / 1e6 / (e - s) }'
