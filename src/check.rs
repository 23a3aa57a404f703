//! `veeam-siem check`: a one-page preflight report for a config.
//!
//! Owns: probing every component the way the daemon will use it — each source logs in and
//! reads its newest page, its checkpoint is loaded, one sample record is rendered through
//! the real mapping, every sink is built and health-checked — and reporting the outcome
//! per component. The state dir and each file sink's directory are probed for writing by
//! creating and deleting a temp file in them (or in their nearest existing ancestor: a
//! missing directory is reported as "will be created", not created). Endpoints configured
//! with plain `http://` are `warn` rows (a warning is not a failure).
//!
//! Every row is printed with control characters escaped ([`crate::escape`]): details carry
//! server data (session ids, user names, error bodies) that must not drive the terminal.
//!
//! Must not: write checkpoints, send events, print secrets (everything printed comes from
//! error messages that already exclude them), take the state dir's lock (it runs next to
//! the daemon), or leave anything behind: no state dir, no output file, no HEC channel file
//! (a sink without one yet is probed with a throwaway channel in a temp dir).

use std::time::Duration;

use chrono::Utc;

use crate::checkpoint::CheckpointStore;
use crate::config::common::url_host;
use crate::config::{Config, SinkConfig, SourceConfig};
use crate::durable::{self, Writable};
use crate::escape::escape_controls;
use crate::event::Event;
use crate::map::{self, MapContext, Record};
use crate::sinks::{ProbeContext, Probed};

/// Time allowed for one probe (login + one page, or one sink health check).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub component: String,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    fn push(&mut self, component: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.rows.push(Row {
            component: component.into(),
            status,
            detail: detail.into(),
        });
    }

    pub fn failures(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.status == Status::Fail)
            .count()
    }

    /// The table as printed by the CLI, control characters escaped.
    pub fn render(&self) -> String {
        let rows: Vec<(String, &str, String)> = self
            .rows
            .iter()
            .map(|r| {
                let status = match r.status {
                    Status::Ok => "ok",
                    Status::Warn => "warn",
                    Status::Fail => "FAIL",
                };
                (
                    escape_controls(&r.component).into_owned(),
                    status,
                    escape_controls(&r.detail).into_owned(),
                )
            })
            .collect();
        let width = rows
            .iter()
            .map(|(component, _, _)| component.chars().count())
            .max()
            .unwrap_or(9)
            .max(9);
        let mut out = format!("{:<width$}  {:<6}  DETAIL\n", "COMPONENT", "STATUS");
        for (component, status, detail) in &rows {
            out.push_str(&format!("{component:<width$}  {status:<6}  {detail}\n"));
        }
        let failures = self.failures();
        if failures == 0 {
            out.push_str("all checks passed\n");
        } else {
            out.push_str(&format!(
                "{failures} of {} checks failed\n",
                self.rows.len()
            ));
        }
        out
    }
}

/// Probe everything in `config`.
pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();
    report.push(
        "config",
        Status::Ok,
        format!(
            "{} source(s), {} sink(s); state dir {}",
            config.sources.len(),
            config.sinks.len(),
            config.state.dir.display()
        ),
    );
    check_state_dir(config, &mut report);
    for cleartext in config.cleartext_endpoints() {
        report.push(cleartext.key.clone(), Status::Warn, cleartext.problem());
    }
    for problem in crate::http::unusable_proxy_variables() {
        report.push("proxy", Status::Warn, problem);
    }
    // Probes run side by side (each may wait up to its timeout); rows keep config order.
    let sources = futures::future::join_all(config.sources.iter().map(|(id, source)| async move {
        let mut rows = Report::default();
        check_source(config, id, source, &mut rows).await;
        rows
    }))
    .await;
    for rows in sources {
        report.rows.extend(rows.rows);
    }
    // Sinks keep their files in a throwaway dir during the probe, unless the daemon's own
    // (a HEC channel file) already exists and is only read.
    let scratch = match tempfile::Builder::new()
        .prefix("veeam-siem-check-")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            report.push(
                "sinks",
                Status::Fail,
                format!("cannot create a temp dir for the sink probes: {e}"),
            );
            return report;
        }
    };
    let ctx = ProbeContext::new(&config.state.dir, scratch.path());
    let ctx = &ctx;
    let sinks = futures::future::join_all(config.sinks.iter().map(|(id, sink_cfg)| async move {
        let component = format!("sink {id}");
        match tokio::time::timeout(PROBE_TIMEOUT, sink_cfg.probe(id, ctx)).await {
            Ok(Ok(Probed::Ok(detail))) => (component, Status::Ok, detail),
            Ok(Ok(Probed::Warn(detail))) => (component, Status::Warn, detail),
            Ok(Err(e)) => (component, Status::Fail, e),
            Err(_) => (component, Status::Fail, no_answer(&probe_targets(sink_cfg))),
        }
    }))
    .await;
    for (component, status, detail) in sinks {
        report.push(component, status, detail);
    }
    report
}

/// The state dir accepts new files (or will be created in a writable parent).
fn check_state_dir(config: &Config, report: &mut Report) {
    let dir = &config.state.dir;
    match durable::probe_dir(dir) {
        Ok(Writable::Exists) => report.push(
            "state dir",
            Status::Ok,
            format!("{} is writable", dir.display()),
        ),
        Ok(Writable::WillBeCreated { existing }) => report.push(
            "state dir",
            Status::Ok,
            format!(
                "{} will be created on the first run ({} is writable)",
                dir.display(),
                existing.display()
            ),
        ),
        Err(e) => report.push(
            "state dir",
            Status::Fail,
            format!(
                "{e}; `[state] dir` must be writable by the user the daemon runs as (checkpoints are written there)"
            ),
        ),
    }
}

async fn check_source(config: &Config, id: &str, source: &SourceConfig, report: &mut Report) {
    let component = format!("source {id}");
    match CheckpointStore::at(&config.state.dir, id, source.type_name())
        .for_server(source.url())
        .load()
    {
        Ok(Some(_)) => report.push(
            format!("  {id} checkpoint"),
            Status::Ok,
            "present; the next run resumes from it",
        ),
        Ok(None) => report.push(
            format!("  {id} checkpoint"),
            Status::Ok,
            "none yet; the first run starts at start_time",
        ),
        Err(e) => report.push(format!("  {id} checkpoint"), Status::Fail, e.to_string()),
    }
    let poller = match source.build(id, None) {
        Ok(p) => p,
        Err(e) => {
            report.push(component, Status::Fail, e.to_string());
            return;
        }
    };
    let probe = tokio::time::timeout(PROBE_TIMEOUT, poller.probe())
        .await
        .map(|r| r.map_err(|e| e.to_string()));
    let observer = url_host(source.url());
    match probe {
        Ok(Ok((detail, sample))) => {
            report.push(&component, Status::Ok, detail);
            if let Some(event) = sample.map(|r| map_sample(id, &observer, &r)) {
                report.push(format!("  {id} sample"), Status::Ok, summarize(&event));
            }
        }
        Ok(Err(e)) => report.push(component, Status::Fail, e),
        Err(_) => report.push(
            component,
            Status::Fail,
            no_answer(&format!(
                "{}{}",
                crate::config::common::redact_userinfo(source.url()),
                crate::http::proxy_for(source.url())
                    .map(|p| format!(" (sent through {p})"))
                    .unwrap_or_default()
            )),
        ),
    }
}

/// What a sink's probe contacts, for the message when it got no answer.
fn probe_targets(sink: &SinkConfig) -> String {
    let targets: Vec<String> = sink
        .probe_targets()
        .into_iter()
        .map(|t| match crate::http::proxy_for(&t) {
            Some(proxy) => format!("{t} (sent through {proxy})"),
            None => t,
        })
        .collect();
    if targets.is_empty() {
        "its destination".to_string()
    } else {
        targets.join(" or ")
    }
}

/// A probe that ran out of time: usually every try failed (unreachable host, refused
/// connection, TLS) and the retries' backoff used the time up.
fn no_answer(what: &str) -> String {
    format!(
        "no answer from {what} within {} s: unreachable, refusing connections, or failing every try (the retries' warnings above say which; run with --log-level debug for each attempt)",
        PROBE_TIMEOUT.as_secs()
    )
}

fn map_sample(source_id: &str, observer: &str, record: &Record) -> Event {
    let ctx = MapContext {
        source_id,
        observer_hostname: observer,
        fetched_at: Utc::now(),
    };
    map::map_record(&ctx, record)
}

/// "who did what from where" in one line.
fn summarize(e: &Event) -> String {
    let mut parts = vec![e.event.action.clone()];
    if let Some(name) = e.user.as_ref().and_then(|u| u.name.as_ref()) {
        parts.push(format!("user={name}"));
    } else if e
        .veeam
        .restore_session
        .as_ref()
        .is_some_and(|s| s.initiated_by_is_organization)
    {
        parts.push("user=(organization via provider)".to_string());
    }
    if let Some(org) = e.organization.as_ref().and_then(|o| o.name.as_ref()) {
        parts.push(format!("org={org}"));
    }
    if let Some(addr) = e.client.as_ref().and_then(|c| c.address.as_ref()) {
        parts.push(format!("client={addr}"));
    }
    if let Some(gw) = &e.veeam.gateway {
        parts.push(format!("gateway={}", gw.ip));
    }
    if let Some(item) = e
        .veeam
        .restore_event
        .as_ref()
        .and_then(|r| r.item_name.as_ref())
    {
        parts.push(format!("item={item:?}"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_escapes_server_text() {
        let mut report = Report::default();
        report.push(
            "source a",
            Status::Ok,
            "newest session s\u{1b}]0;x\u{7} by \u{202e}eve\nFAIL",
        );
        report.push("  a sample", Status::Warn, "user=\u{9b}31mroot");
        let text = report.render();
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && crate::escape::is_unsafe(c)),
            "{text:?}"
        );
        assert!(
            text.contains("s\\u{1b}]0;x\\u{7} by \\u{202e}eve\\nFAIL"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "a detail can't add a line: {text}");
        assert!(text.contains("all checks passed"), "{text}");
    }
}
