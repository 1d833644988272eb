//! HTTP pieces shared by the OP-backed suites (`tests/common`) and the hostile suites
//! (`tests/hostile/harness.rs`): the reduced response type, the kinds of browser request, and
//! URL and cookie-path helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

/// A response, reduced to what the tests read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// Every value of a header (case-insensitive name), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The Location header; panics (with the whole answer) when there is none.
    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location in {self:#?}"))
            .to_string()
    }

    /// Names of the cookies this answer sets (removals excluded).
    pub fn cookies_set(&self) -> Vec<String> {
        self.all("set-cookie")
            .into_iter()
            .filter_map(|v| cookie::Cookie::parse(v.to_string()).ok())
            .filter(|c| !is_removal(c))
            .map(|c| c.name().to_string())
            .collect()
    }

    /// The answer refuses: a 4xx/5xx (never 2xx, never a redirect) that sets no session cookie.
    #[track_caller]
    pub fn assert_refused(&self, what: &str) {
        assert!(
            self.status >= 400,
            "{what}: expected a refusal, got {}: {self:#?}",
            self.status
        );
        let set = self.cookies_set();
        assert!(
            set.iter().all(|n| !n.contains(".session.")),
            "{what}: a session cookie was set: {set:?}"
        );
    }
}

/// Whether a Set-Cookie expires the cookie (Max-Age ≤ 0 or an Expires in the past).
pub fn is_removal(c: &cookie::Cookie<'_>) -> bool {
    c.max_age().is_some_and(|m| m.is_zero() || m.is_negative())
        || c.expires_datetime()
            .is_some_and(|t| t < cookie::time::OffsetDateTime::now_utc())
}

/// How the browser's request to the app looks to the sidecar.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A top-level navigation (Sec-Fetch-Mode: navigate, Accept: text/html).
    Navigate,
    /// A fetch()/XHR (Sec-Fetch-Mode: cors, Accept: application/json).
    Xhr,
}

/// `host[:port]` of a URL.
pub fn authority(u: &reqwest::Url) -> String {
    match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap()),
        None => u.host_str().unwrap().to_string(),
    }
}

/// Resolves a possibly relative Location against the URL it answered.
pub fn resolve(base: &str, location: &str) -> String {
    reqwest::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

/// The query parameters of a URL.
pub fn query(url: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// RFC 6265 §5.1.4 path-match: whether a cookie set for `cookie` goes with a request to
/// `request`.
pub fn path_matches(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request.as_bytes().get(cookie.len()) == Some(&b'/')))
}
