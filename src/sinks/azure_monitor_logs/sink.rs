//! The Logs Ingestion sink itself: rows → gzipped JSON-array requests of at most
//! `max_bytes` → `POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}` → 204; the
//! answers the API documents handled (see `sinks::azure_monitor_logs`), and the probe.

use std::collections::VecDeque;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};

use crate::config::common::ConfigError;
use crate::http::{self, HttpError, RetryPolicy};
use crate::sinks::dead_letters::DeadLetters;
use crate::sinks::{Batch, SinkContext, SinkError};

use super::config::{AzureMonitorLogsConfig, base_url};
use super::row::encode_row;
use super::token::{ClientCredentials, TokenCache, TokenError, string_field};

/// The API version the sink speaks.
pub const API_VERSION: &str = "2023-01-01";
/// The request id header (a new UUID per request; the same across its retries).
pub const REQUEST_ID_HEADER: &str = "x-ms-client-request-id";
/// Largest success body read (a 204 has none).
const REPLY_LIMIT: usize = 64 * 1024;
/// The role the app needs on the DCR.
pub const ROLE: &str = "Monitoring Metrics Publisher";

/// Which events of the batch in progress are done (accepted with 204, or quarantined);
/// kept across the pipeline's retries of the same batch.
struct Progress {
    key: (usize, u64),
    done: Vec<bool>,
}

/// One request: the events it holds and its body (a JSON array of their rows).
struct Chunk {
    events: Vec<usize>,
    rows: Vec<Vec<u8>>,
}

impl Chunk {
    fn body(&self) -> Vec<u8> {
        let len = self.rows.iter().map(|r| r.len() + 1).sum::<usize>() + 1;
        let mut body = Vec::with_capacity(len);
        body.push(b'[');
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(row);
        }
        body.push(b']');
        body
    }

    fn split(self) -> Option<(Chunk, Chunk)> {
        if self.events.len() < 2 {
            return None;
        }
        let half = self.events.len() / 2;
        let mut events = self.events;
        let mut rows = self.rows;
        let b = Chunk {
            events: events.split_off(half),
            rows: rows.split_off(half),
        };
        Some((Chunk { events, rows }, b))
    }
}

/// Pack rows into requests of at most `max_bytes` (the array's brackets and commas
/// counted). Every row given fits alone (the caller quarantines larger ones).
fn pack(rows: Vec<(usize, Vec<u8>)>, max_bytes: usize) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk {
        events: Vec::new(),
        rows: Vec::new(),
    };
    let mut size = 2usize;
    for (i, row) in rows {
        let extra = row.len() + usize::from(!current.rows.is_empty());
        if !current.rows.is_empty() && size + extra > max_bytes {
            chunks.push(std::mem::replace(
                &mut current,
                Chunk {
                    events: Vec::new(),
                    rows: Vec::new(),
                },
            ));
            size = 2;
        }
        size += row.len() + usize::from(!current.rows.is_empty());
        current.events.push(i);
        current.rows.push(row);
    }
    if !current.rows.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Why the API can never take an event, as written in its line of the dead-letter file:
/// `http_status` (none when the event was never sent: it alone exceeds the request
/// limit), `code` (the API's `error.code`), `reason`.
#[derive(serde::Serialize)]
struct Rejection<'a> {
    http_status: Option<u16>,
    code: Option<&'a str>,
    reason: &'a str,
}

/// What the API did with one request.
enum Posted {
    Accepted,
    /// 413: too large.
    TooLarge {
        code: Option<String>,
    },
    /// 400 about the data (not the configuration): some row is unacceptable.
    Invalid {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

/// A single row refused (413 or 400), judged once the pass is over.
struct Refused {
    index: usize,
    bytes: usize,
    status: u16,
    code: Option<String>,
    message: String,
}

pub struct AzureMonitorLogsSink {
    id: String,
    key: String,
    endpoint: String,
    dcr: String,
    stream: String,
    url: String,
    client: reqwest::Client,
    tokens: TokenCache,
    policy: RetryPolicy,
    max_bytes: usize,
    dead_letters: DeadLetters,
    progress: Option<Progress>,
    /// Largest request (uncompressed bytes) the API accepted in this process: a row
    /// refused alone is quarantined only when the API has accepted something (else the
    /// refusal is about the setup, not the row).
    largest_accepted: usize,
    accepted_any: bool,
}

impl AzureMonitorLogsSink {
    /// Resolve the secret, set up the HTTPS client. No network I/O.
    pub fn new(
        id: &str,
        cfg: &AzureMonitorLogsConfig,
        ctx: &SinkContext,
    ) -> Result<AzureMonitorLogsSink, SinkError> {
        let key = format!("sinks.{id}");
        let fatal = |e: ConfigError| SinkError::Fatal(e.to_string());
        cfg.validate(&key).map_err(fatal)?;
        let endpoint = base_url(&format!("{key}.endpoint"), &cfg.endpoint).map_err(fatal)?;
        let authority = base_url(&format!("{key}.authority"), &cfg.authority).map_err(fatal)?;
        let secret = crate::config::common::resolve_secret(
            &format!("{key}.client_secret"),
            cfg.client_secret.as_ref(),
            cfg.client_secret_file.as_deref(),
        )
        .map_err(fatal)?;
        let client = http::build_client(&format!("{key}.tls"), &cfg.tls, cfg.request_timeout)
            .map_err(|e| SinkError::Fatal(e.to_string()))?;
        let policy = RetryPolicy {
            max_retries: cfg.max_retries,
            max_delay: cfg.retry_max_delay,
            max_total_wait: RetryPolicy::default()
                .max_total_wait
                .max(cfg.retry_max_delay),
            ..RetryPolicy::default()
        };
        let tokens = TokenCache::new(
            client.clone(),
            &authority,
            ClientCredentials {
                key: key.clone(),
                tenant_id: cfg.tenant_id.clone(),
                client_id: cfg.client_id.clone(),
                secret,
            },
            policy.clone(),
        );
        Ok(AzureMonitorLogsSink {
            id: id.to_string(),
            url: format!(
                "{endpoint}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
                cfg.dcr_immutable_id, cfg.stream
            ),
            key,
            endpoint,
            dcr: cfg.dcr_immutable_id.clone(),
            stream: cfg.stream.clone(),
            client,
            tokens,
            policy,
            max_bytes: cfg.max_bytes,
            dead_letters: DeadLetters::new(id, &ctx.state_dir),
            progress: None,
            largest_accepted: 0,
            accepted_any: false,
        })
    }

    /// Events sent to the dead-letter file by this process.
    pub fn dead_letter_count(&self) -> u64 {
        self.dead_letters.count()
    }

    /// Tokens obtained by this process.
    pub fn token_grants(&self) -> u64 {
        self.tokens.grants()
    }

    async fn bearer(&mut self) -> Result<HeaderValue, SinkError> {
        let token = self.tokens.bearer().await.map_err(|e| match e {
            TokenError::Rejected(m) => SinkError::Fatal(format!("sink `{}`: {m}", self.id)),
            TokenError::Unavailable(m) => SinkError::Retryable(format!("sink `{}`: {m}", self.id)),
        })?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| SinkError::Fatal("the access token is not a valid header".into()))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// A 401 on a token that was just fetched: Entra issued it, but not for this API or
    /// this endpoint's cloud, or it is not valid yet/any more by the API's clock. The
    /// role assignment is a 403's business.
    fn token_refused_error(&self, code: Option<&str>) -> SinkError {
        SinkError::Fatal(format!(
            "the Logs Ingestion API at {} did not accept a freshly issued token (HTTP 401{}): check that {}.tenant_id is the directory of the app and the DCR, that {}.authority is the Entra ID of the endpoint's cloud (a sovereign cloud has its own), and that this machine's clock is right (tokens are checked against it)",
            self.endpoint,
            code.map(|c| format!(", {c}")).unwrap_or_default(),
            self.key,
            self.key
        ))
    }

    fn role_error(&self, status: u16, code: Option<&str>) -> SinkError {
        SinkError::Fatal(format!(
            "the Logs Ingestion API at {} refused the app's token (HTTP {status}{}): the app registration ({}.client_id) needs the role \"{ROLE}\" on the data collection rule {} (assign it on the DCR's Access control (IAM) page, or `az role assignment create --role \"{ROLE}\" --assignee <client id> --scope <DCR resource id>`; assignments can take up to 30 minutes to apply)",
            self.endpoint,
            code.map(|c| format!(", {c}")).unwrap_or_default(),
            self.key,
            self.dcr
        ))
    }

    /// A 400/404 that is about the configuration (DCR, stream) or about our request
    /// (api-version, headers), never about a row: the message naming the key, or `None`.
    fn config_error(&self, status: u16, code: Option<&str>, message: &str) -> Option<SinkError> {
        let code_l = code.unwrap_or_default().to_ascii_lowercase();
        let shown = format!(
            "HTTP {status}{}{}",
            code.map(|c| format!(" {c}")).unwrap_or_default(),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        );
        let problem = if code_l.contains("stream") {
            format!(
                "check {}.stream (\"{}\"): it must be an input stream declared in the DCR's streamDeclarations",
                self.key, self.stream
            )
        } else if code_l.contains("dcr") || code_l.contains("datacollectionrule") || status == 404 {
            format!(
                "check {}.dcr_immutable_id (\"{}\") and {}.endpoint: the DCR must exist and be associated with that endpoint (its region)",
                self.key, self.dcr, self.key
            )
        } else if code_l.contains("apiversion")
            || code_l.contains("contenttype")
            || code_l.contains("contentencoding")
            || status == 415
        {
            "this is a bug in veeam-siem, please report it".to_string()
        } else {
            return None;
        };
        Some(SinkError::Fatal(format!(
            "the Logs Ingestion API at {} answered {shown}; {problem}",
            self.endpoint
        )))
    }

    /// POST one body (gzipped), retrying what may pass and renewing the token once on 401.
    async fn post(&mut self, raw: Vec<u8>) -> Result<Posted, SinkError> {
        let body =
            Bytes::from(gzip(raw).await.map_err(|e| {
                SinkError::Retryable(format!("sink `{}`: gzip failed: {e}", self.id))
            })?);
        let request_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut renewed = false;
        let mut stale_renewals = 0u32;
        loop {
            let auth = self.bearer().await?;
            let result = http::send_with_retry(&self.policy, &self.url, || {
                self.client
                    .post(&self.url)
                    .header(AUTHORIZATION, auth.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header(CONTENT_ENCODING, "gzip")
                    .header(REQUEST_ID_HEADER, &request_id)
                    .body(body.clone())
                    .send()
            })
            .await;
            let (status, text) = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // 204 has no body; read what there is (capped) to reuse the connection.
                    let _ = http::read_body_capped(&self.url, resp, REPLY_LIMIT).await;
                    if status != 204 {
                        // Not the Logs Ingestion API (a web server, a proxy's page): its
                        // 200 proves nothing was stored.
                        return Err(SinkError::Fatal(format!(
                            "{} answered HTTP {status} instead of 204 to an upload; check {}.endpoint is the logs ingestion endpoint of a DCE or DCR (the template's output logsIngestionEndpoint)",
                            self.endpoint, self.key
                        )));
                    }
                    return Ok(Posted::Accepted);
                }
                Err(HttpError::Status { status, body, .. })
                    if !http::is_retryable_status(status) =>
                {
                    (status, body)
                }
                Err(e) if e.is_retryable() => {
                    return Err(SinkError::Retryable(format!(
                        "the Logs Ingestion API at {}: {e} (gave up after {} retries; the batch will be retried)",
                        self.endpoint, self.policy.max_retries
                    )));
                }
                Err(e) => {
                    return Err(SinkError::Fatal(format!(
                        "the Logs Ingestion API at {}: {e}; check {}.endpoint and {}.tls",
                        self.endpoint, self.key, self.key
                    )));
                }
            };
            // Server text: escaped before it reaches a log or an error.
            let code = string_field(&text, "code")
                .map(|c| crate::escape::escape_controls(&c).into_owned());
            let message =
                crate::escape::escape_controls(&string_field(&text, "message").unwrap_or_default())
                    .into_owned();
            match status {
                // The token aged past its renewal time while this request waited out 429s
                // and 5xx: it expired, it was not refused. A new one, not counted.
                401 if self.tokens.stale() && stale_renewals < 3 => {
                    stale_renewals += 1;
                    tracing::info!(sink_id = %self.id, request_id, "the Logs Ingestion API answered 401 after the token aged during retries; getting a new token");
                    self.tokens.invalidate();
                }
                401 if !renewed => {
                    renewed = true;
                    tracing::info!(sink_id = %self.id, request_id, "the Logs Ingestion API answered 401; getting a new token");
                    self.tokens.invalidate();
                }
                401 => return Err(self.token_refused_error(code.as_deref())),
                403 => return Err(self.role_error(status, code.as_deref())),
                413 => return Ok(Posted::TooLarge { code }),
                _ => {
                    if let Some(e) = self.config_error(status, code.as_deref(), &message) {
                        return Err(e);
                    }
                    return Ok(Posted::Invalid {
                        status,
                        code,
                        message,
                    });
                }
            }
        }
    }

    async fn quarantine(
        &mut self,
        batch: &Batch,
        index: usize,
        status: Option<u16>,
        code: Option<&str>,
        reason: &str,
    ) -> Result<(), SinkError> {
        let Some(event) = batch.events.get(index) else {
            return Err(SinkError::Fatal(format!(
                "internal error: no event {index} in the batch"
            )));
        };
        let why = Rejection {
            http_status: status,
            code,
            reason,
        };
        self.dead_letters
            .quarantine_for_batch(&why, &event.json)
            .await?;
        tracing::warn!(
            sink_id = %self.id,
            event_id = %event.event.event.id,
            http_status = status.unwrap_or(0),
            code = code.unwrap_or(""),
            reason,
            path = %self.dead_letters.path().display(),
            quarantined_total = self.dead_letters.count(),
            "the Logs Ingestion API can never take this event; it went to the dead-letter file"
        );
        Ok(())
    }

    /// Deliver what `progress` says is not done yet.
    async fn deliver_pending(
        &mut self,
        batch: &Batch,
        progress: &mut Progress,
    ) -> Result<(), SinkError> {
        loop {
            let mut rows = Vec::new();
            for (i, e) in batch.events.iter().enumerate() {
                if progress.done[i] {
                    continue;
                }
                let mut row = Vec::with_capacity(e.json.len() * 2 + 256);
                encode_row(&e.event, &e.json, &mut row).map_err(|err| {
                    SinkError::Fatal(format!(
                        "sink `{}`: cannot encode event {}: {err}",
                        self.id, e.event.event.id
                    ))
                })?;
                if row.len() + 2 > self.max_bytes {
                    let reason = format!(
                        "its row is {} bytes, over the {} bytes a request may carry ({}.max_bytes; the Logs Ingestion API accepts at most 1 MB per call)",
                        row.len(),
                        self.max_bytes,
                        self.key
                    );
                    self.quarantine(batch, i, None, None, &reason).await?;
                    progress.done[i] = true;
                    continue;
                }
                rows.push((i, row));
            }
            if rows.is_empty() {
                return Ok(());
            }
            let mut queue: VecDeque<Chunk> = pack(rows, self.max_bytes).into();
            let mut refused: Vec<Refused> = Vec::new();
            let mut splits = 0usize;
            while let Some(chunk) = queue.pop_front() {
                let body = chunk.body();
                let size = body.len();
                match self.post(body).await? {
                    Posted::Accepted => {
                        self.accepted_any = true;
                        self.largest_accepted = self.largest_accepted.max(size);
                        for &i in &chunk.events {
                            progress.done[i] = true;
                        }
                    }
                    Posted::TooLarge { code } => {
                        if let [only] = chunk.events.as_slice() {
                            refused.push(Refused {
                                index: *only,
                                bytes: size,
                                status: 413,
                                code,
                                message: "request too large".into(),
                            });
                        } else if let Some((a, b)) = chunk.split() {
                            splits += 1;
                            queue.push_front(b);
                            queue.push_front(a);
                        }
                    }
                    Posted::Invalid {
                        status,
                        code,
                        message,
                    } => {
                        if let [only] = chunk.events.as_slice() {
                            refused.push(Refused {
                                index: *only,
                                bytes: size,
                                status,
                                code,
                                message,
                            });
                        } else if !self.accepted_any && !refused.is_empty() {
                            // A row was refused alone and nothing has been accepted from
                            // this sink: so far every row is refused (a DCR that matches
                            // none), and halving this request too would cost about two
                            // requests per row before the batch fails anyway. Its rows
                            // stay pending: the batch fails below, or, once the API
                            // accepts something, they are halved on the next pass.
                            tracing::debug!(sink_id = %self.id, rows = chunk.events.len(), "request refused while no row has been accepted; not halving it");
                        } else if let Some((a, b)) = chunk.split() {
                            // The API names no row: halve until the bad one is alone.
                            tracing::warn!(sink_id = %self.id, http_status = status, code = code.as_deref().unwrap_or(""), message, "the Logs Ingestion API refused a request; sending it again in halves to find the row it refuses");
                            queue.push_front(b);
                            queue.push_front(a);
                        }
                    }
                }
            }
            if splits > 0 {
                tracing::warn!(sink_id = %self.id, requests = splits, "the Logs Ingestion API (or a proxy in front of it) answered 413 (too large); the requests were split and sent again. Lower sinks.{}.max_bytes to avoid the extra requests", self.id);
            }
            self.judge_refused(batch, progress, refused).await?;
        }
    }

    /// Rows refused alone: quarantined when the API has accepted other requests (so the
    /// refusal is about the row); otherwise the batch fails with what to check.
    async fn judge_refused(
        &mut self,
        batch: &Batch,
        progress: &mut Progress,
        refused: Vec<Refused>,
    ) -> Result<(), SinkError> {
        let mut kept = Vec::new();
        for r in refused {
            let plausible =
                self.accepted_any && (r.status != 413 || r.bytes > self.largest_accepted);
            if plausible {
                let reason = format!(
                    "the Logs Ingestion API refused this event's row alone (HTTP {}{}{}; {} bytes)",
                    r.status,
                    r.code
                        .as_deref()
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default(),
                    if r.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.message)
                    },
                    r.bytes
                );
                self.quarantine(batch, r.index, Some(r.status), r.code.as_deref(), &reason)
                    .await?;
                progress.done[r.index] = true;
            } else {
                kept.push(r);
            }
        }
        let Some(first) = kept.first() else {
            return Ok(());
        };
        let why = if first.status == 413 && !self.accepted_any {
            format!(
                "HTTP 413 for a single row of {} bytes, and the endpoint has accepted no request from this sink yet: what refuses even one row is likely a proxy in front of {}.endpoint with a very low body limit (raise it); lowering {}.max_bytes cannot help",
                first.bytes, self.key, self.key
            )
        } else if first.status == 413 {
            format!(
                "HTTP 413 for a single row of {} bytes, no larger than requests it accepted before ({} bytes): a proxy in front of the endpoint has a lower body limit; raise it or lower {}.max_bytes",
                first.bytes, self.largest_accepted, self.key
            )
        } else {
            format!(
                "HTTP {}{}{} for single rows, and it has accepted no request from this sink yet: the rows do not fit the DCR's stream declaration; deploy the DCR from examples/siem/sentinel/ (its columns must be the sink's) and check {}.stream",
                first.status,
                first
                    .code
                    .as_deref()
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default(),
                if first.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", first.message)
                },
                self.key
            )
        };
        let message = format!(
            "the Logs Ingestion API at {} refused {} row(s) of this batch: {why}. Nothing was quarantined and the checkpoint stays",
            self.endpoint,
            kept.len()
        );
        if first.status == 413 {
            Err(SinkError::Retryable(message))
        } else {
            Err(SinkError::Fatal(message))
        }
    }

    /// The probe: a token, then an empty array (`[]`) to the stream: 204 proves the
    /// endpoint, the DCR, the stream and the role, without sending an event.
    pub(super) async fn healthcheck_inner(&mut self) -> Result<(), SinkError> {
        match self.post(b"[]".to_vec()).await? {
            Posted::Accepted => {
                tracing::info!(sink_id = %self.id, endpoint = %self.endpoint, dcr = %self.dcr, stream = %self.stream, "the Logs Ingestion API accepts the app's token for this DCR and stream");
                Ok(())
            }
            Posted::TooLarge { .. } => Err(SinkError::Retryable(format!(
                "the Logs Ingestion API at {} answered 413 (too large) to an empty request: a proxy in front of it refuses every POST",
                self.endpoint
            ))),
            Posted::Invalid {
                status,
                code,
                message,
            } => Err(SinkError::Fatal(format!(
                "the Logs Ingestion API at {} refused an empty request (HTTP {status}{}: {message}); check {}.endpoint, {}.dcr_immutable_id and {}.stream",
                self.endpoint,
                code.map(|c| format!(" {c}")).unwrap_or_default(),
                self.key,
                self.key,
                self.key
            ))),
        }
    }

    pub(super) async fn deliver_inner(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let key = (batch.source_index, batch.seq);
        let mut progress = match self.progress.take() {
            Some(p) if p.key == key && p.done.len() == batch.events.len() => p,
            _ => Progress {
                key,
                done: vec![false; batch.events.len()],
            },
        };
        let result = self.deliver_pending(batch, &mut progress).await;
        if result.is_err() {
            self.progress = Some(progress);
        }
        result
    }
}

/// Gzip a body (at the fastest level) off the async threads.
async fn gzip(raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || crate::sinks::gzip::gzip(&raw, 1))
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(sizes: &[usize]) -> Vec<(usize, Vec<u8>)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (i, vec![b'x'; n]))
            .collect()
    }

    #[test]
    fn packing_respects_the_limit_with_brackets_and_commas() {
        // 2 (brackets) + 10 + 1 + 10 = 23 > 22: two requests.
        let chunks = pack(rows(&[10, 10]), 22);
        assert_eq!(chunks.len(), 2);
        let chunks = pack(rows(&[10, 10]), 23);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].body().len(), 23);
        let chunks = pack(rows(&[5, 5, 5, 5, 5]), 20);
        for c in &chunks {
            assert!(c.body().len() <= 20);
        }
        let all: Vec<usize> = chunks.iter().flat_map(|c| c.events.clone()).collect();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn bodies_are_json_arrays_and_split_in_order() {
        let chunk = Chunk {
            events: vec![0, 1, 2],
            rows: vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec(), b"{}".to_vec()],
        };
        let v: serde_json::Value = serde_json::from_slice(&chunk.body()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
        let (a, b) = chunk.split().unwrap();
        assert_eq!(a.events, vec![0]);
        assert_eq!(b.events, vec![1, 2]);
        assert!(a.split().is_none());
    }

    fn sink() -> AzureMonitorLogsSink {
        let cfg: AzureMonitorLogsConfig = toml::from_str(
            r#"
inputs = ["v"]
endpoint = "https://dce.example.net"
dcr_immutable_id = "dcr-0123456789abcdef0123456789abcdef"
stream = "Custom-VeeamRestore_CL"
tenant_id = "t"
client_id = "c"
client_secret = "Sec-123"
"#,
        )
        .unwrap();
        let dir = std::env::temp_dir();
        AzureMonitorLogsSink::new("sentinel", &cfg, &SinkContext { state_dir: dir }).unwrap()
    }

    #[test]
    fn configuration_answers_name_the_key_and_row_answers_do_not_stop() {
        let s = sink();
        let text = |e: Option<SinkError>| e.map(|e| e.to_string()).unwrap_or_default();
        let m = text(s.config_error(400, Some("InvalidStream"), "no such stream"));
        assert!(m.contains("sinks.sentinel.stream"), "{m}");
        let m = text(s.config_error(404, Some("NotFound"), ""));
        assert!(m.contains("sinks.sentinel.dcr_immutable_id"), "{m}");
        let m = text(s.config_error(400, Some("InvalidDcrImmutableId"), ""));
        assert!(m.contains("sinks.sentinel.dcr_immutable_id"), "{m}");
        let m = text(s.config_error(400, Some("InvalidApiVersion"), ""));
        assert!(m.contains("bug"), "{m}");
        assert!(
            s.config_error(400, Some("InvalidPayload"), "bad row")
                .is_none()
        );
        assert!(s.config_error(400, None, "").is_none());
        let m = s
            .token_refused_error(Some("InvalidAuthenticationToken"))
            .to_string();
        assert!(
            m.contains("HTTP 401, InvalidAuthenticationToken")
                && m.contains("sinks.sentinel.tenant_id")
                && m.contains("sinks.sentinel.authority")
                && m.contains("clock")
                && !m.contains(ROLE),
            "{m}"
        );
        let m = s.role_error(403, Some("OperationFailed")).to_string();
        assert!(
            m.contains(ROLE) && m.contains("sinks.sentinel.client_id"),
            "{m}"
        );
        assert!(!m.contains("Sec-123"));
        assert!(s.url.ends_with(
            "/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-VeeamRestore_CL?api-version=2023-01-01"
        ));
    }

    #[tokio::test]
    async fn gzip_round_trips() {
        use std::io::Read as _;
        let raw = b"[{\"EventId\":\"x\"}]".repeat(100);
        let packed = gzip(raw.clone()).await.unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, raw);
    }
}
