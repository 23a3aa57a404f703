# Shared pieces of the end-to-end benchmarks, sourced by them (not run on its own): the
# simulator started as a separate process, and the `[state]` table and VB365 source that
# every benchmark config opens with.

# start_simulator BIN PORT SESSIONS EVENTS DIR
# Starts `BIN simulate` on 127.0.0.1:PORT with its CA in DIR/sim-ca.pem (also SIM_CA) and
# its output in DIR/sim.out and DIR/sim.err; sets SIM_PID and SIM_TOTAL (events served) once
# it serves, or exits 1 with its stderr after 60 s.
start_simulator() {
  local bin=$1 port=$2 sessions=$3 events=$4 dir=$5
  SIM_CA=$dir/sim-ca.pem
  "$bin" simulate --listen "127.0.0.1:$port" --sessions "$sessions" \
    --events-per-session "$events" --write-ca "$SIM_CA" >"$dir/sim.out" 2>"$dir/sim.err" &
  SIM_PID=$!
  for _ in $(seq 1 600); do grep -q "events:" "$dir/sim.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "events:" "$dir/sim.out" || {
    echo "simulator did not start:" >&2
    cat "$dir/sim.err" >&2
    exit 1
  }
  SIM_TOTAL=$(sed -n 's/.*events: \([0-9]*\) in.*/\1/p' "$dir/sim.out")
}

# source_toml STATE_DIR PORT PAGE_SIZE
# Prints the `[state]` table and the source `bench`: the simulator started above, read from
# its first session (HTTPS, trusting SIM_CA).
source_toml() {
  cat <<TOML
[state]
dir = "$1"
[sources.bench]
type = "vbo"
url = "https://127.0.0.1:$2"
username = "svc-siem"
password = "sim-password"
page_size = $3
start_time = "2000-01-01T00:00:00Z"
tls = { ca_file = "$SIM_CA" }
TOML
}
