//! TURN credentials for calls: `GET /voip/turnServer`.
//!
//! The credentials follow the TURN REST scheme that coturn serves with
//! `use-auth-secret`: the username is `<expiry in unix seconds>:<user ID>`
//! and the password is the padded standard base64 of
//! HMAC-SHA1(shared secret, username). The TURN server checks the HMAC and
//! the expiry itself; nothing is stored here.
//!
//! SHA-1 and HMAC are written out below (a few dozen lines, tested against
//! the FIPS 180 and RFC 2202 vectors) rather than pulled in as crates: the
//! TURN scheme is their only use, and SHA-1 protects nothing else here.

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

/// SHA-1's block size in bytes.
const SHA1_BLOCK_BYTES: usize = 64;

/// SHA-1 (FIPS 180-4) of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    // The message, a 1 bit, zeros up to 56 mod 64, and the bit length.
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % SHA1_BLOCK_BYTES != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(SHA1_BLOCK_BYTES) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104) of `message` under `key`.
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut block = [0u8; SHA1_BLOCK_BYTES];
    if key.len() > SHA1_BLOCK_BYTES {
        block[..20].copy_from_slice(&sha1(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Vec::with_capacity(SHA1_BLOCK_BYTES + message.len());
    inner.extend(block.iter().map(|b| b ^ 0x36));
    inner.extend_from_slice(message);
    let mut outer = Vec::with_capacity(SHA1_BLOCK_BYTES + 20);
    outer.extend(block.iter().map(|b| b ^ 0x5c));
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_fips_180_vectors() {
        assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(hex(&sha1(&vec![b'a'; 1_000_000])), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
        // Lengths around the padding boundary (55, 56, 64 bytes).
        assert_eq!(hex(&sha1(&[b'a'; 55])), "c1c8bbdc22796e28c0e15163d20899b65621d65a");
        assert_eq!(hex(&sha1(&[b'a'; 56])), "c2db330f6083854c99d4b5bfb6e8f29f201be699");
        assert_eq!(hex(&sha1(&[b'a'; 64])), "0098ba824b5c16427bd7a1122a5a442a25ec644d");
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
}
