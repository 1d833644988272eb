//! `BypassAuthenticationRule`: Traefik's router-rule syntax, parsed once at load.
//!
//! Grammar (Traefik v3): matchers `Host`, `HostRegexp`, `Path`, `PathPrefix`, `PathRegexp`,
//! `Method`, `Header`, `HeaderRegexp`, `Query`, `QueryRegexp`, with string arguments in
//! backquotes or double quotes, combined by `!`, `&&`, `||` (in that precedence) and
//! parentheses.
//!
//! A bypass rule opens a hole in authentication, so path matchers see the *normalized* path
//! (RFC 3986 §6.2.2: percent-encoded unreserved characters decoded, dot segments resolved),
//! never the query or fragment: `/public/../admin`, `/%70ublic` and `/admin?x=/public` must not
//! pass as `/public`. An encoded slash (`%2F`) stays encoded, as upstream routers see it.

use std::fmt;

use http::HeaderMap;
use regex::Regex;

use crate::forwarded::Forwarded;

/// A parsed rule.
#[derive(Clone)]
pub struct Rule {
    expr: Expr,
    source: String,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rule({:?})", self.source)
    }
}

#[derive(Debug, Clone)]
enum Expr {
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    M(Matcher),
}

#[derive(Debug, Clone)]
enum Matcher {
    Host(String),
    HostRegexp(Regex),
    Path(String),
    PathPrefix(String),
    PathRegexp(Regex),
    Method(String),
    Header(String, String),
    HeaderRegexp(String, Regex),
    Query(String, Option<String>),
    QueryRegexp(String, Regex),
}

impl Rule {
    /// Parses a rule; the error says where and what.
    pub fn parse(src: &str) -> Result<Rule, String> {
        let tokens = lex(src)?;
        let mut p = Parser { tokens, pos: 0 };
        let expr = p.or()?;
        if p.pos != p.tokens.len() {
            return Err(format!(
                "unexpected {:?} after a complete rule",
                p.tokens.get(p.pos)
            ));
        }
        Ok(Rule {
            expr,
            source: src.to_string(),
        })
    }

    /// Whether the request matches. The rule is evaluated on the raw path *and* on the
    /// normalized path and must hold for both: an upstream may interpret either, so the bypass
    /// applies only when the request is public under both readings.
    pub fn matches(&self, fwd: &Forwarded<'_>, headers: &HeaderMap) -> bool {
        let host = host_without_port(&fwd.host);
        let Some(normalized) = normalize_path(fwd.path) else {
            return false;
        };
        [fwd.path, normalized.as_str()].iter().all(|path| {
            let req = Req {
                fwd,
                headers,
                path,
                host,
            };
            eval(&self.expr, &req)
        })
    }
}

/// `host` of `host:port` or `[v6]:port`, without a trailing dot (`admin.test.` is the same
/// name as `admin.test` to DNS and to most upstreams).
fn host_without_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h
            .split_once(']')
            .map_or(h, |(v6, _)| v6.trim_start_matches('['));
    }
    let host = match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    };
    host.trim_end_matches('.')
}

struct Req<'a> {
    fwd: &'a Forwarded<'a>,
    headers: &'a HeaderMap,
    path: &'a str,
    host: &'a str,
}

fn eval(e: &Expr, r: &Req<'_>) -> bool {
    match e {
        Expr::Not(x) => !eval(x, r),
        Expr::And(a, b) => eval(a, r) && eval(b, r),
        Expr::Or(a, b) => eval(a, r) || eval(b, r),
        Expr::M(m) => matcher(m, r),
    }
}

fn matcher(m: &Matcher, r: &Req<'_>) -> bool {
    let path = Some(r.path);
    match m {
        Matcher::Host(h) => r.host.eq_ignore_ascii_case(h),
        Matcher::HostRegexp(re) => re.is_match(r.host),
        Matcher::Path(p) => path == Some(p.as_str()),
        Matcher::PathPrefix(p) => path.is_some_and(|x| x.starts_with(p.as_str())),
        Matcher::PathRegexp(re) => path.is_some_and(|x| re.is_match(x)),
        Matcher::Method(m) => r.fwd.method.eq_ignore_ascii_case(m),
        Matcher::Header(k, v) => r
            .headers
            .get_all(k.as_str())
            .iter()
            .any(|x| x.to_str().is_ok_and(|x| x == v)),
        Matcher::HeaderRegexp(k, re) => r
            .headers
            .get_all(k.as_str())
            .iter()
            .any(|x| x.to_str().is_ok_and(|x| re.is_match(x))),
        Matcher::Query(k, v) => query_values(r.fwd, k)
            .iter()
            .any(|x| v.as_ref().is_none_or(|v| v == x)),
        Matcher::QueryRegexp(k, re) => query_values(r.fwd, k).iter().any(|x| re.is_match(x)),
    }
}

fn query_values(fwd: &Forwarded<'_>, key: &str) -> Vec<String> {
    openidconnect::url::form_urlencoded::parse(fwd.query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// RFC 3986 §6.2.2 normalization of a path: decode percent-encoded unreserved characters
/// (upper-casing the hex of the rest), then remove dot segments (§5.2.4). `None` — no bypass —
/// when the path is invalid, climbs above the root, or holds what upstreams read differently:
/// an encoded `/` or `\`, a `\`, a `;` path parameter (`/public/..;/admin` is `/admin` to some
/// servers), or an encoded control character.
pub fn normalize_path(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    if path.contains(['\\', ';'])
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%00")
    {
        return None;
    }
    let b = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                decoded.push(char::from(v));
            } else {
                decoded.push('%');
                decoded.push_str(&std::str::from_utf8(hex).ok()?.to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(char::from(c));
            i += 1;
        }
    }
    if !decoded.starts_with('/') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if n == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop()?;
                if n == last {
                    out.push("");
                }
            }
            // `//` is one `/` to many upstreams (nginx merges slashes by default): an empty
            // segment is dropped, except the last one (a trailing slash).
            "" if n != last => {}
            s => out.push(s),
        }
    }
    Some(format!("/{}", out.join("/")))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '(' => out.push(Tok::LParen),
            ')' => out.push(Tok::RParen),
            ',' => out.push(Tok::Comma),
            '!' => out.push(Tok::Not),
            '&' | '|' => {
                if chars.next().map(|(_, d)| d) != Some(c) {
                    return Err(format!("expected {c}{c} at {i}"));
                }
                out.push(if c == '&' { Tok::And } else { Tok::Or });
            }
            '`' | '"' => {
                let mut s = String::new();
                let mut closed = false;
                for (_, d) in chars.by_ref() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    s.push(d);
                }
                if !closed {
                    return Err(format!("unterminated string starting at {i}"));
                }
                out.push(Tok::Str(s));
            }
            c if c.is_ascii_alphabetic() => {
                let mut s = String::from(c);
                while let Some((_, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() {
                        s.push(*d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(s));
            }
            other => return Err(format!("unexpected {other:?} at {i}")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Not) => Ok(Expr::Not(Box::new(self.unary()?))),
            Some(Tok::LParen) => {
                let e = self.or()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err("missing )".into()),
                }
            }
            Some(Tok::Ident(name)) => self.matcher(&name).map(Expr::M),
            other => Err(format!("expected a matcher, found {other:?}")),
        }
    }

    fn args(&mut self) -> Result<Vec<String>, String> {
        if self.next() != Some(Tok::LParen) {
            return Err("expected ( after the matcher name".into());
        }
        let mut out = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Str(s)) => out.push(s),
                Some(Tok::RParen) if out.is_empty() => return Ok(out),
                other => return Err(format!("expected a quoted string, found {other:?}")),
            }
            match self.next() {
                Some(Tok::Comma) => {}
                Some(Tok::RParen) => return Ok(out),
                other => return Err(format!("expected , or ), found {other:?}")),
            }
        }
    }

    fn matcher(&mut self, name: &str) -> Result<Matcher, String> {
        let args = self.args()?;
        let re =
            |s: &str| Regex::new(s).map_err(|e| format!("{name}: invalid regular expression: {e}"));
        let n = args.len();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        let want = |k: usize| {
            if n == k {
                Ok(())
            } else {
                Err(format!("{name} takes {k} argument(s), got {n}"))
            }
        };
        Ok(match name {
            "Host" => {
                want(1)?;
                Matcher::Host(arg(0).to_ascii_lowercase())
            }
            "HostRegexp" => {
                want(1)?;
                Matcher::HostRegexp(re(&arg(0))?)
            }
            "Path" | "PathPrefix" => {
                want(1)?;
                let p = arg(0);
                if !p.starts_with('/') {
                    return Err(format!("{name}: the path must start with /"));
                }
                if name == "Path" {
                    Matcher::Path(p)
                } else {
                    Matcher::PathPrefix(p)
                }
            }
            "PathRegexp" => {
                want(1)?;
                Matcher::PathRegexp(re(&arg(0))?)
            }
            "Method" => {
                want(1)?;
                Matcher::Method(arg(0).to_ascii_uppercase())
            }
            "Header" => {
                want(2)?;
                Matcher::Header(header_name(&arg(0))?, arg(1))
            }
            "HeaderRegexp" => {
                want(2)?;
                Matcher::HeaderRegexp(header_name(&arg(0))?, re(&arg(1))?)
            }
            "Query" => match n {
                1 => Matcher::Query(arg(0), None),
                2 => Matcher::Query(arg(0), Some(arg(1))),
                _ => return Err(format!("Query takes 1 or 2 arguments, got {n}")),
            },
            "QueryRegexp" => {
                want(2)?;
                Matcher::QueryRegexp(arg(0), re(&arg(1))?)
            }
            other => return Err(format!("unknown matcher {other}")),
        })
    }
}

fn header_name(s: &str) -> Result<String, String> {
    http::HeaderName::from_bytes(s.as_bytes())
        .map(|h| h.as_str().to_string())
        .map_err(|_| format!("{s:?} is not a header name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarded::Proto;

    fn req<'a>(method: &'a str, host: &'a str, uri: &'a str) -> Forwarded<'a> {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        Forwarded {
            method: method.into(),
            proto: Proto::Https,
            host: host.into(),
            path,
            query,
        }
    }

    #[test]
    fn matching_table() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", http::HeaderValue::from_static("k1"));
        let cases: &[(&str, &str, &str, &str, bool)] = &[
            ("PathPrefix(`/public`)", "GET", "a.test", "/public/x", true),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/public/../admin",
                false,
            ),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/%70ublic/x",
                false,
            ),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/public/%2e%2e/admin",
                false,
            ),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/public/..;/admin",
                false,
            ),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/public/./x",
                true,
            ),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/admin?x=/public",
                false,
            ),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/admin/%2e%2e/public",
                false,
            ),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/public%2F..%2Fadmin",
                false,
            ),
            (
                "PathPrefix(`/public`)",
                "GET",
                "a.test",
                "/public\\..\\admin",
                false,
            ),
            (
                "!PathPrefix(`/admin`)",
                "GET",
                "a.test",
                "/public/../admin",
                false,
            ),
            ("!PathPrefix(`/admin`)", "GET", "a.test", "/%61dmin", false),
            ("!PathPrefix(`/admin`)", "GET", "a.test", "//admin", false),
            (
                "!PathPrefix(`/admin`)",
                "GET",
                "a.test",
                "/.//admin/x",
                false,
            ),
            ("!Host(`admin.test`)", "GET", "admin.test.", "/", false),
            ("!Host(`admin.test`)", "GET", "admin.test.:80", "/", false),
            ("Host(`admin.test`)", "GET", "admin.test.", "/", true),
            ("Path(`/health`)", "GET", "a.test", "/health", true),
            ("Path(`/health`)", "GET", "a.test", "/health/", false),
            ("Path(`/health`)", "GET", "a.test", "/Health", false),
            ("Path(`/health`)", "GET", "a.test", "/health;x", false),
            ("Path(`/health`)", "GET", "a.test", "//health", false),
            ("Path(`/health`)", "GET", "a.test", "/../health", false),
            ("Path(`/health`)", "GET", "a.test", "/%zz", false),
            ("Path(`/health`)", "GET", "a.test", "/health%00", false),
            (
                "PathRegexp(`^/api/v[0-9]+/status$`)",
                "GET",
                "a.test",
                "/api/v2/status",
                true,
            ),
            (
                "Host(`a.test`) && Method(`GET`)",
                "GET",
                "A.TEST:8443",
                "/",
                true,
            ),
            (
                "Host(`a.test`) && Method(`GET`)",
                "POST",
                "a.test",
                "/",
                false,
            ),
            ("HostRegexp(`^[a-z]+\\.test$`)", "GET", "b.test", "/", true),
            ("Header(`X-Api-Key`, `k1`)", "GET", "a.test", "/", true),
            ("Header(`X-Api-Key`, `k2`)", "GET", "a.test", "/", false),
            (
                "HeaderRegexp(`X-Api-Key`, `^k`)",
                "GET",
                "a.test",
                "/",
                true,
            ),
            ("Query(`token`)", "GET", "a.test", "/?token=1", true),
            (
                "Query(`mode`, `public`)",
                "GET",
                "a.test",
                "/?mode=public",
                true,
            ),
            (
                "Query(`mode`, `public`)",
                "GET",
                "a.test",
                "/?mode=private",
                false,
            ),
            (
                "QueryRegexp(`mode`, `^pub`)",
                "GET",
                "a.test",
                "/?mode=public",
                true,
            ),
            ("!PathPrefix(`/admin`)", "GET", "a.test", "/x", true),
            ("!PathPrefix(`/admin`)", "GET", "a.test", "/admin", false),
            (
                "Path(`/a`) || Path(`/b`) && Method(`POST`)",
                "GET",
                "a.test",
                "/a",
                true,
            ),
            (
                "(Path(`/a`) || Path(`/b`)) && Method(`POST`)",
                "GET",
                "a.test",
                "/a",
                false,
            ),
            ("Method(\"get\")", "GET", "a.test", "/", true),
        ];
        for (rule, method, host, uri, want) in cases {
            let r = Rule::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            assert_eq!(
                r.matches(&req(method, host, uri), &h),
                *want,
                "{rule} on {method} {host}{uri}"
            );
        }
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "Path(`/a`",
            "Path(`/a`) &&",
            "Path(/a)",
            "Nope(`x`)",
            "Path(`a`)",
            "Header(`x`)",
            "PathRegexp(`(`)",
            "Path(`/a`) & Path(`/b`)",
            "Path(`/a`) Path(`/b`)",
            "Path(`/a",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn normalization_table() {
        let cases = [
            ("/a/b", Some("/a/b")),
            ("/a/./b", Some("/a/b")),
            ("/a/../b", Some("/b")),
            ("/a/b/..", Some("/a/")),
            ("/%61%62", Some("/ab")),
            ("/a%2fb", None),
            ("/a;b", None),
            ("/a%2a", Some("/a%2A")),
            ("/..", None),
            ("/%2e%2e/x", None),
            ("/%zz", None),
            ("/a//b", Some("/a/b")),
            ("//admin", Some("/admin")),
            ("/.//admin/", Some("/admin/")),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).as_deref(), want, "{input}");
        }
    }
}
