//! The `veeam-siem` command line. Parsing and exit codes only; everything else is the library.
//!
//! Exit codes: 0 ok; 2 usage or config error; 1 runtime failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use veeam_siem::config::Config;
use veeam_siem::pipeline::RunOptions;
use veeam_siem::simulator::{SimConfig, SimHandle, Throttle};
use veeam_siem::sources::RunMode;

#[derive(Parser)]
#[command(
    name = "veeam-siem",
    version,
    about = "Ship Veeam restore and backup activity to your SIEM"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (RUST_LOG, when set, wins).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the embedded simulator and ship its events to stdout (zero setup).
    Demo {
        /// Indented JSON instead of NDJSON.
        #[arg(long)]
        pretty: bool,
        /// Keep tailing live simulated activity until Ctrl-C.
        #[arg(long)]
        follow: bool,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Run the daemon with a config file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Poll every source to completion once, deliver, checkpoint, exit.
        #[arg(long)]
        once: bool,
    },
    /// Re-read history from --since into the configured sinks; live checkpoints are untouched.
    Backfill {
        #[arg(long, short)]
        config: PathBuf,
        /// Start of the window: RFC 3339 (2026-01-01T00:00:00Z), a date (2026-01-01, UTC),
        /// or an age ("30d", "12h" ago).
        #[arg(long, value_parser = parse_time)]
        since: DateTime<Utc>,
        /// End of the window (same forms); default: now, open-ended.
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// Comma-separated source ids (default: every source).
        #[arg(long, value_delimiter = ',')]
        sources: Vec<String>,
    },
    /// Validate the config, log in to every source, probe every sink; non-zero on failure.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run only the VB365 API simulator (for trying SIEM pipelines without a Veeam server).
    Simulate {
        #[arg(long, default_value = "127.0.0.1:4443")]
        listen: SocketAddr,
        /// Serve plain HTTP instead of HTTPS with a self-signed certificate.
        #[arg(long)]
        plain_http: bool,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        #[arg(long, default_value_t = 10)]
        events_per_session: usize,
        #[arg(long, default_value = "svc-siem")]
        username: String,
        #[arg(long, default_value = "sim-password")]
        password: String,
        /// Access-token lifetime (e.g. "3s", "60m").
        #[arg(long, default_value = "60m", value_parser = humantime::parse_duration)]
        token_ttl: Duration,
        /// Fraction of data requests answered with 503 (0.05 = 5%).
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// Delay added to every response (e.g. "50ms").
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        latency: Duration,
        /// Add live activity at this interval (e.g. "5s").
        #[arg(long, value_parser = humantime::parse_duration)]
        live_interval: Option<Duration>,
        /// Throttle /token like VB365 does (1/s, 5/min, 1500/h per client IP).
        #[arg(long)]
        throttle: bool,
        /// Write the simulator's certificate (PEM) here, for `tls.ca_file`.
        #[arg(long)]
        write_ca: Option<PathBuf>,
    },
    /// Print the JSON Schema of the output event.
    Schema,
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `--since`/`--until`: RFC 3339, a UTC date, or an age before now.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(age) = humantime::parse_duration(text) {
        let age = chrono::Duration::from_std(age).map_err(|e| e.to_string())?;
        return Ok(Utc::now() - age);
    }
    Err(format!(
        "`{text}` is not a time: use RFC 3339 (2026-01-01T00:00:00Z), a date (2026-01-01) or an age (30d)"
    ))
}

/// Cancelled on the first SIGINT/SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining in-flight batches");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(dispatch(cli.command))
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Schema => {
            println!("{}", veeam_siem::schema::EVENT_SCHEMA.trim_end());
            ExitCode::SUCCESS
        }
        Command::Check { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let report = veeam_siem::check::run(&config).await;
            print!("{}", report.render());
            if report.failures() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Backfill {
            config,
            since,
            until,
            sources,
        } => {
            let live = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = veeam_siem::backfill::BackfillOptions {
                since,
                until,
                sources,
            };
            let plan = match veeam_siem::backfill::plan(&live, &opts, Utc::now()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let _lock = match veeam_siem::state_dir::StateLock::acquire(&plan.state_dir) {
                Ok(lock) => lock,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(e.exit_code());
                }
            };
            match veeam_siem::backfill::run(plan, shutdown_on_signals()).await {
                Ok(outcome) if outcome.interrupted => {
                    eprintln!(
                        "backfill interrupted after {} events; run the same command again to resume",
                        outcome.report.events_acked()
                    );
                    ExitCode::SUCCESS
                }
                Ok(outcome) => {
                    tracing::info!(events = outcome.report.events_acked(), "backfill complete");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run { config: path, once } => {
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let _lock = match veeam_siem::state_dir::StateLock::acquire(&config.state.dir) {
                Ok(lock) => lock,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(e.exit_code());
                }
            };
            let mode = if once { RunMode::Once } else { RunMode::Follow };
            let opts = RunOptions {
                mode,
                ..RunOptions::default()
            };
            match veeam_siem::daemon::run(path, config, opts, shutdown_on_signals()).await {
                Ok(report) => {
                    tracing::info!(events = report.events_acked(), "done");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Demo {
            pretty,
            follow,
            seed,
        } => {
            let opts = veeam_siem::demo::DemoOptions {
                pretty,
                follow,
                seed,
                ..Default::default()
            };
            match veeam_siem::demo::run(opts, shutdown_on_signals()).await {
                Ok(report) => {
                    tracing::info!(events = report.events_acked(), "demo finished");
                    ExitCode::SUCCESS
                }
                // `demo | head`: the reader has what it wanted.
                Err(veeam_siem::demo::DemoError::Pipeline(
                    veeam_siem::pipeline::PipelineError::OutputClosed { .. },
                )) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Simulate {
            listen,
            plain_http,
            seed,
            sessions,
            events_per_session,
            username,
            password,
            token_ttl,
            error_rate,
            latency,
            live_interval,
            throttle,
            write_ca,
        } => {
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
                None if !plain_http => println!(
                    "  certificate: self-signed; pass --write-ca FILE to trust it via tls.ca_file"
                ),
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
            shutdown_on_signals().cancelled().await;
            sim.shutdown().await;
            ExitCode::SUCCESS
        }
    }
}
