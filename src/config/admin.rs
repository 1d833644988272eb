//! The top-level `admin:` block: the operators' revocation API (`listen`, `token`), off when
//! absent. Parses into [`crate::admin::AdminConfig`], which the admin module owns.
//!
//! Only the operator's file has this block (an inline block never reaches the top level), so
//! `${VAR}` and `${file:}` in `token` read with the operator's reach.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_yaml_ng::Value;

use super::walk::{Cx, Obj};
use crate::admin::{AdminConfig, MIN_TOKEN_LEN};
use crate::session::Secret;

pub(super) const ADMIN_KEYS: &[&str] = &["listen", "token"];

pub(super) fn parse_admin(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<AdminConfig> {
    let mut obj = Obj::new(v, path, cx)?;
    let listen = match obj.get("listen") {
        Some((p, v)) => {
            let Some(raw) = cx.string(v, &p) else {
                // Never silently off: the operator asked for the API.
                cx.problem(&p, "required (a port or IP:port)");
                return None;
            };
            match listen_addr(raw.trim()) {
                Some(a) => {
                    if !a.ip().is_loopback() {
                        cx.warn(
                            &p,
                            "the admin API listens beyond loopback: anyone who can reach it and \
                             holds the token can end sessions; keep it on a private network",
                        );
                    }
                    Some(a)
                }
                None => {
                    cx.problem(
                        &p,
                        format!("{raw:?} is not a port (binds 127.0.0.1) or an IP:port address"),
                    );
                    None
                }
            }
        }
        None => {
            cx.problem(&format!("{path}.listen"), "required (a port or IP:port)");
            None
        }
    };
    let token = match obj.get("token") {
        Some((p, v)) => match cx.string(v, &p) {
            // Counted in characters: a token is typed or generated as text.
            Some(t) if t.chars().count() >= MIN_TOKEN_LEN => Some(Secret::new(t)),
            Some(_) => {
                cx.problem(&p, format!("must be at least {MIN_TOKEN_LEN} characters"));
                None
            }
            None => {
                cx.problem(&p, "required");
                None
            }
        },
        None => {
            cx.problem(
                &format!("{path}.token"),
                format!(
                    "required (at least {MIN_TOKEN_LEN} characters; ${{VAR}} or ${{file:/path}})"
                ),
            );
            None
        }
    };
    obj.finish(ADMIN_KEYS, &[], cx);
    Some(AdminConfig {
        listen: listen?,
        token: token?,
    })
}

/// `9465` (loopback, the default when only a port is written) or an `IP:port` written out.
/// Host names are refused: what a name resolves to is not what the operator read.
fn listen_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(port) = s.parse::<u16>() {
        return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use crate::config::{Env, parse};

    fn load(admin: &str) -> Result<crate::config::Loaded, Vec<crate::config::Problem>> {
        let text = format!("{admin}\nmiddlewares: {{}}\n");
        let env = Env {
            var: &|k| (k == "ADMIN_TOKEN").then(|| "from-the-environment-0123".to_string()),
            file: &|_| Err(std::io::Error::other("no files here")),
            within: &crate::files::read_within,
        };
        parse(&text, &env)
    }

    #[test]
    fn off_by_default_and_loopback_for_a_bare_port() {
        assert!(load("").unwrap().config.admin.is_none());
        let l = load("admin:\n  listen: 9465\n  token: ${ADMIN_TOKEN}").unwrap();
        let a = l.config.admin.unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:9465");
        assert_eq!(a.token.expose(), "from-the-environment-0123");
        assert!(l.warnings.is_empty());
        assert!(
            !format!("{a:?}").contains("from-the-environment"),
            "Debug redacts"
        );
        let l = load("ADMIN:\n  Listen: \"[::1]:9465\"\n  TOKEN: abcdefghijklmnop").unwrap();
        assert_eq!(l.config.admin.unwrap().listen.to_string(), "[::1]:9465");
    }

    #[test]
    fn a_network_address_only_when_written_out_and_with_a_warning() {
        let l = load("admin:\n  listen: 0.0.0.0:9465\n  token: abcdefghijklmnop").unwrap();
        assert_eq!(l.config.admin.unwrap().listen.to_string(), "0.0.0.0:9465");
        assert!(l.warnings.iter().any(|w| w.path == "admin.listen"));
    }

    #[test]
    fn bad_blocks_name_the_key() {
        for (block, key) in [
            ("admin:\n  listen: 9465\n  token: short", "admin.token"),
            ("admin:\n  listen: 9465", "admin.token"),
            ("admin:\n  token: abcdefghijklmnop", "admin.listen"),
            (
                "admin:\n  listen: localhost:9465\n  token: abcdefghijklmnop",
                "admin.listen",
            ),
            ("admin:\n  listen: 9465\n  token: ${NOPE}", "admin.token"),
            (
                "admin:\n  listen: 9465\n  token: abcdefghijklmnop\n  tokn: x",
                "admin.tokn",
            ),
            (
                "listen: 127.0.0.1:9465\nadmin:\n  listen: 9465\n  token: abcdefghijklmnop",
                "admin.listen",
            ),
        ] {
            let problems = load(block).unwrap_err();
            assert!(
                problems.iter().any(|p| p.path == key),
                "{block}: {problems:#?}"
            );
            assert!(
                !problems
                    .iter()
                    .any(|p| p.message.contains("abcdefghijklmnop")),
                "the token never appears in a problem"
            );
        }
    }
}
