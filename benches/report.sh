#!/usr/bin/env bash
# Re-run the end-to-end benchmarks and rewrite the "Latest run" block of BENCHMARKS.md.
#
#   benches/report.sh [SESSIONS] [EVENTS_PER_SESSION]
#
# Defaults: 1000 × 1000 (≈1M events), page_size 1000: benches/e2e.sh (plain fetch and the
# file sink), then the syslog (TCP and TLS) and Kafka (tansu) scripts at the same size when
# their receivers are available ("Latest run" block), then benches/hec_e2e.sh at 200k
# events ("HEC leg" block). `ONLY=hec benches/report.sh` runs the HEC part alone. Takes
# several minutes; run it on an idle machine (the simulator shares the cores with the
# daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-1000}
EVENTS=${2:-1000}
OUT=$(mktemp)
HEC_OUT=$(mktemp)
trap 'rm -f "$OUT" "$HEC_OUT"' EXIT
TARGET=${CARGO_TARGET_DIR:-target}
header() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) cores; $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
}
# The HEC leg at the set-up of issue 17 (200k events, page_size 1000, HTTPS source): file
# alone, HEC alone (none, gzip), file + HEC, HEC with indexer ack at a 100 ms ack latency.
hec() {
  header
  [ -x "$TARGET/release/examples/hec_peer" ] || cargo build --release --locked --quiet --example hec_peer
  benches/hec_e2e.sh 200 1000 1000 2>&1 | grep -E "^RESULT|events:" || true
}
if [ "${ONLY:-}" != hec ]; then
  {
    header
    benches/e2e.sh "$SESSIONS" "$EVENTS" 1000
    if command -v rsyslogd >/dev/null; then
      echo "--- syslog (benches/syslog_e2e.sh)"
      benches/syslog_e2e.sh "$SESSIONS" "$EVENTS" 1000 2>&1 | grep -E "events/s" || true
    fi
    if command -v tansu >/dev/null; then
      echo "--- kafka (benches/kafka_e2e.sh)"
      benches/kafka_e2e.sh "$SESSIONS" "$EVENTS" 1000 2>&1 | grep -E "events/s" || true
    fi
  } | tee "$OUT"
fi
hec | tee "$HEC_OUT"
python3 - "$OUT" "$HEC_OUT" <<'PY2'
import re, sys
path = "BENCHMARKS.md"
text = open(path).read()
for name, out in (("latest-run", sys.argv[1]), ("hec-run", sys.argv[2])):
    block = open(out).read().rstrip("\n")
    if not block:
        continue
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    new = f"{start}\n```text\n{block}\n```\n{end}"
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: new, text, flags=re.S)
open(path, "w").write(text)
PY2
echo "BENCHMARKS.md updated"
