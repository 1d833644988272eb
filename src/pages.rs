//! HTML pages for browsers: the 401 and 403 pages (built-in or `ErrorPages`).
//!
//! A custom page (`FilePath`) is a Go `html/template`, as in traefik-oidc-auth, so a page
//! written for it works unchanged: `{{ if .primaryButtonUrl }}…{{ end }}`, `else if`, `range`,
//! `with`, variables, pipelines, comments, trim markers and Go's functions (the engine is
//! [`crate::template::engine`]). The data uses traefik-oidc-auth's names: `statusCode` (a
//! number), `statusName`, `statusType` (the RFC 9110 section URL of the status, as
//! traefik-oidc-auth sets it), `description`, `primaryButtonText`, `primaryButtonUrl`,
//! `secondaryButtonText`, `secondaryButtonUrl` (empty when the page has no such button).
//!
//! Every value is escaped for where it lands, as html/template does: HTML text, attribute
//! values, URLs in `href`/`src` (a scheme other than http, https or mailto becomes
//! `#ZgotmplZ`), scripts and styles. A page that does not parse or cannot be escaped (an
//! action that ends inside an unclosed attribute, say) is a configuration error at load with
//! its line and column; one that fails while rendering falls back to the built-in page with the
//! same status, and the cause is logged once. API clients never get these pages (they get
//! problem+json).

use crate::reply::escape_html;
use crate::template::engine::{self, ParseError};
use gotmpl::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What an `ErrorPages` entry says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorPage {
    /// Render this page (the file's content, checked at load).
    Html(PageTemplate),
    /// Redirect the browser here instead.
    RedirectTo(String),
}

/// A parsed custom page.
#[derive(Clone)]
pub struct PageTemplate {
    source: Arc<str>,
    compiled: Arc<gotmpl::html::Template>,
}

impl fmt::Debug for PageTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageTemplate")
            .field("bytes", &self.source.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for PageTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for PageTemplate {}

/// The values a page is rendered with.
#[derive(Debug, Clone, Default)]
pub struct PageData {
    /// 401 or 403.
    pub status: u16,
    /// "Unauthenticated" / "Unauthorized".
    pub name: String,
    /// Short description.
    pub description: String,
    /// The main button (text, URL), if any.
    pub primary: Option<(String, String)>,
    /// The second button (text, URL), if any.
    pub secondary: Option<(String, String)>,
}

impl PageData {
    /// The template value, under traefik-oidc-auth's names.
    fn to_value(&self) -> Value {
        let s = |v: &str| Value::String(v.into());
        let button = |b: &Option<(String, String)>| match b {
            Some((text, url)) => (s(text), s(url)),
            None => (s(""), s("")),
        };
        let (pt, pu) = button(&self.primary);
        let (st, su) = button(&self.secondary);
        // RFC 9110 §15.5.2 (401) and §15.5.4 (403), the URLs traefik-oidc-auth uses.
        let status_type = match self.status {
            401 => "https://tools.ietf.org/html/rfc9110#section-15.5.2",
            _ => "https://tools.ietf.org/html/rfc9110#section-15.5.4",
        };
        let m: BTreeMap<Arc<str>, Value> = [
            ("statusCode", Value::Int(i64::from(self.status))),
            ("statusName", s(&self.name)),
            ("statusType", s(status_type)),
            ("description", s(&self.description)),
            ("primaryButtonText", pt),
            ("primaryButtonUrl", pu),
            ("secondaryButtonText", st),
            ("secondaryButtonUrl", su),
        ]
        .into_iter()
        .map(|(k, v)| (Arc::from(k), v))
        .collect();
        Value::Map(Arc::new(m))
    }

    /// Data shaped like each real page, to check a custom page at load.
    fn samples() -> [PageData; 2] {
        let b = |t: &str, u: &str| Some((t.to_string(), u.to_string()));
        [
            PageData {
                status: 401,
                name: "Unauthenticated".into(),
                description: "Log in to continue.".into(),
                primary: b("Log in", "https://app.example/login"),
                secondary: None,
            },
            PageData {
                status: 403,
                name: "Access denied".into(),
                description: "Not allowed.".into(),
                primary: b("Log out", "https://app.example/logout"),
                secondary: b("Log in", "https://app.example/login?prompt=login"),
            },
        ]
    }
}

impl PageTemplate {
    /// Parses a page: a syntax error, an unknown function or template, or a page
    /// html/template cannot escape is an error naming its line (and column when known).
    pub fn parse(html: &str) -> Result<PageTemplate, ParseError> {
        // Our own pass first: it checks names and reports columns.
        engine::parse(html, &[])?;
        let compiled = gotmpl::html::Template::new("page")
            .max_range_iters(engine::MAX_RANGE_ITERS)
            .parse(html)
            .map_err(|e| engine::from_gotmpl(&e))?;
        // html/template escapes on first execution; do it now, so a page it refuses is a load
        // error. A page that fails with data shaped like the real one would fail every time.
        for d in PageData::samples() {
            compiled.execute_to_string(&d.to_value()).map_err(|e| {
                match engine::from_gotmpl(&e) {
                    p if p.line > 0 => p,
                    p => ParseError {
                        message: format!("fails to render: {}", p.message),
                        ..p
                    },
                }
            })?;
        }
        Ok(PageTemplate {
            source: html.into(),
            compiled: Arc::new(compiled),
        })
    }

    /// Renders with every value escaped for its context; on failure, the built-in page.
    pub fn render(&self, d: &PageData) -> String {
        match self.compiled.execute_to_string(&d.to_value()) {
            Ok(html) => html,
            Err(e) => {
                engine::warn_once(
                    &format!("ErrorPages page for {}", d.status),
                    &engine::describe(&e),
                );
                default_page(d)
            }
        }
    }
}

/// The built-in page: small, self-contained (no scripts, no external resources), with real
/// links as buttons so it works with a keyboard and a screen reader.
pub fn default_page(d: &PageData) -> String {
    let mut buttons = String::new();
    for (text, url) in d.primary.iter().chain(d.secondary.iter()) {
        buttons.push_str(&format!(
            "<a class=\"b\" href=\"{}\">{}</a> ",
            escape_html(url),
            escape_html(text)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{code} {name}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;\
padding:0 1rem;color:#1a1a1a}}h1{{font-size:1.5rem}}.b{{display:inline-block;margin:.5rem .5rem 0 0;\
padding:.5rem 1rem;border:1px solid #1a1a1a;border-radius:.25rem;color:#1a1a1a;text-decoration:none}}\
.b:focus{{outline:3px solid #0a58ca}}</style></head>\
<body><main><h1>{name}</h1><p>{desc}</p><p>{buttons}</p></main></body></html>\n",
        code = d.status,
        name = escape_html(&d.name),
        desc = escape_html(&d.description),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> PageData {
        PageData {
            status: 403,
            name: "Unauthorized".into(),
            description: "No <access>".into(),
            primary: Some(("Log out".into(), "/logout?x=\"1\"".into())),
            secondary: None,
        }
    }

    fn page(src: &str) -> PageTemplate {
        PageTemplate::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn custom_page_renders_escaped_fields() {
        let t = page(
            "<h1>{{ .statusCode }} {{.statusName}}</h1><p>{{ .description }}</p><a href=\"{{ .primaryButtonUrl }}\">{{ .primaryButtonText }}</a>{{ .secondaryButtonText }}",
        );
        assert_eq!(
            t.render(&data()),
            "<h1>403 Unauthorized</h1><p>No &lt;access&gt;</p><a href=\"/logout?x=%221%22\">Log out</a>"
        );
    }

    /// traefik-oidc-auth's own built-in page (its body), as a user would copy it.
    const TOA_PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
  <title>{{ .statusName }}</title>
  <style>
    body { font-family: sans-serif }
    .error-code { color: orange; }
  </style>
</head>
<body>
  <div class="container">
    <span class="error-code">{{ .statusCode }}</span>
    <h1>{{ .statusName }}</h1>
    <h2>{{ .description }}</h2>
    <div class="button-container">
      {{ if .primaryButtonUrl }}
      <a href="{{ .primaryButtonUrl }}" class="button-primary">{{ .primaryButtonText }}</a>
      {{ end }}
      {{ if .secondaryButtonUrl }}
      <a href="{{ .secondaryButtonUrl }}" class="button-secondary">{{ .secondaryButtonText }}</a>
      {{ end }}
    </div>
  </div>
</body>
</html>"#;

    #[test]
    fn toa_builtin_page_works_unchanged() {
        let t = page(TOA_PAGE);
        let html = t.render(&data());
        assert!(
            html.contains("<span class=\"error-code\">403</span>"),
            "{html}"
        );
        assert!(html.contains("<h2>No &lt;access&gt;</h2>"), "{html}");
        assert!(
            html.contains("<a href=\"/logout?x=%221%22\" class=\"button-primary\">Log out</a>")
        );
        assert!(
            !html.contains("button-secondary"),
            "no second button: {html}"
        );
    }

    #[test]
    fn go_template_actions_in_pages() {
        let t = page(concat!(
            "{{/* status */}}",
            "{{ if eq .statusCode 401 }}login{{ else if eq .statusCode 403 }}denied{{ else }}other{{ end }}|",
            "{{ with .secondaryButtonUrl }}<a href=\"{{ . }}\">2</a>{{ else }}one{{ end }}|",
            "{{ range $i := 3 }}{{ $i }}{{ end }}|",
            "{{ if and .primaryButtonUrl (not .secondaryButtonUrl) (ne .statusCode 200) }}p{{ end }}|",
            "{{ if or .secondaryButtonUrl (gt .statusCode 400) }}o{{ end }}|",
            "  {{- \" x \" -}}  |",
            "{{ $n := .statusName }}{{ $n | printf \"%s!\" }}|",
            "{{ range .missing }}x{{ else }}empty{{ end }}",
        ));
        assert_eq!(
            t.render(&data()),
            "denied|one|012|p|o| x |Unauthorized!|empty"
        );
        let mut two = data();
        two.secondary = Some(("In".into(), "https://idp.example/x?a=1&b=2".into()));
        assert!(
            t.render(&two)
                .contains("|<a href=\"https://idp.example/x?a=1&amp;b=2\">2</a>|")
        );
    }

    #[test]
    fn hostile_values_are_escaped_for_their_context() {
        let t = page(concat!(
            "<p>{{ .description }}</p>",
            "<a href=\"{{ .primaryButtonUrl }}\" title='{{ .primaryButtonText }}'>{{ .primaryButtonText }}</a>",
            "<img src=\"{{ .secondaryButtonUrl }}\">",
            "<script>var s = {{ .statusName }};</script>",
        ));
        let d = PageData {
            status: 401,
            name: "</script><script>alert(1)</script>".into(),
            description: "<script>alert(1)</script>".into(),
            primary: Some((
                "x' onmouseover='alert(1)".into(),
                "javascript:alert(1)".into(),
            )),
            secondary: Some(("s".into(), " JaVaScRiPt:alert(2)".into())),
        };
        let html = t.render(&d);
        assert!(
            html.starts_with("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
            "{html}"
        );
        assert!(html.contains("href=\"#ZgotmplZ\""), "{html}");
        assert!(html.contains("src=\"#ZgotmplZ\""), "{html}");
        assert!(
            html.contains("title='x&#39; onmouseover=&#39;alert(1)'"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("</script><script>"), "{html}");
        // http(s) and relative URLs are kept.
        let ok = PageData {
            primary: Some(("a".into(), "https://app.example/login?x=1".into())),
            secondary: Some(("b".into(), "/logout".into())),
            ..d
        };
        let html = t.render(&ok);
        assert!(
            html.contains("href=\"https://app.example/login?x=1\""),
            "{html}"
        );
        assert!(html.contains("src=\"/logout\""), "{html}");
    }

    #[test]
    fn bad_pages_fail_at_load_with_position() {
        for (bad, line, col) in [
            ("<p>\n  {{ .statusCode", 2, 0),
            ("<p>\n\n  {{ nosuch .x }}", 3, 6),
            ("{{ if .x }}", 1, 0),
            ("{{ template \"x\" }}", 1, 4),
            ("<a href=\"{{ .primaryButtonUrl }}>", 0, 0),
            ("{{ withPrefix \"a\" .x }}", 1, 4),
        ] {
            let e = PageTemplate::parse(bad).expect_err(bad);
            if line > 0 {
                assert_eq!(e.line, line, "{bad}: {e}");
            }
            if col > 0 {
                assert_eq!(e.col, col, "{bad}: {e}");
            }
        }
        // Fails with data shaped like the real one: refused at load.
        assert!(PageTemplate::parse("{{ .statusName.x }}").is_err());
    }

    #[test]
    fn render_failure_falls_back_to_builtin_page() {
        // Only fails for a status the load-time samples do not cover.
        let t = page("{{ if eq .statusCode 418 }}{{ .statusName.x }}{{ end }}ok");
        assert_eq!(t.render(&data()), "ok");
        let teapot = PageData {
            status: 418,
            ..data()
        };
        assert_eq!(t.render(&teapot), default_page(&teapot));
    }

    #[test]
    fn default_page_is_self_contained_and_escaped() {
        let html = default_page(&data());
        assert!(html.contains("No &lt;access&gt;"));
        assert!(!html.contains("<script") && !html.contains("src="));
        assert!(html.contains("href=\"/logout?x=&quot;1&quot;\""));
    }
}
