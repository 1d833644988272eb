//! Watching the sidecar: latency histograms of the calls it makes (the IdP, Redis) and
//! OpenTelemetry traces ([`trace`]). The decision's own histogram lives with its counters
//! ([`crate::metrics::Counters`]).
//!
//! [`idp`] and [`redis`] wrap one outgoing call: they time it into a process-wide histogram
//! (statics: no lock, no allocation) and, when tracing is on and a decision is being traced,
//! record it as a child span. Nothing here knows HTTP frameworks.

pub mod histogram;
pub mod trace;

use std::future::Future;
use std::time::Instant;

use opentelemetry::KeyValue;

pub use histogram::Histogram;
pub use trace::TracingConfig;

/// The IdP endpoint a call went to (the `endpoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpEndpoint {
    /// `/.well-known/openid-configuration` (OIDC Discovery 1.0 §4).
    Discovery,
    /// The `jwks_uri` (RFC 7517), at load and on an unknown `kid`.
    Jwks,
    /// The token endpoint for an authorization code (OIDC Core §3.1.3).
    Token,
    /// The token endpoint for a refresh token (RFC 6749 §6).
    Refresh,
    /// The UserInfo endpoint (OIDC Core §5.3).
    Userinfo,
    /// The introspection endpoint (RFC 7662).
    Introspection,
}

const IDP_LABELS: [&str; 6] = [
    "discovery",
    "jwks",
    "token",
    "refresh",
    "userinfo",
    "introspection",
];

/// The Redis command kinds that get their own `command` label; the rest are `other`.
const REDIS_LABELS: [&str; 11] = [
    "get", "set", "del", "sadd", "srem", "smembers", "expireat", "eval", "publish", "ping", "other",
];

/// The same kinds as OpenTelemetry's `db.operation.name` values (the command as Redis names it).
const REDIS_OPERATIONS: [&str; 11] = [
    "GET", "SET", "DEL", "SADD", "SREM", "SMEMBERS", "EXPIREAT", "EVAL", "PUBLISH", "PING", "OTHER",
];

static IDP: [Histogram; 6] = [const { Histogram::new() }; 6];
static REDIS: [Histogram; 11] = [const { Histogram::new() }; 11];

impl IdpEndpoint {
    fn index(self) -> usize {
        self as usize
    }

    /// The `endpoint` label.
    pub fn label(self) -> &'static str {
        IDP_LABELS.get(self.index()).copied().unwrap_or("other")
    }
}

/// Times one IdP call (and traces it under the current decision).
pub async fn idp<T, E>(
    endpoint: IdpEndpoint,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let span = trace::child("idp", || {
        [
            KeyValue::new("traefik_oidc_sidecar.idp.endpoint", endpoint.label()),
            KeyValue::new("server.kind", "openid_provider"),
        ]
    });
    let start = Instant::now();
    let out = call.await;
    if let Some(h) = IDP.get(endpoint.index()) {
        h.observe(start.elapsed());
    }
    trace::end_child(span, out.is_ok());
    out
}

/// The `command` label index of a command name (ASCII, any case).
fn redis_index(name: &[u8]) -> usize {
    let last = REDIS_LABELS.len() - 1;
    REDIS_LABELS[..last]
        .iter()
        .position(|l| l.as_bytes().eq_ignore_ascii_case(name))
        .unwrap_or(last)
}

/// Times one Redis command named `name` (its first word, e.g. `GET`) and traces it under the
/// current decision. Only the command name is recorded, never keys or values.
pub async fn redis<T, E>(name: &[u8], call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let i = redis_index(name);
    let span = trace::child("redis", || {
        [
            KeyValue::new("db.system.name", "redis"),
            KeyValue::new(
                "db.operation.name",
                REDIS_OPERATIONS.get(i).copied().unwrap_or("OTHER"),
            ),
        ]
    });
    let start = Instant::now();
    let out = call.await;
    if let Some(h) = REDIS.get(i) {
        h.observe(start.elapsed());
    }
    trace::end_child(span, out.is_ok());
    out
}

/// Appends one histogram family whose series are labelled `key="<label>"`, in label order.
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    (key, labels): (&str, &[&str]),
    hs: &[Histogram],
) {
    histogram::header(out, name, help);
    for (h, label) in hs.iter().zip(labels) {
        h.render(out, name, &format!("{key}=\"{label}\""));
    }
}

/// Appends the IdP and Redis histograms and the dropped-spans counter to `out`.
pub fn render(out: &mut String) {
    use std::fmt::Write as _;
    family(
        out,
        "traefik_oidc_sidecar_idp_request_duration_seconds",
        "IdP calls by endpoint (discovery, jwks, token, refresh, userinfo, introspection), failures included.",
        ("endpoint", &IDP_LABELS),
        &IDP,
    );
    family(
        out,
        "traefik_oidc_sidecar_redis_command_duration_seconds",
        "Redis commands by command, failures and timeouts included.",
        ("command", &REDIS_LABELS),
        &REDIS,
    );
    out.push_str("# HELP traefik_oidc_sidecar_trace_spans_dropped_total Trace spans dropped before reaching the collector, by reason.\n");
    out.push_str("# TYPE traefik_oidc_sidecar_trace_spans_dropped_total counter\n");
    for (why, label) in trace::DROP_REASONS {
        let _ = writeln!(
            out,
            "traefik_oidc_sidecar_trace_spans_dropped_total{{reason=\"{label}\"}} {}",
            trace::dropped(why)
        );
    }
    out.push_str("# HELP traefik_oidc_sidecar_trace_spans_exported_total Trace spans the collector accepted.\n");
    out.push_str("# TYPE traefik_oidc_sidecar_trace_spans_exported_total counter\n");
    let _ = writeln!(
        out,
        "traefik_oidc_sidecar_trace_spans_exported_total {}",
        trace::exported()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_commands_map_to_their_label_and_the_rest_to_other() {
        assert_eq!(REDIS_LABELS[redis_index(b"GET")], "get");
        assert_eq!(REDIS_LABELS[redis_index(b"expireat")], "expireat");
        assert_eq!(REDIS_LABELS[redis_index(b"HGETALL")], "other");
        assert_eq!(REDIS_LABELS[redis_index(b"OTHER")], "other");
        assert_eq!(IdpEndpoint::Introspection.label(), "introspection");
    }

    #[tokio::test]
    async fn calls_are_timed_by_endpoint_and_command() {
        let before = IDP[IdpEndpoint::Userinfo.index()].count();
        let r: Result<(), ()> = idp(IdpEndpoint::Userinfo, async { Err(()) }).await;
        assert!(r.is_err());
        assert_eq!(IDP[IdpEndpoint::Userinfo.index()].count(), before + 1);
        let before = REDIS[redis_index(b"SMEMBERS")].count();
        let _: Result<u8, ()> = redis(b"smembers", async { Ok(1) }).await;
        assert_eq!(REDIS[redis_index(b"SMEMBERS")].count(), before + 1);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("# TYPE traefik_oidc_sidecar_idp_request_duration_seconds histogram"));
        assert!(out.contains(
            "traefik_oidc_sidecar_idp_request_duration_seconds_count{endpoint=\"userinfo\"}"
        ));
        assert!(out.contains(
            "traefik_oidc_sidecar_redis_command_duration_seconds_bucket{command=\"smembers\",le=\"+Inf\"}"
        ));
        assert!(
            out.contains("traefik_oidc_sidecar_trace_spans_dropped_total{reason=\"queue_full\"} 0")
        );
    }
}
