//! Shared pieces of the end-to-end tests: a simulator with a config pointing at it, the
//! binary under test, and readers for what the sinks wrote.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use veeam_siem_simulator::{SimConfig, SimHandle};

/// Credentials the simulator accepts (also checked for leaks in logs).
pub const PASSWORD: &str = "sim-password-Xq7";

pub struct Env {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

impl Env {
    pub async fn start(cfg: SimConfig) -> Env {
        let sim = SimHandle::start(SimConfig {
            password: PASSWORD.to_string(),
            ..cfg
        })
        .await
        .expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, sim.ca_pem().unwrap_or_default()).unwrap();
        Env { sim, dir, ca_file }
    }

    pub fn out_file(&self) -> PathBuf {
        self.dir.path().join("out").join("events.ndjson")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A config with one vbo source (extra keys appended to the source table) and a file sink.
    pub fn write_config(&self, api_version: &str, source_extra: &str) -> PathBuf {
        let text = format!(
            r#"[state]
dir = {state:?}

[sources.vbo_test]
type = "vbo"
url = {url:?}
api_version = "{api_version}"
username = "svc-siem"
password = "${{TEST_VBO_PASSWORD}}"
start_time = "2000-01-01T00:00:00Z"
poll_interval = "1s"
tls = {{ ca_file = {ca:?} }}
{source_extra}

[sinks.archive]
type = "file"
inputs = ["vbo_test"]
path = {out:?}
"#,
            state = self.state_dir().display().to_string(),
            url = self.sim.base_url(),
            ca = self.ca_file.display().to_string(),
            out = self.out_file().display().to_string(),
        );
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        read_ndjson(&self.out_file())
    }
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veeam-siem"))
}

/// Every line must be one JSON object: a torn or broken line fails the test.
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON ({e}): {l}", path.display(), i + 1)
            })
        })
        .collect()
}

pub fn event_id(v: &serde_json::Value) -> String {
    v["event"]["id"].as_str().expect("event.id").to_string()
}

/// How often each event id occurs.
pub fn id_counts(events: &[serde_json::Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in events {
        *m.entry(event_id(e)).or_insert(0) += 1;
    }
    m
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run the binary off the async runtime (the simulator keeps serving meanwhile).
pub async fn run_bin_async(args: Vec<String>, envs: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        bin()
            .args(&args)
            .env("TEST_VBO_PASSWORD", PASSWORD)
            .env_remove("RUST_LOG")
            .envs(envs)
            .output()
            .expect("binary runs")
    })
    .await
    .unwrap()
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
