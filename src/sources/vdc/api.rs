//! The HTTP side of the Veeam Data Cloud source: API-key authentication, the endpoint paths,
//! collections (bare arrays or page envelopes, paged with `offset`/`limit` when the server
//! pages) and opening the `/logs/download` stream.
//!
//! Owns: how a request is built and how its failure becomes a [`SourceError`]. Every request
//! goes through [`http::send_with_retry`] (429/5xx/timeouts retried with backoff and
//! `Retry-After`); 401/403 become one [`SourceError::ApiKey`] naming the source and the
//! header, never the key. Must not: keep polling state, map, or log the key (the header value
//! is marked sensitive and lives only in [`VdcApi`]).
//!
//! Defensive about what VDC doesn't document (see README "Assumptions"):
//! - Paths are published with mixed case (`/v1/reports/backup-jobs` but
//!   `/v1/Reports/backup-jobs/{id}/job-sessions`); a 404 is retried once with the other case
//!   of `reports`, and the case that worked is used from then on.
//! - A collection may be a bare array (what the samples show) or an envelope
//!   `{"results"|"items"|"data"|"value": [...], "offset", "limit", "totalCount"}`; an
//!   envelope is followed page by page with `offset`/`limit` until an empty page, or until
//!   `totalCount` is reached and `_links` (if any) has no `next`, or a short page repeats
//!   the previous one (a server ignoring `offset`). A bare `count` is a total only when it
//!   exceeds the page (it is often the page's own length). A non-empty bare array is
//!   followed by `offset`/`limit` requests too (the length of the first array as the
//!   limit), until an empty or shorter array, the array from its first record again (a
//!   server that doesn't page; also behind records added at its front meanwhile), or a
//!   400/404/422 for the paging parameters: one more request per collection, so that a
//!   server capping bare arrays loses nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::header::{self, HeaderName, HeaderValue};
use serde_json::value::RawValue;
use url::Url;

use super::download::ENVELOPE_KEYS;
use crate::http::{self, HttpError, RetryPolicy};
use crate::secret::Secret;
use crate::sources::SourceError;
use crate::sources::page::{self, EMPTY_PAGE, Unreadable, repair_syntax};
use crate::sources::paging::{MAX_PAGES, PageFacts, PagingError, fingerprint};

/// Largest collection page body read; a hostile or broken server can't grow memory past it.
pub const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest collection read whole (its records' JSON over all its pages): a collection is
/// held in memory until read (a `/logs` list may be newest first and is turned round), so
/// a longer one fails the request instead of growing memory page after page.
pub const MAX_COLLECTION_BYTES: usize = 128 * 1024 * 1024;

/// Where the API key goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>` (configured as `api_key_header = "authorization"`).
    Bearer,
    /// `<name>: <key>`, e.g. `x-api-key`.
    Named(HeaderName),
}

impl KeyHeader {
    /// From the configured header name; `None` when it is not a valid header name.
    pub fn parse(name: &str) -> Option<KeyHeader> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("authorization") {
            return Some(KeyHeader::Bearer);
        }
        HeaderName::from_bytes(name.as_bytes())
            .ok()
            .map(KeyHeader::Named)
    }

    /// How errors name it (`x-api-key`, `Authorization: Bearer`).
    pub fn describe(&self) -> String {
        match self {
            KeyHeader::Bearer => "Authorization: Bearer".to_string(),
            KeyHeader::Named(name) => name.as_str().to_string(),
        }
    }
}

/// A VDC endpoint (paths relative to the configured base URL).
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    Jobs,
    Sessions { job: &'a str },
    Logs { job: &'a str, session: &'a str },
    Download { job: &'a str, session: &'a str },
}

impl Endpoint<'_> {
    /// Path segments as published; `flip` swaps the case of the `reports` segment.
    fn segments(&self, flip: bool) -> Vec<&str> {
        // As published: lower-case for the job list, capitalised below it.
        let capital = !matches!(self, Endpoint::Jobs) ^ flip;
        let reports = if capital { "Reports" } else { "reports" };
        let mut out = vec!["v1", reports, "backup-jobs"];
        match *self {
            Endpoint::Jobs => {}
            Endpoint::Sessions { job } => out.extend([job, "job-sessions"]),
            Endpoint::Logs { job, session } => {
                out.extend([job, "job-sessions", session, "logs"]);
            }
            Endpoint::Download { job, session } => {
                out.extend([job, "job-sessions", session, "logs", "download"]);
            }
        }
        out
    }
}

/// A whole collection as [`VdcApi::collection_with_repairs`] read it.
#[derive(Debug, Default)]
pub struct Collection {
    /// The first page's URL.
    pub url: String,
    /// The readable records, in listing order.
    pub records: Vec<Box<RawValue>>,
    /// Indices into `records` whose text holds U+FFFD for bytes that were not UTF-8.
    pub replaced: Vec<usize>,
    /// Positions in the listing (readable and unreadable records counted, ascending) of
    /// records left out as unreadable: a log entry's position is its `event.sequence`.
    pub gaps: Vec<usize>,
}

/// One page of a collection, records kept raw so a bad one can be skipped alone.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Box<RawValue>>,
    /// The body was an envelope (so the server may page).
    pub enveloped: bool,
    pub limit: Option<u64>,
    pub total: Option<u64>,
    /// `Some(has_next)` when the envelope has HAL `_links`.
    pub next_link: Option<bool>,
    /// The body was read only after [`repair_syntax`] or replacing invalid UTF-8.
    pub repaired: bool,
    /// Items that hold U+FFFD where the body had bytes that were not valid UTF-8: their
    /// text is not what the server sent.
    pub replaced: Vec<usize>,
    /// Records that are not JSON even after [`repair_syntax`], left out of `items` (the
    /// page was split into its records: [`page::split_at_keys`]).
    pub unreadable: Vec<Unreadable>,
}

impl Page {
    /// Records on the page, readable or not: what paging offsets count.
    pub fn len(&self) -> usize {
        self.items.len() + self.unreadable.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A bare JSON array, or an envelope holding one under a known key (case-insensitive).
///
/// A leading UTF-8 byte order mark (some .NET serializers and proxies write one) and
/// whitespace are skipped. Records stay raw text, so one with a lone surrogate escape
/// reaches the mapping (which reports it) instead of failing the page. A page that isn't
/// JSON is read again after [`repair_syntax`] (raw control characters in strings, `NaN`)
/// and invalid UTF-8 replaced: [`Page::repaired`]. One that still isn't is split into its
/// records, each read alone, so that a record broken beyond repair costs only itself
/// ([`Page::unreadable`]); the paging facts are then read from the envelope with its
/// records' array emptied.
pub fn parse_collection(body: &[u8]) -> Result<Page, String> {
    let body = page::without_bom(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let body = &body[start..];
    let strict = match parse_collection_json(body) {
        Ok(page) => return Ok(page),
        Err(e) => e,
    };
    let lossy = String::from_utf8_lossy(body);
    let replaced_utf8 = matches!(lossy, std::borrow::Cow::Owned(_));
    let fixed = match repair_syntax(&lossy) {
        Some(text) => Some(text),
        None if replaced_utf8 => Some(lossy.into_owned()),
        None => None,
    };
    let Some(mut page) = fixed.and_then(|text| parse_collection_json(text.as_bytes()).ok()) else {
        return split_collection(body).ok_or(strict);
    };
    page.repaired = true;
    if replaced_utf8 {
        page.replaced = (0..page.items.len())
            .filter(|&i| page.items[i].get().contains(char::REPLACEMENT_CHARACTER))
            .collect();
    }
    Ok(page)
}

/// A collection whose records are read one by one ([`page::split_at_keys`]); `None` when
/// its array can't be delimited.
fn split_collection(body: &[u8]) -> Option<Page> {
    let split = page::split_at_keys(body, &ENVELOPE_KEYS)?;
    let mut page = if body.first() == Some(&b'{') {
        let (open, close) = split.array;
        let mut envelope = body[..=open].to_vec();
        envelope.extend_from_slice(&body[close..]);
        let envelope = String::from_utf8_lossy(&envelope).into_owned();
        let envelope = repair_syntax(&envelope).unwrap_or(envelope);
        // An envelope broken outside its records too (a body cut short after the array)
        // is not a page: its paging facts may be what was lost. Asked for again.
        parse_collection_json(envelope.as_bytes()).ok()?
    } else {
        Page::default()
    };
    page.items = split.records;
    page.replaced = split.replaced;
    page.unreadable = split.unreadable;
    page.repaired = true;
    Some(page)
}

fn parse_collection_json(body: &[u8]) -> Result<Page, String> {
    match body.first() {
        Some(b'[') => serde_json::from_slice(body)
            .map(|items| Page {
                items,
                ..Page::default()
            })
            .map_err(|e| format!("invalid JSON array: {e}")),
        Some(b'{') => {
            // Members raw: only the records' array and the paging facts are read.
            let members: std::collections::BTreeMap<String, Box<RawValue>> =
                serde_json::from_slice(body).map_err(|e| format!("invalid JSON object: {e}"))?;
            // The first of `names` present wins (the map's own key order is alphabetical).
            let member = |names: &[&str]| {
                names.iter().find_map(|n| {
                    members
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v)
                })
            };
            let Some(records) = member(&ENVELOPE_KEYS)
                .and_then(|v| serde_json::from_str::<Vec<Box<RawValue>>>(v.get()).ok())
            else {
                return Err(format!(
                    "expected a JSON array or a page with one of {ENVELOPE_KEYS:?}, got an object with keys {:?}",
                    members.keys().take(8).collect::<Vec<_>>()
                ));
            };
            // The other members as values, for the paging facts (an unreadable one is
            // left out: it can only be a fact we don't use).
            let map: serde_json::Map<String, serde_json::Value> = members
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v.get()).ok()?)))
                .collect();
            let field = |names: &[&str]| {
                names.iter().find_map(|n| {
                    map.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v)
                })
            };
            let number = |names: &[&str]| field(names).and_then(serde_json::Value::as_u64);
            let on_page = records.len();
            Ok(Page {
                items: records,
                enveloped: true,
                limit: number(&["limit", "pageSize"]),
                total: total(
                    number(&["totalCount", "total", "@odata.count"]),
                    number(&["count"]),
                    on_page,
                ),
                next_link: PageFacts::from_envelope(&map).next_link,
                ..Page::default()
            })
        }
        _ => Err(format!(
            "expected a JSON array or object, got: {}",
            http::excerpt(&String::from_utf8_lossy(body), 120)
        )),
    }
}

/// The collection's total from an envelope: `totalCount` (or `total`, OData's
/// `@odata.count`) when present. A bare `count` is ambiguous: many APIs send the number of
/// records on *this* page under it, others (Django REST framework, say) the total. It is
/// taken as a total only when it can't be this page's count (it is larger than the page);
/// otherwise it is ignored, and the listing ends on another signal (an empty page, `_links`
/// without `next`), never early.
fn total(explicit: Option<u64>, count: Option<u64>, on_page: usize) -> Option<u64> {
    explicit.or_else(|| count.filter(|c| *c > on_page as u64))
}

/// The VDC API of one source.
pub struct VdcApi {
    source_id: String,
    /// Base URL with its path ending in `/` (a trailing `/v1` the user included is removed).
    base: Url,
    client: reqwest::Client,
    policy: RetryPolicy,
    header: KeyHeader,
    /// The header value, marked sensitive (hidden from `Debug`).
    value: HeaderValue,
    /// Use the other case of `reports` (learned from a 404): for the job list, and for the
    /// paths below it (the published case differs between the two).
    flip: [AtomicBool; 2],
}

impl std::fmt::Debug for VdcApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VdcApi")
            .field("source_id", &self.source_id)
            .field("base", &self.base.as_str())
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl VdcApi {
    /// `key_error` is returned when the key can't be sent in a header (it never contains
    /// the key).
    pub fn new(
        source_id: &str,
        base: &Url,
        client: reqwest::Client,
        policy: RetryPolicy,
        header: KeyHeader,
        key: &Secret,
    ) -> Result<VdcApi, String> {
        let text = match header {
            KeyHeader::Bearer => format!("Bearer {}", key.expose()),
            KeyHeader::Named(_) => key.expose().to_string(),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            "the API key contains characters that cannot be sent in an HTTP header (control characters or non-ASCII); check for a stray newline or quote".to_string()
        })?;
        value.set_sensitive(true);
        let mut base = base.clone();
        let path = base.path().trim_end_matches('/').to_string();
        let path = path
            .strip_suffix("/v1")
            .or_else(|| path.strip_suffix("/V1"))
            .unwrap_or(&path);
        base.set_path(&format!("{path}/"));
        base.set_query(None);
        base.set_fragment(None);
        Ok(VdcApi {
            source_id: source_id.to_string(),
            base,
            client,
            policy,
            header,
            value,
            flip: [AtomicBool::new(false), AtomicBool::new(false)],
        })
    }

    /// The base URL requests are made against (no secrets in it).
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, endpoint: Endpoint<'_>, flip: bool, query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(endpoint.segments(flip));
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    fn http_error(&self, error: HttpError) -> SourceError {
        match error.status() {
            Some(status @ (401 | 403)) => SourceError::ApiKey {
                source_id: self.source_id.clone(),
                url: self.base.as_str().trim_end_matches('/').to_string(),
                header: self.header.describe(),
                status,
            },
            _ => SourceError::Http {
                source_id: self.source_id.clone(),
                error,
            },
        }
    }

    /// GET with the key, retried by the shared layer; on 404 the other case of `reports` is
    /// tried once. Returns the URL as shown in messages and the response.
    pub async fn send(
        &self,
        endpoint: Endpoint<'_>,
        query: &[(&str, String)],
        accept: &'static str,
        gzip: bool,
    ) -> Result<(String, reqwest::Response), SourceError> {
        let learned = &self.flip[usize::from(!matches!(endpoint, Endpoint::Jobs))];
        let preferred = learned.load(Ordering::Relaxed);
        let mut first_404 = None;
        for flip in [preferred, !preferred] {
            let url = self.url(endpoint, flip, query);
            let shown = url.to_string();
            let result = http::send_with_retry(&self.policy, &shown, || {
                let (name, value) = match &self.header {
                    KeyHeader::Bearer => (header::AUTHORIZATION, self.value.clone()),
                    KeyHeader::Named(name) => (name.clone(), self.value.clone()),
                };
                let mut request = self
                    .client
                    .get(url.clone())
                    .header(name, value)
                    .header(header::ACCEPT, accept);
                if gzip {
                    request = request.header(header::ACCEPT_ENCODING, "gzip");
                }
                request.send()
            })
            .await;
            match result {
                Ok(response) => {
                    if flip != preferred {
                        tracing::info!(source_id = %self.source_id, url = %shown, "the server wants the other letter case of `reports` in paths; using it from now on");
                        learned.store(flip, Ordering::Relaxed);
                    }
                    return Ok((shown, response));
                }
                // Report the 404 of the path as we first tried it.
                Err(error) if error.status() == Some(404) => match first_404.take() {
                    None => first_404 = Some(error),
                    Some(first) => return Err(self.http_error(first)),
                },
                Err(error) => return Err(self.http_error(error)),
            }
        }
        Err(
            self.http_error(first_404.unwrap_or_else(|| HttpError::Decode {
                url: self.base.to_string(),
                message: "no request was made".to_string(),
            })),
        )
    }

    /// GET a JSON body whole (collections are small; downloads use [`Self::send`]).
    async fn get_json(
        &self,
        endpoint: Endpoint<'_>,
        query: &[(&str, String)],
    ) -> Result<(String, bytes::Bytes), SourceError> {
        // "No Content": nothing is listed there. Read as the empty page it means, not as a
        // broken one retried until the cycle fails.
        http::fetch_body(
            &self.policy,
            MAX_PAGE_BYTES,
            EMPTY_PAGE,
            || self.send(endpoint, query, "application/json", false),
            |error| SourceError::Http {
                source_id: self.source_id.clone(),
                error,
            },
        )
        .await
    }

    /// GET one collection page and parse it. A body that is not a collection at all (a
    /// proxy's HTML page with status 200, a body cut short) is requested again with the
    /// same backoff and `max_retries` as a 5xx before it counts as failed.
    async fn get_page(
        &self,
        endpoint: Endpoint<'_>,
        query: &[(&str, String)],
    ) -> Result<(String, Page), SourceError> {
        let offset = query
            .iter()
            .find(|(k, _)| *k == "offset")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0);
        let read = |url: &str, body: &[u8]| {
            let page = parse_collection(body)?;
            if page.repaired {
                tracing::warn!(source_id = %self.source_id, url, "page read after repairing it: invalid UTF-8 replaced with U+FFFD, raw control characters in strings escaped, NaN/Infinity kept as strings");
            }
            for bad in &page.unreadable {
                tracing::warn!(
                    source_id = %self.source_id,
                    url,
                    record_id = %bad.id,
                    offset = offset.saturating_add(bad.position as u64),
                    error = %bad.error,
                    "skipping unreadable record; the rest of its page is read"
                );
                crate::metrics::global().record_skipped(&self.source_id);
            }
            Ok(page)
        };
        let failed = |error| SourceError::Http {
            source_id: self.source_id.clone(),
            error,
        };
        http::fetch_parsed(
            &self.policy,
            || self.get_json(endpoint, query),
            read,
            failed,
        )
        .await
    }

    fn paging_error(&self, url: String, error: PagingError) -> SourceError {
        SourceError::Http {
            source_id: self.source_id.clone(),
            error: HttpError::Decode {
                url,
                message: error.to_string(),
            },
        }
    }

    /// Every record of a collection, following an envelope's pages. Returns the first URL.
    ///
    /// The first request carries no paging parameters (the samples show whole arrays). An
    /// envelope is followed with `offset`/`limit` until an empty page or until every
    /// explicit fact it carries says the end is reached: its total (see [`total`]) and its
    /// `_links` without `next` (a page shorter than the `limit` it reports is not taken as
    /// the last: servers cap page sizes). An envelope with neither these nor a `limit` doesn't page. A
    /// server that answers the same full page for a new offset, pages past [`MAX_PAGES`],
    /// or sends more than [`MAX_COLLECTION_BYTES`] of records, fails the request: the
    /// collection can't be read whole.
    pub async fn collection(
        &self,
        endpoint: Endpoint<'_>,
    ) -> Result<(String, Vec<Box<RawValue>>), SourceError> {
        self.collection_with_repairs(endpoint)
            .await
            .map(|c| (c.url, c.records))
    }

    /// [`Self::collection`], with which records had bytes that were not valid UTF-8
    /// replaced and where unreadable records sat ([`Collection`]).
    pub async fn collection_with_repairs(
        &self,
        endpoint: Endpoint<'_>,
    ) -> Result<Collection, SourceError> {
        let mut all: Vec<Box<RawValue>> = Vec::new();
        let mut replaced: Vec<usize> = Vec::new();
        let mut gaps: Vec<usize> = Vec::new();
        let done = |url: Option<String>, records, replaced, gaps| {
            Ok(Collection {
                url: url.unwrap_or_default(),
                records,
                replaced,
                gaps,
            })
        };
        let mut held_bytes = 0usize;
        let mut query: Vec<(&str, String)> = Vec::new();
        let mut first_url = None;
        let mut previous: Option<u64> = None;
        // The length of the first page when it was a bare array, once we ask what follows,
        // and its first record.
        let mut bare_page: Option<usize> = None;
        let mut bare_first: Option<String> = None;
        // Records listed so far, unreadable ones included: what offsets count.
        let mut listed = 0usize;
        for page_number in 0..MAX_PAGES {
            let (url, page) = match self.get_page(endpoint, &query).await {
                Ok(answer) => answer,
                // Asked for what follows a bare array, the server refused the paging
                // parameters: it doesn't page, and the array was the whole collection.
                Err(SourceError::Http { error, .. })
                    if bare_page.is_some()
                        && error.status().is_some_and(|s| matches!(s, 400 | 404 | 422)) =>
                {
                    tracing::debug!(source_id = %self.source_id, %error, "the server refused offset/limit after a bare array; taking the array as the whole collection");
                    return done(first_url, all, replaced, gaps);
                }
                Err(e) => return Err(e),
            };
            first_url.get_or_insert(url.clone());
            let count = page.len();
            let print = fingerprint(&page.items);
            let limit = page.limit.filter(|l| *l > 0);
            if let (Some(first_len), Some(first)) = (bare_page, bare_first.as_deref())
                && !page.enveloped
                && page
                    .items
                    .iter()
                    .position(|r| r.get() == first)
                    .is_some_and(|at| at == 0 || count >= first_len + at)
            {
                // The array from its start again: the server ignores paging parameters,
                // and what we have is the whole collection as it was; the next cycle reads
                // what was added. Added at the front of a newest-first listing between two
                // requests (a job that just ran), the records before that start are new,
                // and the array is longer than the first by as many: a server that pages
                // would have answered with at most a page.
                return done(first_url, all, replaced, gaps);
            }
            if page_number > 0 && count > 0 && previous == Some(print) {
                let more_said =
                    page.next_link == Some(true) || page.total.is_some_and(|t| t > count as u64);
                // The last page served again past the end, saying it is the last.
                let last_said =
                    page.next_link == Some(false) || page.total.is_some_and(|t| t <= listed as u64);
                if (limit.is_some_and(|l| (count as u64) < l) && !more_said) || last_said {
                    // Offset ignored, but the page we have is the whole collection.
                    return done(first_url, all, replaced, gaps);
                }
                return Err(self.paging_error(
                    url,
                    PagingError::Repeated {
                        offset: listed as u64,
                        previous: listed.saturating_sub(count) as u64,
                        count,
                    },
                ));
            }
            held_bytes = page
                .items
                .iter()
                .fold(held_bytes, |n, raw| n.saturating_add(raw.get().len()));
            if held_bytes > MAX_COLLECTION_BYTES {
                return Err(SourceError::Http {
                    source_id: self.source_id.clone(),
                    error: HttpError::TooLarge {
                        url: first_url.unwrap_or(url),
                        limit: MAX_COLLECTION_BYTES,
                    },
                });
            }
            replaced.extend(page.replaced.iter().map(|i| all.len() + i));
            gaps.extend(page.unreadable.iter().map(|u| listed + u.position));
            if !page.enveloped && bare_page.is_none() {
                bare_first = page.items.first().map(|r| r.get().to_string());
            }
            all.extend(page.items);
            listed = listed.saturating_add(count);
            // Read on while anything says the envelope pages: a `limit` (a page may be
            // capped below it), a `next` link, a total not yet reached. A paged listing
            // ends on an empty page only: a total or `_links` without `next` that says
            // "last page" may be wrong (`paging` explains), and believing it could leave
            // entries unread for good. An envelope with none of these doesn't page.
            let more = limit.is_some()
                || page.next_link == Some(true)
                || page.total.is_some_and(|t| (listed as u64) < t);
            // A bare array may still be a page the server capped (the reference: "assume
            // unpaged arrays, and add defensive support for offset/limit"): what follows it
            // is asked for, and the listing ends on an empty or shorter array, or on the
            // same array again (a server that doesn't page).
            let more = if page.enveloped {
                more
            } else {
                let first = *bare_page.get_or_insert(count);
                count >= first
            };
            if count == 0 || !more {
                return done(first_url, all, replaced, gaps);
            }
            previous = Some(print);
            let page_size = match bare_page {
                Some(first) if !page.enveloped => first as u64,
                _ => limit.unwrap_or(count as u64),
            };
            query = vec![
                ("offset", listed.to_string()),
                ("limit", page_size.to_string()),
            ];
        }
        Err(self.paging_error(
            first_url.unwrap_or_else(|| self.base.to_string()),
            PagingError::TooManyPages,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn paths_as_published_and_flipped() {
        let seg = |e: Endpoint, flip| e.segments(flip).join("/");
        assert_eq!(seg(Endpoint::Jobs, false), "v1/reports/backup-jobs");
        assert_eq!(seg(Endpoint::Jobs, true), "v1/Reports/backup-jobs");
        assert_eq!(
            seg(Endpoint::Sessions { job: "j" }, false),
            "v1/Reports/backup-jobs/j/job-sessions"
        );
        assert_eq!(
            seg(
                Endpoint::Logs {
                    job: "j",
                    session: "s"
                },
                true
            ),
            "v1/reports/backup-jobs/j/job-sessions/s/logs"
        );
        assert_eq!(
            seg(
                Endpoint::Download {
                    job: "j",
                    session: "s"
                },
                false
            ),
            "v1/Reports/backup-jobs/j/job-sessions/s/logs/download"
        );
    }

    fn client() -> reqwest::Client {
        http::build_client(
            "sources.vdc_t.tls",
            &crate::config::common::TlsConfig::default(),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn api(base: &str, header: &str) -> VdcApi {
        VdcApi::new(
            "vdc_t",
            &Url::parse(base).unwrap(),
            client(),
            RetryPolicy::default(),
            KeyHeader::parse(header).unwrap(),
            &Secret::new("k3y-VALUE"),
        )
        .unwrap()
    }

    #[test]
    fn urls_keep_a_base_path_drop_v1_and_encode_ids() {
        let a = api("https://vdc.example.net/emea/v1/", "x-api-key");
        assert_eq!(a.base(), "https://vdc.example.net/emea/");
        let u = a.url(
            Endpoint::Sessions { job: "a b/c" },
            false,
            &[("offset", "5".into())],
        );
        assert_eq!(
            u.as_str(),
            "https://vdc.example.net/emea/v1/Reports/backup-jobs/a%20b%2Fc/job-sessions?offset=5"
        );
        let b = api("https://vdc.example.net", "x-api-key");
        assert_eq!(
            b.url(Endpoint::Jobs, false, &[]).as_str(),
            "https://vdc.example.net/v1/reports/backup-jobs"
        );
    }

    #[test]
    fn key_never_in_debug_and_headers_parse() {
        let a = api("https://h", "Authorization");
        assert_eq!(a.header, KeyHeader::Bearer);
        assert!(!format!("{a:?}").contains("k3y-VALUE"));
        assert!(!format!("{:?}", a.value).contains("k3y-VALUE"));
        assert_eq!(
            KeyHeader::parse("X-Api-Key").unwrap().describe(),
            "x-api-key"
        );
        assert!(KeyHeader::parse("bad header").is_none());
        assert!(KeyHeader::parse("").is_none());
        let bad = VdcApi::new(
            "vdc_t",
            &Url::parse("https://h").unwrap(),
            client(),
            RetryPolicy::default(),
            KeyHeader::Bearer,
            &Secret::new("line\nbreak-SECRET"),
        )
        .unwrap_err();
        assert!(!bad.contains("SECRET"), "{bad}");
    }

    #[test]
    fn collections_bare_and_enveloped() {
        let p = parse_collection(b" [ {\"id\":1}, {\"id\":2} ]").unwrap();
        assert_eq!((p.items.len(), p.enveloped), (2, false));
        let p = parse_collection(
            br#"{"Offset":0,"Limit":2,"TotalCount":5,"Results":[{"id":1},{"id":2}]}"#,
        )
        .unwrap();
        assert_eq!(
            (p.items.len(), p.enveloped, p.limit, p.total),
            (2, true, Some(2), Some(5))
        );
        let p = parse_collection(br#"{"items":[]}"#).unwrap();
        assert!(p.items.is_empty() && p.enveloped);
        assert!(
            parse_collection(br#"{"message":"nope"}"#)
                .unwrap_err()
                .contains("message")
        );
        assert!(parse_collection(b"<html>").unwrap_err().contains("<html>"));
        assert!(parse_collection(b"[1,").is_err());
    }

    #[test]
    fn a_byte_order_mark_and_whitespace_before_json_are_skipped() {
        let p = parse_collection(b"\xEF\xBB\xBF[{\"id\":1}]").unwrap();
        assert_eq!(p.items.len(), 1);
        let p = parse_collection(b"\xEF\xBB\xBF \r\n{\"items\":[{\"id\":1}]}").unwrap();
        assert!(p.enveloped && p.items.len() == 1);
        let e = parse_collection(b"\xEF\xBB\xBF<html>").unwrap_err();
        assert!(e.starts_with("expected a JSON array or object"), "{e}");
    }

    #[test]
    fn a_record_broken_beyond_repair_costs_only_itself() {
        for broken in [r#"str"#, r#"{"id":"x","t":"a\qb"}"#, r#"{"id":"y",}"#] {
            let body = format!(r#"[{{"id":"1"}},{{"id":"2"}},{broken},{{"id":"3"}},{{"id":"4"}}]"#);
            let p = parse_collection(body.as_bytes()).unwrap();
            let ids: Vec<&str> = p.items.iter().map(|r| r.get()).collect();
            assert_eq!(
                ids,
                [
                    r#"{"id":"1"}"#,
                    r#"{"id":"2"}"#,
                    r#"{"id":"3"}"#,
                    r#"{"id":"4"}"#
                ],
                "{broken}"
            );
            assert_eq!(
                (p.len(), p.unreadable[0].position, p.repaired),
                (5, 2, true)
            );
            assert!(!p.enveloped);
        }
        // In an envelope, its paging facts are still read.
        let p = parse_collection(
            br#"{"offset":0,"limit":3,"totalCount":7,"items":[{"id":"1"},{"id":"2","t":"\q"},{"id":"3"}],"_links":{"next":{"href":"/x?offset=3"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                p.items.len(),
                p.len(),
                p.enveloped,
                p.limit,
                p.total,
                p.next_link
            ),
            (2, 3, true, Some(3), Some(7), Some(true))
        );
        assert_eq!(p.unreadable[0].id, "2");
        // Brackets that don't balance can't be split: the page stays unreadable.
        assert!(parse_collection(br#"[{"id":"1"},{"id":"2""#).is_err());
        // Nor is an envelope cut short after its array: its paging facts may be lost.
        assert!(parse_collection(br#"{"items":[{"id":"1"},{"id":"\q"}],"totalCount":9"#).is_err());
    }

    #[test]
    fn odd_records_do_not_cost_their_page() {
        // A lone surrogate escape: the page reads, the record stays raw for the mapping.
        let p = parse_collection(
            br#"{"totalCount":2,"items":[{"id":"1","title":"\ud83d"},{"id":"2"}]}"#,
        )
        .unwrap();
        assert_eq!((p.items.len(), p.total, p.repaired), (2, Some(2), false));
        assert!(p.items[0].get().contains(r"\ud83d"));
        // A raw tab in a string, NaN, invalid UTF-8: repaired, facts kept.
        let mut body = b"{\"limit\":2,\"items\":[{\"id\":\"1\",\"title\":\"a\tb\",\"progress\":NaN},{\"id\":\"2\",\"title\":\"".to_vec();
        body.extend_from_slice(b"\xff\"}]}");
        let p = parse_collection(&body).unwrap();
        assert_eq!((p.items.len(), p.limit, p.repaired), (2, Some(2), true));
        let first: serde_json::Value = serde_json::from_str(p.items[0].get()).unwrap();
        assert_eq!(first["title"], "a\tb");
        assert_eq!(first["progress"], "NaN");
        let p = parse_collection(b"[{\"id\":\"1\",\"title\":\"x\ny\"}]").unwrap();
        assert!(p.repaired && p.items.len() == 1);
        // Still broken after the repair: the first error is the one reported.
        let e = parse_collection(br#"{"items":[{"id":"1"}"#).unwrap_err();
        assert!(e.starts_with("invalid JSON object"), "{e}");
    }

    #[test]
    fn a_page_count_is_not_a_total_but_total_count_is() {
        // `count` (this page) sorts before `totalCount`: the explicit total still wins.
        let p = parse_collection(
            br#"{"offset":0,"limit":2,"results":[{"id":1},{"id":2}],"count":2,"totalCount":5}"#,
        )
        .unwrap();
        assert_eq!(p.total, Some(5));
        let p = parse_collection(br#"{"total":7,"totalCount":5,"items":[{"id":1}]}"#).unwrap();
        assert_eq!(p.total, Some(5), "totalCount before total");
        // A `count` equal to the page's length may be the page's own: no total.
        let p = parse_collection(br#"{"count":2,"items":[{"id":1},{"id":2}]}"#).unwrap();
        assert_eq!(p.total, None);
        // Larger than the page: it can only be the total (Django REST framework).
        let p = parse_collection(br#"{"count":25,"results":[{"id":1},{"id":2}]}"#).unwrap();
        assert_eq!(p.total, Some(25));
    }

    /// Builds what a page adds to `{offset, limit, results}` from (offset, limit, length).
    type Extra = fn(u64, u64, usize) -> serde_json::Value;

    /// Serves 25 records 10 at a time under `/v1/reports/backup-jobs`, each page built by
    /// `extra(offset, limit, page)` on top of `{offset, limit, results}`.
    async fn paged_server(extra: Extra) -> (String, tokio::task::JoinHandle<()>) {
        use axum::{Json, Router, extract::Query, routing::get};
        use std::collections::HashMap;
        let app = Router::new().route(
            "/v1/reports/backup-jobs",
            get(move |Query(q): Query<HashMap<String, u64>>| async move {
                let offset = q.get("offset").copied().unwrap_or(0);
                let limit = q.get("limit").copied().unwrap_or(10).min(10);
                let page: Vec<_> = (offset..(offset + limit).min(25))
                    .map(|i| serde_json::json!({"id": i}))
                    .collect();
                let mut body = serde_json::json!({"offset": offset, "limit": limit});
                if let (Some(b), serde_json::Value::Object(more)) =
                    (body.as_object_mut(), extra(offset, limit, page.len()))
                {
                    b.extend(more);
                }
                body["results"] = serde_json::Value::Array(page);
                Json(body)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), server)
    }

    #[tokio::test]
    async fn paging_reads_every_page_when_the_envelope_has_a_page_count() {
        let cases: [(&str, Extra); 3] = [
            (
                "count + totalCount",
                |_, _, n| serde_json::json!({"count": n, "totalCount": 25}),
            ),
            ("count + _links", |o, l, n| {
                let mut links = serde_json::json!({"self": {"href": "x"}});
                if o + l < 25 {
                    links["next"] = serde_json::json!({"href": "y"});
                }
                serde_json::json!({"count": n, "_links": links})
            }),
            ("count only", |_, _, n| serde_json::json!({"count": n})),
        ];
        for (name, extra) in cases {
            let (base, server) = paged_server(extra).await;
            let (_, all) = api(&base, "x-api-key")
                .collection(Endpoint::Jobs)
                .await
                .unwrap();
            assert_eq!(all.len(), 25, "{name}");
            server.abort();
        }
    }

    /// A server answering bare arrays: `cap` records at most per answer, paging by
    /// `offset`/`limit` when `pages`, else always the whole array; `refuse` answers 400 to
    /// any paging parameter; `grow` records more at each request, at the end (a running
    /// session's log), or at the front when `front` (a newest-first listing of job
    /// sessions whose job just ran). Counts the requests.
    async fn bare_server(
        (total, cap, pages, refuse, grow, front): (u64, u64, bool, bool, u64, bool),
    ) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        use axum::{Json, Router, extract::Query, http::StatusCode, routing::get};
        use std::collections::HashMap;
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        let app = Router::new().route(
            "/v1/reports/backup-jobs",
            get(move |Query(q): Query<HashMap<String, u64>>| {
                let seen = seen.clone();
                async move {
                    let added = grow * seen.fetch_add(1, Ordering::SeqCst) as u64;
                    let listing: Vec<u64> = if front {
                        (0..added).rev().map(|i| 1000 + i).chain(0..total).collect()
                    } else {
                        (0..total + added).collect()
                    };
                    if refuse && !q.is_empty() {
                        return Err(StatusCode::BAD_REQUEST);
                    }
                    let (offset, limit) = if pages {
                        (
                            q.get("offset").copied().unwrap_or(0),
                            q.get("limit").copied().unwrap_or(cap).min(cap),
                        )
                    } else {
                        (0, cap)
                    };
                    let page: Vec<_> = listing
                        .iter()
                        .skip(offset as usize)
                        .take(limit as usize)
                        .map(|i| serde_json::json!({"id": i}))
                        .collect();
                    Ok(Json(serde_json::Value::Array(page)))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), requests, server)
    }

    #[tokio::test]
    async fn bare_arrays_capped_by_the_server_are_paged_to_the_end() {
        // (total, cap, pages, refuse, grow, front) → records, requests
        for (case, expected) in [
            ((150, 100, true, false, 0, false), (150, 2)),
            ((200, 100, true, false, 0, false), (200, 3)),
            ((7, 3, true, false, 0, false), (7, 3)),
            ((40, 100, true, false, 0, false), (40, 2)),
            // A server that doesn't page: the same array again, then we stop.
            ((40, 100, false, false, 0, false), (40, 2)),
            // ... also when it grew in between: nothing is taken twice.
            ((40, 100, false, false, 2, false), (40, 2)),
            // ... also when it grew at its front (r8 c, `vdc_prepend.py`: the cycle failed
            // with "it ignores `offset`" before).
            ((8, 100, false, false, 1, true), (8, 2)),
            ((8, 100, false, false, 3, true), (8, 2)),
            // A server refusing the parameters: the array was the whole collection.
            ((40, 100, false, true, 0, false), (40, 2)),
            ((0, 100, true, false, 0, false), (0, 1)),
        ] {
            let (base, requests, server) = bare_server(case).await;
            let (_, all) = api(&base, "x-api-key")
                .collection(Endpoint::Jobs)
                .await
                .unwrap_or_else(|e| panic!("{case:?}: {e}"));
            let ids: Vec<String> = all.iter().map(|r| r.get().to_string()).collect();
            let unique: std::collections::HashSet<_> = ids.iter().collect();
            assert_eq!(
                (all.len(), requests.load(Ordering::SeqCst)),
                expected,
                "{case:?}"
            );
            assert_eq!(unique.len(), ids.len(), "{case:?}: duplicates");
            server.abort();
        }
    }

    /// A listing past its end answered "204 No Content" (outside what VB365's spec answers,
    /// and VDC has none): the listing ends there, whole, instead of failing the cycle.
    #[tokio::test]
    async fn a_204_past_the_end_ends_the_listing() {
        use axum::{
            Json, Router, extract::Query, http::StatusCode, response::IntoResponse, routing::get,
        };
        use std::collections::HashMap;
        let app = Router::new().route(
            "/v1/reports/backup-jobs",
            get(|Query(q): Query<HashMap<String, u64>>| async move {
                let offset = q.get("offset").copied().unwrap_or(0);
                let limit = q.get("limit").copied().unwrap_or(100).min(10);
                if offset >= 25 {
                    return StatusCode::NO_CONTENT.into_response();
                }
                let page: Vec<_> = (offset..(offset + limit).min(25))
                    .map(|i| serde_json::json!({"id": i}))
                    .collect();
                Json(serde_json::json!({"results": page, "limit": limit})).into_response()
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let (_, all) = api(&format!("http://{addr}"), "x-api-key")
            .collection(Endpoint::Jobs)
            .await
            .expect("a 204 is an empty page");
        assert_eq!(all.len(), 25);
        server.abort();
    }
}
