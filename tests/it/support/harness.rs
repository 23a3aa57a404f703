//! Shared pieces of the end-to-end tests: a simulator with configs pointing at it (built
//! with [`super::config`]), the binary under test, and readers for what the sinks wrote.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use veeam_siem_simulator::{SimConfig, SimHandle};

use super::config::{ConfigBuilder, Table};

/// Credentials the simulator accepts (also checked for leaks in logs).
pub const PASSWORD: &str = "sim-password-Xq7";

/// The id of the VB365 source in the configs built here.
pub const SOURCE_ID: &str = "vbo_test";

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

    /// A config builder with this environment's state directory.
    pub fn config(&self) -> ConfigBuilder {
        ConfigBuilder::new(self.state_dir())
    }

    /// The VB365 source `vbo_test` on this simulator, trusting its certificate, polling
    /// every second.
    pub fn vbo_source(&self) -> Table {
        self.vbo_source_as(SOURCE_ID)
    }

    /// [`Self::vbo_source`] with another id.
    pub fn vbo_source_as(&self, id: &str) -> Table {
        Table::vbo(id, &self.sim.base_url())
            .set("poll_interval", "1s")
            .tls_ca(&self.ca_file)
    }

    /// A VDC source `id` on this simulator with its key from `$<key_env>`, trusting its
    /// certificate.
    pub fn vdc_source(&self, id: &str, key_env: &str) -> Table {
        Table::vdc(id, &self.sim.base_url(), key_env).tls_ca(&self.ca_file)
    }

    /// The file sink `archive` reading `vbo_test`, writing [`Self::out_file`].
    pub fn file_sink(&self) -> Table {
        Table::file("archive", &[SOURCE_ID], &self.out_file())
    }

    /// A config with one vbo source (extra keys appended to the source table) and a file
    /// sink, written to `config.toml`.
    pub fn write_config(&self, api_version: &str, source_extra: &str) -> PathBuf {
        self.config()
            .table(
                self.vbo_source()
                    .set("api_version", api_version)
                    .raw(source_extra),
            )
            .table(self.file_sink())
            .write(&self.dir.path().join("config.toml"))
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        read_ndjson(&self.out_file())
    }
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veeam-siem"))
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a test that fails
/// half-way leaves no daemon running behind it.
pub struct Reaped(Child);

impl Reaped {
    /// Spawn `command`; panics naming the program when it cannot start.
    pub fn spawn(command: &mut Command) -> Reaped {
        match command.spawn() {
            Ok(child) => Reaped(child),
            Err(e) => panic!("cannot start {:?}: {e}", command.get_program()),
        }
    }
}

impl Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        // Nothing to do when it has exited and been waited for already.
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
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
