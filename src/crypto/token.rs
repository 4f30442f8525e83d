//! Randomness and secret tokens: random bytes and strings, access and
//! refresh token generation, the hash under which tokens are stored, and a
//! constant-time comparison.
//!
//! Tokens are only ever stored as `token_hash`, so a leaked database does
//! not hand out working sessions. Nothing here touches storage or HTTP.

use super::{b64url_encode, sha256};

/// The upper-case ASCII letters, for identifiers people may type.
pub const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// ASCII letters of both cases and digits.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// How many random bytes a secret token carries: 256 bits.
pub const SECRET_TOKEN_BYTES: usize = 32;

/// Returns `N` bytes from the operating system's random source.
///
/// # Panics
///
/// Panics if the OS random source fails. Keys, tokens and salts all depend
/// on it, so no part of the server can work without it, and continuing with
/// weak randomness would be worse than stopping.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).expect("the OS random source failed");
    buf
}

/// Returns a new secret token: `prefix` followed by 32 random bytes in
/// unpadded URL-safe base64. Used for access and refresh tokens.
pub fn new_secret_token(prefix: &str) -> String {
    let mut token = String::from(prefix);
    token.push_str(&b64url_encode(&random_bytes::<SECRET_TOKEN_BYTES>()));
    token
}

/// Returns the hash under which a token is stored and looked up.
///
/// Tokens carry 256 random bits, so a plain SHA-256 suffices; a slow
/// password hash would only cost time on every request.
pub fn token_hash(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

/// Returns `len` characters drawn uniformly from `alphabet`.
///
/// Random bytes that would make some characters likelier than others are
/// rejected and redrawn, so each character is equally probable.
///
/// # Panics
///
/// Panics if `alphabet` is empty, longer than 256 bytes or not ASCII, which
/// is a bug in the caller since alphabets are constants; or if the OS random
/// source fails, as [`random_bytes`] explains.
pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    try_random_string(len, alphabet).expect("the OS random source failed")
}

/// Like [`random_string`], but returns an error when the OS random source
/// fails instead of panicking.
pub(crate) fn try_random_string(len: usize, alphabet: &[u8]) -> Result<String, getrandom::Error> {
    assert!(
        !alphabet.is_empty() && alphabet.len() <= 256 && alphabet.is_ascii(),
        "an alphabet must hold 1 to 256 ASCII characters"
    );
    let n = alphabet.len();
    // The largest multiple of `n` not above 256: bytes at or past it would
    // favour the first characters of the alphabet, so they are redrawn.
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::getrandom(&mut buf)?;
        for &b in &buf {
            if out.len() == len {
                break;
            }
            let b = usize::from(b);
            if b < limit {
                out.push(char::from(alphabet[b % n]));
            }
        }
    }
    Ok(out)
}

/// Compares two byte strings in time that depends only on their lengths,
/// not on where they differ.
///
/// Lengths are not secret here: callers compare hashes or tokens of a fixed
/// shape.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        // `black_box` keeps the optimiser from turning the loop into an
        // early-exit comparison.
        diff = std::hint::black_box(diff | (x ^ y));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{b64_decode, b64_encode};

    #[test]
    fn token_hash_is_stable_sha256() {
        let h = token_hash("syt_abc");
        assert_eq!(h, token_hash("syt_abc"));
        assert_ne!(h, token_hash("syt_abd"));
        assert_eq!(b64_encode(&token_hash("")), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
    }

    #[test]
    fn secret_tokens_have_prefix_and_entropy() {
        let a = new_secret_token("hat_");
        let b = new_secret_token("hat_");
        assert_ne!(a, b);
        let body = a.strip_prefix("hat_").expect("prefix kept");
        assert_eq!(body.len(), 43);
        assert!(body.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(b64_decode(body).map(|v| v.len()), Some(SECRET_TOKEN_BYTES));
    }

    #[test]
    fn random_string_uses_only_the_alphabet() {
        for alphabet in [UPPER, ALNUM, &b"xy"[..], &b"q"[..]] {
            let s = random_string(500, alphabet);
            assert_eq!(s.len(), 500);
            assert!(s.bytes().all(|c| alphabet.contains(&c)), "{s}");
        }
        assert_eq!(random_string(0, ALNUM), "");
        // With 2,000 draws from 26 letters, every letter shows up unless the
        // selection is badly broken; the chance of a miss is about 1e-32.
        let s = random_string(2000, UPPER);
        assert!(UPPER.iter().all(|c| s.as_bytes().contains(c)));
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes::<32>(), random_bytes::<32>());
        assert_eq!(random_bytes::<0>(), [0u8; 0]);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"bbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
