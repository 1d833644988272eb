//! The inline-registration attacker (issue 18), played against the real binary: whoever can
//! write an inline block (a container owner with Traefik label access) or reach the sidecar
//! (a pod on the network) tries to read the sidecar's environment and files, to make it fetch
//! URLs of their choice, to stall or bloat it with devices and FIFOs, to borrow another
//! middleware's `Secret`, and to log other users out through shared cookie names.
//!
//! Each test starts `traefik-oidc-sidecar` as a process with canary values in its environment
//! and files, and checks that no answer carries them and no file or URL is touched. The other
//! attacks of the issue have suites of their own: a Redis refresh racing a logout
//! (`tests/redis_refresh_race.rs`), replayed logout tokens and reload tightening (see
//! SECURITY.md's threat model for the list).
//!
//! Users (tests/op/op.mjs): alice is in `admins` and `users`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The binary under attack: this build's, or `ATTACKER_SIDECAR_BIN` (to show that an older
/// build fails these tests).
fn bin() -> String {
    std::env::var("ATTACKER_SIDECAR_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_traefik-oidc-sidecar").to_string())
}
const TOKEN: &str = "attacker-suite-registration-token-0123";
/// What the sidecar's environment holds; no answer may ever carry it.
const CANARY_ENV: &str = "canary-env-value-5b0e1d";
/// What a file on the sidecar's side holds; no answer may ever carry it.
const CANARY_FILE: &str = "canary-file-content-9c44aa";
const SESSION_SECRET: &str = "attacker-suite-session-secret-0123456789abcdefgh";

/// The sidecar binary as a process, stopped on drop.
struct Bin {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tos-attacker-{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(t) ^ (N.fetch_add(1, Ordering::Relaxed) as u64) << 32
}

impl Bin {
    /// Starts the binary on `root` (the file's top level, without `listen`) and waits until
    /// it answers `/healthz`. Its environment carries the canaries.
    async fn start(name: &str, root: &str) -> Bin {
        let dir = scratch(name);
        let port = free_port();
        let metrics = free_port();
        let cfg = dir.join("sidecar.yaml");
        std::fs::write(
            &cfg,
            format!("listen: 127.0.0.1:{port}\nmetricsListen: 127.0.0.1:{metrics}\n{root}"),
        )
        .unwrap();
        let child = Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .env("CANARY_SECRET", CANARY_ENV)
            .env("SESSION_SECRET", SESSION_SECRET)
            .env("OIDC_CLIENT_SECRET", "sidecar-secret")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let bin = Bin {
            child,
            addr: format!("127.0.0.1:{port}"),
            dir,
        };
        let c = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = c.get(format!("http://{}/healthz", bin.addr)).send().await
                && r.status() == 200
            {
                return bin;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the sidecar did not start");
    }

    /// `POST /inline/{hash}` of `body` (bounded: a stalled sidecar fails the test).
    async fn register(&self, body: &[u8], token: Option<&str>) -> (u16, String) {
        let h: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut req = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap()
            .post(format!("http://{}/inline/{h}", self.addr))
            .header("Content-Type", "application/json")
            .header("X-Oidc-Sidecar-Middleware", "evil@docker")
            .body(body.to_vec());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req
            .send()
            .await
            .expect("the sidecar answers a registration");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// A named pipe at `path` that no writer ever opens (a blocking read of it never returns).
fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// `--check-config` of the file `cfg`, with `env` added to the environment.
fn check_config(cfg: &Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(bin())
        .arg("--config")
        .arg(cfg)
        .arg("--check-config")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn hash(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A valid block for `issuer` with `extra` merged in at the top level (sorted keys, as the
/// shim sends).
fn block(issuer: &str, extra: Value) -> Vec<u8> {
    let mut b = json!({
        "Provider": {"Url": issuer, "ClientId": "sidecar", "ClientSecret": "sidecar-secret"},
        "Secret": "attacker-own-block-secret-0123456789abcdefgh",
        "Scopes": ["openid", "profile", "email", "groups"],
        "SessionCookie": {"Secure": "false"},
    });
    merge(&mut b, &extra);
    serde_json::to_vec(&b).unwrap()
}

fn merge(into: &mut Value, extra: &Value) {
    for (k, v) in extra.as_object().unwrap() {
        match (into.get_mut(k), v) {
            (Some(Value::Object(_)), Value::Object(_)) => merge(into.get_mut(k).unwrap(), v),
            _ => into[k] = v.clone(),
        }
    }
}

/// Key paths and messages of a 422.
fn problems(body: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems: {body}"))
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_no_canary(what: &str, body: &str) {
    for c in [CANARY_ENV, CANARY_FILE, SESSION_SECRET, "PATH=", "HOME="] {
        assert!(
            !body.contains(c),
            "{what}: the answer carries {c:?}: {body}"
        );
    }
}

/// A TCP listener that counts the connections made to it (the sidecar must make none).
async fn canary_listener() -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/realms/evil", l.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, hits)
}

/// Item 3: with the default settings (no `inline:` block at all), registration is off and the
/// sidecar fetches nothing, whatever `Provider.Url` a pod names; the refusal names the settings
/// that switch it on.
#[tokio::test]
async fn default_settings_register_nothing_and_fetch_no_url() {
    let (evil, hits) = canary_listener().await;
    let s = Bin::start("defaults", "middlewares: {}\n").await;
    let b = block(&evil, json!({}));
    for token in [None, Some("guessed-token-0123456789")] {
        let (st, body) = s.register(&b, token).await;
        assert_eq!(st, 403, "{body}");
        assert!(
            body.contains("inline.allowedProviderUrls")
                && body.contains("inline.registrationToken"),
            "{body}"
        );
    }
    // The block was not stored: its requests still get the "unknown block" cue.
    let r = reqwest::get(format!("http://{}/auth/inline/{}", s.addr, hash(&b)))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the sidecar fetched the attacker's URL"
    );
}

/// Items 1, 2 and 8: a block reads nothing of the sidecar's environment or files. Each attempt
/// is a 422 naming the key; the answer carries no value, and a path that exists reads the same
/// as one that does not.
#[tokio::test]
async fn a_block_reads_nothing_of_the_process() {
    let canary_dir = scratch("canary-files");
    let canary = canary_dir.join("secret.txt");
    std::fs::write(&canary, CANARY_FILE).unwrap();
    let issuer = "https://idp.example/realms/main";
    let s = Bin::start(
        "reach",
        &format!(
            "middlewares: {{}}\ninline:\n  registrationToken: {TOKEN}\n  allowedProviderUrls: [{issuer}]\n"
        ),
    )
    .await;
    let f = canary.display().to_string();
    let attempts: Vec<(&str, Value, &str)> = vec![
        (
            "environ as the 401 page",
            json!({"UnauthenticatedBehavior": "Unauthorized", "ErrorPages": {"Unauthenticated": {"FilePath": "/proc/self/environ"}}}),
            "ErrorPages.Unauthenticated.FilePath",
        ),
        (
            "a canary file as the 401 page",
            json!({"UnauthenticatedBehavior": "Unauthorized", "ErrorPages": {"Unauthenticated": {"FilePath": f}}}),
            "ErrorPages.Unauthenticated.FilePath",
        ),
        (
            "a variable in the login redirect",
            json!({"AuthorizationParams": {"x": "${CANARY_SECRET}"}}),
            "AuthorizationParams.x",
        ),
        (
            "a file in the login redirect",
            json!({"AuthorizationParams": {"x": format!("${{file:{f}}}")}}),
            "AuthorizationParams.x",
        ),
        (
            "the session secret to the upstream",
            json!({"Headers": [{"Name": "X-Steal", "Value": "${SESSION_SECRET}"}]}),
            "Headers[0].Value",
        ),
        (
            "another middleware's Secret by reference",
            json!({"Secret": "${SESSION_SECRET}"}),
            "Secret",
        ),
        (
            "a CA file that exists",
            json!({"Provider": {"CABundleFile": "/etc/ssl/certs/ca-certificates.crt"}}),
            "Provider.CABundleFile",
        ),
        (
            "the client secret from a file",
            json!({"Provider": {"ClientSecret": "${file:/proc/self/environ}"}}),
            "Provider.ClientSecret",
        ),
    ];
    for (what, extra, key) in attempts {
        let (st, body) = s.register(&block(issuer, extra), Some(TOKEN)).await;
        assert_eq!(st, 422, "{what}: {body}");
        let p = problems(&body);
        assert!(
            p.iter().any(|(k, _)| k == key),
            "{what}: {key} not named: {body}"
        );
        assert_no_canary(what, &body);
        assert!(
            !body.contains(&f),
            "{what}: the answer names the canary path: {body}"
        );
    }
    // No oracle: a CA file that exists and one that does not are refused alike.
    let msg = |b: &str| problems(b).into_iter().map(|(_, m)| m).collect::<Vec<_>>();
    let ca = |file: &str| block(issuer, json!({"Provider": {"CABundleFile": file}}));
    let (_, a) = s
        .register(&ca("/etc/ssl/certs/ca-certificates.crt"), Some(TOKEN))
        .await;
    let (_, b) = s.register(&ca("/nonexistent/ca.pem"), Some(TOKEN)).await;
    assert_eq!(msg(&a), msg(&b));
}

/// Item 4: a device or a FIFO named by the operator's opt-in (a mistake the operator can make)
/// is refused at once: nothing blocks, memory does not grow, the sidecar keeps answering.
#[tokio::test]
async fn devices_and_fifos_never_stall_or_bloat_the_sidecar() {
    let pages = scratch("fifo-pages");
    let fifo = pages.join("page.html");
    mkfifo(&fifo);
    let fifo2 = pages.join("value.fifo");
    mkfifo(&fifo2);
    let issuer = "https://idp.example/realms/main";
    let s = Bin::start(
        "devices",
        &format!(
            "middlewares: {{}}\ninline:\n  registrationToken: {TOKEN}\n  allowedProviderUrls: [{issuer}]\n  allowedFileDirectory: {}\n  allowedVariables:\n    \"file:/dev/zero\": [AuthorizationParams.x]\n    \"file:{}\": [AuthorizationParams.x]\n",
            pages.display(),
            fifo2.display()
        ),
    )
    .await;
    let before = s.rss_kib();
    let started = Instant::now();
    for extra in [
        json!({"AuthorizationParams": {"x": "${file:/dev/zero}"}}),
        json!({"AuthorizationParams": {"x": format!("${{file:{}}}", fifo2.display())}}),
        json!({"UnauthenticatedBehavior": "Unauthorized", "ErrorPages": {"Unauthenticated": {"FilePath": "page.html"}}}),
        json!({"Provider": {"CABundleFile": "/dev/zero"}}),
    ] {
        let (st, body) = s.register(&block(issuer, extra.clone()), Some(TOKEN)).await;
        assert_eq!(st, 422, "{extra}: {body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let after = s.rss_kib();
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let r = reqwest::get(format!("http://{}/healthz", s.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The operator's own file is read under the same rules: a `${file:}` of a device or a FIFO
/// stops the start with a clear error, at once.
#[test]
fn the_operators_file_refuses_devices_and_fifos_too() {
    let d = scratch("operator");
    let fifo = d.join("secret.fifo");
    mkfifo(&fifo);
    for source in ["/dev/zero".to_string(), fifo.display().to_string()] {
        let cfg = d.join("sidecar.yaml");
        std::fs::write(
            &cfg,
            format!(
                "middlewares:\n  m:\n    Provider: {{Url: https://idp.example, ClientId: a, ClientSecret: \"${{file:{source}}}\"}}\n    Secret: {SESSION_SECRET}\n"
            ),
        )
        .unwrap();
        let started = Instant::now();
        let out = check_config(&cfg, &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a regular file"), "{source}: {err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // The configuration file itself: a FIFO is refused, not waited on.
    let out = check_config(&fifo, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
}

/// The operator's opt-in is narrow: a listed variable reads where it is allowed and nowhere
/// else; an unlisted one never.
#[tokio::test]
async fn an_allowed_variable_reads_only_in_its_keys() {
    let issuer = shared_op();
    let s = Bin::start(
        "optin",
        &format!(
            "middlewares: {{}}\ninline:\n  registrationToken: {TOKEN}\n  allowedProviderUrls: [\"{issuer}\"]\n  allowedVariables:\n    OIDC_CLIENT_SECRET: [Provider.ClientSecret]\n"
        ),
    )
    .await;
    let (st, body) = s
        .register(
            &block(
                issuer,
                json!({"Provider": {"ClientSecret": "${OIDC_CLIENT_SECRET}"}}),
            ),
            Some(TOKEN),
        )
        .await;
    assert!(st == 201 || st == 200, "{body}");
    let (st, body) = s
        .register(
            &block(
                issuer,
                json!({"Headers": [{"Name": "X-Leak", "Value": "${OIDC_CLIENT_SECRET}"}]}),
            ),
            Some(TOKEN),
        )
        .await;
    assert_eq!(st, 422, "{body}");
    assert!(
        body.contains("allows it in: Provider.ClientSecret"),
        "{body}"
    );
    assert!(!body.contains("sidecar-secret"), "{body}");
}

/// Items 2 and 8: a block cannot borrow the YAML middleware's `Secret`, so it cannot join that
/// scope and template its users' tokens into its own upstream; a block that merely copies the
/// cookie names (its own `Secret`) cannot open the victim's session, and its 401s and login
/// redirects leave the victim's cookies alone.
#[tokio::test]
async fn a_block_cannot_borrow_a_secret_nor_log_users_out_through_shared_cookie_names() {
    let issuer = shared_op();
    let root = format!(
        "logLevel: debug\ninline:\n  registrationToken: {TOKEN}\n  allowedProviderUrls: [\"{issuer}\"]\nmiddlewares:\n  default:\n    Provider: {{Url: \"{issuer}\", ClientId: sidecar, ClientSecret: sidecar-secret}}\n    Secret: \"${{SESSION_SECRET}}\"\n    CookieNamePrefix: Shared\n    Scopes: [openid, profile, email, groups]\n    SessionCookie: {{Secure: false}}\n"
    );
    let s = Bin::start("borrow", &root).await;
    for _ in 0..100 {
        let r = reqwest::get(format!("http://{}/readyz", s.addr))
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addr: std::net::SocketAddr = s.addr.parse().unwrap();
    let mut victim = Browser::at(addr, "default");
    let r = victim.login(&format!("http://{APP_HOST}/"), "alice").await;
    assert_eq!(r.status, 302, "{r:#?}");
    let ok = victim.app(&format!("http://{APP_HOST}/"), Kind::Xhr).await;
    assert_eq!(ok.status, 200, "{ok:#?}");
    let held = victim.cookies(APP_HOST);
    assert!(
        held.keys().any(|k| k.starts_with("Shared.session")),
        "{held:?}"
    );

    let steal = json!({
        "CookieNamePrefix": "Shared",
        "Headers": [{"Name": "X-Steal", "Value": "{{ .refreshToken }}"}],
        "UnauthenticatedBehavior": "Unauthorized",
    });
    // Joining the victim's scope needs its Secret: by reference it is refused.
    let mut borrowing = steal.clone();
    borrowing["Secret"] = json!("${SESSION_SECRET}");
    let (st, body) = s.register(&block(issuer, borrowing), Some(TOKEN)).await;
    assert_eq!(st, 422, "{body}");
    assert_no_canary("Secret by reference", &body);
    // Its own Secret, the victim's cookie names: registered, in a scope of its own.
    let b = block(issuer, steal);
    let (st, body) = s.register(&b, Some(TOKEN)).await;
    assert!(st == 201 || st == 200, "{body}");
    let mut at_evil = Browser::at(addr, &format!("inline/{}", hash(&b)));
    for (name, value) in &held {
        at_evil.set_cookie(APP_HOST, name, value);
    }
    let r = at_evil.app(&format!("http://{APP_HOST}/"), Kind::Xhr).await;
    assert_eq!(
        r.status, 401,
        "the victim's session opened in the attacker's scope: {r:#?}"
    );
    assert!(
        !r.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("X-Steal")),
        "{r:#?}"
    );
    // Any Set-Cookie of the victim's names (a removal above all) is the attack succeeding.
    let touched = |r: &Resp| -> Vec<String> {
        r.all("set-cookie")
            .into_iter()
            .filter(|c| c.starts_with("Shared.session"))
            .map(str::to_string)
            .collect()
    };
    assert!(
        touched(&r).is_empty(),
        "the attacker's 401 deletes the victim's cookies: {:?}",
        touched(&r)
    );
    let nav = at_evil
        .app(&format!("http://{APP_HOST}/"), Kind::Navigate)
        .await;
    assert!(
        touched(&nav).is_empty(),
        "the attacker's login redirect deletes the victim's cookies: {nav:#?}"
    );
    // The victim is still logged in.
    let still = victim.app(&format!("http://{APP_HOST}/"), Kind::Xhr).await;
    assert_eq!(still.status, 200, "{still:#?}");
}

/// Item 9: a published or placeholder `Secret` stops the start, and the Kubernetes examples
/// ship none (they read it from a Secret the operator makes).
#[test]
fn published_and_placeholder_secrets_are_refused_at_load() {
    let d = scratch("placeholders");
    for secret in [
        "replace-me-with-at-least-32-random-bytes-0000",
        "MLFs4TT99kOOq8h3UAVRtYoCTDYXiRcZ",
        "changeme-changeme-changeme-changeme",
        "00000000000000000000000000000000",
    ] {
        let cfg = d.join("sidecar.yaml");
        std::fs::write(
            &cfg,
            "middlewares:\n  m:\n    Provider: {Url: https://idp.example, ClientId: a}\n    Secret: \"${S}\"\n",
        )
        .unwrap();
        let out = check_config(&cfg, &[("S", secret)]);
        assert!(!out.status.success(), "{secret} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("middlewares.m.Secret"), "{err}");
        assert!(
            !err.contains(secret),
            "the refusal echoes the secret: {err}"
        );
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes");
    for e in std::fs::read_dir(&examples).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // No Secret object with values to forget to replace: the operator makes it.
        assert!(!text.contains("kind: Secret"), "{}", path.display());
        assert!(!text.contains("stringData"), "{}", path.display());
    }
}

/// `--check-config` says what is permissive about the `inline:` rules.
#[test]
fn check_config_warns_about_permissive_inline_rules() {
    let d = scratch("permissive");
    let cfg = d.join("sidecar.yaml");
    std::fs::write(
        &cfg,
        format!(
            "middlewares: {{}}\ninline:\n  registrationToken: {TOKEN}\n  allowedVariables: [SESSION_SECRET]\n  allowedFileDirectory: {}\n",
            d.display()
        ),
    )
    .unwrap();
    let out = check_config(&cfg, &[]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "inline.allowedProviderUrls is empty",
        "SESSION_SECRET may be used in any key",
        "inline.allowedFileDirectory is",
    ] {
        assert!(err.contains(want), "{want:?} missing in:\n{err}");
    }
}
