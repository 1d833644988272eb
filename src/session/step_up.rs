//! Step-up: what a middleware's `StepUp` asks of the login behind a session, and whether a
//! session's login gives it.
//!
//! A session remembers two facts of the login that made it, whatever the scope keeps of the
//! claims: the ID token's `acr` (the Authentication Context Class Reference, OIDC Core §2) and
//! its `auth_time` (when the user last authenticated at the IdP). A middleware with `StepUp`
//! judges those itself on every request: it never trusts that it asked for them, since an IdP
//! may ignore `acr_values` (a voluntary claim, OIDC Core §5.5.1.1) and the user may have come
//! back through a login another middleware started.
//!
//! A login flow started for a step-up carries its [`StepUpFlow`], so whichever middleware of the
//! scope receives the callback can tell the session came back without what was asked: the
//! session is then marked ([`crate::session::Session::step_up_failed`]) and the asking middleware
//! answers 403 instead of sending the browser around again (no loop).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A middleware's `StepUp` block: the login it requires. At least one part is set (the config
/// parser refuses an empty block).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUp {
    /// `AcrValues`: the `acr` values accepted, any one suffices (compared exactly; an IdP's
    /// levels have no order the sidecar could know). Sent as `acr_values`, space-separated, in
    /// order of preference (OIDC Core §3.1.2.1). Empty: any `acr`.
    #[serde(default, rename = "a", skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    /// `MaxAge` in seconds: the user authenticated at most this long ago (`auth_time`). Sent as
    /// `max_age`; the ID token must then carry `auth_time` (OIDC Core §2, §3.1.2.1).
    #[serde(default, rename = "m", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

/// Why a session's login does not satisfy a [`StepUp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// The `acr` is absent or not one of `AcrValues`.
    Acr,
    /// `MaxAge` is set and `auth_time` is absent or too old: only a new authentication helps,
    /// so the request to the IdP carries `prompt=login`.
    Age,
}

/// The step-up a login flow was started for: the middleware that asked, and what it asked
/// (sealed in the flow cookie, so the callback judges by what was really sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpFlow {
    /// The middleware whose `StepUp` started the flow.
    #[serde(rename = "n")]
    pub middleware: String,
    /// What it asked for.
    #[serde(rename = "s")]
    pub ask: StepUp,
}

impl StepUp {
    /// Whether a login with this `acr` and `auth_time` satisfies the step-up at `now`. Age is
    /// reported before acr: a login too old needs a new authentication whatever its level.
    pub fn check(&self, acr: Option<&str>, auth_time: Option<u64>, now: u64) -> Result<(), Unmet> {
        if let Some(max) = self.max_age {
            // OIDC Core §3.1.2.1: with max_age, an ID token without auth_time is not good enough.
            match auth_time {
                Some(t) if now.saturating_sub(t) <= max => {}
                _ => return Err(Unmet::Age),
            }
        }
        if !self.acr_values.is_empty()
            && !acr.is_some_and(|a| self.acr_values.iter().any(|v| v == a))
        {
            return Err(Unmet::Acr);
        }
        Ok(())
    }

    /// The `acr_values` request parameter: the values space-separated (OIDC Core §3.1.2.1).
    pub fn acr_param(&self) -> Option<String> {
        (!self.acr_values.is_empty()).then(|| self.acr_values.join(" "))
    }

    /// The `WWW-Authenticate` challenge for an API request whose login is not enough (RFC 9470
    /// §3): `insufficient_user_authentication` with the `acr_values` and `max_age` to ask for.
    /// The values were checked at load (no quote, backslash or space), so they quote as is.
    pub fn challenge(&self) -> String {
        let mut c = String::from(
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\"",
        );
        if let Some(a) = self.acr_param() {
            c.push_str(&format!(", acr_values=\"{a}\""));
        }
        if let Some(m) = self.max_age {
            c.push_str(&format!(", max_age={m}"));
        }
        c
    }
}

/// The `acr` and `auth_time` of verified ID token (or bearer token) claims, as a session keeps
/// them. `auth_time` is a JSON number of seconds (OIDC Core §2); a fractional one is cut to the
/// second below, a negative or non-numeric one counts as absent (then MaxAge is unmet).
pub fn login_facts(claims: &Map<String, Value>) -> (Option<String>, Option<u64>) {
    let acr = claims
        .get("acr")
        .and_then(Value::as_str)
        .map(str::to_string);
    let auth_time = claims.get("auth_time").and_then(|v| {
        v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        })
    });
    (acr, auth_time)
}

/// Whether `v` can be an `acr` value in `acr_values` and a quoted RFC 9470 parameter: visible
/// ASCII without space (the list separator), `"` or `\`.
pub fn valid_acr_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 200
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(acr: &[&str], max_age: Option<u64>) -> StepUp {
        StepUp {
            acr_values: acr.iter().map(|s| s.to_string()).collect(),
            max_age,
        }
    }

    #[test]
    fn acr_must_be_one_of_the_values() {
        let s = ask(&["gold", "platinum"], None);
        assert_eq!(s.check(Some("gold"), None, 100), Ok(()));
        assert_eq!(s.check(Some("platinum"), None, 100), Ok(()));
        assert_eq!(s.check(Some("silver"), Some(99), 100), Err(Unmet::Acr));
        assert_eq!(s.check(Some("Gold"), None, 100), Err(Unmet::Acr));
        assert_eq!(s.check(None, None, 100), Err(Unmet::Acr));
        assert_eq!(s.acr_param().as_deref(), Some("gold platinum"));
    }

    #[test]
    fn max_age_needs_a_recent_auth_time() {
        let s = ask(&[], Some(300));
        assert_eq!(s.check(None, Some(1000), 1300), Ok(()));
        assert_eq!(s.check(None, Some(1000), 1301), Err(Unmet::Age));
        // Required when max_age was asked (OIDC Core §2).
        assert_eq!(s.check(Some("x"), None, 1000), Err(Unmet::Age));
        // A future auth_time (clock skew) is not "too old".
        assert_eq!(s.check(None, Some(2000), 1000), Ok(()));
        assert_eq!(s.acr_param(), None);
        // Both: age first.
        let both = ask(&["2"], Some(60));
        assert_eq!(both.check(Some("1"), Some(0), 1000), Err(Unmet::Age));
        assert_eq!(both.check(Some("1"), Some(990), 1000), Err(Unmet::Acr));
        assert_eq!(both.check(Some("2"), Some(990), 1000), Ok(()));
    }

    #[test]
    fn the_challenge_follows_rfc_9470() {
        assert_eq!(
            ask(&["gold", "2"], Some(60)).challenge(),
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\", acr_values=\"gold 2\", max_age=60"
        );
        assert!(!ask(&[], Some(5)).challenge().contains("acr_values"));
        assert!(valid_acr_value("urn:mace:incommon:iap:silver"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!valid_acr_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn login_facts_read_acr_and_auth_time() {
        let c = |v: Value| v.as_object().cloned().unwrap_or_default();
        let facts = login_facts(&c(serde_json::json!({"acr": "2", "auth_time": 1700000000})));
        assert_eq!(facts, (Some("2".into()), Some(1_700_000_000)));
        let facts = login_facts(&c(serde_json::json!({"acr": 2, "auth_time": 17.9})));
        assert_eq!(facts, (None, Some(17)));
        let facts = login_facts(&c(serde_json::json!({"auth_time": -5})));
        assert_eq!(facts, (None, None));
        assert_eq!(login_facts(&Map::new()), (None, None));
    }
}
