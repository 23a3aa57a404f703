//! External programs a test needs (rsyslogd, tansu): finding them, and the one rule for
//! when one is missing.
//!
//! The rule: a test that needs a missing tool prints `skipped: <tool> not found (run
//! scripts/test-all.sh)` and returns, so `cargo test` on a machine without it still runs
//! every other test. With `VEEAM_SIEM_REQUIRE_PEERS=1` (what `scripts/test-all.sh` and CI
//! set) it panics instead, naming what is missing: there a skip would be a test passing
//! silently.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The environment variable that turns a skip into a failure.
pub const REQUIRE_PEERS: &str = "VEEAM_SIEM_REQUIRE_PEERS";

/// The program `name`: `$<NAME>_BIN` when set (e.g. `TANSU_BIN`), else the first `name` on
/// `PATH`, in `/usr/sbin`, `/sbin` or `~/.cargo/bin`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let var = format!("{}_BIN", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The program `name` for a test that needs it; `None` (after printing the skip message)
/// when it is missing. Panics instead when `VEEAM_SIEM_REQUIRE_PEERS=1`.
///
/// ```ignore
/// let Some(_) = require_tool("rsyslogd") else { return };
/// ```
#[must_use]
pub fn require_tool(name: &str) -> Option<PathBuf> {
    require(find_tool(name), &format!("{name} not found"))
}

/// `found`, or (when it is `None`) the skip message for `missing` and `None`; panics
/// instead when `VEEAM_SIEM_REQUIRE_PEERS=1`. For prerequisites other than a program.
#[must_use]
pub fn require<T>(found: Option<T>, missing: &str) -> Option<T> {
    if found.is_none() {
        if peers_required() {
            panic!("{missing} (run scripts/test-all.sh); not skipped because {REQUIRE_PEERS}=1");
        }
        // Straight to stderr, past the test harness's capture: a skip must be visible in
        // a plain `cargo test`, not only with `--nocapture`.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {missing} (run scripts/test-all.sh)"
        );
    }
    found
}

/// `VEEAM_SIEM_REQUIRE_PEERS` is set to something other than `0` or empty.
pub fn peers_required() -> bool {
    std::env::var(REQUIRE_PEERS).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A loopback port that was free a moment ago (for UDP and TCP both).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = tcp.local_addr().expect("local addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}
