//! Checkers of SIEM content, written for the tests of `examples/siem/` (`siem_content`):
//! [`kql`] checks the Microsoft Sentinel content (template, analytics rules) against the
//! `azure_monitor_logs` sink and runs the rules with a small KQL evaluator (its tests live
//! there too); [`sigma`] loads, lints and evaluates the Sigma rules (the subset of the language they
//! use, correlations included); [`spl`] parses the Splunk app's `.conf` files and analyzes
//! the fields each SPL search reads. Both check field names against the output schema's
//! property paths, which live here ([`schema_paths`]).
//!
//! They are tools, with their own tests of what they accept and reject; what the content
//! must satisfy is asserted in `siem_content`.

pub mod kql;
pub mod sigma;
pub mod spl;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn siem_dir() -> PathBuf {
    root().join("examples").join("siem")
}

pub fn splunk_default_dir() -> PathBuf {
    siem_dir().join("splunk").join("veeam_siem").join("default")
}

// ---------------------------------------------------------------------------------------
// The schema: every property path, and whether its value is an array

/// Leaf property paths of the output schema (`event.action`, `veeam.restore_session.id`,
/// ...), each with whether its value is an array. Walks `properties` through `$ref`,
/// `allOf`, `anyOf`, `oneOf`, `then`/`else` and array `items`; objects are prefixes, not
/// fields, and a property whose schema is `false` (forbidden) does not count.
pub fn schema_paths() -> &'static BTreeMap<String, bool> {
    static PATHS: OnceLock<BTreeMap<String, bool>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let path = root().join("schemas").join("event.schema.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let mut out = BTreeMap::new();
        walk_schema(&schema, &schema, "", &mut out, 0);
        out
    })
}

fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    reference.strip_prefix('#').and_then(|p| root.pointer(p))
}

fn is_array_schema(schema: &Value, root: &Value) -> bool {
    let Value::Object(node) = schema else {
        return false;
    };
    let typed = match node.get("type") {
        Some(Value::String(t)) => t == "array",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "array"),
        _ => false,
    };
    typed
        || node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| resolve_ref(root, r))
            .is_some_and(|target| is_array_schema(target, root))
}

fn declares_value(schema: &Value) -> bool {
    let Value::Object(node) = schema else {
        return false;
    };
    [
        "type", "const", "enum", "$ref", "anyOf", "oneOf", "allOf", "format", "pattern", "items",
    ]
    .iter()
    .any(|k| node.contains_key(*k))
}

fn is_object_schema(schema: &Value, root: &Value) -> bool {
    let Value::Object(node) = schema else {
        return false;
    };
    node.contains_key("properties")
        || node.get("type").and_then(Value::as_str) == Some("object")
        || node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| resolve_ref(root, r))
            .is_some_and(|target| is_object_schema(target, root))
}

fn walk_schema(
    schema: &Value,
    root: &Value,
    prefix: &str,
    out: &mut BTreeMap<String, bool>,
    depth: usize,
) {
    let Value::Object(node) = schema else {
        return;
    };
    assert!(depth < 64, "schema nesting too deep at {prefix}");
    if let Some(target) = node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| resolve_ref(root, r))
    {
        walk_schema(target, root, prefix, out, depth + 1);
    }
    if let Some(Value::Object(props)) = node.get("properties") {
        for (name, sub) in props {
            if sub == &Value::Bool(false) {
                continue;
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            // A branch such as `then: {veeam: {required: [...]}}` constrains a property
            // defined elsewhere; only a schema that says what the value is defines a field.
            if declares_value(sub) && !is_object_schema(sub, root) {
                let array = is_array_schema(sub, root);
                let entry = out.entry(path.clone()).or_insert(false);
                *entry |= array;
            }
            walk_schema(sub, root, &path, out, depth + 1);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = node.get(key) {
            for branch in branches {
                walk_schema(branch, root, prefix, out, depth + 1);
            }
        }
    }
    for key in ["then", "else", "items"] {
        if let Some(sub) = node.get(key) {
            walk_schema(sub, root, prefix, out, depth + 1);
        }
    }
}

pub fn is_schema_field(name: &str) -> bool {
    schema_paths().contains_key(name)
}

#[test]
fn schema_walk_finds_nested_ref_and_array_paths() {
    let paths = schema_paths();
    for expected in [
        "@timestamp",
        "event.action",
        "veeam.restore_session.initiated_by_is_organization",
        "veeam.log.object_name",
        "source.ip",
        "client.address",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing: {paths:?}"
        );
    }
    assert_eq!(paths.get("event.category"), Some(&true));
    assert_eq!(paths.get("related.user"), Some(&true));
    assert_eq!(paths.get("event.action"), Some(&false));
    for object in ["event", "veeam", "veeam.restore_session", "related"] {
        assert!(
            !paths.contains_key(object),
            "{object} is an object, not a field"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Wildcards

/// Wildcards as Sigma values and Splunk field names use them: `*` any run, `?` one
/// character, `\` escapes the next character.
pub fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Lit(char),
    }
    let fold = |c: char| {
        if case_insensitive {
            c.to_lowercase().next().unwrap_or(c)
        } else {
            c
        }
    };
    let mut parts = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        parts.push(match c {
            '*' => P::Any,
            '?' => P::One,
            '\\' => P::Lit(fold(chars.next().unwrap_or('\\'))),
            other => P::Lit(fold(other)),
        });
    }
    let text: Vec<char> = text.chars().map(fold).collect();
    // Classic DP over (pattern position, text position).
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for part in &parts {
        let mut next = vec![false; text.len() + 1];
        for (i, &ok) in reachable.iter().enumerate() {
            if !ok {
                continue;
            }
            match part {
                P::Any => {
                    for slot in next.iter_mut().skip(i) {
                        *slot = true;
                    }
                }
                P::One => {
                    if i < text.len() {
                        next[i + 1] = true;
                    }
                }
                P::Lit(c) => {
                    if text.get(i) == Some(c) {
                        next[i + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[text.len()]
}
