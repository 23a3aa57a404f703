//! The character set of a VDC log download, and reading a body that is not UTF-8 as UTF-8.
//!
//! Owns: choosing the encoding from a UTF-16 byte-order mark or the `charset` of
//! `Content-Type` (a BOM wins, as in the WHATWG Encoding Standard; labels are read the
//! same way, so `iso-8859-1` and `latin1` mean windows-1252), and [`Transcode`], which
//! turns such a body into UTF-8 as it streams, with bounded buffers. UTF-8 bodies (no
//! charset, `utf-8`, or a label we cannot read, which is logged) are not touched: invalid
//! bytes there are replaced and reported further on, as before. Must not: split entries
//! or decompress (the download reader does both).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use encoding_rs::{Decoder, Encoding, UTF_8};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// The encoding a download must be decoded from, `None` for UTF-8 (read as is).
/// `first` is the body's first bytes (after decompression), for a byte-order mark.
pub fn choose(content_type: Option<&str>, first: &[u8]) -> Option<&'static Encoding> {
    if let Some((encoding, _)) = Encoding::for_bom(first) {
        return (encoding != UTF_8).then_some(encoding);
    }
    let label = declared_charset(content_type?)?;
    match Encoding::for_label(label.as_bytes()) {
        // `us-ascii` is a windows-1252 label for browsers, but servers that say so send
        // ASCII or, mislabelled, UTF-8: both read right as UTF-8.
        Some(_) if matches!(label.as_str(), "us-ascii" | "ascii") => None,
        Some(encoding) if encoding == UTF_8 => None,
        // UTF-16 without a BOM is read as the label says (little endian for `utf-16`).
        Some(encoding) => Some(encoding),
        None => {
            tracing::warn!(charset = %label, "the log download names a character set that is not known; reading it as UTF-8 (bytes that are not UTF-8 are replaced and reported)");
            None
        }
    }
}

/// The `charset` parameter of a `Content-Type` value, lower-cased and unquoted.
fn declared_charset(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
    })
}

/// Reads `inner` (in `encoding`) as UTF-8. A byte-order mark is removed; a malformed
/// sequence becomes U+FFFD (the download reader reports entries holding one).
pub struct Transcode<R> {
    inner: R,
    decoder: Decoder,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: AsyncBufRead + Unpin> Transcode<R> {
    pub fn new(inner: R, encoding: &'static Encoding) -> Transcode<R> {
        Transcode {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            out: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    /// Decodes the next chunk of `inner` into `out`; `false` at the end.
    fn poll_decode(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(false));
            }
            let chunk = ready!(Pin::new(&mut self.inner).poll_fill_buf(cx))?;
            let last = chunk.is_empty();
            let room = self
                .decoder
                .max_utf8_buffer_length(chunk.len())
                .unwrap_or(chunk.len().saturating_mul(3))
                .max(16);
            self.out.clear();
            self.out.resize(room, 0);
            let (_, read, written, _) = self.decoder.decode_to_utf8(chunk, &mut self.out, last);
            self.out.truncate(written);
            self.pos = 0;
            Pin::new(&mut self.inner).consume(read);
            self.done = last;
            if written > 0 {
                return Poll::Ready(Ok(true));
            }
        }
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for Transcode<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos >= this.out.len() && !ready!(this.poll_decode(cx))? {
            return Poll::Ready(Ok(()));
        }
        let n = buf.remaining().min(this.out.len() - this.pos);
        buf.put_slice(&this.out[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn the_charset_comes_from_a_bom_first_then_content_type() {
        let name = |ct: Option<&str>, first: &[u8]| choose(ct, first).map(|e| e.name());
        assert_eq!(name(None, b"2025"), None);
        assert_eq!(name(Some("text/plain"), b"2025"), None);
        assert_eq!(name(Some("text/plain; charset=utf-8"), b"2025"), None);
        assert_eq!(name(Some("text/plain; charset=US-ASCII"), b"2025"), None);
        assert_eq!(
            name(Some("text/plain; charset=iso-8859-1"), b"2025"),
            Some("windows-1252")
        );
        assert_eq!(
            name(Some("text/plain;CHARSET=\"Latin1\""), b"x"),
            Some("windows-1252")
        );
        assert_eq!(
            name(Some("text/plain; charset=utf-16"), b"2\0"),
            Some("UTF-16LE")
        );
        assert_eq!(name(None, b"\xFF\xFE2\0"), Some("UTF-16LE"));
        assert_eq!(name(None, b"\xFE\xFF\x002"), Some("UTF-16BE"));
        // A BOM wins over the label; a UTF-8 BOM means UTF-8 (the reader skips it).
        assert_eq!(
            name(Some("text/plain; charset=iso-8859-1"), b"\xEF\xBB\xBF2"),
            None
        );
        assert_eq!(name(Some("text/plain; charset=klingon"), b"2025"), None);
    }

    async fn decode(bytes: &[u8], encoding: &'static Encoding, chunk: usize) -> String {
        let chunks: Vec<io::Result<bytes::Bytes>> = bytes
            .chunks(chunk)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let inner = tokio_util::io::StreamReader::new(futures::stream::iter(chunks));
        let mut t = Transcode::new(inner, encoding);
        let mut out = String::new();
        t.read_to_string(&mut out).await.expect("valid UTF-8 out");
        out
    }

    #[tokio::test]
    async fn latin1_and_utf16_bodies_read_as_utf8_in_any_chunking() {
        let latin1 =
            "2025-03-03T02:00:01Z\t\t[Success] Processing mailbox: m\u{fc}ller@x.de \u{20ac}\n";
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(latin1);
        let mut utf16 = vec![0xFF, 0xFE];
        for unit in latin1.encode_utf16() {
            utf16.extend_from_slice(&unit.to_le_bytes());
        }
        for chunk in [1, 2, 3, 7, 4096] {
            assert_eq!(
                decode(&bytes, encoding_rs::WINDOWS_1252, chunk).await,
                latin1
            );
            assert_eq!(
                decode(&utf16, encoding_rs::UTF_16LE, chunk).await,
                latin1,
                "chunk {chunk}"
            );
        }
        // A lone surrogate is replaced; so is the last byte of an odd length.
        let text = decode(&[0x00, 0xD8, b'a', 0], encoding_rs::UTF_16LE, 1).await;
        assert_eq!(text, "\u{fffd}a");
        let text = decode(b"a\0b", encoding_rs::UTF_16LE, 2).await;
        assert_eq!(text, "a\u{fffd}");
    }
}
