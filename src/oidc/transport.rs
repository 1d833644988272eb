//! The HTTP client toward the IdP: TLS trust (`CABundleFile`, `CABundle`,
//! `InsecureSkipVerify`), no redirects, timeouts, and a cap on every answer's size.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

use super::settings::ProviderConfig;

/// Largest IdP answer we read (discovery, introspection, UserInfo): a hostile or broken IdP
/// must not make the sidecar buffer without bound.
pub const MAX_IDP_BODY: usize = 1024 * 1024;

/// The reqwest client for one provider. It never follows redirects: a redirect from a
/// discovered endpoint could otherwise point our client credentials at another host (SSRF).
pub(super) fn client(cfg: &ProviderConfig) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("traefik-oidc-sidecar/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(cfg.insecure_skip_verify);
    if let Some(pem) = &cfg.ca_bundle_file {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("CABundleFile: {e}"))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(inline) = &cfg.ca_bundle {
        for c in reqwest::Certificate::from_pem_bundle(&decode_ca_bundle(inline)?)
            .map_err(|e| format!("CABundle: {e}"))?
        {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

/// The IdP client as openidconnect calls it (token endpoint, JWKS): the same reqwest client
/// (no redirects, timeouts), but every answer is read through the [`MAX_IDP_BODY`] cap. The
/// crate's own reqwest adapter reads a body whole, however large.
/// (A clone of the client: a reference-counted handle to the same connection pool.)
pub(super) struct Capped(pub(super) reqwest::Client);

/// Why a capped IdP request failed (the message names no body content).
#[derive(Debug, thiserror::Error)]
pub enum CappedError {
    /// The IdP answered with more than [`MAX_IDP_BODY`] bytes: an answer, not an outage.
    #[error("answer larger than {MAX_IDP_BODY} bytes")]
    TooLarge,
    /// The request could not be made or the answer not read.
    #[error("{0}")]
    Transport(String),
}

impl<'c> AsyncHttpClient<'c> for Capped {
    type Error = CappedError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, CappedError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let client = &self.0;
        Box::pin(async move {
            let req = reqwest::Request::try_from(request)
                .map_err(|e| CappedError::Transport(e.to_string()))?;
            let mut resp = client
                .execute(req)
                .await
                .map_err(|e| CappedError::Transport(e.to_string()))?;
            let mut b = http::Response::builder().status(resp.status());
            for (n, v) in resp.headers() {
                b = b.header(n, v);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| CappedError::Transport(e.to_string()))?
            {
                if body.len() + chunk.len() > MAX_IDP_BODY {
                    return Err(CappedError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            b.body(body)
                .map_err(|e| CappedError::Transport(e.to_string()))
        })
    }
}

/// Sends `req`, requires a 2xx, and reads the body up to [`MAX_IDP_BODY`]. Returns the
/// content type and the body; errors name `what` and never include the body.
pub(super) async fn fetch(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<(String, Vec<u8>), String> {
    let mut resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{what} answered {}", resp.status()));
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{what}: {e}"))? {
        if body.len() + chunk.len() > MAX_IDP_BODY {
            return Err(format!("{what}: answer larger than {MAX_IDP_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((content_type, body))
}

/// The PEM bytes of an inline `CABundle`: PEM text, or `base64:` followed by base64 of it.
pub fn decode_ca_bundle(s: &str) -> Result<Vec<u8>, String> {
    let pem = match s.strip_prefix("base64:") {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| format!("base64: {e}"))?,
        None => s.as_bytes().to_vec(),
    };
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err("expected PEM certificates".into());
    }
    Ok(pem)
}
