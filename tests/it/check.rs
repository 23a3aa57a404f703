//! `veeam-siem check`: passes against the simulator, fails with one precise line per broken
//! component, never prints secrets.

use veeam_siem_simulator::SimConfig;
use veeam_siem_test_peers::hec as hec_peer;

use crate::support::config::Table;
use crate::support::harness;
use harness::{Env, run_bin_async, s, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_against_the_simulator_and_shows_a_sample() {
    let env = Env::start(SimConfig::default()).await;
    let cfg = env.write_config("v8", "");
    let out = run_bin_async(
        s(&["check", "--config", &cfg.display().to_string()]),
        vec![],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(
        stdout.contains("source vbo_test") && stdout.contains("logged in"),
        "{stdout}"
    );
    assert!(stdout.contains("vbo_test sample"), "{stdout}");
    assert!(stdout.contains("sink archive"), "{stdout}");
    assert!(!text(&out).contains(harness::PASSWORD));
    // check must not advance anything.
    assert!(!env.state_dir().join("vbo_test.checkpoint.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_precisely_on_wrong_password_and_unwritable_sink() {
    let env = Env::start(SimConfig::default()).await;
    let cfg = env.write_config("v8", "");
    // Make the file sink's directory impossible to create: its parent is a file.
    let blocker = env.dir.path().join("out");
    std::fs::write(&blocker, "not a directory").unwrap();
    let out = run_bin_async(
        s(&["check", "--config", &cfg.display().to_string()]),
        vec![("TEST_VBO_PASSWORD".into(), "wrong-Pw-5521".into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAIL")).collect();
    assert_eq!(failed.len(), 2, "one line per broken component: {stdout}");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("source vbo_test") && l.contains("svc-siem")),
        "{stdout}"
    );
    assert!(
        failed.iter().any(|l| l.contains("sink archive")),
        "{stdout}"
    );
    assert!(stdout.contains("2 of"), "{stdout}");
    assert!(!text(&out).contains("wrong-Pw-5521"), "password leaked");
}

/// A VB365 and a VDC source in one config: both probed, both sampled; a wrong VDC key is
/// one precise failure line naming the source and the header, never the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probes_vdc_sources_too() {
    let env = Env::start(SimConfig::default()).await;
    let vdc = Table::source("vdc_test", "vdc")
        .set("url", env.sim.base_url())
        .set("api_key", "${TEST_VDC_KEY}")
        .tls_ca(&env.ca_file);
    let cfg = env
        .config()
        .table(env.vbo_source().set("api_version", "v8"))
        .table(vdc)
        .table(Table::file(
            "archive",
            &["vbo_test", "vdc_test"],
            &env.out_file(),
        ))
        .write(&env.dir.path().join("config.toml"));
    let cfg_s = cfg.display().to_string();

    let good = run_bin_async(
        s(&["check", "--config", &cfg_s]),
        vec![("TEST_VDC_KEY".into(), env.sim.vdc_api_key())],
    )
    .await;
    assert!(good.status.success(), "{}", text(&good));
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        stdout.contains("source vdc_test") && stdout.contains("vdc_test sample"),
        "{stdout}"
    );

    let bad = run_bin_async(
        s(&["check", "--config", &cfg_s]),
        vec![("TEST_VDC_KEY".into(), "not-the-key-8812".into())],
    )
    .await;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAIL")).collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert!(
        failed[0].contains("vdc_test") && failed[0].contains("x-api-key"),
        "{stdout}"
    );
    assert!(!text(&bad).contains("not-the-key-8812"), "key leaked");
}

/// Sinks are probed for real: the HEC test peer with the right token passes; a bad HEC token
/// and an unreachable Kafka broker each give one failure line naming the sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probes_hec_and_kafka_sinks() {
    let env = Env::start(SimConfig::default()).await;
    let peer = hec_peer::HecPeer::start(hec_peer::PeerConfig {
        ack_enabled: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // A port nothing listens on: bind, read the port, close.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let with_sinks = |kafka: bool| {
        let mut config = env
            .config()
            .table(env.vbo_source().set("api_version", "v8"))
            .table(env.file_sink())
            .table(Table::hec("splunk", &["vbo_test"], &peer.url()).set("indexer_ack", true));
        if kafka {
            config = config.table(Table::kafka(
                "bus",
                &["vbo_test"],
                &format!("127.0.0.1:{dead_port}"),
                "veeam.audit",
            ));
        }
        config
            .write(&env.dir.path().join(format!("check-{kafka}.toml")))
            .display()
            .to_string()
    };

    let good = with_sinks(false);
    let out = run_bin_async(
        s(&["check", "--config", &good]),
        vec![("TEST_HEC_TOKEN".into(), hec_peer::TOKEN.into())],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sink splunk"));

    let bad = with_sinks(true);
    let out = run_bin_async(
        s(&["check", "--config", &bad]),
        vec![("TEST_HEC_TOKEN".into(), "not-the-token-9931".into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAIL")).collect();
    assert_eq!(failed.len(), 2, "one line per broken sink: {stdout}");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("sink splunk") && l.to_lowercase().contains("token")),
        "{stdout}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.contains("sink bus") && l.contains(&dead_port.to_string())),
        "{stdout}"
    );
    assert!(!text(&out).contains("not-the-token-9931"), "token leaked");
    peer.shutdown().await;
}

/// Behind a proxy (`HTTPS_PROXY`, as reqwest and curl read it): a proxy that is down, and
/// one that wants credentials (407 to the CONNECT), are named in the error with the
/// variable that set them, never with the proxy's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_proxy_that_failed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start(SimConfig::default()).await;
    // No retries: the first failure is the answer (else the probe times out after 30 s).
    let cfg = env
        .write_config("v8", "max_retries = 0")
        .display()
        .to_string();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A proxy that answers every CONNECT with 407.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth_port = listener.local_addr().unwrap().port();
    let connects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connects.clone();
    let proxy = tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                if buf[..n].starts_with(b"CONNECT ") {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    for (port, expect) in [(dead_port, "reachable"), (auth_port, "wants credentials")] {
        let out = run_bin_async(
            s(&["check", "--config", &cfg]),
            vec![
                (
                    "HTTPS_PROXY".into(),
                    format!("http://proxyuser:proxy-Pw-3321@127.0.0.1:{port}"),
                ),
                ("NO_PROXY".into(), String::new()),
                ("no_proxy".into(), String::new()),
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains("source vbo_test"))
            .unwrap_or_default();
        assert!(
            line.contains(&format!("127.0.0.1:{port}"))
                && line.contains("HTTPS_PROXY")
                && line.contains(expect),
            "{stdout}"
        );
        assert!(
            !text(&out).contains("proxy-Pw-3321"),
            "proxy password leaked"
        );
    }
    assert!(connects.load(std::sync::atomic::Ordering::SeqCst) > 0);

    // With the default retries: a 407 is not retried (asking again without credentials
    // can't succeed), so the row says why at once instead of "no answer".
    let retrying = env.write_config("v8", "").display().to_string();
    let proxy_env = |port: u16, no_proxy: &str| {
        vec![
            (
                "HTTPS_PROXY".to_string(),
                format!("http://proxyuser:proxy-Pw-3321@127.0.0.1:{port}"),
            ),
            ("NO_PROXY".to_string(), no_proxy.to_string()),
            ("no_proxy".to_string(), no_proxy.to_string()),
        ]
    };
    connects.store(0, std::sync::atomic::Ordering::SeqCst);
    let out = run_bin_async(
        s(&["check", "--config", &retrying]),
        proxy_env(auth_port, ""),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("wants credentials") && !stdout.contains("no answer"),
        "{stdout}"
    );
    assert_eq!(
        connects.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one CONNECT, no retry: {stdout}"
    );
    // `NO_PROXY=*` bypasses the proxy for every host, IP addresses included (curl's rule).
    let out = run_bin_async(
        s(&["check", "--config", &retrying]),
        proxy_env(dead_port, "*"),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    proxy.abort();
}
