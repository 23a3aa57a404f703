//! Sigma rules: loading `examples/siem/sigma/*.yml`, linting a rule's structure and
//! fields ([`lint_rule`]), and a small evaluator for the subset of Sigma the rules use:
//! conditions ([`parse_condition`]), searches with the `contains`, `startswith`,
//! `endswith`, `exists` and `all` modifiers ([`Rule`]), and the event-count correlation
//! ([`Correlation`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use super::{TestResult, is_schema_field, siem_dir, wildcard_match};

// ---------------------------------------------------------------------------------------
// Sigma: loading and structure

#[derive(Debug)]
pub struct SigmaDoc {
    pub file: String,
    pub doc: Yaml,
}

impl SigmaDoc {
    pub fn title(&self) -> &str {
        self.doc["title"].as_str().unwrap_or("(untitled)")
    }
    pub fn is_correlation(&self) -> bool {
        !self.doc["correlation"].is_badvalue()
    }
}

pub fn sigma_docs() -> &'static Vec<SigmaDoc> {
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

pub fn strings(y: &Yaml) -> Option<Vec<&str>> {
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
pub fn lint_rule(doc: &SigmaDoc, names: &BTreeSet<String>) -> Vec<String> {
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
pub fn values_at<'a>(event: &'a Value, path: &str) -> Vec<&'a Value> {
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
pub struct Rule<'a> {
    pub doc: &'a SigmaDoc,
    condition: Cond,
}

impl<'a> Rule<'a> {
    pub fn new(doc: &'a SigmaDoc) -> Rule<'a> {
        let text = doc.doc["detection"]["condition"].as_str().unwrap_or("");
        let condition = parse_condition(text)
            .unwrap_or_else(|e| panic!("{}: condition `{text}`: {e}", doc.file));
        Rule { doc, condition }
    }

    pub fn matches(&self, event: &Value) -> bool {
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

pub fn rule_by_title(title: &str) -> Rule<'static> {
    let doc = sigma_docs()
        .iter()
        .find(|d| d.title() == title)
        .unwrap_or_else(|| panic!("no Sigma rule titled `{title}`"));
    Rule::new(doc)
}

pub fn single_event_rules() -> Vec<Rule<'static>> {
    sigma_docs()
        .iter()
        .filter(|d| !d.is_correlation())
        .map(Rule::new)
        .collect()
}

pub fn str_at<'a>(event: &'a Value, path: &str) -> Option<&'a str> {
    values_at(event, path).first().and_then(|v| v.as_str())
}

pub fn timestamp(event: &Value) -> DateTime<Utc> {
    let text = str_at(event, "@timestamp").unwrap_or_default();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .unwrap_or_else(|e| panic!("@timestamp {text}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The mass-restore correlation

pub struct Correlation {
    pub base: Rule<'static>,
    pub group_by: Vec<String>,
    pub timespan: i64,
    pub threshold: i64,
}

pub fn mass_recovery() -> Correlation {
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
    pub fn peaks(&self, events: &[Value]) -> BTreeMap<Vec<String>, i64> {
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

    pub fn firing(&self, events: &[Value]) -> BTreeSet<Vec<String>> {
        self.peaks(events)
            .into_iter()
            .filter(|(_, n)| *n >= self.threshold)
            .map(|(k, _)| k)
            .collect()
    }
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
