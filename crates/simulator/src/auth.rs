//! Tokens and throttling of `POST /vN/token`.
//!
//! Access and refresh tokens are opaque random strings (VB365's are DPAPI-style blobs, not
//! JWTs). Access tokens live `token_ttl`; refresh tokens live 14 days and are rotated on use.
//! The throttle mimics WebApiThrottle: fixed windows per client IP that start at the first
//! request, checked second → minute → hour; every request counts, rejected ones included.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::Throttle;

pub(crate) const REFRESH_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

#[derive(Debug, Clone)]
struct Grant {
    user: String,
    expires: Instant,
    /// For an access token: the refresh token issued with it (revoked together on logout).
    pair: Option<String>,
}

/// A freshly issued token pair.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
}

/// Live access and refresh tokens.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    access: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
}

impl TokenStore {
    /// Issues a new access/refresh pair for `user`.
    pub(crate) fn issue(&mut self, user: &str, access_ttl: Duration, now: Instant) -> Issued {
        self.access.retain(|_, g| g.expires > now);
        self.refresh.retain(|_, g| g.expires > now);
        let issued = Issued {
            access_token: opaque(),
            refresh_token: opaque(),
        };
        let grant = |ttl, pair| Grant {
            user: user.to_string(),
            expires: later(now, ttl),
            pair,
        };
        let pair = Some(issued.refresh_token.clone());
        self.access
            .insert(issued.access_token.clone(), grant(access_ttl, pair));
        self.refresh
            .insert(issued.refresh_token.clone(), grant(REFRESH_TTL, None));
        issued
    }

    /// Logout: revokes an access token and the refresh token issued with it.
    pub(crate) fn revoke(&mut self, access_token: &str) {
        if let Some(pair) = self.access.remove(access_token).and_then(|g| g.pair) {
            self.refresh.remove(&pair);
        }
    }

    /// Forgets every access token (and, with `refresh`, every refresh token), as a server
    /// restart or an administrator revoking sessions would.
    pub(crate) fn revoke_all(&mut self, refresh: bool) {
        self.access.clear();
        if refresh {
            self.refresh.clear();
        }
    }

    /// Consumes a refresh token; returns its user if it was live.
    pub(crate) fn redeem(&mut self, refresh_token: &str, now: Instant) -> Option<String> {
        let grant = self.refresh.remove(refresh_token)?;
        (grant.expires > now).then_some(grant.user)
    }

    /// True when `token` is a live access token.
    pub(crate) fn is_valid(&mut self, token: &str, now: Instant) -> bool {
        match self.access.get(token) {
            Some(g) if g.expires > now => true,
            Some(_) => {
                self.access.remove(token);
                false
            }
            None => false,
        }
    }
}

/// `now + ttl`, saturating at a century for absurd configured lifetimes.
fn later(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// 64 hex characters from two random UUIDs: unguessable and visibly not a JWT.
fn opaque() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// Why a token request was throttled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// Whole seconds until the exceeded window ends (at least 1).
    pub(crate) retry_after: u64,
    pub(crate) limit: u32,
    /// `Second`, `Minute` or `Hour`.
    pub(crate) period: &'static str,
}

impl Rejection {
    /// WebApiThrottle's quota message.
    pub(crate) fn message(&self) -> String {
        format!(
            "API calls quota exceeded! maximum admitted {} per {}.",
            self.limit, self.period
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// Fixed-window counters per client IP.
#[derive(Debug, Default)]
pub(crate) struct Throttler {
    clients: HashMap<IpAddr, [Option<Window>; 3]>,
}

impl Throttler {
    /// Counts a request from `ip`; `Err` when one of the windows is over its limit.
    /// A limit of 0 means unlimited.
    pub(crate) fn admit(
        &mut self,
        rules: &Throttle,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), Rejection> {
        if rules.exempt_loopback && ip.is_loopback() {
            return Ok(());
        }
        let limits = [
            (rules.per_second, Duration::from_secs(1), "Second"),
            (rules.per_minute, Duration::from_secs(60), "Minute"),
            (rules.per_hour, Duration::from_secs(3600), "Hour"),
        ];
        let windows = self.clients.entry(ip).or_default();
        for ((limit, length, period), slot) in limits.into_iter().zip(windows.iter_mut()) {
            if limit == 0 {
                continue;
            }
            let window = match slot {
                Some(w) if now < w.started + length => w,
                _ => slot.insert(Window {
                    started: now,
                    count: 0,
                }),
            };
            window.count += 1;
            if window.count > limit {
                let left = (window.started + length).saturating_duration_since(now);
                let retry_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                return Err(Rejection {
                    retry_after: retry_after.max(1),
                    limit,
                    period,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn rules() -> Throttle {
        Throttle {
            per_second: 1,
            per_minute: 5,
            per_hour: 1500,
            exempt_loopback: false,
        }
    }

    #[test]
    fn second_window_rejects_the_second_request() {
        let (mut t, now, ip) = (
            Throttler::default(),
            Instant::now(),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        );
        assert!(t.admit(&rules(), ip, now).is_ok());
        let err = t.admit(&rules(), ip, now + Duration::from_millis(200));
        assert_eq!(
            err.map_err(|r| (r.retry_after, r.period)),
            Err((1, "Second"))
        );
    }

    #[test]
    fn minute_window_reports_the_rest_of_the_minute() {
        let (mut t, now, ip) = (
            Throttler::default(),
            Instant::now(),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        );
        for s in 0..5 {
            assert!(
                t.admit(&rules(), ip, now + Duration::from_secs(s * 2))
                    .is_ok()
            );
        }
        let err = t.admit(&rules(), ip, now + Duration::from_millis(10_500));
        assert_eq!(
            err.map_err(|r| (r.retry_after, r.period)),
            Err((50, "Minute"))
        );
    }

    #[test]
    fn loopback_exemption() {
        let mut t = Throttler::default();
        let rules = Throttle {
            exempt_loopback: true,
            ..rules()
        };
        let now = Instant::now();
        assert!((0..10).all(|_| {
            t.admit(&rules, IpAddr::V4(Ipv4Addr::LOCALHOST), now)
                .is_ok()
        }));
    }

    #[test]
    fn refresh_tokens_rotate() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let first = store.issue("svc", Duration::from_secs(60), now);
        assert!(store.is_valid(&first.access_token, now));
        assert!(!store.is_valid(&first.access_token, now + Duration::from_secs(61)));
        assert_eq!(
            store.redeem(&first.refresh_token, now).as_deref(),
            Some("svc")
        );
        assert_eq!(store.redeem(&first.refresh_token, now), None);
    }

    #[test]
    fn logout_revokes_both_tokens() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let issued = store.issue("svc", Duration::from_secs(60), now);
        store.revoke(&issued.access_token);
        assert!(!store.is_valid(&issued.access_token, now));
        assert_eq!(store.redeem(&issued.refresh_token, now), None);
    }
}
