//! The simulated server's state: restore sessions and their events, deterministic in the seed.
//!
//! A session stores only its profile and counters (event count, end time, result, eTag) plus
//! one small "segment" per batch of appended items, which anchors the items' timestamps.
//! Events are rebuilt on demand from (seed, session index, order), so 100 sessions of 1,000
//! events cost a few kilobytes. Timestamps are relative to the simulator's start time
//! (initial data) or to the wall clock at the `tick` that appended them.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::catalog::{self, EventKind, EventStatus, Item, Profile};
use super::rng::{Rng, Tag};

/// 100-nanosecond ticks (.NET resolution, the precision of every timestamp served).
const TICK_NS: i64 = 100;
const MILLISECOND: i64 = 10_000;
const MINUTE: i64 = 60_000 * MILLISECOND;
const HISTORY: TimeDelta = TimeDelta::days(3);
/// Items appended by one `tick` are spaced this far apart.
const LIVE_STEP: i64 = 10 * MILLISECOND;
/// Chance that a working session stops at a tick (after receiving its items).
const STOP_PROBABILITY: f64 = 0.3;
pub(crate) const STARTED_TITLE: &str = "Restore session started";
pub(crate) const STOPPED_TITLE: &str = "Restore session stopped";

/// `RESTRestoreSession.result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SessionResult {
    Success,
    Warning,
    Failed,
}

impl SessionResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionResult::Success => "Success",
            SessionResult::Warning => "Warning",
            SessionResult::Failed => "Failed",
        }
    }

    fn including(self, status: EventStatus) -> SessionResult {
        let event = match status {
            EventStatus::Failed => SessionResult::Failed,
            EventStatus::Warning => SessionResult::Warning,
            EventStatus::Success | EventStatus::Skipped => SessionResult::Success,
        };
        self.max(event)
    }
}

/// Items appended together: item `first + k` starts about `base + k * step`.
#[derive(Debug, Clone)]
struct Segment {
    first: u32,
    base: DateTime<Utc>,
    /// Spacing in 100 ns ticks (at least one millisecond).
    step: i64,
}

/// One restore session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) index: usize,
    pub(crate) profile: Profile,
    pub(crate) created: DateTime<Utc>,
    /// `None` while the session is working.
    pub(crate) ended: Option<DateTime<Utc>>,
    /// Number of events, markers included.
    pub(crate) events: u32,
    pub(crate) result: SessionResult,
    /// v8 `eTag`: bumped on every change.
    pub(crate) etag: i64,
    segments: Vec<Segment>,
}

impl Session {
    fn new(seed: u64, index: usize, created: DateTime<Utc>) -> Session {
        Session {
            index,
            profile: catalog::profile(seed, index),
            created,
            ended: None,
            events: 1, // the start marker
            result: SessionResult::Success,
            etag: 1,
            segments: Vec::new(),
        }
    }

    pub(crate) fn is_working(&self) -> bool {
        self.ended.is_none()
    }

    fn item_count(&self) -> u32 {
        self.events - 1 - u32::from(!self.is_working())
    }

    /// No event of this session starts or ends after this instant.
    fn quiet_after(&self) -> DateTime<Utc> {
        match (self.ended, self.segments.last()) {
            (Some(end), _) => end,
            (None, None) => self.created,
            (None, Some(seg)) => {
                let items = i64::from(self.item_count() + 1 - seg.first);
                seg.base + ticks(seg.step * items)
            }
        }
    }

    fn push_items(&mut self, seed: u64, count: u32, base: DateTime<Utc>, step: i64) {
        let first = self.item_count() + 1;
        self.segments.push(Segment {
            first,
            base,
            step: step.max(MILLISECOND),
        });
        for order in first..first + count {
            self.result = self
                .result
                .including(catalog::item_status(seed, self.index, order));
        }
        self.events += count;
        self.etag += 1;
    }

    fn stop(&mut self) {
        self.ended = Some(self.quiet_after() + ticks(MILLISECOND));
        self.events += 1;
        self.etag += 1;
    }

    /// Start time and duration (100 ns ticks) of item `order`.
    fn item_time(&self, seed: u64, order: u32) -> (DateTime<Utc>, i64) {
        let at = self.segments.partition_point(|s| s.first <= order);
        let Some(seg) = self.segments.get(at.saturating_sub(1)) else {
            return (self.created, 0);
        };
        let mut rng = Rng::keyed(seed, Tag::EventTime, &[self.index as u64, u64::from(order)]);
        let quarter = (seg.step / 4).max(1) as u64;
        let offset = seg.step * i64::from(order - seg.first) + rng.below(quarter) as i64;
        let duration = 1 + rng.below(quarter * 2 - 1) as i64;
        (seg.base + ticks(offset), duration)
    }
}

/// One restore-session event, built on demand.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) id: Uuid,
    pub(crate) order: u32,
    pub(crate) kind: EventKind,
    pub(crate) status: EventStatus,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    pub(crate) title: String,
    pub(crate) message: String,
    /// `None` for the start/stop markers.
    pub(crate) item: Option<Item>,
    /// Still in progress: served as `Running`, without `endTime` (`status` is what it
    /// will end as).
    pub(crate) running: bool,
}

impl Event {
    pub(crate) fn duration(&self) -> TimeDelta {
        self.end - self.start
    }
}

/// How to filter and order `GET /RestoreSessions`; bounds are inclusive.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionQuery {
    pub(crate) start_from: Option<DateTime<Utc>>,
    pub(crate) start_to: Option<DateTime<Utc>>,
    pub(crate) end_from: Option<DateTime<Utc>>,
    pub(crate) end_to: Option<DateTime<Utc>>,
    pub(crate) by_end_time: bool,
    pub(crate) ascending: bool,
}

impl SessionQuery {
    fn matches(&self, s: &Session) -> bool {
        let within = |t: DateTime<Utc>, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| {
            from.is_none_or(|f| t >= f) && to.is_none_or(|e| t <= e)
        };
        let end_ok = match s.ended {
            Some(end) => within(end, self.end_from, self.end_to),
            None => self.end_from.is_none() && self.end_to.is_none(),
        };
        within(s.created, self.start_from, self.start_to) && end_ok
    }
}

/// All sessions, in creation order (index = position).
#[derive(Debug)]
pub(crate) struct Dataset {
    seed: u64,
    sessions: Vec<Session>,
    by_id: HashMap<Uuid, usize>,
    ticks: u64,
    /// See `SimConfig::running_items`.
    running_items: bool,
}

impl Dataset {
    /// `count` sessions spread over the three days before `started`; the last
    /// `min(2, count / 3)` are still working.
    pub(crate) fn new(
        seed: u64,
        count: usize,
        events_per_session: usize,
        started: DateTime<Utc>,
    ) -> Dataset {
        let mut data = Dataset {
            seed,
            sessions: Vec::with_capacity(count),
            by_id: HashMap::new(),
            ticks: 0,
            running_items: false,
        };
        let working_from = count - (count / 3).min(2);
        for index in 0..count {
            let session = initial_session(
                seed,
                index,
                count,
                events_per_session,
                started,
                index < working_from,
            );
            data.push(session);
        }
        data
    }

    /// See `SimConfig::running_items`.
    pub(crate) fn with_running_items(mut self, on: bool) -> Dataset {
        self.running_items = on;
        self
    }

    fn push(&mut self, session: Session) {
        self.by_id.insert(session.profile.id, session.index);
        self.sessions.push(session);
    }

    /// One live step: every working session gains 1–3 items and may stop, then a new
    /// working session starts. Counts and ids depend only on the seed and the tick number.
    pub(crate) fn tick(&mut self, now: DateTime<Utc>) {
        self.ticks += 1;
        let (seed, tick) = (self.seed, self.ticks);
        let now = truncate(now);
        for session in self.sessions.iter_mut().filter(|s| s.is_working()) {
            let mut rng = Rng::keyed(seed, Tag::Tick, &[tick, session.index as u64]);
            let count = 1 + rng.below(3) as u32;
            let earliest = session.quiet_after() + ticks(MILLISECOND);
            let base = (now - ticks(LIVE_STEP * i64::from(count))).max(earliest);
            session.push_items(seed, count, base, LIVE_STEP);
            if rng.chance(STOP_PROBABILITY) {
                session.stop();
            }
        }
        let index = self.sessions.len();
        let created = match self.sessions.last() {
            Some(last) => now.max(last.created + ticks(MILLISECOND)),
            None => now,
        };
        self.push(Session::new(seed, index, created));
    }

    pub(crate) fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    pub(crate) fn find_session(&self, id: Uuid) -> Option<&Session> {
        self.by_id.get(&id).and_then(|&i| self.sessions.get(i))
    }

    /// Matching sessions, ordered as asked (working sessions count as ending last).
    pub(crate) fn query(&self, q: &SessionQuery) -> Vec<&Session> {
        let mut found: Vec<&Session> = self.sessions.iter().filter(|s| q.matches(s)).collect();
        if q.by_end_time {
            found.sort_by_key(|s| (s.ended.is_none(), s.ended, s.index));
        }
        if !q.ascending {
            found.reverse();
        }
        found
    }

    pub(crate) fn event_id(&self, session: &Session, order: u32) -> Uuid {
        Rng::keyed(
            self.seed,
            Tag::Event,
            &[session.index as u64, u64::from(order)],
        )
        .uuid()
    }

    /// Event `order` of `session`, or `None` past its end.
    pub(crate) fn event(&self, session: &Session, order: u32) -> Option<Event> {
        if order >= session.events {
            return None;
        }
        let id = self.event_id(session, order);
        if order == 0 {
            return Some(marker(id, 0, session.created, STARTED_TITLE));
        }
        if let (Some(end), true) = (session.ended, order + 1 == session.events) {
            return Some(marker(id, order, end, STOPPED_TITLE));
        }
        let item = catalog::item(self.seed, &session.profile, session.index, order);
        let status = catalog::item_status(self.seed, session.index, order);
        let (title, message) = catalog::describe(&item, status);
        let (start, duration) = session.item_time(self.seed, order);
        Some(Event {
            id,
            order,
            kind: item.kind,
            status,
            start,
            end: start + ticks(duration),
            title,
            message,
            item: Some(item),
            running: self.running_items && session.is_working() && order + 1 == session.events,
        })
    }

    pub(crate) fn find_event(&self, session: &Session, id: Uuid) -> Option<Event> {
        let order = (0..session.events).find(|&o| self.event_id(session, o) == id)?;
        self.event(session, order)
    }

    pub(crate) fn event_ids(&self) -> Vec<String> {
        self.sessions
            .iter()
            .flat_map(|s| (0..s.events).map(move |o| self.event_id(s, o).to_string()))
            .collect()
    }

    pub(crate) fn event_count(&self) -> usize {
        self.sessions.iter().map(|s| s.events as usize).sum()
    }
}

fn initial_session(
    seed: u64,
    index: usize,
    count: usize,
    events_per_session: usize,
    started: DateTime<Utc>,
    stopped: bool,
) -> Session {
    let mut rng = Rng::keyed(seed, Tag::SessionTime, &[index as u64]);
    let slot = to_ticks(HISTORY) / count.max(1) as i64;
    let offset = slot * index as i64 + rng.below((slot / 2).max(1) as u64) as i64;
    let created = started - HISTORY + ticks(offset);
    let mut session = Session::new(seed, index, created);

    let mean = events_per_session as u64;
    let items = (mean / 2 + rng.below(mean + 1)).max(1) as u32;
    // The session lasts 5 minutes to 2 hours, and ends well before `started`.
    let length = (5 + rng.below(115)) as i64 * MINUTE;
    let budget = (to_ticks(started - created) * 8 / 10).min(length);
    let step = budget / (i64::from(items) + 2);
    session.push_items(seed, items, created + ticks(step.max(MILLISECOND)), step);
    if stopped {
        session.stop();
    }
    session
}

fn marker(id: Uuid, order: u32, at: DateTime<Utc>, title: &str) -> Event {
    Event {
        id,
        order,
        kind: EventKind::None,
        status: EventStatus::Success,
        start: at,
        end: at,
        title: title.to_string(),
        message: title.to_string(),
        item: None,
        running: false,
    }
}

fn to_ticks(d: TimeDelta) -> i64 {
    d.num_microseconds().unwrap_or(0) * 10
}

fn ticks(n: i64) -> TimeDelta {
    TimeDelta::nanoseconds(n.saturating_mul(TICK_NS))
}

/// `t` truncated to 100 ns, the precision the API serves.
pub(crate) fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    let extra = i64::from(t.timestamp_subsec_nanos()) % TICK_NS;
    t - TimeDelta::nanoseconds(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-04T09:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }

    #[test]
    fn initial_data_is_ordered_and_ends_before_start() {
        let data = Dataset::new(42, 20, 10, start());
        let sessions = data.sessions();
        assert!(sessions.windows(2).all(|w| w[0].created < w[1].created));
        assert_eq!(sessions.iter().filter(|s| s.is_working()).count(), 2);
        for s in sessions {
            let last = data.event(s, s.events - 1).map(|e| e.end);
            assert!(
                last.is_some_and(|t| t < start()),
                "session {} runs past start",
                s.index
            );
            let orders: Vec<u32> = (0..s.events)
                .filter_map(|o| data.event(s, o))
                .map(|e| e.order)
                .collect();
            assert_eq!(orders.len() as u32, s.events);
        }
    }

    #[test]
    fn events_are_time_ordered_and_markers_bracket_stopped_sessions() {
        let mut data = Dataset::new(7, 6, 25, start());
        for _ in 0..5 {
            data.tick(start() + TimeDelta::minutes(1));
        }
        for s in data.sessions() {
            let events: Vec<Event> = (0..s.events).filter_map(|o| data.event(s, o)).collect();
            assert!(
                events.windows(2).all(|w| w[0].end <= w[1].start),
                "session {}",
                s.index
            );
            assert_eq!(events[0].title, STARTED_TITLE);
            assert_eq!(
                s.ended.is_some(),
                events.last().is_some_and(|e| e.title == STOPPED_TITLE)
            );
        }
    }

    #[test]
    fn same_seed_same_ids_after_ticks() {
        let run = |seed| {
            let mut data = Dataset::new(seed, 5, 4, start());
            for _ in 0..3 {
                data.tick(Utc::now());
            }
            data.event_ids()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
