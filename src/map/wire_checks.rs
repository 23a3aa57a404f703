//! Decode-time checks on Veeam's wire records: values the output contract can't carry make
//! the record malformed, so the source logs and skips it alone (like a wrong type) instead
//! of shipping an event that breaks the schema downstream.
//!
//! Owns: ids must not be blank; times must fall in years 0000–9999 once in UTC (RFC 3339
//! can't write others, and an offset can push an edge value there). Used through
//! `#[serde(deserialize_with = …)]` on the `Raw*` types.

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use serde::{Deserialize, Deserializer, de::Error};

/// A non-blank id (kept verbatim).
pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(D::Error::custom("blank id"));
    }
    Ok(s)
}

/// A time that is representable in RFC 3339 once converted to UTC.
pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
    let t = DateTime::<FixedOffset>::deserialize(d)?;
    check_year(t).map_err(D::Error::custom)
}

/// As [`time`], optional.
pub fn opt_time<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
    Option::<DateTime<FixedOffset>>::deserialize(d)?
        .map(check_year)
        .transpose()
        .map_err(D::Error::custom)
}

fn check_year(t: DateTime<FixedOffset>) -> Result<DateTime<FixedOffset>, String> {
    let year = t.with_timezone(&Utc).year();
    if (0..=9999).contains(&year) {
        Ok(t)
    } else {
        Err(format!("time {t} is outside years 0000-9999 in UTC"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct R {
        #[serde(deserialize_with = "id")]
        #[allow(dead_code)]
        id: String,
        #[serde(deserialize_with = "time")]
        #[allow(dead_code)]
        t: DateTime<FixedOffset>,
    }

    fn parse(id: &str, t: &str) -> Result<R, String> {
        serde_json::from_value(serde_json::json!({"id": id, "t": t})).map_err(|e| e.to_string())
    }

    #[test]
    fn blank_ids_and_unwritable_years_are_malformed() {
        assert!(parse("a", "2025-03-04T08:00:00+01:00").is_ok());
        assert!(
            parse("a", "0000-01-01T05:00:00+05:00").is_ok(),
            "year 0 in UTC is fine"
        );
        assert!(
            parse(" ", "2025-03-04T08:00:00Z")
                .unwrap_err()
                .contains("blank id")
        );
        assert!(
            parse("a", "0000-01-01T00:00:00+05:00")
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            parse("a", "9999-12-31T23:00:00-05:00")
                .unwrap_err()
                .contains("outside")
        );
    }
}
