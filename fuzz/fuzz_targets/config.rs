//! Configuration parsing (`config::parse`) on arbitrary YAML.
//!
//! Every `${VAR}` expands to a 40-byte value and `${file:...}` to a fixed string, so the fuzzer
//! reaches the validation behind them without touching the file system. Invariants: no panic
//! (alias bombs and deep nesting included); an accepted middleware has a Secret of at least 32
//! bytes, `openid` among its scopes, and path-shaped logout and callback settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_oidc_sidecar::config::{self, Env};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = Env {
        var: &|_| Some("v".repeat(40)),
        file: &|_| Ok("file-content-file-content-file-content".to_string()),
        within: &|_, _, _| Ok("file-content-file-content-file-content".to_string()),
    };
    let Ok(loaded) = config::parse(text, &env) else {
        return;
    };
    let cfg = loaded.config;
    // `middlewares:` may be empty: inline blocks registered by the plugin shim bring them.
    assert_ne!(cfg.listen, cfg.metrics_listen);
    for (name, m) in &cfg.middlewares {
        assert_eq!(&m.name, name);
        assert!(
            m.secret.expose().len() >= 32,
            "{name}: short Secret accepted"
        );
        assert!(
            m.scopes.iter().any(|s| s == "openid"),
            "{name}: no openid scope"
        );
        assert!(m.logout_uri.starts_with('/') && !m.logout_uri.starts_with("//"));
        assert!(!m.provider.client_id.is_empty());
        assert!(
            m.callback_uri.starts_with('/') || m.callback_uri.starts_with("http"),
            "{name}: callback {:?}",
            m.callback_uri
        );
    }
});
