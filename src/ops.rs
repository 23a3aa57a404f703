//! The ops endpoint (`[ops] listen`): `/metrics`, `/health`, `/ready`.
//!
//! Owns the HTTP server only; what it reports lives in [`crate::metrics`].
//! - `/metrics`: every metric in the text exposition format (OpenMetrics 1.0, which
//!   Prometheus scrapes natively).
//! - `/health`: 200 while the process serves requests (liveness).
//! - `/ready`: 200 once every source has completed a poll (so it authenticated) and every
//!   sink passed its health check or delivered; otherwise 503 naming what is not ready.
//!   Either way the body adds a line per archive sink with an S3 upload backlog (files
//!   and the age of the oldest), which does not change the status: the backlog is for
//!   alerting, and events are still acknowledged.
//!
//! Must not: expose configuration or secrets, or block the pipeline (handlers only read
//! atomics and one short mutex).

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running ops server.
pub struct OpsServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl OpsServer {
    /// Bind `listen` and serve until [`shutdown`](Self::shutdown).
    pub async fn start(listen: SocketAddr) -> Result<OpsServer, String> {
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            format!(
                "ops.listen: cannot listen on {listen}: {e}. Pick a free address or remove [ops]"
            )
        })?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = CancellationToken::new();
        let app = router();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "ops endpoint stopped");
            }
        });
        tracing::info!(%addr, "ops endpoint listening (/metrics, /health, /ready)");
        Ok(OpsServer { addr, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn router() -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready_handler))
}

async fn metrics_handler() -> impl IntoResponse {
    let body = metrics::global().render(chrono::Utc::now());
    ([(header::CONTENT_TYPE, OPENMETRICS)], body)
}

async fn ready_handler() -> impl IntoResponse {
    let (status, mut body) = match metrics::global().not_ready() {
        Some(waiting) if waiting.is_empty() => (StatusCode::OK, "ready\n".to_string()),
        Some(waiting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", waiting.join(", ")),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the pipeline has not started\n".to_string(),
        ),
    };
    for note in metrics::global().ready_notes() {
        body.push_str(&note);
        body.push('\n');
    }
    (status, body)
}
