//! The SIEM content in `examples/siem/` against the output contract and the simulator.
//!
//! - Sigma rules (`examples/siem/sigma/*.yml`): parse as YAML, carry the keys a Sigma rule
//!   needs, and use only fields of `schemas/event.schema.json` (in `detection`, `fields`
//!   and correlation `group-by`).
//! - Splunk searches (`examples/siem/splunk/veeam_siem/default/savedsearches.conf`, with the
//!   macros of `macros.conf` expanded): every field a search reads is a schema path as
//!   Splunk extracts it from the JSON event (`a.b.c`, arrays as `a.b{}`), one of the indexed
//!   fields the HEC sink sends, a Splunk default field, or one the search created itself
//!   (and still has: fields dropped by `stats` are errors too).
//! - Behaviour: the rules are evaluated, by a small evaluator for the subset of Sigma they
//!   use, against the events `veeam-siem demo` prints (and, for the mass-restore
//!   correlation, against a simulator configured with bigger sessions); each single-event
//!   rule matches some events but not all of its dataset, and agrees with the same logic
//!   written directly in Rust.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn siem_dir() -> PathBuf {
    root().join("examples").join("siem")
}

fn splunk_default_dir() -> PathBuf {
    siem_dir().join("splunk").join("veeam_siem").join("default")
}

// ---------------------------------------------------------------------------------------
// The schema: every property path, and whether its value is an array

/// Leaf property paths of the output schema (`event.action`, `veeam.restore_session.id`,
/// ...), each with whether its value is an array. Walks `properties` through `$ref`,
/// `allOf`, `anyOf`, `oneOf`, `then`/`else` and array `items`; objects are prefixes, not
/// fields, and a property whose schema is `false` (forbidden) does not count.
fn schema_paths() -> &'static BTreeMap<String, bool> {
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

fn is_schema_field(name: &str) -> bool {
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
// Sigma: loading and structure

#[derive(Debug)]
struct SigmaDoc {
    file: String,
    doc: Yaml,
}

impl SigmaDoc {
    fn title(&self) -> &str {
        self.doc["title"].as_str().unwrap_or("(untitled)")
    }
    fn is_correlation(&self) -> bool {
        !self.doc["correlation"].is_badvalue()
    }
}

fn sigma_docs() -> &'static Vec<SigmaDoc> {
    static DOCS: OnceLock<Vec<SigmaDoc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let dir = siem_dir().join("sigma");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
            .collect();
        files.sort();
        let mut docs = Vec::new();
        for path in files {
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
            let loaded = YamlLoader::load_from_str(&text)
                .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
            for doc in loaded {
                docs.push(SigmaDoc {
                    file: file.clone(),
                    doc,
                });
            }
        }
        docs
    })
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_iso_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// `15m`, `1h`, `30s`, `2d` → seconds.
fn timespan_secs(s: &str) -> Option<i64> {
    let (number, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = number.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(n * unit)
}

fn strings(y: &Yaml) -> Option<Vec<&str>> {
    y.as_vec()?.iter().map(Yaml::as_str).collect()
}

const MODIFIERS: [&str; 5] = ["contains", "startswith", "endswith", "exists", "all"];

/// Split `field|mod|mod` into the field and its modifiers.
fn split_key(key: &str) -> (&str, Vec<&str>) {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    (field, parts.collect())
}

/// Problems with one rule's structure and field names.
fn lint_rule(doc: &SigmaDoc, names: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let d = &doc.doc;
    let mut problem = |msg: String| problems.push(format!("{} / {}: {msg}", doc.file, doc.title()));
    if d.as_hash().is_none() {
        problem("a rule is a YAML mapping".into());
        return problems;
    }
    for key in [
        "title",
        "id",
        "status",
        "description",
        "author",
        "date",
        "level",
    ] {
        if d[key].as_str().is_none_or(|s| s.trim().is_empty()) {
            problem(format!("`{key}` is required (a non-empty string)"));
        }
    }
    if let Some(title) = d["title"].as_str()
        && title.len() > 256
    {
        problem("`title` is at most 256 characters".into());
    }
    if let Some(id) = d["id"].as_str()
        && !is_uuid(id)
    {
        problem(format!("`id` {id} is not a UUID"));
    }
    if let Some(status) = d["status"].as_str()
        && ![
            "stable",
            "test",
            "experimental",
            "deprecated",
            "unsupported",
        ]
        .contains(&status)
    {
        problem(format!("`status` {status} is not a Sigma status"));
    }
    if let Some(level) = d["level"].as_str()
        && !["informational", "low", "medium", "high", "critical"].contains(&level)
    {
        problem(format!("`level` {level} is not a Sigma level"));
    }
    if let Some(date) = d["date"].as_str()
        && !is_iso_date(date)
    {
        problem(format!("`date` {date} is not YYYY-MM-DD"));
    }
    match strings(&d["falsepositives"]) {
        Some(fp) if !fp.is_empty() => {}
        _ => problem("`falsepositives` must be a non-empty list of strings".into()),
    }
    match strings(&d["tags"]) {
        Some(tags) if !tags.is_empty() => {
            for tag in tags {
                let ok = tag.split_once('.').is_some_and(|(ns, rest)| {
                    !ns.is_empty()
                        && !rest.is_empty()
                        && tag.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)
                        })
                });
                if !ok {
                    problem(format!("tag `{tag}` is not namespace.value in lower case"));
                }
                if let Some(technique) = tag.strip_prefix("attack.t") {
                    let ok = technique.len() >= 4
                        && technique
                            .split('.')
                            .all(|p| p.chars().all(|c| c.is_ascii_digit()));
                    if !ok {
                        problem(format!("ATT&CK technique tag `{tag}` is malformed"));
                    }
                }
            }
        }
        _ => problem("`tags` must be a non-empty list of strings".into()),
    }

    if doc.is_correlation() {
        let c = &d["correlation"];
        for key in ["detection", "logsource"] {
            if !d[key].is_badvalue() {
                problem(format!("a correlation rule has no `{key}`"));
            }
        }
        if c["type"].as_str() != Some("event_count") {
            problem("only `event_count` correlations are used (and evaluated) here".into());
        }
        match strings(&c["rules"]) {
            Some(rules) if !rules.is_empty() => {
                for rule in rules {
                    if !names.contains(rule) {
                        problem(format!("correlation refers to unknown rule `{rule}`"));
                    }
                }
            }
            _ => problem("`correlation.rules` must list rule names or ids".into()),
        }
        match strings(&c["group-by"]) {
            Some(fields) => {
                for field in fields {
                    if !is_schema_field(field) {
                        problem(format!("group-by field `{field}` is not in the schema"));
                    }
                }
            }
            None => problem("`correlation.group-by` must be a list of fields".into()),
        }
        if c["timespan"].as_str().and_then(timespan_secs).is_none() {
            problem("`correlation.timespan` must be like 15m, 1h".into());
        }
        match c["condition"].as_hash() {
            Some(cond) if !cond.is_empty() => {
                for (op, value) in cond {
                    let known = op
                        .as_str()
                        .is_some_and(|o| ["gte", "gt", "lte", "lt", "eq"].contains(&o));
                    if !known || value.as_i64().is_none() {
                        problem(format!("correlation condition {op:?}: {value:?}"));
                    }
                }
            }
            _ => problem("`correlation.condition` must be e.g. {gte: 50}".into()),
        }
        return problems;
    }

    if d["logsource"]["product"].as_str() != Some("veeam") {
        problem("`logsource.product` must be `veeam`".into());
    }
    let service = d["logsource"]["service"].as_str().unwrap_or_default();
    let dataset = match service {
        "vb365" => "veeam.vbo_restore",
        "vdc" => "veeam.vdc_job_log",
        other => {
            problem(format!("`logsource.service` `{other}` is not vb365 or vdc"));
            ""
        }
    };
    match strings(&d["fields"]) {
        Some(fields) if !fields.is_empty() => {
            for field in fields {
                if !is_schema_field(field) {
                    problem(format!("`fields` entry `{field}` is not in the schema"));
                }
            }
        }
        _ => problem("`fields` must be a non-empty list of field names".into()),
    }
    let Some(detection) = d["detection"].as_hash() else {
        problem("`detection` must be a mapping".into());
        return problems;
    };
    let mut identifiers = BTreeSet::new();
    let mut selects_dataset = false;
    for (key, search) in detection {
        let Some(key) = key.as_str() else {
            problem(format!("detection key {key:?} is not a string"));
            continue;
        };
        if key == "condition" {
            continue;
        }
        identifiers.insert(key.to_string());
        let maps: Vec<&Yaml> = match search {
            Yaml::Hash(_) => vec![search],
            Yaml::Array(items) if items.iter().all(|i| i.as_hash().is_some()) => {
                items.iter().collect()
            }
            _ => {
                problem(format!(
                    "search `{key}` must be a map of fields (or a list of maps); keyword searches are not used"
                ));
                continue;
            }
        };
        for map in maps {
            for (field_key, value) in map.as_hash().into_iter().flatten() {
                let Some(field_key) = field_key.as_str() else {
                    problem(format!("`{key}`: field {field_key:?} is not a string"));
                    continue;
                };
                let (field, modifiers) = split_key(field_key);
                if !is_schema_field(field) {
                    problem(format!("`{key}`: field `{field}` is not in the schema"));
                }
                for m in &modifiers {
                    if !MODIFIERS.contains(m) {
                        problem(format!(
                            "`{key}`: modifier `{m}` is not one the test evaluator implements"
                        ));
                    }
                }
                if modifiers.contains(&"exists") && value.as_bool().is_none() {
                    problem(format!("`{key}`: `{field}|exists` takes true or false"));
                }
                let scalars: Vec<&Yaml> = match value {
                    Yaml::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for v in &scalars {
                    if !matches!(
                        v,
                        Yaml::String(_) | Yaml::Integer(_) | Yaml::Boolean(_) | Yaml::Null
                    ) {
                        problem(format!("`{key}`: value {v:?} of `{field}` is not a scalar"));
                    }
                }
                if field == "event.dataset" && !key.starts_with("filter") {
                    selects_dataset = true;
                    if scalars.iter().any(|v| v.as_str() != Some(dataset)) {
                        problem(format!(
                            "`{key}`: service {service} means event.dataset {dataset}"
                        ));
                    }
                }
            }
        }
    }
    if !selects_dataset {
        problem("select `event.dataset` so the rule cannot match the other source".into());
    }
    match d["detection"]["condition"].as_str() {
        Some(text) => match parse_condition(text) {
            Ok(cond) => {
                let mut used = BTreeSet::new();
                for pattern in cond.identifiers() {
                    let hits: Vec<&String> = identifiers
                        .iter()
                        .filter(|i| wildcard_match(&pattern, i, false))
                        .collect();
                    if hits.is_empty() {
                        problem(format!(
                            "condition names `{pattern}`, which matches no search"
                        ));
                    }
                    used.extend(hits.into_iter().cloned());
                }
                for unused in identifiers.difference(&used) {
                    problem(format!("search `{unused}` is not used by the condition"));
                }
            }
            Err(e) => problem(format!("condition `{text}`: {e}")),
        },
        None => problem("`detection.condition` must be one string".into()),
    }
    problems
}

#[test]
fn sigma_rules_are_well_formed_and_use_schema_fields() {
    let docs = sigma_docs();
    assert!(
        docs.len() >= 5,
        "expected the Sigma rules in examples/siem/sigma, found {}",
        docs.len()
    );
    let mut ids = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for doc in docs {
        if let Some(id) = doc.doc["id"].as_str()
            && !ids.insert(id.to_string())
        {
            problems.push(format!("{}: id {id} is used twice", doc.file));
        }
        if let Some(name) = doc.doc["name"].as_str()
            && !names.insert(name.to_string())
        {
            problems.push(format!("{}: name {name} is used twice", doc.file));
        }
    }
    let referable: BTreeSet<String> = ids.union(&names).cloned().collect();
    for doc in docs {
        problems.extend(lint_rule(doc, &referable));
    }
    assert!(
        problems.is_empty(),
        "Sigma problems:\n{}",
        problems.join("\n")
    );
    assert!(
        docs.iter().any(SigmaDoc::is_correlation),
        "the mass-restore detection is a correlation rule"
    );
}

// ---------------------------------------------------------------------------------------
// Sigma: condition language and matching (the subset the rules use)

#[derive(Debug, Clone)]
enum Cond {
    Id(String),
    OneOf(String),
    AllOf(String),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

impl Cond {
    /// Identifier patterns the condition refers to (`them` is `*`).
    fn identifiers(&self) -> Vec<String> {
        match self {
            Cond::Id(i) | Cond::OneOf(i) | Cond::AllOf(i) => vec![i.clone()],
            Cond::Not(c) => c.identifiers(),
            Cond::And(cs) | Cond::Or(cs) => cs.iter().flat_map(Cond::identifiers).collect(),
        }
    }

    fn eval(&self, searches: &BTreeMap<String, bool>) -> bool {
        let matching = |pattern: &str| -> Vec<bool> {
            searches
                .iter()
                .filter(|(name, _)| wildcard_match(pattern, name, false))
                .map(|(_, hit)| *hit)
                .collect()
        };
        match self {
            Cond::Id(i) => searches.get(i).copied().unwrap_or(false),
            Cond::OneOf(p) => matching(p).contains(&true),
            Cond::AllOf(p) => {
                let hits = matching(p);
                !hits.is_empty() && !hits.contains(&false)
            }
            Cond::Not(c) => !c.eval(searches),
            Cond::And(cs) => cs.iter().all(|c| c.eval(searches)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(searches)),
        }
    }
}

fn parse_condition(text: &str) -> Result<Cond, String> {
    let spaced = text.replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut pos = 0;
    let cond = parse_or(&tokens, &mut pos)?;
    if pos != tokens.len() {
        return Err(format!("unexpected `{}`", tokens[pos]));
    }
    Ok(cond)
}

fn parse_or(t: &[&str], pos: &mut usize) -> Result<Cond, String> {
    let mut items = vec![parse_and(t, pos)?];
    while t.get(*pos).is_some_and(|w| w.eq_ignore_ascii_case("or")) {
        *pos += 1;
        items.push(parse_and(t, pos)?);
    }
    Ok(if items.len() == 1 {
        items.remove(0)
    } else {
        Cond::Or(items)
    })
}

fn parse_and(t: &[&str], pos: &mut usize) -> Result<Cond, String> {
    let mut items = vec![parse_not(t, pos)?];
    while t.get(*pos).is_some_and(|w| w.eq_ignore_ascii_case("and")) {
        *pos += 1;
        items.push(parse_not(t, pos)?);
    }
    Ok(if items.len() == 1 {
        items.remove(0)
    } else {
        Cond::And(items)
    })
}

fn parse_not(t: &[&str], pos: &mut usize) -> Result<Cond, String> {
    if t.get(*pos).is_some_and(|w| w.eq_ignore_ascii_case("not")) {
        *pos += 1;
        return Ok(Cond::Not(Box::new(parse_not(t, pos)?)));
    }
    parse_atom(t, pos)
}

fn parse_atom(t: &[&str], pos: &mut usize) -> Result<Cond, String> {
    let Some(&word) = t.get(*pos) else {
        return Err("condition ends too early".into());
    };
    *pos += 1;
    if word == "(" {
        let inner = parse_or(t, pos)?;
        if t.get(*pos) != Some(&")") {
            return Err("missing `)`".into());
        }
        *pos += 1;
        return Ok(inner);
    }
    let lower = word.to_ascii_lowercase();
    if matches!(lower.as_str(), "1" | "any" | "all")
        && t.get(*pos).is_some_and(|w| w.eq_ignore_ascii_case("of"))
    {
        let Some(&target) = t.get(*pos + 1) else {
            return Err(format!("`{word} of` needs a pattern or `them`"));
        };
        *pos += 2;
        let pattern = if target.eq_ignore_ascii_case("them") {
            "*".to_string()
        } else {
            target.to_string()
        };
        return Ok(if lower == "all" {
            Cond::AllOf(pattern)
        } else {
            Cond::OneOf(pattern)
        });
    }
    if matches!(lower.as_str(), "and" | "or" | "not" | ")" | "of") {
        return Err(format!("unexpected `{word}`"));
    }
    let valid = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*');
    if !valid {
        return Err(format!("`{word}` is not a search identifier"));
    }
    Ok(Cond::Id(word.to_string()))
}

/// Sigma wildcards: `*` any run, `?` one character, `\` escapes the next character.
fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
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

/// Escape Sigma wildcard characters in a literal.
fn escape_wildcards(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '*' | '?' | '\\' => vec!['\\', c],
            other => vec![other],
        })
        .collect()
}

/// The values at a dotted path (arrays are flattened; absent → empty).
fn values_at<'a>(event: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![event];
    for part in path.split('.') {
        let mut next = Vec::new();
        for value in current {
            match value.get(part) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(Value::Null) | None => {}
                Some(v) => next.push(v),
            }
        }
        current = next;
    }
    current
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn scalar_matches(actual: &Value, expected: &Yaml, modifiers: &[&str]) -> bool {
    match expected {
        Yaml::Boolean(b) => {
            actual.as_bool() == Some(*b)
                || actual
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(&b.to_string()))
        }
        Yaml::Integer(i) => actual.as_i64() == Some(*i) || text_of(actual) == i.to_string(),
        Yaml::String(s) => {
            let pattern = if modifiers.contains(&"contains") {
                format!("*{s}*")
            } else if modifiers.contains(&"startswith") {
                format!("{s}*")
            } else if modifiers.contains(&"endswith") {
                format!("*{s}")
            } else {
                s.clone()
            };
            wildcard_match(&pattern, &text_of(actual), true)
        }
        _ => false,
    }
}

fn field_matches(field_key: &str, expected: &Yaml, event: &Value) -> bool {
    let (field, modifiers) = split_key(field_key);
    let actual = values_at(event, field);
    if modifiers.contains(&"exists") {
        return expected.as_bool() == Some(!actual.is_empty());
    }
    let expected: Vec<&Yaml> = match expected {
        Yaml::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let one = |exp: &&Yaml| match exp {
        Yaml::Null => actual.is_empty(),
        _ => actual.iter().any(|a| scalar_matches(a, exp, &modifiers)),
    };
    if modifiers.contains(&"all") {
        expected.iter().all(one)
    } else {
        expected.iter().any(one)
    }
}

fn search_matches(search: &Yaml, event: &Value) -> bool {
    match search {
        Yaml::Hash(map) => map.iter().all(|(k, v)| {
            k.as_str()
                .is_some_and(|field_key| field_matches(field_key, v, event))
        }),
        Yaml::Array(items) => items.iter().any(|map| search_matches(map, event)),
        _ => false,
    }
}

/// A single-event Sigma rule, ready to evaluate.
struct Rule<'a> {
    doc: &'a SigmaDoc,
    condition: Cond,
}

impl<'a> Rule<'a> {
    fn new(doc: &'a SigmaDoc) -> Rule<'a> {
        let text = doc.doc["detection"]["condition"].as_str().unwrap_or("");
        let condition = parse_condition(text)
            .unwrap_or_else(|e| panic!("{}: condition `{text}`: {e}", doc.file));
        Rule { doc, condition }
    }

    fn matches(&self, event: &Value) -> bool {
        let searches: BTreeMap<String, bool> = self.doc.doc["detection"]
            .as_hash()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let k = k.as_str()?;
                (k != "condition").then(|| (k.to_string(), search_matches(v, event)))
            })
            .collect();
        self.condition.eval(&searches)
    }
}

fn rule_by_title(title: &str) -> Rule<'static> {
    let doc = sigma_docs()
        .iter()
        .find(|d| d.title() == title)
        .unwrap_or_else(|| panic!("no Sigma rule titled `{title}`"));
    Rule::new(doc)
}

fn single_event_rules() -> Vec<Rule<'static>> {
    sigma_docs()
        .iter()
        .filter(|d| !d.is_correlation())
        .map(Rule::new)
        .collect()
}

#[test]
fn evaluator_understands_the_subset_it_claims() -> TestResult {
    let event: Value = serde_json::from_str(
        r#"{"@timestamp":"2025-03-04T21:05:40.100Z","event":{"action":"item-exported","category":["file"]},
            "user":{"name":"alice"},"veeam":{"restore_session":{"initiated_by_is_organization":true}}}"#,
    )?;
    let yaml = |s: &str| YamlLoader::load_from_str(s).map(|mut d| d.remove(0));
    assert!(search_matches(
        &yaml("event.action|startswith: ITEM-")?,
        &event
    ));
    assert!(search_matches(&yaml("event.category: file")?, &event));
    assert!(search_matches(
        &yaml("veeam.restore_session.initiated_by_is_organization: true")?,
        &event
    ));
    assert!(search_matches(
        &yaml("client.address|exists: false")?,
        &event
    ));
    assert!(!search_matches(&yaml("user.name|exists: false")?, &event));
    assert!(search_matches(
        &yaml("'@timestamp|contains': ['T07:', 'T21:']")?,
        &event
    ));
    assert!(!search_matches(
        &yaml("'@timestamp|contains|all': ['T07:', 'T21:']")?,
        &event
    ));
    assert!(search_matches(&yaml("event.action: 'item-*ed'")?, &event));
    assert!(!search_matches(&yaml("event.action: 'item-\\*'")?, &event));
    assert!(wildcard_match(&escape_wildcards("a*b"), "a*b", true));
    assert!(!wildcard_match(&escape_wildcards("a*b"), "axxb", true));

    let cond = parse_condition("sel and 1 of selection_* and not (filter or other)")?;
    let run = |pairs: &[(&str, bool)]| {
        let map: BTreeMap<String, bool> = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        cond.eval(&map)
    };
    let base = [
        ("sel", true),
        ("selection_a", false),
        ("selection_b", true),
        ("filter", false),
        ("other", false),
    ];
    assert!(run(&base));
    let mut filtered = base;
    filtered[3].1 = true;
    assert!(!run(&filtered));
    let mut none = base;
    none[2].1 = false;
    assert!(!run(&none));
    assert!(parse_condition("sel and").is_err());
    assert!(parse_condition("(sel").is_err());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Events from the simulator

/// Run a command to completion, reading its output while it runs; kill it after `limit`.
fn run_with_timeout(mut command: Command, limit: Duration) -> std::io::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "{command:?} did not finish within {limit:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn parse_ndjson(output: &Output, what: &str) -> Vec<Value> {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {l}")))
        .collect()
}

/// The events `veeam-siem demo` prints (VB365 restores and VDC job logs), once per test run.
fn demo_events() -> &'static Vec<Value> {
    static EVENTS: OnceLock<Vec<Value>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_veeam-siem"));
        command.arg("demo").env("RUST_LOG", "warn");
        let output = run_with_timeout(command, Duration::from_secs(180))
            .unwrap_or_else(|e| panic!("veeam-siem demo: {e}"));
        let events = parse_ndjson(&output, "veeam-siem demo");
        assert!(
            events.len() > 50,
            "the demo printed only {} events",
            events.len()
        );
        events
    })
}

fn str_at<'a>(event: &'a Value, path: &str) -> Option<&'a str> {
    values_at(event, path).first().and_then(|v| v.as_str())
}

fn dataset(event: &Value) -> &str {
    str_at(event, "event.dataset").unwrap_or_default()
}

fn timestamp(event: &Value) -> DateTime<Utc> {
    let text = str_at(event, "@timestamp").unwrap_or_default();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .unwrap_or_else(|e| panic!("@timestamp {text}: {e}"))
}

fn is_item_action(event: &Value) -> bool {
    dataset(event) == "veeam.vbo_restore"
        && str_at(event, "event.action").is_some_and(|a| a.starts_with("item-"))
}

/// Indexes of the events a rule matches.
fn matched(rule: &Rule, events: &[Value]) -> BTreeSet<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| rule.matches(e))
        .map(|(i, _)| i)
        .collect()
}

fn expected(events: &[Value], predicate: impl Fn(&Value) -> bool) -> BTreeSet<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| predicate(e))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn every_single_event_rule_matches_some_but_not_all_demo_events() {
    let events = demo_events();
    for rule in single_event_rules() {
        let service = rule.doc.doc["logsource"]["service"].as_str().unwrap_or("");
        let own = if service == "vdc" {
            "veeam.vdc_job_log"
        } else {
            "veeam.vbo_restore"
        };
        let of_dataset = events.iter().filter(|e| dataset(e) == own).count();
        let hits = matched(&rule, events);
        assert!(
            !hits.is_empty(),
            "{} matches none of the {} demo events",
            rule.doc.title(),
            events.len()
        );
        assert!(
            hits.len() < of_dataset,
            "{} matches all {of_dataset} {own} demo events",
            rule.doc.title()
        );
        assert!(
            hits.iter().all(|&i| dataset(&events[i]) == own),
            "{} matches events of another dataset",
            rule.doc.title()
        );
    }
}

#[test]
fn unattributed_restore_rule_is_exactly_the_organization_initiated_items() {
    let events = demo_events();
    let rule = rule_by_title("VB365 Restore Not Attributed to a Named User");
    let by_organization = |e: &Value| {
        values_at(e, "veeam.restore_session.initiated_by_is_organization")
            .first()
            .and_then(|v| v.as_bool())
            == Some(true)
    };
    let want = expected(events, |e| {
        is_item_action(e)
            && (by_organization(e)
                || (values_at(e, "user.name").is_empty()
                    && values_at(e, "veeam.restore_session.initiated_by").is_empty()))
    });
    assert_eq!(matched(&rule, events), want);
    // The demo has provider restores, and they carry no user: the schema's rule.
    assert!(
        events
            .iter()
            .any(|e| is_item_action(e) && by_organization(e))
    );
    for e in events.iter().filter(|e| by_organization(e)) {
        assert!(values_at(e, "user.name").is_empty(), "{e}");
        assert!(values_at(e, "related.user").is_empty(), "{e}");
    }
}

/// A numeric macro of macros.conf.
fn macro_number(name: &str) -> i64 {
    let macros = macros();
    let definition = macros
        .get(name)
        .unwrap_or_else(|| panic!("macros.conf has no `{name}`"));
    definition
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("macro `{name}` = `{definition}` is not a number: {e}"))
}

#[test]
fn off_hours_rule_agrees_with_the_hour_of_timestamp_and_the_splunk_macros() {
    let (start, end) = (
        macro_number("veeam_business_hours_start"),
        macro_number("veeam_business_hours_end"),
    );
    assert!((0..24).contains(&start) && (1..=24).contains(&end) && start < end);
    let events = demo_events();
    let rule = rule_by_title("VB365 Restore Outside Business Hours");
    let want = expected(events, |e| {
        let hour = i64::from(timestamp(e).hour());
        is_item_action(e) && (hour < start || hour >= end)
    });
    let hits = matched(&rule, events);
    assert_eq!(
        hits, want,
        "the Sigma hour list and the Splunk business-hours macros ({start}-{end}) disagree"
    );
    assert!(!hits.is_empty());
    assert!(
        events.iter().any(|e| {
            let hour = i64::from(timestamp(e).hour());
            is_item_action(e) && (start..end).contains(&hour)
        }),
        "the demo has restores inside business hours too"
    );
    // The Splunk search also flags weekends; report how many of those the demo has.
    let weekend = events
        .iter()
        .filter(|e| is_item_action(e) && timestamp(e).weekday().number_from_monday() > 5)
        .count();
    eprintln!("demo item events on a weekend (Splunk search only): {weekend}");
}

#[test]
fn vdc_rules_agree_with_the_job_log_fields() {
    let events = demo_events();
    let failed_job = rule_by_title("Veeam Data Cloud Backup Job Session Failed");
    let want = expected(events, |e| {
        dataset(e) == "veeam.vdc_job_log"
            && str_at(e, "event.action") == Some("job-finished")
            && (str_at(e, "event.outcome") == Some("failure")
                || matches!(
                    str_at(e, "veeam.job_session.status"),
                    Some("Failed" | "Error")
                ))
    });
    assert_eq!(matched(&failed_job, events), want);

    let failed_object = rule_by_title("Veeam Data Cloud Object Failed to Back Up");
    let want = expected(events, |e| {
        dataset(e) == "veeam.vdc_job_log"
            && str_at(e, "event.action") == Some("object-processed")
            && str_at(e, "event.outcome") == Some("failure")
    });
    let hits = matched(&failed_object, events);
    assert_eq!(hits, want);
    assert!(
        hits.iter()
            .all(|&i| str_at(&events[i], "veeam.log.object_name").is_some()),
        "failed objects are named"
    );
}

// ---------------------------------------------------------------------------------------
// The mass-restore correlation

struct Correlation {
    base: Rule<'static>,
    group_by: Vec<String>,
    timespan: i64,
    threshold: i64,
}

fn mass_recovery() -> Correlation {
    let doc = sigma_docs()
        .iter()
        .find(|d| d.is_correlation())
        .unwrap_or_else(|| panic!("no correlation rule"));
    let c = &doc.doc["correlation"];
    let base_name = strings(&c["rules"])
        .and_then(|r| r.first().map(|s| s.to_string()))
        .unwrap_or_default();
    let base = sigma_docs()
        .iter()
        .find(|d| {
            d.doc["name"].as_str() == Some(base_name.as_str())
                || d.doc["id"].as_str() == Some(base_name.as_str())
        })
        .unwrap_or_else(|| panic!("no rule named {base_name}"));
    let threshold = c["condition"]["gte"]
        .as_i64()
        .unwrap_or_else(|| panic!("the correlation condition is `gte: N`"));
    Correlation {
        base: Rule::new(base),
        group_by: strings(&c["group-by"])
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect(),
        timespan: c["timespan"].as_str().and_then(timespan_secs).unwrap_or(0),
        threshold,
    }
}

impl Correlation {
    /// Per group: the most base-rule matches inside any window of `timespan` (events
    /// without every group-by field are not grouped, as `stats ... by` drops them).
    fn peaks(&self, events: &[Value]) -> BTreeMap<Vec<String>, i64> {
        let mut groups: BTreeMap<Vec<String>, Vec<i64>> = BTreeMap::new();
        for e in events.iter().filter(|e| self.base.matches(e)) {
            let key: Option<Vec<String>> = self
                .group_by
                .iter()
                .map(|f| values_at(e, f).first().map(|v| text_of(v)))
                .collect();
            if let Some(key) = key {
                groups
                    .entry(key)
                    .or_default()
                    .push(timestamp(e).timestamp_millis());
            }
        }
        groups
            .into_iter()
            .map(|(key, mut times)| {
                times.sort_unstable();
                let mut best = 0;
                let mut first = 0;
                for (last, &t) in times.iter().enumerate() {
                    while t - times[first] > self.timespan * 1000 {
                        first += 1;
                    }
                    best = best.max(last - first + 1);
                }
                (key, best as i64)
            })
            .collect()
    }

    fn firing(&self, events: &[Value]) -> BTreeSet<Vec<String>> {
        self.peaks(events)
            .into_iter()
            .filter(|(_, n)| *n >= self.threshold)
            .map(|(k, _)| k)
            .collect()
    }
}

#[test]
fn mass_recovery_threshold_is_the_same_in_sigma_and_splunk() {
    let correlation = mass_recovery();
    assert_eq!(
        correlation.threshold,
        macro_number("veeam_mass_recovery_items"),
        "Sigma `gte` and the Splunk macro veeam_mass_recovery_items differ"
    );
    assert_eq!(
        correlation.timespan,
        15 * 60,
        "the Splunk search bins by 15m"
    );
    assert_eq!(correlation.group_by, ["client.address"]);
}

#[test]
fn mass_recovery_stays_quiet_on_ordinary_demo_activity() {
    let correlation = mass_recovery();
    let peaks = correlation.peaks(demo_events());
    assert!(
        peaks.values().any(|&n| n > 1),
        "the demo has several restores per client host"
    );
    assert!(
        correlation.firing(demo_events()).is_empty(),
        "ordinary demo sessions (a handful of items each) must not look like a mass restore: {peaks:?}"
    );
}

/// Restore events from a simulator with big sessions (60-225 items each), through the
/// ordinary `run --once` of the binary.
async fn bulk_events() -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    use crate::support::config::{ConfigBuilder, Table};
    use veeam_siem_simulator::{SimConfig, SimHandle};
    let sim = SimHandle::start(SimConfig {
        tls: false,
        seed: 7,
        sessions: 6,
        events_per_session: 150,
        ..SimConfig::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let config = ConfigBuilder::new(dir.path().join("state"))
        .table(Table::vbo("vbo_bulk", &sim.base_url()).set("password", "sim-password"))
        .table(Table::stdout("out", &["vbo_bulk"]))
        .write(&dir.path().join("bulk.toml"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_veeam-siem"));
    command
        .args(["run", "--once", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    let output =
        tokio::task::spawn_blocking(move || run_with_timeout(command, Duration::from_secs(180)))
            .await??;
    let expected = sim.event_count();
    sim.shutdown().await;
    let events = parse_ndjson(&output, "veeam-siem run --once (bulk simulator)");
    assert_eq!(events.len(), expected, "every simulated event was shipped");
    Ok(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_recovery_fires_on_a_bulk_restore_and_not_on_every_host() -> TestResult {
    let events = bulk_events().await?;
    let correlation = mass_recovery();
    let peaks = correlation.peaks(&events);
    let firing = correlation.firing(&events);
    assert!(
        !firing.is_empty(),
        "no client host reached {} items in {}s: {peaks:?}",
        correlation.threshold,
        correlation.timespan
    );
    assert!(
        firing.len() < peaks.len(),
        "every client host fires: {peaks:?}"
    );
    // The Splunk search counts in fixed 15-minute buckets: the busiest host fires there too.
    let span = correlation.timespan * 1000;
    let mut buckets: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for e in events.iter().filter(|e| correlation.base.matches(e)) {
        let host = str_at(e, "client.address").unwrap_or("(no client host)");
        let bucket = timestamp(e).timestamp_millis().div_euclid(span);
        *buckets.entry((host.to_string(), bucket)).or_default() += 1;
    }
    let spl_hosts: BTreeSet<&str> = buckets
        .iter()
        .filter(|(_, n)| **n >= correlation.threshold)
        .map(|((host, _), _)| host.as_str())
        .collect();
    assert!(
        firing.iter().any(|k| spl_hosts.contains(k[0].as_str())),
        "the Splunk bucketing finds none of {firing:?}: {buckets:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// First-seen client hosts (Splunk only: Sigma cannot express a baseline)

#[test]
fn demo_has_new_and_known_client_hosts_for_the_first_seen_search() {
    // The search: over 30 days, hosts whose first restore is within the last 24 hours.
    let now = Utc::now();
    let mut first_seen: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for e in demo_events()
        .iter()
        .filter(|e| dataset(e) == "veeam.vbo_restore")
    {
        if let Some(host) = str_at(e, "client.address") {
            let t = timestamp(e);
            let slot = first_seen.entry(host).or_insert(t);
            *slot = (*slot).min(t);
        }
    }
    let new: Vec<&str> = first_seen
        .iter()
        .filter(|(_, t)| **t >= now - chrono::TimeDelta::hours(24))
        .map(|(h, _)| *h)
        .collect();
    assert!(!new.is_empty(), "no new client host: {first_seen:?}");
    assert!(
        new.len() < first_seen.len(),
        "every client host is new: {first_seen:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Splunk: .conf files, macros, and the fields each search reads

/// Stanzas of a Splunk .conf file: `[name]`, `key = value`, `\` at a line end continues
/// the value on the next line (the newline is kept), `#` starts a comment line.
fn parse_conf(path: &Path) -> Vec<(String, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut stanzas: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            stanzas.push((name.to_string(), BTreeMap::new()));
            continue;
        }
        let (key, value) = trimmed
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not `key = value`: {line}", path.display()));
        let mut value = value.trim().to_string();
        while let Some(stripped) = value.strip_suffix('\\') {
            let next = lines
                .next()
                .unwrap_or_else(|| panic!("{}: `\\` on the last line", path.display()));
            value = format!("{}\n{}", stripped.trim_end(), next.trim());
        }
        let Some((_, settings)) = stanzas.last_mut() else {
            panic!("{}: `{key}` before any [stanza]", path.display());
        };
        settings.insert(key.trim().to_string(), value);
    }
    stanzas
}

fn macros() -> BTreeMap<String, String> {
    parse_conf(&splunk_default_dir().join("macros.conf"))
        .into_iter()
        .map(|(name, settings)| {
            let definition = settings
                .get("definition")
                .cloned()
                .unwrap_or_else(|| panic!("macro `{name}` has no definition"));
            (name, definition)
        })
        .collect()
}

fn expand_macros(spl: &str, macros: &BTreeMap<String, String>, depth: usize) -> String {
    assert!(depth < 10, "macros nest too deep (a loop?) in {spl}");
    let mut out = String::new();
    let mut rest = spl;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('`')
            .unwrap_or_else(|| panic!("unclosed macro in {spl}"));
        let name = &after[..end];
        assert!(
            !name.contains('('),
            "macros with arguments are not used: `{name}`"
        );
        let definition = macros
            .get(name)
            .unwrap_or_else(|| panic!("macro `{name}` is not in macros.conf"));
        out.push_str(&expand_macros(definition, macros, depth + 1));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    /// `"..."`: a literal.
    Str,
    /// `'...'`: a field name (in eval/where).
    Field(String),
    Op(String),
    Pipe,
    Open,
    Close,
    Comma,
}

fn tokenize(spl: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = spl.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let word_char = |c: char| c.is_ascii_alphanumeric() || "_.@{}*".contains(c);
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut j = i + 1;
            let mut text = String::new();
            while j < chars.len() && chars[j] != c {
                if chars[j] == '\\' && j + 1 < chars.len() {
                    j += 1;
                }
                text.push(chars[j]);
                j += 1;
            }
            if j >= chars.len() {
                return Err(format!("unclosed {c} in {spl}"));
            }
            tokens.push(if c == '"' { Tok::Str } else { Tok::Field(text) });
            i = j + 1;
        } else if c == '|' {
            tokens.push(Tok::Pipe);
            i += 1;
        } else if c == '(' {
            tokens.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Tok::Close);
            i += 1;
        } else if c == ',' {
            tokens.push(Tok::Comma);
            i += 1;
        } else if word_char(c) {
            let mut j = i;
            // A `-` between letters or digits stays in the word (item-restored).
            while j < chars.len()
                && (word_char(chars[j])
                    || (chars[j] == '-'
                        && j > i
                        && chars[j - 1].is_ascii_alphanumeric()
                        && chars.get(j + 1).is_some_and(|n| n.is_ascii_alphanumeric())))
            {
                j += 1;
            }
            tokens.push(Tok::Word(chars[i..j].iter().collect()));
            i = j;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["::", "==", "!=", ">=", "<="].contains(&two.as_str()) {
                tokens.push(Tok::Op(two));
                i += 2;
            } else if "=<>+-/%!:".contains(c) {
                tokens.push(Tok::Op(c.to_string()));
                i += 1;
            } else {
                return Err(format!("unexpected character `{c}` in {spl}"));
            }
        }
    }
    Ok(tokens)
}

fn is_number(word: &str) -> bool {
    word.parse::<f64>().is_ok()
}

fn word_is(tok: Option<&Tok>, expected: &str) -> bool {
    matches!(tok, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(expected))
}

const COMPARISONS: [&str; 7] = ["=", "!=", "<", ">", "<=", ">=", "::"];
const DEFAULT_FIELDS: [&str; 10] = [
    "_time",
    "_raw",
    "_indextime",
    "host",
    "source",
    "sourcetype",
    "index",
    "splunk_server",
    "earliest",
    "latest",
];
/// What the HEC sink sends in `fields` (src/sinks/splunk_hec_wire.rs).
const INDEXED_FIELDS: [&str; 6] = [
    "event_id",
    "dataset",
    "action",
    "outcome",
    "source_id",
    "organization",
];

/// Follows one search through its commands: which fields exist at each point.
struct SplAnalysis {
    /// `None` before any transforming command: every event field exists.
    available: Option<BTreeSet<String>>,
    /// Fields the search made (eval, `as`), while they still exist.
    created: BTreeSet<String>,
    /// (field, command) for every field the search reads.
    reads: Vec<(String, String)>,
    errors: Vec<String>,
    /// Inside tstats only indexed and default fields exist.
    indexed_only: bool,
}

impl SplAnalysis {
    fn new() -> SplAnalysis {
        SplAnalysis {
            available: None,
            created: BTreeSet::new(),
            reads: Vec::new(),
            errors: Vec::new(),
            indexed_only: false,
        }
    }

    fn read(&mut self, field: &str, command: &str) {
        self.reads.push((field.to_string(), command.to_string()));
        if let Some(problem) = self.check(field) {
            self.errors
                .push(format!("`{command}` reads `{field}`: {problem}"));
        }
    }

    fn check(&self, field: &str) -> Option<String> {
        if self.created.contains(field) {
            return None;
        }
        if let Some(available) = &self.available {
            return (!available.contains(field))
                .then(|| "no longer exists (dropped by a transforming command)".to_string());
        }
        if DEFAULT_FIELDS.contains(&field) || INDEXED_FIELDS.contains(&field) {
            return None;
        }
        if self.indexed_only {
            return Some("tstats sees only indexed and default fields".into());
        }
        let paths = schema_paths();
        if field.contains('*') {
            return (!paths.keys().any(|p| wildcard_match(field, p, false)))
                .then(|| "matches no schema field".to_string());
        }
        match (field.strip_suffix("{}"), paths.get(field)) {
            (None, Some(false)) => None,
            (None, Some(true)) => Some(format!(
                "an array in the schema: Splunk calls it `{field}{{}}`"
            )),
            (Some(base), _) if paths.get(base) == Some(&true) => None,
            _ => Some("not a schema field, an indexed HEC field, a Splunk default field, or one the search created".into()),
        }
    }

    fn create(&mut self, field: &str) {
        self.created.insert(field.to_string());
        if let Some(available) = &mut self.available {
            available.insert(field.to_string());
        }
    }

    /// After stats/tstats/chart: only the group-by fields and the aggregates exist.
    fn transform(&mut self, by: &BTreeSet<String>, made: &BTreeSet<String>) {
        let kept: BTreeSet<String> = by.union(made).cloned().collect();
        self.created = made.clone();
        self.available = Some(kept);
    }

    fn run(&mut self, spl: &str) {
        let tokens = match tokenize(spl) {
            Ok(t) => t,
            Err(e) => {
                self.errors.push(e);
                return;
            }
        };
        let commands: Vec<&[Tok]> = tokens.split(|t| *t == Tok::Pipe).collect();
        for (n, command) in commands.iter().enumerate() {
            if n == 0 {
                // Text before the first pipe is a search, unless the search starts with `|`.
                if !command.is_empty() {
                    self.search_terms(command, "search");
                }
                continue;
            }
            let Some(Tok::Word(name)) = command.first() else {
                self.errors
                    .push(format!("empty or odd command: {command:?}"));
                continue;
            };
            let name = name.to_ascii_lowercase();
            let args = &command[1..];
            match name.as_str() {
                "search" => self.search_terms(args, "search"),
                "where" => self.expression(args, "where"),
                "eval" => self.eval(args),
                "stats" | "chart" | "timechart" => self.stats(args, &name, true),
                "eventstats" | "streamstats" => self.stats(args, &name, false),
                "tstats" => self.tstats(args),
                "bin" | "bucket" => self.field_list(args, &name, &["span", "bins", "minspan"]),
                "fillnull" => self.field_list(args, &name, &["value"]),
                "dedup" => self.field_list(args, &name, &["keepempty", "consecutive"]),
                "table" | "fields" | "sort" => self.field_list(args, &name, &[]),
                "convert" => self.convert(args),
                "rename" => self.rename(args),
                "head" | "tail" | "reverse" => {}
                other => self
                    .errors
                    .push(format!("command `{other}` is not understood by this test")),
            }
        }
    }

    /// `field=value`, `field IN (...)`, `NOT`, `OR`, parentheses; free text is ignored.
    fn search_terms(&mut self, tokens: &[Tok], command: &str) {
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                Tok::Word(w) if matches!(tokens.get(i + 1), Some(Tok::Op(op)) if COMPARISONS.contains(&op.as_str())) =>
                {
                    self.read(w, command);
                    i += 2;
                    if matches!(tokens.get(i), Some(Tok::Op(op)) if op == "-") {
                        i += 1;
                    }
                    i += 1; // the value
                }
                Tok::Word(w) if word_is(tokens.get(i + 1), "in") => {
                    self.read(w, command);
                    i += 2;
                    if tokens.get(i) == Some(&Tok::Open) {
                        while i < tokens.len() && tokens[i] != Tok::Close {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }

    /// eval/where expressions: fields are bare words (no dots) or `'quoted'`.
    fn expression(&mut self, tokens: &[Tok], command: &str) {
        for (i, tok) in tokens.iter().enumerate() {
            match tok {
                Tok::Field(f) => self.read(f, command),
                Tok::Word(w) => {
                    let function = tokens.get(i + 1) == Some(&Tok::Open);
                    let keyword = [
                        "and", "or", "not", "xor", "like", "in", "true", "false", "null",
                    ]
                    .contains(&w.to_ascii_lowercase().as_str());
                    if function || keyword || is_number(w) {
                        continue;
                    }
                    if w.contains('.') || w.contains('@') || w.contains('{') {
                        self.errors.push(format!(
                            "`{command}`: write '{w}' in single quotes (in eval, `.` concatenates)"
                        ));
                    }
                    self.read(w, command);
                }
                _ => {}
            }
        }
    }

    fn eval(&mut self, tokens: &[Tok]) {
        for assignment in split_top_level(tokens) {
            let (target, rest) = match assignment {
                [Tok::Word(t) | Tok::Field(t), Tok::Op(op), rest @ ..] if op == "=" => (t, rest),
                other => {
                    self.errors
                        .push(format!("`eval`: not `name = expression`: {other:?}"));
                    continue;
                }
            };
            self.expression(rest, "eval");
            self.create(target);
        }
    }

    /// `agg(field) [as name] ... [by f1 f2]`, options `name=value` skipped.
    fn stats(&mut self, tokens: &[Tok], command: &str, transforming: bool) {
        let by_at = tokens
            .iter()
            .position(|t| word_is(Some(t), "by"))
            .unwrap_or(tokens.len());
        let made = self.aggregations(&tokens[..by_at], command);
        let by = self.by_fields(&tokens[by_at.min(tokens.len())..], command);
        if transforming {
            self.transform(&by, &made);
        } else {
            for m in &made {
                self.create(m);
            }
        }
    }

    fn tstats(&mut self, tokens: &[Tok]) {
        let where_at = tokens
            .iter()
            .position(|t| word_is(Some(t), "where"))
            .unwrap_or(tokens.len());
        let by_at = tokens
            .iter()
            .position(|t| word_is(Some(t), "by"))
            .unwrap_or(tokens.len());
        self.indexed_only = true;
        let made = self.aggregations(&tokens[..where_at.min(by_at)], "tstats");
        if where_at < by_at {
            self.search_terms(&tokens[where_at + 1..by_at], "tstats");
        }
        let by = self.by_fields(&tokens[by_at..], "tstats");
        self.indexed_only = false;
        self.transform(&by, &made);
    }

    fn aggregations(&mut self, tokens: &[Tok], command: &str) -> BTreeSet<String> {
        let mut made = BTreeSet::new();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                // An option such as `span=1h`, `prestats=t`.
                Tok::Word(_) if matches!(tokens.get(i + 1), Some(Tok::Op(op)) if op == "=") => {
                    i += 3;
                }
                Tok::Word(function) => {
                    let mut name = function.clone();
                    i += 1;
                    if tokens.get(i) == Some(&Tok::Open) {
                        let close = matching_close(tokens, i);
                        let inner = &tokens[i + 1..close];
                        if word_is(inner.first(), "eval") && inner.get(1) == Some(&Tok::Open) {
                            let end = matching_close(inner, 1);
                            self.expression(&inner[2..end], command);
                        } else {
                            for tok in inner {
                                match tok {
                                    Tok::Word(f) | Tok::Field(f) => self.read(f, command),
                                    other => self
                                        .errors
                                        .push(format!("`{command}`: odd argument {other:?}")),
                                }
                            }
                        }
                        let args: Vec<&str> = inner
                            .iter()
                            .filter_map(|t| match t {
                                Tok::Word(w) | Tok::Field(w) => Some(w.as_str()),
                                _ => None,
                            })
                            .collect();
                        name = format!("{function}({})", args.join(","));
                        i = close + 1;
                    }
                    if word_is(tokens.get(i), "as") {
                        match tokens.get(i + 1) {
                            Some(Tok::Word(alias) | Tok::Field(alias)) => name = alias.clone(),
                            other => self
                                .errors
                                .push(format!("`{command}`: `as` needs a name, got {other:?}")),
                        }
                        i += 2;
                    }
                    made.insert(name);
                }
                Tok::Comma => i += 1,
                other => {
                    self.errors
                        .push(format!("`{command}`: unexpected {other:?}"));
                    i += 1;
                }
            }
        }
        made
    }

    fn by_fields(&mut self, tokens: &[Tok], command: &str) -> BTreeSet<String> {
        let mut by = BTreeSet::new();
        let mut i = usize::from(!tokens.is_empty()); // skip `by`
        while i < tokens.len() {
            match &tokens[i] {
                Tok::Word(_) if matches!(tokens.get(i + 1), Some(Tok::Op(op)) if op == "=") => {
                    i += 3;
                }
                Tok::Word(f) | Tok::Field(f) => {
                    self.read(f, command);
                    by.insert(f.clone());
                    i += 1;
                }
                _ => i += 1,
            }
        }
        by
    }

    /// Commands that take a list of fields, plus `option=value` settings.
    fn field_list(&mut self, tokens: &[Tok], command: &str, options: &[&str]) {
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                Tok::Word(w) if matches!(tokens.get(i + 1), Some(Tok::Op(op)) if op == "=") => {
                    if !options.contains(&w.to_ascii_lowercase().as_str()) {
                        self.errors
                            .push(format!("`{command}`: unknown option `{w}`"));
                    }
                    i += 3;
                }
                Tok::Word(w) if w.eq_ignore_ascii_case("as") => {
                    if let Some(Tok::Word(alias)) = tokens.get(i + 1) {
                        self.create(&alias.clone());
                    }
                    i += 2;
                }
                Tok::Word(w) if is_number(w) => i += 1,
                Tok::Word(f) | Tok::Field(f) => {
                    self.read(f, command);
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }

    fn convert(&mut self, tokens: &[Tok]) {
        let mut i = 0;
        while i < tokens.len() {
            match (&tokens[i], tokens.get(i + 1)) {
                (Tok::Word(_), Some(Tok::Op(op))) if op == "=" => i += 3,
                (Tok::Word(_), Some(Tok::Open)) => {
                    let close = matching_close(tokens, i + 1);
                    for tok in &tokens[i + 2..close] {
                        if let Tok::Word(f) | Tok::Field(f) = tok {
                            self.read(f, "convert");
                        }
                    }
                    i = close + 1;
                    if word_is(tokens.get(i), "as") {
                        if let Some(Tok::Word(alias)) = tokens.get(i + 1) {
                            self.create(&alias.clone());
                        }
                        i += 2;
                    }
                }
                _ => i += 1,
            }
        }
    }

    fn rename(&mut self, tokens: &[Tok]) {
        for pair in split_top_level(tokens) {
            match pair {
                [
                    Tok::Word(from) | Tok::Field(from),
                    as_,
                    Tok::Word(to) | Tok::Field(to),
                ] if word_is(Some(as_), "as") => {
                    self.read(from, "rename");
                    self.create(to);
                }
                other => self
                    .errors
                    .push(format!("`rename`: not `a as b`: {other:?}")),
            }
        }
    }
}

/// Split at commas outside parentheses.
fn split_top_level(tokens: &[Tok]) -> Vec<&[Tok]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, tok) in tokens.iter().enumerate() {
        match tok {
            Tok::Open => depth += 1,
            Tok::Close => depth = depth.saturating_sub(1),
            Tok::Comma if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Index of the `)` closing the `(` at `open`.
fn matching_close(tokens: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, tok) in tokens.iter().enumerate().skip(open) {
        match tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

fn saved_searches() -> Vec<(String, BTreeMap<String, String>)> {
    parse_conf(&splunk_default_dir().join("savedsearches.conf"))
}

fn analyze(spl: &str) -> SplAnalysis {
    let mut analysis = SplAnalysis::new();
    analysis.run(&expand_macros(spl, &macros(), 0));
    analysis
}

#[test]
fn spl_analyzer_catches_what_it_should() {
    let ok = analyze(
        "`veeam_vb365` event.action=\"item-*\" NOT user.name=* | eval h=tonumber(strftime(_time, \"%H\")) \
         | stats dc(event.id) as n by client.address h | where n > 3 AND h < 7 | sort - n",
    );
    assert!(ok.errors.is_empty(), "{:?}", ok.errors);
    let reads: BTreeSet<&str> = ok.reads.iter().map(|(f, _)| f.as_str()).collect();
    for field in [
        "index",
        "sourcetype",
        "event.action",
        "user.name",
        "_time",
        "event.id",
        "client.address",
        "n",
        "h",
    ] {
        assert!(reads.contains(field), "{field} not seen: {reads:?}");
    }
    for (bad, why) in [
        ("index=veeam event.acton=\"x\"", "a typo"),
        (
            "index=veeam | stats count by client.address | where 'event.action'=\"x\"",
            "dropped by stats",
        ),
        (
            "index=veeam | eval x=client.address",
            "unquoted dotted name in eval",
        ),
        ("index=veeam related.user=\"alice\"", "an array without {}"),
        (
            "| tstats count where index=veeam event.action=\"x\" by organization",
            "not indexed",
        ),
        (
            "index=veeam | transaction client.address",
            "an unknown command",
        ),
    ] {
        assert!(!analyze(bad).errors.is_empty(), "{why} not caught: {bad}");
    }
    assert!(
        analyze("index=veeam related.user{}=\"alice\" action::item-restored")
            .errors
            .is_empty()
    );
}

#[test]
fn splunk_searches_read_only_fields_that_exist() {
    let searches = saved_searches();
    assert!(
        searches.len() >= 6,
        "expected the saved searches, found {}",
        searches.len()
    );
    let mut problems = Vec::new();
    for (name, settings) in &searches {
        for key in [
            "search",
            "description",
            "dispatch.earliest_time",
            "cron_schedule",
        ] {
            if settings.get(key).is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("[{name}]: `{key}` is missing"));
            }
        }
        let Some(spl) = settings.get("search") else {
            continue;
        };
        let analysis = analyze(spl);
        problems.extend(analysis.errors.iter().map(|e| format!("[{name}]: {e}")));
        if analysis.reads.is_empty() {
            problems.push(format!("[{name}]: reads no field at all?"));
        }
    }
    // Every macro is used somewhere, and every macro body is itself valid.
    let macros = macros();
    let all_text: String = searches
        .iter()
        .filter_map(|(_, s)| s.get("search").cloned())
        .chain(macros.values().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    for name in macros.keys() {
        if !all_text.contains(&format!("`{name}`")) {
            problems.push(format!("macro `{name}` is not used"));
        }
    }
    assert!(
        problems.is_empty(),
        "Splunk problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn indexed_fields_are_the_ones_the_hec_sink_sends() {
    // The envelope's `fields` are a private struct of the sink; read its definition so a
    // renamed or added indexed field shows up here.
    let path = root().join("src").join("sinks").join("splunk_hec_wire.rs");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} (moved?): {e}", path.display()));
    let body = source
        .split_once("struct Fields")
        .and_then(|(_, rest)| rest.split_once('{'))
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("no `struct Fields {{ ... }}` in {}", path.display()));
    let sent: BTreeSet<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("//"))
        .filter_map(|l| {
            l.split_once(':')
                .map(|(name, _)| name.trim_start_matches("pub ").trim())
        })
        .collect();
    let assumed: BTreeSet<&str> = INDEXED_FIELDS.into_iter().collect();
    assert_eq!(sent, assumed, "update INDEXED_FIELDS and the README");
}

#[test]
fn splunk_sourcetypes_match_the_hec_sink_defaults() {
    let macros = macros();
    let expanded = expand_macros("`veeam_vb365` `veeam_vdc`", &macros, 0);
    for sourcetype in ["veeam:vbo:restore", "veeam:vdc:joblog"] {
        assert_eq!(
            veeam_siem::sinks::splunk_hec::default_sourcetype(match sourcetype {
                "veeam:vbo:restore" => "veeam.vbo_restore",
                _ => "veeam.vdc_job_log",
            }),
            sourcetype
        );
        assert!(expanded.contains(&format!("sourcetype=\"{sourcetype}\"")));
    }
    let props = parse_conf(&splunk_default_dir().join("props.conf"));
    for sourcetype in ["veeam:vbo:restore", "veeam:vdc:joblog"] {
        let stanza = props
            .iter()
            .find(|(name, _)| name == sourcetype)
            .unwrap_or_else(|| panic!("props.conf has no [{sourcetype}]"));
        assert_eq!(
            stanza.1.get("KV_MODE").map(String::as_str),
            Some("json"),
            "[{sourcetype}]"
        );
        assert!(
            !stanza.1.contains_key("INDEXED_EXTRACTIONS"),
            "[{sourcetype}]: HEC events must not be extracted twice"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The README documents every detection

#[test]
fn the_readme_names_every_rule_and_search() {
    let text = std::fs::read_to_string(siem_dir().join("README.md")).unwrap_or_default();
    // Inline code only: drop fenced blocks (their backticks would upset the pairing).
    let mut fenced = false;
    let readme: String = text
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect::<Vec<_>>()
        .join("\n");
    for doc in sigma_docs() {
        assert!(
            readme.contains(doc.title()),
            "examples/siem/README.md does not mention the Sigma rule `{}`",
            doc.title()
        );
    }
    for (name, _) in saved_searches() {
        assert!(
            readme.contains(&name),
            "examples/siem/README.md does not mention the search `{name}`"
        );
    }
    // Field names quoted in the README exist too.
    let mut unknown = Vec::new();
    let datasets = ["veeam.vbo_restore", "veeam.vdc_job_log"]; // values, not fields
    for quoted in readme.split('`').skip(1).step_by(2) {
        let looks_like_field = !datasets.contains(&quoted)
            && (quoted.starts_with("veeam.")
                || quoted.starts_with("event.")
                || quoted.starts_with("client.")
                || quoted.starts_with("user.")
                || quoted.starts_with("source.")
                || quoted.starts_with("organization.")
                || quoted.starts_with("related."))
            && quoted
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._{}".contains(c));
        if looks_like_field && !is_schema_field(quoted.trim_end_matches("{}")) {
            unknown.push(quoted.to_string());
        }
    }
    assert!(
        unknown.is_empty(),
        "README names unknown fields: {unknown:?}"
    );
}
