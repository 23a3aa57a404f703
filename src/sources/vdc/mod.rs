//! `type = "vdc"`: Veeam Data Cloud's public API (backup jobs → job sessions → session
//! logs). `config` holds the keys, `api` the requests and paging, `download` the log
//! download stream, `poller` the algorithm and the resumable state.

pub mod api;
mod charset;
mod config;
pub mod download;
mod poller;

pub use config::{LogMode, VdcSource, VdcSourceConfig};
pub use poller::{BATCH, JobCursor, SessionCursor, VdcPoller, VdcState};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{Emitter, RunMode, Source, SourceError, SourceSettings};
use crate::config::common::{ConfigError, check_header_secret, take_secret_file};
use crate::map::Record;

impl SourceSettings for VdcSourceConfig {
    fn type_name(&self) -> &'static str {
        "vdc"
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn carries(&self) -> &'static str {
        "the API key and the job logs"
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        VdcSourceConfig::validate(self, key)
    }

    fn read_secret_files(&mut self, key: &str) -> Result<(), ConfigError> {
        let key = format!("{key}.api_key");
        take_secret_file(&key, &mut self.api_key, &mut self.api_key_file)?;
        check_header_secret(&key, self.api_key.as_ref())
    }

    fn set_start_time(&mut self, at: DateTime<Utc>) {
        self.start_time = Some(at);
    }

    fn ship_in_progress(&mut self) {
        self.ship_in_progress = true;
    }

    fn build(
        &self,
        id: &str,
        stored: Option<serde_json::Value>,
    ) -> Result<Box<dyn Source>, SourceError> {
        let source = VdcSource::resolve(id, self)?;
        Ok(Box::new(VdcPoller::new(&source, stored)?))
    }
}

impl Source for VdcPoller {
    fn run(
        self: Box<Self>,
        mode: RunMode,
        emitter: Emitter,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(VdcPoller::run(*self, mode, emitter))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(String, Option<Record>), SourceError>> {
        Box::pin(VdcPoller::probe(self))
    }
}
