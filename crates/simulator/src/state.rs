//! The state shared by the HTTP handlers, the live ticker and [`SimHandle`](super::SimHandle):
//! datasets (VB365 and VDC), tokens, throttle counters, statistics and fault injection, each
//! behind its own short-lived lock (never held across an `.await`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use super::auth::{Throttler, TokenStore};
use super::data::Dataset;
use super::rng::{Rng, Tag};
use super::vdc_data::VdcData;
use super::{SimConfig, SimStats};

pub(crate) struct Shared {
    pub(crate) cfg: SimConfig,
    pub(crate) installation_id: Uuid,
    data: RwLock<Dataset>,
    vdc: RwLock<VdcData>,
    tokens: Mutex<TokenStore>,
    throttler: Mutex<Throttler>,
    stats: Mutex<SimStats>,
    /// `f64` bits of the current fault-injection probability.
    error_rate: AtomicU64,
    faults: Mutex<Rng>,
}

impl Shared {
    pub(crate) fn new(cfg: SimConfig, started: DateTime<Utc>) -> Shared {
        // Data times are relative to the start, truncated to whole seconds.
        let started = started.trunc_subsecs(0);
        Shared {
            installation_id: Rng::keyed(cfg.seed, Tag::Installation, &[]).uuid(),
            data: RwLock::new(
                Dataset::new(cfg.seed, cfg.sessions, cfg.events_per_session, started)
                    .with_running_items(cfg.running_items),
            ),
            vdc: RwLock::new(VdcData::new(
                cfg.seed,
                cfg.vdc_jobs,
                cfg.vdc_sessions_per_job,
                cfg.vdc_logs_per_session,
                started,
            )),
            tokens: Mutex::default(),
            throttler: Mutex::default(),
            stats: Mutex::default(),
            error_rate: AtomicU64::new(clamp_rate(cfg.error_rate).to_bits()),
            faults: Mutex::new(Rng::keyed(cfg.seed, Tag::Faults, &[])),
            cfg,
        }
    }

    pub(crate) fn data(&self) -> RwLockReadGuard<'_, Dataset> {
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn data_mut(&self) -> RwLockWriteGuard<'_, Dataset> {
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn vdc(&self) -> RwLockReadGuard<'_, VdcData> {
        self.vdc.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn vdc_mut(&self) -> RwLockWriteGuard<'_, VdcData> {
        self.vdc.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn throttler(&self) -> MutexGuard<'_, Throttler> {
        self.throttler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Updates the statistics.
    pub(crate) fn count(&self, update: impl FnOnce(&mut SimStats)) {
        update(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub(crate) fn stats(&self) -> SimStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a protocol violation by the client (and logs it).
    pub(crate) fn violation(&self, what: String) {
        tracing::warn!(violation = %what, "VB365 simulator: client protocol violation");
        self.count(|s| s.violations.push(what));
    }

    pub(crate) fn set_error_rate(&self, rate: f64) {
        self.error_rate
            .store(clamp_rate(rate).to_bits(), Ordering::Relaxed);
    }

    /// Draws whether this data request gets an injected 503.
    pub(crate) fn inject_fault(&self) -> bool {
        let rate = f64::from_bits(self.error_rate.load(Ordering::Relaxed));
        rate > 0.0
            && self
                .faults
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .chance(rate)
    }
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}
