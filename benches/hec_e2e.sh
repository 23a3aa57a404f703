#!/usr/bin/env bash
# End-to-end benchmark of the Splunk HEC sink: simulator (separate process) →
# `veeam-siem run --once` → the HEC test peer (`examples/hec_peer.rs`, separate process).
#
#   benches/hec_e2e.sh [SESSIONS] [EVENTS_PER_SESSION] [PAGE_SIZE]
#
# Defaults: 200 sessions × 1000 events (≈200k events), page_size 1000, HTTPS source: the
# set-up of issue 17. Runs the configurations in RUNS (default: all of them) against a
# fresh peer each, and prints one `RESULT` line per run: events/s of the `run --once`
# process (wall clock, includes the TLS login to the simulator and every page fetch), the
# daemon's CPU (user + system; `sys_s` the system part) and peak RSS (GNU time), bytes on the wire per event
# (request bodies as received by the peer) and the peer's duplicate count.
#
#   file           the file sink alone (the rest of the pipeline, for comparison)
#   hec-none       HEC, no compression, no indexer ack
#   hec-gzip       HEC, gzip, no indexer ack
#   file+hec-gzip  the file sink and HEC (gzip, no ack) reading the same source
#   hec-gzip-ack   HEC, gzip, indexer ack; the peer confirms each ackId after ACK_DELAY
#
# Environment: RUNS (space-separated subset of the above), ACK_DELAY (default 100ms),
# ANSWER_DELAY (default 0s: the peer answers each event POST this much later, a HEC far
# away; e.g. `ANSWER_DELAY=100ms benches/hec_e2e.sh 1000 12` for many small sessions),
# SIM_BIN (the simulator's binary, default BIN),
# ACK_POLL (sink: ack_poll_interval, default: the sink's default), HEC_EXTRA (extra TOML
# lines for the HEC sink, e.g. 'compression_level = 1'), BIN / PEER to override the
# binaries (default: release builds, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SESSIONS=${1:-200}
EVENTS=${2:-1000}
PAGE=${3:-1000}
RUNS=${RUNS:-file hec-none hec-gzip file+hec-gzip hec-gzip-ack}
ACK_DELAY=${ACK_DELAY:-100ms}
ANSWER_DELAY=${ANSWER_DELAY:-0s}
ACK_POLL=${ACK_POLL:-}
HEC_EXTRA=${HEC_EXTRA:-}
TARGET=${CARGO_TARGET_DIR:-target}
BIN=${BIN:-$TARGET/release/veeam-siem}
# The simulator's binary (default: BIN); set it to compare an older daemon against today's
# simulator (which sends with TCP_NODELAY, as real servers do).
SIM_BIN=${SIM_BIN:-$BIN}
PEER=${PEER:-$TARGET/release/examples/hec_peer}
[ -x "$BIN" ] || cargo build --release --locked --quiet --bin veeam-siem
[ -x "$PEER" ] || cargo build --release --locked --quiet --example hec_peer
SIM_PORT=${SIM_PORT:-18443}
HEC_PORT=${HEC_PORT:-18088}
TOKEN=4c1f7a2e-9b0d-4e21-8f6a-1d2c3b4a5e6f
WORK=$(mktemp -d)
cleanup() {
  kill "${PEER_PID:-}" 2>/dev/null || true
  kill "${SIM_PID:-}" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_simulator "$SIM_BIN" "$SIM_PORT" "$SESSIONS" "$EVENTS" "$WORK"
grep -m1 "events:" "$WORK/sim.out"
echo "page_size $PAGE; ack delay $ACK_DELAY; answer delay $ANSWER_DELAY; ack poll ${ACK_POLL:-default}; extra HEC keys: ${HEC_EXTRA:-none}; $(nproc) cores"

run() { # name
  local name=$1 compression=none ack=false file=false hec=true
  case $name in
    file) file=true hec=false ;;
    hec-none) ;;
    hec-gzip) compression=gzip ;;
    file+hec-gzip) file=true compression=gzip ;;
    hec-gzip-ack) compression=gzip ack=true ;;
    *) echo "unknown run $name" >&2; exit 2 ;;
  esac
  rm -rf "$WORK/state" "$WORK/out.ndjson" "$WORK/peer.json" "$WORK/peer.time"
  source_toml "$WORK/state" "$SIM_PORT" "$PAGE" >"$WORK/bench.toml"
  if [ "$file" = true ]; then
    printf '[sinks.file]\ntype = "file"\ninputs = ["bench"]\npath = "%s"\n' "$WORK/out.ndjson" >>"$WORK/bench.toml"
  fi
  if [ "$hec" = true ]; then
    local peer_args=(--answer-delay "$ANSWER_DELAY")
    [ "$ack" = true ] && peer_args+=(--ack --ack-delay "$ACK_DELAY")
    /usr/bin/time -v -o "$WORK/peer.time" "$PEER" --listen "127.0.0.1:$HEC_PORT" "${peer_args[@]}" >"$WORK/peer.json" 2>"$WORK/peer.err" &
    PEER_PID=$!
    for _ in $(seq 1 100); do grep -q listening "$WORK/peer.err" 2>/dev/null && break; sleep 0.1; done
    cat >>"$WORK/bench.toml" <<TOML
[sinks.splunk]
type = "splunk_hec"
inputs = ["bench"]
endpoint = "http://127.0.0.1:$HEC_PORT"
token = "$TOKEN"
compression = "$compression"
indexer_ack = $ack
$([ -n "$ACK_POLL" ] && echo "ack_poll_interval = \"$ACK_POLL\"")
$HEC_EXTRA
TOML
  fi
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -v "$BIN" --log-level warn run --config "$WORK/bench.toml" --once 2>"$WORK/time.err"
  end=$(date +%s.%N)
  if [ -n "${PEER_PID:-}" ]; then
    # To the peer under GNU time (time does not forward signals): it prints its counters
    # and exits.
    pkill -INT -P "$PEER_PID" || kill -INT "$PEER_PID"
    wait "$PEER_PID" || true
    PEER_PID=
  fi
  grep -v -E '^\s' "$WORK/time.err" | grep -v 'Command being timed' >&2 || true
  python3 - "$WORK" "$start" "$end" "$name" <<'PY'
import json, os, re, sys
work, start, end, name = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
t = end - start
timed = open(os.path.join(work, "time.err")).read()
def field(text, label):
    m = re.search(re.escape(label) + r":\s*([0-9.]+)", text)
    return float(m.group(1)) if m else 0.0
def cpu_of(text):
    return field(text, "User time (seconds)") + field(text, "System time (seconds)")
cpu = cpu_of(timed)
sys_s = field(timed, "System time (seconds)")
rss = field(timed, "Maximum resident set size (kbytes)") / 1024
line = f"RESULT run={name} seconds={t:.2f}"
peer = os.path.join(work, "peer.json")
if os.path.exists(peer) and os.path.getsize(peer) > 0:
    stats = json.load(open(peer))
    n = stats["events_indexed"]
    line += (f" events={n} events_per_s={n / t:.0f} cpu_s={cpu:.2f} peak_rss_mib={rss:.1f}"
             f" wire_b_per_event={stats['wire_bytes'] / max(n, 1):.0f}"
             f" raw_b_per_event={stats['decoded_bytes'] / max(n, 1):.0f}"
             f" requests={stats['accepted_requests']} duplicates={stats['duplicates']}"
             f" violations={len(stats['violations'])}")
    peer_time = os.path.join(work, "peer.time")
    if os.path.exists(peer_time):
        line += f" peer_cpu_s={cpu_of(open(peer_time).read()):.2f}"
else:
    n = sum(1 for _ in open(os.path.join(work, "out.ndjson")))
    line += f" events={n} events_per_s={n / t:.0f} cpu_s={cpu:.2f} peak_rss_mib={rss:.1f}"
line += f" sys_s={sys_s:.2f}"
print(line, flush=True)
PY
}

for r in $RUNS; do run "$r"; done
