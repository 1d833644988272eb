//! Rebuilding the original request from Traefik's `X-Forwarded-*` headers.
//!
//! Traefik's forwardAuth sends the sidecar a `GET` whose own method and path say nothing about
//! the user's request; the truth travels in `X-Forwarded-Method/Proto/Host/Uri`. Those headers
//! are only believed from peers in `trustedProxies`: anyone else could claim any host or path.
//! Anything ambiguous (a header missing, given twice, or comma-joined, as happens when a proxy
//! appends instead of replacing) is refused rather than guessed, so it can never yield a 2xx.

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use crate::error::Error;

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fc00::/7` or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Loopback and the private ranges: where a Traefik next to the sidecar normally lives.
    pub fn default_trusted() -> Vec<Cidr> {
        [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ]
        .iter()
        .filter_map(|s| Cidr::parse(s).ok())
        .collect()
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The scheme the user's browser spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `http`
    Http,
    /// `https`
    Https,
}

impl Proto {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Https => "https",
        }
    }
}

/// The user's original request, as rebuilt from the forwarded headers. It borrows from the
/// request's headers: method and host are copied only when they must be case-folded (a
/// browser's request through Traefik needs neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded<'a> {
    /// Request method, upper case.
    pub method: Cow<'a, str>,
    /// Scheme.
    pub proto: Proto,
    /// Host (with port if any), lower case.
    pub host: Cow<'a, str>,
    /// Path part of the request target (no query).
    pub path: &'a str,
    /// Query string without `?`, if any.
    pub query: Option<&'a str>,
}

impl Forwarded<'_> {
    /// `proto://host`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.proto.as_str(), self.host)
    }

    /// The full original URL.
    pub fn url(&self) -> String {
        match &self.query {
            Some(q) => format!("{}{}?{}", self.origin(), self.path, q),
            None => format!("{}{}", self.origin(), self.path),
        }
    }
}

// Header names as constants: looking one up by `&str` parses and lower-cases the name on every
// request.
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");

/// Longest request target we accept; browsers and Traefik stop far below this.
const MAX_URI: usize = 8192;

/// Rebuilds the original request. `peer` is the TCP peer of the forwardAuth request.
pub fn parse<'h>(
    peer: IpAddr,
    trusted: &[Cidr],
    headers: &'h HeaderMap,
) -> Result<Forwarded<'h>, Error> {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return Err(Error::UntrustedPeer);
    }
    let method = single(headers, &X_FORWARDED_METHOD, "X-Forwarded-Method", false)?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(bad("X-Forwarded-Method", "not an HTTP method"));
    }
    let proto = single(headers, &X_FORWARDED_PROTO, "X-Forwarded-Proto", false)?;
    let is = |name: &str| proto.eq_ignore_ascii_case(name);
    // Traefik labels websocket handshakes ws/wss in X-Forwarded-Proto; the browser's origin
    // scheme is http/https.
    let proto = if is("http") || is("ws") {
        Proto::Http
    } else if is("https") || is("wss") {
        Proto::Https
    } else {
        return Err(bad("X-Forwarded-Proto", "must be http or https"));
    };
    let host = lower(single(
        headers,
        &X_FORWARDED_HOST,
        "X-Forwarded-Host",
        false,
    )?);
    if !valid_host(&host) {
        return Err(bad("X-Forwarded-Host", "not a valid host[:port]"));
    }
    let uri = single(headers, &X_FORWARDED_URI, "X-Forwarded-Uri", true)?;
    if uri.len() > MAX_URI {
        return Err(bad("X-Forwarded-Uri", "too long"));
    }
    // Origin-form only (RFC 9112 §3.2.1): an absolute-form or authority-form target here would
    // let the client pick the host the redirect goes back to.
    if !uri.starts_with('/') || uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("X-Forwarded-Uri", "must be a path starting with /"));
    }
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    // A fragment never reaches a server; if one appears, someone is playing games.
    if uri.contains('#') {
        return Err(bad("X-Forwarded-Uri", "must not contain a fragment"));
    }
    Ok(Forwarded {
        method: if method.bytes().all(|b| b.is_ascii_uppercase()) {
            Cow::Borrowed(method)
        } else {
            Cow::Owned(method.to_ascii_uppercase())
        },
        proto,
        host,
        path,
        query,
    })
}

/// `s` in lower case, copied only when it has upper-case letters.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn bad(header: &'static str, reason: &'static str) -> Error {
    Error::BadForwarded { header, reason }
}

/// Exactly one value, not comma-joined. A request URI (`is_uri`) may contain commas
/// (`?ids=1,2`), so there only a comma that starts another origin-form target (`,/`), is
/// followed by a space or ends the value counts as a joined list; the other headers never
/// contain a comma.
fn single<'h>(
    headers: &'h HeaderMap,
    key: &HeaderName,
    name: &'static str,
    is_uri: bool,
) -> Result<&'h str, Error> {
    let mut values = headers.get_all(key).iter();
    let first = values.next().ok_or(bad(name, "missing"))?;
    if values.next().is_some() {
        return Err(bad(name, "given more than once"));
    }
    let s = first.to_str().map_err(|_| bad(name, "not ASCII"))?.trim();
    // One pass over the bytes (this runs for every request).
    let b = s.as_bytes();
    let joined = b
        .iter()
        .enumerate()
        .any(|(i, &c)| c == b',' && (!is_uri || matches!(b.get(i + 1), None | Some(b'/' | b' '))));
    if joined {
        return Err(bad(name, "holds a comma-separated list"));
    }
    if s.is_empty() {
        return Err(bad(name, "empty"));
    }
    Ok(s)
}

/// `host`, `host:port`, `[v6]:port`; no userinfo, path or whitespace.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && !h.starts_with('.')
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// Whether the request is a browser navigation that should be redirected to the IdP rather than
/// answered 401: GET/HEAD, and either `Sec-Fetch-Mode: navigate` or (for clients that do not
/// send fetch metadata) an `Accept` header that prefers HTML.
pub fn is_navigation(method: &str, headers: &HeaderMap) -> bool {
    if method != "GET" && method != "HEAD" {
        return false;
    }
    if let Some(mode) = headers.get(&SEC_FETCH_MODE) {
        // Fetch metadata is authoritative when present (W3C Fetch Metadata Request Headers).
        return mode.as_bytes().eq_ignore_ascii_case(b"navigate");
    }
    if headers.contains_key(&X_REQUESTED_WITH) {
        return false;
    }
    headers
        .get(http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(prefers_html)
}

/// Whether an `Accept` header rates HTML at least as high as any other concrete type.
fn prefers_html(accept: &str) -> bool {
    let mut html_q: f32 = 0.0;
    let mut other_q: f32 = 0.0;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim();
        let q = it
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let is = |t: &str| media.eq_ignore_ascii_case(t);
        if is("text/html") || is("application/xhtml+xml") {
            html_q = html_q.max(q);
        } else if !(media == "*/*" || media.is_empty()) {
            other_q = other_q.max(q);
        }
    }
    html_q > 0.0 && html_q >= other_q
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const OK: &[(&str, &str)] = &[
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "App.Example.com"),
        ("x-forwarded-uri", "/a/b?c=d"),
    ];

    fn loopback() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn rebuilds_the_request() {
        let h = headers(OK);
        let f = parse(loopback(), &Cidr::default_trusted(), &h).unwrap();
        assert_eq!(f.url(), "https://app.example.com/a/b?c=d");
        assert_eq!(f.path, "/a/b");
    }

    #[test]
    fn untrusted_peer_is_refused() {
        let h = headers(OK);
        let e = parse(IpAddr::from([8, 8, 8, 8]), &Cidr::default_trusted(), &h);
        assert!(matches!(e, Err(Error::UntrustedPeer)));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "missing host",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-uri", "/"),
                ],
            ),
            (
                "missing uri",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "a"),
                ],
            ),
            (
                "comma host",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "a, evil"),
                    ("x-forwarded-uri", "/"),
                ],
            ),
            (
                "absolute uri",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "a"),
                    ("x-forwarded-uri", "http://evil/"),
                ],
            ),
            (
                "bad proto",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "gopher"),
                    ("x-forwarded-host", "a"),
                    ("x-forwarded-uri", "/"),
                ],
            ),
            (
                "userinfo host",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "good@evil"),
                    ("x-forwarded-uri", "/"),
                ],
            ),
            (
                "space in uri",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "a"),
                    ("x-forwarded-uri", "/a b"),
                ],
            ),
        ];
        for (name, hs) in cases {
            let h = headers(hs);
            let r = parse(loopback(), &Cidr::default_trusted(), &h);
            assert!(
                matches!(r, Err(Error::BadForwarded { .. })),
                "{name}: {r:?}"
            );
        }
        // The same header twice.
        let mut h = headers(OK);
        h.append("x-forwarded-host", HeaderValue::from_static("evil"));
        assert!(parse(loopback(), &Cidr::default_trusted(), &h).is_err());
    }

    #[test]
    fn cidr_table() {
        let cases = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.1", false),
            ("fc00::/7", "fd12::1", true),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("192.168.1.5", "192.168.1.5", true),
            ("192.168.1.5", "192.168.1.6", false),
        ];
        for (net, ip, want) in cases {
            let c = Cidr::parse(net).unwrap();
            assert_eq!(c.contains(ip.parse().unwrap()), want, "{net} {ip}");
        }
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn navigation_decision_table() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case<'_>] = &[
            ("GET", &[("sec-fetch-mode", "navigate")], true),
            (
                "GET",
                &[("sec-fetch-mode", "cors"), ("accept", "text/html")],
                false,
            ),
            (
                "GET",
                &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
                true,
            ),
            ("GET", &[("accept", "application/json")], false),
            ("GET", &[("accept", "*/*")], false),
            ("GET", &[], false),
            (
                "GET",
                &[("accept", "application/json;q=0.9, text/html;q=0.5")],
                false,
            ),
            (
                "GET",
                &[
                    ("accept", "text/html"),
                    ("x-requested-with", "XMLHttpRequest"),
                ],
                false,
            ),
            ("HEAD", &[("accept", "text/html")], true),
            (
                "POST",
                &[("sec-fetch-mode", "navigate"), ("accept", "text/html")],
                false,
            ),
        ];
        for (method, hs, want) in cases {
            assert_eq!(
                is_navigation(method, &headers(hs)),
                *want,
                "{method} {hs:?}"
            );
        }
    }
}
