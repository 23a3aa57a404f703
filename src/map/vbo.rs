//! VB365 restore sessions and their events → [`Event`].
//!
//! Owns: the wire types of `RESTRestoreSession` / `RESTRestoreSessionEvent` as Veeam sends
//! them (v6/v7/v8), decoded leniently ([`decode_session`], [`decode_event`]; the rules are in
//! [`wire_checks`](super::wire_checks)), and the pure mapping to the output schema. Must
//! not: do I/O, read the clock, log.
//!
//! Essential fields (without them a record is [`Unusable`] and the source skips it, logged
//! with its ids): a session's `id`; an event's `id` and at least one usable time
//! (`startTime`, else `endTime`). An event without a usable `order` is kept: its
//! `event.sequence` is then its place in the listing (see [`RawRestoreEvent::position`]). A
//! session whose `creationTime` is unusable is still shipped: the source gives it a
//! placement (see [`decode_session`]). Every other field is best-effort: an odd value is
//! left out or kept as the text Veeam sent, and listed in the record's `problems`.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::client_host::{parse_client_host, parse_initiated_by};
use super::wire_checks::{Fields, Problem, Unusable, excerpt, read_record};
use super::{
    MapContext, degraded, nanos_between, non_empty, non_empty_owned, parse_dotnet_timespan,
    push_unique, to_utc,
};
use crate::event::{
    Client, Ecs, Event, EventMeta, Gateway, Labels, MODULE, Observer, Organization, Related,
    RestoreEvent, RestoreSession, Shared, SourceEndpoint, Text, User, VENDOR, Veeam, dataset,
    outcome,
};

/// Problem prefix of session fields.
pub const SESSION_RECORD: &str = "restoreSession";
/// Problem prefix of event fields.
pub const EVENT_RECORD: &str = "restoreEvent";

/// The spec's enums (v6–v8), compared case-insensitively; other values are kept and reported.
/// Types and states also in the names Veeam's PowerShell `VBORestoreSession` uses for the
/// same values (the reference, §1.5), which a server or proxy may send instead.
const SESSION_TYPES: [&str; 8] = [
    "Vex",
    "Veod",
    "Vesp",
    "Vet",
    "Exchange",
    "OneDrive",
    "SharePoint",
    "Teams",
];
const SESSION_STATES: [&str; 3] = ["Working", "Stopped", "Running"];
const SESSION_RESULTS: [&str; 3] = ["Success", "Warning", "Failed"];
const EVENT_TYPES: [&str; 6] = ["None", "Save", "Export", "Send", "Restore", "View"];
const EVENT_STATUSES: [&str; 6] = [
    "Running",
    "Success",
    "Warning",
    "Failed",
    "Cancelled",
    "Skipped",
];

/// `RESTRestoreSession` (spec required: id, type, creationTime, state, result).
///
/// Deserializing it directly (`serde_json::from_str`) applies the same lenient rules as
/// [`decode_session`], but without a placement: an unusable `creationTime` is an error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WireSession")]
pub struct RawRestoreSession {
    pub id: String,
    pub name: Option<String>,
    pub organization: Option<String>,
    /// Vex | Veod | Vesp | Vet, as sent (a non-string kept as its JSON text); empty when
    /// missing.
    pub session_type: String,
    /// Where the source places the session (ordering, horizon, cursor): Veeam's
    /// `creationTime`, or, when that is unusable, the placement the source chose
    /// (`creation_time_known` is then false and the event carries no creation time).
    pub creation_time: DateTime<FixedOffset>,
    pub creation_time_known: bool,
    pub end_time: Option<DateTime<FixedOffset>>,
    /// Working | Stopped, as sent; empty when missing.
    pub state: String,
    /// Success | Warning | Failed
    pub result: Option<String>,
    pub initiated_by: Option<String>,
    pub details: Option<String>,
    pub scope_name: Option<String>,
    pub client_host: Option<String>,
    pub reason: Option<String>,
    /// v8 only.
    pub etag: Option<i64>,
    /// Odd values found while decoding (empty for a clean record).
    pub problems: Vec<Problem>,
}

impl RawRestoreSession {
    /// A session the server no longer has, as far as its id and creation time are known:
    /// for events of it read before it went (every other field is absent, and reported).
    pub fn gone(id: &str, creation_time: DateTime<FixedOffset>, known: bool) -> RawRestoreSession {
        RawRestoreSession {
            id: id.to_string(),
            name: None,
            organization: None,
            session_type: String::new(),
            creation_time,
            creation_time_known: known,
            end_time: None,
            state: String::new(),
            result: None,
            initiated_by: None,
            details: None,
            scope_name: None,
            client_host: None,
            reason: None,
            etag: None,
            problems: vec![Problem {
                field: format!("{SESSION_RECORD}.record"),
                detail: "the session was no longer on the server when this event of it was shipped; its other fields are unknown".to_string(),
                assumed_utc: false,
                time_missing: false,
            }],
        }
    }
}

/// A restore session as it arrives: every field any JSON value.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireSession {
    id: Option<Value>,
    name: Option<Value>,
    organization: Option<Value>,
    #[serde(rename = "type")]
    session_type: Option<Value>,
    creation_time: Option<Value>,
    end_time: Option<Value>,
    state: Option<Value>,
    result: Option<Value>,
    initiated_by: Option<Value>,
    details: Option<Value>,
    scope_name: Option<Value>,
    client_host: Option<Value>,
    reason: Option<Value>,
    #[serde(rename = "eTag")]
    etag: Option<Value>,
}

impl TryFrom<WireSession> for RawRestoreSession {
    type Error = Unusable;

    fn try_from(wire: WireSession) -> Result<Self, Unusable> {
        RawRestoreSession::from_wire(wire, Fields::new(SESSION_RECORD), None)
    }
}

impl RawRestoreSession {
    fn from_wire(
        w: WireSession,
        mut f: Fields,
        placement: Option<DateTime<Utc>>,
    ) -> Result<Self, Unusable> {
        let id = f.path_id("id", w.id)?;
        let name = f.text("name", w.name, false);
        let organization = f.text("organization", w.organization, false);
        let session_type = f
            .keyword("type", w.session_type, &SESSION_TYPES, true)
            .unwrap_or_default();
        let created = f.time("creationTime", w.creation_time, true);
        let end_time = f.time("endTime", w.end_time, false);
        let state = f
            .keyword("state", w.state, &SESSION_STATES, true)
            .unwrap_or_default();
        let result = f.keyword("result", w.result, &SESSION_RESULTS, true);
        let initiated_by = f.text("initiatedBy", w.initiated_by, false);
        let details = f.text("details", w.details, false);
        let scope_name = f.text("scopeName", w.scope_name, false);
        let client_host = f.text("clientHost", w.client_host, false);
        if let Some(raw) = client_host.as_deref() {
            report_odd_client_host(&mut f, raw);
        }
        let reason = f.text("reason", w.reason, false);
        let etag = f.int("eTag", w.etag);
        let (creation_time, creation_time_known) = match (created, placement) {
            (Some(t), _) => (t, true),
            (None, Some(at)) => (at.fixed_offset(), false),
            (None, None) => {
                let why: Vec<String> = f.problems().iter().map(ToString::to_string).collect();
                return Err(Unusable(format!(
                    "{SESSION_RECORD}.creationTime: unusable and no placement given ({})",
                    why.join("; ")
                )));
            }
        };
        Ok(RawRestoreSession {
            id,
            name,
            organization,
            session_type,
            creation_time,
            creation_time_known,
            end_time,
            state,
            result,
            initiated_by,
            details,
            scope_name,
            client_host,
            reason,
            etag,
            problems: f.into_problems(),
        })
    }

    /// True while the session is still running (more events may come): its `state` says
    /// so; when the state is neither `Working` nor `Stopped` (odd or missing), as long as it
    /// has no usable `endTime`.
    pub fn is_working(&self) -> bool {
        let state = self.state.trim();
        if state.eq_ignore_ascii_case("Stopped") {
            false
        } else if state.eq_ignore_ascii_case("Working") || state.eq_ignore_ascii_case("Running") {
            true
        } else {
            self.end_time.is_none()
        }
    }

    /// The session had odd values (each of its events reports them).
    pub fn is_degraded(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Report the parts of a `clientHost` the mapping can't place in their fields (it keeps
/// the string whole in `veeam.restore_session.client_host`): a gateway that is not an IP
/// address, a client that is neither an IP address nor a host name.
fn report_odd_client_host(f: &mut Fields, raw: &str) {
    let host = parse_client_host(raw);
    if raw
        .to_ascii_lowercase()
        .replace(char::is_whitespace, "")
        .matches("(via")
        .count()
        > 1
    {
        f.report(
            "clientHost",
            format!(
                "{} names more than one gateway (only the parsed one is in veeam.gateway.ip; the whole string is in veeam.restore_session.client_host)",
                excerpt(raw)
            ),
        );
    }
    if let Some(gateway) = host
        .gateway_raw
        .as_deref()
        .filter(|_| host.gateway_ip.is_none())
    {
        f.report(
            "clientHost",
            format!(
                "gateway {} is not an IP address (no veeam.gateway.ip, no source.ip)",
                excerpt(gateway)
            ),
        );
    }
    if let Some(client) = host
        .address
        .as_deref()
        .filter(|_| host.ip.is_none() && host.domain.is_none())
    {
        f.report(
            "clientHost",
            format!(
                "client {} is neither an IP address nor a host name (no client.ip, no client.domain)",
                excerpt(client)
            ),
        );
    }
}

/// Decode one restore session record (JSON) leniently.
///
/// `placement` is where the source puts a session whose `creationTime` is unusable
/// (missing, not a time, `DateTime.MinValue`, outside years 0001–9999): the source passes
/// its current horizon (or the session's stored cursor time), which never moves the horizon
/// and keeps the session inside the listing window; the session is shipped with its
/// problems reported. `Err` only when the `id` is unusable.
pub fn decode_session(
    raw: impl AsRef<str>,
    placement: DateTime<Utc>,
) -> Result<RawRestoreSession, Unusable> {
    let mut f = Fields::new(SESSION_RECORD);
    let wire: WireSession = read_record(raw.as_ref(), &mut f)?;
    RawRestoreSession::from_wire(wire, f, Some(placement))
}

/// `RESTRestoreSessionEvent` (spec required: id, status, message, startTime, order).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WireEvent")]
pub struct RawRestoreEvent {
    pub id: String,
    /// None | Save | Export | Send | Restore | View
    pub event_type: Option<String>,
    /// As sent; empty when missing.
    pub status: String,
    /// At least one of the two times is set (decoding refuses a record with neither).
    pub start_time: Option<DateTime<FixedOffset>>,
    pub end_time: Option<DateTime<FixedOffset>>,
    /// .NET TimeSpan `[d.]hh:mm:ss[.fffffff]` (only a non-negative one that parses).
    pub duration: Option<String>,
    pub title: Option<String>,
    pub message: Option<String>,
    /// `None` when missing or unusable (reported).
    pub order: Option<i64>,
    /// The event's 0-based place in its session's listing, set by the source for an event
    /// without a usable `order`: `event.sequence` then (never `veeam.restore_event.order`,
    /// which is only what Veeam sent).
    pub position: Option<i64>,
    pub item_name: Option<String>,
    pub item_type: Option<String>,
    /// Only a non-negative whole number.
    pub item_size_bytes: Option<i64>,
    pub source: Option<String>,
    pub target: Option<String>,
    /// v8 only.
    pub organization_id: Option<String>,
    pub backed_up_organization_id: Option<String>,
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub site_id: Option<String>,
    pub team_id: Option<String>,
    /// Odd values found while decoding (empty for a clean record).
    pub problems: Vec<Problem>,
}

/// A restore-session event as it arrives: every field any JSON value. The source reads a
/// well-formed page straight into these ([`crate::sources::typed_page`]);
/// `RawRestoreEvent::try_from` then decodes one as [`decode_event`] decodes its text.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireEvent {
    id: Option<Value>,
    #[serde(rename = "type")]
    event_type: Option<Value>,
    status: Option<Value>,
    start_time: Option<Value>,
    end_time: Option<Value>,
    duration: Option<Value>,
    title: Option<Value>,
    message: Option<Value>,
    order: Option<Value>,
    item_name: Option<Value>,
    item_type: Option<Value>,
    item_size_bytes: Option<Value>,
    source: Option<Value>,
    target: Option<Value>,
    organization_id: Option<Value>,
    backed_up_organization_id: Option<Value>,
    user_id: Option<Value>,
    group_id: Option<Value>,
    site_id: Option<Value>,
    team_id: Option<Value>,
}

impl TryFrom<WireEvent> for RawRestoreEvent {
    type Error = Unusable;

    fn try_from(wire: WireEvent) -> Result<Self, Unusable> {
        RawRestoreEvent::from_wire(wire, Fields::new(EVENT_RECORD))
    }
}

impl RawRestoreEvent {
    fn from_wire(w: WireEvent, mut f: Fields) -> Result<Self, Unusable> {
        let id = f.id("id", w.id)?;
        let order = f.order("order", w.order);
        let before_times = f.problems().len();
        let start_time = f.time("startTime", w.start_time, true);
        let end_time = f.time("endTime", w.end_time, false);
        if start_time.is_none() && end_time.is_none() {
            let why: Vec<String> = f.problems()[before_times..]
                .iter()
                .map(ToString::to_string)
                .collect();
            let why = if why.is_empty() {
                "both missing".to_string()
            } else {
                why.join("; ")
            };
            return Err(Unusable(format!(
                "{EVENT_RECORD}: no usable startTime or endTime ({why})"
            )));
        }
        let event_type = f.keyword("type", w.event_type, &EVENT_TYPES, false);
        let item_name = f.text("itemName", w.item_name, false);
        let item_type = f.text("itemType", w.item_type, false);
        let names_item = [&item_name, &item_type]
            .into_iter()
            .flatten()
            .any(|t| !t.trim().is_empty());
        if names_item && event_type.as_deref().is_none_or(|t| t.trim().is_empty()) {
            // A marker by its type, an item operation by its fields: say so, as a detection
            // filtering on `email`/`file` would not see it.
            f.report(
                "type",
                "missing or empty on an event that names an item (mapped as a session event; the item is kept in veeam.restore_event)",
            );
        }
        Ok(RawRestoreEvent {
            id,
            event_type,
            status: f
                .keyword("status", w.status, &EVENT_STATUSES, true)
                .unwrap_or_default(),
            start_time,
            end_time,
            duration: f.timespan("duration", w.duration),
            title: f.text("title", w.title, false),
            message: f.text("message", w.message, true),
            order,
            position: None,
            item_name,
            item_type,
            item_size_bytes: f.size("itemSizeBytes", w.item_size_bytes),
            source: f.text("source", w.source, false),
            target: f.text("target", w.target, false),
            organization_id: f.text("organizationId", w.organization_id, false),
            backed_up_organization_id: f.text(
                "backedUpOrganizationId",
                w.backed_up_organization_id,
                false,
            ),
            user_id: f.text("userId", w.user_id, false),
            group_id: f.text("groupId", w.group_id, false),
            site_id: f.text("siteId", w.site_id, false),
            team_id: f.text("teamId", w.team_id, false),
            problems: f.into_problems(),
        })
    }

    /// The event had odd values.
    pub fn is_degraded(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Decode one restore-session event record (JSON) leniently. `Err` only when an essential
/// field is unusable: `id`, or both `startTime` and `endTime`.
pub fn decode_event(raw: impl AsRef<str>) -> Result<RawRestoreEvent, Unusable> {
    let mut f = Fields::new(EVENT_RECORD);
    let wire: WireEvent = read_record(raw.as_ref(), &mut f)?;
    RawRestoreEvent::from_wire(wire, f)
}

/// Whether the event shipped for (`session`, `event`) reports odd values (the source then
/// keeps the raw record in `event.original` and counts it).
pub fn is_degraded(session: &RawRestoreSession, event: &RawRestoreEvent) -> bool {
    session.is_degraded() || event.is_degraded()
}

/// `observer.product` for every VB365 event.
pub const PRODUCT: &str = "Veeam Backup for Microsoft 365";
/// `event.provider` for every VB365 event.
pub const PROVIDER: &str = "vbo";

/// `event.action` values this mapping emits (besides `item-<type>` for event types Veeam
/// may add later).
pub mod action {
    pub const SESSION_STARTED: &str = "restore-session-started";
    pub const SESSION_STOPPED: &str = "restore-session-stopped";
    pub const SESSION_EVENT: &str = "restore-session-event";
    pub const ITEM_VIEWED: &str = "item-viewed";
    pub const ITEM_RESTORED: &str = "item-restored";
    pub const ITEM_EXPORTED: &str = "item-exported";
    pub const ITEM_SAVED: &str = "item-saved";
    pub const ITEM_SENT: &str = "item-sent";
}

/// What every event of one restore session shares, mapped once per session: the session
/// itself (`veeam.restore_session`), who ran it and from where (`initiatedBy` and
/// `clientHost` parsed into `user`, `client`, `source`, `related`), and the source's
/// constants. [`crate::map::Mapper`] keeps the last one, so a page of one session's events
/// parses and copies these once instead of once per event (they are shared by `Arc`).
#[derive(Debug, Clone)]
pub struct SessionParts {
    source_id: Arc<str>,
    observer_hostname: Arc<str>,
    organization_name: Option<String>,
    user: Option<Shared<User>>,
    client: Option<Shared<Client>>,
    source: Option<Shared<SourceEndpoint>>,
    gateway_ip: Option<String>,
    related: Shared<Related>,
    restore_session: Shared<RestoreSession>,
}

impl SessionParts {
    pub fn new(ctx: &MapContext<'_>, session: &RawRestoreSession) -> Self {
        let mut related = Related::default();

        // initiatedBy → user.*
        let organization_name = non_empty(session.organization.as_deref());
        let initiated_by_raw = non_empty(session.initiated_by.as_deref());
        let initiated = parse_initiated_by(
            initiated_by_raw.as_deref().unwrap_or(""),
            organization_name.as_deref(),
        );
        let user = initiated.name.as_ref().map(|name| {
            Shared::new(User {
                name: Some(name.clone()),
                domain: initiated.domain.clone(),
                email: initiated.email.clone(),
                id: None,
            })
        });
        if let Some(name) = &initiated.name {
            push_unique(&mut related.user, name);
            if let Some(raw) = &initiated_by_raw {
                push_unique(&mut related.user, raw.trim());
            }
        }

        // clientHost → client.*, source.ip, veeam.gateway.ip
        let client_host_raw = non_empty(session.client_host.as_deref());
        let host = parse_client_host(client_host_raw.as_deref().unwrap_or(""));
        let client =
            (host.address.is_some() || host.domain.is_some() || host.ip.is_some()).then(|| {
                Shared::new(Client {
                    address: host.address.clone(),
                    domain: host.domain.clone(),
                    ip: host.ip.map(|ip| ip.to_string()),
                })
            });
        if let Some(domain) = &host.domain {
            push_unique(&mut related.hosts, domain);
        }
        if let Some(ip) = host.ip {
            push_unique(&mut related.ip, &ip.to_string());
        }
        let gateway_ip = host.gateway_ip.map(|ip| ip.to_string());
        if let Some(ip) = &gateway_ip {
            push_unique(&mut related.ip, ip);
        }

        SessionParts {
            source_id: Arc::from(ctx.source_id),
            observer_hostname: Arc::from(ctx.observer_hostname),
            organization_name,
            user,
            client,
            source: gateway_ip
                .clone()
                .map(|ip| Shared::new(SourceEndpoint { ip: Some(ip) })),
            gateway_ip,
            related: Shared::new(related),
            restore_session: Shared::new(RestoreSession {
                id: session.id.clone(),
                name: non_empty(session.name.as_deref()),
                session_type: non_empty(Some(&session.session_type)),
                state: non_empty(Some(&session.state)),
                result: non_empty(session.result.as_deref()),
                reason: non_empty(session.reason.as_deref()),
                scope_name: non_empty(session.scope_name.as_deref()),
                details: non_empty(session.details.as_deref()),
                client_host: client_host_raw,
                initiated_by: initiated_by_raw,
                initiated_by_is_organization: initiated.is_organization,
                creation_time: session_created(session),
                end_time: session.end_time.map(to_utc),
                etag: session.etag,
            }),
        }
    }
}

/// The session's `creationTime` in UTC, when Veeam sent a usable one.
fn session_created(session: &RawRestoreSession) -> Option<DateTime<Utc>> {
    session
        .creation_time_known
        .then(|| to_utc(session.creation_time))
}

/// Map one restore-session event (with its session) to the output event.
///
/// `original` is the raw JSON of the event record, kept in `event.original` when the
/// source has `keep_original = true` or the record had odd values. Odd values of the
/// session and of the event are reported in `tags`, `error.message` and
/// `veeam.degraded_fields`.
pub fn map_restore_event(
    ctx: &MapContext<'_>,
    session: &RawRestoreSession,
    event: &RawRestoreEvent,
    original: Option<&str>,
) -> Event {
    let parts = SessionParts::new(ctx, session);
    map_restore_event_with(
        ctx,
        &parts,
        session,
        event.clone(),
        original.map(str::to_string),
    )
}

/// [`map_restore_event`] with the session's shared parts already mapped (`parts` must
/// come from [`SessionParts::new`] for this `session`), taking the event's strings
/// instead of copying them.
pub fn map_restore_event_with(
    ctx: &MapContext<'_>,
    parts: &SessionParts,
    session: &RawRestoreSession,
    event: RawRestoreEvent,
    original: Option<String>,
) -> Event {
    let start = event.start_time.map(to_utc);
    let end = event.end_time.map(to_utc);
    // Decoding guarantees a start or an end; a hand-built record may have neither.
    let timestamp = start
        .or(end)
        .or(parts.restore_session.creation_time)
        .unwrap_or(ctx.fetched_at);
    let report = degraded(session.problems.iter().chain(&event.problems));
    let item_type = item_event_type(event.event_type.as_deref());
    let action = event_action(
        event.event_type.as_deref(),
        event.title.as_deref(),
        event.message.as_deref(),
        event.order,
    );
    let (category, kind_type) = categorize(&session.session_type, item_type, &action);
    let outcome = outcome_for(&event.status);

    let duration = event
        .duration
        .as_deref()
        .and_then(parse_dotnet_timespan)
        .filter(|ns| *ns >= 0)
        .or_else(|| {
            start
                .zip(end)
                .and_then(|(start, end)| nanos_between(start, end))
        });

    let RawRestoreEvent {
        id,
        event_type,
        status,
        title,
        message,
        order,
        position,
        item_name,
        item_type,
        item_size_bytes,
        source,
        target,
        organization_id,
        backed_up_organization_id,
        user_id,
        group_id,
        site_id,
        team_id,
        ..
    } = event;
    let title = non_empty_owned(title);
    let item_name = non_empty_owned(item_name);
    let message = non_empty_owned(message)
        .or_else(|| title.clone())
        .unwrap_or_else(|| match &item_name {
            Some(item) => format!("{action} {item}"),
            None => action.clone(),
        });

    let organization_id = non_empty_owned(organization_id);
    let organization =
        (parts.organization_name.is_some() || organization_id.is_some()).then(|| Organization {
            name: parts.organization_name.clone(),
            id: organization_id,
        });

    Event {
        timestamp,
        ecs: Ecs::default(),
        message,
        event: EventMeta {
            kind: Text::Borrowed("event"),
            category,
            kind_type,
            action,
            outcome: Text::Borrowed(outcome),
            id,
            sequence: order.or(position),
            created: ctx.fetched_at,
            start,
            end,
            duration,
            dataset: Text::Borrowed(dataset::VBO_RESTORE),
            module: Text::Borrowed(MODULE),
            provider: Text::Borrowed(PROVIDER),
            original,
        },
        observer: Observer {
            vendor: Text::Borrowed(VENDOR),
            product: Text::Borrowed(PRODUCT),
            hostname: parts.observer_hostname.clone(),
        },
        labels: Labels {
            source_id: parts.source_id.clone(),
        },
        related: parts.related.clone(),
        organization,
        user: parts.user.clone(),
        client: parts.client.clone(),
        source: parts.source.clone(),
        tags: report.tags,
        error: report.error,
        veeam: Veeam {
            restore_session: Some(parts.restore_session.clone()),
            restore_event: Some(RestoreEvent {
                event_type: non_empty_owned(event_type),
                status: non_empty_owned(Some(status)),
                title,
                order,
                item_name,
                item_type: non_empty_owned(item_type),
                item_size_bytes: item_size_bytes.filter(|n| *n >= 0),
                source: non_empty_owned(source),
                target: non_empty_owned(target),
                user_id: non_empty_owned(user_id),
                backed_up_organization_id: non_empty_owned(backed_up_organization_id),
                group_id: non_empty_owned(group_id),
                site_id: non_empty_owned(site_id),
                team_id: non_empty_owned(team_id),
            }),
            gateway: parts.gateway_ip.clone().map(|ip| Gateway { ip }),
            degraded_fields: report.fields,
            ..Veeam::default()
        },
    }
}

/// The event `type` of an *item* event, trimmed; `None` for the session markers (`None`,
/// absent or empty type).
fn item_event_type(event_type: Option<&str>) -> Option<&str> {
    event_type
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("None"))
}

/// `event.action` for an event with Veeam's `type` as sent (`None`, absent or empty for the
/// session markers, whose action then comes from their wording and order).
pub fn event_action(
    event_type: Option<&str>,
    title: Option<&str>,
    message: Option<&str>,
    order: Option<i64>,
) -> String {
    let Some(item_type) = item_event_type(event_type) else {
        return marker_action(title, message, order).to_string();
    };
    let known = [
        ("View", action::ITEM_VIEWED),
        ("Restore", action::ITEM_RESTORED),
        ("Export", action::ITEM_EXPORTED),
        ("Save", action::ITEM_SAVED),
        ("Send", action::ITEM_SENT),
    ];
    if let Some((_, action)) = known
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(item_type))
    {
        return (*action).to_string();
    }
    // A type Veeam adds later: "item-<type>", lower-cased, every run of characters other
    // than [a-z0-9] as one '-', so the action stays a clean keyword.
    let mut slug = String::with_capacity(item_type.len());
    for c in item_type.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "item-unknown".to_string()
    } else {
        format!("item-{slug}")
    }
}

/// Start/stop/other for a `None` (marker) event, from its wording.
///
/// The title is consulted before the message; within one text, stop wording (stopped,
/// ended, finished, completed, closed, terminated, canceled, aborted, exited, dismounted,
/// or "session" with "failed") wins (a stop
/// message may well mention when the session started, the reverse is unlikely). With no
/// wording either way, the first event of a session (order 0) is its start.
fn marker_action(title: Option<&str>, message: Option<&str>, order: Option<i64>) -> &'static str {
    const STOP_WORDS: [&str; 14] = [
        "stopped",
        "stop",
        "ended",
        "end",
        "finished",
        "completed",
        "closed",
        "close",
        "terminated",
        "canceled",
        "cancelled",
        "aborted",
        "exited",
        "dismounted",
    ];
    const START_WORDS: [&str; 3] = ["started", "starting", "start"];
    for text in [title, message].into_iter().flatten() {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        // "failed" ends a session only when the text is about the session ("Restore
        // session failed"), not about a step of it ("Failed to mount the database").
        let session_failed = words.contains(&"session") && words.contains(&"failed");
        if session_failed || words.iter().any(|w| STOP_WORDS.contains(w)) {
            return action::SESSION_STOPPED;
        }
        if words.iter().any(|w| START_WORDS.contains(w)) {
            return action::SESSION_STARTED;
        }
    }
    if order == Some(0) {
        action::SESSION_STARTED
    } else {
        action::SESSION_EVENT
    }
}

/// `event.category` and `event.type`, kept within ECS's expected pairs:
/// session → start | end | info; email → info; file → creation | access | info.
fn categorize(session_type: &str, item_type: Option<&str>, action: &str) -> (Vec<Text>, Vec<Text>) {
    let (category, kind) = match item_type {
        None => (
            "session",
            match action {
                action::SESSION_STARTED => "start",
                action::SESSION_STOPPED => "end",
                _ => "info",
            },
        ),
        Some(_) if is_mail(session_type) => ("email", "info"),
        // Veod / Vesp / Vet, and any explorer type Veeam adds: documents, not mail.
        Some(_) => (
            "file",
            match action {
                action::ITEM_RESTORED | action::ITEM_SAVED => "creation",
                action::ITEM_VIEWED | action::ITEM_EXPORTED | action::ITEM_SENT => "access",
                _ => "info",
            },
        ),
    };
    (vec![Text::Borrowed(category)], vec![Text::Borrowed(kind)])
}

/// An Exchange explorer session: `Vex`, or `Exchange` as PowerShell names it.
fn is_mail(session_type: &str) -> bool {
    let t = session_type.trim();
    t.eq_ignore_ascii_case("Vex") || t.eq_ignore_ascii_case("Exchange")
}

/// Whether an event's status says its item is still in progress (`Running`; also
/// `InProgress`), so VB365 will complete the event in place later.
pub fn in_progress(status: &str) -> bool {
    let status = status.trim();
    status.eq_ignore_ascii_case("Running") || status.eq_ignore_ascii_case("InProgress")
}

/// `event.outcome` from the event status (case-insensitive).
pub fn outcome_for(status: &str) -> &'static str {
    let status = status.trim();
    if ["Success", "Warning"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(status))
    {
        outcome::SUCCESS
    } else if ["Failed", "Cancelled"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(status))
    {
        outcome::FAILURE
    } else {
        outcome::UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    //! Whole records mapped field by field are the fixtures in `tests/fixtures/mapping/vbo/`
    //! (run by `map::fixtures`). Here: the tables and loops that read better as code, and
    //! what decoding decides that no event shows.
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::Value;

    const SESSIONS_PAGE: &str =
        include_str!("../../tests/fixtures/vbo/spec-v8-restoresessions-page.json");
    const EVENTS_PAGE: &str =
        include_str!("../../tests/fixtures/vbo/spec-v8-restoresession-events-page.json");

    fn ctx() -> MapContext<'static> {
        MapContext {
            source_id: "vbo_main",
            observer_hostname: "vbo.example.com",
            fetched_at: Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap(),
        }
    }

    fn utc(s: &str) -> DateTime<chrono::Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    fn spec_sessions() -> Vec<RawRestoreSession> {
        let page: Value = serde_json::from_str(SESSIONS_PAGE).unwrap();
        serde_json::from_value(page["results"].clone()).unwrap()
    }

    fn spec_events() -> Vec<(RawRestoreEvent, String)> {
        let page: Value = serde_json::from_str(EVENTS_PAGE).unwrap();
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (serde_json::from_value(v.clone()).unwrap(), v.to_string()))
            .collect()
    }

    /// A session of the given explorer type, with one event of the given type/status.
    fn pair(
        session_type: &str,
        event_type: Option<&str>,
        status: &str,
        title: &str,
        order: i64,
    ) -> (RawRestoreSession, RawRestoreEvent) {
        let mut session = spec_sessions().remove(0);
        session.session_type = session_type.to_string();
        let (mut event, _) = spec_events().remove(1);
        event.event_type = event_type.map(str::to_string);
        event.status = status.to_string();
        event.title = Some(title.to_string());
        event.message = Some(title.to_string());
        event.order = Some(order);
        (session, event)
    }

    /// (session type, event type, title, order, action, category, type)
    type CategoryCase = (
        &'static str,
        Option<&'static str>,
        &'static str,
        i64,
        &'static str,
        &'static str,
        &'static str,
    );

    #[test]
    fn action_category_type_per_event_type() {
        let cases: &[CategoryCase] = &[
            (
                "Vex",
                Some("None"),
                "Restore session started",
                0,
                "restore-session-started",
                "session",
                "start",
            ),
            (
                "Vex",
                Some("None"),
                "Restore session stopped",
                9,
                "restore-session-stopped",
                "session",
                "end",
            ),
            (
                "Veod",
                Some("none"),
                "Session ended",
                9,
                "restore-session-stopped",
                "session",
                "end",
            ),
            (
                "Vesp",
                None,
                "Restore finished",
                9,
                "restore-session-stopped",
                "session",
                "end",
            ),
            (
                "Vet",
                Some(""),
                "Restore completed with warnings",
                9,
                "restore-session-stopped",
                "session",
                "end",
            ),
            (
                "Vex",
                Some(" None "),
                "Initializing",
                0,
                "restore-session-started",
                "session",
                "start",
            ),
            (
                "Vex",
                Some("None"),
                "Initializing",
                3,
                "restore-session-event",
                "session",
                "info",
            ),
            (
                "Vex",
                Some("None"),
                "Session STARTED by operator",
                4,
                "restore-session-started",
                "session",
                "start",
            ),
            (
                "Vex",
                Some("None"),
                "Completed; had started at 08:00",
                4,
                "restore-session-stopped",
                "session",
                "end",
            ),
            (
                "Vex",
                Some("None"),
                "Restore session closed",
                7,
                "restore-session-stopped",
                "session",
                "end",
            ),
            (
                "Vex",
                Some("None"),
                "Explorer terminated by the user",
                7,
                "restore-session-stopped",
                "session",
                "end",
            ),
            (
                "Vex",
                Some("None"),
                "Restore session failed",
                7,
                "restore-session-stopped",
                "session",
                "end",
            ),
            (
                "Vex",
                Some("None"),
                "Failed to mount the database",
                7,
                "restore-session-event",
                "session",
                "info",
            ),
            (
                "Vex",
                Some("None"),
                "Restarted the mount",
                0,
                "restore-session-started",
                "session",
                "start",
            ),
            (
                "Vex",
                Some("None"),
                "Restarted the mount",
                1,
                "restore-session-event",
                "session",
                "info",
            ),
            ("Vex", Some("View"), "x", 1, "item-viewed", "email", "info"),
            (
                "Vex",
                Some("Restore"),
                "x",
                1,
                "item-restored",
                "email",
                "info",
            ),
            (
                "Vex",
                Some("Export"),
                "x",
                1,
                "item-exported",
                "email",
                "info",
            ),
            ("Vex", Some("Save"), "x", 1, "item-saved", "email", "info"),
            ("Vex", Some("Send"), "x", 1, "item-sent", "email", "info"),
            (
                "Veod",
                Some("View"),
                "x",
                1,
                "item-viewed",
                "file",
                "access",
            ),
            (
                "Veod",
                Some("Restore"),
                "x",
                1,
                "item-restored",
                "file",
                "creation",
            ),
            (
                "Vesp",
                Some("Export"),
                "x",
                1,
                "item-exported",
                "file",
                "access",
            ),
            (
                "Vesp",
                Some("Save"),
                "x",
                1,
                "item-saved",
                "file",
                "creation",
            ),
            ("Vet", Some("Send"), "x", 1, "item-sent", "file", "access"),
            (
                "Vet",
                Some("restore"),
                "x",
                1,
                "item-restored",
                "file",
                "creation",
            ),
            ("Vet", Some("Copy"), "x", 1, "item-copy", "file", "info"),
            ("Vex", Some("Copy"), "x", 1, "item-copy", "email", "info"),
            (
                "Veod",
                Some("Move To  Folder!"),
                "x",
                1,
                "item-move-to-folder",
                "file",
                "info",
            ),
            (
                "Veod",
                Some("Ünïcode"),
                "x",
                1,
                "item-n-code",
                "file",
                "info",
            ),
            ("Veod", Some("???"), "x", 1, "item-unknown", "file", "info"),
            (
                "vex",
                Some("Restore"),
                "x",
                1,
                "item-restored",
                "email",
                "info",
            ),
            (
                "NewExplorer",
                Some("Restore"),
                "x",
                1,
                "item-restored",
                "file",
                "creation",
            ),
        ];
        for (session_type, event_type, title, order, action, category, kind) in cases {
            let (session, event) = pair(session_type, *event_type, "Success", title, *order);
            let e = map_restore_event(&ctx(), &session, &event, None);
            let what = format!("{session_type} / {event_type:?} / {title:?} / {order}");
            assert_eq!(e.event.action, *action, "{what}");
            assert_eq!(e.event.category, [*category], "{what}");
            assert_eq!(e.event.kind_type, [*kind], "{what}");
        }
    }

    #[test]
    fn event_action_takes_the_raw_type() {
        let started = Some("Restore session started");
        assert_eq!(
            event_action(Some("None"), started, None, Some(5)),
            "restore-session-started"
        );
        assert_eq!(
            event_action(None, None, Some("Session stopped"), Some(5)),
            "restore-session-stopped"
        );
        assert_eq!(
            event_action(Some(" "), None, None, Some(5)),
            "restore-session-event"
        );
        assert_eq!(
            event_action(Some(" Save "), started, None, Some(0)),
            "item-saved"
        );
    }

    #[test]
    fn outcome_per_status() {
        for (status, want) in [
            ("Success", "success"),
            ("Warning", "success"),
            ("success", "success"),
            (" WARNING ", "success"),
            ("Failed", "failure"),
            ("Cancelled", "failure"),
            ("cancelled", "failure"),
            ("Running", "unknown"),
            ("Skipped", "unknown"),
            ("", "unknown"),
            ("Canceled", "unknown"),
            ("🦀", "unknown"),
        ] {
            assert_eq!(outcome_for(status), want, "status {status:?}");
            let (session, event) = pair("Vex", Some("Restore"), status, "x", 1);
            assert_eq!(
                map_restore_event(&ctx(), &session, &event, None)
                    .event
                    .outcome,
                want
            );
        }
    }

    #[test]
    fn client_host_parts_that_fit_no_field_are_reported() {
        let decode = |client_host: &str| {
            let raw = serde_json::json!({
                "id": "s1", "type": "Vex", "creationTime": "2025-03-04T08:00:00Z",
                "state": "Stopped", "result": "Success", "clientHost": client_host
            });
            decode_session(raw.to_string(), Utc::now()).unwrap()
        };
        for clean in [
            "BXYDEV01 (via: 203.0.113.10)",
            "2001:db8::1",
            "WS01",
            "",
            "WS01 (via: [2001:db8::2]:443)",
        ] {
            assert!(
                decode(clean).problems.is_empty(),
                "{clean}: {:?}",
                decode(clean).problems
            );
        }
        for (odd, needle) in [
            ("HOST (via: gw.example.net)", "gateway"),
            ("fe80::1%eth0 (via: 10.0.0.1)", "client"),
        ] {
            let s = decode(odd);
            assert_eq!(s.problems.len(), 1, "{odd}: {:?}", s.problems);
            assert!(
                s.problems[0].field.ends_with("clientHost"),
                "{:?}",
                s.problems
            );
            assert!(s.problems[0].detail.contains(needle), "{:?}", s.problems);
            assert_eq!(s.client_host.as_deref(), Some(odd), "kept whole");
        }
    }

    #[test]
    fn weird_strings_never_panic() {
        let weird = [
            "",
            " ",
            "(",
            ")",
            "\\",
            "@",
            "(via:",
            "🦀",
            "é\\é",
            "a@b@c",
            "\u{0}",
            "None",
            "STOPPED",
            "x (via: [::1]:99999)",
            "ＨＯＳＴ",
            "İ",
            "-",
            "--",
            "00:00:00.",
            "1.",
        ];
        for a in weird {
            for b in weird {
                let (mut session, mut event) = pair(a, Some(b), a, b, 0);
                session.organization = Some(b.to_string());
                session.initiated_by = Some(a.to_string());
                session.client_host = Some(format!("{a} (via: {b}"));
                session.state = b.to_string();
                event.duration = Some(a.to_string());
                event.item_name = Some(b.to_string());
                event.event_type = Some(a.to_string());
                let e = map_restore_event(&ctx(), &session, &event, Some(b));
                assert!(!e.message.is_empty());
                assert!(!e.event.action.is_empty());
            }
        }
    }

    fn spec_json(page: &str, index: usize) -> Value {
        let page: Value = serde_json::from_str(page).unwrap();
        page["results"][index].clone()
    }

    fn placement() -> DateTime<Utc> {
        utc("2025-01-01T00:00:00Z")
    }

    // What the events of sessions and events with odd values say (kept as JSON text, left
    // out, reported in `tags`/`error.message`/`veeam.degraded_fields`, `event.original`
    // kept) is in the mapping fixtures: `tests/fixtures/mapping/vbo/session-odd-values-*`,
    // `creation-time-*`, `event-start-minvalue-falls-back-to-end`,
    // `event-times-without-offset-assumed-utc`. Below: what decoding decides that no event
    // shows.

    /// Decoding already leaves these values out (fixtures `item-size-negative-left-out`,
    /// `duration-*-timespan-falls-back-to-start-end`); the mapping still guards against
    /// them in a record built by hand.
    #[test]
    fn mapping_drops_negative_sizes_and_bad_timespans_of_hand_built_records() {
        let (session, mut event) = pair("Vex", Some("Restore"), "Success", "x", 1);
        event.item_size_bytes = Some(-1);
        event.start_time = Some(DateTime::parse_from_rfc3339("2025-03-04T08:00:00Z").unwrap());
        event.end_time = Some(DateTime::parse_from_rfc3339("2025-03-04T10:00:01+02:00").unwrap());
        for duration in ["garbage", "-00:00:05"] {
            event.duration = Some(duration.into());
            let e = map_restore_event(&ctx(), &session, &event, None);
            assert_eq!(e.event.duration, Some(1_000_000_000), "{duration}");
            assert_eq!(e.veeam.restore_event.unwrap().item_size_bytes, None);
        }
    }

    /// PowerShell's names for the same enums: `Exchange` is mail like `Vex`, `Running` is
    /// `Working`, and neither is reported as odd.
    #[test]
    fn powershell_names_of_types_and_states_mean_the_rest_names() {
        let mut raw = spec_json(SESSIONS_PAGE, 0);
        raw["type"] = serde_json::json!("Exchange");
        raw["state"] = serde_json::json!("Running");
        raw["endTime"] = Value::Null;
        let session = decode_session(raw.to_string(), placement()).unwrap();
        assert!(session.is_working());
        assert!(!session.is_degraded(), "{:?}", session.problems);
        assert_eq!(
            categorize(&session.session_type, Some("Item"), action::ITEM_RESTORED),
            (vec![Text::Borrowed("email")], vec![Text::Borrowed("info")])
        );
        for files in ["OneDrive", "SharePoint", "Teams", "Vesp"] {
            assert_eq!(
                categorize(files, Some("Item"), action::ITEM_RESTORED).0,
                vec![Text::Borrowed("file")],
                "{files}"
            );
        }
    }

    #[test]
    fn an_odd_state_is_working_until_the_session_has_an_end() {
        let mut raw = spec_json(SESSIONS_PAGE, 0);
        raw["state"] = serde_json::json!(2);
        let stopped = decode_session(raw.to_string(), placement()).unwrap();
        assert!(!stopped.is_working(), "ended: endTime is set");
        raw["endTime"] = Value::Null;
        assert!(
            decode_session(raw.to_string(), placement())
                .unwrap()
                .is_working()
        );
    }

    #[test]
    fn an_unusable_creation_time_is_replaced_by_the_placement() {
        for bad in [
            serde_json::json!("0001-01-01T00:00:00"),
            serde_json::json!("0001-01-01T00:00:00Z"),
            serde_json::json!("yesterday"),
            serde_json::json!(1_741_000_000),
            Value::Null,
        ] {
            let mut raw = spec_json(SESSIONS_PAGE, 0);
            raw["creationTime"] = bad.clone();
            let session = decode_session(raw.to_string(), placement()).unwrap();
            assert!(!session.creation_time_known, "{bad}");
            assert_eq!(session.creation_time, placement().fixed_offset());
            // Without a placement (plain serde), such a session does not decode.
            assert!(serde_json::from_value::<RawRestoreSession>(raw).is_err());
        }
    }

    #[test]
    fn an_event_without_a_usable_time_is_unusable() {
        let mut raw = spec_json(EVENTS_PAGE, 1);
        raw["endTime"] = serde_json::json!("9999-12-31T23:00:00-05:00");
        raw["startTime"] = Value::Null;
        let err = decode_event(raw.to_string()).unwrap_err().to_string();
        assert!(err.contains("no usable startTime or endTime"), "{err}");
        assert!(err.contains("outside years"), "{err}");
    }

    #[test]
    fn odd_sizes_orders_and_repeated_keys() {
        let raw = spec_json(EVENTS_PAGE, 1);
        let with = |key: &str, value: Value| {
            let mut r = raw.clone();
            r[key] = value;
            decode_event(r.to_string())
        };
        for odd in [
            serde_json::json!("12 KB"),
            serde_json::json!(780058.5),
            serde_json::json!(-1),
        ] {
            let e = with("itemSizeBytes", odd.clone()).unwrap();
            assert_eq!(e.item_size_bytes, None, "{odd}");
            assert_eq!(e.problems[0].field, "restoreEvent.itemSizeBytes");
        }
        let e = with("itemSizeBytes", serde_json::json!("48213")).unwrap();
        assert_eq!(
            e.item_size_bytes,
            Some(48213),
            "a number as a string is used"
        );
        assert_eq!(e.problems.len(), 1);
        let e = with("order", serde_json::json!("1")).unwrap();
        assert_eq!((e.order, e.problems.len()), (Some(1), 1));
        // An unusable or missing order costs no evidence: the event is kept, reported, and
        // its `event.sequence` is its place in the listing (set by the source).
        for odd in [serde_json::json!("#12"), serde_json::json!(-1), Value::Null] {
            let mut e = with("order", odd.clone()).unwrap();
            assert_eq!(e.order, None, "{odd}");
            assert_eq!(e.problems[0].field, "restoreEvent.order", "{odd}");
            e.position = Some(7);
            let session =
                decode_session(spec_json(SESSIONS_PAGE, 0).to_string(), placement()).unwrap();
            let event = map_restore_event(&ctx(), &session, &e, None);
            assert_eq!(event.event.sequence, Some(7), "{odd}");
            let json = serde_json::to_value(&event).unwrap();
            assert!(
                json["veeam"]["restore_event"].get("order").is_none(),
                "{odd}"
            );
            assert!(
                json["tags"].to_string().contains("veeam_field_degraded"),
                "{odd}"
            );
        }
        let mut r = raw.clone();
        r.as_object_mut().unwrap().remove("order");
        assert_eq!(decode_event(r.to_string()).unwrap().order, None);

        // A repeated key: serde refuses the object; the last value is used and reported.
        let text = raw.to_string();
        let twice = format!("{}, \"status\": \"Failed\"}}", &text[..text.len() - 1]);
        let e = decode_event(&twice).unwrap();
        assert_eq!(e.status, "Failed");
        assert_eq!(e.problems[0].field, "restoreEvent.record");
        assert!(e.problems[0].detail.contains("duplicate field"));
        assert!(decode_event("[1]").is_err());
        assert!(decode_event("not json").is_err());
    }

    #[test]
    fn an_array_is_never_read_as_an_event() {
        // serde's derived structs would take it field by field, in order.
        let raw = r#"["arr-ev","Restore","Success","2025-03-04T08:00:01Z",null,null,"t","m",1,"ceo-mailbox.pst"]"#;
        let err = decode_event(raw).unwrap_err().to_string();
        assert!(
            err.contains("an array where a JSON object was expected"),
            "{err}"
        );
    }

    #[test]
    fn a_client_host_with_two_gateways_is_reported() {
        let mut raw = spec_json(SESSIONS_PAGE, 0);
        raw["clientHost"] = serde_json::json!("host6 (via: 10.0.0.1) ( via 203.0.113.13)");
        let s = decode_session(raw.to_string(), placement()).unwrap();
        assert!(
            s.problems
                .iter()
                .any(|p| p.field == "restoreSession.clientHost"
                    && p.detail.contains("more than one gateway")),
            "{:?}",
            s.problems
        );
        raw["clientHost"] = serde_json::json!("host6 (via: 10.0.0.1)");
        let s = decode_session(raw.to_string(), placement()).unwrap();
        assert!(
            !s.problems
                .iter()
                .any(|p| p.field == "restoreSession.clientHost")
        );
    }

    #[test]
    fn an_item_event_without_a_type_is_reported() {
        let raw = spec_json(EVENTS_PAGE, 1);
        for odd in [Value::Null, serde_json::json!(""), serde_json::json!("  ")] {
            let mut r = raw.clone();
            r["type"] = odd.clone();
            r["itemName"] = serde_json::json!("Q3 plan.docx");
            let e = decode_event(r.to_string()).unwrap();
            assert!(
                e.problems
                    .iter()
                    .any(|p| p.field == "restoreEvent.type" && p.detail.contains("names an item")),
                "{odd}: {:?}",
                e.problems
            );
        }
        // A marker (no item) without a type is not odd.
        let mut r = raw.clone();
        r["type"] = Value::Null;
        for key in ["itemName", "itemType"] {
            r[key] = Value::Null;
        }
        let e = decode_event(r.to_string()).unwrap();
        assert!(
            !e.problems.iter().any(|p| p.field == "restoreEvent.type"),
            "{:?}",
            e.problems
        );
    }
}
