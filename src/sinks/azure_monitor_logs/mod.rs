//! `type = "azure_monitor_logs"`: Microsoft Sentinel / Log Analytics through the Azure
//! Monitor **Logs Ingestion API** (a data collection rule, DCR, reached through a data
//! collection endpoint, DCE, or the DCR's own ingestion endpoint).
//!
//! Owns: the sink's config and checks (`config.rs`), the row shape (`row.rs`: one ECS
//! event → one flat row, the column list the DCR and table must match), the Entra ID
//! client-credentials token (`token.rs`), and delivery, the probe and what a dead-letter
//! line says (`sink.rs`; the file itself is the shared `sinks::dead_letters`). A pipeline batch is delivered like this:
//!
//! 1. each event not yet delivered becomes a row; a row that alone exceeds `max_bytes`
//!    (1 MiB by default: the API takes at most 1 MB per call) goes to the dead-letter file
//!    with the reason;
//! 2. the rows are packed into JSON arrays of at most `max_bytes` (uncompressed), gzipped
//!    and POSTed to `{endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`
//!    with a bearer token and a fresh `x-ms-client-request-id`; 429, 5xx, timeouts and
//!    connection errors are retried with backoff honouring `Retry-After`
//!    (`http::send_with_retry`);
//! 3. 204 means the rows are accepted; 401 gets a new token once, then 401/403 stop the
//!    sink with a message naming the role the app needs ("Monitoring Metrics Publisher"
//!    on the DCR); 413 halves the request; a 400 or 404 naming the DCR or the stream
//!    stops the sink naming the config key; any other 400 halves the request until the
//!    refused row is alone, and that row goes to the dead-letter file (only once the API
//!    has accepted something from this sink: a setup that refuses every row fails the
//!    batch instead of quarantining it all);
//! 4. only when every event is accepted or durably quarantined is the batch acknowledged.
//!
//! Progress inside a batch is kept across the pipeline's retries of that batch, so a
//! retry re-sends only rows not yet accepted. The API has no idempotency key: a request
//! whose 204 was lost (a crash, a reset after the service took it) is sent again, and KQL
//! de-duplicates by `EventId` (the parser function in `examples/siem/sentinel/`).
//!
//! Must not: acknowledge before 204 for every row (or its fsynced dead letter); log or
//! print the client secret or the token (both [`Secret`](crate::secret::Secret)s; the
//! `Authorization` header is marked sensitive); follow redirects; read an answer without
//! a cap.

mod config;
pub mod row;
mod sink;
mod token;

pub use config::{AzureMonitorLogsConfig, DEFAULT_AUTHORITY, MAX_REQUEST_BYTES};
pub use row::COLUMNS;
pub use sink::{API_VERSION, AzureMonitorLogsSink, REQUEST_ID_HEADER, ROLE};

use futures::future::BoxFuture;

use super::{Batch, Sink, SinkContext, SinkError, SinkSettings};
use crate::config::common::{Cleartext, ConfigError, redact_userinfo, take_secret_file};

impl SinkSettings for AzureMonitorLogsConfig {
    fn type_name(&self) -> &'static str {
        "azure_monitor_logs"
    }

    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn inputs_mut(&mut self) -> &mut Vec<String> {
        &mut self.inputs
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        AzureMonitorLogsConfig::validate(self, key)
    }

    fn read_secret_files(&mut self, key: &str) -> Result<(), ConfigError> {
        take_secret_file(
            &format!("{key}.client_secret"),
            &mut self.client_secret,
            &mut self.client_secret_file,
        )
    }

    fn cleartext(&self, key: &str) -> Vec<Cleartext> {
        let authority = Cleartext::of(
            format!("{key}.authority"),
            &self.authority,
            "the client secret and the access token",
        );
        let endpoint = Cleartext::of(
            format!("{key}.endpoint"),
            &self.endpoint,
            "the access token and the events",
        );
        authority.into_iter().chain(endpoint).collect()
    }

    /// The probe gets a token first (Entra ID), then asks the endpoint.
    fn probe_targets(&self) -> Vec<String> {
        vec![
            format!(
                "{}/{}/oauth2/v2.0/token",
                redact_userinfo(self.authority.trim_end_matches('/')),
                self.tenant_id
            ),
            redact_userinfo(&self.endpoint),
        ]
    }

    fn build(&self, id: &str, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(AzureMonitorLogsSink::new(id, self, ctx)?))
    }
}

impl Sink for AzureMonitorLogsSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.deliver_inner(batch))
    }

    fn healthcheck(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.healthcheck_inner())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(sink: &str) -> Result<Config, String> {
        let text = format!(
            r#"
[state]
dir = "/tmp/x"
[sources.vbo_main]
type = "vbo"
url = "https://vbo.example.net:4443"
username = "u"
password = "p"
[sinks.sentinel]
type = "azure_monitor_logs"
inputs = ["vbo_main"]
{sink}
"#
        );
        Config::from_toml(&text, std::path::Path::new("t.toml"), &|_| None)
            .map_err(|e| e.to_string())
    }

    const OK: &str = r#"
endpoint = "https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com"
dcr_immutable_id = "dcr-0123456789abcdef0123456789abcdef"
stream = "Custom-VeeamRestore_CL"
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
client_id = "00000000-0000-0000-0000-000000000001"
"#;

    #[test]
    fn the_contract_config_loads() {
        let cfg = load(&format!("{OK}client_secret = \"S3cret-value\"")).unwrap();
        let text = format!("{cfg:?}");
        assert!(!text.contains("S3cret-value"), "{text}");
    }

    #[test]
    fn errors_name_the_key() {
        for (extra, key) in [
            ("", "sinks.sentinel.client_secret"),
            (
                "client_secret = \"s\"\nclient_secret_file = \"/x\"",
                "sinks.sentinel.client_secret",
            ),
            (
                "client_secret = \"s\"\nmax_bytes = 2000000",
                "sinks.sentinel.max_bytes",
            ),
            (
                "client_secret = \"s\"\nauthority = \"ftp://x\"",
                "sinks.sentinel.authority",
            ),
            ("client_secret = \"s\"\nunknown = 1", "unknown"),
        ] {
            let e = load(&format!("{OK}{extra}")).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
            assert!(!e.contains("\"s\""), "{e}");
        }
        let bad_dcr = OK.replace("dcr-0123456789abcdef0123456789abcdef", "my-dcr");
        let e = load(&format!("{bad_dcr}client_secret = \"s\"")).unwrap_err();
        assert!(e.contains("sinks.sentinel.dcr_immutable_id"), "{e}");
        let bad_stream = OK.replace("Custom-VeeamRestore_CL", "Custom/x?y");
        let e = load(&format!("{bad_stream}client_secret = \"s\"")).unwrap_err();
        assert!(e.contains("sinks.sentinel.stream"), "{e}");
    }

    /// `dcr_immutable_id` is exactly `dcr-` and 32 hex digits, in either case.
    #[test]
    fn the_dcr_id_must_be_dcr_and_32_hex_digits() {
        let with = |id: &str| {
            let text = OK.replace("dcr-0123456789abcdef0123456789abcdef", id);
            load(&format!("{text}client_secret = \"s\""))
        };
        for good in [
            "dcr-0123456789abcdef0123456789abcdef",
            "dcr-0123456789ABCDEF0123456789ABCDEF",
        ] {
            assert!(with(good).is_ok(), "{good}: {:?}", with(good).err());
        }
        for bad in [
            "dcr-",
            "dcr-xyz",
            "dcr-0123456789abcdef0123456789abcde",
            "dcr-0123456789abcdef0123456789abcdef0",
            "dcr-0123456789abcdef0123456789abcdeg",
            "dcr-0123456789abcdef-0123456789abcde",
            "DCR-0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
            "/subscriptions/x/resourceGroups/y/providers/Microsoft.Insights/dataCollectionRules/z",
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.contains("sinks.sentinel.dcr_immutable_id"), "{bad}: {e}");
            assert!(e.contains("32 hex digits"), "{bad}: {e}");
        }
    }
}
