//! A login-time verdict, bound to the rules that made it.
//!
//! With `CheckOnEveryRequest: false` a middleware's `AssertClaims` run when the session is made
//! (login or refresh) and the session remembers the answer ([`super::Session::verdicts`]). A
//! remembered answer is only worth what the rules behind it are worth: after a configuration
//! reload changes the middleware's assertions, a `true` reached under the old rules must not
//! admit anyone under the new ones. So each verdict carries a short fingerprint of the rules
//! ([`rules_print`]); a verdict whose fingerprint is not the middleware's current one is not
//! used, and the middleware judges the session's claims again (see `Middleware::authorized`).
//!
//! Encoding (the session JSON, cookie or Redis record): one string, `+` (held) or `-` (did not
//! hold) followed by the fingerprint in unpadded base64url, e.g. `"+q83vEjRW"`. Sessions written
//! before fingerprints existed carry a bare JSON boolean: it still decodes, as a verdict without
//! a fingerprint, which matches no rules and is therefore never used. Anything else is refused,
//! so the session does not open (anonymous: fail closed).

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::authz::ClaimAssertion;

/// The fingerprint of a set of assertion rules: the first bytes of a SHA-256. Six bytes keep
/// the cookie small (one per login-time judge of the scope); a collision would need the
/// operator to write two rule sets that collide, and still only re-uses a verdict of the same
/// middleware.
pub type RulesPrint = [u8; 6];

/// One login-time verdict of one middleware (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the assertions held.
    pub held: bool,
    /// The fingerprint of the assertions that were checked; `None` for a verdict written before
    /// fingerprints existed (never used).
    pub rules: Option<RulesPrint>,
}

impl Verdict {
    /// The verdict `held`, reached under the rules fingerprinted `rules`.
    pub fn new(held: bool, rules: RulesPrint) -> Self {
        Verdict {
            held,
            rules: Some(rules),
        }
    }

    /// The verdict, when it was reached under exactly the rules fingerprinted `rules`.
    pub fn under(&self, rules: &RulesPrint) -> Option<bool> {
        (self.rules.as_ref() == Some(rules)).then_some(self.held)
    }
}

impl fmt::Debug for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// The fingerprint of `assertions`, in order: each one's `Name` as written, then its `AnyOf`
/// and `AllOf` lists, every string and list length-prefixed so that no two different rule sets
/// hash the same bytes. Anything that can change an assertion's answer is in it; a rewrite that
/// cannot (another spelling of the same path) only costs one evaluation on the claims.
pub fn rules_print(assertions: &[ClaimAssertion]) -> RulesPrint {
    let mut h = Sha256::new();
    h.update(b"traefik-oidc-sidecar/v1/assert-claims\0");
    h.update((assertions.len() as u64).to_be_bytes());
    for a in assertions {
        let (any_of, all_of) = a.lists();
        h.update((a.name.len() as u64).to_be_bytes());
        h.update(a.name.as_bytes());
        for list in [any_of, all_of] {
            h.update((list.len() as u64).to_be_bytes());
            for v in list {
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
        }
    }
    let digest = h.finalize();
    let mut out = [0u8; 6];
    out.copy_from_slice(&digest[..6]);
    out
}

impl Verdict {
    fn encode(&self) -> String {
        let sign = if self.held { '+' } else { '-' };
        let print = self
            .rules
            .map(|r| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r))
            .unwrap_or_default();
        format!("{sign}{print}")
    }

    fn decode(s: &str) -> Option<Self> {
        let held = match s.as_bytes().first()? {
            b'+' => true,
            b'-' => false,
            _ => return None,
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.get(1..)?)
            .ok()?;
        Some(Verdict {
            held,
            rules: Some(bytes.try_into().ok()?),
        })
    }
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

/// What the session JSON may hold for a verdict.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    /// Before fingerprints: the bare answer.
    Legacy(bool),
    /// `+`/`-` and the fingerprint.
    Bound(String),
}

impl<'de> Deserialize<'de> for Verdict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Stored::deserialize(d)? {
            Stored::Legacy(held) => Ok(Verdict { held, rules: None }),
            Stored::Bound(s) => Verdict::decode(&s)
                .ok_or_else(|| serde::de::Error::custom("malformed login-time verdict")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, any: &[&str], all: &[&str]) -> ClaimAssertion {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        ClaimAssertion::new(name, v(any), v(all)).unwrap()
    }

    #[test]
    fn the_fingerprint_changes_with_every_part_of_the_rules() {
        let base = rules_print(&[group("groups", &["a"], &[])]);
        assert_eq!(base, rules_print(&[group("groups", &["a"], &[])]));
        for (what, other) in [
            ("another value", vec![group("groups", &["b"], &[])]),
            ("AnyOf moved to AllOf", vec![group("groups", &[], &["a"])]),
            ("another claim", vec![group("roles", &["a"], &[])]),
            ("one value more", vec![group("groups", &["a", "b"], &[])]),
            (
                "one assertion more",
                vec![group("groups", &["a"], &[]), group("email", &[], &[])],
            ),
            ("no assertions", vec![]),
            // Length prefixes: the same characters split differently are other rules.
            ("split values", vec![group("groups", &["", "a"], &[])]),
        ] {
            assert_ne!(rules_print(&other), base, "{what}");
        }
    }

    #[test]
    fn verdicts_encode_compactly_and_old_or_odd_ones_never_count() {
        let print = rules_print(&[group("groups", &["a"], &[])]);
        for held in [true, false] {
            let v = Verdict::new(held, print);
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json.len(), 2 + 1 + 8, "{json}");
            let back: Verdict = serde_json::from_str(&json).unwrap();
            assert_eq!(back, v);
            assert_eq!(back.under(&print), Some(held));
            assert_eq!(back.under(&[0; 6]), None, "other rules: not used");
        }
        // A session written before fingerprints: decodes, is never used.
        let old: Verdict = serde_json::from_str("true").unwrap();
        assert_eq!(old.under(&print), None);
        // A whole session of that time opens, with a verdict that never counts.
        let s: crate::session::Session = serde_json::from_str(
            r#"{"sub":"u","claims":{},"iat":1,"exp":2,"v":{"m":true,"n":false}}"#,
        )
        .unwrap();
        assert!(s.verdicts.values().all(|v| v.under(&print).is_none()));
        // Anything else does not decode (the session does not open).
        for bad in [
            r#""""#,
            r#""+""#,
            r#""*AAAAAAAA""#,
            r#""+AAAA""#,
            "1",
            "null",
        ] {
            assert!(serde_json::from_str::<Verdict>(bad).is_err(), "{bad}");
        }
    }
}
