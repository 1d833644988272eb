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
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cookie::{Cookie, Key};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::config::{SameSite, Secret, SessionCookieConfig};
use crate::error::Error;
use crate::opened::Opened;

/// Largest number of session chunks we accept or write. Bounding it makes a forged cookie set
/// cheap to refuse: we never look further than this.
pub const MAX_CHUNKS: usize = 8;
/// Bytes of sealed value per chunk: browsers cap a cookie near 4096 bytes with its name and
/// attributes, so this leaves room for both. A multiple of 4 (see [`split`]).
pub const CHUNK_SIZE: usize = 3500;
const _: () = assert!(
    CHUNK_SIZE.is_multiple_of(4),
    "chunks must split base64 on quantum boundaries"
);
/// Largest number of logout-hint chunks.
pub const MAX_HINT_CHUNKS: usize = 3;
/// Longest ID token kept as the logout hint, in bytes (see [`CookieCodec::write_hint`]).
pub const MAX_HINT_LEN: usize = 8192;
/// Nonce and tag lengths of AES-256-GCM as sealed here.
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
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

/// Seals, opens, names and expires one middleware's cookies.
pub struct CookieCodec {
    cipher: Aes256Gcm,
    prefix: String,
    /// `<prefix>.session`: the associated data of the session, whichever chunk carries it.
    session_base: String,
    /// `<prefix>.session.0` … `<prefix>.session.8`: built once, read on every request (the one
    /// past [`MAX_CHUNKS`] is only looked for, to refuse an over-long set).
    chunk_names: Vec<String>,
    /// `<prefix>.hint`: associated data of the logout-hint cookies.
    hint_base: String,
    /// `<prefix>.hint.0` … `<prefix>.hint.2`.
    hint_names: Vec<String>,
    /// `<prefix>.flow.`
    flow_prefix: String,
    /// Path of the logout-hint cookies: the logout path, so browsers send them nowhere else.
    logout_path: String,
    attrs: SessionCookieConfig,
    /// Sessions opened recently, by sealed value.
    opened: Opened<Session>,
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
    /// `logout_path` is the middleware's `LogoutUri`, where the logout-hint cookies are sent.
    pub fn new(
        secret: &Secret,
        middleware: &str,
        prefix: &str,
        logout_path: &str,
        attrs: SessionCookieConfig,
    ) -> Self {
        // HKDF (the cookie crate's key expansion) over Secret plus the middleware name: two
        // middlewares sharing a Secret still get unrelated keys. The encryption half is the key
        // the crate's private jar would use, so sessions sealed by earlier versions still open.
        let mut master = Vec::with_capacity(secret.expose().len() + 64);
        master.extend_from_slice(secret.expose().as_bytes());
        master.extend_from_slice(b"\0traefik-oidc-sidecar/v1/");
        master.extend_from_slice(middleware.as_bytes());
        let key = Key::derive_from(&master);
        CookieCodec {
            cipher: Aes256Gcm::new(GenericArray::from_slice(key.encryption())),
            prefix: prefix.to_string(),
            session_base: format!("{prefix}.session"),
            chunk_names: (0..=MAX_CHUNKS)
                .map(|i| format!("{prefix}.session.{i}"))
                .collect(),
            hint_base: format!("{prefix}.hint"),
            hint_names: (0..MAX_HINT_CHUNKS)
                .map(|i| format!("{prefix}.hint.{i}"))
                .collect(),
            flow_prefix: format!("{prefix}.flow."),
            logout_path: logout_path.to_string(),
            attrs,
            opened: Opened::default(),
        }
    }

    /// Whether a cookie name belongs to this middleware (stripped before the upstream).
    pub fn is_ours(&self, name: &str) -> bool {
        name.len() > self.prefix.len()
            && name.starts_with(&self.prefix)
            && name.as_bytes().get(self.prefix.len()) == Some(&b'.')
    }

    /// The request's `Cookie` header without this middleware's cookies.
    pub fn foreign_cookies(&self, req: &RequestCookies<'_>) -> String {
        // Room for every pair (ours included): one allocation, no second pass over the names.
        let mut out =
            String::with_capacity(req.pairs.iter().map(|(n, v)| n.len() + v.len() + 3).sum());
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

    /// Seals `plaintext` for the cookie (or chunk set) named `aad`: base64 of
    /// nonce ‖ ciphertext ‖ tag, the cookie crate's private-jar layout. A fresh random 96-bit
    /// nonce per seal (NIST SP 800-38D §8.2.2); the name as associated data, so a value moved to
    /// another cookie name does not open.
    fn seal(&self, aad: &str, plaintext: &[u8]) -> Option<String> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                GenericArray::from_slice(&nonce),
                aad.as_bytes(),
                &mut buf[NONCE_LEN..],
            )
            .ok()?;
        buf.extend_from_slice(&tag);
        Some(BASE64.encode(buf))
    }

    /// Opens what [`CookieCodec::seal`] made, given as the pieces of its base64 in order (the
    /// chunks of a session). Each piece but the last is a multiple of 4 characters, so pieces
    /// decode one after the other into one buffer, without first joining the strings.
    fn open<'v>(&self, aad: &str, pieces: impl Iterator<Item = &'v str>) -> Option<Vec<u8>> {
        let mut data = Vec::new();
        for p in pieces {
            BASE64.decode_vec(p, &mut data).ok()?;
        }
        if data.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = data.split_at_mut(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        self.cipher
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                aad.as_bytes(),
                ciphertext,
                GenericArray::from_slice(tag),
            )
            .ok()?;
        let end = data.len() - TAG_LEN;
        data.truncate(end);
        data.drain(..NONCE_LEN);
        unpack(data)
    }

    /// The valid, unexpired session of this request, if any.
    pub fn read_session(&self, req: &RequestCookies<'_>, now: u64) -> Option<Arc<Session>> {
        self.open_session(req).filter(|s| s.exp > now)
    }

    /// The session of this request if it opens, expired or not (an expired session with a
    /// refresh token can still be refreshed). Sessions opened recently come from memory
    /// (see [`crate::opened`]).
    pub fn open_session(&self, req: &RequestCookies<'_>) -> Option<Arc<Session>> {
        let mut chunks: [&str; MAX_CHUNKS] = [""; MAX_CHUNKS];
        let mut n = 0;
        for name in &self.chunk_names {
            match req.unique(name) {
                Some(_) if n == MAX_CHUNKS => return None,
                Some(v) => chunks[n] = v,
                None => break,
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let chunks = &chunks[..n];
        if let Some(s) = self.opened.get(chunks) {
            return Some(s);
        }
        let json = self.open(&self.session_base, chunks.iter().copied())?;
        let session: Arc<Session> = Arc::new(serde_json::from_slice(&json).ok()?);
        self.opened.insert(chunks, session.clone());
        Some(session)
    }

    /// `Set-Cookie` values writing `session`, and expiring chunks the request had beyond the new
    /// count. If the session is too large, the ID token (kept only for `.idToken` templates) is
    /// left out.
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
            .zip(&self.chunk_names)
            .map(|(v, name)| {
                self.cookie(
                    name.clone(),
                    v,
                    max_age,
                    &self.attrs.path,
                    self.attrs.same_site,
                )
            })
            .collect();
        let written = out.len();
        for name in &self.chunk_names[written..MAX_CHUNKS] {
            if req.all(name).next().is_some() {
                out.push(self.removal(name.clone(), &self.attrs.path));
            }
        }
        Ok(out)
    }

    fn chunks(&self, session: &Session) -> Result<Vec<String>, Error> {
        let json = serde_json::to_vec(session).map_err(|e| Error::Internal(e.to_string()))?;
        // Even if it deflated into few enough chunks, a session we would refuse to inflate must
        // not be written: the browser would come back with it forever.
        if json.len() > MAX_PLAINTEXT {
            return Err(Error::Internal(format!(
                "session is {} bytes of JSON (max {MAX_PLAINTEXT}); assert on fewer claims",
                json.len()
            )));
        }
        let sealed = self
            .seal(&self.session_base, &pack(json))
            .ok_or_else(|| Error::Internal("sealing failed".into()))?;
        Ok(split(&sealed))
    }

    /// `Set-Cookie` values expiring every session chunk (present or not: a chunk the browser did
    /// not send for this path may still exist).
    pub fn clear_session(&self) -> Vec<String> {
        self.chunk_names[..MAX_CHUNKS]
            .iter()
            .map(|n| self.removal(n.clone(), &self.attrs.path))
            .collect()
    }

    /// `Set-Cookie` values expiring the session chunks this request carries.
    pub fn clear_present_session(&self, req: &RequestCookies<'_>) -> Vec<String> {
        self.chunk_names[..MAX_CHUNKS]
            .iter()
            .filter(|n| req.all(n).next().is_some())
            .map(|n| self.removal(n.clone(), &self.attrs.path))
            .collect()
    }

    /// `Set-Cookie` values storing the ID token as the logout hint, in cookies whose `Path` is
    /// the logout path: the browser sends them with the logout request only, so the token does
    /// not weigh on every request the way it would inside the session. Every hint chunk not
    /// written is expired (the browser does not send them here, so we cannot know which exist).
    /// A token over [`MAX_HINT_LEN`] bytes is not kept: it would make the logout redirect's URL
    /// longer than many servers accept; logout then goes without `id_token_hint`.
    pub fn write_hint(&self, id_token: Option<&str>) -> Result<Vec<String>, Error> {
        let chunks = match id_token.filter(|t| t.len() <= MAX_HINT_LEN) {
            Some(t) => {
                let sealed = self
                    .seal(&self.hint_base, &pack(t.as_bytes().to_vec()))
                    .ok_or_else(|| Error::Internal("sealing failed".into()))?;
                Some(split(&sealed)).filter(|c| c.len() <= MAX_HINT_CHUNKS)
            }
            None => None,
        }
        .unwrap_or_default();
        let max_age = (self.attrs.max_age > 0).then_some(self.attrs.max_age);
        let written = chunks.len();
        let mut out: Vec<String> = chunks
            .into_iter()
            .zip(&self.hint_names)
            .map(|(v, name)| {
                self.cookie(
                    name.clone(),
                    v,
                    max_age,
                    &self.logout_path,
                    self.attrs.same_site,
                )
            })
            .collect();
        out.extend(
            self.hint_names[written..]
                .iter()
                .map(|n| self.removal(n.clone(), &self.logout_path)),
        );
        Ok(out)
    }

    /// The ID token kept by [`CookieCodec::write_hint`], when this request carries it.
    pub fn read_hint(&self, req: &RequestCookies<'_>) -> Option<String> {
        let mut chunks: [&str; MAX_HINT_CHUNKS] = [""; MAX_HINT_CHUNKS];
        let mut n = 0;
        for name in &self.hint_names {
            match req.unique(name) {
                Some(v) => chunks[n] = v,
                None => break,
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let token = self.open(&self.hint_base, chunks[..n].iter().copied())?;
        String::from_utf8(token).ok()
    }

    /// `Set-Cookie` values expiring every logout-hint cookie.
    pub fn clear_hint(&self) -> Vec<String> {
        self.hint_names
            .iter()
            .map(|n| self.removal(n.clone(), &self.logout_path))
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
        let name = format!("{}{id}", self.flow_prefix);
        let json = serde_json::to_vec(flow).map_err(|e| Error::Internal(e.to_string()))?;
        let sealed = self
            .seal(&name, &json)
            .ok_or_else(|| Error::Internal("sealing failed".into()))?;
        let mut out = vec![self.cookie(name, sealed, Some(FLOW_TTL as i64), "/", SameSite::Lax)];

        let prefix = &self.flow_prefix;
        // (created, position in the request, name): browsers send older cookies first, so the
        // position breaks ties between flows started within the same second.
        let mut live: Vec<(u64, usize, &str)> = Vec::new();
        for (i, (n, v)) in req
            .pairs
            .iter()
            .filter(|(n, _)| n.starts_with(prefix.as_str()))
            .enumerate()
        {
            let created = if i < MAX_FLOW_SCAN {
                self.open(n, std::iter::once(*v))
                    .and_then(|j| serde_json::from_slice::<Flow>(&j).ok())
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
        let name = format!("{}{id}", self.flow_prefix);
        let sealed = req
            .unique(&name)
            .ok_or(Error::BadState("no flow cookie for this state"))?;
        let flow: Flow = self
            .open(&name, std::iter::once(sealed))
            .and_then(|j| serde_json::from_slice(&j).ok())
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
        req.pairs
            .iter()
            .filter(|(n, _)| n.starts_with(&self.flow_prefix))
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

/// Marks a deflated plaintext. An uncompressed one is JSON (or an ID token) and never starts
/// with this byte, so both forms, and sessions sealed before compression existed, open alike.
const DEFLATED: u8 = 0x01;
/// Plaintexts shorter than this are sealed as they are: the saving would be a few hundred bytes
/// of a single cookie, and inflating costs more than decoding them.
const COMPRESS_FROM: usize = 1024;
/// Largest plaintext we inflate to. Only our own sealed (authenticated) values are inflated, so
/// this is a backstop, not the defence against a deflate bomb.
const MAX_PLAINTEXT: usize = 256 * 1024;

/// Compresses a plaintext worth compressing (raw deflate, RFC 1951) and marks it.
///
/// Compressing before encrypting leaks the compressed length (CRIME-style attacks). Here that
/// needs an attacker who injects guesses next to a secret in the same session and reads the
/// cookie's length: the claims come from the IdP, and the only secrets in a session are the
/// user's own tokens, so there is nothing to learn that the user does not already hold.
fn pack(plaintext: Vec<u8>) -> Vec<u8> {
    if plaintext.len() < COMPRESS_FROM {
        return plaintext;
    }
    let z = miniz_oxide::deflate::compress_to_vec(&plaintext, 6);
    if z.len() + 1 >= plaintext.len() {
        return plaintext;
    }
    let mut out = Vec::with_capacity(z.len() + 1);
    out.push(DEFLATED);
    out.extend_from_slice(&z);
    out
}

/// Undoes [`pack`].
fn unpack(plaintext: Vec<u8>) -> Option<Vec<u8>> {
    match plaintext.split_first() {
        Some((&DEFLATED, z)) => {
            miniz_oxide::inflate::decompress_to_vec_with_limit(z, MAX_PLAINTEXT).ok()
        }
        _ => Some(plaintext),
    }
}

/// Splits a sealed value into cookie-sized chunks. It is base64, so byte offsets are character
/// boundaries, and [`CHUNK_SIZE`] is a multiple of 4, so every chunk but the last decodes alone.
fn split(sealed: &str) -> Vec<String> {
    sealed
        .as_bytes()
        .chunks(CHUNK_SIZE)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
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
            "/logout",
            attrs(),
        )
    }

    /// Random base64 text: deflate saves only about a quarter of it.
    fn noise(bytes: usize) -> String {
        let mut out = String::new();
        while out.len() < bytes {
            out.push_str(&random_token());
        }
        out.truncate(bytes);
        out
    }

    fn session(claim_bytes: usize) -> Session {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String("u1".into()));
        claims.insert("blob".into(), Value::String(noise(claim_bytes)));
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
        // Sealed size ≈ 4/3 × (nonce + deflated JSON + tag); the random claim deflates to ~3/4.
        for (bytes, chunks) in [(10, 1), (2000, 1), (4000, 2), (12000, 4)] {
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
            assert_eq!(c.read_session(&req, 1500).as_deref(), Some(&s));
            assert_eq!(c.read_session(&req, 2000), None, "expired");
        }
    }

    #[test]
    fn repetitive_claims_are_deflated_into_fewer_chunks() {
        let c = codec("default", "P");
        let mut s = session(0);
        let groups: Vec<Value> = (0..200)
            .map(|i| {
                Value::String(format!(
                    "/corp/engineering/platform-infrastructure/team-{i:03}"
                ))
            })
            .collect();
        s.claims.insert("groups".into(), Value::Array(groups));
        let json = serde_json::to_vec(&s).unwrap();
        assert!(json.len() > 2 * CHUNK_SIZE, "{} bytes of JSON", json.len());
        let set = c
            .write_session(&s, &RequestCookies::default(), 1000)
            .unwrap();
        assert_eq!(set.len(), 1, "deflated into one chunk");
        let header = browser(&set);
        let req = RequestCookies::parse([header.as_str()].into_iter());
        assert_eq!(c.read_session(&req, 1500).as_deref(), Some(&s));
    }

    #[test]
    fn a_session_opened_again_comes_from_memory() {
        let c = codec("default", "P");
        let set = c
            .write_session(&session(6000), &RequestCookies::default(), 1000)
            .unwrap();
        assert!(set.len() > 1);
        let header = browser(&set);
        let req = RequestCookies::parse([header.as_str()].into_iter());
        let first = c.open_session(&req).unwrap();
        let again = c.open_session(&req).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // The expiry is still checked on the remembered session.
        assert!(c.read_session(&req, 1500).is_some());
        assert!(c.read_session(&req, 2000).is_none());
        // Same chunks in another codec (another middleware): not remembered there, not opened.
        assert!(codec("other", "P").open_session(&req).is_none());
    }

    #[test]
    fn pack_and_unpack() {
        for (name, plain, deflated) in [
            ("short JSON stays as is", br#"{"sub":"u"}"#.to_vec(), false),
            (
                "long repetitive JSON is deflated",
                format!("{{\"g\":\"{}\"}}", "ab".repeat(2000)).into_bytes(),
                true,
            ),
            (
                "incompressible stays as is",
                (0..4000).map(|_| rand::random::<u8>()).collect(),
                false,
            ),
        ] {
            let packed = pack(plain.clone());
            assert_eq!(packed.first() == Some(&DEFLATED), deflated, "{name}");
            assert_eq!(unpack(packed), Some(plain), "{name}");
        }
        // Beyond MAX_PLAINTEXT nothing is inflated (a backstop: only authenticated values get here).
        let bomb = pack(vec![b'{'; MAX_PLAINTEXT + 1]);
        assert!(bomb.len() < 1024);
        assert_eq!(unpack(bomb), None);
    }

    #[test]
    fn sessions_sealed_by_the_private_jar_still_open() {
        // Version 0.1 sealed with cookie's private jar; the layout and key are unchanged.
        let c = codec("default", "P");
        let s = session(10);
        let mut master = b"0123456789abcdef0123456789abcdef!".to_vec();
        master.extend_from_slice(b"\0traefik-oidc-sidecar/v1/default");
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&Key::derive_from(&master))
            .add(Cookie::new("P.session", serde_json::to_string(&s).unwrap()));
        let sealed = jar.get("P.session").unwrap().value().to_string();
        let header = format!("P.session.0={sealed}");
        let req = RequestCookies::parse([header.as_str()].into_iter());
        assert_eq!(c.read_session(&req, 1500).as_deref(), Some(&s));
    }

    #[test]
    fn logout_hint_lives_on_the_logout_path() {
        let c = codec("default", "P");
        let token = format!("eyJ{}", noise(4000));
        let set = c.write_hint(Some(&token)).unwrap();
        assert_eq!(set.len(), MAX_HINT_CHUNKS, "{set:#?}");
        for v in &set {
            let parsed = Cookie::parse(v.clone()).unwrap();
            assert_eq!(parsed.path(), Some("/logout"), "{v}");
            assert!(v.len() < 4096);
        }
        assert_eq!(set.iter().filter(|v| v.contains("Max-Age=0")).count(), 1);
        let header = browser(&set);
        let req = RequestCookies::parse([header.as_str()].into_iter());
        assert_eq!(c.read_hint(&req).as_deref(), Some(token.as_str()));
        // The hint is not a session, and a session chunk is not a hint (the name is bound in).
        assert_eq!(c.read_session(&req, 1500), None);
        let moved = header.replace("P.hint.", "P.session.");
        let req = RequestCookies::parse([moved.as_str()].into_iter());
        assert_eq!(c.read_session(&req, 1500), None);
        // Too long to be a URL parameter, or absent: every hint cookie is expired.
        for t in [None, Some("x".repeat(MAX_HINT_LEN + 1))] {
            let set = c.write_hint(t.as_deref()).unwrap();
            assert_eq!(set.len(), MAX_HINT_CHUNKS);
            assert!(
                set.iter()
                    .all(|v| v.contains("Max-Age=0") && v.contains("Path=/logout"))
            );
        }
        assert_eq!(c.clear_hint().len(), MAX_HINT_CHUNKS);
    }

    #[test]
    fn oversized_session_drops_id_token_then_fails() {
        let c = codec("default", "P");
        let mut s = session(10);
        s.id_token = Some(noise(CHUNK_SIZE * MAX_CHUNKS));
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
                &session(CHUNK_SIZE * MAX_CHUNKS * 4 / 3),
                &RequestCookies::default(),
                1000
            )
            .is_err()
        );
        // Repetitive claims that deflate into one chunk but exceed what we would inflate.
        let mut big = session(0);
        big.claims
            .insert("blob".into(), Value::String("ab".repeat(MAX_PLAINTEXT)));
        assert!(
            c.write_session(&big, &RequestCookies::default(), 1000)
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
            "/logout",
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
