//! OpenTelemetry traces, off unless the `tracing:` block is configured.
//!
//! When off, [`tracer`] is `None` and callers pay one load and branch. When on:
//! - the forwardAuth decision continues the trace Traefik started: the W3C `traceparent`
//!   header (Trace Context §3.2) of the forwardAuth request names the parent; a missing or
//!   malformed header starts a new trace (§3.2.2.1 says a receiver that cannot parse it
//!   restarts the trace, never fails the request);
//! - IdP calls and Redis commands made while a decision span is current become its children;
//!   calls without one (the discovery loop, Redis' health ping) make no span, so background
//!   work never floods the collector;
//! - finished spans go into a bounded queue that a background task sends in batches over
//!   OTLP/HTTP (protobuf). A full queue or a failed export drops spans and counts them
//!   ([`dropped`]); a request never waits for the collector.
//!
//! Attributes carry the middleware name, the outcome, the IdP endpoint kind and the Redis
//! command name only: never tokens, cookies, claims or URLs with queries.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor,
};
use tokio::sync::mpsc;

use crate::metrics::Outcome;

/// The `tracing:` block: where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to
    /// `<base>/v1/traces` (OTLP Exporter specification, "Endpoint URLs for OTLP/HTTP").
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Fraction of new traces recorded (0.0 to 1.0); a trace Traefik started keeps
    /// Traefik's sampling decision (the `sampled` flag of `traceparent`).
    pub sample_ratio: f64,
    /// Finished spans waiting for export at most; more are dropped and counted.
    pub queue_size: usize,
}

/// Default `serviceName`.
pub const DEFAULT_SERVICE_NAME: &str = "traefik-oidc-sidecar";
/// Default `queueSize`.
pub const DEFAULT_QUEUE_SIZE: usize = 2048;
/// Spans sent in one export request at most.
const MAX_BATCH: usize = 512;
/// Longest a finished span waits for more to fill its batch.
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// One export request's bound (the collector being down must not hold a batch for long).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why spans were dropped, as the `reason` label of the dropped-spans counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The export queue was full (the collector is slow or down).
    QueueFull,
    /// The collector refused the batch or could not be reached.
    ExportFailed,
}

/// `(reason, label)` pairs in rendering order.
pub const DROP_REASONS: [(Dropped, &str); 2] = [
    (Dropped::QueueFull, "queue_full"),
    (Dropped::ExportFailed, "export_failed"),
];

static DROPPED: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

fn count_dropped(why: Dropped, n: u64) {
    let i = usize::from(why == Dropped::ExportFailed);
    if let Some(c) = DROPPED.get(i) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Spans dropped for `why` so far.
pub fn dropped(why: Dropped) -> u64 {
    let i = usize::from(why == Dropped::ExportFailed);
    DROPPED.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Spans the collector accepted so far.
pub fn exported() -> u64 {
    EXPORTED.load(Ordering::Relaxed)
}

/// The tracer, when tracing is on.
#[inline]
pub fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// Whether tracing is on.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Turns tracing on for the process: builds the OTLP/HTTP exporter and starts the export task
/// on the current Tokio runtime. Once per process; a second call is refused.
pub fn install(cfg: &TracingConfig) -> Result<(), String> {
    if TRACER.get().is_some() {
        return Err("tracing is already on".into());
    }
    let url = format!("{}/v1/traces", cfg.otlp_endpoint.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("tracing: HTTP client: {e}"))?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("tracing.otlpEndpoint: {e}"))?;
    let resource = Resource::builder_empty()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    exporter.set_resource(&resource);
    let (tx, rx) = mpsc::channel(cfg.queue_size.max(1));
    tokio::spawn(export_loop(rx, exporter));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Queue { tx })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    TRACER
        .set(provider.tracer("traefik-oidc-sidecar"))
        .map_err(|_| "tracing is already on".to_string())
}

/// Hands finished spans to the export task without ever waiting.
#[derive(Debug)]
struct Queue {
    tx: mpsc::Sender<SpanData>,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            count_dropped(Dropped::QueueFull, 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Collects spans into batches of at most [`MAX_BATCH`], waiting at most [`BATCH_WAIT`] after
/// the first, and exports each; a failed batch is dropped and counted (no retry: the queue
/// behind it is what matters while the collector is down).
async fn export_loop(mut rx: mpsc::Receiver<SpanData>, exporter: opentelemetry_otlp::SpanExporter) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::sleep(BATCH_WAIT);
        tokio::pin!(deadline);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(s) => batch.push(s),
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        let n = batch.len() as u64;
        match exporter.export(std::mem::take(&mut batch)).await {
            Ok(()) => {
                EXPORTED.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                count_dropped(Dropped::ExportFailed, n);
                tracing::warn!(spans = n, error = %e, "trace export failed; spans dropped");
            }
        }
    }
}

/// `traceparent` and `tracestate` read from the forwardAuth request's headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The trace context `headers` carry (W3C Trace Context), or an empty one: a missing or
/// malformed `traceparent` starts a new trace. The header is checked here first, strictly
/// (the propagator accepts, for one, a parent id shorter than 16 digits).
pub fn parent_of(headers: &HeaderMap) -> Context {
    let mut parents = headers.get_all("traceparent").iter();
    let well_formed = match (parents.next(), parents.next()) {
        (Some(v), None) => v.to_str().is_ok_and(well_formed),
        // None, or several: §3.2 allows one traceparent only.
        _ => false,
    };
    if !well_formed {
        return Context::new();
    }
    TraceContextPropagator::new().extract_with_context(&Context::new(), &Headers(headers))
}

/// Trace Context §3.2.2: `version-traceid-parentid-flags`, lowercase hex of 2, 32, 16 and 2
/// digits; version `ff` and all-zero ids are invalid. Version `00` has nothing after the flags;
/// a later version may append fields after a `-` (§3.2.4, forward compatibility).
fn well_formed(tp: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let (Some(version), Some(trace), Some(parent), Some(rest)) =
        (tp.get(0..2), tp.get(3..35), tp.get(36..52), tp.get(53..))
    else {
        return false;
    };
    let dashes = [2, 35, 52]
        .iter()
        .all(|&i| tp.as_bytes().get(i) == Some(&b'-'));
    let flags = rest.get(0..2).unwrap_or_default();
    let tail_ok = match version {
        "00" => rest.len() == 2,
        _ => rest.len() == 2 || rest.as_bytes().get(2) == Some(&b'-'),
    };
    dashes
        && hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && !zero(trace)
        && hex(parent, 16)
        && !zero(parent)
        && hex(flags, 2)
        && tail_ok
}

/// Runs one forwardAuth decision inside its span: a child of the trace in `headers`, named
/// `forwardAuth`, with the middleware and the outcome as attributes.
pub async fn decision<T>(
    tracer: &SdkTracer,
    middleware: &str,
    headers: &HeaderMap,
    fut: impl Future<Output = (T, Outcome)>,
) -> (T, Outcome) {
    let parent = parent_of(headers);
    let span = tracer
        .span_builder("forwardAuth")
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new(
            "traefik_oidc_sidecar.middleware",
            middleware.to_string(),
        )])
        .start_with_context(tracer, &parent);
    let cx = parent.with_span(span);
    let (value, outcome) = fut.with_context(cx.clone()).await;
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "traefik_oidc_sidecar.outcome",
        outcome.label(),
    ));
    if matches!(
        outcome,
        Outcome::Internal | Outcome::IdpUnavailable | Outcome::StoreUnavailable
    ) {
        span.set_status(Status::error(outcome.label()));
    }
    span.end();
    (value, outcome)
}

/// A span for one call made on behalf of the current decision, or `None` when tracing is off
/// or no decision span is current (background work).
pub fn child(
    name: &'static str,
    attrs: impl FnOnce() -> [KeyValue; 2],
) -> Option<opentelemetry_sdk::trace::Span> {
    let tracer = tracer()?;
    let cx = Context::current();
    if !cx.has_active_span() {
        return None;
    }
    Some(
        tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs())
            .start_with_context(tracer, &cx),
    )
}

/// Ends a child span, marking it failed when the call failed.
pub fn end_child(span: Option<opentelemetry_sdk::trace::Span>, ok: bool) {
    if let Some(mut s) = span {
        if !ok {
            s.set_status(Status::error("call failed"));
        }
        s.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(traceparent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("traceparent", traceparent.parse().unwrap());
        h
    }

    #[test]
    fn a_valid_traceparent_is_the_parent_and_a_malformed_one_starts_a_new_trace() {
        let cx = parent_of(&headers(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
            "",
        ] {
            let cx = parent_of(&headers(bad));
            assert!(!cx.span().span_context().is_valid(), "{bad}");
        }
        assert!(!parent_of(&HeaderMap::new()).has_active_span());
        // A later version may carry more fields; its first four are read.
        let cx = parent_of(&headers(
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more",
        ));
        assert!(cx.span().span_context().is_valid());
        // Two traceparent headers: which one is meant is unknown, so neither.
        let mut two = headers("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        two.append(
            "traceparent",
            "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        assert!(!parent_of(&two).span().span_context().is_valid());
    }
}
