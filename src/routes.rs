//! HTTP routes: extract, call one domain function, map the result. Nothing else lives here.
//!
//! The forwardAuth routes (`/auth`, `/auth/{middleware}`, `/auth/inline/{hash}`) take every
//! request a protected site gets, so [`AuthService`] answers them without the router: matching
//! three literal paths costs less than the router's lookup, its path-parameter and matched-path
//! extensions and the boxing of the body and the handler future (measured in BENCHMARKS.md).
//! Every other path, and any of these paths written with percent-escapes, goes through the
//! router, which decodes them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use futures_util::future::Either;
use tracing::Instrument;

use crate::auth::Middleware;
use crate::error::Error;
use crate::forwarded;
use crate::inline;
use crate::listener::Serve;
use crate::metrics;
use crate::reply::{Body, Reply};
use crate::{App, Generation};

/// The auth listener's routes: `/auth`, `/auth/{middleware}`, `/auth/inline/{hash}` and
/// `POST /inline/{hash}` (inline blocks, see [`crate::inline`]), `/backchannel-logout`,
/// `/backchannel-logout/{middleware}` and `/backchannel-logout/inline/{hash}` (POST,
/// Back-Channel Logout 1.0), `/healthz`, `/readyz`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        // Traefik's forwardAuth always sends GET; `any` also serves proxies that keep the method
        // (e.g. nginx auth_request), since the method that matters is X-Forwarded-Method.
        .route("/auth", any(auth_default))
        .route("/auth/{middleware}", any(auth_named))
        .route("/auth/inline/{hash}", any(auth_inline))
        .route("/inline/{hash}", post(register_inline))
        // For IdPs that reach the sidecar directly (inside the cluster), and for the Traefik
        // router or plugin shim that carries `BackchannelLogoutUri` here with its body.
        .route("/backchannel-logout", post(backchannel_default))
        .route("/backchannel-logout/{middleware}", post(backchannel_named))
        .route(
            "/backchannel-logout/inline/{hash}",
            post(backchannel_inline),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

/// The auth listener's service: the forwardAuth routes directly, the rest through
/// [`router`]. Both answer the same for the same request.
#[derive(Clone)]
pub struct AuthService {
    app: Arc<App>,
    router: Router,
}

impl AuthService {
    /// The service of `app`.
    pub fn new(app: Arc<App>) -> AuthService {
        AuthService {
            router: router(app.clone()),
            app,
        }
    }
}

/// A forwardAuth route whose last segment needs no decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hot {
    /// `/auth`
    Default,
    /// `/auth/{middleware}`
    Named,
    /// `/auth/inline/{hash}`
    Inline,
}

impl Hot {
    /// The route of `path`, if it is one the router would match with this exact, undecoded
    /// segment; `None` sends the request to the router.
    fn of(path: &str) -> Option<Hot> {
        if path == "/auth" {
            return Some(Hot::Default);
        }
        let plain = |seg: &str| !seg.is_empty() && !seg.contains(['/', '%']);
        let rest = path.strip_prefix("/auth/")?;
        match rest.strip_prefix("inline/") {
            Some(hash) => plain(hash).then_some(Hot::Inline),
            None => plain(rest).then_some(Hot::Named),
        }
    }

    /// The middleware name or block hash in `path` (empty for `/auth`).
    fn segment(self, path: &str) -> &str {
        let skip = match self {
            Hot::Default => path.len(),
            Hot::Named => "/auth/".len(),
            Hot::Inline => "/auth/inline/".len(),
        };
        path.get(skip..).unwrap_or_default()
    }
}

impl Serve for AuthService {
    fn serve(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<> {
        let Some(hot) = Hot::of(req.uri().path()) else {
            return Either::Right(self.router.serve(req, peer));
        };
        let app = self.app.clone();
        Either::Left(async move {
            let generation = app.current();
            let segment = hot.segment(req.uri().path());
            match hot {
                Hot::Default => {
                    let mw = generation
                        .default_middleware_name()
                        .and_then(|n| generation.middleware(n));
                    auth(&app, &generation, mw, peer, req.headers()).await
                }
                Hot::Named => {
                    let mw = generation.middleware(segment);
                    auth(&app, &generation, mw, peer, req.headers()).await
                }
                Hot::Inline => inline_auth(&app, &generation, segment, peer, req.headers()).await,
            }
        })
    }
}

/// The metrics listener's routes: `/metrics` only. The serving layer adds the listeners'
/// counters as an `Extension<Arc<metrics::Listeners>>`.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(app)
}

// The whole request is taken rather than the `HeaderMap` extractor, which clones every header
// (4.5 % of a valid-session check in the benchmark profile); the body is never read.
async fn auth_default(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let generation = app.current();
    let mw = generation
        .default_middleware_name()
        .and_then(|n| generation.middleware(n));
    auth(&app, &generation, mw, peer, req.headers()).await
}

async fn auth_named(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let generation = app.current();
    let mw = generation.middleware(&name);
    auth(&app, &generation, mw, peer, req.headers()).await
}

/// The header naming an inline middleware in log lines and metrics (nothing else).
const MIDDLEWARE_LABEL: &str = "x-oidc-sidecar-middleware";

async fn auth_inline(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(hash): Path<String>,
    req: Request,
) -> Response {
    let generation = app.current();
    inline_auth(&app, &generation, &hash, peer, req.headers()).await
}

async fn inline_auth(
    app: &App,
    generation: &Generation,
    hash: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Response {
    let Some(block) = app.inline_block(hash) else {
        return to_response(inline::unknown_block(hash));
    };
    let label = inline::label(headers.get(MIDDLEWARE_LABEL).map(|v| v.as_bytes()));
    // Every line the decision logs carries the Traefik middleware name the shim sent.
    let span = tracing::info_span!("inline", middleware = %label, block = %&block.hash[..12]);
    auth(app, generation, Some(&block.middleware), peer, headers)
        .instrument(span)
        .await
}

/// `POST /inline/{hash}`: the peer and token first, then the body (capped), then the block.
async fn register_inline(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(hash): Path<String>,
    req: Request,
) -> Response {
    let generation = app.current();
    let rules = generation.inline();
    let label = inline::label(req.headers().get(MIDDLEWARE_LABEL).map(|v| v.as_bytes()));
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let result = match inline::authorize(
        rules,
        generation.trusted_proxies(),
        peer.ip(),
        authorization,
    ) {
        Err(e) => Err(e),
        Ok(()) => {
            let (parts, body) = req.into_parts();
            match axum::body::to_bytes(body, rules.max_block_bytes).await {
                // Over the cap, or a body that broke off: the cap is the only way to fail here
                // that the registrant controls.
                Err(_) => Err(inline::RegisterError::TooLarge),
                Ok(bytes) => {
                    // Off the async workers: parsing may read an allowed file.
                    let (app2, hash2) = (app.clone(), hash.clone());
                    let raw_label = parts.headers.get(MIDDLEWARE_LABEL).cloned();
                    tokio::task::spawn_blocking(move || {
                        app2.register_inline(
                            &hash2,
                            &bytes,
                            raw_label.as_ref().map(|v| v.as_bytes()),
                        )
                    })
                    .await
                    .unwrap_or_else(|e| Err(inline::RegisterError::Internal(e.to_string())))
                }
            }
        }
    };
    if result.is_ok()
        && let Some(b) = app.inline_block(&hash)
        && !b.loaded(inline::REGISTER_WAIT).await
    {
        // Still registered: its requests answer 503 until discovery loads (fail closed).
        tracing::warn!(middleware = %label, block = %&b.hash[..12], "inline block registered; its provider's discovery is not loaded yet");
    }
    match result {
        Ok(inline::Registered::Created) => (StatusCode::CREATED, "registered\n").into_response(),
        Ok(inline::Registered::Known) => (StatusCode::OK, "already registered\n").into_response(),
        Err(e) => {
            tracing::warn!(peer = %peer.ip(), middleware = %label, status = e.status(), reason = e.title(), problems = e.problems().len(), "inline registration refused");
            registration_problem(&e)
        }
    }
}

/// A refused registration as problem+json, with the `problems` member (key path and message
/// of each) for an invalid block.
fn registration_problem(e: &inline::RegisterError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut json = serde_json::json!({
        "type": "about:blank",
        "title": e.title(),
        "status": e.status(),
        "detail": e.detail(),
    });
    if !e.problems().is_empty() {
        json["problems"] = e
            .problems()
            .iter()
            .map(|p| serde_json::json!({"path": p.path, "message": p.message}))
            .collect();
    }
    (
        status,
        [
            (header::CONTENT_TYPE, "application/problem+json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json.to_string(),
    )
        .into_response()
}

async fn auth(
    app: &App,
    generation: &Generation,
    mw: Option<&Arc<Middleware>>,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Response {
    let Some(mw) = mw else {
        return to_response(Error::UnknownMiddleware.to_reply(false));
    };
    let fwd = match forwarded::parse(peer.ip(), generation.trusted_proxies(), headers) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(peer = %peer.ip(), error = %e, "forwarded request refused");
            return to_response(e.to_reply(false));
        }
    };
    to_response(mw.handle(&fwd, headers, app.now()).await)
}

async fn backchannel_default(State(app): State<Arc<App>>, req: Request) -> Response {
    let name = app.default_middleware_name();
    let mw = name.and_then(|n| app.middleware(&n));
    backchannel(&app, mw, req).await
}

async fn backchannel_named(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let mw = app.middleware(&name);
    backchannel(&app, mw, req).await
}

/// The inline twin of `/backchannel-logout/{middleware}`: the shim carries the IdP's logout
/// POST for an inline middleware here. An unknown block gets the registration cue.
async fn backchannel_inline(
    State(app): State<Arc<App>>,
    Path(hash): Path<String>,
    req: Request,
) -> Response {
    let Some(block) = app.inline_block(&hash) else {
        return to_response(inline::unknown_block(&hash));
    };
    let label = inline::label(req.headers().get(MIDDLEWARE_LABEL).map(|v| v.as_bytes()));
    let span = tracing::info_span!("inline", middleware = %label, block = %&block.hash[..12]);
    backchannel(&app, Some(block.middleware.clone()), req)
        .instrument(span)
        .await
}

/// Reads the body up to [`crate::auth::MAX_BACKCHANNEL_BODY`] (more, or a broken body, is
/// `None`) and hands it to the middleware.
async fn backchannel(app: &App, mw: Option<Arc<Middleware>>, req: Request) -> Response {
    let Some(mw) = mw else {
        return to_response(Error::UnknownMiddleware.to_reply(false));
    };
    let mw = &*mw;
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let body = axum::body::to_bytes(body, crate::auth::MAX_BACKCHANNEL_BODY)
        .await
        .ok();
    let now = app.now();
    let scopes = app.client_scopes(mw);
    let jtis = app.client_jtis(mw, now);
    to_response(
        mw.backchannel_logout(content_type, body.as_deref(), &scopes, &*jtis, now)
            .await,
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        // The reason is operational (discovery, Redis), never a secret: URLs are not in it.
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

// The listeners' connection counters come from the serving layer (`listener`), which adds
// them to this router as an extension.
async fn metrics_text(
    State(app): State<Arc<App>>,
    Extension(listeners): Extension<Arc<metrics::Listeners>>,
) -> Response {
    let yaml = app.middlewares();
    let blocks = app.inline_blocks();
    // An inline middleware is named by the Traefik name it was registered under and the start
    // of its hash (two blocks may share a Traefik name across routers or edits).
    let inline_names: Vec<String> = blocks
        .iter()
        .map(|b| format!("inline:{}:{}", b.label, &b.hash[..8]))
        .collect();
    let mut body = metrics::render(
        yaml.iter()
            .map(|m| {
                (
                    m.cfg.name.as_str(),
                    &*m.counters,
                    m.provider.current().is_some(),
                )
            })
            .chain(blocks.iter().zip(&inline_names).map(|(b, n)| {
                (
                    n.as_str(),
                    &*b.middleware.counters,
                    b.middleware.provider.current().is_some(),
                )
            })),
    );
    listeners.render(&mut body);
    crate::telemetry::render(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Maps a domain reply to an HTTP response. A header that cannot be encoded turns the whole
/// answer into a 500: dropping it silently could change the meaning (a lost Set-Cookie).
pub fn to_response(reply: Reply) -> Response {
    let status = reply.status;
    match build(reply) {
        Some(r) => r,
        None => {
            tracing::error!(status, "reply has an invalid header");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn build(reply: Reply) -> Option<Response> {
    let status = StatusCode::from_u16(reply.status).ok()?;
    let mut resp = match reply.body {
        Body::Empty => status.into_response(),
        Body::Html(h) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            h,
        )
            .into_response(),
        Body::Problem { title, detail } => {
            let json = serde_json::json!({
                "type": "about:blank",
                "title": title,
                "status": reply.status,
                "detail": detail,
            });
            (
                status,
                [(header::CONTENT_TYPE, "application/problem+json")],
                json.to_string(),
            )
                .into_response()
        }
    };
    let h = resp.headers_mut();
    if let Some(identity) = &reply.identity {
        for (n, v) in identity.iter() {
            h.append(n.clone(), v.clone());
        }
    }
    for (n, v) in reply.headers {
        // The value's bytes move into the header (still validated: no control characters).
        let value = HeaderValue::from_maybe_shared(axum::body::Bytes::from(v)).ok()?;
        h.append(header_name(&n)?, value);
    }
    Some(resp)
}

/// The names the sidecar sends on every answer, without parsing them again each time.
fn header_name(n: &str) -> Option<HeaderName> {
    const KNOWN: [(&str, HeaderName); 8] = [
        ("Cookie", header::COOKIE),
        ("Set-Cookie", header::SET_COOKIE),
        ("Location", header::LOCATION),
        ("Cache-Control", header::CACHE_CONTROL),
        ("WWW-Authenticate", header::WWW_AUTHENTICATE),
        (
            "X-Forwarded-User",
            HeaderName::from_static("x-forwarded-user"),
        ),
        (
            "X-Forwarded-Email",
            HeaderName::from_static("x-forwarded-email"),
        ),
        (
            "X-Forwarded-Groups",
            HeaderName::from_static("x-forwarded-groups"),
        ),
    ];
    match KNOWN.iter().find(|(k, _)| *k == n) {
        Some((_, name)) => Some(name.clone()),
        None => HeaderName::from_bytes(n.as_bytes()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_responses() {
        // (header value, answered status): UTF-8 claims (a user called José) travel as raw
        // bytes, as Go's net/http and traefik-oidc-auth send them; control characters cannot.
        for (value, status) in [
            ("alice", 200),
            ("José Müller", 200),
            ("a\r\nSet-Cookie: x=1", 500),
            ("a\u{7f}", 500),
        ] {
            let mut r = Reply::new(200, Body::Empty);
            r.header("X-Forwarded-User", value);
            r.header("X-Custom-Name", "v");
            let resp = to_response(r);
            assert_eq!(resp.status().as_u16(), status, "{value:?}");
            if status == 200 {
                let h = resp.headers();
                assert_eq!(h["x-forwarded-user"].as_bytes(), value.as_bytes());
                assert_eq!(h["x-custom-name"], "v");
            }
        }
    }
}
