//! [`Shared`]: a part of an event that many events carry unchanged (a VB365 restore
//! session's `veeam.restore_session`, `user`, `client`, `related`, `source`), built and
//! JSON-encoded once.
//!
//! Owns: keeping the value and its JSON text together, and writing that text as is when an
//! event is serialized with serde_json (which every sink does: the router encodes each event
//! once), so a session's thousands of events don't each encode the same fields again.
//! Must not: let the text and the value differ (both come from [`Shared::new`], the text
//! is private), or change the JSON an event serializes to: serde_json's compact encoding
//! of the value, byte for byte (tested below).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A value shared by many events, with its compact JSON encoded once. Reads like the
/// value (`Deref`); compares, prints and deserializes as the value.
pub struct Shared<T>(Arc<Inner<T>>);

#[derive(Clone)]
struct Inner<T> {
    value: T,
    /// `None` only if the value could not be encoded (then it is encoded per event, and
    /// the error surfaces there, as it would without sharing).
    json: Option<Box<RawValue>>,
}

impl<T: Clone> Shared<T> {
    /// The value, to change: copied first if other events share it, and encoded per
    /// event from then on (the text no longer matches it).
    pub fn make_mut(this: &mut Self) -> &mut T {
        let inner = Arc::make_mut(&mut this.0);
        inner.json = None;
        &mut inner.value
    }
}

impl<T: Serialize> Shared<T> {
    pub fn new(value: T) -> Self {
        let json = serde_json::value::to_raw_value(&value).ok();
        Shared(Arc::new(Inner { value, json }))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T: Serialize> From<T> for Shared<T> {
    fn from(value: T) -> Self {
        Shared::new(value)
    }
}

impl<T: Serialize + Default> Default for Shared<T> {
    fn default() -> Self {
        Shared::new(T::default())
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.value.fmt(f)
    }
}

/// serde_json writes the text as is (and `serde_json::to_value` parses it back); the
/// output contract is JSON, and no other format serializes an `Event`.
impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0.json {
            Some(json) => json.serialize(serializer),
            None => self.0.value.serialize(serializer),
        }
    }
}

impl<'de, T: Serialize + Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Shared::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Related, RestoreSession};

    #[test]
    fn encodes_exactly_like_the_value() {
        let session = RestoreSession {
            id: "s-1".into(),
            name: Some("Exchange \"restore\"\n\u{1}é".into()),
            initiated_by: Some("LAB\\alice".into()),
            etag: Some(-3),
            ..RestoreSession::default()
        };
        let shared = Shared::new(session.clone());
        let inline = serde_json::to_string(&session).unwrap();
        assert_eq!(serde_json::to_string(&shared).unwrap(), inline);
        // Inside a larger document, and through `to_value`.
        assert_eq!(
            serde_json::to_string(&[shared.clone(), shared.clone()]).unwrap(),
            serde_json::to_string(&[session.clone(), session.clone()]).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&shared).unwrap(),
            serde_json::to_value(&session).unwrap()
        );
        let back: Shared<RestoreSession> = serde_json::from_str(&inline).unwrap();
        assert_eq!(back, shared);
        assert_eq!(back.id, "s-1");
        assert_eq!(format!("{shared:?}"), format!("{session:?}"));
        let empty = Shared::<Related>::default();
        assert!(empty.is_empty());
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"user":[],"hosts":[],"ip":[]}"#
        );
    }

    #[test]
    fn a_changed_copy_encodes_the_change_and_leaves_the_original_alone() {
        let shared = Shared::new(RestoreSession {
            id: "s-1".into(),
            details: Some("long".into()),
            ..RestoreSession::default()
        });
        let mut copy = shared.clone();
        *Shared::make_mut(&mut copy).details.as_mut().unwrap() = "cut".into();
        assert!(
            serde_json::to_string(&copy)
                .unwrap()
                .contains(r#""details":"cut""#)
        );
        assert!(
            serde_json::to_string(&shared)
                .unwrap()
                .contains(r#""details":"long""#)
        );
    }
}
