//! `run`: the long-lived process around the pipeline — the ops endpoint and hot reload.
//!
//! Owns the lifecycle: start the ops endpoint (once per process), run the pipeline, and on
//! SIGHUP re-read the config file. A config that fails to load or validate is logged and
//! the running pipeline is kept. A good one replaces it: the running pipeline drains
//! (in-flight batches delivered, checkpoints written) before the new one starts from those
//! checkpoints, so a reload neither loses nor repeats events.
//!
//! Must not: know any source's or sink's details (that is the pipeline's), or change the
//! ops listen address without a restart (a changed `[ops] listen` is reported, not applied).

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ops::OpsServer;
use crate::pipeline::{self, PipelineError, RunOptions, RunReport};
use crate::sources::RunMode;

/// Run `config` (loaded from `path`) until `--once` completes or `shutdown` fires,
/// reloading from `path` on each signal of `reloads` (SIGHUP; installed by `main` before
/// anything else, so an early SIGHUP can't kill the process).
pub async fn run(
    path: PathBuf,
    config: Config,
    opts: RunOptions,
    shutdown: CancellationToken,
    reloads: ReloadSignal,
) -> Result<RunReport, PipelineError> {
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
    mut reloads: ReloadSignal,
) -> Result<RunReport, PipelineError> {
    let mut total = RunReport::default();
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
                        Ok(new) => {
                            let old_ops = config.ops.as_ref().map(|o| o.listen);
                            let new_ops = new.ops.as_ref().map(|o| o.listen);
                            if old_ops != new_ops {
                                tracing::warn!("ops.listen changed; the ops endpoint keeps its address until a restart");
                            }
                            tracing::info!(
                                config = %path.display(),
                                pipeline = %pipeline::topology(&new),
                                "reloading: draining the running pipeline, then starting the new configuration"
                            );
                            next = Some(new);
                            generation.cancel();
                        }
                    }
                }
            }
        };
        let report =
            finished.map_err(|e| PipelineError::Internal(format!("pipeline task: {e}")))??;
        total.sources.extend(report.sources);
        match next {
            Some(new) if !shutdown.is_cancelled() => {
                config = new;
                tracing::info!("configuration reloaded");
            }
            _ => return Ok(total),
        }
    }
}

/// SIGHUP as a stream; never fires where there are no Unix signals. Creating it installs
/// the handler (needs a Tokio runtime context); a SIGHUP received from then on is kept
/// until [`recv`](Self::recv) or [`take_pending`](Self::take_pending) sees it.
pub struct ReloadSignal {
    #[cfg(unix)]
    inner: Option<tokio::signal::unix::Signal>,
}

impl Default for ReloadSignal {
    fn default() -> Self {
        ReloadSignal::new()
    }
}

impl ReloadSignal {
    pub fn new() -> ReloadSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let inner = match signal(SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; hot reload is off");
                    None
                }
            };
            ReloadSignal { inner }
        }
        #[cfg(not(unix))]
        ReloadSignal {}
    }

    /// Consume SIGHUPs already received (without waiting); true if there was one.
    pub fn take_pending(&mut self) -> bool {
        #[cfg(unix)]
        if let Some(s) = self.inner.as_mut() {
            use futures::FutureExt;
            let mut any = false;
            while let Some(Some(())) = s.recv().now_or_never() {
                any = true;
            }
            return any;
        }
        false
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.inner.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
            self.inner = None;
        }
        std::future::pending::<()>().await
    }
}
