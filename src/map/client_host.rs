//! Parsing of Veeam's `clientHost` and `initiatedBy` strings.
//!
//! Pure string functions, no I/O. Owns the rules that turn
//! - `clientHost` (`"BXYDEV01 (via: 203.0.113.10)"`, `"203.0.113.7"`, `"WS01"`, ...) into the
//!   client machine and the Cloud Connect gateway it came through ([`parse_client_host`]);
//! - `initiatedBy` (`"LAB\alice"`, `"bob@contoso.com"`, the organization name, ...) into a
//!   user name, domain and e-mail ([`parse_initiated_by`]).
//!
//! Both are tolerant: any input yields a result (possibly empty), never a panic. IP addresses
//! are only ever reported when [`std::net::IpAddr`] accepts them, so `*.ip` fields always
//! hold real addresses; anything else stays in the raw string the caller keeps.

use std::net::{IpAddr, SocketAddr};

/// What [`parse_client_host`] found in a `clientHost` string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHost {
    /// The client as written (hostname, or the canonical IP text): ECS `client.address`.
    pub address: Option<String>,
    /// The client's hostname, when it is one (not an IP): ECS `client.domain`.
    pub domain: Option<String>,
    /// The client's IP, when the client part is an address: ECS `client.ip`.
    pub ip: Option<IpAddr>,
    /// The gateway's IP from `(via: ...)`, when it parses: `veeam.gateway.ip`, `source.ip`.
    pub gateway_ip: Option<IpAddr>,
    /// The gateway text after `via:` as written, whether or not it is an IP.
    pub gateway_raw: Option<String>,
}

impl ClientHost {
    /// True when nothing was found (empty, blank or absent input).
    pub fn is_empty(&self) -> bool {
        *self == ClientHost::default()
    }
}

/// Split a `clientHost` string into client and gateway.
///
/// Accepted shapes (case-insensitive `via`, any spacing, closing paren optional):
/// `HOST (via: GW)`, `IP (via: GW)`, `(via: GW)`, bare `IP`, bare `HOST`, where IPs may be
/// IPv4 or IPv6, optionally `[bracketed]` or with a `:port` (dropped). A client part that is
/// neither an IP nor a plausible hostname (spaces, parens, ...) is kept as `address` only.
pub fn parse_client_host(raw: &str) -> ClientHost {
    let raw = raw.trim();
    if raw.is_empty() {
        return ClientHost::default();
    }

    let (client_part, gateway_part) = match find_via(raw) {
        Some((paren, gateway)) => (raw[..paren].trim(), Some(gateway)),
        None => (raw, None),
    };

    let mut out = ClientHost::default();
    if !client_part.is_empty() {
        if let Some(ip) = parse_ip_lenient(client_part) {
            out.ip = Some(ip);
            out.address = Some(ip.to_string());
        } else {
            out.address = Some(client_part.to_string());
            if looks_like_hostname(client_part) {
                out.domain = Some(client_part.to_string());
            }
        }
    }
    if let Some(gateway) = gateway_part.filter(|g| !g.is_empty()) {
        out.gateway_ip = parse_ip_lenient(gateway);
        out.gateway_raw = Some(gateway.to_string());
    }
    out
}

/// Find `( via [:] GATEWAY [)]`: returns the byte index of the `(` and the trimmed gateway
/// text (up to the closing paren, or the end when it is missing).
fn find_via(s: &str) -> Option<(usize, &str)> {
    s.char_indices()
        .filter(|(_, c)| *c == '(')
        .find_map(|(i, _)| {
            let rest = s[i + 1..].trim_start();
            let after = strip_prefix_ignore_ascii_case(rest, "via")?;
            let after = after.trim_start();
            let after = after.strip_prefix(':').unwrap_or(after);
            let inner = match after.find(')') {
                Some(close) => &after[..close],
                None => after,
            };
            Some((i, inner.trim()))
        })
}

fn strip_prefix_ignore_ascii_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// An IP address written as `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, `1.2.3.4:443` or
/// `[2001:db8::1]:443`.
fn parse_ip_lenient(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.trim().parse::<IpAddr>().ok();
    }
    s.parse::<SocketAddr>().ok().map(|sa| sa.ip())
}

/// A DNS/NetBIOS-ish name: non-empty, at most 253 bytes, only letters (any script, for
/// internationalized names), digits, `-`, `_` and `.`.
fn looks_like_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What [`parse_initiated_by`] found in an `initiatedBy` string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitiatedBy {
    /// ECS `user.name`.
    pub name: Option<String>,
    /// ECS `user.domain`: the NetBIOS domain of `DOMAIN\user` or the domain of a UPN.
    pub domain: Option<String>,
    /// ECS `user.email`: the full UPN when the value is `user@domain`.
    pub email: Option<String>,
    /// The value names the organization itself (restores through a service provider's
    /// Cloud Connect gateway): there is no person to report.
    pub is_organization: bool,
}

/// Split `initiatedBy` into user parts, comparing against the session's organization.
///
/// Rules, first match wins:
/// 1. empty/blank → nothing;
/// 2. equal to `organization` (trimmed, case-insensitive) → `is_organization`, no user;
/// 3. `DOMAIN\user` (first backslash) → name + domain;
/// 4. `user@domain` (last `@`) → name + domain + email (the whole UPN);
/// 5. anything else → name only (trimmed).
///
/// A half-empty form (`\alice`, `LAB\`, `@contoso.com`, `alice@`) falls through to the next
/// rule, ending as a plain name rather than inventing an empty user or domain.
pub fn parse_initiated_by(raw: &str, organization: Option<&str>) -> InitiatedBy {
    let value = raw.trim();
    if value.is_empty() {
        return InitiatedBy::default();
    }
    if let Some(org) = organization.map(str::trim).filter(|o| !o.is_empty())
        && value.to_lowercase() == org.to_lowercase()
    {
        return InitiatedBy {
            is_organization: true,
            ..InitiatedBy::default()
        };
    }
    if let Some((domain, user)) = value.split_once('\\') {
        let (domain, user) = (domain.trim(), user.trim());
        if !domain.is_empty() && !user.is_empty() {
            return InitiatedBy {
                name: Some(user.to_string()),
                domain: Some(domain.to_string()),
                ..InitiatedBy::default()
            };
        }
    }
    if let Some((user, domain)) = value.rsplit_once('@') {
        let (user, domain) = (user.trim(), domain.trim());
        if !user.is_empty() && !domain.is_empty() {
            return InitiatedBy {
                name: Some(user.to_string()),
                domain: Some(domain.to_string()),
                email: Some(value.to_string()),
                ..InitiatedBy::default()
            };
        }
    }
    InitiatedBy {
        name: Some(value.to_string()),
        ..InitiatedBy::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }
    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    /// (input, address, domain, client ip, gateway ip, gateway raw)
    type HostCase = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn client_host_table() {
        let cases: &[HostCase] = &[
            // The documented shape.
            (
                "BXYDEV01 (via: 203.0.113.10)",
                Some("BXYDEV01"),
                Some("BXYDEV01"),
                None,
                Some("203.0.113.10"),
                Some("203.0.113.10"),
            ),
            // Spec example.
            (
                "WS-ALICE01 (via: 10.20.30.40)",
                Some("WS-ALICE01"),
                Some("WS-ALICE01"),
                None,
                Some("10.20.30.40"),
                Some("10.20.30.40"),
            ),
            // Inner part is itself an IP.
            (
                "192.0.2.55 (via: 203.0.113.10)",
                Some("192.0.2.55"),
                None,
                Some("192.0.2.55"),
                Some("203.0.113.10"),
                Some("203.0.113.10"),
            ),
            (
                "2001:db8::55 (via: 203.0.113.10)",
                Some("2001:db8::55"),
                None,
                Some("2001:db8::55"),
                Some("203.0.113.10"),
                Some("203.0.113.10"),
            ),
            // IPv6 gateways, plain and bracketed.
            (
                "HOST (via: 2001:db8::10)",
                Some("HOST"),
                Some("HOST"),
                None,
                Some("2001:db8::10"),
                Some("2001:db8::10"),
            ),
            (
                "HOST (via: [2001:db8::10])",
                Some("HOST"),
                Some("HOST"),
                None,
                Some("2001:db8::10"),
                Some("[2001:db8::10]"),
            ),
            (
                "HOST (via: [2001:db8::10]:443)",
                Some("HOST"),
                Some("HOST"),
                None,
                Some("2001:db8::10"),
                Some("[2001:db8::10]:443"),
            ),
            // Bare addresses.
            (
                "203.0.113.7",
                Some("203.0.113.7"),
                None,
                Some("203.0.113.7"),
                None,
                None,
            ),
            (
                "2001:DB8:0:0::5",
                Some("2001:db8::5"),
                None,
                Some("2001:db8::5"),
                None,
                None,
            ),
            (
                "[2001:db8::5]",
                Some("2001:db8::5"),
                None,
                Some("2001:db8::5"),
                None,
                None,
            ),
            (
                "10.0.0.1:4443",
                Some("10.0.0.1"),
                None,
                Some("10.0.0.1"),
                None,
                None,
            ),
            // Bare hostnames.
            ("WS01", Some("WS01"), Some("WS01"), None, None, None),
            (
                "ws01.lab.example.com",
                Some("ws01.lab.example.com"),
                Some("ws01.lab.example.com"),
                None,
                None,
                None,
            ),
            // Empty / blank.
            ("", None, None, None, None, None),
            ("   \t ", None, None, None, None, None),
            // Tolerance: spacing, case of `via`, missing colon / closing paren.
            (
                "  BXYDEV01   (  VIA :   203.0.113.10  )  ",
                Some("BXYDEV01"),
                Some("BXYDEV01"),
                None,
                Some("203.0.113.10"),
                Some("203.0.113.10"),
            ),
            (
                "BXYDEV01(via:203.0.113.10)",
                Some("BXYDEV01"),
                Some("BXYDEV01"),
                None,
                Some("203.0.113.10"),
                Some("203.0.113.10"),
            ),
            (
                "BXYDEV01 (via 203.0.113.10)",
                Some("BXYDEV01"),
                Some("BXYDEV01"),
                None,
                Some("203.0.113.10"),
                Some("203.0.113.10"),
            ),
            (
                "BXYDEV01 (via: 203.0.113.10",
                Some("BXYDEV01"),
                Some("BXYDEV01"),
                None,
                Some("203.0.113.10"),
                Some("203.0.113.10"),
            ),
            // Gateway that is not an IP: kept raw only.
            (
                "BXYDEV01 (via: gw.provider.example)",
                Some("BXYDEV01"),
                Some("BXYDEV01"),
                None,
                None,
                Some("gw.provider.example"),
            ),
            (
                "BXYDEV01 (via: 203.0.113.999)",
                Some("BXYDEV01"),
                Some("BXYDEV01"),
                None,
                None,
                Some("203.0.113.999"),
            ),
            // Empty gateway, empty client.
            (
                "BXYDEV01 (via: )",
                Some("BXYDEV01"),
                Some("BXYDEV01"),
                None,
                None,
                None,
            ),
            (
                "(via: 203.0.113.10)",
                None,
                None,
                None,
                Some("203.0.113.10"),
                Some("203.0.113.10"),
            ),
            // A parenthesis that is not `via`: not a hostname, kept as address only.
            (
                "HOST (console)",
                Some("HOST (console)"),
                None,
                None,
                None,
                None,
            ),
            // `via` must follow the paren: a hostname containing "via" is just a hostname.
            (
                "VIAHOST01",
                Some("VIAHOST01"),
                Some("VIAHOST01"),
                None,
                None,
                None,
            ),
            // Not an IP, not a hostname.
            ("999.1.1.1 ?", Some("999.1.1.1 ?"), None, None, None, None),
        ];
        for (input, address, domain, client_ip, gateway_ip, gateway_raw) in cases {
            let got = parse_client_host(input);
            let want = ClientHost {
                address: address.map(String::from),
                domain: domain.map(String::from),
                ip: client_ip.and_then(ip),
                gateway_ip: gateway_ip.and_then(ip),
                gateway_raw: gateway_raw.map(String::from),
            };
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn client_host_never_panics() {
        for input in [
            "(",
            ")",
            "((",
            "(via",
            "(via:",
            "(VIA:)",
            "(v",
            "é (via: é)",
            "🦀(via:🦀",
            "(\u{0}via: 1.1.1.1)",
            "[",
            "[]",
            "[::1",
            "::1]",
            "::",
            "(via: [::1)",
            "a (b (via: 1.2.3.4))",
            "\u{feff}HOST",
            "ＨＯＳＴ (ｖｉａ: 1.2.3.4)",
        ] {
            let _ = parse_client_host(input);
        }
        assert!(parse_client_host("(").address.is_some());
        assert_eq!(parse_client_host("::").ip, ip("::"));
        assert_eq!(
            parse_client_host("a (b (via: 1.2.3.4))").gateway_ip,
            ip("1.2.3.4")
        );
        assert!(parse_client_host("").is_empty());
    }

    /// (raw, organization, name, domain, email, is_organization)
    type UserCase = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        bool,
    );

    #[test]
    fn initiated_by_table() {
        let org = Some("contoso.onmicrosoft.com");
        let cases: &[UserCase] = &[
            ("LAB\\alice", org, Some("alice"), Some("LAB"), None, false),
            (
                "bob@contoso.onmicrosoft.com",
                org,
                Some("bob"),
                Some("contoso.onmicrosoft.com"),
                Some("bob@contoso.onmicrosoft.com"),
                false,
            ),
            ("admin", org, Some("admin"), None, None, false),
            ("", org, None, None, None, false),
            ("   ", org, None, None, None, false),
            // Organization name: no user.
            ("contoso.onmicrosoft.com", org, None, None, None, true),
            ("  CONTOSO.onmicrosoft.COM ", org, None, None, None, true),
            (
                "contoso.onmicrosoft.com",
                Some("  Contoso.OnMicrosoft.com  "),
                None,
                None,
                None,
                true,
            ),
            // Without an organization to compare, the same value is just a name.
            (
                "contoso.onmicrosoft.com",
                None,
                Some("contoso.onmicrosoft.com"),
                None,
                None,
                false,
            ),
            (
                "contoso.onmicrosoft.com",
                Some(""),
                Some("contoso.onmicrosoft.com"),
                None,
                None,
                false,
            ),
            // Spacing and half-empty forms.
            (
                " LAB \\ alice ",
                org,
                Some("alice"),
                Some("LAB"),
                None,
                false,
            ),
            ("\\alice", org, Some("\\alice"), None, None, false),
            ("LAB\\", org, Some("LAB\\"), None, None, false),
            ("@contoso.com", org, Some("@contoso.com"), None, None, false),
            ("alice@", org, Some("alice@"), None, None, false),
            // Backslash wins over '@'; last '@' splits a UPN.
            (
                "LAB\\alice@x",
                org,
                Some("alice@x"),
                Some("LAB"),
                None,
                false,
            ),
            (
                "a@b@c.com",
                org,
                Some("a@b"),
                Some("c.com"),
                Some("a@b@c.com"),
                false,
            ),
            ("A\\B\\c", org, Some("B\\c"), Some("A"), None, false),
            ("Ünïcødé", org, Some("Ünïcødé"), None, None, false),
        ];
        for (raw, org, name, domain, email, is_org) in cases {
            let got = parse_initiated_by(raw, *org);
            let want = InitiatedBy {
                name: name.map(String::from),
                domain: domain.map(String::from),
                email: email.map(String::from),
                is_organization: *is_org,
            };
            assert_eq!(got, want, "raw {raw:?} org {org:?}");
        }
    }

    #[test]
    fn initiated_by_never_panics() {
        for raw in ["\\", "@", "\\@", "@\\", "🦀\\🦀", "é@", "\u{0}", "İ"] {
            let _ = parse_initiated_by(raw, Some("i̇"));
            let _ = parse_initiated_by(raw, None);
        }
        assert_eq!(parse_initiated_by("\\", None).name, s("\\"));
    }
}
