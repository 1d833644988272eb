//! Claim assertions (`Authorization.AssertClaims`): who may pass once logged in.
//!
//! Semantics follow traefik-oidc-auth so pasted rules mean the same thing: every assertion must
//! hold (AND); `Name` is a JSONPath below `$.`; a `Name` alone asserts presence; `AnyOf` passes
//! when any selected value (or any element of a selected array) equals one of the listed
//! strings; `AllOf` passes when every listed string is present among them. Values compare as
//! strings (`true`, `42`), exactly and case-sensitively: a claim `Admins` is not `admins`.

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    Wildcard,
}

/// The JSONPath subset claim names use: `a.b`, `['x:y']`, `["x"]`, `[0]`, `[*]`, `.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    /// Parses a path written below `$.` (a leading `$.` or `$` is accepted too).
    pub fn parse(input: &str) -> Result<JsonPath, String> {
        let s = input.trim();
        let s = s
            .strip_prefix("$.")
            .or_else(|| s.strip_prefix('$'))
            .unwrap_or(s);
        if s.is_empty() {
            return Err("empty path".into());
        }
        let b = s.as_bytes();
        let mut segments = Vec::new();
        let mut i = 0;
        let mut expect_name = true;
        while i < b.len() {
            match b.get(i) {
                Some(b'[') => {
                    let close = s[i..].find(']').map(|c| c + i).ok_or("unclosed [")?;
                    let inner = s[i + 1..close].trim();
                    let seg = if inner == "*" {
                        Segment::Wildcard
                    } else if let Some(q) = quoted(inner) {
                        Segment::Key(q.to_string())
                    } else if let Ok(n) = inner.parse::<usize>() {
                        Segment::Index(n)
                    } else {
                        return Err(format!("cannot read [{inner}]"));
                    };
                    segments.push(seg);
                    i = close + 1;
                    expect_name = false;
                }
                Some(b'.') => {
                    if expect_name {
                        return Err("empty name before '.'".into());
                    }
                    i += 1;
                    expect_name = true;
                    if i >= b.len() {
                        return Err("path ends with '.'".into());
                    }
                }
                Some(_) => {
                    if !expect_name {
                        return Err(format!("expected '.' or '[' at {i}"));
                    }
                    let end = s[i..].find(['.', '[']).map(|e| e + i).unwrap_or(s.len());
                    let name = &s[i..end];
                    if name == "*" {
                        segments.push(Segment::Wildcard);
                    } else if name.contains([']', '\'', '"', ' ']) {
                        return Err(format!("invalid name {name:?}"));
                    } else {
                        segments.push(Segment::Key(name.to_string()));
                    }
                    i = end;
                    expect_name = false;
                }
                None => break,
            }
        }
        Ok(JsonPath { segments })
    }

    /// The top-level claim this path reads, if it names one (used to keep only needed claims).
    pub fn root_claim(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Every value the path selects.
    pub fn select<'a>(&self, claims: &'a Map<String, Value>) -> Vec<&'a Value> {
        let mut current: Vec<&'a Value> = Vec::new();
        let mut segs = self.segments.iter();
        match segs.next() {
            Some(Segment::Key(k)) => current.extend(claims.get(k)),
            Some(Segment::Wildcard) => current.extend(claims.values()),
            Some(Segment::Index(_)) | None => return current,
        }
        for seg in segs {
            let mut next = Vec::new();
            for v in current {
                match (seg, v) {
                    (Segment::Key(k), Value::Object(m)) => next.extend(m.get(k)),
                    (Segment::Index(n), Value::Array(a)) => next.extend(a.get(*n)),
                    (Segment::Wildcard, Value::Array(a)) => next.extend(a.iter()),
                    (Segment::Wildcard, Value::Object(m)) => next.extend(m.values()),
                    _ => {}
                }
            }
            current = next;
        }
        current
    }
}

fn quoted(s: &str) -> Option<&str> {
    s.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

/// One `AssertClaims` entry.
#[derive(Debug, Clone)]
pub struct ClaimAssertion {
    /// The path as written (for logs).
    pub name: String,
    path: JsonPath,
    any_of: Vec<String>,
    all_of: Vec<String>,
}

impl ClaimAssertion {
    /// Builds an assertion; fails when the path does not parse.
    pub fn new(name: &str, any_of: Vec<String>, all_of: Vec<String>) -> Result<Self, String> {
        Ok(ClaimAssertion {
            name: name.to_string(),
            path: JsonPath::parse(name)?,
            any_of,
            all_of,
        })
    }

    /// Its `AnyOf` and `AllOf` lists: with the path, what decides its answer (see
    /// `session::verdict::rules_print`).
    pub fn lists(&self) -> (&[String], &[String]) {
        (&self.any_of, &self.all_of)
    }

    /// The top-level claim the assertion reads.
    pub fn root_claim(&self) -> Option<&str> {
        self.path.root_claim()
    }

    /// Whether the claims satisfy this assertion.
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        let selected = self.path.select(claims);
        if selected.is_empty() {
            return false;
        }
        let mut values: Vec<String> = Vec::new();
        for v in &selected {
            match v {
                Value::Array(a) => values.extend(a.iter().filter_map(scalar)),
                other => values.extend(scalar(other)),
            }
        }
        let any_ok = self.any_of.is_empty() || self.any_of.iter().any(|w| values.contains(w));
        let all_ok = self.all_of.iter().all(|w| values.contains(w));
        any_ok && all_ok
    }
}

/// A scalar as the string it is compared as; objects, arrays and null compare as nothing.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether every assertion holds (no assertions: everyone who logged in is authorized).
pub fn authorized(assertions: &[ClaimAssertion], claims: &Map<String, Value>) -> bool {
    assertions.iter().all(|a| a.holds(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        match json!({
            "sub": "u1",
            "email": "a@example.com",
            "email_verified": true,
            "groups": ["admins", "users"],
            "group_str": "admins,users",
            "realm_access": {"roles": ["offline", "editor"]},
            "my:zitadel:grants": ["x"],
            "level": 3,
            "orgs": [{"name": "acme", "roles": ["owner"]}, {"name": "other", "roles": []}]
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn assertion_table() {
        let cases: &[(&str, &[&str], &[&str], bool)] = &[
            ("groups", &[], &[], true),
            ("missing", &[], &[], false),
            ("groups", &["admins"], &[], true),
            ("groups", &["nope", "users"], &[], true),
            ("groups", &["Admins"], &[], false),
            ("groups", &[], &["admins", "users"], true),
            ("groups", &[], &["admins", "ops"], false),
            ("groups", &["users"], &["admins"], true),
            ("group_str", &["admins"], &[], false),
            ("email", &["a@example.com"], &[], true),
            ("email", &["A@example.com"], &[], false),
            ("email_verified", &["true"], &[], true),
            ("level", &["3"], &[], true),
            ("realm_access.roles", &["editor"], &[], true),
            ("realm_access.roles[0]", &["offline"], &[], true),
            ("realm_access.roles[5]", &[], &[], false),
            ("['my:zitadel:grants']", &["x"], &[], true),
            ("orgs[*].name", &["acme"], &[], true),
            ("orgs[*].roles", &["owner"], &[], true),
            ("$.groups", &["admins"], &[], true),
        ];
        let c = claims();
        for (name, any, all, want) in cases {
            let a = ClaimAssertion::new(name, v(any), v(all)).unwrap();
            assert_eq!(a.holds(&c), *want, "{name} any={any:?} all={all:?}");
        }
    }

    #[test]
    fn all_assertions_must_hold() {
        let c = claims();
        let ok = ClaimAssertion::new("groups", v(&["admins"]), vec![]).unwrap();
        let bad = ClaimAssertion::new("groups", v(&["ops"]), vec![]).unwrap();
        assert!(authorized(std::slice::from_ref(&ok), &c));
        assert!(!authorized(&[ok, bad], &c));
        assert!(authorized(&[], &c));
    }

    #[test]
    fn path_parse_errors() {
        for bad in ["", "a..b", "a.", "[", "a[x]", "a]b", ".a"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(JsonPath::parse("a.b").unwrap().root_claim(), Some("a"));
    }
}
