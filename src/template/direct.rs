//! The hot-path shortcut for the commonest header templates: text and plain field actions
//! (`X-User: {{ .claims.preferred_username }}`, `Bearer {{ .accessToken }}`).
//!
//! Such a template is printed straight from the borrowed session data. The general engine
//! would first copy every claim it reads into a template value (one allocation per string: for
//! a Keycloak token's 50 groups that cost more than everything else in a request). The output
//! is the engine's, byte for byte, errors included; the tests below hold the two side by side.

use super::Data;
use super::engine;
use gotmpl::parse::{Expr, ListNode, Node};
use serde_json::{Map, Value as Json};
use std::fmt::Write;

/// A template made only of text and `{{ .a.b }}` actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Direct(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Vec<String>),
}

/// Where a field chain is.
enum At<'a> {
    Claims(&'a Map<String, Json>),
    Json(&'a Json),
    Str(&'a str),
    Nil,
}

impl Direct {
    /// `Some` when the parsed body has only text and plain field actions.
    pub(crate) fn from_tree(tree: &ListNode) -> Option<Direct> {
        let mut pieces = Vec::with_capacity(tree.nodes.len());
        for n in &tree.nodes {
            match n {
                Node::Text(t) => pieces.push(Piece::Text(t.text.to_string())),
                Node::Action(a) if a.pipe.decl.is_empty() => match a.pipe.commands.as_slice() {
                    [c] => match c.args.as_slice() {
                        [Expr::Field(_, names)] => {
                            pieces.push(Piece::Field(names.iter().map(|n| n.to_string()).collect()))
                        }
                        _ => return None,
                    },
                    _ => return None,
                },
                _ => return None,
            }
        }
        Some(Direct(pieces))
    }

    /// Renders as the engine would (a missing value prints nothing).
    pub(crate) fn render(&self, d: &Data<'_>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(names) => match resolve(names, d)? {
                    At::Nil | At::Json(Json::Null) => {}
                    At::Str(s) => out.push_str(s),
                    At::Json(Json::String(s)) => out.push_str(s),
                    At::Json(v) => display(v, &mut out),
                    At::Claims(m) => display_map(m, &mut out),
                },
            }
        }
        Ok(out)
    }
}

fn resolve<'a>(names: &[String], d: &Data<'a>) -> Result<At<'a>, String> {
    let Some((first, rest)) = names.split_first() else {
        return Ok(At::Nil);
    };
    let token = |t: Option<&'a str>| t.map_or(At::Nil, At::Str);
    let mut at = match first.as_str() {
        "claims" => At::Claims(d.claims),
        "accessToken" => token(d.access_token),
        "idToken" => token(d.id_token),
        "refreshToken" => token(d.refresh_token),
        _ => At::Nil,
    };
    for name in rest {
        at = match at {
            At::Claims(m) | At::Json(Json::Object(m)) => m.get(name).map_or(At::Nil, At::Json),
            // A field of a missing value is missing (gotmpl, unlike Go).
            At::Nil | At::Json(Json::Null) => At::Nil,
            At::Str(_) => return Err(field_error(name, "string")),
            At::Json(v) => {
                return Err(field_error(name, engine::json_value(v).type_name()));
            }
        };
    }
    Ok(at)
}

fn field_error(name: &str, ty: &str) -> String {
    engine::describe(&gotmpl::TemplateError::Exec(format!(
        "can't evaluate field {name} in type {ty}"
    )))
}

/// gotmpl's `Display` of the value [`engine::json_value`] makes of `v`.
fn display(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("<nil>"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(u)) => {
                let _ = write!(out, "{u}");
            }
            _ => {
                let _ = write!(out, "{}", n.as_f64().unwrap_or(f64::NAN));
            }
        },
        Json::String(s) => out.push_str(s),
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                display(x, out);
            }
            out.push(']');
        }
        Json::Object(m) => display_map(m, out),
    }
}

/// A map prints in key order, whatever order the JSON map keeps.
fn display_map(m: &Map<String, Json>, out: &mut String) {
    let mut entries: Vec<(&String, &Json)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push_str("map[");
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push(':');
        display(v, out);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::super::Template;
    use super::*;
    use serde_json::json;

    #[test]
    fn direct_output_is_the_engines() {
        let claims = match json!({
            "s": "x<y", "n": 7, "neg": -3, "big": u64::MAX, "f": 1.5, "e": 1e21, "t": true,
            "null": null, "list": ["a", 1, null, [2, "b"], {"k": "v"}],
            "obj": {"z": 1, "a": {"b": [true]}, "m": null}, "empty": [], "eo": {}
        }) {
            Json::Object(m) => m,
            _ => unreachable!(),
        };
        let data = Data {
            claims: &claims,
            access_token: Some("AT"),
            id_token: None,
            refresh_token: Some("RT"),
        };
        let mut n = 0;
        for t in [
            "{{ .claims.s }}|{{ .claims.n }}|{{ .claims.neg }}|{{ .claims.big }}|{{ .claims.f }}",
            "{{ .claims.e }}|{{ .claims.t }}|{{ .claims.null }}|{{ .claims.list }}",
            "{{ .claims.obj }}|{{ .claims.obj.a }}|{{ .claims.obj.a.b }}|{{ .claims.obj.m }}",
            "{{ .claims.empty }}{{ .claims.eo }}{{ .claims.missing }}{{ .claims.missing.x.y }}",
            "{{ .claims.null.x }}|{{ .claims.obj.m.x }}|{{ .nope }}|{{ .nope.x }}",
            "Bearer {{ .accessToken }}|{{ .idToken }}|{{ .refreshToken }}",
            "{{ .claims }}",
            "{{- .claims.s -}} | {{ .claims.s -}} |",
            "{{ .claims.s.x }}",
            "{{ .claims.n.x }}",
            "{{ .claims.list.x }}",
            "{{ .accessToken.x }}",
            "{{ .claims.obj.z.x }}",
        ] {
            let parsed = Template::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            let direct = parsed
                .direct
                .as_ref()
                .unwrap_or_else(|| panic!("{t} not direct"));
            let value = data.template_value(std::iter::once(parsed.reads()));
            let general = parsed.render_value(&value);
            assert_eq!(direct.render(&data), general, "{t}");
            n += 1;
        }
        assert_eq!(n, 13);
    }

    #[test]
    fn only_plain_fields_are_direct() {
        for t in ["a{{ .claims.x }}b", "{{ .accessToken }}", "static", ""] {
            assert!(Template::parse(t).unwrap().direct.is_some(), "{t}");
        }
        for t in [
            "{{ . }}",
            "{{ .claims.x | withPrefix \"a\" }}",
            "{{ if .claims.x }}y{{ end }}",
            "{{ $x := .claims.x }}",
            "{{ \"lit\" }}",
            "{{ $.claims.x }}",
            "{{ (.claims.x) }}",
        ] {
            assert!(Template::parse(t).unwrap().direct.is_none(), "{t}");
        }
    }
}
