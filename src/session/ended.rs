//! Sessions ended by back-channel logout, for sessions that live in cookies.
//!
//! A cookie session cannot be deleted: the browser holds it. So when the IdP says a session
//! ended (OpenID Connect Back-Channel Logout 1.0), the scope remembers the `sid` or `sub` it
//! named and the moment the logout happened (the cutoff), and refuses every session of that
//! `sid` (or `sub`) created at or before the cutoff. A login after the cutoff is a new session
//! and works.
//!
//! The cutoff is the logout token's `iat` (§2.4 requires it: the moment the IdP issued the
//! logout), never later than the moment it arrived, and never older than the token checks allow
//! (`MAX_LOGOUT_TOKEN_AGE`). Not the arrival time: a captured token replayed later, once the
//! `jti` memory is gone (a restart, another replica), would then end sessions made *after* the
//! logout it announced; with its `iat` it can only end what the logout ended already. A mark is kept as long as a session made before it could still be unexpired (the
//! longest session lifetime this scope has seen, at least [`MIN_RETENTION`]).
//!
//! Bounds: at most [`MAX_ENDED`] marks, each naming an identifier of at most 1 KiB (the logout
//! token's limit), so the memory is bounded by count and size. When the list is full of live
//! marks it **collapses**: every mark is replaced by one scope-wide cutoff, the newest, so every
//! session of the scope created before the newest logout must log in again. That fails safe: no
//! ended session ever comes back and no logout is lost; the price (everyone of that scope logs in
//! again) is paid only after [`MAX_ENDED`] logouts within one retention period, and is logged.
//! Evicting the oldest mark instead would silently revive a session the user ended; refusing the
//! logout would leave it alive too.
//!
//! What this cannot do (the README says it): the list lives in this process. A restart forgets
//! it, and other replicas never hear of it; the sessions it ended are valid again there until
//! they expire.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Session;
use crate::oidc::LEEWAY_SECS;

/// What a back-channel logout ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndBy {
    /// The IdP session: every session whose ID token carried this `sid`.
    Sid(String),
    /// The user: every session of this `sub` (a logout token without `sid`).
    Sub(String),
}

/// Most marks kept per scope before the list collapses (see the module docs).
pub const MAX_ENDED: usize = 10_000;
/// The shortest time a mark is kept, whatever the sessions seen so far lasted.
pub const MIN_RETENTION: u64 = 3600;

#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Sessions created (`iat`) at or before this are ended.
    cutoff: u64,
    /// When the mark may be dropped.
    until: u64,
}

impl Mark {
    fn merge(&mut self, other: Mark) {
        self.cutoff = self.cutoff.max(other.cutoff);
        self.until = self.until.max(other.until);
    }
}

#[derive(Default)]
struct Marks {
    sid: HashMap<Box<str>, Mark>,
    sub: HashMap<Box<str>, Mark>,
    /// After a collapse: every session of the scope created at or before this is ended.
    everyone: Option<Mark>,
}

impl Marks {
    fn len(&self) -> usize {
        self.sid.len() + self.sub.len()
    }
}

/// The ended-session list of one scope.
pub struct Ended {
    /// Whether any mark exists: the hot path takes no lock until the first logout.
    any: AtomicBool,
    /// The longest session lifetime (`exp - iat`) seen in this scope, in seconds.
    longest: AtomicU64,
    max: usize,
    marks: RwLock<Marks>,
}

impl Default for Ended {
    fn default() -> Self {
        Ended::new(MAX_ENDED)
    }
}

impl std::fmt::Debug for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ended")
            .field("any", &self.any.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Ended {
    /// A list that collapses past `max` marks.
    pub fn new(max: usize) -> Self {
        Ended {
            any: AtomicBool::new(false),
            longest: AtomicU64::new(0),
            max,
            marks: RwLock::new(Marks::default()),
        }
    }

    /// Notes how long `s` lives, so marks outlast every session they may end.
    pub fn note_lifetime(&self, s: &Session) {
        self.longest
            .fetch_max(s.exp.saturating_sub(s.iat), Ordering::Relaxed);
    }

    /// Ends every session named by `by` created at or before `cutoff` (the logout token's
    /// `iat`; a cutoff in the future is taken as `now`). Returns `true` when the list was full
    /// and collapsed into one scope-wide cutoff.
    pub fn end(&self, by: &EndBy, cutoff: u64, now: u64) -> bool {
        let keep = self.longest.load(Ordering::Relaxed).max(MIN_RETENTION);
        let mark = Mark {
            cutoff: cutoff.min(now),
            until: now.saturating_add(keep + LEEWAY_SECS),
        };
        // A poisoned lock (a panic while holding it; nothing below panics) is taken over: the
        // marks are plain data, and losing them would revive ended sessions.
        let mut g = self.marks.write().unwrap_or_else(|p| p.into_inner());
        let (map, id) = match by {
            EndBy::Sid(s) => (&mut g.sid, s),
            EndBy::Sub(s) => (&mut g.sub, s),
        };
        if let Some(m) = map.get_mut(id.as_str()) {
            m.merge(mark);
            return false;
        }
        let mut collapsed = false;
        if g.len() >= self.max {
            g.sid.retain(|_, m| m.until > now);
            g.sub.retain(|_, m| m.until > now);
            if g.everyone.is_some_and(|m| m.until <= now) {
                g.everyone = None;
            }
        }
        if g.len() >= self.max {
            let mut all = mark;
            for m in g.sid.values().chain(g.sub.values()) {
                all.merge(*m);
            }
            if let Some(e) = g.everyone {
                all.merge(e);
            }
            g.sid.clear();
            g.sub.clear();
            g.everyone = Some(all);
            collapsed = true;
        } else {
            let map = match by {
                EndBy::Sid(_) => &mut g.sid,
                EndBy::Sub(_) => &mut g.sub,
            };
            map.insert(id.as_str().into(), mark);
        }
        self.any.store(true, Ordering::Release);
        collapsed
    }

    /// Whether `s` was ended: its `sid` or `sub` is marked, or the list collapsed, with a
    /// cutoff at or after the session's creation.
    pub fn refuses(&self, s: &Session) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let g = self.marks.read().unwrap_or_else(|p| p.into_inner());
        let before = |m: Option<&Mark>| m.is_some_and(|m| s.iat <= m.cutoff);
        before(g.everyone.as_ref())
            || before(s.sid.as_deref().and_then(|sid| g.sid.get(sid)))
            || before(g.sub.get(s.sub.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::codec::tests::session;

    fn made(sub: &str, sid: Option<&str>, iat: u64) -> Session {
        let mut s = session(0);
        s.sub = sub.into();
        s.sid = sid.map(str::to_string);
        s.iat = iat;
        s.exp = iat + 300;
        s
    }

    #[test]
    fn sessions_made_before_the_logout_are_refused_and_later_ones_are_not() {
        let e = Ended::default();
        let alice = made("alice", Some("s1"), 1000);
        assert!(!e.refuses(&alice));
        assert!(!e.end(&EndBy::Sid("s1".into()), 1100, 1100));
        assert!(e.refuses(&alice));
        assert!(
            e.refuses(&made("alice", Some("s1"), 1100)),
            "same second: ended"
        );
        assert!(
            !e.refuses(&made("alice", Some("s1"), 1101)),
            "a later login"
        );
        assert!(
            !e.refuses(&made("alice", Some("s2"), 1000)),
            "another IdP session"
        );
        assert!(
            !e.refuses(&made("alice", None, 1000)),
            "a session without sid"
        );
        e.end(&EndBy::Sub("bob".into()), 1200, 1200);
        assert!(e.refuses(&made("bob", Some("s9"), 1150)));
        assert!(e.refuses(&made("bob", None, 1150)));
        assert!(!e.refuses(&made("bob", None, 1201)));
        assert!(
            !e.refuses(&made("carol", Some("bob"), 1150)),
            "sid and sub do not mix"
        );
        // A later logout of the same sid moves the cutoff forward.
        e.end(&EndBy::Sid("s1".into()), 1300, 1300);
        assert!(e.refuses(&made("alice", Some("s1"), 1250)));
    }

    #[test]
    fn the_cutoff_is_the_logout_not_its_arrival() {
        let e = Ended::default();
        // Issued at 1000, received (or replayed) at 1200: a session made at 1100, after the
        // logout it announces, is not ended; one made before is.
        e.end(&EndBy::Sub("alice".into()), 1000, 1200);
        assert!(e.refuses(&made("alice", None, 1000)));
        assert!(!e.refuses(&made("alice", None, 1100)));
        // An `iat` in the future (within the leeway) counts as now.
        e.end(&EndBy::Sub("bob".into()), 1300, 1250);
        assert!(e.refuses(&made("bob", None, 1250)));
        assert!(!e.refuses(&made("bob", None, 1251)));
    }

    #[test]
    fn a_full_list_drops_expired_marks_then_collapses_into_one_cutoff() {
        let e = Ended::new(3);
        e.note_lifetime(&made("x", None, 0));
        for (i, t) in [(0, 1000), (1, 1001), (2, 1002)] {
            assert!(!e.end(&EndBy::Sid(format!("s{i}")), t, t));
        }
        // Far later: the old marks have expired and make room.
        let later = 1000 + MIN_RETENTION + LEEWAY_SECS + 5;
        assert!(!e.end(&EndBy::Sid("s3".into()), later, later));
        assert_eq!(e.marks.read().unwrap().len(), 1);
        assert!(!e.end(&EndBy::Sub("u4".into()), later + 1, later + 1));
        assert!(!e.end(&EndBy::Sub("u5".into()), later + 2, later + 2));
        // Full of live marks: collapse. Everyone made before the newest logout is out.
        assert!(e.end(&EndBy::Sub("u6".into()), later + 3, later + 3));
        assert_eq!(e.marks.read().unwrap().len(), 0);
        assert!(e.refuses(&made("nobody", None, later + 3)));
        assert!(e.refuses(&made("u4", Some("s3"), later)));
        assert!(
            !e.refuses(&made("nobody", None, later + 4)),
            "logins after it work"
        );
        // After the collapse, marks are added again.
        assert!(!e.end(&EndBy::Sid("s7".into()), later + 10, later + 10));
        assert!(e.refuses(&made("a", Some("s7"), later + 9)));
    }

    #[test]
    fn marks_outlast_the_longest_session() {
        let e = Ended::default();
        e.note_lifetime(&made("x", None, 0));
        let mut long = made("x", None, 0);
        long.exp = 5 * MIN_RETENTION;
        e.note_lifetime(&long);
        e.end(&EndBy::Sub("x".into()), 100, 100);
        let m = *e.marks.read().unwrap().sub.get("x").unwrap();
        assert_eq!(m.until, 100 + 5 * MIN_RETENTION + LEEWAY_SECS);
    }
}
