//! The simulator's vocabulary: organizations, users, client hosts, session profiles and the
//! restored items each explorer produces (mail for Exchange, files for OneDrive, documents,
//! lists and sites for SharePoint, channels, posts and files for Teams).
//!
//! Everything here is a pure function of the seed and the coordinates of the record; it
//! knows nothing about time, HTTP or API versions.

use uuid::Uuid;

use super::rng::{Rng, Tag};

/// Microsoft 365 organizations the sessions belong to.
pub(crate) const ORGANIZATIONS: [&str; 3] = [
    "contoso.onmicrosoft.com",
    "fabrikam.onmicrosoft.com",
    "northwind.onmicrosoft.com",
];
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const REASONS: [&str; 4] = [
    "",
    "User requested file recovery",
    "INC-20431: accidental deletion",
    "Legal hold request",
];

/// `RESTRestoreSession.type`: which explorer ran the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionType {
    Vex,
    Veod,
    Vesp,
    Vet,
}

const SESSION_TYPES: [SessionType; 4] = [
    SessionType::Vex,
    SessionType::Veod,
    SessionType::Vesp,
    SessionType::Vet,
];

impl SessionType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionType::Vex => "Vex",
            SessionType::Veod => "Veod",
            SessionType::Vesp => "Vesp",
            SessionType::Vet => "Vet",
        }
    }

    fn label(self) -> &'static str {
        match self {
            SessionType::Vex => "Exchange",
            SessionType::Veod => "OneDrive",
            SessionType::Vesp => "SharePoint",
            SessionType::Vet => "Teams",
        }
    }

    /// The item event types this explorer produces (together they cover every type).
    fn event_kinds(self) -> &'static [EventKind] {
        use EventKind::*;
        match self {
            SessionType::Vex => &[Save, Export, Send, Restore, View],
            SessionType::Veod => &[Save, Send, Restore, View],
            SessionType::Vesp => &[Save, Export, Restore, View],
            SessionType::Vet => &[Save, Export, Restore, View],
        }
    }

    /// (itemType, names) templates; the first is the most common one.
    fn templates(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            SessionType::Vex => &[
                (
                    "Item",
                    &[
                        "Quarterly report.msg",
                        "RE: Budget 2025.msg",
                        "Board meeting notes.msg",
                        "Invoice 4471.msg",
                        "FW: Contract renewal.msg",
                    ],
                ),
                ("Folder", &["Finance", "Projects", "Inbox"]),
            ],
            SessionType::Veod => &[
                (
                    "File",
                    &[
                        "Budget 2025.xlsx",
                        "Contract draft.docx",
                        "Team photo.jpg",
                        "Roadmap.pptx",
                        "notes.txt",
                    ],
                ),
                ("Folder", &["Documents", "Finance", "Archive"]),
            ],
            SessionType::Vesp => &[
                (
                    "Document",
                    &[
                        "Project plan.docx",
                        "Brand guidelines.pdf",
                        "Q3 forecast.xlsx",
                    ],
                ),
                ("List", &["Tasks", "Announcements", "Issue tracker"]),
                ("Site", &["Marketing", "Finance", "HR"]),
                ("Library", &["Shared Documents", "Site Assets"]),
            ],
            SessionType::Vet => &[
                (
                    "Post",
                    &[
                        "Q3 pipeline review",
                        "Release 4.2 go/no-go",
                        "Welcome to the team!",
                    ],
                ),
                (
                    "File",
                    &["Roadmap.pptx", "Meeting recording.mp4", "Specs.docx"],
                ),
                ("Channel", &["General", "Pipeline", "Releases"]),
                ("Team", &["Sales", "Engineering"]),
            ],
        }
    }
}

/// `RESTRestoreSessionEvent.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    None,
    Save,
    Export,
    Send,
    Restore,
    View,
}

impl EventKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::None => "None",
            EventKind::Save => "Save",
            EventKind::Export => "Export",
            EventKind::Send => "Send",
            EventKind::Restore => "Restore",
            EventKind::View => "View",
        }
    }

    /// (infinitive, past participle) used in titles and messages.
    fn verbs(self) -> (&'static str, &'static str) {
        match self {
            EventKind::None => ("process", "processed"),
            EventKind::Save => ("save", "saved"),
            EventKind::Export => ("export", "exported"),
            EventKind::Send => ("send", "sent"),
            EventKind::Restore => ("restore", "restored"),
            EventKind::View => ("open", "opened"),
        }
    }
}

/// `RESTRestoreSessionEvent.status` (the simulator never leaves an event `Running`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventStatus {
    Success,
    Warning,
    Failed,
    Skipped,
}

impl EventStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventStatus::Success => "Success",
            EventStatus::Warning => "Warning",
            EventStatus::Failed => "Failed",
            EventStatus::Skipped => "Skipped",
        }
    }
}

/// Who started a restore session and from where: the static part of a session.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) id: Uuid,
    pub(crate) kind: SessionType,
    /// Index into [`ORGANIZATIONS`].
    pub(crate) org: usize,
    /// The organization's id (v8 `organizationId`, organization link).
    pub(crate) org_id: Uuid,
    pub(crate) user: &'static str,
    pub(crate) initiated_by: String,
    pub(crate) client_host: String,
    pub(crate) name: String,
    pub(crate) scope_name: String,
    pub(crate) reason: String,
}

impl Profile {
    pub(crate) fn organization(&self) -> &'static str {
        ORGANIZATIONS[self.org]
    }
}

/// The profile of session number `index`. Type, initiator and client-host variants cycle
/// with different periods (offset by the seed), so any 24 consecutive sessions cover every
/// combination the mappers care about.
pub(crate) fn profile(seed: u64, index: usize) -> Profile {
    let mut offsets = Rng::keyed(seed, Tag::Session, &[u64::MAX]);
    let i = index as u64;
    let kind = SESSION_TYPES[((i + offsets.below(4)) % 4) as usize];
    let initiator = (i + i / 4 + offsets.below(4)) % 4;
    let host = (i + offsets.below(6)) % 6;

    let mut rng = Rng::keyed(seed, Tag::Session, &[i]);
    let id = rng.uuid();
    let org = rng.below(ORGANIZATIONS.len() as u64) as usize;
    let organization = ORGANIZATIONS[org];
    let user = rng.pick(&USERS);
    let portal = initiator == 1;
    Profile {
        id,
        kind,
        org,
        org_id: organization_id(seed, org),
        user,
        initiated_by: match initiator {
            0 => format!("LAB\\{user}"),
            1 => format!("{user}@{organization}"),
            // Restores through a provider's Cloud Connect gateway name the organization.
            2 => organization.to_string(),
            _ => user.to_string(),
        },
        client_host: client_host(host, user, &mut rng),
        name: if portal {
            format!("{} restore via Restore Portal", kind.label())
        } else {
            format!("{} restore session", kind.label())
        },
        scope_name: if portal {
            format!("{user}@{organization}")
        } else {
            String::new()
        },
        reason: rng.pick(&REASONS).to_string(),
    }
}

fn client_host(variant: u64, user: &str, rng: &mut Rng) -> String {
    let n = 1 + rng.below(9);
    match variant {
        0 => format!("WS-{}01 (via: 203.0.113.10)", user.to_uppercase()),
        1 => format!("HOST{n} (via: 2001:db8::10)"),
        2 => format!("198.51.100.{n}"),
        3 => format!("2001:db8::{n}"),
        4 => format!("RESTORE-SRV0{n}"),
        _ => String::new(),
    }
}

/// The restored item behind one item event.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) kind: EventKind,
    pub(crate) name: String,
    pub(crate) item_type: &'static str,
    pub(crate) size_bytes: i64,
    pub(crate) source: String,
    pub(crate) target: String,
    /// v8 ids of the backed-up object (`userId`, `siteId`, `teamId`).
    pub(crate) user_id: Option<String>,
    pub(crate) site_id: Option<String>,
    pub(crate) team_id: Option<Uuid>,
}

/// The status of item event `order` of session `session` (its own cheap stream, so a
/// session's result can be tallied without building the items).
pub(crate) fn item_status(seed: u64, session: usize, order: u32) -> EventStatus {
    let roll = Rng::keyed(seed, Tag::EventStatus, &[session as u64, u64::from(order)]).below(100);
    match roll {
        0..=79 => EventStatus::Success,
        80..=89 => EventStatus::Warning,
        90..=96 => EventStatus::Failed,
        _ => EventStatus::Skipped,
    }
}

/// Item event `order` of session `session`.
pub(crate) fn item(seed: u64, profile: &Profile, session: usize, order: u32) -> Item {
    let mut rng = Rng::keyed(seed, Tag::Event, &[session as u64, u64::from(order), 1]);
    let kind = rng.pick(profile.kind.event_kinds());
    let templates = profile.kind.templates();
    let (item_type, names) = if rng.chance(0.75) {
        templates[0]
    } else {
        rng.pick(templates)
    };
    let name = rng.pick(names).to_string();
    let size_bytes = if is_container(item_type) {
        (1 << 20) + rng.below(2 << 30) as i64
    } else {
        1024 + rng.below(50 << 20) as i64
    };
    let place = Place::new(profile, &mut rng);
    let owner_id = Rng::keyed(
        seed,
        Tag::Organization,
        &[profile.org as u64, 1, user_no(profile.user)],
    )
    .uuid();
    Item {
        kind,
        source: place.source(profile.kind),
        target: place.target(profile.kind, kind),
        user_id: matches!(profile.kind, SessionType::Vex | SessionType::Veod)
            .then(|| owner_id.to_string()),
        site_id: (profile.kind == SessionType::Vesp)
            .then(|| place.object_id(seed, profile).to_string()),
        team_id: (profile.kind == SessionType::Vet).then(|| place.object_id(seed, profile)),
        name,
        item_type,
        size_bytes,
    }
}

fn user_no(user: &str) -> u64 {
    USERS.iter().position(|u| *u == user).unwrap_or(0) as u64
}

fn is_container(item_type: &str) -> bool {
    matches!(
        item_type,
        "Folder" | "List" | "Site" | "Library" | "Channel" | "Team"
    )
}

/// Where an item lives: mailbox folder, OneDrive folder, SharePoint site or Teams channel.
struct Place {
    upn: String,
    user: &'static str,
    other: &'static str,
    tenant: &'static str,
    domain: &'static str,
    container: &'static str,
    sub: &'static str,
}

impl Place {
    fn new(profile: &Profile, rng: &mut Rng) -> Place {
        let domain = profile.organization();
        let (container, sub) = match profile.kind {
            SessionType::Vex => (
                rng.pick(&["Inbox", "Sent Items", "Archive"]),
                rng.pick(&["Finance", "Projects", "2024"]),
            ),
            SessionType::Veod => ("Documents", rng.pick(&["Finance", "Projects", "Personal"])),
            SessionType::Vesp => (
                rng.pick(&["Marketing", "Finance", "HR", "Projects"]),
                "Shared Documents",
            ),
            SessionType::Vet => (
                rng.pick(&["Sales", "Engineering", "Leadership"]),
                rng.pick(&["General", "Pipeline", "Releases"]),
            ),
        };
        Place {
            upn: format!("{}@{domain}", profile.user),
            user: profile.user,
            other: rng.pick(&USERS),
            tenant: domain.split('.').next().unwrap_or(domain),
            domain,
            container,
            sub,
        }
    }

    fn source(&self, explorer: SessionType) -> String {
        let Place {
            upn,
            user,
            tenant,
            domain,
            container,
            sub,
            ..
        } = self;
        match explorer {
            SessionType::Vex => format!("{upn}/{container}/{sub}"),
            SessionType::Veod => {
                let personal = format!("{user}_{}", domain.replace('.', "_"));
                format!("https://{tenant}-my.sharepoint.com/personal/{personal}/{container}/{sub}")
            }
            SessionType::Vesp => format!("https://{tenant}.sharepoint.com/sites/{container}/{sub}"),
            SessionType::Vet => format!("{container}/{sub}"),
        }
    }

    fn target(&self, explorer: SessionType, kind: EventKind) -> String {
        let Place {
            upn,
            user,
            other,
            domain,
            container,
            sub,
            ..
        } = self;
        match kind {
            EventKind::None | EventKind::View => String::new(),
            EventKind::Save => format!("C:\\Users\\{user}\\Downloads"),
            EventKind::Send => format!("{other}@{domain}"),
            EventKind::Export => match explorer {
                SessionType::Vex => format!("C:\\Exports\\{user}.pst"),
                _ => format!("C:\\Exports\\{container}-{sub}.zip"),
            },
            EventKind::Restore => match explorer {
                SessionType::Vex => format!("{upn}/Restored Items"),
                _ => self.source(explorer),
            },
        }
    }

    /// The id of the SharePoint site or Team the item lives in.
    fn object_id(&self, seed: u64, profile: &Profile) -> Uuid {
        let key = self
            .container
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Rng::keyed(seed, Tag::Organization, &[profile.org as u64, 2, key]).uuid()
    }
}

/// `title` and `message` of an item event, in the style of VB365's restore log.
pub(crate) fn describe(item: &Item, status: EventStatus) -> (String, String) {
    let (verb, done) = item.kind.verbs();
    let subject = if is_container(item.item_type) {
        item.item_type
    } else {
        "Item"
    };
    let details = format!(
        "(type: {}; source: {}; target: {})",
        item.item_type, item.source, item.target
    );
    let name = &item.name;
    match status {
        EventStatus::Success => (
            format!("{subject} is successfully {done}."),
            format!("Item {name} was {done} successfully {details}"),
        ),
        EventStatus::Warning => (
            format!("{subject} is {done} with warnings."),
            format!(
                "Item {name} was {done} with warnings: some item properties could not be {done} {details}"
            ),
        ),
        EventStatus::Failed => (
            format!("Failed to {verb} {}.", subject.to_lowercase()),
            format!("Failed to {verb} item {name}: Access is denied. {details}"),
        ),
        EventStatus::Skipped => (
            format!("{subject} is skipped."),
            format!("Item {name} was skipped: the item already exists at the target {details}"),
        ),
    }
}

/// The id VB365 v8 reports as `organizationId` for organization `org`.
fn organization_id(seed: u64, org: usize) -> Uuid {
    Rng::keyed(seed, Tag::Organization, &[org as u64, 0]).uuid()
}
