//! Inline block registration (`config::parse_block`, `inline::label`, `inline::is_hash`) on
//! arbitrary bytes: what a peer can send with `POST /inline/{hash}`.
//!
//! An inline block is configuration from the network, so it may read of the sidecar only what
//! `inline.allowedVariables` lists (`crate::inline`). Every input is parsed under four rule
//! sets, with an environment whose every variable and file holds a distinctive canary and which
//! records what it was asked for. Invariants: no panic; with the default rules nothing of the
//! environment is read at all; with `ALLOWED` listed (for `Secret` only, or for any key) only
//! `ALLOWED` is read, with `file:/run/secrets/allowed` listed only that file; no other canary
//! ever shows in the result's `Debug`; an allowed value is never echoed by a refusal (nor by an
//! accepted block's `Debug` when it may only be the redacted `Secret`). The label the sidecar
//! logs for the shim's `X-Oidc-Sidecar-Middleware` is at most 64 characters of
//! `[A-Za-z0-9._@/-]`, or `-`.
#![no_main]

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use traefik_oidc_sidecar::config::{self, BlockError, Env};
use traefik_oidc_sidecar::inline::{self, AllowedVariable, InlineConfig};

/// Every canary starts with this; an input that already holds it (say, `"CANARY-ENV-X-7f3a"`
/// as a literal value) legitimately shows it back, so the leak checks skip such inputs.
const MARK: &str = "CANARY-ENV-";

/// The allowed variable's value: long and varied enough to pass as a `Secret`, so accepted
/// blocks are reachable.
const ALLOWED_VALUE: &str = "CANARY-ENV-ALLOWED-7f3a-9c41e2d05b86";

/// The allowed file's content (trimmed by the expansion, so no surrounding space).
const ALLOWED_FILE_VALUE: &str = "CANARY-ENV-FILE-ALLOWED-7f3a-5e0d91c4b2a7";

/// The allowed file.
const ALLOWED_FILE: &str = "/run/secrets/allowed";

fn var_canary(name: &str) -> String {
    if name == "ALLOWED" {
        ALLOWED_VALUE.to_string()
    } else {
        format!("{MARK}{name}-7f3a")
    }
}

fn file_canary(path: &Path) -> String {
    if path == Path::new(ALLOWED_FILE) {
        ALLOWED_FILE_VALUE.to_string()
    } else {
        format!("{MARK}FILE-{}-7f3a", path.display())
    }
}

/// What a rule set lets a block read.
struct Mode {
    name: &'static str,
    rules: InlineConfig,
    /// The only variable `var` may be asked for.
    var: Option<&'static str>,
    /// The only file `file` may be asked for.
    file: Option<&'static str>,
    /// An accepted block may show this value in its `Debug` (it is allowed in a key that is not
    /// the redacted `Secret`).
    shown_when_accepted: Option<&'static str>,
}

fn allowed(name: &str, keys: &[&str]) -> InlineConfig {
    InlineConfig {
        allowed_variables: vec![AllowedVariable {
            name: name.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }],
        ..InlineConfig::default()
    }
}

fn modes() -> [Mode; 4] {
    [
        Mode {
            name: "default rules",
            rules: InlineConfig::default(),
            var: None,
            file: None,
            shown_when_accepted: None,
        },
        Mode {
            name: "ALLOWED for Secret",
            rules: allowed("ALLOWED", &["Secret"]),
            var: Some("ALLOWED"),
            file: None,
            shown_when_accepted: None,
        },
        Mode {
            name: "ALLOWED for any key",
            rules: allowed("ALLOWED", &[]),
            var: Some("ALLOWED"),
            file: None,
            shown_when_accepted: Some(ALLOWED_VALUE),
        },
        Mode {
            name: "one file for Provider.ClientSecret",
            rules: allowed(&format!("file:{ALLOWED_FILE}"), &["Provider.ClientSecret"]),
            var: None,
            file: Some(ALLOWED_FILE),
            // `ClientSecret`'s Debug is redacted (openidconnect), so nothing may show it.
            shown_when_accepted: None,
        },
    ]
}

/// Whether the input itself carries a canary marker (raw, or once JSON escapes are decoded).
fn input_has_mark(data: &[u8]) -> bool {
    if data.windows(MARK.len()).any(|w| w == MARK.as_bytes()) {
        return true;
    }
    serde_json::from_slice::<serde_json::Value>(data)
        .map(|v| v.to_string().contains(MARK))
        .unwrap_or(false)
}

fn check_block(data: &[u8], mode: &Mode, marked: bool) {
    let vars = RefCell::new(Vec::<String>::new());
    let files = RefCell::new(Vec::<PathBuf>::new());
    let var = |name: &str| {
        vars.borrow_mut().push(name.to_string());
        Some(var_canary(name))
    };
    let file = |path: &Path| {
        files.borrow_mut().push(path.to_path_buf());
        Ok(file_canary(path))
    };
    // A file a block names inside inline.allowedFileDirectory: recorded like any other read
    // (no mode allows a directory, so it must never be called).
    let within = |dir: &Path, path: &str, _cap: usize| {
        let p = dir.join(path);
        files.borrow_mut().push(p.clone());
        Ok(file_canary(&p))
    };
    let env = Env {
        var: &var,
        file: &file,
        within: &within,
    };
    let result = config::parse_block(data, "inline:fuzz", &env, &mode.rules);
    let m = mode.name;

    let vars = vars.into_inner();
    let files = files.into_inner();
    assert!(
        vars.iter().all(|v| Some(v.as_str()) == mode.var),
        "{m}: read variables {vars:?}"
    );
    assert!(
        files
            .iter()
            .all(|f| Some(f.as_path()) == mode.file.map(Path::new)),
        "{m}: read files {files:?}"
    );
    if marked {
        return;
    }

    let shown = format!("{result:?}");
    // Canaries the rules never allow: reading them is refused above, so they cannot show.
    let forbidden = shown
        .match_indices(MARK)
        .map(|(i, _)| &shown[i..])
        .find(|rest| !rest.starts_with(ALLOWED_VALUE) && !rest.starts_with(ALLOWED_FILE_VALUE));
    assert!(forbidden.is_none(), "{m}: a canary shows: {shown}");
    for value in [ALLOWED_VALUE, ALLOWED_FILE_VALUE] {
        match &result {
            Ok(_) if mode.shown_when_accepted == Some(value) => {}
            Ok(_) => assert!(
                !shown.contains(value),
                "{m}: accepted block shows it: {shown}"
            ),
            Err(BlockError::Invalid(problems)) => {
                for p in problems {
                    assert!(
                        !p.message.contains(value) && !p.path.contains(value),
                        "{m}: a refusal echoes an allowed value: {p:?}"
                    );
                }
            }
            Err(BlockError::NotAnObject(why)) => {
                assert!(!why.contains(value), "{m}: {why}");
            }
        }
    }
}

fn check_label(raw: Option<&[u8]>) {
    let l = inline::label(raw);
    assert!(
        l == "-"
            || (!l.is_empty()
                && l.len() <= inline::MAX_LABEL
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._@/-".contains(&b))),
        "label {l:?} of {raw:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    check_label(None);
    check_label(Some(data));
    if let Ok(s) = std::str::from_utf8(data) {
        let h = inline::is_hash(s);
        assert_eq!(
            h,
            s.len() == 64
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "is_hash({s:?})"
        );
        if h {
            assert!(inline::member_name(s).starts_with("inline:"));
        }
    }
    let marked = input_has_mark(data);
    for mode in &modes() {
        check_block(data, mode, marked);
    }
});
