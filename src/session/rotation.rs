//! Rotating a scope's `Secret` without logging anyone out (`PreviousSecrets`).
//!
//! A middleware lists the secrets it used before beside its `Secret`:
//! `Secret: B, PreviousSecrets: [A]`. `Secret` seals everything written from now on; the
//! previous secrets only open (cookie mode: the session, login-flow and logout-hint cookies;
//! Redis mode: tickets, records, and the `sid`/`sub` indexes a back-channel logout reads). What
//! an old secret opened is moved under the current one on that request's answer
//! ([`Scope::reseal`]): cookie mode writes the session's cookies again; Redis mode gives the
//! browser a new ticket, writes the record (and its index entries) under the new ticket's id and
//! lets the old record go. The flow and hint cookies are not rewritten: each is read once (at
//! the callback, at logout) and cleared there.
//!
//! **Scope identity during a rotation.** A [`ScopeKey`] is the sealing `Secret` plus the other
//! parts (provider, client, cookie names, storage); the previous secrets are not part of it.
//! So middlewares that shared a scope keep sharing it at each step of `A → B [A] → B`, even
//! while a reload has given only some of them the previous list (the scope opens under every
//! previous secret any member lists). Across the steps, scopes are linked by
//! [`ScopeKey::succeeds`]:
//! - `A → B [A]`: the new key (sealing `B`) *succeeds* the old one because it still opens what
//!   the old one sealed (its previous secrets hold `A`) and every other part is equal. The
//!   registry (`crate::scopes`) builds the new scope as the successor: it takes over the old
//!   one's memory (cookie mode's list of sessions a back-channel logout ended, so they do not
//!   come back under the new secret) and replaces it;
//! - `B [A] → B`: the same key, other previous secrets: the scope is rebuilt (its codec no longer
//!   opens `A`) and takes over the same memory, as for a change of cookie attributes.
//!
//! A value only a dropped secret opened is then foreign: anonymous, and cleared as a broken
//! value when no other scope uses the same cookie names.
//!
//! **Cost.** With no previous secret, nothing changes on the hot path: one key is tried, and
//! the re-seal check is one boolean. With previous secrets, a value sealed under the current one
//! still costs one decryption; a value under an old one costs one failed tag check per newer
//! key, then the re-seal once (the remembered-session cache keeps the mark, so a remembered old
//! value is still re-sealed).

use std::collections::HashMap;
use std::sync::Arc;

use super::scope::ScopeKey;
use super::store::Store;
use super::{RequestCookies, Scope, Secret, Session};
use crate::error::Error;

/// How long a Redis record moved under the current secret stays readable under its old ticket:
/// requests the browser sent before it received the new ticket (a page's parallel requests)
/// still find their session, and share the move ([`MoveCell`]). Then the old record expires.
pub const MOVE_GRACE_SECS: u64 = 30;

/// One move of a Redis record under the current secret, shared by every request carrying the
/// same old ticket: the new ticket cookie's value and its record's expiry.
pub type MoveCell = Arc<tokio::sync::OnceCell<Result<(String, u64), String>>>;

/// In-flight and recent moves, by old record id.
pub type Moves = tokio::sync::Mutex<HashMap<[u8; 32], (u64, MoveCell)>>;

impl ScopeKey {
    /// This key with `previous` as the secrets that open but do not seal, in the order given;
    /// the sealing secret and repeats are left out.
    pub fn with_previous(mut self, previous: impl IntoIterator<Item = Secret>) -> Self {
        for s in previous {
            if s != self.secret && !self.previous.contains(&s) {
                self.previous.push(s);
            }
        }
        self
    }

    /// Whether two keys are equal in every part but their secrets.
    pub fn same_but_secrets(&self, other: &ScopeKey) -> bool {
        self.provider_url == other.provider_url
            && self.client_id == other.client_id
            && self.prefix == other.prefix
            && self.domain == other.domain
            && self.path == other.path
            && self.storage == other.storage
    }

    /// Whether the two keys open the same values: equal, and the same previous secrets.
    pub fn same_secrets(&self, other: &ScopeKey) -> bool {
        self == other && self.previous == other.previous
    }

    /// Whether this key's scope is the successor of `old`'s in a rotation (module docs): another
    /// sealing secret, `old`'s among the previous secrets, every other part equal.
    pub fn succeeds(&self, old: &ScopeKey) -> bool {
        self.secret != old.secret
            && self.previous.contains(&old.secret)
            && self.same_but_secrets(old)
    }

    /// Whether the key has previous secrets (a rotation is under way).
    pub fn rotating(&self) -> bool {
        !self.previous.is_empty()
    }

    /// The key material of every previous secret, in order: what [`ScopeKey::master`] was while
    /// that secret sealed.
    pub(super) fn previous_masters(&self) -> Vec<Vec<u8>> {
        self.previous.iter().map(|s| self.master_of(s)).collect()
    }
}

impl PartialEq for ScopeKey {
    /// The identity: the sealing secret and the other parts, not the previous secrets.
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret && self.same_but_secrets(other)
    }
}

impl Eq for ScopeKey {}

impl Scope {
    /// Whether the scope opens under previous secrets (only then can a value need a re-seal).
    pub fn rotating(&self) -> bool {
        self.codec.rotating()
    }

    /// `Set-Cookie` values moving this request's `session` under the current `Secret` when a
    /// previous one opened it (module docs); nothing otherwise. Cookie mode: the session's
    /// cookies sealed anew. Redis mode: a new ticket whose record holds `session`, the old record
    /// expiring after [`MOVE_GRACE_SECS`].
    pub async fn reseal(
        &self,
        session: &Session,
        req: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, Error> {
        match &self.store {
            Store::Cookie if session.sealed_by_previous => self.write_session(session, req, now),
            Store::Cookie => Ok(Vec::new()),
            Store::Redis(r) => match r.ticket_of(req) {
                Some(t) if t.is_previous() => {
                    let (value, until) = Box::pin(r.rekey(&t, session, now)).await?;
                    Ok(vec![self.codec.ticket_cookie(
                        r.cookie_name(),
                        value,
                        until.saturating_sub(now),
                    )])
                }
                _ => Ok(Vec::new()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::codec::tests::{browser, session};
    use crate::session::{Flow, Keep, SameSite, SessionCookieConfig, random_token};

    const A: &str = "rotation-secret-A-0123456789abcdefghij";
    const B: &str = "rotation-secret-B-0123456789abcdefghij";
    const C: &str = "rotation-secret-C-0123456789abcdefghij";

    fn key(secret: &str, previous: &[&str]) -> ScopeKey {
        ScopeKey::new(
            &Secret::new(secret),
            "https://idp.example/r",
            "app",
            "P",
            None,
            "/",
        )
        .with_previous(previous.iter().map(|s| Secret::new(*s)))
    }

    fn scope(k: &ScopeKey) -> Scope {
        let attrs = SessionCookieConfig {
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: 0,
            idle_timeout: None,
        };
        Scope::new(
            k,
            attrs,
            vec!["/logout".into()],
            Keep::default(),
            vec![],
            vec!["m".into()],
        )
    }

    fn req(header: &str) -> RequestCookies<'_> {
        RequestCookies::parse([header].into_iter())
    }

    #[test]
    fn identity_ignores_previous_secrets_and_successors_are_found() {
        let a = key(A, &[]);
        let b_a = key(B, &[A]);
        let b = key(B, &[]);
        // Membership does not change while the previous list does.
        assert_eq!(b_a, b);
        assert!(!b_a.same_secrets(&b));
        assert_ne!(a, b_a);
        assert!(b_a.succeeds(&a));
        assert!(!b.succeeds(&a), "B alone opens nothing of A");
        assert!(!a.succeeds(&a));
        // Another client, with A kept: not a successor.
        let other = ScopeKey::new(
            &Secret::new(B),
            "https://idp.example/r",
            "x",
            "P",
            None,
            "/",
        )
        .with_previous([Secret::new(A)]);
        assert!(!other.succeeds(&a));
        // The sealing secret and repeats are not previous secrets.
        assert_eq!(key(B, &[B, A, A]).previous, vec![Secret::new(A)]);
        assert!(!b.rotating() && b_a.rotating());
        // The previous secrets never reach Debug.
        assert!(!format!("{b_a:?}").contains("rotation-secret"));
    }

    #[test]
    fn a_previous_secret_opens_and_says_so() {
        let old = scope(&key(A, &[]));
        // Several chunks: the pieces are decoded into one buffer before each key is tried.
        let set = old
            .write_session(&session(6000), &RequestCookies::default(), 1000)
            .unwrap();
        let under_a = browser(&set);
        assert!(old.open_session(&req(&under_a)).is_some());

        // C is tried first and fails: the buffer must be intact for A (the second previous).
        let rotated = scope(&key(B, &[C, A]));
        let opened = rotated.open_session(&req(&under_a)).unwrap();
        assert!(opened.sealed_by_previous);
        // Remembered, it keeps its mark (and is re-sealed again until the browser updates).
        assert!(
            rotated
                .open_session(&req(&under_a))
                .unwrap()
                .sealed_by_previous
        );

        // The re-seal writes it under B: it opens under B alone, unmarked, and not under A.
        let resealed = futures_now(rotated.reseal(&opened, &req(&under_a), 1200)).unwrap();
        assert!(!resealed.is_empty());
        let under_b = browser(&resealed);
        let b_only = scope(&key(B, &[]));
        let again = b_only.open_session(&req(&under_b)).unwrap();
        assert!(!again.sealed_by_previous);
        assert_eq!(again.sub, opened.sub);
        assert!(old.open_session(&req(&under_b)).is_none());
        // A value of the current secret needs nothing.
        assert!(
            futures_now(rotated.reseal(&again, &req(&under_b), 1200))
                .unwrap()
                .is_empty()
        );
        // A dropped: the A cookie is foreign now.
        assert!(b_only.open_session(&req(&under_a)).is_none());
        assert!(!b_only.clear_present(&req(&under_a)).is_empty());
    }

    #[test]
    fn flow_and_hint_cookies_of_a_previous_secret_open() {
        let old = scope(&key(A, &[]));
        let rotated = scope(&key(B, &[A]));
        let state = random_token();
        let flow = Flow {
            state: state.clone(),
            nonce: "n".into(),
            verifier: None,
            return_to: "https://a/x".into(),
            created: 1000,
            redirect_uri: String::new(),
            resources: Vec::new(),
            challenge: None,
            silent: false,
            step_up: None,
        };
        let set = old
            .codec()
            .start_flow(&flow, &RequestCookies::default(), 1000)
            .unwrap();
        let header = browser(&set[..1]);
        let (taken, _) = rotated
            .codec()
            .take_flow(&req(&header), &state, 1010)
            .unwrap();
        assert_eq!(taken.state, state);
        assert!(
            scope(&key(B, &[]))
                .codec()
                .take_flow(&req(&header), &state, 1010)
                .is_err()
        );

        let hint = old.write_hint(Some("eyJ.the.idtoken")).unwrap();
        let header = browser(&hint);
        assert_eq!(
            rotated.read_hint(&req(&header)).as_deref(),
            Some("eyJ.the.idtoken")
        );
        assert_eq!(scope(&key(B, &[])).read_hint(&req(&header)), None);
    }

    /// Runs a future that does no I/O (the cookie-mode re-seal) to completion.
    fn futures_now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the cookie-mode re-seal waited"),
        }
    }
}
