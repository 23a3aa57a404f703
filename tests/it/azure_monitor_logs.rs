//! End to end for the Microsoft Sentinel sink (`type = "azure_monitor_logs"`): VB365
//! simulator → `veeam-siem run` (the real binary) → the Azure Monitor test peer
//! (`veeam_siem_test_peers::azure_monitor`: Entra ID token endpoint + Logs Ingestion API,
//! written from Microsoft's API description), the peer's stream declared from the DCR in
//! `examples/siem/sentinel/veeam-siem-dcr.json` (so the template, not the sink, says which
//! columns are valid).
//!
//! Covers: every event once with 429 (`Retry-After`), 503, a connection reset and a slow
//! answer on the way; tokens renewed when they expire or are revoked; a 413 split; a
//! poison row quarantined; rows over `max_bytes` quarantined; `kill -9` mid-run and a 30 s
//! outage losing nothing; a wrong secret, DCR, stream or a missing role failing with a
//! message naming the key or the role, the secret never printed; `check` probing the
//! token and the endpoint. Every run is bounded; nothing asserts on durations.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use veeam_siem_simulator::SimConfig;
use veeam_siem_test_peers::azure_monitor::{
    self as peer, AzureMonitorPeer, CLIENT_ID, CLIENT_SECRET, DCR, Fault, PeerConfig, TENANT,
};

use crate::support::config::Table;
use crate::support::event_schema;
use crate::support::faults::{self, Daemon, RUN_LIMIT};
use crate::support::harness::{self, Env, run_bin_async, s, text};

const STREAM: &str = "Custom-VeeamRestore_CL";
const SECRET_ENV: &str = "TEST_AZURE_SECRET";

/// The DCR template of `examples/siem/sentinel/`.
pub fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/siem/sentinel/veeam-siem-dcr.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("the template is JSON")
}

/// The resource of `kind` in the template.
pub fn resource(template: &Value, kind: &str) -> Value {
    template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the template"))
        .clone()
}

/// The template's stream declarations: stream → [(column, type)].
pub fn declared_streams() -> BTreeMap<String, Vec<(String, String)>> {
    let dcr = resource(&template(), "Microsoft.Insights/dataCollectionRules");
    dcr["properties"]["streamDeclarations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, decl)| {
            let cols = decl["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["type"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (name.clone(), cols)
        })
        .collect()
}

fn peer_config() -> PeerConfig {
    PeerConfig {
        streams: declared_streams(),
        ..PeerConfig::default()
    }
}

struct Setup {
    env: Env,
    peer: AzureMonitorPeer,
    config: PathBuf,
}

impl Setup {
    async fn start(sim: SimConfig, cfg: PeerConfig, source_extra: &str, sink_extra: &str) -> Setup {
        let env = Env::start(sim).await;
        let peer = AzureMonitorPeer::start(cfg).await.expect("peer starts");
        let sink = Table::sink("sentinel", "azure_monitor_logs", &["vbo_test"])
            .set("endpoint", peer.url())
            .set("authority", peer.url())
            .set("dcr_immutable_id", DCR)
            .set("stream", STREAM)
            .set("tenant_id", TENANT)
            .set("client_id", CLIENT_ID)
            .set("client_secret", format!("${{{SECRET_ENV}}}"))
            .set("retry_max_delay", "500ms")
            .raw(sink_extra);
        let config = faults::write_config(&env, source_extra, sink);
        Setup { env, peer, config }
    }

    async fn run_once(&self, secret: &str, tag: &str) -> std::process::Output {
        faults::run_once(&self.config, &[(SECRET_ENV, secret)], tag).await
    }

    fn expected_ids(&self) -> HashSet<String> {
        self.env.sim.event_ids().into_iter().collect()
    }

    fn dead_letters(&self) -> Vec<Value> {
        harness::read_ndjson(&self.env.state_dir().join("sentinel.deadletter.ndjson"))
    }

    fn checkpoint_exists(&self) -> bool {
        self.env
            .state_dir()
            .join("vbo_test.checkpoint.json")
            .exists()
    }

    /// Every expected event ingested or quarantined; nothing unknown; no violation.
    /// Returns the duplicates.
    fn assert_complete(&self) -> u64 {
        let expected = self.expected_ids();
        let ingested = self.peer.ingested();
        let quarantined: HashSet<String> = self
            .dead_letters()
            .iter()
            .map(|d| harness::event_id(&d["event"]))
            .collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|id| !ingested.contains_key(*id) && !quarantined.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} events lost, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)]
        );
        let unknown: Vec<&String> = ingested
            .keys()
            .filter(|id| !expected.contains(*id))
            .collect();
        assert!(unknown.is_empty(), "rows that are no event: {unknown:?}");
        let stats = self.peer.stats();
        assert!(
            stats.violations.is_empty(),
            "Logs Ingestion API violations: {:?}",
            stats.violations
        );
        assert!(self.env.sim.stats().violations.is_empty());
        faults::duplicates(&ingested)
    }
}

fn assert_no_secret(out: &std::process::Output) {
    let t = text(out);
    assert!(!t.contains(CLIENT_SECRET), "the client secret leaked");
    assert!(
        !t.contains("eyJ0eXAiOiJKV1Qi.peer"),
        "an access token leaked"
    );
}

/// Faults on the way (429 with Retry-After, 503, a reset, a slow answer, random busy
/// answers): every event arrives once, as a row of the declared columns whose `Event` is
/// the valid event; a second run sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_through_faults() {
    let s = Setup::start(
        SimConfig {
            seed: 31,
            sessions: 6,
            events_per_session: 25,
            ..SimConfig::default()
        },
        PeerConfig {
            busy_rate: 0.05,
            seed: 9,
            ..peer_config()
        },
        "page_size = 20",
        "max_retries = 20",
    )
    .await;
    s.peer.push_faults([
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        Fault::Reset,
        Fault::Slow(Duration::from_secs(2)),
    ]);
    let out = s.run_once(CLIENT_SECRET, "faults").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_no_secret(&out);
    assert_eq!(s.assert_complete(), 0, "no duplicates");
    let stats = s.peer.stats();
    eprintln!("peer stats: {stats:?}");
    assert_eq!(stats.resets, 1, "{stats:?}");
    assert!(stats.errors_by_status.get(&429).is_some_and(|&n| n >= 1));
    assert!(stats.errors_by_status.get(&503).is_some_and(|&n| n >= 1));
    assert!(
        stats.max_wire_bytes < stats.max_decoded_bytes,
        "bodies are gzipped"
    );
    assert!(stats.max_decoded_bytes <= peer::MAX_BODY);
    assert!(stats.request_ids >= stats.accepted_requests);
    assert_eq!(stats.tokens_issued, 1, "the token is cached: {stats:?}");
    for row in s.peer.rows() {
        let event = &row["Event"];
        event_schema::assert_valid_event(event);
        assert_eq!(row["EventId"], event["event"]["id"]);
        assert_eq!(row["EventAction"], event["event"]["action"]);
        assert_eq!(row["SourceId"], "vbo_test");
        let t = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        assert_eq!(t(&row["TimeGenerated"]), t(&event["@timestamp"]));
        assert_eq!(row["UserName"], event["user"]["name"]);
        assert_eq!(row["ClientAddress"], event["client"]["address"]);
        assert_eq!(row["OrganizationName"], event["organization"]["name"]);
    }
    let before = s.peer.stats().rows_ingested;
    let out = s.run_once(CLIENT_SECRET, "again").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.peer.stats().rows_ingested, before, "nothing sent again");
}

/// Short-lived tokens are renewed before they expire (the endpoint never sees an
/// expired one); a revoked token is answered 401 and renewed once; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_expiry_and_after_a_revocation() {
    let sim = SimConfig {
        seed: 5,
        sessions: 4,
        events_per_session: 20,
        ..SimConfig::default()
    };
    // 2 s tokens, a run of several seconds: renewed at 80 % of their lifetime.
    let s = Setup::start(
        sim.clone(),
        PeerConfig {
            token_lifetime: Duration::from_secs(2),
            ..peer_config()
        },
        "page_size = 5",
        "",
    )
    .await;
    s.peer.set_delay(Duration::from_millis(300));
    let out = s.run_once(CLIENT_SECRET, "renewal").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.assert_complete(), 0);
    let stats = s.peer.stats();
    eprintln!("renewal: {stats:?}");
    assert!(stats.tokens_issued >= 3, "renewals: {stats:?}");
    assert_eq!(stats.expired_tokens, 0, "renewed before expiry: {stats:?}");
    assert_no_secret(&out);

    // Hour-long tokens, revoked mid-run: one 401, one new token, nothing lost.
    let s = Setup::start(sim, peer_config(), "page_size = 5", "").await;
    s.peer.set_delay(Duration::from_millis(50));
    let revoker = {
        let peer = s.peer.clone();
        tokio::spawn(async move {
            for _ in 0..1500 {
                if peer.stats().accepted_requests >= 3 {
                    peer.revoke_tokens();
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        })
    };
    let out = s.run_once(CLIENT_SECRET, "revoked").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(revoker.await.unwrap(), "the tokens were revoked mid-run");
    assert_eq!(s.assert_complete(), 0);
    let stats = s.peer.stats();
    eprintln!("revocation: {stats:?}");
    assert_eq!(stats.expired_tokens, 1, "{stats:?}");
    assert_eq!(stats.tokens_issued, 2, "{stats:?}");
    assert_no_secret(&out);
}

/// A 413 is split, a poison row goes to the dead-letter file with the API's reason, and
/// the rest arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_is_split_and_a_poison_row_is_quarantined() {
    let sim = SimConfig {
        seed: 8,
        sessions: 3,
        events_per_session: 20,
        ..SimConfig::default()
    };
    let ids = {
        let env = Env::start(sim.clone()).await;
        env.sim.event_ids()
    };
    let poison = ids[17].clone();
    let s = Setup::start(
        sim,
        PeerConfig {
            poison_ids: [poison.clone()].into(),
            ..peer_config()
        },
        "page_size = 30",
        "",
    )
    .await;
    s.peer.push_faults([Fault::Status {
        status: 413,
        retry_after: None,
    }]);
    let out = s.run_once(CLIENT_SECRET, "poison").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.assert_complete(), 0);
    assert!(!s.peer.ingested().contains_key(&poison));
    let dl = s.dead_letters();
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(harness::event_id(&dl[0]["event"]), poison);
    assert_eq!(dl[0]["http_status"], 400);
    assert_eq!(dl[0]["code"], "InvalidPayload");
    assert!(
        dl[0]["reason"].as_str().unwrap().contains(&poison),
        "{dl:?}"
    );
    assert!(s.checkpoint_exists());
}

/// A row that alone is over `max_bytes` goes to the dead-letter file with the reason
/// (here every row, with the smallest allowed limit), and the batch is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_over_the_request_limit_are_quarantined() {
    let s = Setup::start(
        SimConfig {
            seed: 2,
            sessions: 2,
            events_per_session: 5,
            ..SimConfig::default()
        },
        peer_config(),
        "",
        "max_bytes = 1024",
    )
    .await;
    let out = s.run_once(CLIENT_SECRET, "oversize").await;
    assert!(out.status.success(), "{}", text(&out));
    let dl = s.dead_letters();
    assert_eq!(dl.len(), s.expected_ids().len());
    assert!(
        dl.iter()
            .all(|d| d["http_status"].is_null()
                && d["reason"].as_str().unwrap().contains("max_bytes"))
    );
    assert_eq!(s.peer.stats().rows_ingested, 0);
    assert_eq!(s.assert_complete(), 0);
    assert!(s.checkpoint_exists());
}

/// `kill -9` mid-run, then a 30 s outage (503 with Retry-After) in the next run: nothing
/// is lost; duplicates are bounded by one pipeline batch per kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_and_a_30s_outage_lose_nothing() {
    let page = 20u64;
    let s = Setup::start(
        SimConfig {
            seed: 44,
            sessions: 8,
            events_per_session: 25,
            ..SimConfig::default()
        },
        peer_config(),
        &format!("page_size = {page}"),
        // With `Retry-After: 1` every retry waits >= 1 s: 40 retries outlast the outage
        // within one pipeline attempt (`--once` gives up after 6).
        "max_retries = 40",
    )
    .await;
    s.peer.set_delay(Duration::from_millis(100));
    let mut daemon = Daemon::spawn(&s.config, true, &[(SECRET_ENV, CLIENT_SECRET)], "kill");
    let peer = s.peer.clone();
    let killed = tokio::task::spawn_blocking(move || {
        for _ in 0..1500 {
            if peer.stats().rows_ingested >= 2 * page {
                return daemon.kill9();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        daemon.kill9()
    })
    .await
    .unwrap();
    assert!(killed, "the run was killed mid-way");
    let after_kill = s.peer.stats().rows_ingested;
    assert!(
        after_kill < s.expected_ids().len() as u64,
        "killed before the end"
    );

    s.peer.set_delay(Duration::ZERO);
    let outage = {
        let peer = s.peer.clone();
        tokio::spawn(async move {
            for _ in 0..3000 {
                if peer.stats().rows_ingested >= after_kill + page {
                    peer.start_outage(Duration::from_secs(30));
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        })
    };
    let out = faults::run_once(
        &s.config,
        &[
            (SECRET_ENV, CLIENT_SECRET),
            ("VEEAM_SIEM_DRAIN_TIMEOUT", "90s"),
        ],
        "outage",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(outage.await.unwrap(), "the outage started mid-run");
    let dups = s.assert_complete();
    let stats = s.peer.stats();
    eprintln!("duplicates after kill -9 and a 30 s outage: {dups}; peer stats: {stats:?}");
    assert!(
        stats.errors_by_status.get(&503).is_some_and(|&n| n > 3),
        "the outage was felt: {stats:?}"
    );
    assert!(
        dups <= page,
        "at most one batch re-sent after the kill: {dups}"
    );
    assert!(RUN_LIMIT > Duration::from_secs(60));
}

/// Wrong secret, unknown DCR, unknown stream, missing role: exit 1 with a message naming
/// the key (or the role), nothing ingested, no checkpoint, no secret printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_are_fatal_and_name_the_key() {
    let sim = SimConfig {
        sessions: 2,
        events_per_session: 3,
        ..SimConfig::default()
    };
    let s = Setup::start(sim.clone(), peer_config(), "", "").await;
    let out = s.run_once("wrong-Secret-881", "secret").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("sinks.sentinel.client_secret"), "{t}");
    assert!(t.contains("AADSTS7000215"), "{t}");
    assert!(!t.contains("wrong-Secret-881"), "the secret leaked");

    s.peer.set_authorized(false);
    let out = s.run_once(CLIENT_SECRET, "role").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("Monitoring Metrics Publisher"), "{t}");
    assert!(t.contains("sinks.sentinel.client_id"), "{t}");
    assert_no_secret(&out);
    s.peer.set_authorized(true);

    // A 200 (a web server or a proxy page, not the API) is not an acceptance.
    s.peer.push_faults([Fault::Status {
        status: 200,
        retry_after: None,
    }]);
    let out = s.run_once(CLIENT_SECRET, "not204").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("instead of 204"), "{}", text(&out));

    for (extra, key) in [
        (
            "dcr_immutable_id = \"dcr-00000000000000000000000000000000\"",
            "sinks.sentinel.dcr_immutable_id",
        ),
        ("stream = \"Custom-Other_CL\"", "sinks.sentinel.stream"),
    ] {
        let s2 = Setup::start(sim.clone(), peer_config(), "", "").await;
        let text_cfg = std::fs::read_to_string(&s2.config).unwrap();
        let name = extra.split(' ').next().unwrap();
        let patched: String = text_cfg
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{name} =")) {
                    extra.to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&s2.config, patched).unwrap();
        let out = s2.run_once(CLIENT_SECRET, "cfg").await;
        assert_eq!(out.status.code(), Some(1), "{extra}: {}", text(&out));
        assert!(text(&out).contains(key), "{extra}: {}", text(&out));
        assert_eq!(s2.peer.stats().rows_ingested, 0);
        assert!(!s2.checkpoint_exists());
        assert!(s2.peer.stats().violations.is_empty());
    }
    assert_eq!(s.peer.stats().rows_ingested, 0);
    assert!(!s.checkpoint_exists());
}

/// `check` gets a token and posts an empty array: passes; a wrong secret fails on one
/// line naming the sink, without the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probes_the_token_and_the_endpoint() {
    let setup = Setup::start(SimConfig::default(), peer_config(), "", "").await;
    let cfg = setup.config.display().to_string();
    let env = |secret: &str| {
        vec![
            (
                "TEST_VBO_PASSWORD".to_string(),
                harness::PASSWORD.to_string(),
            ),
            (SECRET_ENV.to_string(), secret.to_string()),
        ]
    };
    let out = run_bin_async(s(&["check", "--config", &cfg]), env(CLIENT_SECRET)).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sink sentinel"), "{stdout}");
    let stats = setup.peer.stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.accepted_requests, 1, "one empty probe");
    assert_eq!(stats.rows_ingested, 0);
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);

    let out = run_bin_async(s(&["check", "--config", &cfg]), env("wrong-Secret-882")).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAIL")).collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert!(failed[0].contains("sink sentinel"), "{stdout}");
    assert!(failed[0].contains("client_secret"), "{stdout}");
    assert!(!text(&out).contains("wrong-Secret-882"));
}

/// The peer itself: it refuses what the service refuses, loudly (answer + violation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_rejects_what_the_service_rejects() {
    use std::io::Write as _;
    let p = AzureMonitorPeer::start(PeerConfig {
        token_lifetime: Duration::from_secs(1),
        ..peer_config()
    })
    .await
    .unwrap();
    let http = veeam_siem::http::build_client(
        "test",
        &veeam_siem::config::common::TlsConfig::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    let token_url = format!("{}/{TENANT}/oauth2/v2.0/token", p.url());
    let token = |secret: &'static str| {
        let http = http.clone();
        let url = token_url.clone();
        async move {
            http.post(&url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", secret),
                    ("scope", peer::SCOPE),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let bad = token("nope").await;
    assert_eq!(bad.status(), 401);
    assert!(bad.text().await.unwrap().contains("invalid_client"));
    let good: Value = token(CLIENT_SECRET).await.json().await.unwrap();
    assert_eq!(good["token_type"], "Bearer");
    let bearer = format!("Bearer {}", good["access_token"].as_str().unwrap());
    let url = |dcr: &str, stream: &str| {
        format!(
            "{}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01",
            p.url()
        )
    };
    let gz = |body: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body).unwrap();
        enc.finish().unwrap()
    };
    let row = |extra: &str| {
        let mut cols: Vec<String> = declared_streams()[STREAM]
            .iter()
            .map(|(n, _)| format!("\"{n}\":null"))
            .collect();
        if !extra.is_empty() {
            cols.push(extra.to_string());
        }
        format!("[{{{}}}]", cols.join(","))
    };
    let post = |u: String, ct: &'static str, body: Vec<u8>, auth: Option<String>| {
        let http = http.clone();
        async move {
            let mut req = http
                .post(u)
                .header("content-type", ct)
                .header("content-encoding", "gzip")
                .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string())
                .body(body);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let ok = row("");
    let (status, _) = post(
        url(DCR, STREAM),
        "application/json",
        gz(ok.as_bytes()),
        Some(bearer.clone()),
    )
    .await;
    assert_eq!(status, 204);
    // (status wanted, what, url, content type, body, authorization)
    type Case = (
        u16,
        &'static str,
        String,
        &'static str,
        Vec<u8>,
        Option<String>,
    );
    let cases: Vec<Case> = vec![
        (
            401,
            "no token",
            url(DCR, STREAM),
            "application/json",
            gz(ok.as_bytes()),
            None,
        ),
        (
            415,
            "content type",
            url(DCR, STREAM),
            "text/plain",
            gz(ok.as_bytes()),
            Some(bearer.clone()),
        ),
        (
            404,
            "unknown DCR",
            url("dcr-00000000000000000000000000000000", STREAM),
            "application/json",
            gz(ok.as_bytes()),
            Some(bearer.clone()),
        ),
        (
            400,
            "unknown stream",
            url(DCR, "Custom-Nope_CL"),
            "application/json",
            gz(ok.as_bytes()),
            Some(bearer.clone()),
        ),
        (
            400,
            "unknown column",
            url(DCR, STREAM),
            "application/json",
            gz(row("\"Extra\":1").as_bytes()),
            Some(bearer.clone()),
        ),
        (
            413,
            "over 1 MiB decompressed",
            url(DCR, STREAM),
            "application/json",
            gz(&vec![b' '; peer::MAX_BODY + 1]),
            Some(bearer.clone()),
        ),
    ];
    for (want, what, u, ct, body, auth) in cases {
        let (status, text) = post(u, ct, body, auth).await;
        assert_eq!(status, want, "{what}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
        assert!(v["error"]["code"].is_string(), "{what}: {text}");
    }
    // A wrong-typed value is refused too.
    let typed = row("").replace("\"ItemSizeBytes\":null", "\"ItemSizeBytes\":\"big\"");
    let (status, _) = post(
        url(DCR, STREAM),
        "application/json",
        gz(typed.as_bytes()),
        Some(bearer.clone()),
    )
    .await;
    assert_eq!(status, 400);
    // The token expires.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, text) = post(
        url(DCR, STREAM),
        "application/json",
        gz(ok.as_bytes()),
        Some(bearer),
    )
    .await;
    assert_eq!(status, 401, "{text}");
    let stats = p.stats();
    assert_eq!(stats.rows_ingested, 1);
    assert!(
        stats.violations.len() >= 4,
        "client mistakes are recorded: {:?}",
        stats.violations
    );
    p.shutdown().await;
}

/// A DCR whose stream does not match the rows (here: it lacks the `Event` column)
/// refuses every row: the sink bisects, finds no row the API accepts, and stops instead of
/// quarantining everything; nothing is acknowledged. Once one row was refused alone with
/// nothing accepted, refused requests are not halved further: a batch of 200 rows costs a
/// few dozen requests, not two per row (r8 d, `az_large.py reject_all`: 1,993 requests
/// for 1,000 rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_refuses_every_row_stops_the_sink_without_quarantining() {
    let mut streams = declared_streams();
    streams
        .get_mut(STREAM)
        .unwrap()
        .retain(|(name, _)| name != "Event");
    let s = Setup::start(
        SimConfig {
            seed: 3,
            sessions: 2,
            events_per_session: 200,
            ..SimConfig::default()
        },
        PeerConfig {
            streams,
            ..PeerConfig::default()
        },
        "page_size = 200",
        "max_bytes = 65536",
    )
    .await;
    let out = s.run_once(CLIENT_SECRET, "mismatch").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("examples/siem/sentinel"), "{t}");
    assert!(t.contains("sinks.sentinel.stream"), "{t}");
    assert!(s.dead_letters().is_empty(), "nothing quarantined");
    let stats = s.peer.stats();
    assert_eq!(stats.rows_ingested, 0);
    assert!(
        stats.ingest_requests <= 60,
        "requests for one refused batch of 200 rows: {}",
        stats.ingest_requests
    );
    assert!(!s.checkpoint_exists());
}
