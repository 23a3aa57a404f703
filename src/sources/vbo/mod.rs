//! `type = "vbo"`: Veeam Backup for Microsoft 365's REST API (restore sessions and their
//! events). `config` holds the keys, `token` the OAuth2 password-grant tokens, `poller`
//! the algorithm and the resumable state, `oldest` the sessions a v6/v7 listing pass keeps.

mod config;
mod oldest;
mod poller;
pub mod token;

pub use config::{ApiVersion, VboSource, VboSourceConfig};
pub use poller::{
    MAX_PAGE_BYTES, SessionCursor, VboPoller, VboState, parse_page, parse_page_with_facts,
};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{Emitter, RunMode, Source, SourceError, SourceSettings};
use crate::config::common::{ConfigError, take_secret_file};
use crate::map::Record;

impl SourceSettings for VboSourceConfig {
    fn type_name(&self) -> &'static str {
        "vbo"
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn carries(&self) -> &'static str {
        "the password and access tokens"
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        VboSourceConfig::validate(self, key)
    }

    fn read_secret_files(&mut self, key: &str) -> Result<(), ConfigError> {
        take_secret_file(
            &format!("{key}.password"),
            &mut self.password,
            &mut self.password_file,
        )
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
        let source = VboSource::resolve(id, self)?;
        Ok(Box::new(VboPoller::new(&source, stored)?))
    }
}

impl Source for VboPoller {
    fn run(
        self: Box<Self>,
        mode: RunMode,
        emitter: Emitter,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(VboPoller::run(*self, mode, emitter))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(String, Option<Record>), SourceError>> {
        Box::pin(VboPoller::probe(self))
    }
}
