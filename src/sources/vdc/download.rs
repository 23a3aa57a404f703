//! Reading a VDC `/logs/download` response as it arrives: decompression, format detection
//! and one log entry at a time.
//!
//! Owns: turning a byte stream into [`DownloadItem`]s without ever holding the whole body.
//! The body is read through a bounded buffer; gzip is decompressed on the fly (detected by
//! its magic bytes `1f 8b`, whether or not the server says `Content-Encoding: gzip`); a body
//! in another character set (a UTF-16 BOM, or `Content-Type`'s `charset`) is read as UTF-8
//! ([`super::charset`]); each entry is capped at [`MAX_ENTRY_BYTES`]. Must not: do HTTP, map, log secrets, or decide
//! which entries were already shipped (the poller counts them).
//!
//! Formats (the real one is undocumented; see README "Assumptions"):
//! - **Text (our assumption, what the simulator serves)**: one entry per line,
//!   `creationTime<TAB>endTime<TAB>title`; `endTime` may be empty. A line that doesn't have
//!   that shape is shipped whole as the title. Blank lines and a first line naming a
//!   `creationTime` column (a header, in any column order) are skipped (not counted).
//! - **JSON**: a body starting with `[` followed by what can start a JSON value is read as
//!   an array of log entries, element by element (`[Success] …` is a text line); one
//!   starting with `{` as a sequence of objects (NDJSON, or pretty-printed), an
//!   object holding a `results`/`items`/`data`/`value`/`logs` array being a page of entries.

use std::collections::VecDeque;
use std::io;

use async_compression::tokio::bufread::GzipDecoder;
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use crate::map::vdc::RawLogEntry;

/// Longest text line kept; longer ones are cut (and counted), so a broken or hostile body
/// can't exhaust memory.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;
/// Longest JSON entry read (an element of an array or envelope, or one NDJSON value); a
/// longer one can't be parsed and is skipped with an error. A page envelope is never one
/// entry: its elements are.
pub const MAX_JSON_ENTRY_BYTES: usize = 4 * 1024 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Keys of a JSON page envelope that hold the entries.
pub const ENVELOPE_KEYS: [&str; 6] = ["results", "items", "data", "value", "logs", "records"];

/// One entry of the download: parsed, or why not, plus its raw text (`event.original`).
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadItem {
    pub entry: Result<RawLogEntry, String>,
    pub raw: String,
    /// The body ended inside this entry: a last line without a line end, or a JSON value
    /// left open. A running session's download may end so mid-write; the poller then reads
    /// it again next cycle instead of shipping (and counting) what may be part of it.
    pub unterminated: bool,
}

/// How the body was encoded (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

type Reader = Box<dyn AsyncBufRead + Unpin + Send>;

/// Entries of a download body, one at a time.
pub struct DownloadReader {
    reader: Reader,
    encoding: Encoding,
    format: Option<Format>,
    json: JsonSplitter,
    queue: VecDeque<DownloadItem>,
    line: Vec<u8>,
    /// A text line was read (only the first may be a header).
    seen_text: bool,
    eof: bool,
    /// Text lines cut at [`MAX_ENTRY_BYTES`] so far.
    pub truncated_lines: u64,
    /// The body is decoded from another character set: what could not be read there is
    /// already U+FFFD in the text.
    transcoded: bool,
}

impl DownloadReader {
    /// Start reading `body`. `content_encoding` is the response header, if any: `gzip` and
    /// `identity` are accepted (the bytes decide), anything else is refused with a clear error.
    /// `content_type` is the response header, if any: its `charset` says how to read a body
    /// that is not UTF-8 (a UTF-16 byte-order mark says so too).
    pub async fn open<S>(
        body: S,
        content_encoding: Option<&str>,
        content_type: Option<&str>,
    ) -> io::Result<DownloadReader>
    where
        S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
    {
        let declared = content_encoding
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        if let Some(other) = declared
            .as_deref()
            .filter(|v| !matches!(*v, "gzip" | "x-gzip" | "identity"))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the server sent Content-Encoding `{other}`; only gzip is supported"),
            ));
        }
        let mut raw = StreamReader::new(body.map_err(io::Error::other));
        let mut prefix = Vec::with_capacity(2);
        while prefix.len() < 2 {
            let taken = {
                let available = raw.fill_buf().await?;
                let take = (2 - prefix.len()).min(available.len());
                prefix.extend_from_slice(&available[..take]);
                take
            };
            if taken == 0 {
                break;
            }
            raw.consume(taken);
        }
        if prefix == b"PK" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the download is a ZIP archive, which is not supported; set log_mode = \"json\"",
            ));
        }
        let gzip = prefix == GZIP_MAGIC;
        if !gzip && declared.as_deref().is_some_and(|v| v.contains("gzip")) && !prefix.is_empty() {
            tracing::debug!(
                "Content-Encoding says gzip but the body has no gzip header; reading it as is"
            );
        }
        let whole = io::Cursor::new(prefix).chain(raw);
        let (mut reader, encoding): (Reader, Encoding) = if gzip {
            let mut decoder = GzipDecoder::new(whole);
            decoder.multiple_members(true);
            (Box::new(BufReader::new(decoder)), Encoding::Gzip)
        } else {
            (Box::new(whole), Encoding::Identity)
        };
        // The first bytes of the content, for a byte-order mark.
        let mut head = Vec::with_capacity(3);
        while head.len() < 3 {
            let available = reader.fill_buf().await?;
            if available.is_empty() {
                break;
            }
            let take = (3 - head.len()).min(available.len());
            head.extend_from_slice(&available[..take]);
            reader.consume(take);
        }
        let charset = super::charset::choose(content_type, &head);
        let mut reader: Reader = Box::new(io::Cursor::new(head).chain(reader));
        if let Some(charset) = charset {
            tracing::debug!(
                charset = charset.name(),
                "reading the log download as UTF-8"
            );
            reader = Box::new(BufReader::new(super::charset::Transcode::new(
                reader, charset,
            )));
        }
        let mut out = DownloadReader::from_reader(reader, encoding);
        out.transcoded = charset.is_some();
        Ok(out)
    }

    fn from_reader(reader: Reader, encoding: Encoding) -> DownloadReader {
        DownloadReader {
            reader,
            encoding,
            transcoded: false,
            format: None,
            json: JsonSplitter::default(),
            queue: VecDeque::new(),
            line: Vec::new(),
            seen_text: false,
            eof: false,
            truncated_lines: 0,
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The body is read as text lines (not JSON), as far as read.
    pub fn is_text(&self) -> bool {
        self.format == Some(Format::Text)
    }

    /// The next entry, `None` at the end of the body. An `Err` is a broken stream (transport,
    /// bad gzip): entries already returned stay valid.
    pub async fn next(&mut self) -> io::Result<Option<DownloadItem>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(Some(item));
            }
            if self.eof {
                return Ok(None);
            }
            match self.format {
                None => self.detect().await?,
                Some(Format::Text) => self.read_text_line().await?,
                Some(Format::Json) => self.read_json_chunk().await?,
            }
        }
    }

    /// Skips a UTF-8 BOM and leading whitespace; the first significant byte decides the
    /// format. Nothing significant is consumed, so no entry is lost to detection.
    async fn detect(&mut self) -> io::Result<()> {
        let mut bom = 0;
        loop {
            let (skip, decided) = {
                let available = self.reader.fill_buf().await?;
                if available.is_empty() {
                    self.eof = true;
                    return Ok(());
                }
                let mut skip = 0;
                let mut decided = None;
                for &b in available {
                    if bom < BOM.len() && b == BOM[bom] {
                        bom += 1;
                    } else if b.is_ascii_whitespace() {
                        bom = BOM.len();
                    } else {
                        decided = Some(match b {
                            b'{' => Some(Format::Json),
                            // `[Success] Job started…` is a text line, `[{…` an array.
                            b'[' => None,
                            _ => Some(Format::Text),
                        });
                        break;
                    }
                    skip += 1;
                }
                (skip, decided)
            };
            self.reader.consume(skip);
            match decided {
                Some(Some(format)) => {
                    self.format = Some(format);
                    return Ok(());
                }
                Some(None) => {
                    self.format = Some(self.after_bracket().await?);
                    return Ok(());
                }
                None => {}
            }
        }
    }

    /// The format of a body whose first significant byte is `[`: a JSON array when the
    /// next significant byte can start a JSON value (or closes the array), else text whose
    /// first line starts with a bracket, as VDC titles do (`[Success] …`). The bytes read
    /// to decide are put back in front of the reader.
    async fn after_bracket(&mut self) -> io::Result<Format> {
        let mut head: Vec<u8> = Vec::new();
        let next = loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                break None;
            }
            let take = available.len().min(256);
            head.extend_from_slice(&available[..take]);
            self.reader.consume(take);
            if let Some(&b) = head[1..].iter().find(|b| !b.is_ascii_whitespace()) {
                break Some(b);
            }
            if head.len() >= MAX_ENTRY_BYTES {
                break None;
            }
        };
        let rest = std::mem::replace(&mut self.reader, Box::new(tokio::io::empty()));
        self.reader = Box::new(io::Cursor::new(head).chain(rest));
        Ok(match next {
            Some(b'{' | b'[' | b'"' | b']' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') | None => {
                Format::Json
            }
            Some(_) => Format::Text,
        })
    }

    async fn read_text_line(&mut self) -> io::Result<()> {
        match read_line_capped(&mut self.reader, &mut self.line).await? {
            None => self.eof = true,
            Some((truncated, terminated)) => {
                let text = String::from_utf8_lossy(&self.line);
                let replaced = matches!(text, std::borrow::Cow::Owned(_))
                    || (self.transcoded && text.contains(char::REPLACEMENT_CHARACTER));
                let text = text.into_owned();
                let first = !std::mem::replace(&mut self.seen_text, true);
                // Tab-separated (ours) or CSV (comma or semicolon) header.
                // Any column order: `id,title,creationTime,endTime` is one too.
                let is_header = first
                    && text.split(['\t', ',', ';']).any(|f| {
                        f.trim()
                            .trim_matches('"')
                            .eq_ignore_ascii_case("creationTime")
                    });
                if !is_header {
                    self.push_text(&text, truncated, !terminated, replaced);
                }
            }
        }
        Ok(())
    }

    fn push_text(&mut self, line: &str, truncated: bool, unterminated: bool, replaced: bool) {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return;
        }
        let mut entry = parse_text_line(line);
        if replaced {
            entry.problems.push(crate::map::wire_checks::replaced_utf8(
                crate::map::vdc::LOG_RECORD,
            ));
        }
        if truncated {
            self.truncated_lines += 1;
            crate::map::vdc::report_record(
                &mut entry,
                format!(
                    "the download line was longer than {MAX_ENTRY_BYTES} bytes and was cut there"
                ),
            );
        }
        // A last line without a line end that doesn't have the line shape may be cut.
        if unterminated && !entry.problems.is_empty() {
            crate::map::vdc::report_record(
                &mut entry,
                "the download ended inside this line (no line end), which may be cut",
            );
        }
        self.queue.push_back(DownloadItem {
            entry: Ok(entry),
            raw: line.to_string(),
            unterminated,
        });
    }

    async fn read_json_chunk(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        let read = {
            let available = self.reader.fill_buf().await?;
            self.json.feed(available, &mut out);
            available.len()
        };
        if read == 0 {
            self.eof = true;
            self.queue_json(out);
            let mut tail = Vec::new();
            self.json.finish(&mut tail);
            let from = self.queue.len();
            self.queue_json(tail);
            for item in self.queue.iter_mut().skip(from) {
                item.unterminated |= item.entry.is_err();
            }
            return Ok(());
        }
        self.reader.consume(read);
        self.queue_json(out);
        Ok(())
    }

    fn queue_json(&mut self, values: Vec<Result<Vec<u8>, String>>) {
        for value in values {
            match value {
                Ok(bytes) => self.queue.extend(json_items(&bytes, self.transcoded)),
                Err(problem) => self.queue.push_back(DownloadItem {
                    entry: Err(problem),
                    raw: String::new(),
                    unterminated: false,
                }),
            }
        }
    }
}

/// `creationTime<TAB>endTime<TAB>title`; anything else is all title (see
/// [`crate::map::vdc::decode_text_line`]).
pub fn parse_text_line(line: &str) -> RawLogEntry {
    crate::map::vdc::decode_text_line(line)
}

/// One complete top-level JSON value → its entries (a page envelope expands to many).
fn json_items(bytes: &[u8], transcoded: bool) -> Vec<DownloadItem> {
    let mut items = json_items_of(bytes);
    if transcoded || std::str::from_utf8(bytes).is_err() {
        // Repaired on the way in: each entry holding U+FFFD says so (the others are as sent).
        for item in &mut items {
            if let Ok(entry) = &mut item.entry
                && item.raw.contains(char::REPLACEMENT_CHARACTER)
            {
                entry.problems.push(crate::map::wire_checks::replaced_utf8(
                    crate::map::vdc::LOG_RECORD,
                ));
            }
        }
    }
    items
}

fn json_items_of(bytes: &[u8]) -> Vec<DownloadItem> {
    let raw = String::from_utf8_lossy(bytes).trim().to_string();
    let value: serde_json::Value = match serde_json::from_str(&raw) {
        Ok(v) => v,
        Err(e) => {
            return vec![DownloadItem {
                entry: Err(format!("invalid JSON: {e}")),
                raw,
                unterminated: false,
            }];
        }
    };
    if let serde_json::Value::Object(map) = &value
        && let Some(items) = map.iter().find_map(|(k, v)| {
            let key = k.to_ascii_lowercase();
            ENVELOPE_KEYS
                .contains(&key.as_str())
                .then(|| v.as_array())
                .flatten()
        })
    {
        return items
            .iter()
            .map(|item| DownloadItem {
                entry: entry_from_value(item.clone()),
                raw: item.to_string(),
                unterminated: false,
            })
            .collect();
    }
    vec![DownloadItem {
        entry: entry_from_value(value),
        raw,
        unterminated: false,
    }]
}

fn entry_from_value(value: serde_json::Value) -> Result<RawLogEntry, String> {
    crate::map::vdc::log_entry_from_value(value).map_err(|e| e.to_string())
}

/// Reads one line (without the `\n`) into `buf`, keeping at most [`MAX_ENTRY_BYTES`].
/// `None` at the end of the input; else `(cut, terminated)`: whether the line was cut at
/// the cap, and whether a `\n` ended it (not: the input ended inside it).
async fn read_line_capped(
    reader: &mut Reader,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(bool, bool)>> {
    buf.clear();
    let mut truncated = false;
    let mut any = false;
    loop {
        let (used, done) = {
            let available = reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(any.then_some((truncated, false)));
            }
            any = true;
            let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            let room = MAX_ENTRY_BYTES.saturating_sub(buf.len());
            if chunk.len() > room {
                truncated = true;
                buf.extend_from_slice(&chunk[..room]);
            } else {
                buf.extend_from_slice(chunk);
            }
            (chunk.len() + usize::from(done), done)
        };
        reader.consume(used);
        if done {
            return Ok(Some((truncated, true)));
        }
    }
}

/// Splits a byte stream into log entries as they arrive: the elements of a top-level
/// array; a sequence of top-level values (NDJSON, concatenated or pretty-printed objects);
/// and, inside a top-level object, the elements of a page envelope's array
/// (`{"offset":0,"logs":[…]}`) one by one, so the per-entry cap applies to each entry and
/// never to the envelope. Tracks only strings, nesting and the keys of a top-level object,
/// so it never buffers more than one entry (at most [`MAX_JSON_ENTRY_BYTES`]).
#[derive(Debug, Default)]
struct JsonSplitter {
    /// `None` until the first byte decides; `Some(true)` for a top-level array.
    array: Option<bool>,
    /// The top-level array was closed: ignore the rest.
    closed: bool,
    /// Containers open at depths 1 and 2 (what decides where entries start); deeper ones
    /// are only counted in `deep`.
    frames: Vec<Frame>,
    deep: usize,
    in_string: bool,
    escaped: bool,
    /// Inside a number, `true`, `false` or `null`.
    in_scalar: bool,
    /// The string being read is a key of the top-level object (collected in `key`).
    in_key: bool,
    key: Vec<u8>,
    /// Depth (open containers) at which the entry being buffered started.
    entry_depth: Option<usize>,
    buf: Vec<u8>,
    /// The current entry outgrew [`MAX_JSON_ENTRY_BYTES`]; it is reported, not kept.
    overflow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// `envelope`: the array of a page envelope (its elements are entries).
    Array { envelope: bool },
    /// `value`: a `:` was read, the member's value comes next; `envelope_key`: that
    /// member's key names an envelope array.
    Object { value: bool, envelope_key: bool },
}

const DEPTH_TRACKED: usize = 2;

impl JsonSplitter {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Result<Vec<u8>, String>>) {
        for &b in bytes {
            self.byte(b, out);
        }
    }

    fn depth(&self) -> usize {
        self.frames.len() + self.deep
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Result<Vec<u8>, String>>) {
        if self.closed {
            return;
        }
        if self.in_string {
            self.push(b);
            if self.in_key && b != b'"' && self.key.len() < 32 {
                self.key.push(b);
            }
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if std::mem::take(&mut self.in_key) {
                    let key = String::from_utf8_lossy(&self.key).to_ascii_lowercase();
                    let envelope_key = ENVELOPE_KEYS.contains(&key.as_str());
                    if let Some(Frame::Object {
                        envelope_key: e, ..
                    }) = self.frames.last_mut()
                    {
                        *e = envelope_key;
                    }
                } else {
                    self.value_end(out);
                }
            }
            return;
        }
        if self.in_scalar {
            if b.is_ascii_whitespace() || matches!(b, b',' | b']' | b'}' | b':') {
                self.in_scalar = false;
                self.value_end(out);
            } else {
                self.push(b);
                return;
            }
        }
        match b {
            b'"' => {
                let key = self.deep == 0
                    && self.frames.len() == 1
                    && matches!(self.frames.last(), Some(Frame::Object { value: false, .. }));
                if key {
                    self.in_key = true;
                    self.key.clear();
                } else {
                    self.value_start(b);
                }
                self.in_string = true;
                self.push(b);
            }
            b'{' | b'[' => {
                let envelope = self.value_start(b);
                self.push(b);
                let frame = if b == b'[' {
                    Frame::Array { envelope }
                } else {
                    Frame::Object {
                        value: false,
                        envelope_key: false,
                    }
                };
                if self.frames.len() < DEPTH_TRACKED && self.deep == 0 {
                    self.frames.push(frame);
                } else {
                    self.deep += 1;
                }
            }
            b'}' | b']' => {
                if self.depth() == 0 {
                    return; // stray closer between values
                }
                self.push(b);
                if self.deep > 0 {
                    self.deep -= 1;
                } else {
                    self.frames.pop();
                }
                if self.depth() == 0 && self.array == Some(true) {
                    self.closed = true;
                    return;
                }
                self.value_end(out);
            }
            b':' => {
                self.push(b);
                if self.deep == 0
                    && let Some(Frame::Object { value, .. }) = self.frames.last_mut()
                {
                    *value = true;
                }
            }
            b',' => self.push(b),
            _ if b.is_ascii_whitespace() => self.push(b),
            _ => {
                self.value_start(b);
                self.in_scalar = true;
                self.push(b);
            }
        }
    }

    /// A value starts with byte `b` at the current depth: maybe an entry starts, or the
    /// array of a page envelope (returned `true`; the envelope object itself is dropped).
    fn value_start(&mut self, b: u8) -> bool {
        if self.deep > 0 {
            return false;
        }
        if b == b'['
            && self.array == Some(false)
            && self.frames.len() == 1
            && matches!(
                self.frames.last(),
                Some(Frame::Object {
                    value: true,
                    envelope_key: true,
                })
            )
        {
            // `{"…":…, "logs": [` — the entries are the array's elements.
            self.entry_depth = None;
            self.buf.clear();
            self.overflow = false;
            return true;
        }
        if self.entry_depth.is_some_and(|d| d < self.depth()) {
            return false;
        }
        match (self.frames.len(), self.array) {
            (0, None) if b == b'[' => {
                self.array = Some(true);
                return false;
            }
            (0, None) => self.array = Some(false),
            _ => {}
        }
        let at = self.frames.len();
        let entry = match self.frames.last() {
            None => true,
            Some(Frame::Array { envelope }) => at == 1 || *envelope,
            Some(Frame::Object { .. }) => false,
        };
        if entry {
            self.entry_depth = Some(at);
            self.buf.clear();
            self.overflow = false;
        }
        false
    }

    /// A value ended at the current depth (after its closer was consumed): the end of an
    /// entry when it started here. Members of an object now expect a key.
    fn value_end(&mut self, out: &mut Vec<Result<Vec<u8>, String>>) {
        if self.deep == 0
            && let Some(Frame::Object { value, .. }) = self.frames.last_mut()
        {
            *value = false;
        }
        if self.entry_depth == Some(self.depth()) {
            self.entry_depth = None;
            self.emit(out);
        }
    }

    fn push(&mut self, b: u8) {
        if self.entry_depth.is_none() {
            return;
        }
        if self.buf.len() < MAX_JSON_ENTRY_BYTES {
            self.buf.push(b);
        } else {
            self.overflow = true;
        }
    }

    fn emit(&mut self, out: &mut Vec<Result<Vec<u8>, String>>) {
        if std::mem::take(&mut self.overflow) {
            self.buf.clear();
            out.push(Err(format!(
                "JSON log entry larger than {MAX_JSON_ENTRY_BYTES} bytes; skipped"
            )));
        } else {
            out.push(Ok(std::mem::take(&mut self.buf)));
        }
    }

    /// End of input: a scalar still open ends here; an entry still open is truncated.
    fn finish(&mut self, out: &mut Vec<Result<Vec<u8>, String>>) {
        if self.in_scalar {
            self.in_scalar = false;
            self.value_end(out);
        }
        if self.entry_depth.take().is_some() {
            self.buf.clear();
            self.overflow = false;
            out.push(Err("the download ends inside a JSON value".to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::vdc::parse_time;
    use async_compression::tokio::bufread::GzipEncoder;

    fn stream_of(
        chunks: Vec<Vec<u8>>,
    ) -> impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static {
        futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))))
    }

    /// Split into chunks of `size` bytes, to cut lines, UTF-8 and gzip headers anywhere.
    fn chunked(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
        bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect()
    }

    async fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzipEncoder::new(bytes)
            .read_to_end(&mut out)
            .await
            .expect("gzip");
        out
    }

    async fn read_all(body: Vec<Vec<u8>>, encoding: Option<&str>) -> (Vec<DownloadItem>, Encoding) {
        let mut r = DownloadReader::open(stream_of(body), encoding, None)
            .await
            .expect("opens");
        let mut items = Vec::new();
        while let Some(item) = r.next().await.expect("reads") {
            items.push(item);
        }
        (items, r.encoding())
    }

    fn titles(items: &[DownloadItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| {
                i.entry
                    .as_ref()
                    .ok()
                    .and_then(|e| e.title.clone())
                    .unwrap_or_else(|| "<bad>".into())
            })
            .collect()
    }

    const TEXT: &str = "creationTime\tendTime\ttitle\r\n\
        2025-03-03T02:00:01.0100000Z\t2025-03-03T02:00:01.0100000Z\t[Success] Job started at 3/3/2025 2:00:00 AM\r\n\
        \n\
        2025-03-03T02:01:10.2000000Z\t\t[Success] Processing mailbox: üser@contoso.com\n\
        garbage without tabs\n\
        not-a-time\tx\ty\n\
        2025-03-03T02:10:44.4000000Z\t[Success] Job finished";

    #[tokio::test]
    async fn text_lines_plain_and_gzip_in_any_chunking() {
        let want = vec![
            "[Success] Job started at 3/3/2025 2:00:00 AM",
            "[Success] Processing mailbox: üser@contoso.com",
            "garbage without tabs",
            "not-a-time\tx\ty",
            "[Success] Job finished",
        ];
        let gz = gzip(TEXT.as_bytes()).await;
        for size in [1, 2, 3, 7, 64, 100_000] {
            let (items, enc) = read_all(chunked(TEXT.as_bytes(), size), None).await;
            assert_eq!(titles(&items), want, "plain, chunks of {size}");
            assert_eq!(enc, Encoding::Identity);
            // By header, and by magic bytes alone.
            for header in [Some("gzip"), None] {
                let (items, enc) = read_all(chunked(&gz, size), header).await;
                assert_eq!(titles(&items), want, "gzip {header:?}, chunks of {size}");
                assert_eq!(enc, Encoding::Gzip);
            }
        }
        let with_bom = format!("\u{feff}{TEXT}");
        for size in [1, 2, 4] {
            let (items, _) = read_all(chunked(with_bom.as_bytes(), size), None).await;
            assert_eq!(titles(&items), want, "BOM, chunks of {size}");
        }
        let (items, _) = read_all(vec![TEXT.as_bytes().to_vec()], None).await;
        let first = items[0].entry.as_ref().unwrap();
        assert_eq!(
            first.creation_time,
            parse_time("2025-03-03T02:00:01.01Z"),
            "times parsed"
        );
        let second = items[1].entry.as_ref().unwrap();
        assert_eq!(second.end_time, None, "empty endTime");
        let last = items[4].entry.as_ref().unwrap();
        assert_eq!(last.creation_time, parse_time("2025-03-03T02:10:44.4Z"));
        assert_eq!(items[2].raw, "garbage without tabs");
    }

    #[tokio::test]
    async fn multi_member_gzip_and_empty_bodies() {
        let mut gz = gzip(b"a\tb\n").await;
        gz.extend(gzip(b"line two\n").await);
        let (items, _) = read_all(vec![gz], Some("gzip")).await;
        assert_eq!(titles(&items), ["a\tb", "line two"]);
        let (items, _) = read_all(vec![], None).await;
        assert!(items.is_empty());
        let (items, _) = read_all(vec![gzip(b"").await], None).await;
        assert!(items.is_empty());
        let (items, _) = read_all(vec![b"\n\n  \n".to_vec()], None).await;
        assert!(items.is_empty());
    }

    #[tokio::test]
    async fn json_array_ndjson_and_envelope() {
        let array = r#"[ {"id":"1","title":"[Success] a, \"quoted\" ]}","creationTime":"2025-03-03T02:00:01Z"},
            {"id":"2","title":"b"} , 42, {"id":"3","title":"c"} ]  trailing"#;
        for size in [1, 5, 1000] {
            let (items, _) = read_all(chunked(array.as_bytes(), size), None).await;
            assert_eq!(
                titles(&items),
                ["[Success] a, \"quoted\" ]}", "b", "<bad>", "c"],
                "chunks of {size}"
            );
            assert_eq!(items[0].entry.as_ref().unwrap().id.as_deref(), Some("1"));
        }
        let ndjson = "{\"id\":\"1\",\"title\":\"x\"}\n{broken\n{\"id\":\"2\",\n \"title\":\"y\"}\n";
        let (items, _) = read_all(chunked(ndjson.as_bytes(), 3), None).await;
        assert_eq!(
            titles(&items),
            ["x", "<bad>"],
            "an unclosed object swallows the rest"
        );
        let envelope = r#"{"offset":0,"Results":[{"id":"1","title":"x"},{"id":"2","title":"y"}]}"#;
        let gz = gzip(envelope.as_bytes()).await;
        let (items, _) = read_all(vec![gz], None).await;
        assert_eq!(titles(&items), ["x", "y"]);
        assert_eq!(items[1].raw, r#"{"id":"2","title":"y"}"#);
    }

    /// A page envelope far larger than one entry's cap is read entry by entry.
    #[tokio::test]
    async fn an_envelope_larger_than_the_entry_cap_is_streamed_entry_by_entry() {
        let entries: Vec<String> = (0..2000)
            .map(|i| {
                format!(
                    r#"{{"id":"{i}","title":"[Success] Processing mailbox: user{i}@contoso.com {pad}","creationTime":"2025-03-03T02:00:01Z"}}"#,
                    pad = "p".repeat(150)
                )
            })
            .collect();
        let body = format!(
            r#"{{"offset":0,"limit":2000,"meta":{{"note":"{big}","nested":[1,[2,{{"logs":[]}}]]}},"logs":[{}],"totalCount":2000}}"#,
            entries.join(","),
            big = "m".repeat(MAX_JSON_ENTRY_BYTES + 1),
        );
        assert!(body.len() > 4 * MAX_ENTRY_BYTES);
        for gz in [false, true] {
            let bytes = if gz {
                gzip(body.as_bytes()).await
            } else {
                body.as_bytes().to_vec()
            };
            let (items, _) = read_all(chunked(&bytes, 8192), None).await;
            assert_eq!(items.len(), 2000, "gzip {gz}");
            for (i, item) in items.iter().enumerate() {
                let entry = item.entry.as_ref().unwrap();
                assert_eq!(entry.id.as_deref(), Some(i.to_string().as_str()));
                assert_eq!(item.raw, entries[i]);
            }
        }
        // Two envelopes in a row, and NDJSON entries around them.
        let body = r#"{"id":"a","title":"x"}
{"items":[{"id":"b","title":"y"},{"id":"c","title":"z"}]}
{"data":[{"id":"d","title":"w"}],"next":null} {"id":"e","title":"v","data":"not an array"}"#;
        let (items, _) = read_all(chunked(body.as_bytes(), 3), None).await;
        assert_eq!(titles(&items), ["x", "y", "z", "w", "v"]);
    }

    #[tokio::test]
    async fn oversized_entries_are_cut_or_skipped() {
        let long = "x".repeat(MAX_ENTRY_BYTES + 10);
        let text = format!("first\n{long}\nlast\n");
        let mut r = DownloadReader::open(stream_of(chunked(text.as_bytes(), 4096)), None, None)
            .await
            .unwrap();
        let mut items = Vec::new();
        while let Some(i) = r.next().await.unwrap() {
            items.push(i);
        }
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].raw.len(), MAX_ENTRY_BYTES);
        assert_eq!(r.truncated_lines, 1);
        // A JSON entry is read whole up to its own, larger cap.
        let json = format!(r#"[{{"title":"{long}"}},{{"title":"ok"}}]"#);
        let (items, _) = read_all(chunked(json.as_bytes(), 4096), None).await;
        assert_eq!(titles(&items), [long.as_str(), "ok"]);
        let huge = "y".repeat(MAX_JSON_ENTRY_BYTES + 10);
        let json = format!(r#"[{{"title":"{huge}"}},{{"title":"ok"}}]"#);
        let (items, _) = read_all(chunked(json.as_bytes(), 65536), None).await;
        assert_eq!(titles(&items), ["<bad>", "ok"]);
        let truncated = r#"[{"title":"a"},{"title":"b"#;
        let (items, _) = read_all(vec![truncated.as_bytes().to_vec()], None).await;
        assert_eq!(titles(&items), ["a", "<bad>"]);
        assert_eq!(
            items.iter().map(|i| i.unterminated).collect::<Vec<_>>(),
            [false, true],
            "the value the body ended inside is marked"
        );
    }

    #[tokio::test]
    async fn a_line_cut_at_the_cap_is_reported_in_its_entry() {
        let long = format!("2025-03-03T02:00:00Z		{}", "x".repeat(MAX_ENTRY_BYTES));
        let text = format!("{long}\n2025-03-03T02:00:01Z\t\tok\n");
        let (items, _) = read_all(chunked(text.as_bytes(), 4096), None).await;
        let problems = |i: usize| items[i].entry.as_ref().unwrap().problems.clone();
        assert!(
            problems(0)
                .iter()
                .any(|p| p.field == "logEntry.record" && p.detail.contains("was cut")),
            "{:?}",
            problems(0)
        );
        assert!(problems(1).is_empty());
    }

    /// A body in another character set (declared, or a UTF-16 BOM), gzipped or not, reads
    /// as the same entries as its UTF-8 form, with nothing reported.
    #[tokio::test]
    async fn a_body_in_another_charset_reads_as_utf8() {
        let text = "2025-03-03T02:00:01Z\t\t[Success] Processing mailbox: m\u{fc}ller@x.de\n\
            2025-03-03T02:00:02Z\t\t[Success] Processing site: Caf\u{e9} \u{20ac}\n";
        let (latin1, _, _) = encoding_rs::WINDOWS_1252.encode(text);
        let mut utf16 = vec![0xFE, 0xFF];
        for unit in text.encode_utf16() {
            utf16.extend_from_slice(&unit.to_be_bytes());
        }
        let want = [
            "[Success] Processing mailbox: m\u{fc}ller@x.de",
            "[Success] Processing site: Caf\u{e9} \u{20ac}",
        ];
        for (body, content_type) in [
            (latin1.to_vec(), Some("text/plain; charset=ISO-8859-1")),
            (utf16.clone(), None),
            (utf16, Some("text/plain; charset=iso-8859-1")),
        ] {
            for gzipped in [false, true] {
                let bytes = if gzipped {
                    gzip(&body).await
                } else {
                    body.clone()
                };
                let mut r = DownloadReader::open(stream_of(chunked(&bytes, 3)), None, content_type)
                    .await
                    .expect("opens");
                let mut items = Vec::new();
                while let Some(item) = r.next().await.expect("reads") {
                    items.push(item);
                }
                assert_eq!(titles(&items), want, "{content_type:?} gzip {gzipped}");
                assert!(
                    items
                        .iter()
                        .all(|i| i.entry.as_ref().is_ok_and(|e| e.problems.is_empty())),
                    "{content_type:?}: {items:?}"
                );
            }
        }
    }

    /// Invalid UTF-8 is replaced (JSON can't carry it) and the entry says so, in a text
    /// line and in a JSON one alike.
    #[tokio::test]
    async fn invalid_utf8_is_replaced_and_reported() {
        let mut body = b"2025-03-03T02:00:00Z\t\t[Success] bad \xff utf8\n".to_vec();
        body.extend_from_slice(b"2025-03-03T02:00:01Z\t\t[Success] fine\n");
        let (items, _) = read_all(vec![body], None).await;
        let entry = items[0].entry.as_ref().unwrap();
        assert_eq!(entry.title.as_deref(), Some("[Success] bad \u{fffd} utf8"));
        assert!(
            entry
                .problems
                .iter()
                .any(|p| p.field == "logEntry.record" && p.detail.contains("UTF-8")),
            "{:?}",
            entry.problems
        );
        assert!(items[1].entry.as_ref().unwrap().problems.is_empty());
        let json = b"{\"id\":\"e1\",\"title\":\"[Success] bad \xff\",\"creationTime\":\"2025-03-03T02:00:00Z\"}\n".to_vec();
        let (items, _) = read_all(vec![json], None).await;
        let entry = items[0].entry.as_ref().unwrap();
        assert!(
            entry
                .problems
                .iter()
                .any(|p| p.field == "logEntry.record" && p.detail.contains("U+FFFD")),
            "{:?}",
            entry.problems
        );
    }

    #[tokio::test]
    async fn the_last_line_without_a_line_end_is_marked() {
        let body = "2025-03-03T02:00:00Z\t\t[Success] a\n2025-03-03T02:00:01Z\t\t[Success] Processing mailbox: u3@";
        for size in [1, 7, 4096] {
            let (items, _) = read_all(chunked(body.as_bytes(), size), None).await;
            assert_eq!(
                items.iter().map(|i| i.unterminated).collect::<Vec<_>>(),
                [false, true],
                "chunks of {size}"
            );
            // It has the line shape: nothing says it is cut (it ships as is once the
            // session has ended).
            assert!(items[1].entry.as_ref().unwrap().problems.is_empty());
        }
        // Cut inside its time: it has no line shape, and says it may be cut.
        let (items, _) = read_all(vec![b"2025-03-03T02:0".to_vec()], None).await;
        let problems = &items[0].entry.as_ref().unwrap().problems;
        assert!(items[0].unterminated);
        assert!(
            problems.iter().any(|p| p.detail.contains("may be cut")),
            "{problems:?}"
        );
        let (items, _) = read_all(vec![b"a\nb\n".to_vec()], None).await;
        assert!(items.iter().all(|i| !i.unterminated));
    }

    #[tokio::test]
    async fn text_lines_that_start_with_a_bracket_are_not_json() {
        let text = "[Success] Job started at 3/3/2025 2:00:00 AM\n[Warning] Processing mailbox: a@contoso.com\n[Failed] Job finished\n";
        for chunk in [1, 2, 7, 4096] {
            let (items, _) = read_all(chunked(text.as_bytes(), chunk), None).await;
            assert_eq!(
                titles(&items),
                [
                    "[Success] Job started at 3/3/2025 2:00:00 AM",
                    "[Warning] Processing mailbox: a@contoso.com",
                    "[Failed] Job finished"
                ],
                "chunks of {chunk}"
            );
        }
        for json in [
            "[ {\"title\":\"x\"} ]",
            "[\n\n{\"title\":\"x\"}]",
            "[]",
            "[ ]",
        ] {
            let (items, _) = read_all(chunked(json.as_bytes(), 1), None).await;
            assert!(items.iter().all(|i| i.entry.is_ok()), "{json}: {items:?}");
        }
    }

    #[tokio::test]
    async fn a_csv_header_is_not_an_entry() {
        for header in [
            "creationTime,endTime,title",
            "\"creationTime\";\"endTime\";\"title\"",
            "id,title,creationTime,endTime",
        ] {
            let text = format!("{header}\n2025-03-03T02:00:00Z\t\tok\n");
            let (items, _) = read_all(vec![text.into_bytes()], None).await;
            assert_eq!(titles(&items), ["ok"], "{header}");
        }
    }

    #[tokio::test]
    async fn refuses_zip_and_unknown_encodings() {
        let zip =
            DownloadReader::open(stream_of(vec![b"PK\x03\x04rest".to_vec()]), None, None).await;
        assert!(zip.err().unwrap().to_string().contains("log_mode"));
        let br = DownloadReader::open(stream_of(vec![b"x".to_vec()]), Some("br"), None).await;
        assert!(br.err().unwrap().to_string().contains("`br`"));
        // Content-Encoding: gzip on a body that isn't: read as is.
        let (items, enc) = read_all(vec![b"plain line\n".to_vec()], Some("gzip")).await;
        assert_eq!(
            (titles(&items), enc),
            (vec!["plain line".to_string()], Encoding::Identity)
        );
    }

    #[tokio::test]
    async fn corrupt_gzip_is_an_error_after_the_good_entries() {
        let mut gz = gzip(b"one\ntwo\n").await;
        let len = gz.len();
        gz.truncate(len - 6); // cut the trailer
        let mut r = DownloadReader::open(stream_of(vec![gz]), None, None)
            .await
            .unwrap();
        let mut seen = Vec::new();
        let err = loop {
            match r.next().await {
                Ok(Some(i)) => seen.push(i),
                Ok(None) => panic!("a truncated gzip stream must fail"),
                Err(e) => break e,
            }
        };
        assert!(seen.len() <= 2);
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn text_line_shapes() {
        let e = parse_text_line("2025-03-03T02:00:01Z\t2025-03-03T02:00:02Z\t[Success] a\tb");
        assert_eq!(e.title.as_deref(), Some("[Success] a\tb"));
        assert!(e.creation_time.is_some() && e.end_time.is_some());
        let e = parse_text_line("2025-03-03T02:00:01Z\t[Success] two fields");
        assert_eq!(e.title.as_deref(), Some("[Success] two fields"));
        let e = parse_text_line("2025-03-03T02:00:01Z\tnot a time\ttitle");
        assert_eq!(
            e.title.as_deref(),
            Some("2025-03-03T02:00:01Z\tnot a time\ttitle")
        );
        assert_eq!(e.creation_time, None);
        let e = parse_text_line("\t\tno times");
        assert_eq!(e.title.as_deref(), Some("no times"));
    }
}
