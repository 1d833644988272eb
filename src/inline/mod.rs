//! Inline middleware blocks: traefik-oidc-auth configuration that lives in Traefik's dynamic
//! configuration (the plugin shim's own block), registered with the sidecar at runtime.
//!
//! The protocol is fixed with the Go shim (issue 12): the shim canonicalizes its block to JSON,
//! names it by the SHA-256 of those bytes, asks `/auth/inline/{hash}`, and on the
//! "unknown block" cue (`404` with `X-Oidc-Sidecar-Unknown-Block`) registers it with
//! `POST /inline/{hash}` and retries once. Rules the sidecar enforces here:
//! - **content addressing**: a block is stored under the hash of its exact bytes and only
//!   requests naming that hash use it, so whoever can reach the sidecar cannot change how
//!   another middleware's requests are judged ([`register`]);
//! - **who may register**: peers in `trustedProxies`, and, when `inline.registrationToken` is
//!   set, only with that bearer token (compared in constant time, never logged);
//! - **which IdPs**: `inline.allowedProviderUrls`, because registering a block makes the
//!   sidecar fetch discovery and keys from its `Provider.Url` (outbound requests on a
//!   registrant's behalf); with neither that list nor a registration token, registration is
//!   off ([`InlineConfig::registration_open`]);
//! - **nothing of the sidecar's own**: a block is configuration from the network, so its
//!   `${NAME}` reads only the variables `inline.allowedVariables` lists (in the keys it
//!   allows), `${file:}` never expands, and `FilePath` / `CABundleFile` read only inside
//!   `inline.allowedFileDirectory` (capped); a refusal names the key, never a value or whether
//!   a path exists (`crate::config`'s walker, `Reach::Inline`);
//! - **bounded**: a body cap and at most `inline.maxBlocks` blocks, least recently used
//!   evicted ([`registry`]); an evicted block is simply registered again on next use;
//! - **the same validation as the YAML file**: one parser ([`crate::config::parse_block`]).
//!
//! Sessions belong to the session scope, not to the block: a block joins the scope of its
//! [`crate::session::ScopeKey`] (`crate::scopes`), shared with YAML middlewares and other blocks
//! of the same key, so a sidecar restart or an edit of an unrelated key keeps users logged in.

pub mod register;
pub mod registry;

pub use register::{RegisterError, Registered, authorize, unknown_block};
pub use registry::{Block, Registry};

use std::path::PathBuf;

use crate::session::Secret;

/// The `inline:` block of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineConfig {
    /// When set, registrations must carry `Authorization: Bearer <token>`.
    pub registration_token: Option<Secret>,
    /// When non-empty, the only `Provider.Url`s an inline block may name (no trailing `/`).
    /// Empty is allowed only with a registration token (see [`InlineConfig::registration_open`]).
    pub allowed_provider_urls: Vec<String>,
    /// The environment variables a block's `${NAME}` may read (none by default), each
    /// optionally confined to some keys.
    pub allowed_variables: Vec<AllowedVariable>,
    /// The directory a block's `FilePath` and `CABundleFile` may read from (none by default).
    pub allowed_file_directory: Option<PathBuf>,
    /// The largest file a block may read from that directory.
    pub max_file_bytes: usize,
    /// The most blocks kept; the least recently used goes beyond.
    pub max_blocks: usize,
    /// The largest registration body accepted.
    pub max_block_bytes: usize,
}

/// An environment variable inline blocks may reference as `${NAME}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedVariable {
    /// The variable's name, exactly (case-sensitive, as the environment is), or
    /// `file:/absolute/path` for one file a block's `${file:…}` may read.
    pub name: String,
    /// The keys it may appear in (`Provider.ClientSecret`, `Headers.Value`…, list indices left
    /// out, case-insensitive); empty: any key.
    pub keys: Vec<String>,
}

/// Default `inline.maxBlocks`.
pub const DEFAULT_MAX_BLOCKS: usize = 256;
/// Default `inline.maxBlockBytes` (64 KiB).
pub const DEFAULT_MAX_BLOCK_BYTES: usize = 64 * 1024;
/// Default `inline.maxFileBytes` (64 KiB: a page template or a CA bundle).
pub const DEFAULT_MAX_FILE_BYTES: usize = 64 * 1024;

impl Default for InlineConfig {
    fn default() -> Self {
        InlineConfig {
            registration_token: None,
            allowed_provider_urls: Vec::new(),
            allowed_variables: Vec::new(),
            allowed_file_directory: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_blocks: DEFAULT_MAX_BLOCKS,
            max_block_bytes: DEFAULT_MAX_BLOCK_BYTES,
        }
    }
}

impl InlineConfig {
    /// Whether an inline block may name `url` as its IdP (exact, a trailing `/` aside). An
    /// empty list allows any (only reachable with a registration token: see
    /// [`InlineConfig::registration_open`]).
    pub fn allows_provider(&self, url: &str) -> bool {
        self.allowed_provider_urls.is_empty()
            || self
                .allowed_provider_urls
                .iter()
                .any(|a| a == url.trim_end_matches('/'))
    }

    /// Whether the operator has said who may register or which IdPs blocks may use. Without
    /// either, any peer in `trustedProxies` (by default every private network) could make
    /// the sidecar fetch any URL, so registration is off.
    pub fn registration_open(&self) -> bool {
        self.registration_token.is_some() || !self.allowed_provider_urls.is_empty()
    }

    /// What is permissive about these rules, for `--check-config` and the start-up log: each
    /// line names the setting and what a registrant could do with it.
    pub fn permissive(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.registration_token.is_some() && self.allowed_provider_urls.is_empty() {
            out.push("inline.allowedProviderUrls is empty: whoever holds inline.registrationToken can make the sidecar fetch any URL (discovery, keys, and the token endpoint with the block's client secret); list the IdPs blocks may use".into());
        }
        if self.registration_token.is_none() && !self.allowed_provider_urls.is_empty() {
            out.push("inline.registrationToken is not set: any peer in trustedProxies (by default every private network) can register blocks; set a token the plugin sends".into());
        }
        for v in self.allowed_variables.iter().filter(|v| v.keys.is_empty()) {
            out.push(format!(
                "inline.allowedVariables: {} may be used in any key of a block, including ones echoed to browsers or upstreams (Headers, AuthorizationParams, RedirectTo); confine it to the keys that need it ({{{}: [Provider.ClientSecret]}})",
                v.name, v.name
            ));
        }
        if let Some(d) = &self.allowed_file_directory {
            out.push(format!(
                "inline.allowedFileDirectory is {}: every block can read any file in it and have it served as an error page; keep only page templates and CA bundles there",
                d.display()
            ));
        }
        out
    }
}

/// How long a registration waits for the block's discovery before answering.
pub const REGISTER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The middleware name (session verdicts, `challenged` markers) of the block `hash`: `inline:`
/// and the first 32 hex digits (128 bits; the `:` keeps it apart from every YAML name). Short,
/// because a session cookie carries one verdict per login-time judge of its scope.
pub fn member_name(hash: &str) -> String {
    format!("inline:{}", hash.get(..32).unwrap_or(hash))
}

/// The longest label kept from `X-Oidc-Sidecar-Middleware`.
pub const MAX_LABEL: usize = 64;

/// The name log lines and metrics give an inline middleware: the Traefik middleware name the
/// shim sends in `X-Oidc-Sidecar-Middleware`, with anything outside `[A-Za-z0-9._@/-]`
/// replaced by `_` and cut at [`MAX_LABEL`] characters. It only names; it never selects a
/// block or decides anything (the hash does).
pub fn label(raw: Option<&[u8]>) -> String {
    let out: String = raw
        .unwrap_or_default()
        .iter()
        .take(MAX_LABEL)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"._@/-".contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() { "-".into() } else { out }
}

/// Whether `s` is a block name: 64 lowercase hex digits (a SHA-256).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sanitized_and_bounded() {
        assert_eq!(label(Some(b"oidc@docker")), "oidc@docker");
        assert_eq!(label(Some(b"a b\r\n\"x\"")), "a_b___x_");
        assert_eq!(label(None), "-");
        assert_eq!(label(Some("é".as_bytes())), "__");
        assert_eq!(label(Some(&[b'a'; 500])).len(), MAX_LABEL);
    }

    #[test]
    fn provider_allow_list_is_exact() {
        let mut c = InlineConfig::default();
        assert!(c.allows_provider("https://anything"));
        c.allowed_provider_urls = vec!["https://sso.example/realms/main".into()];
        assert!(c.allows_provider("https://sso.example/realms/main/"));
        assert!(!c.allows_provider("https://sso.example/realms/main2"));
        assert!(!c.allows_provider("https://sso.example/realms"));
    }

    #[test]
    fn hashes_are_lowercase_sha256_hex() {
        assert!(is_hash(&"a".repeat(64)));
        assert!(!is_hash(&"A".repeat(64)));
        assert!(!is_hash(&"a".repeat(63)));
    }
}
