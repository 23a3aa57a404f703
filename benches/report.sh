#!/usr/bin/env bash
# Re-run the end-to-end benchmarks and rewrite the "Latest run" block of BENCHMARKS.md.
#
#   benches/report.sh [SESSIONS] [EVENTS_PER_SESSION]
#
# Defaults: 1000 × 1000 (≈1M events), page_size 1000: benches/e2e.sh (plain fetch and the
# file sink), then the HEC (gzip, no ack), syslog (TCP and TLS) and Kafka (tansu) scripts at
# the same size when their receivers are available. Takes several minutes; run it on an idle
# machine (the simulator shares the cores with the daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-1000}
EVENTS=${2:-1000}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) cores; $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  benches/e2e.sh "$SESSIONS" "$EVENTS" 1000
  if [ -x target/release/examples/hec_peer ] || cargo build --release --locked --quiet --example hec_peer; then
    echo "--- splunk_hec (benches/hec_e2e.sh)"
    benches/hec_e2e.sh "$SESSIONS" "$EVENTS" 1000 2>&1 | grep -E "compression|events/s|bytes" || true
  fi
  if command -v rsyslogd >/dev/null; then
    echo "--- syslog (benches/syslog_e2e.sh)"
    benches/syslog_e2e.sh "$SESSIONS" "$EVENTS" 1000 2>&1 | grep -E "events/s" || true
  fi
  if command -v tansu >/dev/null; then
    echo "--- kafka (benches/kafka_e2e.sh)"
    benches/kafka_e2e.sh "$SESSIONS" "$EVENTS" 1000 2>&1 | grep -E "events/s" || true
  fi
} | tee "$OUT"
python3 - "$OUT" <<'PY'
import re, sys
block = open(sys.argv[1]).read().rstrip("\n")
path = "BENCHMARKS.md"
text = open(path).read()
start, end = "<!-- latest-run:start -->", "<!-- latest-run:end -->"
new = f"{start}\n```text\n{block}\n```\n{end}"
text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: new, text, flags=re.S)
open(path, "w").write(text)
PY
echo "BENCHMARKS.md updated"
