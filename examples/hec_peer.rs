//! The Splunk HEC test peer (`veeam_siem_test_peers::hec`, in `crates/test-peers`) as a
//! standalone program, for trying the `splunk_hec` sink by hand and for
//! `benches/hec_e2e.sh`.
//!
//!     cargo run --release --example hec_peer -- --listen 127.0.0.1:8088 --ack
//!
//! Prints its URL and token, serves until SIGINT/SIGTERM, then prints its counters as one
//! JSON object on stdout. It is a test peer, not a Splunk replacement: it keeps only
//! counts (and the events when `--record`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use veeam_siem_test_peers::hec as hec_peer;

#[derive(Parser)]
#[command(about = "A Splunk HEC test peer (see crates/test-peers/src/hec.rs)")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Token the peer accepts (default: the test token).
    #[arg(long, default_value = hec_peer::TOKEN)]
    token: String,
    /// Enable indexer acknowledgement on the token.
    #[arg(long)]
    ack: bool,
    /// Time until an ackId reports true (e.g. "2s").
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    ack_delay: Duration,
    /// Time before each event request is answered: a HEC far away (e.g. "100ms").
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    answer_delay: Duration,
    /// Fraction of event/ack requests answered 503 code 9.
    #[arg(long, default_value_t = 0.0)]
    busy_rate: f64,
    /// Serve HTTPS with a self-signed certificate written to this file.
    #[arg(long)]
    tls_ca_out: Option<std::path::PathBuf>,
    /// Largest accepted body (decompressed), bytes.
    #[arg(long, default_value_t = 1_000_000)]
    max_content_length: usize,
    /// Keep every indexed envelope in memory (off: counts only).
    #[arg(long)]
    record: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let cfg = hec_peer::PeerConfig {
        listen: args.listen,
        tls: args.tls_ca_out.is_some(),
        token: args.token.clone(),
        ack_enabled: args.ack,
        ack_delay: args.ack_delay,
        answer_delay: args.answer_delay,
        busy_rate: args.busy_rate,
        max_content_length: args.max_content_length,
        record_events: args.record,
        ..hec_peer::PeerConfig::default()
    };
    let peer = match hec_peer::HecPeer::start(cfg).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot start the HEC peer on {}: {e}", args.listen);
            return std::process::ExitCode::from(1);
        }
    };
    if let (Some(path), Some(pem)) = (&args.tls_ca_out, peer.ca_pem())
        && let Err(e) = std::fs::write(path, pem)
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return std::process::ExitCode::from(1);
    }
    eprintln!(
        "HEC peer listening on {} (token {}, indexer ack {})",
        peer.url(),
        args.token,
        if args.ack { "on" } else { "off" }
    );
    wait_for_signal().await;
    let s = peer.stats();
    let indexed = peer.indexed();
    let duplicates: u64 = indexed
        .values()
        .map(|&c| u64::from(c.saturating_sub(1)))
        .sum();
    println!(
        "{}",
        serde_json::json!({
            "event_requests": s.event_requests,
            "accepted_requests": s.accepted_requests,
            "ack_requests": s.ack_requests,
            "events_indexed": s.events_indexed,
            "distinct_events": indexed.len(),
            "duplicates": duplicates,
            "wire_bytes": s.wire_bytes,
            "decoded_bytes": s.decoded_bytes,
            "gzip_requests": s.gzip_requests,
            "busy_answers": s.busy_answers,
            "errors_by_code": s.errors_by_code,
            "violations": s.violations,
        })
    );
    peer.shutdown().await;
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
