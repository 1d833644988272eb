//! HTTP routes: extract, call one domain function, map the result. Nothing else lives here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::App;
use crate::error::Error;
use crate::forwarded;
use crate::metrics;
use crate::reply::{Body, Reply};

/// The auth listener's routes: `/auth`, `/auth/{middleware}`, `/healthz`, `/readyz`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        // Traefik's forwardAuth always sends GET; `any` also serves proxies that keep the method
        // (e.g. nginx auth_request), since the method that matters is X-Forwarded-Method.
        .route("/auth", any(auth_default))
        .route("/auth/{middleware}", any(auth_named))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

/// The metrics listener's routes: `/metrics` only.
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
    auth(&app, app.default_middleware_name(), peer, req.headers()).await
}

async fn auth_named(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    auth(&app, Some(name.as_str()), peer, req.headers()).await
}

async fn auth(app: &App, name: Option<&str>, peer: SocketAddr, headers: &HeaderMap) -> Response {
    let Some(mw) = name.and_then(|n| app.middleware(n)) else {
        return to_response(Error::UnknownMiddleware.to_reply(false));
    };
    let fwd = match forwarded::parse(peer.ip(), app.trusted_proxies(), headers) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(peer = %peer.ip(), error = %e, "forwarded request refused");
            return to_response(e.to_reply(false));
        }
    };
    to_response(mw.handle(&fwd, headers, app.now()).await)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "discovery or signing keys not loaded\n",
        )
            .into_response()
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let body = metrics::render(app.middlewares().map(|m| {
        (
            m.cfg.name.as_str(),
            &*m.counters,
            m.provider.current().is_some(),
        )
    }));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Maps a domain reply to an HTTP response. A header that cannot be encoded turns the whole
/// answer into a 500: dropping it silently could change the meaning (a lost Set-Cookie).
pub fn to_response(reply: Reply) -> Response {
    match build(&reply) {
        Some(r) => r,
        None => {
            tracing::error!(status = reply.status, "reply has an invalid header");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn build(reply: &Reply) -> Option<Response> {
    let status = StatusCode::from_u16(reply.status).ok()?;
    let mut resp = match &reply.body {
        Body::Empty => status.into_response(),
        Body::Html(h) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            h.clone(),
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
    for (n, v) in &reply.headers {
        let name = HeaderName::from_bytes(n.as_bytes()).ok()?;
        let value = HeaderValue::from_str(v).ok()?;
        h.append(name, value);
    }
    Some(resp)
}
