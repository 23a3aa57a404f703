//! Reading a page of records when the page as a whole is not valid JSON.
//!
//! Owns the fallback that keeps one bad record from costing its neighbours: a page that
//! fails strict parsing is split into its records by a byte-level scan of the `results`
//! array (or of a bare array) that tracks nesting and strings only, so a syntax error or
//! invalid UTF-8 *inside* one record stays inside it. Each record is then parsed alone:
//! invalid UTF-8 is replaced (U+FFFD) and the record kept, and so is a record whose only
//! fault is a raw control character inside a string (escaped: the text is unchanged) or a
//! `NaN`/`Infinity` literal (kept as a string, which the mapping reports where it reads a
//! number: [`repair_syntax`]); a record that still doesn't parse is reported with its
//! position and whatever id can be read from it.
//!
//! Must not: guess at structure it can't delimit (unbalanced quotes or brackets make the
//! whole page unreadable, as before), log, or do I/O.

use serde_json::value::RawValue;

/// The page a `204 No Content` answer to a listing stands for: nothing is listed there.
pub const EMPTY_PAGE: &[u8] = br#"{"results":[]}"#;

/// `body` without a leading UTF-8 byte order mark, which some .NET serializers and proxies
/// write before JSON (RFC 8259 lets a parser ignore it; serde_json doesn't).
pub fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// A record that could not be read, for the caller's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// 0-based position in the page.
    pub position: usize,
    /// The record's `"id"` if one can be read from its text, else `<unknown>`.
    pub id: String,
    pub error: String,
}

/// The records of a page read one by one.
#[derive(Debug, Default)]
pub struct SplitPage {
    pub records: Vec<Box<RawValue>>,
    pub unreadable: Vec<Unreadable>,
    /// Records kept after replacing invalid UTF-8 or [`repair_syntax`].
    pub repaired: usize,
    /// Which of `records` had bytes that were not valid UTF-8 replaced with U+FFFD: their
    /// text is not what the server sent, and their events say so.
    pub replaced: Vec<usize>,
    /// Where the records' array opens (`[`) and closes (`]`) in the body.
    pub array: (usize, usize),
}

impl SplitPage {
    /// Records on the page, readable or not (what paging offsets count).
    pub fn len(&self) -> usize {
        self.records.len() + self.unreadable.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Split `body` (a bare array, or an object with a `results` array) into records and parse
/// each alone; `None` if the array can't be delimited.
pub fn split(body: &[u8]) -> Option<SplitPage> {
    split_at_keys(body, &["results"])
}

/// [`split`] for an object whose records are under the first of `keys` (any case).
pub fn split_at_keys(body: &[u8], keys: &[&str]) -> Option<SplitPage> {
    let (spans, array) = record_spans(body, keys)?;
    let mut page = SplitPage {
        array,
        ..SplitPage::default()
    };
    for (position, span) in spans.into_iter().enumerate() {
        match serde_json::from_slice::<Box<RawValue>>(span) {
            Ok(raw) => page.records.push(raw),
            Err(strict) => {
                let lossy = String::from_utf8_lossy(span);
                let utf8 = std::str::from_utf8(span)
                    .is_err()
                    .then(|| RawValue::from_string(lossy.to_string()).ok())
                    .flatten();
                let repaired = utf8.or_else(|| {
                    repair_syntax(&lossy).and_then(|text| RawValue::from_string(text).ok())
                });
                match repaired {
                    Some(raw) => {
                        if std::str::from_utf8(span).is_err() {
                            page.replaced.push(page.records.len());
                        }
                        page.records.push(raw);
                        page.repaired += 1;
                    }
                    None => page.unreadable.push(Unreadable {
                        position,
                        id: scan_id(&lossy),
                        error: strict.to_string(),
                    }),
                }
            }
        }
    }
    Some(page)
}

/// JSON text with the two faults of hand-rolled serializers that lose nothing repaired:
/// a raw control character (U+0000 to U+001F) inside a string is escaped (`\u0009`: the
/// string's value is what was sent), and a `NaN`, `Infinity` or `-Infinity` literal where
/// a value belongs becomes that word as a string (kept as text; a field read as a number
/// reports it). `None` when there is neither.
pub fn repair_syntax(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut in_string = false;
    let mut escaped = false;
    // The last byte outside strings that was not whitespace.
    let mut before = b'[';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                (false, c) if c < 0x20 => {
                    let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
                    o.push_str(&text[copied..i]);
                    o.push_str(&format!("\\u{c:04x}"));
                    copied = i + 1;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        if matches!(before, b':' | b',' | b'[')
            && let Some(word) = ["NaN", "Infinity", "-Infinity"]
                .into_iter()
                .find(|w| text[i..].starts_with(w))
        {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
            o.push_str(&text[copied..i]);
            o.push('"');
            o.push_str(word);
            o.push('"');
            i += word.len();
            copied = i;
            before = b'"';
            continue;
        }
        match b {
            b'"' => in_string = true,
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        before = b;
        i += 1;
    }
    let mut o = out?;
    o.push_str(&text[copied..]);
    Some(o)
}

/// The byte spans of the records in a page, and where their array opens and closes.
type Spans<'a> = (Vec<&'a [u8]>, (usize, usize));

/// The records of `{"<key>": [...]}` or `[...]`.
fn record_spans<'a>(body: &'a [u8], keys: &[&str]) -> Option<Spans<'a>> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let open = match body[start] {
        b'[' => start,
        b'{' => records_array(body, start, keys)?,
        _ => return None,
    };
    let mut spans = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut element_start: Option<usize> = None;
    for (i, &b) in body.iter().enumerate().skip(open + 1) {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                element_start.get_or_insert(i);
            }
            b'{' | b'[' => {
                depth += 1;
                element_start.get_or_insert(i);
            }
            b'}' | b']' if depth > 0 => depth -= 1,
            b']' => {
                if let Some(s) = element_start.take() {
                    spans.push(trim(&body[s..i]));
                }
                return Some((spans, (open, i)));
            }
            b'}' => return None,
            b',' if depth == 0 => {
                // An empty element (`[,` or `,,`) is a syntax error between records: nothing
                // to report for it.
                if let Some(s) = element_start.take() {
                    spans.push(trim(&body[s..i]));
                }
            }
            b if b.is_ascii_whitespace() => {}
            _ => {
                element_start.get_or_insert(i);
            }
        }
    }
    None
}

/// Index of the `[` opening the first top-level array of the object at `open` whose key is
/// one of `keys` (any case).
fn records_array(body: &[u8], open: usize, keys: &[&str]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    let mut last_key: Option<(usize, usize)> = None;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let s = i + 1;
                let mut j = s;
                while j < body.len() && body[j] != b'"' {
                    j += if body[j] == b'\\' { 2 } else { 1 };
                }
                if j >= body.len() {
                    return None;
                }
                last_key = (depth == 1).then_some((s, j));
                i = j;
            }
            b'{' | b'[' => {
                if body[i] == b'[' && depth == 1 {
                    let key = last_key.map(|(s, e)| &body[s..e]);
                    if key
                        .is_some_and(|k| keys.iter().any(|n| k.eq_ignore_ascii_case(n.as_bytes())))
                    {
                        return Some(i);
                    }
                }
                depth += 1;
                last_key = None;
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b':' => {}
            b if b.is_ascii_whitespace() => {}
            _ => last_key = None,
        }
        i += 1;
    }
    None
}

fn trim(span: &[u8]) -> &[u8] {
    let end = span
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &span[..end]
}

/// The first `"id": "…"` (or number) in a record's text, for logging an unreadable record.
fn scan_id(text: &str) -> String {
    let Some(at) = text.find("\"id\"") else {
        return "<unknown>".to_string();
    };
    let rest = text[at + 4..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return "<unknown>".to_string();
    };
    let rest = rest.trim_start();
    let value: String = match rest.strip_prefix('"') {
        Some(s) => s.chars().take_while(|c| *c != '"').take(100).collect(),
        None => rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(100)
            .collect(),
    };
    if value.is_empty() {
        "<unknown>".to_string()
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_stays_inside_its_record() {
        let body = br#"{"offset":0,"limit":3,"results":[{"id":"a","t":"x,]}"},{"id":"b",,"t":NaN},{"id":"c","n":[1,{"x":2}]}],"_links":{"self":{"href":"/x"}}}"#;
        let page = split(body).unwrap();
        assert_eq!(page.len(), 3);
        let ids: Vec<&str> = page.records.iter().map(|r| r.get()).collect();
        assert_eq!(
            ids,
            [r#"{"id":"a","t":"x,]}"}"#, r#"{"id":"c","n":[1,{"x":2}]}"#]
        );
        assert_eq!(page.unreadable.len(), 1);
        assert_eq!(page.unreadable[0].position, 1);
        assert_eq!(page.unreadable[0].id, "b");
    }

    #[test]
    fn invalid_utf8_is_replaced_and_the_record_kept() {
        let mut body = br#"[{"id":"a","t":"ok"},{"id":"b","t":"x"#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}]"#);
        let page = split(&body).unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.repaired, 1);
        assert!(page.records[1].get().contains('\u{fffd}'));
    }

    #[test]
    fn raw_control_characters_and_nan_are_repaired_and_the_record_kept() {
        let body = b"{\"results\":[{\"id\":\"a\",\"t\":\"tab\there\nnewline\",\"eTag\":NaN,\"n\":[Infinity, -Infinity]},{\"id\":\"b\",\"x\":\"NaN\"}]}";
        let page = split(body).unwrap();
        assert_eq!(page.records.len(), 2, "{:?}", page.unreadable);
        assert_eq!(page.repaired, 1);
        let a: serde_json::Value = serde_json::from_str(page.records[0].get()).unwrap();
        assert_eq!(a["t"], "tab\there\nnewline");
        assert_eq!(a["eTag"], "NaN");
        assert_eq!(a["n"], serde_json::json!(["Infinity", "-Infinity"]));
        // Words inside strings, and records without either fault, are left alone.
        assert_eq!(repair_syntax(r#"{"x":"NaN","y":"Infinity"}"#), None);
        assert_eq!(repair_syntax(r#"{"x":"a\"\tb"}"#), None);
    }

    #[test]
    fn escaped_quotes_and_key_case_and_empty_arrays() {
        let page = split(br#"{"Results":[{"id":"q\"}]"},{"id":1}]}"#).unwrap();
        assert_eq!(page.records.len(), 2);
        assert!(split(br#"{"results":[]}"#).unwrap().is_empty());
        assert!(split(br#"{"nested":{"results":[{"id":1}]}}"#).is_none());
    }

    #[test]
    fn undelimitable_bodies_are_none() {
        assert!(split(b"<html>").is_none());
        assert!(
            split(br#"{"results":[{"id":"a}]}"#).is_none(),
            "unterminated string"
        );
        assert!(split(br#"{"results":[{"id":1}"#).is_none(), "truncated");
        assert!(split(b"").is_none());
    }

    #[test]
    fn scan_id_reads_strings_and_numbers() {
        assert_eq!(scan_id(r#"{"x":1, "id" : "abc", "id":"zzz"}"#), "abc");
        assert_eq!(scan_id(r#"{"id":42,}"#), "42");
        assert_eq!(scan_id("garbage"), "<unknown>");
    }
}
