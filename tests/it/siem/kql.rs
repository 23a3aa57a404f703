//! Microsoft Sentinel content (`examples/siem/sentinel/`) against the `azure_monitor_logs`
//! sink, and a small KQL evaluator to run the analytics rules.
//!
//! Checked here:
//! - the ARM template: the DCR's `streamDeclarations` column list is the sink's
//!   [`COLUMNS`] (names, order and types), the table schema has the same columns (with the
//!   table's type spelling), the data flow sends the stream to the table with a
//!   transformation, and the deployed parser function is `VeeamRestore.kql`;
//! - the analytics rules (`analytics/*.yaml`, the Azure-Sentinel repository's
//!   scheduled-rule format): they parse, carry every required key with a sane value, have
//!   unique ids and names, read `VeeamRestore`, and every column their query names is a
//!   table column or one the query or the parser made (`x = ...`, `let`, `IngestedAt`);
//! - behaviour: each rule's query runs, through the parser function, over rows made by the
//!   sink's own row function from the events `veeam-siem demo` prints (with some rows
//!   delivered twice, as at-least-once delivery may), as Sentinel runs it ([`Scheduled`]:
//!   at a time `now`, over the rows stored by then whose `TimeGenerated` is within
//!   `queryPeriod`; each row has an ingestion time, by default its `TimeGenerated`), and
//!   finds exactly what the same logic written in Rust finds; the mass-restore and
//!   new-client-host rules also fire on a scenario built for them and not on the baseline;
//!   an event stored late (days after it happened) is found by the run after it is stored
//!   and by no other run, and a mass-restore bin whose items arrive in two ingestion
//!   windows alerts once, counting all of them.
//!
//! The evaluator knows the subset of KQL the rules and the parser use: `let` of scalars
//! and tables; `where`, `extend`, `summarize ... by` (`count`, `countif`, `dcount`, `sum`,
//! `min`, `max`, `make_set`, `arg_max(col, *)`, `arg_min(col, *)`, `bin`), `distinct`,
//! `project`, `join kind=leftanti`; `and`, `or`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`,
//! `+`, `-` (datetimes, timespans, integers), `startswith`, `endswith`, `contains`, `has`
//! (the last four case-insensitive, `has` as a substring); `isempty`, `isnotempty`,
//! `hourofday`, `dayofweek`, `ago`, `now`, `bin`, `ingestion_time` (a table row's; none
//! after a `summarize`); strings, verbatim strings, integers, booleans and timespans.
//! Anything else is an error, so a rule written outside the subset fails the tests instead
//! of being skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Timelike, Utc};
use serde_json::Value;
use veeam_siem::event::Event;
use veeam_siem::sinks::azure_monitor_logs::{COLUMNS, row::encode_row};
use yaml_rust2::{Yaml, YamlLoader};

use super::root;

fn sentinel_dir() -> PathBuf {
    root().join("examples").join("siem").join("sentinel")
}

// ---------------------------------------------------------------------------------------
// Content loading

fn template() -> Value {
    let path = sentinel_dir().join("veeam-siem-dcr.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("template is JSON")
}

fn resource(t: &Value, kind: &str) -> Value {
    t["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the template"))
        .clone()
}

fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => r.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.clone()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// (file name, rule as JSON) of every analytics rule.
fn rules() -> Vec<(String, Value)> {
    let dir = sentinel_dir().join("analytics");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let docs = YamlLoader::load_from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", p.display()));
            assert_eq!(docs.len(), 1, "{}: one document", p.display());
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                yaml_to_json(&docs[0]),
            )
        })
        .collect()
}

fn parser_query() -> String {
    std::fs::read_to_string(sentinel_dir().join("VeeamRestore.kql")).unwrap()
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    /// A timespan, in seconds.
    Span(i64),
    Op(&'static str),
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '@' && chars.get(i + 1) == Some(&'"') {
            i += 2;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err("unterminated verbatim string".into()),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string".into()),
                    Some('\\') => {
                        let next = *chars.get(i + 1).ok_or("dangling escape")?;
                        s.push(match next {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: i64 = chars[start..i].iter().collect::<String>().parse().unwrap();
            let unit = chars.get(i).copied();
            let after_unit_is_ident = chars
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_');
            match unit {
                Some(u @ ('d' | 'h' | 'm' | 's')) if !after_unit_is_ident => {
                    i += 1;
                    let secs = match u {
                        'd' => 86_400,
                        'h' => 3_600,
                        'm' => 60,
                        _ => 1,
                    };
                    out.push(Tok::Span(n * secs));
                }
                _ => out.push(Tok::Int(n)),
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "==" => Some("=="),
                "!=" => Some("!="),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(op) = op {
                out.push(Tok::Op(op));
                i += 2;
                continue;
            }
            let op = match c {
                '=' => "=",
                '<' => "<",
                '>' => ">",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                '|' => "|",
                ';' => ";",
                '*' => "*",
                '.' => ".",
                '+' => "+",
                '-' => "-",
                other => return Err(format!("unexpected character {other:?}")),
            };
            out.push(Tok::Op(op));
            i += 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Values and rows

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum V {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Time(DateTime<Utc>),
    Span(i64),
}

type Row = BTreeMap<String, V>;

impl V {
    fn is_empty(&self) -> bool {
        matches!(self, V::Null) || matches!(self, V::Str(s) if s.is_empty())
    }
    fn truthy(&self) -> bool {
        matches!(self, V::Bool(true))
    }
    fn text(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A row as the table stores it, from the sink's JSON row (the dynamic `Event` column is
/// not needed by the rules and is left out).
fn typed_row(json: &Value) -> Row {
    let mut row = Row::new();
    for (name, ty) in COLUMNS {
        let v = &json[*name];
        let value = match (*ty, v) {
            (_, Value::Null) | ("dynamic", _) => V::Null,
            ("datetime", Value::String(s)) => V::Time(
                DateTime::parse_from_rfc3339(s)
                    .unwrap_or_else(|e| panic!("{name} = {s}: {e}"))
                    .with_timezone(&Utc),
            ),
            ("long", Value::Number(n)) => V::Int(n.as_i64().unwrap()),
            ("boolean", Value::Bool(b)) => V::Bool(*b),
            ("string", Value::String(s)) => V::Str(s.clone()),
            (ty, v) => panic!("{name} ({ty}) = {v}: not the declared type"),
        };
        row.insert(name.to_string(), value);
    }
    row
}

// ---------------------------------------------------------------------------------------
// Parser and evaluator

/// Tokens of one pipeline stage or expression, with a cursor.
struct P<'a> {
    toks: &'a [Tok],
    at: usize,
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Result<&'a Tok, String> {
        let t = self.toks.get(self.at).ok_or("unexpected end of query")?;
        self.at += 1;
        Ok(t)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect_op(&mut self, op: &str) -> Result<(), String> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(format!("expected {op:?}, found {:?}", self.peek()))
        }
    }
    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(w)) if w == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Ident(s) => Ok(s.clone()),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }
    fn done(&self) -> bool {
        self.at >= self.toks.len()
    }
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(V),
    Col(String),
    Call(String, Vec<Expr>),
    Bin(String, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Expr>),
}

fn parse_expr(p: &mut P) -> Result<Expr, String> {
    let mut left = parse_and(p)?;
    while p.eat_word("or") {
        let right = parse_and(p)?;
        left = Expr::Bin("or".into(), Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_and(p: &mut P) -> Result<Expr, String> {
    let mut left = parse_cmp(p)?;
    while p.eat_word("and") {
        let right = parse_cmp(p)?;
        left = Expr::Bin("and".into(), Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_cmp(p: &mut P) -> Result<Expr, String> {
    let left = parse_add(p)?;
    for op in ["==", "!=", "<=", ">=", "<", ">"] {
        if p.eat_op(op) {
            let right = parse_add(p)?;
            return Ok(Expr::Bin(op.into(), Box::new(left), Box::new(right)));
        }
    }
    for word in ["startswith", "endswith", "contains", "has"] {
        if p.eat_word(word) {
            let right = parse_primary(p)?;
            return Ok(Expr::Bin(word.into(), Box::new(left), Box::new(right)));
        }
    }
    if p.eat_word("in") {
        p.expect_op("(")?;
        let mut list = vec![parse_primary(p)?];
        while p.eat_op(",") {
            list.push(parse_primary(p)?);
        }
        p.expect_op(")")?;
        return Ok(Expr::In(Box::new(left), list));
    }
    Ok(left)
}

/// `a + b`, `a - b` (left to right) over datetimes, timespans and integers.
fn parse_add(p: &mut P) -> Result<Expr, String> {
    let mut left = parse_primary(p)?;
    loop {
        let op = if p.eat_op("+") {
            "+"
        } else if p.eat_op("-") {
            "-"
        } else {
            return Ok(left);
        };
        let right = parse_primary(p)?;
        left = Expr::Bin(op.into(), Box::new(left), Box::new(right));
    }
}

fn parse_primary(p: &mut P) -> Result<Expr, String> {
    match p.next()? {
        Tok::Str(s) => Ok(Expr::Lit(V::Str(s.clone()))),
        Tok::Int(n) => Ok(Expr::Lit(V::Int(*n))),
        Tok::Span(s) => Ok(Expr::Lit(V::Span(*s))),
        Tok::Op("(") => {
            let e = parse_expr(p)?;
            p.expect_op(")")?;
            Ok(e)
        }
        Tok::Ident(w) if w == "true" => Ok(Expr::Lit(V::Bool(true))),
        Tok::Ident(w) if w == "false" => Ok(Expr::Lit(V::Bool(false))),
        Tok::Ident(name) => {
            if p.eat_op("(") {
                let mut args = Vec::new();
                if !p.eat_op(")") {
                    loop {
                        if p.eat_op("*") {
                            args.push(Expr::Col("*".into()));
                        } else {
                            args.push(parse_expr(p)?);
                        }
                        if p.eat_op(")") {
                            break;
                        }
                        p.expect_op(",")?;
                    }
                }
                Ok(Expr::Call(name.clone(), args))
            } else {
                Ok(Expr::Col(name.clone()))
            }
        }
        other => Err(format!("unexpected {other:?} in an expression")),
    }
}

struct Ctx {
    scalars: HashMap<String, V>,
    tables: HashMap<String, Vec<Row>>,
    now: DateTime<Utc>,
}

fn eval(e: &Expr, row: &Row, ctx: &Ctx) -> Result<V, String> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Col(name) => match row.get(name) {
            Some(v) => v.clone(),
            None => ctx
                .scalars
                .get(name)
                .cloned()
                .ok_or_else(|| format!("unknown column or name {name}"))?,
        },
        Expr::In(left, list) => {
            let l = eval(left, row, ctx)?;
            let mut found = false;
            for item in list {
                found |= eval(item, row, ctx)? == l;
            }
            V::Bool(found && l != V::Null)
        }
        Expr::Bin(op, a, b) if op == "and" => {
            V::Bool(eval(a, row, ctx)?.truthy() && eval(b, row, ctx)?.truthy())
        }
        Expr::Bin(op, a, b) if op == "or" => {
            V::Bool(eval(a, row, ctx)?.truthy() || eval(b, row, ctx)?.truthy())
        }
        Expr::Bin(op, a, b) if op == "+" || op == "-" => {
            let (l, r) = (eval(a, row, ctx)?, eval(b, row, ctx)?);
            let plus = op == "+";
            match (l, r) {
                (V::Null, _) | (_, V::Null) => V::Null,
                (V::Time(t), V::Span(s)) => {
                    V::Time(t + ChronoDuration::seconds(if plus { s } else { -s }))
                }
                (V::Span(s), V::Time(t)) if plus => V::Time(t + ChronoDuration::seconds(s)),
                (V::Time(a), V::Time(b)) if !plus => V::Span((a - b).num_seconds()),
                (V::Span(a), V::Span(b)) => V::Span(if plus { a + b } else { a - b }),
                (V::Int(a), V::Int(b)) => V::Int(if plus { a + b } else { a - b }),
                (l, r) => return Err(format!("{l:?} {op} {r:?}")),
            }
        }
        Expr::Bin(op, a, b) => {
            let (l, r) = (eval(a, row, ctx)?, eval(b, row, ctx)?);
            let lower = |v: &V| v.text().map(str::to_lowercase);
            match op.as_str() {
                "startswith" | "endswith" | "contains" | "has" => match (lower(&l), lower(&r)) {
                    (Some(l), Some(r)) => V::Bool(match op.as_str() {
                        "startswith" => l.starts_with(&r),
                        "endswith" => l.ends_with(&r),
                        _ => l.contains(&r),
                    }),
                    _ => V::Bool(false),
                },
                _ => {
                    let comparable = !matches!(l, V::Null)
                        && !matches!(r, V::Null)
                        && std::mem::discriminant(&l) == std::mem::discriminant(&r);
                    if !comparable {
                        V::Bool(op == "!=" && l != r && !matches!(l, V::Null))
                    } else {
                        V::Bool(match op.as_str() {
                            "==" => l == r,
                            "!=" => l != r,
                            "<" => l < r,
                            "<=" => l <= r,
                            ">" => l > r,
                            ">=" => l >= r,
                            other => return Err(format!("operator {other}")),
                        })
                    }
                }
            }
        }
        Expr::Call(f, args) => {
            let arg = |i: usize| -> Result<V, String> {
                eval(args.get(i).ok_or(format!("{f}: argument {i}"))?, row, ctx)
            };
            match f.as_str() {
                "isempty" => V::Bool(arg(0)?.is_empty()),
                "isnotempty" => V::Bool(!arg(0)?.is_empty()),
                "hourofday" => match arg(0)? {
                    V::Time(t) => V::Int(i64::from(t.hour())),
                    _ => V::Null,
                },
                "dayofweek" => match arg(0)? {
                    V::Time(t) => V::Span(i64::from(t.weekday().num_days_from_sunday()) * 86_400),
                    _ => V::Null,
                },
                "ago" => match arg(0)? {
                    V::Span(s) => V::Time(ctx.now - ChronoDuration::seconds(s)),
                    other => return Err(format!("ago({other:?})")),
                },
                "now" if args.is_empty() => V::Time(ctx.now),
                "bin" => match (arg(0)?, arg(1)?) {
                    (V::Time(t), V::Span(s)) if s > 0 => bin_time(t, s),
                    (V::Null, _) => V::Null,
                    (v, s) => return Err(format!("bin({v:?}, {s:?})")),
                },
                // The time the row was stored: only a table's own rows have it (after a
                // `summarize` there is none, as in Log Analytics).
                "ingestion_time" if args.is_empty() => {
                    row.get(INGESTION_TIME).cloned().unwrap_or(V::Null)
                }
                other => {
                    return Err(format!(
                        "function {other} is outside the evaluator's subset"
                    ));
                }
            }
        }
    })
}

/// Where the evaluator keeps a table row's ingestion time (read by `ingestion_time()`);
/// not a column: queries cannot name it.
const INGESTION_TIME: &str = "$ingestion_time";

/// `bin(t, span)`: `t` rounded down to a multiple of `span` (from the Unix epoch, as KQL).
fn bin_time(t: DateTime<Utc>, span: i64) -> V {
    let secs = t.timestamp().div_euclid(span) * span;
    V::Time(Utc.timestamp_opt(secs, 0).unwrap())
}

/// A `summarize` aggregate over a group.
fn aggregate(f: &str, args: &[Expr], rows: &[&Row], ctx: &Ctx) -> Result<V, String> {
    let values = |i: usize| -> Result<Vec<V>, String> {
        rows.iter()
            .map(|r| eval(&args[i], r, ctx))
            .filter(|v| !matches!(v, Ok(V::Null)))
            .collect()
    };
    Ok(match f {
        "count" => V::Int(rows.len() as i64),
        "countif" => {
            let mut n = 0;
            for r in rows {
                n += i64::from(eval(&args[0], r, ctx)?.truthy());
            }
            V::Int(n)
        }
        "dcount" => V::Int(values(0)?.into_iter().collect::<BTreeSet<_>>().len() as i64),
        "sum" => V::Int(
            values(0)?
                .iter()
                .map(|v| if let V::Int(n) = v { *n } else { 0 })
                .sum(),
        ),
        "min" => values(0)?.into_iter().min().unwrap_or(V::Null),
        "max" => values(0)?.into_iter().max().unwrap_or(V::Null),
        "make_set" => {
            let set: BTreeSet<String> = values(0)?.iter().map(|v| format!("{v:?}")).collect();
            V::Str(set.into_iter().collect::<Vec<_>>().join(", "))
        }
        other => {
            return Err(format!(
                "aggregate {other} is outside the evaluator's subset"
            ));
        }
    })
}

/// Split tokens at top-level occurrences of `op` (outside parentheses).
fn split_top(toks: &[Tok], op: &str) -> Vec<Vec<Tok>> {
    let mut parts = vec![Vec::new()];
    let mut depth = 0i32;
    for t in toks {
        match t {
            Tok::Op("(") => depth += 1,
            Tok::Op(")") => depth -= 1,
            Tok::Op(o) if *o == op && depth == 0 => {
                parts.push(Vec::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(t.clone());
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// Run a tabular expression (`Source | op | op ...`).
fn run_tabular(toks: &[Tok], ctx: &Ctx) -> Result<Vec<Row>, String> {
    let stages = split_top(toks, "|");
    let source = match stages.first().map(Vec::as_slice) {
        Some([Tok::Ident(name)]) => name.clone(),
        other => return Err(format!("a query starts with a table name, not {other:?}")),
    };
    let mut rows = ctx
        .tables
        .get(&source)
        .cloned()
        .ok_or_else(|| format!("unknown table {source}"))?;
    for stage in &stages[1..] {
        let mut p = P { toks: stage, at: 0 };
        let op = p.ident()?;
        match op.as_str() {
            "where" => {
                let e = parse_expr(&mut p)?;
                let mut kept = Vec::new();
                for r in rows {
                    if eval(&e, &r, ctx)?.truthy() {
                        kept.push(r);
                    }
                }
                rows = kept;
            }
            "extend" => {
                let mut assigns = Vec::new();
                loop {
                    let name = p.ident()?;
                    p.expect_op("=")?;
                    assigns.push((name, parse_expr(&mut p)?));
                    if !p.eat_op(",") {
                        break;
                    }
                }
                for r in &mut rows {
                    for (name, e) in &assigns {
                        let v = eval(e, r, ctx)?;
                        r.insert(name.clone(), v);
                    }
                }
            }
            "project" | "distinct" => {
                let mut cols = vec![p.ident()?];
                while p.eat_op(",") {
                    cols.push(p.ident()?);
                }
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                for r in rows {
                    let projected: Row = cols
                        .iter()
                        .map(|c| (c.clone(), r.get(c).cloned().unwrap_or(V::Null)))
                        .collect();
                    if op == "project" || seen.insert(projected.clone()) {
                        out.push(projected);
                    }
                }
                rows = out;
            }
            "join" => {
                if !(p.eat_word("kind") && p.eat_op("=") && p.eat_word("leftanti")) {
                    return Err("only `join kind=leftanti` is in the subset".into());
                }
                let right_name = p.ident()?;
                let right = ctx
                    .tables
                    .get(&right_name)
                    .ok_or_else(|| format!("unknown table {right_name}"))?;
                if !p.eat_word("on") {
                    return Err("join needs `on`".into());
                }
                let mut keys = vec![p.ident()?];
                while p.eat_op(",") {
                    keys.push(p.ident()?);
                }
                let key = |r: &Row| -> Vec<V> {
                    keys.iter()
                        .map(|k| r.get(k).cloned().unwrap_or(V::Null))
                        .collect()
                };
                let right_keys: BTreeSet<Vec<V>> = right.iter().map(key).collect();
                rows.retain(|r| !right_keys.contains(&key(r)));
            }
            "summarize" => {
                // Aggregates up to `by`.
                let by_at = stage
                    .iter()
                    .position(|t| matches!(t, Tok::Ident(w) if w == "by"))
                    .unwrap_or(stage.len());
                let mut aggs: Vec<(String, String, Vec<Expr>)> = Vec::new();
                for part in split_top(&stage[1..by_at], ",") {
                    let mut q = P { toks: &part, at: 0 };
                    let (name, call) = if matches!(part.get(1), Some(Tok::Op("="))) {
                        let n = q.ident()?;
                        q.expect_op("=")?;
                        (Some(n), parse_primary(&mut q)?)
                    } else {
                        (None, parse_primary(&mut q)?)
                    };
                    let Expr::Call(f, args) = call else {
                        return Err(format!("summarize needs aggregates: {part:?}"));
                    };
                    let name = name.unwrap_or_else(|| format!("{f}_"));
                    aggs.push((name, f, args));
                }
                let mut keys: Vec<(String, Expr, Option<i64>)> = Vec::new();
                if by_at < stage.len() {
                    for part in split_top(&stage[by_at + 1..], ",") {
                        let mut q = P { toks: &part, at: 0 };
                        match parse_primary(&mut q)? {
                            Expr::Col(c) => keys.push((c.clone(), Expr::Col(c), None)),
                            Expr::Call(f, args) if f == "bin" => match args.as_slice() {
                                [Expr::Col(c), Expr::Lit(V::Span(s))] => {
                                    keys.push((c.clone(), Expr::Col(c.clone()), Some(*s)))
                                }
                                _ => return Err("bin(column, timespan)".into()),
                            },
                            other => return Err(format!("summarize by {other:?}")),
                        }
                    }
                }
                let mut groups: BTreeMap<Vec<V>, Vec<&Row>> = BTreeMap::new();
                for r in &rows {
                    let mut k = Vec::new();
                    for (_, e, bin) in &keys {
                        let v = eval(e, r, ctx)?;
                        k.push(match (v, bin) {
                            (V::Time(t), Some(s)) => bin_time(t, *s),
                            (v, _) => v,
                        });
                    }
                    groups.entry(k).or_default().push(r);
                }
                let mut out = Vec::new();
                for (k, members) in groups {
                    // arg_max(col, *) / arg_min(col, *): the whole row with the largest
                    // (smallest) col; the first such row on a tie.
                    if let [(_, f, args)] = aggs.as_slice()
                        && (f == "arg_max" || f == "arg_min")
                    {
                        let [by, Expr::Col(star)] = args.as_slice() else {
                            return Err(format!("{f}(column, *)"));
                        };
                        if star != "*" {
                            return Err(format!("{f}(column, *)"));
                        }
                        let mut best: Option<(&Row, V)> = None;
                        for r in members {
                            let v = eval(by, r, ctx)?;
                            let better = |b: &V| if f == "arg_max" { v > *b } else { v < *b };
                            if best.as_ref().is_none_or(|(_, b)| better(b)) {
                                best = Some((r, v));
                            }
                        }
                        out.extend(best.map(|(r, _)| {
                            let mut r = r.clone();
                            r.remove(INGESTION_TIME);
                            r
                        }));
                        continue;
                    }
                    let mut row = Row::new();
                    for ((name, _, _), v) in keys.iter().zip(k) {
                        row.insert(name.clone(), v);
                    }
                    for (name, f, args) in &aggs {
                        row.insert(name.clone(), aggregate(f, args, &members, ctx)?);
                    }
                    out.push(row);
                }
                rows = out;
            }
            other => {
                return Err(format!(
                    "operator {other} is outside the evaluator's subset"
                ));
            }
        }
        if !p.done() && op != "summarize" {
            return Err(format!("{op}: unexpected {:?}", p.peek()));
        }
    }
    Ok(rows)
}

/// Run a query (`let` statements, then one tabular expression) over `tables`.
fn run_query(
    text: &str,
    tables: HashMap<String, Vec<Row>>,
    now: DateTime<Utc>,
) -> Result<Vec<Row>, String> {
    let toks = lex(text)?;
    let mut ctx = Ctx {
        scalars: HashMap::new(),
        tables,
        now,
    };
    let statements = split_top(&toks, ";");
    let (last, lets) = statements.split_last().ok_or("an empty query")?;
    for st in lets {
        match st.as_slice() {
            [Tok::Ident(kw), Tok::Ident(name), Tok::Op("="), rest @ ..] if kw == "let" => {
                if rest.contains(&Tok::Op("|")) {
                    let table = run_tabular(rest, &ctx)?;
                    ctx.tables.insert(name.clone(), table);
                } else {
                    let mut p = P { toks: rest, at: 0 };
                    let v = eval(&parse_expr(&mut p)?, &Row::new(), &ctx)?;
                    ctx.scalars.insert(name.clone(), v);
                }
            }
            other => return Err(format!("expected `let name = ...;`, found {other:?}")),
        }
    }
    run_tabular(last, &ctx)
}

/// Run a rule over raw table rows: `VeeamRestore_CL` is `rows`, `VeeamRestore` the
/// parser function's result over them. A row's ingestion time is the one [`ingested`]
/// gave it, else its `TimeGenerated` (delivered as it happened).
fn run_rule(query: &str, rows: &[Row], now: DateTime<Utc>) -> Vec<Row> {
    let table: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if !r.contains_key(INGESTION_TIME) {
                let t = r.get("TimeGenerated").cloned().unwrap_or(V::Null);
                r.insert(INGESTION_TIME.into(), t);
            }
            r
        })
        .collect();
    let mut tables = HashMap::new();
    tables.insert("VeeamRestore_CL".to_string(), table);
    let parsed = run_query(&parser_query(), tables.clone(), now)
        .unwrap_or_else(|e| panic!("VeeamRestore.kql: {e}"));
    tables.insert("VeeamRestore".to_string(), parsed);
    run_query(query, tables, now).unwrap_or_else(|e| panic!("{e}\nin query:\n{query}"))
}

/// The rows as stored at `at`: each with ingestion time `at`.
fn ingested(rows: &[Row], at: DateTime<Utc>) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            r.insert(INGESTION_TIME.into(), V::Time(at));
            r
        })
        .collect()
}

fn span_secs(text: &str) -> i64 {
    match lex(text).as_deref() {
        Ok([Tok::Span(s)]) => *s,
        other => panic!("{text:?} is not a timespan: {other:?}"),
    }
}

/// A scheduled rule as Sentinel runs it.
struct Scheduled {
    query: String,
    frequency: i64,
    period: i64,
}

fn scheduled(fragment: &str) -> Scheduled {
    let (_, r) = rules()
        .into_iter()
        .find(|(_, r)| r["name"].as_str().unwrap_or("").contains(fragment))
        .unwrap_or_else(|| panic!("no rule named like {fragment:?}"));
    Scheduled {
        query: r["query"].as_str().unwrap().to_string(),
        frequency: span_secs(r["queryFrequency"].as_str().unwrap()),
        period: span_secs(r["queryPeriod"].as_str().unwrap()),
    }
}

/// The ingestion delay the rules allow (`now() - 5m` in their queries).
const LAG_SECS: i64 = 300;

impl Scheduled {
    /// One run at `now`, as Sentinel makes it: over the rows stored by then whose
    /// `TimeGenerated` is within `queryPeriod`.
    fn run(&self, rows: &[Row], now: DateTime<Utc>) -> Vec<Row> {
        let from = now - ChronoDuration::seconds(self.period);
        let visible: Vec<Row> = rows
            .iter()
            .filter(|r| {
                let stored = match r.get(INGESTION_TIME).or_else(|| r.get("TimeGenerated")) {
                    Some(V::Time(t)) => *t <= now,
                    _ => false,
                };
                stored
                    && matches!(r.get("TimeGenerated"), Some(V::Time(t)) if *t >= from && *t <= now)
            })
            .cloned()
            .collect();
        run_rule(&self.query, &visible, now)
    }

    /// When the run that evaluates rows ingested at `at` starts: after the end of `at`'s
    /// `queryFrequency` slot plus the lag, a couple of minutes into the schedule.
    fn run_after(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let V::Time(slot) = bin_time(at, self.frequency) else {
            unreachable!()
        };
        slot + ChronoDuration::seconds(self.frequency + LAG_SECS + 120)
    }

    fn next_run(&self, run: DateTime<Utc>) -> DateTime<Utc> {
        run + ChronoDuration::seconds(self.frequency)
    }
}

// ---------------------------------------------------------------------------------------
// Static checks

const KEYWORDS: &[&str] = &[
    "let",
    "where",
    "extend",
    "summarize",
    "by",
    "project",
    "distinct",
    "join",
    "kind",
    "leftanti",
    "on",
    "and",
    "or",
    "in",
    "startswith",
    "endswith",
    "contains",
    "has",
    "true",
    "false",
];

/// Names a query reads that are neither table columns, nor made by the query, nor
/// functions, keywords or tables.
fn unknown_columns(query: &str) -> Result<Vec<String>, String> {
    let toks = lex(query)?;
    let columns: BTreeSet<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    let mut made: BTreeSet<String> = BTreeSet::new();
    // Columns the parser function adds (`IngestedAt`) are columns of `VeeamRestore`.
    let parser = lex(&parser_query())?;
    for stream in [&toks, &parser] {
        for w in stream.windows(2) {
            if let (Tok::Ident(name), Tok::Op("=")) = (&w[0], &w[1]) {
                made.insert(name.clone());
            }
        }
    }
    let mut unknown = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let Tok::Ident(name) = t else { continue };
        let after_dot = i > 0 && toks[i - 1] == Tok::Op(".");
        let is_call = matches!(toks.get(i + 1), Some(Tok::Op("(")));
        if after_dot
            || is_call
            || KEYWORDS.contains(&name.as_str())
            || made.contains(name)
            || columns.contains(name.as_str())
            || name == "VeeamRestore"
            || name == "VeeamRestore_CL"
        {
            continue;
        }
        unknown.push(name.clone());
    }
    Ok(unknown)
}

#[test]
fn the_template_declares_the_sinks_columns() {
    let t = template();
    let dcr = resource(&t, "Microsoft.Insights/dataCollectionRules");
    let props = &dcr["properties"];
    let declared: Vec<(String, String)> =
        props["streamDeclarations"]["Custom-VeeamRestore_CL"]["columns"]
            .as_array()
            .expect("the stream Custom-VeeamRestore_CL is declared")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    let sink: Vec<(String, String)> = COLUMNS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(declared, sink, "streamDeclarations != the sink's COLUMNS");

    let table = resource(&t, "Microsoft.OperationalInsights/workspaces/tables");
    let schema = &table["properties"]["schema"];
    assert_eq!(schema["name"], "[variables('tableName')]");
    assert_eq!(t["variables"]["tableName"], "VeeamRestore_CL");
    assert_eq!(t["variables"]["streamName"], "Custom-VeeamRestore_CL");
    let table_cols: Vec<(String, String)> = schema["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_lowercase(),
            )
        })
        .collect();
    assert_eq!(
        table_cols, sink,
        "the table's columns != the sink's COLUMNS"
    );
    assert!(
        schema["columns"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["description"].as_str().is_some_and(|d| !d.is_empty())),
        "every column is described"
    );

    let flows = props["dataFlows"].as_array().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        flows[0]["streams"],
        serde_json::json!(["Custom-VeeamRestore_CL"])
    );
    assert_eq!(flows[0]["outputStream"], "Custom-VeeamRestore_CL");
    assert!(
        flows[0]["transformKql"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    let dest = flows[0]["destinations"][0].as_str().unwrap();
    assert!(
        props["destinations"]["logAnalytics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == dest)
    );
    assert!(props["dataCollectionEndpointId"].is_string());
    for output in [
        "logsIngestionEndpoint",
        "dcrImmutableId",
        "dcrResourceId",
        "stream",
    ] {
        assert!(t["outputs"][output].is_object(), "output {output}");
    }

    // The parser the template deploys is VeeamRestore.kql.
    let function = resource(&t, "Microsoft.OperationalInsights/workspaces/savedSearches");
    assert_eq!(function["properties"]["functionAlias"], "VeeamRestore");
    let file: String = parser_query()
        .lines()
        .filter(|l| !l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        function["properties"]["query"].as_str().unwrap(),
        file.trim()
    );
    assert!(file.contains("extend IngestedAt = ingestion_time()"));
    assert!(file.contains("arg_min(IngestedAt, *) by EventId"));
}

#[test]
fn analytics_rules_are_well_formed_and_use_table_columns() {
    let rules = rules();
    assert!(
        rules.len() >= 6,
        "expected the analytics rules, found {}",
        rules.len()
    );
    let severities = ["Informational", "Low", "Medium", "High"];
    let tactics = [
        "Reconnaissance",
        "ResourceDevelopment",
        "InitialAccess",
        "Execution",
        "Persistence",
        "PrivilegeEscalation",
        "DefenseEvasion",
        "CredentialAccess",
        "Discovery",
        "LateralMovement",
        "Collection",
        "Exfiltration",
        "CommandAndControl",
        "Impact",
    ];
    let entity_types = ["Account", "Host", "IP", "URL", "File", "CloudApplication"];
    let mut ids = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for (file, r) in &rules {
        let mut problem = |m: String| problems.push(format!("{file}: {m}"));
        for key in [
            "id",
            "name",
            "description",
            "severity",
            "requiredDataConnectors",
            "queryFrequency",
            "queryPeriod",
            "triggerOperator",
            "triggerThreshold",
            "tactics",
            "relevantTechniques",
            "query",
            "version",
            "kind",
        ] {
            if r.get(key).is_none_or(Value::is_null) {
                problem(format!("missing {key}"));
            }
        }
        let id = r["id"].as_str().unwrap_or("");
        if uuid::Uuid::parse_str(id).is_err() {
            problem(format!("id {id} is not a GUID"));
        }
        if !ids.insert(id.to_string()) {
            problem(format!("id {id} used twice"));
        }
        if !names.insert(r["name"].as_str().unwrap_or("").to_string()) {
            problem("name used twice".into());
        }
        if !severities.contains(&r["severity"].as_str().unwrap_or("")) {
            problem(format!("severity {}", r["severity"]));
        }
        if r["kind"] != "Scheduled" {
            problem("kind is not Scheduled".into());
        }
        if !["gt", "lt", "eq", "ne"].contains(&r["triggerOperator"].as_str().unwrap_or("")) {
            problem("triggerOperator".into());
        }
        for key in ["queryFrequency", "queryPeriod"] {
            let v = r[key].as_str().unwrap_or("");
            let ok = v.len() >= 2
                && v[..v.len() - 1].chars().all(|c| c.is_ascii_digit())
                && v.ends_with(['m', 'h', 'd']);
            if !ok {
                problem(format!("{key} {v}"));
            }
        }
        for t in r["tactics"].as_array().into_iter().flatten() {
            if !tactics.contains(&t.as_str().unwrap_or("")) {
                problem(format!("tactic {t}"));
            }
        }
        for t in r["relevantTechniques"].as_array().into_iter().flatten() {
            let t = t.as_str().unwrap_or("");
            let ok =
                t.len() >= 5 && t.starts_with('T') && t[1..5].chars().all(|c| c.is_ascii_digit());
            if !ok {
                problem(format!("technique {t}"));
            }
        }
        let version = r["version"].as_str().unwrap_or("");
        if version.split('.').count() != 3 {
            problem(format!("version {version}"));
        }
        let query = r["query"].as_str().unwrap_or("");
        if !query.contains("VeeamRestore\n") && !query.contains("VeeamRestore ") {
            problem("the query does not read the VeeamRestore parser".into());
        }
        if query.contains("VeeamRestore_CL") {
            problem("the query reads the table, not the parser (no de-duplication)".into());
        }
        match unknown_columns(query) {
            Ok(unknown) if unknown.is_empty() => {}
            Ok(unknown) => problem(format!("columns not in the table: {unknown:?}")),
            Err(e) => problem(format!("query does not lex: {e}")),
        }
        // Entity mappings name columns the query outputs.
        let made: BTreeSet<String> = lex(query)
            .unwrap_or_default()
            .windows(2)
            .filter_map(|w| match (&w[0], &w[1]) {
                (Tok::Ident(n), Tok::Op("=")) => Some(n.clone()),
                _ => None,
            })
            .collect();
        for m in r["entityMappings"].as_array().into_iter().flatten() {
            if !entity_types.contains(&m["entityType"].as_str().unwrap_or("")) {
                problem(format!("entityType {}", m["entityType"]));
            }
            for f in m["fieldMappings"].as_array().into_iter().flatten() {
                let col = f["columnName"].as_str().unwrap_or("");
                let known = COLUMNS.iter().any(|(n, _)| *n == col) || made.contains(col);
                if !known || !query.contains(col) {
                    problem(format!("entity column {col} is not in the query's output"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "rule problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_column_check_catches_unknown_columns() {
    assert_eq!(
        unknown_columns("VeeamRestore | where UserNme == \"a\" | extend X = 1 | where X > 0")
            .unwrap(),
        vec!["UserNme".to_string()]
    );
    assert!(
        unknown_columns("let t = 5; VeeamRestore | where Event.user.name == \"x\"")
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------
// Behaviour over simulator events

/// The demo's events (as printed by `veeam-siem demo`), once per test run.
fn demo_events() -> &'static Vec<Value> {
    static EVENTS: OnceLock<Vec<Value>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_veeam-siem"))
            .arg("demo")
            .env("RUST_LOG", "warn")
            .output()
            .expect("veeam-siem demo runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(events.len() > 50);
        events
    })
}

/// The sink's row (as JSON) of an event.
fn sink_row(event: &Value) -> Value {
    let json = serde_json::to_string(event).unwrap();
    let typed: Event = serde_json::from_str(&json).unwrap();
    let mut out = Vec::new();
    encode_row(&typed, &json, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// Table rows of the demo events, every seventh delivered twice (at least once).
fn demo_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, e) in demo_events().iter().enumerate() {
        let row = typed_row(&sink_row(e));
        if i % 7 == 0 {
            rows.push(row.clone());
        }
        rows.push(row);
    }
    rows
}

fn now_after(rows: &[Row]) -> DateTime<Utc> {
    rows.iter()
        .filter_map(|r| match r.get("TimeGenerated") {
            Some(V::Time(t)) => Some(*t),
            _ => None,
        })
        .max()
        .unwrap()
        + ChronoDuration::minutes(5)
}

fn s<'a>(e: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.')
        .try_fold(e, |v, k| v.get(k))
        .and_then(Value::as_str)
}

fn is_item(e: &Value) -> bool {
    s(e, "event.dataset") == Some("veeam.vbo_restore")
        && s(e, "event.action").is_some_and(|a| a.starts_with("item-"))
}

fn column_set(rows: &[Row], col: &str) -> BTreeSet<String> {
    rows.iter()
        .filter_map(|r| r.get(col).and_then(V::text).map(str::to_string))
        .collect()
}

fn expected_set(pred: impl Fn(&Value) -> bool, path: &str) -> BTreeSet<String> {
    demo_events()
        .iter()
        .filter(|e| pred(e))
        .filter_map(|e| s(e, path).map(str::to_string))
        .collect()
}

#[test]
fn the_parser_keeps_one_row_per_event_id() {
    let rows = demo_rows();
    let parsed = run_rule("VeeamRestore", &rows, now_after(&rows));
    assert!(parsed.len() < rows.len(), "the demo rows have duplicates");
    assert_eq!(parsed.len(), column_set(&rows, "EventId").len());
}

#[test]
fn single_event_rules_find_what_the_detection_means() {
    // The demo's history, stored in one batch: the run after it evaluates all of it.
    let rows = demo_rows();
    let at = now_after(&rows);
    let rows = ingested(&rows, at);
    let run = |name: &str| {
        let rule = scheduled(name);
        rule.run(&rows, rule.run_after(at))
    };

    let provider = run("not attributed to a named user");
    let want = expected_set(
        |e| {
            is_item(e)
                && (e["veeam"]["restore_session"]["initiated_by_is_organization"] == true
                    || (s(e, "user.name").is_none()
                        && s(e, "veeam.restore_session.initiated_by").is_none()))
        },
        "veeam.restore_session.id",
    );
    assert!(!want.is_empty(), "the demo has provider restores");
    assert_eq!(column_set(&provider, "RestoreSessionId"), want);

    let off_hours = run("outside business hours");
    let want = expected_set(
        |e| {
            let t = DateTime::parse_from_rfc3339(s(e, "@timestamp").unwrap()).unwrap();
            let weekend = t.weekday().number_from_monday() > 5;
            is_item(e) && (t.hour() < 7 || t.hour() >= 19 || weekend)
        },
        "veeam.restore_session.id",
    );
    assert!(!want.is_empty());
    assert_eq!(column_set(&off_hours, "RestoreSessionId"), want);
    let all_sessions = expected_set(is_item, "veeam.restore_session.id");
    assert!(
        want.len() < all_sessions.len(),
        "not every session is off hours"
    );

    let pst = run("PST file or a local path");
    let want = expected_set(
        |e| {
            let target = s(e, "veeam.restore_event.target")
                .unwrap_or("")
                .to_lowercase();
            matches!(s(e, "event.action"), Some("item-exported" | "item-saved"))
                && (target.ends_with(".pst")
                    || target.contains(":\\")
                    || target.starts_with("\\\\"))
        },
        "veeam.restore_session.id",
    );
    assert!(!want.is_empty(), "the demo exports to PST or local paths");
    assert_eq!(column_set(&pst, "RestoreSessionId"), want);
    assert!(want.len() < all_sessions.len());

    let vdc_job = run("VDC backup job session failed");
    let want = expected_set(
        |e| {
            s(e, "event.dataset") == Some("veeam.vdc_job_log")
                && s(e, "event.action") == Some("job-finished")
                && (s(e, "event.outcome") == Some("failure")
                    || matches!(s(e, "veeam.job_session.status"), Some("Failed" | "Error")))
        },
        "veeam.job_session.id",
    );
    assert!(!want.is_empty(), "the demo has failed VDC jobs");
    assert_eq!(column_set(&vdc_job, "JobSessionId"), want);

    let vdc_object = run("VDC object failed");
    let want = expected_set(
        |e| {
            s(e, "event.dataset") == Some("veeam.vdc_job_log")
                && s(e, "event.action") == Some("object-processed")
                && s(e, "event.outcome") == Some("failure")
        },
        "veeam.log.object_name",
    );
    assert!(!want.is_empty());
    assert_eq!(column_set(&vdc_object, "LogObjectName"), want);
    // Counts are of distinct events, not of (duplicated) rows.
    let failures: i64 = vdc_object
        .iter()
        .map(|r| match r.get("Failures") {
            Some(V::Int(n)) => *n,
            _ => 0,
        })
        .sum();
    let distinct = demo_events()
        .iter()
        .filter(|e| {
            s(e, "event.action") == Some("object-processed")
                && s(e, "event.outcome") == Some("failure")
        })
        .count() as i64;
    assert_eq!(failures, distinct);
}

/// One item-restore row of the demo, re-made as `n` distinct events from `client` a few
/// seconds apart, starting at `start`.
fn burst(template: &Row, client: &str, start: DateTime<Utc>, n: usize, tag: &str) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.insert("EventId".into(), V::Str(format!("{tag}-{i}")));
            r.insert("ClientAddress".into(), V::Str(client.into()));
            r.insert("EventAction".into(), V::Str("item-exported".into()));
            r.insert(
                "TimeGenerated".into(),
                V::Time(start + ChronoDuration::seconds(5 * i as i64)),
            );
            r
        })
        .collect()
}

#[test]
fn mass_restore_fires_on_fifty_distinct_items_from_one_host_only() {
    let rows = demo_rows();
    let at = now_after(&rows);
    let rule = scheduled("mass restore");
    let now = rule.run_after(at);
    let run = |rows: &[Row]| rule.run(&ingested(rows, at), now);
    // Baseline: what the detection means, computed directly.
    let mut buckets: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    for e in demo_events().iter().filter(|e| is_item(e)) {
        if s(e, "event.action") == Some("item-viewed") {
            continue;
        }
        let Some(client) = s(e, "client.address") else {
            continue;
        };
        let t = DateTime::parse_from_rfc3339(s(e, "@timestamp").unwrap()).unwrap();
        buckets
            .entry((client.to_string(), t.timestamp().div_euclid(900)))
            .or_default()
            .insert(s(e, "event.id").unwrap().to_string());
    }
    let want: BTreeSet<String> = buckets
        .iter()
        .filter(|(_, ids)| ids.len() >= 50)
        .map(|((c, _), _)| c.clone())
        .collect();
    assert_eq!(column_set(&run(&rows), "ClientAddress"), want);

    let template = rows
        .iter()
        .find(|r| matches!(r.get("EventAction"), Some(V::Str(a)) if a == "item-restored"))
        .expect("a restored item in the demo")
        .clone();
    let V::Time(start) = bin_time(at - ChronoDuration::hours(3), 900) else {
        unreachable!()
    };
    // 60 distinct items in 5 minutes from one host: fires, counting 60.
    let mut scenario = rows.clone();
    scenario.extend(burst(&template, "ws-mass-01", start, 60, "mass"));
    let hits = run(&scenario);
    let hit = hits
        .iter()
        .find(|r| r.get("ClientAddress") == Some(&V::Str("ws-mass-01".into())))
        .expect("the burst fires the rule");
    assert_eq!(hit.get("Items"), Some(&V::Int(60)));
    // 49 distinct items, each delivered twice: below the threshold.
    let mut below = rows.clone();
    let items = burst(&template, "ws-mass-02", start, 49, "dup");
    below.extend(items.clone());
    below.extend(items);
    let hits = run(&below);
    assert!(
        !column_set(&hits, "ClientAddress").contains("ws-mass-02"),
        "duplicates are not items"
    );
}

#[test]
fn new_client_host_fires_only_on_a_host_first_seen_in_the_last_hour() {
    // Rows stored as they happen; the run after the demo's last hour of ingestion: hosts
    // whose first restore is in that hour count.
    let rows = demo_rows();
    let rule = scheduled("new client host");
    let last = now_after(&rows) - ChronoDuration::minutes(5);
    let now = rule.run_after(last);
    let V::Time(window_start) = bin_time(last, rule.frequency) else {
        unreachable!()
    };
    let mut first_seen: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for r in &rows {
        if let (Some(V::Str(c)), Some(V::Time(t)), Some(V::Str(d))) = (
            r.get("ClientAddress"),
            r.get("TimeGenerated"),
            r.get("EventDataset"),
        ) && d == "veeam.vbo_restore"
            && !c.is_empty()
        {
            let e = first_seen.entry(c.clone()).or_insert(*t);
            *e = (*e).min(*t);
        }
    }
    let want: BTreeSet<String> = first_seen
        .iter()
        .filter(|(_, t)| **t >= window_start)
        .map(|(c, _)| c.clone())
        .collect();
    assert_eq!(column_set(&rule.run(&rows, now), "ClientAddress"), want);

    let template = rows
        .iter()
        .find(|r| matches!(r.get("EventAction"), Some(V::Str(a)) if a.starts_with("item-")))
        .unwrap()
        .clone();
    let mut scenario = rows.clone();
    scenario.extend(burst(
        &template,
        "ws-new-77",
        window_start + ChronoDuration::minutes(1),
        2,
        "new",
    ));
    // A known host restoring again in the last hour is not new.
    let known = first_seen
        .iter()
        .find(|(_, t)| **t < window_start - ChronoDuration::hours(1))
        .map(|(c, _)| c.clone())
        .expect("the demo has hosts seen long ago");
    scenario.extend(burst(
        &template,
        &known,
        window_start + ChronoDuration::minutes(2),
        1,
        "old",
    ));
    let hits = column_set(&rule.run(&scenario, now), "ClientAddress");
    assert!(hits.contains("ws-new-77"), "{hits:?}");
    assert!(!hits.contains(&known), "{known} is not new: {hits:?}");
}

/// A demo row of `action`, re-made as a distinct event of its own session, `TimeGenerated`
/// at `at`.
fn late_copy(rows: &[Row], action: &str, at: DateTime<Utc>, tag: &str) -> Row {
    let mut r = rows
        .iter()
        .find(|r| r.get("EventAction") == Some(&V::Str(action.into())))
        .unwrap_or_else(|| panic!("a demo row of {action}"))
        .clone();
    r.insert("EventId".into(), V::Str(format!("{tag}-event")));
    r.insert("RestoreSessionId".into(), V::Str(format!("{tag}-session")));
    r.insert("TimeGenerated".into(), V::Time(at));
    r
}

#[test]
fn a_late_event_is_evaluated_by_the_run_after_it_is_stored_and_only_that_one() {
    // The demo, stored as it happened; then, at `arrival`, events of three days ago (a
    // backfill, a sink outage): the rules select by ingestion time, so the run after
    // `arrival` finds them, the next run does not, and a copy re-sent later does not
    // bring them back.
    let rows = demo_rows();
    let arrival = now_after(&rows) + ChronoDuration::hours(2);
    let three_days_ago = arrival - ChronoDuration::days(3);
    let rule = scheduled("PST file or a local path");
    let mut late = late_copy(&rows, "item-exported", three_days_ago, "late");
    late.insert("ItemTarget".into(), V::Str(r"D:\out\mailbox.pst".into()));
    let stored = |r: &Row, at: DateTime<Utc>| ingested(std::slice::from_ref(r), at);
    let mut table = rows.clone();
    table.extend(stored(&late, arrival));
    // The same event delivered again twenty minutes later (at least once).
    table.extend(stored(&late, arrival + ChronoDuration::minutes(20)));
    // An event older than the query period when it arrives is not evaluated (README).
    let mut too_old = late_copy(
        &rows,
        "item-exported",
        arrival - ChronoDuration::days(8),
        "too-old",
    );
    too_old.insert("ItemTarget".into(), V::Str(r"D:\out\old.pst".into()));
    table.extend(stored(&too_old, arrival));

    let first = rule.run_after(arrival);
    let sessions = |now| column_set(&rule.run(&table, now), "RestoreSessionId");
    let before = sessions(first - ChronoDuration::seconds(rule.frequency));
    assert!(
        !before.contains("late-session"),
        "not stored yet: {before:?}"
    );
    let found = sessions(first);
    assert!(found.contains("late-session"), "{found:?}");
    assert!(!found.contains("too-old-session"), "{found:?}");
    for k in 1..=4 {
        let mut now = first;
        for _ in 0..k {
            now = rule.next_run(now);
        }
        let again = sessions(now);
        assert!(
            !again.contains("late-session"),
            "run {k} after: found again: {again:?}"
        );
    }
    // Event-time logic stays on event time: a late restore at 03:00 UTC is off hours.
    let off_hours = scheduled("outside business hours");
    let V::Time(night) = bin_time(three_days_ago, 86_400) else {
        unreachable!()
    };
    let night_restore = late_copy(
        &rows,
        "item-restored",
        night + ChronoDuration::hours(3),
        "night",
    );
    let mut table = rows.clone();
    table.extend(stored(&night_restore, arrival));
    let first = off_hours.run_after(arrival);
    let found = column_set(&off_hours.run(&table, first), "RestoreSessionId");
    assert!(found.contains("night-session"), "{found:?}");
    let again = column_set(
        &off_hours.run(&table, off_hours.next_run(first)),
        "RestoreSessionId",
    );
    assert!(!again.contains("night-session"), "{again:?}");
}

#[test]
fn mass_restore_counts_a_bin_across_ingestion_windows_and_alerts_once() {
    // 60 items of one 15-minute bin two days ago, arriving 30 in one ingestion slot and 30
    // in the next: the first run sees 30 (below 50), the second counts all 60 of the bin
    // (the 30 stored earlier too) and alerts, the third does not alert again.
    let rows = demo_rows();
    let rule = scheduled("mass restore");
    let template = rows
        .iter()
        .find(|r| matches!(r.get("EventAction"), Some(V::Str(a)) if a == "item-restored"))
        .expect("a restored item in the demo")
        .clone();
    let arrival = now_after(&rows) + ChronoDuration::hours(2);
    let V::Time(bin_start) = bin_time(arrival - ChronoDuration::days(2), 900) else {
        unreachable!()
    };
    let items = burst(&template, "ws-late-01", bin_start, 60, "late-mass");
    let mut table = rows.clone();
    table.extend(ingested(&items[..30], arrival));
    let second_arrival = arrival + ChronoDuration::seconds(rule.frequency);
    table.extend(ingested(&items[30..], second_arrival));
    let hosts = |now| column_set(&rule.run(&table, now), "ClientAddress");

    let first = rule.run_after(arrival);
    assert!(!hosts(first).contains("ws-late-01"), "30 items are not 50");
    let second = rule.run_after(second_arrival);
    assert_eq!(second, rule.next_run(first));
    let hits = rule.run(&table, second);
    let hit = hits
        .iter()
        .find(|r| r.get("ClientAddress") == Some(&V::Str("ws-late-01".into())))
        .expect("the bin reaches 50 with the second half");
    assert_eq!(hit.get("Items"), Some(&V::Int(60)));
    assert_eq!(hit.get("ItemsBefore"), Some(&V::Int(30)));
    assert!(
        !hosts(rule.next_run(second)).contains("ws-late-01"),
        "the bin alerts once"
    );
}

#[test]
fn the_evaluator_computes_windows_and_ingestion_times() {
    let t0 = Utc.with_ymd_and_hms(2026, 3, 4, 10, 7, 30).unwrap();
    let mut row = Row::new();
    row.insert("A".into(), V::Int(1));
    row.insert(INGESTION_TIME.into(), V::Time(t0));
    let mut tables = HashMap::new();
    tables.insert("T".to_string(), vec![row]);
    let now = Utc.with_ymd_and_hms(2026, 3, 4, 10, 27, 0).unwrap();
    let out = run_query(
        "let w = bin(now() - 5m, 15m); T | extend I = ingestion_time(), S = w - 15m, B = bin(ingestion_time(), 1h) + 1m \
         | where I >= S and I < w | summarize arg_min(I, *), N = countif(A == 1) by A",
        tables.clone(),
        now,
    );
    assert!(
        out.is_err(),
        "arg_min(col, *) with other aggregates is not in the subset"
    );
    let out = run_query(
        "let w = bin(now() - 5m, 15m); T | extend I = ingestion_time(), S = w - 15m, B = bin(ingestion_time(), 1h) + 1m \
         | where I >= S and I < w | summarize arg_min(I, *) by A",
        tables.clone(),
        now,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    let at = |h, m| V::Time(Utc.with_ymd_and_hms(2026, 3, 4, h, m, 0).unwrap());
    assert_eq!(out[0].get("S"), Some(&at(10, 0)));
    assert_eq!(out[0].get("B"), Some(&at(10, 1)));
    assert_eq!(out[0].get(INGESTION_TIME), None, "gone after a summarize");
    let counted = run_query(
        "T | summarize N = countif(A == 1), M = countif(A == 2) by A",
        tables,
        now,
    )
    .unwrap();
    assert_eq!(counted[0].get("N"), Some(&V::Int(1)));
    assert_eq!(counted[0].get("M"), Some(&V::Int(0)));
}

#[test]
fn the_evaluator_rejects_what_it_does_not_know() {
    let rows = vec![Row::new()];
    let mut tables = HashMap::new();
    tables.insert("T".to_string(), rows);
    let now = Utc::now();
    for q in [
        "T | where matches_regex(A, \"x\")",
        "T | top 5 by A",
        "T | summarize percentile(A, 50)",
        "T | join kind=inner T on A",
    ] {
        assert!(run_query(q, tables.clone(), now).is_err(), "{q}");
    }
    let ok = run_query(
        "let x = 3; T | extend A = x | where A >= 3 and A in (1, 3)",
        tables,
        now,
    )
    .unwrap();
    assert_eq!(ok.len(), 1);
}
