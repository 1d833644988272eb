//! The silent-login marker: a short-lived cookie of the scope saying "this browser tried a
//! `prompt=none` login and the IdP had no session for it" (OIDC Core §3.1.2.6 `login_required`
//! and friends), so the next navigations are forwarded anonymously instead of being sent to the
//! IdP again: never a loop, never a round trip per page.
//!
//! The marker is named `<prefix>.silent`, so both doors strip it from the upstream request like
//! every other cookie of the scope. Its value is the Unix time until which it holds, sealed like
//! a session (the name as associated data): the lifetime is enforced here, not only by the
//! browser's `Max-Age`, and a value planted by anyone but the sidecar does not open (it then
//! counts as absent: the worst a forged or stale marker can do is one more silent attempt).

use super::codec::CookieCodec;
use super::{RequestCookies, SameSite};
use crate::error::Error;

/// How long a failed silent login keeps a browser from trying again, in seconds. Short enough
/// that a visitor who logs in at the IdP through another application is recognised here within
/// minutes; long enough that browsing a site anonymously costs one IdP round trip per five
/// minutes at most.
pub const SILENT_RETRY_AFTER: u64 = 300;

impl CookieCodec {
    /// `<prefix>.silent`.
    fn marker_name(&self) -> String {
        format!("{}.silent", self.prefix())
    }

    /// The `Set-Cookie` value of a marker holding until `now + SILENT_RETRY_AFTER`.
    pub fn silent_marker(&self, now: u64) -> Result<String, Error> {
        let name = self.marker_name();
        let until = now.saturating_add(SILENT_RETRY_AFTER).to_string();
        let sealed = self
            .seal(&name, until.as_bytes())
            .ok_or_else(|| Error::Internal("sealing failed".into()))?;
        // Lax: the marker is set on the callback's answer, at the end of a navigation that
        // started at the IdP, and must come back on the redirect to the page.
        Ok(self.cookie(
            name,
            sealed,
            Some(SILENT_RETRY_AFTER as i64),
            self.path(),
            SameSite::Lax,
        ))
    }

    /// Whether the request carries a marker of this scope that still holds at `now`.
    pub fn silent_marker_holds(&self, req: &RequestCookies<'_>, now: u64) -> bool {
        let name = self.marker_name();
        req.unique(&name)
            .and_then(|v| self.open(&name, std::iter::once(v)))
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            // A marker reaching further than one lifetime ahead was not made by this rule.
            .is_some_and(|until| until > now && until <= now.saturating_add(SILENT_RETRY_AFTER))
    }

    /// The `Set-Cookie` value expiring the marker, when the request carries one (a real login
    /// ends the wait).
    pub fn clear_silent_marker(&self, req: &RequestCookies<'_>) -> Option<String> {
        let name = self.marker_name();
        req.pairs
            .iter()
            .any(|(n, _)| *n == name)
            .then(|| self.removal(name, self.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::codec::tests::{browser, codec};

    fn request(header: &str) -> RequestCookies<'_> {
        RequestCookies::parse([header].into_iter())
    }

    #[test]
    fn a_marker_holds_for_its_lifetime_only() {
        let c = codec("P");
        let set = c.silent_marker(1000).unwrap();
        assert!(set.starts_with("P.silent="), "{set}");
        assert!(set.contains("Max-Age=300"), "{set}");
        let h = browser(std::slice::from_ref(&set));
        let req = request(&h);
        assert!(c.silent_marker_holds(&req, 1000));
        assert!(c.silent_marker_holds(&req, 1000 + SILENT_RETRY_AFTER - 1));
        assert!(!c.silent_marker_holds(&req, 1000 + SILENT_RETRY_AFTER));
        // A clock set back past a whole lifetime: the marker no longer counts.
        assert!(!c.silent_marker_holds(&req, 1000 - 1));
        assert!(c.is_ours("P.silent"), "stripped before the upstream");
    }

    #[test]
    fn forged_moved_or_foreign_markers_do_not_hold() {
        let c = codec("P");
        assert!(!c.silent_marker_holds(&request("P.silent=1999999999"), 1000));
        assert!(!c.silent_marker_holds(&request(""), 1000));
        // Another scope's marker (another prefix, so another key and name).
        let other = codec("Q");
        let h = browser(&[other.silent_marker(1000).unwrap()]);
        assert!(!c.silent_marker_holds(&request(&h.replace("Q.", "P.")), 1000));
        // A sealed value of another cookie of the scope moved to the marker's name.
        let flowish = c.seal("P.session", b"1100").unwrap();
        assert!(!c.silent_marker_holds(&request(&format!("P.silent={flowish}")), 1000));
        // Twice: ambiguous, absent.
        let one = browser(&[c.silent_marker(1000).unwrap()]);
        assert!(!c.silent_marker_holds(&request(&format!("{one}; {one}")), 1000));
    }

    #[test]
    fn a_marker_is_cleared_only_when_present() {
        let c = codec("P");
        assert_eq!(c.clear_silent_marker(&request("a=1")), None);
        let h = browser(&[c.silent_marker(1000).unwrap()]);
        let clear = c.clear_silent_marker(&request(&h)).unwrap();
        assert!(clear.starts_with("P.silent=;"), "{clear}");
        assert!(clear.contains("Max-Age=0"), "{clear}");
    }
}
