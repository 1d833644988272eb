//! OpenID Connect Back-Channel Logout 1.0: verifying a `logout_token` (§2.4, §2.6) and
//! remembering its `jti` so a token is honoured once.
//!
//! A logout token is a JWT the IdP POSTs to the RP when a user's session at the IdP ends. It is
//! verified like an ID token where the rules agree (signature by a key of the provider's JWKS
//! with the same asymmetric-only algorithm list and the same rate-limited refetch for an unknown
//! `kid`; `iss` is the issuer the provider module expects, `ValidIssuer` or the discovered one)
//! and by its own rules where they differ: `aud` contains the client id; `iat` is present, not
//! in the future beyond the leeway and not older than [`MAX_LOGOUT_TOKEN_AGE`]; `exp`, if
//! present, has not passed; `jti` is present and never seen before; `events` is an object with
//! the back-channel-logout member, itself an object; `sid` and/or `sub` is present; `nonce` is
//! absent (§2.4: it forbids one so a logout token can never pass as an ID token); a `typ` header,
//! when present, is `logout+jwt` (§2.4 recommends explicit typing, RFC 8725 §3.11).
//!
//! Unlike an ID token, a logout token may lack `sub` and `exp`, so the ID token verifier of the
//! `openidconnect` crate (which requires both) is not used; the signature is checked with its
//! JWK type directly.
//!
//! The replay memory is the [`JtiStore`] seam: [`MemoryJtiStore`] keeps `jti`s in this process;
//! a server-side store (the Redis one) keeps them for every replica. A `jti` is kept for as long
//! as its token could be accepted (its `iat` plus [`MAX_LOGOUT_TOKEN_AGE`] plus the leeway),
//! which is also why old tokens are refused: the memory never has to outlive that window.
//! [`JtiMemory`] owns one replay memory per OpenID client, above the session scopes: a
//! configuration reload that rebuilds a scope, or a client used only by inline blocks that come
//! and go, must not forget a token that was already used.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use base64::Engine as _;
use openidconnect::core::{CoreJsonWebKeySet, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey as _, JsonWebKeyId};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{LEEWAY_SECS, Provider};
use crate::error::Error;

/// The `events` member that makes a JWT a logout token (§2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old (by its `iat`) a logout token may be. IdPs send the token at once (oidc-provider and
/// Keycloak within seconds); the bound keeps the `jti` memory finite.
pub const MAX_LOGOUT_TOKEN_AGE: u64 = 600;
/// The longest logout token accepted, in bytes (real ones are well under 2 KiB).
pub const MAX_LOGOUT_TOKEN_LEN: usize = 16 * 1024;
/// The longest `jti`, `sid` or `sub` accepted.
const MAX_ID_LEN: usize = 1024;

/// A verified logout token: what it asks to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// The IdP session (`sid`), when the token names one.
    pub sid: Option<String>,
    /// The subject (`sub`), when the token names one.
    pub sub: Option<String>,
    /// The token's `iat`.
    pub iat: u64,
    /// Its replay key ([`jti_key`]), to [`JtiStore::forget`] it if the logout cannot be done.
    pub jti: [u8; 32],
}

/// A boxed future, so [`JtiStore`] stays object-safe without a macro crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Remembers which logout tokens were already used (§2.6 step 9 lets the RP refuse a `jti` it
/// has seen; we always do, so a captured token cannot end sessions made after it).
pub trait JtiStore: Send + Sync {
    /// Records `key` (see [`jti_key`]) until `until` (unix seconds). `Ok(true)`: first use;
    /// `Ok(false)`: seen before (a replay). An `Err` means the store cannot say: the caller
    /// refuses the token (fail closed).
    fn first_use(&self, key: [u8; 32], until: u64, now: u64) -> BoxFuture<'_, Result<bool, Error>>;

    /// Forgets `key` again: the token was accepted but its logout could not be carried out, so
    /// the IdP's retry must not count as a replay.
    fn forget(&self, key: [u8; 32]) -> BoxFuture<'_, ()>;
}

/// The replay key of a token: SHA-256 over the issuer, the client it was sent to and the `jti`
/// (§2.4: `jti` identifies the token; the client is in the key so a store shared by several
/// clients, the Redis one, still keeps one memory per client). Fixed size, so the memory per
/// token does not depend on what the IdP sends.
pub fn jti_key(iss: &str, client_id: &str, jti: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [iss, client_id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(jti.as_bytes());
    h.finalize().into()
}

/// Most per-client memories [`JtiMemory`] keeps before it forgets those holding no live `jti`
/// (clients of inline blocks come and go).
pub const MAX_JTI_CLIENTS: usize = 1024;

/// The logout-token replay memory of every OpenID client of the process, owned by the app
/// (above the session scopes, which reloads rebuild): YAML middlewares and inline blocks of one
/// client share one memory, whichever route a token comes through. In memory mode each client
/// has its own [`MemoryJtiStore`] (a flood of one client's logouts cannot fill another's); with
/// a shared store (Redis: every replica) every client uses it, the client being part of the key
/// ([`jti_key`]).
pub struct JtiMemory {
    shared: Option<std::sync::Arc<dyn JtiStore>>,
    clients: Mutex<HashMap<(String, String), std::sync::Arc<MemoryJtiStore>>>,
}

impl JtiMemory {
    /// One [`MemoryJtiStore`] per client, in this process.
    pub fn in_memory() -> Self {
        JtiMemory {
            shared: None,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// `store` for every client (a server-side store shared by every replica).
    pub fn shared(store: std::sync::Arc<dyn JtiStore>) -> Self {
        JtiMemory {
            shared: Some(store),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The replay memory of the client `client_id` of the provider at `provider_url` (a
    /// trailing `/` names the same provider, as for session scopes).
    pub fn of_client(
        &self,
        provider_url: &str,
        client_id: &str,
        now: u64,
    ) -> std::sync::Arc<dyn JtiStore> {
        if let Some(s) = &self.shared {
            return s.clone();
        }
        let key = (
            provider_url.trim_end_matches('/').to_string(),
            client_id.to_string(),
        );
        // A poisoned lock is taken over: the map is plain data, and losing it would let used
        // tokens be replayed.
        let mut map = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = map.get(&key) {
            return s.clone();
        }
        if map.len() >= MAX_JTI_CLIENTS {
            // Only memories without a live entry go: forgetting one that holds a `jti` would
            // let that token be replayed.
            map.retain(|_, s| s.holds_any(now));
        }
        let store = std::sync::Arc::new(MemoryJtiStore::default());
        map.insert(key, store.clone());
        store
    }
}

impl std::fmt::Debug for JtiMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JtiMemory")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// [`JtiStore`] in this process's memory, bounded by a number of entries. When it is full of
/// unexpired entries it refuses new tokens (an error, so the IdP sees a failure and may retry)
/// rather than forget one early: forgetting would let that token be replayed.
pub struct MemoryJtiStore {
    max: usize,
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

/// Default capacity of [`MemoryJtiStore`]: 10 000 logouts within [`MAX_LOGOUT_TOKEN_AGE`] per
/// client (about 0.6 MB).
pub const MAX_REMEMBERED_JTIS: usize = 10_000;

impl MemoryJtiStore {
    /// A store holding at most `max` unexpired entries.
    pub fn new(max: usize) -> Self {
        MemoryJtiStore {
            max,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an unexpired entry is kept.
    fn holds_any(&self, now: u64) -> bool {
        self.seen
            .lock()
            .map_or(true, |seen| seen.values().any(|&t| t > now))
    }

    fn record(&self, key: [u8; 32], until: u64, now: u64) -> Result<bool, Error> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| Error::Internal("jti store lock poisoned".into()))?;
        if let Some(&t) = seen.get(&key)
            && t > now
        {
            return Ok(false);
        }
        if seen.len() >= self.max {
            seen.retain(|_, t| *t > now);
        }
        if seen.len() >= self.max {
            return Err(Error::LogoutBusy("too many recent logout tokens"));
        }
        seen.insert(key, until);
        Ok(true)
    }
}

impl Default for MemoryJtiStore {
    fn default() -> Self {
        MemoryJtiStore::new(MAX_REMEMBERED_JTIS)
    }
}

impl std::fmt::Debug for MemoryJtiStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryJtiStore")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl JtiStore for MemoryJtiStore {
    fn first_use(&self, key: [u8; 32], until: u64, now: u64) -> BoxFuture<'_, Result<bool, Error>> {
        let r = self.record(key, until, now);
        Box::pin(async move { r })
    }

    fn forget(&self, key: [u8; 32]) -> BoxFuture<'_, ()> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&key);
        }
        Box::pin(async {})
    }
}

/// Why a signature check did not pass.
#[derive(Debug, PartialEq, Eq)]
enum SigError {
    /// No key of the set has the token's `kid` (or, without a `kid`, none fits): the IdP may
    /// have rotated its keys, so the set is worth fetching again.
    NoKey,
    /// Anything else: the token is refused.
    Bad(String),
}

impl Provider {
    /// Verifies `token` as a logout token of this provider (module docs) and records its `jti`
    /// in `jtis`. A token that fails a check, or a replay, is [`Error::BadLogoutToken`].
    pub async fn verify_logout_token(
        &self,
        token: &str,
        jtis: &dyn JtiStore,
        now: u64,
    ) -> Result<LogoutToken, Error> {
        let d = self
            .current()
            .ok_or_else(|| Error::IdpUnavailable("discovery not loaded yet".into()))?;
        let claims = match verify_signature(token, &d.jwks, &d.allowed_algs) {
            Ok(c) => c,
            Err(SigError::NoKey) => {
                // Same rule as ID tokens: one refetch, at most once a minute.
                let d = self.refetch_jwks(&d, now).await.map_err(|e| match e {
                    Error::IdpUnavailable(m) => Error::IdpUnavailable(m),
                    other => Error::BadLogoutToken(other.to_string()),
                })?;
                verify_signature(token, &d.jwks, &d.allowed_algs).map_err(|e| match e {
                    SigError::NoKey => Error::BadLogoutToken("no key of the JWKS fits".into()),
                    SigError::Bad(m) => Error::BadLogoutToken(m),
                })?
            }
            Err(SigError::Bad(m)) => return Err(Error::BadLogoutToken(m)),
        };
        let (mut t, jti) = check_claims(&claims, &d.issuer, &self.cfg.client_id, now)
            .map_err(Error::BadLogoutToken)?;
        t.jti = jti_key(&d.issuer, &self.cfg.client_id, &jti);
        let until = t.iat + MAX_LOGOUT_TOKEN_AGE + 2 * LEEWAY_SECS;
        if !jtis.first_use(t.jti, until, now).await? {
            return Err(Error::BadLogoutToken("jti already used (replay)".into()));
        }
        Ok(t)
    }
}

fn b64(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

/// Checks the JOSE header and the signature of a compact JWS against `jwks`; returns the
/// payload. Only `allowed` algorithms (the provider's asymmetric ones) are accepted.
fn verify_signature(
    token: &str,
    jwks: &CoreJsonWebKeySet,
    allowed: &[CoreJwsSigningAlgorithm],
) -> Result<Map<String, Value>, SigError> {
    let bad = |m: &str| SigError::Bad(m.to_string());
    if token.len() > MAX_LOGOUT_TOKEN_LEN {
        return Err(bad("token too long"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        // Five parts would be a JWE: §2.4 allows encrypting, but this RP registers no
        // encryption key, so an encrypted token is not for it.
        return Err(bad("not a compact JWS (three parts)"));
    };
    let header = match b64(h).and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        Some(Value::Object(m)) => m,
        _ => return Err(bad("header is not a base64url JSON object")),
    };
    if header.contains_key("crit") {
        // RFC 7515 §4.1.11: extensions we do not understand make the token invalid.
        return Err(bad("crit header present"));
    }
    if let Some(typ) = header.get("typ") {
        let typ = typ.as_str().ok_or_else(|| bad("typ is not a string"))?;
        // RFC 7515 §4.1.9: media types compare case-insensitively, `application/` optional.
        let t = typ.to_ascii_lowercase();
        if t.strip_prefix("application/").unwrap_or(&t) != "logout+jwt" {
            return Err(bad("typ is not logout+jwt"));
        }
    }
    let alg: CoreJwsSigningAlgorithm = header
        .get("alg")
        .cloned()
        .and_then(|a| serde_json::from_value(a).ok())
        .ok_or_else(|| bad("alg missing or unknown"))?;
    if !allowed.contains(&alg) {
        return Err(bad(
            "alg not allowed (asymmetric algorithms the IdP advertises only)",
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(JsonWebKeyId::new(k.clone())),
        Some(_) => return Err(bad("kid is not a string")),
    };
    let signature = b64(s).ok_or_else(|| bad("signature is not base64url"))?;
    let candidates: Vec<_> = jwks
        .keys()
        .iter()
        .filter(|k| kid.is_none() || k.key_id() == kid.as_ref())
        .filter(|k| {
            k.key_use()
                .is_none_or(|u| *u == CoreJsonWebKeyUse::Signature)
        })
        .collect();
    if candidates.is_empty() {
        return Err(SigError::NoKey);
    }
    let input = &token.as_bytes()[..h.len() + 1 + p.len()];
    if !candidates
        .iter()
        .any(|k| k.verify_signature(&alg, input, &signature).is_ok())
    {
        return Err(bad("bad signature"));
    }
    match b64(p).and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(bad("payload is not a base64url JSON object")),
    }
}

/// The claim checks of §2.6 steps 3–5 and 7–8 on a token whose signature held. Returns the
/// token and its `jti`.
fn check_claims(
    c: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    now: u64,
) -> Result<(LogoutToken, String), String> {
    if c.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err("iss is not the provider's issuer".into());
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err("aud does not contain the client id".into());
    }
    let iat = c
        .get("iat")
        .ok_or("missing iat")?
        .as_u64()
        .ok_or("iat is not a number")?;
    if iat > now + LEEWAY_SECS {
        return Err("issued in the future".into());
    }
    if iat + MAX_LOGOUT_TOKEN_AGE + LEEWAY_SECS < now {
        return Err("issued too long ago".into());
    }
    if let Some(exp) = c.get("exp") {
        let exp = exp.as_u64().ok_or("exp is not a number")?;
        if exp + LEEWAY_SECS <= now {
            return Err("expired".into());
        }
    }
    let jti = id(c, "jti")?.ok_or("missing jti")?;
    let event = c
        .get("events")
        .and_then(Value::as_object)
        .ok_or("events is missing or not an object")?
        .get(BACKCHANNEL_EVENT)
        .ok_or("events lacks the back-channel logout member")?;
    if !event.is_object() {
        return Err("the back-channel logout event is not an object".into());
    }
    if c.contains_key("nonce") {
        return Err("nonce present (forbidden in a logout token)".into());
    }
    let sid = id(c, "sid")?;
    let sub = id(c, "sub")?;
    if sid.is_none() && sub.is_none() {
        return Err("neither sid nor sub".into());
    }
    Ok((
        LogoutToken {
            sid,
            sub,
            iat,
            jti: [0; 32],
        },
        jti,
    ))
}

/// An optional identifier claim: absent, or a non-empty string of bounded length.
fn id(c: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} is not a non-empty string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    use rsa::traits::PublicKeyParts as _;
    use serde_json::json;

    const ISS: &str = "https://idp.test";
    const NOW: u64 = 1_700_000_000;

    fn rsa_key() -> rsa::RsaPrivateKey {
        let pem = std::fs::read_to_string(format!(
            "{}/tests/fixtures/test-keys/rsa-pkcs8.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap()
    }

    fn enc(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn jwks(kid: &str) -> CoreJsonWebKeySet {
        let k = rsa_key().to_public_key();
        serde_json::from_value(json!({"keys": [{
            "kty": "RSA", "use": "sig", "kid": kid,
            "n": enc(&k.n().to_bytes_be()), "e": enc(&k.e().to_bytes_be()),
        }]}))
        .unwrap()
    }

    fn sign(header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            enc(header.to_string().as_bytes()),
            enc(claims.to_string().as_bytes())
        );
        let k = rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_key());
        let sig = k.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", enc(&sig))
    }

    fn claims() -> Value {
        json!({
            "iss": ISS, "aud": ["app", "other"], "iat": NOW, "exp": NOW + 120, "jti": "j-1",
            "sid": "s-1", "sub": "alice",
            "events": {BACKCHANNEL_EVENT: {}},
        })
    }

    fn header() -> Value {
        json!({"alg": "RS256", "typ": "logout+jwt", "kid": "k1"})
    }

    fn verify(header: &Value, claims: &Value) -> Result<LogoutToken, String> {
        let t = sign(header, claims);
        let c = verify_signature(
            &t,
            &jwks("k1"),
            &[CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        )
        .map_err(|e| format!("{e:?}"))?;
        check_claims(&c, ISS, "app", NOW).map(|(t, _)| t)
    }

    #[test]
    fn a_correct_token_names_sid_and_sub() {
        let t = verify(&header(), &claims()).unwrap();
        assert_eq!(t.sid.as_deref(), Some("s-1"));
        assert_eq!(t.sub.as_deref(), Some("alice"));
        // typ may be absent, or spelled as a full media type.
        let mut h = header();
        h.as_object_mut().unwrap().remove("typ");
        assert!(verify(&h, &claims()).is_ok());
        h["typ"] = json!("application/Logout+JWT");
        assert!(verify(&h, &claims()).is_ok());
        // sid alone, sub alone; no exp.
        for drop in ["sid", "sub", "exp"] {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(drop);
            assert!(verify(&header(), &c).is_ok(), "{drop}");
        }
    }

    #[test]
    fn every_failed_check_is_refused() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "wrong iss",
                Box::new(|c| c["iss"] = json!("https://evil.test")),
            ),
            (
                "no iss",
                Box::new(|c| drop(c.as_object_mut().unwrap().remove("iss"))),
            ),
            ("wrong aud", Box::new(|c| c["aud"] = json!("other"))),
            (
                "no iat",
                Box::new(|c| drop(c.as_object_mut().unwrap().remove("iat"))),
            ),
            ("iat string", Box::new(|c| c["iat"] = json!("1700000000"))),
            (
                "future iat",
                Box::new(|c| c["iat"] = json!(NOW + LEEWAY_SECS + 1)),
            ),
            (
                "old iat",
                Box::new(|c| c["iat"] = json!(NOW - MAX_LOGOUT_TOKEN_AGE - LEEWAY_SECS - 1)),
            ),
            ("expired", Box::new(|c| c["exp"] = json!(NOW - LEEWAY_SECS))),
            (
                "no jti",
                Box::new(|c| drop(c.as_object_mut().unwrap().remove("jti"))),
            ),
            ("empty jti", Box::new(|c| c["jti"] = json!(""))),
            (
                "no events",
                Box::new(|c| drop(c.as_object_mut().unwrap().remove("events"))),
            ),
            (
                "events array",
                Box::new(|c| c["events"] = json!([BACKCHANNEL_EVENT])),
            ),
            (
                "other event",
                Box::new(|c| c["events"] = json!({"http://example/other": {}})),
            ),
            (
                "event not object",
                Box::new(|c| c["events"] = json!({BACKCHANNEL_EVENT: "yes"})),
            ),
            ("nonce", Box::new(|c| c["nonce"] = json!("n"))),
            (
                "neither sid nor sub",
                Box::new(|c| {
                    let o = c.as_object_mut().unwrap();
                    o.remove("sid");
                    o.remove("sub");
                }),
            ),
            ("sid number", Box::new(|c| c["sid"] = json!(5))),
        ];
        for (what, edit) in edits {
            let mut c = claims();
            edit(&mut c);
            assert!(verify(&header(), &c).is_err(), "{what}");
        }
    }

    #[test]
    fn header_and_signature_are_checked() {
        for (what, h) in [
            (
                "typ JWT",
                json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
            ),
            ("typ number", json!({"alg": "RS256", "typ": 1, "kid": "k1"})),
            ("alg none", json!({"alg": "none", "kid": "k1"})),
            ("alg HS256", json!({"alg": "HS256", "kid": "k1"})),
            ("alg not advertised", json!({"alg": "RS512", "kid": "k1"})),
            ("crit", json!({"alg": "RS256", "kid": "k1", "crit": ["x"]})),
        ] {
            assert!(verify(&h, &claims()).is_err(), "{what}");
        }
        let keys = jwks("k1");
        let algs = [CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];
        // An unknown kid asks for a refetch; a known one with a bad signature does not.
        let t = sign(&json!({"alg": "RS256", "kid": "k2"}), &claims());
        assert_eq!(verify_signature(&t, &keys, &algs), Err(SigError::NoKey));
        let t = sign(&header(), &claims());
        let (input, _) = t.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", enc(&[7u8; 256]));
        assert!(matches!(
            verify_signature(&forged, &keys, &algs),
            Err(SigError::Bad(_))
        ));
        // The payload changed after signing.
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("bob");
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            enc(c.to_string().as_bytes()),
            parts[2]
        );
        assert!(matches!(
            verify_signature(&swapped, &keys, &algs),
            Err(SigError::Bad(_))
        ));
        // Without a kid, any fitting key is tried.
        let t = sign(&json!({"alg": "RS256"}), &claims());
        assert!(verify_signature(&t, &keys, &algs).is_ok());
        for junk in ["", "a.b", "a.b.c.d.e", "!!.!!.!!"] {
            assert!(verify_signature(junk, &keys, &algs).is_err(), "{junk}");
        }
        assert!(verify_signature(&"a".repeat(MAX_LOGOUT_TOKEN_LEN + 1), &keys, &algs).is_err());
    }

    #[tokio::test]
    async fn the_jti_store_refuses_replays_until_expiry_and_when_full() {
        let s = MemoryJtiStore::new(2);
        let k = |i: &str| jti_key(ISS, "app", i);
        assert!(s.first_use(k("a"), NOW + 10, NOW).await.unwrap());
        assert!(!s.first_use(k("a"), NOW + 10, NOW + 5).await.unwrap());
        // The same jti from another issuer is another token.
        assert!(
            s.first_use(jti_key("https://other", "app", "a"), NOW + 10, NOW)
                .await
                .unwrap()
        );
        // Full of live entries: refused, nothing forgotten early.
        assert!(s.first_use(k("b"), NOW + 10, NOW).await.is_err());
        assert!(!s.first_use(k("a"), NOW + 10, NOW + 9).await.unwrap());
        // Expired entries make room.
        assert!(s.first_use(k("b"), NOW + 30, NOW + 10).await.unwrap());
        s.forget(k("b")).await;
        assert!(s.first_use(k("b"), NOW + 30, NOW + 11).await.unwrap());
        assert_ne!(jti_key("ab", "c", "d"), jti_key("a", "bc", "d"));
        assert_ne!(jti_key("a", "b", "c"), jti_key("a", "c", "c"), "per client");
    }

    #[tokio::test]
    async fn one_replay_memory_per_client() {
        let m = JtiMemory::in_memory();
        let k = jti_key(ISS, "app", "a");
        let first = m.of_client("https://idp.test/", "app", NOW);
        assert!(first.first_use(k, NOW + 10, NOW).await.unwrap());
        // Asked again (another middleware, a rebuilt scope, an inline block): the same memory.
        let again = m.of_client("https://idp.test", "app", NOW);
        assert!(!again.first_use(k, NOW + 10, NOW + 1).await.unwrap());
        // Another client has its own.
        let other = m.of_client("https://idp.test", "other", NOW);
        assert!(other.first_use(k, NOW + 10, NOW).await.unwrap());
        // Full of clients: only memories without a live entry are forgotten.
        for i in 0..MAX_JTI_CLIENTS {
            m.of_client("https://idp.test", &format!("c{i}"), NOW);
        }
        let kept = m.of_client("https://idp.test", "app", NOW + 2);
        assert!(!kept.first_use(k, NOW + 10, NOW + 2).await.unwrap());
        assert!(m.clients.lock().unwrap().len() <= 3 + 1);
        // A shared store serves every client.
        let shared = JtiMemory::shared(std::sync::Arc::new(MemoryJtiStore::default()));
        let a = shared.of_client("u", "a", NOW);
        assert!(a.first_use(k, NOW + 10, NOW).await.unwrap());
        assert!(
            !shared
                .of_client("v", "b", NOW)
                .first_use(k, NOW + 10, NOW)
                .await
                .unwrap()
        );
    }
}
