//! The `veeam-siem` command line. Parsing and exit codes only; everything else is the library.
//!
//! Exit codes: 0 ok; 2 usage or config error; 1 runtime failure.
//!
//! Signal handling is installed first (right after parsing the arguments, before logging
//! and before the config is read): for `run`, SIGTERM/SIGINT request a drain and SIGHUP a
//! reload from the first millisecond on (a SIGHUP that arrives before the config is read is
//! logged and dropped: that config is the one being loaded); `backfill`, `demo` and
//! `simulate` drain on SIGTERM/SIGINT; `check` and `schema` keep the default dispositions.
//! Errors and logs are printed with control characters escaped (`veeam_siem::escape`).
//! `demo` and `simulate` embed the API simulator and live in [`cli`], outside the library.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use veeam_siem::config::Config;
use veeam_siem::daemon::Reloads;
use veeam_siem::escape::{EscapedFields, JsonLogWriter, escape_controls};
use veeam_siem::pipeline::RunOptions;
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
    /// Log level: error, warn, info, debug, trace or off; or filter directives such as
    /// "info,veeam_siem=debug" (RUST_LOG, when set, wins).
    #[arg(long, global = true, default_value = "info", value_parser = parse_log_level)]
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
    Demo(cli::DemoArgs),
    /// Run the daemon with a config file.
    Run {
        /// The TOML config file (sources, sinks, state dir; see the README).
        #[arg(long, short)]
        config: PathBuf,
        /// Poll every source to completion once, deliver, checkpoint, exit.
        #[arg(long)]
        once: bool,
    },
    /// Re-read history from --since into the configured sinks; live checkpoints are untouched.
    Backfill {
        /// The TOML config file (sources, sinks, state dir; see the README).
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
        /// The TOML config file (sources, sinks, state dir; see the README).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a compliance archive (the `archive` sink's directory): every digest's signature,
    /// the chain, every segment's hash, every segment sealed; exit 1 on any problem (an
    /// unsealed segment and an empty archive are problems), 2 on usage errors.
    Verify {
        /// The archive directory, or `s3://BUCKET/PREFIX` (region from AWS_REGION, an
        /// S3-compatible endpoint from AWS_ENDPOINT_URL_S3, credentials from the AWS chain).
        path: PathBuf,
        /// Ed25519 public key, SPKI PEM (`openssl pkey -pubout`); repeat it for rotated keys.
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<PathBuf>,
        /// `text` (one line per problem, then a summary) or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// With s3://: every object must carry an Object Lock retention ending at least
        /// DAYS after it was stored.
        #[arg(long, value_name = "DAYS")]
        check_retention: Option<u32>,
        /// For the archive of a running daemon: one segment newer than the newest digest is
        /// the open one, not a problem. Without it every segment must be sealed (a clean
        /// stop seals); with it, a removed newest digest looks like an open segment.
        #[arg(long)]
        allow_open: bool,
    },
    /// Run only the VB365 and VDC API simulator (for trying SIEM pipelines without a Veeam server).
    Simulate(cli::SimulateArgs),
    /// Print the JSON Schema of the output event.
    Schema,
}

/// `--log-level`: a level name, or directives with a target (`target=level`, comma
/// separated). A bare word that is not a level would silently filter for a target of that
/// name and show nothing, so it is a usage error.
fn parse_log_level(text: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let t = text.trim();
    let is_level = LEVELS.iter().any(|l| l.eq_ignore_ascii_case(t));
    let directives = t.contains('=') || t.contains(',');
    if !is_level && !directives {
        return Err(format!(
            "`{t}` is not a log level; use one of {}, or directives like \"info,veeam_siem=debug\"",
            LEVELS.join(", ")
        ));
    }
    EnvFilter::try_new(t)
        .map(|_| t.to_string())
        .map_err(|e| format!("`{t}` is not a valid log filter: {e}"))
}

/// Logs on stderr. Server text in log fields is escaped: the text format writes control
/// characters visibly (`\u{1b}`), the JSON format as JSON escapes (C1, DEL and bidi
/// controls too, which serde_json would leave raw).
fn init_logging(format: LogFormat, level: &str) {
    let _ = JSON_ERRORS.set(matches!(format, LogFormat::Json));
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(EscapedFields::default())
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => builder
            .json()
            .with_writer(JsonLogWriter(std::io::stderr))
            .init(),
    }
}

/// Whether stderr carries JSON log lines (`--log-format json`): the final error is one too.
static JSON_ERRORS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// `error: …` on stderr, control characters escaped (messages can carry server text); with
/// `--log-format json`, a JSON line shaped like the log lines (`level` ERROR,
/// `fields.message`), so every stderr line parses.
fn print_error(error: impl std::fmt::Display) {
    let message = error.to_string();
    if JSON_ERRORS.get().copied().unwrap_or(false) {
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "ERROR",
            "fields": { "message": format!("error: {message}") },
            "target": "veeam_siem",
        });
        // Through the JSON log writer: C1, DEL and bidi controls escaped like in the logs.
        use std::io::Write;
        use tracing_subscriber::fmt::MakeWriter;
        let writer = JsonLogWriter(std::io::stderr);
        let _ = writer
            .make_writer()
            .write_all(format!("{line}\n").as_bytes());
    } else {
        eprintln!("error: {}", escape_controls(&message));
    }
}

/// Load the config; `Err` is the exit code (2) after printing the error.
/// How `verify` prints its report.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        print_error(e);
        ExitCode::from(2)
    })
}

/// Warn once about endpoints whose credentials would travel in clear text.
fn warn_cleartext(config: &Config) {
    for endpoint in config.cleartext_endpoints() {
        tracing::warn!(key = %endpoint.key, "{}", endpoint.message());
    }
    for problem in veeam_siem::http::unusable_proxy_variables() {
        tracing::warn!("{problem}");
    }
}

/// `--since`/`--until`: RFC 3339, a UTC date, or an age before now. An age may reach back
/// to year 1 at most (what RFC 3339 and a date can write), which keeps the arithmetic done
/// with it later (minus a day, minus `lookback`) far inside what a date can hold.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    if let Ok(age) = humantime::parse_duration(text) {
        return chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .filter(|t| t.year() >= 1)
            .ok_or_else(|| {
                format!("`{text}` reaches back before the year 1; use a date (2026-01-01)")
            });
    }
    Err(format!(
        "`{text}` is not a time: use RFC 3339 (2026-01-01T00:00:00Z), a date (2026-01-01) or an age (30d)"
    ))
}

/// The signal handling of a command, installed before anything else happens.
struct Signals {
    /// Cancelled on the first SIGTERM or SIGINT.
    shutdown: CancellationToken,
    /// SIGHUP (`run` only).
    reload: Option<Reloads>,
}

impl Signals {
    /// Install the handlers `command` needs. Needs a Tokio runtime context; the handlers are
    /// in place when this returns, and signals arriving from then on are kept.
    fn install(command: &Command) -> Signals {
        match command {
            Command::Run { .. } => Signals {
                shutdown: shutdown_on_signals(),
                reload: Some(Reloads::sighup()),
            },
            Command::Backfill { .. } | Command::Demo(_) | Command::Simulate(_) => Signals {
                shutdown: shutdown_on_signals(),
                reload: None,
            },
            // One-shot commands with nothing to drain keep the default dispositions.
            Command::Check { .. } | Command::Schema | Command::Verify { .. } => Signals {
                shutdown: CancellationToken::new(),
                reload: None,
            },
        }
    }
}

/// Cancelled on the first SIGINT/SIGTERM. The handlers are installed before this returns.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    let signal = shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutdown requested; draining in-flight batches");
        t.cancel();
    });
    token
}

/// Installs SIGTERM and SIGINT handlers now; the future resolves on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut term), Err(_)) => {
                term.recv().await;
            }
            (Err(_), Ok(mut int)) => {
                int.recv().await;
            }
            (Err(_), Err(_)) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The daemon's memory comes from jemalloc: a batch is built on one thread and freed on
/// another (the last sink to finish with it), request bodies are compressed on the
/// blocking pool, and glibc's malloc spent ~15 % of the CPU time of a VB365 → file + HEC
/// run in `_int_free`, `malloc_consolidate` and friends. Measured on the issue-17 set-up
/// (200k events, BENCHMARKS.md, ninth round): 3.7–4.2 CPU s with glibc, 3.0–3.2 with
/// jemalloc as configured by [`malloc_conf`].
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at its start (`_RJEM_MALLOC_CONF` in the environment
/// overrides them): one arena, since each thread's cache takes the contention and more
/// arenas keep more memory mapped (peak RSS 52–59 MiB with one, 64–66 with two, 77–80
/// with jemalloc's default of four per core); unused pages given back after a second
/// (`dirty_decay_ms`, default 10 s) and at once from there (`muzzy_decay_ms`). Giving
/// them back at once (`dirty_decay_ms:0`) cost 2.5 s more system time.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 47] = b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// At most two glibc malloc arenas, for what C libraries (librdkafka) allocate with
/// glibc's malloc. glibc gives threads up to 8 per core, and memory freed in one stays
/// mapped there: with glibc as the Rust allocator too, 200k events to file + HEC peaked at
/// 66–75 MiB RSS with the default and 52–61 MiB with two arenas (BENCHMARKS.md).
/// `MALLOC_ARENA_MAX` in the environment still wins (it is read first).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable; called before any thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// SIGHUP is ignored from the start of `main` until `run` has its reload handler: one sent
/// right after exec, before the runtime exists, would otherwise end the process. The other
/// commands get the default disposition back once their handlers are installed.
#[cfg(unix)]
fn hold_sighup(held: bool) {
    let disposition = if held { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: sets a standard disposition (no handler code runs); before any thread is
    // started when holding, and for the main thread's process when releasing.
    unsafe {
        libc::signal(libc::SIGHUP, disposition);
    }
}

#[cfg(not(unix))]
fn hold_sighup(_: bool) {}

fn main() -> ExitCode {
    hold_sighup(true);
    limit_malloc_arenas();
    let cli = Cli::parse();
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
    // First: a SIGHUP or SIGTERM from now on is handled, not fatal.
    let signals = {
        let _context = runtime.enter();
        Signals::install(&cli.command)
    };
    if !matches!(cli.command, Command::Run { .. }) {
        hold_sighup(false);
    }
    init_logging(cli.log_format, &cli.log_level);
    let code = runtime.block_on(dispatch(cli.command, signals));
    // Whatever counts is written by now (checkpoints, the drain's last deliveries). A task
    // still blocked in a write (stdout into a pipe nobody reads, abandoned at the drain
    // timeout) must not keep the process from exiting, as dropping the runtime would: it
    // waits for every blocking thread. What such a write leaves is what `kill -9` leaves.
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

/// How long the exit waits for tasks that outlived their run (see `main`).
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn dispatch(command: Command, signals: Signals) -> ExitCode {
    let Signals { shutdown, reload } = signals;
    match command {
        Command::Schema => {
            println!("{}", veeam_siem::schema::EVENT_SCHEMA.trim_end());
            ExitCode::SUCCESS
        }
        Command::Verify {
            path,
            public_keys,
            format,
            check_retention,
            allow_open,
        } => {
            let json = matches!(format, ReportFormat::Json);
            let options = veeam_siem::sinks::archive::verify::Options { allow_open };
            match path.to_str().filter(|p| p.starts_with("s3://")) {
                Some(location) => ExitCode::from(
                    veeam_siem::sinks::archive::s3::verify::run(
                        location,
                        &public_keys,
                        json,
                        check_retention,
                        options,
                    )
                    .await,
                ),
                None if check_retention.is_some() => {
                    eprintln!(
                        "error: --check-retention applies to s3:// archives (a directory has no retention)"
                    );
                    ExitCode::from(2)
                }
                None => ExitCode::from(veeam_siem::sinks::archive::verify::run(
                    &path,
                    &public_keys,
                    json,
                    options,
                )),
            }
        }
        Command::Check { config } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
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
            let live = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let opts = veeam_siem::backfill::BackfillOptions {
                since,
                until,
                sources,
            };
            let plan = match veeam_siem::backfill::plan(&live, &opts, Utc::now()) {
                Ok(p) => p,
                Err(e) => {
                    print_error(e);
                    return ExitCode::from(2);
                }
            };
            let _lock = match veeam_siem::state_dir::StateLock::acquire(&plan.state_dir) {
                Ok(lock) => lock,
                Err(e) => {
                    print_error(e.to_string());
                    return ExitCode::from(e.exit_code());
                }
            };
            warn_cleartext(&plan.config);
            // The window as absolute times: an age (`--since 3d`) means another instant on
            // the next run, which would start over instead of resuming.
            let mut resume = format!(
                "veeam-siem backfill --config {} --since {}",
                config.display(),
                veeam_siem::backfill::fmt_time(plan.window.since)
            );
            if let Some(until) = plan.window.until {
                resume.push_str(&format!(
                    " --until {}",
                    veeam_siem::backfill::fmt_time(until)
                ));
            }
            if !opts.sources.is_empty() {
                resume.push_str(&format!(" --sources {}", opts.sources.join(",")));
            }
            match veeam_siem::backfill::run(plan, shutdown).await {
                Ok(outcome) if outcome.interrupted => {
                    eprintln!(
                        "backfill interrupted after {} events; to resume where it stopped, run: {resume}",
                        outcome.report.events_acked()
                    );
                    // Not done: a script must not take an interrupted backfill for a
                    // complete one (`backfill … && next-step`).
                    ExitCode::from(1)
                }
                Ok(outcome) => {
                    tracing::info!(events = outcome.report.events_acked(), "backfill complete");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    print_error(e);
                    ExitCode::from(1)
                }
            }
        }
        Command::Run { config: path, once } => {
            let config = match load_config(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let _lock = match veeam_siem::state_dir::StateLock::acquire(&config.state.dir) {
                Ok(lock) => lock,
                Err(e) => {
                    print_error(e.to_string());
                    return ExitCode::from(e.exit_code());
                }
            };
            let mut reload = reload.unwrap_or_else(Reloads::never);
            if reload.take_pending() {
                tracing::info!(
                    "SIGHUP received while starting: the configuration was just read, nothing to reload"
                );
            }
            if shutdown.is_cancelled() {
                tracing::info!("shutdown requested while starting; nothing was started");
                return ExitCode::SUCCESS;
            }
            warn_cleartext(&config);
            let mode = if once { RunMode::Once } else { RunMode::Follow };
            let opts = RunOptions {
                mode,
                ..RunOptions::default()
            };
            match veeam_siem::daemon::run(path, config, opts, shutdown, reload).await {
                Ok(report) => {
                    tracing::info!(events = report.events_acked(), "done");
                    ExitCode::SUCCESS
                }
                // A setting only checked when the daemon starts (e.g. VEEAM_SIEM_DRAIN_TIMEOUT).
                Err(e @ veeam_siem::pipeline::PipelineError::Config(_)) => {
                    print_error(e);
                    ExitCode::from(2)
                }
                Err(e) => {
                    print_error(e);
                    ExitCode::from(1)
                }
            }
        }
        Command::Demo(args) => cli::demo(args, shutdown).await,
        Command::Simulate(args) => cli::simulate(args, shutdown).await,
    }
}
