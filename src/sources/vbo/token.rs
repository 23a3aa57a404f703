//! VB365 OAuth2 token handling for one source: password grant, refresh grant, expiry.
//!
//! Owns the access/refresh tokens of a source. One [`TokenManager`] is shared by every
//! request of the source, behind an async mutex, so concurrent requests wait for a single
//! login instead of each logging in (the server throttles `/token` to ~5 per minute).
//!
//! Policy: refresh `margin` before `expires_in` runs out; on a 401 from a data endpoint the
//! caller invalidates the token it used and asks again: the first time we refresh, the
//! second time we log in with the password. A failed refresh falls back to a password login.
//! Tokens are opaque strings: never parsed, never logged.
//!
//! The token response is read up to [`TOKEN_BODY_LIMIT`] bytes, and its fields are taken
//! leniently: `expires_in` may be an integer, a float or a numeric string and is clamped
//! to [`MIN_LIFETIME`]..=[`MAX_LIFETIME`]; absent, zero, negative or unreadable means
//! [`DEFAULT_LIFETIME`] (a 401 renews the token earlier if the server disagrees). No value a
//! server sends can overflow the expiry arithmetic.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::ApiVersion;
use crate::http::{self, HttpError, RetryPolicy};
use crate::secret::Secret;
use crate::sources::SourceError;

/// Refresh this long before expiry, at most (Veeam's Cenvora client uses 30 s).
const MAX_MARGIN: Duration = Duration::from_secs(30);
/// The largest token response read (an OAuth answer is well under 4 kB).
pub const TOKEN_BODY_LIMIT: usize = 64 * 1024;
/// Token lifetime when the server gives none we can use.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Shortest lifetime believed (a token is used at least this long, minus the margin).
pub const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// Longest lifetime believed: the token is renewed at least this often.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The fields of an OAuth token answer, as loosely typed as servers send them (`Null` when
/// absent).
struct TokenResponse {
    access_token: serde_json::Value,
    refresh_token: serde_json::Value,
    token_type: serde_json::Value,
    expires_in: serde_json::Value,
}

impl TokenResponse {
    /// From a JSON object; `None` for any other JSON value.
    fn from_json(value: serde_json::Value) -> Option<TokenResponse> {
        let serde_json::Value::Object(mut map) = value else {
            return None;
        };
        let mut take = |name: &str| map.remove(name).unwrap_or(serde_json::Value::Null);
        Some(TokenResponse {
            access_token: take("access_token"),
            refresh_token: take("refresh_token"),
            token_type: take("token_type"),
            expires_in: take("expires_in"),
        })
    }
}

/// A token answer we can use.
struct Grant {
    access: Secret,
    refresh: Option<Secret>,
    lifetime: Duration,
}

/// How long a token lives, from `expires_in`; `Err` holds the default used and why (for a
/// log line, without the value: it is the server's, not a secret, but may be huge).
fn lifetime(expires_in: &serde_json::Value) -> Result<Duration, (Duration, &'static str)> {
    let seconds = match expires_in {
        serde_json::Value::Null => return Ok(DEFAULT_LIFETIME),
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match seconds {
        None => Err((DEFAULT_LIFETIME, "expires_in is not a number")),
        Some(s) if !s.is_finite() || s <= 0.0 => Err((
            DEFAULT_LIFETIME,
            "expires_in is zero, negative or not finite",
        )),
        Some(s) => Ok(Duration::try_from_secs_f64(s)
            .unwrap_or(MAX_LIFETIME)
            .clamp(MIN_LIFETIME, MAX_LIFETIME)),
    }
}

/// The OWIN/OAuth error shape, or Veeam's `RESTExceptionInfo`.
#[derive(Deserialize, Default)]
struct TokenErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

struct Tokens {
    access: Option<Secret>,
    refresh: Option<Secret>,
    /// When to stop using `access` (expiry minus margin).
    use_until: Instant,
    /// Bumped on every new access token, so a stale 401 doesn't invalidate a fresh token.
    generation: u64,
}

/// What a data request holds: the token and which generation it was.
pub struct Bearer {
    pub token: Secret,
    pub generation: u64,
}

/// Login settings of one source.
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

pub struct TokenManager {
    source_id: String,
    client: reqwest::Client,
    token_url: String,
    version: ApiVersion,
    creds: Credentials,
    policy: RetryPolicy,
    state: Mutex<Tokens>,
    logins: AtomicU64,
    refreshes: AtomicU64,
}

impl TokenManager {
    pub fn new(
        source_id: &str,
        client: reqwest::Client,
        token_url: String,
        version: ApiVersion,
        creds: Credentials,
        policy: RetryPolicy,
    ) -> Self {
        TokenManager {
            source_id: source_id.to_string(),
            client,
            token_url,
            version,
            creds,
            policy,
            state: Mutex::new(Tokens {
                access: None,
                refresh: None,
                use_until: Instant::now(),
                generation: 0,
            }),
            logins: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
        }
    }

    /// (password logins, refreshes) so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.logins.load(Relaxed), self.refreshes.load(Relaxed))
    }

    /// A valid access token, logging in or refreshing first if needed.
    pub async fn bearer(&self) -> Result<Bearer, SourceError> {
        let mut st = self.state.lock().await;
        let fresh = st.access.is_some() && Instant::now() < st.use_until;
        if !fresh {
            self.renew(&mut st).await?;
        }
        Ok(Bearer {
            token: st.access.clone().unwrap_or_default(),
            generation: st.generation,
        })
    }

    /// The server rejected `generation`'s token. `hard` also drops the refresh token so the
    /// next [`bearer`](Self::bearer) logs in with the password.
    pub async fn invalidate(&self, generation: u64, hard: bool) {
        let mut st = self.state.lock().await;
        if st.generation == generation {
            st.access = None;
            if hard {
                st.refresh = None;
            }
        }
    }

    async fn renew(&self, st: &mut Tokens) -> Result<(), SourceError> {
        if let Some(refresh) = st.refresh.take() {
            let form = self.form(vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", refresh.expose().to_string()),
            ]);
            match self.request(&form).await {
                Ok(resp) => {
                    self.refreshes.fetch_add(1, Relaxed);
                    crate::metrics::global().token_issued(&self.source_id, "refresh_token");
                    self.install(st, resp);
                    return Ok(());
                }
                Err(e) => {
                    tracing::info!(source_id = %self.source_id, error = %e, "token refresh failed; logging in again");
                }
            }
        }
        let form = self.form(vec![
            ("grant_type", "password".to_string()),
            ("username", self.creds.username.clone()),
            ("password", self.creds.password.expose().to_string()),
        ]);
        let resp = self.request(&form).await?;
        self.logins.fetch_add(1, Relaxed);
        crate::metrics::global().token_issued(&self.source_id, "password");
        self.install(st, resp);
        Ok(())
    }

    /// v7+ would otherwise issue an antiforgery cookie that must accompany every call.
    fn form(&self, mut form: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        if self.version != ApiVersion::V6 {
            form.push(("disable_antiforgery_token", "true".to_string()));
        }
        form
    }

    fn install(&self, st: &mut Tokens, grant: Grant) {
        let margin = MAX_MARGIN.min(grant.lifetime / 4);
        let now = Instant::now();
        st.access = Some(grant.access);
        st.refresh = grant.refresh;
        // `lifetime` is clamped, so this can't overflow; stay safe if it ever could.
        st.use_until = now
            .checked_add(grant.lifetime.saturating_sub(margin))
            .unwrap_or(now);
        st.generation = st.generation.wrapping_add(1);
    }

    /// Check a token answer and take what we can use from it.
    fn grant(
        &self,
        resp: TokenResponse,
        auth_err: impl Fn(String) -> SourceError,
    ) -> Result<Grant, SourceError> {
        let access = match resp.access_token {
            serde_json::Value::String(s) if !s.is_empty() => s,
            serde_json::Value::String(_) => {
                return Err(auth_err(
                    "the token response has an empty access_token".into(),
                ));
            }
            _ => {
                return Err(auth_err(
                    "the token response has no access_token string; is `url` a VB365 REST endpoint?"
                        .into(),
                ));
            }
        };
        if access.chars().any(|c| c.is_control()) {
            return Err(auth_err(
                "the access_token holds control characters and can't be sent in a header".into(),
            ));
        }
        match &resp.token_type {
            serde_json::Value::Null => {}
            serde_json::Value::String(tt) if tt.eq_ignore_ascii_case("bearer") => {}
            other => {
                let shown = crate::escape::escape_controls(&http::excerpt(&other.to_string(), 40))
                    .into_owned();
                tracing::warn!(source_id = %self.source_id, token_type = %shown, "unexpected token_type; using it as a bearer token anyway");
            }
        }
        let lifetime = lifetime(&resp.expires_in).unwrap_or_else(|(default, why)| {
            tracing::warn!(source_id = %self.source_id, default_secs = default.as_secs(), "{why}; assuming the default token lifetime (a 401 renews it earlier)");
            default
        });
        let refresh = match resp.refresh_token {
            serde_json::Value::String(r) if !r.is_empty() && !r.chars().any(|c| c.is_control()) => {
                Some(Secret::new(r))
            }
            _ => None,
        };
        Ok(Grant {
            access: Secret::new(access),
            refresh,
            lifetime,
        })
    }

    /// The login was refused (or its answer is no token): names the URL and the user.
    fn auth_error(&self, reason: String) -> SourceError {
        SourceError::Auth {
            source_id: self.source_id.clone(),
            url: self.token_url.clone(),
            username: self.creds.username.clone(),
            reason,
        }
    }

    async fn request(&self, form: &[(&'static str, String)]) -> Result<Grant, SourceError> {
        let url = &self.token_url;
        let auth_err = |reason: String| self.auth_error(reason);
        // The connection can break (or stall past `request_timeout`) after the status line:
        // asking for a token again is safe, so that is retried like a failed send.
        let (_, bytes) = http::fetch_body(
            &self.policy,
            TOKEN_BODY_LIMIT,
            b"",
            || async move { Ok((url.clone(), self.send(form).await?)) },
            |error| SourceError::Http {
                source_id: self.source_id.clone(),
                error,
            },
        )
        .await?;
        // A syntax error's message names a position, never the content (it holds tokens).
        let value: serde_json::Value =
            serde_json::from_slice(crate::sources::page::without_bom(&bytes)).map_err(|e| {
                auth_err(format!(
                    "the token response is not JSON ({e}); is `url` a VB365 REST endpoint?"
                ))
            })?;
        let parsed = TokenResponse::from_json(value).ok_or_else(|| {
            auth_err(
                "the token response is not a JSON object; is `url` a VB365 REST endpoint?".into(),
            )
        })?;
        self.grant(parsed, auth_err)
    }

    /// POST `form` to the token endpoint (with the send retries of `policy`); a refusal or
    /// a missing endpoint becomes the error that says what to fix.
    async fn send(
        &self,
        form: &[(&'static str, String)],
    ) -> Result<reqwest::Response, SourceError> {
        let url = &self.token_url;
        let result = http::send_with_retry(&self.policy, url, || {
            self.client.post(url).form(form).send()
        })
        .await;
        let auth_err = |reason: String| self.auth_error(reason);
        match result {
            Ok(resp) => Ok(resp),
            Err(HttpError::Status { status, body, .. }) if status == 400 || status == 401 => {
                let parsed: TokenErrorBody = serde_json::from_str(&body).unwrap_or_default();
                let reason = parsed
                    .error_description
                    .or(parsed.message)
                    .or(parsed.error)
                    .unwrap_or_else(|| "no reason given".to_string());
                Err(auth_err(format!(
                    "server said \"{reason}\" (HTTP {status})"
                )))
            }
            Err(HttpError::Status { status, .. }) if status == 404 || status == 405 => {
                let id = &self.source_id;
                Err(SourceError::Endpoint {
                    source_id: id.clone(),
                    url: url.clone(),
                    status,
                    fix: format!(
                        "this server has no such token endpoint. Check sources.{id}.url (the REST base, such as https://vb365.example.net:4443, with no path) and sources.{id}.api_version (`v6`, `v7` or `v8`: a server that does not offer that version answers 404 here)"
                    ),
                })
            }
            Err(error) => Err(SourceError::Http {
                source_id: self.source_id.clone(),
                error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_expires_in_gives_a_bounded_lifetime() {
        let cases = [
            (json!(null), Ok(DEFAULT_LIFETIME)),
            (json!(3600), Ok(Duration::from_secs(3600))),
            (json!(1), Ok(MIN_LIFETIME)),
            (json!(0.2), Ok(MIN_LIFETIME)),
            (json!(3600.5), Ok(Duration::from_secs_f64(3600.5))),
            (json!("120"), Ok(Duration::from_secs(120))),
            (json!(i64::MAX), Ok(MAX_LIFETIME)),
            (json!(u64::MAX), Ok(MAX_LIFETIME)),
            (json!(1e300), Ok(MAX_LIFETIME)),
            (json!(0), Err(DEFAULT_LIFETIME)),
            (json!(-5), Err(DEFAULT_LIFETIME)),
            (json!(i64::MIN), Err(DEFAULT_LIFETIME)),
            (json!(-1e300), Err(DEFAULT_LIFETIME)),
            (json!("soon"), Err(DEFAULT_LIFETIME)),
            (json!("NaN"), Err(DEFAULT_LIFETIME)),
            (json!("inf"), Err(DEFAULT_LIFETIME)),
            (json!(true), Err(DEFAULT_LIFETIME)),
            (json!({}), Err(DEFAULT_LIFETIME)),
            (json!([3600]), Err(DEFAULT_LIFETIME)),
        ];
        for (value, want) in cases {
            let got = lifetime(&value).map_err(|(d, _)| d);
            assert_eq!(got, want, "{value}");
        }
    }

    /// A real answer with every odd `expires_in` installs a token whose expiry lies within
    /// the clamp, never panics.
    #[tokio::test]
    async fn installing_odd_lifetimes_never_overflows() {
        use axum::routing::post;
        for raw in [
            "9223372036854775807",
            "18446744073709551615",
            "-9223372036854775808",
            "1e308",
            "0",
            "\"x\"",
        ] {
            let body =
                format!(r#"{{"access_token":"a","token_type":"bearer","expires_in":{raw}}}"#);
            let app = axum::Router::new().route(
                "/v8/token",
                post(move || {
                    let body = body.clone();
                    async move { body }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            let client = http::build_client(
                "t",
                &crate::config::common::TlsConfig::default(),
                Duration::from_secs(5),
            )
            .unwrap();
            let tm = TokenManager::new(
                "t",
                client,
                format!("http://{addr}/v8/token"),
                ApiVersion::V8,
                Credentials {
                    username: "u".into(),
                    password: Secret::new("p"),
                },
                RetryPolicy::default(),
            );
            let before = Instant::now();
            tm.bearer().await.unwrap();
            let until = tm.state.lock().await.use_until;
            assert!(
                until >= before && until <= Instant::now() + MAX_LIFETIME,
                "{raw}"
            );
            task.abort();
        }
    }

    /// `app` served locally, and a v8 token manager of source `source_id` logging in there.
    async fn v8_manager(
        source_id: &str,
        app: axum::Router,
    ) -> (TokenManager, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = http::build_client(
            "t",
            &crate::config::common::TlsConfig::default(),
            Duration::from_secs(30),
        )
        .unwrap();
        let tm = TokenManager::new(
            source_id,
            client,
            format!("http://{addr}/v8/token"),
            ApiVersion::V8,
            Credentials {
                username: "u".into(),
                password: Secret::new("p"),
            },
            RetryPolicy::default(),
        );
        (tm, task)
    }

    #[tokio::test]
    async fn an_endless_token_answer_is_cut_off() {
        use axum::routing::post;
        let app = axum::Router::new().route(
            "/v8/token",
            post(|| async {
                let chunk = bytes::Bytes::from(vec![b' '; 16 * 1024]);
                let stream =
                    futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
                axum::body::Body::from_stream(stream)
            }),
        );
        let (tm, task) = v8_manager("t", app).await;
        let e = match tm.bearer().await {
            Ok(_) => panic!("an endless answer gave a token"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("larger than") && e.contains(&TOKEN_BODY_LIMIT.to_string()),
            "{e}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn a_token_answer_that_breaks_off_is_asked_for_again() {
        use std::sync::atomic::AtomicUsize;
        let asked = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let app = axum::Router::new().route(
            "/v8/token",
            axum::routing::post(move || {
                let first = counter.fetch_add(1, Relaxed) == 0;
                async move {
                    let good: &'static [u8] =
                        br#"{"access_token":"tok","token_type":"bearer","expires_in":3600}"#;
                    // The first answer's connection breaks after half of its body (its
                    // status line and first bytes already sent).
                    let parts: Vec<Result<bytes::Bytes, std::io::Error>> = if first {
                        vec![
                            Ok(bytes::Bytes::from_static(&good[..20])),
                            Err(std::io::Error::other("connection reset")),
                        ]
                    } else {
                        vec![Ok(bytes::Bytes::from_static(good))]
                    };
                    let paced =
                        futures::StreamExt::then(futures::stream::iter(parts), |part| async {
                            if part.is_err() {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            part
                        });
                    axum::body::Body::from_stream(paced)
                }
            }),
        );
        let (tm, task) = v8_manager("t", app).await;
        let bearer = tm.bearer().await.expect("the second answer gives a token");
        assert_eq!(asked.load(Relaxed), 2);
        drop(bearer);
        task.abort();
    }

    #[tokio::test]
    async fn a_missing_token_endpoint_names_url_and_api_version() {
        // A v6-only server: /v8/token does not exist.
        let app = axum::Router::new().route("/v6/token", axum::routing::post(|| async { "" }));
        let (tm, task) = v8_manager("vbo_main", app).await;
        let e = match tm.bearer().await {
            Ok(_) => panic!("a missing endpoint gave a token"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("/v8/token answered HTTP 404")
                && e.contains("sources.vbo_main.url")
                && e.contains("sources.vbo_main.api_version"),
            "{e}"
        );
        task.abort();
    }
}
