//! Typing notices and presence: the state that lives in memory only, and
//! is lost (harmlessly) on restart.
//!
//! Every change takes a new ephemeral serial from the hub (the second part
//! of a sync token) *while holding the lock of the table it changes*, so a
//! sync that read the hub's serial and then reads a table sees every
//! change up to that serial.
//!
//! Time makes changes too: typing notices run out, idle users turn
//! unavailable and then offline. Nothing runs on a timer; [`refresh`]
//! applies what is due (taking a serial) and wakes the long-polls
//! concerned. `/sync` calls it before it reads the hub's serial, and the
//! handlers here call it as well, so a parked sync hears of an expiry when
//! any request touches this module, or at its own deadline at the latest.
//! A periodic tick could call [`Ephemeral::expire`] for promptness.
//!
//! Who may see whose presence: the user themself, users sharing a joined
//! room with them, and users who have them on their presence list with
//! their agreement (the original specification's rule).
//!
//! With presence turned off in the configuration, presence changes are
//! accepted and ignored, and everyone appears `offline`.
//!
//! Users of other servers are here too, as their servers tell
//! (`federation::edu_ephemeral`): their typing runs out on its own
//! timeout, their presence shows what their server said.
//!
//! This module owns no SQL (the presence list lives in
//! `storage::presence_list`) and knows no HTTP.

pub mod presence;
pub mod tables;
pub mod typing;

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::app::App;
use crate::error::Result;
use crate::hub::Changes;
use crate::storage::{self, presence_list, state};

pub use presence::{State as PresenceState, View as PresenceView};
pub use tables::{Ephemeral, Expired};

/// Applies what time changed (see [`Ephemeral::expire`]) and wakes the
/// long-polls concerned: syncs in the rooms whose typers ran out, and the
/// users who may see a decayed presence. `/sync` calls this before reading
/// the hub's serial.
pub fn refresh(app: &App, conn: &Connection) -> Result<()> {
    let expired = app.ephemeral.expire(&app.hub, storage::now_ms());
    if expired.serial == 0 {
        return Ok(());
    }
    let mut n = Changes { pos: 0, ephemeral: expired.serial, rooms: expired.rooms, ..Changes::default() };
    for user in &expired.users {
        let (rooms, users) = presence_audience(conn, user)?;
        n.rooms.extend(rooms);
        n.users.extend(users);
    }
    n.rooms.sort();
    n.rooms.dedup();
    n.users.sort();
    n.users.dedup();
    app.hub.notify(n);
    Ok(())
}

/// How often expired typing and decayed presence are looked for.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the tick thread: typing runs out and presence decays with the
/// clock, not with a request, so once a second the changes that brings
/// are announced to parked syncs. Called once by the server.
pub fn start(app: std::sync::Arc<App>) {
    std::thread::Builder::new()
        .name("ephemeral-tick".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            if let Err(e) = app.db.read(|c| refresh(&app, c)) {
                crate::log::warn(format_args!("expiring typing and presence failed: {}", e.message));
            }
        })
        .expect("spawning the ephemeral tick thread");
}

/// A sync of `user_id` asked for `set_presence` (`online` when the query
/// leaves it out): marks them active, connected-but-idle, or changes
/// nothing (`offline`), waking those who may see a change. Parse the query
/// with [`PresenceState::parse`] (anything else is a 400).
pub fn mark_sync(app: &App, conn: &Connection, user_id: &str, set_presence: PresenceState) -> Result<()> {
    let Some(serial) = app.ephemeral.synced(&app.hub, user_id, set_presence, storage::now_ms()) else {
        return Ok(());
    };
    let (rooms, users) = presence_audience(conn, user_id)?;
    app.hub.notify(Changes { pos: 0, ephemeral: serial, rooms, users, ..Changes::default() });
    Ok(())
}

/// Where a change of `user_id`'s presence must wake long-polls: the rooms
/// they are joined to (their members may see it), and the user plus those
/// who follow them on a presence list.
pub fn presence_audience(conn: &Connection, user_id: &str) -> Result<(Vec<String>, Vec<String>)> {
    let rooms = state::rooms_of_user(conn, user_id, "join")?;
    let mut users = presence_list::watchers(conn, user_id)?;
    users.push(user_id.to_owned());
    Ok((rooms, users))
}

/// May `viewer` see `target`'s presence? Themself, a shared joined room, or
/// `target` accepted on `viewer`'s presence list.
pub fn may_see_presence(conn: &Connection, viewer: &str, target: &str) -> Result<bool> {
    Ok(viewer == target
        || presence_list::share_a_room(conn, viewer, target)?
        || presence_list::accepted(conn, viewer, target)?)
}

/// An `m.presence` event for `user_id` as seen now.
pub fn presence_event(user_id: &str, view: &PresenceView) -> Value {
    json!({ "type": "m.presence", "sender": user_id, "content": presence_content(view) })
}

/// The content of an `m.presence` event (and the answer of
/// `GET /presence/{userId}/status`).
pub fn presence_content(view: &PresenceView) -> Value {
    let mut c = json!({ "presence": view.state.as_str(), "currently_active": view.currently_active });
    if let Some(ago) = view.last_active_ago {
        c["last_active_ago"] = json!(ago);
    }
    if let Some(msg) = &view.status_msg {
        c["status_msg"] = json!(msg);
    }
    c
}

/// The `m.presence` events a sync of `viewer` from serial `since` (`None`:
/// initial sync) carries: every user whose presence changed after `since`
/// and whom the viewer may see (the viewer included), oldest ID first.
pub fn presence_events_for(
    app: &App,
    conn: &Connection,
    viewer: &str,
    since: Option<u64>,
) -> Result<Vec<Value>> {
    let now = storage::now_ms();
    let mut out = Vec::new();
    for (user_id, view) in app.ephemeral.presence_changed_since(since, now) {
        if may_see_presence(conn, viewer, &user_id)? {
            out.push(presence_event(&user_id, &view));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;

    #[test]
    fn typing_events_follow_the_serial() {
        let hub = Hub::new(1);
        let e = Ephemeral::new(true);
        assert_eq!(e.typing_event("!r", None, 0), None);
        let s = e.set_typing(&hub, "!r", "@a:x", Some(1000), 0).expect("a change");
        assert_eq!(hub.current_ephemeral(), s);
        assert_eq!(
            e.typing_event("!r", None, 10),
            Some(json!({ "type": "m.typing", "content": { "user_ids": ["@a:x"] } }))
        );
        assert_eq!(e.typing_event("!r", Some(s), 10), None);
        assert!(e.typing_event("!r", Some(s - 1), 10).is_some());
        let x = e.expire(&hub, 1000);
        assert_eq!(x.rooms, vec!["!r".to_owned()]);
        assert_eq!(
            e.typing_event("!r", Some(s), 1000),
            Some(json!({ "type": "m.typing", "content": { "user_ids": [] } }))
        );
        assert_eq!(e.expire(&hub, 2000), Expired::default());
    }

    #[test]
    fn presence_off_ignores_changes() {
        let hub = Hub::new(1);
        let e = Ephemeral::new(false);
        assert_eq!(e.set_presence(&hub, "@a:x", PresenceState::Online, None, 0), None);
        assert_eq!(e.synced(&hub, "@a:x", PresenceState::Online, 0), None);
        assert_eq!(e.presence_of("@a:x", 0), PresenceView::unknown());
        assert!(e.presence_changed_since(None, 0).is_empty());
    }

    #[test]
    fn presence_content_shape() {
        let e = Ephemeral::new(true);
        let hub = Hub::new(1);
        e.set_presence(&hub, "@a:x", PresenceState::Online, Some("hi".into()), 100);
        let v = e.presence_of("@a:x", 150);
        assert_eq!(
            presence_event("@a:x", &v),
            json!({
                "type": "m.presence", "sender": "@a:x",
                "content": { "presence": "online", "currently_active": true, "last_active_ago": 50, "status_msg": "hi" },
            })
        );
        assert_eq!(
            presence_content(&PresenceView::unknown()),
            json!({ "presence": "offline", "currently_active": false })
        );
    }
}
