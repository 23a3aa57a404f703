//! Splunk: the app's `.conf` files (stanzas, `\` continuations), macro expansion, and an
//! analyzer of SPL searches ([`analyze`]) that lists every field a search reads and
//! reports the ones that neither exist in the output schema (as Splunk extracts them from
//! the JSON event), nor are indexed fields or Splunk defaults, nor were created earlier in
//! the search (and are still there: fields dropped by `stats` are errors too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{schema_paths, splunk_default_dir, wildcard_match};

// ---------------------------------------------------------------------------------------
// Splunk: .conf files, macros, and the fields each search reads

/// Stanzas of a Splunk .conf file: `[name]`, `key = value`, `\` at a line end continues
/// the value on the next line (the newline is kept), `#` starts a comment line.
pub fn parse_conf(path: &Path) -> Vec<(String, BTreeMap<String, String>)> {
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

pub fn macros() -> BTreeMap<String, String> {
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

pub fn expand_macros(spl: &str, macros: &BTreeMap<String, String>, depth: usize) -> String {
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
/// What the HEC sink sends in `fields` (src/sinks/splunk_hec/wire.rs).
pub const INDEXED_FIELDS: [&str; 6] = [
    "event_id",
    "dataset",
    "action",
    "outcome",
    "source_id",
    "organization",
];

/// Follows one search through its commands: which fields exist at each point.
pub struct SplAnalysis {
    /// `None` before any transforming command: every event field exists.
    pub available: Option<BTreeSet<String>>,
    /// Fields the search made (eval, `as`), while they still exist.
    pub created: BTreeSet<String>,
    /// (field, command) for every field the search reads.
    pub reads: Vec<(String, String)>,
    pub errors: Vec<String>,
    /// Inside tstats only indexed and default fields exist.
    pub indexed_only: bool,
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

pub fn saved_searches() -> Vec<(String, BTreeMap<String, String>)> {
    parse_conf(&splunk_default_dir().join("savedsearches.conf"))
}

pub fn analyze(spl: &str) -> SplAnalysis {
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
