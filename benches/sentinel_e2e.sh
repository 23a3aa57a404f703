#!/usr/bin/env bash
# End-to-end benchmark of the Microsoft Sentinel sink (`type = "azure_monitor_logs"`):
# simulator (separate process) → `veeam-siem run --once` → the Azure Monitor test peer
# (`examples/azure_monitor_peer.rs`, separate process: Entra ID token endpoint and Logs
# Ingestion API, rows checked against the DCR template's stream declaration).
#
#   benches/sentinel_e2e.sh [SESSIONS] [EVENTS_PER_SESSION] [PAGE_SIZE]
#
# Defaults: 100 sessions × 1000 events (≈100k events), page_size 1000. Prints events/s of
# the `run --once` process (wall clock, includes the TLS login to the simulator, the token
# request and every page fetch), bytes on the wire per event (gzipped request bodies as
# received) and uncompressed, requests, the peer's duplicate count and violations.
#
# Environment: MAX_BYTES (sink: max_bytes, default 1048576), BIN / PEER to override the
# binaries (default: release builds, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SESSIONS=${1:-100}
EVENTS=${2:-1000}
PAGE=${3:-1000}
MAX_BYTES=${MAX_BYTES:-1048576}
BIN=${BIN:-target/release/veeam-siem}
PEER=${PEER:-target/release/examples/azure_monitor_peer}
[ -x "$BIN" ] || cargo build --release --quiet
[ -x "$PEER" ] || cargo build --release --quiet --example azure_monitor_peer
SIM_PORT=${SIM_PORT:-18444}
AZ_PORT=${AZ_PORT:-18089}
# The peer's fixed test credentials (crates/test-peers/src/azure_monitor.rs).
TENANT=72f988bf-86f1-41af-91ab-2d7cd011db47
CLIENT_ID=5d3c1a9e-0b6f-4e8a-9c2d-7f1e0a4b3c21
SECRET='Azr~8Q.peer-secret_5f2Lm0'
DCR=dcr-3f9a1c7e5b2d4e6f8a0b1c2d3e4f5a6b
WORK=$(mktemp -d)
cleanup() {
  kill "${PEER_PID:-}" 2>/dev/null || true
  kill "${SIM_PID:-}" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_simulator "$BIN" "$SIM_PORT" "$SESSIONS" "$EVENTS" "$WORK"
grep -m1 "events:" "$WORK/sim.out"
echo "page_size $PAGE, max_bytes $MAX_BYTES"

"$PEER" --listen "127.0.0.1:$AZ_PORT" --template examples/siem/sentinel/veeam-siem-dcr.json \
  >"$WORK/peer.json" 2>"$WORK/peer.err" &
PEER_PID=$!
for _ in $(seq 1 100); do grep -q listening "$WORK/peer.err" 2>/dev/null && break; sleep 0.1; done
source_toml "$WORK/state" "$SIM_PORT" "$PAGE" >"$WORK/bench.toml"
cat >>"$WORK/bench.toml" <<TOML
[sinks.sentinel]
type = "azure_monitor_logs"
inputs = ["bench"]
endpoint = "http://127.0.0.1:$AZ_PORT"
authority = "http://127.0.0.1:$AZ_PORT"
dcr_immutable_id = "$DCR"
stream = "Custom-VeeamRestore_CL"
tenant_id = "$TENANT"
client_id = "$CLIENT_ID"
client_secret = "\${BENCH_AZURE_SECRET}"
max_bytes = $MAX_BYTES
TOML
start=$(date +%s.%N)
BENCH_AZURE_SECRET="$SECRET" "$BIN" --log-level warn run --config "$WORK/bench.toml" --once
end=$(date +%s.%N)
kill -INT "$PEER_PID"
wait "$PEER_PID" || true
PEER_PID=
python3 - "$WORK/peer.json" "$start" "$end" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
start, end = float(sys.argv[2]), float(sys.argv[3])
n = stats["rows_ingested"]
t = end - start
print(f"azure_monitor_logs rows: {n}  elapsed: {t:.2f} s  throughput: {n / t:.0f} events/s  "
      f"wire: {stats['wire_bytes'] / max(n, 1):.0f} B/event  (uncompressed {stats['decoded_bytes'] / max(n, 1):.0f} B/event, "
      f"largest request {stats['max_decoded_bytes']} B)  requests: {stats['accepted_requests']}  tokens: {stats['tokens_issued']}  "
      f"duplicates: {stats['duplicates']}  violations: {len(stats['violations'])}")
PY
