//! TURN credentials for calls: `GET /voip/turnServer`.
//!
//! The credentials follow the TURN REST scheme that coturn serves with
//! `use-auth-secret`: the username is `<expiry in unix seconds>:<user ID>`
//! and the password is the padded standard base64 of
//! HMAC-SHA1(shared secret, username). The TURN server checks the HMAC and
//! the expiry itself; nothing is stored here.
//!
//! HMAC-SHA1 is `ring`'s (already in the tree for TLS and ACME), base64 the
//! `base64` crate's standard engine.

use base64::Engine as _;
use serde_json::json;

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::Result;
use crate::storage;

/// GET /_matrix/client/v3/voip/turnServer
///
/// `{}` when no TURN server is configured (no URIs or no shared secret).
pub fn turn_server(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let config = &app.config;
    let secret = match &config.turn_shared_secret {
        Some(s) if !s.is_empty() && !config.turn_uris.is_empty() => s,
        _ => return Response::ok(json!({})),
    };
    let ttl_s = config.turn_user_lifetime_ms / 1000;
    let now_s = u64::try_from(storage::now_ms()).unwrap_or(0) / 1000;
    let username = turn_username(now_s + ttl_s, &who.user_id);
    let password = turn_password(secret.as_bytes(), &username);
    Response::ok(json!({
        "username": username,
        "password": password,
        "uris": config.turn_uris,
        "ttl": ttl_s,
    }))
}

/// The TURN REST username: valid until `expiry_s` (unix seconds).
pub fn turn_username(expiry_s: u64, user_id: &str) -> String {
    format!("{expiry_s}:{user_id}")
}

/// The TURN REST password for `username`: padded standard base64 of
/// HMAC-SHA1(secret, username), as coturn computes it.
pub fn turn_password(secret: &[u8], username: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha1(secret, username.as_bytes()))
}

/// HMAC-SHA1 (RFC 2104) of `message` under `key`, by `ring`. SHA-1 is what
/// the TURN REST scheme prescribes; it protects nothing else in Hearth.
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut out = [0u8; 20];
    out.copy_from_slice(ring::hmac::sign(&key, message).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_sha1_rfc_2202_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
            (vec![0x0b; 20], b"Hi There".to_vec(), "b617318655057264e28bc0b6fb378c8ef146be00"),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (vec![0xaa; 20], vec![0xdd; 50], "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
            ((1..=25).collect(), vec![0xcd; 50], "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
            (vec![0x0c; 20], b"Test With Truncation".to_vec(), "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data".to_vec(),
                "e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
            ),
        ];
        for (key, data, want) in cases {
            assert_eq!(hex(&hmac_sha1(&key, &data)), want);
        }
    }

    #[test]
    fn turn_password_is_padded_base64_of_the_hmac() {
        let username = turn_username(1_443_779_631, "@user:example.com");
        assert_eq!(username, "1443779631:@user:example.com");
        let password = turn_password(b"secret", &username);
        let raw = base64::engine::general_purpose::STANDARD.decode(&password).expect("base64");
        assert_eq!(raw, hmac_sha1(b"secret", username.as_bytes()));
        // 20 bytes encode to 28 characters, the last one padding.
        assert_eq!(password.len(), 28);
        assert!(password.ends_with('='));
    }

    #[test]
    fn turn_password_known_answer() {
        // HMAC-SHA1("secret", "1443779631:@user:example.com"), computed
        // independently (Python's hmac module and `openssl dgst -hmac`).
        let username = turn_username(1_443_779_631, "@user:example.com");
        assert_eq!(turn_password(b"secret", &username), "Xm0lErj7sx/fpxQLH9q1I3FF0uw=");
    }
}
