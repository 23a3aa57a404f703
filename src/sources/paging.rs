//! When a paged listing has more pages: one rule for every source, strict about ending.
//!
//! Owns: the paging facts a page reports (`totalCount`, HAL `_links.next`), the decision
//! "ask for the next page or stop", and the two refusals that
//! keep a hostile or broken server from running a poll cycle forever: a page that repeats
//! the one before (a server ignoring `offset`) and more than [`MAX_PAGES`] pages in one
//! listing. Must not: do HTTP, decode records, or log (callers name the source and URL).
//!
//! The rule (README "How it polls"): a listing is read on by `offset` until a page comes
//! back **empty**. Nothing a page says ends it: a short page may be capped (asked 500, got
//! 100), and a `totalCount` or HAL `_links` without `next` can be wrong (the reference:
//! "never rely on `totalCount`", "do not depend on `next` being present"), so trusting
//! them could leave records unread for good. That costs one request per listing. Two
//! refusals keep a broken server from running a cycle forever:
//! 1. a page repeating the previous one for a new offset (a server ignoring `offset`) ends
//!    the listing when it is all there is (shorter or longer than asked, or the page itself
//!    says it is the last: a server that answers past the end with its last page), else
//!    one page is skipped to tell a listing that grew at its front, and a second repeat
//!    fails the listing;
//! 2. more than [`MAX_PAGES`] pages.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::value::RawValue;

/// Pages one listing may take before the cycle gives up (a server that never ends it).
/// At the largest `page_size` (10000) that is 100 million records in one listing.
pub const MAX_PAGES: u64 = 10_000;

/// What a page says about the pages around it (all optional: servers differ).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageFacts {
    /// `totalCount` (VB365 v6/v7; VDC envelopes may have one).
    pub total: Option<u64>,
    /// `Some(has_next)` when the page carries a non-empty HAL `_links` object.
    pub next_link: Option<bool>,
}

impl PageFacts {
    /// Read the facts from a page envelope object. Unknown or odd values are ignored.
    pub fn from_envelope(map: &serde_json::Map<String, serde_json::Value>) -> PageFacts {
        let field = |names: &[&str]| {
            map.iter()
                .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
                .map(|(_, v)| v)
        };
        let total = field(&["totalCount", "total"]).and_then(serde_json::Value::as_u64);
        let next_link = match field(&["_links"]) {
            Some(serde_json::Value::Object(links)) if !links.is_empty() => Some(
                links
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("next") && !v.is_null()),
            ),
            _ => None,
        };
        PageFacts { total, next_link }
    }
}

/// Why a listing was abandoned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error(
        "the server answered offset {offset} with the same {count} records as offset {previous}: it ignores `offset`, so the rest of the listing can't be reached"
    )]
    Repeated {
        offset: u64,
        previous: u64,
        count: usize,
    },
    #[error(
        "the listing did not end after {MAX_PAGES} pages (a server that never returns an empty page?)"
    )]
    TooManyPages,
}

/// What to do after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Request the page at this offset.
    Next(u64),
    Done,
}

/// The paging state of one listing.
#[derive(Debug, Clone)]
pub struct Pager {
    asked_limit: u64,
    offset: u64,
    pages: u64,
    previous: Option<(u64, u64)>,
    /// A repeated page was met and one page skipped to tell a listing that grew at its
    /// front from a server that ignores `offset`.
    skipped_ahead: bool,
}

impl Pager {
    /// A listing read `limit` records at a time from `offset`.
    pub fn new(offset: u64, limit: u64) -> Pager {
        Pager {
            asked_limit: limit,
            offset,
            pages: 0,
            previous: None,
            skipped_ahead: false,
        }
    }

    /// Go back `by` records (not before the start) without counting a page: records
    /// before the current offset disappeared while the listing was paged, and what moved
    /// down past the boundary must be read.
    pub fn rewind(&mut self, by: u64) {
        self.offset = self.offset.saturating_sub(by);
        self.previous = None;
        self.skipped_ahead = false;
    }

    /// The offset of the page to request now.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Start again at `offset` (a caller that rescans).
    pub fn restart(&mut self, offset: u64) {
        self.offset = offset;
        self.previous = None;
        self.skipped_ahead = false;
    }

    /// Account for the page just read at [`Self::offset`]: `count` records (readable or
    /// not) whose content hashes to `print` ([`fingerprint`]). `step_back` records of it are
    /// asked for again by the next page (an overlap the caller wants; ignored where it
    /// would not move forward).
    pub fn after_page(
        &mut self,
        count: usize,
        print: u64,
        facts: PageFacts,
        step_back: u64,
    ) -> Result<Step, PagingError> {
        self.pages += 1;
        let count = count as u64;
        if count == 0 {
            return Ok(Step::Done);
        }
        if let Some((previous, previous_print)) = self.previous
            && previous_print == print
            && previous != self.offset
        {
            // Offset ignored, but the whole collection may be in the page we have: it is
            // shorter than asked, or longer (`limit` ignored too: everything at once). Not
            // when the page itself says there is more (a `next` link, a larger total): then
            // the server caps its pages too, and the rest can't be reached.
            let more_said = facts.next_link == Some(true) || facts.total.is_some_and(|t| t > count);
            // ... or past the end of its listing it answers with the last page again, which
            // says so itself (no `next`, or a total the first read of it reached).
            let last_said = facts.next_link == Some(false)
                || facts
                    .total
                    .is_some_and(|t| t <= previous.saturating_add(count));
            if (count != self.asked_limit && !more_said) || last_said {
                return Ok(Step::Done);
            }
            // The same page also comes back when as many records as the pager moved were
            // added at the front of the listing between two requests (a newest-first
            // listing of a busy server): one whole page further on tells the two apart.
            if !self.skipped_ahead {
                self.skipped_ahead = true;
                if self.pages >= MAX_PAGES {
                    return Err(PagingError::TooManyPages);
                }
                self.offset = self.offset.saturating_add(count);
                return Ok(Step::Next(self.offset));
            }
            return Err(PagingError::Repeated {
                offset: self.offset,
                previous,
                count: count as usize,
            });
        }
        let end = self.offset.saturating_add(count);
        if self.pages >= MAX_PAGES {
            return Err(PagingError::TooManyPages);
        }
        self.skipped_ahead = false;
        self.previous = Some((self.offset, print));
        let back = if step_back < count { step_back } else { 0 };
        self.offset = end - back;
        Ok(Step::Next(self.offset))
    }
}

/// A hash of a page, to recognise a page served again for another offset: its record
/// count and its first and last records, as sent. That is enough: two pages of one listing
/// read at different offsets start with different records (the pager always moves forward
/// by fewer than a page's records, so the next page's first record sat at another position
/// of the previous one), while a server that ignores `offset` sends the very same page.
/// Hashing every record cost ~1.5 % of the daemon's CPU (BENCHMARKS.md).
pub fn fingerprint(records: &[Box<RawValue>]) -> u64 {
    print(
        records.len(),
        records
            .first()
            .zip(records.last())
            .map(|(f, l)| (f.get(), l.get())),
    )
}

/// [`fingerprint`] of records held as text (the same value for the same texts).
pub fn fingerprint_texts(records: &[Box<str>]) -> u64 {
    print(
        records.len(),
        records
            .first()
            .zip(records.last())
            .map(|(f, l)| (&**f, &**l)),
    )
}

fn print(count: usize, ends: Option<(&str, &str)>) -> u64 {
    let mut h = DefaultHasher::new();
    count.hash(&mut h);
    if let Some((first, last)) = ends {
        first.hash(&mut h);
        last.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(ids: std::ops::Range<u32>) -> Vec<Box<RawValue>> {
        ids.map(|i| serde_json::value::to_raw_value(&serde_json::json!({ "id": i })).unwrap())
            .collect()
    }

    fn n(ids: std::ops::Range<u32>) -> usize {
        ids.len()
    }

    fn fp(ids: std::ops::Range<u32>) -> u64 {
        fingerprint(&recs(ids))
    }

    #[test]
    fn records_as_text_have_the_same_fingerprint() {
        for ids in [0..0, 0..1, 0..3, 5..9] {
            let texts: Vec<Box<str>> = recs(ids.clone()).into_iter().map(Box::from).collect();
            assert_eq!(fingerprint_texts(&texts), fp(ids));
        }
    }

    fn facts(total: Option<u64>, next_link: Option<bool>) -> PageFacts {
        PageFacts { total, next_link }
    }

    /// The pages of one listing read forward (with any overlap short of a whole page)
    /// never share a fingerprint; the same page served again always does.
    #[test]
    fn fingerprints_tell_forward_pages_from_a_repeated_one() {
        for back in [0, 1, 50, 99] {
            let next = 100 - back;
            assert_ne!(fp(0..100), fp(next..next + 100), "overlap {back}");
            assert_ne!(
                fp(0..100),
                fp(next..next + 40),
                "overlap {back}, short page"
            );
        }
        assert_eq!(fp(0..100), fp(0..100));
        assert_ne!(fp(0..100), fp(0..99));
        assert_ne!(fp(0..1), fp(1..2));
    }

    #[test]
    fn a_capped_page_is_not_the_last_one() {
        // Asked 500, the server gives 100 at a time and says nothing else.
        let mut p = Pager::new(0, 500);
        assert_eq!(
            p.after_page(n(0..100), fp(0..100), facts(None, None), 0),
            Ok(Step::Next(100))
        );
        assert_eq!(
            p.after_page(n(100..200), fp(100..200), facts(None, None), 0),
            Ok(Step::Next(200))
        );
        assert_eq!(
            p.after_page(n(0..0), fp(0..0), facts(None, None), 0),
            Ok(Step::Done)
        );
    }

    /// A `totalCount` or `_links` without `next` that says "last page" is not believed:
    /// servers get both wrong (a total equal to the page's count, a stale one, only `self`
    /// on a full page), and the rest of the listing would be lost for good.
    #[test]
    fn totals_and_links_never_end_a_listing_before_an_empty_page() {
        for says_last in [
            facts(Some(100), None),
            facts(Some(0), Some(true)),
            facts(None, Some(false)),
            facts(Some(100), Some(false)),
        ] {
            let mut p = Pager::new(0, 100);
            assert_eq!(
                p.after_page(n(0..100), fp(0..100), says_last, 0),
                Ok(Step::Next(100)),
                "{says_last:?}"
            );
            assert_eq!(
                p.after_page(n(100..150), fp(100..150), says_last, 0),
                Ok(Step::Next(150)),
                "{says_last:?}"
            );
            assert_eq!(
                p.after_page(n(0..0), fp(0..0), says_last, 0),
                Ok(Step::Done)
            );
        }
    }

    /// Past the end, some servers answer with their last page again instead of an empty
    /// one: when that page says it is the last, the listing is done, full page or not.
    #[test]
    fn the_last_page_served_again_past_the_end_ends_the_listing() {
        for last in [facts(Some(200), None), facts(None, Some(false))] {
            let mut p = Pager::new(0, 100);
            assert_eq!(
                p.after_page(n(0..100), fp(0..100), facts(Some(200), Some(true)), 0),
                Ok(Step::Next(100))
            );
            assert_eq!(
                p.after_page(n(100..200), fp(100..200), last, 0),
                Ok(Step::Next(200))
            );
            assert_eq!(
                p.after_page(n(100..200), fp(100..200), last, 0),
                Ok(Step::Done),
                "{last:?}"
            );
        }
        // Without such a fact, a full page served again is a server ignoring `offset`.
        let mut p = Pager::new(0, 100);
        assert_eq!(
            p.after_page(n(0..100), fp(0..100), facts(None, None), 0),
            Ok(Step::Next(100))
        );
        assert_eq!(
            p.after_page(n(0..100), fp(0..100), facts(None, None), 0),
            Ok(Step::Next(200))
        );
        assert!(
            p.after_page(n(0..100), fp(0..100), facts(None, None), 0)
                .is_err()
        );
    }

    #[test]
    fn a_server_ignoring_offset_is_refused_unless_its_page_is_all_there_is() {
        let mut p = Pager::new(0, 100);
        assert_eq!(
            p.after_page(n(0..100), fp(0..100), facts(None, None), 0),
            Ok(Step::Next(100))
        );
        // The same page once: maybe the listing grew at its front; a page further on.
        assert_eq!(
            p.after_page(n(0..100), fp(0..100), facts(None, None), 0),
            Ok(Step::Next(200))
        );
        let e = p
            .after_page(n(0..100), fp(0..100), facts(None, None), 0)
            .unwrap_err();
        assert!(
            matches!(
                e,
                PagingError::Repeated {
                    offset: 200,
                    previous: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("ignores `offset`"));

        let mut p = Pager::new(0, 100);
        assert_eq!(
            p.after_page(n(0..7), fp(0..7), facts(None, None), 0),
            Ok(Step::Next(7))
        );
        assert_eq!(
            p.after_page(n(0..7), fp(0..7), facts(None, None), 0),
            Ok(Step::Done)
        );

        // Capped at 3 as well as ignoring `offset`, and saying there is more: refused, not
        // taken for the whole listing (that lost the rest silently).
        for more in [facts(None, Some(true)), facts(Some(5), None)] {
            let mut p = Pager::new(0, 10);
            assert_eq!(p.after_page(n(0..3), fp(0..3), more, 1), Ok(Step::Next(2)));
            assert_eq!(p.after_page(n(0..3), fp(0..3), more, 1), Ok(Step::Next(5)));
            let e = p.after_page(n(0..3), fp(0..3), more, 1).unwrap_err();
            assert!(matches!(e, PagingError::Repeated { offset: 5, .. }), "{e}");
        }

        // `limit` ignored as well: asked 2, served all 3 every time.
        let mut p = Pager::new(0, 2);
        assert_eq!(
            p.after_page(n(0..3), fp(0..3), facts(None, None), 0),
            Ok(Step::Next(3))
        );
        assert_eq!(
            p.after_page(n(0..3), fp(0..3), facts(None, None), 0),
            Ok(Step::Done)
        );
    }

    #[test]
    fn a_listing_that_grew_at_its_front_is_not_taken_for_one_ignoring_offset() {
        // Newest first, pages of 2 overlapping by 1: [9,8] at 0; one record added at the
        // front, so offset 1 is [9,8] again; the page after that is new.
        let mut p = Pager::new(0, 2);
        assert_eq!(
            p.after_page(n(8..10), fp(8..10), facts(None, None), 1),
            Ok(Step::Next(1))
        );
        assert_eq!(
            p.after_page(n(8..10), fp(8..10), facts(None, None), 1),
            Ok(Step::Next(3))
        );
        assert_eq!(
            p.after_page(n(6..8), fp(6..8), facts(None, None), 1),
            Ok(Step::Next(4))
        );
        // It can happen again later in the same listing.
        assert_eq!(
            p.after_page(n(6..8), fp(6..8), facts(None, None), 1),
            Ok(Step::Next(6))
        );
        assert_eq!(
            p.after_page(n(4..6), fp(4..6), facts(None, None), 1),
            Ok(Step::Next(7))
        );
    }

    #[test]
    fn an_endless_listing_stops_at_the_page_cap() {
        let mut p = Pager::new(0, 2);
        let mut result = Ok(Step::Next(0));
        for i in 0..MAX_PAGES as u32 + 1 {
            result = p.after_page(
                n(i * 2..i * 2 + 2),
                fp(i * 2..i * 2 + 2),
                facts(None, Some(true)),
                0,
            );
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(PagingError::TooManyPages));
    }

    #[test]
    fn overlap_steps_back_but_always_moves_forward() {
        let mut p = Pager::new(0, 10);
        assert_eq!(
            p.after_page(n(0..10), fp(0..10), facts(None, None), 2),
            Ok(Step::Next(8))
        );
        assert_eq!(
            p.after_page(n(8..9), fp(8..9), facts(None, None), 2),
            Ok(Step::Next(9))
        );
    }

    #[test]
    fn facts_from_envelopes() {
        let map = |v: serde_json::Value| v.as_object().unwrap().clone();
        let f = PageFacts::from_envelope(&map(serde_json::json!({
            "offset": 0, "limit": 30, "results": [], "totalCount": null,
            "_links": {"self": {"href": "/v6/RestoreSessions?offset=0"}}
        })));
        assert_eq!(f, facts(None, Some(false)));
        let f = PageFacts::from_envelope(&map(serde_json::json!({
            "totalCount": 42, "_links": {"self": {}, "next": {"href": "x"}}
        })));
        assert_eq!(f, facts(Some(42), Some(true)));
        let f = PageFacts::from_envelope(&map(serde_json::json!({"_links": {}, "total": "7"})));
        assert_eq!(f, facts(None, None));
    }
}
