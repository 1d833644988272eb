//! `POST /inline/{hash}`: who may register a block, and what registering does (content
//! addressing, the provider allow-list, validation, the scope the block joins, discovery).
//! Transport-neutral: the route hands over the peer address, the `Authorization` header and
//! the body; the answer is a [`Registered`] or a [`RegisterError`].

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Block, InlineConfig, label};
use crate::App;
use crate::auth::Middleware;
use crate::config::{BlockError, Env, Problem, parse_block};
use crate::forwarded::Cidr;
use crate::reply::{Body, Reply};

/// A successful registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// Stored now (`201`).
    Created,
    /// Already registered (`200`): the stored block is unchanged.
    Known,
}

/// Why a registration was refused. Each maps to one status (the contract with the shim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The peer is not in `trustedProxies` (403).
    UntrustedPeer,
    /// Neither `inline.allowedProviderUrls` nor `inline.registrationToken` is set (403):
    /// registration is off until the operator says which IdPs or whom to accept.
    Off,
    /// `registrationToken` is set and the request lacks it or has another (403).
    BadToken,
    /// The body is over `maxBlockBytes` (413).
    TooLarge,
    /// SHA-256 of the body is not the hash in the path, or the path is no hash (400).
    HashMismatch,
    /// The body is not a JSON object (400).
    NotAnObject(String),
    /// The block is invalid, or names a provider outside `allowedProviderUrls` (422), with
    /// every problem and its key path inside the block.
    Invalid(Vec<Problem>),
    /// The middleware could not be built (its TLS settings…) (500).
    Internal(String),
}

impl RegisterError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            RegisterError::UntrustedPeer | RegisterError::Off | RegisterError::BadToken => 403,
            RegisterError::TooLarge => 413,
            RegisterError::HashMismatch | RegisterError::NotAnObject(_) => 400,
            RegisterError::Invalid(_) => 422,
            RegisterError::Internal(_) => 500,
        }
    }

    /// A short, fixed title.
    pub fn title(&self) -> &'static str {
        match self {
            RegisterError::UntrustedPeer => "Registration from an untrusted peer",
            RegisterError::Off => "Inline registration is off",
            RegisterError::BadToken => "Registration token missing or wrong",
            RegisterError::TooLarge => "Inline block too large",
            RegisterError::HashMismatch => "Hash mismatch",
            RegisterError::NotAnObject(_) => "Not a JSON object",
            RegisterError::Invalid(_) => "Invalid inline block",
            RegisterError::Internal(_) => "Internal error",
        }
    }

    /// A description safe to send (never the token, never an expanded `${…}` value).
    pub fn detail(&self) -> String {
        match self {
            RegisterError::UntrustedPeer => {
                "Only peers in the sidecar's trustedProxies may register inline blocks.".into()
            }
            RegisterError::Off => "The sidecar accepts inline blocks only once its configuration sets inline.allowedProviderUrls (the IdPs blocks may use) or inline.registrationToken (the token the plugin sends).".into(),
            RegisterError::BadToken => {
                "The sidecar requires Authorization: Bearer <inline.registrationToken>.".into()
            }
            RegisterError::TooLarge => "The block is over inline.maxBlockBytes.".into(),
            RegisterError::HashMismatch => {
                "The path must be the lowercase hex SHA-256 of the body.".into()
            }
            RegisterError::NotAnObject(why) => format!("The body must be a JSON object: {why}."),
            RegisterError::Invalid(p) => format!("{} problem(s); see problems.", p.len()),
            RegisterError::Internal(_) => "The sidecar could not build this middleware.".into(),
        }
    }

    /// The problems of an invalid block (empty otherwise).
    pub fn problems(&self) -> &[Problem] {
        match self {
            RegisterError::Invalid(p) => p,
            _ => &[],
        }
    }
}

/// Whether `peer` may register at all: a trusted proxy, registration switched on (an
/// allow-list of IdPs or a token, [`InlineConfig::registration_open`]) and, when the sidecar
/// sets a registration token, `Authorization: Bearer <token>`. Checked before the body is read.
pub fn authorize(
    cfg: &InlineConfig,
    trusted: &[Cidr],
    peer: IpAddr,
    authorization: Option<&[u8]>,
) -> Result<(), RegisterError> {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return Err(RegisterError::UntrustedPeer);
    }
    if !cfg.registration_open() {
        return Err(RegisterError::Off);
    }
    let Some(want) = &cfg.registration_token else {
        return Ok(());
    };
    let given = authorization
        .and_then(|v| {
            let (scheme, rest) = v.split_at_checked(7)?;
            // RFC 9110 §11.1: the scheme is case-insensitive.
            scheme.eq_ignore_ascii_case(b"Bearer ").then_some(rest)
        })
        .ok_or(RegisterError::BadToken)?;
    // Both sides hashed first: the comparison takes the same time whatever the lengths.
    let a = Sha256::digest(given);
    let b = Sha256::digest(want.expose().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(RegisterError::BadToken)
    }
}

/// The answer to an inline request naming a block the sidecar does not have: the cue for the
/// shim to register it and retry once.
pub fn unknown_block(hash: &str) -> Reply {
    let mut r = Reply::new(
        404,
        Body::Problem {
            title: "Unknown inline block",
            detail: "No inline block is registered under this hash; register it with POST /inline/{hash}.".into(),
        },
    );
    if super::is_hash(hash) {
        r.header("X-Oidc-Sidecar-Unknown-Block", hash.to_string());
    }
    r.header("Cache-Control", "no-store");
    r
}

impl App {
    /// The `inline:` rules in force.
    pub fn inline_config(&self) -> InlineConfig {
        self.current().inline.clone()
    }

    /// Registers the block `body` under `hash` (after [`authorize`] and the body cap): content
    /// addressing, validation (the YAML file's parser, reading of this process only what the
    /// `inline:` rules allow), the provider allow-list, then the block joins the session scope
    /// of its key and its discovery starts. Two concurrent registrations of one block store one
    /// entry. Synchronous, and it may read an allowed file: the route runs it with
    /// `spawn_blocking`.
    pub fn register_inline(
        &self,
        hash: &str,
        body: &[u8],
        raw_label: Option<&[u8]>,
    ) -> Result<Registered, RegisterError> {
        let cfg = self.current().inline.clone();
        if body.len() > cfg.max_block_bytes {
            return Err(RegisterError::TooLarge);
        }
        let digest = hex(&Sha256::digest(body));
        if !super::is_hash(hash) || !bool::from(digest.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(RegisterError::HashMismatch);
        }
        if let Some(b) = self.blocks.get(hash) {
            // Already known: nothing to parse again (the bytes are the same).
            drop(b);
            return Ok(Registered::Known);
        }
        let name = super::member_name(hash);
        let parsed = parse_block(body, &name, &Env::process(), &cfg).map_err(|e| match e {
            BlockError::NotAnObject(why) => RegisterError::NotAnObject(why),
            BlockError::Invalid(mut p) => {
                // Every problem at once: the allow-list too, when the block names its provider
                // literally (a `${…}` value is only known once the block parses).
                if let Some(url) = literal_provider_url(body)
                    && !cfg.allows_provider(&url)
                {
                    p.push(provider_not_allowed());
                }
                RegisterError::Invalid(p)
            }
        })?;
        let label = label(raw_label);
        for w in &parsed.warnings {
            tracing::warn!(middleware = %label, block = %&hash[..12], key = %w.path, "{}", w.message);
        }
        let mw_cfg = parsed.config;
        if !cfg.allows_provider(&mw_cfg.provider.url) {
            // The URL itself is not echoed: it may come from `${…}`.
            return Err(RegisterError::Invalid(vec![provider_not_allowed()]));
        }
        if mw_cfg.session_storage == crate::session::store::SessionStorage::Redis
            && self.redis().is_none()
        {
            return Err(RegisterError::Invalid(vec![Problem {
                path: "SessionStorageType".into(),
                message: "Redis needs the sidecar's top-level redis: block".into(),
            }]));
        }
        let scope = self
            .scopes
            .join(&mw_cfg)
            .ok_or_else(|| RegisterError::Internal("no scope".into()))?;
        if self.scopes.cookie_names_clash(&mw_cfg) {
            // Told to the operator, as for two YAML middlewares (`scope_warnings`); the
            // scopes leave each other's cookies alone (`Scope::clear_present`).
            tracing::warn!(middleware = %label, block = %&hash[..12], prefix = %mw_cfg.cookie_name_prefix, "inline block uses the same cookie names as another session scope (another Secret, Provider.Url or ClientId): in one browser their sessions overwrite each other; give one of them its own CookieNamePrefix");
        }
        // Kept to leave the scope again if the middleware cannot be built: a refused block must
        // not stay counted among the scope's members (its verdicts, kept claims).
        let joined = mw_cfg.clone();
        let mw = Middleware::new(mw_cfg, scope).map_err(|e| {
            self.scopes.leave(&joined);
            tracing::warn!(middleware = %label, block = %&hash[..12], error = %e, "inline block refused");
            RegisterError::Internal(e)
        })?;
        let block = Block::new(hash.to_string(), body.to_vec(), label.clone(), Arc::new(mw));
        let inserted = self.blocks.insert(block, cfg.max_blocks);
        for gone in &inserted.evicted {
            self.scopes.leave(&gone.middleware.cfg);
            tracing::info!(middleware = %gone.label, block = %&gone.hash[..12], "inline block evicted (least recently used)");
        }
        if !inserted.new {
            return Ok(Registered::Known);
        }
        if self.discovering() {
            inserted.block.start_discovery();
        }
        tracing::info!(middleware = %label, block = %&hash[..12], provider = %inserted.block.middleware.cfg.provider.url, "inline block registered");
        Ok(Registered::Created)
    }
}

/// The allow-list's problem. The URL itself is not echoed: it may come from `${…}`.
fn provider_not_allowed() -> Problem {
    Problem {
        path: "Provider.Url".into(),
        message: "not in the sidecar's inline.allowedProviderUrls (registering a block makes the sidecar fetch discovery from its provider)".into(),
    }
}

/// `Provider.Url` of a block that did not parse, when it is a literal string (keys matched
/// case-insensitively, as the parser does); `None` for `${…}` values and odd shapes.
fn literal_provider_url(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let get = |o: &serde_json::Value, k: &str| {
        o.as_object()?
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let url = get(&get(&v, "Provider")?, "Url")?;
    let url = url.as_str()?;
    (!url.contains("${")).then(|| url.to_string())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Secret;

    #[test]
    fn only_trusted_peers_with_the_token_may_register() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let mut cfg = InlineConfig::default();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "192.0.2.1".parse().unwrap();
        // The defaults: off, whoever asks (the operator said neither which IdPs nor whom).
        assert_eq!(
            authorize(&cfg, &trusted, inside, None),
            Err(RegisterError::Off)
        );
        assert_eq!(RegisterError::Off.status(), 403);
        assert!(
            RegisterError::Off
                .detail()
                .contains("inline.allowedProviderUrls")
        );
        cfg.allowed_provider_urls = vec!["https://idp.example".into()];
        assert_eq!(authorize(&cfg, &trusted, inside, None), Ok(()));
        assert_eq!(
            authorize(&cfg, &trusted, outside, Some(b"Bearer x")),
            Err(RegisterError::UntrustedPeer)
        );
        cfg.registration_token = Some(Secret::new("a-long-registration-token"));
        for bad in [
            None,
            Some(&b"Bearer wrong"[..]),
            Some(b"Basic a-long-registration-token"),
            Some(b"Bearer a-long-registration-token "),
            Some(b"Bear"),
        ] {
            assert_eq!(
                authorize(&cfg, &trusted, inside, bad),
                Err(RegisterError::BadToken),
                "{bad:?}"
            );
        }
        assert_eq!(
            authorize(
                &cfg,
                &trusted,
                inside,
                Some(b"bearer a-long-registration-token")
            ),
            Ok(())
        );
    }

    #[test]
    fn the_unknown_block_cue_names_only_hashes() {
        let h = "0".repeat(64);
        let r = unknown_block(&h);
        assert_eq!(r.status, 404);
        assert!(
            r.headers
                .iter()
                .any(|(n, v)| n == "X-Oidc-Sidecar-Unknown-Block" && *v == h)
        );
        let r = unknown_block("not-a-hash\r\n");
        assert!(
            !r.headers
                .iter()
                .any(|(n, _)| n == "X-Oidc-Sidecar-Unknown-Block")
        );
    }
}
