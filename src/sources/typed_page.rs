//! Reading a well-formed page in one pass: each record is deserialized straight from the
//! page's text into its wire type, and its text is cut out where that parse ended.
//!
//! Owns the fast path of reading a page. The careful path (the whole page parsed into raw
//! records, then each record parsed again; [`super::page`] when the page isn't valid JSON)
//! reads every byte twice: on a VB365 run the first pass alone was ~6 % of the daemon's
//! instructions (BENCHMARKS.md). This path takes a page only when the careful path's
//! strict reading would take it too and every record reads as an object of its wire type:
//! anything else (invalid UTF-8, a record that isn't an object or that its type refuses, a
//! repeated `results`, text after the page) gives `None`, and the caller reads the page the
//! careful way, which keeps and reports what this one does not handle. So a page read here
//! gives the same records, texts and envelope as the careful path.
//!
//! Must not: log, do I/O, or take a page the strict reading would refuse.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Records as their wire type, each with its text as sent (from its first byte to its
/// last, as a `RawValue` of it would hold).
pub type Records<T> = Vec<(T, Box<str>)>;

/// A page read in one pass.
#[derive(Debug)]
pub struct TypedPage<T> {
    pub records: Records<T>,
    /// The envelope's other keys (`totalCount`, `_links`, ...); `None` for a bare array.
    pub envelope: Option<Map<String, Value>>,
}

/// `body` (a bare array, or an object with a `results` array, after any byte order mark)
/// read in one pass; `None` when it needs the careful path (see the module docs).
pub fn read<T: DeserializeOwned>(body: &[u8]) -> Option<TypedPage<T>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut at = skip_ws(text, 0);
    let page = match text.as_bytes().get(at)? {
        b'[' => {
            let (records, end) = array(text, at)?;
            at = end;
            TypedPage {
                records,
                envelope: None,
            }
        }
        b'{' => {
            let mut records = None;
            let mut envelope = Map::new();
            at = skip_ws(text, at + 1);
            if text.as_bytes().get(at) == Some(&b'}') {
                // `{}`: no `results`, not a page (the careful path says so).
                return None;
            }
            loop {
                if text.as_bytes().get(at) != Some(&b'"') {
                    return None;
                }
                let (key, end) = one::<String>(text, at)?;
                at = skip_ws(text, end);
                if text.as_bytes().get(at) != Some(&b':') {
                    return None;
                }
                at = skip_ws(text, at + 1);
                if key == "results" {
                    if records.is_some() || text.as_bytes().get(at) != Some(&b'[') {
                        return None;
                    }
                    let (read, end) = array(text, at)?;
                    records = Some(read);
                    at = end;
                } else {
                    let (value, end) = one::<Value>(text, at)?;
                    envelope.insert(key, value);
                    at = end;
                }
                at = skip_ws(text, at);
                match text.as_bytes().get(at) {
                    Some(b',') => at = skip_ws(text, at + 1),
                    Some(b'}') => {
                        at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
            TypedPage {
                records: records?,
                envelope: Some(envelope),
            }
        }
        _ => return None,
    };
    (skip_ws(text, at) == text.len()).then_some(page)
}

/// The records of the array opening at `open`, and where the array ends (after its `]`).
fn array<T: DeserializeOwned>(text: &str, open: usize) -> Option<(Records<T>, usize)> {
    let mut records = Vec::new();
    let mut at = skip_ws(text, open + 1);
    if text.as_bytes().get(at) == Some(&b']') {
        return Some((records, at + 1));
    }
    loop {
        // serde's derived structs also read a JSON array, by position: not a record.
        if text.as_bytes().get(at) != Some(&b'{') {
            return None;
        }
        let (record, end) = one::<T>(text, at)?;
        records.push((record, text[at..end].into()));
        at = skip_ws(text, end);
        match text.as_bytes().get(at) {
            Some(b',') => at = skip_ws(text, at + 1),
            Some(b']') => return Some((records, at + 1)),
            _ => return None,
        }
    }
}

/// The value starting at `at` (not whitespace), and where it ends.
fn one<T: DeserializeOwned>(text: &str, at: usize) -> Option<(T, usize)> {
    let mut stream = serde_json::Deserializer::from_str(&text[at..]).into_iter::<T>();
    let value = stream.next()?.ok()?;
    Some((value, at + stream.byte_offset()))
}

/// The first position at or after `at` that isn't JSON whitespace.
fn skip_ws(text: &str, at: usize) -> usize {
    let bytes = text.as_bytes();
    let mut at = at;
    while bytes
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Rec {
        id: Value,
    }

    /// Each record's text and the envelope's other keys.
    type Read = Option<(Vec<String>, Option<Map<String, Value>>)>;

    /// What the strict reading of the whole page gives.
    fn strict(body: &str) -> Read {
        #[derive(Deserialize)]
        struct Envelope {
            results: Option<Vec<Box<RawValue>>>,
            #[serde(flatten)]
            rest: Map<String, Value>,
        }
        let text = |r: Vec<Box<RawValue>>| r.iter().map(|r| r.get().to_string()).collect();
        if body.trim_start().starts_with('[') {
            let records: Vec<Box<RawValue>> = serde_json::from_str(body).ok()?;
            return Some((text(records), None));
        }
        let page: Envelope = serde_json::from_str(body).ok()?;
        Some((text(page.results?), Some(page.rest)))
    }

    fn fast(body: &str) -> Read {
        read::<Rec>(body.as_bytes()).map(|p| {
            (
                p.records.iter().map(|(_, t)| t.to_string()).collect(),
                p.envelope,
            )
        })
    }

    #[test]
    fn well_formed_pages_read_as_the_strict_reading_does() {
        for body in [
            r#"{"offset":0,"limit":2,"results":[{"id":1},{"id":"b","x":[1,{"y":"}"}]}],"_links":{"next":{"href":"/x"}}}"#,
            " \n{ \"results\" : [ {\"id\" : \"a\\\"]\" } ,\t{\"id\":2} ] , \"totalCount\" : 7 }\r\n",
            r#"{"results":[]}"#,
            r#"{"results":[ ]}"#,
            r#"[{"id":1},{"id":2}]"#,
            " [ ] ",
            r#"{"results":[{"id":"é ☃ \ud83d\ude00"}],"results2":null}"#,
        ] {
            let got = fast(body);
            assert!(got.is_some(), "{body}");
            assert_eq!(got, strict(body), "{body}");
        }
        let page = read::<Rec>(br#"{"results":[{"id":"a"},{"id":3}]}"#).unwrap();
        assert_eq!(page.records[0].0, Rec { id: "a".into() });
        assert_eq!(page.records[1].0, Rec { id: 3.into() });
    }

    #[test]
    fn anything_else_is_left_to_the_careful_path() {
        for body in [
            // Not pages, or not well-formed: the careful path reports or repairs them.
            "",
            "<html>",
            "{}",
            r#"{"results":null}"#,
            r#"{"results":{"id":1}}"#,
            r#"{"totalCount":1}"#,
            r#"{"results":[{"id":1}],"results":[]}"#,
            r#"{"results":[{"id":1},]}"#,
            r#"{"results":[{"id":1}}"#,
            r#"{"results":[{"id":1}]"#,
            r#"{"results":[{"id":1}]} x"#,
            r#"{"results":[{"id":1}]}{}"#,
            r#"{"results":[{"id":1} {"id":2}]}"#,
            r#"{"results":[{"id":1}],}"#,
            r#"{results:[]}"#,
            r#"[{"id":1}"#,
            // Records the wire type (or an object) can't take.
            r#"{"results":[["a"]]}"#,
            r#"{"results":[1]}"#,
            r#"{"results":[{"x":1}]}"#,
            r#"{"results":[{"id":1,"id":2}]}"#,
            r#"{"results":[{"id":"a	tab"}]}"#,
            r#"{"results":[{"id":NaN}]}"#,
        ] {
            assert!(fast(body).is_none(), "{body}");
        }
        // Invalid UTF-8 anywhere.
        assert!(read::<Rec>(b"{\"results\":[{\"id\":\"\xff\"}]}").is_none());
    }
}
