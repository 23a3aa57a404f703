//! `type = "stdout"`: one JSON event per line (NDJSON), or indented JSON with `pretty`.
//!
//! A batch is acknowledged after it is written and stdout is flushed. Logs go to stderr,
//! so stdout carries nothing but events.

use futures::future::BoxFuture;
use tokio::io::{AsyncWriteExt, Stdout};

use serde::Deserialize;

use super::{Batch, Sink, SinkContext, SinkError, SinkSettings};
use crate::config::common::ConfigError;

/// `type = "stdout"`: NDJSON on standard output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    pub inputs: Vec<String>,
    /// Indented JSON for humans (not NDJSON any more).
    #[serde(default)]
    pub pretty: bool,
}

impl SinkSettings for StdoutSinkConfig {
    fn type_name(&self) -> &'static str {
        "stdout"
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn inputs_mut(&mut self) -> &mut Vec<String> {
        &mut self.inputs
    }

    fn validate(&self, _key: &str) -> Result<(), ConfigError> {
        Ok(())
    }

    fn build(&self, _id: &str, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(StdoutSink::new(self.pretty)))
    }
}

pub struct StdoutSink {
    out: Stdout,
    pretty: bool,
    buf: Vec<u8>,
}

impl StdoutSink {
    pub fn new(pretty: bool) -> Self {
        StdoutSink {
            out: tokio::io::stdout(),
            pretty,
            buf: Vec::new(),
        }
    }
}

impl Sink for StdoutSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.buf.clear();
            for e in &batch.events {
                if self.pretty {
                    self.buf
                        .extend_from_slice(crate::event::pretty::indent(&e.json).as_bytes());
                } else {
                    self.buf.extend_from_slice(e.json.as_bytes());
                }
                self.buf.push(b'\n');
            }
            let io = |e: std::io::Error| {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    SinkError::Closed
                } else {
                    SinkError::Retryable(format!("cannot write to stdout: {e}"))
                }
            };
            self.out.write_all(&self.buf).await.map_err(io)?;
            self.out.flush().await.map_err(io)?;
            Ok(())
        })
    }
}
