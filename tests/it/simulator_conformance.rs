//! Conformance of the embedded VB365 simulator to Veeam's published API.
//!
//! Every payload is validated against the component schemas extracted from Veeam's
//! OpenAPI 3.0 specs (`tests/fixtures/openapi/`, made by `extract.py`), converted to strict
//! JSON Schema 2020-12: `nullable` becomes a `null` alternative and every object schema that
//! lists properties gets `additionalProperties: false` (the HAL link dictionary keeps free
//! keys), so the simulator cannot invent fields. The tests then exercise the protocol rules:
//! tokens, expiry, refresh rotation, throttling, case-insensitive routing, version-specific
//! parameters and fields, errors and the live `tick`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use veeam_siem_simulator::{SimConfig, SimHandle, Throttle};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VERSIONS: [&str; 3] = ["v6", "v7", "v8"];

// ---------------------------------------------------------------------------------------
// OpenAPI 3.0 component schemas → strict JSON Schema

fn fixture(version: &str) -> Value {
    let text = match version {
        "v6" => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openapi/vb365-v6-schemas.json"
        )),
        "v7" => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openapi/vb365-v7-schemas.json"
        )),
        _ => include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openapi/vb365-v8-schemas.json"
        )),
    };
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Converts one OpenAPI 3.0 schema object (recursively) to strict JSON Schema 2020-12.
fn strict(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "$ref" => Value::String(
                value
                    .as_str()
                    .unwrap_or("")
                    .replace("#/components/schemas/", "#/$defs/"),
            ),
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), strict(v)))
                    .collect(),
            ),
            "items" | "additionalProperties" => strict(value),
            "allOf" | "anyOf" | "oneOf" => {
                Value::Array(value.as_array().into_iter().flatten().map(strict).collect())
            }
            "nullable" | "example" | "description" | "x-veeam-page-result" => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    match out.get("format").and_then(Value::as_str) {
        Some("int32") => bounds(&mut out, i64::from(i32::MIN), i64::from(i32::MAX)),
        Some("int64") => bounds(&mut out, i64::MIN, i64::MAX),
        _ => {}
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    if out.contains_key("properties") && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

fn bounds(out: &mut serde_json::Map<String, Value>, min: i64, max: i64) {
    out.remove("format");
    out.insert("minimum".into(), json!(min));
    out.insert("maximum".into(), json!(max));
}

/// Validators for the component schemas of each version.
struct Specs {
    validators: HashMap<(String, String), jsonschema::Validator>,
}

impl Specs {
    fn load() -> Result<Specs, String> {
        let mut validators = HashMap::new();
        for version in VERSIONS {
            let schemas = fixture(version)["schemas"].clone();
            let names: Vec<String> = schemas
                .as_object()
                .ok_or("fixture without schemas")?
                .keys()
                .cloned()
                .collect();
            let defs: serde_json::Map<String, Value> = names
                .iter()
                .map(|n| (n.clone(), strict(&schemas[n.as_str()])))
                .collect();
            for name in names {
                let root = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "$defs": defs,
                    "$ref": format!("#/$defs/{name}"),
                });
                let validator = jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .map_err(|e| format!("{version} {name}: {e}"))?;
                validators.insert((version.to_string(), name), validator);
            }
        }
        Ok(Specs { validators })
    }

    fn is_valid(&self, version: &str, schema: &str, instance: &Value) -> bool {
        self.validators
            .get(&(version.to_string(), schema.to_string()))
            .is_some_and(|v| v.is_valid(instance))
    }

    /// Panics with every violation when `instance` does not match `version`'s `schema`.
    fn check(&self, version: &str, schema: &str, instance: &Value) {
        let validator = self
            .validators
            .get(&(version.to_string(), schema.to_string()))
            .unwrap_or_else(|| panic!("no schema {schema} for {version}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{version} {schema} violations: {errors:#?}\nin {instance:#}"
        );
    }
}

#[test]
fn strict_schemas_reject_invented_and_foreign_fields() -> Result<(), String> {
    let specs = Specs::load()?;
    let session = json!({
        "id": "3f2c8a10-6d4e-4b1a-9c55-0e7a2b9d1f01", "type": "Vex", "state": "Working",
        "creationTime": "2025-03-04T08:01:12.4410021Z", "endTime": null, "result": "Success",
        "_links": {"self": {"href": "/v6/restoresessions/3f2c8a10-6d4e-4b1a-9c55-0e7a2b9d1f01"}},
    });
    assert!(specs.is_valid("v6", "RESTRestoreSession", &session));
    let mut with_etag = session.clone();
    with_etag["eTag"] = json!(3);
    assert!(
        !specs.is_valid("v6", "RESTRestoreSession", &with_etag),
        "eTag is v8-only"
    );
    assert!(specs.is_valid("v8", "RESTRestoreSession", &with_etag));
    let mut invented = with_etag.clone();
    invented["user"] = json!("alice");
    assert!(
        !specs.is_valid("v8", "RESTRestoreSession", &invented),
        "unknown fields are rejected"
    );
    let mut bad_id = session.clone();
    bad_id["id"] = json!("not-a-uuid");
    assert!(
        !specs.is_valid("v6", "RESTRestoreSession", &bad_id),
        "formats are checked"
    );
    let page = json!({"offset": 0, "limit": 30, "results": [], "totalCount": null});
    assert!(specs.is_valid("v7", "PageOfRESTRestoreSession", &page));
    assert!(
        !specs.is_valid("v8", "PageOfRESTRestoreSession", &page),
        "v8 pages have no totalCount"
    );
    let error = json!({"message": "x", "errorCode": "ResourceNotFound"});
    assert!(
        !specs.is_valid("v7", "RESTExceptionInfo", &error),
        "v7 only knows ProxyOffline"
    );
    assert!(specs.is_valid("v8", "RESTExceptionInfo", &error));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Client helpers

async fn start(cfg: SimConfig) -> Result<(SimHandle, Client), Box<dyn std::error::Error>> {
    let sim = SimHandle::start(cfg).await?;
    let client = client(sim.ca_pem().as_deref())?;
    Ok((sim, client))
}

/// A reqwest client on rustls/ring that trusts the simulator's self-signed certificate.
fn client(ca_pem: Option<&str>) -> Result<Client, Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.unwrap_or("").as_bytes()) {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Client::builder().tls_backend_preconfigured(tls).build()?)
}

fn form(version: &str, fields: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if version != "v6" {
        form.push(("disable_antiforgery_token".into(), "true".into()));
    }
    form
}

async fn post_token(
    client: &Client,
    sim: &SimHandle,
    path: &str,
    form: &[(String, String)],
) -> reqwest::Result<Response> {
    client
        .post(format!("{}{path}", sim.base_url()))
        .form(form)
        .send()
        .await
}

/// Password login; returns the token response.
async fn login(
    client: &Client,
    sim: &SimHandle,
    version: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let fields = form(
        version,
        &[
            ("grant_type", "password"),
            ("username", "svc-siem"),
            ("password", "sim-password"),
        ],
    );
    let response = post_token(client, sim, &format!("/{version}/token"), &fields).await?;
    assert_eq!(response.status(), StatusCode::OK);
    Ok(response.json().await?)
}

async fn get(
    client: &Client,
    sim: &SimHandle,
    token: &str,
    path: &str,
) -> reqwest::Result<Response> {
    client
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
}

async fn get_json(
    client: &Client,
    sim: &SimHandle,
    token: &str,
    path: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let response = get(client, sim, token, path).await?;
    let status = response.status();
    let body: Value = response.json().await?;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    Ok(body)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

fn assert_veeam_timestamp(value: &Value) {
    let Some(s) = value.as_str() else { return };
    let bytes = s.as_bytes();
    let shape_ok = s.len() == 28
        && bytes[19] == b'.'
        && s.ends_with('Z')
        && bytes[20..27].iter().all(u8::is_ascii_digit)
        && chrono::DateTime::parse_from_rfc3339(s).is_ok();
    assert!(shape_ok, "not a 7-digit UTC timestamp: {s}");
}

fn small() -> SimConfig {
    SimConfig {
        sessions: 6,
        events_per_session: 4,
        ..SimConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Conformance crawl

#[tokio::test]
async fn every_payload_of_every_version_matches_the_spec() -> TestResult {
    let specs = Specs::load()?;
    let (sim, client) = start(SimConfig {
        seed: 7,
        sessions: 12,
        events_per_session: 6,
        ..SimConfig::default()
    })
    .await?;
    for _ in 0..3 {
        sim.tick();
    }
    for version in VERSIONS {
        let token = login(&client, &sim, version).await?;
        specs.check(version, "OAuthTokenResponse", &token);
        assert_eq!(text(&token, "token_type"), "bearer");
        assert_eq!(token["expires_in"], json!(3600));
        assert!(
            !text(&token, "access_token").contains('.'),
            "tokens are opaque, not JWTs"
        );
        let access = text(&token, "access_token").to_string();

        let instance = get_json(
            &client,
            &sim,
            &access,
            &format!("/{version}/ServiceInstance"),
        )
        .await?;
        specs.check(version, "RESTServiceInstance", &instance);

        let mut listing = Vec::new();
        for limit in [Some(1), Some(5), None, Some(10_000)] {
            listing = crawl_sessions(&specs, &client, &sim, &access, version, limit).await?;
            assert_eq!(
                listing.len(),
                sim.session_count(),
                "{version} limit {limit:?}"
            );
        }
        let ids: HashSet<&str> = listing.iter().map(|s| text(s, "id")).collect();
        assert_eq!(ids.len(), listing.len(), "session ids are unique");

        let mut events = 0;
        for session in &listing {
            events += check_session(&specs, &client, &sim, &access, version, session).await?;
        }
        assert_eq!(
            events,
            sim.event_count(),
            "{version}: every event is reachable"
        );
    }
    let health = client
        .get(format!("{}/v8/Health", sim.base_url()))
        .send()
        .await?;
    assert_eq!(health.status(), StatusCode::OK);
    specs.check("v8", "RESTHealthReport", &health.json().await?);
    assert_eq!(sim.stats().violations, Vec::<String>::new());
    sim.shutdown().await;
    Ok(())
}

/// Follows offsets to the end of `/RestoreSessions`, validating every page.
async fn crawl_sessions(
    specs: &Specs,
    client: &Client,
    sim: &SimHandle,
    token: &str,
    version: &str,
    limit: Option<usize>,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let mut sessions = Vec::new();
    let mut offset = 0;
    loop {
        let limit_query = limit.map(|l| format!("&limit={l}")).unwrap_or_default();
        let path = format!("/{version}/RestoreSessions?offset={offset}{limit_query}");
        let page = get_json(client, sim, token, &path).await?;
        specs.check(version, "PageOfRESTRestoreSession", &page);
        check_page_envelope(version, &page, offset, limit.unwrap_or(30));
        let results = page["results"].as_array().cloned().unwrap_or_default();
        for session in &results {
            specs.check(version, "RESTRestoreSession", session);
            assert_eq!(
                version == "v8",
                session.get("eTag").is_some(),
                "{version} eTag"
            );
        }
        let full = results.len() == limit.unwrap_or(30);
        offset += results.len();
        sessions.extend(results);
        if !full {
            break;
        }
    }
    let created: Vec<&str> = sessions.iter().map(|s| text(s, "creationTime")).collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "{version}: newest first"
    );
    Ok(sessions)
}

fn check_page_envelope(version: &str, page: &Value, offset: usize, limit: usize) {
    assert_eq!(page["offset"], json!(offset));
    assert_eq!(page["limit"], json!(limit));
    assert_eq!(
        version != "v8",
        page.get("totalCount").is_some(),
        "{version} totalCount presence"
    );
    if version != "v8" {
        assert_eq!(page["totalCount"], Value::Null);
    }
    let own = page["_links"]["self"]["href"].as_str().unwrap_or_default();
    assert!(
        own.starts_with(&format!("/{version}/")),
        "relative self link: {own}"
    );
    assert!(
        own.contains(&format!("offset={offset}&limit={limit}")),
        "self link {own}"
    );
    let count = page["results"].as_array().map_or(0, Vec::len);
    if count < limit {
        assert!(
            page["_links"].get("next").is_none(),
            "no next link on the last page"
        );
    }
}

/// Validates one session, its single GET and all its events; returns its event count.
async fn check_session(
    specs: &Specs,
    client: &Client,
    sim: &SimHandle,
    token: &str,
    version: &str,
    session: &Value,
) -> Result<usize, Box<dyn std::error::Error>> {
    let id = text(session, "id");
    for key in ["creationTime", "endTime"] {
        assert_veeam_timestamp(&session[key]);
    }
    assert_eq!(session["state"] == "Working", session["endTime"].is_null());
    let single = get_json(
        client,
        sim,
        token,
        &format!("/{version}/RestoreSessions/{id}"),
    )
    .await?;
    specs.check(version, "RESTRestoreSession", &single);
    assert_eq!(&single, session);

    let events = crawl_events(specs, client, sim, token, version, id).await?;
    let orders: Vec<u64> = events.iter().filter_map(|e| e["order"].as_u64()).collect();
    assert_eq!(
        orders,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "orders ascend from 0"
    );
    assert_eq!(events[0]["type"], "None");
    assert_eq!(events[0]["title"], "Restore session started");
    let stopped = session["state"] == "Stopped";
    let last = &events[events.len() - 1];
    assert_eq!(
        stopped,
        last["title"] == "Restore session stopped",
        "stop marker iff stopped"
    );
    for event in &events {
        assert_veeam_timestamp(&event["startTime"]);
        assert_veeam_timestamp(&event["endTime"]);
        let is_item = event["type"] != "None";
        assert_eq!(
            version == "v8" && is_item,
            event.get("organizationId").is_some(),
            "{version} v8 ids"
        );
    }
    let pick = &events[events.len() / 2];
    let path = format!(
        "/{version}/RestoreSessions/{id}/Events/{}",
        text(pick, "id")
    );
    let one = get_json(client, sim, token, &path).await?;
    specs.check(version, "RESTRestoreSessionEvent", &one);
    assert_eq!(&one, pick);
    Ok(events.len())
}

async fn crawl_events(
    specs: &Specs,
    client: &Client,
    sim: &SimHandle,
    token: &str,
    version: &str,
    id: &str,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let (mut events, mut offset, limit) = (Vec::new(), 0, 4);
    loop {
        let path = format!("/{version}/RestoreSessions/{id}/Events?limit={limit}&offset={offset}");
        let page = get_json(client, sim, token, &path).await?;
        specs.check(version, "PageOfRESTRestoreSessionEvent", &page);
        check_page_envelope(version, &page, offset, limit);
        let results = page["results"].as_array().cloned().unwrap_or_default();
        for event in &results {
            specs.check(version, "RESTRestoreSessionEvent", event);
        }
        let full = results.len() == limit;
        offset += results.len();
        events.extend(results);
        if !full {
            return Ok(events);
        }
    }
}

#[tokio::test]
async fn large_event_pages_are_served_whole() -> TestResult {
    let specs = Specs::load()?;
    let cfg = SimConfig {
        tls: false,
        sessions: 100,
        events_per_session: 1000,
        ..SimConfig::default()
    };
    let (sim, client) = start(cfg).await?;
    assert!(sim.base_url().starts_with("http://") && sim.ca_pem().is_none());
    assert!(sim.event_count() > 50_000);
    let token = login(&client, &sim, "v8").await?;
    let access = text(&token, "access_token");
    let sessions = get_json(
        &client,
        &sim,
        access,
        "/v8/RestoreSessions?limit=1&offset=50",
    )
    .await?;
    let id = text(&sessions["results"][0], "id");
    let page = get_json(
        &client,
        &sim,
        access,
        &format!("/v8/RestoreSessions/{id}/Events?limit=1000"),
    )
    .await?;
    specs.check("v8", "PageOfRESTRestoreSessionEvent", &page);
    assert!(page["results"].as_array().is_some_and(|r| r.len() > 500));
    sim.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn bad_password_missing_bearer_and_unknown_version() -> TestResult {
    let specs = Specs::load()?;
    let (sim, client) = start(small()).await?;
    let bad = form(
        "v8",
        &[
            ("grant_type", "password"),
            ("username", "svc-siem"),
            ("password", "nope"),
        ],
    );
    let response = post_token(&client, &sim, "/v8/token", &bad).await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "The user name or password is incorrect."})
    );

    for version in VERSIONS {
        let response = client
            .get(format!("{}/{version}/RestoreSessions", sim.base_url()))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{version}");
        let body: Value = response.json().await?;
        specs.check(version, "RESTExceptionInfo", &body);
        assert_eq!(
            body["message"],
            "Authorization has been denied for this request."
        );
    }
    let probe = client
        .get(format!("{}/v5/ServiceInstance", sim.base_url()))
        .send()
        .await?;
    assert_eq!(probe.status(), StatusCode::NOT_FOUND);

    let stats = sim.stats();
    assert_eq!(
        (
            stats.token_failures,
            stats.unauthorized,
            stats.password_logins
        ),
        (1, 3, 0)
    );
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn expired_access_token_then_refresh_rotation() -> TestResult {
    let specs = Specs::load()?;
    let (sim, client) = start(SimConfig {
        token_ttl: Duration::from_millis(1000),
        ..small()
    })
    .await?;
    let token = login(&client, &sim, "v7").await?;
    assert_eq!(token["expires_in"], json!(1));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired = get(
        &client,
        &sim,
        text(&token, "access_token"),
        "/v7/RestoreSessions",
    )
    .await?;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);

    let old_refresh = text(&token, "refresh_token");
    let refresh = form(
        "v7",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", old_refresh),
        ],
    );
    let response = post_token(&client, &sim, "/v7/token", &refresh).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let renewed: Value = response.json().await?;
    specs.check("v7", "OAuthTokenResponse", &renewed);
    assert_ne!(
        text(&renewed, "refresh_token"),
        old_refresh,
        "refresh tokens rotate"
    );
    let page = get(
        &client,
        &sim,
        text(&renewed, "access_token"),
        "/v7/RestoreSessions",
    )
    .await?;
    assert_eq!(page.status(), StatusCode::OK);

    let reused = post_token(&client, &sim, "/v7/token", &refresh).await?;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let body: Value = reused.json().await?;
    assert_eq!(body["error"], "invalid_grant");

    let stats = sim.stats();
    assert_eq!(
        (
            stats.password_logins,
            stats.refreshes,
            stats.token_failures,
            stats.unauthorized
        ),
        (1, 1, 1, 1)
    );
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    let logout = client
        .post(format!("{}/v7/token/logout", sim.base_url()))
        .bearer_auth(text(&renewed, "access_token"))
        .send()
        .await?;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let after = get(
        &client,
        &sim,
        text(&renewed, "access_token"),
        "/v7/RestoreSessions",
    )
    .await?;
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "logout revokes the token"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn token_endpoint_is_throttled_per_client() -> TestResult {
    // A per-minute window: the test cannot straddle a window edge the way it could at 1/s.
    let throttle = Throttle {
        per_second: 0,
        per_minute: 2,
        per_hour: 1500,
        exempt_loopback: false,
    };
    let (sim, client) = start(SimConfig {
        throttle: Some(throttle),
        ..small()
    })
    .await?;
    login(&client, &sim, "v8").await?;
    login(&client, &sim, "v8").await?;
    let fields = form(
        "v8",
        &[
            ("grant_type", "password"),
            ("username", "svc-siem"),
            ("password", "sim-password"),
        ],
    );
    let response = post_token(&client, &sim, "/v8/token", &fields).await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::parse::<u64>);
    assert!(
        matches!(retry_after, Some(Ok(1..=60))),
        "Retry-After: {retry_after:?}"
    );
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!("API calls quota exceeded! maximum admitted 2 per Minute.")
    );
    assert_eq!((sim.stats().throttled, sim.stats().password_logins), (1, 2));
    sim.shutdown().await;

    let exempt = Throttle {
        exempt_loopback: true,
        ..Throttle::default()
    };
    let (sim, client) = start(SimConfig {
        throttle: Some(exempt),
        ..small()
    })
    .await?;
    for _ in 0..3 {
        login(&client, &sim, "v8").await?;
    }
    assert_eq!(sim.stats().throttled, 0);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn antiforgery_flag_is_checked_per_version() -> TestResult {
    let (sim, client) = start(small()).await?;
    let plain = [
        ("grant_type", "password"),
        ("username", "svc-siem"),
        ("password", "sim-password"),
    ];
    let without: Vec<(String, String)> = plain
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let response = post_token(&client, &sim, "/v8/token", &without).await?;
    assert_eq!(response.status(), StatusCode::OK, "still answered");
    let violations = sim.stats().violations;
    assert!(
        violations.len() == 1 && violations[0].contains("disable_antiforgery_token"),
        "{violations:?}"
    );

    let mut with_flag = without.clone();
    with_flag.push(("disable_antiforgery_token".into(), "true".into()));
    let response = post_token(&client, &sim, "/v6/Token", &with_flag).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        sim.stats().violations.len(),
        2,
        "the field does not exist in v6"
    );

    let json_body = json!({"grant_type": "password", "username": "svc-siem", "password": "sim-password", "disable_antiforgery_token": true});
    let response = client
        .post(format!("{}/v7/token", sim.base_url()))
        .json(&json_body)
        .send()
        .await?;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "JSON bodies are accepted too"
    );
    assert_eq!(sim.stats().violations.len(), 2);
    sim.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Routing, parameters and errors

#[tokio::test]
async fn unknown_ids_get_404_in_each_versions_error_shape() -> TestResult {
    let specs = Specs::load()?;
    let (sim, client) = start(small()).await?;
    let missing = "00000000-0000-4000-8000-000000000000";
    for version in VERSIONS {
        let token = login(&client, &sim, version).await?;
        let access = text(&token, "access_token");
        let response = get(
            &client,
            &sim,
            access,
            &format!("/{version}/RestoreSessions/{missing}"),
        )
        .await?;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: Value = response.json().await?;
        specs.check(version, "RESTExceptionInfo", &body);
        let expected_code = match version {
            "v8" => Some(json!("ResourceNotFound")),
            "v7" => Some(Value::Null),
            _ => None,
        };
        assert_eq!(body.get("errorCode").cloned(), expected_code, "{version}");

        let sessions = get_json(
            &client,
            &sim,
            access,
            &format!("/{version}/RestoreSessions?limit=1"),
        )
        .await?;
        let id = text(&sessions["results"][0], "id");
        let path = format!("/{version}/RestoreSessions/{id}/Events/{missing}");
        assert_eq!(
            get(&client, &sim, access, &path).await?.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert!(sim.stats().violations.is_empty());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn paths_and_query_keys_are_case_insensitive() -> TestResult {
    let (sim, client) = start(SimConfig {
        sessions: 10,
        ..small()
    })
    .await?;
    let token = login(&client, &sim, "v6").await?;
    let access = text(&token, "access_token");
    let all = get_json(&client, &sim, access, "/v6/restoresessions?LIMIT=100").await?;
    let all = all["results"].as_array().cloned().unwrap_or_default();
    let pivot = text(&all[4], "creationTime").to_string();

    for key in ["startTimeFrom", "StartTimeFrom", "starttimeFrom"] {
        let path = format!("/V6/RESTORESESSIONS?{key}={pivot}&limit=100");
        let page = get_json(&client, &sim, access, &path).await?;
        let found: Vec<&str> = page["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| text(s, "creationTime"))
            .collect();
        assert!(
            found.iter().all(|t| *t >= pivot.as_str()),
            "{key}: only sessions at or after the bound"
        );
        assert!(
            found.contains(&pivot.as_str()),
            "{key}: the bound is inclusive"
        );
        assert_eq!(found.len(), 5, "{key}");
    }
    let id = text(&all[0], "id");
    let events = get_json(
        &client,
        &sim,
        access,
        &format!("/v6/RestoreSessions/{}/EVENTS", id.to_uppercase()),
    )
    .await?;
    assert!(events["results"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(
        sim.stats().violations.is_empty(),
        "{:?}",
        sim.stats().violations
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn version_specific_parameters_and_validation() -> TestResult {
    let specs = Specs::load()?;
    let (sim, client) = start(SimConfig {
        sessions: 9,
        ..small()
    })
    .await?;
    let v6 = login(&client, &sim, "v6").await?;
    let response = get(
        &client,
        &sim,
        text(&v6, "access_token"),
        "/v6/RestoreSessions?orderAsc=true",
    )
    .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    specs.check("v6", "RESTExceptionInfo", &response.json().await?);
    let violations = sim.stats().violations;
    assert!(
        violations.len() == 1 && violations[0].contains("orderAsc"),
        "{violations:?}"
    );

    let v8 = login(&client, &sim, "v8").await?;
    let access = text(&v8, "access_token");
    let ascending = get_json(
        &client,
        &sim,
        access,
        "/v8/RestoreSessions?orderAsc=true&orderBy=CreationTime",
    )
    .await?;
    let created: Vec<&str> = ascending["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| text(s, "creationTime"))
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] <= w[1]),
        "orderAsc=true is oldest first"
    );
    let ended = get_json(
        &client,
        &sim,
        access,
        "/v8/RestoreSessions?endTimeFrom=2000-01-01T00:00:00Z",
    )
    .await?;
    let results = ended["results"].as_array().cloned().unwrap_or_default();
    assert!(
        results.iter().all(|s| s["state"] == "Stopped") && results.len() == 7,
        "working sessions have no end"
    );

    for bad in [
        "limit=10001",
        "limit=0",
        "offset=-1",
        "limit=ten",
        "startTimeFrom=yesterday",
        "orderBy=Name",
    ] {
        let response = get(&client, &sim, access, &format!("/v8/RestoreSessions?{bad}")).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await?;
        specs.check("v8", "RESTExceptionInfo", &body);
        assert_eq!(body["errorCode"], "ParameterValidationFailure", "{bad}");
    }
    assert_eq!(sim.stats().violations.len(), 7);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn injected_faults_are_503_and_counted() -> TestResult {
    let specs = Specs::load()?;
    let (sim, client) = start(small()).await?;
    let token = login(&client, &sim, "v8").await?;
    let access = text(&token, "access_token");
    sim.set_error_rate(1.0);
    let response = get(&client, &sim, access, "/v8/RestoreSessions").await?;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    specs.check("v8", "RESTExceptionInfo", &response.json().await?);
    sim.set_error_rate(0.0);
    assert_eq!(
        get(&client, &sim, access, "/v8/RestoreSessions")
            .await?
            .status(),
        StatusCode::OK
    );
    let stats = sim.stats();
    assert_eq!((stats.injected_errors, stats.data_requests), (1, 2));
    sim.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Live data

#[tokio::test]
async fn tick_adds_sessions_and_events_deterministically() -> TestResult {
    let cfg = SimConfig {
        tls: false,
        seed: 1234,
        ..small()
    };
    let sim = SimHandle::start(cfg.clone()).await?;
    let twin = SimHandle::start(cfg).await?;
    let (sessions, events, before) = (sim.session_count(), sim.event_count(), sim.event_ids());
    for _ in 0..10 {
        sim.tick();
        twin.tick();
    }
    assert_eq!(sim.session_count(), sessions + 10);
    assert!(sim.event_count() > events + 10);
    let after = sim.event_ids();
    assert_eq!(after.len(), sim.event_count());
    assert_eq!(
        after.iter().collect::<HashSet<_>>().len(),
        after.len(),
        "event ids stay unique"
    );
    let kept: HashSet<&String> = after.iter().collect();
    assert!(
        before.iter().all(|id| kept.contains(id)),
        "existing events never disappear"
    );
    assert_eq!(after, twin.event_ids(), "same seed, same ticks, same ids");

    let other = SimHandle::start(SimConfig {
        tls: false,
        seed: 4321,
        ..small()
    })
    .await?;
    assert_ne!(other.event_ids(), before);
    for handle in [sim, twin, other] {
        handle.shutdown().await;
    }
    Ok(())
}
