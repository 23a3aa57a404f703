//! Sink encoders, per event: the RFC 5424 syslog message (header + JSON, with and without
//! RFC 6587 octet-counting framing) and the Splunk HEC envelope, request packing and gzip.
//! The input is what the pipeline hands a sink: an `EncodedEvent` (event + its JSON, done
//! once upstream), so JSON serialization of the event is not measured here (see
//! `benches/mapping.rs`).
//!
//! ```sh
//! cargo bench --bench encoders                                            # full run
//! cargo bench --bench encoders -- --warm-up-time 1 --measurement-time 3   # quick run
//! ```

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::value::RawValue;
use veeam_siem::map::Record;
use veeam_siem::map::vbo::RawRestoreSession;
use veeam_siem::map::vdc::{RawJob, RawJobSession};
use veeam_siem::map::{MapContext, map_record};
use veeam_siem::sinks::EncodedEvent;
use veeam_siem::sinks::splunk_hec::wire;
use veeam_siem::sinks::syslog::format::{
    Encoder, Facility, Format, Framing, SOFTWARE, SeverityMap, frame,
};

/// Events per iteration: one simulator page at `page_size = 1000`.
const PAGE: usize = 1000;
/// The HEC sink's defaults (`max_events`, `max_bytes`).
const HEC_MAX_EVENTS: usize = 500;
const HEC_MAX_BYTES: usize = 1_000_000;

const VBO_FIXTURES: [&str; 4] = [
    include_str!("../tests/fixtures/vbo/veod-portal-bare-ipv4.json"),
    include_str!("../tests/fixtures/vbo/vesp-v7-ipv6-gateway-offsets.json"),
    include_str!("../tests/fixtures/vbo/vet-teams-bare-ipv6-unknown-type.json"),
    include_str!("../tests/fixtures/vbo/vex-cloud-connect-org-initiated.json"),
];
const VDC_JOBS: &str = include_str!("../tests/fixtures/vdc/backup-jobs.json");
const VDC_SESSIONS: &str = include_str!("../tests/fixtures/vdc/job-sessions.json");
const VDC_LOGS: &str = include_str!("../tests/fixtures/vdc/job-session-logs.json");

/// A page of encoded events: VB365 restore events (fixtures, cycled) and VDC log lines,
/// about 3:1.
fn page() -> Vec<EncodedEvent> {
    #[derive(serde::Deserialize)]
    struct Fixture {
        session: RawRestoreSession,
        events: Vec<Box<RawValue>>,
    }
    let fetched_at: DateTime<Utc> = DateTime::parse_from_rfc3339("2025-03-10T12:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    let vbo_ctx = MapContext {
        source_id: "vbo_main",
        observer_hostname: "vbo.example.net",
        fetched_at,
    };
    let vdc_ctx = MapContext {
        source_id: "vdc_emea",
        observer_hostname: "vdc-api.example.net",
        fetched_at,
    };
    let mut vbo = Vec::new();
    for text in VBO_FIXTURES {
        let f: Fixture = serde_json::from_str(text).expect("fixture");
        let session = Arc::new(f.session);
        for raw in f.events {
            if let Ok(event) = serde_json::from_str(raw.get()) {
                vbo.push(Record::VboEvent {
                    session: session.clone(),
                    event,
                    original: None,
                });
            }
        }
    }
    let job: Arc<RawJob> =
        Arc::new(serde_json::from_str::<Vec<RawJob>>(VDC_JOBS).expect("jobs")[0].clone());
    let session: Arc<RawJobSession> = Arc::new(
        serde_json::from_str::<Vec<RawJobSession>>(VDC_SESSIONS).expect("sessions")[0].clone(),
    );
    let mut vdc: Vec<Record> = serde_json::from_str::<Vec<serde_json::Value>>(VDC_LOGS)
        .expect("logs")
        .into_iter()
        .enumerate()
        .map(|(i, v)| Record::VdcLog {
            job: job.clone(),
            session: session.clone(),
            entry: serde_json::from_value(v).expect("entry"),
            index: i as u64,
            original: None,
        })
        .collect();
    vdc.push(Record::VdcLog {
        job,
        session,
        entry: serde_json::from_value(serde_json::json!({
            "id": "11111111-2222-4333-8444-555555555599",
            "title": "[Success] Transferred: 168.8 MB (2472 items) at 1.8 MB/s (26 items/s)",
            "creationTime": "2025-03-03T02:10:44.4000000Z",
        }))
        .expect("entry"),
        index: 3,
        original: None,
    });
    (0..PAGE)
        .map(|n| {
            let (record, ctx) = if n % 4 == 3 {
                (&vdc[n / 4 % vdc.len()], &vdc_ctx)
            } else {
                (&vbo[n % vbo.len()], &vbo_ctx)
            };
            let event = map_record(ctx, record);
            let json = serde_json::to_string(&event).expect("json");
            EncodedEvent { event, json }
        })
        .collect()
}

fn bench_syslog(c: &mut Criterion) {
    let events = page();
    let encoder = Encoder {
        format: Format::Rfc5424,
        bom: false,
        facility: Facility::LOCAL0,
        severity: SeverityMap::default(),
        app_name: SOFTWARE.to_string(),
        hostname: None,
        sw_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut g = c.benchmark_group("syslog");
    g.throughput(Throughput::Elements(events.len() as u64));
    // As `sinks::syslog` does it: one message buffer reused, the stream buffer grown per batch.
    let mut msg = Vec::new();
    g.bench_function("rfc5424", |b| {
        b.iter(|| {
            let mut total = 0;
            for (seq, e) in events.iter().enumerate() {
                msg.clear();
                encoder.encode(&e.event, black_box(&e.json), seq as u32 + 1, &mut msg);
                total += msg.len();
            }
            total
        })
    });
    let mut buf = Vec::new();
    g.bench_function("rfc5424+octet-counting", |b| {
        b.iter(|| {
            buf.clear();
            for (seq, e) in events.iter().enumerate() {
                msg.clear();
                encoder.encode(&e.event, black_box(&e.json), seq as u32 + 1, &mut msg);
                frame(&msg, Framing::OctetCounting, &mut buf);
            }
            buf.len()
        })
    });
    g.finish();
}

fn bench_hec(c: &mut Criterion) {
    let events = page();
    let meta = wire::Meta::default();
    let alone = HashSet::new();
    let envelopes = |events: &[EncodedEvent]| {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                // Same capacity hint as the sink.
                let mut env = Vec::with_capacity(e.json.len() + 256);
                wire::encode_envelope(&meta, black_box(e), &mut env).expect("envelope");
                (i, env)
            })
            .collect::<Vec<_>>()
    };
    let mut g = c.benchmark_group("hec");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("envelope", |b| b.iter(|| envelopes(&events)));
    // What the sink does: envelopes written straight into request bodies.
    let packed = |events: &[EncodedEvent]| {
        let mut packer = wire::Packer::new(HEC_MAX_EVENTS, HEC_MAX_BYTES, &alone);
        for (i, e) in events.iter().enumerate() {
            packer
                .add(i, |body| wire::encode_envelope(&meta, black_box(e), body))
                .expect("envelope");
        }
        packer.finish()
    };
    g.bench_function("envelope+pack", |b| b.iter(|| packed(&events)));
    g.bench_function("envelope+pack+gzip", |b| {
        b.iter(|| {
            let mut compressed = 0;
            for chunk in packed(&events) {
                compressed += veeam_siem::sinks::gzip::gzip(&chunk.body, 4)
                    .expect("gzip")
                    .len();
            }
            compressed
        })
    });
    g.finish();

    // Deflate backends and levels on the same request bodies (500 envelopes each): flate2
    // on zlib-rs (what the sink uses) against miniz_oxide (flate2's default backend).
    let chunks = wire::pack(envelopes(&events), HEC_MAX_EVENTS, HEC_MAX_BYTES, &alone);
    let raw: usize = chunks.iter().map(|c| c.body.len()).sum();
    let mut g = c.benchmark_group("hec-gzip");
    g.throughput(Throughput::Elements(events.len() as u64));
    for level in [1u32, 2, 3, 4, 5, 6] {
        let zlib_rs: usize = chunks
            .iter()
            .map(|c| {
                veeam_siem::sinks::gzip::gzip(&c.body, level)
                    .expect("gzip")
                    .len()
            })
            .sum();
        let miniz: usize = chunks
            .iter()
            .map(|c| miniz_oxide::deflate::compress_to_vec(&c.body, level as u8).len())
            .sum();
        eprintln!(
            "hec-gzip level {level}: {raw} bytes -> zlib-rs {zlib_rs} ({:.1} B/event), miniz_oxide {miniz} ({:.1} B/event)",
            zlib_rs as f64 / events.len() as f64,
            miniz as f64 / events.len() as f64
        );
        g.bench_function(format!("zlib-rs/{level}"), |b| {
            b.iter(|| {
                chunks
                    .iter()
                    .map(|c| {
                        veeam_siem::sinks::gzip::gzip(black_box(&c.body), level)
                            .expect("gzip")
                            .len()
                    })
                    .sum::<usize>()
            })
        });
        g.bench_function(format!("miniz_oxide/{level}"), |b| {
            b.iter(|| {
                chunks
                    .iter()
                    .map(|c| {
                        miniz_oxide::deflate::compress_to_vec(black_box(&c.body), level as u8).len()
                    })
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_syslog, bench_hec);
criterion_main!(benches);
