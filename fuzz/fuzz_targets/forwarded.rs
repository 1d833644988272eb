//! Rebuilding the original request from `X-Forwarded-*` (`forwarded::parse`) with arbitrary
//! header names and values, and the navigation heuristic.
//!
//! Input (bytes): line 1 is the TCP peer's IP (anything else means 127.0.0.1); every further
//! line is `name:value` (names and values that HTTP cannot carry are skipped). Invariants: no
//! panic; an untrusted peer is always refused; on success each of the four headers was given
//! exactly once, the host is lower case, at most 255 bytes of `[a-z0-9.:_\[\]-]`, the path is an
//! origin-form path without `?`, `#`, whitespace or control bytes, the query has no `#`, and the
//! method is upper-case letters.
#![no_main]

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use traefik_oidc_sidecar::forwarded::{self, Cidr};

fn clean(s: &str) -> bool {
    s.bytes().all(|b| b > b' ' && b != 0x7f)
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let peer: IpAddr = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let trusted = Cidr::default_trusted();
    let is_trusted = trusted.iter().any(|c| c.contains(peer));
    let _ = forwarded::is_navigation("GET", &headers);
    let Ok(f) = forwarded::parse(peer, &trusted, &headers) else {
        return;
    };
    assert!(
        is_trusted,
        "X-Forwarded-* believed from untrusted peer {peer}"
    );
    for h in [
        "x-forwarded-method",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-uri",
    ] {
        assert_eq!(
            headers.get_all(h).iter().count(),
            1,
            "{h} not given exactly once"
        );
    }
    assert!(!f.method.is_empty() && f.method.bytes().all(|b| b.is_ascii_uppercase()));
    assert!(
        !f.host.is_empty() && f.host.len() <= 255,
        "host {:?}",
        f.host
    );
    assert!(
        f.host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:_[]".contains(&b)),
        "host {:?}",
        f.host
    );
    assert!(!f.host.starts_with('.'), "host {:?}", f.host);
    assert!(
        f.path.starts_with('/') && clean(&f.path),
        "path {:?}",
        f.path
    );
    assert!(
        !f.path.contains('?') && !f.path.contains('#'),
        "path {:?}",
        f.path
    );
    if let Some(q) = &f.query {
        assert!(clean(q) && !q.contains('#'), "query {q:?}");
    }
    assert!(f.url().len() <= 8192 + 300);
    let _ = forwarded::is_navigation(&f.method, &headers);
});
