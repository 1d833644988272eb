//! The top-level `tracing:` block: OpenTelemetry traces over OTLP/HTTP (off when absent).
//! Parses into [`crate::telemetry::TracingConfig`], which the telemetry module owns.

use serde_yaml_ng::Value;

use super::walk::{Cx, Obj};
use crate::telemetry::TracingConfig;
use crate::telemetry::trace::{DEFAULT_QUEUE_SIZE, DEFAULT_SERVICE_NAME};

pub(super) const TRACING_KEYS: &[&str] =
    &["otlpEndpoint", "serviceName", "sampleRatio", "queueSize"];

pub(super) fn parse_tracing(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<TracingConfig> {
    let mut obj = Obj::new(v, path, cx)?;
    let endpoint = match obj.get("otlpEndpoint") {
        Some((p, v)) => {
            let s = cx.string(v, &p)?;
            let url = openidconnect::url::Url::parse(&s).ok();
            let fine = url.as_ref().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.query().is_none()
                    && u.username().is_empty()
            });
            if !fine {
                // The collector's base URL; `/v1/traces` is added (OTLP/HTTP).
                cx.problem(
                    &p,
                    "expected the collector's OTLP/HTTP base URL, e.g. http://collector:4318",
                );
                return None;
            }
            s
        }
        None => {
            cx.problem(&format!("{path}.otlpEndpoint"), "required");
            return None;
        }
    };
    let service_name = match obj.get("serviceName") {
        Some((p, v)) => cx
            .string(v, &p)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into()),
        None => DEFAULT_SERVICE_NAME.into(),
    };
    let sample_ratio = match obj.get("sampleRatio") {
        Some((p, v)) => match cx.string(v, &p).and_then(|s| s.trim().parse::<f64>().ok()) {
            Some(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                cx.problem(&p, "expected a number from 0 to 1");
                1.0
            }
        },
        None => 1.0,
    };
    let queue_size = match obj.get("queueSize") {
        Some((p, v)) => match cx.integer(v, &p).map(usize::try_from) {
            Some(Ok(n)) if (1..=1_000_000).contains(&n) => n,
            Some(_) => {
                cx.problem(&p, "must be between 1 and 1000000");
                DEFAULT_QUEUE_SIZE
            }
            None => DEFAULT_QUEUE_SIZE,
        },
        None => DEFAULT_QUEUE_SIZE,
    };
    obj.finish(TRACING_KEYS, &[], cx);
    Some(TracingConfig {
        otlp_endpoint: endpoint,
        service_name,
        sample_ratio,
        queue_size,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Env, parse};

    fn parse_text(text: &str) -> Result<crate::config::Config, Vec<String>> {
        parse(text, &Env::process())
            .map(|l| l.config)
            .map_err(|ps| ps.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn tracing_is_off_by_default_and_parses_with_defaults() {
        assert_eq!(parse_text("middlewares:\n").unwrap().tracing, None);
        let t = parse_text("tracing:\n  otlpEndpoint: http://collector:4318\n")
            .unwrap()
            .tracing
            .unwrap();
        assert_eq!(t.otlp_endpoint, "http://collector:4318");
        assert_eq!(t.service_name, "traefik-oidc-sidecar");
        assert_eq!((t.sample_ratio, t.queue_size), (1.0, 2048));
        let t = parse_text(
            "tracing:\n  otlpEndpoint: https://c.example/otlp\n  serviceName: auth\n  sampleRatio: 0.25\n  queueSize: 10\n",
        )
        .unwrap()
        .tracing
        .unwrap();
        assert_eq!(
            (t.service_name.as_str(), t.sample_ratio, t.queue_size),
            ("auth", 0.25, 10)
        );
    }

    #[test]
    fn every_tracing_mistake_names_its_key() {
        for (block, path) in [
            ("  serviceName: x\n", "tracing.otlpEndpoint"),
            ("  otlpEndpoint: collector:4318\n", "tracing.otlpEndpoint"),
            (
                "  otlpEndpoint: http://u:p@c:4318\n",
                "tracing.otlpEndpoint",
            ),
            (
                "  otlpEndpoint: http://c:4318\n  sampleRatio: 2\n",
                "tracing.sampleRatio",
            ),
            (
                "  otlpEndpoint: http://c:4318\n  queueSize: 0\n",
                "tracing.queueSize",
            ),
            (
                "  otlpEndpoint: http://c:4318\n  sampleRatoi: 1\n",
                "tracing.sampleRatoi",
            ),
        ] {
            let problems = parse_text(&format!("tracing:\n{block}")).unwrap_err();
            assert!(
                problems.iter().any(|p| p.starts_with(path)),
                "{block}: {problems:?}"
            );
        }
    }
}
