//! The compliance archive end to end: the real binary runs into an archive (keys made by
//! `openssl`), `veeam-siem verify` accepts it, and every kind of tampering on a copy makes
//! `verify` exit 1 with a line naming the file; `kill -9` mid-segment loses nothing and the
//! chain still verifies.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use veeam_siem::sinks::archive::digest::Digest;
use veeam_siem::sinks::archive::keys::SigningKey;
use veeam_siem::sinks::archive::segment::{self, path_of};
use veeam_siem_simulator::SimConfig;
use veeam_siem_test_peers::tools::require_tool;

use crate::support::config::Table;
use crate::support::faults::{Daemon, run_once, tail, write_config};
use crate::support::harness::{self, Env, PASSWORD, bin, run_bin_async, s, text};

const PASSWORD_ENV: (&str, &str) = ("TEST_VBO_PASSWORD", PASSWORD);

/// `openssl genpkey` / `openssl pkey -pubout`, as the README says: (private, public).
fn openssl_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = |out: std::io::Result<Output>| {
        let out = out.expect("openssl runs");
        assert!(out.status.success(), "{}", text(&out));
    };
    ok(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private)
        .output());
    ok(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .output());
    (private, public)
}

fn archive_sink(path: &Path, key: &Path, extra: &str) -> Table {
    Table::sink("evidence", "archive", &["vbo_test"])
        .set("path", path.display().to_string())
        .set("signing_key_file", key.display().to_string())
        .raw(extra)
}

fn verify(path: &Path, keys: &[&Path], json: bool) -> Output {
    verify_with(path, keys, if json { &["--format", "json"] } else { &[] })
}

/// `verify PATH --public-key …` with `extra` arguments.
fn verify_with(path: &Path, keys: &[&Path], extra: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.arg("verify").arg(path);
    for k in keys {
        cmd.arg("--public-key").arg(k);
    }
    cmd.args(extra);
    cmd.output().unwrap()
}

/// The `problems` of a `--format json` report, as (file, kind).
fn json_problems(out: &Output) -> Vec<(String, String)> {
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every event id in the archive's segments.
fn archived_ids(root: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for name in segment::list(root).unwrap().segments {
        let file = std::fs::File::open(path_of(root, &name)).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(file), &mut text)
            .unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(harness::event_id(&v));
        }
    }
    ids
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_the_archive_and_names_every_tampered_file() {
    let Some(_) = require_tool("openssl") else {
        return;
    };
    let env = Env::start(SimConfig::default()).await;
    let (private, public) = openssl_keys(env.dir.path(), "archive");
    let (other_private, other_public) = openssl_keys(env.dir.path(), "other");
    let root = env.dir.path().join("archive");
    // Small segments, so there are several to tamper with.
    let config = write_config(
        &env,
        "",
        archive_sink(&root, &private, "max_segment_bytes = 20000"),
    );
    let out = run_once(&config, &[PASSWORD_ENV], "archive").await;
    assert!(out.status.success(), "{}", text(&out));

    let ok = verify(&root, &[&public], true);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    assert_eq!(report["events"], expected.len() as u64, "{report}");
    assert!(report["open_segment"].is_null(), "--once seals: {report}");
    let ids: HashSet<String> = archived_ids(&root).into_iter().collect();
    assert_eq!(ids, expected);
    let listing = segment::list(&root).unwrap();
    assert!(listing.segments.len() >= 4, "{:?}", listing.segments);
    assert_eq!(listing.segments.len(), listing.digests.len());
    let text_ok = verify(&root, &[&public], false);
    assert!(String::from_utf8_lossy(&text_ok.stdout).contains("OK:"));

    // 'static slices, so the closures below are `Copy` (a test leaks them on purpose).
    let segments: &'static [String] = Box::leak(listing.segments.clone().into_boxed_slice());
    let digests: &'static [String] = Box::leak(listing.digests.clone().into_boxed_slice());
    let seg = move |i: usize| segments[i].clone();
    let dig = move |i: usize| digests[i].clone();
    type Tamper = Box<dyn Fn(&Path) -> String>;
    let other_key = other_private.clone();
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "a flipped byte",
            Box::new(move |r| {
                let p = path_of(r, &seg(1));
                let mut b = std::fs::read(&p).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0x01;
                std::fs::write(&p, b).unwrap();
                seg(1)
            }),
        ),
        (
            "a deleted segment",
            Box::new(move |r| {
                std::fs::remove_file(path_of(r, &seg(2))).unwrap();
                seg(2)
            }),
        ),
        (
            "a deleted middle digest",
            Box::new(move |r| {
                std::fs::remove_file(path_of(r, &dig(1))).unwrap();
                dig(1)
            }),
        ),
        (
            "two segments swapped",
            Box::new(move |r| {
                let (a, b) = (path_of(r, &seg(0)), path_of(r, &seg(1)));
                let tmp = a.with_extension("swap");
                std::fs::rename(&a, &tmp).unwrap();
                std::fs::rename(&b, &a).unwrap();
                std::fs::rename(&tmp, &b).unwrap();
                seg(0)
            }),
        ),
        (
            "a truncated segment",
            Box::new(move |r| {
                let p = path_of(r, &seg(1));
                let len = std::fs::metadata(&p).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                f.set_len(len - 10).unwrap();
                seg(1)
            }),
        ),
        (
            "a forged line appended",
            Box::new(move |r| {
                let p = path_of(r, &seg(0));
                let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
                f.write_all(&gzip(
                    "{\"@timestamp\":\"2026-01-01T00:00:00Z\",\"event\":{\"action\":\"forged\"}}\n",
                ))
                .unwrap();
                seg(0)
            }),
        ),
        (
            "a digest re-signed with another key",
            Box::new(move |r| {
                let p = path_of(r, &dig(0));
                let mut d = Digest::parse(&std::fs::read(&p).unwrap()).unwrap();
                d.segments[0].events += 1;
                d.sign(&SigningKey::from_pem_file(&other_key).unwrap());
                std::fs::write(&p, d.to_file_bytes()).unwrap();
                dig(0)
            }),
        ),
        (
            "a digest blown up to 64 MiB (read capped, reported)",
            Box::new(move |r| {
                let p = path_of(r, &dig(1));
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                f.set_len(64 << 20).unwrap();
                dig(1)
            }),
        ),
        (
            "an unlisted segment",
            Box::new(move |r| {
                let extra = "2001/01/01/0000000999-20010101T000000Z.ndjson.gz".to_string();
                let p = path_of(r, &extra);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::copy(path_of(r, &seg(0)), &p).unwrap();
                extra
            }),
        ),
    ];
    for (i, (what, tamper)) in cases.iter().enumerate() {
        let copy = env.dir.path().join(format!("tampered-{i}"));
        copy_dir(&root, &copy);
        let file = tamper(&copy);
        let out = verify(&copy, &[&public], false);
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(
            report.lines().any(|l| l.starts_with(&format!("{file}: "))),
            "{what}: no line names {file}:\n{report}"
        );
    }

    // Key rotation: verify takes several keys; a foreign key alone is refused.
    let both = verify(&root, &[&other_public, &public], false);
    assert_eq!(both.status.code(), Some(0), "{}", text(&both));
    let foreign = verify(&root, &[&other_public], false);
    assert_eq!(foreign.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&foreign.stdout).contains("signed by another key"));
    // Usage errors exit 2.
    let bad_key = verify(&root, &[&private], false);
    assert_eq!(bad_key.status.code(), Some(2), "{}", text(&bad_key));
    let not_a_dir = verify(&public, &[&public], false);
    assert_eq!(not_a_dir.status.code(), Some(2), "{}", text(&not_a_dir));
    // Nothing at the path: not a usage error but no archive (a daily check must fail).
    let nothing = verify(&env.dir.path().join("nope"), &[&public], false);
    assert_eq!(nothing.status.code(), Some(1), "{}", text(&nothing));
}

/// Strict by default: a segment no digest covers is a problem even when it is the next in
/// the chain (a removed newest or only digest, a copy named with the next sequence), and
/// so is an empty archive; `--allow-open` tolerates the one open segment, not emptiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_is_strict_about_unsealed_segments_and_empty_archives() {
    let Some(_) = require_tool("openssl") else {
        return;
    };
    let env = Env::start(SimConfig::default()).await;
    let (private, public) = openssl_keys(env.dir.path(), "archive");
    let root = env.dir.path().join("archive");
    let config = write_config(
        &env,
        "",
        archive_sink(&root, &private, "max_segment_bytes = 20000"),
    );
    let out = run_once(&config, &[PASSWORD_ENV], "archive").await;
    assert!(out.status.success(), "{}", text(&out));
    // `run --once` seals at its end: the strict check passes.
    let ok = verify(&root, &[&public], false);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let listing = segment::list(&root).unwrap();
    let n = listing.segments.len();
    assert!(n >= 3, "{:?}", listing.segments);
    let (segments, digests) = (listing.segments, listing.digests);

    // Each case: (what, change the copy) → the file that must be named unsealed, and the
    // digest the head record names that is gone (then --allow-open fails too).
    type Tamper<'a> = Box<dyn Fn(&Path) -> (String, Option<String>) + 'a>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "the newest digest deleted",
            Box::new(|r| {
                std::fs::remove_file(path_of(r, &digests[n - 1])).unwrap();
                (segments[n - 1].clone(), Some(digests[n - 1].clone()))
            }),
        ),
        (
            "the only digest deleted (a one-segment archive)",
            Box::new(|r| {
                for name in segments.iter().skip(1).chain(&digests) {
                    std::fs::remove_file(path_of(r, name)).unwrap();
                }
                (segments[0].clone(), Some(digests[n - 1].clone()))
            }),
        ),
        (
            "a segment copied under the next sequence number",
            Box::new(|r| {
                let copy = format!(
                    "{}{:010}-20991231T000000Z.ndjson.gz",
                    &segments[0][..11],
                    n + 1
                );
                std::fs::copy(path_of(r, &segments[0]), path_of(r, &copy)).unwrap();
                (copy, None)
            }),
        ),
    ];
    for (i, (what, tamper)) in cases.iter().enumerate() {
        let copy = env.dir.path().join(format!("unsealed-{i}"));
        copy_dir(&root, &copy);
        let (file, gone) = tamper(&copy);
        let out = verify(&copy, &[&public], false);
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("{file}: ")))
            .unwrap_or_else(|| panic!("{what}: no line names {file}:\n{report}"));
        // A copy under the next sequence after a clean stop: the head record names no
        // open segment, so it is not one the sink would seal.
        let kind = if gone.is_some() {
            assert!(
                line.contains("not sealed")
                    && line.contains("digest was removed")
                    && line.contains("--allow-open"),
                "{what}: {line}"
            );
            "unsealed"
        } else {
            assert!(
                line.contains("extra") && line.contains("did not have open"),
                "{what}: {line}"
            );
            "extra"
        };
        let json = verify(&copy, &[&public], true);
        assert_eq!(json.status.code(), Some(1), "{what}: {}", text(&json));
        let mut want = vec![(file.clone(), kind.to_string())];
        want.extend(gone.iter().map(|d| (d.clone(), "missing".to_string())));
        want.sort();
        assert_eq!(json_problems(&json), want, "{what}");
        let live = verify_with(&copy, &[&public], &["--allow-open", "--format", "json"]);
        let report: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
        match &gone {
            // The head record names the removed digest: not an open segment.
            Some(digest) => {
                assert_eq!(live.status.code(), Some(1), "{what}: {}", text(&live));
                assert_eq!(
                    json_problems(&live),
                    vec![(digest.clone(), "missing".to_string())],
                    "{what}"
                );
            }
            // With --allow-open, a segment the daemon may have opened after the head record
            // was read: accepted.
            None => {
                assert_eq!(live.status.code(), Some(0), "{what}: {}", text(&live));
                assert_eq!(report["open_segment"], file.as_str(), "{what}: {report}");
            }
        }
    }

    // An empty directory (a mistyped path, or nothing archived yet): exit 1, with or
    // without --allow-open.
    let empty = env.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for extra in [&[][..], &["--allow-open"][..]] {
        let out = verify_with(&empty, &[&public], extra);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", text(&out));
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            report.starts_with(&format!("{}: no archive", empty.display())),
            "{extra:?}: {report}"
        );
    }
    let json = verify(&empty, &[&public], true);
    assert_eq!(
        json_problems(&json),
        vec![(empty.display().to_string(), "no_archive".to_string())]
    );
    // Nothing at the path at all: the same, not a usage error.
    let nothing = env.dir.path().join("no-such-archive");
    let out = verify_with(&nothing, &[&public], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let json = verify(&nothing, &[&public], true);
    assert_eq!(
        json_problems(&json),
        vec![(nothing.display().to_string(), "no_archive".to_string())]
    );
}

/// A running daemon's archive has an open segment: the strict check names it, the check
/// with `--allow-open` passes, and after a clean stop (which seals) the strict one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_archive_verifies_with_allow_open_and_strictly_after_a_clean_stop() {
    let Some(_) = require_tool("openssl") else {
        return;
    };
    let env = Env::start(SimConfig::default()).await;
    let (private, public) = openssl_keys(env.dir.path(), "archive");
    let root = env.dir.path().join("archive");
    let config = write_config(
        &env,
        "",
        archive_sink(&root, &private, "rotate_interval = \"1h\""),
    );
    let mut d = Daemon::spawn(&config, false, &[PASSWORD_ENV], "live");
    let total = env.sim.event_ids().len() as u64;
    let archived = || {
        segment::list(&root).map_or(0, |l| {
            l.segments
                .iter()
                .map(|s| segment::scan(&path_of(&root, s), false).map_or(0, |x| x.events))
                .sum::<u64>()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while archived() < total {
        assert!(
            std::time::Instant::now() < deadline && d.alive(),
            "nothing archived: {}",
            tail(&d.stderr(), 20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listing = segment::list(&root).unwrap();
    assert_eq!(listing.digests.len(), 0, "sealed before the 1h rotation");
    let open = listing.segments[0].clone();

    let strict = verify(&root, &[&public], false);
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict));
    assert!(
        String::from_utf8_lossy(&strict.stdout).starts_with(&format!("{open}: not sealed")),
        "{}",
        text(&strict)
    );
    let live = verify_with(&root, &[&public], &["--allow-open"]);
    assert_eq!(live.status.code(), Some(0), "{}", text(&live));
    assert!(
        String::from_utf8_lossy(&live.stdout)
            .contains(&format!("note: {open} is taken as the open segment")),
        "{}",
        text(&live)
    );

    // A backfill given the daemon's config would be a second writer forking the chain:
    // refused, naming the daemon, and the archive is untouched.
    let backfill = run_bin_async(
        s(&[
            "backfill",
            "--config",
            &config.display().to_string(),
            "--since",
            "30d",
        ]),
        vec![],
    )
    .await;
    assert!(!backfill.status.success(), "{}", text(&backfill));
    assert!(
        text(&backfill).contains("in use by another writer")
            && text(&backfill).contains(&format!("PID {}", d.pid())),
        "{}",
        text(&backfill)
    );
    assert_eq!(segment::list(&root).unwrap().segments, vec![open.clone()]);

    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}: {}", tail(&d.stderr(), 20));
    let stopped = verify(&root, &[&public], false);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_mid_segment_loses_nothing_and_the_chain_verifies() {
    let Some(_) = require_tool("openssl") else {
        return;
    };
    let env = Env::start(SimConfig {
        sessions: 40,
        events_per_session: 25,
        latency: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let (private, public) = openssl_keys(env.dir.path(), "archive");
    let root = env.dir.path().join("archive");
    let config = write_config(&env, "page_size = 20", archive_sink(&root, &private, ""));
    let total = env.sim.event_ids().len();
    let mut killed = 0;
    for (i, at) in [total / 3, total * 2 / 3].into_iter().enumerate() {
        let mut d = Daemon::spawn(&config, false, &[PASSWORD_ENV], &format!("k{i}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // Events are in the open segment as soon as it has complete members.
        let archived = || {
            segment::list(&root).map_or(0, |l| {
                l.segments
                    .iter()
                    .map(|s| segment::scan(&path_of(&root, s), false).map_or(0, |x| x.events))
                    .sum::<u64>() as usize
            })
        };
        while std::time::Instant::now() < deadline && archived() < at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let at_kill = archived();
        assert!(
            d.kill9(),
            "the daemon was running: {}",
            tail(&d.stderr(), 20)
        );
        assert!(
            at_kill < total,
            "killed after the run had archived everything"
        );
        killed += 1;
    }
    let out = run_once(&config, &[PASSWORD_ENV], "final").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("recovered"),
        "{}",
        tail(&text(&out), 20)
    );
    let ok = verify(&root, &[&public], false);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let ids = archived_ids(&root);
    let unique: HashSet<&String> = ids.iter().collect();
    let expected: HashSet<String> = env.sim.event_ids().into_iter().collect();
    let missing = expected.iter().filter(|id| !unique.contains(id)).count();
    assert_eq!(missing, 0, "lost {missing} events");
    let dups = ids.len() - unique.len();
    eprintln!("archive kill -9: {killed} kills, {dups} duplicates");
    assert!(
        dups <= killed * 20,
        "{dups} duplicates after {killed} kills"
    );
    let recovered = segment::list(&root)
        .unwrap()
        .digests
        .iter()
        .filter(|d| {
            Digest::parse(&std::fs::read(path_of(&root, d)).unwrap())
                .unwrap()
                .recovered
                .is_some()
        })
        .count();
    assert!(recovered >= 1, "no digest records a recovery");
}
