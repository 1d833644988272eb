//! A hand-written OpenID Provider whose token endpoint the test controls, for attacks a real,
//! well-behaved provider would never mount: forged or unsigned ID tokens, wrong audiences,
//! broken token responses, redirects, hangs.
//!
//! It serves discovery (advertising `RS256`, `HS256` and `none`, so the sidecar's own algorithm
//! filter is what is tested), a JWKS, an authorize endpoint that sends the browser straight back
//! to `redirect_uri` with a code, a token endpoint answering whatever the current [`Behavior`]
//! builds, and a trap endpoint that must never be reached. It counts the requests it serves.
//! RS256 signatures come from the `openssl` command line (no RSA crate is a dependency).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use openidconnect::url::{Url, form_urlencoded};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The client id the sidecar is configured with in these tests.
pub const CLIENT_ID: &str = "sidecar";
/// Its client secret.
pub const CLIENT_SECRET: &str = "sidecar-secret";

/// base64url without padding, as JOSE wants it.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA256 (RFC 2104) from the sha2 crate the sidecar already depends on.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let inner_pad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// A compact JWS: `header.payload.signature`, signed by `sign` over `header.payload`.
pub fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// An RSA key pair on disk (under Cargo's per-target temporary directory), used through the
/// `openssl` command line.
pub struct RsaKey {
    pub kid: String,
    private_pem: PathBuf,
    /// The public key as PEM text (SubjectPublicKeyInfo).
    pub public_pem: String,
    /// The public key as DER bytes.
    pub public_der: Vec<u8>,
    /// The modulus, big-endian.
    pub n: Vec<u8>,
}

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command line tool is needed by these tests");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            input.write_all(data).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl RsaKey {
    fn generate(kid: &str) -> RsaKey {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "hostile-idp-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let private_pem = dir.join(format!("{kid}.pem"));
        let path = private_pem.to_str().unwrap();
        openssl(&["genrsa", "-out", path, "2048"], None);
        let public_pem =
            String::from_utf8(openssl(&["rsa", "-in", path, "-pubout"], None)).unwrap();
        let public_der = openssl(&["rsa", "-in", path, "-pubout", "-outform", "DER"], None);
        let modulus =
            String::from_utf8(openssl(&["rsa", "-in", path, "-noout", "-modulus"], None)).unwrap();
        let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
        let n = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        RsaKey {
            kid: kid.to_string(),
            private_pem,
            public_pem,
            public_der,
            n,
        }
    }

    /// The IdP's real signing key (generated once per test binary).
    pub fn idp() -> &'static RsaKey {
        static K: OnceLock<RsaKey> = OnceLock::new();
        K.get_or_init(|| RsaKey::generate("idp-key-1"))
    }

    /// A key the IdP never published (an attacker's, or the IdP's next one).
    pub fn other() -> &'static RsaKey {
        static K: OnceLock<RsaKey> = OnceLock::new();
        K.get_or_init(|| RsaKey::generate("idp-key-2"))
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        openssl(
            &[
                "dgst",
                "-sha256",
                "-sign",
                self.private_pem.to_str().unwrap(),
            ],
            Some(msg),
        )
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": b64(&self.n), "e": "AQAB"})
    }

    /// An RS256 JWT with this key's `kid`.
    pub fn rs256(&self, claims: &Value) -> String {
        jws(
            &json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}),
            claims,
            |m| self.sign(m),
        )
    }
}

/// What the token endpoint sees of the login it is asked to finish.
pub struct TokenCtx {
    pub issuer: String,
    pub now: u64,
    /// The `nonce` of the authorization request this code came from.
    pub nonce: Option<String>,
    /// The trap endpoint: any request to it is a failure.
    pub trap: String,
}

impl TokenCtx {
    /// The claims a correct ID token for this login has (alice, in `users`).
    pub fn claims(&self) -> Map<String, Value> {
        let v = json!({
            "iss": self.issuer,
            "sub": "alice",
            "aud": CLIENT_ID,
            "exp": self.now + 300,
            "iat": self.now,
            "nonce": self.nonce,
            "email": "alice@example.test",
            "preferred_username": "alice",
            "groups": ["users"],
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }
}

/// The token endpoint's answer.
pub struct TokenReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub location: Option<String>,
    pub delay: Option<Duration>,
}

impl TokenReply {
    /// A 200 token response carrying `id_token`.
    pub fn id_token(id_token: String) -> TokenReply {
        let body = json!({
            "access_token": "at-123",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        });
        TokenReply::json(200, body.to_string())
    }

    /// Any status with a JSON (or not) body.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> TokenReply {
        TokenReply {
            status,
            content_type: "application/json",
            body: body.into(),
            location: None,
            delay: None,
        }
    }
}

/// Builds the token endpoint's answer for one login.
pub type Behavior = Arc<dyn Fn(&TokenCtx) -> TokenReply + Send + Sync>;

/// A behaviour from a closure.
pub fn behavior(f: impl Fn(&TokenCtx) -> TokenReply + Send + Sync + 'static) -> Behavior {
    Arc::new(f)
}

/// The correct answer: claims as built by [`TokenCtx::claims`], signed by the IdP's key.
pub fn honest() -> Behavior {
    behavior(|c| TokenReply::id_token(RsaKey::idp().rs256(&Value::Object(c.claims()))))
}

/// Honest, except that `edit` may change the claims first.
pub fn with_claims(edit: impl Fn(&mut Map<String, Value>) + Send + Sync + 'static) -> Behavior {
    behavior(move |c| {
        let mut claims = c.claims();
        edit(&mut claims);
        TokenReply::id_token(RsaKey::idp().rs256(&Value::Object(claims)))
    })
}

pub struct Shared {
    pub issuer: String,
    behavior: Mutex<Behavior>,
    jwks: Mutex<Value>,
    codes: Mutex<HashMap<String, Option<String>>>,
    pub discovery_hits: AtomicUsize,
    pub jwks_hits: AtomicUsize,
    pub token_hits: AtomicUsize,
    pub trap_hits: AtomicUsize,
}

/// A running fake IdP on 127.0.0.1.
pub struct FakeIdp {
    pub issuer: String,
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIdp {
    /// Starts it with the honest behaviour and a JWKS holding [`RsaKey::idp`].
    pub async fn start() -> FakeIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            behavior: Mutex::new(honest()),
            jwks: Mutex::new(json!({"keys": [RsaKey::idp().jwk()]})),
            codes: Mutex::new(HashMap::new()),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
            token_hits: AtomicUsize::new(0),
            trap_hits: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/trap", get(trap).post(trap))
            .route("/session/end", get(|| async { "bye" }))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeIdp {
            issuer,
            shared,
            task,
        }
    }

    /// Replaces the token endpoint's behaviour.
    pub fn set(&self, b: Behavior) {
        *self.shared.behavior.lock().unwrap() = b;
    }

    /// Replaces the published key set.
    pub fn set_jwks(&self, v: Value) {
        *self.shared.jwks.lock().unwrap() = v;
    }

    pub fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn token_hits(&self) -> usize {
        self.shared.token_hits.load(Ordering::SeqCst)
    }

    pub fn trap_hits(&self) -> usize {
        self.shared.trap_hits.load(Ordering::SeqCst)
    }

    /// The URL of the trap endpoint.
    pub fn trap(&self) -> String {
        format!("{}/trap", self.issuer)
    }
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let i = &s.issuer;
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "end_session_endpoint": format!("{i}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        // A hostile or careless IdP advertising symmetric and unsigned tokens: the sidecar must
        // keep only the asymmetric ones.
        "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let v = s.jwks.lock().unwrap().clone();
    axum::Json(v).into_response()
}

async fn authorize(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let code = format!("code-{}", rand::random::<u64>());
    s.codes
        .lock()
        .unwrap()
        .insert(code.clone(), q.get("nonce").cloned());
    let Some(mut back) = q.get("redirect_uri").and_then(|r| Url::parse(r).ok()) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri").into_response();
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map_or("", String::as_str));
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

async fn token(State(s): State<Arc<Shared>>, body: String) -> Response {
    s.token_hits.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let nonce = form
        .get("code")
        .and_then(|c| s.codes.lock().unwrap().get(c).cloned())
        .flatten();
    let ctx = TokenCtx {
        issuer: s.issuer.clone(),
        now: unix_now(),
        nonce,
        trap: format!("{}/trap", s.issuer),
    };
    let b = s.behavior.lock().unwrap().clone();
    let reply = b(&ctx);
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    let mut r = (
        StatusCode::from_u16(reply.status).unwrap(),
        [(header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response();
    if let Some(l) = reply.location {
        r.headers_mut().insert(header::LOCATION, l.parse().unwrap());
    }
    r
}

async fn trap(State(s): State<Arc<Shared>>) -> Response {
    s.trap_hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "access_token": "stolen",
        "token_type": "Bearer",
        "keys": [],
    }))
    .into_response()
}
