//! The shipped examples stay valid: every sidecar configuration passes the real parser, the
//! Kubernetes manifests parse with the expected kinds, and the compose file has its services.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;
use traefik_oidc_sidecar::config::{self, Env};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env() -> Env<'static> {
    Env {
        var: &|k| match k {
            "SESSION_SECRET" => Some("example-session-secret-with-at-least-32-bytes".into()),
            _ => Some("example-value".into()),
        },
        // `${file:/run/secrets/...}` in the examples: a secret mounted by the orchestrator.
        file: &|p: &Path| {
            if p.starts_with("/run/secrets") {
                Ok("example-file-secret".into())
            } else {
                std::fs::read_to_string(p)
            }
        },
        within: &traefik_oidc_sidecar::files::read_within,
    }
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

#[test]
fn sidecar_configurations_in_examples_load() {
    for rel in [
        "examples/docker-compose/sidecar.yaml",
        "examples/traefik/sidecar.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(rel)).unwrap();
        config::parse(&text, &env()).unwrap_or_else(|p| panic!("{rel}: {p:#?}"));
    }
    // The ConfigMap's embedded config too.
    let cm = docs(&root().join("examples/kubernetes/sidecar.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    config::parse(text, &env()).unwrap_or_else(|p| panic!("ConfigMap: {p:#?}"));
}

/// `${REDIS_URL}` in the Redis examples: what the Secret / compose file put there.
fn redis_env() -> Env<'static> {
    Env {
        var: &|k| match k {
            "REDIS_URL" => Some("redis://:pw@redis:6379/0".into()),
            "SESSION_SECRET" => Some("example-session-secret-with-at-least-32-bytes".into()),
            _ => Some("example-value".into()),
        },
        file: &|p: &Path| std::fs::read_to_string(p),
        within: &traefik_oidc_sidecar::files::read_within,
    }
}

#[test]
fn redis_examples_load_and_keep_redis_private() {
    use traefik_oidc_sidecar::config::SessionStorage;
    let text =
        std::fs::read_to_string(root().join("examples/docker-compose/sidecar-redis.yaml")).unwrap();
    let c = config::parse(&text, &redis_env()).unwrap().config;
    assert!(c.redis.is_some());
    assert_eq!(
        c.middlewares["default"].session_storage,
        SessionStorage::Redis
    );
    let d = &docs(&root().join("examples/docker-compose/docker-compose.redis.yml"))[0];
    assert!(d["services"]["redis"].is_mapping());
    assert!(
        d["services"]["redis"]["ports"].is_null(),
        "Redis is not published"
    );
    assert_eq!(
        d["services"]["traefik-oidc-sidecar"]["deploy"]["replicas"],
        2
    );

    let all = docs(&root().join("examples/kubernetes/replicated-redis.yaml"));
    let mut kinds: Vec<&str> = all.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "Service",
            "Service",
            "StatefulSet"
        ]
    );
    let cm = all.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let c = config::parse(cm["data"]["config.yaml"].as_str().unwrap(), &redis_env())
        .unwrap_or_else(|p| panic!("ConfigMap: {p:#?}"))
        .config;
    assert_eq!(
        c.middlewares["default"].session_storage,
        SessionStorage::Redis
    );
    let dep = all.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert!(dep["spec"]["replicas"].as_u64().unwrap() > 1);
    let np = all.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"],
        "traefik-oidc-sidecar"
    );
}

#[test]
fn kubernetes_manifests_have_the_expected_kinds() {
    let mut kinds = Vec::new();
    for f in ["sidecar.yaml", "middlewares.yaml", "ingressroute.yaml"] {
        for d in docs(&root().join("examples/kubernetes").join(f)) {
            assert!(d["apiVersion"].as_str().is_some(), "{f}: apiVersion");
            assert!(
                d["metadata"]["name"].as_str().is_some(),
                "{f}: metadata.name"
            );
            kinds.push(d["kind"].as_str().unwrap().to_string());
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "IngressRoute",
            "Middleware",
            "Middleware",
            "Service"
        ]
    );
    let mw = docs(&root().join("examples/kubernetes/middlewares.yaml"));
    assert!(mw.iter().any(|d| {
        d["spec"]["forwardAuth"]["authResponseHeaders"]
            .as_sequence()
            .is_some_and(|h| h.iter().any(|x| x == "Cookie"))
    }));
    assert!(mw.iter().any(|d| {
        d["spec"]["plugin"]["oidcsidecar"]["sidecarUrl"]
            .as_str()
            .is_some()
    }));
}

#[test]
fn compose_file_has_its_services() {
    let d = &docs(&root().join("examples/docker-compose/docker-compose.yml"))[0];
    for s in ["traefik", "traefik-oidc-sidecar", "whoami", "dex"] {
        assert!(d["services"][s].is_mapping(), "service {s}");
    }
    assert!(
        d["services"]["traefik-oidc-sidecar"]["ports"].is_null(),
        "the sidecar is not published"
    );
}
