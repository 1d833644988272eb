//! traefik-oidc-auth's documented provider setups (Keycloak, ZITADEL, Kanidm, Entra ID,
//! Authentik, Pocket ID, Logto), kept as fixtures written by us, load unchanged with
//! `--check-config`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_traefik-oidc-sidecar");

#[test]
fn every_provider_fixture_passes_check_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/providers");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert_eq!(names.len(), 7, "{names:?}");
    for path in names {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&path).arg("--check-config");
        cmd.env(
            "SESSION_SECRET",
            "fixture-session-secret-of-at-least-32-bytes",
        );
        for var in [
            "KEYCLOAK",
            "KANIDM",
            "ENTRA",
            "AUTHENTIK",
            "POCKETID",
            "LOGTO",
        ] {
            cmd.env(format!("{var}_CLIENT_SECRET"), "client-secret");
        }
        // A test-only key (tests/fixtures/test-keys): the key is parsed at load.
        let key = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/test-keys/rsa-pkcs1.pem"),
        )
        .unwrap();
        cmd.env("ZITADEL_KEY_ID", "key-id").env("ZITADEL_KEY", key);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {err}", path.display());
        assert!(
            !err.contains("ClientJwtPrivateKey"),
            "private_key_jwt is implemented: no warning about its keys: {err}"
        );
    }
}
