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
use std::path::{Path, PathBuf};

use openidconnect::ClientSecret;
use openidconnect::url::Url;
use serde_yaml_ng::Value;

use crate::authz::ClaimAssertion;
use crate::forwarded::Cidr;
use crate::oidc;
// The provider's settings belong to the OIDC module; the file is parsed into them.
pub use crate::oidc::{ClientKey, ProviderConfig, TokenValidation};
use crate::pages::{ErrorPage, PageTemplate};
use crate::rules::Rule;
// Session types live with the sessions; the configuration only fills them in.
pub use crate::session::{SameSite, Secret, SessionCookieConfig};
use crate::template::{HeaderRule, IncludeWhen, Template};

mod redis;
pub use redis::{RedisConfig, RedisTarget, SessionStorage};

/// The default `CookieNamePrefix`: the same for every middleware, so one scope shares by default.
pub const DEFAULT_COOKIE_PREFIX: &str = "TraefikOidcSidecar";

/// traefik-oidc-auth's published default `Secret`. Anyone can read it, so it protects nothing.
const TOA_DEFAULT_SECRET: &str = "MLFs4TT99kOOq8h3UAVRtYoCTDYXiRcZ";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What to do when a request has no valid session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthenticatedBehavior {
    /// Redirect browser navigations to the IdP; answer everything else 401.
    Auto,
    /// Always redirect to the IdP.
    Challenge,
    /// Always answer 401.
    Unauthorized,
    /// Let the request through without identity.
    Forward,
}

/// What to do when a session exists but the claim assertions fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthorizedBehavior {
    /// Answer 403.
    Unauthorized,
    /// Redirect navigations to the IdP once per session with `prompt=login`, then 403.
    Challenge,
    /// Let the request through; only headers with `IncludeWhen: Forward` or `Always` are sent.
    Forward,
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
    /// Middlewares by name.
    pub middlewares: BTreeMap<String, MiddlewareConfig>,
    /// The `redis:` block (server-side sessions), if any; see [`redis`].
    pub redis: Option<RedisConfig>,
    /// Connection limits of both listeners (`limits:`).
    pub limits: Limits,
}

/// Connection limits of both listeners (the `limits:` block). The defaults need no tuning; the
/// reasoning behind each number is in SECURITY.md and `listener.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's head, from its first byte (or from the
    /// accept, on a new connection) to its last.
    pub header_timeout: std::time::Duration,
    /// How long a kept-alive connection may sit between requests. Longer than the 90 s after
    /// which Traefik's forwardAuth client and the shim close their idle connections, so the
    /// client closes first and never sends a request into a connection the sidecar is closing.
    pub idle_timeout: std::time::Duration,
    /// Open connections on the auth listener; `None` derives it from the open-file limit.
    pub max_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(120),
            max_connections: None,
        }
    }
}

/// One middleware block.
#[derive(Debug, Clone)]
pub struct MiddlewareConfig {
    /// The map key naming this middleware.
    pub name: String,
    /// The `Provider` block.
    pub provider: ProviderConfig,
    /// Key material for the cookies.
    pub secret: Secret,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Callback path (or absolute URL).
    pub callback_uri: String,
    /// Logout path.
    pub logout_uri: String,
    /// `BackchannelLogoutUri`: where the IdP POSTs logout tokens (OpenID Connect Back-Channel
    /// Logout 1.0), a path or an absolute URL matched like `CallbackUri`. forwardAuth carries no
    /// body, so this path is routed to the sidecar's `/backchannel-logout/{middleware}` (or the
    /// plugin shim forwards it there).
    pub backchannel_logout_uri: String,
    /// Default target after logout.
    pub post_logout_redirect_uri: String,
    /// Absolute targets allowed as logout `redirect_uri`.
    pub valid_post_logout_redirect_uris: Vec<String>,
    /// Prefix of every cookie this middleware's session scope sets (default
    /// `TraefikOidcSidecar`: middlewares of one scope share their cookies).
    pub cookie_name_prefix: String,
    /// Session cookie attributes.
    pub session_cookie: SessionCookieConfig,
    /// No-session behaviour.
    pub unauthenticated_behavior: UnauthenticatedBehavior,
    /// Failed-assertion behaviour.
    pub unauthorized_behavior: UnauthorizedBehavior,
    /// `Authorization.AssertClaims`.
    pub assert_claims: Vec<ClaimAssertion>,
    /// `Headers`; empty means the default identity headers.
    pub headers: Vec<HeaderRule>,
    /// `BypassAuthenticationRule`: requests it matches need no session.
    pub bypass: Option<Rule>,
    /// Path that starts a login explicitly.
    pub login_uri: Option<String>,
    /// Fixed target after every login (default: the URL that triggered it).
    pub post_login_redirect_uri: Option<String>,
    /// Absolute targets allowed as `LoginUri?redirect_uri=` (exact match).
    pub valid_post_login_redirect_uris: Vec<String>,
    /// Extra authorization request parameters (`acr_values`, `login_hint`…).
    pub authorization_params: Vec<(String, String)>,
    /// RFC 8707 `resource` values for the authorization and token requests.
    pub requested_resources: Vec<String>,
    /// Evaluate `AssertClaims` on every request instead of once at login.
    pub check_on_every_request: bool,
    /// `AuthorizationHeader.Name`: a header carrying a bearer token.
    pub bearer_header: Option<String>,
    /// `AuthorizationCookie.Name`: a cookie carrying a bearer token.
    pub bearer_cookie: Option<String>,
    /// `ErrorPages.Unauthenticated`: the 401 page for browsers.
    pub page_unauthenticated: Option<ErrorPage>,
    /// `ErrorPages.Unauthorized`: the 403 page for browsers.
    pub page_unauthorized: Option<ErrorPage>,
    /// `LogLevel`: this middleware's own verbosity for its decision lines (see
    /// [`crate::logging`]); `None` follows the global `logLevel`.
    pub log_level: Option<tracing::Level>,
    /// `SessionStorageType`: sealed cookies or Redis (see [`redis`]).
    pub session_storage: SessionStorage,
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
    /// Reads a file.
    pub file: &'a dyn Fn(&Path) -> std::io::Result<String>,
}

impl Env<'static> {
    /// The process environment and the real file system.
    pub fn process() -> Self {
        Env {
            var: &|k| std::env::var(k).ok(),
            file: &|p| std::fs::read_to_string(p),
        }
    }
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
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
    let mut cx = Cx {
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let config = parse_root(&root, &mut cx);
    match config {
        Some(config) if cx.problems.is_empty() => Ok(Loaded {
            config,
            warnings: cx.warnings,
        }),
        _ => Err(cx.problems),
    }
}

// ---------------------------------------------------------------------------------------------
// Key sets.

const ROOT_KEYS: &[&str] = &[
    "listen",
    "metricsListen",
    "trustedProxies",
    "logFormat",
    "logLevel",
    "limits",
    "middlewares",
    "redis",
];

const LIMITS_KEYS: &[&str] = &["headerTimeout", "idleTimeout", "maxConnections"];

const MIDDLEWARE_KEYS: &[&str] = &[
    "Provider",
    "Secret",
    "Scopes",
    "CallbackUri",
    "LogoutUri",
    "BackchannelLogoutUri",
    "PostLogoutRedirectUri",
    "ValidPostLogoutRedirectUris",
    "CookieNamePrefix",
    "SessionCookie",
    "UnauthenticatedBehavior",
    "UnauthorizedBehavior",
    "Authorization",
    "Headers",
    "LogLevel",
    "BypassAuthenticationRule",
    "LoginUri",
    "PostLoginRedirectUri",
    "ValidPostLoginRedirectUris",
    "AuthorizationParams",
    "RequestedResources",
    "AuthorizationHeader",
    "AuthorizationCookie",
    "ErrorPages",
    "SessionStorageType",
];

/// traefik-oidc-auth keys that a later version of the sidecar implements: they warn, not fail.
/// Ignoring any of them only makes the middleware stricter (no bypass, no bearer tokens…).
const MIDDLEWARE_LATER: &[&str] = &["ErrorPages"];

const PROVIDER_KEYS: &[&str] = &[
    "Url",
    "ClientId",
    "ClientSecret",
    "UsePkce",
    "ValidateIssuer",
    "ValidIssuer",
    "ValidateAudience",
    "ValidAudience",
    "InsecureSkipVerify",
    "CABundleFile",
    "TokenRenewalThreshold",
    "CABundle",
    "TokenValidation",
    "UseClaimsFromUserInfo",
    "ClientJwtPrivateKey",
    "ClientJwtPrivateKeyId",
];

const COOKIE_KEYS: &[&str] = &["Path", "Domain", "Secure", "HttpOnly", "SameSite", "MaxAge"];
const AUTHZ_KEYS: &[&str] = &["AssertClaims", "CheckOnEveryRequest"];
const AUTHZ_LATER: &[&str] = &[];
const ASSERT_KEYS: &[&str] = &["Name", "AnyOf", "AllOf"];
const HEADER_KEYS: &[&str] = &["Name", "Value", "Values", "IncludeWhen"];
const HEADER_LATER: &[&str] = &[];

// ---------------------------------------------------------------------------------------------
// The walker.

struct Cx<'e> {
    env: &'e Env<'e>,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Cx<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Expands a whole-value `${VAR}` or `${file:/path}`; anything else is literal.
    fn expand(&mut self, raw: &str, path: &str) -> Option<String> {
        let Some(inner) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
            return Some(raw.to_string());
        };
        if let Some(file) = inner.strip_prefix("file:") {
            match (self.env.file)(Path::new(file)) {
                Ok(s) => Some(s.trim().to_string()),
                Err(e) => {
                    self.problem(path, format!("cannot read ${{file:{file}}}: {e}"));
                    None
                }
            }
        } else {
            match (self.env.var)(inner) {
                Some(v) => Some(v),
                None => {
                    // Failing here beats silently using the literal "${VAR}" as a secret.
                    self.problem(path, format!("environment variable {inner} is not set"));
                    None
                }
            }
        }
    }

    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v {
            Value::String(s) => self.expand(s, path),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => None,
            _ => {
                self.problem(path, "expected a string");
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value, path: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => {
                let s = self.expand(s, path)?;
                match s.to_ascii_lowercase().as_str() {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => {
                        self.problem(path, format!("expected true or false, got {s:?}"));
                        None
                    }
                }
            }
            Value::Null => None,
            _ => {
                self.problem(path, "expected true or false");
                None
            }
        }
    }

    fn integer(&mut self, v: &Value, path: &str) -> Option<i64> {
        let parsed = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => self.expand(s, path)?.trim().parse().ok(),
            Value::Null => return None,
            _ => None,
        };
        if parsed.is_none() {
            self.problem(path, "expected an integer");
        }
        parsed
    }

    fn string_list(&mut self, v: &Value, path: &str) -> Option<Vec<String>> {
        match v {
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    match item {
                        Value::Mapping(_) | Value::Sequence(_) | Value::Null => {
                            self.problem(&p, "expected a string");
                        }
                        _ => out.extend(self.string(item, &p)),
                    }
                }
                Some(out)
            }
            Value::Null => None,
            _ => {
                self.problem(path, "expected a list of strings");
                None
            }
        }
    }

    fn one_of<T: Copy>(&mut self, v: &Value, path: &str, options: &[(&str, T)]) -> Option<T> {
        let s = self.string(v, path)?;
        let found = options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&s))
            .map(|(_, t)| *t);
        if found.is_none() {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            self.problem(path, format!("{s:?} is not one of: {}", names.join(", ")));
        }
        found
    }
}

/// A YAML mapping read with case-insensitive keys; remembers which keys were used so the rest
/// can be reported as unknown.
struct Obj<'v> {
    path: String,
    entries: Vec<(String, &'v Value)>,
    used: Vec<bool>,
}

impl<'v> Obj<'v> {
    fn new(v: &'v Value, path: &str, cx: &mut Cx<'_>) -> Option<Obj<'v>> {
        let Value::Mapping(m) = v else {
            cx.problem(path, "expected a mapping of keys to values");
            return None;
        };
        let mut entries: Vec<(String, &'v Value)> = Vec::with_capacity(m.len());
        for (k, val) in m {
            let key = match k {
                Value::String(s) => s.clone(),
                _ => {
                    cx.problem(path, "keys must be strings");
                    continue;
                }
            };
            if entries.iter().any(|(e, _)| e.eq_ignore_ascii_case(&key)) {
                cx.problem(&join(path, &key), "given twice (keys are case-insensitive)");
                continue;
            }
            entries.push((key, val));
        }
        let used = vec![false; entries.len()];
        Some(Obj {
            path: path.to_string(),
            entries,
            used,
        })
    }

    /// The value under `key` (case-insensitive) and its path.
    fn get(&mut self, key: &str) -> Option<(String, &'v Value)> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(key))?;
        if let Some(u) = self.used.get_mut(i) {
            *u = true;
        }
        let (k, v) = self.entries.get(i)?;
        Some((join(&self.path, k), *v))
    }

    /// Reports the keys nobody asked for.
    fn finish(self, known: &[&str], later: &[&str], cx: &mut Cx<'_>) {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let path = join(&self.path, key);
            if later.iter().any(|l| l.eq_ignore_ascii_case(key)) {
                cx.warn(
                    &path,
                    "traefik-oidc-auth key not implemented by this version of the sidecar; ignored",
                );
            } else {
                let mut msg = "unknown key".to_string();
                if let Some(s) = did_you_mean(key, known.iter().chain(later)) {
                    msg.push_str(&format!("; did you mean {s}?"));
                }
                cx.problem(&path, msg);
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The known key closest to `key`, when it is close enough to be a typo.
fn did_you_mean<'a>(key: &str, known: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    known
        .map(|k| (levenshtein(&key, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Sections.

fn parse_root(root: &Value, cx: &mut Cx<'_>) -> Option<Config> {
    let mut obj = Obj::new(root, "", cx)?;
    let listen = addr(&mut obj, "listen", "0.0.0.0:4181", cx);
    let metrics_listen = addr(&mut obj, "metricsListen", "127.0.0.1:9464", cx);
    if let (Some(a), Some(b)) = (listen, metrics_listen)
        && a == b
    {
        // The metrics must never be reachable through the auth listener.
        cx.problem("metricsListen", "must differ from listen");
    }
    let trusted_proxies = match obj.get("trustedProxies") {
        Some((p, v)) => {
            let list = cx.string_list(v, &p).unwrap_or_default();
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                match Cidr::parse(s) {
                    Ok(c) => out.push(c),
                    Err(e) => cx.problem(&format!("{p}[{i}]"), e),
                }
            }
            out
        }
        None => Cidr::default_trusted(),
    };
    let log_format = match obj.get("logFormat") {
        Some((p, v)) => cx.one_of(
            v,
            &p,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        ),
        None => Some(LogFormat::Text),
    };
    let log_level = match obj.get("logLevel") {
        Some((p, v)) => {
            let s = cx.string(v, &p).unwrap_or_default().to_ascii_lowercase();
            if !["trace", "debug", "info", "warn", "error"].contains(&s.as_str()) {
                cx.problem(&p, "expected one of trace, debug, info, warn, error");
            }
            s
        }
        None => "info".to_string(),
    };
    let limits = match obj.get("limits") {
        Some((p, v)) => parse_limits(v, &p, cx),
        None => Limits::default(),
    };
    let mut middlewares = BTreeMap::new();
    match obj.get("middlewares") {
        Some((p, v)) => {
            if let Some(mut mws) = Obj::new(v, &p, cx) {
                let names: Vec<String> = mws.entries.iter().map(|(k, _)| k.clone()).collect();
                for name in names {
                    let Some((mp, mv)) = mws.get(&name) else {
                        continue;
                    };
                    if !valid_name(&name) {
                        cx.problem(
                            &mp,
                            "middleware names use letters, digits, '-' and '_' (at most 64)",
                        );
                        continue;
                    }
                    if let Some(m) = parse_middleware(&name, mv, &mp, cx) {
                        middlewares.insert(name, m);
                    }
                }
                if mws.entries.is_empty() {
                    cx.problem(&p, "at least one middleware is required");
                }
            }
        }
        None => cx.problem("middlewares", "required: at least one middleware block"),
    }
    let redis = match obj.get("redis") {
        Some((p, v)) => redis::parse_redis(v, &p, cx),
        None => None,
    };
    let redis_given = obj
        .entries
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("redis"));
    for m in middlewares.values() {
        if m.session_storage == SessionStorage::Redis && !redis_given {
            cx.problem(
                &format!("middlewares.{}.SessionStorageType", m.name),
                "Redis needs the top-level redis: block",
            );
        }
    }
    obj.finish(ROOT_KEYS, &[], cx);
    Some(Config {
        listen: listen?,
        metrics_listen: metrics_listen?,
        trusted_proxies,
        log_format: log_format?,
        log_level,
        middlewares,
        redis,
        limits,
    })
}

fn parse_limits(v: &Value, path: &str, cx: &mut Cx<'_>) -> Limits {
    let mut limits = Limits::default();
    let Some(mut obj) = Obj::new(v, path, cx) else {
        return limits;
    };
    let second = std::time::Duration::from_secs(1);
    let hour = std::time::Duration::from_secs(3600);
    let ms = std::time::Duration::from_millis;
    if let Some((p, v)) = obj.get("headerTimeout") {
        limits.header_timeout =
            duration_in(v, &p, ms(100), 5 * 60 * second, cx).unwrap_or(limits.header_timeout);
    }
    if let Some((p, v)) = obj.get("idleTimeout")
        // As short as 10 ms only so tests can race the shim against it in seconds.
        && let Some(d) = duration_in(v, &p, ms(10), hour, cx)
    {
        if d <= 90 * second {
            cx.warn(
                &p,
                "at or below 90 s, the sidecar may close an idle connection just as Traefik \
                 or the shim (both keep idle connections 90 s) sends a request on it",
            );
        }
        limits.idle_timeout = d;
    }
    if let Some((p, v)) = obj.get("maxConnections") {
        match cx.integer(v, &p).map(usize::try_from) {
            Some(Ok(n)) if n >= 16 => limits.max_connections = Some(n),
            Some(_) => cx.problem(&p, "must be at least 16"),
            None => {}
        }
    }
    obj.finish(LIMITS_KEYS, &[], cx);
    limits
}

/// A duration such as `10s`, `1500ms`, `2m` or a bare number of seconds, within `[min, max]`.
fn duration_in(
    v: &Value,
    path: &str,
    min: std::time::Duration,
    max: std::time::Duration,
    cx: &mut Cx<'_>,
) -> Option<std::time::Duration> {
    let raw = cx.string(v, path)?;
    let d = parse_duration(raw.trim());
    match d {
        Some(d) if d >= min && d <= max => Some(d),
        Some(_) => {
            cx.problem(path, format!("must be between {min:?} and {max:?}"));
            None
        }
        None => {
            cx.problem(
                path,
                format!("{raw:?} is not a duration such as \"10s\", \"1500ms\" or \"2m\""),
            );
            None
        }
    }
}

/// `10s`, `1500ms`, `2m`, `1h`, or a bare whole number of seconds.
fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let millis = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }?;
    Some(std::time::Duration::from_millis(millis))
}

fn addr(obj: &mut Obj<'_>, key: &str, default: &str, cx: &mut Cx<'_>) -> Option<SocketAddr> {
    let (p, raw) = match obj.get(key) {
        Some((p, v)) => {
            let s = cx.string(v, &p)?;
            (p, s)
        }
        None => (key.to_string(), default.to_string()),
    };
    match raw.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.problem(&p, format!("{raw:?} is not an IP:port address"));
            None
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Cookie names are RFC 6265 tokens; we allow a safe subset.
fn valid_cookie_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn parse_middleware(
    name: &str,
    v: &Value,
    path: &str,
    cx: &mut Cx<'_>,
) -> Option<MiddlewareConfig> {
    let before = cx.problems.len();
    let mut obj = Obj::new(v, path, cx)?;

    let provider = match obj.get("Provider") {
        Some((p, v)) => parse_provider(v, &p, cx),
        None => {
            cx.problem(&join(path, "Provider"), "required");
            None
        }
    };

    let secret = match obj.get("Secret") {
        Some((p, v)) => {
            let s = cx.string(v, &p);
            match s {
                Some(s) if s == TOA_DEFAULT_SECRET => {
                    cx.problem(
                        &p,
                        "is traefik-oidc-auth's published default; generate your own (openssl rand -base64 48)",
                    );
                    None
                }
                Some(s) if s.len() < 32 => {
                    cx.problem(&p, format!("must be at least 32 bytes (has {})", s.len()));
                    None
                }
                Some(s) => Some(Secret::new(s)),
                None => {
                    cx.problem(&p, "required");
                    None
                }
            }
        }
        None => {
            cx.problem(&join(path, "Secret"), "required (at least 32 bytes)");
            None
        }
    };

    let scopes = match obj.get("Scopes") {
        Some((p, v)) => {
            let s = cx.string_list(v, &p).unwrap_or_default();
            if !s.iter().any(|x| x == "openid") {
                cx.problem(&p, "must include openid");
            }
            if let Some(bad) = s.iter().find(|x| x.is_empty() || x.contains(' ')) {
                cx.problem(&p, format!("scope {bad:?} is empty or contains a space"));
            }
            s
        }
        None => vec!["openid".into(), "profile".into(), "email".into()],
    };

    let callback_uri =
        opt_string(&mut obj, "CallbackUri", cx).unwrap_or_else(|| "/oidc/callback".into());
    check_path_or_url(&callback_uri, &join(path, "CallbackUri"), true, cx);
    let logout_uri = opt_string(&mut obj, "LogoutUri", cx).unwrap_or_else(|| "/logout".into());
    check_path_or_url(&logout_uri, &join(path, "LogoutUri"), false, cx);
    let backchannel_logout_uri = opt_string(&mut obj, "BackchannelLogoutUri", cx)
        .unwrap_or_else(|| "/backchannel-logout".into());
    check_path_or_url(
        &backchannel_logout_uri,
        &join(path, "BackchannelLogoutUri"),
        true,
        cx,
    );
    let post_logout_redirect_uri =
        opt_string(&mut obj, "PostLogoutRedirectUri", cx).unwrap_or_else(|| "/".into());
    check_path_or_url(
        &post_logout_redirect_uri,
        &join(path, "PostLogoutRedirectUri"),
        true,
        cx,
    );
    let valid_post_logout_redirect_uris = url_list(&mut obj, "ValidPostLogoutRedirectUris", cx);

    // One default for every middleware: middlewares with the same Secret, provider and client
    // share their session without configuration (the key binds the rest, see session::scope).
    let cookie_name_prefix = opt_string(&mut obj, "CookieNamePrefix", cx)
        .unwrap_or_else(|| DEFAULT_COOKIE_PREFIX.into());
    if !valid_cookie_prefix(&cookie_name_prefix) {
        cx.problem(
            &join(path, "CookieNamePrefix"),
            "use letters, digits, '-', '_' and '.' only",
        );
    }

    let session_cookie = match obj.get("SessionCookie") {
        Some((p, v)) => parse_cookie(v, &p, cx),
        None => Some(default_cookie()),
    };

    let unauthenticated_behavior = match obj.get("UnauthenticatedBehavior") {
        Some((p, v)) => cx.one_of(
            v,
            &p,
            &[
                ("Auto", UnauthenticatedBehavior::Auto),
                ("Challenge", UnauthenticatedBehavior::Challenge),
                ("Unauthorized", UnauthenticatedBehavior::Unauthorized),
                ("Forward", UnauthenticatedBehavior::Forward),
            ],
        ),
        None => Some(UnauthenticatedBehavior::Auto),
    };
    let unauthorized_behavior = match obj.get("UnauthorizedBehavior") {
        Some((p, v)) => cx.one_of(
            v,
            &p,
            &[
                ("Unauthorized", UnauthorizedBehavior::Unauthorized),
                ("Challenge", UnauthorizedBehavior::Challenge),
                ("Forward", UnauthorizedBehavior::Forward),
            ],
        ),
        None => Some(UnauthorizedBehavior::Unauthorized),
    };

    let (assert_claims, check_on_every_request) = match obj.get("Authorization") {
        Some((p, v)) => parse_authorization(v, &p, cx),
        None => (Vec::new(), false),
    };
    let login_uri = opt_string(&mut obj, "LoginUri", cx).filter(|s| !s.is_empty());
    if let Some(l) = &login_uri {
        check_path_or_url(l, &join(path, "LoginUri"), false, cx);
    }
    let post_login_redirect_uri =
        opt_string(&mut obj, "PostLoginRedirectUri", cx).filter(|s| !s.is_empty());
    if let Some(u) = &post_login_redirect_uri {
        check_path_or_url(u, &join(path, "PostLoginRedirectUri"), true, cx);
    }
    let valid_post_login_redirect_uris = url_list(&mut obj, "ValidPostLoginRedirectUris", cx);
    let (page_unauthenticated, page_unauthorized) = match obj.get("ErrorPages") {
        Some((p, v)) => parse_error_pages(v, &p, cx),
        None => (None, None),
    };
    let mut named = |key: &str, cx: &mut Cx<'_>| -> Option<String> {
        let (p, v) = obj.get(key)?;
        let mut o = Obj::new(v, &p, cx)?;
        let name = opt_string(&mut o, "Name", cx).filter(|n| !n.is_empty());
        o.finish(&["Name"], &[], cx);
        if let Some(n) = &name
            && !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            cx.problem(&join(&p, "Name"), "expected a header or cookie name");
        }
        name
    };
    let bearer_header = named("AuthorizationHeader", cx);
    let bearer_cookie = named("AuthorizationCookie", cx);
    let authorization_params = match obj.get("AuthorizationParams") {
        Some((p, v)) => parse_authorization_params(v, &p, cx),
        None => Vec::new(),
    };
    let requested_resources = match obj.get("RequestedResources") {
        Some((p, v)) => {
            let list = cx.string_list(v, &p).unwrap_or_default();
            for (i, u) in list.iter().enumerate() {
                // RFC 8707 §2: an absolute URI without a fragment.
                if Url::parse(u).map_or(true, |x| x.fragment().is_some()) {
                    cx.problem(
                        &format!("{p}[{i}]"),
                        "expected an absolute URI without a fragment",
                    );
                }
            }
            list
        }
        None => Vec::new(),
    };
    let headers = match obj.get("Headers") {
        Some((p, v)) => parse_headers(v, &p, cx),
        None => Vec::new(),
    };
    let bypass = match opt_string(&mut obj, "BypassAuthenticationRule", cx) {
        Some(r) if !r.trim().is_empty() => match Rule::parse(&r) {
            Ok(rule) => Some(rule),
            Err(e) => {
                cx.problem(
                    &join(path, "BypassAuthenticationRule"),
                    format!("rule does not parse: {e}"),
                );
                None
            }
        },
        _ => None,
    };
    let log_level = match obj.get("LogLevel") {
        // traefik-oidc-auth's values, case-insensitive.
        Some((p, v)) => cx.one_of(
            v,
            &p,
            &[
                ("DEBUG", tracing::Level::DEBUG),
                ("INFO", tracing::Level::INFO),
                ("WARN", tracing::Level::WARN),
                ("ERROR", tracing::Level::ERROR),
            ],
        ),
        None => None,
    };
    let session_storage = redis::parse_storage(&mut obj, cx);
    obj.finish(MIDDLEWARE_KEYS, MIDDLEWARE_LATER, cx);

    if cx.problems.len() != before {
        return None;
    }
    Some(MiddlewareConfig {
        name: name.to_string(),
        provider: provider?,
        secret: secret?,
        scopes,
        callback_uri,
        logout_uri,
        backchannel_logout_uri,
        post_logout_redirect_uri,
        valid_post_logout_redirect_uris,
        cookie_name_prefix,
        session_cookie: session_cookie?,
        unauthenticated_behavior: unauthenticated_behavior?,
        unauthorized_behavior: unauthorized_behavior?,
        assert_claims,
        headers,
        bypass,
        login_uri,
        post_login_redirect_uri,
        valid_post_login_redirect_uris,
        authorization_params,
        requested_resources,
        check_on_every_request,
        bearer_header,
        bearer_cookie,
        page_unauthenticated,
        page_unauthorized,
        log_level,
        session_storage,
    })
}

fn parse_error_pages(
    v: &Value,
    path: &str,
    cx: &mut Cx<'_>,
) -> (Option<ErrorPage>, Option<ErrorPage>) {
    let Some(mut obj) = Obj::new(v, path, cx) else {
        return (None, None);
    };
    let mut one = |key: &str, cx: &mut Cx<'_>| -> Option<ErrorPage> {
        let (p, v) = obj.get(key)?;
        let mut o = Obj::new(v, &p, cx)?;
        let file = opt_string(&mut o, "FilePath", cx).filter(|s| !s.is_empty());
        let redirect = opt_string(&mut o, "RedirectTo", cx).filter(|s| !s.is_empty());
        o.finish(&["FilePath", "RedirectTo"], &[], cx);
        match (file, redirect) {
            (Some(_), Some(_)) => {
                cx.problem(&p, "give FilePath or RedirectTo, not both");
                None
            }
            (Some(f), None) => match (cx.env.file)(Path::new(&f)) {
                Ok(html) => match PageTemplate::parse(&html) {
                    Ok(t) => Some(ErrorPage::Html(t)),
                    Err(e) => {
                        cx.problem(&join(&p, "FilePath"), format!("{f}: {e}"));
                        None
                    }
                },
                Err(e) => {
                    cx.problem(&join(&p, "FilePath"), format!("cannot read {f}: {e}"));
                    None
                }
            },
            (None, Some(r)) => {
                check_path_or_url(&r, &join(&p, "RedirectTo"), true, cx);
                Some(ErrorPage::RedirectTo(r))
            }
            (None, None) => None,
        }
    };
    let a = one("Unauthenticated", cx);
    let b = one("Unauthorized", cx);
    obj.finish(&["Unauthenticated", "Unauthorized"], &[], cx);
    (a, b)
}

/// Parameters the sidecar sets itself; overriding them would break the flow or its security.
const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "nonce",
    "scope",
    "resource",
    "code_challenge",
    "code_challenge_method",
];

fn parse_authorization_params(v: &Value, path: &str, cx: &mut Cx<'_>) -> Vec<(String, String)> {
    let Value::Mapping(m) = v else {
        if !matches!(v, Value::Null) {
            cx.problem(path, "expected a mapping of parameter names to values");
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, val) in m {
        let Value::String(k) = k else {
            cx.problem(path, "parameter names must be strings");
            continue;
        };
        let p = join(path, k);
        if RESERVED_PARAMS.iter().any(|r| r.eq_ignore_ascii_case(k)) {
            cx.warn(&p, "set by the sidecar itself; ignored");
            continue;
        }
        if let Some(s) = cx.string(val, &p) {
            out.push((k.clone(), s));
        }
    }
    out
}

/// A list of redirect targets: each a path or an absolute http(s) URL.
fn url_list(obj: &mut Obj<'_>, key: &str, cx: &mut Cx<'_>) -> Vec<String> {
    let Some((p, v)) = obj.get(key) else {
        return Vec::new();
    };
    let list = cx.string_list(v, &p).unwrap_or_default();
    for (i, u) in list.iter().enumerate() {
        check_path_or_url(u, &format!("{p}[{i}]"), true, cx);
    }
    list
}

fn opt_string(obj: &mut Obj<'_>, key: &str, cx: &mut Cx<'_>) -> Option<String> {
    let (p, v) = obj.get(key)?;
    cx.string(v, &p)
}

/// A same-host path (`/x`) or, when `allow_absolute`, an absolute http(s) URL.
fn check_path_or_url(s: &str, path: &str, allow_absolute: bool, cx: &mut Cx<'_>) {
    if s.starts_with('/') && !s.starts_with("//") && !s.contains('\\') {
        return;
    }
    if allow_absolute {
        if let Ok(u) = Url::parse(s)
            && matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
        {
            return;
        }
        cx.problem(
            path,
            "expected a path starting with / or an absolute http(s) URL",
        );
    } else {
        cx.problem(path, "expected a path starting with /");
    }
}

fn parse_provider(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<ProviderConfig> {
    let mut obj = Obj::new(v, path, cx)?;
    let url = match opt_string(&mut obj, "Url", cx) {
        Some(u) => {
            // traefik-oidc-auth prepends https:// to a bare host; keep pasted blocks working.
            let u = if u.contains("://") {
                u
            } else {
                format!("https://{u}")
            };
            match Url::parse(&u) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Some(u),
                _ => {
                    cx.problem(&join(path, "Url"), "expected the issuer's http(s) URL");
                    None
                }
            }
        }
        None => {
            cx.problem(&join(path, "Url"), "required (the issuer URL)");
            None
        }
    };
    let client_id = opt_string(&mut obj, "ClientId", cx);
    if client_id.as_deref().is_none_or(str::is_empty) {
        cx.problem(&join(path, "ClientId"), "required");
    }
    let client_secret = opt_string(&mut obj, "ClientSecret", cx)
        .filter(|s| !s.is_empty())
        .map(ClientSecret::new);
    let client_key = parse_client_key(&mut obj, path, client_secret.is_some(), cx);
    let mut flag = |obj: &mut Obj<'_>, key: &str, default: bool| match obj.get(key) {
        Some((p, v)) => cx.boolean(v, &p).unwrap_or(default),
        None => default,
    };
    let use_pkce = flag(&mut obj, "UsePkce", false);
    let validate_issuer = flag(&mut obj, "ValidateIssuer", true);
    let validate_audience = flag(&mut obj, "ValidateAudience", true);
    let insecure_skip_verify = flag(&mut obj, "InsecureSkipVerify", false);
    let use_claims_from_userinfo = flag(&mut obj, "UseClaimsFromUserInfo", false);
    let valid_issuer = opt_string(&mut obj, "ValidIssuer", cx).filter(|s| !s.is_empty());
    let valid_audience = opt_string(&mut obj, "ValidAudience", cx).filter(|s| !s.is_empty());
    let ca_bundle_file = opt_string(&mut obj, "CABundleFile", cx)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    if let Some(f) = &ca_bundle_file
        && let Err(e) = (cx.env.file)(f)
    {
        cx.problem(
            &join(path, "CABundleFile"),
            format!("cannot read {}: {e}", f.display()),
        );
    }
    let token_validation = match obj.get("TokenValidation") {
        Some((p, v)) => cx
            .one_of(
                v,
                &p,
                &[
                    ("IdToken", TokenValidation::IdToken),
                    ("AccessToken", TokenValidation::AccessToken),
                    ("Introspection", TokenValidation::Introspection),
                ],
            )
            .unwrap_or(TokenValidation::IdToken),
        None => TokenValidation::IdToken,
    };
    let ca_bundle = opt_string(&mut obj, "CABundle", cx).filter(|s| !s.is_empty());
    if ca_bundle.is_some() && ca_bundle_file.is_some() {
        cx.problem(
            &join(path, "CABundle"),
            "give CABundle or CABundleFile, not both",
        );
    }
    if let Some(b) = &ca_bundle
        && let Err(e) = oidc::decode_ca_bundle(b)
    {
        cx.problem(&join(path, "CABundle"), e);
    }
    let token_renewal_threshold = match obj.get("TokenRenewalThreshold") {
        Some((p, v)) => {
            let t = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(raw) => cx.expand(raw, &p).and_then(|x| x.trim().parse().ok()),
                _ => None,
            };
            match t {
                Some(t) if (0.5..=1.0).contains(&t) => t,
                _ => {
                    cx.problem(&p, "expected a number from 0.5 to 1.0");
                    0.75
                }
            }
        }
        None => 0.75,
    };
    if insecure_skip_verify {
        cx.warn(
            &join(path, "InsecureSkipVerify"),
            "TLS certificates of the IdP are not checked; use only for testing",
        );
    }
    obj.finish(PROVIDER_KEYS, &[], cx);
    Some(ProviderConfig {
        url: url?,
        client_id: client_id?,
        client_secret,
        client_key,
        use_pkce,
        validate_issuer,
        valid_issuer,
        validate_audience,
        valid_audience,
        insecure_skip_verify,
        ca_bundle_file,
        ca_bundle,
        token_renewal_threshold,
        token_validation,
        use_claims_from_userinfo,
    })
}

/// `ClientJwtPrivateKey` (PEM, usually `${file:…}`) and `ClientJwtPrivateKeyId`: parsed here so
/// a bad key stops the load with its key path instead of failing every login.
fn parse_client_key(
    obj: &mut Obj<'_>,
    path: &str,
    has_secret: bool,
    cx: &mut Cx<'_>,
) -> Option<ClientKey> {
    let kid = opt_string(obj, "ClientJwtPrivateKeyId", cx).filter(|s| !s.is_empty());
    let pem = opt_string(obj, "ClientJwtPrivateKey", cx).filter(|s| !s.trim().is_empty());
    let Some(pem) = pem else {
        if kid.is_some() {
            cx.problem(
                &join(path, "ClientJwtPrivateKeyId"),
                "given without ClientJwtPrivateKey",
            );
        }
        return None;
    };
    let key_path = join(path, "ClientJwtPrivateKey");
    match ClientKey::from_pem(&pem, kid) {
        Ok(key) => {
            if has_secret {
                cx.warn(
                    &join(path, "ClientSecret"),
                    "not sent: ClientJwtPrivateKey authenticates the client (private_key_jwt)",
                );
            }
            Some(key)
        }
        Err(e) => {
            cx.problem(&key_path, e);
            None
        }
    }
}

fn default_cookie() -> SessionCookieConfig {
    SessionCookieConfig {
        path: "/".into(),
        domain: None,
        secure: true,
        http_only: true,
        same_site: SameSite::Lax,
        max_age: 0,
    }
}

fn parse_cookie(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<SessionCookieConfig> {
    let mut obj = Obj::new(v, path, cx)?;
    let mut c = default_cookie();
    if let Some(p) = opt_string(&mut obj, "Path", cx) {
        if !p.starts_with('/') || p.contains([';', ',']) {
            cx.problem(&join(path, "Path"), "expected a path starting with /");
        }
        c.path = p;
    }
    c.domain = opt_string(&mut obj, "Domain", cx).filter(|d| !d.is_empty());
    if let Some(d) = &c.domain
        && !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        cx.problem(&join(path, "Domain"), "expected a domain name");
    }
    if let Some((p, v)) = obj.get("Secure") {
        c.secure = cx.boolean(v, &p).unwrap_or(true);
    }
    if let Some((p, v)) = obj.get("HttpOnly") {
        c.http_only = cx.boolean(v, &p).unwrap_or(true);
    }
    if let Some((p, v)) = obj.get("SameSite")
        && let Some(s) = cx.one_of(
            v,
            &p,
            &[
                ("default", SameSite::Lax),
                ("lax", SameSite::Lax),
                ("strict", SameSite::Strict),
                ("none", SameSite::None),
            ],
        )
    {
        c.same_site = s;
    }
    if let Some((p, v)) = obj.get("MaxAge") {
        match cx.integer(v, &p) {
            Some(n) if n >= 0 => c.max_age = n,
            Some(_) => cx.problem(
                &p,
                "must be 0 (browser session) or a positive number of seconds",
            ),
            None => {}
        }
    }
    if c.same_site == SameSite::None && !c.secure {
        // Browsers drop SameSite=None cookies that are not Secure.
        cx.problem(&join(path, "SameSite"), "none requires Secure: true");
    }
    obj.finish(COOKIE_KEYS, &[], cx);
    Some(c)
}

fn parse_authorization(v: &Value, path: &str, cx: &mut Cx<'_>) -> (Vec<ClaimAssertion>, bool) {
    let Some(mut obj) = Obj::new(v, path, cx) else {
        return (Vec::new(), false);
    };
    let every = match obj.get("CheckOnEveryRequest") {
        Some((p, v)) => cx.boolean(v, &p).unwrap_or(false),
        None => false,
    };
    let mut out = Vec::new();
    if let Some((p, v)) = obj.get("AssertClaims") {
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let Some(mut a) = Obj::new(item, &ip, cx) else {
                        continue;
                    };
                    let name = opt_string(&mut a, "Name", cx);
                    let any_of = match a.get("AnyOf") {
                        Some((pp, vv)) => cx.string_list(vv, &pp).unwrap_or_default(),
                        None => Vec::new(),
                    };
                    let all_of = match a.get("AllOf") {
                        Some((pp, vv)) => cx.string_list(vv, &pp).unwrap_or_default(),
                        None => Vec::new(),
                    };
                    a.finish(ASSERT_KEYS, &[], cx);
                    match name {
                        Some(n) => match ClaimAssertion::new(&n, any_of, all_of) {
                            Ok(c) => out.push(c),
                            Err(e) => cx.problem(&join(&ip, "Name"), e),
                        },
                        None => cx.problem(&join(&ip, "Name"), "required (a JSONPath below $.)"),
                    }
                }
            }
            Value::Null => {}
            _ => cx.problem(&p, "expected a list of assertions"),
        }
    }
    obj.finish(AUTHZ_KEYS, AUTHZ_LATER, cx);
    (out, every)
}

fn parse_headers(v: &Value, path: &str, cx: &mut Cx<'_>) -> Vec<HeaderRule> {
    let items = match v {
        Value::Sequence(items) => items,
        Value::Null => return Vec::new(),
        _ => {
            cx.problem(path, "expected a list of { Name, Value }");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let Some(mut h) = Obj::new(item, &ip, cx) else {
            continue;
        };
        let name = opt_string(&mut h, "Name", cx);
        let value = opt_string(&mut h, "Value", cx);
        let values = opt_string(&mut h, "Values", cx);
        if value.is_some() && values.is_some() {
            cx.problem(&join(&ip, "Values"), "give Value or Values, not both");
            continue;
        }
        let (value, is_values) = match (value, values) {
            (Some(v), None) => (Some(v), false),
            (None, Some(v)) => (Some(v), true),
            _ => (None, false),
        };
        let include_when = match h.get("IncludeWhen") {
            Some((p, v)) => cx
                .one_of(
                    v,
                    &p,
                    &[
                        ("Always", IncludeWhen::Always),
                        ("Authorized", IncludeWhen::Authorized),
                        ("Public", IncludeWhen::Public),
                        ("Forward", IncludeWhen::Forward),
                    ],
                )
                .unwrap_or(IncludeWhen::Authorized),
            None => IncludeWhen::Authorized,
        };
        h.finish(HEADER_KEYS, HEADER_LATER, cx);
        let Some(name) = name else {
            cx.problem(&join(&ip, "Name"), "required");
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            cx.problem(
                &join(&ip, "Name"),
                "expected a header name (letters, digits, '-')",
            );
            continue;
        }
        let Some(value) = value else {
            cx.problem(
                &join(&ip, "Value"),
                "required (a template such as {{ .claims.email }})",
            );
            continue;
        };
        match Template::parse(&value) {
            Ok(t) => out.push(HeaderRule {
                name,
                template: t,
                include_when,
                values: is_values,
            }),
            Err(e) => cx.problem(&join(&ip, "Value"), format!("template does not parse: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_with(
        vars: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> (HashMap<String, String>, HashMap<String, String>) {
        (
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn parse_with(
        text: &str,
        vars: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Result<Loaded, Vec<Problem>> {
        let (v, f) = env_with(vars, files);
        let var = move |k: &str| v.get(k).cloned();
        let file = move |p: &Path| {
            f.get(&p.display().to_string())
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
        };
        parse(
            text,
            &Env {
                var: &var,
                file: &file,
            },
        )
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn minimal() -> String {
        format!(
            "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n    Secret: {SECRET}\n"
        )
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let cfg = parse_with(&minimal(), &[], &[])
            .map_err(|e| format!("{e:?}"))
            .unwrap()
            .config;
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:4181");
        assert_eq!(cfg.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(cfg.log_format, LogFormat::Text);
        let m = &cfg.middlewares["default"];
        assert_eq!(m.scopes, ["openid", "profile", "email"]);
        assert_eq!(m.callback_uri, "/oidc/callback");
        assert_eq!(m.logout_uri, "/logout");
        assert_eq!(m.backchannel_logout_uri, "/backchannel-logout");
        assert_eq!(m.post_logout_redirect_uri, "/");
        assert_eq!(m.cookie_name_prefix, "TraefikOidcSidecar");
        assert_eq!(m.log_level, None);
        assert!(m.session_cookie.secure && m.session_cookie.http_only);
        assert_eq!(m.session_cookie.same_site, SameSite::Lax);
        assert_eq!(m.unauthenticated_behavior, UnauthenticatedBehavior::Auto);
        assert_eq!(m.unauthorized_behavior, UnauthorizedBehavior::Unauthorized);
        assert!(m.provider.validate_issuer && m.provider.validate_audience && !m.provider.use_pkce);
        assert_eq!(cfg.trusted_proxies.len(), Cidr::default_trusted().len());
    }

    #[test]
    fn limits_parse_with_units_and_refuse_nonsense() {
        use std::time::Duration;
        let ok = |extra: &str| {
            parse_with(&format!("{extra}\n{}", minimal()), &[], &[])
                .map_err(|e| format!("{e:?}"))
                .unwrap()
        };
        assert_eq!(ok("").config.limits, Limits::default());
        let l = ok("limits:\n  headerTimeout: 1500ms\n  IdleTimeout: 2m\n  maxConnections: 500");
        assert_eq!(l.config.limits.header_timeout, Duration::from_millis(1500));
        assert_eq!(l.config.limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(l.config.limits.max_connections, Some(500));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        // A bare number is seconds; an idle timeout at or below the clients' 90 s warns.
        let l = ok("limits:\n  idleTimeout: 30\n  headerTimeout: 5");
        assert_eq!(l.config.limits.idle_timeout, Duration::from_secs(30));
        assert_eq!(l.config.limits.header_timeout, Duration::from_secs(5));
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert_eq!(l.warnings[0].path, "limits.idleTimeout");
        for (extra, path) in [
            ("limits:\n  headerTimeout: 10 s", "limits.headerTimeout"),
            ("limits:\n  headerTimeout: 50ms", "limits.headerTimeout"),
            ("limits:\n  headerTimeout: 1d", "limits.headerTimeout"),
            ("limits:\n  idleTimeout: 2h", "limits.idleTimeout"),
            ("limits:\n  idleTimeout: 5ms", "limits.idleTimeout"),
            ("limits:\n  idleTimeout: -1s", "limits.idleTimeout"),
            ("limits:\n  maxConnections: 15", "limits.maxConnections"),
            ("limits:\n  maxConnections: many", "limits.maxConnections"),
            ("limits:\n  maxConnection: 100", "limits.maxConnection"),
            ("limits: 5", "limits"),
        ] {
            let problems = parse_with(&format!("{extra}\n{}", minimal()), &[], &[])
                .err()
                .unwrap_or_else(|| panic!("{extra:?} was accepted"));
            assert!(
                problems.iter().any(|p| p.path == path),
                "{extra:?}: {problems:?}"
            );
        }
    }

    /// A block in traefik-oidc-auth's documented shape (keys from its docs, values ours).
    const TOA_BLOCK: &str = r#"
middlewares:
  oidc-auth:
    LogLevel: DEBUG
    Secret: "${SECRET}"
    Provider:
      Url: "https://accounts.example.com/realms/main"
      ClientId: "${CLIENT_ID}"
      ClientSecret: "${file:/run/secrets/client_secret}"
      UsePkce: true
      ValidateIssuer: "true"
      ValidateAudience: false
    Scopes: ["openid", "profile", "email", "groups"]
    CallbackUri: /oidc/callback
    LogoutUri: /logout
    PostLogoutRedirectUri: https://app.example.com/bye
    ValidPostLogoutRedirectUris: ["https://app.example.com/bye"]
    SessionCookie:
      Path: /
      Domain: .example.com
      Secure: true
      HttpOnly: true
      SameSite: default
      MaxAge: 0
    UnauthenticatedBehavior: Challenge
    UnauthorizedBehavior: Unauthorized
    Authorization:
      AssertClaims:
        - Name: groups
          AnyOf: ["admins", "ops"]
        - Name: "['my:zitadel:grants']"
    Headers:
      - Name: "X-Oidc-Username"
        Value: "{{ .claims.preferred_username }}"
      - Name: "Authorization-Email"
        Value: "{{ .claims.email }}"
    BypassAuthenticationRule: "PathPrefix(`/health`)"
    AuthorizationHeader:
      Name: Authorization
    ErrorPages:
      Unauthenticated:
        RedirectTo: https://example.com/login
    SessionStorageType: Cookie
"#;

    #[test]
    fn pasted_traefik_oidc_auth_block_loads_with_expansion() {
        let loaded = parse_with(
            TOA_BLOCK,
            &[
                ("SECRET", "a-very-long-secret-of-more-than-32-bytes!!"),
                ("CLIENT_ID", "app"),
            ],
            &[("/run/secrets/client_secret", "s3cret\n")],
        )
        .map_err(|e| format!("{e:?}"))
        .unwrap();
        let m = &loaded.config.middlewares["oidc-auth"];
        assert_eq!(m.provider.client_id, "app");
        assert_eq!(
            m.provider
                .client_secret
                .as_ref()
                .map(|s| s.secret().as_str()),
            Some("s3cret")
        );
        assert!(m.provider.use_pkce && m.provider.validate_issuer && !m.provider.validate_audience);
        assert_eq!(m.scopes.len(), 4);
        assert_eq!(m.assert_claims.len(), 2);
        assert_eq!(m.headers.len(), 2);
        assert_eq!(m.session_cookie.domain.as_deref(), Some(".example.com"));
        assert_eq!(
            m.unauthenticated_behavior,
            UnauthenticatedBehavior::Challenge
        );
        // SessionStorageType is implemented (see config::redis); the per-middleware LogLevel
        // applies.
        let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
        assert!(
            !warned.contains(&"middlewares.oidc-auth.SessionStorageType"),
            "{warned:?}"
        );
        assert_eq!(m.session_storage, SessionStorage::Cookie);
        assert!(
            !warned.contains(&"middlewares.oidc-auth.LogLevel"),
            "{warned:?}"
        );
        assert_eq!(m.log_level, Some(tracing::Level::DEBUG));
    }

    #[test]
    fn middleware_log_level_takes_traefik_oidc_auth_values() {
        for (v, want) in [
            ("DEBUG", tracing::Level::DEBUG),
            ("info", tracing::Level::INFO),
            ("Warn", tracing::Level::WARN),
            ("ERROR", tracing::Level::ERROR),
        ] {
            let text = format!(
                "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n    Secret: {SECRET}\n    LogLevel: {v}\n"
            );
            let loaded = parse_with(&text, &[], &[]).unwrap();
            assert_eq!(
                loaded.config.middlewares["default"].log_level,
                Some(want),
                "{v}"
            );
        }
        let text = format!(
            "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n    Secret: {SECRET}\n    LogLevel: verbose\n"
        );
        let problems = parse_with(&text, &[], &[]).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.path == "middlewares.default.LogLevel"),
            "{problems:?}"
        );
    }

    #[test]
    fn keys_are_case_insensitive() {
        let text = format!(
            "MIDDLEWARES:\n  default:\n    provider:\n      url: https://idp.example\n      clientId: app\n    secret: {SECRET}\n    sessionCookie:\n      secure: false\n"
        );
        let cfg = parse_with(&text, &[], &[])
            .map_err(|e| format!("{e:?}"))
            .unwrap()
            .config;
        assert!(!cfg.middlewares["default"].session_cookie.secure);
    }

    #[test]
    fn backchannel_logout_uri_is_a_path_or_url_like_the_callback() {
        for (value, want) in [
            ("/bcl", Some("/bcl")),
            ("https://app.example/bcl", Some("https://app.example/bcl")),
            ("bcl", None),
            ("//evil/bcl", None),
        ] {
            let text = format!("{}    backchannellogouturi: \"{value}\"\n", minimal());
            match (parse_with(&text, &[], &[]), want) {
                (Ok(l), Some(w)) => {
                    assert_eq!(l.config.middlewares["default"].backchannel_logout_uri, w)
                }
                (Err(p), None) => assert!(
                    p.iter()
                        .any(|p| p.path == "middlewares.default.BackchannelLogoutUri"),
                    "{p:?}"
                ),
                (r, _) => panic!("{value}: {:?}", r.map(|_| ())),
            }
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
listen: nonsense
logFormat: xml
middlewares:
  default:
    Provider:
      Url: "ftp://idp"
      ClientSecrett: x
    Secret: short
    UnauthenticatedBehavior: Sometimes
    SessionCookie:
      SameSite: none
      Secure: false
    Authorization:
      AssertClaims:
        - Name: "groups[["
    Headers:
      - Name: X-User
        Value: "{{ .claims.email "
"#;
        let problems = parse_with(text, &[], &[]).map(|_| ()).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        let want = [
            "listen",
            "logFormat",
            "middlewares.default.Provider.Url",
            "middlewares.default.Provider.ClientId",
            "middlewares.default.Provider.ClientSecrett",
            "middlewares.default.Secret",
            "middlewares.default.UnauthenticatedBehavior",
            "middlewares.default.SessionCookie.SameSite",
            "middlewares.default.Authorization.AssertClaims[0].Name",
            "middlewares.default.Headers[0].Value",
        ];
        for w in want {
            assert!(paths.contains(&w), "missing {w} in {problems:#?}");
        }
        let typo = problems
            .iter()
            .find(|p| p.path.ends_with("ClientSecrett"))
            .unwrap();
        assert!(
            typo.message.contains("did you mean ClientSecret"),
            "{}",
            typo.message
        );
    }

    #[test]
    fn templates_load_or_fail_with_their_position() {
        let pages = "    ErrorPages:\n      Unauthenticated:\n        FilePath: /p/401.html\n      Unauthorized:\n        FilePath: /p/403.html\n";
        let headers = "    Headers:\n      - Name: X-Groups\n        Value: \"{{ range .claims.groups }}{{ . }},{{ end }}\"\n      - Name: X-Bad\n        Value: \"{{ if .claims.a }}\\n{{ nosuch }}{{ end }}\"\n";
        let text = format!("{}{pages}{headers}", minimal());
        let good = "{{ if .primaryButtonUrl }}<a href=\"{{ .primaryButtonUrl }}\">{{ .primaryButtonText }}</a>{{ end }}";
        let bad = "<h1>{{ .statusName }}</h1>\n<p>{{ .description | nosuch }}</p>";
        let problems = parse_with(&text, &[], &[("/p/401.html", good), ("/p/403.html", bad)])
            .map(|_| ())
            .unwrap_err();
        let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        let page = problems
            .iter()
            .find(|p| p.path == "middlewares.default.ErrorPages.Unauthorized.FilePath")
            .unwrap_or_else(|| panic!("{msgs:#?}"));
        assert!(
            page.message.contains("line 2, column 22"),
            "{}",
            page.message
        );
        let header = problems
            .iter()
            .find(|p| p.path == "middlewares.default.Headers[1].Value")
            .unwrap_or_else(|| panic!("{msgs:#?}"));
        assert!(
            header.message.contains("line 2, column 4"),
            "{}",
            header.message
        );
    }

    #[test]
    fn secret_rules() {
        let cases = [
            (TOA_DEFAULT_SECRET, false),
            ("0123456789abcdef0123456789abcde", false),
            (SECRET, true),
        ];
        for (secret, ok) in cases {
            let text = minimal().replace(SECRET, secret);
            assert_eq!(parse_with(&text, &[], &[]).is_ok(), ok, "{secret}");
        }
    }

    #[test]
    fn missing_env_var_is_an_error_not_a_literal() {
        let text = minimal().replace(SECRET, "${NOPE}");
        let p = parse_with(&text, &[], &[]).map(|_| ()).unwrap_err();
        assert!(
            p.iter().any(|p| p.message.contains("NOPE is not set")),
            "{p:?}"
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let text = minimal().replace(
            "ClientId: app",
            "ClientId: app\n      ClientSecret: hunter2-client-secret",
        );
        let cfg = parse_with(&text, &[], &[])
            .map_err(|e| format!("{e:?}"))
            .unwrap()
            .config;
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains(SECRET));
        assert!(!dbg.contains("hunter2"));
        assert!(dbg.contains("[redacted]"));
    }

    #[test]
    fn forward_behaviours_and_bypass_rule_load() {
        let text = format!(
            "{}    UnauthenticatedBehavior: forward\n    UnauthorizedBehavior: Forward\n    BypassAuthenticationRule: \"PathPrefix(`/health`) || Method(`OPTIONS`)\"\n",
            minimal()
        );
        let m = parse_with(&text, &[], &[])
            .map_err(|e| format!("{e:?}"))
            .unwrap()
            .config
            .middlewares
            .remove("default")
            .unwrap();
        assert_eq!(m.unauthenticated_behavior, UnauthenticatedBehavior::Forward);
        assert_eq!(m.unauthorized_behavior, UnauthorizedBehavior::Forward);
        assert!(m.bypass.is_some());
        let bad = format!(
            "{}    BypassAuthenticationRule: \"PathPrefix(`/health`\"\n",
            minimal()
        );
        let p = parse_with(&bad, &[], &[]).map(|_| ()).unwrap_err();
        assert!(
            p.iter()
                .any(|p| p.path.ends_with("BypassAuthenticationRule")),
            "{p:?}"
        );
    }

    #[test]
    fn did_you_mean_table() {
        let cases = [
            ("CallbakUri", Some("CallbackUri")),
            ("scope", Some("Scopes")),
            ("zzzzzzzzzzz", None),
        ];
        for (key, want) in cases {
            assert_eq!(did_you_mean(key, MIDDLEWARE_KEYS.iter()), want, "{key}");
        }
    }

    fn provider_block(extra: &str) -> String {
        format!(
            "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n{extra}    Secret: {SECRET}\n"
        )
    }

    fn test_key(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/test-keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn client_jwt_private_key_is_parsed_at_load() {
        // From a file, with its key id: a key, not a warning.
        let loaded = parse_with(
            &provider_block(
                "      ClientJwtPrivateKeyId: k1\n      ClientJwtPrivateKey: \"${file:/keys/ec.pem}\"\n",
            ),
            &[],
            &[("/keys/ec.pem", &test_key("ec-p256-sec1.pem"))],
        )
        .map_err(|e| format!("{e:?}"))
        .unwrap();
        let p = &loaded.config.middlewares["default"].provider;
        let key = p.client_key.as_ref().unwrap();
        assert_eq!(key.alg(), "ES256");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        // Debug of the whole configuration names the key, never its material.
        let shown = format!("{:?}", loaded.config);
        assert!(shown.contains("ES256") && shown.contains("k1"), "{shown}");
        let material = test_key("ec-p256-sec1.pem");
        assert!(!shown.contains(&material.lines().nth(1).unwrap()[..16]));

        // Inline from an environment variable, next to a secret: the secret is not sent.
        let loaded = parse_with(
            &provider_block("      ClientSecret: s3cret\n      ClientJwtPrivateKey: \"${KEY}\"\n"),
            &[("KEY", &test_key("rsa-pkcs1.pem"))],
            &[],
        )
        .map_err(|e| format!("{e:?}"))
        .unwrap();
        let p = &loaded.config.middlewares["default"].provider;
        assert_eq!(p.client_key.as_ref().map(ClientKey::alg), Some("RS256"));
        assert_eq!(
            loaded
                .warnings
                .iter()
                .map(|w| w.path.as_str())
                .collect::<Vec<_>>(),
            ["middlewares.default.Provider.ClientSecret"]
        );
    }

    #[test]
    fn a_bad_client_jwt_private_key_is_a_load_problem_at_its_path() {
        let problems = |extra: &str, vars: &[(&str, &str)]| {
            parse_with(&provider_block(extra), vars, &[])
                .err()
                .unwrap_or_default()
        };
        let p = problems(
            "      ClientJwtPrivateKey: \"${KEY}\"\n",
            &[("KEY", "-----BEGIN RSA PRIVATE KEY-----")],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            p[0].path,
            "middlewares.default.Provider.ClientJwtPrivateKey"
        );
        assert!(p[0].message.contains("PKCS#1"), "{p:?}");
        let p = problems(
            "      ClientJwtPrivateKey: \"${KEY}\"\n",
            &[("KEY", &test_key("rsa-1024-too-small.pem"))],
        );
        assert!(p[0].message.contains("2048"), "{p:?}");
        let p = problems("      ClientJwtPrivateKeyId: k1\n", &[]);
        assert_eq!(
            p[0].path,
            "middlewares.default.Provider.ClientJwtPrivateKeyId"
        );
    }
}
