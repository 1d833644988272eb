//! HTTP routes: extract, call one domain function, map the result. Nothing else lives here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use crate::App;
use crate::error::Error;
use crate::forwarded;
use crate::metrics;
use crate::reply::{Body, Reply};

/// The auth listener's routes: `/auth`, `/auth/{middleware}`, `/backchannel-logout` and
/// `/backchannel-logout/{middleware}` (POST, Back-Channel Logout 1.0), `/healthz`, `/readyz`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        // Traefik's forwardAuth always sends GET; `any` also serves proxies that keep the method
        // (e.g. nginx auth_request), since the method that matters is X-Forwarded-Method.
        .route("/auth", any(auth_default))
        .route("/auth/{middleware}", any(auth_named))
        // For IdPs that reach the sidecar directly (inside the cluster), and for the Traefik
        // router or plugin shim that carries `BackchannelLogoutUri` here with its body.
        .route("/backchannel-logout", post(backchannel_default))
        .route("/backchannel-logout/{middleware}", post(backchannel_named))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
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

async fn backchannel_default(State(app): State<Arc<App>>, req: Request) -> Response {
    backchannel(&app, app.default_middleware_name(), req).await
}

async fn backchannel_named(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    backchannel(&app, Some(name.as_str()), req).await
}

/// Reads the body up to [`crate::auth::MAX_BACKCHANNEL_BODY`] (more, or a broken body, is
/// `None`) and hands it to the middleware.
async fn backchannel(app: &App, name: Option<&str>, req: Request) -> Response {
    let Some(mw) = name.and_then(|n| app.middleware(n)) else {
        return to_response(Error::UnknownMiddleware.to_reply(false));
    };
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let body = axum::body::to_bytes(body, crate::auth::MAX_BACKCHANNEL_BODY)
        .await
        .ok();
    let scopes = app.client_scopes(mw);
    to_response(
        mw.backchannel_logout(content_type, body.as_deref(), &scopes, app.now())
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
    let mut body = metrics::render(app.middlewares().map(|m| {
        (
            m.cfg.name.as_str(),
            &*m.counters,
            m.provider.current().is_some(),
        )
    }));
    listeners.render(&mut body);
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
