//! The scope registry: every live session scope by its [`ScopeKey`], shared by the YAML
//! middlewares, the inline blocks registered at runtime and every configuration reload.
//!
//! A session belongs to its scope, not to the middleware that made it (see
//! [`crate::session::scope`]). Finding the scope by key at runtime is what lets an inline block
//! join the scope of a YAML middleware configured alike (one login for both), and lets a reload
//! keep the same [`Scope`] objects for unchanged keys: their memory (sessions ended by a
//! back-channel logout, the refresh single-flight) survives the reload. (Logout-token `jti`s are
//! not a scope's: one memory per OpenID client, owned by the app, see `crate::oidc::JtiMemory`.)
//! A scope is rebuilt only when the cookie attributes its codec writes with change (or its
//! logout paths); the rebuilt scope takes over the old one's ended-session list
//! ([`Scope::inherit`]): the cookies still open under the same key, and a reload must not revive
//! a session a back-channel logout ended.

use std::sync::{Arc, Mutex, PoisonError};

use crate::auth::{MiddlewareConfig, idle_timeouts, keep_of, members_key, scope_key, scope_of};
use crate::session::{Judge, Keep, Scope, ScopeKey, SessionCookieConfig};

/// Beyond this many scopes, scopes left without members are forgotten (bounds the memory a
/// stream of registrations with distinct keys can take).
pub const MAX_IDLE_SCOPES: usize = 1024;

struct Slot {
    key: ScopeKey,
    attrs: SessionCookieConfig,
    hint_paths: Vec<String>,
    scope: Arc<Scope>,
}

/// Finishes a newly built scope (e.g. gives it a shared session store).
pub type FinishScope = Box<dyn Fn(Scope, &ScopeKey) -> Scope + Send + Sync>;

/// The scopes by key (see the module docs).
pub struct ScopeRegistry {
    slots: Mutex<Vec<Slot>>,
    finish: FinishScope,
}

impl Default for ScopeRegistry {
    fn default() -> Self {
        ScopeRegistry::new(Box::new(|s, _| s))
    }
}

/// The login-time judge of a member, when it has one (assertions checked at login only).
pub fn judge_of(cfg: &MiddlewareConfig) -> Option<Judge> {
    (!cfg.check_on_every_request && !cfg.assert_claims.is_empty())
        .then(|| Judge::new(&cfg.name, &cfg.assert_claims))
}

fn hint_paths(members: &[&MiddlewareConfig]) -> Vec<String> {
    let mut p: Vec<String> = members.iter().map(|m| m.logout_uri.clone()).collect();
    p.sort();
    p.dedup();
    p
}

impl ScopeRegistry {
    /// A registry whose new scopes all pass through `finish` (the one place scopes are made,
    /// for the YAML file, reloads and inline blocks alike).
    pub fn new(finish: FinishScope) -> Self {
        ScopeRegistry {
            slots: Mutex::new(Vec::new()),
            finish,
        }
    }

    /// The scope of `members` (which share one key), holding exactly them: the existing scope
    /// of that key when its cookie attributes and logout paths are the same, else a new one.
    pub fn set(&self, members: &[&MiddlewareConfig]) -> Option<Arc<Scope>> {
        let first = members.first()?;
        let key = members_key(members)?;
        let attrs = first.session_cookie.clone();
        let paths = hint_paths(members);
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.iter().find(|s| s.key == key)
            && s.key.same_secrets(&key)
            && s.attrs == attrs
            && paths.iter().all(|p| s.hint_paths.contains(p))
        {
            let mut keep = Keep::default();
            for m in members {
                keep.merge(&keep_of(m));
            }
            s.scope.reset(
                keep,
                members.iter().filter_map(|m| judge_of(m)).collect(),
                members.iter().map(|m| m.name.clone()).collect(),
            );
            s.scope.idle_policy().reset(idle_timeouts(members));
            return Some(s.scope.clone());
        }
        let mut fresh = scope_of(members)?;
        // Rebuilt under the same key (other cookie attributes, logout paths or previous
        // secrets), or the successor of a scope whose Secret was rotated (its sealing secret is
        // among this key's previous secrets, see `session::rotation`): its cookies still open,
        // so the sessions a back-channel logout ended must stay ended.
        let replaces = |s: &Slot| s.key == key || key.succeeds(&s.key);
        if let Some(old) = slots.iter().find(|s| s.key == key) {
            fresh = fresh.inherit(&old.scope);
        } else if let Some(old) = slots.iter().find(|s| replaces(s)) {
            fresh = fresh.inherit(&old.scope);
        }
        let scope = Arc::new((self.finish)(fresh, &key));
        // The predecessor goes: what it sealed opens in its successor, and left behind it would
        // count as another scope using the same cookie names.
        slots.retain(|s| !replaces(s));
        slots.push(Slot {
            key,
            attrs,
            hint_paths: paths,
            scope: scope.clone(),
        });
        prune(&mut slots);
        Some(scope)
    }

    /// Whether another scope than `cfg`'s uses its cookie names (in one browser, their
    /// sessions overwrite each other: an inline block's registration warns about it).
    pub fn cookie_names_clash(&self, cfg: &MiddlewareConfig) -> bool {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        clashes(&slots, &scope_key(cfg))
    }

    /// Adds one member (an inline block) to the scope of its key, creating the scope if none
    /// has that key. Cookie attributes other than the key's come from the scope's first
    /// member, as for YAML middlewares of one scope.
    pub fn join(&self, cfg: &MiddlewareConfig) -> Option<Arc<Scope>> {
        let key = scope_key(cfg);
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.iter().find(|s| s.key == key) {
            s.scope.join(&cfg.name, &keep_of(cfg), judge_of(cfg));
            s.scope
                .idle_policy()
                .join(&cfg.name, cfg.session_cookie.idle_timeout);
            return Some(s.scope.clone());
        }
        let scope = Arc::new((self.finish)(scope_of(&[cfg])?, &key));
        slots.push(Slot {
            key,
            attrs: cfg.session_cookie.clone(),
            hint_paths: hint_paths(&[cfg]),
            scope: scope.clone(),
        });
        prune(&mut slots);
        Some(scope)
    }

    /// Removes one member (an evicted or dropped inline block) from its scope.
    pub fn leave(&self, cfg: &MiddlewareConfig) {
        let key = scope_key(cfg);
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.iter().find(|s| s.key == key) {
            s.scope.leave(&cfg.name);
        }
    }

    /// How many scopes are known.
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no scope is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every known scope, those left without members included (an inline block that comes
    /// back rejoins its scope, and with it the sessions that scope ended).
    pub fn all(&self) -> Vec<Arc<Scope>> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|s| s.scope.clone())
            .collect()
    }
}

fn prune(slots: &mut Vec<Slot>) {
    if slots.len() > MAX_IDLE_SCOPES {
        slots.retain(|s| !s.scope.members().is_empty());
    }
    // Every change of the slots: each scope learns whether another uses its cookie names.
    for s in slots.iter() {
        s.scope.set_shares_cookie_names(clashes(slots, &s.key));
    }
}

/// Whether a scope other than `key`'s uses the same cookie names.
fn clashes(slots: &[Slot], key: &ScopeKey) -> bool {
    slots
        .iter()
        .any(|o| o.key != *key && o.key.same_cookie_names(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, parse};

    fn cfgs(extra: &str) -> Vec<MiddlewareConfig> {
        let text = format!(
            "middlewares:\n  a:\n    Provider: {{Url: https://idp.example, ClientId: app}}\n    Secret: 0123456789abcdef0123456789abcdef\n  b:\n    Provider: {{Url: https://idp.example/, ClientId: app}}\n    Secret: 0123456789abcdef0123456789abcdef\n    Authorization:\n      AssertClaims: [{{Name: groups, AnyOf: [x]}}]\n{extra}"
        );
        let env = Env {
            var: &|_| None,
            file: &|_| Err(std::io::Error::other("none")),
            within: &crate::files::read_within,
        };
        parse(&text, &env)
            .unwrap()
            .config
            .middlewares
            .into_values()
            .collect()
    }

    #[test]
    fn members_join_leave_and_reloads_keep_the_scope() {
        let c = cfgs("");
        let r = ScopeRegistry::default();
        let a = r.set(&[&c[0]]).unwrap();
        assert_eq!(a.members(), ["a"]);
        // `b` has the same key: it joins the same scope, with its judge and what it reads.
        let b = r.join(&c[1]).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.members(), ["a", "b"]);
        assert!(a.keep().claims.contains("groups"));
        let mut claims = serde_json::Map::new();
        claims.insert("groups".into(), serde_json::json!(["x"]));
        assert_eq!(a.verdicts(&claims).get("b").map(|v| v.held), Some(true));
        r.leave(&c[1]);
        assert_eq!(a.members(), ["a"]);
        assert!(a.verdicts(&claims).is_empty());
        // A reload with the same key and attributes: the same object, exactly the new members.
        let again = r.set(&[&c[0], &c[1]]).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(a.members(), ["a", "b"]);
        assert_eq!(r.len(), 1);
        // Other cookie attributes: a new scope object under the same key.
        let mut changed = c[0].clone();
        changed.session_cookie.secure = !changed.session_cookie.secure;
        let other = r.set(&[&changed]).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(r.len(), 1);
    }

    #[tokio::test]
    async fn a_rebuilt_scope_keeps_the_sessions_a_logout_ended() {
        use crate::session::codec::tests::{browser, session};
        use crate::session::{EndBy, RequestCookies};
        let c = cfgs("");
        let r = ScopeRegistry::default();
        let first = r.set(&[&c[0]]).unwrap();
        let set = first
            .write_session(&session(10), &RequestCookies::default(), 1000)
            .unwrap();
        let header = browser(&set);
        let req = RequestCookies::parse([header.as_str()].into_iter());
        assert!(first.open_session(&req).is_some());
        first
            .end_sessions(EndBy::Sid("sid-1".into()), 1100, 1100)
            .await
            .unwrap();
        assert!(first.open_session(&req).is_none());
        // Each way a reload rebuilds the scope of the key: another cookie attribute, another
        // logout path. The cookie still opens under the key; the logout still holds.
        let mut attrs = c[0].clone();
        attrs.session_cookie.same_site = crate::session::SameSite::Strict;
        let mut paths = attrs.clone();
        paths.logout_uri = "/signout".into();
        let mut previous = first;
        for (what, cfg) in [("cookie attributes", &attrs), ("logout paths", &paths)] {
            let rebuilt = r.set(&[cfg]).unwrap();
            assert!(!Arc::ptr_eq(&previous, &rebuilt), "{what}: rebuilt");
            assert!(rebuilt.open_session(&req).is_none(), "{what}");
            // A logout reaching the replaced scope (a request still in flight) counts too.
            let mut later = session(10);
            later.sid = Some(format!("sid-{what}"));
            later.iat = 1200;
            let set = rebuilt
                .write_session(&later, &RequestCookies::default(), 1200)
                .unwrap();
            let h = browser(&set);
            let later_req = RequestCookies::parse([h.as_str()].into_iter());
            assert!(rebuilt.open_session(&later_req).is_some(), "{what}");
            previous
                .end_sessions(EndBy::Sid(format!("sid-{what}")), 1300, 1300)
                .await
                .unwrap();
            assert!(rebuilt.open_session(&later_req).is_none(), "{what}");
            previous = rebuilt;
        }
        // Another key shares nothing.
        let mut other = c[0].clone();
        other.cookie_name_prefix = "Other".into();
        let fresh = r.set(&[&other]).unwrap();
        let set = fresh
            .write_session(&session(10), &RequestCookies::default(), 1000)
            .unwrap();
        let h = browser(&set);
        assert!(
            fresh
                .open_session(&RequestCookies::parse([h.as_str()].into_iter()))
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_rotation_keeps_membership_and_ended_sessions() {
        use crate::session::codec::tests::{browser, session};
        use crate::session::{EndBy, RequestCookies, Secret};
        const A: &str = "0123456789abcdef0123456789abcdef";
        const B: &str = "rotated-secret-B-0123456789abcdefghij";
        let c = cfgs("");
        let r = ScopeRegistry::default();
        let at_a = r.set(&[&c[0], &c[1]]).unwrap();
        let cookie = |scope: &Scope, sid: &str| {
            let mut s = session(10);
            s.sid = Some(sid.into());
            browser(
                &scope
                    .write_session(&s, &RequestCookies::default(), 1000)
                    .unwrap(),
            )
        };
        let (ended, live) = (cookie(&at_a, "ended"), cookie(&at_a, "live"));
        at_a.end_sessions(EndBy::Sid("ended".into()), 1100, 1100)
            .await
            .unwrap();
        let opens = |scope: &Scope, h: &str| {
            scope
                .open_session(&RequestCookies::parse([h].into_iter()))
                .is_some()
        };
        // A → B with A kept, only `a` told of A: both still share one scope, the successor.
        let rotate = |m: &MiddlewareConfig, secret: &str, previous: &[&str]| {
            let mut m = m.clone();
            m.secret = Secret::new(secret);
            m.previous_secrets = previous.iter().map(|s| Secret::new(*s)).collect();
            m
        };
        let (a, b) = (rotate(&c[0], B, &[A]), rotate(&c[1], B, &[]));
        assert_eq!(scope_key(&a), scope_key(&b));
        let at_b = r.set(&[&a, &b]).unwrap();
        assert!(!Arc::ptr_eq(&at_a, &at_b));
        assert_eq!(at_b.members(), ["a", "b"]);
        assert_eq!(r.len(), 1, "the successor replaces the scope of A");
        assert!(opens(&at_b, &live));
        assert!(
            !opens(&at_b, &ended),
            "a back-channel logout survives the rotation"
        );
        // B alone: the same key, rebuilt; the memory follows, A's cookies are foreign.
        let (a, b) = (rotate(&c[0], B, &[]), rotate(&c[1], B, &[]));
        let b_only = r.set(&[&a, &b]).unwrap();
        assert!(!Arc::ptr_eq(&at_b, &b_only));
        assert_eq!(r.len(), 1);
        assert!(!opens(&b_only, &live));
        let under_b = cookie(&b_only, "ended");
        assert!(
            !opens(&b_only, &under_b),
            "ended before the rotation, still ended"
        );
        // Alone with its cookie names: a value only A opened is cleared as broken.
        assert!(
            !b_only
                .clear_present(&RequestCookies::parse([live.as_str()].into_iter()))
                .is_empty()
        );
        // The same configuration again: the same scope.
        assert!(Arc::ptr_eq(&b_only, &r.set(&[&a, &b]).unwrap()));
    }

    #[test]
    fn every_new_scope_passes_through_finish() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let made = Arc::new(AtomicUsize::new(0));
        let seen = made.clone();
        let r = ScopeRegistry::new(Box::new(move |s, _| {
            seen.fetch_add(1, Ordering::Relaxed);
            s
        }));
        let c = cfgs("");
        r.set(&[&c[0]]).unwrap();
        r.join(&c[1]).unwrap();
        r.set(&[&c[0], &c[1]]).unwrap();
        assert_eq!(made.load(Ordering::Relaxed), 1, "one key, one scope made");
        let mut other = c[1].clone();
        other.cookie_name_prefix = "Other".into();
        r.join(&other).unwrap();
        assert_eq!(made.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_idle_timeout_follows_members_that_join_leave_and_reload() {
        let c = cfgs("");
        let r = ScopeRegistry::default();
        let mut a = c[0].clone();
        a.session_cookie.idle_timeout = Some(600);
        let scope = r.set(&[&a, &c[1]]).unwrap();
        assert_eq!(scope.idle_timeout(), Some(600));
        // An inline block of the same key with a shorter one: it applies while it is a member.
        let mut inline = c[1].clone();
        inline.name = "inline".into();
        inline.session_cookie.idle_timeout = Some(60);
        assert!(Arc::ptr_eq(&scope, &r.join(&inline).unwrap()));
        assert_eq!(scope.idle_timeout(), Some(60));
        r.leave(&inline);
        assert_eq!(scope.idle_timeout(), Some(600));
        // A reload where only the second member changes keeps the scope and its new timeouts.
        let mut b = c[1].clone();
        b.session_cookie.idle_timeout = Some(300);
        assert!(Arc::ptr_eq(&scope, &r.set(&[&a, &b]).unwrap()));
        assert_eq!(scope.idle_timeout(), Some(300));
        // And one that drops every timeout turns it off.
        assert_eq!(r.set(&[&c[0], &c[1]]).unwrap().idle_timeout(), None);
    }
}
