//! [`Oldest`]: the oldest sessions of a VB365 v6/v7 listing, at most a fixed number.
//!
//! v6/v7 list restore sessions in no order, so the horizon can only follow what is shipped
//! when everything older has been seen: a listing pass keeps the oldest `cap` sessions it
//! meets (by `creationTime`), ships them oldest first, and when it had to leave newer ones
//! out, the source lists again from its new horizon for the rest. Memory stays at `cap`
//! sessions however long the listing is.
//! Owns: which sessions a pass keeps, and whether it left any out.
//! Must not: do I/O, or decide what is shipped (the poller skips sessions it has shipped
//! this cycle or finished before offering them).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use crate::map::vbo::RawRestoreSession;

/// The oldest sessions offered, at most `cap`, each once.
pub struct Oldest {
    cap: usize,
    heap: BinaryHeap<ByCreation>,
    ids: HashSet<String>,
    left_out: bool,
}

impl Oldest {
    /// `cap` is at least 1.
    pub fn new(cap: usize) -> Self {
        Oldest {
            cap: cap.max(1),
            heap: BinaryHeap::new(),
            ids: HashSet::new(),
            left_out: false,
        }
    }

    /// Keep `session` if it is among the oldest `cap` so far; the newest kept one makes
    /// room for it when full. A session kept already (listed twice by the overlap between
    /// listing pages) is ignored.
    pub fn offer(&mut self, session: RawRestoreSession) {
        if self.ids.contains(&session.id) {
            return;
        }
        if self.heap.len() >= self.cap {
            self.left_out = true;
            match self.heap.peek() {
                Some(newest) if session.creation_time < newest.0.creation_time => {
                    if let Some(out) = self.heap.pop() {
                        self.ids.remove(&out.0.id);
                    }
                }
                _ => return,
            }
        }
        self.ids.insert(session.id.clone());
        self.heap.push(ByCreation(session));
    }

    /// Whether a session was left out (or made room for an older one): everything kept is
    /// older than or as old as anything left out, and a later pass must list the rest.
    pub fn left_out(&self) -> bool {
        self.left_out
    }

    /// The sessions kept, oldest first.
    pub fn into_sessions(self) -> Vec<RawRestoreSession> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|ByCreation(s)| s)
            .collect()
    }
}

/// Ordered by `creationTime`, then id (a total order for the heap).
struct ByCreation(RawRestoreSession);

impl Ord for ByCreation {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .creation_time
            .cmp(&other.0.creation_time)
            .then_with(|| self.0.id.cmp(&other.0.id))
    }
}

impl PartialOrd for ByCreation {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ByCreation {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ByCreation {}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn session(id: &str, minute: u32) -> RawRestoreSession {
        let raw = format!(r#"{{"id":"{id}","creationTime":"2026-01-01T00:{minute:02}:00Z"}}"#);
        crate::map::vbo::decode_session(raw, Utc::now()).unwrap()
    }

    fn ids(o: Oldest) -> Vec<String> {
        o.into_sessions().into_iter().map(|s| s.id).collect()
    }

    #[test]
    fn keeps_the_oldest_in_order_and_says_when_it_left_some_out() {
        let mut o = Oldest::new(3);
        for (id, minute) in [("e", 5), ("a", 1), ("d", 4), ("a", 1), ("c", 3), ("f", 6)] {
            o.offer(session(id, minute));
        }
        assert!(o.left_out());
        assert_eq!(ids(o), ["a", "c", "d"]);

        let mut o = Oldest::new(3);
        for (id, minute) in [("b", 2), ("a", 1), ("b", 2)] {
            o.offer(session(id, minute));
        }
        assert!(!o.left_out());
        assert_eq!(ids(o), ["a", "b"]);
    }

    #[test]
    fn a_session_pushed_out_and_listed_again_stays_out() {
        let mut o = Oldest::new(2);
        for (id, minute) in [("c", 3), ("b", 2), ("a", 1), ("c", 3)] {
            o.offer(session(id, minute));
        }
        assert!(o.left_out());
        assert_eq!(ids(o), ["a", "b"]);
    }

    #[test]
    fn equal_times_left_out_are_as_new_as_the_newest_kept() {
        let mut o = Oldest::new(2);
        for id in ["x", "y", "z"] {
            o.offer(session(id, 7));
        }
        assert!(o.left_out());
        assert_eq!(ids(o).len(), 2);
    }
}
