//! Helpers of the fault suite (and of `paging`, `sink_faults`, `durable_files`): the
//! daemon as a supervised child process (follow mode, `kill -9`, SIGTERM, peak RSS from
//! `/proc`), bounded `--once` runs, the config of one source and one sink, and counting
//! helpers for exactly-once checks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::config::Table;
use crate::support::harness::{self, Env, PASSWORD};

/// Longest any single `--once` run may take before the test kills it and fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The config of one VB365 source (`vbo_test`, reading the simulator of `env`, with
/// `source_extra` appended) and the sink table `sink` (reading `vbo_test`).
pub fn write_config(env: &Env, source_extra: &str, sink: Table) -> PathBuf {
    env.config()
        .table(env.vbo_source().raw(source_extra))
        .table(sink)
        .write(&env.dir.path().join("config.toml"))
}

/// The daemon as a child process, stderr in a file.
pub struct Daemon {
    child: Child,
    pub stderr_path: PathBuf,
}

impl Daemon {
    /// `run --config C` (plus `--once` when `once`), `extra_env` added to the environment.
    pub fn spawn(config: &Path, once: bool, extra_env: &[(&str, &str)], tag: &str) -> Daemon {
        let stderr_path = config.with_file_name(format!("daemon-{tag}.stderr.txt"));
        let mut cmd = harness::bin();
        cmd.args(["run", "--config", &config.display().to_string()]);
        if once {
            cmd.arg("--once");
        }
        cmd.env("TEST_VBO_PASSWORD", PASSWORD)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the binary runs");
        Daemon { child, stderr_path }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGKILL; returns whether it was still running.
    pub fn kill9(&mut self) -> bool {
        let running = self.alive();
        let _ = self.child.kill();
        let _ = self.child.wait();
        running
    }

    /// SIGTERM, then wait at most `limit` (SIGKILL and panic past it).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.wait(limit)
    }

    /// Wait at most `limit` for the exit (SIGKILL and panic past it).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "veeam-siem did not exit within {limit:?}; stderr:\n{}",
                    tail(&self.stderr(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// (VmHWM, VmRSS) in KiB from `/proc/<pid>/status`, while the process lives.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        };
        Some((field("VmHWM:")?, field("VmRSS:")?))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `run --once`, bounded by [`RUN_LIMIT`], off the async runtime.
pub async fn run_once(config: &Path, extra_env: &[(&str, &str)], tag: &str) -> Output {
    let config = config.to_path_buf();
    let extra: Vec<(String, String)> = extra_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let tag = tag.to_string();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (&**k, &**v)).collect();
        let mut d = Daemon::spawn(&config, true, &env, &tag);
        let status = d.wait(RUN_LIMIT);
        Output {
            status,
            stdout: Vec::new(),
            stderr: d.stderr().into_bytes(),
        }
    })
    .await
    .unwrap()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Lines of `log` containing every one of `needles`.
pub fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Problems with an exactly-once delivery of `expected`, given how often each id arrived;
/// empty when every expected id arrived once and nothing else did.
pub fn exactly_once_problems(
    counts: &HashMap<String, usize>,
    expected: &HashSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {} events lost, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(4)]
        ));
    }
    let unexpected: Vec<&String> = counts.keys().filter(|id| !expected.contains(*id)).collect();
    if !unexpected.is_empty() {
        problems.push(format!(
            "{} unexpected events delivered, e.g. {:?}",
            unexpected.len(),
            &unexpected[..unexpected.len().min(4)]
        ));
    }
    let dups = duplicates(counts);
    if dups > 0 {
        problems.push(format!("{dups} duplicates"));
    }
    problems
}

/// Deliveries beyond the first, summed over ids.
pub fn duplicates<V: Copy + TryInto<u64>>(counts: &HashMap<String, V>) -> u64 {
    counts
        .values()
        .map(|&c| c.try_into().unwrap_or(0).saturating_sub(1))
        .sum::<u64>()
}

/// Deterministic pseudo-random numbers for kill points (64-bit LCG, Knuth's constants).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// Uniform-ish in `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (self.0 >> 33) % (hi - lo).max(1)
    }
}

/// Calls `tick()` on the simulator every `every` until the returned guard is dropped or
/// `stop`ped; returns the number of ticks done.
pub struct Ticker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: Option<tokio::task::JoinHandle<u32>>,
}

impl Ticker {
    pub fn start(sim: veeam_siem_simulator::SimHandle, every: Duration, max: u32) -> Ticker {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut n = 0;
            while n < max && !flag.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(every).await;
                sim.tick();
                n += 1;
            }
            n
        });
        Ticker {
            stop,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        match self.task.take() {
            Some(task) => task.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
