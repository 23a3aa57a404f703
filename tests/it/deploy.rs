//! The deployment files in `deploy/` checked against the code they deploy.
//!
//! Manifests rot silently: a renamed config key, a probe on the wrong port or a secret
//! mounted where the config does not look only shows up in a cluster. These tests catch
//! that here, without a cluster, Docker or the network:
//! - every Kubernetes manifest parses and names itself;
//! - the `config.toml` in the ConfigMap passes the daemon's own config loader, and every
//!   `*_file` path in it is a key of a ConfigMap or Secret the container mounts there
//!   (secrets are then resolved from temporary copies of those files);
//! - probes hit `/health` and `/ready` on the `[ops] listen` port; the pod is hardened;
//!   the Vector sidecar reads what the file sink writes;
//! - the Dockerfile builds with the README's command and runs unprivileged, and the image,
//!   Deployment and systemd command lines are accepted by the CLI;
//! - the daemon runs under umask 0077 everywhere: the image's entrypoint and the
//!   Deployment's command are run through `/bin/sh` with a stand-in `veeam-siem` that
//!   reports the umask and arguments it got; the unit sets `UMask=0077`;
//! - the verify unit runs as the daemon's dynamic user, read-only on its state directory;
//! - the systemd units pass `systemd-analyze verify` (skipped, with a note on stderr,
//!   where `systemd-analyze` is not installed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use veeam_siem::config::common::resolve_secret;
use veeam_siem::config::{Config, SinkConfig, SourceConfig};
use veeam_siem::sources::vbo::VboSource;
use veeam_siem::sources::vdc::VdcSource;
use yaml_rust2::{Yaml, YamlLoader};

/// The release build, identical in the Dockerfile and the README's "build from source".
const BUILD_COMMAND: &str = "cargo build --release --locked";
/// The container that runs the daemon, in the Deployment.
const DAEMON: &str = "veeam-siem";
/// The ConfigMap key holding the daemon's configuration.
const CONFIG_KEY: &str = "config.toml";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Kubernetes manifests

/// One YAML document of `deploy/kubernetes/*.yaml`.
struct Manifest {
    file: String,
    doc: Yaml,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }
}

fn manifests() -> Vec<Manifest> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut out = Vec::new();
    for path in files {
        let file = format!(
            "deploy/kubernetes/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
        assert!(!docs.is_empty(), "{file} holds no YAML document");
        out.extend(docs.into_iter().map(|doc| Manifest {
            file: file.clone(),
            doc,
        }));
    }
    out
}

fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} named `{name}` in deploy/kubernetes"))
}

/// The one Deployment in the manifests.
fn deployment(manifests: &[Manifest]) -> &Manifest {
    let found: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| m.kind() == "Deployment")
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one Deployment");
    found[0]
}

fn pod_spec(manifests: &[Manifest]) -> &Yaml {
    &deployment(manifests).doc["spec"]["template"]["spec"]
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

/// Containers and init containers.
fn all_containers(pod: &Yaml) -> impl Iterator<Item = &Yaml> {
    list(&pod["containers"])
        .iter()
        .chain(list(&pod["initContainers"]))
}

fn container<'a>(pod: &'a Yaml, name: &str) -> &'a Yaml {
    all_containers(pod)
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("the Deployment has no container named `{name}`"))
}

/// A container's volume mount: where, which volume, writable or not.
struct Mount<'a> {
    path: &'a str,
    volume: &'a str,
    read_only: bool,
}

fn mounts(container: &Yaml) -> Vec<Mount<'_>> {
    list(&container["volumeMounts"])
        .iter()
        .map(|m| Mount {
            path: m["mountPath"]
                .as_str()
                .expect("volumeMount without mountPath"),
            volume: m["name"].as_str().expect("volumeMount without name"),
            read_only: m["readOnly"].as_bool() == Some(true),
        })
        .collect()
}

/// The mount that holds `path` (the longest mount path that is a directory prefix of it),
/// and the rest of the path below it.
fn mount_of<'a, 'p>(container: &'a Yaml, path: &'p str) -> Option<(Mount<'a>, &'p str)> {
    mounts(container)
        .into_iter()
        .filter_map(|m| {
            let rest = path.strip_prefix(m.path.trim_end_matches('/'))?;
            let rest = rest.strip_prefix('/')?;
            Some((m, rest))
        })
        .max_by_key(|(m, _)| m.path.len())
}

fn volume<'a>(pod: &'a Yaml, name: &str) -> &'a Yaml {
    list(&pod["volumes"])
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("the pod has no volume named `{name}`"))
}

/// The content of the file at `path` inside `container`, when a ConfigMap or Secret volume
/// provides it; `Err` says why not.
fn provided_file(
    manifests: &[Manifest],
    pod: &Yaml,
    container: &Yaml,
    path: &str,
) -> Result<String, String> {
    let (mount, rest) =
        mount_of(container, path).ok_or_else(|| "no volume is mounted there".to_string())?;
    let vol = volume(pod, mount.volume);
    let (kind, source) = if !vol["configMap"].is_badvalue() {
        ("ConfigMap", &vol["configMap"])
    } else if !vol["secret"].is_badvalue() {
        ("Secret", &vol["secret"])
    } else {
        return Err(format!(
            "volume `{}` mounted at {} is neither a ConfigMap nor a Secret",
            mount.volume, mount.path
        ));
    };
    let name_field = if kind == "Secret" {
        "secretName"
    } else {
        "name"
    };
    let name = source[name_field].as_str().unwrap_or("");
    // With `items`, only the listed keys appear, each at its `path`.
    let key = match source["items"].as_vec() {
        Some(items) => items
            .iter()
            .find(|item| item["path"].as_str() == Some(rest))
            .and_then(|item| item["key"].as_str())
            .ok_or_else(|| format!("{kind} volume `{}` has no item at {rest}", mount.volume))?,
        None => rest,
    };
    let object = find(manifests, kind, name);
    for field in ["data", "stringData"] {
        if let Some(text) = object.doc[field][key].as_str() {
            if kind == "Secret" && field == "data" {
                // Base64: the content is not needed, only that the key exists.
                return Ok("placeholder".to_string());
            }
            return Ok(text.to_string());
        }
    }
    Err(format!("{kind} `{name}` has no key `{key}`"))
}

/// The daemon's config.toml, as shipped in the ConfigMap its container mounts.
fn shipped_config(manifests: &[Manifest]) -> String {
    let found: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| m.kind() == "ConfigMap" && m.doc["data"][CONFIG_KEY].as_str().is_some())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one ConfigMap with a `{CONFIG_KEY}` key"
    );
    found[0].doc["data"][CONFIG_KEY]
        .as_str()
        .unwrap()
        .to_string()
}

fn shipped_config_value(manifests: &[Manifest]) -> toml::Value {
    toml::from_str(&shipped_config(manifests))
        .unwrap_or_else(|e| panic!("the ConfigMap's {CONFIG_KEY} is not TOML: {e}"))
}

/// Every string under a key ending in `_file` (password_file, api_key_file, token_file,
/// tls.ca_file, ...), with its dotted key.
fn file_keys(value: &toml::Value, key: &str, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let path = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                match v {
                    toml::Value::String(s) if k.ends_with("_file") => out.push((path, s.clone())),
                    _ => file_keys(v, &path, out),
                }
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                file_keys(item, &format!("{key}.{i}"), out);
            }
        }
        _ => {}
    }
}

/// The `[ops] listen` address of the shipped config.
fn ops_listen(manifests: &[Manifest]) -> SocketAddr {
    let value = shipped_config_value(manifests);
    let listen = value
        .get("ops")
        .and_then(|ops| ops.get("listen"))
        .and_then(toml::Value::as_str)
        .expect("the ConfigMap's config has no [ops] listen: the probes need the ops endpoint");
    listen
        .parse()
        .unwrap_or_else(|e| panic!("[ops] listen = {listen:?} is not an address: {e}"))
}

/// Literal `env` values of a container (what `${VAR}` in the config would see).
fn literal_env(container: &Yaml) -> BTreeMap<String, String> {
    list(&container["env"])
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn manifests_parse_and_name_their_objects() {
    let manifests = manifests();
    let mut seen = BTreeMap::new();
    for m in &manifests {
        assert!(
            m.doc.as_hash().is_some(),
            "{}: a document is not a mapping",
            m.file
        );
        for field in ["apiVersion", "kind"] {
            assert!(
                m.doc[field].as_str().is_some_and(|s| !s.is_empty()),
                "{}: a document has no `{field}`",
                m.file
            );
        }
        assert!(
            !m.name().is_empty(),
            "{}: {} has no metadata.name",
            m.file,
            m.kind()
        );
        if let Some(first) = seen.insert((m.kind().to_string(), m.name().to_string()), &m.file) {
            panic!(
                "{} `{}` is defined twice ({first} and {})",
                m.kind(),
                m.name(),
                m.file
            );
        }
    }
    // What the Deployment refers to exists.
    let pod = pod_spec(&manifests);
    for v in list(&pod["volumes"]) {
        let name = v["name"].as_str().unwrap_or("?");
        if let Some(cm) = v["configMap"]["name"].as_str() {
            find(&manifests, "ConfigMap", cm);
        } else if let Some(secret) = v["secret"]["secretName"].as_str() {
            find(&manifests, "Secret", secret);
        } else if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
            find(&manifests, "PersistentVolumeClaim", claim);
        } else {
            assert!(
                !v["emptyDir"].is_badvalue(),
                "volume `{name}`: unexpected type"
            );
        }
    }
    for c in all_containers(pod) {
        for m in mounts(c) {
            volume(pod, m.volume);
        }
    }
}

#[test]
fn configmap_config_passes_the_config_loader() {
    let manifests = manifests();
    let pod = pod_spec(&manifests);
    let daemon = container(pod, DAEMON);
    let mut text = shipped_config(&manifests);

    // Every `*_file` path must be a file a mounted ConfigMap or Secret provides. The loader
    // reads those paths (ca_file when validating, secrets when resolving), so each one is
    // replaced with a temporary copy of the manifest's value.
    let mut files = Vec::new();
    file_keys(&shipped_config_value(&manifests), "", &mut files);
    assert!(
        files.iter().any(|(key, _)| key.ends_with("password_file")),
        "expected the VB365 password to come from a mounted file: {files:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    for (i, (key, path)) in files.iter().enumerate() {
        assert!(path.starts_with('/'), "{key} = {path:?} must be absolute");
        let content = provided_file(&manifests, pod, daemon, path).unwrap_or_else(|why| {
            panic!("{key} = {path:?}, but the `{DAEMON}` container cannot read it: {why}")
        });
        let copy = tmp.path().join(format!("{i}-{}", key.replace('.', "_")));
        // The manifest's CA is a placeholder to replace (it says so, and the loader refuses
        // a ca_file without a certificate): stand in a test certificate for it.
        let content = if key.ends_with("ca_file") {
            include_str!("../fixtures/keys/test-only-ca.pem").to_string()
        } else {
            content
        };
        std::fs::write(&copy, content).unwrap();
        let copy = toml::Value::String(copy.display().to_string()).to_string();
        let before = text.clone();
        for quoted in [format!("\"{path}\""), format!("'{path}'")] {
            text = text.replace(&quoted, &copy);
        }
        assert_ne!(text, before, "could not rewrite {key} = {path:?}");
    }

    let env = literal_env(daemon);
    let config = Config::from_toml(
        &text,
        Path::new("deploy/kubernetes/configmap.yaml"),
        &|name| env.get(name).cloned(),
    )
    .unwrap_or_else(|e| panic!("the ConfigMap's {CONFIG_KEY} is rejected: {e}"));

    // Secrets resolve from the mounted files (the placeholders are not empty).
    for (id, source) in &config.sources {
        let resolved = match source {
            SourceConfig::Vbo(c) => VboSource::resolve(id, c).map(|s| s.password),
            SourceConfig::Vdc(c) => VdcSource::resolve(id, c).map(|s| s.api_key),
        };
        if let Err(e) = resolved {
            panic!("sources.{id}: {e}");
        }
    }
    for (id, sink) in &config.sinks {
        if let SinkConfig::SplunkHec(c) = sink {
            let key = format!("sinks.{id}.token");
            if let Err(e) = resolve_secret(&key, c.token.as_ref(), c.token_file.as_deref()) {
                panic!("{key}: {e}");
            }
        }
    }

    // The root file system is read-only: whatever the daemon writes must be on a writable
    // volume.
    let mut written = vec![("state.dir", config.state.dir.display().to_string())];
    for sink in config.sinks.values() {
        if let SinkConfig::File(f) = sink {
            written.push(("a file sink's path", f.path.clone()));
        }
    }
    for (what, path) in written {
        let probe = format!("{}/x", path.trim_end_matches('/'));
        let (mount, _) = mount_of(daemon, &probe)
            .unwrap_or_else(|| panic!("{what} {path} is not on a mounted volume"));
        assert!(
            !mount.read_only,
            "{what} {path} is on the read-only mount {}",
            mount.path
        );
    }
    assert!(
        config.ops.is_some(),
        "the probes need [ops] in the ConfigMap"
    );
}

/// A probe's port, resolved through the container's named ports.
fn probe_port(container: &Yaml, probe: &str) -> i64 {
    let port = &container[probe]["httpGet"]["port"];
    if let Some(n) = port.as_i64() {
        return n;
    }
    let name = port
        .as_str()
        .unwrap_or_else(|| panic!("{probe}.httpGet.port is missing"));
    list(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("{probe} uses port `{name}`, which the container does not name"))
}

#[test]
fn probes_use_the_ops_endpoint() {
    let manifests = manifests();
    let listen = ops_listen(&manifests);
    assert!(
        listen.ip().is_unspecified(),
        "[ops] listen = {listen}: the kubelet probes the pod IP, so listen on 0.0.0.0 (or [::])"
    );
    let daemon = container(pod_spec(&manifests), DAEMON);
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        assert_eq!(
            daemon[probe]["httpGet"]["path"].as_str(),
            Some(path),
            "{probe} path"
        );
        assert_eq!(
            probe_port(daemon, probe),
            i64::from(listen.port()),
            "{probe} port vs [ops] listen"
        );
    }
    assert!(
        list(&daemon["ports"])
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(i64::from(listen.port()))),
        "the container does not declare port {}",
        listen.port()
    );
}

#[test]
fn pod_runs_one_hardened_replica() {
    let manifests = manifests();
    let spec = &deployment(&manifests).doc["spec"];
    // Checkpoints belong to one process: never two pods at once, not even during a rollout.
    assert_eq!(spec["replicas"].as_i64(), Some(1), "replicas");
    assert_eq!(
        spec["strategy"]["type"].as_str(),
        Some("Recreate"),
        "strategy"
    );

    let pod = pod_spec(&manifests);
    let sc = &pod["securityContext"];
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "runAsNonRoot");
    assert_eq!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "seccompProfile"
    );
    assert_eq!(
        pod["automountServiceAccountToken"].as_bool(),
        Some(false),
        "automountServiceAccountToken"
    );
    for c in all_containers(pod) {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        assert_eq!(
            sc["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{name}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}: allowPrivilegeEscalation"
        );
        assert!(
            list(&sc["capabilities"]["drop"])
                .iter()
                .any(|cap| cap.as_str() == Some("ALL")),
            "{name}: capabilities must drop ALL"
        );
        for field in ["requests", "limits"] {
            assert!(
                c["resources"][field]["memory"].as_str().is_some(),
                "{name}: resources.{field}.memory"
            );
        }
    }
}

/// `*` and `?` glob match, neither crossing `/` (what Vector's `include` patterns use
/// here; `**` is not supported).
fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(rest, &s[i..])),
            Some((b'?', rest)) => s.first().is_some_and(|&c| c != b'/') && go(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    assert!(!pattern.contains("**"), "`**` is not supported: {pattern}");
    go(pattern.as_bytes(), path.as_bytes())
}

#[test]
fn vector_sidecar_reads_what_the_file_sink_writes() {
    let manifests = manifests();
    let pod = pod_spec(&manifests);
    let daemon = container(pod, DAEMON);
    let vector = container(pod, "vector");

    let vector_config = manifests
        .iter()
        .find_map(|m| {
            (m.kind() == "ConfigMap")
                .then(|| m.doc["data"]["vector.yaml"].as_str())
                .flatten()
        })
        .expect("no ConfigMap with a `vector.yaml` key");
    let vector_config = &YamlLoader::load_from_str(vector_config)
        .unwrap_or_else(|e| panic!("vector.yaml is not valid YAML: {e}"))[0];
    let file_sources: Vec<&Yaml> = vector_config["sources"]
        .as_hash()
        .expect("vector.yaml has no sources")
        .values()
        .filter(|s| s["type"].as_str() == Some("file"))
        .collect();
    assert!(!file_sources.is_empty(), "vector.yaml has no file source");

    // Nothing but Vector removes spool files: each file sink must write where it reads.
    let config = shipped_config_value(&manifests);
    let sinks = config.get("sinks").and_then(toml::Value::as_table).unwrap();
    let mut spool_volumes = Vec::new();
    for (id, sink) in sinks {
        if sink.get("type").and_then(toml::Value::as_str) != Some("file") {
            continue;
        }
        let pattern = sink["path"].as_str().unwrap();
        let written = veeam_siem::sinks::file::expand_path(pattern, chrono::Utc::now())
            .unwrap()
            .display()
            .to_string();
        let (mount, rest) = mount_of(daemon, &written)
            .unwrap_or_else(|| panic!("sinks.{id}.path {pattern} is not on a mounted volume"));
        let seen_at = mounts(vector)
            .into_iter()
            .find(|m| m.volume == mount.volume)
            .unwrap_or_else(|| panic!("the vector container does not mount `{}`", mount.volume));
        assert!(
            !seen_at.read_only,
            "vector deletes spool files and keeps its positions there: mount `{}` read-write",
            mount.volume
        );
        let seen = format!("{}/{rest}", seen_at.path.trim_end_matches('/'));
        assert!(
            file_sources.iter().any(|s| list(&s["include"])
                .iter()
                .filter_map(Yaml::as_str)
                .any(|g| glob_match(g, &seen))),
            "no Vector file source includes {seen} (sinks.{id}.path = {pattern})"
        );
        spool_volumes.push(mount.volume);
    }
    assert!(
        !spool_volumes.is_empty(),
        "the ConfigMap's config has no file sink"
    );

    // Vector's read positions must survive like the spool does.
    for s in &file_sources {
        let dir = s["data_dir"]
            .as_str()
            .or(vector_config["data_dir"].as_str())
            .expect("Vector's data_dir is not set");
        // Vector requires data_dir to exist (it only creates subdirectories in it): on a
        // read-only root file system that means a mount point.
        let mount = mounts(vector)
            .into_iter()
            .find(|m| m.path.trim_end_matches('/') == dir.trim_end_matches('/'))
            .unwrap_or_else(|| panic!("Vector's data_dir {dir} is not a mount point"));
        assert!(
            !mount.read_only,
            "Vector's data_dir {dir} is mounted read-only"
        );
        assert!(
            spool_volumes.contains(&mount.volume),
            "Vector's data_dir {dir} is not on the spool's volume: positions and spool would not share fate"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Dockerfile

/// One instruction: the keyword (upper case) and its arguments, continuation lines joined
/// and comment lines dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The words of an exec-form (`["a", "b"]`) or shell-form argument list.
fn words(args: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(args) {
        Ok(list) => list,
        Err(_) => args.split_whitespace().map(str::to_string).collect(),
    }
}

/// Whether `line`, stripped of `RUN`, `&&` and a trailing `\`, is exactly the command.
fn is_build_line(line: &str) -> bool {
    let mut s = line.trim();
    s = s.strip_prefix("RUN ").unwrap_or(s).trim();
    s = s.strip_suffix('\\').unwrap_or(s).trim();
    s = s.strip_prefix("&&").unwrap_or(s).trim();
    s = s.strip_suffix("&&").unwrap_or(s).trim();
    s == BUILD_COMMAND
}

#[test]
fn dockerfile_builds_with_the_documented_command() {
    let text = read("deploy/Dockerfile");
    let instructions = dockerfile_instructions(&text);
    let stages = instructions.iter().filter(|(k, _)| k == "FROM").count();
    assert!(
        stages >= 2,
        "expected a multi-stage build (builder + runtime)"
    );
    assert!(
        text.lines().any(is_build_line),
        "deploy/Dockerfile must build with exactly `{BUILD_COMMAND}`"
    );
    // ... in a build stage, not in the image that ships.
    let last_from = instructions.iter().rposition(|(k, _)| k == "FROM").unwrap();
    assert!(
        !instructions[last_from..]
            .iter()
            .any(|(k, a)| k == "RUN" && a.contains("cargo ")),
        "the runtime stage must not run cargo"
    );
}

#[test]
fn readme_documents_the_image_build_command() {
    // The README's "build from source" line; the Dockerfile runs the same.
    let readme = read("README.md");
    assert!(
        readme.lines().any(|line| {
            let line = line.trim();
            line == BUILD_COMMAND
                || line.strip_prefix(BUILD_COMMAND).is_some_and(|rest| {
                    rest.trim_start().starts_with('#') && rest.starts_with(char::is_whitespace)
                })
        }),
        "README.md has no line `{BUILD_COMMAND}` (the Dockerfile's build command)"
    );
}

#[test]
fn dockerfile_runtime_stage_is_unprivileged_and_declares_state() {
    let text = read("deploy/Dockerfile");
    let instructions = dockerfile_instructions(&text);
    let last_from = instructions.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let runtime = &instructions[last_from..];
    let last = |keyword: &str| {
        runtime
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("the runtime stage has no {keyword}"))
    };

    let user = last("USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid != "root" && uid != "0",
        "the runtime stage must run as a non-root USER, not `{user}`"
    );
    let manifests = manifests();
    if let Ok(uid) = uid.parse::<i64>() {
        assert_eq!(
            pod_spec(&manifests)["securityContext"]["runAsUser"].as_i64(),
            Some(uid),
            "the pod's runAsUser should be the image's USER"
        );
    }

    let config = shipped_config_value(&manifests);
    let state_dir = config["state"]["dir"].as_str().unwrap();
    let volumes: Vec<String> = runtime
        .iter()
        .filter(|(k, _)| k == "VOLUME")
        .flat_map(|(_, a)| words(a))
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| v.trim_end_matches('/') == state_dir.trim_end_matches('/')),
        "the runtime stage must declare VOLUME {state_dir} ([state] dir); has {volumes:?}"
    );

    let port = ops_listen(&manifests).port().to_string();
    let exposed: Vec<String> = runtime
        .iter()
        .filter(|(k, _)| k == "EXPOSE")
        .flat_map(|(_, a)| words(a))
        .collect();
    assert!(
        exposed
            .iter()
            .any(|p| p.split('/').next() == Some(port.as_str())),
        "the runtime stage must EXPOSE the ops port {port}; has {exposed:?}"
    );
    // The entrypoint runs `veeam-siem` with the CMD's (or `docker run`'s) arguments; it may
    // wrap it (a shell setting the umask) but must exec it, see
    // `daemon_runs_under_a_restrictive_umask_everywhere`.
    let entry = words(last("ENTRYPOINT"));
    let (_, passed) = observe_entrypoint("Dockerfile ENTRYPOINT", &entry, &[]);
    assert!(passed.is_empty(), "ENTRYPOINT adds arguments: {passed:?}");
}

/// The umask 0077 the systemd unit sets; the image and the pod must give the same.
const UMASK: &str = "0077";

/// Directory holding a stand-in `veeam-siem` that prints its umask, then one argument per
/// line.
fn stand_in() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("veeam-siem");
    std::fs::write(
        &path,
        "#!/bin/sh\numask\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
    )
    .unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

/// Run a deployed entrypoint (`["veeam-siem"]` or a shell wrapper naming `veeam-siem`)
/// plus `args`, with `bin_dir` first in PATH so `veeam-siem` resolves there.
fn run_deployed(
    origin: &str,
    entry: &[String],
    args: &[String],
    bin_dir: &Path,
) -> std::process::Output {
    assert!(!entry.is_empty(), "{origin}: empty");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf()).chain(std::env::split_paths(&path)),
    )
    .unwrap();
    Command::new(&entry[0])
        .args(&entry[1..])
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap_or_else(|e| panic!("{origin}: cannot run {entry:?}: {e}"))
}

/// The umask and the arguments `veeam-siem` receives from `entry` + `args`.
fn observe_entrypoint(origin: &str, entry: &[String], args: &[String]) -> (String, Vec<String>) {
    let bin = stand_in();
    let out = run_deployed(origin, entry, args, bin.path());
    assert!(
        out.status.success(),
        "{origin}: {entry:?} did not run veeam-siem: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = stdout.lines().map(str::to_string);
    let umask = lines.next().unwrap_or_default();
    (umask, lines.collect())
}

#[test]
fn daemon_runs_under_a_restrictive_umask_everywhere() {
    let instructions = dockerfile_instructions(&read("deploy/Dockerfile"));
    let last = |keyword: &str| {
        instructions
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, a)| words(a))
            .unwrap_or_else(|| panic!("the Dockerfile has no {keyword}"))
    };
    let cmd = last("CMD");
    let (umask, args) = observe_entrypoint("Dockerfile ENTRYPOINT", &last("ENTRYPOINT"), &cmd);
    assert_eq!(
        umask, UMASK,
        "the image's entrypoint must set umask {UMASK}"
    );
    assert_eq!(
        args, cmd,
        "the image's entrypoint must pass the CMD through"
    );

    let manifests = manifests();
    let daemon = container(pod_spec(&manifests), DAEMON);
    let strings = |y: &Yaml| -> Vec<String> {
        list(y)
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let command = strings(&daemon["command"]);
    assert!(
        !command.is_empty(),
        "the Deployment must spell out the command that sets the umask (Kubernetes has no umask setting)"
    );
    let pod_args = strings(&daemon["args"]);
    let (umask, args) = observe_entrypoint("Deployment command", &command, &pod_args);
    assert_eq!(
        umask, UMASK,
        "the Deployment's command must set umask {UMASK}"
    );
    assert_eq!(
        args, pod_args,
        "the Deployment's command must pass its args through"
    );

    let unit = read("deploy/veeam-siem.service");
    assert!(
        unit.lines().any(|l| l.trim() == format!("UMask={UMASK}")),
        "the systemd unit must set UMask={UMASK}"
    );
}

/// Run the binary with a deployed command line whose `--config` points at a file that does
/// not exist: getting as far as reading the config proves the CLI accepted the rest.
fn assert_cli_accepts(origin: &str, args: &[String]) {
    assert_entry_accepts(origin, &[], args);
}

/// [`assert_cli_accepts`] through a deployed entrypoint (empty: the binary itself).
fn assert_entry_accepts(origin: &str, entry: &[String], args: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let mut args = args.to_vec();
    let at = args
        .iter()
        .position(|a| a == "--config")
        .unwrap_or_else(|| panic!("{origin}: no --config in {args:?}"));
    assert!(at + 1 < args.len(), "{origin}: --config without a value");
    args[at + 1] = missing.display().to_string();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_veeam-siem"));
    let out = if entry.is_empty() {
        Command::new(&binary).args(&args).output().unwrap()
    } else {
        // The built binary is named `veeam-siem`, as in the image.
        run_deployed(origin, entry, &args, binary.parent().unwrap())
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{origin}: {args:?}: {stderr}");
    assert!(
        stderr.contains("cannot read config file") && stderr.contains("absent.toml"),
        "{origin}: {args:?} was not accepted by the CLI: {stderr}"
    );
}

#[test]
fn deployed_command_lines_are_accepted_by_the_cli() {
    let instructions = dockerfile_instructions(&read("deploy/Dockerfile"));
    let cmd = instructions
        .iter()
        .rev()
        .find(|(k, _)| k == "CMD")
        .map(|(_, a)| words(a))
        .expect("the Dockerfile has no CMD");
    assert_cli_accepts("Dockerfile CMD", &cmd);
    let entry = instructions
        .iter()
        .rev()
        .find(|(k, _)| k == "ENTRYPOINT")
        .map(|(_, a)| words(a))
        .expect("the Dockerfile has no ENTRYPOINT");
    assert_entry_accepts("Dockerfile ENTRYPOINT + CMD", &entry, &cmd);

    let manifests = manifests();
    let daemon = container(pod_spec(&manifests), DAEMON);
    let args: Vec<String> = list(&daemon["args"])
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    if daemon["command"].is_badvalue() {
        if !args.is_empty() {
            assert_cli_accepts("Deployment args", &args);
        }
    } else {
        let command: Vec<String> = list(&daemon["command"])
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_entry_accepts("Deployment command + args", &command, &args);
    }

    let unit = read("deploy/veeam-siem.service");
    let exec: Vec<String> = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .expect("the unit has no ExecStart")
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_cli_accepts("systemd ExecStart", &exec);
}

// ---------------------------------------------------------------------------------------
// systemd

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(tool) = find_tool("systemd-analyze") else {
        eprintln!(
            "skipped: systemd-analyze is not installed, the units in deploy/ were not verified"
        );
        return;
    };
    // `verify` checks that ExecStart's binary exists: point it at the one just built.
    let binary = env!("CARGO_BIN_EXE_veeam-siem");
    let dir = tempfile::tempdir().unwrap();
    let units = [
        "veeam-siem.service",
        "veeam-siem-verify.service",
        "veeam-siem-verify.timer",
    ];
    for name in units {
        let unit = read(&format!("deploy/{name}"));
        let mut replaced = 0;
        let text: String = unit
            .lines()
            .map(|line| match line.strip_prefix("ExecStart=") {
                Some(command) => {
                    replaced += 1;
                    let args = command.split_once(' ').map_or("", |(_, rest)| rest);
                    format!("ExecStart={binary} {args}\n")
                }
                None => format!("{line}\n"),
            })
            .collect();
        let expected = usize::from(name.ends_with(".service"));
        assert_eq!(
            replaced, expected,
            "{name}: expected {expected} ExecStart line"
        );
        std::fs::write(dir.path().join(name), text).unwrap();
    }

    let out = Command::new(&tool)
        .arg("verify")
        .args(units.iter().map(|name| dir.path().join(name)))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed ({}):\n{report}",
        out.status
    );
    // systemd ignores a misspelt key or a bad value with a warning and exits 0; a unit that
    // only loads by ignoring a line does not do what it says, so any remark on it fails.
    let remarks: Vec<&str> = report
        .lines()
        .filter(|line| line.contains("veeam-siem.service") || line.contains("veeam-siem-verify."))
        .collect();
    assert!(
        remarks.is_empty(),
        "systemd-analyze verify has remarks on the units:\n{}",
        remarks.join("\n")
    );
}

/// The `Key=value` settings of a unit file, in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The verify unit reads the daemon's archive as the daemon's dynamic user: the same user
/// name (the daemon's `User=`, or its unit name when unset), the same `StateDirectory=`
/// and mode (which is how a unit reaches `/var/lib/private/<dir>`), read-only there, and
/// the archive path of `ExecStart` inside that directory.
#[test]
fn the_verify_unit_shares_the_daemons_dynamic_user_and_state_directory() {
    let daemon = unit_settings(&read("deploy/veeam-siem.service"));
    let verify = unit_settings(&read("deploy/veeam-siem-verify.service"));
    assert_eq!(setting(&daemon, "DynamicUser"), Some("yes"));
    assert_eq!(setting(&verify, "DynamicUser"), Some("yes"));
    let daemon_user = setting(&daemon, "User").unwrap_or("veeam-siem");
    assert_eq!(
        setting(&verify, "User"),
        Some(daemon_user),
        "the verify unit must name the daemon's dynamic user"
    );
    assert_eq!(setting(&verify, "Group"), setting(&daemon, "Group"));
    let state = setting(&daemon, "StateDirectory").expect("the daemon has a StateDirectory");
    assert_eq!(setting(&verify, "StateDirectory"), Some(state));
    assert_eq!(
        setting(&verify, "StateDirectoryMode"),
        setting(&daemon, "StateDirectoryMode"),
        "a different mode would be applied to the daemon's directory on every verify run"
    );
    let read_only: Vec<&str> = verify
        .iter()
        .filter(|(k, _)| k == "ReadOnlyPaths")
        .flat_map(|(_, v)| v.split_whitespace())
        .collect();
    assert!(
        read_only.contains(&format!("/var/lib/private/{state}").as_str()),
        "the state directory must be read-only in the verify unit: {read_only:?}"
    );
    assert!(setting(&verify, "ReadWritePaths").is_none());
    let exec = setting(&verify, "ExecStart").expect("ExecStart");
    let archive = exec.split_whitespace().nth(2).expect("verify PATH");
    assert!(
        archive.starts_with(&format!("/var/lib/{state}/")),
        "the archive {archive} is not in the state directory"
    );
}

/// The archive's verify unit runs a command the CLI accepts: with the archive and key paths
/// swapped for missing ones, `verify` exits 2 (a usage error) naming the key file, not a
/// clap error about the arguments.
#[test]
fn the_verify_timer_runs_a_valid_verify_command() {
    let unit = read("deploy/veeam-siem-verify.service");
    assert!(read("deploy/veeam-siem-verify.timer").contains("OnCalendar="));
    let exec: Vec<String> = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .expect("the verify unit has no ExecStart")
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(exec.first().map(String::as_str), Some("verify"), "{exec:?}");
    let dir = tempfile::tempdir().unwrap();
    let missing_key = dir.path().join("absent.pub.pem");
    let mut args = exec.clone();
    let at = args
        .iter()
        .position(|a| a == "--public-key")
        .expect("--public-key");
    args[at + 1] = missing_key.display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_veeam-siem"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains("absent.pub.pem"), "{stderr}");
}
