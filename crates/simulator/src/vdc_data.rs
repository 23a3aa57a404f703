//! The simulated Veeam Data Cloud tenant: backup jobs, their sessions and session logs,
//! deterministic in the seed.
//!
//! Like the VB365 dataset, a session stores only counters (items processed, end time,
//! status) and one small segment per batch of appended items, which anchors their
//! timestamps; every log line (id, title, times) is rebuilt on demand from (seed, job,
//! session, line). A session log is append-only: line 0 is "Job started", then one line per
//! processed object, and when the session ends a "Transferred:" summary and "Job finished".
//! Must not: know about HTTP (that is `vdc.rs`) or share types with the client code.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use uuid::Uuid;

use super::rng::{Rng, Tag};

/// Mixed into the seed so VDC streams are independent of the VB365 ones.
const SALT: u64 = 0x5644_435f_5349_4d31;
const MILLISECOND: TimeDelta = TimeDelta::milliseconds(1);
/// Items appended by one `tick` are spaced this far apart.
const LIVE_STEP: TimeDelta = TimeDelta::milliseconds(10);
/// Chance that a running session ends at a tick (after receiving its items).
const STOP_PROBABILITY: f64 = 0.35;

fn rng(seed: u64, tag: Tag, parts: &[u64]) -> Rng {
    Rng::keyed(seed ^ SALT, tag, parts)
}

/// What a job backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    Mailbox,
    OneDrive,
    Site,
    Team,
}

/// (workload, job name, backupType) of job `index % 4`.
const JOB_KINDS: [(Workload, &str, &str); 4] = [
    (
        Workload::Mailbox,
        "Mailboxes - all users",
        "EntireOrganization",
    ),
    (Workload::OneDrive, "OneDrive - Finance", "SelectedItems"),
    (Workload::Site, "SharePoint - intranet", "SelectedItems"),
    (Workload::Team, "Teams - all teams", "EntireOrganization"),
];
const USERS: [&str; 8] = [
    "adams", "baker", "clark", "davis", "evans", "frank", "garcia", "harris",
];
const DOMAINS: [&str; 2] = ["contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com"];
const SITES: [&str; 5] = ["Finance", "Marketing", "HR", "Engineering", "Sales Team"];
const TEAMS: [&str; 4] = [
    "Sales & Marketing",
    "Project Phoenix",
    "IT Ops",
    "Leadership",
];

impl Workload {
    /// The object word of "Processing <object>: <name>".
    fn object(self) -> &'static str {
        match self {
            Workload::Mailbox => "mailbox",
            Workload::OneDrive => "OneDrive",
            Workload::Site => "site",
            Workload::Team => "team",
        }
    }

    fn name(self, rng: &mut Rng) -> String {
        match self {
            Workload::Mailbox | Workload::OneDrive => {
                format!("{}@{}", rng.pick(&USERS), rng.pick(&DOMAINS))
            }
            Workload::Site => format!("https://contoso.sharepoint.com/sites/{}", rng.pick(&SITES)),
            Workload::Team => rng.pick(&TEAMS).to_string(),
        }
    }
}

/// The status of a log line and of an ended session (worst line wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Success,
    Warning,
    Failed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Success => "Success",
            Status::Warning => "Warning",
            Status::Failed => "Failed",
        }
    }
}

/// Items appended together: item `first + k` starts at `base + k * step`.
#[derive(Debug, Clone)]
struct Segment {
    first: u32,
    base: DateTime<Utc>,
    step: TimeDelta,
}

#[derive(Debug, Clone)]
pub(crate) struct VdcSession {
    pub(crate) id: Uuid,
    pub(crate) created: DateTime<Utc>,
    /// `None` while running.
    pub(crate) ended: Option<DateTime<Utc>>,
    /// Objects processed so far.
    pub(crate) items: u32,
    /// Objects the job will process (for `progress`).
    pub(crate) expected: u32,
    /// Final status (meaningful once ended).
    pub(crate) status: Status,
    segments: Vec<Segment>,
}

impl VdcSession {
    pub(crate) fn is_running(&self) -> bool {
        self.ended.is_none()
    }

    /// Lines in the log: start, items, and the summary and end lines once ended.
    pub(crate) fn lines(&self) -> u32 {
        1 + self.items + if self.is_running() { 0 } else { 2 }
    }

    pub(crate) fn progress(&self) -> u32 {
        match self.ended {
            Some(_) => 100,
            None => (self.items * 100 / self.expected.max(1)).min(99),
        }
    }

    /// No line of this session is later than this.
    fn quiet_after(&self) -> DateTime<Utc> {
        match (self.ended, self.segments.last()) {
            (Some(end), _) => end,
            (None, None) => self.created,
            (None, Some(seg)) => seg.base + seg.step * (self.items + 1 - seg.first) as i32,
        }
    }

    fn item_time(&self, item: u32) -> DateTime<Utc> {
        let at = self.segments.partition_point(|s| s.first <= item);
        match self.segments.get(at.saturating_sub(1)) {
            Some(seg) => seg.base + seg.step * (item - seg.first) as i32,
            None => self.created,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct VdcJob {
    pub(crate) index: usize,
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) backup_type: &'static str,
    workload: Workload,
    /// Oldest first.
    pub(crate) sessions: Vec<VdcSession>,
}

/// One log line, built on demand.
#[derive(Debug, Clone)]
pub(crate) struct LogLine {
    pub(crate) id: Uuid,
    pub(crate) title: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) ended: DateTime<Utc>,
}

/// Every job of the tenant.
#[derive(Debug)]
pub(crate) struct VdcData {
    seed: u64,
    logs_per_session: usize,
    jobs: Vec<VdcJob>,
    ticks: u64,
}

impl VdcData {
    /// `jobs` jobs with `sessions` sessions each, one a day before `started`; the newest
    /// session of every other job (0, 2, ...) is still running.
    pub(crate) fn new(
        seed: u64,
        jobs: usize,
        sessions: usize,
        logs_per_session: usize,
        started: DateTime<Utc>,
    ) -> VdcData {
        let jobs = (0..jobs)
            .map(|j| {
                let (workload, name, backup_type) = JOB_KINDS[j % JOB_KINDS.len()];
                let name = match j / JOB_KINDS.len() {
                    0 => name.to_string(),
                    n => format!("{name} ({})", n + 1),
                };
                let mut job = VdcJob {
                    index: j,
                    id: rng(seed, Tag::Organization, &[j as u64]).uuid(),
                    name,
                    backup_type,
                    workload,
                    sessions: Vec::with_capacity(sessions),
                };
                for s in 0..sessions {
                    let running = j % 2 == 0 && s + 1 == sessions;
                    let session =
                        initial_session(seed, j, s, sessions, logs_per_session, started, running);
                    job.sessions.push(session);
                }
                job
            })
            .collect();
        VdcData {
            seed,
            logs_per_session,
            jobs,
            ticks: 0,
        }
    }

    pub(crate) fn jobs(&self) -> &[VdcJob] {
        &self.jobs
    }

    pub(crate) fn find_job(&self, id: Uuid) -> Option<&VdcJob> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// One live step: running sessions process 1–3 more objects and may end; then the
    /// next job (round robin) without a running session starts a new one.
    pub(crate) fn tick(&mut self, now: DateTime<Utc>) {
        self.ticks += 1;
        let (seed, tick) = (self.seed, self.ticks);
        for job in &mut self.jobs {
            let j = job.index;
            for (s, session) in job.sessions.iter_mut().enumerate() {
                if !session.is_running() {
                    continue;
                }
                let mut r = rng(seed, Tag::Tick, &[tick, j as u64, s as u64]);
                let items = 1 + r.below(3) as u32;
                let earliest = session.quiet_after() + MILLISECOND;
                let base = (now - LIVE_STEP * items as i32).max(earliest);
                session.segments.push(Segment {
                    first: session.items + 1,
                    base,
                    step: LIVE_STEP,
                });
                session.items += items;
                if r.chance(STOP_PROBABILITY) {
                    end_session(seed, j, s, session);
                }
            }
        }
        let n = self.jobs.len();
        for k in 0..n {
            let j = (tick as usize - 1 + k) % n;
            let job = &mut self.jobs[j];
            if job.sessions.last().is_some_and(VdcSession::is_running) {
                continue;
            }
            let s = job.sessions.len();
            let created = match job.sessions.last() {
                Some(last) => now.max(last.created + MILLISECOND),
                None => now,
            };
            let expected = expected_items(seed, j, s, self.logs_per_session);
            job.sessions.push(VdcSession {
                id: session_id(seed, j, s),
                created,
                ended: None,
                items: 0,
                expected,
                status: Status::Success,
                segments: Vec::new(),
            });
            break;
        }
    }

    /// Line `line` of session `s` of `job`, or `None` past its end.
    pub(crate) fn line(&self, job: &VdcJob, s: usize, line: u32) -> Option<LogLine> {
        let session = job.sessions.get(s)?;
        if line >= session.lines() {
            return None;
        }
        let (j, seed) = (job.index, self.seed);
        let id = rng(seed, Tag::Event, &[j as u64, s as u64, u64::from(line)]).uuid();
        let at = |t: DateTime<Utc>, title: String| LogLine {
            id,
            title,
            created: t,
            ended: t,
        };
        if line == 0 {
            let title = format!("[Success] Job started at {}", us_time(session.created));
            return Some(at(session.created, title));
        }
        if line <= session.items {
            let title = item_line(seed, job, s, line);
            let created = session.item_time(line);
            let step = session
                .segments
                .iter()
                .rev()
                .find(|seg| seg.first <= line)
                .map_or(MILLISECOND, |seg| seg.step);
            return Some(LogLine {
                id,
                title,
                created,
                ended: created + (step / 2).max(MILLISECOND),
            });
        }
        let end = session.ended?;
        if line == session.items + 1 {
            return Some(at(end, transferred_line(seed, j, s, session)));
        }
        let status = session.status.as_str();
        Some(at(
            end,
            format!("[{status}] Job finished at {}", us_time(end)),
        ))
    }

    /// Every line of session `s` of `job`, oldest first.
    pub(crate) fn lines<'a>(
        &'a self,
        job: &'a VdcJob,
        s: usize,
    ) -> impl Iterator<Item = LogLine> + 'a {
        let count = job.sessions.get(s).map_or(0, VdcSession::lines);
        (0..count).filter_map(move |line| self.line(job, s, line))
    }

    pub(crate) fn log_count(&self) -> usize {
        self.jobs
            .iter()
            .flat_map(|j| &j.sessions)
            .map(|s| s.lines() as usize)
            .sum()
    }

    pub(crate) fn session_count(&self) -> usize {
        self.jobs.iter().map(|j| j.sessions.len()).sum()
    }
}

fn session_id(seed: u64, job: usize, session: usize) -> Uuid {
    rng(seed, Tag::Session, &[job as u64, session as u64]).uuid()
}

fn expected_items(seed: u64, job: usize, session: usize, mean: usize) -> u32 {
    let mut r = rng(seed, Tag::SessionTime, &[job as u64, session as u64]);
    let mean = mean as u64;
    (mean / 2 + r.below(mean + 1)).max(1) as u32
}

fn initial_session(
    seed: u64,
    j: usize,
    s: usize,
    sessions: usize,
    logs_per_session: usize,
    started: DateTime<Utc>,
    running: bool,
) -> VdcSession {
    let mut r = rng(seed, Tag::SessionTime, &[j as u64, s as u64, 1]);
    let expected = expected_items(seed, j, s, logs_per_session);
    let mut session = VdcSession {
        id: session_id(seed, j, s),
        created: started,
        ended: None,
        items: 0,
        expected,
        status: Status::Success,
        segments: Vec::new(),
    };
    if running {
        session.created = started - TimeDelta::minutes(40) + TimeDelta::minutes(j as i64);
        session.items = (expected / 2).max(1);
        session.segments.push(Segment {
            first: 1,
            base: session.created + TimeDelta::seconds(1),
            step: TimeDelta::seconds(20),
        });
        return session;
    }
    let days_ago = (sessions - s) as i32;
    let jitter = TimeDelta::seconds(r.below(300) as i64);
    session.created =
        started - TimeDelta::days(i64::from(days_ago)) + TimeDelta::minutes(7 * j as i64) + jitter;
    let length = TimeDelta::minutes(5 + r.below(35) as i64);
    session.items = expected;
    let step = length / (expected as i32 + 2);
    session.segments.push(Segment {
        first: 1,
        base: session.created + step,
        step: step.max(MILLISECOND),
    });
    end_session(seed, j, s, &mut session);
    session
}

/// End a session after its last item; its status is the worst of its lines.
fn end_session(seed: u64, j: usize, s: usize, session: &mut VdcSession) {
    session.ended = Some(session.quiet_after() + MILLISECOND);
    session.status = (1..=session.items)
        .map(|item| item_status(seed, j, s, item))
        .max()
        .unwrap_or(Status::Success);
}

fn item_status(seed: u64, j: usize, s: usize, item: u32) -> Status {
    let u = rng(
        seed,
        Tag::EventStatus,
        &[j as u64, s as u64, u64::from(item)],
    )
    .unit();
    if u < 0.05 {
        Status::Failed
    } else if u < 0.15 {
        Status::Warning
    } else {
        Status::Success
    }
}

/// "[Success] Processing mailbox: adams@contoso.onmicrosoft.com", and now and then a line
/// outside the grammar, as real logs have.
fn item_line(seed: u64, job: &VdcJob, s: usize, item: u32) -> String {
    let status = item_status(seed, job.index, s, item);
    let mut r = rng(
        seed,
        Tag::EventTime,
        &[job.index as u64, s as u64, u64::from(item)],
    );
    let name = job.workload.name(&mut r);
    let object = job.workload.object();
    if r.chance(0.07) {
        format!(
            "[{}] Skipped {object} {name}: no changes since the last run",
            status.as_str()
        )
    } else {
        format!("[{}] Processing {object}: {name}", status.as_str())
    }
}

/// "[Success] Transferred: 168.8 MB (2472 items) at 1.8 MB/s (26 items/s)".
fn transferred_line(seed: u64, j: usize, s: usize, session: &VdcSession) -> String {
    let mut r = rng(seed, Tag::Faults, &[j as u64, s as u64]);
    let objects = u64::from(session.items);
    let items = objects * (20 + r.below(400));
    let bytes = items as f64 * (20_000 + r.below(2_000_000)) as f64 / 20.0;
    let secs = session
        .ended
        .map(|e| (e - session.created).num_milliseconds().max(1000) as f64 / 1000.0)
        .unwrap_or(1.0);
    format!(
        "[{}] Transferred: {} ({items} items) at {}/s ({} items/s)",
        session.status.as_str(),
        human_size(bytes),
        human_size(bytes / secs),
        (items as f64 / secs).round() as u64
    )
}

/// Veeam's size format: one decimal and a 1024-based unit, whole bytes below 1 KB.
fn human_size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", value.round() as u64)
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "3/3/2025 2:00:00 AM" (the US format of the published sample).
fn us_time(t: DateTime<Utc>) -> String {
    let (pm, hour) = t.hour12();
    format!(
        "{}/{}/{} {hour}:{:02}:{:02} {}",
        t.month(),
        t.day(),
        t.year(),
        t.minute(),
        t.second(),
        if pm { "PM" } else { "AM" }
    )
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
    fn logs_are_append_only_and_time_ordered_across_ticks() {
        let mut data = VdcData::new(5, 3, 3, 6, start());
        let snapshot = |d: &VdcData| -> std::collections::BTreeMap<Uuid, Vec<String>> {
            let mut logs = std::collections::BTreeMap::new();
            for job in d.jobs() {
                for (s, session) in job.sessions.iter().enumerate() {
                    let lines = d.lines(job, s).map(|l| format!("{} {}", l.id, l.title));
                    logs.insert(session.id, lines.collect());
                }
            }
            logs
        };
        let before = snapshot(&data);
        assert_eq!(
            data.jobs()
                .iter()
                .filter(|j| j.sessions.last().is_some_and(VdcSession::is_running))
                .count(),
            2
        );
        for i in 0..6 {
            data.tick(start() + TimeDelta::minutes(i));
        }
        let after = snapshot(&data);
        for (id, old) in &before {
            assert_eq!(
                &after[id][..old.len()],
                &old[..],
                "a log only grows at its end"
            );
        }
        assert!(after.len() > before.len(), "new sessions appeared");
        for job in data.jobs() {
            assert!(job.sessions.windows(2).all(|w| w[0].created < w[1].created));
            for s in 0..job.sessions.len() {
                let lines: Vec<LogLine> = data.lines(job, s).collect();
                assert!(
                    lines.windows(2).all(|w| w[0].created <= w[1].created),
                    "job {} session {s}",
                    job.index
                );
                assert!(lines[0].title.starts_with("[Success] Job started at "));
                if !job.sessions[s].is_running() {
                    assert!(lines[lines.len() - 2].title.contains("] Transferred: "));
                    assert!(lines[lines.len() - 1].title.contains("] Job finished at "));
                }
            }
        }
        assert_eq!(
            data.log_count(),
            after.values().map(Vec::len).sum::<usize>()
        );
    }

    #[test]
    fn same_seed_same_data() {
        let run = |seed| {
            let mut d = VdcData::new(seed, 2, 2, 4, start());
            d.tick(start());
            let mut ids = Vec::new();
            for job in d.jobs() {
                for s in 0..job.sessions.len() {
                    ids.extend(d.lines(job, s).map(|l| l.id));
                }
            }
            ids
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn formats() {
        assert_eq!(human_size(0.0), "0 B");
        assert_eq!(human_size(1023.0), "1023 B");
        assert_eq!(human_size(176_999_629.0), "168.8 MB");
        let t = DateTime::parse_from_rfc3339("2024-09-23T14:49:03Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        assert_eq!(us_time(t), "9/23/2024 2:49:03 PM");
    }
}
