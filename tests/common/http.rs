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

/// A browser's cookies, one jar per host (`host[:port]`): `Set-Cookie` in, `Cookie` out. Like a
/// browser, a cookie set with a `Path` goes only to requests under it (the logout hint goes to
/// the logout path only); expired cookies are dropped.
#[derive(Debug, Default)]
pub struct Jar {
    /// host → name → (value, path).
    hosts: BTreeMap<String, BTreeMap<String, (String, String)>>,
}

impl Jar {
    /// Every cookie held for `host`, whatever its path, by name.
    pub fn cookies(&self, host: &str) -> BTreeMap<String, String> {
        self.hosts
            .get(host)
            .map(|j| j.iter().map(|(n, (v, _))| (n.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Sets a cookie for `host` with `Path=/`, as a script or an attacker could.
    pub fn set(&mut self, host: &str, name: &str, value: &str) {
        self.hosts
            .entry(host.to_string())
            .or_default()
            .insert(name.to_string(), (value.to_string(), "/".to_string()));
    }

    /// Forgets a cookie.
    pub fn remove(&mut self, host: &str, name: &str) {
        if let Some(j) = self.hosts.get_mut(host) {
            j.remove(name);
        }
    }

    /// The `Cookie` header for a request to `host`: only the cookies whose path matches `path`,
    /// or every cookie when `path` is `None`.
    pub fn header(&self, host: &str, path: Option<&str>) -> Option<String> {
        let sent: Vec<String> = self
            .hosts
            .get(host)?
            .iter()
            .filter(|(_, (_, p))| path.is_none_or(|path| path_matches(path, p)))
            .map(|(n, (v, _))| format!("{n}={v}"))
            .collect();
        (!sent.is_empty()).then(|| sent.join("; "))
    }

    /// Applies the `Set-Cookie` headers of an answer from `host`.
    pub fn absorb(&mut self, host: &str, r: &Resp) {
        let jar = self.hosts.entry(host.to_string()).or_default();
        for v in r.all("set-cookie") {
            let c = cookie::Cookie::parse(v.to_string()).unwrap();
            if is_removal(&c) {
                jar.remove(c.name());
            } else {
                let path = c.path().unwrap_or("/").to_string();
                jar.insert(c.name().to_string(), (c.value().to_string(), path));
            }
        }
    }
}

/// Reads a reqwest response into a [`Resp`] (header values that are not UTF-8 kept lossily).
pub async fn finish(resp: reqwest::Response) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// The `xsrf` token of one of the OP's forms (its end-session page): the OP refuses the form
/// without it.
pub fn xsrf(page: &Resp) -> String {
    page.body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no xsrf field in the OP's page: {page:#?}"))
        .to_string()
}
