//! The cookie codec: how a scope's cookies are sealed, chunked, named and expired.
//!
//! Every value is AES-256-GCM sealed in the `cookie` crate's private-jar layout (authenticated
//! encryption: a tampered, truncated or foreign cookie fails to open). The key is derived from
//! the whole [`ScopeKey`] (`Secret`, `Provider.Url`, `ClientId`, cookie prefix, domain and path),
//! and the cookie name is bound in as associated data, so a cookie made for another scope never
//! opens here, even when two scopes share a `Secret` or a cookie prefix.
//!
//! Secret rotation (`PreviousSecrets`): the codec holds one cipher per secret of the scope. The
//! current `Secret`'s seals; the others only open, tried in order after it, so a value sealed
//! before a rotation still opens, and the caller learns it came from an old key
//! ([`CookieCodec::open_keyed`]) and re-seals it on the answer. Without previous secrets the list
//! is empty and opening costs exactly one decryption, as before.
//!
//! Sessions are split into chunks (`<prefix>.session.N`) that browsers accept; the ID token kept
//! as the logout hint travels in `<prefix>.hint.N` cookies sent only to the logout paths.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cookie::{Cookie, Key};

use super::scope::ScopeKey;
use super::{RequestCookies, SameSite, Session, SessionCookieConfig};
use crate::error::Error;

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

/// The sealed chunks of a request's session, in order, before they are opened.
pub type Chunks<'a> = ([&'a str; MAX_CHUNKS], usize);

/// Seals, opens, names and expires one scope's cookies.
pub struct CookieCodec {
    cipher: Aes256Gcm,
    /// Ciphers of the scope's previous secrets (`PreviousSecrets`): they open, never seal.
    previous: Box<[Aes256Gcm]>,
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
    /// Paths of the logout-hint cookies: the scope's logout paths, so browsers send them
    /// nowhere else.
    hint_paths: Vec<String>,
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
    /// The codec of the scope `key`; `attrs` are the cookie attributes (its `Path` and `Domain`
    /// are the key's), `hint_paths` the scope's logout paths (where the logout-hint cookies are
    /// sent).
    pub fn new(key: &ScopeKey, mut attrs: SessionCookieConfig, hint_paths: Vec<String>) -> Self {
        // HKDF (the cookie crate's key expansion) over Secret plus everything else that names
        // the scope: two scopes sharing a Secret, or a cookie prefix, get unrelated keys. The
        // encryption half is the key the crate's private jar would use.
        let key_material = Key::derive_from(&key.master());
        let previous = key
            .previous_masters()
            .iter()
            .map(|m| {
                let k = Key::derive_from(m);
                Aes256Gcm::new(GenericArray::from_slice(k.encryption()))
            })
            .collect();
        let prefix = key.prefix();
        attrs.path = key.path().to_string();
        attrs.domain = key.domain().map(str::to_string);
        let mut hint_paths = hint_paths;
        hint_paths.sort();
        hint_paths.dedup();
        CookieCodec {
            cipher: Aes256Gcm::new(GenericArray::from_slice(key_material.encryption())),
            previous,
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
            hint_paths,
            attrs,
        }
    }

    /// The `Set-Cookie` value of a Redis-mode ticket cookie, living `ttl` seconds at most
    /// (capped by `SessionCookie.MaxAge` when set; a browser-session cookie otherwise, as in
    /// cookie mode).
    pub(super) fn ticket_cookie(&self, name: &str, value: String, ttl: u64) -> String {
        let max_age = (self.attrs.max_age > 0).then(|| self.attrs.max_age.min(ttl as i64));
        self.cookie(
            name.to_string(),
            value,
            max_age,
            &self.attrs.path,
            self.attrs.same_site,
        )
    }

    /// The `Set-Cookie` value removing a ticket cookie.
    pub(super) fn ticket_removal(&self, name: &str) -> String {
        self.removal(name.to_string(), &self.attrs.path)
    }

    /// Whether previous secrets open values here (see [`super::rotation`]).
    pub fn rotating(&self) -> bool {
        !self.previous.is_empty()
    }

    /// `<prefix>.flow.`: the start of every flow cookie's name.
    pub(super) fn flow_prefix(&self) -> &str {
        &self.flow_prefix
    }

    /// The scope's cookie prefix (every cookie of the scope is `<prefix>.…`).
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The `Path` of the scope's session cookies.
    pub(super) fn path(&self) -> &str {
        &self.attrs.path
    }

    /// Whether a cookie name is one of this scope's (stripped before the upstream).
    pub fn is_ours(&self, name: &str) -> bool {
        name.len() > self.prefix.len()
            && name.starts_with(&self.prefix)
            && name.as_bytes().get(self.prefix.len()) == Some(&b'.')
    }

    /// The request's `Cookie` header without this scope's cookies.
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
    pub(super) fn seal(&self, aad: &str, plaintext: &[u8]) -> Option<String> {
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
    pub(super) fn open<'v>(
        &self,
        aad: &str,
        pieces: impl Iterator<Item = &'v str>,
    ) -> Option<Vec<u8>> {
        self.open_keyed(aad, pieces).map(|(plain, _)| plain)
    }

    /// [`CookieCodec::open`], also telling whether a previous secret opened the value (`true`:
    /// the caller re-seals it under the current `Secret`). The current key is tried first; a
    /// previous one only when it fails, so the cost of a rotation falls on old values only.
    pub(super) fn open_keyed<'v>(
        &self,
        aad: &str,
        pieces: impl Iterator<Item = &'v str>,
    ) -> Option<(Vec<u8>, bool)> {
        let mut data = Vec::new();
        for p in pieces {
            BASE64.decode_vec(p, &mut data).ok()?;
        }
        if data.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = data.split_at_mut(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let (nonce, tag) = (
            GenericArray::from_slice(nonce),
            GenericArray::from_slice(tag),
        );
        // A failed AES-GCM open checks the tag before decrypting and leaves the buffer as it
        // was (aes-gcm 0.10.3), so the next key tries the same ciphertext; the unit test
        // `a_previous_secret_opens_and_says_so` fails if that ever changes.
        let stale = if self
            .cipher
            .decrypt_in_place_detached(nonce, aad.as_bytes(), ciphertext, tag)
            .is_ok()
        {
            false
        } else if self.previous.iter().any(|c| {
            c.decrypt_in_place_detached(nonce, aad.as_bytes(), ciphertext, tag)
                .is_ok()
        }) {
            true
        } else {
            return None;
        };
        let end = data.len() - TAG_LEN;
        data.truncate(end);
        data.drain(..NONCE_LEN);
        unpack(data).map(|plain| (plain, stale))
    }

    /// The sealed session chunks this request carries, in order; `None` when it carries none,
    /// more than [`MAX_CHUNKS`], or a chunk name twice.
    pub fn session_chunks<'a>(&self, req: &RequestCookies<'a>) -> Option<Chunks<'a>> {
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
        (n > 0).then_some((chunks, n))
    }

    /// Opens the session sealed in `chunks` (from [`CookieCodec::session_chunks`]), expired or
    /// not. A session a previous secret opened comes back marked
    /// ([`Session::sealed_by_previous`]), for the answer to re-seal it.
    pub fn open_session(&self, chunks: &[&str]) -> Option<Session> {
        let (json, stale) = self.open_keyed(&self.session_base, chunks.iter().copied())?;
        let mut session: Session = serde_json::from_slice(&json).ok()?;
        session.sealed_by_previous = stale;
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
    /// each logout path of the scope: the browser sends them with the logout request only, so the token does
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
        let mut out = Vec::with_capacity(MAX_HINT_CHUNKS * self.hint_paths.len());
        for path in &self.hint_paths {
            for (v, name) in chunks.iter().zip(&self.hint_names) {
                out.push(self.cookie(name.clone(), v.clone(), max_age, path, self.attrs.same_site));
            }
            out.extend(
                self.hint_names[written..]
                    .iter()
                    .map(|n| self.removal(n.clone(), path)),
            );
        }
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
        self.hint_paths
            .iter()
            .flat_map(|p| self.hint_names.iter().map(|n| self.removal(n.clone(), p)))
            .collect()
    }

    pub(super) fn cookie(
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

    pub(super) fn removal(&self, name: String, path: &str) -> String {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::session::{Secret, random_token};
    use serde_json::{Map, Value};

    fn attrs() -> SessionCookieConfig {
        SessionCookieConfig {
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: 0,
            idle_timeout: None,
        }
    }

    /// A codec of a scope with the cookie prefix `prefix`.
    pub(crate) fn codec(prefix: &str) -> CookieCodec {
        codec_for("0123456789abcdef0123456789abcdef!", "app", prefix)
    }

    fn codec_for(secret: &str, client: &str, prefix: &str) -> CookieCodec {
        let key = ScopeKey::new(
            &Secret::new(secret),
            "https://idp.example/realm",
            client,
            prefix,
            None,
            "/",
        );
        CookieCodec::new(&key, attrs(), vec!["/logout".into()])
    }

    /// Opens the request's session with `c` when it has not expired, as the scope does.
    pub(crate) fn read(c: &CookieCodec, req: &RequestCookies<'_>, now: u64) -> Option<Session> {
        let (chunks, n) = c.session_chunks(req)?;
        c.open_session(&chunks[..n]).filter(|s| s.exp > now)
    }

    /// Random base64 text: deflate saves only about a quarter of it.
    pub(crate) fn noise(bytes: usize) -> String {
        let mut out = String::new();
        while out.len() < bytes {
            out.push_str(&random_token());
        }
        out.truncate(bytes);
        out
    }

    pub(crate) fn session(claim_bytes: usize) -> Session {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String("u1".into()));
        claims.insert("blob".into(), Value::String(noise(claim_bytes)));
        Session {
            sub: "u1".into(),
            sid: Some("sid-1".into()),
            claims,
            iat: 1000,
            exp: 2000,
            id_token: Some("eyJ.hdr.sig".into()),
            refresh_token: Some("rt-secret".into()),
            access_token: None,
            verdicts: [("m".to_string(), crate::session::Verdict::new(true, [1; 6]))].into(),
            challenged: Default::default(),
            rendered: Default::default(),
            sealed_by_previous: false,
            acr: None,
            auth_time: None,
            step_up_failed: Default::default(),
            active: None,
        }
    }

    /// Turns Set-Cookie values into a Cookie header, as a browser would (removals dropped).
    pub(crate) fn browser(set: &[String]) -> String {
        set.iter()
            .filter_map(|s| Cookie::parse(s.clone()).ok())
            .filter(|c| !c.value().is_empty())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn session_round_trip_and_chunk_counts() {
        let c = codec("P");
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
            assert_eq!(read(&c, &req, 1500).as_ref(), Some(&s));
            assert_eq!(read(&c, &req, 2000), None, "expired");
        }
    }

    #[test]
    fn repetitive_claims_are_deflated_into_fewer_chunks() {
        let c = codec("P");
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
        assert_eq!(read(&c, &req, 1500).as_ref(), Some(&s));
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
                // Random bytes after a fixed first one: a plaintext starting with the DEFLATED
                // marker by chance (1 in 256) would make this test flaky.
                std::iter::once(b'x')
                    .chain((0..4000).map(|_| rand::random::<u8>()))
                    .collect(),
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
    fn sessions_sealed_in_the_private_jar_layout_open() {
        // The layout is the cookie crate's private jar, keyed from the scope key's material.
        let c = codec("P");
        let s = session(10);
        let master = ScopeKey::new(
            &Secret::new("0123456789abcdef0123456789abcdef!"),
            "https://idp.example/realm",
            "app",
            "P",
            None,
            "/",
        )
        .master();
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&Key::derive_from(&master))
            .add(Cookie::new("P.session", serde_json::to_string(&s).unwrap()));
        let sealed = jar.get("P.session").unwrap().value().to_string();
        let header = format!("P.session.0={sealed}");
        let req = RequestCookies::parse([header.as_str()].into_iter());
        assert_eq!(read(&c, &req, 1500).as_ref(), Some(&s));
    }

    #[test]
    fn logout_hint_lives_on_the_logout_path() {
        let c = codec("P");
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
        assert_eq!(read(&c, &req, 1500), None);
        let moved = header.replace("P.hint.", "P.session.");
        let req = RequestCookies::parse([moved.as_str()].into_iter());
        assert_eq!(read(&c, &req, 1500), None);
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
        let c = codec("P");
        let mut s = session(10);
        s.id_token = Some(noise(CHUNK_SIZE * MAX_CHUNKS));
        let set = c
            .write_session(&s, &RequestCookies::default(), 1000)
            .unwrap();
        let header = browser(&set);
        let back = read(
            &c,
            &RequestCookies::parse([header.as_str()].into_iter()),
            1500,
        )
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
        let c = codec("P");
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
            assert_eq!(read(&c, &req, 1500), None, "{name}");
        }
        // Another scope: another client, another secret, another prefix.
        let req = RequestCookies::parse([good.as_str()].into_iter());
        assert!(read(&c, &req, 1500).is_some());
        assert_eq!(
            read(
                &codec_for("0123456789abcdef0123456789abcdef!", "other-client", "P"),
                &req,
                1500
            ),
            None
        );
        let other_secret = codec_for("another-secret-another-secret-another", "app", "P");
        assert_eq!(read(&other_secret, &req, 1500), None);
        let renamed = good.replace("P.session", "Q.session");
        let req = RequestCookies::parse([renamed.as_str()].into_iter());
        assert_eq!(read(&codec("Q"), &req, 1500), None);
    }

    #[test]
    fn foreign_cookies_keep_everything_but_ours() {
        let c = codec("P");
        let req =
            RequestCookies::parse(["a=1; P.session.0=x; Pz=2; P.flow.abc=y", "b=3"].into_iter());
        assert_eq!(c.foreign_cookies(&req), "a=1; Pz=2; b=3");
    }
}
