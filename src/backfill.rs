//! `backfill`: re-read history into the configured sinks without touching live checkpoints.
//!
//! Owns the plan (which sources, which window, where its own checkpoints go) and progress
//! reporting. A backfill is an ordinary `--once` pipeline run over a derived config:
//! - only the chosen sources (default: all), each listing sessions from 24 h before
//!   `--since` (sessions that started earlier can have events inside the window); sinks keep only
//!   those inputs and sinks left without any are dropped;
//! - its own state dir `<state.dir>/backfill/<since>_<until>`: live checkpoints are never
//!   read or written, and an interrupted backfill re-run with the same window resumes;
//!   the dir is removed once the backfill completes;
//! - events outside `[since, until]` are filtered out after mapping (the sources still read
//!   up to the present; `until` bounds what is sent, not what is read);
//! - no ops endpoint (the live daemon usually holds its address).
//!
//! Progress is time coverage: the newest checkpointed event's `@timestamp` between
//! `since` and `until` (or now), with events/s; a bar on a TTY, log lines otherwise.
//!
//! Must not: write into the live state dir, or be run against a file sink path the live
//! daemon is appending to (two writers interleave; the README says so).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, invalid};
use crate::metrics;
use crate::pipeline::{self, PipelineError, RunOptions, RunReport, TimeWindow};
use crate::sources::RunMode;

/// How long before `--since` sessions are listed, for sessions that straddle it.
pub const SESSION_LEAD: chrono::TimeDelta = chrono::TimeDelta::hours(24);

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    /// Source ids; empty = every configured source.
    pub sources: Vec<String>,
}

/// The derived config and where its checkpoints live.
#[derive(Debug, Clone)]
pub struct Plan {
    pub config: Config,
    pub state_dir: PathBuf,
    pub window: TimeWindow,
}

/// Derive the backfill config from the live one. Errors name the flag to fix.
pub fn plan(
    live: &Config,
    opts: &BackfillOptions,
    now: DateTime<Utc>,
) -> Result<Plan, ConfigError> {
    if opts.since > now {
        return Err(invalid(
            "--since",
            format!("{} is in the future", fmt_time(opts.since)),
        ));
    }
    if let Some(until) = opts.until
        && until <= opts.since
    {
        return Err(invalid(
            "--until",
            format!(
                "{} is not after --since {}",
                fmt_time(until),
                fmt_time(opts.since)
            ),
        ));
    }
    for id in &opts.sources {
        if !live.sources.contains_key(id) {
            let known: Vec<&str> = live.sources.keys().map(String::as_str).collect();
            return Err(invalid(
                "--sources",
                format!(
                    "no source `{id}` in the config (configured: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let chosen = |id: &str| opts.sources.is_empty() || opts.sources.iter().any(|s| s == id);
    let mut config = live.clone();
    config.ops = None;
    config.sources.retain(|id, _| chosen(id));
    // Sessions are listed by start time; one that started before `since` can still have
    // events inside the window, so read from a lead before it (the window filters).
    let read_from = opts.since - SESSION_LEAD;
    for source in config.sources.values_mut() {
        source.set_start_time(read_from);
        source.ship_in_progress();
    }
    config.sinks.retain(|_, sink| {
        sink.inputs_mut().retain(|id| chosen(id));
        !sink.inputs().is_empty()
    });
    // Whole seconds, widened outwards (never narrower than asked): the window's name and
    // the resume command printed on an interruption (`--since 3d` resolves to another
    // instant on every run) name it exactly.
    use chrono::SubsecRound;
    let since = opts.since.trunc_subsecs(0);
    let until = opts.until.map(|u| {
        let whole = u.trunc_subsecs(0);
        if whole < u {
            whole + chrono::TimeDelta::seconds(1)
        } else {
            whole
        }
    });
    let window_name = format!(
        "{}_{}",
        stamp(since),
        until.map_or_else(|| "open".to_string(), stamp)
    );
    let state_dir = live.state.dir.join("backfill").join(window_name);
    config.state.dir = state_dir.clone();
    Ok(Plan {
        config,
        state_dir,
        window: TimeWindow { since, until },
    })
}

pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A file-name-safe timestamp.
fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// How a backfill ended.
#[derive(Debug)]
pub struct Outcome {
    pub report: RunReport,
    /// Shutdown was requested before the sources finished: re-run to resume.
    pub interrupted: bool,
}

/// Run the plan to completion (or until `shutdown`), reporting progress.
pub async fn run(plan: Plan, shutdown: CancellationToken) -> Result<Outcome, PipelineError> {
    crate::durable::create_dirs(&plan.state_dir, crate::durable::PRIVATE_DIR).map_err(|e| {
        PipelineError::Internal(format!(
            "cannot create the backfill state dir {}: {e}",
            plan.state_dir.display()
        ))
    })?;
    let resumed = std::fs::read_dir(&plan.state_dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name() != crate::state_dir::LOCK_FILE)
        })
        .unwrap_or(false);
    tracing::info!(
        since = %fmt_time(plan.window.since),
        until = %plan.window.until.map_or_else(|| "now".to_string(), fmt_time),
        pipeline = %pipeline::topology(&plan.config),
        state_dir = %plan.state_dir.display(),
        resumed,
        "backfill starting (live checkpoints are not touched)"
    );
    let sources: Vec<String> = plan.config.sources.keys().cloned().collect();
    let progress_done = CancellationToken::new();
    let progress = tokio::spawn(report_progress(sources, plan.window, progress_done.clone()));
    let opts = RunOptions {
        mode: RunMode::Once,
        window: Some(plan.window),
        ..RunOptions::default()
    };
    let result = pipeline::run(&plan.config, opts, shutdown.clone()).await;
    progress_done.cancel();
    let _ = progress.await;
    let report = result?;
    let interrupted = shutdown.is_cancelled();
    if interrupted {
        tracing::warn!(
            state_dir = %plan.state_dir.display(),
            "backfill interrupted; run it again with the same window (the command is printed below) to resume where it stopped"
        );
    } else if let Err(e) = std::fs::remove_dir_all(&plan.state_dir) {
        tracing::warn!(state_dir = %plan.state_dir.display(), error = %e, "backfill done, but its state dir could not be removed");
    }
    Ok(Outcome {
        report,
        interrupted,
    })
}

/// Sum of acknowledged events and the oldest of the sources' newest checkpointed events.
fn snapshot(sources: &[String]) -> (u64, Option<f64>) {
    let m = metrics::global();
    let mut events = 0;
    let mut covered: Option<f64> = None;
    for source in sources {
        let label = metrics::SourceLabel {
            source: source.clone(),
        };
        events += m.events_acknowledged.get_or_create(&label).get();
        let t = m.checkpoint_event_time.get_or_create(&label).get();
        covered = Some(covered.map_or(t, |c: f64| c.min(t)));
    }
    (events, covered.filter(|t| *t > 0.0))
}

async fn report_progress(sources: Vec<String>, window: TimeWindow, done: CancellationToken) {
    let start = std::time::Instant::now();
    let since = window.since.timestamp() as f64;
    let end = window.until.unwrap_or_else(Utc::now).timestamp() as f64;
    let span = (end - since).max(1.0);
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = tty.then(|| {
        let bar = indicatif::ProgressBar::new(span as u64);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% of the window  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    });
    let tick = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    };
    loop {
        tokio::select! {
            () = done.cancelled() => break,
            () = tokio::time::sleep(tick) => {}
        }
        let (events, covered) = snapshot(&sources);
        let rate = events as f64 / start.elapsed().as_secs_f64().max(0.001);
        let position = covered.map_or(0.0, |c| (c - since).clamp(0.0, span));
        match &bar {
            Some(bar) => {
                bar.set_position(position as u64);
                bar.set_message(format!("{events} events, {rate:.0}/s"));
            }
            None => tracing::info!(
                events,
                events_per_s = rate.round() as u64,
                window_percent = (100.0 * position / span).round() as u64,
                "backfill progress"
            ),
        }
    }
    let (events, _) = snapshot(&sources);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tracing::info!(
        events,
        seconds = start.elapsed().as_secs(),
        "backfill delivered"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONFIG: &str = r#"
[state]
dir = "/var/lib/vs"
[ops]
listen = "127.0.0.1:9598"
[sources.a]
type = "vbo"
url = "https://vbo.example.net:4443"
username = "u"
password = "p"
[sources.b]
type = "vbo"
url = "https://vbo2.example.net:4443"
username = "u"
password = "p"
[sinks.both]
type = "stdout"
inputs = ["a", "b"]
[sinks.only_b]
type = "stdout"
inputs = ["b"]
"#;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn live() -> Config {
        Config::from_toml(CONFIG, Path::new("/etc/vs.toml"), &|_| None).unwrap()
    }

    #[test]
    fn plan_selects_sources_moves_state_and_drops_ops() {
        let opts = BackfillOptions {
            since: t("2026-01-01T00:00:00Z"),
            until: Some(t("2026-02-01T12:00:00Z")),
            sources: vec!["a".into()],
        };
        let p = plan(&live(), &opts, t("2026-03-01T00:00:00Z")).unwrap();
        assert_eq!(
            p.state_dir,
            Path::new("/var/lib/vs/backfill/20260101T000000Z_20260201T120000Z")
        );
        assert_eq!(p.config.state.dir, p.state_dir);
        assert!(p.config.ops.is_none());
        assert_eq!(p.config.sources.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(p.config.sinks.keys().collect::<Vec<_>>(), vec!["both"]);
        assert_eq!(p.config.sinks["both"].inputs(), ["a".to_string()]);
        let crate::config::SourceConfig::Vbo(a) = &p.config.sources["a"] else {
            panic!("vbo")
        };
        assert_eq!(a.start_time, Some(opts.since - SESSION_LEAD));
    }

    #[test]
    fn plan_rejects_bad_windows_and_unknown_sources() {
        let now = t("2026-03-01T00:00:00Z");
        let bad = |since: &str, until: Option<&str>, sources: Vec<String>| {
            plan(
                &live(),
                &BackfillOptions {
                    since: t(since),
                    until: until.map(t),
                    sources,
                },
                now,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(bad("2026-04-01T00:00:00Z", None, vec![]).contains("--since"));
        let e = bad("2026-01-02T00:00:00Z", Some("2026-01-01T00:00:00Z"), vec![]);
        assert!(e.contains("--until"), "{e}");
        let e = bad("2026-01-01T00:00:00Z", None, vec!["nope".into()]);
        assert!(
            e.contains("--sources") && e.contains("nope") && e.contains("a, b"),
            "{e}"
        );
    }

    #[test]
    fn window_is_inclusive_and_open_ended_without_until() {
        let w = TimeWindow {
            since: t("2026-01-01T00:00:00Z"),
            until: None,
        };
        assert!(w.contains(t("2026-01-01T00:00:00Z")));
        assert!(!w.contains(t("2025-12-31T23:59:59Z")));
        assert!(w.contains(t("2099-01-01T00:00:00Z")));
    }
}
