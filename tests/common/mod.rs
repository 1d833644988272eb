//! Test harness: the real OpenID Provider (npm `oidc-provider`, tests/op/op.mjs), the sidecar
//! on a random port, and a "browser" that speaks to the sidecar exactly as Traefik's forwardAuth
//! does (a GET carrying X-Forwarded-* and the client's headers) and to the OP directly, with a
//! cookie jar per host and no automatic redirects.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use traefik_oidc_sidecar::config::{self, Env};
use traefik_oidc_sidecar::{App, SystemClock};

pub mod http;
pub mod redis;
pub use http::*;

/// Reloads `app` in place with the configuration `yaml`, as the file watcher does.
pub async fn reload(app: &App, yaml: &str) {
    let loaded = config::parse(yaml, &Env::process()).unwrap_or_else(|p| panic!("config: {p:#?}"));
    app.reload(&loaded.config).await.unwrap();
}

/// Registers the inline block `body` with the sidecar at `addr` (from a trusted peer, without
/// a registration token); returns the answer's status and the block's hash.
pub async fn register_block(addr: SocketAddr, body: Vec<u8>) -> (u16, String) {
    use sha2::Digest as _;
    let h: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/inline/{h}"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), h)
}

/// The host the protected application pretends to live on.
pub const APP_HOST: &str = "app.test";
/// A Secret for tests (not a default anyone ships).
pub const SECRET: &str = "integration-test-secret-0123456789-abcdef";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running oidc-provider process; killed on drop.
pub struct Op {
    pub issuer: String,
    /// The address the OP listens on (differs from `issuer` when OP_ISSUER names another host).
    pub url: String,
    child: Child,
}

impl Op {
    /// Starts the OP on `port` (0 = any) with the test client's URIs registered.
    pub fn start(port: u16) -> Op {
        Op::start_with(port, 3600)
    }

    /// Starts the OP with ID and access tokens that live `ttl_secs`.
    pub fn start_with(port: u16, ttl_secs: u64) -> Op {
        Op::start_env(port, ttl_secs, &[])
    }

    /// Starts the OP with extra environment variables (e.g. `OP_ISSUER`, see tests/op/op.mjs).
    pub fn start_env(port: u16, ttl_secs: u64, env: &[(&str, &str)]) -> Op {
        let dir = repo().join("tests/op");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "run `npm ci` in tests/op first (the README test command does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("op.mjs"))
            .env("OP_PORT", port.to_string())
            .env(
                "OP_REDIRECT_URIS",
                format!("http://{APP_HOST}/oidc/callback,http://other.test/oidc/callback"),
            )
            .env(
                "OP_POST_LOGOUT_REDIRECT_URIS",
                format!("http://{APP_HOST}/,http://{APP_HOST}/bye"),
            )
            .env("OP_EXIT_ON_STDIN_CLOSE", "1")
            .env("OP_ID_TOKEN_TTL", ttl_secs.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(op_log())
            .spawn()
            .expect("node must be installed");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("OP did not start: {e}: {line:?}"));
        let issuer = v["issuer"].as_str().unwrap().to_string();
        Op {
            url: v["url"].as_str().unwrap_or(&issuer).to_string(),
            issuer,
            child,
        }
    }

    /// Stops the OP now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The OP's stderr goes to target/test-op-logs/ so a failing test can be diagnosed.
fn op_log() -> Stdio {
    let dir = repo().join("target/test-op-logs");
    let _ = std::fs::create_dir_all(&dir);
    let name = format!(
        "op-{}-{}.log",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    std::fs::File::create(dir.join(name))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A free loopback port (bound and released: good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The standard middleware set used by the tests, against `issuer`.
pub fn config_yaml(issuer: &str, extra_root: &str) -> String {
    format!(
        r#"
logLevel: debug
{extra_root}
middlewares:
  default:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.default
    Scopes: [openid, profile, email, groups]
    ValidPostLogoutRedirectUris: ["http://{APP_HOST}/bye"]
    SessionCookie:
      Secure: false
  admins:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.admins
    Scopes: [openid, profile, email, groups]
    Authorization:
      AssertClaims:
        - Name: groups
          AnyOf: [admins]
    Headers:
      - Name: X-Auth-Name
        Value: "{{{{ .claims.name }}}}"
      - Name: X-Auth-Groups
        Value: "{{{{ .claims.groups }}}}"
      - Name: X-Auth-Role
        Values: '{{{{ .claims.groups | withPrefix "role:" | mapToJsonArray }}}}'
      - Name: X-Auth-Token
        Value: '{{{{ .accessToken | withPrefix "Bearer " }}}}'
  challenge:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.challenge
    Scopes: [openid, profile, email, groups]
    UnauthorizedBehavior: Challenge
    Authorization:
      AssertClaims:
        - Name: groups
          AnyOf: [admins]
  challengeprompt:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.challengeprompt
    Scopes: [openid, profile, email, groups]
    UnauthorizedBehavior: Challenge
    AuthorizationParams:
      prompt: login
    Authorization:
      AssertClaims:
        - Name: groups
          AnyOf: [admins]
  public:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.public
    Scopes: [openid, profile, email, groups]
    BypassAuthenticationRule: "PathPrefix(`/public`) || Path(`/health`) || Path(`/oidc/callback`) || Path(`/logout`)"
    UnauthorizedBehavior: Forward
    Authorization:
      AssertClaims:
        - Name: groups
          AnyOf: [admins]
    Headers:
      - Name: X-User
        Value: "{{{{ .claims.preferred_username }}}}"
        IncludeWhen: Always
      - Name: X-Email
        Value: "{{{{ .claims.email }}}}"
  login:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.login
    LoginUri: /login
    ValidPostLoginRedirectUris: ["http://other.test/welcome"]
    AuthorizationParams:
      acr_values: "urn:test:loa:1"
      login_hint: demo
      state: must-be-ignored
    RequestedResources: ["https://api.example.test/"]
    Authorization:
      CheckOnEveryRequest: true
      AssertClaims:
        - Name: email_verified
          AnyOf: ["true"]
  userinfo:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
      UseClaimsFromUserInfo: true
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.userinfo
    Headers:
      - Name: X-Info
        Value: "{{{{ .claims.userinfo_only }}}}"
      - Name: X-User
        Value: "{{{{ .claims.preferred_username }}}}"
  open:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.open
    UnauthenticatedBehavior: Forward
  api:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.api
    UnauthenticatedBehavior: Unauthorized
"#
    )
}

/// The sidecar, in this process, on random loopback ports.
pub struct Sidecar {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Sidecar {
    /// Starts the sidecar from YAML text (listen addresses are overridden).
    pub async fn start(yaml: &str) -> Sidecar {
        Sidecar::start_clocked(yaml, Arc::new(SystemClock)).await
    }

    /// Starts the sidecar with `clock` as its time (tests that move time on).
    pub async fn start_clocked(yaml: &str, clock: Arc<dyn traefik_oidc_sidecar::Clock>) -> Sidecar {
        // RUST_LOG=debug shows the sidecar's decisions in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let loaded =
            config::parse(yaml, &Env::process()).unwrap_or_else(|p| panic!("config: {p:#?}"));
        let app = Arc::new(App::new(&loaded.config, clock).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        app.start_discovery();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = app.clone();
        tokio::spawn(async move {
            traefik_oidc_sidecar::serve(served, listener, metrics, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Sidecar {
            addr,
            metrics_addr,
            app,
            stop: Some(tx),
        }
    }

    /// Waits until /readyz says 200 (at most `secs`).
    pub async fn wait_ready(&self, secs: u64) {
        let c = reqwest::Client::new();
        for _ in 0..secs * 20 {
            if let Ok(r) = c.get(format!("http://{}/readyz", self.addr)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("sidecar not ready after {secs}s");
    }

    /// The forwardAuth address of a middleware.
    pub fn auth_url(&self, middleware: &str) -> String {
        format!("http://{}/auth/{middleware}", self.addr)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A browser with a cookie jar per host, driving the app through the sidecar as Traefik would.
pub struct Browser {
    http: reqwest::Client,
    jar: Jar,
    sidecar: String,
    pub middleware: String,
}

impl Browser {
    pub fn new(sidecar: &Sidecar, middleware: &str) -> Browser {
        Browser::at(sidecar.addr, middleware)
    }

    /// A browser for a sidecar at `addr` (e.g. the real binary started as a process).
    pub fn at(addr: SocketAddr, middleware: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            jar: Jar::default(),
            sidecar: addr.to_string(),
            middleware: middleware.to_string(),
        }
    }

    /// Sends the next forwardAuth requests to the sidecar at `addr` (another replica), keeping
    /// the cookie jar.
    pub fn switch_to(&mut self, addr: SocketAddr) {
        self.sidecar = addr.to_string();
    }

    pub fn cookies(&self, host: &str) -> BTreeMap<String, String> {
        self.jar.cookies(host)
    }

    /// Every cookie held for `host`, whatever its path, as one `Cookie` header value.
    pub fn cookie_string(&self, host: &str) -> String {
        self.jar.header(host, None).unwrap_or_default()
    }

    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str) {
        self.jar.set(host, name, value);
    }

    pub fn remove_cookie(&mut self, host: &str, name: &str) {
        self.jar.remove(host, name);
    }

    /// A request to the protected app at `url` (http://app.test/...), as Traefik's forwardAuth
    /// would send it to the sidecar.
    pub async fn app(&mut self, url: &str, kind: Kind) -> Resp {
        self.app_with(url, kind, &[]).await
    }

    pub async fn app_with(&mut self, url: &str, kind: Kind, extra: &[(&str, &str)]) -> Resp {
        let u = reqwest::Url::parse(url).unwrap();
        let host = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap()),
            None => u.host_str().unwrap().to_string(),
        };
        let uri = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        self.forward(u.scheme(), &host, &uri, kind, extra).await
    }

    /// Like [`Browser::app_with`] with the X-Forwarded-Uri given verbatim (no URL parsing, so
    /// dot segments and encodings reach the sidecar as a hostile client would send them).
    pub async fn forward(
        &mut self,
        scheme: &str,
        host: &str,
        uri: &str,
        kind: Kind,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut req = self
            .http
            .get(format!("http://{}/auth/{}", self.sidecar, self.middleware))
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Proto", scheme)
            .header("X-Forwarded-Host", host)
            .header("X-Forwarded-Uri", uri)
            .header("X-Forwarded-For", "203.0.113.9");
        req = match kind {
            Kind::Navigate => req
                .header("Sec-Fetch-Mode", "navigate")
                .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            Kind::Xhr => req
                .header("Sec-Fetch-Mode", "cors")
                .header("Accept", "application/json"),
        };
        let path = uri.split('?').next().unwrap_or("/");
        if let Some(c) = self.jar.header(host, Some(path)) {
            req = req.header("Cookie", c);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let r = finish(req.send().await.unwrap()).await;
        self.jar.absorb(host, &r);
        r
    }

    fn host_of(url: &reqwest::Url) -> String {
        format!(
            "{}:{}",
            url.host_str().unwrap(),
            url.port_or_known_default().unwrap()
        )
    }

    /// A direct GET to the OP.
    pub async fn op_get(&mut self, url: &str) -> Resp {
        let u = reqwest::Url::parse(url).unwrap();
        let host = Self::host_of(&u);
        let mut req = self.http.get(u.clone()).header("Accept", "text/html");
        if let Some(c) = self.jar.header(&host, Some(u.path())) {
            req = req.header("Cookie", c);
        }
        let r = finish(req.send().await.unwrap()).await;
        self.jar.absorb(&host, &r);
        r
    }

    /// A form POST to the OP.
    pub async fn op_post(&mut self, url: &str, form: &[(&str, &str)]) -> Resp {
        let u = reqwest::Url::parse(url).unwrap();
        let host = Self::host_of(&u);
        let body: String = openidconnect::url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(u.clone())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = self.jar.header(&host, Some(u.path())) {
            req = req.header("Cookie", c);
        }
        let r = finish(req.send().await.unwrap()).await;
        self.jar.absorb(&host, &r);
        r
    }

    /// Takes an authorization URL through the OP's login form; returns the callback URL the OP
    /// redirects back to (with code, state and iss).
    pub async fn login_at_op(&mut self, authorize_url: &str, user: &str, password: &str) -> String {
        let r = self.op_get(authorize_url).await;
        assert_eq!(r.status, 303, "authorize: {r:#?}");
        let interaction = resolve(authorize_url, &r.location());
        if !interaction.starts_with(authorize_url.split("/auth?").next().unwrap()) {
            // The OP already has a session for this browser (SSO): straight back to the app.
            return interaction;
        }
        let page = self.op_get(&interaction).await;
        assert_eq!(page.status, 200, "login page: {page:#?}");
        assert!(
            page.body.contains("name=\"login\""),
            "no login form: {}",
            page.body
        );
        let r = self
            .op_post(
                &interaction,
                &[("prompt", "login"), ("login", user), ("password", password)],
            )
            .await;
        assert_eq!(r.status, 303, "login POST: {r:#?}");
        let resume = resolve(&interaction, &r.location());
        let r = self.op_get(&resume).await;
        assert_eq!(r.status, 303, "resume: {r:#?}");
        resolve(&resume, &r.location())
    }

    /// Full login starting at `url`: returns the sidecar's answer to the callback.
    pub async fn login(&mut self, url: &str, user: &str) -> Resp {
        let r = self.app(url, Kind::Navigate).await;
        assert_eq!(r.status, 302, "anonymous navigation: {r:#?}");
        let callback = self.login_at_op(&r.location(), user, user).await;
        assert!(
            callback.starts_with(&format!("http://{APP_HOST}/oidc/callback?")),
            "{callback}"
        );
        self.app(&callback, Kind::Navigate).await
    }
}

/// A fresh session scope built like the one the sidecar `s` gives `middleware` (same key, its
/// own cache), so a test can open the cookies the sidecar wrote.
pub fn test_codec(s: &Sidecar, middleware: &str) -> traefik_oidc_sidecar::session::Scope {
    let m = s
        .app
        .middleware(middleware)
        .expect("a configured middleware");
    traefik_oidc_sidecar::auth::scope_of(&[&m.cfg]).expect("a scope")
}

/// One OP for a whole test binary (the harness keeps its stdin open; it exits with us).
pub fn shared_op() -> &'static str {
    static OP: std::sync::OnceLock<(String, std::sync::Mutex<Op>)> = std::sync::OnceLock::new();
    let (issuer, _) = OP.get_or_init(|| {
        let op = Op::start(0);
        (op.issuer.clone(), std::sync::Mutex::new(op))
    });
    issuer
}

/// A machine token from the OP's client_credentials grant for the `sidecar` client: a JWT for
/// `resource` when one is given (RFC 8707), else opaque. `issuer` is the OP's address.
pub async fn machine_token(issuer: &str, resource: Option<&str>) -> String {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(r) = resource {
        form.push(("resource", r));
        form.push(("scope", "api:read"));
    }
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("sidecar", Some("sidecar-secret"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

/// A login the sidecar must refuse: a non-2xx/3xx answer, no session cookie, and the browser
/// still anonymous (401 to an API call).
pub async fn assert_login_refused(b: &mut Browser, r: &Resp) {
    assert!(
        (400..600).contains(&r.status),
        "refused, never 2xx/3xx: {r:#?}"
    );
    assert!(
        !b.cookies(APP_HOST).keys().any(|k| k.contains(".session.")),
        "no session"
    );
    assert_eq!(
        b.app(&format!("http://{APP_HOST}/"), Kind::Xhr)
            .await
            .status,
        401
    );
}
