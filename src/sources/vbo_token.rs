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

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::SourceError;
use crate::config::ApiVersion;
use crate::http::{self, HttpError, RetryPolicy};
use crate::secret::Secret;

/// Refresh this long before expiry, at most (Veeam's Cenvora client uses 30 s).
const MAX_MARGIN: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
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

    fn install(&self, st: &mut Tokens, resp: TokenResponse) {
        if let Some(tt) = &resp.token_type
            && !tt.eq_ignore_ascii_case("bearer")
        {
            tracing::warn!(source_id = %self.source_id, token_type = %tt, "unexpected token_type; using it as a bearer token anyway");
        }
        let lifetime = Duration::from_secs(resp.expires_in.unwrap_or(3600).max(1) as u64);
        let margin = MAX_MARGIN.min(lifetime / 4);
        st.access = Some(Secret::new(resp.access_token));
        st.refresh = resp
            .refresh_token
            .filter(|r| !r.is_empty())
            .map(Secret::new);
        st.use_until = Instant::now() + lifetime - margin;
        st.generation += 1;
    }

    async fn request(&self, form: &[(&'static str, String)]) -> Result<TokenResponse, SourceError> {
        let url = &self.token_url;
        let result = http::send_with_retry(&self.policy, url, || {
            self.client.post(url).form(form).send()
        })
        .await;
        let auth_err = |reason: String| SourceError::Auth {
            source_id: self.source_id.clone(),
            url: url.clone(),
            username: self.creds.username.clone(),
            reason,
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(HttpError::Status { status, body, .. }) if status == 400 || status == 401 => {
                let parsed: TokenErrorBody = serde_json::from_str(&body).unwrap_or_default();
                let reason = parsed
                    .error_description
                    .or(parsed.message)
                    .or(parsed.error)
                    .unwrap_or_else(|| "no reason given".to_string());
                return Err(auth_err(format!(
                    "server said \"{reason}\" (HTTP {status})"
                )));
            }
            Err(error) => {
                return Err(SourceError::Http {
                    source_id: self.source_id.clone(),
                    error,
                });
            }
        };
        let bytes = resp.bytes().await.map_err(|e| SourceError::Http {
            source_id: self.source_id.clone(),
            error: http::transport_error(url, e),
        })?;
        let parsed: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| {
            auth_err(format!(
                "the token response is not the expected OAuth JSON ({e}); is `url` a VB365 REST endpoint?"
            ))
        })?;
        if parsed.access_token.is_empty() {
            return Err(auth_err(
                "the token response has an empty access_token".into(),
            ));
        }
        Ok(parsed)
    }
}
