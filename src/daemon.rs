//! `run`: the long-lived process around the pipeline — the ops endpoint and hot reload.
//!
//! Owns the lifecycle: start the ops endpoint (once per process), run the pipeline, and on
//! a reload request (SIGHUP) re-read the config file. A config that fails to load or
//! validate is logged and the running pipeline is kept. A good one replaces it: the
//! running pipeline drains (in-flight batches delivered, checkpoints written; at most the
//! drain timeout, after which what is unacknowledged is abandoned, so a pipeline stuck on
//! a dead sink is replaced too) before the new one starts from those checkpoints, so a
//! reload neither loses events nor repeats more than the abandoned batches.
//!
//! Reload requests arrive through [`Reloads`]: the SIGHUP stream `main` installs before
//! anything else, or a channel. A reload that changes `[state] dir` is refused (logged):
//! the state-dir lock is taken once per process, so another directory needs a restart.
//!
//! Must not: know any source's or sink's details (that is the pipeline's), or change the
//! ops listen address without a restart (a changed `[ops] listen` is reported, not applied).

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, invalid};
use crate::ops::OpsServer;
use crate::pipeline::{self, PipelineError, RunOptions, RunReport};
use crate::sources::RunMode;

/// Environment variable overriding the drain timeout of `run` (e.g. `10s`, `2m`; at most
/// [`MAX_DRAIN_TIMEOUT`]): how long in-flight batches may take once SIGTERM/SIGINT or a
/// reload started, before they are abandoned (and sent again by the next run).
pub const DRAIN_TIMEOUT_ENV: &str = "VEEAM_SIEM_DRAIN_TIMEOUT";

/// Upper bound of [`DRAIN_TIMEOUT_ENV`].
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// The drain timeout from [`DRAIN_TIMEOUT_ENV`] when set (`None`: unset).
pub fn drain_timeout_from_env() -> Result<Option<Duration>, PipelineError> {
    match std::env::var(DRAIN_TIMEOUT_ENV) {
        Ok(text) => parse_drain_timeout(&text).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(invalid(
            DRAIN_TIMEOUT_ENV,
            "is not valid UTF-8; set a duration such as \"30s\"",
        )
        .into()),
    }
}

fn parse_drain_timeout(text: &str) -> Result<Duration, PipelineError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            DRAIN_TIMEOUT_ENV,
            format!("`{text}` is not a duration ({e}); use e.g. \"30s\" or \"2m\""),
        )
    })?;
    if d > MAX_DRAIN_TIMEOUT {
        return Err(invalid(
            DRAIN_TIMEOUT_ENV,
            format!(
                "must be at most {} (got {})",
                humantime::format_duration(MAX_DRAIN_TIMEOUT),
                humantime::format_duration(d)
            ),
        )
        .into());
    }
    Ok(d)
}

/// Run `config` (loaded from `path`) until `--once` completes or `shutdown` fires,
/// reloading from `path` on each request of `reloads` (SIGHUP, installed by `main` before
/// anything else so an early SIGHUP can't kill the process; or a channel in tests).
/// [`DRAIN_TIMEOUT_ENV`] overrides `opts.drain_timeout` when set.
pub async fn run(
    path: PathBuf,
    config: Config,
    mut opts: RunOptions,
    shutdown: CancellationToken,
    reloads: Reloads,
) -> Result<RunReport, PipelineError> {
    if let Some(timeout) = drain_timeout_from_env()? {
        opts.drain_timeout = timeout;
    }
    let ops = match &config.ops {
        Some(ops) => Some(
            OpsServer::start(ops.listen)
                .await
                .map_err(PipelineError::Ops)?,
        ),
        None => None,
    };
    let result = run_generations(path, config, opts, shutdown, reloads).await;
    if let Some(ops) = ops {
        ops.shutdown().await;
    }
    result
}

async fn run_generations(
    path: PathBuf,
    mut config: Config,
    opts: RunOptions,
    shutdown: CancellationToken,
    mut reloads: Reloads,
) -> Result<RunReport, PipelineError> {
    let mut total = RunReport::default();
    // The configuration that ran before the last reload: where a reloaded one that fails
    // (a sink refusing its new token, a corrupt checkpoint of a new source) goes back to,
    // once, instead of taking the daemon down.
    let mut fallback: Option<Config> = None;
    loop {
        let generation = shutdown.child_token();
        let mut task = {
            let config = config.clone();
            let opts = opts.clone();
            let generation = generation.clone();
            tokio::spawn(async move { pipeline::run(&config, opts, generation).await })
        };
        let mut next: Option<Config> = None;
        let finished = loop {
            tokio::select! {
                r = &mut task => break r,
                () = reloads.recv() => {
                    if opts.mode == RunMode::Once {
                        tracing::info!("SIGHUP ignored: --once runs are not reloaded");
                        continue;
                    }
                    match Config::load(&path) {
                        Err(e) => tracing::error!(
                            config = %path.display(),
                            error = %e,
                            "reload failed; the running configuration stays in effect"
                        ),
                        // The state-dir lock is taken once per process (`main`): a new
                        // directory would run unlocked, so it needs a restart.
                        Ok(new) if new.state.dir != config.state.dir => tracing::error!(
                            config = %path.display(),
                            running = %config.state.dir.display(),
                            new = %new.state.dir.display(),
                            "reload refused: state.dir changed; restart to use another state directory (the running configuration stays in effect)"
                        ),
                        Ok(new) => {
                            let old_ops = config.ops.as_ref().map(|o| o.listen);
                            let new_ops = new.ops.as_ref().map(|o| o.listen);
                            if old_ops != new_ops {
                                tracing::warn!("ops.listen changed; the ops endpoint keeps its address until a restart");
                            }

                            tracing::info!(
                                config = %path.display(),
                                pipeline = %pipeline::topology(&new),
                                drain_timeout = %humantime::format_duration(opts.drain_timeout),
                                "reloading: draining the running pipeline (at most the drain timeout), then starting the new configuration"
                            );
                            next = Some(new);
                            generation.cancel();
                        }
                    }
                }
            }
        };
        let report = match finished
            .map_err(|e| PipelineError::Internal(format!("pipeline task: {e}")))?
        {
            Ok(report) => report,
            Err(error) => match fallback.take() {
                Some(previous) if !shutdown.is_cancelled() => {
                    tracing::error!(
                        config = %path.display(),
                        %error,
                        "the reloaded configuration failed; going back to the one that ran before it (fix the file and reload again)"
                    );
                    config = previous;
                    continue;
                }
                _ => return Err(error),
            },
        };
        total.sources.extend(report.sources);
        total.abandoned_sinks.extend(report.abandoned_sinks);
        match next {
            Some(new) if !shutdown.is_cancelled() => {
                fallback = Some(std::mem::replace(&mut config, new));
                tracing::info!("configuration reloaded; starting it");
            }
            _ => return Ok(total),
        }
    }
}

/// Where reload requests come from.
pub struct Reloads {
    inner: ReloadSource,
}

enum ReloadSource {
    #[cfg(unix)]
    Signal(tokio::signal::unix::Signal),
    Channel(mpsc::Receiver<()>),
    Never,
}

impl Reloads {
    /// Listen for SIGHUP from now on (never fires where there are no Unix signals, or
    /// when the handler cannot be installed: that is logged).
    pub fn sighup() -> Reloads {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(s) => Reloads::from_signal(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; hot reload is off");
                    Reloads::never()
                }
            }
        }
        #[cfg(not(unix))]
        Reloads::never()
    }

    /// A SIGHUP stream the caller installed (e.g. first thing in `main`, so an early
    /// SIGHUP is queued rather than fatal).
    #[cfg(unix)]
    pub fn from_signal(signal: tokio::signal::unix::Signal) -> Reloads {
        Reloads {
            inner: ReloadSource::Signal(signal),
        }
    }

    /// Every `()` received is a reload request.
    pub fn from_channel(rx: mpsc::Receiver<()>) -> Reloads {
        Reloads {
            inner: ReloadSource::Channel(rx),
        }
    }

    pub fn never() -> Reloads {
        Reloads {
            inner: ReloadSource::Never,
        }
    }

    /// Consume the requests already received, without waiting; true if there was one
    /// (`main` drops the SIGHUPs that arrived while the config was being read).
    pub fn take_pending(&mut self) -> bool {
        use futures::FutureExt;
        let mut any = false;
        loop {
            let got = match &mut self.inner {
                #[cfg(unix)]
                ReloadSource::Signal(s) => s.recv().now_or_never(),
                ReloadSource::Channel(rx) => rx.recv().now_or_never(),
                ReloadSource::Never => None,
            };
            match got {
                Some(Some(())) => any = true,
                _ => return any,
            }
        }
    }

    /// The next request; pending forever once the source is gone.
    async fn recv(&mut self) {
        let got = match &mut self.inner {
            #[cfg(unix)]
            ReloadSource::Signal(s) => s.recv().await.is_some(),
            ReloadSource::Channel(rx) => rx.recv().await.is_some(),
            ReloadSource::Never => false,
        };
        if !got {
            self.inner = ReloadSource::Never;
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_timeout_values() {
        assert_eq!(parse_drain_timeout("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_drain_timeout(" 0s ").unwrap(), Duration::ZERO);
        for bad in ["soon", "", "300000years", "18446744073709551615s", "2h"] {
            let e = parse_drain_timeout(bad).unwrap_err().to_string();
            assert!(e.contains(DRAIN_TIMEOUT_ENV), "{bad}: {e}");
        }
    }
}
