//! Reading a page of records when the page as a whole is not valid JSON.
//!
//! Owns the fallback that keeps one bad record from costing its neighbours: a page that
//! fails strict parsing is split into its records by a byte-level scan of the `results`
//! array (or of a bare array) that tracks nesting and strings only, so a syntax error or
//! invalid UTF-8 *inside* one record stays inside it. Each record is then parsed alone:
//! invalid UTF-8 is replaced (U+FFFD) and the record kept; a record that still doesn't
//! parse is reported with its position and whatever id can be read from it.
//!
//! Must not: guess at structure it can't delimit (unbalanced quotes or brackets make the
//! whole page unreadable, as before), log, or do I/O.

use serde_json::value::RawValue;

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
    /// Records kept after replacing invalid UTF-8.
    pub repaired: usize,
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

/// Split `body` into records and parse each alone; `None` if the array can't be delimited.
pub fn split(body: &[u8]) -> Option<SplitPage> {
    let spans = record_spans(body)?;
    let mut page = SplitPage::default();
    for (position, span) in spans.into_iter().enumerate() {
        match serde_json::from_slice::<Box<RawValue>>(span) {
            Ok(raw) => page.records.push(raw),
            Err(strict) => {
                let lossy = String::from_utf8_lossy(span);
                let repaired = std::str::from_utf8(span)
                    .is_err()
                    .then(|| RawValue::from_string(lossy.to_string()).ok())
                    .flatten();
                match repaired {
                    Some(raw) => {
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

/// The byte spans of the records in `{"results": [...]}` or `[...]`.
fn record_spans(body: &[u8]) -> Option<Vec<&[u8]>> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let open = match body[start] {
        b'[' => start,
        b'{' => results_array(body, start)?,
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
                return Some(spans);
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

/// Index of the `[` opening the top-level `"results"` array of the object at `open`.
fn results_array(body: &[u8], open: usize) -> Option<usize> {
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
                    if key.is_some_and(|k| k.eq_ignore_ascii_case(b"results")) {
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
