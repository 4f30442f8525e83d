//! Password hashing with argon2id, stored as PHC strings such as
//! `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
//!
//! This module owns the hashing parameters and the bound on how many hashes
//! run at once, which is what keeps login storms from exhausting a small
//! host's memory. It does not decide password policy beyond a length cap,
//! and never sees storage: callers pass the stored PHC string in.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::util::Semaphore;

/// Memory per hash in KiB (19 MiB).
///
/// This and the two parameters below are the OWASP minimum for argon2id.
/// On a Raspberry Pi one hash then takes on the order of 100 ms, and two
/// concurrent hashes stay under 40 MiB, which a 1 GiB board can spare;
/// stronger settings would make every login a visible stall there.
pub const ARGON2_MEMORY_KIB: u32 = 19_456;

/// Passes over memory per hash.
pub const ARGON2_ITERATIONS: u32 = 2;

/// Parallel lanes per hash. One lane, because concurrency comes from
/// separate logins rather than from splitting one hash across cores.
pub const ARGON2_LANES: u32 = 1;

/// Salt length in bytes.
pub const SALT_BYTES: usize = 16;

/// The longest password accepted, in bytes. Longer input is refused rather
/// than hashed, so a request cannot make the server hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 512;

/// How many hashes or verifications may run at once; the rest wait.
pub const MAX_CONCURRENT_HASHES: usize = 2;

/// The most memory a stored hash may ask for at verification, in KiB.
/// Stored hashes are ours, but a corrupt or planted one must not make the
/// server allocate gigabytes.
pub const MAX_VERIFY_MEMORY_KIB: u32 = 65_536;

/// The most passes a stored hash may ask for at verification.
pub const MAX_VERIFY_ITERATIONS: u32 = 10;

/// The most lanes a stored hash may ask for at verification.
pub const MAX_VERIFY_LANES: u32 = 4;

/// Why a password could not be hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordError {
    /// The password is longer than [`MAX_PASSWORD_BYTES`].
    TooLong,
    /// The OS random source failed to provide a salt.
    RandomSource,
    /// The argon2 implementation reported an error.
    Hashing,
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::TooLong => {
                write!(f, "password is longer than {MAX_PASSWORD_BYTES} bytes")
            }
            PasswordError::RandomSource => f.write_str("the OS random source failed"),
            PasswordError::Hashing => f.write_str("password hashing failed"),
        }
    }
}

impl std::error::Error for PasswordError {}

/// Hashes `password` with argon2id and a fresh random salt, returning the
/// PHC string to store.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let mut salt = [0u8; SALT_BYTES];
    getrandom::getrandom(&mut salt).map_err(|_| PasswordError::RandomSource)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| PasswordError::Hashing)?;
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, None)
        .map_err(|_| PasswordError::Hashing)?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let _permit = HASH_SLOTS.acquire();
    let phc = hasher.hash_password(password.as_bytes(), &salt).map_err(|_| PasswordError::Hashing)?;
    Ok(phc.to_string())
}

/// Checks `password` against a stored PHC string.
///
/// Returns false for a wrong password, a password over the length cap, and
/// any stored hash that is malformed, not argon2id, or asks for more than
/// the `MAX_VERIFY_*` bounds. The comparison of hash outputs is constant
/// time.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm != argon2::ARGON2ID_IDENT || hash.salt.is_none() || hash.hash.is_none() {
        return false;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_VERIFY_MEMORY_KIB
        || params.t_cost() > MAX_VERIFY_ITERATIONS
        || params.p_cost() > MAX_VERIFY_LANES
    {
        return false;
    }
    let _permit = HASH_SLOTS.acquire();
    // The verifier takes algorithm, version and parameters from the stored
    // hash, so the defaults of this instance do not matter.
    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

/// The permits for running hashes, shared by the whole process.
static HASH_SLOTS: Semaphore = Semaphore::new(MAX_CONCURRENT_HASHES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_password_verifies_and_wrong_one_does_not() {
        let phc = hash_password("correct horse").expect("hashing works");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsE", &phc));
        assert!(!verify_password("", &phc));
        // Salts differ, so equal passwords give different hashes.
        assert_ne!(hash_password("correct horse").expect("hashing works"), phc);
    }

    #[test]
    fn malformed_or_costly_stored_hashes_are_refused() {
        for garbage in [
            "",
            "plaintext",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
            "$argon2id$v=19$m=19456,t=2,p=1$!!!$!!!",
            "$2b$12$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
        ] {
            assert!(!verify_password("pw", garbage), "{garbage}");
        }
        let phc = hash_password("pw").expect("hashing works");
        let argon2i = phc.replacen("$argon2id$", "$argon2i$", 1);
        assert!(!verify_password("pw", &argon2i));
        let huge = phc.replacen("m=19456", "m=4000000", 1);
        assert!(!verify_password("pw", &huge));
        let slow = phc.replacen("t=2", "t=1000", 1);
        assert!(!verify_password("pw", &slow));
    }

    #[test]
    fn length_cap() {
        let longest = "x".repeat(MAX_PASSWORD_BYTES);
        let phc = hash_password(&longest).expect("hashing works");
        assert!(verify_password(&longest, &phc));
        let too_long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(hash_password(&too_long), Err(PasswordError::TooLong));
        assert!(!verify_password(&too_long, &phc));
    }
}
