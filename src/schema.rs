//! The formal JSON Schema of the output event (`schemas/event.schema.json`), compiled into
//! the binary so `veeam-siem schema` can print it and tests can validate against it.
//!
//! Owns: nothing but access to the schema text. The schema must describe exactly what
//! [`crate::event::Event`] serializes to; `tests/it/schema.rs` checks both directions.

/// The JSON Schema (draft 2020-12) of one output event, as shipped in `schemas/`.
pub const EVENT_SCHEMA: &str = include_str!("../schemas/event.schema.json");

/// [`EVENT_SCHEMA`] parsed.
///
/// The text is compiled in and checked by this module's tests, so parsing cannot fail at
/// run time; a broken file is a build-time test failure, not a user-facing error.
pub fn event_schema() -> serde_json::Value {
    serde_json::from_str(EVENT_SCHEMA)
        .expect("schemas/event.schema.json is valid JSON (checked by schema::tests)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ECS_VERSION, MODULE, VENDOR, dataset, outcome};

    #[test]
    fn schema_parses_and_declares_draft_2020_12() {
        let schema = event_schema();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(schema["$id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(schema["title"].is_string());
    }

    #[test]
    fn schema_constants_match_the_code() {
        let schema = event_schema();
        let props = &schema["properties"];
        assert_eq!(props["ecs"]["properties"]["version"]["const"], ECS_VERSION);
        let event = &props["event"]["properties"];
        assert_eq!(event["module"]["const"], MODULE);
        assert_eq!(props["observer"]["properties"]["vendor"]["const"], VENDOR);
        assert_eq!(
            event["dataset"]["enum"],
            serde_json::json!([dataset::VBO_RESTORE, dataset::VDC_JOB_LOG])
        );
        assert_eq!(
            event["outcome"]["enum"],
            serde_json::json!([outcome::SUCCESS, outcome::FAILURE, outcome::UNKNOWN])
        );
    }
}
