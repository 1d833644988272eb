//! Decision and connection counters, the decision latency histogram, and their Prometheus text
//! rendering.
//!
//! Plain atomics rather than a metrics framework: the hot path pays a few relaxed increments,
//! and the exposition format is simple enough to write directly. Served only on
//! `metricsListen`. Every family is listed with its labels in docs/observability.md.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::telemetry::histogram::{self, Histogram};

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
            Error::Unauthenticated | Error::StepUpRequired(_) => Outcome::Unauthenticated,
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

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        ALL.get(self.index()).map_or("internal_error", |(_, l)| l)
    }
}

/// One middleware's counters and decision latencies.
#[derive(Debug, Default)]
pub struct Counters {
    by_outcome: [AtomicU64; 13],
    latency: [Histogram; 13],
}

impl Counters {
    /// Counts one request.
    pub fn count(&self, o: Outcome) {
        if let Some(c) = self.by_outcome.get(o.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how long a decision that ended as `o` took.
    pub fn observe(&self, o: Outcome, took: std::time::Duration) {
        if let Some(h) = self.latency.get(o.index()) {
            h.observe(took);
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
    let mut latency = String::new();
    let latency_name = "traefik_oidc_sidecar_decision_duration_seconds";
    histogram::header(
        &mut latency,
        latency_name,
        "forwardAuth decision time by middleware and outcome (from the request's headers to the answer).",
    );
    for (name, c, ready) in items {
        for ((_, label), h) in ALL.iter().zip(&c.latency) {
            h.render(
                &mut latency,
                latency_name,
                &format!("middleware=\"{name}\",outcome=\"{label}\""),
            );
        }
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
    out.push_str(&latency);
    out
}

/// Why the serving layer closed a new connection at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer's address already holds its share of connections.
    PerAddress,
    /// Untrusted peers together hold their whole share (the rest is kept for trusted proxies).
    UntrustedBudget,
    /// The listener holds its maximum number of connections.
    Capacity,
}

/// Which bound closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The request head was not complete within the header timeout.
    Header,
    /// A kept-alive connection sat idle past the idle timeout.
    Idle,
    /// A request was still being answered well past the router's 30 s bound.
    Request,
}

/// One listener's connection counters: open connections by trust, refusals and timeouts.
#[derive(Debug, Default)]
pub struct Connections {
    open: [AtomicU64; 2],
    refused: [AtomicU64; 3],
    timeouts: [AtomicU64; 3],
    accept_errors: AtomicU64,
}

const PEERS: [&str; 2] = ["trusted", "untrusted"];
const REFUSALS: [(Refusal, &str); 3] = [
    (Refusal::PerAddress, "per_address"),
    (Refusal::UntrustedBudget, "untrusted_budget"),
    (Refusal::Capacity, "capacity"),
];
const TIMEOUTS: [(Timeout, &str); 3] = [
    (Timeout::Header, "header"),
    (Timeout::Idle, "idle"),
    (Timeout::Request, "request"),
];

impl Connections {
    /// A connection was admitted.
    pub fn opened(&self, trusted: bool) {
        self.open_gauge(trusted).fetch_add(1, Ordering::Relaxed);
    }

    /// An admitted connection ended.
    pub fn closed(&self, trusted: bool) {
        self.open_gauge(trusted).fetch_sub(1, Ordering::Relaxed);
    }

    /// Open connections from trusted (or untrusted) peers.
    pub fn open(&self, trusted: bool) -> u64 {
        self.open_gauge(trusted).load(Ordering::Relaxed)
    }

    fn open_gauge(&self, trusted: bool) -> &AtomicU64 {
        &self.open[usize::from(!trusted)]
    }

    /// A new connection was closed at once.
    pub fn refused(&self, why: Refusal) {
        let i = REFUSALS.iter().position(|(r, _)| *r == why).unwrap_or(0);
        if let Some(c) = self.refused.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections refused for `why` so far.
    pub fn refusals(&self, why: Refusal) -> u64 {
        let i = REFUSALS.iter().position(|(r, _)| *r == why).unwrap_or(0);
        self.refused.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A connection was closed by `which` bound.
    pub fn timed_out(&self, which: Timeout) {
        let i = TIMEOUTS.iter().position(|(t, _)| *t == which).unwrap_or(0);
        if let Some(c) = self.timeouts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections closed by `which` bound so far.
    pub fn timeouts(&self, which: Timeout) -> u64 {
        let i = TIMEOUTS.iter().position(|(t, _)| *t == which).unwrap_or(0);
        self.timeouts
            .get(i)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// `accept` failed (e.g. out of file descriptors).
    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Both listeners' connection counters, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The auth listener's.
    pub auth: Arc<Connections>,
    /// The metrics listener's.
    pub metrics: Arc<Connections>,
}

impl Listeners {
    /// Appends both listeners' metrics to `out`.
    pub fn render(&self, out: &mut String) {
        render_connections(
            out,
            [("auth", &*self.auth), ("metrics", &*self.metrics)].into_iter(),
        );
    }
}

/// Appends the connection metrics of `(listener name, counters)` pairs to `out`.
pub fn render_connections<'a>(
    out: &mut String,
    items: impl Iterator<Item = (&'a str, &'a Connections)> + Clone,
) {
    out.push_str("# HELP traefik_oidc_sidecar_connections_open Open connections by listener and peer (trusted: in trustedProxies).\n");
    out.push_str("# TYPE traefik_oidc_sidecar_connections_open gauge\n");
    for (l, c) in items.clone() {
        for (i, peer) in PEERS.iter().enumerate() {
            let v = c.open.get(i).map_or(0, |g| g.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "traefik_oidc_sidecar_connections_open{{listener=\"{l}\",peer=\"{peer}\"}} {v}"
            );
        }
    }
    out.push_str("# HELP traefik_oidc_sidecar_connections_refused_total New connections closed at once, by reason.\n");
    out.push_str("# TYPE traefik_oidc_sidecar_connections_refused_total counter\n");
    for (l, c) in items.clone() {
        for (r, label) in REFUSALS {
            let _ = writeln!(
                out,
                "traefik_oidc_sidecar_connections_refused_total{{listener=\"{l}\",reason=\"{label}\"}} {}",
                c.refusals(r)
            );
        }
    }
    out.push_str("# HELP traefik_oidc_sidecar_connection_timeouts_total Connections closed by a timeout, by phase.\n");
    out.push_str("# TYPE traefik_oidc_sidecar_connection_timeouts_total counter\n");
    for (l, c) in items.clone() {
        for (t, label) in TIMEOUTS {
            let _ = writeln!(
                out,
                "traefik_oidc_sidecar_connection_timeouts_total{{listener=\"{l}\",phase=\"{label}\"}} {}",
                c.timeouts(t)
            );
        }
    }
    out.push_str("# HELP traefik_oidc_sidecar_accept_errors_total Failed accepts (e.g. out of file descriptors).\n");
    out.push_str("# TYPE traefik_oidc_sidecar_accept_errors_total counter\n");
    for (l, c) in items {
        let _ = writeln!(
            out,
            "traefik_oidc_sidecar_accept_errors_total{{listener=\"{l}\"}} {}",
            c.accept_errors.load(Ordering::Relaxed)
        );
    }
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
        c.observe(Outcome::Allowed, std::time::Duration::from_micros(70));
        let text = render([("default", &c, true)].into_iter());
        assert!(text.contains("middleware=\"default\",outcome=\"allowed\"} 2"));
        assert!(text.contains("# TYPE traefik_oidc_sidecar_decision_duration_seconds histogram"));
        assert!(text.contains("traefik_oidc_sidecar_decision_duration_seconds_bucket{middleware=\"default\",outcome=\"allowed\",le=\"0.0001\"} 1"));
        assert!(
            !text.contains(
                "decision_duration_seconds_count{middleware=\"default\",outcome=\"forbidden\""
            ),
            "a series without observations is left out"
        );
        assert!(text.contains("outcome=\"forbidden\"} 1"));
        assert!(text.contains("traefik_oidc_sidecar_provider_ready{middleware=\"default\"} 1"));
    }

    #[test]
    fn connection_counters_render() {
        let c = Connections::default();
        c.opened(true);
        c.opened(false);
        c.opened(false);
        c.closed(false);
        c.refused(Refusal::PerAddress);
        c.refused(Refusal::PerAddress);
        c.timed_out(Timeout::Header);
        let mut text = String::new();
        render_connections(&mut text, [("auth", &c)].into_iter());
        for line in [
            "traefik_oidc_sidecar_connections_open{listener=\"auth\",peer=\"trusted\"} 1",
            "traefik_oidc_sidecar_connections_open{listener=\"auth\",peer=\"untrusted\"} 1",
            "traefik_oidc_sidecar_connections_refused_total{listener=\"auth\",reason=\"per_address\"} 2",
            "traefik_oidc_sidecar_connections_refused_total{listener=\"auth\",reason=\"capacity\"} 0",
            "traefik_oidc_sidecar_connection_timeouts_total{listener=\"auth\",phase=\"header\"} 1",
            "traefik_oidc_sidecar_connection_timeouts_total{listener=\"auth\",phase=\"idle\"} 0",
            "traefik_oidc_sidecar_accept_errors_total{listener=\"auth\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
