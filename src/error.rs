//! The one error type of the request path, and how each error becomes an HTTP answer.
//!
//! Every variant maps to a non-2xx status: an auth proxy fails closed, so no error can ever be
//! mistaken for "let the request through". The client sees a fixed, generic description of the
//! cause (a problem+json body per RFC 9457, or a small HTML page for browser navigations); the
//! details (IdP messages, parse errors) go to the log only, never to the client.

use crate::reply::{Body, Reply};

/// Set on the answer to a forwardAuth request for `BackchannelLogoutUri`: the plugin shim
/// (traefik-plugin) then POSTs the request body to `/backchannel-logout/{middleware}` and relays
/// that answer instead. Traefik's own forwardAuth ignores it and relays the 400.
pub const FORWARD_BODY_HEADER: &str = "X-Oidc-Sidecar-Forward-Body";

/// Everything that can go wrong while answering a forwardAuth request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP peer is not in `trustedProxies`, so its `X-Forwarded-*` headers mean nothing.
    #[error("request from an untrusted peer")]
    UntrustedPeer,
    /// A required `X-Forwarded-*` header is missing, repeated or malformed.
    #[error("bad forwarded header {header}: {reason}")]
    BadForwarded {
        /// The header at fault.
        header: &'static str,
        /// What is wrong with it (a fixed phrase, safe to show).
        reason: &'static str,
    },
    /// `/auth/{name}` names no configured middleware.
    #[error("unknown middleware")]
    UnknownMiddleware,
    /// No valid session and the behaviour says to answer 401.
    #[error("authentication required")]
    Unauthenticated,
    /// Logged in, but the claim assertions fail.
    #[error("access denied by claim assertions")]
    Forbidden,
    /// A redirect target (logout `redirect_uri`…) is not allowed.
    #[error("redirect target refused")]
    BadRedirect,
    /// The callback's `state` is missing, unknown to this browser, or expired.
    #[error("login state invalid: {0}")]
    BadState(&'static str),
    /// The callback request itself is malformed (no code, wrong `iss`…).
    #[error("bad callback: {0}")]
    BadCallback(&'static str),
    /// A `LoginUri` request is malformed (an unknown `prompt`, a repeated parameter).
    #[error("bad login request: {0}")]
    BadLogin(&'static str),
    /// The IdP answered the authorization request with an `error=`.
    #[error("identity provider returned an error")]
    IdpError {
        /// The `error` code, shown HTML-escaped.
        error: String,
        /// The `error_description`, shown HTML-escaped.
        description: Option<String>,
    },
    /// The IdP refused the code exchange (replayed or expired code, bad client credentials).
    #[error("code exchange refused: {0}")]
    ExchangeRefused(String),
    /// The ID token failed verification.
    #[error("ID token invalid: {0}")]
    InvalidIdToken(String),
    /// A bearer token (AuthorizationHeader/AuthorizationCookie) is invalid.
    #[error("bearer token invalid: {0}")]
    InvalidBearer(String),
    /// The IdP could not be reached, or discovery/JWKS are not loaded yet.
    #[error("identity provider unavailable: {0}")]
    IdpUnavailable(String),
    /// The session store (Redis) is unreachable, too slow or answered an error: Redis-mode
    /// requests answer 503 (never a login redirect, never a 200) until it is back.
    #[error("session store unavailable: {0}")]
    StoreUnavailable(String),
    /// A back-channel `logout_token` failed a check of Back-Channel Logout 1.0 §2.6, or was
    /// replayed: nothing is ended.
    #[error("logout token refused: {0}")]
    BadLogoutToken(String),
    /// A back-channel logout request that is not a capped form POST with one `logout_token`.
    #[error("bad back-channel logout request: {0}")]
    BadLogoutRequest(&'static str),
    /// A forwardAuth request for `BackchannelLogoutUri`: forwardAuth carries no body, so the
    /// token cannot be read here (the plugin shim forwards the body when it sees this answer).
    #[error("back-channel logout reached the forwardAuth endpoint")]
    BackchannelNeedsBody,
    /// A back-channel logout could not be recorded now (its memory is full of live entries, or
    /// its store is unreachable); the IdP may retry.
    #[error("back-channel logout unavailable: {0}")]
    LogoutBusy(&'static str),
    /// A bug or an impossible state: answer 500, never 200.
    #[error("internal error: {0}")]
    Internal(String),
    /// The session (or bearer token) is valid, but its login does not satisfy this middleware's
    /// `StepUp`, and the request is not a navigation that could be sent to the IdP: 401 with
    /// an RFC 9470 §3 `insufficient_user_authentication` challenge (the value held here).
    #[error("step-up authentication required")]
    StepUpRequired(String),
}

impl Error {
    /// The HTTP status this error answers with. Never 2xx or 3xx.
    pub fn status(&self) -> u16 {
        match self {
            Error::UntrustedPeer | Error::Unauthenticated | Error::InvalidIdToken(_) => 401,
            Error::IdpError { .. } | Error::InvalidBearer(_) | Error::StepUpRequired(_) => 401,
            Error::Forbidden => 403,
            Error::BadForwarded { .. }
            | Error::BadRedirect
            | Error::BadState(_)
            | Error::BadCallback(_)
            | Error::BadLogin(_)
            | Error::ExchangeRefused(_)
            | Error::BadLogoutToken(_)
            | Error::BadLogoutRequest(_)
            | Error::BackchannelNeedsBody => 400,
            Error::UnknownMiddleware => 404,
            Error::IdpUnavailable(_) | Error::StoreUnavailable(_) | Error::LogoutBusy(_) => 503,
            Error::Internal(_) => 500,
        }
    }

    /// The short title shown to the client.
    pub fn title(&self) -> &'static str {
        match self {
            Error::UntrustedPeer => "Untrusted proxy",
            Error::BadForwarded { .. } => "Bad forwarded request",
            Error::UnknownMiddleware => "Unknown middleware",
            Error::Unauthenticated => "Authentication required",
            Error::Forbidden => "Access denied",
            Error::BadRedirect => "Redirect target not allowed",
            Error::BadState(_) => "Login expired or not started here",
            Error::BadCallback(_) => "Bad login callback",
            Error::BadLogin(_) => "Bad login request",
            Error::IdpError { .. } => "Login failed at the identity provider",
            Error::ExchangeRefused(_) => "Login could not be completed",
            Error::InvalidIdToken(_) => "Login could not be verified",
            Error::InvalidBearer(_) => "Invalid token",
            Error::IdpUnavailable(_) => "Identity provider unavailable",
            Error::StoreUnavailable(_) => "Session store unavailable",
            Error::BadLogoutToken(_) => "Logout token refused",
            Error::BadLogoutRequest(_) => "Bad back-channel logout request",
            Error::BackchannelNeedsBody => "Back-channel logout needs its own route",
            Error::LogoutBusy(_) => "Logout unavailable",
            Error::Internal(_) => "Internal error",
            Error::StepUpRequired(_) => "Stronger authentication required",
        }
    }

    /// A description that is safe to show: fixed text, plus the offending header's name for
    /// forwarded-header problems (the caller needs it to fix their proxy). IdP messages are only
    /// shown HTML/JSON-escaped and only for `IdpError`, where they are the user's only clue.
    pub fn detail(&self) -> String {
        match self {
            Error::UntrustedPeer => {
                "The peer is not in trustedProxies; X-Forwarded-* headers are ignored.".into()
            }
            Error::BadForwarded { header, reason } => format!("{header}: {reason}"),
            Error::UnknownMiddleware => "No middleware of that name is configured.".into(),
            Error::Unauthenticated => "Log in to access this resource.".into(),
            Error::Forbidden => "Your account is not allowed to access this resource.".into(),
            Error::BadRedirect => {
                "The redirect target is neither a same-host path nor allowed.".into()
            }
            Error::BadState(_) => {
                "This login was not started in this browser or has expired. Start again.".into()
            }
            Error::BadCallback(_) => "The login callback is malformed.".into(),
            Error::BadLogin(_) => "The login request is malformed.".into(),
            Error::IdpError { error, description } => match description {
                Some(d) => format!("{error}: {d}"),
                None => error.clone(),
            },
            Error::ExchangeRefused(_) => {
                "The identity provider refused the login. Start again.".into()
            }
            Error::InvalidIdToken(_) => "The identity token could not be verified.".into(),
            Error::InvalidBearer(_) => "The bearer token is invalid or expired.".into(),
            Error::StoreUnavailable(_) => {
                "Sessions cannot be checked right now. Try again shortly.".into()
            }
            Error::IdpUnavailable(_) => {
                "The identity provider cannot be reached. Try again shortly.".into()
            }
            Error::BadLogoutToken(_) => "The logout_token failed verification.".into(),
            Error::BadLogoutRequest(_) => {
                "Expected an application/x-www-form-urlencoded POST with one logout_token.".into()
            }
            Error::BackchannelNeedsBody => {
                "forwardAuth does not forward request bodies: route this path to the sidecar's \
                 /backchannel-logout/{middleware} (see the README)."
                    .into()
            }
            Error::LogoutBusy(_) => "The logout could not be recorded now. Retry later.".into(),
            Error::Internal(_) => "Something went wrong.".into(),
            Error::StepUpRequired(_) => {
                "This resource needs a more recent or stronger login. Reload the page to log in again."
                    .into()
            }
        }
    }

    /// The answer to send: an HTML page for browser navigations, problem+json otherwise.
    pub fn to_reply(&self, navigation: bool) -> Reply {
        let status = self.status();
        let body = if navigation {
            Body::Html(crate::reply::html_page(self.title(), &self.detail()))
        } else {
            Body::Problem {
                title: self.title(),
                detail: self.detail(),
            }
        };
        let mut reply = Reply::new(status, body);
        if matches!(self, Error::InvalidBearer(_)) {
            // RFC 6750 §3.1.
            reply.header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
        }
        if matches!(self, Error::BackchannelNeedsBody) {
            // The plugin shim's cue to send the body to the sidecar's direct route.
            reply.header(FORWARD_BODY_HEADER, "1");
        }
        if let Error::StepUpRequired(challenge) = self {
            reply.header("WWW-Authenticate", challenge.clone());
        }
        if matches!(self, Error::Unauthenticated) {
            // RFC 9110 §11.6.1: a 401 carries a challenge. The session is a cookie, so the
            // scheme names the mechanism without inviting a browser's Basic-auth dialog.
            reply.header("WWW-Authenticate", "Cookie realm=\"traefik-oidc-sidecar\"");
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_error_is_ever_success_or_redirect() {
        let all = [
            Error::UntrustedPeer,
            Error::BadForwarded {
                header: "X-Forwarded-Host",
                reason: "missing",
            },
            Error::UnknownMiddleware,
            Error::Unauthenticated,
            Error::Forbidden,
            Error::BadRedirect,
            Error::BadState("x"),
            Error::BadCallback("x"),
            Error::BadLogin("x"),
            Error::IdpError {
                error: "e".into(),
                description: None,
            },
            Error::ExchangeRefused("x".into()),
            Error::InvalidIdToken("x".into()),
            Error::InvalidBearer("x".into()),
            Error::IdpUnavailable("x".into()),
            Error::StoreUnavailable("x".into()),
            Error::BadLogoutToken("x".into()),
            Error::BadLogoutRequest("x"),
            Error::BackchannelNeedsBody,
            Error::LogoutBusy("x"),
            Error::Internal("x".into()),
            Error::StepUpRequired("Bearer".into()),
        ];
        for e in all {
            assert!(e.status() >= 400, "{e:?} answers {}", e.status());
            for nav in [true, false] {
                assert!(e.to_reply(nav).status >= 400);
            }
        }
    }

    #[test]
    fn internal_details_never_reach_the_client() {
        let e = Error::ExchangeRefused("invalid_grant secret-ish detail".into());
        assert!(!e.detail().contains("secret-ish"));
        let e = Error::InvalidIdToken("kid abc".into());
        assert!(!e.detail().contains("abc"));
    }
}
