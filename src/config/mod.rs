//! The configuration file: parsing, defaults, validation and redaction.
//!
//! One YAML file holds the sidecar's own keys (`listen`, `trustedProxies`…) and a map of
//! middleware blocks. A middleware block uses sevensolutions/traefik-oidc-auth's key names,
//! matched case-insensitively, so a block users already have can be pasted in unchanged.
//!
//! The file is read into a generic YAML tree and walked by hand rather than derived with serde:
//! that is what lets us match keys case-insensitively, report **every** problem at once with its
//! key path, suggest the key a typo meant, and warn (instead of failing) for traefik-oidc-auth
//! keys that a later version implements.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde_yaml_ng::Value;

// The middleware's settings belong to the auth module, the limits to the listener: the file is
// parsed into them, and they are re-exported so `config::…` paths keep working.
pub use crate::auth::{MiddlewareConfig, UnauthenticatedBehavior, UnauthorizedBehavior};
use crate::forwarded::Cidr;
pub use crate::listener::Limits;
// The provider's settings belong to the OIDC module; the file is parsed into them.
pub use crate::oidc::{ClientKey, ProviderConfig, TokenValidation};
// Session types live with the sessions; the configuration only fills them in.
pub use crate::inline::InlineConfig;
pub use crate::session::{SameSite, Secret, SessionCookieConfig};
pub use crate::telemetry::TracingConfig;
// The admin listener's settings belong to the admin module.
pub use crate::admin::AdminConfig;
pub use inline::{BlockError, ParsedBlock, parse_block, parse_value, parse_yaml_block};
pub use redis::{RedisConfig, RedisTarget, SessionStorage};
use root::parse_root;
use walk::Cx;

mod admin;
mod inline;
mod middleware;
mod provider;
mod redis;
mod root;
#[cfg(test)]
mod tests;
mod traces;
mod walk;

/// The default `CookieNamePrefix`: the same for every middleware, so one scope shares by default.
pub const DEFAULT_COOKIE_PREFIX: &str = "TraefikOidcSidecar";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The sidecar's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the forwardAuth listener.
    pub listen: SocketAddr,
    /// Address of the Prometheus listener (never the auth listener).
    pub metrics_listen: SocketAddr,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log level or `tracing` filter directive.
    pub log_level: String,
    /// Middlewares by name (may be empty: inline blocks registered by the plugin shim).
    pub middlewares: BTreeMap<String, MiddlewareConfig>,
    /// Who may register inline middleware blocks, and how many (`inline:`).
    pub inline: InlineConfig,
    /// Connection limits of both listeners (`limits:`).
    pub limits: Limits,
    /// The `redis:` block (server-side sessions), if any; see [`redis`].
    pub redis: Option<RedisConfig>,
    /// The `tracing:` block (OpenTelemetry traces), if any; off when absent.
    pub tracing: Option<TracingConfig>,
    /// The `admin:` block (the operators' revocation API), if any; off when absent.
    pub admin: Option<AdminConfig>,
}

/// A problem (or warning) found in the file, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `middlewares.default.Provider.ClientId`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A successfully parsed configuration and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Non-fatal findings (keys a later version implements…).
    pub warnings: Vec<Problem>,
}

/// Where `${VAR}` and `${file:/path}` values come from (a parameter, so tests control it).
pub struct Env<'a> {
    /// Looks up an environment variable.
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// Reads a file (the process's: [`crate::files::read_text`], capped, regular files only).
    pub file: &'a dyn Fn(&Path) -> std::io::Result<String>,
    /// Reads a file an inline block names inside the allowed directory, at most so many bytes
    /// (the process's: [`crate::files::read_within`]).
    pub within: &'a dyn Fn(&Path, &str, usize) -> Result<String, crate::files::Refused>,
}

impl Env<'static> {
    /// The process environment and the real file system.
    pub fn process() -> Self {
        Env {
            var: &|k| std::env::var(k).ok(),
            file: &|p| crate::files::read_text(p, crate::files::MAX_VALUE_FILE_BYTES),
            within: &crate::files::read_within,
        }
    }
}

/// Reads and parses the file at `path` (a regular file of at most
/// [`crate::files::MAX_CONFIG_BYTES`]; synchronous: async callers use `spawn_blocking`).
pub fn load(path: &Path) -> Result<Loaded, Vec<Problem>> {
    let text = crate::files::read_text(path, crate::files::MAX_CONFIG_BYTES).map_err(|e| {
        vec![Problem {
            path: path.display().to_string(),
            message: format!("cannot read the configuration file: {e}"),
        }]
    })?;
    parse(&text, &Env::process())
}

/// Parses configuration text. On failure returns every problem found, not just the first.
pub fn parse(text: &str, env: &Env<'_>) -> Result<Loaded, Vec<Problem>> {
    let root: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        vec![Problem {
            path: "(file)".into(),
            message: format!("not valid YAML: {e}"),
        }]
    })?;
    let mut cx = Cx::operator(env);
    let config = parse_root(&root, &mut cx);
    match config {
        Some(config) if cx.problems.is_empty() => Ok(Loaded {
            config,
            warnings: cx.warnings,
        }),
        _ => Err(cx.problems),
    }
}

/// Every key the parser reads, by section, for the documentation check (`tests/docs.rs`):
/// `(section, keys)`, where `section` is the key path of the object holding `keys`, written as
/// the configuration reference writes it (`""` for the file's top level, `"middleware"` for a
/// middleware block, whose own keys the reference writes without a prefix). Keys the parser
/// knows but ignores (traefik-oidc-auth keys implemented later) are included: they are
/// accepted, so they are documented.
pub fn reference_keys() -> Vec<(&'static str, Vec<&'static str>)> {
    use middleware as m;
    let both = |a: &[&'static str], b: &[&'static str]| a.iter().chain(b).copied().collect();
    vec![
        ("", root::ROOT_KEYS.to_vec()),
        ("limits", root::LIMITS_KEYS.to_vec()),
        ("inline", inline::INLINE_KEYS.to_vec()),
        ("redis", redis::REDIS_KEYS.to_vec()),
        ("redis.sentinel", redis::SENTINEL_KEYS.to_vec()),
        ("redis.cluster", redis::CLUSTER_KEYS.to_vec()),
        ("tracing", traces::TRACING_KEYS.to_vec()),
        ("admin", admin::ADMIN_KEYS.to_vec()),
        ("middleware", both(m::MIDDLEWARE_KEYS, m::MIDDLEWARE_LATER)),
        ("Provider", provider::PROVIDER_KEYS.to_vec()),
        ("SessionCookie", m::COOKIE_KEYS.to_vec()),
        ("Authorization", both(m::AUTHZ_KEYS, m::AUTHZ_LATER)),
        ("Authorization.AssertClaims", m::ASSERT_KEYS.to_vec()),
        ("Headers", both(m::HEADER_KEYS, m::HEADER_LATER)),
        ("AuthorizationHeader", m::NAMED_KEYS.to_vec()),
        ("AuthorizationCookie", m::NAMED_KEYS.to_vec()),
        ("ErrorPages", m::ERROR_PAGES_KEYS.to_vec()),
        ("ErrorPages.Unauthenticated", m::ERROR_PAGE_KEYS.to_vec()),
        ("ErrorPages.Unauthorized", m::ERROR_PAGE_KEYS.to_vec()),
        ("StepUp", m::STEP_UP_KEYS.to_vec()),
    ]
}
