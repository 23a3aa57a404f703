#!/usr/bin/env bash
# End-to-end benchmark of the syslog sink: simulator (separate process) → `veeam-siem run
# --once` → a private rsyslogd (its own config, pid file and work dir in a temp dir, on
# loopback ports) writing every message to a file. Over TCP and over TLS, with each
# `confirm` mode.
#
#   benches/syslog_e2e.sh [SESSIONS] [EVENTS_PER_SESSION] [PAGE_SIZE]
#
# Defaults: 100 sessions × 1000 events (≈100k events), page_size 1000. Prints, per run, the
# events rsyslog wrote and events/s of the `run --once` process (wall clock: login, every
# page fetch, mapping, syslog delivery and checkpoints). Needs rsyslog + rsyslog-gnutls and
# openssl; uses the release build (set BIN to override, CONFIRMS="close" to skip flush).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SESSIONS=${1:-100}
EVENTS=${2:-1000}
PAGE=${3:-1000}
BIN=${BIN:-target/release/veeam-siem}
CONFIRMS=${CONFIRMS:-close flush}
RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
[ -x "$RSYSLOGD" ] || { echo "rsyslogd not found: apt-get install -y rsyslog rsyslog-gnutls" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release --quiet

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- simulator
SIM_PORT=$(free_port)
start_simulator "$BIN" "$SIM_PORT" "$SESSIONS" "$EVENTS" "$WORK"
PIDS+=("$SIM_PID")
TOTAL=$SIM_TOTAL
[ -n "$TOTAL" ] || { echo "simulator did not start:" >&2; cat "$WORK/sim.err" >&2; exit 1; }

# --- a CA and a server certificate for rsyslog's TLS listener
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=bench CA" -keyout "$WORK/ca-key.pem" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout "$WORK/server-key.pem" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" \
  -CAcreateserial -days 2 -extfile "$WORK/ext.cnf" -out "$WORK/server-cert.pem" 2>/dev/null

# --- two private rsyslogds: plain TCP and TLS
start_rsyslog() { # name port driver-lines
  local dir="$WORK/rsyslog-$1"
  mkdir -p "$dir/work"
  cat >"$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir/work" maxMessageSize="64k"
  defaultNetstreamDriverCAFile="$WORK/ca.pem"
  defaultNetstreamDriverCertFile="$WORK/server-cert.pem"
  defaultNetstreamDriverKeyFile="$WORK/server-key.pem")
$3
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="received") {
  action(type="omfile" file="$dir/received.log" template="raw")
}
input(type="imtcp" address="127.0.0.1" port="$2" ruleset="received")
CONF
  "$RSYSLOGD" -n -f "$dir/rsyslog.conf" -i "$dir/rsyslogd.pid" 2>"$dir/stderr" &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "rsyslogd ($1) did not start:" >&2; cat "$dir/stderr" >&2; exit 1
}
TCP_PORT=$(free_port)
TLS_PORT=$(free_port)
start_rsyslog tcp "$TCP_PORT" 'module(load="imtcp")'
start_rsyslog tls "$TLS_PORT" \
  'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")'

lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }

bench() { # mode port confirm
  local mode=$1 port=$2 confirm=$3 run="$WORK/run-$1-$3" log="$WORK/rsyslog-$1/received.log"
  mkdir -p "$run"
  local tls=""
  [ "$mode" = tls ] && tls="tls = { ca_file = \"$WORK/ca.pem\" }"
  source_toml "$run/state" "$SIM_PORT" "$PAGE" >"$run/bench.toml"
  cat >>"$run/bench.toml" <<TOML
[sinks.siem]
type = "syslog"
inputs = ["bench"]
address = "127.0.0.1:$port"
mode = "$mode"
confirm = "$confirm"
$tls
TOML
  local before start end
  before=$(lines "$log")
  start=$(date +%s.%N)
  "$BIN" --log-level warn run --config "$run/bench.toml" --once 2>"$run/stderr" ||
    { cat "$run/stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  local expected=$((before + TOTAL))
  for _ in $(seq 1 300); do [ "$(lines "$log")" -ge "$expected" ] && break; sleep 0.1; done
  local got=$(( $(lines "$log") - before ))
  awk -v m="$mode" -v c="$confirm" -v n="$got" -v s="$start" -v e="$end" 'BEGIN {
    t = e - s; printf "%-3s confirm=%-5s  rsyslog wrote: %d  elapsed: %.2f s  throughput: %.0f events/s\n", m, c, n, t, n / t }'
}

echo "simulator: $TOTAL events in $SESSIONS sessions; page_size $PAGE; $("$RSYSLOGD" -v | sed -n 1p)"
for confirm in $CONFIRMS; do
  bench tcp "$TCP_PORT" "$confirm"
  bench tls "$TLS_PORT" "$confirm"
done
