//! The `inline:` block of the file (who may register inline middleware blocks, and how many) and
//! the parser of an inline block itself: the canonical JSON a plugin shim registers (see
//! [`crate::inline`]), read by the same middleware parser as the YAML file, with the string
//! forms of lists Traefik's docker labels produce accepted, and `${VAR}` / `${file:}` expanded
//! from the sidecar's environment and files.

use serde_yaml_ng::Value;

use super::middleware::parse_middleware;
use super::walk::{Cx, Obj, indexed, join};
use super::{Env, MiddlewareConfig, Problem, Secret};
use crate::inline::InlineConfig;

pub(super) const INLINE_KEYS: &[&str] = &[
    "registrationToken",
    "allowedProviderUrls",
    "maxBlocks",
    "maxBlockBytes",
];

/// Keys whose value is a list of objects: a mapping of decimal indices under them becomes a
/// list before the middleware parser sees it (lists of strings are handled by the walker).
const OBJECT_LISTS: &[&str] = &["AssertClaims", "Headers"];

/// Where `${…}` in an inline block may not echo back: a registrant must not read the sidecar's
/// files or environment through the problems of a refused block.
const HIDDEN: &str = "invalid value (it came from ${…}; the value is not shown)";

pub(super) fn parse_inline(v: &Value, path: &str, cx: &mut Cx<'_>) -> InlineConfig {
    let mut out = InlineConfig::default();
    let Some(mut obj) = Obj::new(v, path, cx) else {
        return out;
    };
    if let Some((p, v)) = obj.get("registrationToken") {
        match cx.string(v, &p) {
            // Shorter tokens are guessable; the shim sends it on every registration.
            Some(t) if t.len() >= 16 => out.registration_token = Some(Secret::new(t)),
            Some(_) => cx.problem(&p, "must be at least 16 characters"),
            None => cx.problem(&p, "must not be empty"),
        }
    }
    if let Some((p, v)) = obj.get("allowedProviderUrls") {
        let list = cx.string_list(v, &p).unwrap_or_default();
        for (i, u) in list.iter().enumerate() {
            if openidconnect::url::Url::parse(u).is_err() {
                cx.problem(&format!("{p}[{i}]"), "expected an absolute URL");
            }
        }
        out.allowed_provider_urls = list
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
    }
    if let Some((p, v)) = obj.get("maxBlocks") {
        match cx.integer(v, &p).map(usize::try_from) {
            Some(Ok(n)) if (1..=100_000).contains(&n) => out.max_blocks = n,
            Some(_) => cx.problem(&p, "must be from 1 to 100000"),
            None => {}
        }
    }
    if let Some((p, v)) = obj.get("maxBlockBytes") {
        match cx.integer(v, &p).map(usize::try_from) {
            Some(Ok(n)) if (1024..=1 << 20).contains(&n) => out.max_block_bytes = n,
            Some(_) => cx.problem(&p, "must be from 1024 to 1048576"),
            None => {}
        }
    }
    obj.finish(INLINE_KEYS, &[], cx);
    out
}

/// Why an inline block was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockError {
    /// Not a JSON object (a 400: the shim always sends one).
    NotAnObject(String),
    /// The block is invalid: every problem, with its key path inside the block.
    Invalid(Vec<Problem>),
}

/// A parsed inline block and its warnings (keys a later version implements…).
#[derive(Debug)]
pub struct ParsedBlock {
    /// The middleware it configures.
    pub config: MiddlewareConfig,
    /// Non-fatal findings.
    pub warnings: Vec<Problem>,
}

/// Parses an inline block (JSON, the shim's canonical form) as the middleware `name`: the same
/// keys, defaults and validation as a block of the YAML file, plus the string forms of lists.
pub fn parse_block(body: &[u8], name: &str, env: &Env<'_>) -> Result<ParsedBlock, BlockError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BlockError::NotAnObject(format!("not JSON: {e}")))?;
    if !json.is_object() {
        return Err(BlockError::NotAnObject("not a JSON object".into()));
    }
    let mut value = serde_yaml_ng::to_value(&json)
        .map_err(|e| BlockError::NotAnObject(format!("not representable: {e}")))?;
    lists_of_objects(&mut value);
    parse_value(&value, name, env)
}

/// [`parse_block`] on a tree already read (the golden-file tests compare YAML with JSON).
pub fn parse_value(value: &Value, name: &str, env: &Env<'_>) -> Result<ParsedBlock, BlockError> {
    parse_with(value, name, env, true)
}

/// One middleware block of the YAML file, read as the file reads it (strict about lists):
/// what the golden-file tests hold an inline block's parse against.
pub fn parse_yaml_block(
    value: &Value,
    name: &str,
    env: &Env<'_>,
) -> Result<ParsedBlock, BlockError> {
    parse_with(value, name, env, false)
}

fn parse_with(
    value: &Value,
    name: &str,
    env: &Env<'_>,
    lenient: bool,
) -> Result<ParsedBlock, BlockError> {
    let mut cx = Cx {
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
        lenient,
    };
    let parsed = parse_middleware(name, value, "", &mut cx);
    if cx.problems.is_empty()
        && let Some(config) = parsed
    {
        return Ok(ParsedBlock {
            config,
            warnings: cx.warnings,
        });
    }
    let expanded = expanded_paths(value, "");
    let mut problems = cx.problems;
    for p in &mut problems {
        if expanded
            .iter()
            .any(|e| p.path == *e || p.path.starts_with(&format!("{e}[")))
        {
            p.message = HIDDEN.to_string();
        }
    }
    Err(BlockError::Invalid(problems))
}

/// Turns a mapping of decimal indices under a list-of-objects key into a list, anywhere.
fn lists_of_objects(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                if let Value::String(key) = k
                    && OBJECT_LISTS.iter().any(|l| l.eq_ignore_ascii_case(key))
                    && let Some(items) = indexed(val)
                {
                    *val = Value::Sequence(items);
                }
                lists_of_objects(val);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(lists_of_objects),
        _ => {}
    }
}

/// The key paths (as the walker spells them) whose value is a `${…}` reference.
fn expanded_paths(v: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::String(s) if s.starts_with("${") && s.ends_with('}') => out.push(path.to_string()),
        Value::String(s) if s.contains("${") => out.push(path.to_string()),
        Value::Mapping(m) => {
            for (k, val) in m {
                if let Value::String(k) = k {
                    out.extend(expanded_paths(val, &join(path, k)));
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                out.extend(expanded_paths(item, &format!("{path}[{i}]")));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env<'static> {
        Env {
            var: &|k| (k == "SECRET").then(|| "s".repeat(40)),
            file: &|p| {
                if p == std::path::Path::new("/secret") {
                    Ok("top secret file content\n".into())
                } else {
                    Err(std::io::Error::other("no such file"))
                }
            },
        }
    }

    const BLOCK: &str = r#"{"Provider":{"ClientId":"app","Url":"https://idp.example/r","UsePkce":"true"},"Secret":"${SECRET}","Scopes":"openid, profile","Authorization":{"AssertClaims":{"1":{"Name":"b","AnyOf":"x,y"},"0":{"Name":"a","AllOf":["z"]}},"CheckOnEveryRequest":"false"},"SessionCookie":{"MaxAge":"3600","Secure":"false"}}"#;

    #[test]
    fn string_forms_and_indexed_maps_are_accepted() {
        let b = parse_block(BLOCK.as_bytes(), "inline:x", &env()).unwrap();
        let c = b.config;
        assert_eq!(c.name, "inline:x");
        assert_eq!(c.scopes, ["openid", "profile"]);
        assert_eq!(c.secret.expose(), "s".repeat(40));
        assert_eq!(c.session_cookie.max_age, 3600);
        assert!(!c.session_cookie.secure);
        assert_eq!(c.assert_claims.len(), 2);
        assert!(format!("{:?}", c.assert_claims[0]).contains("\"a\""));
        assert!(!c.check_on_every_request);
    }

    #[test]
    fn problems_carry_key_paths_and_never_echo_expanded_values() {
        let body = r#"{"Provider":{"Url":"${file:/secret}","ClientId":""},"Secret":"short","Scopes":"profile","Bogus":"1","UnauthenticatedBehavior":"${file:/secret}"}"#;
        let Err(BlockError::Invalid(problems)) = parse_block(body.as_bytes(), "m", &env()) else {
            panic!("must be refused");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "Secret",
            "Scopes",
            "Bogus",
            "UnauthenticatedBehavior",
            "Provider.Url",
        ] {
            assert!(paths.contains(&want), "{want} missing in {problems:#?}");
        }
        let all = format!("{problems:?}");
        assert!(!all.contains("top secret"), "{all}");
    }

    #[test]
    fn the_yaml_file_stays_strict_about_lists() {
        let yaml = "middlewares:\n  m:\n    Provider: {Url: https://idp.example, ClientId: a}\n    Secret: 0123456789abcdef0123456789abcdef\n    Scopes: openid,profile\n";
        let env = env();
        let p = super::super::parse(yaml, &env).unwrap_err();
        assert!(p.iter().any(|p| p.path == "middlewares.m.Scopes"), "{p:#?}");
    }

    #[test]
    fn middlewares_may_be_empty_and_inline_rules_parse_with_paths() {
        let env = env();
        for text in ["{}", "middlewares:\n", "middlewares: {}\n"] {
            let c = super::super::parse(text, &env).unwrap().config;
            assert!(c.middlewares.is_empty());
            assert_eq!(c.inline, InlineConfig::default());
        }
        let c = super::super::parse(
            "inline:\n  registrationToken: ${file:/secret}\n  allowedProviderUrls: [https://idp.example/r/]\n  maxBlocks: 3\n  maxBlockBytes: 2048\n",
            &env,
        )
        .unwrap()
        .config
        .inline;
        assert_eq!(
            c.registration_token.as_ref().map(Secret::expose),
            Some("top secret file content")
        );
        assert_eq!(c.allowed_provider_urls, ["https://idp.example/r"]);
        assert_eq!((c.max_blocks, c.max_block_bytes), (3, 2048));
        assert!(!format!("{c:?}").contains("top secret"));
        let p = super::super::parse(
            "inline:\n  registrationToken: short\n  maxBlocks: 0\n  maxBlockBytes: 10\n  allowedProviderUrls: [nope]\n  maxBlokcs: 1\n",
            &env,
        )
        .unwrap_err();
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "inline.registrationToken",
                "inline.allowedProviderUrls[0]",
                "inline.maxBlocks",
                "inline.maxBlockBytes",
                "inline.maxBlokcs"
            ],
            "{p:#?}"
        );
        assert!(p[4].message.contains("did you mean maxBlocks"), "{p:#?}");
    }

    #[test]
    fn non_objects_are_not_blocks() {
        for body in ["[]", "\"x\"", "{", ""] {
            assert!(matches!(
                parse_block(body.as_bytes(), "m", &env()),
                Err(BlockError::NotAnObject(_))
            ));
        }
    }
}
