//! The wire format: API versions, the JSON payloads of each version (from Veeam's OpenAPI
//! component schemas) and the .NET-style timestamp and TimeSpan strings.
//!
//! Version differences live here and only here: `totalCount: null` on v6/v7 pages, `eTag`
//! on v8 sessions, organization/user ids on v8 events, and the three shapes of
//! `RESTExceptionInfo`.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::data::{Event, Session};

/// The API versions served at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V6,
    V7,
    V8,
}

impl Version {
    /// From a lowercased path segment.
    pub(crate) fn parse(segment: &str) -> Option<Version> {
        match segment {
            "v6" => Some(Version::V6),
            "v7" => Some(Version::V7),
            "v8" => Some(Version::V8),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Version::V6 => "v6",
            Version::V7 => "v7",
            Version::V8 => "v8",
        }
    }

    pub(crate) fn is_v8(self) -> bool {
        self == Version::V8
    }
}

/// `RESTLinkHALDictionary`.
pub(crate) type Links = BTreeMap<&'static str, Href>;

/// `RESTLinkHAL`.
#[derive(Debug, Serialize)]
pub(crate) struct Href {
    href: String,
}

pub(crate) fn link(href: String) -> Href {
    Href { href }
}

/// `PageOfRESTRestoreSession` / `PageOfRESTRestoreSessionEvent`.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    offset: usize,
    limit: usize,
    results: Vec<T>,
    #[serde(rename = "_links")]
    links: Links,
    /// `Some(None)` serializes `"totalCount": null` (v6/v7); `None` omits it (v8).
    #[serde(rename = "totalCount", skip_serializing_if = "Option::is_none")]
    total_count: Option<Option<i32>>,
}

/// Where a page sits in a collection, and the relative URL of the collection.
#[derive(Debug)]
pub(crate) struct PageSpot<'a> {
    pub(crate) version: Version,
    /// e.g. `/v8/RestoreSessions`.
    pub(crate) path: String,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
    pub(crate) total: usize,
    /// Filters repeated in every link, already URL-encoded (`&startTimeFrom=...`).
    pub(crate) extra_query: &'a str,
}

impl PageSpot<'_> {
    pub(crate) fn page<T>(&self, results: Vec<T>) -> Page<T> {
        Page {
            offset: self.offset,
            limit: self.limit,
            results,
            links: self.links(),
            total_count: (!self.version.is_v8()).then_some(None),
        }
    }

    /// `self` always; `first`, `prev` and `next` when the collection spans several pages.
    fn links(&self) -> Links {
        let href = |offset: usize| {
            link(format!(
                "{}?offset={offset}&limit={}{}",
                self.path, self.limit, self.extra_query
            ))
        };
        let mut links = Links::new();
        links.insert("self", href(self.offset));
        if self.total > self.limit || self.offset > 0 {
            links.insert("first", href(0));
        }
        if self.offset > 0 {
            links.insert("prev", href(self.offset.saturating_sub(self.limit)));
        }
        if self.offset + self.limit < self.total {
            links.insert("next", href(self.offset + self.limit));
        }
        links
    }
}

/// `RESTRestoreSession`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestoreSession<'a> {
    id: Uuid,
    name: &'a str,
    organization: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    creation_time: String,
    end_time: Option<String>,
    state: &'static str,
    result: &'static str,
    initiated_by: &'a str,
    details: &'static str,
    scope_name: &'a str,
    client_host: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    e_tag: Option<i64>,
    #[serde(rename = "_links")]
    links: Links,
}

pub(crate) fn session(version: Version, s: &Session) -> RestoreSession<'_> {
    let p = &s.profile;
    let own = format!("/{}/restoresessions/{}", version.as_str(), p.id);
    let mut links = Links::new();
    links.insert(
        "organization",
        link(format!("/{}/organizations/{}", version.as_str(), p.org_id)),
    );
    links.insert("events", link(format!("{own}/events")));
    links.insert("self", link(own));
    RestoreSession {
        id: p.id,
        name: &p.name,
        organization: p.organization(),
        kind: p.kind.as_str(),
        creation_time: timestamp(s.created),
        end_time: s.ended.map(timestamp),
        state: if s.is_working() { "Working" } else { "Stopped" },
        result: s.result.as_str(),
        initiated_by: &p.initiated_by,
        details: "",
        scope_name: &p.scope_name,
        client_host: &p.client_host,
        reason: &p.reason,
        e_tag: version.is_v8().then_some(s.etag),
        links,
    }
}

/// `RESTRestoreSessionEvent`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestoreSessionEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    item_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_type: Option<&'static str>,
    item_size_bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    start_time: String,
    end_time: Option<String>,
    duration: String,
    title: String,
    message: String,
    order: u32,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    v8: Option<V8EventIds>,
    #[serde(rename = "_links")]
    links: Links,
}

/// The ids v8 adds to item events (markers carry none).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct V8EventIds {
    organization_id: Option<Uuid>,
    backed_up_organization_id: Option<&'static str>,
    user_id: Option<String>,
    group_id: Option<String>,
    site_id: Option<String>,
    team_id: Option<Uuid>,
}

pub(crate) fn event(version: Version, s: &Session, e: Event) -> RestoreSessionEvent {
    let session_href = format!("/{}/restoresessions/{}", version.as_str(), s.profile.id);
    let mut links = Links::new();
    links.insert("self", link(format!("{session_href}/events/{}", e.id)));
    links.insert("restoreSession", link(session_href));
    let duration = if e.running {
        timespan(TimeDelta::zero())
    } else {
        timespan(e.duration())
    };
    let (status, end_time) = if e.running {
        ("Running", None)
    } else {
        (e.status.as_str(), Some(timestamp(e.end)))
    };
    let (title, message) = if e.running {
        let name = e.item.as_ref().map_or("", |i| i.name.as_str());
        (
            "Item restore is in progress.".to_string(),
            format!("Processing item {name}"),
        )
    } else {
        (e.title, e.message)
    };
    let item = e.item;
    let v8 = match &item {
        Some(item) if version.is_v8() => Some(V8EventIds {
            organization_id: Some(s.profile.org_id),
            backed_up_organization_id: Some(s.profile.organization()),
            user_id: item.user_id.clone(),
            group_id: None,
            site_id: item.site_id.clone(),
            team_id: item.team_id,
        }),
        _ => None,
    };
    let size = item.as_ref().map_or(0, |i| i.size_bytes);
    let (item_name, item_type, source, target) = match item {
        Some(i) => (
            Some(i.name),
            Some(i.item_type),
            Some(i.source),
            Some(i.target),
        ),
        None => (None, None, None, None),
    };
    RestoreSessionEvent {
        item_name,
        item_type,
        item_size_bytes: size,
        source,
        target,
        id: e.id,
        kind: e.kind.as_str(),
        status,
        start_time: timestamp(e.start),
        end_time,
        duration,
        title,
        message,
        order: e.order,
        v8,
        links,
    }
}

/// `OAuthTokenResponse`.
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    #[serde(rename = "userName")]
    pub(crate) user_name: String,
    #[serde(rename = ".issued")]
    pub(crate) issued: String,
    #[serde(rename = ".expires")]
    pub(crate) expires: String,
}

/// OWIN-style OAuth error body of `/token` (an assumption; see the module docs of `vb365`).
#[derive(Debug, Serialize)]
pub(crate) struct OAuthError {
    pub(crate) error: &'static str,
    pub(crate) error_description: String,
}

/// `RESTExceptionInfo` in the shape of `version` (v6 when the version is unknown).
pub(crate) fn exception(
    version: Option<Version>,
    message: &str,
    code: Option<&'static str>,
) -> serde_json::Value {
    match version {
        None | Some(Version::V6) => serde_json::json!({ "message": message }),
        // v7's errorCode enum only knows ProxyOffline, which the simulator never reports.
        Some(Version::V7) => serde_json::json!({ "message": message, "errorCode": null }),
        Some(Version::V8) => {
            serde_json::json!({ "message": message, "errorCode": code, "stackTrace": null })
        }
    }
}

/// `2025-03-04T08:05:40.1000000Z`: UTC with 7 fractional digits, as VB365 writes them.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    let fraction = t.timestamp_subsec_nanos().min(999_999_999) / 100;
    format!("{}.{fraction:07}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// A .NET TimeSpan in the constant format: `[d.]hh:mm:ss[.fffffff]`.
pub(crate) fn timespan(d: TimeDelta) -> String {
    let total = d.num_nanoseconds().unwrap_or(i64::MAX).max(0) / 100;
    let (secs, fraction) = (total / 10_000_000, total % 10_000_000);
    let (days, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let mut out = if days > 0 {
        format!("{days}.")
    } else {
        String::new()
    };
    out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
    if fraction > 0 {
        out.push_str(&format!(".{fraction:07}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_look_like_dotnet() {
        assert_eq!(timespan(TimeDelta::zero()), "00:00:00");
        assert_eq!(timespan(TimeDelta::milliseconds(45)), "00:00:00.0450000");
        assert_eq!(
            timespan(TimeDelta::nanoseconds(546_349_368_000)),
            "00:09:06.3493680"
        );
        assert_eq!(timespan(TimeDelta::hours(26)), "1.02:00:00");
    }

    #[test]
    fn timestamps_have_seven_digits() {
        let t = DateTime::parse_from_rfc3339("2022-02-02T15:59:09.768022912Z").map(|t| t.to_utc());
        assert_eq!(
            t.map(timestamp).ok().as_deref(),
            Some("2022-02-02T15:59:09.7680229Z")
        );
    }
}
