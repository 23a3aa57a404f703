//! The command-line contract: exit codes, error messages naming keys, the demo and schema.

use crate::support::event_schema;
use crate::support::harness;
use harness::{bin, text};

/// A valid config; each case below breaks one thing.
const BASE: &str = r#"
[state]
dir = "STATE"
[sources.vbo_main]
type = "vbo"
url = "https://vbo.example.net:4443"
username = "svc"
password = "${CLI_TEST_PW}"
[sinks.console]
type = "stdout"
inputs = ["vbo_main"]
"#;

const SECRET: &str = "Sup3r-secret-value";

fn run_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let state = dir.path().join("state");
    std::fs::write(&path, text.replace("STATE", &state.display().to_string())).unwrap();
    bin()
        .args(["run", "--config", &path.display().to_string(), "--once"])
        .env("CLI_TEST_PW", SECRET)
        .output()
        .unwrap()
}

#[test]
fn bad_configs_exit_2_naming_the_key() {
    let cases: &[(&str, String, &[&str])] = &[
        (
            "unknown key",
            BASE.replace("username", "user_name"),
            &["sources.vbo_main", "user_name"],
        ),
        (
            "missing env var",
            BASE.replace("CLI_TEST_PW", "CLI_TEST_UNSET_VAR"),
            &["sources.vbo_main.password", "CLI_TEST_UNSET_VAR"],
        ),
        (
            "page size",
            BASE.replace("username = \"svc\"", "username = \"svc\"\npage_size = 0"),
            &["sources.vbo_main.page_size"],
        ),
        (
            "bad duration",
            BASE.replace(
                "username = \"svc\"",
                "username = \"svc\"\npoll_interval = \"often\"",
            ),
            &["sources.vbo_main", "often"],
        ),
        (
            "unknown input",
            BASE.replace("inputs = [\"vbo_main\"]", "inputs = [\"vbo_mian\"]"),
            &["sinks.console.inputs", "vbo_mian"],
        ),
        (
            "unread source",
            format!(
                "{BASE}\n[sources.spare]\ntype = \"vbo\"\nurl = \"https://x\"\nusername = \"u\"\npassword = \"p\"\n"
            ),
            &["sources.spare", "no sink"],
        ),
        (
            "duplicate id",
            format!("{BASE}\n[sinks.vbo_main]\ntype = \"stdout\"\ninputs = [\"vbo_main\"]\n"),
            &["sinks.vbo_main", "unique"],
        ),
        (
            "bad api version",
            BASE.replace(
                "username = \"svc\"",
                "username = \"svc\"\napi_version = \"v9\"",
            ),
            &["sources.vbo_main", "v9"],
        ),
        (
            "missing ca file",
            BASE.replace(
                "username = \"svc\"",
                "username = \"svc\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }",
            ),
            &["sources.vbo_main.tls.ca_file"],
        ),
        (
            "ca file that is not PEM",
            BASE.replace(
                "username = \"svc\"",
                "username = \"svc\"\ntls = { ca_file = \"/etc/hostname\" }",
            ),
            &["sources.vbo_main.tls.ca_file", "certificate"],
        ),
        (
            "url with a query",
            BASE.replace(
                "vbo.example.net:4443\"",
                "vbo.example.net:4443/?api_key=Sup3r-secret-value\"",
            ),
            &["sources.vbo_main.url", "query"],
        ),
        (
            "unknown sink type",
            BASE.replace("type = \"stdout\"", "type = \"pigeon\""),
            &["sinks.console", "pigeon"],
        ),
        ("not toml", "[[[".to_string(), &["not valid TOML"]),
    ];
    for (name, config, needles) in cases {
        let out = run_config(config);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for n in *needles {
            assert!(err.contains(n), "{name}: expected `{n}` in: {err}");
        }
        assert!(!err.contains(SECRET), "{name}: secret leaked: {err}");
    }
}

/// A missing required key is named as the key; with `--log-format json` every stderr
/// line, the final error too, is a JSON object.
#[test]
fn a_missing_key_is_named_and_json_logs_stay_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let state = dir.path().join("state");
    let config = BASE
        .replace("url = \"https://vbo.example.net:4443\"\n", "")
        .replace("STATE", &state.display().to_string());
    std::fs::write(&path, config).unwrap();
    let out = bin()
        .args([
            "--log-format",
            "json",
            "check",
            "--config",
            &path.display().to_string(),
        ])
        .env("CLI_TEST_PW", SECRET)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.trim().is_empty());
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.is_object(), "{line}");
    }
    assert!(stderr.contains("sources.vbo_main.url"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = bin()
        .args(["run", "--config", "/nonexistent/veeam-siem.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/veeam-siem.toml"));
}

#[test]
fn usage_error_exits_2() {
    let out = bin().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// `--log-level`: a level or filter directives; a bare word that is neither is a usage
/// error (it would filter for a target of that name and log nothing).
#[test]
fn log_levels_are_checked() {
    for ok in ["debug", "WARN", "off", "info,veeam_siem=debug"] {
        let out = bin().args(["--log-level", ok, "schema"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{ok}: {}", text(&out));
    }
    for bad in ["bogus", "veeam_siem=loud"] {
        let out = bin().args(["--log-level", bad, "schema"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(text(&out).contains("log"), "{bad}: {}", text(&out));
    }
}

#[test]
fn demo_prints_schema_valid_events() {
    let out = bin().arg("demo").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut n = 0;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("NDJSON");
        event_schema::assert_valid_event(&v);
        n += 1;
    }
    assert!(n > 20, "demo printed only {n} events");
}

#[test]
fn schema_command_prints_the_schema() {
    let out = bin().arg("schema").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
}

/// Config errors keep the contract in `run`, `check` and `backfill` alike: exit 2, the
/// full key path in the message, and never the value of a secret or a URL's userinfo.
#[test]
fn config_errors_exit_2_with_the_full_key_and_no_secret_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-secret");
    std::fs::write(&big, format!("File-Secret-321{}", "x".repeat(1024 * 1024))).unwrap();
    let empty = dir.path().join("empty-secret");
    std::fs::write(&empty, "\n").unwrap();
    let with_source = |extra: &str| {
        BASE.replace(
            "username = \"svc\"",
            &format!("username = \"svc\"\n{extra}"),
        )
    };
    let no_password = |extra: &str| {
        BASE.replace(
            "password = \"${CLI_TEST_PW}\"",
            &format!("request_timeout = \"5s\"\n{extra}"),
        )
    };
    let hec = |keys: &str| {
        format!(
            "{BASE}\n[sinks.splunk]\ntype = \"splunk_hec\"\ninputs = [\"vbo_main\"]\nendpoint = \"https://splunk.example.net:8088\"\n{keys}\n"
        )
    };
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
        (
            "missing password_file",
            no_password("password_file = \"/nonexistent/vbo-pw\""),
            "sources.vbo_main.password_file",
            &["/nonexistent/vbo-pw"],
        ),
        (
            "oversized password_file",
            no_password(&format!("password_file = {:?}", big.display().to_string())),
            "sources.vbo_main.password_file",
            &["File-Secret-321"],
        ),
        (
            "empty password_file",
            no_password(&format!(
                "password_file = {:?}",
                empty.display().to_string()
            )),
            "sources.vbo_main.password_file",
            &[],
        ),
        (
            "missing token_file",
            hec("token_file = \"/nonexistent/hec-token\""),
            "sinks.splunk.token_file",
            &["/nonexistent/hec-token"],
        ),
        (
            "missing api_key_file",
            format!(
                "{}\n[sources.vdc]\ntype = \"vdc\"\nurl = \"https://vdc.example.net\"\napi_key_file = \"/nonexistent/vdc-key\"\n",
                BASE.replace(
                    "inputs = [\"vbo_main\"]",
                    "inputs = [\"vbo_main\", \"vdc\"]"
                )
            ),
            "sources.vdc.api_key_file",
            &["/nonexistent/vdc-key"],
        ),
        (
            "missing sasl password_file",
            format!(
                "{BASE}\n[sinks.bus]\ntype = \"kafka\"\ninputs = [\"vbo_main\"]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"t\"\nsasl = {{ mechanism = \"PLAIN\", username = \"u\", password_file = \"/nonexistent/kafka-pw\" }}\n"
            ),
            "sinks.bus.sasl.password_file",
            &["/nonexistent/kafka-pw"],
        ),
        (
            "password is a number",
            BASE.replace("\"${CLI_TEST_PW}\"", "98765432123"),
            "sources.vbo_main.password",
            &[],
        ),
        (
            "token is a number",
            hec("token = 12345678901"),
            "sinks.splunk.token",
            &[],
        ),
        (
            "api_key is a table",
            format!(
                "{}\n[sources.vdc]\ntype = \"vdc\"\nurl = \"https://vdc.example.net\"\napi_key = {{ value = \"Table-Key-778\" }}\n",
                BASE.replace(
                    "inputs = [\"vbo_main\"]",
                    "inputs = [\"vbo_main\", \"vdc\"]"
                )
            ),
            "sources.vdc.api_key",
            &[],
        ),
        (
            "unparseable URL with credentials",
            BASE.replace(
                "https://vbo.example.net:4443",
                "https://admin:Url-Pw-8812@vbo example.net:4443",
            ),
            "sources.vbo_main.url",
            &[],
        ),
        (
            "URL with credentials and a bad port",
            BASE.replace(
                "https://vbo.example.net:4443",
                "https://admin:Url-Pw-8812@vbo.example.net:99999",
            ),
            "sources.vbo_main.url",
            &[],
        ),
        (
            "zero request_timeout",
            with_source("request_timeout = \"0s\""),
            "sources.vbo_main.request_timeout",
            &[],
        ),
        (
            "absurd lookback",
            with_source("lookback = \"300000years\""),
            "sources.vbo_main.lookback",
            &["300000years"],
        ),
        (
            "absurd ack_timeout",
            hec("token = \"t\"\nack_timeout = \"300000years\""),
            "sinks.splunk.ack_timeout",
            &[],
        ),
    ];
    let forbidden = [
        SECRET,
        "98765432123",
        "12345678901",
        "Table-Key-778",
        "Url-Pw-8812",
        "File-Secret-321",
    ];
    for (name, config, key, needles) in &cases {
        let path = dir.path().join("c.toml");
        let state = dir.path().join("state");
        std::fs::write(&path, config.replace("STATE", &state.display().to_string())).unwrap();
        let path = path.display().to_string();
        for args in [
            vec!["run", "--config", &path, "--once"],
            vec!["check", "--config", &path],
            vec!["backfill", "--config", &path, "--since", "2024-01-01"],
        ] {
            let out = bin()
                .args(&args)
                .env("CLI_TEST_PW", SECRET)
                .output()
                .unwrap();
            let what = format!("{name} ({})", args[0]);
            assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
            let all = text(&out);
            assert!(
                all.contains(&format!("`{key}`")),
                "{what}: expected `{key}` in {all}"
            );
            for n in *needles {
                if forbidden.contains(n) {
                    assert!(!all.contains(n), "{what}: `{n}` leaked: {all}");
                } else {
                    assert!(all.contains(n), "{what}: expected `{n}` in {all}");
                }
            }
            for f in forbidden {
                assert!(!all.contains(f), "{what}: `{f}` leaked: {all}");
            }
        }
    }
}

/// `--since` as an age reaching back absurdly far is a usage error (exit 2), not a panic
/// in the time arithmetic that follows (the VB365 horizon minus `lookback`).
#[test]
fn absurd_backfill_ages_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let state = dir.path().join("state");
    let config = BASE
        .replace("STATE", &state.display().to_string())
        .replace(
            "username = \"svc\"",
            "username = \"svc\"\nlookback = \"3650days\"\nmax_retries = 0",
        )
        .replace("https://vbo.example.net:4443", "http://127.0.0.1:1");
    std::fs::write(&path, config).unwrap();
    for since in ["264160years", "300000years", "9999999999999years"] {
        let out = bin()
            .args([
                "backfill",
                "--config",
                &path.display().to_string(),
                "--since",
                since,
            ])
            .env("CLI_TEST_PW", SECRET)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{since}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--since"),
            "{since}: {}",
            text(&out)
        );
    }
}
