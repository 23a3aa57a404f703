//! The binary's commands that embed the VB365/VDC API simulator (`crates/simulator`):
//! `demo` (the zero-setup first run, [`demo`]) and `simulate` (the simulator alone,
//! [`simulate`]). Binary-only: the library (`src/lib.rs`) never sees the simulator, so it
//! cannot come to share types with it.
//!
//! The simulator is the default cargo feature `simulator`. A build without it keeps both
//! commands in `--help` (their arguments are defined here), and running one prints why it is
//! missing and how to get it, with exit code 2, instead of a bare "unrecognized subcommand".

#[cfg(feature = "simulator")]
mod demo;
#[cfg(feature = "simulator")]
mod simulate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct DemoArgs {
    /// Indented JSON instead of NDJSON.
    #[arg(long)]
    pub pretty: bool,
    /// Keep tailing live simulated activity until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Seed of the generated data: the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Address and port to serve on.
    #[arg(long, default_value = "127.0.0.1:4443")]
    pub listen: SocketAddr,
    /// Serve plain HTTP instead of HTTPS with a self-signed certificate.
    #[arg(long)]
    pub plain_http: bool,
    /// Seed of the generated data: the same seed gives the same sessions and events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of VB365 restore sessions at start.
    #[arg(long, default_value_t = 20)]
    pub sessions: usize,
    /// Average number of item events per restore session (start/end markers come on top).
    #[arg(long, default_value_t = 10)]
    pub events_per_session: usize,
    /// The VB365 user name the simulator accepts at /token.
    #[arg(long, default_value = "svc-siem")]
    pub username: String,
    /// The VB365 password the simulator accepts at /token (not a secret).
    #[arg(long, default_value = "sim-password")]
    pub password: String,
    /// Access-token lifetime (e.g. "3s", "60m").
    #[arg(long, default_value = "60m", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// Fraction of data requests answered with 503 (0.05 = 5%).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fraction of records served with one odd but plausible value (vendor drift:
    /// "12 KB" sizes, times without a zone, enums as numbers, ...); 0.05 = 5%.
    #[arg(long, default_value_t = 0.0)]
    pub drift_rate: f64,
    /// Delay added to every response (e.g. "50ms").
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Add live activity at this interval (e.g. "5s").
    #[arg(long, value_parser = humantime::parse_duration)]
    pub live_interval: Option<Duration>,
    /// Serve the newest item event of a working restore session as `Running` (no
    /// `endTime`) until a newer event follows it or the session stops, when it gets its
    /// final status in place (as VB365 updates an event while its item is restored).
    #[arg(long)]
    pub running_items: bool,
    /// Throttle /token like VB365 does (1/s, 5/min, 1500/h per client IP).
    #[arg(long)]
    pub throttle: bool,
    /// Write the simulator's certificate (PEM) here, for `tls.ca_file`.
    #[arg(long)]
    pub write_ca: Option<PathBuf>,
}

/// `veeam-siem demo`.
#[cfg(feature = "simulator")]
pub async fn demo(args: DemoArgs, shutdown: CancellationToken) -> ExitCode {
    demo::command(args, shutdown).await
}

/// `veeam-siem simulate`.
#[cfg(feature = "simulator")]
pub async fn simulate(args: SimulateArgs, shutdown: CancellationToken) -> ExitCode {
    simulate::command(args, shutdown).await
}

/// `veeam-siem demo` in a build without the simulator: an error, exit code 2.
#[cfg(not(feature = "simulator"))]
pub async fn demo(_: DemoArgs, _: CancellationToken) -> ExitCode {
    without_simulator("demo")
}

/// `veeam-siem simulate` in a build without the simulator: an error, exit code 2.
#[cfg(not(feature = "simulator"))]
pub async fn simulate(_: SimulateArgs, _: CancellationToken) -> ExitCode {
    without_simulator("simulate")
}

#[cfg(not(feature = "simulator"))]
fn without_simulator(command: &str) -> ExitCode {
    crate::print_error(format!(
        "`{command}` needs the embedded API simulator, which this build of veeam-siem leaves \
         out (it was built without the default `simulator` feature); rebuild with it: \
         cargo build --release --features simulator"
    ));
    ExitCode::from(2)
}
