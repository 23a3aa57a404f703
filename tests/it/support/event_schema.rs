//! Validating output events against `schemas/event.schema.json`. The schema is compiled
//! once (draft 2020-12, `format` assertions on, so `date-time` and IP formats are checked).

use std::sync::OnceLock;

/// The compiled event schema, built on first use.
pub fn event_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema = veeam_siem::schema::event_schema();
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("schemas/event.schema.json does not compile: {e}"))
    })
}

/// Validate one serialized event. `Err` lists every violation, one per line, as
/// `<instance path>: <message>` (the path is `""` for the root object).
pub fn validate_event(v: &serde_json::Value) -> Result<(), String> {
    let errors: Vec<String> = event_validator()
        .iter_errors(v)
        .map(|e| format!("{:?}: {e}", e.instance_path().as_str()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Panic with every violation (and the event itself) unless `v` validates.
#[track_caller]
pub fn assert_valid_event(v: &serde_json::Value) {
    if let Err(errors) = validate_event(v) {
        let pretty = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        panic!(
            "event does not match schemas/event.schema.json:\n{errors}\n--- event ---\n{pretty}"
        );
    }
}
