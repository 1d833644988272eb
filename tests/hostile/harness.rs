//! Shared pieces of the hostile suites: the sidecar built through the public API with any
//! [`Clock`], and an agent that plays both the browser and Traefik's forwardAuth (it can also
//! send exactly the headers a test asks for, which a well-behaved client never would).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use traefik_oidc_sidecar::config::{self, Env};
use traefik_oidc_sidecar::{App, Clock, SystemClock};

// The response type, URL helpers and request kinds shared with tests/common (every suite that
// uses this harness also declares `mod common;`).
pub use crate::common::http::*;

/// The protected application's host.
pub const APP: &str = "app.test";
/// A page of it.
pub const HOME: &str = "http://app.test/dashboard?tab=1";
/// The Secret used by these suites.
pub const SECRET: &str = "hostile-suite-secret-0123456789-abcdefghij";

/// The name of session chunk `i` of middleware `mw`.
pub fn chunk(mw: &str, i: usize) -> String {
    format!("TraefikOidcSidecar.{mw}.session.{i}")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemClock.now()
}

/// A clock the test moves by hand.
pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn at(t: u64) -> Arc<FakeClock> {
        Arc::new(FakeClock(AtomicU64::new(t)))
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A sidecar on random loopback ports, built with `config::parse`, `App::new` and `serve`.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    pub async fn start(yaml: &str) -> Running {
        Running::start_with(yaml, Arc::new(SystemClock)).await
    }

    pub async fn start_with(yaml: &str, clock: Arc<dyn Clock>) -> Running {
        let loaded = config::parse(yaml, &Env::process())
            .unwrap_or_else(|p| panic!("config does not load: {p:#?}"));
        let app = Arc::new(App::new(&loaded.config, clock).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        app.start_discovery();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = app.clone();
        tokio::spawn(async move {
            let _ = traefik_oidc_sidecar::serve(served, listener, metrics, async {
                let _ = rx.await;
            })
            .await;
        });
        Running {
            addr,
            metrics_addr,
            app,
            stop: Some(tx),
        }
    }

    /// Waits (at most 15 s) until every middleware has discovery and keys.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.app.ready() {
            assert!(Instant::now() < deadline, "sidecar not ready after 15 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn enc(s: &str) -> String {
    openidconnect::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The headers forwardAuth sends for a request to `http://{host}{uri}` (the URI taken verbatim,
/// unlike a URL that a client library would normalise), without cookies.
pub fn traefik(host: &str, uri: &str, kind: Kind) -> Vec<(String, Vec<u8>)> {
    let (mode, accept) = match kind {
        Kind::Navigate => ("navigate", "text/html,application/xhtml+xml,*/*;q=0.8"),
        Kind::Xhr => ("cors", "application/json"),
    };
    [
        ("X-Forwarded-Method", "GET".as_bytes()),
        ("X-Forwarded-Proto", b"http"),
        ("X-Forwarded-Host", host.as_bytes()),
        ("X-Forwarded-Uri", uri.as_bytes()),
        ("X-Forwarded-For", b"203.0.113.9"),
        ("Sec-Fetch-Mode", mode.as_bytes()),
        ("Accept", accept.as_bytes()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_vec()))
    .collect()
}

/// A browser (cookie jar per host, no automatic redirects) whose requests to the protected app
/// reach the sidecar the way Traefik's forwardAuth sends them.
pub struct Agent {
    http: reqwest::Client,
    jar: Jar,
    /// The forwardAuth address, `http://sidecar/auth/<middleware>`.
    pub auth: String,
}

impl Agent {
    pub fn new(sc: &Running, middleware: &str) -> Agent {
        Agent::at(sc.addr, middleware)
    }

    pub fn at(addr: SocketAddr, middleware: &str) -> Agent {
        Agent {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            jar: Jar::default(),
            auth: format!("http://{addr}/auth/{middleware}"),
        }
    }

    pub fn jar(&self, host: &str) -> BTreeMap<String, String> {
        self.jar.cookies(host)
    }

    pub fn set(&mut self, host: &str, name: &str, value: &str) {
        self.jar.set(host, name, value);
    }

    pub fn remove(&mut self, host: &str, name: &str) {
        self.jar.remove(host, name);
    }

    /// The session chunks this browser holds for `mw` on the app, by name.
    pub fn session(&self, mw: &str) -> BTreeMap<String, String> {
        let prefix = format!("TraefikOidcSidecar.{mw}.session.");
        self.jar(APP)
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect()
    }

    /// Every cookie held for `host`, whatever its path (for requests built by hand).
    pub fn cookie_header(&self, host: &str) -> Option<String> {
        self.jar.header(host, None)
    }

    /// The four headers Traefik derives from the user's request to `url`, plus what a browser
    /// sends for `kind`.
    pub fn forwarded_headers(url: &str, kind: Kind) -> Vec<(String, String)> {
        let u = reqwest::Url::parse(url).unwrap();
        let uri = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        let mut h = vec![
            ("X-Forwarded-Method".to_string(), "GET".to_string()),
            ("X-Forwarded-Proto".to_string(), u.scheme().to_string()),
            ("X-Forwarded-Host".to_string(), authority(&u)),
            ("X-Forwarded-Uri".to_string(), uri),
            ("X-Forwarded-For".to_string(), "203.0.113.9".to_string()),
        ];
        let (mode, accept) = match kind {
            Kind::Navigate => ("navigate", "text/html,application/xhtml+xml,*/*;q=0.8"),
            Kind::Xhr => ("cors", "application/json"),
        };
        h.push(("Sec-Fetch-Mode".into(), mode.into()));
        h.push(("Accept".into(), accept.into()));
        h
    }

    /// The user's request to `url` on the protected app, as forwardAuth sends it.
    pub async fn forward(&mut self, url: &str, kind: Kind) -> Resp {
        self.forward_with(url, kind, &[]).await
    }

    /// Like [`Agent::forward`], with extra headers appended.
    pub async fn forward_with(&mut self, url: &str, kind: Kind, extra: &[(&str, &str)]) -> Resp {
        let u = reqwest::Url::parse(url).unwrap();
        let host = authority(&u);
        let mut headers: Vec<(String, Vec<u8>)> = Agent::forwarded_headers(url, kind)
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        if let Some(c) = self.jar.header(&host, Some(u.path())) {
            headers.push(("Cookie".into(), c.into_bytes()));
        }
        for (k, v) in extra {
            headers.push((k.to_string(), v.as_bytes().to_vec()));
        }
        let r = self.raw(&headers).await;
        self.jar.absorb(&host, &r);
        r
    }

    /// Sends exactly `headers` (in order, repeats kept) to the forwardAuth address; the jar is
    /// neither read nor updated.
    pub async fn raw(&self, headers: &[(String, Vec<u8>)]) -> Resp {
        self.raw_to(&self.auth, headers).await
    }

    pub async fn raw_to(&self, url: &str, headers: &[(String, Vec<u8>)]) -> Resp {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        let resp = self.http.get(url).headers(map).send().await.unwrap();
        finish(resp).await
    }

    /// A direct GET (to the OP or the fake IdP), with this browser's cookies for that host.
    pub async fn get(&mut self, url: &str) -> Resp {
        let u = reqwest::Url::parse(url).unwrap();
        let host = authority(&u);
        let mut req = self.http.get(url).header("Accept", "text/html");
        if let Some(c) = self.jar.header(&host, Some(u.path())) {
            req = req.header("Cookie", c);
        }
        let r = finish(req.send().await.unwrap()).await;
        self.jar.absorb(&host, &r);
        r
    }

    /// A direct form POST.
    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Resp {
        let u = reqwest::Url::parse(url).unwrap();
        let host = authority(&u);
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .http
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = self.jar.header(&host, Some(u.path())) {
            req = req.header("Cookie", c);
        }
        let r = finish(req.send().await.unwrap()).await;
        self.jar.absorb(&host, &r);
        r
    }

    /// Walks the real OP's pages from an authorization URL (logging in as `user`, whose password
    /// is the same word) until the OP sends the browser off its own origin; returns that URL,
    /// the callback.
    pub async fn op_login(&mut self, authorize_url: &str, user: &str) -> String {
        let op = reqwest::Url::parse(authorize_url).unwrap();
        let op_origin = op.origin();
        let mut url = authorize_url.to_string();
        let mut r = self.get(&url).await;
        for _ in 0..12 {
            match r.status {
                302 | 303 => {
                    let next = resolve(&url, &r.location());
                    if reqwest::Url::parse(&next).unwrap().origin() != op_origin {
                        return next;
                    }
                    url = next;
                    r = self.get(&url).await;
                }
                200 if r.body.contains("name=\"login\"") => {
                    r = self
                        .post_form(
                            &url,
                            &[("prompt", "login"), ("login", user), ("password", user)],
                        )
                        .await;
                }
                _ => panic!("unexpected OP answer at {url}: {r:#?}"),
            }
        }
        panic!("the OP never sent the browser back");
    }

    /// A full login through the real OP starting at `url`; returns the callback's answer.
    pub async fn login(&mut self, url: &str, user: &str) -> Resp {
        let r = self.forward(url, Kind::Navigate).await;
        assert_eq!(r.status, 302, "anonymous navigation to {url}: {r:#?}");
        let cb = self.op_login(&r.location(), user).await;
        self.forward(&cb, Kind::Navigate).await
    }

    /// The fake IdP's authorize step: one GET, which answers a 302 to the callback.
    pub async fn idp_authorize(&mut self, authorize_url: &str) -> String {
        let r = self.get(authorize_url).await;
        assert_eq!(r.status, 302, "fake authorize: {r:#?}");
        r.location()
    }
}
