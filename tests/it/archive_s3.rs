//! The compliance archive's S3 upload end to end, against a real S3-compatible server on
//! loopback (moto, from PyPI: `pip install 'moto[server]'`) that the test starts: after a
//! run every sealed segment and digest is in the bucket, byte for byte, with the Object
//! Lock retention read back; `check` probes the bucket; with the store down nothing is
//! pruned and nothing is lost, and after a `kill -9` and the store's return the backlog
//! drains; `verify s3://…` passes, checks retention, and names a replaced object.
//! Skipped with a message when moto_server is missing, unless
//! VEEAM_SIEM_REQUIRE_PEERS=1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use veeam_siem::sinks::archive::s3::upload::{STATE_FILE, UploadState};
use veeam_siem::sinks::archive::segment::{self, sequence_of};
use veeam_siem_simulator::SimConfig;

use crate::support::config::Table;
use crate::support::faults::{Daemon, Ticker, run_once, tail, write_config};
use crate::support::harness::{Env, PASSWORD, bin, text};

const BUCKET: &str = "veeam-audit";
const PREFIX: &str = "prod/";

/// An `Authorization` header naming `service`, with a signature nobody checks (moto routes
/// by the service in the credential scope).
fn unchecked_auth(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDTESTING/20261203/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
    )
}

/// A plain HTTP client (moto speaks http on loopback), built with the product's TLS
/// set-up so a crypto provider is configured.
fn http() -> reqwest::Client {
    veeam_siem::http::build_client(
        "test",
        &veeam_siem::config::common::TlsConfig::default(),
        Duration::from_secs(30),
    )
    .unwrap()
}

/// A moto_server child on a loopback port; killed on drop.
struct Moto {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Moto {
    /// A free port, and no server yet (`None` when moto_server is not installed).
    fn reserve(dir: &Path) -> Option<Moto> {
        let found = Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            if std::env::var("VEEAM_SIEM_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!(
                    "moto_server not found (pip install 'moto[server]') and VEEAM_SIEM_REQUIRE_PEERS=1"
                );
            }
            eprintln!("skipped: moto_server not found (pip install 'moto[server]')");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Some(Moto {
            port,
            child: None,
            log: dir.join(format!("moto-{port}.log")),
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start the server (empty: moto keeps nothing across restarts) and make the buckets:
    /// `BUCKET` with Object Lock, `plain-bucket` without.
    async fn start(&mut self) {
        self.start_with(&[]).await;
    }

    /// [`Moto::start`] with extra environment for the server.
    async fn start_with(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let http = http();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(self.url()).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let made = http
            .put(format!("{}/{BUCKET}", self.url()))
            .header("x-amz-bucket-object-lock-enabled", "true")
            .send()
            .await
            .unwrap();
        assert!(made.status().is_success(), "{}", made.text().await.unwrap());
        let plain = http
            .put(format!("{}/plain-bucket", self.url()))
            .send()
            .await
            .unwrap();
        assert!(plain.status().is_success());
    }

    /// Start with signature checking on: moto checks SigV4 (recomputed with botocore) and
    /// IAM policies once its first `NO_AUTH` actions are spent. Those make the buckets and
    /// an IAM user allowed `s3:*`; the rest are spent on purpose. Returns the user's key.
    async fn start_checking_signatures(&mut self) -> (String, String) {
        const NO_AUTH: &str = "30";
        self.start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", NO_AUTH)])
            .await;
        let iam = |form: &[(&str, &str)]| {
            let form: Vec<(String, String)> = form
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let url = self.url();
            async move {
                let resp = http()
                    .post(format!("{url}/"))
                    .header("authorization", unchecked_auth("iam"))
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                assert!(
                    resp.status().is_success(),
                    "IAM {form:?}: {}",
                    resp.status()
                );
                resp.text().await.unwrap()
            }
        };
        let v = ("Version", "2010-05-08");
        iam(&[("Action", "CreateUser"), ("UserName", "siem"), v]).await;
        let key = iam(&[("Action", "CreateAccessKey"), ("UserName", "siem"), v]).await;
        iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "siem"),
            ("PolicyName", "archive"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ),
            v,
        ])
        .await;
        let field = |name: &str| {
            key.split(&format!("<{name}>"))
                .nth(1)
                .and_then(|r| r.split(&format!("</{name}>")).next())
                .unwrap_or_else(|| panic!("no {name} in {key}"))
                .to_string()
        };
        let (id, secret) = (field("AccessKeyId"), field("SecretAccessKey"));
        // Spend the remaining unchecked actions: then a made-up key is refused.
        for _ in 0..NO_AUTH.parse::<u32>().unwrap() {
            let status = http()
                .get(format!("{}/{BUCKET}?object-lock", self.url()))
                .header("authorization", unchecked_auth("s3"))
                .send()
                .await
                .unwrap()
                .status();
            if status.as_u16() == 403 {
                return (id, secret);
            }
        }
        panic!("moto never started checking signatures: {}", self.log());
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 20)
    }

    /// Every object key under `PREFIX` (moto ignores signatures by default).
    async fn keys(&self) -> BTreeSet<String> {
        let body = http()
            .get(format!(
                "{}/{BUCKET}?list-type=2&prefix={PREFIX}&max-keys=1000",
                self.url()
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// GET an object. moto checks no signature but refuses anonymous reads of objects, so
    /// the request carries an (unchecked) `Authorization` header.
    async fn get(&self, key: &str) -> reqwest::Response {
        http()
            .get(format!("{}/{BUCKET}/{key}", self.url()))
            .header("authorization", unchecked_auth("s3"))
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The variables the daemon's AWS chain reads (moto accepts any key).
const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "AKIDTESTING"),
    ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("TEST_VBO_PASSWORD", PASSWORD),
];

/// (private, public) key files made with openssl, as the README says.
fn keys(dir: &Path) -> (PathBuf, PathBuf) {
    let private = dir.join("archive.pem");
    let public = dir.join("archive.pub.pem");
    let ok = |out: std::io::Result<Output>| {
        let out = out.expect("openssl runs (apt install openssl)");
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

fn s3_sink(root: &Path, key: &Path, moto: &Moto, bucket: &str, extra: &str) -> Table {
    s3_sink_unlocked(root, key, moto, bucket, extra)
        .raw("object_lock = { mode = \"COMPLIANCE\", retain_days = 400 }")
}

/// The archive sink with its `[sinks.evidence.s3]` table last (keys added with `raw`
/// after it belong to the `s3` table).
fn s3_sink_unlocked(root: &Path, key: &Path, moto: &Moto, bucket: &str, extra: &str) -> Table {
    Table::sink("evidence", "archive", &["vbo_test"])
        .set("path", root.display().to_string())
        .set("signing_key_file", key.display().to_string())
        .raw(extra)
        .raw(&format!(
            "\n[sinks.evidence.s3]\nbucket = \"{bucket}\"\nprefix = \"{PREFIX}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"",
            moto.url()
        ))
}

/// `verify s3://BUCKET/prod` against moto, with `extra` arguments.
fn verify_s3(moto: &Moto, bucket: &str, public: &Path, extra: &[&str]) -> Output {
    verify_s3_at(moto, &format!("s3://{bucket}/prod"), public, extra)
}

/// `verify LOCATION` against moto, with `extra` arguments.
fn verify_s3_at(moto: &Moto, location: &str, public: &Path, extra: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.arg("verify")
        .arg(location)
        .arg("--public-key")
        .arg(public)
        .args(extra)
        .env("AWS_ENDPOINT_URL_S3", moto.url())
        .env("AWS_REGION", "us-east-1");
    for (k, v) in AWS_ENV {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn state(root: &Path) -> Option<UploadState> {
    std::fs::read(root.join(STATE_FILE))
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

/// Local segments and digests, as object keys.
fn local_keys(root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let l = segment::list(root).unwrap();
    let with = |v: Vec<String>| v.into_iter().map(|n| format!("{PREFIX}{n}")).collect();
    (with(l.segments), with(l.digests))
}

fn newest_digest(root: &Path) -> u64 {
    segment::list(root).map_or(0, |l| {
        l.digests
            .iter()
            .filter_map(|d| sequence_of(d))
            .max()
            .unwrap_or(0)
    })
}

fn check(config: &Path) -> Output {
    check_with(config, &AWS_ENV)
}

fn check_with(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = bin();
    cmd.args(["check", "--config", &config.display().to_string()]);
    // Only what the test gives: nothing of the chain from the environment running it.
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Web identity (as on EKS): the token file and role go to STS (moto's), and the
/// temporary credentials it returns reach the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_credentials_reach_the_bucket() {
    let env = Env::start(SimConfig::default()).await;
    let Some(mut moto) = Moto::reserve(env.dir.path()) else {
        return;
    };
    moto.start().await;
    let (key, _) = keys(env.dir.path());
    let root = env.dir.path().join("archive");
    let config = write_config(&env, "", s3_sink(&root, &key, &moto, BUCKET, ""));
    let token = env.dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n").unwrap();
    let token = token.display().to_string();
    let sts = moto.url();
    let probe = check_with(
        &config,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/veeam-siem"),
            ("AWS_ENDPOINT_URL_STS", sts.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", "/nonexistent"),
            ("TEST_VBO_PASSWORD", PASSWORD),
        ],
    );
    assert!(probe.status.success(), "{}", text(&probe));
    assert!(
        text(&probe)
            .contains("web identity (arn:aws:iam::123456789012:role/veeam-siem) credentials"),
        "{}",
        text(&probe)
    );
}

/// moto recomputes every signature (with botocore) and refuses a wrong one: uploads with
/// checksum and Object Lock headers and a streamed body, HeadObject and the Object Lock
/// probe are accepted with the right key; a wrong secret or an unknown key is a clear
/// error naming the sink. (ListObjectsV2 with a `/` in the prefix is left out: moto
/// recomputes that signature wrongly, boto3's own included.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_checks_our_signatures() {
    let env = Env::start(SimConfig::default()).await;
    let Some(mut moto) = Moto::reserve(env.dir.path()) else {
        return;
    };
    let (id, secret) = moto.start_checking_signatures().await;
    let (key, _) = keys(env.dir.path());
    let root = env.dir.path().join("archive");
    let config = write_config(
        &env,
        "",
        s3_sink(&root, &key, &moto, BUCKET, "max_segment_bytes = 20000"),
    );
    let good = [
        ("AWS_ACCESS_KEY_ID", id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("TEST_VBO_PASSWORD", PASSWORD),
    ];
    let probe = check_with(&config, &good);
    assert!(
        probe.status.success(),
        "{}\nmoto: {}",
        text(&probe),
        moto.log()
    );

    let out = run_once(&config, &good, "s3-signed").await;
    assert!(out.status.success(), "{}", tail(&text(&out), 30));
    let st = state(&root).expect("the progress file exists");
    assert_eq!(
        st.confirmed_through,
        newest_digest(&root),
        "{st:?}\n{}\nmoto: {}",
        tail(&text(&out), 30),
        moto.log()
    );

    let mut wrong = good;
    wrong[1].1 = "not-the-secret";
    let refused = check_with(&config, &wrong);
    assert!(!refused.status.success());
    let t = text(&refused);
    assert!(
        t.contains("sinks.evidence.s3") && t.contains("SignatureDoesNotMatch"),
        "{t}"
    );
    wrong[0].1 = "AKIANOSUCHKEY0000000";
    let unknown = text(&check_with(&config, &wrong));
    assert!(unknown.contains("InvalidAccessKeyId"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_uploads_every_sealed_file_with_its_retention() {
    let env = Env::start(SimConfig::default()).await;
    let Some(mut moto) = Moto::reserve(env.dir.path()) else {
        return;
    };
    moto.start().await;
    let (key, public) = keys(env.dir.path());
    let root = env.dir.path().join("archive");
    let config = write_config(
        &env,
        "",
        s3_sink(&root, &key, &moto, BUCKET, "max_segment_bytes = 20000"),
    );

    let probe = check(&config);
    assert!(probe.status.success(), "{}", text(&probe));
    assert!(
        text(&probe).contains("Object Lock enabled"),
        "{}",
        text(&probe)
    );

    let out = run_once(&config, &AWS_ENV, "s3-once").await;
    assert!(out.status.success(), "{}", tail(&text(&out), 30));
    let (segments, digests) = local_keys(&root);
    assert!(digests.len() >= 2, "several segments: {digests:?}");
    let st = state(&root).expect("the progress file exists");
    assert_eq!(st.confirmed_through, newest_digest(&root), "{st:?}");
    assert_eq!(st.segments_of, None);

    let stored = moto.keys().await;
    let local: BTreeSet<String> = segments.union(&digests).cloned().collect();
    assert_eq!(stored, local, "bucket and archive differ");
    let asked = chrono::Utc::now() + chrono::TimeDelta::days(400);
    for k in &stored {
        let resp = moto.get(k).await;
        assert_eq!(resp.status().as_u16(), 200, "{k}");
        let h = resp.headers().clone();
        assert_eq!(
            h.get("x-amz-object-lock-mode")
                .and_then(|v| v.to_str().ok()),
            Some("COMPLIANCE"),
            "{k}: {h:?}"
        );
        let until: chrono::DateTime<chrono::Utc> = h
            .get("x-amz-object-lock-retain-until-date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k}: no retention date: {h:?}"));
        assert!(
            (asked - until).num_seconds().abs() < 600,
            "{k}: retained until {until}, asked about {asked}"
        );
        let body = resp.bytes().await.unwrap();
        let name = k.strip_prefix(PREFIX).unwrap();
        assert_eq!(
            body.as_ref(),
            std::fs::read(segment::path_of(&root, name)).unwrap(),
            "{k}: the object differs from the local file"
        );
    }
    // keep_local (7 days by default) keeps every local copy.
    assert_eq!(local_keys(&root).0, segments);

    // The bucket verifies like the directory, retention included.
    let ok = verify_s3(&moto, BUCKET, &public, &["--check-retention", "400"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(
        text(&ok).contains(&format!("OK: {} digests", digests.len())),
        "{}",
        text(&ok)
    );
    let longer = verify_s3(&moto, BUCKET, &public, &["--check-retention", "800"]);
    assert_eq!(longer.status.code(), Some(1), "{}", text(&longer));
    assert!(
        text(&longer).contains("retention too short"),
        "{}",
        text(&longer)
    );

    // Object Lock allows a plain DeleteObject (no version id): a delete marker hides the
    // locked versions. The newest segment and digest "deleted" that way leave a shorter
    // chain that is valid on its own; verify finds the markers.
    let newest =
        |set: &BTreeSet<String>| set.iter().max_by_key(|k| sequence_of(k)).unwrap().clone();
    for k in [newest(&segments), newest(&digests)] {
        let deleted = http()
            .delete(format!("{}/{BUCKET}/{k}", moto.url()))
            .header("authorization", unchecked_auth("s3"))
            .send()
            .await
            .unwrap();
        assert!(deleted.status().is_success(), "{k}: {}", deleted.status());
    }
    let cut = verify_s3(&moto, BUCKET, &public, &[]);
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut));
    for k in [newest(&segments), newest(&digests)] {
        let name = k.strip_prefix(PREFIX).unwrap();
        assert!(
            text(&cut)
                .lines()
                .any(|l| l.starts_with(&format!("{name}: missing: deleted"))),
            "{name}: {}",
            text(&cut)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_s3_names_a_replaced_object() {
    let env = Env::start(SimConfig::default()).await;
    let Some(mut moto) = Moto::reserve(env.dir.path()) else {
        return;
    };
    moto.start().await;
    let (key, public) = keys(env.dir.path());
    let root = env.dir.path().join("archive");
    let config = write_config(
        &env,
        "",
        s3_sink_unlocked(
            &root,
            &key,
            &moto,
            "plain-bucket",
            "max_segment_bytes = 20000",
        ),
    );
    let out = run_once(&config, &AWS_ENV, "s3-plain").await;
    assert!(out.status.success(), "{}", tail(&text(&out), 30));
    let ok = verify_s3(&moto, "plain-bucket", &public, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let unlocked = verify_s3(&moto, "plain-bucket", &public, &["--check-retention", "1"]);
    assert_eq!(unlocked.status.code(), Some(1), "{}", text(&unlocked));
    assert!(
        text(&unlocked).contains("no Object Lock retention"),
        "{}",
        text(&unlocked)
    );

    // Strict as for a directory: without its newest digest the newest segment is unsealed
    // (with --allow-open, the one whose digest is not uploaded yet); an empty prefix (a
    // mistyped one) is no archive.
    let listing = segment::list(&root).unwrap();
    let (newest_segment, newest_digest) = (
        listing.segments.last().unwrap().clone(),
        listing.digests.last().unwrap().clone(),
    );
    let object = format!("{}/plain-bucket/{PREFIX}{newest_digest}", moto.url());
    let deleted = http()
        .delete(&object)
        .header("authorization", unchecked_auth("s3"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let strict = verify_s3(&moto, "plain-bucket", &public, &[]);
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict));
    assert!(
        text(&strict)
            .lines()
            .any(|l| l.starts_with(&format!("{newest_segment}: not sealed"))),
        "{}",
        text(&strict)
    );
    let live = verify_s3(&moto, "plain-bucket", &public, &["--allow-open"]);
    assert_eq!(live.status.code(), Some(0), "{}", text(&live));
    let restored = http()
        .put(&object)
        .header("authorization", unchecked_auth("s3"))
        .body(std::fs::read(segment::path_of(&root, &newest_digest)).unwrap())
        .send()
        .await
        .unwrap();
    assert!(restored.status().is_success());
    let ok = verify_s3(&moto, "plain-bucket", &public, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let typo = verify_s3_at(
        &moto,
        "s3://plain-bucket/prdo",
        &public,
        &["--format", "json"],
    );
    assert_eq!(typo.status.code(), Some(1), "{}", text(&typo));
    let report: serde_json::Value = serde_json::from_slice(&typo.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "no_archive", "{report}");
    assert_eq!(
        report["problems"][0]["file"], "s3://plain-bucket/prdo",
        "{report}"
    );

    // Replace one segment in the bucket (possible without Object Lock).
    let victim = segment::list(&root).unwrap().segments[1].clone();
    let mut bytes = std::fs::read(segment::path_of(&root, &victim)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    let put = http()
        .put(format!("{}/plain-bucket/{PREFIX}{victim}", moto.url()))
        .header("authorization", unchecked_auth("s3"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let bad = verify_s3(&moto, "plain-bucket", &public, &[]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        text(&bad)
            .lines()
            .any(|l| l.starts_with(&format!("{victim}: "))),
        "{}",
        text(&bad)
    );
    let usage = verify_s3(&moto, "no-such-bucket", &public, &[]);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_bucket_without_object_lock() {
    let env = Env::start(SimConfig::default()).await;
    let Some(mut moto) = Moto::reserve(env.dir.path()) else {
        return;
    };
    moto.start().await;
    let (key, _) = keys(env.dir.path());
    let root = env.dir.path().join("archive");
    let config = write_config(&env, "", s3_sink(&root, &key, &moto, "plain-bucket", ""));
    let probe = check(&config);
    assert!(!probe.status.success(), "{}", text(&probe));
    let t = text(&probe);
    assert!(
        t.contains("sinks.evidence.s3.object_lock")
            && t.contains("does not have Object Lock enabled"),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_and_a_kill_lose_nothing_and_the_backlog_drains() {
    let env = Env::start(SimConfig {
        sessions: 20,
        events_per_session: 20,
        ..SimConfig::default()
    })
    .await;
    let Some(mut moto) = Moto::reserve(env.dir.path()) else {
        return;
    };
    let (key, public) = keys(env.dir.path());
    let root = env.dir.path().join("archive");
    let ops_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Segments sealed every second; local copies pruned as soon as they are confirmed.
    let config = write_config(
        &env,
        "",
        s3_sink(
            &root,
            &key,
            &moto,
            BUCKET,
            "rotate_interval = \"1s\"\nmax_segment_bytes = 20000",
        )
        .raw("keep_local = \"0s\"")
        .raw(&format!("\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"")),
    );
    // The store is down: the daemon archives locally, uploads fail, nothing is pruned.
    let ticker = Ticker::start(env.sim.clone(), Duration::from_millis(300), 200);
    let mut d = Daemon::spawn(&config, false, &AWS_ENV, "outage");
    let deadline = Instant::now() + Duration::from_secs(60);
    while newest_digest(&root) < 4 {
        assert!(
            Instant::now() < deadline && d.alive(),
            "no segments sealed: {}",
            tail(&d.stderr(), 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let an upload attempt or two fail; the backlog shows on /metrics and /ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stderr = d.stderr_path.clone();
    let ops = |path: &str| {
        let stderr = stderr.clone();
        let url = format!("http://127.0.0.1:{ops_port}{path}");
        async move {
            match http().get(&url).send().await {
                Ok(r) => r.text().await.unwrap(),
                Err(e) => panic!(
                    "{url}: {e}\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                ),
            }
        }
    };
    let metrics = ops("/metrics").await;
    let backlog: f64 = metrics
        .lines()
        .find(|l| l.starts_with("veeam_siem_archive_upload_backlog{sink=\"evidence\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no backlog gauge in:\n{metrics}"));
    assert!(backlog >= 2.0, "backlog {backlog}");
    assert!(
        metrics.contains("veeam_siem_archive_upload_oldest_pending_seconds{sink=\"evidence\"}"),
        "{metrics}"
    );
    let ready = ops("/ready").await;
    assert!(ready.contains("waiting for the S3 upload"), "{ready}");
    assert!(d.kill9(), "{}", tail(&d.stderr(), 30));
    let log = d.stderr();
    assert!(log.contains("S3 upload failed"), "{}", tail(&log, 30));
    let sealed = newest_digest(&root);
    let (segments, digests) = local_keys(&root);
    // The segment the kill left open holds only what was acknowledged (complete members);
    // recovery seals it, or removes it when it holds no complete batch (then it is not
    // uploaded: nothing in it was acknowledged, and its events are sent again).
    let unacknowledged: BTreeSet<String> = segments
        .iter()
        .filter(|k| sequence_of(k).is_some_and(|seq| seq > sealed))
        .filter(|k| {
            let name = k.strip_prefix(PREFIX).unwrap_or(k);
            segment::scan(&segment::path_of(&root, name), false).is_ok_and(|s| s.events == 0)
        })
        .cloned()
        .collect();
    assert!(
        state(&root).is_none_or(|s| s.confirmed_through == 0),
        "nothing can be confirmed while the store is down"
    );
    assert!(
        segments.len() >= digests.len(),
        "a segment was pruned before its upload was confirmed: {} segments, {} digests",
        segments.len(),
        digests.len()
    );

    // The upload progress file is not taken on trust: edited (or restored from a backup)
    // to claim all but the newest digest confirmed, it must not get segments pruned that
    // the bucket never got.
    let lie = serde_json::json!({
        "target": format!("{}|{BUCKET}|{PREFIX}", moto.url()),
        "confirmed_through": sealed - 1,
        "segments_of": null,
    });
    std::fs::write(root.join(STATE_FILE), lie.to_string()).unwrap();

    // The store is back; the restarted daemon drains the backlog (and prunes).
    moto.start().await;
    let resumed = Instant::now();
    let mut d = Daemon::spawn(&config, false, &AWS_ENV, "resume");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stored = moto.keys().await;
        if state(&root).is_some_and(|s| s.confirmed_through >= sealed)
            && digests.iter().all(|k| stored.contains(k))
        {
            break;
        }
        assert!(
            Instant::now() < deadline && d.alive(),
            "the backlog did not drain: {:?}\n{}\nmoto: {}",
            state(&root),
            tail(&d.stderr(), 30),
            moto.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = d.stderr();
    assert!(
        !log.contains("the S3 destination changed"),
        "the edited progress file was used"
    );
    assert!(
        log.contains("not pruning a segment the upload progress says is in the bucket"),
        "{}",
        tail(&log, 30)
    );
    eprintln!(
        "archive S3: {} digests and {} segments sealed during the outage; backlog drained {:?} after the restart",
        digests.len(),
        segments.len(),
        resumed.elapsed()
    );
    ticker.stop().await;
    d.terminate(Duration::from_secs(60));
    let stored = moto.keys().await;
    for k in digests.iter().chain(&segments) {
        assert!(
            stored.contains(k) || unacknowledged.contains(k),
            "{k} was sealed during the outage but never uploaded"
        );
    }
    // Every confirmed segment was pruned locally; its digest stays.
    let through = state(&root).unwrap().confirmed_through;
    let (left, _) = local_keys(&root);
    for k in &left {
        assert!(
            sequence_of(k).unwrap() > through,
            "{k} is confirmed (through {through}) but was not pruned"
        );
    }
    for k in &stored {
        assert!(
            local_keys(&root).1.contains(k) || k.ends_with(".ndjson.gz"),
            "{k}"
        );
    }
    // The bucket holds the whole chain, every object with its retention.
    let ok = verify_s3(&moto, BUCKET, &public, &["--check-retention", "400"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
}

/// The store stops for 20 s under a running daemon: archiving goes on, uploads wait, and
/// once the store is back every digest sealed since the outage began reaches it (moto
/// keeps nothing across a restart, so only those are looked for) and the backlog is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_second_outage_under_a_running_daemon_drains() {
    let env = Env::start(SimConfig {
        sessions: 5,
        events_per_session: 5,
        ..SimConfig::default()
    })
    .await;
    let Some(mut moto) = Moto::reserve(env.dir.path()) else {
        return;
    };
    moto.start().await;
    let (key, _) = keys(env.dir.path());
    let root = env.dir.path().join("archive");
    let ops_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        &env,
        "",
        s3_sink(&root, &key, &moto, BUCKET, "rotate_interval = \"1s\"")
            .raw(&format!("\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"")),
    );
    let ticker = Ticker::start(env.sim.clone(), Duration::from_millis(500), 400);
    let mut d = Daemon::spawn(&config, false, &AWS_ENV, "live");
    let confirmed = || state(&root).map_or(0, |s| s.confirmed_through);
    let deadline = Instant::now() + Duration::from_secs(60);
    while confirmed() < 2 {
        assert!(
            Instant::now() < deadline && d.alive(),
            "nothing uploaded: {}",
            tail(&d.stderr(), 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    moto.stop();
    let before = confirmed();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let sealed_in_outage = newest_digest(&root);
    assert!(
        sealed_in_outage > before + 2,
        "segments went on being sealed: {before} → {sealed_in_outage}"
    );
    assert!(
        confirmed() <= before + 1,
        "uploads were confirmed while the store was down"
    );
    moto.start().await;
    let back = Instant::now();
    while confirmed() < sealed_in_outage {
        assert!(
            back.elapsed() < Duration::from_secs(90) && d.alive(),
            "the backlog did not drain: {:?}\n{}",
            state(&root),
            tail(&d.stderr(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = back.elapsed();
    ticker.stop().await;
    // With no new events, the last segment is sealed and uploaded: the gauge falls to 0.
    let backlog = async || {
        let metrics = http()
            .get(format!("http://127.0.0.1:{ops_port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics
            .lines()
            .find(|l| l.starts_with("veeam_siem_archive_upload_backlog{sink=\"evidence\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no backlog gauge in:\n{metrics}"))
    };
    let quiet = Instant::now();
    loop {
        let n = backlog().await;
        if n == 0.0 {
            break;
        }
        assert!(
            quiet.elapsed() < Duration::from_secs(90),
            "backlog {n} does not drain: {}",
            tail(&d.stderr(), 20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(d.terminate(Duration::from_secs(60)).success());
    let stored = moto.keys().await;
    let (segments, digests) = local_keys(&root);
    for k in segments.iter().chain(&digests) {
        if sequence_of(k).unwrap() > before + 1 {
            assert!(stored.contains(k), "{k} never reached the store");
        }
    }
    eprintln!(
        "archive S3: 20 s outage, {} digests sealed during it, drained {drained:?} after the store came back",
        sealed_in_outage - before
    );
}
