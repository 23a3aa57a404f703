//! Embedded VB365 (Veeam Backup for Microsoft 365) REST API simulator, serving v6, v7 and v8
//! at once, plus the Veeam Data Cloud (VDC) public API under `/v1` (`vdc`, `vdc_data`), used
//! by the `veeam-siem` binary's `demo` and `simulate` commands and by the integration tests.
//!
//! It is a test peer written from Veeam's OpenAPI specs: token grants (password, refresh)
//! with expiry, token-endpoint throttling, the restore-session audit trail with paging,
//! filters and HAL links, fault injection and latency. Protocol misuse the real server would
//! reject gets an HTTP error *and* is recorded in [`SimStats::violations`], so tests fail
//! loudly. The data set is a pure function of the seed (see `data.rs`); [`SimHandle::tick`]
//! makes it grow like a live server.
//!
//! Module map: `vb365` HTTP endpoints and protocol checks (and the documented assumptions),
//! `faults` the fault knobs of the VB365 endpoints ([`SimConfig::faults`], used by the fault
//! suite), `drift` the vendor-drift knobs of both APIs ([`SimConfig::drift`]), `wire` JSON
//! payloads per version, `data` sessions and on-demand events, `catalog` names and items,
//! `rng` deterministic randomness, `auth` tokens and throttle, `state` shared state, `tls`
//! self-signed certificate.
//!
//! It is its own crate so that "written independently of the client" is checked by the
//! compiler: it depends on nothing of `veeam-siem`, and the `veeam-siem` library cannot see
//! its types (only the binary and the tests depend on it).

mod auth;
mod catalog;
mod data;
mod drift;
pub mod faults;
mod rng;
mod state;
mod tls;
mod vb365;
mod vdc;
mod vdc_data;
mod wire;

pub use drift::{Drift, DriftConfig, DriftKind, Expect};
pub use faults::{Burst, Corruption, DeleteWhileListing, FaultConfig, FaultStats, Vanish};
pub use vdc::VdcGzip;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use state::Shared;

/// How long `shutdown` lets in-flight requests finish.
const GRACE: Duration = Duration::from_secs(2);

/// Token-endpoint throttle (WebApiThrottle-like fixed windows, per client IP).
/// A limit of 0 disables that window.
#[derive(Debug, Clone)]
pub struct Throttle {
    pub per_second: u32,
    pub per_minute: u32,
    pub per_hour: u32,
    /// Exempt 127.0.0.0/8 and ::1 from the limit.
    pub exempt_loopback: bool,
}

impl Default for Throttle {
    /// VB365's defaults: 1 per second, 5 per minute, 1500 per hour, loopback not exempt.
    fn default() -> Self {
        Throttle {
            per_second: 1,
            per_minute: 5,
            per_hour: 1500,
            exempt_loopback: false,
        }
    }
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Serve HTTPS with a generated self-signed certificate (else plain HTTP).
    pub tls: bool,
    pub seed: u64,
    /// Number of restore sessions at start.
    pub sessions: usize,
    /// Average number of item events per session (markers come on top).
    pub events_per_session: usize,
    pub username: String,
    pub password: String,
    pub token_ttl: Duration,
    pub throttle: Option<Throttle>,
    /// Probability (0..1) of answering a data request with 503.
    pub error_rate: f64,
    /// Added to every response.
    pub latency: Duration,
    /// When set, a background task calls `tick()` at this interval.
    pub live_interval: Option<Duration>,
    /// VB365: the newest item event of a working session is served as `Running` (no
    /// `endTime`) until a newer event follows it or the session stops; it then gets its
    /// final status in place, with the same id and `order`.
    pub running_items: bool,
    /// VDC: the API key accepted in `x-api-key` or `Authorization: Bearer`.
    pub vdc_api_key: String,
    /// VDC: number of backup jobs.
    pub vdc_jobs: usize,
    /// VDC: sessions per job at start (one a day; every other job's newest is running).
    pub vdc_sessions_per_job: usize,
    /// VDC: average objects processed per session (log lines: that plus 3).
    pub vdc_logs_per_session: usize,
    /// VDC: how `/logs/download` is gzipped when the client accepts gzip.
    pub vdc_gzip: VdcGzip,
    /// VDC: answer collections as pages of this size (with `offset`/`limit`) instead of
    /// bare arrays.
    pub vdc_page_limit: Option<usize>,
    /// VB365 fault knobs (bad records, non-JSON pages, 401/429/5xx, stalls, resets); all
    /// off by default. See `faults.rs`.
    pub faults: FaultConfig,
    /// Vendor drift (odd but plausible values in a seeded fraction of the records of both
    /// APIs); off by default, and then the simulator conforms to Veeam's spec. See
    /// `drift.rs`.
    pub drift: DriftConfig,
    /// The moment the simulated history is anchored at (data times are relative to it);
    /// `None`: when the simulator starts. A fixed anchor makes the data, and so the events
    /// a client ships, the same on every run (golden tests).
    pub anchor: Option<DateTime<Utc>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            seed: 42,
            sessions: 20,
            events_per_session: 10,
            username: "svc-siem".to_string(),
            password: "sim-password".to_string(),
            token_ttl: Duration::from_secs(3600),
            throttle: None,
            error_rate: 0.0,
            latency: Duration::ZERO,
            live_interval: None,
            running_items: false,
            vdc_api_key: "sim-vdc-key".to_string(),
            vdc_jobs: 3,
            vdc_sessions_per_job: 4,
            vdc_logs_per_session: 8,
            vdc_gzip: VdcGzip::ContentEncoding,
            vdc_page_limit: None,
            faults: FaultConfig::default(),
            drift: DriftConfig::default(),
            anchor: None,
        }
    }
}

impl SimConfig {
    /// The data set of `veeam-siem demo` (seed 42, 12 sessions of about 6 events), which
    /// the golden test (`tests/it/golden_demo.rs`) pins byte for byte.
    pub fn demo() -> SimConfig {
        SimConfig {
            seed: 42,
            sessions: 12,
            events_per_session: 6,
            ..SimConfig::default()
        }
    }
}

/// What the simulator has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Successful `grant_type=password` logins.
    pub password_logins: u64,
    /// Successful `grant_type=refresh_token` grants.
    pub refreshes: u64,
    /// `/token` requests answered 400 (bad credentials, bad refresh token, missing fields).
    pub token_failures: u64,
    /// `/token` requests answered 429.
    pub throttled: u64,
    /// Requests routed to a data endpoint (anything but `/token`, `/token/logout` and
    /// `/Health`), whatever their outcome.
    pub data_requests: u64,
    /// Data requests answered 401 (no, unknown or expired bearer token).
    pub unauthorized: u64,
    /// Data requests answered with an injected 503.
    pub injected_errors: u64,
    /// Protocol violations by clients, one line each (`METHOD URI: problem`).
    pub violations: Vec<String>,
    /// Requests under `/v1` (VDC), whatever their outcome.
    pub vdc_requests: u64,
    /// VDC requests answered 401 (missing or wrong API key).
    pub vdc_unauthorized: u64,
    /// VDC `/logs/download` responses.
    pub vdc_downloads: u64,
    /// VDC downloads sent gzipped.
    pub vdc_gzipped: u64,
}

/// One line of a simulated VDC job-session log (for exactly-once assertions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VdcLogKey {
    pub job_id: String,
    pub session_id: String,
    /// 0-based position in the session log, oldest first.
    pub index: u64,
    /// The log entry id (`/logs`); the download has none.
    pub id: String,
    pub title: String,
}

/// A restore-session event the fault knobs spoil on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoiledEvent {
    pub session_id: String,
    pub event_id: String,
    pub order: u32,
    pub corruption: Corruption,
}

/// A running simulator. Clones share the same server.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    faults: Arc<faults::Faults>,
    base_url: String,
    ca_pem: Option<String>,
    stop: CancellationToken,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl SimHandle {
    /// Binds `cfg.listen`, spawns the server (and the live ticker when `live_interval` is
    /// set) and returns once it accepts connections.
    pub async fn start(cfg: SimConfig) -> io::Result<SimHandle> {
        let shared = Arc::new(Shared::new(
            cfg.clone(),
            cfg.anchor.unwrap_or_else(Utc::now),
        ));
        let faults = Arc::new(faults::Faults::new(cfg.seed, cfg.faults.clone()));
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let (server, ca_pem) = if cfg.tls {
            let identity = tls::self_signed()?;
            let task = serve_tls(
                listener,
                identity.server_config,
                shared.clone(),
                faults.clone(),
                stop.clone(),
            )?;
            (task, Some(identity.cert_pem))
        } else {
            (
                serve_plain(listener, shared.clone(), faults.clone(), stop.clone()),
                None,
            )
        };
        let mut tasks = vec![server];
        if let Some(every) = cfg.live_interval {
            tasks.push(spawn_ticker(shared.clone(), every, stop.clone()));
        }
        let scheme = if cfg.tls { "https" } else { "http" };
        tracing::info!(%addr, scheme, seed = cfg.seed, "VB365 simulator listening");
        Ok(SimHandle {
            shared,
            faults,
            base_url: format!("{scheme}://{addr}"),
            ca_pem,
            stop,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// e.g. `https://127.0.0.1:43123` (no version, no trailing slash).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The self-signed certificate (PEM) clients should trust, when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// One live step: working sessions gain events and may stop; a new session starts.
    /// Ids and counts are deterministic given the seed and the number of ticks.
    pub fn tick(&self) {
        let now = Utc::now();
        self.shared.data_mut().tick(now);
        self.shared.vdc_mut().tick(now);
    }

    /// Lines of every VDC job-session log that currently exist.
    pub fn vdc_log_count(&self) -> usize {
        self.shared.vdc().log_count()
    }

    /// Every VDC log line that currently exists.
    pub fn vdc_log_keys(&self) -> Vec<VdcLogKey> {
        let data = self.shared.vdc();
        let mut keys = Vec::new();
        for job in data.jobs() {
            for (s, session) in job.sessions.iter().enumerate() {
                for (index, line) in data.lines(job, s).enumerate() {
                    keys.push(VdcLogKey {
                        job_id: job.id.to_string(),
                        session_id: session.id.to_string(),
                        index: index as u64,
                        id: line.id.to_string(),
                        title: line.title,
                    });
                }
            }
        }
        keys
    }

    /// VDC job sessions (all jobs).
    pub fn vdc_session_count(&self) -> usize {
        self.shared.vdc().session_count()
    }

    /// The VDC API key the simulator accepts.
    pub fn vdc_api_key(&self) -> String {
        self.shared.cfg.vdc_api_key.clone()
    }

    /// Ids of every restore-session event that currently exists.
    pub fn event_ids(&self) -> Vec<String> {
        self.shared.data().event_ids()
    }

    pub fn event_count(&self) -> usize {
        self.shared.data().event_count()
    }

    pub fn session_count(&self) -> usize {
        self.shared.data().sessions().len()
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// Invalidates all access tokens (and refresh tokens too when `refresh`): clients get
    /// 401 on their next data request and must refresh or log in again.
    pub fn revoke_tokens(&self, refresh: bool) {
        self.shared.tokens().revoke_all(refresh);
    }

    /// Changes the probability of injected 503s on data requests.
    pub fn set_error_rate(&self, rate: f64) {
        self.shared.set_error_rate(rate);
    }

    /// Replaces the fault knobs (counters and one-shot state are kept).
    pub fn set_faults(&self, cfg: FaultConfig) {
        self.faults.set_config(cfg);
    }

    /// The fault knobs in force.
    pub fn faults(&self) -> FaultConfig {
        self.faults.config()
    }

    /// What the fault knobs did so far.
    pub fn fault_stats(&self) -> FaultStats {
        self.faults.stats()
    }

    /// Makes a restore session vanish (`Some`) or come back (`None`). Unknown or malformed
    /// ids are ignored.
    pub fn hide_session(&self, session_id: &str, how: Option<Vanish>) {
        if let Ok(id) = uuid::Uuid::parse_str(session_id) {
            self.faults.hide(id, how);
        }
    }

    /// Restore-session ids in creation order.
    pub fn session_ids(&self) -> Vec<String> {
        let data = self.shared.data();
        data.sessions()
            .iter()
            .map(|s| s.profile.id.to_string())
            .collect()
    }

    /// Ids of the restore sessions still working.
    pub fn working_session_ids(&self) -> Vec<String> {
        let data = self.shared.data();
        data.sessions()
            .iter()
            .filter(|s| s.is_working())
            .map(|s| s.profile.id.to_string())
            .collect()
    }

    /// Ids of the events served as `Running` now, with their final status (see
    /// [`SimConfig::running_items`]; empty when it is off).
    pub fn running_event_ids(&self) -> Vec<String> {
        let data = self.shared.data();
        data.sessions()
            .iter()
            .filter_map(|s| data.event(s, s.events.checked_sub(1)?))
            .filter(|e| e.running)
            .map(|e| e.id.to_string())
            .collect()
    }

    /// (event id, status) of every event; one served as `Running` now comes with the
    /// status it will end with.
    pub fn event_statuses(&self) -> Vec<(String, &'static str)> {
        let data = self.shared.data();
        data.sessions()
            .iter()
            .flat_map(|s| (0..s.events).filter_map(|o| data.event(s, o)))
            .map(|e| (e.id.to_string(), e.status.as_str()))
            .collect()
    }

    /// Event ids of one restore session, in order (empty for an unknown id).
    pub fn session_event_ids(&self, session_id: &str) -> Vec<String> {
        let data = self.shared.data();
        let Some(session) = uuid::Uuid::parse_str(session_id)
            .ok()
            .and_then(|id| data.find_session(id))
        else {
            return Vec::new();
        };
        (0..session.events)
            .map(|o| data.event_id(session, o).to_string())
            .collect()
    }

    /// How the drift knobs serve the record of `kind` with this id (`None`: as the spec
    /// says). Ids: restore session / event ids, VDC job / job session ids, and for VDC log
    /// entries and download lines the entry's `/logs` id ([`VdcLogKey::id`]).
    pub fn drift_of(&self, kind: DriftKind, id: &str) -> Option<Drift> {
        drift::drift_of(&self.shared.cfg, kind, id)
    }

    /// Every existing event the fault knobs spoil (see [`FaultConfig::corrupt_rate`]).
    pub fn spoiled_events(&self) -> Vec<SpoiledEvent> {
        let cfg = self.faults.config();
        let data = self.shared.data();
        let mut out = Vec::new();
        for s in data.sessions() {
            for order in 0..s.events {
                if let Some(corruption) =
                    faults::corruption_of(self.shared.cfg.seed, &cfg, s.index, order)
                {
                    out.push(SpoiledEvent {
                        session_id: s.profile.id.to_string(),
                        event_id: data.event_id(s, order).to_string(),
                        order,
                        corruption,
                    });
                }
            }
        }
        out
    }

    /// Stops the server and the ticker, letting in-flight requests finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(GRACE * 2, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

fn serve_plain(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    faults: Arc<faults::Faults>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let app = vb365::router(shared, faults).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        // Like real servers (IIS/Kestrel send with TCP_NODELAY): without it, the last
        // small segment of a large page waits for the client's delayed ACK (~40 ms).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "VB365 simulator stopped");
        }
    })
}

fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    faults: Arc<faults::Faults>,
    stop: CancellationToken,
) -> io::Result<JoinHandle<()>> {
    let app = vb365::router(shared, faults).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    // TCP_NODELAY, as for plain HTTP (see `serve_plain`).
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(RustlsConfig::from_config(config))
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = axum_server::from_tcp(listener.into_std()?)?
        .acceptor(acceptor)
        .handle(handle.clone());
    tokio::spawn(async move {
        stop.cancelled().await;
        handle.graceful_shutdown(Some(GRACE));
    });
    Ok(tokio::spawn(async move {
        if let Err(error) = server.serve(app).await {
            tracing::error!(%error, "VB365 simulator stopped");
        }
    }))
}

fn spawn_ticker(shared: Arc<Shared>, every: Duration, stop: CancellationToken) -> JoinHandle<()> {
    let every = every.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = interval.tick() => {
                    let now = Utc::now();
                    shared.data_mut().tick(now);
                    shared.vdc_mut().tick(now);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_send_sync_and_defaults_match_the_contract() {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<SimHandle>();
        let cfg = SimConfig::default();
        assert_eq!(
            (cfg.listen.port(), cfg.tls, cfg.seed, cfg.sessions),
            (0, true, 42, 20)
        );
        let t = Throttle::default();
        assert_eq!(
            (t.per_second, t.per_minute, t.per_hour, t.exempt_loopback),
            (1, 5, 1500, false)
        );
    }
}
