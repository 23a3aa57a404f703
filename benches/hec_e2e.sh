#!/usr/bin/env bash
# End-to-end benchmark of the Splunk HEC sink: simulator (separate process) →
# `veeam-siem run --once` → the HEC test peer (`examples/hec_peer.rs`, separate process).
#
#   benches/hec_e2e.sh [SESSIONS] [EVENTS_PER_SESSION] [PAGE_SIZE]
#
# Defaults: 100 sessions × 1000 events (≈100k events), page_size 1000. Runs four
# configurations (compression none/gzip × indexer_ack off/on) against a fresh peer each
# and prints, per run: events/s of the `run --once` process (wall clock, includes the TLS
# login to the simulator and every page fetch), bytes on the wire per event (request
# bodies as received by the peer) and the peer's duplicate count.
#
# Environment: ACK_DELAY (peer: time until an ackId reports true, default 0s),
# ACK_POLL (sink: ack_poll_interval, default 500ms), BIN / PEER to override the binaries
# (default: release builds, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-100}
EVENTS=${2:-1000}
PAGE=${3:-1000}
ACK_DELAY=${ACK_DELAY:-0s}
ACK_POLL=${ACK_POLL:-500ms}
BIN=${BIN:-target/release/veeam-siem}
PEER=${PEER:-target/release/examples/hec_peer}
[ -x "$BIN" ] || cargo build --release --quiet
[ -x "$PEER" ] || cargo build --release --quiet --example hec_peer
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

"$BIN" simulate --listen "127.0.0.1:$SIM_PORT" --sessions "$SESSIONS" \
  --events-per-session "$EVENTS" --write-ca "$WORK/ca.pem" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/ca.pem" ] && break; sleep 0.1; done
grep -m1 "events:" "$WORK/sim.out" || true
echo "page_size $PAGE, ack delay $ACK_DELAY, ack poll $ACK_POLL"

run() { # compression indexer_ack
  local compression=$1 ack=$2 peer_args=()
  [ "$ack" = true ] && peer_args=(--ack --ack-delay "$ACK_DELAY")
  "$PEER" --listen "127.0.0.1:$HEC_PORT" "${peer_args[@]}" >"$WORK/peer.json" 2>"$WORK/peer.err" &
  PEER_PID=$!
  for _ in $(seq 1 100); do grep -q listening "$WORK/peer.err" 2>/dev/null && break; sleep 0.1; done
  rm -rf "$WORK/state"
  cat >"$WORK/bench.toml" <<TOML
[state]
dir = "$WORK/state"
[sources.bench]
type = "vbo"
url = "https://127.0.0.1:$SIM_PORT"
username = "svc-siem"
password = "sim-password"
page_size = $PAGE
start_time = "2000-01-01T00:00:00Z"
tls = { ca_file = "$WORK/ca.pem" }
[sinks.splunk]
type = "splunk_hec"
inputs = ["bench"]
endpoint = "http://127.0.0.1:$HEC_PORT"
token = "$TOKEN"
compression = "$compression"
indexer_ack = $ack
ack_poll_interval = "$ACK_POLL"
TOML
  local start end
  start=$(date +%s.%N)
  "$BIN" --log-level warn run --config "$WORK/bench.toml" --once
  end=$(date +%s.%N)
  kill -INT "$PEER_PID"
  wait "$PEER_PID" || true
  PEER_PID=
  python3 - "$WORK/peer.json" "$start" "$end" "$compression" "$ack" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
start, end = float(sys.argv[2]), float(sys.argv[3])
n = stats["events_indexed"]
t = end - start
print(f"compression={sys.argv[4]:<4} indexer_ack={sys.argv[5]:<5} events: {n}  elapsed: {t:.2f} s  "
      f"throughput: {n / t:.0f} events/s  wire: {stats['wire_bytes'] / max(n, 1):.0f} B/event  "
      f"(uncompressed {stats['decoded_bytes'] / max(n, 1):.0f} B/event)  requests: {stats['accepted_requests']}  "
      f"duplicates: {stats['duplicates']}  violations: {len(stats['violations'])}")
PY
}

run none false
run gzip false
run none true
run gzip true
