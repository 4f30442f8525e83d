//! Send-to-device messaging: `PUT /sendToDevice/{eventType}/{txnId}`.
//!
//! A message is stored once per recipient device under the stream position
//! of the send, delivered in that device's `/sync` `to_device` and deleted
//! when a later sync acknowledges it (see `sync::e2ee`). The send wakes the
//! recipients' parked syncs. Bounded: recipients per request, content size,
//! and messages waiting per device (past it, new messages for that device
//! are dropped rather than refusing the whole send).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, ErrorKind, Result};
use crate::log;
use crate::storage::{self, e2ee, events};

/// Recipient devices one request may reach (after `*` is expanded).
pub const TO_DEVICE_MESSAGES_PER_REQUEST_MAX: usize = 1000;
/// Messages that may wait for one device; more are dropped.
pub const TO_DEVICE_PENDING_PER_DEVICE_MAX: i64 = 1000;
/// Largest content of one message, as JSON text.
pub const TO_DEVICE_CONTENT_MAX_BYTES: usize = 65536;
/// Longest event type and transaction ID.
const NAME_MAX_BYTES: usize = 255;
/// How long a transaction ID is remembered for idempotence.
const TXN_KEEP_MS: i64 = 7 * 24 * 60 * 60 * 1000;

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
        if server != app.config.server_name {
            // Federation is not built yet: remote recipients are skipped.
            continue;
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
            messages.push((user_id.as_str(), device_id.as_str(), text));
        }
    }
    let now = storage::now_ms();
    app.db.write(|tx| {
        if e2ee::to_device_txn_seen(tx, &who.user_id, &who.device_id, txn_id)? {
            return Ok(());
        }
        let pos = events::next_pos(tx)?;
        let mut delivered = 0;
        let mut recipients: Vec<&str> = Vec::new();
        for (user_id, device_id, content) in &messages {
            let targets = if *device_id == "*" {
                e2ee::device_ids(tx, user_id)?
            } else if e2ee::device_exists(tx, user_id, device_id)? {
                vec![(*device_id).to_owned()]
            } else {
                Vec::new()
            };
            for target in targets {
                delivered += 1;
                if delivered > TO_DEVICE_MESSAGES_PER_REQUEST_MAX {
                    return Err(Error::invalid_param(format!(
                        "At most {TO_DEVICE_MESSAGES_PER_REQUEST_MAX} recipient devices per request"
                    )));
                }
                if e2ee::to_device_pending(tx, user_id, &target)? >= TO_DEVICE_PENDING_PER_DEVICE_MAX {
                    log::warn(format_args!("to-device queue of {user_id} {target} is full; message dropped"));
                    continue;
                }
                let m = e2ee::ToDevice {
                    sender: who.user_id.clone(),
                    kind: kind.to_owned(),
                    content: content.clone(),
                };
                e2ee::add_to_device(tx, user_id, &target, pos, &m)?;
                if !recipients.contains(user_id) {
                    recipients.push(user_id);
                }
            }
        }
        e2ee::add_to_device_txn(tx, &who.user_id, &who.device_id, txn_id, now, now - TXN_KEEP_MS)?;
        tx.changed(pos, &[], &recipients);
        Ok(())
    })?;
    Response::ok(json!({}))
}
