//! `veeam-siem demo`: the zero-setup first run.
//!
//! Starts the embedded simulator on an ephemeral loopback port (HTTPS with a generated
//! certificate, which the demo trusts through `tls.ca_file` like a real deployment would),
//! writes a throwaway config and state directory, and runs the ordinary pipeline with both
//! sources (VB365 restore events and Veeam Data Cloud job logs) into a stdout sink.
//! Nothing here is demo-only logic beyond that setup. The data set is
//! [`SimConfig::demo`] (with `--seed`), which the golden test pins.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use veeam_siem::config::Config;
use veeam_siem::pipeline::{self, PipelineError, RunOptions, RunReport};
use veeam_siem::sources::RunMode;
use veeam_siem_simulator::{SimConfig, SimHandle};

use super::DemoArgs;

/// Run the demo; the exit code of `veeam-siem demo`.
pub async fn command(args: DemoArgs, shutdown: CancellationToken) -> ExitCode {
    match run(&args, shutdown).await {
        Ok(report) => {
            tracing::info!(events = report.events_acked(), "demo finished");
            ExitCode::SUCCESS
        }
        // `demo | head`: the reader has what it wanted.
        Err(DemoError::Pipeline(PipelineError::OutputClosed { .. })) => ExitCode::SUCCESS,
        Err(e) => {
            crate::print_error(e);
            ExitCode::from(1)
        }
    }
}

/// The config the demo runs: a VB365 and a VDC source on the simulator, one stdout sink.
/// The VDC key is the simulator's default (not a secret).
fn demo_config_toml(url: &str, ca_file: &Path, state_dir: &Path, pretty: bool) -> String {
    format!(
        r#"[state]
dir = {state:?}

[sources.vbo_demo]
type = "vbo"
url = {url:?}
api_version = "v8"
username = "svc-siem"
password = "sim-password"
poll_interval = "2s"
page_size = 100
tls = {{ ca_file = {ca:?} }}

[sources.vdc_demo]
type = "vdc"
url = {url:?}
api_key = {key:?}
api_key_header = "x-api-key"
poll_interval = "2s"
tls = {{ ca_file = {ca:?} }}

[sinks.console]
type = "stdout"
inputs = ["vbo_demo", "vdc_demo"]
pretty = {pretty}
"#,
        state = state_dir.display().to_string(),
        url = url,
        ca = ca_file.display().to_string(),
        key = SimConfig::default().vdc_api_key,
        pretty = pretty,
    )
}

#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("cannot start the simulator: {0}")]
    Simulator(std::io::Error),
    #[error("cannot prepare the demo directory: {0}")]
    Io(std::io::Error),
    #[error("demo config is invalid (a bug): {0}")]
    Config(String),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

async fn run(opts: &DemoArgs, shutdown: CancellationToken) -> Result<RunReport, DemoError> {
    let sim = SimHandle::start(SimConfig {
        seed: opts.seed,
        live_interval: opts.follow.then(|| Duration::from_secs(3)),
        ..SimConfig::demo()
    })
    .await
    .map_err(DemoError::Simulator)?;
    let dir = tempfile::tempdir().map_err(DemoError::Io)?;
    let ca_file = dir.path().join("simulator-ca.pem");
    std::fs::write(&ca_file, sim.ca_pem().unwrap_or_default()).map_err(DemoError::Io)?;
    let state_dir = dir.path().join("state");
    let text = demo_config_toml(&sim.base_url(), &ca_file, &state_dir, opts.pretty);
    let config = Config::from_toml(&text, &dir.path().join("demo.toml"), &|_| None)
        .map_err(|e| DemoError::Config(e.to_string()))?;
    tracing::info!(url = %sim.base_url(), events = sim.event_count(), vdc_log_lines = sim.vdc_log_count(), follow = opts.follow, "demo: simulator started; shipping its restore events and VDC job logs to stdout");
    let mode = if opts.follow {
        RunMode::Follow
    } else {
        RunMode::Once
    };
    let result = pipeline::run(
        &config,
        RunOptions {
            mode,
            ..RunOptions::default()
        },
        shutdown,
    )
    .await;
    sim.shutdown().await;
    Ok(result?)
}
