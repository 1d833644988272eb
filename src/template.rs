//! Identity headers: the default set, and `Headers` templates.
//!
//! Templates use traefik-oidc-auth's Go-template forms so pasted blocks keep working:
//! `{{ .claims.preferred_username }}`, `{{ .accessToken }}`, `{{ .idToken }}`,
//! `{{ .refreshToken }}`, the functions `withPrefix`, `withSuffix` and `mapToJsonArray`, called
//! directly (`{{ withPrefix "role:" .claims.roles }}`) or in a pipeline
//! (`{{ .claims.roles | withPrefix "role:" | mapToJsonArray }}`). That is the whole language: a
//! template reaches the session's data and nothing else (no environment, no files, no other
//! functions, no `{{ . }}`), and one that does not parse is a configuration error at load, not a
//! broken header at request time.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// What a template can read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    /// `.claims.a.b` → ["a", "b"].
    Claim(Vec<String>),
    /// `.accessToken`, `.idToken`, `.refreshToken`.
    Token(TokenField),
    /// A quoted string.
    Str(String),
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    WithPrefix,
    WithSuffix,
    MapToJsonArray,
}

/// One stage of a pipeline: an operand, or a function with its explicit arguments (the
/// previous stage's value is appended as the last argument, as in Go templates).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Value(Operand),
    Call(Func, Vec<Operand>),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Pipeline(Vec<Stage>),
}

/// A parsed header template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
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
}

impl Template {
    /// Parses `text{{ pipeline }}text`.
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
            parts.push(Part::Pipeline(
                parse_pipeline(expr).map_err(|e| format!("{{{{ {expr} }}}}: {e}"))?,
            ));
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

    fn operands(&self) -> impl Iterator<Item = &Operand> {
        self.parts.iter().flat_map(|p| match p {
            Part::Pipeline(stages) => stages
                .iter()
                .flat_map(|s| match s {
                    Stage::Value(o) => std::slice::from_ref(o).iter(),
                    Stage::Call(_, args) => args.iter(),
                })
                .collect::<Vec<_>>(),
            Part::Literal(_) => Vec::new(),
        })
    }

    /// The top-level claims the template reads.
    pub fn claims_used(&self) -> impl Iterator<Item = &str> {
        self.operands().filter_map(|o| match o {
            Operand::Claim(keys) => keys.first().map(String::as_str),
            _ => None,
        })
    }

    /// Whether the template prints the given token (so the session must keep it).
    pub fn uses_token(&self, t: TokenField) -> bool {
        self.operands().any(|o| *o == Operand::Token(t))
    }

    /// Renders the template. Missing values render empty.
    pub fn render(&self, data: &Data<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Pipeline(stages) => {
                    let mut cur: Option<Value> = None;
                    for st in stages {
                        cur = match st {
                            Stage::Value(o) => resolve(o, data),
                            Stage::Call(f, args) => {
                                let mut vals: Vec<Option<Value>> =
                                    args.iter().map(|a| resolve(a, data)).collect();
                                if cur.is_some() || !vals.is_empty() {
                                    vals.push(cur.take());
                                }
                                call(*f, &vals)
                            }
                        };
                    }
                    if let Some(v) = cur {
                        go_format(&v, &mut out);
                    }
                }
            }
        }
        out
    }
}

fn parse_pipeline(expr: &str) -> Result<Vec<Stage>, String> {
    let mut stages = Vec::new();
    for (i, stage) in split_pipes(expr)?.iter().enumerate() {
        let words = words(stage)?;
        let Some(first) = words.first() else {
            return Err("empty pipeline stage".into());
        };
        let func = match first.as_str() {
            "withPrefix" => Some((Func::WithPrefix, 2)),
            "withSuffix" => Some((Func::WithSuffix, 2)),
            "mapToJsonArray" => Some((Func::MapToJsonArray, 1)),
            _ => None,
        };
        match func {
            Some((f, arity)) => {
                let args = words[1..]
                    .iter()
                    .map(|w| operand(w))
                    .collect::<Result<Vec<_>, _>>()?;
                // In a pipeline after the first stage, the previous value fills the last slot.
                let given = args.len() + usize::from(i > 0);
                if given != arity {
                    return Err(format!("{first} takes {arity} argument(s)"));
                }
                stages.push(Stage::Call(f, args));
            }
            None => {
                if words.len() != 1 || i > 0 {
                    return Err(format!("unknown function {first}"));
                }
                stages.push(Stage::Value(operand(first)?));
            }
        }
    }
    Ok(stages)
}

/// Splits on `|` outside quotes.
fn split_pipes(expr: &str) -> Result<Vec<String>, String> {
    split_unquoted(expr, |c| c == '|', false)
}

/// Splits a stage into words, keeping quoted strings whole.
fn words(stage: &str) -> Result<Vec<String>, String> {
    split_unquoted(stage.trim(), |c| c == ' ' || c == '\t', true)
}

/// Splits `s` at the characters `sep` accepts when they are outside a `"…"` or `` `…` ``
/// string (the quotes stay in the pieces). With `skip_empty`, runs of separators yield no empty
/// pieces.
fn split_unquoted(
    s: &str,
    sep: impl Fn(char) -> bool,
    skip_empty: bool,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            None if sep(c) => {
                if !(skip_empty && cur.is_empty()) {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None if c == '"' || c == '`' => {
                quote = Some(c);
                cur.push(c);
            }
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            _ => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated string".into());
    }
    if !(skip_empty && cur.is_empty()) {
        out.push(cur);
    }
    Ok(out)
}

fn operand(w: &str) -> Result<Operand, String> {
    if let Some(s) = w
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| w.strip_prefix('`').and_then(|r| r.strip_suffix('`')))
    {
        return Ok(Operand::Str(s.to_string()));
    }
    match w {
        ".accessToken" => return Ok(Operand::Token(TokenField::Access)),
        ".idToken" => return Ok(Operand::Token(TokenField::Id)),
        ".refreshToken" => return Ok(Operand::Token(TokenField::Refresh)),
        _ => {}
    }
    let path = w.strip_prefix(".claims.").ok_or_else(|| {
        format!("{w} is not .claims.<name>, .accessToken, .idToken, .refreshToken or a string")
    })?;
    let keys: Vec<String> = path.split('.').map(str::to_string).collect();
    if keys.iter().any(|k| {
        k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(format!("invalid claim name in {w}"));
    }
    Ok(Operand::Claim(keys))
}

fn resolve(o: &Operand, d: &Data<'_>) -> Option<Value> {
    match o {
        Operand::Str(s) => Some(Value::String(s.clone())),
        Operand::Token(t) => {
            let v = match t {
                TokenField::Access => d.access_token,
                TokenField::Id => d.id_token,
                TokenField::Refresh => d.refresh_token,
            };
            v.map(|s| Value::String(s.to_string()))
        }
        Operand::Claim(keys) => {
            let mut cur = d.claims.get(keys.first()?)?;
            for k in keys.iter().skip(1) {
                cur = cur.get(k)?;
            }
            Some(cur.clone())
        }
    }
}

/// traefik-oidc-auth's functions: `withPrefix p v` / `withSuffix s v` add to a value or to each
/// element of a list; `mapToJsonArray v` prints a list as a JSON array of strings.
fn call(f: Func, args: &[Option<Value>]) -> Option<Value> {
    let text = |v: &Value| {
        let mut s = String::new();
        go_format(v, &mut s);
        s
    };
    match f {
        Func::WithPrefix | Func::WithSuffix => {
            let affix = match args.first()? {
                Some(v) => text(v),
                None => String::new(),
            };
            let apply = |v: &Value| {
                let t = text(v);
                Value::String(if f == Func::WithPrefix {
                    format!("{affix}{t}")
                } else {
                    format!("{t}{affix}")
                })
            };
            match args.get(1)?.as_ref()? {
                Value::Array(a) => Some(Value::Array(a.iter().map(apply).collect())),
                v => Some(apply(v)),
            }
        }
        Func::MapToJsonArray => {
            let items: Vec<Value> = match args.first()?.as_ref() {
                Some(Value::Array(a)) => a.iter().map(|v| Value::String(text(v))).collect(),
                _ => Vec::new(),
            };
            Some(Value::String(Value::Array(items).to_string()))
        }
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
/// characters) are dropped rather than sent half-sanitised.
pub fn identity_headers(
    rules: &[HeaderRule],
    data: &Data<'_>,
    pass: Pass,
) -> Vec<(Cow<'static, str>, String)> {
    let claims = data.claims;
    let mut out = Vec::with_capacity(rules.len().max(DEFAULT_HEADERS.len()));
    let mut push = |name: Cow<'static, str>, value: String| {
        if !value.is_empty() && value.bytes().all(|b| b >= b' ' && b != 0x7f) {
            out.push((name, value));
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
        for r in rules.iter().filter(|r| r.include_when.allows(pass)) {
            let rendered = r.template.render(data);
            if !r.values {
                push(r.name.clone().into(), rendered);
                continue;
            }
            match serde_json::from_str::<Vec<Value>>(&rendered) {
                Ok(items) => {
                    for item in items {
                        let mut s = String::new();
                        go_format(&item, &mut s);
                        push(r.name.clone().into(), s);
                    }
                }
                Err(_) => {
                    tracing::warn!(header = %r.name, "Values did not render a JSON array; header not sent")
                }
            }
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
                     "org": {"id": 7}, "evil": "a\r\nSet-Cookie: x=y", "quote": "a\"b"})
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
            ("Bearer {{ .accessToken }}", "Bearer AT"),
            ("{{ .idToken }}", "IDT"),
            ("{{ .refreshToken }}", ""),
            (
                "{{ withPrefix \"role:\" .claims.groups }}",
                "[role:g1 role:g2]",
            ),
            ("{{ .claims.groups | withSuffix \"@x\" }}", "[g1@x g2@x]"),
            (
                "{{ .claims.groups | withPrefix \"r:\" | mapToJsonArray }}",
                "[\"r:g1\",\"r:g2\"]",
            ),
            ("{{ mapToJsonArray .claims.groups }}", "[\"g1\",\"g2\"]"),
            ("{{ .claims.email | mapToJsonArray }}", "[]"),
            (
                "{{ withPrefix \"u-\" .claims.preferred_username }}",
                "u-alice",
            ),
            (
                "{{ withPrefix \"a|b \" .claims.preferred_username }}",
                "a|b alice",
            ),
        ];
        let c = claims();
        for (t, want) in cases {
            assert_eq!(
                Template::parse(t)
                    .unwrap_or_else(|e| panic!("{t}: {e}"))
                    .render(&data(&c)),
                want,
                "{t}"
            );
        }
    }

    #[test]
    fn values_render_one_line_per_element() {
        let c = claims();
        let r = rule(
            "{{ .claims.groups | withPrefix \"role:\" | mapToJsonArray }}",
            IncludeWhen::Authorized,
            true,
        );
        let h = identity_headers(&[r], &data(&c), Pass::Authorized);
        assert_eq!(
            h,
            vec![
                ("X-H".into(), "role:g1".to_string()),
                ("X-H".into(), "role:g2".to_string())
            ]
        );
        // Not a JSON array: nothing is sent.
        let r = rule("{{ .claims.email }}", IncludeWhen::Authorized, true);
        assert!(identity_headers(&[r], &data(&c), Pass::Authorized).is_empty());
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
                    !identity_headers(&[r], &data(&c), pass).is_empty(),
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
            "{{ .Env.HOME }}",
            "{{ index .claims \"x\" }}",
            "{{ withPrefix .claims.x }}",
            "{{ .claims.x | printf \"%s\" }}",
            "{{ mapToJsonArray }}",
            "{{ \"unterminated }}",
            "{{ .claims.a .claims.b }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_use_is_detected() {
        let t =
            Template::parse("{{ .claims.x }} {{ .accessToken | withPrefix \"Bearer \" }}").unwrap();
        assert!(t.uses_token(TokenField::Access));
        assert!(!t.uses_token(TokenField::Refresh));
        assert_eq!(t.claims_used().collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn default_headers_and_injection() {
        let c = claims();
        let h = identity_headers(&[], &data(&c), Pass::Authorized);
        assert_eq!(
            h,
            vec![
                ("X-Forwarded-User".into(), "alice".to_string()),
                ("X-Forwarded-Email".into(), "a@x.test".to_string()),
                ("X-Forwarded-Groups".into(), "g1,g2".to_string()),
            ]
        );
        let r = rule("{{ .claims.evil }}", IncludeWhen::Always, false);
        assert!(identity_headers(&[r], &data(&c), Pass::Authorized).is_empty());
        assert!(
            identity_headers(&[], &data(&c), Pass::Public).is_empty(),
            "defaults only when authorized"
        );
    }
}
