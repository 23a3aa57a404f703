//! The Azure Monitor test peer (`veeam_siem_test_peers::azure_monitor`, in
//! `crates/test-peers`: Entra ID token endpoint + Logs Ingestion API) as a standalone
//! program, for trying the `azure_monitor_logs` sink by hand and for
//! `benches/sentinel_e2e.sh`.
//!
//!     cargo run --release --example azure_monitor_peer -- --listen 127.0.0.1:8089
//!
//! The stream it accepts is declared from the DCR template
//! (`examples/siem/sentinel/veeam-siem-dcr.json`, or `--template`). Prints its URL, tenant,
//! client id, secret and DCR id, serves until SIGINT/SIGTERM, then prints its counters as
//! one JSON object on stdout. It keeps only counts (and the rows with `--record`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use veeam_siem_test_peers::azure_monitor as peer;

#[derive(Parser)]
#[command(
    about = "An Azure Monitor Logs Ingestion API test peer (see crates/test-peers/src/azure_monitor.rs)"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// The ARM template whose DCR `streamDeclarations` the peer accepts.
    #[arg(long, default_value = "examples/siem/sentinel/veeam-siem-dcr.json")]
    template: PathBuf,
    /// Fraction of ingestion requests answered 429 or 503.
    #[arg(long, default_value_t = 0.0)]
    busy_rate: f64,
    /// Keep every ingested row in memory (off: counts only).
    #[arg(long)]
    record: bool,
}

/// stream → columns, from the template's DCR.
fn streams(template: &PathBuf) -> Result<BTreeMap<String, Vec<(String, String)>>, String> {
    let text = std::fs::read_to_string(template)
        .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
    let t: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not JSON: {e}", template.display()))?;
    let dcr = t["resources"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["type"] == "Microsoft.Insights/dataCollectionRules")
        })
        .ok_or("the template has no data collection rule")?;
    let decls = dcr["properties"]["streamDeclarations"]
        .as_object()
        .ok_or("the DCR has no streamDeclarations")?;
    Ok(decls
        .iter()
        .map(|(name, d)| {
            let cols = d["columns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap_or_default().to_string(),
                                c["type"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (name.clone(), cols)
        })
        .collect())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let streams = match streams(&args.template) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cfg = peer::PeerConfig {
        listen: args.listen,
        streams,
        busy_rate: args.busy_rate,
        record_rows: args.record,
        ..peer::PeerConfig::default()
    };
    let p = match peer::AzureMonitorPeer::start(cfg).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot start the peer on {}: {e}", args.listen);
            return std::process::ExitCode::from(1);
        }
    };
    eprintln!(
        "Azure Monitor peer listening on {} (authority and endpoint; tenant {}, client id {}, client secret {}, DCR {})",
        p.url(),
        peer::TENANT,
        peer::CLIENT_ID,
        peer::CLIENT_SECRET,
        peer::DCR
    );
    wait_for_signal().await;
    let s = p.stats();
    let ingested = p.ingested();
    let duplicates: u64 = ingested
        .values()
        .map(|&c| u64::from(c.saturating_sub(1)))
        .sum();
    println!(
        "{}",
        serde_json::json!({
            "token_requests": s.token_requests,
            "tokens_issued": s.tokens_issued,
            "ingest_requests": s.ingest_requests,
            "accepted_requests": s.accepted_requests,
            "rows_ingested": s.rows_ingested,
            "distinct_events": ingested.len(),
            "duplicates": duplicates,
            "wire_bytes": s.wire_bytes,
            "decoded_bytes": s.decoded_bytes,
            "max_decoded_bytes": s.max_decoded_bytes,
            "errors_by_status": s.errors_by_status,
            "violations": s.violations,
        })
    );
    p.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
