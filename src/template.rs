//! Identity headers: the default set, and `Headers` templates over the claims.
//!
//! Templates use traefik-oidc-auth's form, `{{ .claims.preferred_username }}`, so pasted blocks
//! keep working. Only claim lookups are supported: a template can read the session's claims and
//! nothing else (no environment, no files, no functions), and one that does not parse is a
//! configuration error at load, not a broken header at request time.

use serde_json::{Map, Value};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `.claims.a.b` → ["a", "b"].
    Claim(Vec<String>),
}

/// A parsed header template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text{{ .claims.x }}text`.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or("unclosed {{")?;
            let expr = after[..close].trim();
            // Go's trim markers `{{-` and `-}}` are accepted for compatibility.
            let expr = expr.strip_prefix('-').unwrap_or(expr).trim();
            let expr = expr.strip_suffix('-').unwrap_or(expr).trim();
            let path = expr.strip_prefix(".claims.").ok_or_else(|| {
                format!("only .claims.<name> is supported, found {{{{ {expr} }}}}")
            })?;
            let keys: Vec<String> = path.split('.').map(str::to_string).collect();
            if keys.iter().any(|k| {
                k.is_empty()
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            }) {
                return Err(format!("invalid claim name in {{{{ {expr} }}}}"));
            }
            parts.push(Part::Claim(keys));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err("unmatched }}".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The top-level claims the template reads.
    pub fn claims_used(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Claim(keys) => keys.first().map(String::as_str),
            Part::Literal(_) => None,
        })
    }

    /// Renders the template. Missing claims render empty.
    pub fn render(&self, claims: &Map<String, Value>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Claim(keys) => {
                    let mut cur: Option<&Value> = None;
                    for (i, k) in keys.iter().enumerate() {
                        cur = if i == 0 {
                            claims.get(k)
                        } else {
                            cur.and_then(|v| v.get(k))
                        };
                    }
                    if let Some(v) = cur {
                        go_format(v, &mut out);
                    }
                }
            }
        }
        out
    }
}

/// Formats a value the way Go's `text/template` prints it (`[a b]` for a list), so headers come
/// out as they did under traefik-oidc-auth.
fn go_format(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_format(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push_str("map[");
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_format(x, out);
            }
            out.push(']');
        }
    }
}

/// When a configured header is sent (traefik-oidc-auth's `IncludeWhen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeWhen {
    /// Whenever a valid session exists: authorized, bypassed (public) or forwarded.
    Always,
    /// Only on authorized requests (the default).
    Authorized,
    /// Also on requests that matched `BypassAuthenticationRule`, when a valid session exists.
    Public,
    /// Also on requests passed through by `UnauthorizedBehavior: Forward`.
    Forward,
}

/// Why a request is let through, which decides the headers it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// A valid session whose assertions hold.
    Authorized,
    /// `BypassAuthenticationRule` matched.
    Public,
    /// `UnauthorizedBehavior: Forward` with a session that fails the assertions.
    Forward,
}

impl IncludeWhen {
    fn allows(self, pass: Pass) -> bool {
        matches!(
            (self, pass),
            (IncludeWhen::Always, _)
                | (IncludeWhen::Authorized, Pass::Authorized)
                | (IncludeWhen::Public, Pass::Public | Pass::Authorized)
                | (IncludeWhen::Forward, Pass::Forward | Pass::Authorized)
        )
    }
}

/// One configured header.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// Header name.
    pub name: String,
    /// Its value template.
    pub template: Template,
    /// When it is sent.
    pub include_when: IncludeWhen,
}

/// Names of the default identity headers, sent when `Headers` is empty. List them (and
/// `Cookie`) in forwardAuth's `authResponseHeaders`.
pub const DEFAULT_HEADERS: [&str; 3] = [
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
];

/// Claims the default headers read.
pub const DEFAULT_CLAIMS: [&str; 4] = ["sub", "preferred_username", "email", "groups"];

/// The identity headers for a session's claims on a request let through as `pass`. The default
/// set goes only to authorized requests. Values that would not be valid header values (control
/// characters) are dropped rather than sent half-sanitised.
pub fn identity_headers(
    rules: &[HeaderRule],
    claims: &Map<String, Value>,
    pass: Pass,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |name: &str, value: String| {
        if !value.is_empty() && value.bytes().all(|b| b >= b' ' && b != 0x7f) {
            out.push((name.to_string(), value));
        }
    };
    if rules.is_empty() {
        if pass != Pass::Authorized {
            return out;
        }
        let s = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let user = s("preferred_username").or(s("email")).or(s("sub"));
        push(DEFAULT_HEADERS[0], user.unwrap_or_default().to_string());
        push(
            DEFAULT_HEADERS[1],
            s("email").unwrap_or_default().to_string(),
        );
        let groups = match claims.get("groups") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Some(Value::String(g)) => g.clone(),
            _ => String::new(),
        };
        push(DEFAULT_HEADERS[2], groups);
    } else {
        for r in rules.iter().filter(|r| r.include_when.allows(pass)) {
            push(&r.name, r.template.render(claims));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        match json!({"preferred_username": "alice", "email": "a@x.test", "groups": ["g1", "g2"],
                     "org": {"id": 7}, "evil": "a\r\nSet-Cookie: x=y"})
        {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn render_table() {
        let cases = [
            ("{{ .claims.preferred_username }}", "alice"),
            ("{{.claims.email}}", "a@x.test"),
            ("user={{ .claims.preferred_username }};", "user=alice;"),
            ("{{ .claims.groups }}", "[g1 g2]"),
            ("{{ .claims.org.id }}", "7"),
            ("{{ .claims.missing }}", ""),
            ("{{- .claims.email -}}", "a@x.test"),
            ("static", "static"),
        ];
        for (t, want) in cases {
            assert_eq!(Template::parse(t).unwrap().render(&claims()), want, "{t}");
        }
    }

    #[test]
    fn include_when_table() {
        let rule = |w| HeaderRule {
            name: "X-U".into(),
            template: Template::parse("{{ .claims.preferred_username }}").unwrap(),
            include_when: w,
        };
        let cases = [
            (IncludeWhen::Always, [true, true, true]),
            (IncludeWhen::Authorized, [true, false, false]),
            (IncludeWhen::Public, [true, true, false]),
            (IncludeWhen::Forward, [true, false, true]),
        ];
        for (w, want) in cases {
            for (pass, want) in [Pass::Authorized, Pass::Public, Pass::Forward]
                .into_iter()
                .zip(want)
            {
                assert_eq!(
                    !identity_headers(&[rule(w)], &claims(), pass).is_empty(),
                    want,
                    "{w:?} {pass:?}"
                );
            }
        }
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "{{ .claims.x",
            "{{ env \"HOME\" }}",
            "{{ . }}",
            "{{ .claims. }}",
            "x }}",
            "{{ .accessToken }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_headers_and_injection() {
        let h = identity_headers(&[], &claims(), Pass::Authorized);
        assert_eq!(
            h,
            vec![
                ("X-Forwarded-User".to_string(), "alice".to_string()),
                ("X-Forwarded-Email".to_string(), "a@x.test".to_string()),
                ("X-Forwarded-Groups".to_string(), "g1,g2".to_string()),
            ]
        );
        let rules = vec![HeaderRule {
            name: "X-Evil".into(),
            template: Template::parse("{{ .claims.evil }}").unwrap(),
            include_when: IncludeWhen::Always,
        }];
        assert!(identity_headers(&rules, &claims(), Pass::Authorized).is_empty());
        assert!(
            identity_headers(&[], &claims(), Pass::Public).is_empty(),
            "defaults only when authorized"
        );
    }
}
