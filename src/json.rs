//! Compact JSON text of an event, byte for byte what `serde_json::to_writer` writes, with
//! a string escaper that looks at eight bytes at a time.
//!
//! Owns: [`to_writer`], a `serde::Serializer` for compact JSON, and [`write_str`]. Why not
//! serde_json's own: its escaper inspects strings one byte at a time, and an event is
//! mostly strings; that loop was ~10 % of a VB365 run's instructions with the file and HEC
//! sinks (BENCHMARKS.md, ninth round). A `serde_json::value::RawValue` (how
//! [`crate::event::Shared`] parts carry their JSON) is written as is, as serde_json does.
//! Anything this writer does not handle (a map key that is not a string) makes
//! [`to_writer`] fall back to serde_json for that value, so no event is ever lost to it.
//! Must not: write anything serde_json would write differently (the tests compare them).

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};

/// Append the compact JSON of `value` to `out`: serde_json's exact text.
pub fn to_writer<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
    let start = out.len();
    if value.serialize(Writer { out: &mut *out }).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    serde_json::to_writer(out, value)
}

/// Why this writer handed a value to serde_json.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Error(msg.to_string())
    }
}

/// Nonzero when any of the eight bytes of `w` must be escaped: below 0x20, `"` or `\`.
/// Exact about whether one is present (the classic "has a zero byte" tests), not where.
#[inline]
fn escape_bits(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below_space | has_zero(w ^ (ONES * u64::from(b'"'))) | has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// Whether `bytes` need no escape at all (most strings of an event): eight bytes at a
/// time, the last word overlapping the one before it (no byte-by-byte tail).
#[inline]
fn is_clean(bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n < 8 {
        return bytes.iter().all(|&b| !NEEDS_ESCAPE[usize::from(b)]);
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut found = escape_bits(word(n - 8));
    let mut at = 0;
    while at + 8 < n {
        found |= escape_bits(word(at));
        at += 8;
    }
    found == 0
}

/// The bytes JSON strings escape: below 0x20, `"` and `\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The escape serde_json writes for `byte`, if it needs one.
#[inline]
fn escape_of(byte: u8) -> Option<&'static [u8]> {
    Some(match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x09 => b"\\t",
        0x0A => b"\\n",
        0x0C => b"\\f",
        0x0D => b"\\r",
        0x00..=0x1F => return Some(&CONTROL[byte as usize]),
        _ => return None,
    })
}

/// `\u00XX` (lowercase hex, as serde_json) for every control byte.
static CONTROL: [[u8; 6]; 32] = {
    let hex = b"0123456789abcdef";
    let mut table = [[0u8; 6]; 32];
    let mut b = 0;
    while b < 32 {
        table[b] = [b'\\', b'u', b'0', b'0', hex[b >> 4], hex[b & 0xF]];
        b += 1;
    }
    table
};

/// `value` as a JSON string, quotes included: serde_json's exact text.
pub fn write_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if is_clean(bytes) {
        out.extend_from_slice(bytes);
    } else {
        let mut done = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            if !NEEDS_ESCAPE[usize::from(byte)] {
                continue;
            }
            if let Some(escape) = escape_of(byte) {
                out.extend_from_slice(&bytes[done..i]);
                out.extend_from_slice(escape);
                done = i + 1;
            }
        }
        out.extend_from_slice(&bytes[done..]);
    }
    out.push(b'"');
}

/// A number (or anything else serde_json writes the same way in every position): its text.
fn delegate<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    serde_json::to_writer(out, value).map_err(|e| Error(e.to_string()))
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// The struct name by which serde_json's `RawValue` asks a serializer to write its one
/// field, a string, as is (serde_json's own serializer does exactly that).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// An array or object being written; `first` until its first element.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Closers written at the end: `]`, `}`, or `]}` / `}}` for enum variants.
    close: &'static [u8],
    /// A `RawValue`: its one field is JSON text, written as is.
    raw: bool,
}

impl<'a> Compound<'a> {
    fn open(out: &'a mut Vec<u8>, open: &[u8], close: &'static [u8]) -> Self {
        out.extend_from_slice(open);
        Compound {
            out,
            first: true,
            close,
            raw: false,
        }
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(Writer {
            out: &mut *self.out,
        })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        write_str(self.out, key);
        self.out.push(b':');
        value.serialize(Writer {
            out: &mut *self.out,
        })
    }

    fn close(self) -> Result<(), Error> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

/// `{"variant":` before a variant's content.
fn variant_head(out: &mut Vec<u8>, variant: &str) {
    out.push(b'{');
    write_str(out, variant);
    out.push(b':');
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        delegate(self.out, &v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.out, v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        delegate(self.out, v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        variant_head(self.out, variant);
        value.serialize(Writer {
            out: &mut *self.out,
        })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(Compound::open(self.out, b"[", b"]"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        variant_head(self.out, variant);
        Ok(Compound::open(self.out, b"[", b"]}"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(Compound::open(self.out, b"{", b"}"))
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Compound<'a>, Error> {
        if name == RAW_VALUE_TOKEN {
            return Ok(Compound {
                out: self.out,
                first: true,
                close: b"",
                raw: true,
            });
        }
        Ok(Compound::open(self.out, b"{", b"}"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        variant_head(self.out, variant);
        Ok(Compound::open(self.out, b"{", b"}}"))
    }
}

/// The four kinds of sequence serde has: each element written after a comma.
macro_rules! elements {
    ($($kind:ident::$method:ident),* $(,)?) => {
        $(impl ser::$kind for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if self.raw {
            if key != RAW_VALUE_TOKEN || !self.first {
                return Err(Error("not a RawValue".to_string()));
            }
            self.first = false;
            return value.serialize(StrOnly {
                out: &mut *self.out,
                raw: true,
            });
        }
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(StrOnly {
            out: &mut *self.out,
            raw: false,
        })?;
        self.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(Writer {
            out: &mut *self.out,
        })
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// A serializer that takes a string only: a map key (written as a JSON string; serde_json's
/// other key forms make [`to_writer`] fall back), or a `RawValue`'s text (written as is:
/// it is JSON already).
struct StrOnly<'a> {
    out: &'a mut Vec<u8>,
    raw: bool,
}

impl StrOnly<'_> {
    fn refused(&self) -> Error {
        Error(if self.raw {
            "a RawValue's field is not its text".to_string()
        } else {
            "map key is not a string".to_string()
        })
    }
}

macro_rules! refuse {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _v: $ty) -> Result<(), Error> {
            Err(self.refused())
        })*
    };
}

impl ser::Serializer for StrOnly<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        if self.raw {
            self.out.extend_from_slice(v.as_bytes());
        } else {
            write_str(self.out, v);
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        if self.raw {
            return Err(self.refused());
        }
        self.serialize_str(v.encode_utf8(&mut [0u8; 4]))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        if self.raw {
            return Err(self.refused());
        }
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if self.raw {
            return Err(self.refused());
        }
        value.serialize(self)
    }
    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_bytes(&[u8]),
    );
    fn serialize_none(self) -> Result<(), Error> {
        Err(self.refused())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(self.refused())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(self.refused())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(self.refused())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(self.refused())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(self.refused())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(self.refused())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(self.refused())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(self.refused())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(self.refused())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(self.refused())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(self.refused())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn ours<T: Serialize + ?Sized>(value: &T) -> String {
        let mut out = b"prefix ".to_vec();
        to_writer(&mut out, value).expect("writes");
        String::from_utf8(out).expect("UTF-8")["prefix ".len()..].to_string()
    }

    fn same<T: Serialize + ?Sized>(value: &T) {
        assert_eq!(
            ours(value),
            serde_json::to_string(value).expect("serde_json")
        );
    }

    /// Every byte that needs an escape, at every position of an eight-byte word, inside
    /// text of every length around a word, with multi-byte characters next to it.
    #[test]
    fn strings_escape_exactly_as_serde_json() {
        let specials: Vec<char> = (0u8..0x20)
            .map(char::from)
            .chain(['"', '\\', '\u{7f}', 'é', '€', '😀', '\u{2028}', '/'])
            .collect();
        for len in 0..20 {
            for at in 0..len.max(1) {
                for &c in &specials {
                    let mut s: String = "abcdefghijklmnopqrstu".chars().take(len).collect();
                    if at < s.len() {
                        s.replace_range(at..=at, c.encode_utf8(&mut [0; 4]));
                    }
                    same(&s);
                    same(&format!("é{s}€"));
                }
            }
        }
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2_000 {
            let s: String = (0..(seed % 64))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    specials[(seed % 40) as usize % specials.len()]
                })
                .collect();
            same(&s);
        }
    }

    #[test]
    fn every_shape_is_written_as_serde_json_writes_it() {
        #[derive(Serialize)]
        enum E {
            Unit,
            New(i64),
            Tuple(u8, String),
            Struct { a: Option<bool>, b: f64 },
        }
        #[derive(Serialize)]
        struct S<'a> {
            #[serde(rename = "@t")]
            t: &'a str,
            n: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            e: Vec<E>,
            empty: Vec<String>,
            map: BTreeMap<String, i32>,
            chars: (char, char),
            floats: [f64; 4],
            big: (i128, u128),
        }
        same(&S {
            t: "x\"y",
            n: None,
            skipped: None,
            e: vec![
                E::Unit,
                E::New(-5),
                E::Tuple(7, "t\n".into()),
                E::Struct {
                    a: Some(true),
                    b: 1.5,
                },
            ],
            empty: vec![],
            map: [("k\u{1}".to_string(), 1), ("z".to_string(), -2)].into(),
            chars: ('"', 'é'),
            floats: [0.1, -0.0, f64::NAN, 1e300],
            big: (i128::MIN, u128::MAX),
        });
        same(&json!({"a": [1, "two", null, {"b": false}], "c": {}}));
        same(&());
    }

    /// Every mapping fixture's event, as the pipeline would write it.
    #[test]
    fn fixture_events_are_written_as_serde_json_writes_them() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mapping");
        let mut seen = 0;
        for source in ["vbo", "vdc"] {
            for entry in std::fs::read_dir(root.join(source)).expect("fixture dir") {
                let path = entry.expect("entry").path();
                if !path.to_string_lossy().ends_with(".expected.json") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read");
                let event: crate::event::Event =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                same(&event);
                seen += 1;
            }
        }
        assert!(seen > 20, "only {seen} fixture events");
    }

    /// A `RawValue` (a shared event part's JSON) is written as is, wherever it sits.
    #[test]
    fn raw_values_are_written_as_is() {
        let raw = serde_json::value::to_raw_value(&json!({"a": "x\"y", "b": [1, 2]})).unwrap();
        same(&raw);
        same(&json!({"k": 1}));
        #[derive(Serialize)]
        struct Holder<'a> {
            before: &'a str,
            shared: &'a serde_json::value::RawValue,
            list: Vec<&'a serde_json::value::RawValue>,
        }
        same(&Holder {
            before: "b",
            shared: &raw,
            list: vec![&raw, &raw],
        });
        let shared = crate::event::Shared::new(json!({"name": "carol", "n": [1.5, null]}));
        same(&vec![shared.clone(), shared]);
    }

    /// A map with keys that are not strings is handed to serde_json whole.
    #[test]
    fn other_map_keys_fall_back_to_serde_json() {
        let map: BTreeMap<i32, &str> = [(1, "a"), (2, "b")].into();
        same(&map);
        same(&vec![Some(map)]);
    }
}
