//! Mapping throughput: Veeam records → `Event` → JSON text, the work the pipeline's router
//! does per record (`map::map_record` + `serde_json::to_string`), plus the string parsers
//! it relies on, measured alone.
//!
//! ```sh
//! cargo bench --bench mapping                                            # full run
//! cargo bench --bench mapping -- --warm-up-time 1 --measurement-time 3   # quick run
//! ```
//!
//! Every benchmark reports elements (records or strings) per second. The records come from
//! the test fixtures (`tests/fixtures/vbo`, `tests/fixtures/vdc`) and from the shapes the
//! embedded simulator serves (its `clientHost`/`initiatedBy` variants and log titles), so
//! they look like a real page. Target (issue 8): mapping ≥ 500k events/s per core.

use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::value::RawValue;
use veeam_siem::map::Record;
use veeam_siem::map::client_host::{parse_client_host, parse_initiated_by};
use veeam_siem::map::vbo::{RawRestoreEvent, RawRestoreSession};
use veeam_siem::map::vdc::{RawJob, RawJobSession, RawLogEntry, parse_title};
use veeam_siem::map::{MapContext, map_record};

/// Records per iteration: one simulator page at `page_size = 1000`.
const PAGE: usize = 1000;

const VBO_FIXTURES: [&str; 6] = [
    include_str!("../tests/fixtures/vbo/v6-minimal-and-odd.json"),
    include_str!("../tests/fixtures/vbo/veod-portal-bare-ipv4.json"),
    include_str!("../tests/fixtures/vbo/vesp-v7-ipv6-gateway-offsets.json"),
    include_str!("../tests/fixtures/vbo/vet-teams-bare-ipv6-unknown-type.json"),
    include_str!("../tests/fixtures/vbo/vex-cloud-connect-org-initiated.json"),
    include_str!("../tests/fixtures/vbo/vex-gateway-not-ip-unc.json"),
];
const VDC_JOBS: &str = include_str!("../tests/fixtures/vdc/backup-jobs.json");
const VDC_SESSIONS: &str = include_str!("../tests/fixtures/vdc/job-sessions.json");
const VDC_LOGS: &str = include_str!("../tests/fixtures/vdc/job-session-logs.json");

/// The `clientHost` shapes the simulator serves (plus the empty one).
const CLIENT_HOSTS: [&str; 6] = [
    "WS-ALICE01 (via: 203.0.113.10)",
    "HOST3 (via: 2001:db8::10)",
    "198.51.100.7",
    "2001:db8::4",
    "RESTORE-SRV05",
    "",
];
const ORGANIZATION: &str = "contoso.onmicrosoft.com";
/// The `initiatedBy` shapes the simulator serves: `DOMAIN\user`, a UPN, the organization
/// itself (Cloud Connect), a bare name.
const INITIATORS: [&str; 4] = [
    "LAB\\alice",
    "bob@contoso.onmicrosoft.com",
    "contoso.onmicrosoft.com",
    "carol",
];
/// VDC log titles as the simulator writes them, in a typical session's proportions: one
/// start line, mostly objects, one transfer summary, one end line.
const VDC_TITLES: [&str; 10] = [
    "[Success] Job started at 3/3/2025 2:00:00 AM",
    "[Success] Processing mailbox: adams@contoso.onmicrosoft.com",
    "[Success] Processing mailbox: user1@contoso.onmicrosoft.com",
    "[Warning] Processing OneDrive: bob@contoso.onmicrosoft.com",
    "[Success] Processing site: https://contoso.sharepoint.com/sites/Sales",
    "[Failed] Processing team: Sales & Marketing",
    "[Success] Skipped mailbox carol@contoso.onmicrosoft.com: no changes since the last run",
    "[Success] Processing archive mailbox: dave@contoso.onmicrosoft.com",
    "[Success] Transferred: 168.8 MB (2472 items) at 1.8 MB/s (26 items/s)",
    "[Warning] Job finished at 3/3/2025 2:10:44 AM",
];

fn fetched_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-10T12:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

fn ctx(fetched_at: DateTime<Utc>) -> MapContext<'static> {
    MapContext {
        source_id: "vbo_main",
        observer_hostname: "vbo.example.net",
        fetched_at,
    }
}

/// A VB365 page: (session, raw event JSON) pairs, the fixture events cycled through, with
/// the sessions' `clientHost`/`initiatedBy` varied like the simulator's.
fn vbo_page() -> Vec<(Arc<RawRestoreSession>, String)> {
    #[derive(serde::Deserialize)]
    struct Fixture {
        session: serde_json::Value,
        events: Vec<Box<RawValue>>,
    }
    let fixtures: Vec<Fixture> = VBO_FIXTURES
        .iter()
        .map(|text| serde_json::from_str(text).expect("fixture"))
        .collect();
    let mut sessions = Vec::new();
    for (i, f) in fixtures.iter().enumerate() {
        for (j, host) in CLIENT_HOSTS.iter().enumerate() {
            let mut s = f.session.clone();
            s["organization"] = ORGANIZATION.into();
            s["clientHost"] = (*host).into();
            s["initiatedBy"] = INITIATORS[(i + j) % INITIATORS.len()].into();
            let session: RawRestoreSession = serde_json::from_value(s).expect("fixture session");
            sessions.push((Arc::new(session), i));
        }
    }
    let events: Vec<Vec<String>> = fixtures
        .iter()
        .map(|f| {
            f.events
                .iter()
                .map(|e| e.get().to_string())
                .filter(|e| serde_json::from_str::<RawRestoreEvent>(e).is_ok())
                .collect()
        })
        .collect();
    (0..PAGE)
        .map(|n| {
            let (session, fixture) = &sessions[n % sessions.len()];
            let pool = &events[*fixture];
            (session.clone(), pool[n % pool.len()].clone())
        })
        .collect()
}

fn vbo_records(page: &[(Arc<RawRestoreSession>, String)]) -> Vec<Record> {
    page.iter()
        .map(|(session, raw)| Record::VboEvent {
            session: session.clone(),
            event: serde_json::from_str(raw).expect("event"),
            original: None,
        })
        .collect()
}

/// A VDC session log: the fixture entries, then simulator-like titles, as raw JSON.
fn vdc_page() -> (Arc<RawJob>, Arc<RawJobSession>, Vec<String>) {
    let job: Vec<RawJob> = serde_json::from_str(VDC_JOBS).expect("jobs");
    let session: Vec<RawJobSession> = serde_json::from_str(VDC_SESSIONS).expect("sessions");
    let fixture: Vec<Box<RawValue>> = serde_json::from_str(VDC_LOGS).expect("logs");
    let mut raws: Vec<String> = fixture.iter().map(|r| r.get().to_string()).collect();
    let mut n = 0;
    while raws.len() < PAGE {
        let title = VDC_TITLES[n % VDC_TITLES.len()];
        let raw = serde_json::json!({
            "id": format!("11111111-2222-4333-8444-{n:012}"),
            "title": title,
            "creationTime": "2025-03-03T02:01:10.2000000Z",
            "endTime": "2025-03-03T02:03:55.9000000Z",
        });
        raws.push(raw.to_string());
        n += 1;
    }
    let job = Arc::new(job.into_iter().next().expect("a job"));
    let session = Arc::new(session.into_iter().next().expect("a session"));
    (job, session, raws)
}

fn vdc_records(job: &Arc<RawJob>, session: &Arc<RawJobSession>, raws: &[String]) -> Vec<Record> {
    raws.iter()
        .enumerate()
        .map(|(i, raw)| Record::VdcLog {
            job: job.clone(),
            session: session.clone(),
            entry: serde_json::from_str(raw).expect("entry"),
            index: i as u64,
            original: None,
        })
        .collect()
}

/// Map and serialize every record, as `pipeline::route` does.
fn map_and_encode(ctx: &MapContext<'_>, records: &[Record]) -> usize {
    let mut bytes = 0;
    for r in records {
        let event = map_record(ctx, black_box(r));
        bytes += serde_json::to_string(&event).expect("json").len();
    }
    bytes
}

fn bench_vbo(c: &mut Criterion) {
    let ctx = ctx(fetched_at());
    let page = vbo_page();
    let records = vbo_records(&page);
    let mut g = c.benchmark_group("vbo");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("map", |b| {
        b.iter(|| {
            for r in &records {
                black_box(map_record(&ctx, black_box(r)));
            }
        })
    });
    g.bench_function("map+json", |b| b.iter(|| map_and_encode(&ctx, &records)));
    // The whole per-record path: the source's decode of the raw record, then the router.
    g.bench_function("decode+map+json", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (session, raw) in &page {
                let event: RawRestoreEvent = serde_json::from_str(black_box(raw)).expect("event");
                let record = Record::VboEvent {
                    session: session.clone(),
                    event,
                    original: None,
                };
                let mapped = map_record(&ctx, &record);
                bytes += serde_json::to_string(&mapped).expect("json").len();
            }
            bytes
        })
    });
    // `keep_original = true`: the raw record is copied into `event.original` and re-escaped.
    let with_original: Vec<Record> = page
        .iter()
        .zip(&records)
        .map(|((_, raw), r)| match r {
            Record::VboEvent { session, event, .. } => Record::VboEvent {
                session: session.clone(),
                event: event.clone(),
                original: Some(raw.as_str().into()),
            },
            other => other.clone(),
        })
        .collect();
    g.bench_function("map+json keep_original", |b| {
        b.iter(|| map_and_encode(&ctx, &with_original))
    });
    g.finish();
}

fn bench_vdc(c: &mut Criterion) {
    let ctx = MapContext {
        source_id: "vdc_emea",
        observer_hostname: "vdc-api.example.net",
        fetched_at: fetched_at(),
    };
    let (job, session, raws) = vdc_page();
    let records = vdc_records(&job, &session, &raws);
    let mut g = c.benchmark_group("vdc");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("map", |b| {
        b.iter(|| {
            for r in &records {
                black_box(map_record(&ctx, black_box(r)));
            }
        })
    });
    g.bench_function("map+json", |b| b.iter(|| map_and_encode(&ctx, &records)));
    g.bench_function("decode+map+json", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (i, raw) in raws.iter().enumerate() {
                let entry: RawLogEntry = serde_json::from_str(black_box(raw)).expect("entry");
                let record = Record::VdcLog {
                    job: job.clone(),
                    session: session.clone(),
                    entry,
                    index: i as u64,
                    original: None,
                };
                let mapped = map_record(&ctx, &record);
                bytes += serde_json::to_string(&mapped).expect("json").len();
            }
            bytes
        })
    });
    g.finish();
}

fn bench_parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("parsers");
    g.throughput(Throughput::Elements(CLIENT_HOSTS.len() as u64));
    g.bench_function("client_host", |b| {
        b.iter(|| {
            for h in CLIENT_HOSTS {
                black_box(parse_client_host(black_box(h)));
            }
        })
    });
    g.throughput(Throughput::Elements(INITIATORS.len() as u64));
    g.bench_function("initiated_by", |b| {
        b.iter(|| {
            for u in INITIATORS {
                black_box(parse_initiated_by(black_box(u), Some(ORGANIZATION)));
            }
        })
    });
    g.throughput(Throughput::Elements(VDC_TITLES.len() as u64));
    g.bench_function("vdc_title", |b| {
        b.iter(|| {
            for t in VDC_TITLES {
                black_box(parse_title(black_box(t)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_vbo, bench_vdc, bench_parsers);
criterion_main!(benches);
