//! The top-level `redis:` block and the per-middleware `SessionStorageType` key.
//!
//! Kept apart from the rest of the configuration walker (it is a child module, so it uses the
//! same case-insensitive [`Obj`] reader and reports problems with their key paths the same way).
//!
//! ```yaml
//! redis:
//!   url: ${REDIS_URL}   # e.g. rediss://sidecar:<password>@redis.example:6380/0; or
//!   # sentinel: { masterName: mymaster, urls: [redis://s1:26379, redis://s2:26379] }   # or
//!   # cluster: { urls: [redis://n1:6379, redis://n2:6379] }
//!   keyPrefix: "traefik-oidc-sidecar:"
//!   connectTimeout: 2s
//!   commandTimeout: 250ms
//!   caFile: /etc/ssl/redis-ca.pem
//! ```

use std::time::Duration;

use openidconnect::url::Url;
use serde_yaml_ng::Value;

use super::walk::{Cx, Obj, join};
// The types belong to the sessions (the store and its Redis pool); the file is parsed into them.
pub use crate::session::redis::{RedisConfig, RedisTarget};
pub use crate::session::store::SessionStorage;

/// The default `keyPrefix`.
pub const DEFAULT_KEY_PREFIX: &str = "traefik-oidc-sidecar:";
/// The default `connectTimeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default `commandTimeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);

pub(super) const CLUSTER_KEYS: &[&str] = &["urls"];
pub(super) const SENTINEL_KEYS: &[&str] = &["masterName", "urls"];
pub(super) const REDIS_KEYS: &[&str] = &[
    "url",
    "sentinel",
    "cluster",
    "keyPrefix",
    "connectTimeout",
    "commandTimeout",
    "caFile",
];

/// Parses the `redis:` block at `path`.
pub(super) fn parse_redis(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<RedisConfig> {
    let before = cx.problems.len();
    let mut obj = Obj::new(v, path, cx)?;
    let url = match obj.get("url") {
        Some((p, v)) => cx.string(v, &p).and_then(|u| check_url(&u, &p, cx)),
        None => None,
    };
    let sentinel = match obj.get("sentinel") {
        Some((p, v)) => parse_sentinel(v, &p, cx),
        None => None,
    };
    let cluster = match obj.get("cluster") {
        Some((p, v)) => {
            let mut o = Obj::new(v, &p, cx)?;
            let urls = url_list(&mut o, cx);
            o.finish(CLUSTER_KEYS, &[], cx);
            urls.map(|urls| RedisTarget::Cluster { urls })
        }
        None => None,
    };
    let given = [
        obj.entries
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("url")),
        obj.entries
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("sentinel")),
        obj.entries
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("cluster")),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        cx.problem(path, "give exactly one of url, sentinel or cluster");
    }
    let target = url.map(RedisTarget::Url).or(sentinel).or(cluster);

    let key_prefix = match obj.get("keyPrefix") {
        Some((p, v)) => {
            let s = cx.string(v, &p).unwrap_or_default();
            if s.is_empty() || s.len() > 100 || s.chars().any(|c| c.is_whitespace()) {
                cx.problem(&p, "expected 1 to 100 characters without spaces");
            }
            s
        }
        None => DEFAULT_KEY_PREFIX.to_string(),
    };
    let connect_timeout = duration(&mut obj, "connectTimeout", DEFAULT_CONNECT_TIMEOUT, cx);
    let command_timeout = duration(&mut obj, "commandTimeout", DEFAULT_COMMAND_TIMEOUT, cx);
    let ca_pem = match obj.get("caFile") {
        Some((p, v)) => cx.string(v, &p).and_then(|file| cx.read_pem(&file, &p)),
        None => None,
    };
    obj.finish(REDIS_KEYS, &[], cx);
    if let (Some(t), Some(_)) = (&target, &ca_pem) {
        let tls = match t {
            RedisTarget::Url(u) => u.starts_with("rediss://"),
            RedisTarget::Sentinel { urls, .. } | RedisTarget::Cluster { urls } => {
                urls.iter().any(|u| u.starts_with("rediss://"))
            }
        };
        if !tls {
            cx.problem(&join(path, "caFile"), "only used with rediss:// URLs");
        }
    }
    if cx.problems.len() != before {
        return None;
    }
    Some(RedisConfig {
        target: target?,
        key_prefix,
        connect_timeout,
        command_timeout,
        ca_pem,
    })
}

fn parse_sentinel(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<RedisTarget> {
    let mut o = Obj::new(v, path, cx)?;
    let master_name = match o.get("masterName") {
        Some((p, v)) => cx.string(v, &p).filter(|s| !s.is_empty()).or_else(|| {
            cx.problem(&p, "required");
            None
        }),
        None => {
            cx.problem(&join(path, "masterName"), "required");
            None
        }
    };
    let urls = url_list(&mut o, cx);
    o.finish(SENTINEL_KEYS, &[], cx);
    Some(RedisTarget::Sentinel {
        master_name: master_name?,
        urls: urls?,
    })
}

/// The `urls` list of a `sentinel` or `cluster` block: at least one valid URL.
fn url_list(o: &mut Obj<'_>, cx: &mut Cx<'_>) -> Option<Vec<String>> {
    let Some((p, v)) = o.get("urls") else {
        cx.problem(&join(&o.path, "urls"), "required: at least one URL");
        return None;
    };
    let list = cx.string_list(v, &p)?;
    if list.is_empty() {
        cx.problem(&p, "required: at least one URL");
        return None;
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, u) in list.iter().enumerate() {
        out.extend(check_url(u, &format!("{p}[{i}]"), cx));
    }
    (out.len() == list.len()).then_some(out)
}

fn check_url(u: &str, path: &str, cx: &mut Cx<'_>) -> Option<String> {
    match Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "redis" | "rediss") && url.host_str().is_some() => {
            Some(u.to_string())
        }
        Ok(_) => {
            cx.problem(path, "expected a redis:// or rediss:// URL with a host");
            None
        }
        // The URL may hold a password: the message never repeats it.
        Err(e) => {
            cx.problem(path, format!("not a URL: {e}"));
            None
        }
    }
}

fn duration(obj: &mut Obj<'_>, key: &str, default: Duration, cx: &mut Cx<'_>) -> Duration {
    match obj.get(key) {
        Some((p, v)) => {
            super::root::duration_in(v, &p, Duration::from_millis(1), Duration::from_secs(60), cx)
                .unwrap_or(default)
        }
        None => default,
    }
}

/// `SessionStorageType` of the middleware at `path` (case-insensitive; `Cookie` by default).
pub(super) fn parse_storage(obj: &mut Obj<'_>, cx: &mut Cx<'_>) -> SessionStorage {
    match obj.get("SessionStorageType") {
        Some((p, v)) => cx
            .one_of(
                v,
                &p,
                &[
                    ("Cookie", SessionStorage::Cookie),
                    ("Redis", SessionStorage::Redis),
                ],
            )
            .unwrap_or_default(),
        None => SessionStorage::Cookie,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, Problem, parse};
    use std::path::Path;

    const MW: &str = "middlewares:\n  a:\n    Provider: { Url: https://idp.example, ClientId: app }\n    Secret: 0123456789abcdef0123456789abcdef\n";

    fn run(text: &str) -> Result<crate::config::Config, Vec<Problem>> {
        let env = Env {
            var: &|k| (k == "REDIS_PW").then(|| "s3cret-pw".to_string()),
            file: &|p| {
                if p == Path::new("/ca.pem") {
                    Ok("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into())
                } else {
                    Err(std::io::Error::other("no such file"))
                }
            },
            within: &crate::files::read_within,
        };
        parse(text, &env).map(|l| l.config)
    }

    fn paths(r: Result<crate::config::Config, Vec<Problem>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn a_full_block_parses_with_defaults_and_expansion() {
        let c = run(&format!(
            "redis:\n  url: ${{REDIS_PW}}\n{MW}    SessionStorageType: redis\n"
        ));
        // The expanded value is no URL: reported at its path, the password not repeated.
        let e = c.unwrap_err();
        assert_eq!(e[0].path, "redis.url");
        assert!(!e[0].message.contains("s3cret"), "{e:?}");

        let c = run(&format!(
            "redis:\n  url: rediss://u:p@r.example:6380/0\n  caFile: /ca.pem\n  commandTimeout: 100ms\n{MW}    SessionStorageType: REDIS\n"
        ))
        .unwrap();
        let r = c.redis.as_ref().unwrap();
        assert!(r.target == RedisTarget::Url("rediss://u:p@r.example:6380/0".into()));
        assert_eq!(r.key_prefix, DEFAULT_KEY_PREFIX);
        assert_eq!(r.connect_timeout, Duration::from_secs(2));
        assert_eq!(r.command_timeout, Duration::from_millis(100));
        assert!(r.ca_pem.is_some());
        assert_eq!(c.middlewares["a"].session_storage, SessionStorage::Redis);
        let d = format!("{r:?}");
        assert!(!d.contains(":p@") && d.contains("redacted"), "{d}");

        let c = run(&format!(
            "redis:\n  cluster: {{ urls: [redis://a:1, redis://b:2] }}\n  keyPrefix: x/\n{MW}"
        ))
        .unwrap();
        assert_eq!(c.middlewares["a"].session_storage, SessionStorage::Cookie);
        assert_eq!(c.redis.unwrap().mode(), "cluster");
        let c = run(&format!(
            "redis:\n  sentinel: {{ masterName: m, urls: [redis://s:26379] }}\n{MW}"
        ))
        .unwrap();
        assert_eq!(c.redis.unwrap().mode(), "sentinel");
    }

    #[test]
    fn a_redis_middleware_is_never_built_on_a_cookie_scope() {
        use crate::auth::{Middleware, scope_key, scope_of};
        use crate::session::redis::RedisPool;
        use std::sync::Arc;
        let c = run(&format!(
            "redis:\n  url: redis://127.0.0.1:1\n{MW}    SessionStorageType: Redis\n"
        ))
        .unwrap();
        let m = &c.middlewares["a"];
        // An inline block in a sidecar without `redis:` would get a plain (cookie) scope.
        let cookie_scope = Arc::new(scope_of(&[m]).unwrap());
        assert!(Middleware::new(m.clone(), cookie_scope).is_err());
        let pool = Arc::new(RedisPool::new(c.redis.as_ref().unwrap()).unwrap());
        let redis_scope = Arc::new(scope_of(&[m]).unwrap().with_redis(&scope_key(m), pool));
        assert!(Middleware::new(m.clone(), redis_scope).is_ok());
    }

    #[test]
    fn every_mistake_is_reported_with_its_key_path() {
        for (text, want) in [
            (
                format!("{MW}    SessionStorageType: Redis\n"),
                vec!["middlewares.a.SessionStorageType"],
            ),
            (
                format!("{MW}    SessionStorageType: Memcached\n"),
                vec!["middlewares.a.SessionStorageType"],
            ),
            (
                format!("redis:\n  url: redis://a\n  cluster: {{ urls: [redis://b] }}\n{MW}"),
                vec!["redis"],
            ),
            (format!("redis: {{}}\n{MW}"), vec!["redis"]),
            (format!("redis:\n  url: http://a\n{MW}"), vec!["redis.url"]),
            (
                format!(
                    "redis:\n  url: redis://a\n  commandTimeout: 5x\n  connectTimeout: 0s\n{MW}"
                ),
                vec!["redis.commandTimeout", "redis.connectTimeout"],
            ),
            (
                format!("redis:\n  url: redis://a\n  caFile: /ca.pem\n{MW}"),
                vec!["redis.caFile"],
            ),
            (
                format!("redis:\n  url: rediss://a\n  caFile: /missing.pem\n{MW}"),
                vec!["redis.caFile"],
            ),
            (
                format!("redis:\n  sentinel: {{ urls: [] }}\n{MW}"),
                vec!["redis.sentinel.masterName", "redis.sentinel.urls"],
            ),
            (
                format!("redis:\n  cluster: {{ urls: [redis://a, 'x y'] }}\n{MW}"),
                vec!["redis.cluster.urls[1]"],
            ),
            (
                format!("redis:\n  url: redis://a\n  urls: []\n{MW}"),
                vec!["redis.urls"],
            ),
        ] {
            let mut got = paths(run(&text));
            got.sort();
            got.dedup();
            assert_eq!(got, want, "{text}");
        }
    }
}
