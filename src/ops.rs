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
//! atomics and one short mutex), or let its clients take the daemon's resources: at most
//! [`MAX_CONNECTIONS`] connections are served at a time, each closed after
//! [`CONNECTION_LIFETIME`] (a scraper reconnects; a client that never finishes its request,
//! or holds thousands of idle connections, no longer takes every file descriptor the
//! checkpoint and the sinks need).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Connections served at a time; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection is closed this long after it was accepted, finished or not.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// A running ops server.
pub struct OpsServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl OpsServer {
    /// Bind `listen` and serve until [`shutdown`](Self::shutdown).
    pub async fn start(listen: SocketAddr) -> Result<OpsServer, String> {
        Self::start_bounded(listen, MAX_CONNECTIONS, CONNECTION_LIFETIME).await
    }

    async fn start_bounded(
        listen: SocketAddr,
        connections: usize,
        lifetime: Duration,
    ) -> Result<OpsServer, String> {
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            format!(
                "ops.listen: cannot listen on {listen}: {e}. Pick a free address or remove [ops]"
            )
        })?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = CancellationToken::new();
        let app = router();
        let s = stop.clone();
        let listener = Bounded {
            inner: listener,
            permits: Arc::new(Semaphore::new(connections)),
            lifetime,
        };
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

/// The listener with [`MAX_CONNECTIONS`] and [`CONNECTION_LIFETIME`].
struct Bounded {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    lifetime: Duration,
}

impl axum::serve::Listener for Bounded {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedStream, SocketAddr) {
        // The semaphore is never closed: a permit always comes.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let stream = BoundedStream {
            stream,
            deadline: Box::pin(tokio::time::sleep(self.lifetime)),
            _permit: permit,
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection holding its slot until dropped; reads and writes fail once its
/// lifetime is over, so the server closes it.
struct BoundedStream {
    stream: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl BoundedStream {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn lifetime_over() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "ops connection lifetime over")
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(lifetime_over()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(lifetime_over()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_health(addr: SocketAddr) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Clients that open connections and never finish a request hold at most the
    /// connection limit, each only for its lifetime: /health answers again after it.
    #[tokio::test]
    async fn idle_clients_cannot_hold_the_endpoint() {
        let lifetime = Duration::from_millis(400);
        let ops = OpsServer::start_bounded("127.0.0.1:0".parse().unwrap(), 3, lifetime)
            .await
            .unwrap();
        let addr = ops.addr();
        assert!(get_health(addr).await.ends_with("ok\n"));
        let mut idle = Vec::new();
        for _ in 0..6 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
                .await
                .unwrap();
            idle.push(c);
        }
        let started = tokio::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(10), get_health(addr))
            .await
            .expect("served once the idle connections' lifetime is over");
        assert!(answer.ends_with("ok\n"), "{answer}");
        assert!(started.elapsed() >= lifetime / 2, "{:?}", started.elapsed());
        // The idle clients were disconnected (EOF or reset), not served.
        for mut c in idle {
            let mut rest = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
            assert!(read.is_ok(), "an idle connection stayed open");
        }
        ops.shutdown().await;
    }
}
