//! The sink's Entra ID token: OAuth2 client-credentials grant for the scope
//! `https://monitor.azure.com/.default`, cached and renewed before it expires.
//!
//! Owns the access token of one sink (the sink delivers one request at a time, so no
//! lock). Renewal happens `min(lifetime / 5, 5 min)` before `expires_in` runs out (so at
//! 80 % of a short lifetime, 5 minutes early for Entra's usual hour); a 401 from the
//! ingestion endpoint drops the token ([`TokenCache::invalidate`]) and the caller asks once
//! more. The answer is read up to [`TOKEN_BODY_LIMIT`] bytes; `expires_in` is clamped to
//! 1 s–24 h (absent or unusable: one hour). The token and the client secret are
//! [`Secret`]s: never logged, never in an error.

use std::time::Duration;

use tokio::time::Instant;

use crate::http::{self, HttpError, RetryPolicy};
use crate::secret::Secret;

/// The scope the Logs Ingestion API requires.
pub const SCOPE: &str = "https://monitor.azure.com/.default";
/// The largest token answer read (a real one is about 1.5 kB).
pub const TOKEN_BODY_LIMIT: usize = 64 * 1024;
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
const MIN_LIFETIME: Duration = Duration::from_secs(1);
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Renew at most this long before expiry.
const MAX_MARGIN: Duration = Duration::from_secs(300);

/// Why no token could be had.
#[derive(Debug)]
pub enum TokenError {
    /// Entra refused the credentials or the request: needs a human (message says which
    /// key to check).
    Rejected(String),
    /// Network, 429/5xx after retries, an unreadable answer: may pass.
    Unavailable(String),
}

/// The settings of the grant.
pub struct ClientCredentials {
    pub key: String,
    pub tenant_id: String,
    pub client_id: String,
    pub secret: Secret,
}

pub struct TokenCache {
    client: reqwest::Client,
    url: String,
    creds: ClientCredentials,
    policy: RetryPolicy,
    token: Option<(Secret, Instant)>,
    grants: u64,
}

impl TokenCache {
    /// `authority` is the base URL (e.g. `https://login.microsoftonline.com`).
    pub fn new(
        client: reqwest::Client,
        authority: &str,
        creds: ClientCredentials,
        policy: RetryPolicy,
    ) -> TokenCache {
        TokenCache {
            client,
            url: format!("{authority}/{}/oauth2/v2.0/token", creds.tenant_id),
            creds,
            policy,
            token: None,
            grants: 0,
        }
    }

    /// Tokens obtained by this cache.
    pub fn grants(&self) -> u64 {
        self.grants
    }

    /// A token valid for a while yet, requesting a new one when needed.
    pub async fn bearer(&mut self) -> Result<Secret, TokenError> {
        if let Some((token, until)) = &self.token
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.request().await?;
        let margin = MAX_MARGIN.min(lifetime / 5);
        let now = Instant::now();
        let until = now
            .checked_add(lifetime.saturating_sub(margin))
            .unwrap_or(now);
        self.token = Some((token.clone(), until));
        self.grants += 1;
        Ok(token)
    }

    /// Whether the cached token is past the time it is renewed at (or there is none): a
    /// request that waited that long may have carried an expired token.
    pub fn stale(&self) -> bool {
        self.token
            .as_ref()
            .is_none_or(|(_, until)| Instant::now() >= *until)
    }

    /// The endpoint refused the token: forget it, so the next [`bearer`](Self::bearer)
    /// gets a new one.
    pub fn invalidate(&mut self) {
        self.token = None;
    }

    async fn request(&self) -> Result<(Secret, Duration), TokenError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.creds.client_id.as_str()),
            ("client_secret", self.creds.secret.expose()),
            ("scope", SCOPE),
        ];
        let url = &self.url;
        let key = &self.creds.key;
        let result = http::send_with_retry(&self.policy, url, || {
            self.client.post(url).form(&form).send()
        })
        .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(HttpError::Status { status, body, .. })
                if (400..500).contains(&status) && !http::is_retryable_status(status) =>
            {
                return Err(TokenError::Rejected(rejection(key, url, status, &body)));
            }
            Err(e) if e.is_retryable() => {
                return Err(TokenError::Unavailable(format!(
                    "Entra ID token request: {e}"
                )));
            }
            Err(e) => {
                return Err(TokenError::Rejected(format!(
                    "Entra ID token request: {e}; check {key}.authority and {key}.tls"
                )));
            }
        };
        let bytes = http::read_body_capped(url, resp, TOKEN_BODY_LIMIT)
            .await
            .map_err(|e| TokenError::Unavailable(format!("reading the token answer: {e}")))?;
        // The error names a position, never the content (it holds the token).
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            TokenError::Rejected(format!(
                "the answer of {url} is not JSON ({e}); check {key}.authority points at Entra ID"
            ))
        })?;
        let access = match value.get("access_token") {
            Some(serde_json::Value::String(s))
                if !s.is_empty() && !s.chars().any(char::is_control) =>
            {
                Secret::new(s.as_str())
            }
            _ => {
                return Err(TokenError::Rejected(format!(
                    "the answer of {url} has no usable access_token; check {key}.authority points at Entra ID"
                )));
            }
        };
        let lifetime = lifetime(value.get("expires_in").unwrap_or(&serde_json::Value::Null));
        Ok((access, lifetime))
    }
}

/// How long a token lives, from `expires_in` (number or numeric string), clamped.
fn lifetime(expires_in: &serde_json::Value) -> Duration {
    let seconds = match expires_in {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match seconds {
        Some(s) if s.is_finite() && s > 0.0 => Duration::try_from_secs_f64(s)
            .unwrap_or(MAX_LIFETIME)
            .clamp(MIN_LIFETIME, MAX_LIFETIME),
        _ => DEFAULT_LIFETIME,
    }
}

/// The message for a 4xx from the token endpoint: Entra's `error` and its AADSTS code,
/// and which key to check. `body` is an excerpt (may be cut, so it is searched, not parsed).
fn rejection(key: &str, url: &str, status: u16, body: &str) -> String {
    let error = string_field(body, "error").unwrap_or_default();
    let aadsts = body
        .find("AADSTS")
        .map(|at| {
            body[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
        })
        .unwrap_or_default();
    let hint = match (error.as_str(), aadsts.as_str()) {
        (_, "AADSTS90002") | (_, "AADSTS900023") => format!("check {key}.tenant_id"),
        (_, "AADSTS700016") => format!(
            "check {key}.client_id (the application id of the app registration, in this tenant)"
        ),
        ("invalid_client", _) | (_, "AADSTS7000215") | (_, "AADSTS7000222") => format!(
            "check {key}.client_secret (it is not shown): is it the secret's value (not its id), and not expired?"
        ),
        ("invalid_scope", _) => "the app cannot get a token for Azure Monitor".to_string(),
        _ => format!("check {key}.tenant_id, {key}.client_id and {key}.client_secret"),
    };
    let said = [error.as_str(), aadsts.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let said = crate::escape::escape_controls(&said).into_owned();
    format!("Entra ID at {url} refused the client credentials (HTTP {status} {said}); {hint}")
}

/// The string value of `"name":"..."` in (possibly cut) JSON text.
pub(super) fn string_field(text: &str, name: &str) -> Option<String> {
    let needle = format!("\"{name}\"");
    let mut rest = &text[text.find(&needle)? + needle.len()..];
    rest = rest.trim_start().strip_prefix(':')?.trim_start();
    rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            c => out.push(c),
        }
        if out.len() > 200 {
            break;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifetimes_are_clamped() {
        assert_eq!(lifetime(&json!(3599)), Duration::from_secs(3599));
        assert_eq!(lifetime(&json!("3599")), Duration::from_secs(3599));
        assert_eq!(lifetime(&json!(0)), DEFAULT_LIFETIME);
        assert_eq!(lifetime(&json!(-1)), DEFAULT_LIFETIME);
        assert_eq!(lifetime(&json!(null)), DEFAULT_LIFETIME);
        assert_eq!(lifetime(&json!(1e300)), MAX_LIFETIME);
        assert_eq!(lifetime(&json!(0.1)), MIN_LIFETIME);
    }

    #[test]
    fn rejections_name_the_key_to_check() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value"#;
        let m = rejection("sinks.sentinel", "http://x/t/oauth2/v2.0/token", 401, body);
        assert!(m.contains("sinks.sentinel.client_secret"), "{m}");
        assert!(
            m.contains("AADSTS7000215") && m.contains("invalid_client"),
            "{m}"
        );
        let body = r#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'x' not found."}"#;
        let m = rejection("sinks.sentinel", "http://x", 400, body);
        assert!(m.contains("sinks.sentinel.tenant_id"), "{m}");
    }

    #[test]
    fn string_fields_are_found_in_cut_text() {
        assert_eq!(
            string_field(r#"{"error":{"code":"InvalidStream","message":"Str"#, "code").as_deref(),
            Some("InvalidStream")
        );
        assert_eq!(
            string_field(r#"{"a": "b\"c"}"#, "a").as_deref(),
            Some("b\"c")
        );
        assert_eq!(string_field("{}", "a"), None);
    }
}
