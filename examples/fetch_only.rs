//! Benchmark baseline: fetch every VB365 restore-session and event page from a server (the
//! simulator) as fast as one sequential client can, without decoding records, mapping or
//! delivering anything. `benches/e2e.sh` divides the pipeline's time by this one's.
//!
//!   cargo run --release --example fetch_only -- URL USERNAME PASSWORD PAGE_SIZE CA_FILE
//!
//! Same request sequence as the `vbo` source on v8 (token, session pages, each session's
//! event pages); prints `events=N pages=P seconds=S`.

use std::time::Instant;

use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

#[derive(Deserialize)]
struct SessionPage {
    results: Vec<Session>,
}

#[derive(Deserialize)]
struct Session {
    id: String,
}

#[derive(Deserialize)]
struct EventPage {
    results: Vec<IgnoredAny>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, username, password, page_size, ca_file] = args.as_slice() else {
        return Err("usage: fetch_only URL USERNAME PASSWORD PAGE_SIZE CA_FILE".into());
    };
    let page: usize = page_size.parse()?;
    let tls = veeam_siem::config::common::TlsConfig {
        ca_file: Some(ca_file.into()),
        ..Default::default()
    };
    let client = veeam_siem::http::build_client("bench", &tls, std::time::Duration::from_secs(60))?;
    let base = format!("{}/v8", url.trim_end_matches('/'));
    let start = Instant::now();
    let token: Token = client
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
            ("disable_antiforgery_token", "true"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let auth = format!("Bearer {}", token.access_token);
    let get =
        async |path: &str, query: &[(&str, String)]| -> Result<bytes::Bytes, reqwest::Error> {
            client
                .get(format!("{base}/{path}"))
                .query(query)
                .header("Authorization", &auth)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await
        };
    let (mut events, mut pages) = (0usize, 0usize);
    let mut offset = 0;
    loop {
        let body = get(
            "RestoreSessions",
            &[
                ("limit", page.to_string()),
                ("offset", offset.to_string()),
                ("startTimeFrom", "2000-01-01T00:00:00Z".to_string()),
                ("orderBy", "CreationTime".to_string()),
                ("orderAsc", "true".to_string()),
            ],
        )
        .await?;
        pages += 1;
        let sessions: SessionPage = serde_json::from_slice(&body)?;
        for s in &sessions.results {
            let mut ev_offset = 0;
            loop {
                let body = get(
                    &format!("RestoreSessions/{}/Events", s.id),
                    &[
                        ("limit", page.to_string()),
                        ("offset", ev_offset.to_string()),
                    ],
                )
                .await?;
                pages += 1;
                let n = serde_json::from_slice::<EventPage>(&body)?.results.len();
                events += n;
                ev_offset += n;
                if n < page {
                    break;
                }
            }
        }
        if sessions.results.len() < page {
            break;
        }
        offset += sessions.results.len();
    }
    println!(
        "events={events} pages={pages} seconds={:.3}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
