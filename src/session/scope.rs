//! The session scope: the seam that owns a session, shared by every middleware of the scope.
//!
//! Middlewares whose [`ScopeKey`] is equal (same `Secret`, `Provider.Url`, `ClientId`,
//! `CookieNamePrefix`, `SessionCookie.Domain` and `SessionCookie.Path`) get one `Arc<Scope>`
//! (grouped in `App::new`). The scope owns what must be one per session, not one per
//! middleware:
//! - the cookie codec (one key, one set of cookie names, so a session or a flow made through one
//!   middleware opens in all of them);
//! - the remembered-session cache ([`crate::opened`]);
//! - the refresh single-flight: two middlewares refreshing the same session redeem a rotating
//!   refresh token once;
//! - what a session keeps ([`Keep`]: the union of what its middlewares read), and the verdict
//!   of each login-time judge ([`Scope::verdicts`]);
//! - back-channel logout: the sessions it ended ([`Scope::end_sessions`]; in cookie mode the
//!   [`Ended`] list, which `open_session` consults). The `jti` replay memory is not the scope's:
//!   it is one per OpenID client, owned by the app (`crate::oidc::JtiMemory`), so a scope rebuilt
//!   by a reload does not forget which logout tokens were used.
//!
//! The session API is store-shaped (`open_session` / `write_session` / `clear_session`), so a
//! server-side store can replace the cookie codec later without the middlewares noticing.
//!
//! Members may join and leave a running scope ([`Scope::join`], [`Scope::leave`],
//! [`Scope::reset`]): inline blocks registered at runtime and configuration reloads reuse the
//! scope of their key (see `crate::scopes`), so its memory (ended sessions) survives. A reload
//! that changes the cookie attributes, logout paths or previous secrets builds a new scope for
//! the key, which takes over the old one's ended sessions ([`Scope::inherit`]); so does the
//! successor of a scope whose `Secret` was rotated ([`super::rotation`]).
//!
//! What stays per middleware: its assertions, headers, bypass rule and behaviours; its verdict
//! (`Session::verdicts[name]`); its "challenged once" marker (`Session::challenged`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::codec::CookieCodec;
use super::ended::{EndBy, Ended};
use super::idle::IdlePolicy;
use super::redis::RedisPool;
use super::store::{RedisStore, SESSION_ENDED, SessionStorage, Store};
use super::verdict::{RulesPrint, Verdict, rules_print};
use super::{RequestCookies, Secret, Session, SessionCookieConfig};
use crate::authz::{self, ClaimAssertion};
use crate::error::Error;
use crate::opened::Opened;

/// How long a finished refresh is reused for requests carrying the old cookie.
pub const REFRESH_REUSE_SECS: u64 = 60;

/// One refresh shared by every request of the same session (single-flight): the first request
/// redeems the refresh token, the others await its result. The result stays for
/// [`REFRESH_REUSE_SECS`] so requests still carrying the old cookie get the new session instead
/// of redeeming a refresh token the IdP may already have rotated away.
pub type RefreshCell = Arc<tokio::sync::OnceCell<Result<Session, String>>>;

/// What makes two middlewares share a session. Equal keys share; any difference isolates.
///
/// The sealing `Secret` is part of the identity; its `PreviousSecrets` are not (see
/// [`super::rotation`]): they only widen what the scope opens, so middlewares of one scope that
/// list different previous secrets still share it, and the scope opens under all of them.
#[derive(Debug, Clone)]
pub struct ScopeKey {
    pub(super) secret: Secret,
    pub(super) provider_url: String,
    pub(super) client_id: String,
    pub(super) prefix: String,
    pub(super) domain: Option<String>,
    pub(super) path: String,
    pub(super) storage: SessionStorage,
    /// Secrets that open but never seal, in the order they are tried; never the `secret`.
    pub(super) previous: Vec<Secret>,
}

impl ScopeKey {
    /// The key of a middleware with these settings. A trailing `/` of the provider URL does not
    /// make another scope (discovery appends its path the same way either way).
    pub fn new(
        secret: &Secret,
        provider_url: &str,
        client_id: &str,
        prefix: &str,
        domain: Option<&str>,
        path: &str,
    ) -> Self {
        ScopeKey {
            secret: secret.clone(),
            provider_url: provider_url.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            prefix: prefix.to_string(),
            // Cookie domains compare case-insensitively and without a leading dot (RFC 6265
            // §5.2.3): `.Example.com` and `example.com` name the same cookies.
            domain: domain.map(|d| d.trim_start_matches('.').to_ascii_lowercase()),
            path: path.to_string(),
            storage: SessionStorage::Cookie,
            previous: Vec::new(),
        }
    }

    /// The key with `SessionStorageType` `storage`: a Redis scope and a cookie scope never
    /// share, even with every other setting equal.
    pub fn with_storage(mut self, storage: SessionStorage) -> Self {
        self.storage = storage;
        self
    }

    /// Where the scope's sessions live.
    pub fn storage(&self) -> SessionStorage {
        self.storage
    }

    /// The cookie prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cookie `Domain`, if any.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The cookie `Path`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the two keys name the same cookies in a browser (prefix, domain and path): two
    /// different scopes that do would overwrite each other's sessions.
    pub fn same_cookie_names(&self, other: &ScopeKey) -> bool {
        self.prefix == other.prefix && self.domain == other.domain && self.path == other.path
    }

    /// The key material: the Secret, then every other part, each length-prefixed so no two
    /// different keys produce the same bytes.
    pub(super) fn master(&self) -> Vec<u8> {
        self.master_of(&self.secret)
    }

    pub(super) fn master_of(&self, secret: &Secret) -> Vec<u8> {
        let mut m = Vec::with_capacity(secret.expose().len() + 256);
        m.extend_from_slice(secret.expose().as_bytes());
        m.extend_from_slice(b"\0traefik-oidc-sidecar/v2/scope");
        let domain = self.domain.as_deref().map(|d| format!("D{d}"));
        for part in [
            self.provider_url.as_str(),
            self.client_id.as_str(),
            self.prefix.as_str(),
            domain.as_deref().unwrap_or("-"),
            self.path.as_str(),
        ] {
            m.extend_from_slice(&(part.len() as u64).to_be_bytes());
            m.extend_from_slice(part.as_bytes());
        }
        // Only Redis scopes add a part: cookie-mode keys (and the sessions sealed under them)
        // stay what they were before storage types existed.
        if self.storage == SessionStorage::Redis {
            m.extend_from_slice(b"\0storage=redis");
        }
        m
    }
}

/// What a session keeps: the union of what the scope's middlewares read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    /// Top-level claims kept; `*` keeps every claim.
    pub claims: BTreeSet<String>,
    /// Whether a header template prints the access token (only then is it kept).
    pub access_token: bool,
    /// Whether a header template prints the ID token. Only then is it kept in the session;
    /// otherwise it goes into the logout-hint cookies, which only the logout path receives.
    pub id_token: bool,
}

impl Keep {
    /// Adds what `other` keeps.
    pub fn merge(&mut self, other: &Keep) {
        self.claims.extend(other.claims.iter().cloned());
        self.access_token |= other.access_token;
        self.id_token |= other.id_token;
    }

    /// The claims worth keeping: the cookie stays small and the session holds no more personal
    /// data than something reads.
    pub fn claims(&self, claims: Map<String, Value>) -> Map<String, Value> {
        if self.claims.contains("*") {
            return claims;
        }
        claims
            .into_iter()
            .filter(|(k, _)| self.claims.contains(k))
            .collect()
    }
}

/// A middleware of the scope that checks its assertions at login only
/// (`CheckOnEveryRequest: false`, with assertions).
#[derive(Debug, Clone)]
pub struct Judge {
    /// The middleware's name.
    pub middleware: String,
    /// Its `Authorization.AssertClaims`.
    pub assertions: Vec<ClaimAssertion>,
    /// Their fingerprint, stored with each verdict (see [`super::verdict`]).
    pub rules: RulesPrint,
}

impl Judge {
    /// The judge of `middleware` with these assertions.
    pub fn new(middleware: &str, assertions: &[ClaimAssertion]) -> Self {
        Judge {
            middleware: middleware.to_string(),
            assertions: assertions.to_vec(),
            rules: rules_print(assertions),
        }
    }
}

/// One session scope (see the module docs).
pub struct Scope {
    pub(super) codec: CookieCodec,
    pub(super) store: Store,
    opened: Opened<Session>,
    refreshes: tokio::sync::Mutex<HashMap<[u8; 32], (u64, RefreshCell)>>,
    keep: RwLock<Arc<Keep>>,
    judges: RwLock<Vec<Judge>>,
    members: RwLock<Vec<String>>,
    /// Shared with the scope of the same key a reload builds in this one's place
    /// ([`Scope::inherit`]), so a reload never revives a session a back-channel logout ended.
    ended: Arc<Ended>,
    /// Another live scope uses the same cookie names (another `Secret`, provider or client):
    /// a value this scope cannot open may be that scope's session, so it is left alone.
    shares_cookie_names: AtomicBool,
    /// The members' `SessionCookie.IdleTimeout`s ([`super::idle`]).
    pub(super) idle: IdlePolicy,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("members", &self.members())
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl Scope {
    /// The scope `key` of `members` (middleware names), with the cookie attributes `attrs`,
    /// their logout paths, what their sessions keep and their login-time judges.
    pub fn new(
        key: &ScopeKey,
        attrs: SessionCookieConfig,
        logout_paths: Vec<String>,
        keep: Keep,
        judges: Vec<Judge>,
        members: Vec<String>,
    ) -> Self {
        Scope {
            codec: CookieCodec::new(key, attrs, logout_paths),
            store: Store::Cookie,
            opened: Opened::default(),
            refreshes: tokio::sync::Mutex::new(HashMap::new()),
            keep: RwLock::new(Arc::new(keep)),
            judges: RwLock::new(judges),
            members: RwLock::new(members),
            ended: Arc::new(Ended::default()),
            shares_cookie_names: AtomicBool::new(false),
            idle: IdlePolicy::default(),
        }
    }

    /// This scope (of key `key`) with its sessions in Redis (`SessionStorageType: Redis`),
    /// through `pool`.
    pub fn with_redis(mut self, key: &ScopeKey, pool: Arc<RedisPool>) -> Self {
        let store = RedisStore::new(pool, &key.master(), &key.previous_masters(), key.prefix());
        self.store = Store::Redis(Box::new(store));
        self
    }

    /// This scope (just built) in place of `old`, the scope of the same key a reload replaces
    /// (other cookie attributes or logout paths): it takes over `old`'s ended-session list. The
    /// list is shared, not copied, so a back-channel logout that reaches `old` while the reload
    /// runs (a request of the previous configuration still in flight) lands here too; it stays
    /// bounded as before ([`super::ended::MAX_ENDED`]), as there is still one list per key.
    ///
    /// Nothing else is taken over, deliberately: the remembered-session cache
    /// ([`crate::opened`]) only saves work and a fresh one holds nothing stale, whatever the new
    /// codec; the refresh single-flight only saves a second redemption; the `jti` memory is the
    /// app's already; Redis scopes keep their ended sessions in Redis, not here.
    pub fn inherit(mut self, old: &Scope) -> Self {
        self.ended = old.ended.clone();
        self
    }

    /// The Redis store, when the scope's sessions live in Redis.
    pub fn redis(&self) -> Option<&RedisStore> {
        match &self.store {
            Store::Redis(r) => Some(r),
            Store::Cookie => None,
        }
    }

    /// Ends the sessions `by` names that were created at or before `cutoff` (a back-channel
    /// logout, after its token was verified: the token's `iat`, see [`Ended::end`]). In cookie
    /// mode the [`Ended`] list remembers them and [`Scope::open_session`] refuses them from
    /// then on, in this process only. In Redis mode their records are deleted, for every
    /// replica ([`RedisStore::end_sessions`]); Redis unavailable is an error (the IdP retries).
    pub async fn end_sessions(&self, by: EndBy, cutoff: u64, now: u64) -> Result<(), Error> {
        if let Store::Redis(r) = &self.store {
            let ended = r.end_sessions(&by).await?;
            tracing::debug!(members = ?self.members(), ended, "back-channel logout ended Redis sessions");
            return Ok(());
        }
        if self.ended.end(&by, cutoff, now) {
            tracing::warn!(
                members = ?self.members(),
                "the ended-session list is full: every session of this scope made before now must log in again"
            );
        }
        Ok(())
    }

    /// The names of the middlewares sharing this scope.
    pub fn members(&self) -> Vec<String> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What sessions of this scope keep (now: a member that joins may add to it).
    pub fn keep(&self) -> Arc<Keep> {
        self.keep
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds `member` to the scope (or updates it): sessions made from now on also keep what it
    /// reads, and `judge` (its login-time assertions, if it has any) judges at login. Sessions
    /// made before it joined have no verdict for it, so its assertions run on their claims
    /// (see `Middleware::authorized`), never another member's verdict.
    pub fn join(&self, member: &str, keep: &Keep, judge: Option<Judge>) {
        {
            let mut k = self.keep.write().unwrap_or_else(PoisonError::into_inner);
            if !keep.claims.is_subset(&k.claims)
                || (keep.access_token && !k.access_token)
                || (keep.id_token && !k.id_token)
            {
                let mut merged = (**k).clone();
                merged.merge(keep);
                *k = Arc::new(merged);
            }
        }
        let mut judges = self.judges.write().unwrap_or_else(PoisonError::into_inner);
        judges.retain(|j| j.middleware != member);
        judges.extend(judge);
        drop(judges);
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        if !members.iter().any(|m| m == member) {
            members.push(member.to_string());
        }
    }

    /// Removes `member` (an evicted inline block). What sessions keep does not shrink: a
    /// remaining member may read it, and keeping a claim longer is harmless.
    pub fn leave(&self, member: &str) {
        self.idle.leave(member);
        self.judges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|j| j.middleware != member);
        self.members
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|m| m != member);
    }

    /// Replaces every member (a configuration reload): exactly `members`, `keep` and `judges`.
    pub fn reset(&self, keep: Keep, judges: Vec<Judge>, members: Vec<String>) {
        *self.keep.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keep);
        *self.judges.write().unwrap_or_else(PoisonError::into_inner) = judges;
        *self.members.write().unwrap_or_else(PoisonError::into_inner) = members;
    }

    /// The cookie codec (flows, logout hints, foreign cookies).
    pub fn codec(&self) -> &CookieCodec {
        &self.codec
    }

    /// The session of this request if it opens, expired or not (an expired session with a
    /// refresh token can still be refreshed). Sessions opened recently come from memory
    /// (see [`crate::opened`]).
    pub fn open_session(&self, req: &RequestCookies<'_>) -> Option<Arc<Session>> {
        let (chunks, n) = self.codec.session_chunks(req)?;
        let chunks = &chunks[..n];
        if let Some(s) = self.opened.get(chunks) {
            return (!self.ended.refuses(&s)).then_some(s);
        }
        let session = Arc::new(self.codec.open_session(chunks)?);
        self.ended.note_lifetime(&session);
        self.opened.insert(chunks, session.clone());
        (!self.ended.refuses(&session)).then_some(session)
    }

    /// The valid, unexpired session of this request, if any.
    pub fn read_session(&self, req: &RequestCookies<'_>, now: u64) -> Option<Arc<Session>> {
        self.open_session(req).filter(|s| s.exp > now)
    }

    /// `Set-Cookie` values storing `session` for this browser (replacing what `req` carried).
    pub fn write_session(
        &self,
        session: &Session,
        req: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, Error> {
        self.ended.note_lifetime(session);
        self.codec.write_session(session, req, now)
    }

    /// `Set-Cookie` values removing the session, whatever this request carried.
    pub fn clear_session(&self) -> Vec<String> {
        self.codec.clear_session()
    }

    /// `Set-Cookie` values removing the session chunks this request carries.
    pub fn clear_present_session(&self, req: &RequestCookies<'_>) -> Vec<String> {
        self.codec.clear_present_session(req)
    }

    /// `Set-Cookie` values keeping the ID token as the logout hint (see
    /// [`CookieCodec::write_hint`]).
    pub fn write_hint(&self, id_token: Option<&str>) -> Result<Vec<String>, Error> {
        self.codec.write_hint(id_token)
    }

    /// The logout hint this request carries.
    pub fn read_hint(&self, req: &RequestCookies<'_>) -> Option<String> {
        self.codec.read_hint(req)
    }

    // -----------------------------------------------------------------------------------------
    // The store seam: what the request path calls, whichever store the scope uses.

    /// The session of this request, expired or not. Cookie store: the sealed cookies, no I/O.
    /// Redis store: the ticket is verified first (a forged one is anonymous without a round
    /// trip), then the session comes from memory or Redis; Redis unavailable is an error (503)
    /// for every request, never an anonymous request or a login redirect.
    pub async fn load(&self, req: &RequestCookies<'_>) -> Result<Option<Arc<Session>>, Error> {
        match &self.store {
            Store::Cookie => Ok(self.open_session(req)),
            // Redis known to be away: 503 for every request, with or without a ticket (a login
            // could not be completed either). The health ping notices its return.
            Store::Redis(r) if !r.pool().usable() => Err(Error::StoreUnavailable(
                "redis unavailable (last command or health check failed)".into(),
            )),
            Store::Redis(r) => match r.ticket_of(req) {
                // Boxed: the Redis client's future would make every request's future large.
                Some(t) => Box::pin(r.load(&t)).await,
                None => Ok(None),
            },
        }
    }

    /// Stores a new login's `session` (Redis: indexed by its `sub` and `sid`, for back-channel
    /// logout); returns the `Set-Cookie` values for this browser. Every cookie is new, so a value
    /// planted before the login is replaced (no session fixation).
    pub async fn save_login(
        &self,
        session: &Session,
        req: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, Error> {
        match &self.store {
            Store::Cookie => self.write_session(session, req, now),
            Store::Redis(r) => {
                // The browser's previous session (another login in the same browser) ends.
                if let Some(old) = r.ticket_of(req) {
                    r.delete(&old).await?;
                }
                let (value, until) = r.create(session, now).await?;
                let mut set = vec![self.codec.ticket_cookie(
                    r.cookie_name(),
                    value,
                    until.saturating_sub(now),
                )];
                // Session chunks of a cookie-mode scope with the same prefix are not ours now.
                set.extend(self.codec.clear_present_session(req));
                Ok(set)
            }
        }
    }

    /// Refreshes `old` once for every request of the session (see [`RefreshCell`]), and in
    /// Redis mode once across every replica ([`RedisStore::refresh`]). `redeem` is the refresh
    /// itself; it runs at most once, and only if nobody else redeemed this refresh token.
    pub async fn refresh(
        &self,
        req: &RequestCookies<'_>,
        old: &Session,
        now: u64,
        redeem: impl Future<Output = Result<Session, String>>,
    ) -> Result<Session, String> {
        let Some(rt) = old.refresh_token.as_deref() else {
            return Err("no refresh token".into());
        };
        let cell = self.refresh_cell(rt, now).await;
        match &self.store {
            Store::Cookie => match cell.get_or_init(|| redeem).await.clone() {
                // A back-channel logout of this session landed while the refresh token was
                // redeemed: the refreshed session (made at `now`, before the logout's cutoff) is
                // refused like the old one, instead of answering with it and handing its cookies
                // to the browser.
                Ok(new) if self.ended.refuses(&new) => Err(SESSION_ENDED.into()),
                r => r,
            },
            Store::Redis(r) => {
                let t = r.ticket_of(req).ok_or("no ticket")?;
                cell.get_or_init(|| r.refresh(&t, old, now, redeem))
                    .await
                    .clone()
            }
        }
    }

    /// `Set-Cookie` values after `session` was refreshed: the new sealed cookies in cookie mode;
    /// nothing in Redis mode (the record was rewritten under the same ticket).
    pub fn after_refresh(
        &self,
        session: &Session,
        req: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, Error> {
        match &self.store {
            Store::Cookie => self.write_session(session, req, now),
            Store::Redis(_) => Ok(Vec::new()),
        }
    }

    /// Logout: ends this request's session (Redis: the record is deleted, so the cookie,
    /// replayed, is anonymous on every replica) and returns the `Set-Cookie` values removing
    /// it from the browser.
    pub async fn end(&self, req: &RequestCookies<'_>) -> Result<Vec<String>, Error> {
        match &self.store {
            Store::Cookie => Ok(self.clear_session()),
            Store::Redis(r) => {
                if let Some(t) = r.ticket_of(req) {
                    r.delete(&t).await?;
                }
                let mut set = vec![self.codec.ticket_removal(r.cookie_name())];
                set.extend(self.codec.clear_present_session(req));
                Ok(set)
            }
        }
    }

    /// Whether another live scope uses this scope's cookie names (set by the scope registry).
    pub fn set_shares_cookie_names(&self, shared: bool) {
        self.shares_cookie_names.store(shared, Ordering::Relaxed);
    }

    /// `Set-Cookie` values removing the session cookies this request carries (an expired or
    /// ended session), without touching the store. When another live scope uses the same cookie
    /// names (another `Secret`…), only cookies this scope sealed: a value that does not open
    /// under its key may be that scope's session, and deleting it would log its users out
    /// whenever this one answers a 401 or a login redirect. Alone, a broken value is removed.
    pub fn clear_present(&self, req: &RequestCookies<'_>) -> Vec<String> {
        // Alone with its cookie names, a value that does not open is broken: removed.
        let alone = !self.shares_cookie_names.load(Ordering::Relaxed);
        let ours = alone
            || self.codec.session_chunks(req).is_some_and(|(chunks, n)| {
                chunks
                    .get(..n)
                    .is_some_and(|c| self.codec.open_session(c).is_some())
            });
        let mut set = if ours {
            self.codec.clear_present_session(req)
        } else {
            Vec::new()
        };
        if let Store::Redis(r) = &self.store
            && req.get(r.cookie_name()).is_some()
            && (alone || r.ticket_of(req).is_some())
        {
            set.push(self.codec.ticket_removal(r.cookie_name()));
        }
        set
    }

    /// The verdict of every login-time judge of the scope on `claims`: each middleware's own
    /// assertions, evaluated now, when the session is made (login or refresh). A middleware
    /// that did not handle the callback gets exactly the verdict it would have reached had it
    /// handled it: the same assertions on the same claims at the same moment. Each verdict
    /// carries the fingerprint of the assertions that made it, so a reload that changes them
    /// does not reuse it.
    pub fn verdicts(&self, claims: &Map<String, Value>) -> BTreeMap<String, Verdict> {
        self.judges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|j| {
                let held = authz::authorized(&j.assertions, claims);
                (j.middleware.clone(), Verdict::new(held, j.rules))
            })
            .collect()
    }

    /// The single-flight cell of the refresh redeeming `refresh_token` (see [`RefreshCell`]).
    pub async fn refresh_cell(&self, refresh_token: &str, now: u64) -> RefreshCell {
        let key: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        let mut map = self.refreshes.lock().await;
        map.retain(|_, (started, _)| *started + REFRESH_REUSE_SECS > now);
        map.entry(key)
            .or_insert_with(|| (now, Arc::new(tokio::sync::OnceCell::new())))
            .1
            .clone()
    }
}

#[cfg(test)]
mod tests;
