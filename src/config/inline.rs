//! The `inline:` block of the file (who may register inline middleware blocks, and how many) and
//! the parser of an inline block itself: the canonical JSON a plugin shim registers (see
//! [`crate::inline`]), read by the same middleware parser as the YAML file, with the string
//! forms of lists Traefik's docker labels produce accepted, and `${VAR}` / `${file:}` expanded
//! from the sidecar's environment and files.

use serde_yaml_ng::Value;

use super::middleware::parse_middleware;
use super::walk::{Cx, Obj, Reach, indexed, join};
use super::{Env, MiddlewareConfig, Problem, Secret};
use crate::inline::{AllowedVariable, InlineConfig};

pub(super) const INLINE_KEYS: &[&str] = &[
    "registrationToken",
    "allowedProviderUrls",
    "allowedVariables",
    "allowedFileDirectory",
    "maxFileBytes",
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
    if let Some((p, v)) = obj.get("allowedVariables") {
        out.allowed_variables = allowed_variables(v, &p, cx);
    }
    if let Some((p, v)) = obj.get("allowedFileDirectory")
        && let Some(d) = cx.string(v, &p).filter(|d| !d.is_empty())
    {
        let dir = std::path::PathBuf::from(&d);
        if !dir.is_absolute() || dir.parent().is_none() {
            cx.problem(&p, "must be an absolute path of a directory other than /");
        } else {
            if !dir.is_dir() {
                cx.warn(
                    &p,
                    "is not a directory (yet): inline blocks can read no file",
                );
            }
            out.allowed_file_directory = Some(dir);
        }
    }
    if let Some((p, v)) = obj.get("maxFileBytes") {
        match cx.integer(v, &p).map(usize::try_from) {
            Some(Ok(n)) if (1..=crate::files::MAX_VALUE_FILE_BYTES).contains(&n) => {
                out.max_file_bytes = n;
            }
            Some(_) => cx.problem(&p, "must be from 1 to 1048576"),
            None => {}
        }
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

/// `inline.allowedVariables`: a list of names (each usable in any key), or a mapping of names
/// to the keys each may appear in (`{OIDC_CLIENT_SECRET: [Provider.ClientSecret]}`; an empty
/// list or null: any key). A name may also be `file:/absolute/path`: that one file, for
/// `${file:/absolute/path}` (never a directory or a pattern).
fn allowed_variables(v: &Value, path: &str, cx: &mut Cx<'_>) -> Vec<AllowedVariable> {
    let mut out: Vec<AllowedVariable> = Vec::new();
    let mut add = |name: String, keys: Vec<String>, p: &str, cx: &mut Cx<'_>| {
        let ok = match name.strip_prefix("file:") {
            Some(f) => f.starts_with('/') && !f.split('/').any(|c| c == ".." || c == "."),
            None => {
                name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }
        };
        if !ok {
            cx.problem(
                p,
                "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*) or file:/absolute/path",
            );
        } else if out.iter().any(|v| v.name == name) {
            cx.problem(p, "given twice");
        } else {
            out.push(AllowedVariable { name, keys });
        }
    };
    match v {
        Value::Mapping(m) => {
            for (k, keys) in m {
                let Value::String(name) = k else {
                    cx.problem(path, "keys must be variable names");
                    continue;
                };
                let p = join(path, name);
                let keys = match keys {
                    Value::Null => Vec::new(),
                    other => cx.string_list(other, &p).unwrap_or_default(),
                };
                add(name.clone(), keys, &p, cx);
            }
        }
        Value::Null => {}
        other => {
            // The walker reads the plain list (and refuses other shapes with its message).
            for (i, name) in cx
                .string_list(other, path)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                add(name, Vec::new(), &format!("{path}[{i}]"), cx);
            }
        }
    }
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
/// What the block may read of this process (`${NAME}`, files) is what `rules` allow.
pub fn parse_block(
    body: &[u8],
    name: &str,
    env: &Env<'_>,
    rules: &InlineConfig,
) -> Result<ParsedBlock, BlockError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BlockError::NotAnObject(format!("not JSON: {e}")))?;
    if !json.is_object() {
        return Err(BlockError::NotAnObject("not a JSON object".into()));
    }
    let mut value = serde_yaml_ng::to_value(&json)
        .map_err(|e| BlockError::NotAnObject(format!("not representable: {e}")))?;
    lists_of_objects(&mut value);
    parse_value(&value, name, env, rules)
}

/// [`parse_block`] on a tree already read (the golden-file tests compare YAML with JSON).
pub fn parse_value(
    value: &Value,
    name: &str,
    env: &Env<'_>,
    rules: &InlineConfig,
) -> Result<ParsedBlock, BlockError> {
    let mut cx = Cx::operator(env);
    cx.lenient = true;
    cx.reach = Reach::Inline(rules);
    finish_block(value, name, cx)
}

/// One middleware block of the YAML file, read as the file reads it (strict about lists, the
/// operator's reach): what the golden-file tests hold an inline block's parse against.
pub fn parse_yaml_block(
    value: &Value,
    name: &str,
    env: &Env<'_>,
) -> Result<ParsedBlock, BlockError> {
    finish_block(value, name, Cx::operator(env))
}

fn finish_block(value: &Value, name: &str, mut cx: Cx<'_>) -> Result<ParsedBlock, BlockError> {
    let parsed = parse_middleware(name, value, "", &mut cx);
    if cx.problems.is_empty()
        && let Some(config) = parsed
    {
        return Ok(ParsedBlock {
            config,
            warnings: cx.warnings,
        });
    }
    // A problem where a `${…}` value expanded could quote it (`"…" is not one of…`): only the
    // key path is told.
    let mut problems = cx.problems;
    for p in &mut problems {
        if cx
            .expanded
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env<'static> {
        Env {
            var: &|k| match k {
                "SECRET" => Some("sidecar-session-secret-0123456789abcdef".into()),
                "OTHER" => Some("value of other".into()),
                _ => None,
            },
            file: &|p| {
                if p == std::path::Path::new("/secret") {
                    Ok("top secret file content\n".into())
                } else {
                    Err(std::io::Error::other("no such file"))
                }
            },
            within: &crate::files::read_within,
        }
    }

    /// Rules that let blocks read `${SECRET}` (in `Secret` only) and `${OTHER}` (anywhere).
    fn rules() -> InlineConfig {
        InlineConfig {
            allowed_variables: vec![
                AllowedVariable {
                    name: "SECRET".into(),
                    keys: vec!["Secret".into()],
                },
                AllowedVariable {
                    name: "OTHER".into(),
                    keys: vec![],
                },
            ],
            ..InlineConfig::default()
        }
    }

    const BLOCK: &str = r#"{"Provider":{"ClientId":"app","Url":"https://idp.example/r","UsePkce":"true"},"Secret":"${SECRET}","Scopes":"openid, profile","Authorization":{"AssertClaims":{"1":{"Name":"b","AnyOf":"x,y"},"0":{"Name":"a","AllOf":["z"]}},"CheckOnEveryRequest":"false"},"SessionCookie":{"MaxAge":"3600","Secure":"false"}}"#;

    #[test]
    fn string_forms_and_indexed_maps_are_accepted() {
        let b = parse_block(BLOCK.as_bytes(), "inline:x", &env(), &rules()).unwrap();
        let c = b.config;
        assert_eq!(c.name, "inline:x");
        assert_eq!(c.scopes, ["openid", "profile"]);
        assert_eq!(c.secret.expose(), "sidecar-session-secret-0123456789abcdef");
        assert_eq!(c.session_cookie.max_age, 3600);
        assert!(!c.session_cookie.secure);
        assert_eq!(c.assert_claims.len(), 2);
        assert!(format!("{:?}", c.assert_claims[0]).contains("\"a\""));
        assert!(!c.check_on_every_request);
    }

    #[test]
    fn problems_carry_key_paths_and_never_echo_expanded_values() {
        let body = r#"{"Provider":{"Url":"${OTHER}","ClientId":""},"Secret":"short","Scopes":"profile","Bogus":"1","UnauthenticatedBehavior":"${OTHER}"}"#;
        let Err(BlockError::Invalid(problems)) =
            parse_block(body.as_bytes(), "m", &env(), &rules())
        else {
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
        assert!(!all.contains("value of other"), "{all}");
    }

    /// `PreviousSecrets` reads a variable only where `inline.allowedVariables` allows it for
    /// that key (a variable allowed in `Secret` is not allowed there), and never `${file:}`.
    #[test]
    fn previous_secrets_obey_the_inline_rules() {
        let block = |previous: &str| {
            BLOCK.replace(
                r#""Secret":"${SECRET}""#,
                &format!(
                    r#""Secret":"inline-block-new-secret-0123456789abcdef","PreviousSecrets":{previous}"#
                ),
            )
        };
        for refused in [r#"["${SECRET}"]"#, r#"["${file:/secret}"]"#] {
            let Err(BlockError::Invalid(p)) =
                parse_block(block(refused).as_bytes(), "m", &env(), &rules())
            else {
                panic!("{refused} must be refused");
            };
            assert!(
                p.iter().any(|p| p.path.starts_with("PreviousSecrets")),
                "{p:#?}"
            );
            assert!(
                !format!("{p:?}").contains("sidecar-session-secret"),
                "{p:?}"
            );
        }
        let mut allowing = rules();
        allowing.allowed_variables[0]
            .keys
            .push("PreviousSecrets".into());
        let ok = parse_block(block(r#"["${SECRET}"]"#).as_bytes(), "m", &env(), &allowing)
            .unwrap()
            .config;
        assert_eq!(
            ok.previous_secrets
                .iter()
                .map(Secret::expose)
                .collect::<Vec<_>>(),
            ["sidecar-session-secret-0123456789abcdef"]
        );
        // The lenient list forms of a block work too.
        let ok = parse_block(block(r#""${SECRET}""#).as_bytes(), "m", &env(), &allowing)
            .unwrap()
            .config;
        assert_eq!(ok.previous_secrets.len(), 1);
    }

    /// Every way a block could reach into the process, refused by default with the key named
    /// and nothing read: `${file:}`, a variable not listed, a listed one in another key,
    /// `FilePath` and `CABundleFile` without an allowed directory.
    #[test]
    fn blocks_reach_nothing_of_the_process_by_default() {
        let opened = std::cell::Cell::new(0);
        let read = std::cell::RefCell::new(Vec::new());
        let file = |_: &std::path::Path| {
            opened.set(opened.get() + 1);
            Ok("top secret file content".to_string())
        };
        let var = |k: &str| {
            read.borrow_mut().push(k.to_string());
            Some("value-from-the-environment".to_string())
        };
        let env = Env {
            var: &var,
            file: &file,
            within: &crate::files::read_within,
        };
        let body = r#"{"Provider":{"Url":"https://idp.example","ClientId":"a","ClientSecret":"${file:/run/secrets/x}","CABundleFile":"/etc/ssl/certs/ca-certificates.crt"},"Secret":"${SECRET}","AuthorizationParams":{"x":"${HOME}"},"Headers":[{"Name":"X","Value":"${SECRET}"}],"ErrorPages":{"Unauthenticated":{"FilePath":"/proc/self/environ"}}}"#;
        for rules in [InlineConfig::default(), rules()] {
            let Err(BlockError::Invalid(problems)) =
                parse_block(body.as_bytes(), "m", &env, &rules)
            else {
                panic!("must be refused");
            };
            let by_path = |p: &str| {
                problems
                    .iter()
                    .find(|x| x.path == p)
                    .map(|x| x.message.clone())
                    .unwrap_or_else(|| panic!("{p} missing in {problems:#?}"))
            };
            assert!(by_path("Provider.ClientSecret").contains("${file:…} is not allowed"));
            assert!(by_path("AuthorizationParams.x").contains("${HOME} is not in"));
            assert!(by_path("Provider.CABundleFile").contains("inline.allowedFileDirectory"));
            assert!(
                by_path("ErrorPages.Unauthenticated.FilePath")
                    .contains("inline.allowedFileDirectory")
            );
            let all = format!("{problems:?}");
            for leaked in [
                "top secret",
                "value-from-the-environment",
                "/proc",
                "/etc/ssl",
            ] {
                assert!(!all.contains(leaked), "{leaked}: {all}");
            }
        }
        // The defaults read no variable at all; the rules above read SECRET for Secret only.
        assert_eq!(opened.get(), 0);
        assert_eq!(*read.borrow(), ["SECRET"]);
        let Err(BlockError::Invalid(p)) = parse_block(body.as_bytes(), "m", &env, &rules()) else {
            panic!()
        };
        let header = p.iter().find(|x| x.path == "Headers[0].Value").unwrap();
        assert!(
            header.message.contains("allows it in: Secret"),
            "{}",
            header.message
        );
    }

    #[test]
    fn an_allowed_directory_serves_pages_and_nothing_outside_it() {
        let dir = std::env::temp_dir().join(format!("toas-inline-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("401.html"), "<p>{{ .StatusText }}</p>").unwrap();
        let rules = InlineConfig {
            allowed_file_directory: Some(dir.clone()),
            max_file_bytes: 1024,
            ..InlineConfig::default()
        };
        let block = |file: &str| {
            format!(
                r#"{{"Provider":{{"Url":"https://idp.example","ClientId":"a"}},"Secret":"inline-block-secret-0123456789abcdefgh","ErrorPages":{{"Unauthenticated":{{"FilePath":"{file}"}}}}}}"#
            )
        };
        let ok = parse_block(block("401.html").as_bytes(), "m", &env(), &rules);
        assert!(ok.is_ok(), "{ok:?}");
        let messages: Vec<String> = ["/etc/hostname", "../401.html", "nope.html", "/dev/zero"]
            .iter()
            .map(|f| {
                let Err(BlockError::Invalid(p)) =
                    parse_block(block(f).as_bytes(), "m", &env(), &rules)
                else {
                    panic!("{f} must be refused")
                };
                assert_eq!(p.len(), 1, "{p:#?}");
                p[0].message.clone()
            })
            .collect();
        // One message whatever the cause: no oracle for which paths exist.
        assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:#?}");
        std::fs::write(dir.join("big.html"), "x".repeat(2000)).unwrap();
        assert!(parse_block(block("big.html").as_bytes(), "m", &env(), &rules).is_err());
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
            "inline:\n  registrationToken: ${file:/secret}\n  allowedProviderUrls: [https://idp.example/r/]\n  allowedVariables: {A: [Provider.ClientSecret], B: null}\n  allowedFileDirectory: /srv/pages\n  maxFileBytes: 4096\n  maxBlocks: 3\n  maxBlockBytes: 2048\n",
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
        assert_eq!(
            c.allowed_variables,
            [
                AllowedVariable {
                    name: "A".into(),
                    keys: vec!["Provider.ClientSecret".into()]
                },
                AllowedVariable {
                    name: "B".into(),
                    keys: vec![]
                }
            ]
        );
        assert_eq!(
            c.allowed_file_directory.as_deref(),
            Some(std::path::Path::new("/srv/pages"))
        );
        assert_eq!(c.max_file_bytes, 4096);
        let plain = super::super::parse("inline:\n  allowedVariables: [A, B]\n", &env)
            .unwrap()
            .config
            .inline;
        assert_eq!(plain.allowed_variables.len(), 2);
        assert!(plain.allowed_variables.iter().all(|v| v.keys.is_empty()));
        assert!(!format!("{c:?}").contains("top secret"));
        let p = super::super::parse(
            "inline:\n  registrationToken: short\n  maxBlocks: 0\n  maxBlockBytes: 10\n  allowedProviderUrls: [nope]\n  allowedVariables: [\"A B\", ok, ok]\n  allowedFileDirectory: relative/dir\n  maxBlokcs: 1\n",
            &env,
        )
        .unwrap_err();
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "inline.registrationToken",
                "inline.allowedProviderUrls[0]",
                "inline.allowedVariables[0]",
                "inline.allowedVariables[2]",
                "inline.allowedFileDirectory",
                "inline.maxBlocks",
                "inline.maxBlockBytes",
                "inline.maxBlokcs"
            ],
            "{p:#?}"
        );
        assert!(p[7].message.contains("did you mean maxBlocks"), "{p:#?}");
    }

    #[test]
    fn non_objects_are_not_blocks() {
        for body in ["[]", "\"x\"", "{", ""] {
            assert!(matches!(
                parse_block(body.as_bytes(), "m", &env(), &rules()),
                Err(BlockError::NotAnObject(_))
            ));
        }
    }
}
