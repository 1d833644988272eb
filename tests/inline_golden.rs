//! Equivalence with the Go shim (issue 12): for every golden fixture the shim's tests hold its
//! canonicalization to (traefik-plugin/testdata/inline/, see the README there), the sidecar
//! parses `NAME.canonical.json` as an inline block (what the shim registers) and `NAME.yaml` as
//! a block of its own YAML file, and the two configurations must be the same.
//!
//! `TOS_INLINE_GOLDENS` may name another fixture directory (e.g. a worktree of the shim's
//! branch); without it the repository's own is read, and its absence is a failure, not a skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use traefik_oidc_sidecar::config::{
    Env, InlineConfig, MiddlewareConfig, parse_block, parse_yaml_block,
};
use traefik_oidc_sidecar::inline::AllowedVariable;

fn dir() -> PathBuf {
    match std::env::var_os("TOS_INLINE_GOLDENS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("traefik-plugin/testdata/inline"),
    }
}

/// `${VAR}` and `${file:}` resolve to fixed values, the same for both sides.
fn env() -> Env<'static> {
    Env {
        var: &|k| Some(format!("value-of-{k}-0123456789abcdef0123456789")),
        file: &|p| Ok(format!("content-of-{}", p.display())),
        // A block's FilePath / CABundleFile: the same content as the YAML side reads.
        within: &|_, p, _| Ok(format!("content-of-{p}")),
    }
}

/// `inline:` rules that let a block read every `${…}` it names, in any key, and any file (the
/// env's fake `within`): the fixtures hold
/// the README's blocks, and the equivalence is about parsing, not about what is allowed.
fn rules_for(canonical: &[u8]) -> InlineConfig {
    let text = String::from_utf8_lossy(canonical);
    let allowed_variables = text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| AllowedVariable {
            name: name.to_string(),
            keys: Vec::new(),
        })
        .fold(Vec::<AllowedVariable>::new(), |mut acc, v| {
            if !acc.contains(&v) {
                acc.push(v);
            }
            acc
        });
    InlineConfig {
        allowed_variables,
        allowed_file_directory: Some(PathBuf::from("/")),
        max_file_bytes: 1 << 20,
        ..InlineConfig::default()
    }
}

/// Everything the parsed configuration holds, secrets included (Debug redacts them).
fn describe(c: &MiddlewareConfig) -> String {
    format!(
        "{c:#?}\nsecret={}\nclient_secret={:?}",
        c.secret.expose(),
        c.provider
            .client_secret
            .as_ref()
            .map(|s| s.secret().to_string())
    )
}

#[test]
fn every_canonical_block_parses_like_its_yaml() {
    let d = dir();
    let entries = std::fs::read_dir(&d).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the shim's golden fixtures are missing (they come with traefik-plugin/testdata/inline)",
            d.display()
        )
    });
    let mut names: Vec<String> = entries
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_suffix(".canonical.json").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 5,
        "too few fixtures in {}: {names:?}",
        d.display()
    );
    let env = env();
    for name in &names {
        let canonical = std::fs::read(d.join(format!("{name}.canonical.json"))).unwrap();
        let want_hash = std::fs::read_to_string(d.join(format!("{name}.sha256"))).unwrap();
        let hash: String = Sha256::digest(&canonical)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hash,
            want_hash.trim(),
            "{name}: the hash the sidecar checks"
        );
        let yaml_text = std::fs::read_to_string(d.join(format!("{name}.yaml"))).unwrap();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml_text).unwrap();
        let from_yaml = parse_yaml_block(&yaml, "m", &env)
            .unwrap_or_else(|e| panic!("{name}.yaml: {e:#?}"))
            .config;
        let inline = parse_block(&canonical, "m", &env, &rules_for(&canonical))
            .unwrap_or_else(|e| panic!("{name}.canonical.json: {e:#?}"))
            .config;
        let (a, b) = (describe(&from_yaml), describe(&inline));
        if a != b {
            let diff: Vec<String> = a
                .lines()
                .zip(b.lines())
                .filter(|(x, y)| x != y)
                .map(|(x, y)| format!("yaml:   {x}\ninline: {y}"))
                .take(10)
                .collect();
            panic!(
                "{name}: the inline block parses differently:\n{}",
                diff.join("\n")
            );
        }
    }
}
