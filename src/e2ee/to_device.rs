//! Delivery of to-device messages to local devices, the same for a
//! `/sendToDevice` of a local user and an `m.direct_to_device` EDU from
//! another server: each message is stored once per recipient device under
//! one stream position and wakes the recipients' syncs. Bounded: devices
//! reached per send ([`TO_DEVICE_MESSAGES_PER_REQUEST_MAX`]) and messages
//! waiting per device (past it, new ones for that device are dropped).

use crate::error::{Error, Result};
use crate::log;
use crate::storage::{e2ee, events, Tx};

/// Recipient devices one send may reach (after `*` is expanded).
pub const TO_DEVICE_MESSAGES_PER_REQUEST_MAX: usize = 1000;
/// Messages that may wait for one device; more are dropped.
pub const TO_DEVICE_PENDING_PER_DEVICE_MAX: i64 = 1000;

/// One message for a local user's device (`*`: all their devices), its
/// content as JSON text.
pub struct Message<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub content: String,
}

/// Stores `messages` of type `kind` from `sender` for their devices
/// (unknown devices are skipped) and wakes the recipients' syncs.
pub fn deliver_local(tx: &Tx, sender: &str, kind: &str, messages: &[Message]) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let pos = events::next_pos(tx)?;
    let mut delivered = 0;
    let mut recipients: Vec<&str> = Vec::new();
    for m in messages {
        let targets = if m.device_id == "*" {
            e2ee::device_ids(tx, m.user_id)?
        } else if e2ee::device_exists(tx, m.user_id, m.device_id)? {
            vec![m.device_id.to_owned()]
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
            if e2ee::to_device_pending(tx, m.user_id, &target)? >= TO_DEVICE_PENDING_PER_DEVICE_MAX {
                log::warn(format_args!("to-device queue of {} {target} is full; message dropped", m.user_id));
                continue;
            }
            let stored = e2ee::ToDevice {
                sender: sender.to_owned(),
                kind: kind.to_owned(),
                content: m.content.clone(),
            };
            e2ee::add_to_device(tx, m.user_id, &target, pos, &stored)?;
            if !recipients.contains(&m.user_id) {
                recipients.push(m.user_id);
            }
        }
    }
    tx.changed(pos, &[], &recipients);
    Ok(())
}
