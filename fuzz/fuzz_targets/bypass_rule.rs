//! `BypassAuthenticationRule` (`rules::Rule::parse` and `matches`) and the path normalization
//! the rule sees (`rules::normalize_path`).
//!
//! Input (text): line 1 is a rule, line 2 the request's path and query, line 3 its host, every
//! further line a `name:value` header. Invariants: parsing and matching never panic; a
//! normalized path starts with `/`, holds no `.`/`..` segment, no `\`, `;` or encoded `/`, `\`
//! or NUL, and normalizing it again changes nothing.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use traefik_oidc_sidecar::forwarded::{Forwarded, Proto};
use traefik_oidc_sidecar::rules::{Rule, normalize_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let src = lines.next().unwrap_or("");
    let uri = lines.next().unwrap_or("/");
    let host = lines.next().unwrap_or("app.test").to_ascii_lowercase();
    let mut headers = HeaderMap::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':')
            && let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_str(v),
            )
        {
            headers.append(n, v);
        }
    }
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (uri.to_string(), None),
    };

    // Forwarded paths are ASCII (forwarded::parse refuses anything else).
    if !path.is_ascii() {
        return;
    }
    if let Some(n) = normalize_path(&path) {
        assert!(n.starts_with('/'), "{path:?} -> {n:?}");
        let lower = n.to_ascii_lowercase();
        assert!(
            !n.contains(['\\', ';'])
                && !lower.contains("%2f")
                && !lower.contains("%5c")
                && !lower.contains("%00"),
            "{path:?} -> {n:?}"
        );
        for seg in n.split('/') {
            assert!(
                seg != "." && seg != "..",
                "{path:?} -> {n:?} keeps a dot segment"
            );
        }
        assert_eq!(
            normalize_path(&n).as_deref(),
            Some(n.as_str()),
            "not idempotent: {path:?}"
        );
    }

    let Ok(rule) = Rule::parse(src) else {
        return;
    };
    for method in ["GET", "POST"] {
        let fwd = Forwarded {
            method: method.into(),
            proto: Proto::Https,
            host: host.as_str().into(),
            path: &path,
            query: query.as_deref(),
        };
        let _ = rule.matches(&fwd, &headers);
    }
});
