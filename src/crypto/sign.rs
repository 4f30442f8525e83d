//! Server signing keys and signed JSON, per the spec appendix "Signing JSON",
//! and the event content hash from the server-server API.
//!
//! This module owns the ed25519 key type and the rules for which keys are
//! left out before signing or hashing. It never stores keys or fetches
//! remote ones: callers pass seeds and public keys in as bytes.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::{Map, Value};

use super::canonical::{to_canonical_excluding, CanonicalError};
use super::token::{try_random_string, ALNUM};
use super::{b64_decode, b64_encode, sha256};

/// Top-level keys that a JSON signature does not cover.
const UNSIGNED_KEYS: [&str; 2] = ["signatures", "unsigned"];

/// Top-level keys that an event's content hash does not cover.
const UNHASHED_KEYS: [&str; 3] = ["signatures", "unsigned", "hashes"];

/// How many random characters follow `ed25519:a_` in a generated key id.
const KEY_ID_RANDOM_CHARS: usize = 4;

/// A server's ed25519 signing key together with its key id, such as
/// `ed25519:a_Xy12`.
#[derive(Clone)]
pub struct ServerKey {
    key_id: String,
    signing: SigningKey,
}

impl fmt::Debug for ServerKey {
    // The seed is secret, so only the id and the public half are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key_b64())
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// Creates a fresh key from 32 random seed bytes, with a key id of
    /// `ed25519:a_` followed by four random letters or digits.
    pub fn generate() -> Result<ServerKey, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)?;
        let key_id = format!("ed25519:a_{}", try_random_string(KEY_ID_RANDOM_CHARS, ALNUM)?);
        Ok(ServerKey::from_seed(&key_id, &seed))
    }

    /// Rebuilds a key from its id and 32-byte seed.
    pub fn from_seed(key_id: &str, seed: &[u8; 32]) -> ServerKey {
        ServerKey { key_id: key_id.to_owned(), signing: SigningKey::from_bytes(seed) }
    }

    /// Returns the secret seed, for storing the key.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// Returns the key id, such as `ed25519:a_Xy12`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Returns the raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Returns the public key in unpadded base64, as published in
    /// `/_matrix/key/v2/server`.
    pub fn public_key_b64(&self) -> String {
        b64_encode(self.signing.verifying_key().as_bytes())
    }

    /// Signs `v` in place for `server_name`.
    ///
    /// The signature covers the canonical JSON of `v` without `signatures`
    /// and `unsigned`. Afterwards `signatures[server_name][key_id]` holds the
    /// signature; signatures already present, including other servers', are
    /// kept, and `unsigned` is left as it was. A `signatures` member that is
    /// not an object of objects is replaced.
    pub fn sign_json(&self, server_name: &str, v: &mut Value) -> Result<(), CanonicalError> {
        let signature = self.sign_detached(v)?;
        let obj = v.as_object_mut().ok_or(CanonicalError::NotAnObject)?;
        let ours = object_at(object_at(obj, "signatures"), server_name);
        ours.insert(self.key_id.clone(), Value::String(signature));
        Ok(())
    }

    /// Returns the unpadded base64 signature that [`ServerKey::sign_json`]
    /// would add to `v`, without changing `v`.
    ///
    /// This suits signatures carried outside the object, such as the
    /// `X-Matrix` authorization header of federation requests.
    pub fn sign_detached(&self, v: &Value) -> Result<String, CanonicalError> {
        if !v.is_object() {
            return Err(CanonicalError::NotAnObject);
        }
        let canonical = to_canonical_excluding(v, &UNSIGNED_KEYS)?;
        let signature = self.signing.sign(canonical.as_bytes());
        Ok(b64_encode(&signature.to_bytes()))
    }
}

/// Returns the object under `key` in `map`, creating it if absent and
/// replacing it if it is not an object.
pub(crate) fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("the slot was just made an object"),
    }
}

/// Checks the signature `v.signatures[server_name][key_id]` against
/// `public_key`.
///
/// Returns false if the signature is missing or malformed, the key is
/// invalid, `v` has no canonical form, or the signature does not match.
/// Verification is strict: weak keys and malleable signatures are refused.
pub fn verify_json(v: &Value, server_name: &str, key_id: &str, public_key: &[u8; 32]) -> bool {
    let Ok(canonical) = to_canonical_excluding(v, &UNSIGNED_KEYS) else {
        return false;
    };
    verify_signed_bytes(v, canonical.as_bytes(), server_name, key_id, public_key)
}

/// [`verify_json`] with the signed bytes already made (the canonical JSON
/// of `v` without `signatures` and `unsigned`, or of what `v` stands for:
/// an event's redacted form).
pub fn verify_signed_bytes(
    v: &Value,
    signed: &[u8],
    server_name: &str,
    key_id: &str,
    public_key: &[u8; 32],
) -> bool {
    let Some(sig_b64) = v
        .get("signatures")
        .and_then(|s| s.get(server_name))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
    else {
        return false;
    };
    let Some(sig_bytes) = b64_decode(sig_b64) else {
        return false;
    };
    let Ok(sig_bytes) = <[u8; 64]>::try_from(sig_bytes.as_slice()) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let signature = Signature::from_bytes(&sig_bytes);
    key.verify_strict(signed, &signature).is_ok()
}

/// Returns the content hash of an event in unpadded base64: the SHA-256 of
/// its canonical JSON without `unsigned`, `signatures` and `hashes`. This is
/// the value of `hashes.sha256`.
pub fn content_hash(event: &Value) -> Result<String, CanonicalError> {
    if !event.is_object() {
        return Err(CanonicalError::NotAnObject);
    }
    let canonical = to_canonical_excluding(event, &UNHASHED_KEYS)?;
    Ok(b64_encode(&sha256(canonical.as_bytes())))
}

/// Reads a 32-byte signing seed from base64, as stored in a signing key
/// file. Surrounding whitespace, such as a final newline, is ignored.
/// Returns `None` unless the text decodes to exactly 32 bytes.
pub fn parse_seed(s: &str) -> Option<[u8; 32]> {
    let bytes = b64_decode(s.trim())?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VECTORS: &str = include_str!("../../tests/data/spec-vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("the spec vectors file is valid JSON")
    }

    /// The spec's example key, with its server name and key id.
    fn spec_key(v: &Value) -> (ServerKey, String) {
        let sk = &v["signing_key"];
        let seed = parse_seed(sk["seed_unpadded_base64"].as_str().expect("seed is a string"))
            .expect("the spec seed parses");
        let key_id = sk["key_id"].as_str().expect("key_id is a string");
        assert_eq!(key_id, "ed25519:1");
        let server = sk["server_name"].as_str().expect("server_name is a string");
        assert_eq!(server, "domain");
        (ServerKey::from_seed(key_id, &seed), server.to_owned())
    }

    #[test]
    fn spec_json_signing_vectors() {
        let v = vectors();
        let (key, server) = spec_key(&v);
        let cases = v["json_signing"].as_array().expect("a list of cases");
        assert!(!cases.is_empty());
        for case in cases {
            let mut signed = case["input"].clone();
            key.sign_json(&server, &mut signed).expect("the input is signable");
            assert_eq!(signed, case["signed"]);
            assert!(verify_json(&case["signed"], &server, key.key_id(), &key.public_key()));

            let mut tampered = case["signed"].clone();
            tampered["extra"] = json!(1);
            assert!(!verify_json(&tampered, &server, key.key_id(), &key.public_key()));
            // Unsigned data may change without breaking the signature.
            let mut with_unsigned = case["signed"].clone();
            with_unsigned["unsigned"] = json!({"age": 5});
            assert!(verify_json(&with_unsigned, &server, key.key_id(), &key.public_key()));
        }
    }

    #[test]
    fn spec_event_signing_vectors() {
        let v = vectors();
        let (key, server) = spec_key(&v);
        let cases = v["event_signing"].as_array().expect("a list of cases");
        assert!(!cases.is_empty());
        for case in cases {
            let expected = case["signed"]["hashes"]["sha256"].as_str().expect("a hash");
            assert_eq!(content_hash(&case["input"]).as_deref(), Ok(expected));
            // The hash ignores the keys it must leave out.
            assert_eq!(content_hash(&case["signed"]).as_deref(), Ok(expected));
        }

        // The first event has nothing that redaction would strip, so its
        // signature is a plain JSON signature over the hashed event.
        let mut event = cases[0]["input"].clone();
        event["hashes"] = json!({"sha256": content_hash(&event).expect("hashable")});
        key.sign_json(&server, &mut event).expect("signable");
        assert_eq!(event, cases[0]["signed"]);
        assert!(verify_json(&event, &server, "ed25519:1", &key.public_key()));

        // The second is a message: its signature covers the redacted form,
        // which for this event only empties `content`.
        let mut redacted = cases[1]["signed"].clone();
        assert!(!verify_json(&redacted, &server, "ed25519:1", &key.public_key()));
        redacted["content"] = json!({});
        assert!(verify_json(&redacted, &server, "ed25519:1", &key.public_key()));
    }

    #[test]
    fn signing_keeps_other_signatures_and_unsigned() {
        let key = ServerKey::from_seed("ed25519:k", &[7u8; 32]);
        let mut v = json!({
            "a": 1,
            "unsigned": {"age": 3},
            "signatures": {"other": {"ed25519:x": "abc"}, "me": {"ed25519:old": "def"}}
        });
        key.sign_json("me", &mut v).expect("signable");
        assert_eq!(v["unsigned"], json!({"age": 3}));
        assert_eq!(v["signatures"]["other"], json!({"ed25519:x": "abc"}));
        assert_eq!(v["signatures"]["me"]["ed25519:old"], json!("def"));
        let sig = v["signatures"]["me"]["ed25519:k"].as_str().expect("signed");
        assert_eq!(key.sign_detached(&v).as_deref(), Ok(sig));
        assert!(verify_json(&v, "me", "ed25519:k", &key.public_key()));
        assert!(!verify_json(&v, "me", "ed25519:old", &key.public_key()));
        assert!(!verify_json(&v, "other", "ed25519:k", &key.public_key()));
        let wrong = ServerKey::from_seed("ed25519:k", &[8u8; 32]);
        assert!(!verify_json(&v, "me", "ed25519:k", &wrong.public_key()));
    }

    #[test]
    fn signing_refuses_what_has_no_canonical_form() {
        let key = ServerKey::from_seed("ed25519:k", &[1u8; 32]);
        let mut not_object = json!([1, 2]);
        assert_eq!(key.sign_json("s", &mut not_object), Err(CanonicalError::NotAnObject));
        let mut float = json!({"a": 1.5});
        assert_eq!(key.sign_json("s", &mut float), Err(CanonicalError::NonIntegralNumber));
        assert_eq!(float, json!({"a": 1.5}));
        assert_eq!(content_hash(&json!("x")), Err(CanonicalError::NotAnObject));
        assert!(!verify_json(&json!("x"), "s", "ed25519:k", &key.public_key()));
        let mut garbled = json!({"signatures": {"s": {"ed25519:k": "not base64!"}}});
        assert!(!verify_json(&garbled, "s", "ed25519:k", &key.public_key()));
        garbled["signatures"]["s"]["ed25519:k"] = json!("AAAA");
        assert!(!verify_json(&garbled, "s", "ed25519:k", &key.public_key()));
    }

    #[test]
    fn generated_keys_round_trip_through_their_seed() {
        let key = ServerKey::generate().expect("the OS random source works");
        let id = key.key_id();
        let suffix = id.strip_prefix("ed25519:a_").expect("key id prefix");
        assert_eq!(suffix.len(), KEY_ID_RANDOM_CHARS);
        assert!(suffix.bytes().all(|c| c.is_ascii_alphanumeric()));
        let again = ServerKey::from_seed(id, &key.seed());
        assert_eq!(again.public_key_b64(), key.public_key_b64());
        assert_eq!(parse_seed(&b64_encode(&key.seed())), Some(key.seed()));
        assert_eq!(b64_decode(&key.public_key_b64()).map(|b| b.len()), Some(32));
        assert!(!format!("{key:?}").contains(&b64_encode(&key.seed())));
    }

    #[test]
    fn parse_seed_wants_32_bytes() {
        assert_eq!(parse_seed(""), None);
        assert_eq!(parse_seed("AAAA"), None);
        assert_eq!(parse_seed("not base64"), None);
        assert_eq!(parse_seed(&b64_encode(&[9u8; 32])), Some([9u8; 32]));
        assert_eq!(parse_seed(&b64_encode(&[9u8; 33])), None);
    }
}
