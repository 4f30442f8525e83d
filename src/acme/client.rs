//! The ACME protocol (RFC 8555) as one client: directory, nonces, JWS
//! (ES256 over the account key), account, order, authorizations,
//! finalization and the certificate download. Challenge answers are handed
//! to `Challenges` (HTTP-01 tokens, TLS-ALPN-01 certificates) and taken
//! back when the authorization is decided.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Challenges;

/// Any one exchange with the ACME server takes at most this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read (certificate chains are a few KiB).
const BODY_BYTES_MAX: u64 = 256 * 1024;
/// A request refused for a stale nonce is sent again this often at most.
const NONCE_RETRIES_MAX: usize = 5;
/// Authorizations and orders are polled this often ...
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// ... this many times at most before the attempt is given up.
const POLLS_MAX: usize = 120;

/// An ACME account key: ECDSA P-256, signing ES256 JWS.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    jwk: Value,
    thumbprint: String,
}

impl AccountKey {
    /// A new key as PKCS#8 DER, to be stored.
    pub fn generate() -> Result<Vec<u8>, String> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| "cannot generate an ACME account key".to_owned())
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<AccountKey, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
            .map_err(|_| "the stored ACME account key is not a P-256 PKCS#8 key".to_owned())?;
        // The public key is the uncompressed point 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
        // RFC 7638: the members in lexical order, no white space.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let jwk = json!({"crv": "P-256", "kty": "EC", "x": x, "y": y});
        Ok(AccountKey { pair, jwk, thumbprint })
    }

    /// `token.thumbprint`: what a challenge answers with (RFC 8555 §8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }

    /// A flattened JWS: `protected` header, the payload (`None`: the empty
    /// payload of a POST-as-GET), ES256 signature.
    fn sign(&self, protected: &Value, payload: Option<&Value>) -> Result<Value, String> {
        let protected = URL_SAFE_NO_PAD.encode(protected.to_string());
        let payload = payload.map(|p| URL_SAFE_NO_PAD.encode(p.to_string())).unwrap_or_default();
        let signing_input = format!("{protected}.{payload}");
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| "signing an ACME request failed".to_owned())?;
        Ok(json!({
            "protected": protected,
            "payload": payload,
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
        }))
    }
}

/// An answer from the ACME server.
struct Reply {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The problem document's type and detail, for errors.
    fn problem(&self) -> String {
        let v = self.json();
        let kind = v["type"].as_str().unwrap_or("");
        let detail = v["detail"].as_str().unwrap_or("");
        format!("HTTP {} {kind} {detail}", self.status).trim_end().to_owned()
    }
}

/// A session with one ACME directory and one account.
pub struct Client {
    agent: ureq::Agent,
    key: AccountKey,
    new_nonce: String,
    new_account: String,
    new_order: String,
    nonce: Option<String>,
    kid: Option<String>,
}

/// How the names prove control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Http01,
    TlsAlpn01,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Http01 => "http-01",
            Method::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl Client {
    /// Reads the directory. `extra_roots`: PEM roots that replace the web
    /// roots for this server (a private or test ACME server).
    pub fn new(directory: &str, key: AccountKey, extra_roots: Option<&[u8]>) -> Result<Client, String> {
        let mut builder = ureq::AgentBuilder::new().timeout(HTTP_TIMEOUT).redirects(0);
        if let Some(pem) = extra_roots {
            builder = builder.tls_config(client_tls(pem)?);
        }
        let agent = builder.build();
        let reply = read(agent.get(directory).call()).map_err(|e| format!("directory {directory}: {e}"))?;
        let dir = reply.json();
        let url = |name: &str| {
            dir[name].as_str().map(str::to_owned).ok_or_else(|| format!("the directory has no {name}"))
        };
        Ok(Client {
            new_nonce: url("newNonce")?,
            new_account: url("newAccount")?,
            new_order: url("newOrder")?,
            agent,
            key,
            nonce: None,
            kid: None,
        })
    }

    /// Registers the account, or finds it when the key is known already;
    /// returns its URL (the JWS `kid`).
    pub fn account(&mut self, known: Option<&str>, email: Option<&str>) -> Result<String, String> {
        if let Some(kid) = known {
            self.kid = Some(kid.to_owned());
            return Ok(kid.to_owned());
        }
        let mut payload = json!({"termsOfServiceAgreed": true});
        if let Some(email) = email {
            payload["contact"] = json!([format!("mailto:{email}")]);
        }
        let url = self.new_account.clone();
        let reply = self.post(&url, Some(&payload))?;
        if !matches!(reply.status, 200 | 201) {
            return Err(format!("account: {}", reply.problem()));
        }
        let kid = reply.location.ok_or("the account answer has no Location")?;
        self.kid = Some(kid.clone());
        Ok(kid)
    }

    /// Orders a certificate for `names`, proves control with `method`, and
    /// returns the PEM chain and the PEM private key of the new certificate.
    pub fn issue(
        &mut self,
        names: &[String],
        method: Method,
        challenges: &Challenges,
    ) -> Result<(String, String), String> {
        let identifiers: Vec<Value> = names.iter().map(|n| json!({"type": "dns", "value": n})).collect();
        let url = self.new_order.clone();
        let reply = self.post(&url, Some(&json!({ "identifiers": identifiers })))?;
        if reply.status != 201 {
            return Err(format!("new order: {}", reply.problem()));
        }
        let order_url = reply.location.clone().ok_or("the order answer has no Location")?;
        let order = reply.json();
        let authorizations: Vec<String> = order["authorizations"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let finalize = order["finalize"].as_str().ok_or("the order has no finalize URL")?.to_owned();
        for authz in &authorizations {
            self.authorize(authz, method, challenges)?;
        }
        let key = rcgen::KeyPair::generate().map_err(|e| format!("certificate key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| format!("CSR: {e}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(|e| format!("CSR: {e}"))?;
        let reply = self.post(&finalize, Some(&json!({"csr": URL_SAFE_NO_PAD.encode(csr.der())})))?;
        if reply.status != 200 {
            return Err(format!("finalize: {}", reply.problem()));
        }
        let order = self.poll(&order_url, "order", &["valid"], &["invalid"])?;
        let cert_url =
            order["certificate"].as_str().ok_or("the valid order has no certificate URL")?.to_owned();
        let reply = self.post(&cert_url, None)?;
        if reply.status != 200 {
            return Err(format!("certificate download: {}", reply.problem()));
        }
        let chain =
            String::from_utf8(reply.body).map_err(|_| "the certificate is not PEM text".to_owned())?;
        Ok((chain, key.serialize_pem()))
    }

    /// Answers one authorization's challenge and waits for the verdict.
    fn authorize(&mut self, authz_url: &str, method: Method, challenges: &Challenges) -> Result<(), String> {
        let reply = self.post(authz_url, None)?;
        let authz = reply.json();
        if authz["status"] == "valid" {
            return Ok(());
        }
        let name =
            authz["identifier"]["value"].as_str().ok_or("authorization without identifier")?.to_owned();
        let challenge = authz["challenges"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == method.name()))
            .ok_or_else(|| format!("{name}: the server offers no {} challenge", method.name()))?;
        let token = challenge["token"].as_str().ok_or("challenge without token")?.to_owned();
        let challenge_url = challenge["url"].as_str().ok_or("challenge without url")?.to_owned();
        if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("{name}: malformed challenge token"));
        }
        let key_auth = self.key.key_authorization(&token);
        let _answer = challenges.answer(method, &name, &token, &key_auth)?;
        let reply = self.post(&challenge_url, Some(&json!({})))?;
        if reply.status != 200 {
            return Err(format!("{name}: challenge: {}", reply.problem()));
        }
        self.poll(authz_url, &name, &["valid"], &["invalid", "deactivated", "expired", "revoked"]).map(|_| ())
    }

    /// POST-as-GET `url` until its status is one of `done` (the object) or
    /// `failed` (an error with the server's reason).
    fn poll(&mut self, url: &str, what: &str, done: &[&str], failed: &[&str]) -> Result<Value, String> {
        for _ in 0..POLLS_MAX {
            let reply = self.post(url, None)?;
            let v = reply.json();
            let status = v["status"].as_str().unwrap_or("");
            if done.contains(&status) {
                return Ok(v);
            }
            if failed.contains(&status) {
                let why = v["challenges"]
                    .as_array()
                    .and_then(|c| c.iter().find_map(|c| c["error"]["detail"].as_str()))
                    .or_else(|| v["error"]["detail"].as_str())
                    .unwrap_or("no reason given");
                return Err(format!("{what}: {status}: {why}"));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(format!("{what}: still pending after {POLLS_MAX} polls"))
    }

    /// A signed POST (`payload` `None`: POST-as-GET), sent again with a
    /// fresh nonce when the server calls the nonce stale.
    fn post(&mut self, url: &str, payload: Option<&Value>) -> Result<Reply, String> {
        for _ in 0..NONCE_RETRIES_MAX {
            let nonce = match self.nonce.take() {
                Some(n) => n,
                None => self.fresh_nonce()?,
            };
            let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
            match &self.kid {
                Some(kid) => protected["kid"] = json!(kid),
                None => protected["jwk"] = self.key.jwk.clone(),
            }
            let body = self.key.sign(&protected, payload)?.to_string();
            let reply = read_with_nonce(
                self.agent
                    .post(url)
                    .set("Content-Type", "application/jose+json")
                    .set("Accept", "application/pem-certificate-chain, application/json")
                    .send_string(&body),
                &mut self.nonce,
            )
            .map_err(|e| format!("{url}: {e}"))?;
            if reply.status == 400 && reply.json()["type"] == "urn:ietf:params:acme:error:badNonce" {
                continue;
            }
            return Ok(reply);
        }
        Err(format!("{url}: the server refused {NONCE_RETRIES_MAX} nonces in a row"))
    }

    fn fresh_nonce(&mut self) -> Result<String, String> {
        let mut nonce = None;
        read_with_nonce(self.agent.head(&self.new_nonce).call(), &mut nonce)
            .map_err(|e| format!("new nonce: {e}"))?;
        nonce.ok_or_else(|| "the server gave no Replay-Nonce".to_owned())
    }
}

/// The TLS client configuration trusting only the roots in `pem`.
fn client_tls(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("acme_ca_file: {e}"))?;
        roots.add(cert).map_err(|e| format!("acme_ca_file: {e}"))?;
    }
    if roots.is_empty() {
        return Err("acme_ca_file holds no certificate".to_owned());
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read(result: Result<ureq::Response, ureq::Error>) -> Result<Reply, String> {
    read_with_nonce(result, &mut None)
}

/// Any HTTP status is a reply; only transport failures are errors. Keeps
/// the `Replay-Nonce` for the next request.
fn read_with_nonce(
    result: Result<ureq::Response, ureq::Error>,
    nonce: &mut Option<String>,
) -> Result<Reply, String> {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    if let Some(n) = response.header("Replay-Nonce") {
        *nonce = Some(n.to_owned());
    }
    let status = response.status();
    let location = response.header("Location").map(str::to_owned);
    let mut body = Vec::new();
    response.into_reader().take(BODY_BYTES_MAX).read_to_end(&mut body).map_err(|e| e.to_string())?;
    Ok(Reply { status, location, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_verifies_with_the_jwk() {
        let key = AccountKey::from_pkcs8(&AccountKey::generate().expect("key")).expect("parse");
        let jws = key
            .sign(&json!({"alg": "ES256", "nonce": "n", "url": "u"}), Some(&json!({"a": 1})))
            .expect("sign");
        let input =
            format!("{}.{}", jws["protected"].as_str().unwrap_or(""), jws["payload"].as_str().unwrap_or(""));
        let sig = URL_SAFE_NO_PAD.decode(jws["signature"].as_str().unwrap_or("")).expect("b64");
        assert_eq!(sig.len(), 64, "ES256 signatures are r || s");
        let x = URL_SAFE_NO_PAD.decode(key.jwk["x"].as_str().unwrap_or("")).expect("x");
        let y = URL_SAFE_NO_PAD.decode(key.jwk["y"].as_str().unwrap_or("")).expect("y");
        let point = [&[4u8][..], &x, &y].concat();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(input.as_bytes(), &sig)
            .expect("signature verifies");
        // POST-as-GET has an empty payload.
        let get = key.sign(&json!({}), None).expect("sign");
        assert_eq!(get["payload"], "");
    }

    #[test]
    fn key_authorization_is_token_dot_thumbprint() {
        let key = AccountKey::from_pkcs8(&AccountKey::generate().expect("key")).expect("parse");
        let ka = key.key_authorization("tok");
        let (token, thumb) = ka.split_once('.').expect("dot");
        assert_eq!(token, "tok");
        assert_eq!(URL_SAFE_NO_PAD.decode(thumb).expect("b64").len(), 32);
    }
}
