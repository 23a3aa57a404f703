//! `veeam-siem simulate`: the embedded VB365/VDC API simulator alone, on a fixed address,
//! for trying SIEM pipelines without a Veeam server. Prints its URL and credentials, serves
//! until SIGTERM/SIGINT.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use veeam_siem_simulator::{DriftConfig, SimConfig, SimHandle, Throttle};

use super::SimulateArgs;

/// Run the simulator until `shutdown`; the exit code of `veeam-siem simulate`.
pub async fn command(args: SimulateArgs, shutdown: CancellationToken) -> ExitCode {
    let SimulateArgs {
        listen,
        plain_http,
        seed,
        sessions,
        events_per_session,
        username,
        password,
        token_ttl,
        error_rate,
        drift_rate,
        latency,
        live_interval,
        running_items,
        throttle,
        write_ca,
    } = args;
    if !(0.0..=1.0).contains(&drift_rate) {
        eprintln!("error: --drift-rate must be between 0 and 1 (got {drift_rate})");
        return ExitCode::from(2);
    }
    if !(0.0..=1.0).contains(&error_rate) {
        eprintln!("error: --error-rate must be between 0 and 1 (got {error_rate})");
        return ExitCode::from(2);
    }
    let cfg = SimConfig {
        listen,
        tls: !plain_http,
        seed,
        sessions,
        events_per_session,
        username: username.clone(),
        password: password.clone(),
        token_ttl,
        throttle: throttle.then(Throttle::default),
        error_rate,
        latency,
        live_interval,
        running_items,
        drift: DriftConfig { rate: drift_rate },
        ..SimConfig::default()
    };
    let sim = match SimHandle::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the simulator on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    if let (Some(path), Some(pem)) = (&write_ca, sim.ca_pem())
        && let Err(e) = std::fs::write(path, pem)
    {
        eprintln!("error: cannot write --write-ca {}: {e}", path.display());
        return ExitCode::from(1);
    }
    println!(
        "VB365 simulator listening on {} (API versions v6, v7, v8)",
        sim.base_url()
    );
    println!("  username: {username}");
    println!("  password: {password}   (simulator credentials, not a secret)");
    match &write_ca {
        Some(p) => println!("  certificate: {} (use as tls.ca_file)", p.display()),
        None if !plain_http => {
            println!("  certificate: self-signed; pass --write-ca FILE to trust it via tls.ca_file")
        }
        None => {}
    }
    println!(
        "  events: {} in {} sessions; Ctrl-C to stop",
        sim.event_count(),
        sim.session_count()
    );
    println!(
        "  VDC public API under /v1: api_key {} (x-api-key or Authorization: Bearer; simulator key, not a secret); {} log lines in {} job sessions",
        sim.vdc_api_key(),
        sim.vdc_log_count(),
        sim.vdc_session_count()
    );
    shutdown.cancelled().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}
