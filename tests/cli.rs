//! The command-line contract: exit codes, error messages naming keys, the demo and schema.

mod common;
mod harness;

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

#[test]
fn demo_prints_schema_valid_events() {
    let out = bin().arg("demo").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut n = 0;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("NDJSON");
        common::assert_valid_event(&v);
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
