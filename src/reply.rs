//! A transport-neutral answer to a forwardAuth request.
//!
//! Domain code builds a [`Reply`]; the HTTP layer (routes.rs) turns it into an axum response.
//! Keeping this type free of axum lets the decision logic be tested without a server.

use std::borrow::Cow;

use crate::session::memo::Prepared;

/// The body of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body (200 allow, 302 redirects).
    Empty,
    /// An RFC 9457 problem document, served as `application/problem+json`.
    Problem {
        /// Short, fixed title.
        title: &'static str,
        /// Safe description.
        detail: String,
    },
    /// A complete, self-contained HTML document.
    Html(String),
}

/// Status, headers (in order, repeats allowed: `Set-Cookie`) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Identity headers already validated and shared with other answers (a remembered
    /// session's, see [`crate::session::memo`]); sent before `headers`.
    pub identity: Option<Prepared>,
    /// Response headers; names are ASCII, values were validated when built. Names are
    /// usually literals, so they are not copied for every answer.
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// The body.
    pub body: Body,
}

impl Reply {
    /// A reply with no headers yet.
    pub fn new(status: u16, body: Body) -> Self {
        Reply {
            status,
            identity: None,
            headers: Vec::with_capacity(4),
            body,
        }
    }

    /// A 302 to `location`.
    pub fn redirect(location: String) -> Self {
        let mut r = Reply::new(302, Body::Empty);
        r.header("Location", location);
        r
    }

    /// Appends a header.
    pub fn header(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> &mut Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends one `Set-Cookie` header per cookie.
    pub fn set_cookies(&mut self, cookies: Vec<String>) -> &mut Self {
        for c in cookies {
            self.headers.push(("Set-Cookie".into(), c));
        }
        self
    }

    /// The first value of a header (case-insensitive), for tests and logging.
    pub fn get(&self, name: &str) -> Option<&str> {
        let identity = self.identity.iter().flat_map(|p| p.iter());
        identity
            .filter(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .find_map(|(_, v)| std::str::from_utf8(v.as_bytes()).ok())
            .or_else(|| {
                self.headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            })
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A small, self-contained, accessible page (no scripts, no external resources).
pub fn html_page(title: &str, message: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;\
padding:0 1rem;color:#1a1a1a}}h1{{font-size:1.5rem}}</style></head>\
<body><main><h1>{t}</h1><p>{m}</p><p><a href=\"/\">Go to the start page</a></p></main></body></html>\n",
        t = escape_html(title),
        m = escape_html(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        let cases = [
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            ("a\"b'c&d", "a&quot;b&#39;c&amp;d"),
            ("plain", "plain"),
        ];
        for (input, want) in cases {
            assert_eq!(escape_html(input), want);
        }
    }

    #[test]
    fn page_has_no_raw_markup_from_input() {
        let page = html_page("T<", "<img src=x onerror=alert(1)>");
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;img"));
    }
}
