//! The documentation cannot drift from the code (issue 20). Over `README.md` and every page
//! under `docs/`:
//! - every fenced YAML or JSON block is tagged with what it is, and parses; a `yaml sidecar`
//!   block is a complete configuration file that the real binary's `--check-config` accepts;
//! - every key the configuration parser reads is in the reference (`docs/configuration.md`),
//!   and every key the reference's tables name is one the parser reads;
//! - every relative link names a file that exists, and every `#anchor` a heading of that file.
//!
//! Traefik configuration and label blocks are checked by Traefik's own parsers and compose
//! blocks by `docker compose config`, in `scripts/test-docs.sh` (they need Traefik's module).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/, sorted.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out
}

/// One fenced code block: its page, the line of its opening fence, the info string's words and
/// the text between the fences (indentation of the fence removed, as Markdown does).
struct Block {
    page: PathBuf,
    line: usize,
    lang: String,
    tag: String,
    text: String,
}

impl Block {
    fn at(&self) -> String {
        format!(
            "{}:{}",
            self.page.strip_prefix(root()).unwrap().display(),
            self.line
        )
    }
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, String, String, Vec<String>)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let mut words = info.split_whitespace();
                    let lang = words.next().unwrap_or("").to_string();
                    let tag = words.next().unwrap_or("").to_string();
                    open = Some((i + 1, indent, lang, tag, Vec::new()));
                }
            }
            Some((start, ind, lang, tag, body)) => {
                if trimmed.starts_with("```") {
                    out.push(Block {
                        page: page.to_path_buf(),
                        line: *start,
                        lang: std::mem::take(lang),
                        tag: std::mem::take(tag),
                        text: body.join("\n") + "\n",
                    });
                    open = None;
                } else {
                    let cut = line.len() - line.trim_start().len();
                    body.push(line[cut.min(*ind)..].to_string());
                }
            }
        }
    }
    assert!(open.is_none(), "{}: unclosed code fence", page.display());
    out
}

fn all_blocks() -> Vec<Block> {
    pages().iter().flat_map(|p| blocks(p)).collect()
}

/// What each `yaml` block's tag says it is; scripts/test-docs.sh checks the Traefik and compose
/// ones with their own parsers.
const YAML_TAGS: &[&str] = &[
    "sidecar",
    "traefik-dynamic",
    "traefik-static",
    "compose",
    "helm-values",
    "k8s",
    "fragment",
];

#[test]
fn every_yaml_and_json_block_is_tagged_and_parses() {
    let mut problems = Vec::new();
    let mut counted = 0;
    for b in all_blocks() {
        match b.lang.as_str() {
            "yaml" | "yml" => {
                counted += 1;
                if !YAML_TAGS.contains(&b.tag.as_str()) {
                    problems.push(format!(
                        "{}: a yaml block needs one of the tags {YAML_TAGS:?} after the language (got {:?})",
                        b.at(),
                        b.tag
                    ));
                    continue;
                }
                for doc in serde_yaml_ng::Deserializer::from_str(&b.text) {
                    if let Err(e) = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc) {
                        problems.push(format!("{}: not YAML: {e}", b.at()));
                        // The multi-document iterator does not end after an error.
                        break;
                    }
                }
            }
            "json" => {
                counted += 1;
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&b.text) {
                    problems.push(format!("{}: not JSON: {e}", b.at()));
                }
            }
            "text" if b.tag == "labels" => {
                counted += 1;
                for l in b.text.lines().filter(|l| !l.trim().is_empty()) {
                    if !(l.starts_with("traefik.") && l.contains('=')) {
                        problems.push(format!("{}: not a traefik label: {l}", b.at()));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(
        counted > 20,
        "only {counted} checked blocks: extraction broke"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `--check-config` on every `yaml sidecar` block: each `${VAR}` set to a dummy of secret
/// length, each `${file:/path}` pointed at a dummy file and each `FilePath: /path` at a
/// dummy page in a scratch directory (the block's own text otherwise).
#[test]
fn every_sidecar_block_passes_check_config() {
    let dir = std::env::temp_dir().join(format!("tos-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let var = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").unwrap();
    let file = regex::Regex::new(r"\$\{file:(/[^}]+)\}").unwrap();
    let page = regex::Regex::new(r"FilePath:\s*(/[^\s,}]+)").unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (n, b) in all_blocks()
        .into_iter()
        .filter(|b| b.tag == "sidecar")
        .enumerate()
    {
        checked += 1;
        let mut text = b.text.clone();
        for (i, c) in file.captures_iter(&b.text).enumerate() {
            let local = dir.join(format!("{n}-{i}"));
            std::fs::write(&local, "dummy-file-value-for-the-docs-check-0123456789").unwrap();
            text = text.replace(&c[0], &format!("${{file:{}}}", local.display()));
        }
        for (i, c) in page.captures_iter(&b.text).enumerate() {
            let local = dir.join(format!("{n}-page-{i}.html"));
            std::fs::write(&local, "<!doctype html><title>{{ .statusName }}</title>").unwrap();
            text = text.replace(&c[1], &local.display().to_string());
        }
        let path = dir.join(format!("{n}.yaml"));
        std::fs::write(&path, &text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_traefik-oidc-sidecar"));
        cmd.arg("--config").arg(&path).arg("--check-config");
        for c in var.captures_iter(&text) {
            cmd.env(
                &c[1],
                format!("docs-check-{}-kX9vQ2mZ7pL4wR8tY1nB6cF3hJ5", &c[1]),
            );
        }
        let out = cmd.output().unwrap();
        if !out.status.success() {
            problems.push(format!(
                "{}: --check-config failed:\n{}{}",
                b.at(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(checked >= 3, "only {checked} sidecar blocks found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The first cell of every row of the reference's key tables, and the whole row's text.
fn reference_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let mut rows = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let first = rest.split(" |").next().unwrap_or("");
        rows.push((format!("`{first}"), line.to_string()));
    }
    rows
}

/// The key paths a row's first cell names: `` `a.b` `` and the shorthand `` / `.c` `` (a sibling
/// of the previous path's last segment).
fn row_paths(first: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in first.split('`').skip(1).step_by(2) {
        if let Some(sib) = part.strip_prefix('.') {
            let prev = out.last().cloned().unwrap_or_default();
            let parent = prev.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
            out.push(format!("{parent}.{sib}"));
        } else {
            out.push(part.to_string());
        }
    }
    out
}

fn known_paths() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (section, keys) in traefik_oidc_sidecar::config::reference_keys() {
        for k in keys {
            out.insert(match section {
                "" | "middleware" => k.to_string(),
                s => format!("{s}.{k}"),
            });
        }
    }
    out
}

#[test]
fn every_parser_key_is_in_the_reference_and_back() {
    let rows = reference_rows();
    assert!(rows.len() > 40, "only {} reference rows found", rows.len());
    let named: Vec<(Vec<String>, &str)> = rows
        .iter()
        .map(|(f, l)| (row_paths(f), l.as_str()))
        .collect();
    let word = |text: &str, w: &str| {
        text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|t| t == w)
    };
    let mut missing = Vec::new();
    for path in known_paths() {
        // Documented by its own row, by rows of its children (`limits` by `limits.x`), or by
        // the row of its parent object mentioning the key (`Headers` names `IncludeWhen`).
        let own = named.iter().any(|(ps, _)| {
            ps.iter()
                .any(|p| *p == path || p.starts_with(&format!("{path}.")))
        });
        let by_parent = path.rsplit_once('.').is_some_and(|(parent, leaf)| {
            named
                .iter()
                .any(|(ps, line)| ps.iter().any(|p| p == parent) && word(line, leaf))
        });
        if !own && !by_parent {
            missing.push(path);
        }
    }
    assert!(
        missing.is_empty(),
        "keys the parser reads but docs/configuration.md does not document: {missing:?}"
    );
    let known = known_paths();
    let unknown: Vec<String> = named
        .iter()
        .flat_map(|(ps, _)| ps.iter().cloned())
        .filter(|p| !known.contains(p))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents keys the parser does not read: {unknown:?}"
    );
}

/// GitHub's heading anchors: lower case, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(page: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(page).unwrap_or_default();
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut in_code = false;
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            for c in link.captures_iter(line) {
                let target = &c[1];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let dest = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().unwrap().join(file)
                };
                let at = format!("{}:{}", page.strip_prefix(root()).unwrap().display(), i + 1);
                if !dest.exists() {
                    problems.push(format!("{at}: {target}: no such file"));
                } else if !anchor.is_empty() && !anchors(&dest).contains(anchor) {
                    problems.push(format!("{at}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_what_they_claim_to() {
    // A row naming a key the parser does not read, and a sibling shorthand.
    assert_eq!(
        row_paths("`ErrorPages.Unauthenticated` / `.Unauthorized`"),
        ["ErrorPages.Unauthenticated", "ErrorPages.Unauthorized"]
    );
    assert!(!known_paths().contains("Provider.NoSuchKey"));
    assert!(known_paths().contains("Provider.Url"));
    assert!(known_paths().contains("redis.sentinel.masterName"));
    assert_eq!(
        slug("Provider reached at an internal address"),
        "provider-reached-at-an-internal-address"
    );
    assert_eq!(slug("private_key_jwt"), "private_key_jwt");
    // Indented fences (inside list items) lose the fence's indentation.
    let dir = std::env::temp_dir().join(format!("tos-docs-fence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("x.md");
    std::fs::write(
        &p,
        "1. item\n\n   ```yaml fragment\n   a:\n     b: 1\n   ```\n",
    )
    .unwrap();
    let b = blocks(&p);
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].lang.as_str(), b[0].tag.as_str()),
        ("yaml", "fragment")
    );
    assert_eq!(b[0].text, "a:\n  b: 1\n");
    std::fs::remove_dir_all(&dir).ok();
}
