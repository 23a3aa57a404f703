//! The row shape: how one ECS event becomes one row of the Log Analytics table.
//!
//! Log Analytics tables have flat, typed columns, so the fields the analytics rules use
//! become columns of their own (`TimeGenerated` from `@timestamp`, `EventId` from
//! `event.id`, `UserName` from `user.name`...), and the whole event travels as the dynamic
//! `Event` column (every other field stays reachable as `Event.veeam.log.status` etc.).
//! [`COLUMNS`] is the one list of (name, type): the DCR's `streamDeclarations` and the
//! table schema in `examples/siem/sentinel/` must match it, and the tests check that they
//! do. Every row carries every column (`null` when the event has no such field).
//!
//! Pure: no I/O, no clock.

use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::Event;

/// The stream's columns, in row order, with their Log Analytics types as written in a
/// DCR's `streamDeclarations` (`string`, `long`, `boolean`, `datetime`, `dynamic`).
pub const COLUMNS: &[(&str, &str)] = &[
    ("TimeGenerated", "datetime"),
    ("EventId", "string"),
    ("EventAction", "string"),
    ("EventOutcome", "string"),
    ("EventDataset", "string"),
    ("Message", "string"),
    ("SourceId", "string"),
    ("ObserverHostname", "string"),
    ("UserName", "string"),
    ("UserDomain", "string"),
    ("ClientAddress", "string"),
    ("ClientIp", "string"),
    ("GatewayIp", "string"),
    ("OrganizationName", "string"),
    ("OrganizationId", "string"),
    ("RestoreSessionId", "string"),
    ("InitiatedBy", "string"),
    ("InitiatedByIsOrganization", "boolean"),
    ("ClientHost", "string"),
    ("ItemName", "string"),
    ("ItemType", "string"),
    ("ItemSizeBytes", "long"),
    ("ItemSource", "string"),
    ("ItemTarget", "string"),
    ("JobId", "string"),
    ("JobName", "string"),
    ("JobSessionId", "string"),
    ("JobSessionStatus", "string"),
    ("LogObjectType", "string"),
    ("LogObjectName", "string"),
    ("Event", "dynamic"),
];

/// One row. Field order and names are [`COLUMNS`] (PascalCase of the field name).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Row<'a> {
    /// `@timestamp`, RFC 3339 in UTC.
    pub time_generated: String,
    /// `event.id`: Veeam's stable id; the key to de-duplicate on in KQL.
    pub event_id: &'a str,
    pub event_action: &'a str,
    pub event_outcome: &'a str,
    pub event_dataset: &'a str,
    pub message: &'a str,
    /// `labels.source_id`: the veeam-siem source that read the event.
    pub source_id: &'a str,
    pub observer_hostname: &'a str,
    pub user_name: Option<&'a str>,
    pub user_domain: Option<&'a str>,
    /// `client.address`: the machine the restore was driven from.
    pub client_address: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    /// `source.ip`, else `veeam.gateway.ip`: the Cloud Connect gateway.
    pub gateway_ip: Option<&'a str>,
    pub organization_name: Option<&'a str>,
    pub organization_id: Option<&'a str>,
    pub restore_session_id: Option<&'a str>,
    /// `veeam.restore_session.initiated_by` (raw).
    pub initiated_by: Option<&'a str>,
    pub initiated_by_is_organization: Option<bool>,
    /// `veeam.restore_session.client_host` (VB365's raw `clientHost`).
    pub client_host: Option<&'a str>,
    pub item_name: Option<&'a str>,
    pub item_type: Option<&'a str>,
    pub item_size_bytes: Option<i64>,
    pub item_source: Option<&'a str>,
    pub item_target: Option<&'a str>,
    pub job_id: Option<&'a str>,
    pub job_name: Option<&'a str>,
    pub job_session_id: Option<&'a str>,
    pub job_session_status: Option<&'a str>,
    pub log_object_type: Option<&'a str>,
    pub log_object_name: Option<&'a str>,
    /// The whole event, as the pipeline serialized it.
    pub event: &'a RawValue,
}

/// The row of `event`, whose JSON serialization is `json` (the pipeline's, reused as the
/// `Event` column). Fails only when `json` is not JSON.
pub fn row<'a>(event: &'a Event, json: &'a str) -> Result<Row<'a>, serde_json::Error> {
    let whole: &RawValue = serde_json::from_str(json)?;
    let v = &event.veeam;
    let session = v.restore_session.as_ref();
    let item = v.restore_event.as_ref();
    let job = v.job.as_ref();
    let job_session = v.job_session.as_ref();
    let log = v.log.as_ref();
    let user = event.user.as_ref();
    let client = event.client.as_ref();
    let org = event.organization.as_ref();
    Ok(Row {
        time_generated: event.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        event_id: &event.event.id,
        event_action: &event.event.action,
        event_outcome: &event.event.outcome,
        event_dataset: &event.event.dataset,
        message: &event.message,
        source_id: &event.labels.source_id,
        observer_hostname: &event.observer.hostname,
        user_name: user.and_then(|u| u.name.as_deref()),
        user_domain: user.and_then(|u| u.domain.as_deref()),
        client_address: client.and_then(|c| c.address.as_deref()),
        client_ip: client.and_then(|c| c.ip.as_deref()),
        gateway_ip: event
            .source
            .as_ref()
            .and_then(|s| s.ip.as_deref())
            .or(v.gateway.as_ref().map(|g| g.ip.as_str())),
        organization_name: org.and_then(|o| o.name.as_deref()),
        organization_id: org.and_then(|o| o.id.as_deref()),
        restore_session_id: session.map(|s| s.id.as_str()),
        initiated_by: session.and_then(|s| s.initiated_by.as_deref()),
        initiated_by_is_organization: session.map(|s| s.initiated_by_is_organization),
        client_host: session.and_then(|s| s.client_host.as_deref()),
        item_name: item.and_then(|i| i.item_name.as_deref()),
        item_type: item.and_then(|i| i.item_type.as_deref()),
        item_size_bytes: item.and_then(|i| i.item_size_bytes),
        item_source: item.and_then(|i| i.source.as_deref()),
        item_target: item.and_then(|i| i.target.as_deref()),
        job_id: job.map(|j| j.id.as_str()),
        job_name: job.and_then(|j| j.name.as_deref()),
        job_session_id: job_session.map(|s| s.id.as_str()),
        job_session_status: job_session.and_then(|s| s.status.as_deref()),
        log_object_type: log.and_then(|l| l.object_type.as_deref()),
        log_object_name: log.and_then(|l| l.object_name.as_deref()),
        event: whole,
    })
}

/// Append the row of `event` as JSON to `out`.
pub fn encode_row(event: &Event, json: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    serde_json::to_writer(out, &row(event, json)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn sample() -> Event {
        let text = r#"{
          "@timestamp": "2026-03-04T21:05:40.100Z",
          "ecs": {"version": "9.4.0"},
          "message": "Item restored",
          "event": {"kind": "event", "category": ["file"], "type": ["access"],
                    "action": "item-exported", "outcome": "success", "id": "e-1",
                    "created": "2026-03-04T21:05:41Z", "dataset": "veeam.vbo_restore",
                    "module": "veeam", "provider": "vb365"},
          "observer": {"vendor": "Veeam", "product": "Veeam Backup for Microsoft 365", "hostname": "vbo.example.net"},
          "labels": {"source_id": "vbo_main"},
          "organization": {"name": "contoso.onmicrosoft.com"},
          "user": {"name": "alice", "domain": "contoso.com"},
          "client": {"address": "ws-17"},
          "source": {"ip": "203.0.113.7"},
          "veeam": {
            "restore_session": {"id": "s-1", "initiated_by": "contoso\\alice", "initiated_by_is_organization": false, "client_host": "ws-17"},
            "restore_event": {"order": 3, "item_name": "Inbox", "item_size_bytes": 4096, "target": "C:\\export\\alice.pst"}
          }
        }"#;
        serde_json::from_str(text).unwrap()
    }

    fn encoded(event: &Event) -> Value {
        let json = serde_json::to_string(event).unwrap();
        let mut out = Vec::new();
        encode_row(event, &json, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_row_has_exactly_the_columns_in_order() {
        let text = {
            let e = sample();
            let json = serde_json::to_string(&e).unwrap();
            let mut out = Vec::new();
            encode_row(&e, &json, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        // serde_json keeps the struct's order in the text: check it there.
        let mut at = 0;
        for (name, _) in COLUMNS {
            let needle = format!("\"{name}\":");
            let found = text[at..]
                .find(&needle)
                .unwrap_or_else(|| panic!("{name} missing or out of order in {text}"));
            at += found + needle.len();
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_object().unwrap().len(), COLUMNS.len());
    }

    #[test]
    fn values_follow_the_documented_flattening() {
        let e = sample();
        let v = encoded(&e);
        assert_eq!(v["TimeGenerated"], "2026-03-04T21:05:40.100Z");
        assert_eq!(v["EventId"], "e-1");
        assert_eq!(v["EventAction"], "item-exported");
        assert_eq!(v["EventOutcome"], "success");
        assert_eq!(v["EventDataset"], "veeam.vbo_restore");
        assert_eq!(v["SourceId"], "vbo_main");
        assert_eq!(v["UserName"], "alice");
        assert_eq!(v["UserDomain"], "contoso.com");
        assert_eq!(v["ClientAddress"], "ws-17");
        assert_eq!(v["GatewayIp"], "203.0.113.7");
        assert_eq!(v["OrganizationName"], "contoso.onmicrosoft.com");
        assert_eq!(v["RestoreSessionId"], "s-1");
        assert_eq!(v["InitiatedByIsOrganization"], false);
        assert_eq!(v["ItemName"], "Inbox");
        assert_eq!(v["ItemSizeBytes"], 4096);
        assert_eq!(v["ItemTarget"], "C:\\export\\alice.pst");
        assert!(v["JobName"].is_null() && v["ClientIp"].is_null());
        // The whole event rides along, unchanged.
        let back: Event = serde_json::from_value(v["Event"].clone()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn values_match_their_declared_types() {
        let v = encoded(&sample());
        for (name, ty) in COLUMNS {
            let value = &v[*name];
            let ok = value.is_null()
                || match *ty {
                    "string" => value.is_string(),
                    "long" => value.is_i64(),
                    "boolean" => value.is_boolean(),
                    "datetime" => value
                        .as_str()
                        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
                    "dynamic" => true,
                    other => panic!("{name}: type {other} is not one the sink writes"),
                };
            assert!(ok, "{name} ({ty}) = {value}");
        }
    }

    #[test]
    fn the_gateway_falls_back_to_veeam_gateway_ip() {
        let mut e = sample();
        e.source = None;
        e.veeam.gateway = Some(crate::event::Gateway {
            ip: "198.51.100.2".into(),
        });
        assert_eq!(encoded(&e)["GatewayIp"], "198.51.100.2");
    }

    #[test]
    fn json_that_is_not_json_is_an_error() {
        assert!(row(&sample(), "{not json").is_err());
    }
}
