//! Escaping untrusted text (server data: session ids, user names, error bodies) before it
//! reaches a terminal or a log.
//!
//! Owns: which characters are unsafe to print ([`is_unsafe`]: C0 controls, DEL, C1
//! controls, and the bidi embeddings, overrides and isolates U+202A–U+202E,
//! U+2066–U+2069), their visible escapes ([`escape_controls`]: `\n`, `\r`, `\t`,
//! otherwise `\u{1b}`), the field formatter of the text log format ([`EscapedFields`]),
//! and the writer of the JSON log format ([`JsonLogWriter`]).
//!
//! An ESC in a session id could otherwise set the terminal title, clear the screen or hide
//! text when `check` or a log line is printed; a bidi override can make a log line read
//! differently from what it says. The JSON events are *not* escaped here: they keep
//! Veeam's exact strings (JSON itself escapes C0).
//!
//! Must not: change anything but how the unsafe characters are written.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{DefaultFields, FormatFields, Writer};

/// True for characters a terminal may act on instead of showing: C0 (U+0000–U+001F),
/// DEL, C1 (U+0080–U+009F), and the bidi controls U+202A–U+202E and U+2066–U+2069.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with every [unsafe](is_unsafe) character written visibly: `\n`, `\r`, `\t`, and
/// `\u{XX}` (hex) for the others. Borrowed when there is nothing to escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The text log format's field formatter: tracing's default layout (`message`, then
/// `key=value`), with [unsafe](is_unsafe) characters escaped, so a log line stays one line
/// and cannot drive the terminal. Span fields go through it too.
#[derive(Debug, Default)]
pub struct EscapedFields {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut plain = String::new();
        self.inner.format_fields(Writer::new(&mut plain), fields)?;
        writer.write_str(&escape_controls(&plain))
    }
}

/// The JSON log format's writer: `serde_json` already writes C0 as `\u00XX`, but leaves
/// DEL, C1 and the bidi controls raw. This writes them as JSON `\uXXXX` escapes too:
/// they can only occur inside JSON strings, so every line stays valid JSON with the same
/// decoded values.
#[derive(Debug, Clone, Copy)]
pub struct JsonLogWriter<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonLogWriter<M> {
    type Writer = JsonEscaping<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonEscaping(self.0.make_writer())
    }
}

/// See [`JsonLogWriter`]. Each `write` is taken whole (tracing hands over one formatted
/// line per call).
#[derive(Debug)]
pub struct JsonEscaping<W>(W);

impl<W: io::Write> io::Write for JsonEscaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if !text.chars().any(is_unsafe_raw_in_json) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if is_unsafe_raw_in_json(c) {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                out.push(c);
            }
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The unsafe characters JSON does not escape by itself (C0 is always escaped; the line
/// feed ending each log line is structure, not data).
fn is_unsafe_raw_in_json(c: char) -> bool {
    is_unsafe(c) && c > '\u{1f}'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn unsafe_characters_are_shown_escaped() {
        assert_eq!(escape_controls("plain DOMAIN\\user"), "plain DOMAIN\\user");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\u{1b}]0;t\u{7}b\n\t\r\u{7f}\u{9b}\u{85}\u{202e}\u{2066}é"),
            "a\\u{1b}]0;t\\u{7}b\\n\\t\\r\\u{7f}\\u{9b}\\u{85}\\u{202e}\\u{2066}é"
        );
        for c in [
            '\u{0}', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}', '\u{202a}', '\u{2069}',
        ] {
            assert!(is_unsafe(c), "{c:?}");
        }
        for c in [' ', '~', '\u{a0}', '\u{2029}', '\u{2070}', 'ü'] {
            assert!(!is_unsafe(c), "{c:?}");
        }
    }

    /// A `MakeWriter` collecting everything written.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Collect {
        type Writer = Collect;
        fn make_writer(&'a self) -> Collect {
            self.clone()
        }
    }

    impl Collect {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    const HOSTILE: &str = "s\u{1b}]0;pwned\u{7}-\u{9b}2J-\u{7f}-\u{202e}x";

    fn log_hostile() {
        let span = tracing::info_span!("poll", session = %HOSTILE);
        let _g = span.enter();
        tracing::warn!(session_id = %HOSTILE, debug = ?HOSTILE, "bad record {HOSTILE}");
    }

    #[test]
    fn text_log_lines_carry_no_raw_controls() {
        let out = Collect::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields::default())
            .finish();
        tracing::subscriber::with_default(subscriber, log_hostile);
        let text = out.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        let body = text.trim_end_matches('\n');
        assert!(!body.chars().any(is_unsafe), "{body:?}");
        assert!(body.contains("session_id=s\\u{1b}]0;pwned"), "{body}");
        // tracing-subscriber writes an ESC in the message as `\x1b` itself; the rest is ours.
        assert!(body.contains("-\\u{202e}x session_id="), "{body}");
    }

    #[test]
    fn json_log_lines_escape_c1_del_and_bidi_and_keep_the_values() {
        let out = Collect::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(JsonLogWriter(out.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, log_hostile);
        let text = out.text();
        let line = text.trim_end_matches('\n');
        assert!(!line.chars().any(is_unsafe), "{line:?}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["fields"]["session_id"], HOSTILE, "{line}");
    }
}
