//! Cryptographic building blocks: canonical JSON, ed25519 server keys and
//! JSON signatures, event content hashes, secret tokens and password hashes.
//!
//! Everything here is pure: no SQL, no HTTP and no clock. Callers hand in
//! bytes or JSON values and get bytes, strings or verdicts back. This module
//! also owns the base64 flavours Matrix uses, so that no other module has to
//! pick a base64 engine.

pub mod canonical;
pub mod password;
pub mod sign;
pub mod token;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The decoding configuration shared by both alphabets.
///
/// Padding is optional, and non-zero trailing bits are tolerated because
/// real Matrix data contains them: the spec's own example signing seed ends
/// in such a character.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);

/// Standard alphabet, unpadded output, lenient input.
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// URL-safe alphabet, unpadded output, lenient input.
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Encodes bytes as unpadded standard base64, the form Matrix uses for keys,
/// signatures and hashes.
pub fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, with or without padding.
///
/// Returns `None` for anything that is not base64, including whitespace and
/// strings that mix the two alphabets.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    // The two alphabets differ only in their last two symbols, so a string
    // containing `-` or `_` can only be URL-safe.
    let url_safe = s.bytes().any(|b| b == b'-' || b == b'_');
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    engine.decode(s).ok()
}

/// Encodes bytes as unpadded URL-safe base64, for values that travel in URLs
/// or headers, such as access tokens.
pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

/// Returns the SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../tests/data/spec-vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("the spec vectors file is valid JSON")
    }

    #[test]
    fn spec_unpadded_base64_vectors_round_trip() {
        let v = vectors();
        let cases = v["unpadded_base64"].as_array().expect("a list of cases");
        assert!(!cases.is_empty());
        for case in cases {
            let input = case["input"].as_str().expect("input is a string");
            let output = case["output"].as_str().expect("output is a string");
            assert_eq!(b64_encode(input.as_bytes()), output);
            assert_eq!(b64_decode(output).as_deref(), Some(input.as_bytes()));
        }
    }

    #[test]
    fn decode_accepts_padding_and_url_safe_alphabet() {
        assert_eq!(b64_decode("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(b64_decode("Zg==").as_deref(), Some(&b"f"[..]));
        let bytes = [0xfb, 0xff, 0xbf];
        assert_eq!(b64_encode(&bytes), "+/+/");
        assert_eq!(b64url_encode(&bytes), "-_-_");
        assert_eq!(b64_decode("+/+/").as_deref(), Some(&bytes[..]));
        assert_eq!(b64_decode("-_-_").as_deref(), Some(&bytes[..]));
    }

    #[test]
    fn decode_refuses_garbage() {
        assert_eq!(b64_decode("Zm9v YmFy"), None);
        assert_eq!(b64_decode("Z"), None);
        assert_eq!(b64_decode("+_"), None);
        assert_eq!(b64_decode("Zm9v!"), None);
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(b64_encode(&sha256(b"")), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
    }
}
