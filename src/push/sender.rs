//! Delivery of queued pushes to push gateways (`POST
//! /_matrix/push/v1/notify`): the push kind of the shared outbound
//! machinery (`outbound::queue`, `outbound::client`).
//!
//! The outbox (`push_outbox`) is written with the event, in its
//! transaction. A push's destination is its gateway (the pusher's URL):
//! `SENDERS` threads take turns at gateways with due pushes, one push in
//! flight per gateway, over the shared client's kept connections. For each
//! push the payload is built in a read snapshot and sent with no
//! transaction open; the outcomes of a batch (up to `queue::BATCH` pushes
//! to one gateway) are recorded in one write — success deletes the row; a pushkey the
//! gateway `rejected` deletes its pusher (and that pusher's queue); a
//! failure is retried with the queue's exponential backoff
//! (`queue::backoff_ms`) up to `ATTEMPTS_MAX` times, and holds back that
//! gateway's other pushes for as long. A restart resumes whatever is still
//! queued. A crash between a gateway's answer and that write sends the
//! batch's pushes again: gateways drop duplicates by `event_id`, as the
//! spec asks them to.
//!
//! The change feed wakes the senders after every commit that advanced the
//! stream (a hub subscription that calls [`Queue::poke`]); nothing waits
//! for them, and they never hold up a request.
//!
//! Gateways are reached only at public addresses (`outbound::policy`),
//! checked on the addresses connected to; `outbound_allow_private = true`
//! lifts that (and allows plain `http://` URLs) for gateways on a LAN or
//! in tests.

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::error::{Error, Result};
use crate::log;
use crate::outbound::client::Client;
use crate::outbound::queue::{self, Delivery, Kind};
use crate::storage::{self, events, push, state};

pub use crate::outbound::queue::Queue;

/// Threads sending pushes; a slow gateway holds up at most one of them.
pub const SENDERS: usize = 2;
/// Tries per push before it is dropped.
pub const ATTEMPTS_MAX: i64 = 10;
/// How often old notifications are pruned.
const PRUNE_EVERY_MS: i64 = 3600 * 1000;
/// Most bytes of a gateway's answer read.
const RESPONSE_MAX_BYTES: u64 = 64 * 1024;
/// The one path a gateway URL may have.
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// Starts the sender threads, woken through the change feed after every
/// commit that advanced the stream. Called once by the server.
pub fn start(app: Arc<App>) {
    let queue = Queue::new();
    let poked = queue.clone();
    app.hub.subscribe(Box::new(move |c| {
        if c.pos > 0 {
            poked.poke();
        }
    }));
    let client = app.outbound.clone();
    let kind = Arc::new(Pushes { app, last_prune_ms: Mutex::new(0) });
    queue::spawn(kind, client, queue, SENDERS);
}

/// The push kind: its rows are `push_outbox`, its destinations gateway URLs.
struct Pushes {
    app: Arc<App>,
    last_prune_ms: Mutex<i64>,
}

impl Kind for Pushes {
    type Item = push::Push;
    /// Whether the gateway rejected the pushkey.
    type Answer = bool;
    const NAME: &'static str = "push";

    fn due_destinations(&self, now_ms: i64, limit: usize) -> Result<Vec<String>> {
        self.app.db.read(|c| push::due_gateways(c, now_ms, limit))
    }

    fn next_due_after(&self, now_ms: i64) -> Result<Option<i64>> {
        self.app.db.read(|c| push::next_due_after(c, now_ms))
    }

    fn load(&self, destination: &str, now_ms: i64, limit: usize) -> Result<Vec<push::Push>> {
        self.app.db.read(|c| push::due_at_gateway(c, destination, now_ms, limit))
    }

    fn send(&self, client: &Client, p: &push::Push) -> Delivery<bool> {
        let prepared = self.app.db.read(|c| {
            let Some(pusher) = push::pusher(c, &p.user_id, &p.app_id, &p.pushkey)? else { return Ok(None) };
            Ok(payload(c, p, &pusher)?.map(|body| (pusher, body)))
        });
        let (pusher, body) = match prepared {
            Ok(Some(found)) => found,
            // The pusher or the event is gone: nothing to send.
            Ok(None) => return Delivery::Nothing,
            Err(e) => return Delivery::Failed(e),
        };
        let url = gateway_url(&pusher.data);
        if let Err(why) = check_url(&url, client.allow_private()) {
            return Delivery::Failed(Error::invalid_param(why));
        }
        let answer = match client.post_json(&url, &body.to_string(), RESPONSE_MAX_BYTES) {
            Ok(a) => a,
            Err(e) => return Delivery::Failed(e),
        };
        if !answer.is_success() {
            return Delivery::Failed(Error::new(
                crate::error::ErrorKind::Unknown,
                format!("{url}: HTTP {}", answer.status),
            ));
        }
        // An answer that is not the expected JSON still means delivered.
        let answer: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let rejected = answer
            .get("rejected")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|k| k.as_str() == Some(p.pushkey.as_str())));
        Delivery::Answered(rejected)
    }

    fn record(&self, outcomes: Vec<(push::Push, Delivery<bool>)>) -> Result<()> {
        self.app.db.write(|c| {
            for (p, delivery) in outcomes {
                record_one(c, p, delivery)?;
            }
            Ok(())
        })
    }

    /// Forgets notifications past their retention, once an hour.
    fn tick(&self, now_ms: i64) {
        {
            let mut last = storage::lock(&self.last_prune_ms);
            if now_ms - *last < PRUNE_EVERY_MS {
                return;
            }
            *last = now_ms;
        }
        let before = now_ms - super::NOTIFICATION_RETENTION_MS;
        if let Err(e) = self.app.db.write(|c| push::prune_notifications(c, before)) {
            log::warn(format_args!("pruning old notifications: {}", e.message));
        }
    }
}

/// Records one push's outcome: gone when delivered (its pusher too if the
/// gateway rejected the pushkey), else retried later or given up.
fn record_one(c: &rusqlite::Connection, p: push::Push, delivery: Delivery<bool>) -> Result<()> {
    match delivery {
        Delivery::Answered(true) => {
            log::info(format_args!("push gateway rejected a pushkey of {}: pusher removed", p.user_id));
            push::delete_pusher(c, &p.user_id, &p.app_id, &p.pushkey).map(|_| ())
        }
        Delivery::Answered(false) | Delivery::Nothing => push::delete_push(c, p.id),
        Delivery::Failed(why) => {
            let attempts = p.attempts + 1;
            if attempts >= ATTEMPTS_MAX {
                log::warn(format_args!(
                    "push {} for {} failed {attempts} times, dropped: {}",
                    p.id, p.user_id, why.message
                ));
                return push::delete_push(c, p.id);
            }
            // One line per attempt: the gateway's backoff bounds them.
            let wait = backoff_ms(attempts);
            log::info(format_args!(
                "push {} for {}: attempt {attempts} failed, retried in {wait} ms: {}",
                p.id, p.user_id, why.message
            ));
            push::retry_push(c, p.id, attempts, storage::now_ms() + wait)
        }
    }
}

/// The wait before retry number `attempts` of a push (1 for the first).
pub fn backoff_ms(attempts: i64) -> i64 {
    queue::backoff_ms(u32::try_from(attempts.max(0)).unwrap_or(u32::MAX))
}

/// The `url` of a pusher's `data`, `""` if it has none.
fn gateway_url(data: &str) -> String {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|d| d.get("url").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// The `/notify` body for a queued push; `None` if its event is gone (or
/// cannot be read, which is logged).
fn payload(conn: &rusqlite::Connection, p: &push::Push, pusher: &push::Pusher) -> Result<Option<Value>> {
    let Some(event) = events::get(conn, &p.event_id)? else { return Ok(None) };
    let Some(pdu) = crate::rooms::read::readable_pdu(&event) else { return Ok(None) };
    let mut data: Map<String, Value> = serde_json::from_str(&pusher.data).unwrap_or_default();
    data.remove("url");
    let id_only = data.get("format").and_then(Value::as_str) == Some("event_id_only");
    let tweaks: Value = serde_json::from_str(&p.tweaks).unwrap_or_else(|_| json!({}));
    let unread = push::unread_total(conn, &p.user_id)?;
    let counts = if unread > 0 { json!({ "unread": unread }) } else { json!({}) };
    let loud = tweaks.get("sound").is_some() || tweaks.get("highlight") == Some(&Value::Bool(true));
    let mut n = json!({
        "event_id": event.event_id,
        "room_id": event.room_id,
        "prio": if loud { "high" } else { "low" },
        "counts": counts,
        "devices": [{
            "app_id": pusher.app_id,
            "pushkey": pusher.pushkey,
            "pushkey_ts": pusher.pushkey_ts / 1000,
            "data": data,
            "tweaks": tweaks,
        }],
    });
    if !id_only {
        n["type"] = json!(event.kind);
        n["sender"] = json!(event.sender);
        if let Some(content) = pdu.get("content") {
            n["content"] = content.clone();
        }
        let state_content =
            |kind: &str, key: &str| -> Result<Option<Value>> {
                match state::current_entry(conn, &event.room_id, kind, key)? {
                    Some(id) => Ok(crate::rooms::read::load_readable_pdu(conn, &id)?
                        .and_then(|e| e.get("content").cloned())),
                    None => Ok(None),
                }
            };
        let field = |v: Option<Value>, name: &str| {
            v.and_then(|c| c.get(name).and_then(Value::as_str).map(str::to_owned))
        };
        if let Some(name) = field(state_content("m.room.member", &event.sender)?, "displayname") {
            n["sender_display_name"] = json!(name);
        }
        if let Some(name) = field(state_content("m.room.name", "")?, "name").filter(|s| !s.is_empty()) {
            n["room_name"] = json!(name);
        }
        if let Some(alias) = field(state_content("m.room.canonical_alias", "")?, "alias") {
            n["room_alias"] = json!(alias);
        }
        if event.kind == "m.room.member" {
            n["user_is_target"] = json!(event.state_key.as_deref() == Some(p.user_id.as_str()));
        }
    }
    Ok(Some(json!({ "notification": n })))
}

/// Checks a gateway URL: `https://` (or `http://` when private addresses
/// are allowed), a host, and the path `/_matrix/push/v1/notify`. A host
/// given as an IP address must be public unless allowed; a name is checked
/// on every address it resolves to when the push is sent.
pub fn check_url(url: &str, allow_private: bool) -> std::result::Result<(), String> {
    let target = crate::outbound::policy::check_url(url, allow_private)
        .map_err(|r| format!("The push gateway URL {}", r.message()))?;
    if target.path != NOTIFY_PATH {
        return Err(format!("The push gateway URL's path must be {NOTIFY_PATH}"));
    }
    Ok(())
}

/// For handlers: a gateway URL check as a Matrix error.
pub fn check_pusher_url(url: &str, allow_private: bool) -> Result<()> {
    check_url(url, allow_private).map_err(Error::invalid_param)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls() {
        assert!(check_url("https://push.example.org/_matrix/push/v1/notify", false).is_ok());
        assert!(check_url("https://push.example.org:8443/_matrix/push/v1/notify", false).is_ok());
        assert!(check_url("http://push.example.org/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("http://127.0.0.1:9/_matrix/push/v1/notify", true).is_ok());
        assert!(check_url("https://127.0.0.1/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("https://[::1]:80/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("https://10.1.2.3/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("https://push.example.org/notify", false).is_err());
        assert!(check_url("https://push.example.org/_matrix/push/v1/notify?x", false).is_err());
        assert!(check_url("https://user@host/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("ftp://x/_matrix/push/v1/notify", true).is_err());
    }

    #[test]
    fn push_retries_follow_the_queue_schedule() {
        assert_eq!(backoff_ms(1), queue::BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(2), 2 * queue::BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(40), queue::BACKOFF_MAX_MS);
        assert!(backoff_ms(ATTEMPTS_MAX) <= queue::BACKOFF_MAX_MS);
    }

    #[test]
    fn gateway_url_of_data() {
        assert_eq!(gateway_url("{\"url\":\"https://g/x\"}"), "https://g/x");
        assert_eq!(gateway_url("{\"url\":5}"), "");
        assert_eq!(gateway_url("not json"), "");
    }
}
