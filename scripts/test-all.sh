#!/usr/bin/env bash
# The whole check, the README's test command: on a fresh Debian machine with only a Rust
# toolchain (rustup), it installs what the tests need and is missing, then runs
# fmt, clippy (warnings as errors), the library without the simulator, and every test
# of the workspace with the external test peers required (a missing rsyslogd or tansu is
# then a failure, not a skip). .ci/run calls this script.
#
# Installs, only when missing (apt-get with sudo when not root):
#   gcc g++ make pkg-config perl libssl-dev zlib1g-dev  (librdkafka is built from source)
#   openssl                                                (the archive tests' Ed25519 keys)
#   rsyslog rsyslog-gnutls                                 (the syslog sink's tests)
#   rustfmt, clippy                                        (rustup components)
#   tansu 0.6.0                                            (cargo install; the Kafka tests)
#   moto[server] 5.2.1                                     (pip; the archive's S3 tests)
#
# For the quick inner loop use plain `cargo test`: it runs everything, and tests whose
# peer is missing print "skipped: ..." instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt-get as root, or through sudo; with neither, say exactly what to run.
apt_install() {
  local runner=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      runner=(sudo)
    else
      echo "error: missing packages: $*; install them as root with:" >&2
      echo "  apt-get install -y --no-install-recommends $*" >&2
      exit 1
    fi
  fi
  echo "installing: $*"
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

echo "== system packages"
need=()
for tool in cc:gcc c++:g++ make:make pkg-config:pkg-config perl:perl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v openssl >/dev/null 2>&1 || need+=(openssl) # the archive tests make keys with it
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
gtls=no # rsyslog's TLS driver, for the syslog TLS tests
for module in /usr/lib/*/rsyslog/lmnsd_gtls.so /usr/lib/rsyslog/lmnsd_gtls.so; do
  if [ -e "$module" ]; then gtls=yes; fi
done
[ "$gtls" = yes ] || need+=(rsyslog-gnutls)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi
PATH="$PATH:/usr/sbin:/sbin" rsyslogd -v | sed -n 1p

echo "== rust components"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

echo "== tansu (the Kafka-protocol broker of the Kafka tests; cached in ~/.cargo/bin)"
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
command -v tansu >/dev/null 2>&1 \
  || cargo install tansu --version 0.6.0 --locked --features dynostore
tansu --version

echo "== moto (the S3-compatible server with Object Lock the archive's S3 tests run on loopback)"
command -v moto_server >/dev/null 2>&1 || python3 -m pip install --quiet 'moto[server]==5.2.1'
python3 -m pip show moto | sed -n 2p

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== the library without the simulator (it must not see the simulator's types)"
cargo check --lib --no-default-features --locked

echo "== tests (external peers required)"
VEEAM_SIEM_REQUIRE_PEERS=1 cargo test --workspace --locked
