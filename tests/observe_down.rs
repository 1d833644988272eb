//! Tracing on with the collector hanging: requests are answered as fast as ever, and the spans
//! that cannot be sent are dropped and counted on `/metrics` (a test binary of its own: the
//! tracer is process-wide).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use traefik_oidc_sidecar::config::{self, Env};

const HOME: &str = "http://app.test/";

fn dropped(text: &str, reason: &str) -> u64 {
    let prefix = format!("traefik_oidc_sidecar_trace_spans_dropped_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {reason} line in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_dead_collector_never_slows_requests_and_its_spans_are_counted() {
    // A collector that takes connections and never answers: every export waits for its 5 s
    // timeout, so the queue fills behind it.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = black_hole.local_addr().unwrap().port();
    let yaml_text = format!(
        "tracing:\n  otlpEndpoint: http://127.0.0.1:{dead}\n  queueSize: 4\n{}",
        config_yaml(shared_op(), "")
    );
    let loaded = config::parse(&yaml_text, &Env::process()).unwrap();
    traefik_oidc_sidecar::telemetry::trace::install(&loaded.config.tracing.unwrap()).unwrap();
    let s = Sidecar::start(&yaml_text).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "default");
    let r = b.login(HOME, "alice").await;
    assert_eq!(r.status, 302, "{r:#?}");
    // 200 sampled decisions (sampleRatio defaults to 1) against a queue of 4: most spans are
    // dropped at the queue, the batch in flight when its export times out; no request waits
    // for either.
    // The login's spans leave in a batch after a second; that export then hangs, and the
    // queue behind it fills.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    for _ in 0..200 {
        let r = b.app(HOME, Kind::Xhr).await;
        assert_eq!(r.status, 200);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "200 requests took {took:?} with the collector down"
    );
    let mut text = String::new();
    for _ in 0..150 {
        text = reqwest::get(format!("http://{}/metrics", s.metrics_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if dropped(&text, "export_failed") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (full, failed) = (
        dropped(&text, "queue_full"),
        dropped(&text, "export_failed"),
    );
    assert!(full > 0, "queue_full {full}");
    assert!(failed > 0, "export_failed {failed}");
    assert!(
        text.contains("traefik_oidc_sidecar_trace_spans_exported_total 0"),
        "{text}"
    );
}
