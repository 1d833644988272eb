//! Watching the sidecar: the latency histograms on `/metrics`, every exported family documented
//! in docs/observability.md, the Grafana dashboard referencing only families that exist, and
//! OpenTelemetry traces received by a real Jaeger (OTLP/HTTP receiver, query API) after a real
//! login at the test OP with Redis sessions.
//!
//! The trace test needs the Jaeger binary: `JAEGER_BIN`, else `~/go/bin/jaeger-v1.75.0`
//! (`scripts/install-jaeger.sh` builds it; `scripts/test-observe.sh` installs it and sets
//! `OBSERVE_REQUIRE_JAEGER=1`, which turns a missing binary into a failure).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::redis::{RedisServer, yaml};
use common::*;
use serde_json::Value;
use traefik_oidc_sidecar::config::{self, Env};

const HOME: &str = "http://app.test/";

/// Logs in (Redis sessions), uses the session, and scrapes `/metrics`.
async fn traffic_and_scrape(s: &Sidecar, extra: &[(&str, &str)]) -> String {
    let mut b = Browser::new(s, "default");
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let callback = b.login_at_op(&r.location(), "alice", "alice").await;
    let r = b.app_with(&callback, Kind::Navigate, extra).await;
    assert_eq!(r.status, 302, "callback: {r:#?}");
    for _ in 0..3 {
        let r = b.app(HOME, Kind::Xhr).await;
        assert_eq!(r.status, 200, "{r:#?}");
    }
    let mut anonymous = Browser::new(s, "default");
    assert_eq!(anonymous.app(HOME, Kind::Xhr).await.status, 401);
    reqwest::get(format!("http://{}/metrics", s.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every `# TYPE` family of an exposition, with its type.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().to_string())
        })
        .collect()
}

/// Metric names in a sample line's position (the name before `{` or a space).
fn series_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

fn repo_file(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test]
async fn histograms_are_well_formed_documented_and_on_the_dashboard() {
    let redis = RedisServer::start();
    let s = Sidecar::start(&yaml(shared_op(), &redis.block())).await;
    s.wait_ready(15).await;
    let text = traffic_and_scrape(&s, &[]).await;
    let names = series_names(&text);

    // The three histogram families, with the series this traffic must have produced.
    for series in [
        "traefik_oidc_sidecar_decision_duration_seconds_count{middleware=\"default\",outcome=\"allowed\"}",
        "traefik_oidc_sidecar_decision_duration_seconds_count{middleware=\"default\",outcome=\"callback_ok\"}",
        "traefik_oidc_sidecar_idp_request_duration_seconds_count{endpoint=\"discovery\"}",
        "traefik_oidc_sidecar_idp_request_duration_seconds_count{endpoint=\"jwks\"}",
        "traefik_oidc_sidecar_idp_request_duration_seconds_count{endpoint=\"token\"}",
        "traefik_oidc_sidecar_redis_command_duration_seconds_count{command=\"set\"}",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(series)),
            "{series} missing from\n{text}"
        );
    }
    // Per series: cumulative buckets in increasing order, +Inf last and equal to _count.
    let fams = families(&text);
    for (family, kind) in &fams {
        if kind != "histogram" {
            continue;
        }
        let mut by_series: std::collections::BTreeMap<String, Vec<(String, u64)>> =
            Default::default();
        let mut counts = std::collections::BTreeMap::new();
        for l in text.lines() {
            let (head, value) = l.rsplit_once(' ').unwrap_or((l, ""));
            if let Some(rest) = head.strip_prefix(&format!("{family}_bucket{{")) {
                let (labels, le) = rest.rsplit_once(",le=\"").unwrap();
                by_series.entry(labels.to_string()).or_default().push((
                    le.trim_end_matches("\"}").to_string(),
                    value.parse().unwrap(),
                ));
            } else if let Some(rest) = head.strip_prefix(&format!("{family}_count{{")) {
                counts.insert(
                    rest.trim_end_matches('}').to_string(),
                    value.parse::<u64>().unwrap(),
                );
            }
        }
        assert!(!by_series.is_empty(), "{family} has no series");
        for (labels, buckets) in &by_series {
            let (last_le, last) = buckets.last().unwrap();
            assert_eq!(last_le, "+Inf", "{family}{{{labels}}}");
            assert_eq!(Some(last), counts.get(labels), "{family}{{{labels}}}");
            let les: Vec<f64> = buckets[..buckets.len() - 1]
                .iter()
                .map(|(le, _)| le.parse().unwrap())
                .collect();
            assert!(les.windows(2).all(|w| w[0] < w[1]), "{family}: le order");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}}: not cumulative"
            );
        }
    }

    // Every family the binary exports is documented.
    let doc = repo_file("docs/observability.md");
    let undocumented: Vec<&String> = fams
        .iter()
        .map(|(f, _)| f)
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "families missing from docs/observability.md: {undocumented:?}"
    );

    // Every metric the dashboard's PromQL names exists in the scrape (histogram names with
    // their _bucket/_sum/_count suffixes as exported).
    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/traefik-oidc-sidecar.json")).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    let mut referenced = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("traefik_oidc_sidecar_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            referenced.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    let missing: Vec<&String> = referenced.iter().filter(|m| !names.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard references metrics /metrics does not export: {missing:?}"
    );
    for want in [
        "traefik_oidc_sidecar_requests_total",
        "traefik_oidc_sidecar_decision_duration_seconds_bucket",
        "traefik_oidc_sidecar_idp_request_duration_seconds_bucket",
        "traefik_oidc_sidecar_redis_command_duration_seconds_bucket",
        "traefik_oidc_sidecar_connections_open",
        "traefik_oidc_sidecar_provider_ready",
    ] {
        assert!(
            referenced.contains(want),
            "the dashboard does not show {want}"
        );
    }
}

/// Every `expr` string of a Grafana dashboard's targets.
fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

/// A Jaeger v2 process with in-memory storage on random loopback ports.
struct Jaeger {
    child: Child,
    otlp: u16,
    query: u16,
    _dir: PathBuf,
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn jaeger_bin() -> Option<PathBuf> {
    if let Ok(b) = std::env::var("JAEGER_BIN") {
        return Some(PathBuf::from(b));
    }
    let home = std::env::var("HOME").ok()?;
    let p = PathBuf::from(home).join("go/bin/jaeger-v1.75.0");
    p.exists().then_some(p)
}

/// Jaeger on fresh loopback ports. Free ports are only free when picked: a parallel test can
/// take one before Jaeger binds it, and Jaeger then exits at once; that start is retried on
/// other ports.
async fn start_jaeger(bin: PathBuf) -> Jaeger {
    for _ in 0..3 {
        if let Some(j) = try_start_jaeger(&bin).await {
            return j;
        }
    }
    panic!("jaeger did not start (three tries)");
}

/// One start; `None` when the process exits before it answers (a port taken meanwhile).
async fn try_start_jaeger(bin: &PathBuf) -> Option<Jaeger> {
    let (otlp, query, grpc) = (free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("observe-jaeger-{}-{otlp}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = format!(
        r#"
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 1000
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
"#
    );
    let path = dir.join("jaeger.yaml");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("jaeger starts");
    let mut j = Jaeger {
        child,
        otlp,
        query,
        _dir: dir,
    };
    for _ in 0..300 {
        if j.child.try_wait().ok().flatten().is_some() {
            return None;
        }
        let up = reqwest::get(format!("http://127.0.0.1:{query}/api/services")).await;
        if up.is_ok_and(|r| r.status() == 200)
            && std::net::TcpStream::connect(("127.0.0.1", otlp)).is_ok()
        {
            return Some(j);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("jaeger did not answer within 30 s");
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn the_decision_continues_traefiks_trace_with_idp_and_redis_children() {
    let Some(bin) = jaeger_bin() else {
        assert!(
            std::env::var("OBSERVE_REQUIRE_JAEGER").is_err(),
            "OBSERVE_REQUIRE_JAEGER is set but no Jaeger binary was found"
        );
        eprintln!("skipped: no Jaeger binary (scripts/install-jaeger.sh builds it)");
        return;
    };
    let jaeger = start_jaeger(bin).await;
    let redis = RedisServer::start();
    let yaml_text = format!(
        "tracing:\n  otlpEndpoint: http://127.0.0.1:{}\n  serviceName: sidecar-under-test\n  sampleRatio: 0\n{}",
        jaeger.otlp,
        yaml(shared_op(), &redis.block())
    );
    // The block is parsed like the binary parses it, and installed as main.rs does.
    let loaded = config::parse(&yaml_text, &Env::process()).unwrap();
    let tracing_cfg = loaded.config.tracing.clone().expect("a tracing block");
    assert_eq!(tracing_cfg.sample_ratio, 0.0);
    traefik_oidc_sidecar::telemetry::trace::install(&tracing_cfg).unwrap();
    let s = Sidecar::start(&yaml_text).await;
    s.wait_ready(15).await;

    // Traefik's traceparent on the callback request (sampled: Traefik decided to record it;
    // sampleRatio 0 applies only to traces the sidecar starts).
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let text = traffic_and_scrape(&s, &[("traceparent", traceparent.as_str())]).await;
    // A malformed traceparent is not an error: a new trace (unsampled here, ratio 0).
    let mut b = Browser::new(&s, "default");
    let r = b
        .app_with(HOME, Kind::Xhr, &[("traceparent", "00-zz-not-a-trace-01")])
        .await;
    assert_eq!(r.status, 401, "{r:#?}");
    assert!(
        text.contains("traefik_oidc_sidecar_trace_spans_dropped_total{reason=\"queue_full\"} 0")
    );

    // The export task batches for up to a second; poll the query API.
    let url = format!("http://127.0.0.1:{}/api/traces/{TRACE_ID}", jaeger.query);
    let mut spans = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = reqwest::get(&url).await.unwrap();
        if r.status() != 200 {
            continue;
        }
        let v: Value = r.json().await.unwrap();
        spans = v["data"][0]["spans"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = |op: &str| spans.iter().any(|s| s["operationName"] == op);
        if has("forwardAuth") && has("idp") && has("redis") {
            break;
        }
    }
    let tag = |s: &Value, k: &str| -> Option<String> {
        s["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == k)
            .map(|t| {
                t["value"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(t["value"].to_string())
            })
    };
    let parent_of = |s: &Value| -> Option<String> {
        s["references"]
            .as_array()?
            .iter()
            .find(|r| r["refType"] == "CHILD_OF")
            .and_then(|r| r["spanID"].as_str().map(str::to_string))
    };
    let decision = spans
        .iter()
        .find(|s| s["operationName"] == "forwardAuth")
        .unwrap_or_else(|| panic!("no decision span in trace {TRACE_ID}: {spans:#?}"));
    assert_eq!(
        parent_of(decision).as_deref(),
        Some(PARENT_ID),
        "{decision:#}"
    );
    assert_eq!(
        tag(decision, "traefik_oidc_sidecar.middleware").as_deref(),
        Some("default")
    );
    assert_eq!(
        tag(decision, "traefik_oidc_sidecar.outcome").as_deref(),
        Some("callback_ok")
    );
    let decision_id = decision["spanID"].as_str().unwrap().to_string();
    let token = spans
        .iter()
        .find(|s| {
            s["operationName"] == "idp"
                && tag(s, "traefik_oidc_sidecar.idp.endpoint").as_deref() == Some("token")
        })
        .unwrap_or_else(|| panic!("no token endpoint span: {spans:#?}"));
    assert_eq!(parent_of(token), Some(decision_id.clone()));
    let set = spans
        .iter()
        .find(|s| {
            s["operationName"] == "redis" && tag(s, "db.operation.name").as_deref() == Some("SET")
        })
        .unwrap_or_else(|| panic!("no Redis SET span: {spans:#?}"));
    assert_eq!(parent_of(set), Some(decision_id));
    // Nothing secret in any attribute: no code, token, cookie or e-mail.
    let all = serde_json::to_string(&spans).unwrap();
    for secret in ["alice@", "code=", "TraefikOidcSidecar", "eyJ"] {
        assert!(!all.contains(secret), "{secret} in the spans: {all}");
    }
    let process = jaeger_service(&jaeger, TRACE_ID).await;
    assert_eq!(process, "sidecar-under-test");
}

/// The service name of a trace's first process.
async fn jaeger_service(j: &Jaeger, trace: &str) -> String {
    let v: Value = reqwest::get(format!("http://127.0.0.1:{}/api/traces/{trace}", j.query))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let processes = v["data"][0]["processes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    processes
        .values()
        .next()
        .and_then(|p| p["serviceName"].as_str())
        .unwrap_or_default()
        .to_string()
}
