//! Send-to-device messaging: `PUT /sendToDevice/{eventType}/{txnId}`.
//!
//! A message is stored once per recipient device under the stream position
//! of the send, delivered in that device's `/sync` `to_device` and deleted
//! when a later sync acknowledges it (see `sync::e2ee`). The send wakes the
//! recipients' parked syncs. Bounded: recipients per request, content size,
//! and messages waiting per device (past it, new messages for that device
//! are dropped rather than refusing the whole send).
//!
//! Messages for users of other servers go through their server: one
//! `m.direct_to_device` EDU per server (split past
//! [`EDU_MESSAGES_MAX_BYTES`]) with a random `message_id`, queued in the
//! send's write (`federation_outbox`), so a retried send (the same
//! transaction ID) queues nothing again.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::crypto::token::{random_string, ALNUM};
use crate::e2ee::to_device::{deliver_local, Message};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::{self, e2ee, federation};

pub use crate::e2ee::to_device::{TO_DEVICE_MESSAGES_PER_REQUEST_MAX, TO_DEVICE_PENDING_PER_DEVICE_MAX};
/// Largest content of one message, as JSON text.
pub const TO_DEVICE_CONTENT_MAX_BYTES: usize = 65536;
/// Longest event type and transaction ID.
const NAME_MAX_BYTES: usize = 255;
/// How long a transaction ID is remembered for idempotence.
const TXN_KEEP_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The most JSON bytes of messages one `m.direct_to_device` EDU carries
/// (a message is never split: an EDU holds at least one).
pub const EDU_MESSAGES_MAX_BYTES: usize = 48 * 1024;

#[derive(Deserialize)]
struct SendBody {
    messages: BTreeMap<String, BTreeMap<String, Value>>,
}

/// PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}
pub fn send(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let (kind, txn_id) = (req.param("eventType"), req.param("txnId"));
    if kind.len() > NAME_MAX_BYTES || txn_id.len() > NAME_MAX_BYTES {
        return Err(Error::invalid_param("The event type or transaction ID is too long"));
    }
    let body: SendBody = req.json()?;
    let mut named = 0;
    let mut messages = Vec::new();
    // Server → (user, device, content) for users of other servers.
    let mut remote: BTreeMap<&str, Vec<(&str, &str, &Value)>> = BTreeMap::new();
    for (user_id, devices) in &body.messages {
        let Some((_, server)) = ids::parse_user_id(user_id) else {
            return Err(Error::invalid_param(format!("{user_id} is not a user ID")));
        };
        named += devices.len();
        if named > TO_DEVICE_MESSAGES_PER_REQUEST_MAX {
            return Err(Error::invalid_param(format!(
                "At most {TO_DEVICE_MESSAGES_PER_REQUEST_MAX} recipient devices per request"
            )));
        }
        for (device_id, content) in devices {
            if !content.is_object() {
                return Err(Error::bad_json("Each message's content must be an object"));
            }
            let text = content.to_string();
            if text.len() > TO_DEVICE_CONTENT_MAX_BYTES {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("A message's content may be at most {TO_DEVICE_CONTENT_MAX_BYTES} bytes"),
                ));
            }
            if server == app.config.server_name {
                messages.push(Message { user_id, device_id, content: text });
            } else {
                remote.entry(server).or_default().push((user_id, device_id, content));
            }
        }
    }
    // Servers we may not talk to get nothing (the sender would drop it).
    let edus: Vec<(&str, String)> = remote
        .into_iter()
        .filter(|(server, _)| app.federation.allowed(server))
        .flat_map(|(server, list)| {
            direct_to_device_edus(&who.user_id, kind, list).into_iter().map(move |e| (server, e))
        })
        .collect();
    let now = storage::now_ms();
    app.db.write(|tx| {
        if e2ee::to_device_txn_seen(tx, &who.user_id, &who.device_id, txn_id)? {
            return Ok(());
        }
        deliver_local(tx, &who.user_id, kind, &messages)?;
        for (server, edu) in &edus {
            federation::queue(tx, server, federation::Unit::Edu, edu, now)?;
        }
        e2ee::add_to_device_txn(tx, &who.user_id, &who.device_id, txn_id, now, now - TXN_KEEP_MS)?;
        Ok(())
    })?;
    Response::ok(json!({}))
}

/// The `m.direct_to_device` EDUs (as JSON text) carrying `list` to one
/// server: split so that each holds at most [`EDU_MESSAGES_MAX_BYTES`] of
/// messages, each with its own `message_id`.
fn direct_to_device_edus(sender: &str, kind: &str, list: Vec<(&str, &str, &Value)>) -> Vec<String> {
    let mut out = Vec::new();
    let mut messages: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut size = 0;
    let flush = |messages: &mut BTreeMap<&str, serde_json::Map<String, Value>>, out: &mut Vec<String>| {
        if messages.is_empty() {
            return;
        }
        let message_id = random_string(24, ALNUM);
        let content = json!({
            "sender": sender, "type": kind, "message_id": message_id, "messages": std::mem::take(messages),
        });
        out.push(json!({ "edu_type": "m.direct_to_device", "content": content }).to_string());
    };
    for (user_id, device_id, content) in list {
        let len = content.to_string().len() + device_id.len() + user_id.len();
        if size > 0 && size + len > EDU_MESSAGES_MAX_BYTES {
            flush(&mut messages, &mut out);
            size = 0;
        }
        size += len;
        messages.entry(user_id).or_default().insert(device_id.to_owned(), content.clone());
    }
    flush(&mut messages, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_for_a_server_are_split_into_bounded_edus_with_their_own_ids() {
        let big = json!({ "x": "y".repeat(20 * 1024) });
        let list =
            vec![("@a:s", "D1", &big), ("@a:s", "D2", &big), ("@b:s", "*", &big), ("@b:s", "D3", &big)];
        let edus: Vec<Value> = direct_to_device_edus("@me:h", "m.test", list)
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(edus.len(), 2);
        let mut ids = Vec::new();
        let mut devices = 0;
        for e in &edus {
            assert!(e.to_string().len() <= EDU_MESSAGES_MAX_BYTES + 1024);
            assert_eq!(e["edu_type"], "m.direct_to_device");
            assert_eq!(e["content"]["sender"], "@me:h");
            assert_eq!(e["content"]["type"], "m.test");
            ids.push(e["content"]["message_id"].as_str().unwrap().to_owned());
            devices += e["content"]["messages"]
                .as_object()
                .unwrap()
                .values()
                .map(|d| d.as_object().unwrap().len())
                .sum::<usize>();
        }
        assert_eq!(devices, 4);
        assert_ne!(ids[0], ids[1]);
        // One message larger than the bound still goes, alone.
        let huge = json!({ "x": "y".repeat(EDU_MESSAGES_MAX_BYTES + 10) });
        assert_eq!(direct_to_device_edus("@me:h", "m.test", vec![("@a:s", "D1", &huge)]).len(), 1);
    }
}
