//! Identity headers: the default set, and `Headers` value templates.
//!
//! A `Value`/`Values` is a Go `text/template`, as in traefik-oidc-auth, run by the engine in
//! [`engine`] (the one `ErrorPages` files use too): actions `if`/`else if`/`else`, `range`
//! (with `else`, `$i, $v :=`), `with`, `define`/`template`, variables, comments, trim markers,
//! pipelines; Go's functions (`and`, `or`, `not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `len`,
//! `index`, `slice`, `print`, `printf`, `println`, `html`, `js`, `urlquery`) and
//! traefik-oidc-auth's `withPrefix`, `withSuffix` and `mapToJsonArray`. The data is the
//! session's and nothing else: `.claims`, `.accessToken`, `.idToken`, `.refreshToken`.
//!
//! Differences from Go, on purpose: a missing value prints nothing (Go prints `<no value>`,
//! which a header would carry as if it were data), and so does a field of a missing value (Go
//! fails). A template that does not parse, or names a function or template that does not exist,
//! is a configuration error at load with its line and column. One that fails while rendering
//! (say `{{ range }}` over a claim that turned out to be a string) fails the request with a
//! 500: traefik-oidc-auth would send the error text as the header's value, and an upstream
//! could take that for an identity; leaving the header out could pass the request with less
//! than the configuration asked for. A loop may run at most 100,000 times per render.
//!
//! Templates parse once, at load. [`reads`] finds which claims and tokens a template reads, so
//! the session keeps no more than that and a render converts no more than that; a template of
//! only text and plain fields (`Bearer {{ .accessToken }}`) is printed straight from the session
//! data by `direct`, with the engine's output.

mod direct;
pub mod engine;
pub mod reads;

pub use engine::ParseError;
pub use reads::Reads;

use gotmpl::Value as TValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A token a template may print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenField {
    /// `.accessToken`
    Access,
    /// `.idToken`
    Id,
    /// `.refreshToken`
    Refresh,
}

/// A parsed header template, ready to render (parsed once, at load).
#[derive(Clone)]
pub struct Template {
    source: Arc<str>,
    compiled: Arc<gotmpl::Template>,
    /// The same template printed straight from the session data, when it is only text and
    /// plain fields (the common case, and the hot path).
    direct: Option<direct::Direct>,
    reads: Reads,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("source", &self.source)
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Template {}

/// The name the body is stored under (defines keep their own names).
const BODY: &str = "\u{0}body";

/// A template that failed while rendering (logged; the request gets a 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// The header whose template failed.
    pub header: String,
    /// Why, without the session data it was about.
    pub cause: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "header {} template failed: {}", self.header, self.cause)
    }
}

/// The data a template renders from.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    /// The session's (or bearer token's) claims.
    pub claims: &'a Map<String, Value>,
    /// The access token, when kept.
    pub access_token: Option<&'a str>,
    /// The ID token, when kept.
    pub id_token: Option<&'a str>,
    /// The refresh token, when any.
    pub refresh_token: Option<&'a str>,
}

impl<'a> Data<'a> {
    /// Claims only.
    pub fn claims(claims: &'a Map<String, Value>) -> Self {
        Data {
            claims,
            access_token: None,
            id_token: None,
            refresh_token: None,
        }
    }

    /// The template value `{ claims, accessToken, idToken, refreshToken }`, holding only what
    /// `reads` says some template reads (converting every claim of a large token on every
    /// request would cost more than the rendering).
    fn template_value<'r>(&self, reads: impl Iterator<Item = &'r Reads> + Clone) -> TValue {
        let all = reads.clone().any(|r| r.all_claims);
        let claims: BTreeMap<Arc<str>, TValue> = if all {
            self.claims
                .iter()
                .map(|(k, v)| (Arc::from(k.as_str()), engine::json_value(v)))
                .collect()
        } else {
            let mut m = BTreeMap::new();
            for name in reads.clone().flat_map(|r| r.claims.iter()) {
                if let Some(v) = self.claims.get(name)
                    && !m.contains_key(name.as_str())
                {
                    m.insert(Arc::from(name.as_str()), engine::json_value(v));
                }
            }
            m
        };
        let token = |t: TokenField, v: Option<&str>| match v {
            Some(s) if reads.clone().any(|r| r.token(t)) => TValue::String(s.into()),
            _ => TValue::Nil,
        };
        let mut root = BTreeMap::new();
        root.insert(Arc::from("claims"), TValue::Map(Arc::new(claims)));
        root.insert(
            Arc::from("accessToken"),
            token(TokenField::Access, self.access_token),
        );
        root.insert(Arc::from("idToken"), token(TokenField::Id, self.id_token));
        root.insert(
            Arc::from("refreshToken"),
            token(TokenField::Refresh, self.refresh_token),
        );
        TValue::Map(Arc::new(root))
    }
}

impl Template {
    /// Parses a header template; any error names its line and column.
    pub fn parse(s: &str) -> Result<Template, ParseError> {
        let engine::Parsed { mut tree, defines } = engine::parse(s, &engine::HEADER_FUNCS)?;
        let reads = reads::analyse(&tree, &defines);
        let direct = direct::Direct::from_tree(&tree);
        engine::nil_prints_empty(&mut tree);
        let mut t = gotmpl::Template::new(BODY)
            .max_range_iters(engine::MAX_RANGE_ITERS)
            .funcs(engine::header_funcs())
            .add_parse_tree(BODY, tree);
        for mut d in defines {
            engine::nil_prints_empty(&mut d.body);
            t = t.add_parse_tree(d.name.as_str(), d.body);
        }
        Ok(Template {
            source: s.into(),
            compiled: Arc::new(t),
            direct,
            reads,
        })
    }

    /// The top-level claims the template may read; `*` when it may read any.
    pub fn claims_used(&self) -> impl Iterator<Item = &str> {
        self.reads
            .all_claims
            .then_some("*")
            .into_iter()
            .chain(self.reads.claims.iter().map(String::as_str))
    }

    /// Whether the template may print the given token (so the session must keep it).
    pub fn uses_token(&self, t: TokenField) -> bool {
        self.reads.token(t)
    }

    /// What the template may read.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// Renders the template on its own (the request path renders all headers over one value).
    pub fn render(&self, data: &Data<'_>) -> Result<String, String> {
        match &self.direct {
            Some(d) => d.render(data),
            None => self.render_value(&data.template_value(std::iter::once(&self.reads))),
        }
    }

    fn render_value(&self, v: &TValue) -> Result<String, String> {
        let mut out = String::new();
        self.compiled
            .execute_template_fmt(&mut out, BODY, v)
            .map_err(|e| engine::describe(&e))?;
        Ok(out)
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
    /// `Values` instead of `Value`: the template renders a JSON array of strings, sent as one
    /// header line per element.
    pub values: bool,
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
/// characters) are dropped rather than sent half-sanitised. A template that fails to render
/// fails the whole answer (the caller answers 500): see the module docs.
pub fn identity_headers(
    rules: &[HeaderRule],
    data: &Data<'_>,
    pass: Pass,
) -> Result<Vec<(Cow<'static, str>, String)>, RenderError> {
    let claims = data.claims;
    let mut out = Vec::with_capacity(rules.len().max(DEFAULT_HEADERS.len()));
    let mut push = |name: Cow<'static, str>, value: String| {
        if !value.is_empty() && value.bytes().all(|b| b >= b' ' && b != 0x7f) {
            out.push((name, value));
        }
    };
    if rules.is_empty() {
        if pass != Pass::Authorized {
            return Ok(out);
        }
        let s = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let user = s("preferred_username").or(s("email")).or(s("sub"));
        push(
            DEFAULT_HEADERS[0].into(),
            user.unwrap_or_default().to_string(),
        );
        push(
            DEFAULT_HEADERS[1].into(),
            s("email").unwrap_or_default().to_string(),
        );
        // Comma-joined: a group name that itself holds a comma would read as several groups
        // to an upstream that splits the header, so such a name is left out.
        let groups = match claims.get("groups") {
            Some(Value::Array(a)) => {
                let mut joined = String::new();
                for g in a
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|g| !g.contains(','))
                {
                    if !joined.is_empty() {
                        joined.push(',');
                    }
                    joined.push_str(g);
                }
                joined
            }
            Some(Value::String(g)) => g.clone(),
            _ => String::new(),
        };
        push(DEFAULT_HEADERS[2].into(), groups);
    } else {
        let sent = || rules.iter().filter(|r| r.include_when.allows(pass));
        // One template value for all the headers the shortcut cannot print, built only when
        // one of them is sent.
        let general = || sent().filter(|r| r.template.direct.is_none());
        let mut value = None;
        for r in sent() {
            let rendered = match &r.template.direct {
                Some(d) => d.render(data),
                None => r.template.render_value(value.get_or_insert_with(|| {
                    data.template_value(general().map(|r| &r.template.reads))
                })),
            }
            .map_err(|cause| RenderError {
                header: r.name.clone(),
                cause,
            })?;
            if !r.values {
                push(r.name.clone().into(), rendered);
                continue;
            }
            match serde_json::from_str::<Vec<Value>>(&rendered) {
                Ok(items) => {
                    for item in items {
                        push(
                            r.name.clone().into(),
                            engine::text(&engine::json_value(&item)),
                        );
                    }
                }
                Err(_) => {
                    tracing::warn!(header = %r.name, "Values did not render a JSON array; header not sent")
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        match json!({"preferred_username": "alice", "email": "a@x.test", "groups": ["g1", "g2"],
                     "org": {"id": 7, "name": "Org"}, "evil": "a\r\nSet-Cookie: x=y",
                     "quote": "a\"b", "role": "admin", "n": 3, "empty": [],
                     "roles": [{"name": "r1"}, {"name": "r2"}]})
        {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn data(c: &Map<String, Value>) -> Data<'_> {
        Data {
            claims: c,
            access_token: Some("AT"),
            id_token: Some("IDT"),
            refresh_token: None,
        }
    }

    fn rule(t: &str, w: IncludeWhen, values: bool) -> HeaderRule {
        HeaderRule {
            name: "X-H".into(),
            template: Template::parse(t).unwrap(),
            include_when: w,
            values,
        }
    }

    fn render(t: &str) -> Result<String, String> {
        let c = claims();
        Template::parse(t)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
            .render(&data(&c))
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
            ("{{ .claims.missing.deeper }}", ""),
            ("{{- .claims.email -}}", "a@x.test"),
            ("a {{- .claims.email -}} b", "aa@x.testb"),
            ("{{/* a comment */}}x", "x"),
            ("static", "static"),
            ("Bearer {{ .accessToken }}", "Bearer AT"),
            ("{{ .idToken }}", "IDT"),
            ("{{ .refreshToken }}", ""),
            ("{{ if .refreshToken }}R{{ else }}none{{ end }}", "none"),
            (
                "{{ withPrefix \"role:\" .claims.groups }}",
                "[role:g1 role:g2]",
            ),
            ("{{ .claims.groups | withSuffix \"@x\" }}", "[g1@x g2@x]"),
            (
                "{{ .claims.groups | withPrefix \"r:\" | mapToJsonArray }}",
                "[\"r:g1\",\"r:g2\"]",
            ),
            (
                "{{ .claims.groups | withPrefix \"prefix:\" | withSuffix \":suffix\" | mapToJsonArray }}",
                "[\"prefix:g1:suffix\",\"prefix:g2:suffix\"]",
            ),
            ("{{ mapToJsonArray .claims.groups }}", "[\"g1\",\"g2\"]"),
            // A single value is a one-element array, as traefik-oidc-auth does.
            ("{{ .claims.email | mapToJsonArray }}", "[\"a@x.test\"]"),
            ("{{ .claims.missing | mapToJsonArray }}", "[]"),
            ("{{ .claims.quote | mapToJsonArray }}", "[\"a\\\"b\"]"),
            (
                "{{ withPrefix \"u-\" .claims.preferred_username }}",
                "u-alice",
            ),
            (
                "{{ withPrefix \"a|b \" .claims.preferred_username }}",
                "a|b alice",
            ),
            // traefik-oidc-auth's documented JSON-array example.
            (
                "[{{with .claims.groups}}{{ range $i, $g := . }}{{if $i}},{{end}}\"{{js $g}}\"{{end}}{{end}}]",
                "[\"g1\",\"g2\"]",
            ),
            (
                "{{ if eq .claims.role \"root\" }}R{{ else if eq .claims.role \"admin\" }}A{{ else }}U{{ end }}",
                "A",
            ),
            (
                "{{ if and .claims.email (not .claims.missing) (or .claims.missing .claims.role) }}y{{ end }}",
                "y",
            ),
            ("{{ if ne .claims.n 3 }}a{{ else }}b{{ end }}", "b"),
            ("{{ if lt .claims.n 5 }}small{{ end }}", "small"),
            ("{{ range .claims.roles }}{{ .name }};{{ end }}", "r1;r2;"),
            ("{{ range .claims.empty }}x{{ else }}none{{ end }}", "none"),
            (
                "{{ with .claims.org }}{{ .name }}#{{ .id }}{{ end }}",
                "Org#7",
            ),
            ("{{ with .claims.missing }}x{{ else }}no{{ end }}", "no"),
            ("{{ len .claims.groups }}", "2"),
            ("{{ index .claims.groups 1 }}", "g2"),
            ("{{ index .claims \"email\" }}", "a@x.test"),
            ("{{ printf \"%s/%d\" .claims.role .claims.n }}", "admin/3"),
            ("{{ .claims.role | printf \"<%s>\" }}", "<admin>"),
            ("{{ $u := .claims.preferred_username }}{{ $u }}!", "alice!"),
            ("{{ .Env.HOME }}", ""),
        ];
        for (t, want) in cases {
            assert_eq!(render(t).as_deref(), Ok(want), "{t}");
        }
    }

    #[test]
    fn render_errors_are_errors_without_data() {
        for t in [
            "{{ .claims.email.x }}",
            "{{ range .claims.email }}{{ end }}",
            "{{ index .claims.groups 9 }}",
            "{{ lt .claims.role 1 }}",
            "{{ withPrefix \"a\" }}",
            "{{ range .claims.groups }}{{ range $.claims.groups }}{{ range 50000 }}{{ end }}{{ end }}{{ end }}",
        ] {
            let e = render(t).expect_err(t);
            assert!(!e.contains("a@x.test") && !e.contains("AT"), "{t}: {e}");
        }
        let c = claims();
        let r = rule(
            "{{ range .claims.email }}{{ end }}",
            IncludeWhen::Authorized,
            false,
        );
        let e = identity_headers(&[r], &data(&c), Pass::Authorized).expect_err("fails");
        assert_eq!(e.header, "X-H");
    }

    #[test]
    fn values_render_one_line_per_element() {
        let c = claims();
        let r = rule(
            "{{ .claims.groups | withPrefix \"role:\" | mapToJsonArray }}",
            IncludeWhen::Authorized,
            true,
        );
        let h = identity_headers(&[r], &data(&c), Pass::Authorized).unwrap();
        assert_eq!(
            h,
            vec![
                ("X-H".into(), "role:g1".to_string()),
                ("X-H".into(), "role:g2".to_string())
            ]
        );
        // Not a JSON array: nothing is sent.
        let r = rule("{{ .claims.email }}", IncludeWhen::Authorized, true);
        assert!(
            identity_headers(&[r], &data(&c), Pass::Authorized)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn include_when_table() {
        let c = claims();
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
                let r = rule("{{ .claims.preferred_username }}", w, false);
                assert_eq!(
                    !identity_headers(&[r], &data(&c), pass).unwrap().is_empty(),
                    want,
                    "{w:?} {pass:?}"
                );
            }
        }
    }

    #[test]
    fn parse_errors() {
        for (bad, line, col) in [
            ("{{ .claims.x", 1, 0),
            ("{{ env \"HOME\" }}", 1, 4),
            ("x\n{{ if .a }}", 2, 0),
            ("{{ .claims.a .claims.b }}", 1, 0),
            ("{{ \"unterminated }}", 1, 0),
            ("{{ mapToJsonArray | }}", 1, 0),
            ("{{ template \"nope\" }}", 1, 4),
            ("{{ else }}", 1, 0),
            ("{{ end }}", 1, 0),
            ("{{ $x }}", 1, 0),
        ] {
            let e = Template::parse(bad).expect_err(bad);
            assert_eq!(e.line, line, "{bad}: {e}");
            if col > 0 {
                assert_eq!(e.col, col, "{bad}: {e}");
            }
        }
    }

    #[test]
    fn token_use_is_detected() {
        let t =
            Template::parse("{{ .claims.x }} {{ .accessToken | withPrefix \"Bearer \" }}").unwrap();
        assert!(t.uses_token(TokenField::Access));
        assert!(!t.uses_token(TokenField::Refresh));
        assert_eq!(t.claims_used().collect::<Vec<_>>(), ["x"]);
        let t = Template::parse("{{ range $k, $v := .claims }}{{ $k }}{{ end }}").unwrap();
        assert_eq!(t.claims_used().collect::<Vec<_>>(), ["*"]);
        assert!(!t.uses_token(TokenField::Access));
    }

    #[test]
    fn only_read_claims_are_converted() {
        // The template value holds the claims some sent header reads, and tokens only when read.
        let c = claims();
        let a = Template::parse("{{ .claims.email }}").unwrap();
        let b = Template::parse("{{ .claims.org.id }}").unwrap();
        let v = data(&c).template_value([a.reads(), b.reads()].into_iter());
        assert_eq!(
            v.to_string(),
            "map[accessToken:<nil> claims:map[email:a@x.test org:map[id:7 name:Org]] idToken:<nil> refreshToken:<nil>]"
        );
        let t = Template::parse("{{ . }}").unwrap();
        let v = data(&c).template_value(std::iter::once(t.reads()));
        assert!(v.to_string().contains("accessToken:AT"));
        assert!(v.to_string().contains("preferred_username:alice"));
    }

    #[test]
    fn default_headers_and_injection() {
        let c = claims();
        let h = identity_headers(&[], &data(&c), Pass::Authorized).unwrap();
        assert_eq!(
            h,
            vec![
                ("X-Forwarded-User".into(), "alice".to_string()),
                ("X-Forwarded-Email".into(), "a@x.test".to_string()),
                ("X-Forwarded-Groups".into(), "g1,g2".to_string()),
            ]
        );
        let r = rule("{{ .claims.evil }}", IncludeWhen::Always, false);
        assert!(
            identity_headers(&[r], &data(&c), Pass::Authorized)
                .unwrap()
                .is_empty()
        );
        assert!(
            identity_headers(&[], &data(&c), Pass::Public)
                .unwrap()
                .is_empty(),
            "defaults only when authorized"
        );
    }
}
