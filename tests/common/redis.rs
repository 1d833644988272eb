//! Real Redis for the Redis-mode tests: a standalone `redis-server` (Debian's) on a random
//! loopback port with append-only persistence, and a three-master Redis Cluster made with
//! `redis-cli --cluster create`. Every process is killed on drop; data lives under
//! `target/test-redis/`. Also the Redis-mode suites' sidecar helpers: requests with a given
//! ticket cookie, a login that returns the ticket, and a relay for the OP's back-channel
//! logout POSTs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{APP_HOST, Browser, SECRET, Sidecar};

/// The ticket cookie of the `default` prefix.
pub const TICKET: &str = "TraefikOidcSidecar.ticket";
/// The page every Redis-mode login starts from.
const HOME: &str = "http://app.test/";

static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn data_dir(kind: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "target/test-redis/{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn server_bin() -> &'static str {
    if std::path::Path::new("/usr/bin/redis-server").exists() {
        "/usr/bin/redis-server"
    } else {
        "redis-server"
    }
}

/// A loopback port that is free, and whose cluster bus port (+10000) is free too.
fn free_pair() -> u16 {
    for _ in 0..200 {
        let p: u16 = 20000 + rand::random::<u16>() % 25000;
        let a = std::net::TcpListener::bind(("127.0.0.1", p));
        let b = std::net::TcpListener::bind(("127.0.0.1", p + 10000));
        if a.is_ok() && b.is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

/// One `redis-server` process.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A standalone server with append-only persistence (fsync on every write, so a kill loses
    /// nothing).
    pub fn start() -> RedisServer {
        RedisServer::start_with(crate::common::free_port(), data_dir("standalone"), vec![])
    }

    fn start_with(port: u16, dir: PathBuf, extra: Vec<String>) -> RedisServer {
        let mut s = RedisServer {
            port,
            dir,
            extra,
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new(server_bin())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The body of a `redis:` block naming this server (for [`yaml`]).
    pub fn block(&self) -> String {
        format!("  url: {}", self.url())
    }

    /// Runs `redis-cli` against this server; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli must be installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many times the server has run `command` (lower case), from INFO commandstats.
    pub fn calls(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{command}:calls=");
        self.cli(&["INFO", "commandstats"])
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }

    /// Kills the server (SIGKILL: nothing is flushed on the way out).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A three-master Redis Cluster (no replicas).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(
                    free_pair(),
                    data_dir("cluster"),
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        "nodes.conf".into(),
                        "--cluster-node-timeout".into(),
                        "5000".into(),
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                return RedisCluster { nodes };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not become ok");
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The body of a `redis:` block naming this cluster's nodes (for [`yaml`]).
    pub fn block(&self) -> String {
        let urls = self
            .urls()
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!("  cluster:\n    urls: [{urls}]")
    }

    /// Every key and value of every node, for "what does a dump reveal" checks.
    pub fn dump(&self) -> String {
        self.nodes.iter().map(dump).collect()
    }
}

/// Every key of `s` with its value (strings and sets), as text (lossy: values are binary).
pub fn dump(s: &RedisServer) -> String {
    let mut out = String::new();
    for key in s.cli(&["--scan"]).lines().filter(|k| !k.is_empty()) {
        out.push_str(key);
        out.push('\n');
        let t = s.cli(&["TYPE", key]);
        let v = match t.trim() {
            "string" => s.cli(&["GET", key]),
            "set" => s.cli(&["SMEMBERS", key]),
            other => format!("({other})"),
        };
        out.push_str(&v);
        out.push('\n');
    }
    out
}

/// One Redis Sentinel watching `master` under the name `mymaster` (quorum 1).
pub struct RedisSentinel {
    pub port: u16,
    child: Child,
}

impl RedisSentinel {
    pub fn start(master: &RedisServer) -> RedisSentinel {
        let port = crate::common::free_port();
        let dir = data_dir("sentinel");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 5000\n",
                dir.display(),
                master.port
            ),
        )
        .unwrap();
        let child = Command::new(server_bin())
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let s = RedisSentinel { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["SENTINEL", "get-master-addr-by-name", "mymaster"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if out.contains(&master.port.to_string()) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sentinel on {port} does not know the master");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Redis-mode suites' configuration: `redis` is the `redis:` block's body (see
/// [`RedisServer::block`]). `default` keeps its sessions in Redis, `other` is another Redis
/// scope, `cookie` a cookie-mode scope of the same client; `default` and `cookie` refresh past
/// half of the token lifetime.
pub fn yaml(issuer: &str, redis: &str) -> String {
    format!(
        r#"
redis:
{redis}
  keyPrefix: "t:"
  commandTimeout: 250ms
  connectTimeout: 500ms
middlewares:
  default:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
      TokenRenewalThreshold: 0.5
    Secret: {SECRET}
    SessionStorageType: redis
    Scopes: [openid, profile, email, groups]
    SessionCookie:
      Secure: false
  other:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: another-secret-for-another-scope-0123456789
    CookieNamePrefix: Other
    SessionStorageType: Redis
    SessionCookie:
      Secure: false
  cookie:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
      TokenRenewalThreshold: 0.5
    Secret: {SECRET}
    CookieNamePrefix: CookieMode
    SessionCookie:
      Secure: false
"#
    )
}

/// A request with exactly this `Cookie` header (a copied or replayed cookie).
pub async fn with_cookie(s: &Sidecar, mw: &str, cookie: &str, nav: bool) -> reqwest::Response {
    let mut req = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(s.auth_url(mw))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", APP_HOST)
        .header("X-Forwarded-Uri", "/page")
        .header("Cookie", cookie);
    req = if nav {
        req.header("Sec-Fetch-Mode", "navigate")
            .header("Accept", "text/html")
    } else {
        req.header("Accept", "application/json")
    };
    req.send().await.unwrap()
}

/// Logs `user` in through replica `s` for `mw`; returns the browser and the ticket cookie's
/// `Set-Cookie` line.
pub async fn login(s: &Sidecar, mw: &str, user: &str) -> (Browser, String) {
    let mut b = Browser::new(s, mw);
    let r = b.login(HOME, user).await;
    assert_eq!(r.status, 302, "callback: {r:#?}");
    let set = r.all("set-cookie");
    let ticket = set
        .iter()
        .find(|c| c.contains(".ticket="))
        .unwrap_or_else(|| panic!("no ticket cookie: {set:#?}"))
        .to_string();
    assert!(
        !set.iter()
            .any(|c| c.contains(".session.") && !c.contains("Max-Age=0")),
        "Redis mode writes no session chunks: {set:#?}"
    );
    (b, ticket)
}

/// A relay for the OP's back-channel logout POSTs: passes each body to the sidecar route set in
/// `target` once the sidecar runs, and records (body, sidecar status).
pub type Seen = Arc<Mutex<Vec<(String, u16)>>>;

pub async fn logout_relay(target: Arc<Mutex<String>>, seen: Seen) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bcl", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/bcl",
        axum::routing::post(move |body: String| {
            let (target, seen) = (target.clone(), seen.clone());
            async move {
                let to = target.lock().unwrap().clone();
                let status = reqwest::Client::new()
                    .post(to)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await
                    .map_or(599, |r| r.status().as_u16());
                seen.lock().unwrap().push((body, status));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Ends the browser's session at the OP `issuer` (its end-session page, confirmed): the OP
/// posts a logout token with the session's `sid` through the relay that records in `seen`
/// (Back-Channel Logout 1.0 §2.5), which the sidecar must accept. Returns the posted body.
pub async fn end_at_op(b: &mut Browser, issuer: &str, seen: &Seen) -> String {
    let page = b.op_get(&format!("{issuer}/session/end")).await;
    let xsrf = crate::common::xsrf(&page);
    let r = b
        .op_post(
            &format!("{issuer}/session/end/confirm"),
            &[("xsrf", &xsrf), ("logout", "yes")],
        )
        .await;
    assert_eq!(r.status, 303, "{r:#?}");
    let (body, status) = seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a logout token");
    assert_eq!(status, 200, "the sidecar accepted the real logout token");
    body
}
