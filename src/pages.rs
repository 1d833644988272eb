//! HTML pages for browsers: the 401 and 403 pages (built-in or `ErrorPages`).
//!
//! A custom page is a self-contained HTML file with traefik-oidc-auth's placeholders:
//! `{{ .statusCode }}`, `{{ .statusName }}`, `{{ .statusType }}`, `{{ .description }}`,
//! `{{ .primaryButtonText }}`, `{{ .primaryButtonUrl }}`, `{{ .secondaryButtonText }}`,
//! `{{ .secondaryButtonUrl }}`. Every value is HTML-escaped; any other `{{ … }}` is a
//! configuration error at load. API clients never get these pages (they get problem+json).

use crate::reply::escape_html;

/// What an `ErrorPages` entry says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorPage {
    /// Render this page (the file's content, checked at load).
    Html(PageTemplate),
    /// Redirect the browser here instead.
    RedirectTo(String),
}

/// A parsed custom page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageTemplate {
    parts: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    StatusCode,
    StatusName,
    StatusType,
    Description,
    PrimaryText,
    PrimaryUrl,
    SecondaryText,
    SecondaryUrl,
}

const FIELDS: [(&str, Field); 8] = [
    ("statusCode", Field::StatusCode),
    ("statusName", Field::StatusName),
    ("statusType", Field::StatusType),
    ("description", Field::Description),
    ("primaryButtonText", Field::PrimaryText),
    ("primaryButtonUrl", Field::PrimaryUrl),
    ("secondaryButtonText", Field::SecondaryText),
    ("secondaryButtonUrl", Field::SecondaryUrl),
];

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

impl PageTemplate {
    /// Parses a page; fails on any placeholder that is not one of the known fields.
    pub fn parse(html: &str) -> Result<PageTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = html;
        while let Some(open) = rest.find("{{") {
            parts.push(Piece::Text(rest[..open].to_string()));
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or("unclosed {{")?;
            let inner = after[..close].trim().trim_matches('-').trim();
            let name = inner
                .strip_prefix('.')
                .ok_or_else(|| format!("unsupported placeholder {{{{ {inner} }}}}"))?;
            let field = FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| format!("unknown placeholder {{{{ {inner} }}}}"))?;
            parts.push(Piece::Field(field));
            rest = &after[close + 2..];
        }
        parts.push(Piece::Text(rest.to_string()));
        Ok(PageTemplate { parts })
    }

    /// Renders with every value HTML-escaped.
    pub fn render(&self, d: &PageData) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => {
                    let v = match f {
                        Field::StatusCode => d.status.to_string(),
                        Field::StatusName => d.name.clone(),
                        Field::StatusType => if d.status == 401 {
                            "unauthenticated"
                        } else {
                            "unauthorized"
                        }
                        .to_string(),
                        Field::Description => d.description.clone(),
                        Field::PrimaryText => {
                            d.primary.as_ref().map(|p| p.0.clone()).unwrap_or_default()
                        }
                        Field::PrimaryUrl => {
                            d.primary.as_ref().map(|p| p.1.clone()).unwrap_or_default()
                        }
                        Field::SecondaryText => d
                            .secondary
                            .as_ref()
                            .map(|p| p.0.clone())
                            .unwrap_or_default(),
                        Field::SecondaryUrl => d
                            .secondary
                            .as_ref()
                            .map(|p| p.1.clone())
                            .unwrap_or_default(),
                    };
                    out.push_str(&escape_html(&v));
                }
            }
        }
        out
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

    #[test]
    fn custom_page_renders_escaped_fields() {
        let t = PageTemplate::parse("<h1>{{ .statusCode }} {{.statusName}}</h1><p>{{ .description }}</p><a href=\"{{ .primaryButtonUrl }}\">{{ .primaryButtonText }}</a>{{ .secondaryButtonText }}").unwrap();
        let html = t.render(&data());
        assert_eq!(
            html,
            "<h1>403 Unauthorized</h1><p>No &lt;access&gt;</p><a href=\"/logout?x=&quot;1&quot;\">Log out</a>"
        );
    }

    #[test]
    fn unknown_placeholders_fail_at_load() {
        for bad in [
            "{{ .env }}",
            "{{ if .x }}",
            "{{ .statusCode",
            "{{ template \"x\" }}",
        ] {
            assert!(PageTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_page_is_self_contained_and_escaped() {
        let html = default_page(&data());
        assert!(html.contains("No &lt;access&gt;"));
        assert!(!html.contains("<script") && !html.contains("src="));
        assert!(html.contains("href=\"/logout?x=&quot;1&quot;\""));
    }
}
