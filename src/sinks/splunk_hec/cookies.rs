//! Load-balancer cookies of one HEC data channel (sticky sessions).
//!
//! Owns: what a balancer in front of several HEC instances told us in `Set-Cookie`
//! (AWS ELB/ALB, F5, HAProxy, nginx `sticky cookie`...), sent back as `Cookie` on every
//! later request of the same sink, so the ack query for an ackId reaches the indexer that
//! issued it. Each sink has one data channel and one jar, so cookies are per channel.
//!
//! Deliberately small (the balancer's affinity cookie is all that matters): `name=value`
//! pairs only, attributes ignored except `Max-Age <= 0` (a balancer withdrawing its
//! cookie), at most [`MAX_COOKIES`] cookies of at most [`MAX_COOKIE_BYTES`] each, so a
//! broken or hostile server cannot grow memory or headers without bound. Only ever sent to
//! the sink's own endpoint (one host). Values are not logged: some balancers put session
//! data in them.
//!
//! Must not: send a cookie to another sink or host, keep more than the caps.

use std::sync::Mutex;

use reqwest::header::{HeaderMap, HeaderValue, SET_COOKIE};

/// Most cookies kept per channel (the oldest is dropped for a new one).
pub const MAX_COOKIES: usize = 8;
/// Largest `name=value` kept (browsers' usual per-cookie limit).
pub const MAX_COOKIE_BYTES: usize = 4096;

#[derive(Default)]
pub struct CookieJar {
    cookies: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.cookies.lock().map(|c| c.len()).unwrap_or(0);
        write!(f, "CookieJar({n} cookies)")
    }
}

impl CookieJar {
    /// Take in every `Set-Cookie` of an answer.
    pub fn store(&self, headers: &HeaderMap) {
        let mut found = headers.get_all(SET_COOKIE).iter().peekable();
        if found.peek().is_none() {
            return;
        }
        let Ok(mut jar) = self.cookies.lock() else {
            return;
        };
        for value in found {
            let Ok(text) = value.to_str() else { continue };
            let Some((name, value, expired)) = parse_set_cookie(text) else {
                continue;
            };
            jar.retain(|(n, _)| *n != name);
            if expired {
                continue;
            }
            if jar.len() >= MAX_COOKIES {
                jar.remove(0);
            }
            jar.push((name, value));
        }
    }

    /// The `Cookie` header to send, when the balancer set any (marked sensitive).
    pub fn header(&self) -> Option<HeaderValue> {
        let jar = self.cookies.lock().ok()?;
        if jar.is_empty() {
            return None;
        }
        let line = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut value = HeaderValue::from_str(&line).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// `name=value; Path=/; Max-Age=0` → (name, value, withdrawn). `None` for what is not a
/// usable cookie (no `=`, an empty or invalid name, too large, characters a header can't
/// carry).
fn parse_set_cookie(text: &str) -> Option<(String, String, bool)> {
    let mut parts = text.split(';');
    let pair = parts.next()?.trim();
    if pair.len() > MAX_COOKIE_BYTES {
        return None;
    }
    let (name, value) = pair.split_once('=')?;
    let (name, value) = (name.trim(), value.trim());
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return None;
    }
    let value_ok = |c: char| c.is_ascii_graphic() && c != ';' && c != ',' && c != '\\';
    let bare = value.trim_matches('"');
    if !bare.chars().all(value_ok) {
        return None;
    }
    let withdrawn = parts.any(|attr| {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        k.trim().eq_ignore_ascii_case("max-age")
            && v.trim().parse::<i64>().is_ok_and(|age| age <= 0)
    });
    Some((name.to_string(), value.to_string(), withdrawn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(SET_COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn keeps_name_value_pairs_and_sends_them_back() {
        let jar = CookieJar::default();
        assert!(jar.header().is_none());
        jar.store(&answer(&[
            "AWSALB=abc123; Expires=Tue, 01 Dec 2026 00:00:00 GMT; Path=/",
            "route=\"idx-2\"; HttpOnly",
        ]));
        let h = jar.header().unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "AWSALB=abc123; route=\"idx-2\"");
        // A new value replaces the old one; Max-Age=0 withdraws a cookie.
        jar.store(&answer(&["AWSALB=def456", "route=x; Max-Age=0"]));
        assert_eq!(jar.header().unwrap().to_str().unwrap(), "AWSALB=def456");
    }

    #[test]
    fn refuses_junk_and_stays_bounded() {
        let jar = CookieJar::default();
        let huge = format!("big={}", "x".repeat(MAX_COOKIE_BYTES));
        jar.store(&answer(&[
            "novalue",
            "=anon",
            "bad name=1",
            "v=a\\b",
            &huge,
        ]));
        assert!(jar.header().is_none());
        let many: Vec<String> = (0..100).map(|i| format!("c{i}={i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        jar.store(&answer(&refs));
        let line = jar.header().unwrap().to_str().unwrap().to_string();
        assert_eq!(line.split("; ").count(), MAX_COOKIES);
        assert!(line.ends_with("c99=99"), "{line}");
        assert!(!format!("{jar:?}").contains("c99"));
    }
}
