//! The top level of the file: `listen`, `metricsListen`, `trustedProxies`, `logFormat`,
//! `logLevel`, the `limits:` block, the `inline:` block ([`super::inline`]), the `tracing:`
//! block ([`super::traces`]), the `admin:` block ([`super::admin`]), and the
//! `middlewares:` map (each block handed to [`super::middleware`]). `middlewares:` may be empty
//! or absent: a sidecar that serves only inline blocks has none of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_yaml_ng::Value;

use super::inline::parse_inline;
use super::middleware::parse_middleware;
use super::walk::{Cx, Obj};
use super::{Config, Limits, LogFormat};
use crate::forwarded::Cidr;

pub(super) const ROOT_KEYS: &[&str] = &[
    "listen",
    "metricsListen",
    "trustedProxies",
    "logFormat",
    "logLevel",
    "limits",
    "middlewares",
    "redis",
    "inline",
    "tracing",
    "admin",
];

pub(super) const LIMITS_KEYS: &[&str] = &["headerTimeout", "idleTimeout", "maxConnections"];

pub(super) fn parse_root(root: &Value, cx: &mut Cx<'_>) -> Option<Config> {
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
    // `middlewares:` with nothing under it is null in YAML: no middlewares, like an absent key.
    if let Some((p, v)) = obj.get("middlewares").filter(|(_, v)| !v.is_null())
        && let Some(mut mws) = Obj::new(v, &p, cx)
    {
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
    }
    let redis = match obj.get("redis") {
        Some((p, v)) => super::redis::parse_redis(v, &p, cx),
        None => None,
    };
    let redis_given = obj
        .entries
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("redis"));
    for m in middlewares.values() {
        if m.session_storage == super::SessionStorage::Redis && !redis_given {
            cx.problem(
                &format!("middlewares.{}.SessionStorageType", m.name),
                "Redis needs the top-level redis: block",
            );
        }
    }
    let inline = match obj.get("inline") {
        Some((p, v)) => parse_inline(v, &p, cx),
        None => crate::inline::InlineConfig::default(),
    };
    let tracing = match obj.get("tracing").filter(|(_, v)| !v.is_null()) {
        Some((p, v)) => super::traces::parse_tracing(v, &p, cx),
        None => None,
    };
    let admin = match obj.get("admin").filter(|(_, v)| !v.is_null()) {
        Some((p, v)) => super::admin::parse_admin(v, &p, cx),
        None => None,
    };
    if let Some(a) = &admin
        && (Some(a.listen) == listen || Some(a.listen) == metrics_listen)
    {
        // The revocation API must never be reachable through another listener.
        cx.problem("admin.listen", "must differ from listen and metricsListen");
    }
    obj.finish(ROOT_KEYS, &[], cx);
    Some(Config {
        listen: listen?,
        metrics_listen: metrics_listen?,
        trusted_proxies,
        log_format: log_format?,
        log_level,
        middlewares,
        inline,
        limits,
        redis,
        tracing,
        admin,
    })
}

pub(super) fn parse_limits(v: &Value, path: &str, cx: &mut Cx<'_>) -> Limits {
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
pub(super) fn duration_in(
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
pub(super) fn parse_duration(s: &str) -> Option<std::time::Duration> {
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

pub(super) fn addr(
    obj: &mut Obj<'_>,
    key: &str,
    default: &str,
    cx: &mut Cx<'_>,
) -> Option<SocketAddr> {
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

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
