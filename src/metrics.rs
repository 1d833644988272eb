//! Decision counters and their Prometheus text rendering.
//!
//! Plain atomics rather than a metrics framework: the hot path pays one relaxed increment, and
//! the exposition format is simple enough to write directly. Served only on `metricsListen`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// What a request ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with identity headers.
    Allowed,
    /// 200 because `BypassAuthenticationRule` matched.
    Bypassed,
    /// 200 because a `Forward` behaviour let the request through.
    Forwarded,
    /// 302 to the IdP.
    LoginRedirect,
    /// 302 after a successful callback.
    CallbackOk,
    /// 302 after logout.
    Logout,
    /// 401.
    Unauthenticated,
    /// 403.
    Forbidden,
    /// 400 (bad input, bad state, refused redirect).
    BadRequest,
    /// Login failed at or after the IdP (401 from the callback).
    LoginFailed,
    /// 503: IdP unavailable.
    IdpUnavailable,
    /// 503: session store (Redis) unavailable.
    StoreUnavailable,
    /// 500.
    Internal,
}

const ALL: [(Outcome, &str); 13] = [
    (Outcome::Allowed, "allowed"),
    (Outcome::Bypassed, "bypassed"),
    (Outcome::Forwarded, "forwarded"),
    (Outcome::LoginRedirect, "login_redirect"),
    (Outcome::CallbackOk, "callback_ok"),
    (Outcome::Logout, "logout"),
    (Outcome::Unauthenticated, "unauthenticated"),
    (Outcome::Forbidden, "forbidden"),
    (Outcome::BadRequest, "bad_request"),
    (Outcome::LoginFailed, "login_failed"),
    (Outcome::IdpUnavailable, "idp_unavailable"),
    (Outcome::StoreUnavailable, "store_unavailable"),
    (Outcome::Internal, "internal_error"),
];

impl Outcome {
    /// The outcome an error counts as.
    pub fn from_error(e: &Error) -> Outcome {
        match e {
            Error::Unauthenticated => Outcome::Unauthenticated,
            Error::Forbidden => Outcome::Forbidden,
            Error::IdpUnavailable(_) => Outcome::IdpUnavailable,
            Error::StoreUnavailable(_) => Outcome::StoreUnavailable,
            Error::Internal(_) => Outcome::Internal,
            Error::IdpError { .. } | Error::InvalidIdToken(_) | Error::ExchangeRefused(_) => {
                Outcome::LoginFailed
            }
            _ => Outcome::BadRequest,
        }
    }

    fn index(self) -> usize {
        ALL.iter().position(|(o, _)| *o == self).unwrap_or(0)
    }
}

/// One middleware's counters.
#[derive(Debug, Default)]
pub struct Counters {
    by_outcome: [AtomicU64; 13],
}

impl Counters {
    /// Counts one request.
    pub fn count(&self, o: Outcome) {
        if let Some(c) = self.by_outcome.get(o.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current value for an outcome.
    pub fn get(&self, o: Outcome) -> u64 {
        self.by_outcome
            .get(o.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Renders counters for `(middleware, counters, ready)` triples in the Prometheus text format.
pub fn render<'a>(items: impl Iterator<Item = (&'a str, &'a Counters, bool)>) -> String {
    let mut out = String::new();
    out.push_str("# HELP traefik_oidc_sidecar_requests_total forwardAuth requests by outcome.\n");
    out.push_str("# TYPE traefik_oidc_sidecar_requests_total counter\n");
    let mut ready_lines = String::new();
    for (name, c, ready) in items {
        for (o, label) in ALL {
            let _ = writeln!(
                out,
                "traefik_oidc_sidecar_requests_total{{middleware=\"{name}\",outcome=\"{label}\"}} {}",
                c.get(o)
            );
        }
        let _ = writeln!(
            ready_lines,
            "traefik_oidc_sidecar_provider_ready{{middleware=\"{name}\"}} {}",
            u8::from(ready)
        );
    }
    out.push_str("# HELP traefik_oidc_sidecar_provider_ready 1 when discovery and signing keys are loaded.\n");
    out.push_str("# TYPE traefik_oidc_sidecar_provider_ready gauge\n");
    out.push_str(&ready_lines);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let c = Counters::default();
        c.count(Outcome::Allowed);
        c.count(Outcome::Allowed);
        c.count(Outcome::Forbidden);
        let text = render([("default", &c, true)].into_iter());
        assert!(text.contains("middleware=\"default\",outcome=\"allowed\"} 2"));
        assert!(text.contains("outcome=\"forbidden\"} 1"));
        assert!(text.contains("traefik_oidc_sidecar_provider_ready{middleware=\"default\"} 1"));
    }
}
