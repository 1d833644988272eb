//! The admin listener's router: `GET /admin/sessions?sub=…` and `POST /admin/revoke`, behind
//! tower-http layers (outermost first):
//!
//! 1. `TraceLayer`: a span and a line per request (method, path, status, latency), never a
//!    header value, so never the token;
//! 2. problem+json: every error answer, including those the layers and the router make
//!    themselves (401, 404, 405, 413), becomes an RFC 9457 problem document;
//! 3. the bearer check (`ValidateRequestHeaderLayer::custom`, [`BearerCheck`]): RFC 6750 §2.1
//!    `Authorization: Bearer <token>`, compared in constant time; anything else is 401 with
//!    `WWW-Authenticate: Bearer` (§3), before routing, so an unauthenticated caller learns
//!    nothing of the routes;
//! 4. `RequestBodyLimitLayer`: at most [`MAX_BODY`] bytes (413), checked on `Content-Length`
//!    and while a chunked body streams.
//!
//! The handlers extract, call one function of [`super`] and map its answer; every revocation
//! writes one audit line (see [`revoke`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use super::{list, revoke as revoke_all, valid_id};
use crate::App;
use crate::error::Error;
use crate::session::{EndBy, Secret};

/// The largest request body accepted: `{"sub": …}` with a 1 KiB identifier fits many times.
pub const MAX_BODY: usize = 8 * 1024;
/// The `WWW-Authenticate` challenge of a request without credentials (RFC 6750 §3: no error
/// code when none were presented).
const CHALLENGE: &str = "Bearer realm=\"traefik-oidc-sidecar admin\"";
/// The challenge of a request with a wrong or malformed token (RFC 6750 §3.1).
const CHALLENGE_INVALID: &str =
    "Bearer realm=\"traefik-oidc-sidecar admin\", error=\"invalid_token\"";

/// The admin router for `app`, requiring `token` (see the module docs for its layers).
pub fn router(app: Arc<App>, token: &Secret) -> Router {
    Router::new()
        .route("/admin/sessions", get(sessions))
        .route("/admin/revoke", post(revoke))
        .fallback(not_found)
        .with_state(app)
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(ValidateRequestHeaderLayer::custom(BearerCheck::new(token)))
        .layer(axum::middleware::map_response(as_problem))
        .layer(TraceLayer::new_for_http())
}

/// The bearer check: the SHA-256 of the configured token, compared with the SHA-256 of the
/// presented one in constant time ([`subtle`]). Hashing first makes the comparison independent
/// of the presented token's length as well as its content.
#[derive(Clone)]
pub struct BearerCheck {
    want: [u8; 32],
}

impl BearerCheck {
    /// The check for `token`.
    pub fn new(token: &Secret) -> Self {
        BearerCheck {
            want: Sha256::digest(token.expose().as_bytes()).into(),
        }
    }

    /// Whether `headers` carry exactly one `Authorization: Bearer <token>` with the token.
    /// `Err(true)`: credentials were presented but are wrong or malformed.
    fn check(&self, headers: &axum::http::HeaderMap) -> Result<(), bool> {
        let mut all = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (all.next(), all.next()) else {
            return Err(headers.contains_key(header::AUTHORIZATION));
        };
        let value = value.as_bytes();
        // The scheme is case-insensitive (RFC 9110 §11.1); one space, then the token68.
        let token = match value.split_at_checked(7) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => token,
            _ => return Err(true),
        };
        let got: [u8; 32] = Sha256::digest(token).into();
        if bool::from(got[..].ct_eq(&self.want[..])) {
            Ok(())
        } else {
            Err(true)
        }
    }
}

impl<B> ValidateRequest<B> for BearerCheck {
    type ResponseBody = Body;

    fn validate(&mut self, req: &mut Request<B>) -> Result<(), Response> {
        self.check(req.headers()).map_err(|presented| {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_default();
            tracing::warn!(%peer, presented, path = req.uri().path(), "admin API: bearer token missing or wrong");
            let mut resp = StatusCode::UNAUTHORIZED.into_response();
            let challenge = if presented { CHALLENGE_INVALID } else { CHALLENGE };
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            resp
        })
    }
}

/// Any error answer without a problem document gets one (RFC 9457), keeping its headers
/// (`WWW-Authenticate`, `Allow`).
async fn as_problem(resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let title = status.canonical_reason().unwrap_or("Error");
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(parts, Body::from(problem_body(status, title, title)))
}

fn problem_body(status: StatusCode, title: &str, detail: &str) -> String {
    serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    })
    .to_string()
}

/// A 400 problem document saying what was wrong with the request (fixed text).
fn bad_request(detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/problem+json")],
        problem_body(StatusCode::BAD_REQUEST, "Bad Request", detail),
    )
        .into_response()
}

fn failed(e: &Error) -> Response {
    crate::routes::to_response(e.to_reply(false))
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => failed(&Error::Internal(e.to_string())),
    }
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// The `sub` of `?sub=…`: exactly one, nothing else.
fn sub_of(uri: &Uri) -> Result<String, &'static str> {
    let query = uri.query().unwrap_or("");
    let mut sub = None;
    for (k, v) in openidconnect::url::form_urlencoded::parse(query.as_bytes()) {
        if k != "sub" {
            return Err("the only query parameter is sub");
        }
        if sub.replace(v.into_owned()).is_some() {
            return Err("sub is given more than once");
        }
    }
    match sub {
        Some(s) if valid_id(&s) => Ok(s),
        Some(_) => Err("sub must be 1 to 1024 bytes without control characters"),
        None => Err("the query parameter sub is required"),
    }
}

/// `GET /admin/sessions?sub=…`: the user's sessions in every scope.
async fn sessions(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
) -> Response {
    let sub = match sub_of(&uri) {
        Ok(s) => s,
        Err(why) => return bad_request(why),
    };
    match list(app.all_scopes(), &sub, app.now()).await {
        Ok(l) => {
            tracing::info!(target: "audit", %peer, action = "list", sub = %sub, scopes = l.scopes.len(), "admin API: sessions listed");
            json(&l)
        }
        Err(e) => {
            tracing::warn!(target: "audit", %peer, action = "list", sub = %sub, error = %e, "admin API: listing failed");
            failed(&e)
        }
    }
}

/// The body of `POST /admin/revoke`: exactly one of `sub` and `sid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    sub: Option<String>,
    sid: Option<String>,
}

fn end_by(body: &[u8]) -> Result<EndBy, &'static str> {
    let b: RevokeBody = serde_json::from_slice(body)
        .map_err(|_| "expected a JSON object with exactly one of sub and sid (strings)")?;
    let by = match (b.sub, b.sid) {
        (Some(sub), None) => EndBy::Sub(sub),
        (None, Some(sid)) => EndBy::Sid(sid),
        _ => return Err("give exactly one of sub and sid"),
    };
    let (EndBy::Sub(id) | EndBy::Sid(id)) = &by;
    if valid_id(id) {
        Ok(by)
    } else {
        Err("the identifier must be 1 to 1024 bytes without control characters")
    }
}

/// `POST /admin/revoke`: ends every session of a `sub` or `sid` in every scope. One audit line
/// per revocation: the peer's address (who holds the token is unknown: there is one token), what
/// was named (`sub` or `sid` and its value: identifiers, not credentials) and what was ended;
/// never the token.
async fn revoke(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let by = match end_by(&body) {
        Ok(by) => by,
        Err(why) => return bad_request(why),
    };
    let (kind, id) = match &by {
        EndBy::Sub(s) => ("sub", s.as_str()),
        EndBy::Sid(s) => ("sid", s.as_str()),
    };
    match revoke_all(app.all_scopes(), &by, app.now()).await {
        Ok(r) => {
            tracing::info!(target: "audit", %peer, action = "revoke", by = kind, id, revoked = ?r.revoked, scopes = r.scopes.len(), "admin API: sessions revoked");
            json(&serde_json::json!({ "revoked": r.revoked, "scopes": r.scopes }))
        }
        Err(e) => {
            tracing::warn!(target: "audit", %peer, action = "revoke", by = kind, id, error = %e, "admin API: revocation failed (retry: it is idempotent)");
            failed(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_bearer_check_accepts_exactly_the_token() {
        let c = BearerCheck::new(&Secret::new("0123456789abcdef"));
        assert_eq!(c.check(&headers(&["Bearer 0123456789abcdef"])), Ok(()));
        assert_eq!(c.check(&headers(&["bearer 0123456789abcdef"])), Ok(()));
        assert_eq!(c.check(&headers(&[])), Err(false));
        for bad in [
            "Bearer 0123456789abcdeF",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef ",
            "Bearer  0123456789abcdef",
            "Basic 0123456789abcdef",
            "0123456789abcdef",
            "Bearer",
        ] {
            assert_eq!(c.check(&headers(&[bad])), Err(true), "{bad}");
        }
        let twice = headers(&["Bearer 0123456789abcdef", "Bearer 0123456789abcdef"]);
        assert_eq!(c.check(&twice), Err(true), "a repeated header is refused");
    }

    #[test]
    fn revoke_bodies_name_exactly_one_identifier() {
        assert_eq!(
            end_by(br#"{"sub":"alice"}"#),
            Ok(EndBy::Sub("alice".into()))
        );
        assert_eq!(end_by(br#"{"sid":"s-1"}"#), Ok(EndBy::Sid("s-1".into())));
        for bad in [
            &br#"{"sub":"a","sid":"b"}"#[..],
            br#"{}"#,
            br#"{"sub":""}"#,
            br#"{"sub":1}"#,
            br#"{"sub":"a","extra":1}"#,
            br#"{"sub":"a\nb"}"#,
            b"not json",
            b"",
        ] {
            assert!(end_by(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_query_names_one_sub() {
        let uri = |q: &str| q.parse::<Uri>().unwrap();
        assert_eq!(sub_of(&uri("/admin/sessions?sub=a%20b")), Ok("a b".into()));
        for bad in [
            "/admin/sessions",
            "/admin/sessions?sub=",
            "/admin/sessions?sub=a&sub=b",
            "/admin/sessions?sub=a&x=1",
        ] {
            assert!(sub_of(&uri(bad)).is_err(), "{bad}");
        }
    }
}
