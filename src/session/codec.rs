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
pub(crate) mod tests;
