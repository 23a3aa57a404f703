#!/usr/bin/env bash
# Instruction counts of one `veeam-siem run --once` under valgrind's callgrind: the
# simulator (20 sessions × 1000 events, page_size 1000, HTTPS) → the file sink, optionally
# with the HEC sink (gzip) into the HEC test peer. Counts repeat to ±0.2 % on a noisy VM,
# where CPU seconds move ±0.4 s, so this is how levers of a few percent are compared.
#
#   benches/callgrind.sh [file|file+hec] [OUT.callgrind]
#
# Environment: BIN (the daemon, default the release build), PEER (the HEC peer),
# HEC_EXTRA (extra TOML lines for the HEC sink, e.g. 'compression_level = 4'),
# COMPRESSION (gzip or none). Prints the instruction total, the events written and, with
# HEC, bytes on the wire per event. `callgrind_annotate --inclusive=yes OUT` shows where.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
MODE=${1:-file+hec}
OUT=${2:-/dev/null}
TARGET=${CARGO_TARGET_DIR:-target}
BIN=${BIN:-$TARGET/release/veeam-siem}
PEER=${PEER:-$TARGET/release/examples/hec_peer}
COMPRESSION=${COMPRESSION:-gzip}
HEC_EXTRA=${HEC_EXTRA:-}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
[ -x "$BIN" ] || cargo build --release --locked --quiet --bin veeam-siem
[ -x "$PEER" ] || cargo build --release --locked --quiet --example hec_peer
SIM_PORT=${SIM_PORT:-25443}
HEC_PORT=${HEC_PORT:-25088}
W=$(mktemp -d)
cleanup() {
  kill "${SIM_PID:-}" "${PEER_PID:-}" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
start_simulator "$BIN" "$SIM_PORT" 20 1000 "$W"
source_toml "$W/state" "$SIM_PORT" 1000 >"$W/c.toml"
cat >>"$W/c.toml" <<TOML
[sinks.file]
type = "file"
inputs = ["bench"]
path = "$W/out.ndjson"
TOML
if [ "$MODE" = file+hec ]; then
  "$PEER" --listen "127.0.0.1:$HEC_PORT" >"$W/peer.json" 2>"$W/peer.err" &
  PEER_PID=$!
  for _ in $(seq 100); do grep -q listening "$W/peer.err" 2>/dev/null && break; sleep 0.1; done
  cat >>"$W/c.toml" <<TOML
[sinks.splunk]
type = "splunk_hec"
inputs = ["bench"]
endpoint = "http://127.0.0.1:$HEC_PORT"
token = "4c1f7a2e-9b0d-4e21-8f6a-1d2c3b4a5e6f"
compression = "$COMPRESSION"
$HEC_EXTRA
TOML
fi
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" --log-level warn \
  run --config "$W/c.toml" --once 2>"$W/vg.err" || { tail "$W/vg.err" >&2; exit 1; }
grep -E "Collected" "$W/vg.err" | sed 's/.*Collected : /instructions: /'
echo "events: $(wc -l <"$W/out.ndjson")"
if [ -n "${PEER_PID:-}" ]; then
  kill -INT "$PEER_PID"
  wait "$PEER_PID" || true
  PEER_PID=
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("wire B/event: %.1f" % (s["wire_bytes"] / max(s["events_indexed"], 1)))' "$W/peer.json"
fi
