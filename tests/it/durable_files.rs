//! Durable files and the state directory (issue 12, items 1, 6, 13, 14, 16), end to end:
//! the real binary against the embedded simulator, real tmpfs mounts for full and
//! read-only file systems.
//!
//! - a full disk fails the batch (exit 1 with `--once`, retries while following) and never
//!   acknowledges what is not on disk; after space is freed everything arrives exactly once,
//!   no torn line;
//! - an output file moved away (logrotate `create`) is replaced at its path, nothing lost;
//! - files and directories are created with fixed modes whatever the umask; `file_mode`;
//! - a second process on the same state dir (or the same backfill window) exits 2 naming
//!   the holder's PID; SIGHUP keeps the lock; `check` runs beside the daemon;
//! - `check` fails on a read-only state dir and leaves nothing behind on a fresh one.
//!
//! The tests run as root: where `mount` is refused, a test prints why and returns early
//! (unit tests with an injected write error cover the same call sites).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use veeam_siem_simulator::SimConfig;
use veeam_siem_test_peers::hec as hec_peer;

use crate::support::config::{ConfigBuilder, Table};
use crate::support::faults;
use crate::support::harness;
use faults::{Daemon, exactly_once_problems, run_once, tail, write_config};
use harness::{Env, PASSWORD, id_counts, read_ndjson, run_bin_async, s, text};

/// Longest a bounded wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// helpers

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. "200k") at `dir` (created); `None`, with a note on
    /// stderr, where this machine refuses.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                dir: dir.to_path_buf(),
            }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs at {} ({}); unit tests with an injected write error cover the call site",
                    dir.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }

    /// `mount -o remount,<options>`, e.g. "size=8m" or "ro".
    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount,{options} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Poll `done` every 200 ms until it holds; panic with `what` after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn all_ids(env: &Env) -> HashSet<String> {
    env.sim.event_ids().into_iter().collect()
}

fn ids_in(path: &Path) -> HashSet<String> {
    read_ndjson(path).iter().map(harness::event_id).collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A config named `name` in the test dir: the simulator's VB365 source, state in `state`,
/// then `sinks`.
fn config_at(
    env: &Env,
    name: &str,
    state: &Path,
    sinks: impl IntoIterator<Item = Table>,
) -> PathBuf {
    ConfigBuilder::new(state)
        .table(env.vbo_source())
        .tables(sinks)
        .write(&env.dir.path().join(name))
}

/// The file sink `archive` (reading `vbo_test`) writing `path`.
fn file_sink_at(path: &Path) -> Table {
    Table::file("archive", &["vbo_test"], path)
}

/// Run the binary under `umask` (through `sh`), off the async runtime.
async fn run_with_umask(umask: &str, args: Vec<String>) -> Output {
    let umask = umask.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_veeam-siem"))
            .args(&args)
            .env("TEST_VBO_PASSWORD", PASSWORD)
            .env_remove("RUST_LOG")
            .output()
            .expect("sh runs")
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// item 1: a full disk

/// Before the fix: exit 0 with `events_acked=248`, 119 lines plus a torn one, and a rerun
/// after freeing space shipped nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_once_run_and_a_rerun_delivers_everything() {
    let env = Env::start(SimConfig::default()).await;
    let Some(fs) = Tmpfs::mount(&env.dir.path().join("out"), "200k") else {
        return;
    };
    let cfg = write_config(&env, "", env.file_sink());
    let expected = all_ids(&env);

    let first = run_once(&cfg, &[], "full").await;
    let log = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_eq!(
        first.status.code(),
        Some(1),
        "a run that could not write everything must fail:\n{}",
        tail(&log, 30)
    );
    assert!(
        log.contains("No space left on device"),
        "{}",
        tail(&log, 30)
    );
    // Every line is whole (read_ndjson panics on a torn one) and none is repeated.
    let written = read_ndjson(&env.out_file());
    assert!(
        written.len() < expected.len(),
        "the disk was expected to fill up"
    );
    let counts = id_counts(&written);
    assert_eq!(counts.len(), written.len(), "a line was written twice");

    fs.remount("size=8m");
    let second = run_once(&cfg, &[], "freed").await;
    assert!(second.status.success(), "{}", text(&second));
    // Nothing acknowledged without being on disk (else missing), no partial batch left
    // behind (else duplicates).
    let problems = exactly_once_problems(&id_counts(&read_ndjson(&env.out_file())), &expected);
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_while_following_retries_until_space_is_freed() {
    let env = Env::start(SimConfig::default()).await;
    let Some(fs) = Tmpfs::mount(&env.dir.path().join("out"), "200k") else {
        return;
    };
    let cfg = write_config(&env, "", env.file_sink());
    let expected = all_ids(&env);
    let mut daemon = Daemon::spawn(&cfg, false, &[], "follow-full");

    wait_until("the daemon to hit the full disk and retry", || {
        let log = daemon.stderr();
        log.contains("No space left on device") && log.contains("retrying")
    })
    .await;
    assert!(daemon.alive(), "{}", tail(&daemon.stderr(), 30));
    fs.remount("size=8m");
    let out = env.out_file();
    wait_until("every event in the file after space was freed", || {
        ids_in(&out).is_superset(&expected)
    })
    .await;
    let status = tokio::task::block_in_place(|| daemon.terminate(WAIT));
    assert!(status.success(), "{}", tail(&daemon.stderr(), 30));
    let problems = exactly_once_problems(&id_counts(&read_ndjson(&out)), &expected);
    assert!(problems.is_empty(), "{problems:?}");
}

// ---------------------------------------------------------------------------------------
// item 6: rotation

/// Before the fix, every event after the `mv` went into the renamed file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_output_file_is_replaced_at_its_path() {
    let env = Env::start(SimConfig {
        sessions: 5,
        events_per_session: 6,
        ..SimConfig::default()
    })
    .await;
    let cfg = write_config(&env, "", env.file_sink());
    let out = env.out_file();
    let rotated = out.with_extension("ndjson.1");
    let before = all_ids(&env);
    let mut daemon = Daemon::spawn(&cfg, false, &[], "rotate");
    wait_until("the first events", || ids_in(&out).is_superset(&before)).await;

    std::fs::rename(&out, &rotated).unwrap();
    for _ in 0..4 {
        env.sim.tick();
    }
    let after = all_ids(&env);
    let new: HashSet<String> = after.difference(&before).cloned().collect();
    assert!(!new.is_empty(), "the simulator added no events");
    wait_until("the new events in a new file at the path", || {
        ids_in(&out).is_superset(&new)
    })
    .await;
    let status = tokio::task::block_in_place(|| daemon.terminate(WAIT));
    assert!(status.success(), "{}", tail(&daemon.stderr(), 30));

    let old_ids = ids_in(&rotated);
    assert!(
        old_ids.is_disjoint(&new),
        "events went into the rotated file after the move"
    );
    let mut all = read_ndjson(&rotated);
    all.extend(read_ndjson(&out));
    let problems = exactly_once_problems(&id_counts(&all), &after);
    assert!(problems.is_empty(), "{problems:?}");
}

// ---------------------------------------------------------------------------------------
// item 13: modes

/// Before the fix files were created 0666 & ~umask (and `file_mode` was an unknown key).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_get_fixed_modes_whatever_the_umask() {
    let env = Env::start(SimConfig {
        sessions: 2,
        events_per_session: 3,
        ..SimConfig::default()
    })
    .await;
    let root = env.dir.path();

    // Defaults under a permissive umask: private files and directories.
    let state = root.join("s1").join("state");
    let out = root.join("o1").join("deep").join("events.ndjson");
    let cfg = config_at(&env, "modes1.toml", &state, [file_sink_at(&out)]);
    let run = run_with_umask(
        "000",
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
    )
    .await;
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(mode(&root.join("s1")), 0o700);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("veeam-siem.lock")), 0o600);
    assert_eq!(mode(&state.join("vbo_test.checkpoint.json")), 0o600);
    assert_eq!(mode(&root.join("o1")), 0o700);
    assert_eq!(mode(&root.join("o1").join("deep")), 0o700);
    assert_eq!(mode(&out), 0o600);

    // file_mode for a sidecar reader, under a strict umask: exactly what was asked.
    let state = root.join("s2");
    let out = root.join("spool").join("a").join("events.ndjson");
    let cfg = config_at(
        &env,
        "modes2.toml",
        &state,
        [file_sink_at(&out).set("file_mode", "0640")],
    );
    let run = run_with_umask(
        "077",
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
    )
    .await;
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(mode(&out), 0o640);
    assert_eq!(mode(&root.join("spool")), 0o750);
    assert_eq!(mode(&root.join("spool").join("a")), 0o750);

    // An existing file keeps its mode.
    let state = root.join("s3");
    let out = root.join("kept.ndjson");
    std::fs::write(&out, "").unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let cfg = config_at(&env, "modes3.toml", &state, [file_sink_at(&out)]);
    let run = run_with_umask(
        "022",
        s(&["run", "--config", &cfg.display().to_string(), "--once"]),
    )
    .await;
    assert!(run.status.success(), "{}", text(&run));
    assert!(!read_ndjson(&out).is_empty());
    assert_eq!(mode(&out), 0o644);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_mode_is_a_config_error_naming_the_key() {
    let env = Env::start(SimConfig::default()).await;
    for bad in ["0666", "rw-r--r--", "0400"] {
        let cfg = config_at(
            &env,
            "bad-mode.toml",
            &env.state_dir(),
            [file_sink_at(&env.out_file()).set("file_mode", bad)],
        );
        let out = run_bin_async(
            s(&["run", "--config", &cfg.display().to_string(), "--once"]),
            vec![],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("sinks.archive.file_mode"),
            "{bad}: {stderr}"
        );
        assert!(
            !env.state_dir().exists(),
            "a config error must create nothing"
        );
    }
}

// ---------------------------------------------------------------------------------------
// item 14: one process per state dir

/// Before the fix the second instance ran alongside (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_state_dir_exits_2_naming_the_holder() {
    let env = Env::start(SimConfig {
        sessions: 3,
        events_per_session: 4,
        ..SimConfig::default()
    })
    .await;
    let cfg = write_config(&env, "", env.file_sink());
    let cfg_arg = cfg.display().to_string();
    let lock = env.state_dir().join("veeam-siem.lock");
    let mut daemon = Daemon::spawn(&cfg, false, &[], "holder");
    let pid = daemon.pid().to_string();
    let expected = all_ids(&env);
    wait_until("the daemon's events", || {
        ids_in(&env.out_file()).is_superset(&expected)
    })
    .await;
    assert_eq!(std::fs::read_to_string(&lock).unwrap().trim(), pid);

    let second = run_bin_async(s(&["run", "--config", &cfg_arg, "--once"]), vec![]).await;
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("PID {pid}"))
            && stderr.contains(&env.state_dir().display().to_string()),
        "{stderr}"
    );

    // `check` does not take the lock.
    let check = run_bin_async(s(&["check", "--config", &cfg_arg]), vec![]).await;
    assert!(check.status.success(), "{}", text(&check));

    // A reload runs in the same process: it neither deadlocks nor lets the lock go.
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    wait_until("the reload", || {
        daemon.stderr().contains("configuration reloaded")
    })
    .await;
    assert!(daemon.alive(), "{}", tail(&daemon.stderr(), 30));
    let third = run_bin_async(s(&["run", "--config", &cfg_arg, "--once"]), vec![]).await;
    assert_eq!(third.status.code(), Some(2), "{}", text(&third));

    let status = tokio::task::block_in_place(|| daemon.terminate(WAIT));
    assert!(status.success(), "{}", tail(&daemon.stderr(), 30));
    // Released at exit: the next instance runs.
    let next = run_bin_async(s(&["run", "--config", &cfg_arg, "--once"]), vec![]).await;
    assert!(next.status.success(), "{}", text(&next));
}

/// A backfill locks its own window's state dir: a second backfill of the same window exits
/// 2, while the live state dir stays free for `run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backfill_of_the_same_window_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    // A VB365 "server" that accepts connections and never answers: the first backfill
    // waits on its login, holding its lock, until the test kills it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let state = dir.path().join("state");
    let cfg = ConfigBuilder::new(&state)
        .table(
            Table::source("vbo_test", "vbo")
                .set("url", format!("http://{}", silent.local_addr().unwrap()))
                .set("username", "svc-siem")
                .set("password", "not-a-real-secret")
                .set("request_timeout", "600s"),
        )
        .table(file_sink_at(&dir.path().join("out.ndjson")))
        .write(&dir.path().join("config.toml"));
    let args = [
        "backfill",
        "--config",
        &cfg.display().to_string(),
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-01-02T00:00:00Z",
    ]
    .map(str::to_string);
    let window = state
        .join("backfill")
        .join("20260101T000000Z_20260102T000000Z");
    let first = harness::Reaped::spawn(
        Command::new(env!("CARGO_BIN_EXE_veeam-siem"))
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let pid = first.id().to_string();
    let lock = window.join("veeam-siem.lock");
    wait_until("the first backfill's lock", || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid)
    })
    .await;

    let second = run_bin_async(args.to_vec(), vec![]).await;
    drop(first); // SIGKILL
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("PID {pid}")) && stderr.contains(&window.display().to_string()),
        "{stderr}"
    );
    drop(silent);
}

/// While a backfill holds its window, the live state dir is free: `run` and `backfill`
/// may coexist (a backfill never writes the live checkpoints).
#[test]
fn backfill_and_live_locks_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("state");
    let window = live.join("backfill").join("w");
    let backfill = veeam_siem::state_dir::StateLock::acquire(&window).unwrap();
    let run = veeam_siem::state_dir::StateLock::acquire(&live).unwrap();
    assert_ne!(backfill.path(), run.path());
}

// ---------------------------------------------------------------------------------------
// item 16: check

/// Before the fix `check` printed "all checks passed" here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_on_a_read_only_state_dir_naming_it() {
    let env = Env::start(SimConfig::default()).await;
    let ro = env.dir.path().join("ro");
    let Some(fs) = Tmpfs::mount(&ro, "1m") else {
        return;
    };
    fs.remount("ro");
    let cfg = config_at(
        &env,
        "ro.toml",
        &ro,
        [file_sink_at(&ro.join("out").join("events.ndjson"))],
    );
    let out = run_bin_async(
        s(&["check", "--config", &cfg.display().to_string()]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAIL")).collect();
    let ro_text = ro.display().to_string();
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("state dir") && l.contains(&ro_text)),
        "{stdout}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("sink archive") && l.contains(&ro_text)),
        "{stdout}"
    );
    assert!(!stdout.contains("all checks passed"), "{stdout}");
}

/// Before the fix `check` created the state dir, the HEC channel file and the output file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_leaves_nothing_behind() {
    let env = Env::start(SimConfig::default()).await;
    let peer = hec_peer::HecPeer::start(hec_peer::PeerConfig {
        ack_enabled: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let root = env.dir.path();
    let state = root.join("fresh").join("state");
    let out = root.join("fresh-out").join("x").join("events.ndjson");
    let sinks = [
        file_sink_at(&out),
        Table::hec("splunk", &["vbo_test"], &peer.url()).set("indexer_ack", true),
    ];
    let cfg = config_at(&env, "fresh.toml", &state, sinks);
    let before: HashSet<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let run = run_bin_async(
        s(&["check", "--config", &cfg.display().to_string()]),
        vec![("TEST_HEC_TOKEN".into(), hec_peer::TOKEN.into())],
    )
    .await;
    assert!(run.status.success(), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("state dir") && l.contains("will be created")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("sink archive") && l.contains("will create")),
        "{stdout}"
    );
    let after: HashSet<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after, "check left files behind");
    peer.shutdown().await;
}
