//! Sessions and login flows: what they hold, and the cookie types they travel in.
//!
//! A session belongs to a **scope**, not to a middleware: every middleware whose `Secret`,
//! `Provider.Url`, `ClientId`, `CookieNamePrefix` and `SessionCookie.Domain`/`Path` agree shares
//! one [`Scope`], hence one session and one set of login-flow cookies (any of them finishes a
//! login another started). What each middleware decides about a session stays its own: the
//! session carries one remembered verdict and one "challenged once" marker *per middleware*.
//!
//! - [`codec`]: sealing (AES-256-GCM, key bound to the scope), chunking and naming of cookies;
//! - [`ended`]: sessions ended by back-channel logout (cookie mode's in-memory list);
//! - [`flow`]: the per-`state` login-flow cookies (login CSRF, OIDC Core §3.1.2.1);
//! - [`idle`]: `SessionCookie.IdleTimeout`, the last-activity stamp and when it moves;
//! - [`scope`]: the [`Scope`], the store seam (load/save/refresh/end) the middlewares share,
//!   with its remembered-session cache and its refresh single-flight;
//! - [`rotation`]: `PreviousSecrets`: which scope succeeds which, and re-sealing what an old
//!   secret opened;
//! - [`verdict`]: a login-time verdict and the fingerprint of the rules that made it;
//! - [`store`]: where a scope's sessions live: sealed cookies, or Redis behind an opaque ticket
//!   (`SessionStorageType: Redis`); [`redis`]: the process's Redis connection, its health and
//!   the invalidation channel.
//!
//! In cookie mode the session is stateless: checking it is one decryption, no IdP round-trip and
//! no JWT signature work, which keeps `/auth` cheap. The price is that a session cannot be deleted
//! before it expires: a back-channel logout only marks it ended in this process's memory
//! ([`ended`]), and otherwise rotating the Secret is the way (SECURITY notes in the README). Redis
//! mode trades a server-side record for revocation (logout, back-channel logout) across replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod codec;
pub mod ended;
pub mod flow;
pub mod idle;
pub mod memo;
pub mod redis;
pub mod rotation;
pub mod scope;
pub mod silent;
pub mod step_up;
pub mod store;
pub mod verdict;

pub use codec::{CHUNK_SIZE, CookieCodec, MAX_CHUNKS, MAX_HINT_CHUNKS, MAX_HINT_LEN};
pub use ended::{EndBy, Ended, MAX_ENDED};
pub use flow::{FLOW_TTL, MAX_FLOWS};
pub use scope::{Judge, Keep, RefreshCell, Scope, ScopeKey};
pub use verdict::{RulesPrint, Verdict};

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// traefik-oidc-auth's `default`: we send `Lax`, which is what browsers assume anyway.
    Lax,
    /// `Strict`.
    Strict,
    /// `None` (requires `Secure`).
    None,
}

/// The `SessionCookie` block: the attributes of the session cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookieConfig {
    /// Cookie `Path`.
    pub path: String,
    /// Cookie `Domain`, if any.
    pub domain: Option<String>,
    /// Cookie `Secure`.
    pub secure: bool,
    /// Cookie `HttpOnly`.
    pub http_only: bool,
    /// Cookie `SameSite`.
    pub same_site: SameSite,
    /// Cookie `Max-Age` in seconds; 0 = a browser-session cookie.
    pub max_age: i64,
    /// `SessionCookie.IdleTimeout` in seconds: a session unused this long ends (see [`idle`]).
    /// `None` (the default): sessions end only when their tokens do.
    pub idle_timeout: Option<u64>,
}

/// What a session cookie holds.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// The `sub` claim.
    pub sub: String,
    /// The IdP session id: the ID token's `sid` (Back-Channel Logout 1.0 §2.4), which a
    /// back-channel logout token names to end this session. Kept from the login's ID token
    /// through refreshes (a refresh stays in the same IdP session).
    #[serde(default, rename = "sid", skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The claims that assertions and headers of the scope's middlewares read (never the whole
    /// token).
    pub claims: Map<String, Value>,
    /// Unix time the session was created (or last refreshed).
    pub iat: u64,
    /// Unix time the session ends.
    pub exp: u64,
    /// The ID token, kept for the logout `id_token_hint` when it fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The access token, kept only when a `Headers` template prints `.accessToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The refresh token, when the IdP issued one (refresh keeps the session alive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Per middleware of the scope that checks assertions only at login
    /// (`CheckOnEveryRequest: false`): whether its own assertions held on these claims when the
    /// session was made (login or refresh), bound to the fingerprint of those assertions so a
    /// reload that changes them does not reuse it. See [`Scope::verdicts`] and [`verdict`].
    #[serde(default, rename = "v", skip_serializing_if = "BTreeMap::is_empty")]
    pub verdicts: BTreeMap<String, Verdict>,
    /// Middlewares that already sent this browser through an `UnauthorizedBehavior: Challenge`
    /// re-login: a second failure there answers 403 instead of looping.
    #[serde(default, rename = "c", skip_serializing_if = "BTreeSet::is_empty")]
    pub challenged: BTreeSet<String>,
    /// The identity headers this session value was rendered into (never stored, never
    /// compared; see [`memo`]).
    #[serde(skip)]
    pub rendered: memo::HeaderMemo,
    /// This value was opened under one of the scope's `PreviousSecrets`, not its `Secret`: the
    /// answer re-seals it under the current one (see [`Scope::reseal`]). Never stored.
    #[serde(skip)]
    pub sealed_by_previous: bool,
    /// The ID token's `acr` at login, kept whatever the scope's `Keep` says: a middleware with
    /// `StepUp` judges it (see [`step_up`]). A refreshed ID token without it keeps the login's.
    #[serde(default, rename = "acr", skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The ID token's `auth_time` at login (when the user last authenticated at the IdP), kept
    /// like `acr`: `StepUp.MaxAge` judges it. OIDC Core §12.2: a refresh does not change it.
    #[serde(default, rename = "at", skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// Middlewares whose step-up this login answered without what they asked: they answer 403
    /// instead of sending the browser to the IdP again (no loop). Not carried to a new login.
    #[serde(default, rename = "sf", skip_serializing_if = "BTreeSet::is_empty")]
    pub step_up_failed: BTreeSet<String>,
    /// The last-activity stamp (unix time) when the scope has an idle timeout: moved at most
    /// once per [`idle::interval`], so most requests rewrite nothing. Absent (no idle timeout,
    /// or a session sealed before stamps existed): the idle clock runs from `iat`.
    #[serde(default, rename = "la", skip_serializing_if = "Option::is_none")]
    pub active: Option<u64>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .field("verdicts", &self.verdicts)
            .field("challenged", &self.challenged)
            .field("acr", &self.acr)
            .field("auth_time", &self.auth_time)
            .field("step_up_failed", &self.step_up_failed)
            .field("active", &self.active)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// What a login-flow cookie holds.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Flow {
    /// The `state` sent to the IdP.
    pub state: String,
    /// The `nonce` sent to the IdP.
    pub nonce: String,
    /// The PKCE verifier, when PKCE is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    /// Where to go after login (same host as the request that started it).
    pub return_to: String,
    /// Unix time the flow started.
    pub created: u64,
    /// The `redirect_uri` sent to the IdP. The token request repeats it exactly (RFC 6749
    /// §4.1.3), whichever middleware of the scope receives the callback.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub redirect_uri: String,
    /// RFC 8707 `resource` values of the authorization request, repeated on the token request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The middleware whose `UnauthorizedBehavior: Challenge` started this flow, if any: the
    /// session it ends in is marked challenged for that middleware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// A silent login (`SilentLogin`, `prompt=none`): an error at its callback lands the visitor
    /// back on the page anonymously instead of on an error page (see `auth::silent`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silent: bool,
    /// The step-up this flow was started for, if any: the callback marks the session when the
    /// login came back without it (see [`step_up`]).
    #[serde(default, rename = "su", skip_serializing_if = "Option::is_none")]
    pub step_up: Option<step_up::StepUpFlow>,
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("return_to", &self.return_to)
            .field("created", &self.created)
            .field("challenge", &self.challenge)
            .field("silent", &self.silent)
            .field("step_up", &self.step_up)
            .finish_non_exhaustive()
    }
}

/// The cookies of one request, in order, as name/value pairs.
#[derive(Debug, Default)]
pub struct RequestCookies<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> RequestCookies<'a> {
    /// Parses `Cookie` header values (several headers are allowed, as in HTTP/2).
    pub fn parse(headers: impl Iterator<Item = &'a str>) -> Self {
        let mut pairs = Vec::with_capacity(8);
        for h in headers {
            for part in h.split(';') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                match part.split_once('=') {
                    Some((n, v)) => pairs.push((n.trim(), v.trim())),
                    None => pairs.push((part, "")),
                }
            }
        }
        RequestCookies { pairs }
    }

    /// The value of `name` when it appears exactly once.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.unique(name)
    }

    /// The values of every cookie called `name`.
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.pairs
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The value of `name` when it appears exactly once. A name given twice (a cookie planted
    /// for a parent domain next to ours) is ambiguous and counts as absent.
    fn unique(&self, name: &str) -> Option<&'a str> {
        let mut it = self.all(name);
        let first = it.next()?;
        if it.next().is_some() {
            return None;
        }
        Some(first)
    }
}

/// 32 random bytes, base64url: used for `state` and `nonce`.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_tokens_or_secrets() {
        let s = Session {
            sub: "u1".into(),
            sid: None,
            claims: Map::new(),
            iat: 1,
            exp: 2,
            id_token: Some("eyJ.hdr.sig".into()),
            refresh_token: Some("rt-secret".into()),
            access_token: Some("at-secret".into()),
            verdicts: BTreeMap::new(),
            challenged: BTreeSet::new(),
            rendered: Default::default(),
            sealed_by_previous: false,
            acr: None,
            auth_time: None,
            step_up_failed: BTreeSet::new(),
            active: None,
        };
        let d = format!("{s:?}");
        assert!(
            !d.contains("eyJ") && !d.contains("rt-secret") && !d.contains("at-secret"),
            "{d}"
        );
        let f = Flow {
            state: "the-state-value-123456".into(),
            nonce: "the-nonce".into(),
            verifier: Some("the-verifier".into()),
            return_to: "https://a/x".into(),
            created: 1,
            redirect_uri: String::new(),
            resources: Vec::new(),
            challenge: None,
            silent: false,
            step_up: None,
        };
        let d = format!("{f:?}");
        assert!(
            !d.contains("the-state") && !d.contains("the-nonce") && !d.contains("the-verifier"),
            "{d}"
        );
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret([redacted])"
        );
    }

    #[test]
    fn repeated_cookie_names_count_as_absent() {
        let req = RequestCookies::parse(["a=1; b=2", "a=3; c"].into_iter());
        assert_eq!(req.get("a"), None);
        assert_eq!(req.get("b"), Some("2"));
        assert_eq!(req.get("c"), Some(""));
    }
}
