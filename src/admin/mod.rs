//! The operators' revocation API: listing a user's sessions and ending sessions by `sub` or
//! `sid`, over every session scope of the app (YAML middlewares and inline blocks alike).
//!
//! This module is the domain half and knows nothing of HTTP; [`http`] is the router on the
//! separate admin listener (off unless `admin.listen` is set), with its bearer check, body limit
//! and problem+json answers.
//!
//! What each store can do:
//! - **Redis** (`SessionStorageType: Redis`): sessions are listed from the scope's `sub` index
//!   (`crate::session::store`), each with its `sid`, login time and the record's expiry, never
//!   a token, ticket or record key. Revoking deletes the records and publishes their
//!   invalidation ([`crate::session::store::RedisStore::end_sessions`], the same path as
//!   back-channel logout), so every replica refuses them within the same second; the answer
//!   counts the records ended.
//! - **Cookie** (the default): the sessions live in browsers, so nothing can list them, and a
//!   revocation is the back-channel-logout mark ([`crate::session::Ended`]) with the cutoff
//!   `now`: every session of that `sub`/`sid` created up to now is refused **by this process**
//!   (not by other replicas, and a restart forgets it, exactly like back-channel logout in
//!   cookie mode). How many browsers that affects is unknowable: the count is `null`.

pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::error::Error;
use crate::session::store::Listed;
use crate::session::{EndBy, Scope, Secret};

/// The shortest `admin.token` accepted.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest `sub` or `sid` accepted (a logout token's identifiers have the same bound).
pub const MAX_ID_LEN: usize = 1024;

/// The `admin:` block: where the admin listener binds and the bearer token it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// The admin listener's address (loopback unless an address is written out).
    pub listen: SocketAddr,
    /// The bearer token (its `Debug` is redacted; never logged).
    pub token: Secret,
}

/// One scope in an answer: which middlewares share it and where its sessions live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeInfo {
    /// The names of the middlewares (and inline blocks) sharing the scope.
    pub members: Vec<String>,
    /// `redis` or `cookie`.
    pub storage: &'static str,
}

impl ScopeInfo {
    fn of(scope: &Scope) -> Self {
        ScopeInfo {
            members: scope.members(),
            storage: match scope.redis() {
                Some(_) => "redis",
                None => "cookie",
            },
        }
    }
}

/// A scope's sessions of one `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeSessions {
    /// The scope.
    #[serde(flatten)]
    pub scope: ScopeInfo,
    /// Whether this store can list sessions (cookie mode cannot: they live in browsers).
    pub listable: bool,
    /// The sessions (`None` when not listable).
    pub sessions: Option<Vec<Listed>>,
    /// Whether there were more than [`crate::session::store::MAX_LISTED`].
    pub truncated: bool,
}

/// The answer to a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The `sub` asked about.
    pub sub: String,
    /// Every scope of the app, in a stable order.
    pub scopes: Vec<ScopeSessions>,
}

/// What one scope ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeRevoked {
    /// The scope.
    #[serde(flatten)]
    pub scope: ScopeInfo,
    /// Records ended (Redis), or `None` where the store cannot count (cookie mode).
    pub revoked: Option<usize>,
}

/// The answer to a revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revoked {
    /// Sessions ended in all: the sum over the scopes, or `None` as soon as one scope cannot
    /// count (a cookie-mode scope ended some unknown number of browsers' sessions).
    pub revoked: Option<usize>,
    /// Per scope.
    pub scopes: Vec<ScopeRevoked>,
}

/// The scopes in a stable order (by members, cookie before Redis), whatever order the
/// registry keeps.
fn ordered(mut scopes: Vec<Arc<Scope>>) -> Vec<Arc<Scope>> {
    scopes.sort_by_cached_key(|s| (s.members(), s.redis().is_some()));
    scopes
}

/// The sessions of `sub` in every scope of `scopes` (the app's: [`crate::App::all_scopes`]).
/// Redis unavailable is [`Error::StoreUnavailable`] (503): a partial listing would read as
/// "no sessions there".
pub async fn list(scopes: Vec<Arc<Scope>>, sub: &str, now: u64) -> Result<Listing, Error> {
    let mut out = Vec::new();
    for scope in ordered(scopes) {
        let info = ScopeInfo::of(&scope);
        let entry = match scope.redis() {
            Some(r) => {
                let (sessions, truncated) = r.list_sub(sub, now).await?;
                ScopeSessions {
                    scope: info,
                    listable: true,
                    sessions: Some(sessions),
                    truncated,
                }
            }
            None => ScopeSessions {
                scope: info,
                listable: false,
                sessions: None,
                truncated: false,
            },
        };
        out.push(entry);
    }
    Ok(Listing {
        sub: sub.to_string(),
        scopes: out,
    })
}

/// Ends every session `by` names in every scope of `scopes`, created up to `now` (see the
/// module docs for what each store does). Every scope is tried even when one fails, so a
/// Redis outage does not spare the cookie-mode scopes; then the first failure is returned
/// (503: revoking again is harmless, the marks and deletions are idempotent).
pub async fn revoke(scopes: Vec<Arc<Scope>>, by: &EndBy, now: u64) -> Result<Revoked, Error> {
    let mut out = Vec::new();
    let mut failed = None;
    for scope in ordered(scopes) {
        let info = ScopeInfo::of(&scope);
        let result = match scope.redis() {
            Some(r) => r.end_sessions(by).await.map(Some),
            None => scope
                .end_sessions(by.clone(), now, now)
                .await
                .map(|()| None),
        };
        match result {
            Ok(revoked) => out.push(ScopeRevoked {
                scope: info,
                revoked,
            }),
            Err(e) => {
                tracing::warn!(members = ?info.members, error = %e, "admin revocation: a scope could not be reached");
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let revoked = out.iter().try_fold(0usize, |n, s| s.revoked.map(|r| n + r));
    Ok(Revoked {
        revoked,
        scopes: out,
    })
}

/// Whether `id` is a `sub` or `sid` worth looking up: not empty, at most [`MAX_ID_LEN`] bytes,
/// no control characters (it is written to the audit log).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::codec::tests::{browser, session};
    use crate::session::{RequestCookies, ScopeKey, SessionCookieConfig};

    fn scope(members: &[&str]) -> Arc<Scope> {
        let key = ScopeKey::new(
            &Secret::new("0123456789abcdef0123456789abcdef"),
            "https://idp.example",
            "app",
            members[0],
            None,
            "/",
        );
        let attrs = SessionCookieConfig {
            path: "/".into(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: crate::session::SameSite::Lax,
            max_age: 0,
            idle_timeout: None,
        };
        Arc::new(Scope::new(
            &key,
            attrs,
            vec!["/logout".into()],
            crate::session::Keep::default(),
            Vec::new(),
            members.iter().map(|m| m.to_string()).collect(),
        ))
    }

    #[tokio::test]
    async fn cookie_scopes_cannot_list_and_revoke_in_this_process() {
        let (a, b) = (scope(&["b-scope"]), scope(&["a-scope", "a2"]));
        let listing = list(vec![a.clone(), b.clone()], "alice", 1000)
            .await
            .unwrap();
        assert_eq!(listing.scopes.len(), 2);
        assert_eq!(
            listing.scopes[0].scope.members,
            ["a-scope", "a2"],
            "ordered"
        );
        assert!(
            listing
                .scopes
                .iter()
                .all(|s| !s.listable && s.sessions.is_none())
        );
        let json = serde_json::to_value(&listing).unwrap();
        assert_eq!(json["scopes"][0]["storage"], "cookie");
        assert_eq!(json["scopes"][0]["listable"], false);

        // A session made at 900 opens, is revoked at 1000, and no longer opens; a login
        // after the revocation works.
        let mut s = session(10);
        s.iat = 900;
        let set = a
            .write_session(&s, &RequestCookies::default(), 900)
            .unwrap();
        let header = browser(&set);
        let req = RequestCookies::parse([header.as_str()].into_iter());
        assert!(a.open_session(&req).is_some());
        let r = revoke(vec![a.clone(), b.clone()], &EndBy::Sub(s.sub.clone()), 1000)
            .await
            .unwrap();
        assert_eq!(r.revoked, None, "cookie mode cannot count");
        assert_eq!(r.scopes.len(), 2);
        assert!(a.open_session(&req).is_none());
        let mut later = s.clone();
        later.iat = 1001;
        let set = a
            .write_session(&later, &RequestCookies::default(), 1001)
            .unwrap();
        let h = browser(&set);
        assert!(
            a.open_session(&RequestCookies::parse([h.as_str()].into_iter()))
                .is_some()
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap()["revoked"],
            serde_json::Value::Null
        );
    }

    #[tokio::test]
    async fn no_scope_revokes_zero() {
        let r = revoke(Vec::new(), &EndBy::Sid("x".into()), 1)
            .await
            .unwrap();
        assert_eq!(r.revoked, Some(0));
    }

    #[test]
    fn identifiers_are_bounded_and_printable() {
        assert!(valid_id("alice"));
        assert!(valid_id(&"x".repeat(MAX_ID_LEN)));
        assert!(!valid_id(""));
        assert!(!valid_id(&"x".repeat(MAX_ID_LEN + 1)));
        assert!(!valid_id("a\nforged log line"));
    }
}
