//! Indented JSON of an encoded event, for people (`stdout` with `pretty = true`, the
//! expected-output fixtures).
//!
//! Owns: re-indenting compact JSON text the way serde_json's pretty printer writes it (two
//! spaces, `": "`, empty `{}` / `[]` kept on one line). An event is encoded once, compact,
//! with its [`Shared`](super::Shared) parts spliced in as text, so serializing it with the
//! pretty printer would leave those parts on one line; indenting the encoded text does not.
//! Must not: change anything inside strings, or reorder anything.

/// `json` (one JSON document, as serde_json writes it compact) indented like
/// `serde_json::to_string_pretty` would. Whitespace outside strings is dropped first, so any
/// valid JSON text works.
pub fn indent(json: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }

    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Copy the whole string, escapes included.
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let end = (i + 1).min(bytes.len());
                out.push_str(json.get(start..end).unwrap_or_default());
            }
            open @ (b'{' | b'[') => {
                out.push(char::from(open));
                let close = if open == b'{' { b'}' } else { b']' };
                let next = bytes[i + 1..].iter().position(|b| !b.is_ascii_whitespace());
                if next.is_some_and(|n| bytes[i + 1 + n] == close) {
                    out.push(char::from(close));
                    i += 1 + next.unwrap_or(0);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            close @ (b'}' | b']') => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(char::from(close));
            }
            b',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            b':' => out.push_str(": "),
            b if b.is_ascii_whitespace() => {}
            _ => {
                // A number or literal: copy up to the next structural byte.
                let start = i;
                while i + 1 < bytes.len()
                    && !matches!(bytes[i + 1], b',' | b'}' | b']' | b':' | b'"')
                    && !bytes[i + 1].is_ascii_whitespace()
                {
                    i += 1;
                }
                out.push_str(json.get(start..=i).unwrap_or_default());
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indents_like_serde_json() {
        let doc = json!({
            "@timestamp": "2025-03-04T08:01:12Z",
            "empty": {}, "none": [], "nested": {"a": [1, -2.5e-7, true, null, {"b": []}]},
            "tricky": "quote \" backslash \\ braces {[,:]} \u{1} é 🦀",
            "list": ["x", {"y": {}}],
        });
        let compact = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            indent(&compact),
            serde_json::to_string_pretty(&doc).unwrap()
        );
        assert_eq!(indent(" { \"a\" : [ ] } "), "{\n  \"a\": []\n}");
        assert_eq!(indent("[]"), "[]");
        assert_eq!(indent("7"), "7");
    }
}
