//! How the sidecar authenticates itself to the IdP's token and introspection endpoints:
//! `client_secret_basic` (or `client_secret_post` when discovery says only that), or
//! `private_key_jwt` — a client assertion (RFC 7523 §2.2, OIDC Core §9) signed with
//! `Provider.ClientJwtPrivateKey`.
//!
//! Keys are PEM: RSA as PKCS#8 or PKCS#1 (signs RS256), EC P-256 as PKCS#8 or SEC1 (signs
//! ES256). They are parsed and checked when the configuration loads, so a bad key is a load
//! error, never a failed login. The key never reaches `Debug` or the log.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use p256::pkcs8::DecodePrivateKey as _;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::json;
use sha2::Sha256;

use super::{Discovered, Provider};
use crate::error::Error;

/// RFC 7523 §2.2: the `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid. It is made for one request and sent at once; a short
/// lifetime bounds what a captured assertion is worth (the IdP also refuses a reused `jti`).
pub const ASSERTION_LIFETIME_SECS: u64 = 60;
/// RFC 7518 §3.3: RSA keys for RS256 must have at least 2048 bits.
const RSA_MIN_BITS: usize = 2048;

/// A private key that signs client assertions, with its `kid`.
#[derive(Clone)]
pub struct ClientKey {
    signer: Arc<Signer>,
    kid: Option<String>,
}

// The RSA key is boxed: it is several times the size of the EC one (clippy::large_enum_variant).
enum Signer {
    /// RS256: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rsa(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
    /// ES256: ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    Ec(p256::ecdsa::SigningKey),
}

impl fmt::Debug for ClientKey {
    /// Names the algorithm and key id only: the key itself is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Parses a PEM private key. `kid` becomes the assertion header's `kid`. Errors describe
    /// the form of the input, never its content.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<ClientKey, String> {
        // Keys passed through environment variables often arrive with "\n" escaped.
        let pem = if !pem.contains('\n') && pem.contains("\\n") {
            pem.replace("\\n", "\n")
        } else {
            pem.to_string()
        };
        let pem = pem.trim();
        let label = pem
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.split_once("-----"))
            .map(|(label, _)| label)
            .ok_or("expected a PEM private key (-----BEGIN PRIVATE KEY-----)")?;
        let signer = match label {
            "RSA PRIVATE KEY" => rsa_signer(
                rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                    .map_err(|_| "not a readable PKCS#1 RSA private key")?,
            )?,
            "PRIVATE KEY" => {
                if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
                    rsa_signer(k)?
                } else if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
                    Signer::Ec(k)
                } else {
                    return Err("not a readable PKCS#8 RSA or EC P-256 private key (other \
                                curves and key types are not supported)"
                        .into());
                }
            }
            "EC PRIVATE KEY" => Signer::Ec(p256::ecdsa::SigningKey::from(
                p256::SecretKey::from_sec1_pem(pem)
                    .map_err(|_| "not a readable SEC1 EC P-256 private key")?,
            )),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(
                    "encrypted keys are not supported; give the key unencrypted \
                            (openssl pkcs8 -topk8 -nocrypt) from a file only the sidecar reads"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "a PEM {other:?} is not a private key; expected PRIVATE KEY, RSA PRIVATE KEY \
                     or EC PRIVATE KEY"
                ));
            }
        };
        Ok(ClientKey {
            signer: Arc::new(signer),
            kid: kid.filter(|k| !k.is_empty()),
        })
    }

    /// The JWS algorithm this key signs with (RFC 7518 §3.1).
    pub fn alg(&self) -> &'static str {
        match *self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
        }
    }

    /// A fresh client assertion for `client_id` addressed to `audience`: `iss` = `sub` = the
    /// client id (RFC 7523 §3 items 1–2), a random `jti` (item 7: the IdP refuses reuse),
    /// `iat` = `now`, `exp` = `now` + [`ASSERTION_LIFETIME_SECS`].
    pub fn assertion(&self, client_id: &str, audience: &str, now: u64) -> Result<String, String> {
        let jti: [u8; 16] = rand::random();
        let jti = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti);
        self.sign_assertion(client_id, audience, now, &jti)
    }

    fn sign_assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: u64,
        jti: &str,
    ) -> Result<String, String> {
        let mut header = json!({"alg": self.alg(), "typ": "JWT"});
        if let (Some(kid), Some(h)) = (&self.kid, header.as_object_mut()) {
            h.insert("kid".into(), kid.clone().into());
        }
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": jti,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let signature = match &*self.signer {
            Signer::Rsa(k) => {
                use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
                // Blinded with fresh randomness. The `rsa` crate's big-integer arithmetic is not
                // constant-time (RUSTSEC-2023-0071, no fixed release); blinding and a message
                // the attacker does not choose narrow that, and ES256 keys avoid it.
                k.try_sign_with_rng(&mut rsa::rand_core::OsRng, input.as_bytes())
                    .map_err(|e| format!("RS256 signing failed: {e}"))?
                    .to_vec()
            }
            Signer::Ec(k) => {
                use p256::ecdsa::signature::Signer as _;
                // RFC 7518 §3.4: the JWS signature is R || S, 32 bytes each.
                let sig: p256::ecdsa::Signature = k
                    .try_sign(input.as_bytes())
                    .map_err(|e| format!("ES256 signing failed: {e}"))?;
                sig.to_bytes().to_vec()
            }
        };
        Ok(format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

impl Provider {
    /// The client assertion for one request to the IdP, when private_key_jwt is configured.
    ///
    /// `aud` is the token endpoint, for the token, refresh and introspection calls alike: RFC
    /// 7523 §3 only asks for a value that identifies the authorization server and names the
    /// token endpoint URL as one; OIDC Core §9 says it SHOULD be the token endpoint; Keycloak
    /// and oidc-provider accept it at their introspection endpoints too. One audience for every
    /// call keeps the assertion independent of which endpoint receives it. Without a token
    /// endpoint (an IdP that only introspects), the discovered issuer identifies the server.
    pub(super) fn client_assertion(
        &self,
        d: &Discovered,
        now: u64,
    ) -> Result<Option<String>, Error> {
        let Some(key) = &self.cfg.client_key else {
            return Ok(None);
        };
        let aud = d
            .token_endpoint
            .as_ref()
            .map_or(d.discovered_issuer.as_str(), |u| u.as_str());
        key.assertion(&self.cfg.client_id, aud, now)
            .map(Some)
            .map_err(Error::Internal)
    }

    /// The parameters every token-endpoint request (code exchange and refresh) adds: the RFC 8707
    /// `resource` indicators and, with `private_key_jwt`, a fresh client assertion (RFC 7523
    /// §2.2).
    pub(super) fn token_params(
        &self,
        d: &Discovered,
        resources: &[String],
        now: u64,
    ) -> Result<Vec<(&'static str, String)>, Error> {
        let mut params: Vec<(&'static str, String)> =
            resources.iter().map(|r| ("resource", r.clone())).collect();
        if let Some(a) = self.client_assertion(d, now)? {
            params.push(("client_assertion_type", ASSERTION_TYPE.to_string()));
            params.push(("client_assertion", a));
        }
        Ok(params)
    }
}

fn rsa_signer(key: rsa::RsaPrivateKey) -> Result<Signer, String> {
    key.validate()
        .map_err(|_| "the RSA private key is inconsistent")?;
    let bits = key.size() * 8;
    if bits < RSA_MIN_BITS {
        return Err(format!(
            "the RSA key has {bits} bits; RS256 needs at least {RSA_MIN_BITS} (RFC 7518 §3.3)"
        ));
    }
    Ok(Signer::Rsa(Box::new(
        rsa::pkcs1v15::SigningKey::<Sha256>::new(key),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn key(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/test-keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("test key")
    }

    fn part(jwt: &str, i: usize) -> Value {
        let p = jwt.split('.').nth(i).expect("part");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .expect("base64url"),
        )
        .expect("json")
    }

    fn signature(jwt: &str) -> (String, Vec<u8>) {
        let (input, sig) = jwt.rsplit_once('.').expect("three parts");
        (
            input.to_string(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .expect("base64url"),
        )
    }

    #[test]
    fn assertion_has_the_rfc7523_claims_and_header() {
        let k = ClientKey::from_pem(&key("rsa-pkcs8.pem"), Some("kid-1".into())).expect("key");
        let jwt = k
            .sign_assertion("app", "https://idp.test/token", 1_000, "jti-1")
            .expect("signed");
        assert_eq!(
            part(&jwt, 0),
            json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
        );
        assert_eq!(
            part(&jwt, 1),
            json!({"iss": "app", "sub": "app", "aud": "https://idp.test/token", "jti": "jti-1",
                   "iat": 1_000, "exp": 1_060})
        );
        // No kid configured: no kid header.
        let k = ClientKey::from_pem(&key("ec-p256-sec1.pem"), None).expect("key");
        let jwt = k.assertion("app", "aud", 5).expect("signed");
        assert_eq!(part(&jwt, 0), json!({"alg": "ES256", "typ": "JWT"}));
    }

    #[test]
    fn every_assertion_has_a_fresh_jti() {
        let k = ClientKey::from_pem(&key("ec-p256-pkcs8.pem"), None).expect("key");
        let a = part(&k.assertion("app", "aud", 5).expect("a"), 1);
        let b = part(&k.assertion("app", "aud", 5).expect("b"), 1);
        assert_ne!(a["jti"], b["jti"]);
        assert!(a["jti"].as_str().is_some_and(|j| j.len() >= 22), "{a}");
    }

    #[test]
    fn rs256_signature_verifies_with_the_public_key_for_both_rsa_forms() {
        use rsa::signature::Verifier as _;
        let private =
            rsa::RsaPrivateKey::from_pkcs8_pem(&key("rsa-pkcs8.pem")).expect("fixture parses");
        let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(private.to_public_key());
        for file in ["rsa-pkcs8.pem", "rsa-pkcs1.pem"] {
            let jwt = ClientKey::from_pem(&key(file), None)
                .expect(file)
                .assertion("app", "aud", 5)
                .expect("signed");
            let (input, sig) = signature(&jwt);
            let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).expect("sig");
            verifier.verify(input.as_bytes(), &sig).expect(file);
            // A changed payload does not verify.
            assert!(verifier.verify(b"other", &sig).is_err());
        }
    }

    #[test]
    fn es256_signature_is_r_s_and_verifies_for_both_ec_forms() {
        use p256::ecdsa::signature::Verifier as _;
        let private =
            p256::ecdsa::SigningKey::from_pkcs8_pem(&key("ec-p256-pkcs8.pem")).expect("fixture");
        let verifier = p256::ecdsa::VerifyingKey::from(&private);
        for file in ["ec-p256-pkcs8.pem", "ec-p256-sec1.pem"] {
            let jwt = ClientKey::from_pem(&key(file), None)
                .expect(file)
                .assertion("app", "aud", 5)
                .expect("signed");
            let (input, sig) = signature(&jwt);
            assert_eq!(sig.len(), 64, "R || S, not DER");
            let sig = p256::ecdsa::Signature::from_slice(&sig).expect("sig");
            verifier.verify(input.as_bytes(), &sig).expect(file);
        }
    }

    #[test]
    fn escaped_newlines_from_environment_variables_are_accepted() {
        let escaped = key("ec-p256-sec1.pem").replace('\n', "\\n");
        assert_eq!(
            ClientKey::from_pem(&escaped, None).expect("key").alg(),
            "ES256"
        );
    }

    #[test]
    fn unusable_pem_is_refused_with_a_reason_that_shows_no_key_material() {
        let rsa = key("rsa-pkcs8.pem");
        let truncated = format!("{}\n-----END PRIVATE KEY-----\n", &rsa[..200]);
        let body_line = rsa.lines().nth(1).expect("a base64 line").to_string();
        let cases = [
            ("", "expected a PEM"),
            ("not a key", "expected a PEM"),
            ("-----BEGIN RSA PRIVATE KEY-----", "PKCS#1"),
            (truncated.as_str(), "PKCS#8"),
            (&key("rsa-1024-too-small.pem"), "1024 bits"),
            (&key("ec-p384-unsupported.pem"), "not supported"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
                "encrypted",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                "\"CERTIFICATE\" is not a private key",
            ),
        ];
        for (pem, want) in cases {
            let e = ClientKey::from_pem(pem, None).expect_err(want);
            assert!(e.contains(want), "{want}: {e}");
            assert!(!e.contains(&body_line[..16]), "{e}");
        }
    }

    #[test]
    fn debug_shows_algorithm_and_kid_never_the_key() {
        let pem = key("rsa-pkcs1.pem");
        let k = ClientKey::from_pem(&pem, Some("kid-9".into())).expect("key");
        let shown = format!("{k:?} {k:#?}");
        assert!(
            shown.contains("RS256") && shown.contains("kid-9"),
            "{shown}"
        );
        for line in pem.lines().skip(1).take(3) {
            assert!(!shown.contains(&line[..12]), "{shown}");
        }
        assert!(
            !shown.contains("BigUint") && !shown.contains("primes"),
            "{shown}"
        );
    }
}
