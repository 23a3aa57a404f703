//! The VB365 REST endpoints (`/v6`, `/v7`, `/v8` at once) and their protocol checks.
//!
//! One fallback handler lowercases the path and the query keys and dispatches itself, since
//! real clients write `/v6/Token`, `/v6/restoresessions` or `starttimeFrom`. Misuse the real
//! server would reject gets an HTTP error *and* a recorded violation; misuse it would
//! silently tolerate (unknown query keys, a missing `disable_antiforgery_token` on v7/v8)
//! is answered normally but recorded. The fault knobs (`faults.rs`) hook in at `dispatch`
//! (stalled and cut responses), `data_request` (401, 429, 5xx) and the handlers (spoiled
//! records, non-JSON pages, overlapping pages, vanished sessions).
//!
//! Assumptions where Veeam documents nothing (see `reference/veeam-apis.md` §4):
//! - `/token` failures are OWIN-style: 400 `{"error":"invalid_grant","error_description":..}`
//!   for bad credentials and for unknown, expired or already-used refresh tokens;
//!   400 `invalid_request` for missing fields; 400 `unsupported_grant_type` otherwise.
//! - 401 body on data endpoints: `{"message":"Authorization has been denied for this request."}`.
//! - 429 from the throttle carries the WebApiThrottle message as a JSON string body.
//! - `startTimeFrom`/`startTimeTo`/`endTimeFrom`/`endTimeTo` are inclusive bounds; a session
//!   without an end time never matches an end-time bound.
//! - v6/v7 list sessions newest first (like v8's default); clients must not rely on it.
//! - v8 `orderBy=EndTime` puts working sessions (no end time) after every stopped one in
//!   ascending order, before them in descending order.
//! - `limit` must be 1..=10000 and `offset` >= 0; other values get 400.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use url::form_urlencoded;
use uuid::Uuid;

use super::data::{SessionQuery, truncate};
use super::drift::{self, DriftKind};
use super::faults::{self, Faults, Verdict};
use super::state::Shared;
use super::wire::{self, OAuthError, PageSpot, TokenResponse, Version};

const MAX_LIMIT: i64 = 10_000;
const DEFAULT_LIMIT: i64 = 30;
const MAX_TOKEN_BODY: usize = 64 * 1024;
const SERVICE_VERSION: &str = "8.0.2.159";
const DENIED: &str = "Authorization has been denied for this request.";
const BAD_CREDENTIALS: &str = "The user name or password is incorrect.";
const SESSION_PARAMS: [&str; 4] = ["limit", "offset", "startTimeFrom", "startTimeTo"];
const SESSION_FILTERS: [&str; 2] = ["startTimeFrom", "startTimeTo"];
const V8_SESSION_PARAMS: [&str; 4] = ["endTimeFrom", "endTimeTo", "orderBy", "orderAsc"];
const PAGING: [&str; 2] = ["limit", "offset"];

pub(crate) fn router(shared: Arc<Shared>, faults: Arc<Faults>) -> Router {
    Router::new()
        .fallback(dispatch)
        .with_state(shared)
        .layer(Extension(faults))
}

/// The resources the simulator serves (path segments after the version, lowercased).
#[derive(Debug)]
enum Route {
    /// `POST /vN/token` (anonymous).
    Token,
    /// `POST /v7|v8/token/logout` (needs the bearer token it revokes).
    Logout,
    /// `GET /v8/Health` (anonymous).
    Health,
    /// Everything that needs a bearer token.
    Data(DataRoute),
}

#[derive(Debug)]
enum DataRoute {
    ServiceInstance,
    Sessions,
    Session(String),
    Events(String),
    Event(String, String),
}

impl Route {
    fn parse(version: Version, segments: &[&str]) -> Option<Route> {
        let own = |s: &str| s.to_string();
        let data = match segments {
            ["token"] => return Some(Route::Token),
            ["token", "logout"] if version != Version::V6 => return Some(Route::Logout),
            ["health"] if version.is_v8() => return Some(Route::Health),
            ["serviceinstance"] => DataRoute::ServiceInstance,
            ["restoresessions"] => DataRoute::Sessions,
            ["restoresessions", id] => DataRoute::Session(own(id)),
            ["restoresessions", id, "events"] => DataRoute::Events(own(id)),
            ["restoresessions", id, "events", event] => DataRoute::Event(own(id), own(event)),
            _ => return None,
        };
        Some(Route::Data(data))
    }

    fn method(&self) -> Method {
        match self {
            Route::Token | Route::Logout => Method::POST,
            _ => Method::GET,
        }
    }
}

/// Query parameters with lowercased keys, in request order.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes());
        Query(
            pairs
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key` (matched case-insensitively).
    fn get(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An error answered as `RESTExceptionInfo`.
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    message: String,
    code: Option<&'static str>,
    /// Also record the request as a protocol violation.
    violation: bool,
}

impl Fail {
    /// An error without an `errorCode`.
    fn plain(status: StatusCode, message: String, violation: bool) -> Fail {
        Fail {
            status,
            message,
            code: None,
            violation,
        }
    }

    fn bad_parameter(message: String) -> Fail {
        Fail {
            status: StatusCode::BAD_REQUEST,
            message,
            code: Some("ParameterValidationFailure"),
            violation: true,
        }
    }

    fn not_found(message: String) -> Fail {
        Fail {
            status: StatusCode::NOT_FOUND,
            message,
            code: Some("ResourceNotFound"),
            violation: false,
        }
    }
}

/// One request being handled.
struct Call<'a> {
    sim: &'a Shared,
    faults: &'a Faults,
    version: Version,
    query: Query,
    headers: &'a HeaderMap,
    /// `GET /v8/RestoreSessions?...`, for violation messages.
    what: String,
}

impl Call<'_> {
    fn violation(&self, problem: &str) {
        self.sim.violation(format!("{}: {problem}", self.what));
    }

    fn reply(&self, result: Result<Response, Fail>) -> Response {
        result.unwrap_or_else(|fail| {
            if fail.violation {
                self.violation(&fail.message);
            }
            exception(Some(self.version), fail.status, &fail.message, fail.code)
        })
    }
}

async fn dispatch(
    State(sim): State<Arc<Shared>>,
    Extension(faults): Extension<Arc<Faults>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if !sim.cfg.latency.is_zero() {
        tokio::time::sleep(sim.cfg.latency).await;
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_ascii_lowercase();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.first() == Some(&"v1") {
        let delivery = faults.delivery();
        if let Some(stall) = delivery.stall {
            tokio::time::sleep(stall).await;
        }
        let response = super::vdc::handle(
            &sim,
            &faults,
            &parts.method,
            &parts.uri,
            &parts.headers,
            &segments[1..],
        )
        .await;
        return match delivery.cut_at {
            Some(fraction) => faults::cut(response, fraction).await,
            None => response,
        };
    }
    let Some(version) = segments.first().and_then(|s| Version::parse(s)) else {
        // Unknown versions are a legitimate probe (404 means "not served"), not a violation.
        let message = no_resource(&parts.uri);
        return exception(None, StatusCode::NOT_FOUND, &message, None);
    };
    let call = Call {
        sim: &sim,
        faults: &faults,
        version,
        query: Query::parse(parts.uri.query()),
        headers: &parts.headers,
        what: format!("{} {}", parts.method, parts.uri),
    };
    let Some(route) = Route::parse(version, &segments[1..]) else {
        let fail = Fail::not_found(no_resource(&parts.uri));
        return call.reply(Err(Fail {
            violation: true,
            ..fail
        }));
    };
    if parts.method != route.method() {
        let message = format!(
            "The requested resource does not support http method '{}'.",
            parts.method
        );
        return call.reply(Err(Fail::plain(
            StatusCode::METHOD_NOT_ALLOWED,
            message,
            true,
        )));
    }
    match route {
        Route::Token => token(&call, peer.ip(), body).await,
        Route::Logout => logout(&call),
        Route::Health => json(
            StatusCode::OK,
            &serde_json::json!({ "status": "Healthy", "entries": {} }),
        ),
        Route::Data(route) => {
            let delivery = faults.delivery();
            if let Some(stall) = delivery.stall {
                tokio::time::sleep(stall).await;
            }
            let result = data_request(&call, route);
            let response = call.reply(result);
            match delivery.cut_at {
                Some(fraction) => faults::cut(response, fraction).await,
                None => response,
            }
        }
    }
}

fn no_resource(uri: &axum::http::Uri) -> String {
    format!(
        "No HTTP resource was found that matches the request URI '{}'.",
        uri.path()
    )
}

// ---------------------------------------------------------------------------------------
// Data endpoints

fn data_request(call: &Call, route: DataRoute) -> Result<Response, Fail> {
    let sim = call.sim;
    sim.count(|s| s.data_requests += 1);
    match call.faults.on_data_request() {
        Verdict::Serve => {}
        Verdict::Revoked => sim.tokens().revoke_all(call.faults.revoke_refresh()),
        Verdict::Throttle(secs) => return Ok(faults::throttled(secs)),
        Verdict::ServerError(status) => {
            let message = "The server failed to answer (simulated fault).".to_string();
            return Err(Fail::plain(status, message, false));
        }
    }
    if bearer_token(call).is_none() {
        return Ok(unauthorized(sim));
    }
    if sim.inject_fault() {
        sim.count(|s| s.injected_errors += 1);
        let message = "The service is temporarily unavailable (simulated fault).".to_string();
        return Err(Fail::plain(StatusCode::SERVICE_UNAVAILABLE, message, false));
    }
    match route {
        DataRoute::ServiceInstance => {
            check_keys(call, &[], &[])?;
            let body = serde_json::json!({ "installationId": sim.installation_id, "version": SERVICE_VERSION });
            Ok(json(StatusCode::OK, &body))
        }
        DataRoute::Sessions => list_sessions(call),
        DataRoute::Session(id) => get_session(call, &id),
        DataRoute::Events(id) => list_events(call, &id),
        DataRoute::Event(id, event) => get_event(call, &id, &event),
    }
}

/// The request's bearer token, when it is a live access token.
fn bearer_token<'c>(call: &Call<'c>) -> Option<&'c str> {
    let token = call
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())?;
    call.sim
        .tokens()
        .is_valid(token, Instant::now())
        .then_some(token)
}

fn unauthorized(sim: &Shared) -> Response {
    sim.count(|s| s.unauthorized += 1);
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({ "message": DENIED }),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// `POST /vN/token/logout`: revokes the caller's tokens, 204.
fn logout(call: &Call) -> Response {
    match bearer_token(call) {
        Some(token) => {
            call.sim.tokens().revoke(token);
            StatusCode::NO_CONTENT.into_response()
        }
        None => unauthorized(call.sim),
    }
}

fn list_sessions(call: &Call) -> Result<Response, Fail> {
    check_keys(call, &SESSION_PARAMS, &V8_SESSION_PARAMS)?;
    let (offset, limit) = paging(call)?;
    let mut query = SessionQuery {
        start_from: time_param(call, "startTimeFrom")?,
        start_to: time_param(call, "startTimeTo")?,
        ..SessionQuery::default()
    };
    if call.version.is_v8() {
        query.end_from = time_param(call, "endTimeFrom")?;
        query.end_to = time_param(call, "endTimeTo")?;
        query.by_end_time = order_by_end_time(call)?;
        query.ascending = bool_param(call, "orderAsc")?.unwrap_or(false);
    }
    if call.faults.listing_not_json() {
        return Ok(faults::not_json());
    }
    let data = call.sim.data();
    if let Some(index) = call.faults.deletion_due(offset)
        && let Some(session) = data.sessions().get(index)
    {
        call.faults
            .hide(session.profile.id, Some(faults::Vanish::Deleted));
    }
    let mut found = data.query(&query);
    found.retain(|s| !call.faults.unlisted(s.profile.id));
    let served = call.faults.paging(offset, limit);
    let results = found
        .iter()
        .skip(served.offset)
        .take(served.take)
        .map(|s| {
            let session = wire::session(call.version, s);
            drift::serve(
                &call.sim.cfg,
                DriftKind::VboSession,
                &s.profile.id.to_string(),
                session,
            )
        })
        .collect();
    let extra = link_filters(call);
    let spot = PageSpot {
        version: call.version,
        path: format!("/{}/RestoreSessions", call.version.as_str()),
        offset: served.offset,
        limit: served.report_limit,
        total: found.len(),
        extra_query: &extra,
    };
    Ok(page_response(spot.page(results), served.bare))
}

fn get_session(call: &Call, id: &str) -> Result<Response, Fail> {
    check_keys(call, &[], &[])?;
    let id = parse_id(id, "restore session")?;
    let data = call.sim.data();
    let session = data
        .find_session(id)
        .filter(|_| !call.faults.deleted(id))
        .ok_or_else(|| session_not_found(id))?;
    let served = wire::session(call.version, session);
    let served = drift::serve(
        &call.sim.cfg,
        DriftKind::VboSession,
        &id.to_string(),
        served,
    );
    Ok(json(StatusCode::OK, &served))
}

fn list_events(call: &Call, id: &str) -> Result<Response, Fail> {
    check_keys(call, &PAGING, &[])?;
    let (offset, limit) = paging(call)?;
    let id = parse_id(id, "restore session")?;
    let data = call.sim.data();
    let session = data
        .find_session(id)
        .filter(|_| !call.faults.deleted(id))
        .ok_or_else(|| session_not_found(id))?;
    if call.faults.events_not_json(session.index) {
        return Ok(faults::not_json());
    }
    let total = session.events as usize;
    let served = call.faults.paging(offset, limit);
    let offset = served.offset;
    let end = offset.saturating_add(served.take).min(total);
    // Overlapping pages (a fault knob) start one record early.
    let start = if call.faults.overlap(session.index, offset.min(end)) {
        offset.min(end) - 1
    } else {
        offset.min(end)
    };
    let orders = (start..end).filter_map(|order| u32::try_from(order).ok());
    let spoiled: Vec<_> = orders
        .clone()
        .map(|order| call.faults.corruption(session.index, order))
        .collect();
    let results: Vec<_> = orders
        .filter_map(|order| data.event(session, order))
        .map(|event| {
            let event_id = event.id.to_string();
            let served = wire::event(call.version, session, event);
            drift::serve(&call.sim.cfg, DriftKind::VboEvent, &event_id, served)
        })
        .collect();
    let spot = PageSpot {
        version: call.version,
        path: format!("/{}/RestoreSessions/{id}/Events", call.version.as_str()),
        offset,
        limit: served.report_limit,
        total,
        extra_query: "",
    };
    if spoiled.iter().any(Option::is_some) {
        call.faults
            .count_spoiled(spoiled.iter().flatten().count() as u64);
        return Ok(spoiled_events_page(spot.page(results), spoiled));
    }
    Ok(page_response(spot.page(results), served.bare))
}

/// A page as JSON; `bare` (a fault knob) leaves out `_links` and `totalCount`.
fn page_response<T: Serialize>(page: wire::Page<T>, bare: bool) -> Response {
    if !bare {
        return json(StatusCode::OK, &page);
    }
    let mut value = serde_json::to_value(&page).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("_links");
        map.remove("totalCount");
    }
    json(StatusCode::OK, &value)
}

/// An events page with some records spoiled by the fault knobs.
fn spoiled_events_page<T: Serialize>(
    page: wire::Page<T>,
    spoiled: Vec<Option<faults::Corruption>>,
) -> Response {
    let Ok(mut page) = serde_json::to_value(&page) else {
        return json(StatusCode::OK, &page);
    };
    let records = match page["results"].take() {
        serde_json::Value::Array(records) => records,
        _ => Vec::new(),
    };
    let body = faults::spoiled_page(page, records.into_iter().zip(spoiled).collect());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn get_event(call: &Call, id: &str, event_id: &str) -> Result<Response, Fail> {
    check_keys(call, &[], &[])?;
    let id = parse_id(id, "restore session")?;
    let event_id = parse_id(event_id, "restore session event")?;
    let data = call.sim.data();
    let session = data.find_session(id).ok_or_else(|| session_not_found(id))?;
    let event = data.find_event(session, event_id).ok_or_else(|| {
        Fail::not_found(format!(
            "Restore session event with the specified ID ({event_id}) was not found."
        ))
    })?;
    let served = wire::event(call.version, session, event);
    let served = drift::serve(
        &call.sim.cfg,
        DriftKind::VboEvent,
        &event_id.to_string(),
        served,
    );
    Ok(json(StatusCode::OK, &served))
}

fn session_not_found(id: Uuid) -> Fail {
    Fail::not_found(format!(
        "Restore session with the specified ID ({id}) was not found."
    ))
}

// ---------------------------------------------------------------------------------------
// Query parameters

/// Accepts `allowed` keys (and `v8_only` keys on v8), rejects `v8_only` keys on v6/v7 with
/// 400, and records other keys, which the real server ignores, as violations.
fn check_keys(call: &Call, allowed: &[&str], v8_only: &[&str]) -> Result<(), Fail> {
    let known = |list: &[&str], key: &str| list.iter().any(|k| k.eq_ignore_ascii_case(key));
    for (key, _) in &call.query.0 {
        if known(allowed, key) || (call.version.is_v8() && known(v8_only, key)) {
            continue;
        }
        if known(v8_only, key) {
            let message = format!(
                "The query parameter '{key}' is not supported by API {}.",
                call.version.as_str()
            );
            return Err(Fail::bad_parameter(message));
        }
        call.violation(&format!(
            "unknown query parameter '{key}' (the real server ignores it)"
        ));
    }
    Ok(())
}

/// (offset, limit): offset >= 0, limit 1..=10000 (default 30).
fn paging(call: &Call) -> Result<(usize, usize), Fail> {
    let offset = int_param(call, "offset", 0, 0..=i64::from(i32::MAX))?;
    let limit = int_param(call, "limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    Ok((offset, limit))
}

fn int_param(
    call: &Call,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<usize, Fail> {
    let Some(raw) = call.query.get(name) else {
        return Ok(default as usize);
    };
    let value = raw
        .trim()
        .parse::<i32>()
        .map_err(|_| Fail::bad_parameter(format!("The value '{raw}' is not valid for {name}.")))?;
    let value = i64::from(value);
    if !range.contains(&value) {
        let (lo, hi) = (range.start(), range.end());
        return Err(Fail::bad_parameter(format!(
            "The {name} value {value} is out of range [{lo}, {hi}]."
        )));
    }
    Ok(value as usize)
}

/// An RFC 3339 timestamp (any offset), converted to UTC.
fn time_param(call: &Call, name: &str) -> Result<Option<DateTime<Utc>>, Fail> {
    let Some(raw) = call.query.get(name) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| Some(t.to_utc()))
        .map_err(|e| {
            Fail::bad_parameter(format!(
                "The value '{raw}' is not a valid date-time for {name}: {e}."
            ))
        })
}

fn bool_param(call: &Call, name: &str) -> Result<Option<bool>, Fail> {
    match call.query.get(name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(Fail::bad_parameter(format!(
            "The value '{v}' is not valid for {name}."
        ))),
    }
}

/// v8 `orderBy`: `CreationTime` (default) or `EndTime`.
fn order_by_end_time(call: &Call) -> Result<bool, Fail> {
    match call.query.get("orderBy") {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("CreationTime") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("EndTime") => Ok(true),
        Some(v) => Err(Fail::bad_parameter(format!(
            "The value '{v}' is not valid for orderBy."
        ))),
    }
}

/// The filters of a session listing, re-encoded for the page links.
fn link_filters(call: &Call) -> String {
    SESSION_FILTERS
        .iter()
        .chain(V8_SESSION_PARAMS.iter().filter(|_| call.version.is_v8()))
        .filter_map(|name| {
            let value = call.query.get(name)?;
            Some(format!(
                "&{name}={}",
                form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
            ))
        })
        .collect()
}

fn parse_id(raw: &str, what: &str) -> Result<Uuid, Fail> {
    Uuid::parse_str(raw)
        .map_err(|_| Fail::bad_parameter(format!("The value '{raw}' is not a valid {what} ID.")))
}

// ---------------------------------------------------------------------------------------
// POST /vN/token

async fn token(call: &Call<'_>, ip: IpAddr, body: Body) -> Response {
    let sim = call.sim;
    if let Some(rules) = &sim.cfg.throttle {
        let admitted = sim.throttler().admit(rules, ip, Instant::now());
        if let Err(rejection) = admitted {
            sim.count(|s| s.throttled += 1);
            let mut response = json(StatusCode::TOO_MANY_REQUESTS, &rejection.message());
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(rejection.retry_after),
            );
            return response;
        }
    }
    let form = match to_bytes(body, MAX_TOKEN_BODY).await {
        Ok(bytes) => token_form(call, &bytes),
        Err(_) => Err(format!("The request body exceeds {MAX_TOKEN_BODY} bytes.")),
    };
    let outcome = form
        .map_err(|problem| {
            call.violation(&problem);
            oauth_error("invalid_request", problem)
        })
        .and_then(|form| {
            check_antiforgery(call, &form);
            grant(call, &form)
        });
    match outcome {
        Ok(tokens) => json(StatusCode::OK, &tokens),
        Err(error) => {
            sim.count(|s| s.token_failures += 1);
            json(StatusCode::BAD_REQUEST, &error)
        }
    }
}

/// The token request fields, from a form (the documented encoding) or a JSON body.
fn token_form(call: &Call, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let content_type = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-www-form-urlencoded" => Ok(form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()),
        "application/json" => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(body)
                    .map_err(|e| format!("The JSON body is not an object: {e}."))?;
            Ok(object
                .into_iter()
                .filter_map(|(k, v)| json_field(v).map(|v| (k, v)))
                .collect())
        }
        _ => Err(format!(
            "Content-Type '{content_type}' is not supported; send application/x-www-form-urlencoded."
        )),
    }
}

fn json_field(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

fn field<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// v7/v8 want `disable_antiforgery_token=true` (else the server also demands an antiforgery
/// cookie the shipper cannot send); v6 has no such field.
fn check_antiforgery(call: &Call, form: &[(String, String)]) {
    let flag = field(form, "disable_antiforgery_token");
    match (call.version, flag) {
        (Version::V6, Some(_)) => {
            call.violation("disable_antiforgery_token does not exist in API v6")
        }
        (Version::V6, None) => {}
        (_, flag) if !flag.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) => {
            call.violation("token request without disable_antiforgery_token=true")
        }
        _ => {}
    }
}

/// Runs the grant; `Err` is answered 400 and counted as a token failure.
fn grant(call: &Call, form: &[(String, String)]) -> Result<TokenResponse, OAuthError> {
    let sim = call.sim;
    let missing = |name: &str| {
        let problem = format!("The {name} field is required.");
        call.violation(&problem);
        oauth_error("invalid_request", problem)
    };
    let grant_type = field(form, "grant_type").ok_or_else(|| missing("grant_type"))?;
    let user = match grant_type {
        "password" => {
            let user = field(form, "username").ok_or_else(|| missing("username"))?;
            let password = field(form, "password").ok_or_else(|| missing("password"))?;
            if !user.eq_ignore_ascii_case(&sim.cfg.username) || password != sim.cfg.password {
                return Err(oauth_error("invalid_grant", BAD_CREDENTIALS.to_string()));
            }
            sim.count(|s| s.password_logins += 1);
            sim.cfg.username.clone()
        }
        "refresh_token" => {
            let refresh = field(form, "refresh_token").ok_or_else(|| missing("refresh_token"))?;
            let user = sim.tokens().redeem(refresh, Instant::now());
            let user =
                user.ok_or_else(|| oauth_error("invalid_grant", BAD_CREDENTIALS.to_string()))?;
            sim.count(|s| s.refreshes += 1);
            user
        }
        other => return Err(unsupported_grant(call, other)),
    };
    Ok(issue_tokens(sim, user))
}

fn unsupported_grant(call: &Call, grant_type: &str) -> OAuthError {
    let documented = match call.version {
        Version::V8 => ["urn:ietf:params:oauth:grant-type:jwt-bearer", "operator"].as_slice(),
        _ => [
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "operator",
            "integration",
        ]
        .as_slice(),
    };
    if !documented.contains(&grant_type) {
        call.violation(&format!(
            "grant_type '{grant_type}' does not exist in API {}",
            call.version.as_str()
        ));
    }
    let description = format!("The grant type '{grant_type}' is not supported by the simulator.");
    oauth_error("unsupported_grant_type", description)
}

fn issue_tokens(sim: &Shared, user: String) -> TokenResponse {
    let ttl = sim.cfg.token_ttl;
    let issued = sim.tokens().issue(&user, ttl, Instant::now());
    let now = truncate(Utc::now());
    let expires_in = (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1);
    TokenResponse {
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        token_type: "bearer",
        expires_in,
        user_name: user,
        issued: wire::timestamp(now),
        expires: wire::timestamp(expiry(now, ttl)),
    }
}

fn expiry(now: DateTime<Utc>, ttl: std::time::Duration) -> DateTime<Utc> {
    TimeDelta::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

// ---------------------------------------------------------------------------------------
// Responses

fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            bytes,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("serialization failed: {e}"),
        )
            .into_response(),
    }
}

fn exception(
    version: Option<Version>,
    status: StatusCode,
    message: &str,
    code: Option<&'static str>,
) -> Response {
    json(status, &wire::exception(version, message, code))
}

fn oauth_error(error: &'static str, error_description: String) -> OAuthError {
    OAuthError {
        error,
        error_description,
    }
}
