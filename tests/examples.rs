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

/// The field names of the shim's `Config` struct (traefik-plugin/config.go), lower-cased: Traefik
/// decodes a plugin's configuration with mapstructure, which matches keys case-insensitively.
/// `Block` is left out: it collects every key no field claims (an inline block), so a misspelt
/// key would silently turn the door into an inline block instead of failing.
fn shim_config_keys() -> Vec<String> {
    let body = between("traefik-plugin/config.go", "type Config struct {", "\n}");
    let keys: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix('\t'))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "Block")
        .map(str::to_ascii_lowercase)
        .collect();
    assert!(keys.contains(&"sidecarurl".to_string()), "{keys:?}");
    keys
}

/// The text of a repository file between the first `start` and the next `end` after it.
fn between(rel: &str, start: &str, end: &str) -> String {
    let text = std::fs::read_to_string(root().join(rel)).unwrap();
    let after = text
        .split_once(start)
        .unwrap_or_else(|| panic!("{rel}: {start}"))
        .1;
    after
        .split_once(end)
        .unwrap_or_else(|| panic!("{rel}: {end}"))
        .0
        .to_string()
}

/// The one value of `--flag=value` in a command list.
fn flag<'a>(command: &'a [Value], name: &str) -> &'a str {
    let prefix = format!("{name}=");
    let found: Vec<&str> = command
        .iter()
        .filter_map(|c| c.as_str()?.strip_prefix(prefix.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "{name} in {command:?}");
    found[0]
}

#[test]
fn compose_plugin_door_matches_the_shim_and_the_sidecar() {
    let d = &docs(&root().join("examples/docker-compose/docker-compose.yml"))[0];
    let traefik = &d["services"]["traefik"];

    // The image is the Traefik the suites run (scripts/build-traefik.sh's pin).
    let pin = between("scripts/build-traefik.sh", "TRAEFIK_VERSION:-", "}");
    assert_eq!(traefik["image"], format!("traefik:{pin}"));

    // The local plugin: the module this repository's go.mod declares, mounted where Traefik
    // looks for it (./plugins-local/src/<module>/ under its working directory), with the
    // manifest, go.mod and the package `import` names.
    let command = traefik["command"].as_sequence().unwrap();
    assert_eq!(flag(command, "--providers.docker"), "true");
    assert_eq!(
        flag(command, "--providers.docker.exposedbydefault"),
        "false"
    );
    let module = between("go.mod", "\nmodule ", "\n");
    let plugin_flags: Vec<&str> = command
        .iter()
        .filter_map(|c| c.as_str()?.strip_prefix("--experimental.localplugins."))
        .collect();
    assert_eq!(plugin_flags.len(), 1, "{plugin_flags:?}");
    let (plugin, module_flag) = plugin_flags[0].split_once(".modulename=").unwrap();
    assert_eq!(module_flag, module);
    let import = between(".traefik.yml", "\nimport: ", "\n");
    assert_eq!(traefik["working_dir"], "/");
    let mounts: Vec<&str> = traefik["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let package_dir = import.strip_prefix(module.as_str()).unwrap();
    for (src, dst) in [
        (
            "../../.traefik.yml".to_string(),
            format!("{module}/.traefik.yml"),
        ),
        ("../../go.mod".to_string(), format!("{module}/go.mod")),
        (format!("../..{package_dir}"), import.clone()),
    ] {
        let mount = format!("{src}:/plugins-local/src/{dst}:ro");
        assert!(mounts.contains(&mount.as_str()), "{mount} in {mounts:?}");
        assert!(
            root().join(src.trim_start_matches("../../")).exists(),
            "{src}"
        );
    }

    // The plugin door's labels on whoami (docker provider).
    let labels: Vec<&str> = d["services"]["whoami"]["labels"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let label = |key: &str| -> &str {
        let prefix = format!("{key}=");
        labels
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("label {key} in {labels:?}"))
    };
    assert_eq!(label("traefik.enable"), "true");
    let router_mw = label("traefik.http.routers.app-plugin.middlewares");
    let mw = router_mw.strip_suffix("@docker").unwrap();
    let prefix = format!("traefik.http.middlewares.{mw}.plugin.{plugin}.");
    let keys = shim_config_keys();
    let mut plugin_labels = std::collections::BTreeMap::new();
    for l in &labels {
        if let Some(rest) = l.strip_prefix("traefik.http.middlewares.") {
            let (k, v) = l
                .strip_prefix(prefix.as_str())
                .and_then(|kv| kv.split_once('='))
                .unwrap_or_else(|| panic!("{rest}: a middleware label that is not {prefix}<key>"));
            assert!(
                keys.contains(&k.to_ascii_lowercase()),
                "{k} is not a key of the shim's Config {keys:?}"
            );
            plugin_labels.insert(k.to_ascii_lowercase(), v);
        }
    }

    // The sidecar the plugin asks: the compose service, on the port it exposes and listens on.
    let url = plugin_labels["sidecarurl"];
    let (host, port) = url
        .strip_prefix("http://")
        .unwrap()
        .split_once(':')
        .unwrap();
    assert!(
        d["services"][host].is_mapping(),
        "no compose service {host}"
    );
    assert_eq!(d["services"][host]["expose"][0], port);
    // The middleware it names exists in both sidecar configurations (the Redis override swaps it).
    for rel in [
        "examples/docker-compose/sidecar.yaml",
        "examples/docker-compose/sidecar-redis.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(rel)).unwrap();
        let c = config::parse(&text, &redis_env()).unwrap().config;
        assert_eq!(c.listen.port().to_string(), port, "{rel}: listen");
        assert!(
            c.middlewares.contains_key(plugin_labels["middleware"]),
            "{rel} has no middleware {}",
            plugin_labels["middleware"]
        );
    }

    // Dex sends the browser back to the plugin door's host, which Traefik answers.
    let rule = label("traefik.http.routers.app-plugin.rule");
    let door = rule
        .strip_prefix("Host(`")
        .unwrap()
        .strip_suffix("`)")
        .unwrap();
    let dex = &docs(&root().join("examples/docker-compose/dex.yaml"))[0];
    let callback = format!("http://{door}:8080/oidc/callback");
    assert!(
        dex["staticClients"][0]["redirectURIs"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|u| *u == callback.as_str()),
        "dex.yaml lacks {callback}"
    );
    assert!(
        traefik["networks"]["default"]["aliases"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|a| a == door),
        "traefik has no alias {door}"
    );
}
