//! The walker every section parser uses: [`Cx`] collects problems and warnings with their key
//! paths and reads scalars (expanding `${VAR}` and `${file:/path}`), [`Obj`] reads a mapping with
//! case-insensitive keys and reports the keys nobody asked for, with a did-you-mean suggestion.
//! Also the small readers shared by several sections (`opt_string`, `url_list`,
//! `check_path_or_url`).

use std::path::Path;

use openidconnect::url::Url;
use serde_yaml_ng::Value;

use super::{Env, Problem};
use crate::inline::InlineConfig;

/// The walk's context: where `${…}` values come from, and the problems and warnings so far.
pub(super) struct Cx<'e> {
    pub(super) env: &'e Env<'e>,
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    /// Inline blocks only (see [`super::inline`]): a list may also be given as one
    /// comma-separated string or as a mapping of decimal indices, the forms Traefik's docker
    /// labels produce. The YAML file stays strict.
    pub(super) lenient: bool,
    /// What `${…}` references and file keys may reach: everything for the operator's own
    /// file, only what `inline:` allows for a block that came over the network.
    pub(super) reach: Reach<'e>,
    /// Key paths whose value came from `${…}` (an inline block's problems there are not
    /// echoed: the registrant must not read a value through a refusal).
    pub(super) expanded: Vec<String>,
}

/// Who wrote the configuration being walked, and so what its `${…}` and file keys may read.
#[derive(Clone, Copy)]
pub(super) enum Reach<'e> {
    /// The operator's file: any variable, any file (capped, regular files only).
    Operator,
    /// An inline block: configuration from the network, confined to the `inline:` rules.
    Inline(&'e InlineConfig),
}

impl<'e> Cx<'e> {
    /// A walk of the operator's own file.
    pub(super) fn operator(env: &'e Env<'e>) -> Self {
        Cx {
            env,
            problems: Vec::new(),
            warnings: Vec::new(),
            lenient: false,
            reach: Reach::Operator,
            expanded: Vec::new(),
        }
    }
}

impl Cx<'_> {
    pub(super) fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Expands a whole-value `${VAR}` or `${file:/path}`; anything else is literal. In an
    /// inline block only the variables `inline.allowedVariables` names expand (in the keys it
    /// allows), and `${file:}` never does: the refusal names the key, never a value.
    pub(super) fn expand(&mut self, raw: &str, path: &str) -> Option<String> {
        let Some(inner) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
            return Some(raw.to_string());
        };
        if let Reach::Inline(rules) = self.reach
            && let Err(why) = inline_may_expand(rules, inner, path)
        {
            self.problem(path, why);
            return None;
        }
        let value = if let Some(file) = inner.strip_prefix("file:") {
            match (self.env.file)(Path::new(file)) {
                Ok(s) => Some(s.trim().to_string()),
                // A block is told the file could not be read, not why.
                Err(_) if matches!(self.reach, Reach::Inline(_)) => {
                    self.problem(path, format!("cannot read ${{file:{file}}}"));
                    None
                }
                Err(e) => {
                    self.problem(path, format!("cannot read ${{file:{file}}}: {e}"));
                    None
                }
            }
        } else {
            match (self.env.var)(inner) {
                Some(v) => Some(v),
                None => {
                    // Failing here beats silently using the literal "${VAR}" as a secret.
                    self.problem(path, format!("environment variable {inner} is not set"));
                    None
                }
            }
        };
        self.expanded.push(path.to_string());
        value
    }

    /// Reads the file a key names (`FilePath`, `CABundleFile`, `caFile`). The operator's file
    /// reads any regular file (capped); an inline block only one inside
    /// `inline.allowedFileDirectory`, and every refusal reads alike (no oracle for which
    /// paths exist). The problem is reported at `path`.
    pub(super) fn read_file(&mut self, file: &str, path: &str) -> Option<String> {
        match self.reach {
            Reach::Operator => match (self.env.file)(Path::new(file)) {
                Ok(text) => Some(text),
                Err(e) => {
                    self.problem(path, format!("cannot read {file}: {e}"));
                    None
                }
            },
            Reach::Inline(rules) => {
                let Some(dir) = &rules.allowed_file_directory else {
                    self.problem(
                        path,
                        "an inline block may not read files: the sidecar's inline.allowedFileDirectory is not set",
                    );
                    return None;
                };
                match (self.env.within)(dir, file, rules.max_file_bytes) {
                    Ok(text) => Some(text),
                    Err(_) => {
                        self.problem(
                            path,
                            format!(
                                "must name a regular UTF-8 file of at most {} bytes inside the sidecar's inline.allowedFileDirectory",
                                rules.max_file_bytes
                            ),
                        );
                        None
                    }
                }
            }
        }
    }

    /// [`Cx::read_file`] of CA certificates: the file must hold at least one PEM certificate.
    pub(super) fn read_pem(&mut self, file: &str, path: &str) -> Option<String> {
        let pem = self.read_file(file, path)?;
        if pem.contains("-----BEGIN CERTIFICATE-----") {
            Some(pem)
        } else {
            self.problem(path, "no PEM certificate in the file");
            None
        }
    }

    pub(super) fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match v {
            Value::String(s) => self.expand(s, path),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => None,
            _ => {
                self.problem(path, "expected a string");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, v: &Value, path: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => {
                let s = self.expand(s, path)?;
                match s.to_ascii_lowercase().as_str() {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => {
                        self.problem(path, format!("expected true or false, got {s:?}"));
                        None
                    }
                }
            }
            Value::Null => None,
            _ => {
                self.problem(path, "expected true or false");
                None
            }
        }
    }

    pub(super) fn integer(&mut self, v: &Value, path: &str) -> Option<i64> {
        let parsed = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => self.expand(s, path)?.trim().parse().ok(),
            Value::Null => return None,
            _ => None,
        };
        if parsed.is_none() {
            self.problem(path, "expected an integer");
        }
        parsed
    }

    pub(super) fn string_list(&mut self, v: &Value, path: &str) -> Option<Vec<String>> {
        match v {
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    match item {
                        Value::Mapping(_) | Value::Sequence(_) | Value::Null => {
                            self.problem(&p, "expected a string");
                        }
                        _ => out.extend(self.string(item, &p)),
                    }
                }
                Some(out)
            }
            Value::String(s) if self.lenient => {
                let s = self.expand(s, path)?;
                Some(comma_list(&s))
            }
            Value::Mapping(_) if self.lenient => match indexed(v) {
                Some(items) => self.string_list(&Value::Sequence(items), path),
                None => {
                    self.problem(path, "expected a list of strings");
                    None
                }
            },
            Value::Null => None,
            _ => {
                self.problem(path, "expected a list of strings");
                None
            }
        }
    }

    pub(super) fn one_of<T: Copy>(
        &mut self,
        v: &Value,
        path: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(v, path)?;
        let found = options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&s))
            .map(|(_, t)| *t);
        if found.is_none() {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            self.problem(path, format!("{s:?} is not one of: {}", names.join(", ")));
        }
        found
    }
}

/// A YAML mapping read with case-insensitive keys; remembers which keys were used so the rest
/// can be reported as unknown.
pub(super) struct Obj<'v> {
    pub(super) path: String,
    pub(super) entries: Vec<(String, &'v Value)>,
    pub(super) used: Vec<bool>,
}

impl<'v> Obj<'v> {
    pub(super) fn new(v: &'v Value, path: &str, cx: &mut Cx<'_>) -> Option<Obj<'v>> {
        let Value::Mapping(m) = v else {
            cx.problem(path, "expected a mapping of keys to values");
            return None;
        };
        let mut entries: Vec<(String, &'v Value)> = Vec::with_capacity(m.len());
        for (k, val) in m {
            let key = match k {
                Value::String(s) => s.clone(),
                _ => {
                    cx.problem(path, "keys must be strings");
                    continue;
                }
            };
            if entries.iter().any(|(e, _)| e.eq_ignore_ascii_case(&key)) {
                cx.problem(&join(path, &key), "given twice (keys are case-insensitive)");
                continue;
            }
            entries.push((key, val));
        }
        let used = vec![false; entries.len()];
        Some(Obj {
            path: path.to_string(),
            entries,
            used,
        })
    }

    /// The value under `key` (case-insensitive) and its path.
    pub(super) fn get(&mut self, key: &str) -> Option<(String, &'v Value)> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(key))?;
        if let Some(u) = self.used.get_mut(i) {
            *u = true;
        }
        let (k, v) = self.entries.get(i)?;
        Some((join(&self.path, k), *v))
    }

    /// Reports the keys nobody asked for.
    pub(super) fn finish(self, known: &[&str], later: &[&str], cx: &mut Cx<'_>) {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let path = join(&self.path, key);
            if later.iter().any(|l| l.eq_ignore_ascii_case(key)) {
                cx.warn(
                    &path,
                    "traefik-oidc-auth key not implemented by this version of the sidecar; ignored",
                );
            } else {
                let mut msg = "unknown key".to_string();
                if let Some(s) = did_you_mean(key, known.iter().chain(later)) {
                    msg.push_str(&format!("; did you mean {s}?"));
                }
                cx.problem(&path, msg);
            }
        }
    }
}

/// A comma-separated list, each element trimmed; the empty string is the empty list (the
/// canonical form of the inline protocol).
pub(super) fn comma_list(s: &str) -> Vec<String> {
    if s.trim().is_empty() {
        return Vec::new();
    }
    s.split(',').map(|x| x.trim().to_string()).collect()
}

/// A mapping whose keys are all decimal indices (`"0"`, `"1"`…, as docker labels give a list),
/// as the list of its values ordered by index. `None` for any other mapping.
pub(super) fn indexed(v: &Value) -> Option<Vec<Value>> {
    let Value::Mapping(m) = v else {
        return None;
    };
    let mut items: Vec<(u64, Value)> = Vec::with_capacity(m.len());
    for (k, val) in m {
        let key = match k {
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()?
            }
            Value::Number(n) => n.as_u64()?,
            _ => return None,
        };
        items.push((key, val.clone()));
    }
    if items.is_empty() {
        return None;
    }
    items.sort_by_key(|(i, _)| *i);
    Some(items.into_iter().map(|(_, v)| v).collect())
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The known key closest to `key`, when it is close enough to be a typo.
pub(super) fn did_you_mean<'a>(
    key: &str,
    known: impl Iterator<Item = &'a &'a str>,
) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    known
        .map(|k| (levenshtein(&key, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// A list of redirect targets: each a path or an absolute http(s) URL.
pub(super) fn url_list(obj: &mut Obj<'_>, key: &str, cx: &mut Cx<'_>) -> Vec<String> {
    let Some((p, v)) = obj.get(key) else {
        return Vec::new();
    };
    let list = cx.string_list(v, &p).unwrap_or_default();
    for (i, u) in list.iter().enumerate() {
        check_path_or_url(u, &format!("{p}[{i}]"), true, cx);
    }
    list
}

pub(super) fn opt_string(obj: &mut Obj<'_>, key: &str, cx: &mut Cx<'_>) -> Option<String> {
    let (p, v) = obj.get(key)?;
    cx.string(v, &p)
}

/// A same-host path (`/x`) or, when `allow_absolute`, an absolute http(s) URL.
pub(super) fn check_path_or_url(s: &str, path: &str, allow_absolute: bool, cx: &mut Cx<'_>) {
    if s.starts_with('/') && !s.starts_with("//") && !s.contains('\\') {
        return;
    }
    if allow_absolute {
        if let Ok(u) = Url::parse(s)
            && matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
        {
            return;
        }
        cx.problem(
            path,
            "expected a path starting with / or an absolute http(s) URL",
        );
    } else {
        cx.problem(path, "expected a path starting with /");
    }
}

/// Whether an inline block may expand `${inner}` at `path`: when `inline.allowedVariables`
/// lists it exactly (`NAME`, or `file:/absolute/path` for one file), for any key or for this one
/// (list indices aside, case-insensitive: `Provider.ClientSecret`, `Headers.Value`). The answer
/// names the key and the reference the registrant wrote, never a value, and reads alike
/// whether a file exists or not.
fn inline_may_expand(rules: &InlineConfig, inner: &str, path: &str) -> Result<(), String> {
    let Some(allowed) = rules.allowed_variables.iter().find(|v| v.name == inner) else {
        return Err(if inner.starts_with("file:") {
            "${file:…} is not allowed in an inline block: the sidecar reads no file for a block unless inline.allowedVariables lists that exact file".into()
        } else {
            format!(
                "${{{inner}}} is not in the sidecar's inline.allowedVariables (an inline block reads no environment variable the operator did not list)"
            )
        });
    };
    if allowed.keys.is_empty()
        || allowed
            .keys
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&key_of(path)))
    {
        Ok(())
    } else {
        Err(format!(
            "${{{inner}}} may not be used in this key (inline.allowedVariables allows it in: {})",
            allowed.keys.join(", ")
        ))
    }
}

/// A walker path without its list indices: `Headers[0].Value` is `Headers.Value`.
fn key_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}
