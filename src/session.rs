//! Session and login-flow cookies: what they hold, how they are sealed, chunked and named.
//!
//! Both are AES-256-GCM sealed with the `cookie` crate's private jar (authenticated encryption:
//! a tampered, truncated or foreign cookie fails to open). The key is derived from `Secret`
//! *and the middleware name*, and the cookie name is bound in as associated data, so a cookie
//! made by another middleware, another Secret or another prefix never opens here.
//!
//! The session is stateless: checking it is one decryption, no IdP round-trip and no JWT
//! signature work, which keeps `/auth` cheap. The price is that a session cannot be revoked
//! before it expires except by rotating the Secret (SECURITY notes in the README).
//!
//! Login flows get one cookie each, named after their `state`, so parallel logins from one
//! browser (several tabs, a page firing many requests) never overwrite each other, and a
//! callback whose state has no cookie in this browser is refused (login CSRF, OIDC Core §3.1.2.1).

use std::fmt;

use base64::Engine as _;
use cookie::{Cookie, CookieJar, Key};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::config::{SameSite, Secret, SessionCookieConfig};
use crate::error::Error;

/// Largest number of session chunks we accept or write. Bounding it makes a forged cookie set
/// cheap to refuse: we never look further than this.
pub const MAX_CHUNKS: usize = 8;
/// Bytes of sealed value per chunk: browsers cap a cookie near 4096 bytes with its name and
/// attributes, so this leaves room for both.
pub const CHUNK_SIZE: usize = 3500;
/// Lifetime of a login flow, in seconds.
pub const FLOW_TTL: u64 = 600;
/// Login flows kept per browser; starting another drops the oldest.
pub const MAX_FLOWS: usize = 5;
/// Characters of `state` used in the flow cookie's name.
const FLOW_ID_LEN: usize = 16;
/// Flow cookies we are willing to open when pruning (the rest are simply expired).
const MAX_FLOW_SCAN: usize = 16;

/// What a session cookie holds.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// The `sub` claim.
    pub sub: String,
    /// The claims that assertions and headers read (never the whole token).
    pub claims: Map<String, Value>,
    /// Unix time the session was created.
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
    /// Whether the claim assertions passed at login.
    pub authorized: bool,
    /// Whether this session came from an `UnauthorizedBehavior: Challenge` re-login, so a second
    /// failure answers 403 instead of looping.
    #[serde(default)]
    pub challenged: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.sub)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .field("authorized", &self.authorized)
            .field("challenged", &self.challenged)
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
    /// Started by `UnauthorizedBehavior: Challenge`.
    #[serde(default)]
    pub challenge: bool,
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("return_to", &self.return_to)
            .field("created", &self.created)
            .field("challenge", &self.challenge)
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
        let mut pairs = Vec::new();
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

/// Seals, opens, names and expires one middleware's cookies.
pub struct CookieCodec {
    key: Key,
    prefix: String,
    attrs: SessionCookieConfig,
}

impl fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieCodec")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl CookieCodec {
    /// A codec for `middleware`, keyed from `secret` (at least 32 bytes, checked at load).
    pub fn new(
        secret: &Secret,
        middleware: &str,
        prefix: &str,
        attrs: SessionCookieConfig,
    ) -> Self {
        // HKDF (the crate's key expansion) over Secret plus the middleware name: two middlewares
        // sharing a Secret still get unrelated keys.
        let mut master = Vec::with_capacity(secret.expose().len() + 64);
        master.extend_from_slice(secret.expose().as_bytes());
        master.extend_from_slice(b"\0traefik-oidc-sidecar/v1/");
        master.extend_from_slice(middleware.as_bytes());
        CookieCodec {
            key: Key::derive_from(&master),
            prefix: prefix.to_string(),
            attrs,
        }
    }

    fn session_base(&self) -> String {
        format!("{}.session", self.prefix)
    }

    fn chunk_name(&self, i: usize) -> String {
        format!("{}.session.{i}", self.prefix)
    }

    fn flow_prefix(&self) -> String {
        format!("{}.flow.", self.prefix)
    }

    /// Whether a cookie name belongs to this middleware (stripped before the upstream).
    pub fn is_ours(&self, name: &str) -> bool {
        name.len() > self.prefix.len()
            && name.starts_with(&self.prefix)
            && name.as_bytes().get(self.prefix.len()) == Some(&b'.')
    }

    /// The request's `Cookie` header without this middleware's cookies.
    pub fn foreign_cookies(&self, req: &RequestCookies<'_>) -> String {
        let mut out = String::new();
        for (n, v) in &req.pairs {
            if self.is_ours(n) {
                continue;
            }
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(n);
            out.push('=');
            out.push_str(v);
        }
        out
    }

    fn seal(&self, name: &str, plaintext: String) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(name.to_string(), plaintext));
        jar.get(name).map(|c| c.value().to_string())
    }

    fn open(&self, name: &str, sealed: &str) -> Option<String> {
        let jar = CookieJar::new();
        jar.private(&self.key)
            .decrypt(Cookie::new(name.to_string(), sealed.to_string()))
            .map(|c| c.value().to_string())
    }

    /// The valid, unexpired session of this request, if any.
    pub fn read_session(&self, req: &RequestCookies<'_>, now: u64) -> Option<Session> {
        self.open_session(req).filter(|s| s.exp > now)
    }

    /// The session of this request if it opens, expired or not (an expired session with a
    /// refresh token can still be refreshed).
    pub fn open_session(&self, req: &RequestCookies<'_>) -> Option<Session> {
        let mut sealed = String::new();
        for i in 0..=MAX_CHUNKS {
            match req.unique(&self.chunk_name(i)) {
                Some(_) if i == MAX_CHUNKS => return None,
                Some(v) => sealed.push_str(v),
                None if i == 0 => return None,
                None => break,
            }
        }
        let json = self.open(&self.session_base(), &sealed)?;
        serde_json::from_str(&json).ok()
    }

    /// `Set-Cookie` values writing `session`, and expiring chunks the request had beyond the new
    /// count. If the session is too large, the ID token (only a logout hint) is left out.
    pub fn write_session(
        &self,
        session: &Session,
        req: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, Error> {
        let mut chunks = self.chunks(session)?;
        if chunks.len() > MAX_CHUNKS && session.id_token.is_some() {
            let mut slim = session.clone();
            slim.id_token = None;
            chunks = self.chunks(&slim)?;
        }
        if chunks.len() > MAX_CHUNKS {
            return Err(Error::Internal(format!(
                "session needs {} cookies (max {MAX_CHUNKS}); assert on fewer claims",
                chunks.len()
            )));
        }
        let max_age = if self.attrs.max_age > 0 {
            Some(
                self.attrs
                    .max_age
                    .min(session.exp.saturating_sub(now) as i64),
            )
        } else {
            None
        };
        let mut out: Vec<String> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                self.cookie(
                    self.chunk_name(i),
                    v,
                    max_age,
                    &self.attrs.path,
                    self.attrs.same_site,
                )
            })
            .collect();
        let written = out.len();
        for i in written..MAX_CHUNKS {
            let name = self.chunk_name(i);
            if req.all(&name).next().is_some() {
                out.push(self.removal(name, &self.attrs.path));
            }
        }
        Ok(out)
    }

    fn chunks(&self, session: &Session) -> Result<Vec<String>, Error> {
        let json = serde_json::to_string(session).map_err(|e| Error::Internal(e.to_string()))?;
        let sealed = self
            .seal(&self.session_base(), json)
            .ok_or_else(|| Error::Internal("sealing failed".into()))?;
        // The sealed value is base64, so byte offsets are character boundaries.
        Ok(sealed
            .as_bytes()
            .chunks(CHUNK_SIZE)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect())
    }

    /// `Set-Cookie` values expiring every session chunk (present or not: a chunk the browser did
    /// not send for this path may still exist).
    pub fn clear_session(&self) -> Vec<String> {
        (0..MAX_CHUNKS)
            .map(|i| self.removal(self.chunk_name(i), &self.attrs.path))
            .collect()
    }

    /// `Set-Cookie` values expiring the session chunks this request carries.
    pub fn clear_present_session(&self, req: &RequestCookies<'_>) -> Vec<String> {
        (0..MAX_CHUNKS)
            .map(|i| self.chunk_name(i))
            .filter(|n| req.all(n).next().is_some())
            .map(|n| self.removal(n, &self.attrs.path))
            .collect()
    }

    /// `Set-Cookie` values starting `flow`, and expiring stale or surplus flows of this browser.
    pub fn start_flow(
        &self,
        flow: &Flow,
        req: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, Error> {
        let id = flow_id(&flow.state).ok_or_else(|| Error::Internal("state too short".into()))?;
        let name = format!("{}{id}", self.flow_prefix());
        let json = serde_json::to_string(flow).map_err(|e| Error::Internal(e.to_string()))?;
        let sealed = self
            .seal(&name, json)
            .ok_or_else(|| Error::Internal("sealing failed".into()))?;
        let mut out = vec![self.cookie(name, sealed, Some(FLOW_TTL as i64), "/", SameSite::Lax)];

        let prefix = self.flow_prefix();
        // (created, position in the request, name): browsers send older cookies first, so the
        // position breaks ties between flows started within the same second.
        let mut live: Vec<(u64, usize, &str)> = Vec::new();
        for (i, (n, v)) in req
            .pairs
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .enumerate()
        {
            let created = if i < MAX_FLOW_SCAN {
                self.open(n, v)
                    .and_then(|j| serde_json::from_str::<Flow>(&j).ok())
                    .map(|f| f.created)
                    .filter(|c| c + FLOW_TTL > now)
            } else {
                None
            };
            match created {
                Some(c) => live.push((c, i, n)),
                None => out.push(self.removal(n.to_string(), "/")),
            }
        }
        // Keep the newest MAX_FLOWS - 1 beside the new one.
        live.sort_by_key(|l| std::cmp::Reverse((l.0, l.1)));
        for (_, _, n) in live.into_iter().skip(MAX_FLOWS - 1) {
            out.push(self.removal(n.to_string(), "/"));
        }
        Ok(out)
    }

    /// Finds and opens the flow that `state` belongs to, checking it started in this browser
    /// and has not expired. Returns it with the `Set-Cookie` value that deletes it.
    pub fn take_flow(
        &self,
        req: &RequestCookies<'_>,
        state: &str,
        now: u64,
    ) -> Result<(Flow, String), Error> {
        let id = flow_id(state).ok_or(Error::BadState("malformed state"))?;
        let name = format!("{}{id}", self.flow_prefix());
        let sealed = req
            .unique(&name)
            .ok_or(Error::BadState("no flow cookie for this state"))?;
        let flow: Flow = self
            .open(&name, sealed)
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or(Error::BadState("flow cookie does not open"))?;
        // Constant-time: the comparison must not reveal how much of a guessed state matched.
        if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(Error::BadState("state mismatch"));
        }
        if flow.created + FLOW_TTL <= now || flow.created > now + 60 {
            return Err(Error::BadState("flow expired"));
        }
        Ok((flow, self.removal(name, "/")))
    }

    /// `Set-Cookie` values expiring every flow cookie of this request.
    pub fn clear_flows(&self, req: &RequestCookies<'_>) -> Vec<String> {
        let prefix = self.flow_prefix();
        req.pairs
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(n, _)| self.removal(n.to_string(), "/"))
            .collect()
    }

    fn cookie(
        &self,
        name: String,
        value: String,
        max_age: Option<i64>,
        path: &str,
        same_site: SameSite,
    ) -> String {
        let mut b = Cookie::build((name, value))
            .path(path.to_string())
            .secure(self.attrs.secure)
            .http_only(self.attrs.http_only)
            .same_site(match same_site {
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::None => cookie::SameSite::None,
            });
        if let Some(d) = &self.attrs.domain {
            b = b.domain(d.clone());
        }
        if let Some(m) = max_age {
            b = b.max_age(cookie::time::Duration::seconds(m));
        }
        b.build().to_string()
    }

    fn removal(&self, name: String, path: &str) -> String {
        let mut c = Cookie::build((name, ""))
            .path(path.to_string())
            .secure(self.attrs.secure)
            .http_only(self.attrs.http_only)
            .build();
        if let Some(d) = &self.attrs.domain {
            c.set_domain(d.clone());
        }
        c.make_removal();
        c.to_string()
    }
}

/// The part of `state` that names its flow cookie; `None` for a state we could not have made.
fn flow_id(state: &str) -> Option<&str> {
    if state.len() < FLOW_ID_LEN || state.len() > 128 {
        return None;
    }
    if !state
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    state.get(..FLOW_ID_LEN)
}

/// 32 random bytes, base64url: used for `state` and `nonce`.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> SessionCookieConfig {
        SessionCookieConfig {
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: 0,
        }
    }

    fn codec(mw: &str, prefix: &str) -> CookieCodec {
        CookieCodec::new(
            &Secret::new("0123456789abcdef0123456789abcdef!"),
            mw,
            prefix,
            attrs(),
        )
    }

    fn session(claim_bytes: usize) -> Session {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String("u1".into()));
        claims.insert("blob".into(), Value::String("x".repeat(claim_bytes)));
        Session {
            sub: "u1".into(),
            claims,
            iat: 1000,
            exp: 2000,
            id_token: Some("eyJ.hdr.sig".into()),
            refresh_token: Some("rt-secret".into()),
            access_token: None,
            authorized: true,
            challenged: false,
        }
    }

    /// Turns Set-Cookie values into a Cookie header, as a browser would (removals dropped).
    fn browser(set: &[String]) -> String {
        set.iter()
            .filter_map(|s| Cookie::parse(s.clone()).ok())
            .filter(|c| !c.value().is_empty())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn session_round_trip_and_chunk_counts() {
        let c = codec("default", "P");
        for (bytes, chunks) in [(10, 1), (4000, 2), (12000, 5)] {
            let s = session(bytes);
            let set = c
                .write_session(&s, &RequestCookies::default(), 1000)
                .unwrap();
            assert_eq!(set.len(), chunks, "{bytes} bytes");
            for v in &set {
                assert!(v.len() < 4096, "cookie of {} bytes", v.len());
            }
            let header = browser(&set);
            let req = RequestCookies::parse([header.as_str()].into_iter());
            assert_eq!(c.read_session(&req, 1500), Some(s.clone()));
            assert_eq!(c.read_session(&req, 2000), None, "expired");
        }
    }

    #[test]
    fn oversized_session_drops_id_token_then_fails() {
        let c = codec("default", "P");
        let mut s = session(10);
        s.id_token = Some("t".repeat(CHUNK_SIZE * MAX_CHUNKS));
        let set = c
            .write_session(&s, &RequestCookies::default(), 1000)
            .unwrap();
        let header = browser(&set);
        let back = c
            .read_session(&RequestCookies::parse([header.as_str()].into_iter()), 1500)
            .unwrap();
        assert_eq!(back.id_token, None);
        assert!(
            c.write_session(
                &session(CHUNK_SIZE * MAX_CHUNKS),
                &RequestCookies::default(),
                1000
            )
            .is_err()
        );
    }

    #[test]
    fn tampered_truncated_foreign_cookies_do_not_open() {
        let c = codec("default", "P");
        let set = c
            .write_session(&session(5000), &RequestCookies::default(), 1000)
            .unwrap();
        let good = browser(&set);
        let mut cases: Vec<(String, String)> = vec![
            (
                "missing chunk 1".into(),
                good.split("; ").next().unwrap().to_string(),
            ),
            ("reordered".into(), {
                let parts: Vec<&str> = good.split("; ").collect();
                let v0 = parts[0].split_once('=').unwrap().1;
                let v1 = parts[1].split_once('=').unwrap().1;
                format!("P.session.0={v1}; P.session.1={v0}")
            }),
            (
                "tampered".into(),
                good.replacen("P.session.0=A", "P.session.0=B", 1).replacen(
                    "P.session.0=",
                    "P.session.0=x",
                    1,
                ),
            ),
            ("duplicate chunk".into(), format!("{good}; P.session.0=abc")),
            ("chunk beyond the cap".into(), {
                let mut h = good.clone();
                for i in 2..=MAX_CHUNKS {
                    h.push_str(&format!("; P.session.{i}=AAAA"));
                }
                h
            }),
        ];
        cases.push(("garbage".into(), "P.session.0=%%%".into()));
        for (name, header) in cases {
            let req = RequestCookies::parse([header.as_str()].into_iter());
            assert_eq!(c.read_session(&req, 1500), None, "{name}");
        }
        // Another middleware, another prefix, another secret.
        let req = RequestCookies::parse([good.as_str()].into_iter());
        assert!(c.read_session(&req, 1500).is_some());
        assert_eq!(codec("other", "P").read_session(&req, 1500), None);
        let other_secret = CookieCodec::new(
            &Secret::new("another-secret-another-secret-another"),
            "default",
            "P",
            attrs(),
        );
        assert_eq!(other_secret.read_session(&req, 1500), None);
        let renamed = good.replace("P.session", "Q.session");
        let req = RequestCookies::parse([renamed.as_str()].into_iter());
        assert_eq!(codec("default", "Q").read_session(&req, 1500), None);
    }

    #[test]
    fn foreign_cookies_keep_everything_but_ours() {
        let c = codec("default", "P");
        let req =
            RequestCookies::parse(["a=1; P.session.0=x; Pz=2; P.flow.abc=y", "b=3"].into_iter());
        assert_eq!(c.foreign_cookies(&req), "a=1; Pz=2; b=3");
    }

    fn flow(state: &str, created: u64) -> Flow {
        Flow {
            state: state.into(),
            nonce: "n".into(),
            verifier: Some("v".into()),
            return_to: "https://a/x".into(),
            created,
            challenge: false,
        }
    }

    #[test]
    fn flows_are_per_state_and_expire() {
        let c = codec("default", "P");
        let s1 = random_token();
        let s2 = random_token();
        let set1 = c
            .start_flow(&flow(&s1, 1000), &RequestCookies::default(), 1000)
            .unwrap();
        let h1 = browser(&set1);
        let set2 = c
            .start_flow(
                &flow(&s2, 1001),
                &RequestCookies::parse([h1.as_str()].into_iter()),
                1001,
            )
            .unwrap();
        let both = format!("{h1}; {}", browser(&set2[..1]));
        let req = RequestCookies::parse([both.as_str()].into_iter());
        assert_eq!(c.take_flow(&req, &s1, 1100).unwrap().0.state, s1);
        assert_eq!(c.take_flow(&req, &s2, 1100).unwrap().0.state, s2);
        // A state that did not start here, a forged state sharing the id, an expired flow.
        assert!(c.take_flow(&req, &random_token(), 1100).is_err());
        let forged = format!("{}{}", &s1[..FLOW_ID_LEN], "A".repeat(27));
        assert!(matches!(
            c.take_flow(&req, &forged, 1100),
            Err(Error::BadState(_))
        ));
        assert!(c.take_flow(&req, &s1, 1000 + FLOW_TTL).is_err());
        assert!(c.take_flow(&req, "short", 1100).is_err());
    }

    #[test]
    fn at_most_max_flows_are_kept() {
        let c = codec("default", "P");
        let mut header = String::new();
        for i in 0..MAX_FLOWS as u64 {
            let set = c
                .start_flow(
                    &flow(&random_token(), 1000 + i),
                    &RequestCookies::parse([header.as_str()].into_iter()),
                    1000 + i,
                )
                .unwrap();
            let new = browser(&set[..1]);
            header = if header.is_empty() {
                new
            } else {
                format!("{header}; {new}")
            };
        }
        let req = RequestCookies::parse([header.as_str()].into_iter());
        let set = c
            .start_flow(&flow(&random_token(), 1010), &req, 1010)
            .unwrap();
        let removals = set.iter().filter(|s| s.contains("Max-Age=0")).count();
        assert_eq!(removals, 1, "{set:#?}");
    }

    #[test]
    fn debug_never_shows_tokens() {
        let s = session(1);
        assert!(!format!("{s:?}").contains("eyJ"));
        assert!(!format!("{s:?}").contains("rt-secret"));
        let f = flow("the-state-value-123456", 1);
        assert!(!format!("{f:?}").contains("the-state"));
    }
}
