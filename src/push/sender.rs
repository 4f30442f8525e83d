//! Delivery of queued pushes to push gateways (`POST
//! /_matrix/push/v1/notify`).
//!
//! The outbox (`push_outbox`) is written with the event, in its
//! transaction. `SENDERS` threads drain it: each takes the oldest due push
//! nobody else is sending, builds the payload in a read snapshot, sends it
//! with no transaction open, then records the outcome — success deletes the
//! row; a pushkey the gateway `rejected` deletes its pusher (and that
//! pusher's queue); a failure is retried with exponential backoff up to
//! `ATTEMPTS_MAX` times. A restart resumes whatever is still queued. A
//! crash between a gateway's answer and the row's deletion sends that push
//! again: gateways drop duplicates by `event_id`, as the spec asks them to.
//!
//! The hub wakes the senders after every commit that advanced the stream
//! ([`Queue::poke`]); it never waits for them, and they never hold up a
//! request. Between wake-ups they sleep until the next retry falls due.
//!
//! Gateways are reached only at public addresses: names are resolved here
//! and private, loopback and link-local addresses refused, so a pusher URL
//! cannot be used to probe the server's own network. Setting
//! `HEARTH_PUSH_ALLOW_PRIVATE=1` in the environment lifts that (and allows
//! plain `http://` URLs) for gateways on a LAN or in tests.

use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::error::{Error, Result};
use crate::log;
use crate::storage::{self, events, push, state};

/// Threads sending pushes; a slow gateway holds up at most one of them.
pub const SENDERS: usize = 2;
/// Tries per push before it is dropped.
pub const ATTEMPTS_MAX: i64 = 10;
/// Wait before the first retry; each further retry waits twice as long...
pub const BACKOFF_FIRST_MS: i64 = 1_000;
/// ...up to this.
pub const BACKOFF_MAX_MS: i64 = 15 * 60 * 1000;
/// Due pushes read per look at the outbox.
const BATCH: usize = 16;
/// The senders look at the outbox at least this often even if not woken.
const IDLE_WAIT: Duration = Duration::from_secs(60);
/// How often old notifications are pruned.
const PRUNE_EVERY_MS: i64 = 3600 * 1000;
/// Bound on connecting to a gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole exchange with a gateway.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a gateway's answer read.
const RESPONSE_MAX_BYTES: u64 = 64 * 1024;
/// The one path a gateway URL may have.
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// The environment variable that allows private addresses and plain HTTP.
pub const ALLOW_PRIVATE_ENV: &str = "HEARTH_PUSH_ALLOW_PRIVATE";

/// True if `HEARTH_PUSH_ALLOW_PRIVATE=1`.
pub fn allow_private() -> bool {
    std::env::var(ALLOW_PRIVATE_ENV).is_ok_and(|v| v == "1")
}

/// The wake-up the hub pokes, and the pushes being sent right now.
#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    poked: bool,
    in_flight: HashSet<i64>,
    last_prune_ms: i64,
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Something committed: there may be new pushes. Never blocks for long.
    pub fn poke(&self) {
        storage::lock(&self.state).poked = true;
        self.wake.notify_all();
    }
}

/// Starts the sender threads, woken by the change feed after every commit
/// that advanced the stream. Called once by the server.
pub fn start(app: Arc<App>) {
    let queue = Arc::new(Queue::new());
    let poked = queue.clone();
    app.hub.subscribe(Box::new(move |c| {
        if c.pos > 0 {
            poked.poke();
        }
    }));
    for i in 0..SENDERS {
        let (app, queue) = (app.clone(), queue.clone());
        std::thread::Builder::new()
            .name(format!("push-sender-{i}"))
            .spawn(move || run(&app, &queue))
            .expect("spawning a push sender thread");
    }
}

fn run(app: &App, queue: &Queue) {
    loop {
        storage::lock(&queue.state).poked = false;
        match next_job(app, queue) {
            Ok(Some(p)) => {
                let id = p.id;
                if let Err(e) = deliver(app, p) {
                    log::warn(format_args!("push {id}: {}", e.message));
                }
                storage::lock(&queue.state).in_flight.remove(&id);
                continue;
            }
            Ok(None) => {}
            Err(e) => log::warn(format_args!("reading the push outbox: {}", e.message)),
        }
        prune(app, queue);
        let now = storage::now_ms();
        let wait = match app.db.read(|c| push::next_due(c)) {
            Ok(Some(due)) => {
                Duration::from_millis(due.saturating_sub(now).clamp(0, IDLE_WAIT.as_millis() as i64) as u64)
            }
            _ => IDLE_WAIT,
        };
        let q = queue;
        let st = storage::lock(&q.state);
        if !st.poked && !wait.is_zero() {
            let _ = q.wake.wait_timeout(st, wait);
        } else if wait.is_zero() {
            // Due pushes all in flight elsewhere: do not spin.
            drop(st);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Claims the oldest due push no other sender has.
fn next_job(app: &App, queue: &Queue) -> Result<Option<push::Push>> {
    let due = app.db.read(|c| push::due(c, storage::now_ms(), BATCH))?;
    let mut st = storage::lock(&queue.state);
    for p in due {
        if st.in_flight.insert(p.id) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Forgets notifications past their retention, once an hour.
fn prune(app: &App, queue: &Queue) {
    let now = storage::now_ms();
    {
        let mut st = storage::lock(&queue.state);
        if now - st.last_prune_ms < PRUNE_EVERY_MS {
            return;
        }
        st.last_prune_ms = now;
    }
    if let Err(e) = app.db.write(|c| push::prune_notifications(c, now - super::NOTIFICATION_RETENTION_MS)) {
        log::warn(format_args!("pruning old notifications: {}", e.message));
    }
}

/// The wait before retry number `attempts` (1 for the first retry).
pub fn backoff_ms(attempts: i64) -> i64 {
    let shift = (attempts - 1).clamp(0, 30) as u32;
    BACKOFF_FIRST_MS.saturating_mul(1 << shift).min(BACKOFF_MAX_MS)
}

/// What a gateway said.
enum Outcome {
    Delivered { rejected: bool },
    Failed(String),
}

fn deliver(app: &App, p: push::Push) -> Result<()> {
    let prepared = app.db.read(|c| {
        let Some(pusher) = push::pusher(c, &p.user_id, &p.app_id, &p.pushkey)? else { return Ok(None) };
        Ok(payload(c, &p, &pusher)?.map(|body| (pusher, body)))
    })?;
    let Some((pusher, body)) = prepared else {
        // The pusher or the event is gone: nothing to send.
        return app.db.write(|c| push::delete_push(c, p.id));
    };
    let url = serde_json::from_str::<Value>(&pusher.data)
        .ok()
        .and_then(|d| d.get("url").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let outcome = match check_url(&url, allow_private()) {
        Ok(()) => send(&url, &body, &p.pushkey),
        Err(e) => Outcome::Failed(e),
    };
    match outcome {
        Outcome::Delivered { rejected: true } => {
            log::info(format_args!("push gateway rejected a pushkey of {}: pusher removed", p.user_id));
            app.db.write(|c| push::delete_pusher(c, &p.user_id, &p.app_id, &p.pushkey).map(|_| ()))
        }
        Outcome::Delivered { rejected: false } => app.db.write(|c| push::delete_push(c, p.id)),
        Outcome::Failed(why) => {
            let attempts = p.attempts + 1;
            if attempts >= ATTEMPTS_MAX {
                log::warn(format_args!("push to {url} failed {attempts} times, dropped: {why}"));
                app.db.write(|c| push::delete_push(c, p.id))
            } else {
                let next = storage::now_ms() + backoff_ms(attempts);
                app.db.write(|c| push::retry_push(c, p.id, attempts, next))
            }
        }
    }
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

/// True for addresses on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

/// Checks a gateway URL: `https://` (or `http://` when private addresses
/// are allowed), a host, and the path `/_matrix/push/v1/notify`. A host
/// given as an IP address must be public unless allowed.
pub fn check_url(url: &str, allow_private: bool) -> std::result::Result<(), String> {
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://").filter(|_| allow_private) {
        r
    } else {
        return Err("The push gateway URL must be an https:// URL".into());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if path != NOTIFY_PATH {
        return Err(format!("The push gateway URL's path must be {NOTIFY_PATH}"));
    }
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err("The push gateway URL has no valid host".into());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !allow_private && !is_public(ip) {
            return Err("The push gateway must be at a public address".into());
        }
    }
    Ok(())
}

/// POSTs the payload; `rejected` is true if the gateway rejected `pushkey`.
fn send(url: &str, body: &Value, pushkey: &str) -> Outcome {
    let allow = allow_private();
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirects(0)
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .resolver(move |netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
            let addrs: Vec<SocketAddr> =
                netloc.to_socket_addrs()?.filter(|a| allow || is_public(a.ip())).collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the gateway has no public address",
                ));
            }
            Ok(addrs)
        })
        .build();
    let result = agent.post(url).set("Content-Type", "application/json").send_string(&body.to_string());
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(code, _)) => return Outcome::Failed(format!("HTTP {code}")),
        Err(ureq::Error::Transport(t)) => return Outcome::Failed(t.to_string()),
    };
    let mut text = String::new();
    if let Err(e) = response.into_reader().take(RESPONSE_MAX_BYTES).read_to_string(&mut text) {
        return Outcome::Failed(format!("reading the answer: {e}"));
    }
    let answer: Value = serde_json::from_str(&text).unwrap_or_default();
    let rejected = answer
        .get("rejected")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|k| k.as_str() == Some(pushkey)));
    Outcome::Delivered { rejected }
}

/// For handlers: a gateway URL check as a Matrix error.
pub fn check_pusher_url(url: &str) -> Result<()> {
    check_url(url, allow_private()).map_err(Error::invalid_param)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_addresses() {
        assert!(check_url("https://push.example.org/_matrix/push/v1/notify", false).is_ok());
        assert!(check_url("https://push.example.org:8443/_matrix/push/v1/notify", false).is_ok());
        assert!(check_url("http://push.example.org/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("http://127.0.0.1:9/_matrix/push/v1/notify", true).is_ok());
        assert!(check_url("https://127.0.0.1/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("https://[::1]:80/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("https://10.1.2.3/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("https://push.example.org/notify", false).is_err());
        assert!(check_url("https://user@host/_matrix/push/v1/notify", false).is_err());
        assert!(check_url("ftp://x/_matrix/push/v1/notify", true).is_err());
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(is_public("2a00:1450::1".parse().unwrap()));
        for ip in [
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff_ms(1), BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(2), 2 * BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(40), BACKOFF_MAX_MS);
    }
}
