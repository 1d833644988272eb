//! `SessionCookie.IdleTimeout`: a session nobody uses for that long ends, even though its
//! tokens are still good. The absolute lifetime (the token's `exp`, refreshes) is untouched.
//!
//! **The stamp.** A session carries `Session::active`, the last time activity was recorded.
//! Writing it on every request would rewrite the cookie (cookie mode) or the record (Redis
//! mode) every time, so it moves only when it is at least [`interval`] old: a quarter of the
//! timeout, between 1 s and [`MAX_INTERVAL`]. A session with no stamp (no idle timeout when it
//! was made, or sealed before stamps existed) runs its idle clock from `iat`, the login or the
//! last refresh: both happen on a request, so both are activity.
//!
//! **Precision.** The stamp lags the last use by less than one interval, so the session ends
//! when `now ≥ stamp + IdleTimeout + interval` ([`is_idle`]): never before `IdleTimeout` has
//! passed since the last use, at the latest `IdleTimeout + interval` after it.
//!
//! **Where the stamp goes.** Cookie mode: the session is re-sealed and sent as `Set-Cookie` on
//! that answer (2xx included), and only then. Redis mode: the record is rewritten with a
//! compare-and-set on the value just read (the refresh's script), so a logout in between stays
//! done and a refresh in between wins; the other replicas forget their copy as after a refresh.
//! No Redis command runs for a request whose stamp is fresh.
//!
//! **One scope, several middlewares.** The timeout is a property of the session, and a session
//! is the scope's: when members disagree the **shortest** applies to all of them ([`IdlePolicy`];
//! a member without `IdleTimeout` sets no limit of its own). Every member that asked for one
//! thereby keeps its promise (no session through it stays open longer than it said), and no
//! member can be made laxer by another; `--check-config` warns about the disagreement.
//!
//! **Off costs nothing**: without `IdleTimeout` the request path reads one atomic and does
//! nothing else.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::scope::Scope;
use super::store::{RedisStore, Ticket};
use super::{RequestCookies, Session};
use crate::error::Error;

/// The longest interval between two stamps: however long the timeout, a session ends at most a
/// minute after it should.
pub const MAX_INTERVAL: u64 = 60;

/// How old the stamp may get before a request moves it, for `timeout` (seconds): a quarter of
/// it, at least 1 s, at most [`MAX_INTERVAL`].
pub fn interval(timeout: u64) -> u64 {
    (timeout / 4).clamp(1, MAX_INTERVAL)
}

/// When the idle clock of `s` starts: its stamp, or `iat` (login, refresh) when that is later or
/// the session has no stamp.
pub fn last_active(s: &Session) -> u64 {
    s.active.map_or(s.iat, |a| a.max(s.iat))
}

/// Whether `s` has been idle too long at `now` under `timeout` (see the module docs for the
/// interval of slack).
pub fn is_idle(s: &Session, timeout: u64, now: u64) -> bool {
    now >= last_active(s)
        .saturating_add(timeout)
        .saturating_add(interval(timeout))
}

/// Whether a request at `now` should move the stamp of `s`.
pub fn stamp_due(s: &Session, timeout: u64, now: u64) -> bool {
    now >= last_active(s).saturating_add(interval(timeout))
}

/// The idle timeout of a scope: each member's own, and the shortest of them, which applies.
#[derive(Debug, Default)]
pub struct IdlePolicy {
    by_member: Mutex<BTreeMap<String, u64>>,
    /// The shortest timeout in seconds; 0 = off. Read on every request (one atomic load).
    effective: AtomicU64,
}

impl IdlePolicy {
    /// The timeout that applies, if any.
    pub fn timeout(&self) -> Option<u64> {
        match self.effective.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Exactly these members (a scope built or reset by a reload), each with its timeout.
    pub fn reset<'a>(&self, members: impl IntoIterator<Item = (&'a str, Option<u64>)>) {
        let mut map = self
            .by_member
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.clear();
        for (m, t) in members {
            if let Some(t) = t {
                map.insert(m.to_string(), t);
            }
        }
        self.publish(&map);
    }

    /// `member` joins (or changes) with `timeout`.
    pub fn join(&self, member: &str, timeout: Option<u64>) {
        let mut map = self
            .by_member
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match timeout {
            Some(t) => map.insert(member.to_string(), t),
            None => map.remove(member),
        };
        self.publish(&map);
    }

    /// `member` leaves: its timeout no longer applies.
    pub fn leave(&self, member: &str) {
        let mut map = self
            .by_member
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.remove(member);
        self.publish(&map);
    }

    fn publish(&self, map: &BTreeMap<String, u64>) {
        let t = map.values().copied().min().unwrap_or(0);
        self.effective.store(t, Ordering::Relaxed);
    }
}

impl Scope {
    /// The idle timeout that applies to this scope's sessions (seconds), if any.
    pub fn idle_timeout(&self) -> Option<u64> {
        self.idle.timeout()
    }

    /// The members' idle timeouts (see [`IdlePolicy`]).
    pub fn idle_policy(&self) -> &IdlePolicy {
        &self.idle
    }

    /// Records activity of `s`, the session of this request, at `now` (the caller checked
    /// [`stamp_due`]). Cookie mode: the `Set-Cookie` values of the stamped session. Redis mode:
    /// the record is stamped in place (no cookie changes); nothing when it changed or ended
    /// meanwhile, since whoever changed it wrote a newer state.
    pub async fn touch(
        &self,
        s: &Session,
        req: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, Error> {
        let Some(timeout) = self.idle_timeout() else {
            return Ok(Vec::new());
        };
        match self.redis() {
            None => {
                let stamped = Session {
                    active: Some(now),
                    rendered: Default::default(),
                    ..s.clone()
                };
                self.write_session(&stamped, req, now)
            }
            Some(r) => {
                if let Some(t) = r.ticket_of(req) {
                    r.touch(&t, timeout, now).await?;
                }
                Ok(Vec::new())
            }
        }
    }
}

impl RedisStore {
    /// Stamps the record of `t` at `now`: read, stamp, conditional write (one GET, one EVAL and
    /// the invalidation's PUBLISH). Skipped when the record is gone or another replica stamped
    /// it within the interval already (its memory of the session was older than the record).
    async fn touch(&self, t: &Ticket, timeout: u64, now: u64) -> Result<(), Error> {
        let Some((sealed, cur)) = self.fetch_sealed(t).await? else {
            return Ok(());
        };
        if !stamp_due(&cur, timeout, now) {
            return Ok(());
        }
        let stamped = Session {
            active: Some(now),
            ..cur
        };
        // The record keeps its expiry: the stamp changes neither `exp` nor the refresh token.
        let until = Self::expires_at(&stamped, now);
        let swapped = self.swap(t, &sealed, &stamped, until).await?;
        if !swapped {
            tracing::debug!("a session record changed while it was stamped; its newer value stays");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::codec::tests::{browser, session};
    use crate::session::scope::{Keep, ScopeKey};
    use crate::session::{SameSite, Secret, SessionCookieConfig};

    fn at(iat: u64, active: Option<u64>) -> Session {
        Session {
            iat,
            exp: iat + 100_000,
            active,
            ..session(10)
        }
    }

    #[test]
    fn the_interval_is_a_quarter_between_one_second_and_a_minute() {
        assert_eq!(interval(1), 1);
        assert_eq!(interval(6), 1);
        assert_eq!(interval(8), 2);
        assert_eq!(interval(120), 30);
        assert_eq!(interval(240), 60);
        assert_eq!(interval(86_400), MAX_INTERVAL);
    }

    #[test]
    fn a_session_ends_between_the_timeout_and_one_interval_later() {
        // Timeout 600 s, interval 60 s. Used last at 1000, stamp as late as it can lag (941).
        let t = 600;
        let s = at(100, Some(941));
        assert!(
            !stamp_due(&s, t, 1000),
            "the use at 1000 did not move the stamp"
        );
        assert!(
            !is_idle(&s, t, 1000 + t),
            "alive a full timeout after the last use"
        );
        assert!(is_idle(&s, t, 1000 + t + interval(t)));
        // The stamp exactly at the last use: ends exactly one interval after the timeout.
        let s = at(100, Some(1000));
        assert!(!is_idle(&s, t, 1000 + t + interval(t) - 1));
        assert!(is_idle(&s, t, 1000 + t + interval(t)));
    }

    #[test]
    fn the_stamp_moves_once_per_interval() {
        let t = 600;
        let s = at(1000, None);
        assert!(!stamp_due(&s, t, 1000));
        assert!(!stamp_due(&s, t, 1059));
        assert!(stamp_due(&s, t, 1060));
        let moved = at(1000, Some(1060));
        assert!(!stamp_due(&moved, t, 1119));
        assert!(stamp_due(&moved, t, 1120));
    }

    #[test]
    fn sessions_without_a_stamp_count_from_iat_and_refreshes_count_as_activity() {
        // Sealed before stamps existed: no `la` in the JSON; the clock runs from `iat`.
        let mut json = serde_json::to_value(at(5000, Some(1))).unwrap();
        json.as_object_mut().unwrap().remove("la");
        let legacy: Session = serde_json::from_value(json).unwrap();
        assert_eq!(legacy.active, None);
        assert_eq!(last_active(&legacy), 5000);
        assert!(!is_idle(&legacy, 60, 5000 + 60 + 14));
        assert!(is_idle(&legacy, 60, 5000 + 60 + 15));
        // A refresh (new `iat`) later than the stamp: the clock runs from the refresh.
        assert_eq!(last_active(&at(7000, Some(6000))), 7000);
        assert_eq!(last_active(&at(7000, Some(8000))), 8000);
    }

    #[test]
    fn the_shortest_member_timeout_applies() {
        let p = IdlePolicy::default();
        assert_eq!(p.timeout(), None);
        p.reset([("a", Some(600)), ("b", None), ("c", Some(300))]);
        assert_eq!(p.timeout(), Some(300));
        p.leave("c");
        assert_eq!(p.timeout(), Some(600));
        p.join("inline", Some(30));
        assert_eq!(p.timeout(), Some(30));
        p.join("inline", None);
        assert_eq!(p.timeout(), Some(600));
        p.reset([("a", None)]);
        assert_eq!(p.timeout(), None);
    }

    #[tokio::test]
    async fn cookie_mode_touch_reseals_with_the_stamp() {
        let key = ScopeKey::new(
            &Secret::new("0123456789abcdef0123456789abcdef!"),
            "u",
            "c",
            "P",
            None,
            "/",
        );
        let attrs = SessionCookieConfig {
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: 0,
            idle_timeout: Some(600),
        };
        let scope = Scope::new(
            &key,
            attrs,
            vec![],
            Keep::default(),
            vec![],
            vec!["m".into()],
        );
        let none = RequestCookies::default();
        // Off: nothing is written.
        assert!(
            scope
                .touch(&at(1000, None), &none, 1100)
                .await
                .unwrap()
                .is_empty()
        );
        scope.idle_policy().reset([("m", Some(600))]);
        let set = scope.touch(&at(1000, None), &none, 1100).await.unwrap();
        let header = browser(&set);
        let req = RequestCookies::parse([header.as_str()].into_iter());
        let got = scope.open_session(&req).unwrap();
        assert_eq!(got.active, Some(1100));
        assert_eq!(
            (got.iat, got.exp),
            (1000, 101_000),
            "the lifetime is unchanged"
        );
    }
}
