//! A minimal end-to-end encrypting client for the cross-server tests
//! (`federation_e2ee`, `interop_e2ee`), on vodozemac: a device with its
//! own Olm account that uploads its keys, finds and claims another
//! device's keys, shares a Megolm session with it over to-device
//! (`m.room.encrypted` holding an `m.room_key`), sends `m.room.encrypted`
//! room events, and decrypts what it receives in `/sync`. Works against
//! any homeserver through [`Homeserver`].
#![allow(dead_code)]

use std::time::{Duration, Instant};

use hearth::crypto::canonical::to_canonical_excluding;
use serde_json::{json, Value};
use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig as MegolmConfig};
use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig};
use vodozemac::Curve25519PublicKey;

pub const V3: &str = "/_matrix/client/v3";
pub const OLM: &str = "m.olm.v1.curve25519-aes-sha2";
pub const MEGOLM: &str = "m.megolm.v1.aes-sha2";
/// How long a test waits for something to cross servers.
pub const CROSS_WAIT: Duration = Duration::from_secs(60);

/// A client-server API endpoint: (status, JSON body).
pub trait Homeserver {
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value);
}

impl Homeserver for crate::common::Server {
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        crate::common::Server::call(self, method, path, token, body)
    }
}

pub fn enc(s: &str) -> String {
    crate::common::enc(s)
}

/// One logged-in device with its own Olm account.
pub struct Dev {
    pub user_id: String,
    pub device_id: String,
    pub token: String,
    pub account: Account,
    /// The sync token of the last [`Dev::sync`].
    pub since: Option<String>,
}

impl Dev {
    /// The device of an access token.
    pub fn of_token(hs: &dyn Homeserver, token: &str) -> Dev {
        let (status, me) = hs.call("GET", &format!("{V3}/account/whoami"), Some(token), None);
        assert_eq!(status, 200, "{me}");
        Dev {
            user_id: me["user_id"].as_str().unwrap().to_owned(),
            device_id: me["device_id"].as_str().unwrap().to_owned(),
            token: token.to_owned(),
            account: Account::new(),
            since: None,
        }
    }

    pub fn sign(&self, v: &mut Value) {
        let canonical = to_canonical_excluding(v, &["signatures", "unsigned"]).unwrap();
        let sig = self.account.sign(canonical.as_bytes()).to_base64();
        v["signatures"][&self.user_id][format!("ed25519:{}", self.device_id)] = json!(sig);
    }

    pub fn device_keys(&self) -> Value {
        let keys = self.account.identity_keys();
        let mut v = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM, MEGOLM],
            "keys": {
                format!("curve25519:{}", self.device_id): keys.curve25519.to_base64(),
                format!("ed25519:{}", self.device_id): keys.ed25519.to_base64(),
            },
            "signatures": {},
        });
        self.sign(&mut v);
        v
    }

    /// Uploads the device keys and `n` signed one-time keys.
    pub fn upload_keys(&mut self, hs: &dyn Homeserver, n: usize) {
        self.account.generate_one_time_keys(n);
        let mut otks = json!({});
        for (id, key) in self.account.one_time_keys() {
            let mut v = json!({ "key": key.to_base64(), "signatures": {} });
            self.sign(&mut v);
            otks[format!("signed_curve25519:{}", id.to_base64())] = v;
        }
        self.account.mark_keys_as_published();
        let body = json!({ "device_keys": self.device_keys(), "one_time_keys": otks });
        let (status, r) = hs.call("POST", &format!("{V3}/keys/upload"), Some(&self.token), Some(&body));
        assert_eq!(status, 200, "upload: {r}");
    }

    /// `/sync` since the last one (a full one the first time); remembers
    /// the new token.
    pub fn sync(&mut self, hs: &dyn Homeserver, timeout_ms: u64) -> Value {
        let q = match &self.since {
            Some(t) => format!("?since={}&timeout={timeout_ms}", enc(t)),
            None => String::new(),
        };
        let (status, r) = hs.call("GET", &format!("{V3}/sync{q}"), Some(&self.token), None);
        assert_eq!(status, 200, "sync: {r}");
        self.since = r["next_batch"].as_str().map(str::to_owned);
        r
    }

    /// Syncs until `found` picks something out of an answer.
    pub fn sync_until<T>(
        &mut self,
        hs: &dyn Homeserver,
        what: &str,
        mut found: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + CROSS_WAIT;
        loop {
            let r = self.sync(hs, 1000);
            if let Some(t) = found(&r) {
                return t;
            }
            assert!(Instant::now() < deadline, "{what}: not within {CROSS_WAIT:?}");
        }
    }

    /// Another user's device keys, from this device's `/keys/query`.
    pub fn query_device(&self, hs: &dyn Homeserver, user_id: &str, device_id: &str) -> Option<Value> {
        let body = json!({ "device_keys": { user_id: [] } });
        let (status, r) = hs.call("POST", &format!("{V3}/keys/query"), Some(&self.token), Some(&body));
        assert_eq!(status, 200, "{r}");
        r["device_keys"][user_id].get(device_id).cloned()
    }

    /// Claims a one-time key of another device: its public key.
    pub fn claim(&self, hs: &dyn Homeserver, user_id: &str, device_id: &str) -> Curve25519PublicKey {
        let body = json!({ "one_time_keys": { user_id: { device_id: "signed_curve25519" } } });
        let (status, r) = hs.call("POST", &format!("{V3}/keys/claim"), Some(&self.token), Some(&body));
        assert_eq!(status, 200, "{r}");
        let keys =
            r["one_time_keys"][user_id][device_id].as_object().unwrap_or_else(|| panic!("no key: {r}"));
        let (name, key) = keys.iter().next().unwrap();
        assert!(name.starts_with("signed_curve25519:"), "{r}");
        Curve25519PublicKey::from_base64(key["key"].as_str().unwrap()).unwrap()
    }
}

/// What a sender keeps of an encrypted conversation with one device.
pub struct Outbound {
    pub olm: Session,
    pub megolm: GroupSession,
}

/// `from` starts an Olm session with `to_user`'s device `to_device` (its
/// keys found by `/keys/query`, a one-time key claimed) and shares a new
/// Megolm session for `room` with it as an `m.room.encrypted` to-device
/// message holding an `m.room_key`.
pub fn share_room_key(
    hs: &dyn Homeserver,
    from: &Dev,
    to_user: &str,
    to_device: &str,
    room: &str,
    txn: &str,
) -> Outbound {
    let keys = from
        .query_device(hs, to_user, to_device)
        .unwrap_or_else(|| panic!("{to_user}'s {to_device} is not in /keys/query"));
    let curve = keys["keys"][format!("curve25519:{to_device}")].as_str().unwrap().to_owned();
    let ed = keys["keys"][format!("ed25519:{to_device}")].as_str().unwrap().to_owned();
    let one_time = from.claim(hs, to_user, to_device);
    let identity = Curve25519PublicKey::from_base64(&curve).unwrap();
    let mut olm =
        from.account.create_outbound_session(SessionConfig::version_1(), identity, one_time).unwrap();
    let megolm = GroupSession::new(MegolmConfig::version_1());
    let room_key = json!({
        "algorithm": MEGOLM, "room_id": room, "session_id": megolm.session_id(),
        "session_key": megolm.session_key().to_base64(),
    });
    let plaintext = json!({
        "type": "m.room_key", "content": room_key, "sender": from.user_id, "sender_device": from.device_id,
        "recipient": to_user, "recipient_keys": { "ed25519": ed },
        "keys": { "ed25519": from.account.ed25519_key().to_base64() },
    })
    .to_string();
    let (msg_type, ciphertext) = olm.encrypt(plaintext.as_bytes()).unwrap().to_parts();
    let content = json!({
        "algorithm": OLM,
        "sender_key": from.account.curve25519_key().to_base64(),
        "ciphertext": { curve: { "type": msg_type, "body": vodozemac::base64_encode(&ciphertext) } },
    });
    let body = json!({ "messages": { to_user: { to_device: content } } });
    let (status, r) =
        hs.call("PUT", &format!("{V3}/sendToDevice/m.room.encrypted/{txn}"), Some(&from.token), Some(&body));
    assert_eq!(status, 200, "{r}");
    Outbound { olm, megolm }
}

/// Sends `text` to `room` encrypted with the Megolm session.
pub fn send_encrypted(
    hs: &dyn Homeserver,
    from: &Dev,
    out: &mut Outbound,
    room: &str,
    text: &str,
    txn: &str,
) {
    let plaintext = json!({
        "type": "m.room.message", "room_id": room, "content": { "msgtype": "m.text", "body": text },
    })
    .to_string();
    let ciphertext = out.megolm.encrypt(plaintext.as_bytes()).to_base64();
    let content = json!({
        "algorithm": MEGOLM, "sender_key": from.account.curve25519_key().to_base64(),
        "ciphertext": ciphertext, "session_id": out.megolm.session_id(), "device_id": from.device_id,
    });
    let path = format!("{V3}/rooms/{}/send/m.room.encrypted/{txn}", enc(room));
    let (status, r) = hs.call("PUT", &path, Some(&from.token), Some(&content));
    assert_eq!(status, 200, "{r}");
}

/// The to-device events of a sync answer.
pub fn to_device_events(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"].as_array().cloned().unwrap_or_default()
}

/// Receives the room key from `sender` in its to-device messages (Olm,
/// pre-key) and returns the Megolm session it holds for `room`.
pub fn receive_room_key(hs: &dyn Homeserver, to: &mut Dev, sender: &str, room: &str) -> InboundGroupSession {
    let my_curve = to.account.curve25519_key().to_base64();
    let event = to.sync_until(hs, "the room key arrives", |r| {
        to_device_events(r).into_iter().find(|e| e["type"] == "m.room.encrypted" && e["sender"] == sender)
    });
    let body = &event["content"]["ciphertext"][&my_curve];
    let bytes = vodozemac::base64_decode(body["body"].as_str().unwrap()).unwrap();
    let message = OlmMessage::from_parts(body["type"].as_u64().unwrap() as usize, &bytes).unwrap();
    let OlmMessage::PreKey(pre_key) = message else { panic!("the first message is a pre-key message") };
    let sender_key =
        Curve25519PublicKey::from_base64(event["content"]["sender_key"].as_str().unwrap()).unwrap();
    let inbound =
        to.account.create_inbound_session(SessionConfig::version_1(), sender_key, &pre_key).unwrap();
    let plain: Value = serde_json::from_slice(&inbound.plaintext).unwrap();
    assert_eq!(plain["type"], "m.room_key", "{plain}");
    assert_eq!(plain["recipient"], to.user_id.as_str());
    assert_eq!(plain["content"]["room_id"], room);
    let key = vodozemac::megolm::SessionKey::from_base64(plain["content"]["session_key"].as_str().unwrap())
        .unwrap();
    InboundGroupSession::new(&key, MegolmConfig::version_1())
}

/// Syncs until an `m.room.encrypted` event of `sender` in `room` arrives
/// and returns its decrypted text.
pub fn receive_encrypted(
    hs: &dyn Homeserver,
    to: &mut Dev,
    session: &mut InboundGroupSession,
    sender: &str,
    room: &str,
) -> String {
    let event = to.sync_until(hs, "the encrypted message arrives", |r| {
        r["rooms"]["join"][room]["timeline"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["type"] == "m.room.encrypted" && e["sender"] == sender)
            .cloned()
    });
    let message = MegolmMessage::from_base64(event["content"]["ciphertext"].as_str().unwrap()).unwrap();
    let plain = session.decrypt(&message).unwrap();
    let plain: Value = serde_json::from_slice(&plain.plaintext).unwrap();
    assert_eq!(plain["room_id"], room);
    plain["content"]["body"].as_str().unwrap().to_owned()
}

/// A cross-signing key object for `usage`, signed by `signer` if given.
pub fn cross_key(
    user_id: &str,
    usage: &str,
    key: &vodozemac::Ed25519Keypair,
    signer: Option<&vodozemac::Ed25519Keypair>,
) -> Value {
    let public = key.public_key().to_base64();
    let mut v =
        json!({ "user_id": user_id, "usage": [usage], "keys": { format!("ed25519:{public}"): public } });
    if let Some(signer) = signer {
        let canonical =
            hearth::crypto::canonical::to_canonical_excluding(&v, &["signatures", "unsigned"]).unwrap();
        let signer_public = signer.public_key().to_base64();
        v["signatures"] = json!({ user_id: { format!("ed25519:{signer_public}"): signer.sign(canonical.as_bytes()).to_base64() } });
    }
    v
}

/// Uploads a new master and self-signing key for `dev`'s user (the first
/// upload needs no UIA) and returns the master key's public part.
pub fn upload_cross_signing(hs: &dyn Homeserver, dev: &Dev) -> (String, String) {
    let (master, ssk) = (vodozemac::Ed25519Keypair::new(), vodozemac::Ed25519Keypair::new());
    let upload = json!({
        "master_key": cross_key(&dev.user_id, "master", &master, None),
        "self_signing_key": cross_key(&dev.user_id, "self_signing", &ssk, Some(&master)),
    });
    let (status, r) =
        hs.call("POST", &format!("{V3}/keys/device_signing/upload"), Some(&dev.token), Some(&upload));
    assert_eq!(status, 200, "{r}");
    (master.public_key().to_base64(), ssk.public_key().to_base64())
}

/// The master key's public part `who`'s `/keys/query` gives for `user`.
pub fn queried_master(hs: &dyn Homeserver, who: &Dev, user: &str) -> Option<String> {
    let body = json!({ "device_keys": { user: [] } });
    let (status, r) = hs.call("POST", &format!("{V3}/keys/query"), Some(&who.token), Some(&body));
    assert_eq!(status, 200, "{r}");
    r["master_keys"][user]["keys"].as_object()?.values().next()?.as_str().map(str::to_owned)
}
