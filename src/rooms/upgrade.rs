//! Room upgrades (the Client-Server API, "Room Upgrades"): a new room of
//! the requested version replaces an old one, all in one transaction.
//!
//! In order: the new room is created with the old create event's content
//! (less `creator` and, unless both are v12 rooms, `additional_creators`)
//! and `predecessor` naming the old room and its latest event; the
//! upgrader joins, holding at least the power the copying needs; the
//! state clients rely on is copied (server ACLs, encryption, name, topic,
//! avatar, join rules, history visibility, guest access, space parents and
//! children); the old power levels follow, normalised to the new version
//! (integers only from v10; v12's creators never listed), the upgrader's
//! own level kept; local aliases and the directory entry move, the
//! canonical alias with them; the old room gets `m.room.tombstone`
//! (refused, with nothing done, when the upgrader may not send one), and
//! its `events_default` and `invite` are raised so that ordinary members
//! can no longer talk there (skipped when the upgrader may not change the
//! power levels, as Synapse does).

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::core::power_levels::{self, PowerLevels};
use crate::core::room_version::RoomVersion;
use crate::error::{Error, ErrorKind, Result};
use crate::rooms::create::{create_room, CreateRoom, Preset};
use crate::rooms::{append, read, room_and_version, NewEvent};
use crate::storage::{events, rooms, state, Tx};

/// State copied into the new room with every state key it has.
const COPIED_TYPES: &[&str] = &[
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.space.parent",
    "m.space.child",
];
/// The level the upgrader holds in the new room while state is copied.
const COPYING_LEVEL: i64 = 100;

/// Upgrades `old_room` to `version` for `user`; the new room's ID.
pub fn upgrade(
    app: &App,
    tx: &Tx,
    user: &str,
    old_room: &str,
    version: &'static RoomVersion,
) -> Result<String> {
    let (_, old_version) = room_and_version(tx, old_room)?;
    if state::membership(tx, user, old_room)?.as_deref() != Some("join") {
        return Err(Error::forbidden("You must be joined to the room to upgrade it"));
    }
    let (levels, creators) = read::current_power(tx, old_room, old_version)?;
    let tombstone_level = levels.event_level("m.room.tombstone", true);
    if !levels.user_level(user, &creators).at_least(tombstone_level) {
        return Err(Error::forbidden(
            "You may not send m.room.tombstone in this room, so you may not upgrade it",
        ));
    }
    let old_create = read::current_state_event(tx, old_room, "m.room.create", "")?
        .ok_or_else(|| Error::internal(format!("room {old_room} has no create event")))?;
    let last_event = events::extremities(tx, old_room)?.into_iter().next();

    // The new room's create event.
    let mut creation: Map<String, Value> =
        old_create.get("content").and_then(Value::as_object).cloned().unwrap_or_default();
    for key in ["creator", "room_version", "predecessor"] {
        creation.remove(key);
    }
    if !(version.privileged_creators && old_version.privileged_creators) {
        creation.remove("additional_creators");
    }
    let mut predecessor = json!({ "room_id": old_room });
    if let Some(id) = &last_event {
        predecessor["event_id"] = json!(id);
    }
    creation.insert("predecessor".to_owned(), predecessor);
    let additional: Vec<String> = creation
        .get("additional_creators")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();

    // The old levels in the new room: the upgrader able to copy state.
    let mut final_levels = carried_levels(version, &levels, user, &additional)?;
    if !version.privileged_creators && old_version.privileged_creators {
        // The old room's creators had unlimited power; here they are
        // listed with the highest level there is.
        let top = levels.users().values().copied().max().unwrap_or(0).max(COPYING_LEVEL);
        if let Some(users) = final_levels["users"].as_object_mut() {
            for creator in creators.ids() {
                users.insert(creator.clone(), json!(top));
            }
        }
    }
    let mut copying = final_levels.clone();
    if !version.privileged_creators {
        let users =
            copying["users"].as_object_mut().ok_or_else(|| Error::internal("levels without users"))?;
        let own = users.get(user).and_then(Value::as_i64).unwrap_or(0);
        users.insert(user.to_owned(), json!(own.max(COPYING_LEVEL)));
    }
    let Value::Object(copying) = copying else { return Err(Error::internal("levels are not an object")) };
    let current = state::current_state(tx, old_room)?;
    let mut initial_state = Vec::new();
    let mut copied: Vec<(&(String, String), &String)> =
        current.iter().filter(|((kind, _), _)| COPIED_TYPES.contains(&kind.as_str())).collect();
    copied.sort();
    for ((kind, key), event_id) in copied {
        let Some(pdu) = read::load_readable_pdu(tx, event_id)? else { continue };
        let content = pdu.get("content").cloned().unwrap_or_else(|| json!({}));
        // A redacted or emptied event has nothing to carry over.
        if content.as_object().is_some_and(|c| !c.is_empty()) {
            initial_state.push((kind.clone(), key.clone(), content));
        }
    }
    let new_room = create_room(
        app,
        tx,
        user,
        CreateRoom {
            version,
            preset: Preset::PrivateChat,
            name: None,
            topic: None,
            invite: Vec::new(),
            is_direct: false,
            initial_state,
            power_level_content_override: Some(copying),
            creation_content: creation,
            alias: None,
            publish: false,
        },
    )?;
    let send = |room: &str, kind: &str, key: Option<&str>, content: Value| {
        append(app, tx, room, user, NewEvent { kind, state_key: key, content, redacts: None, txn: None })
    };
    // The upgrader's own level, as it was.
    if !version.privileged_creators {
        send(&new_room, "m.room.power_levels", Some(""), final_levels)?;
    }

    // Aliases and the directory entry move.
    let aliases = rooms::aliases_of(tx, old_room)?;
    let now = crate::storage::now_ms();
    for alias in &aliases {
        rooms::delete_alias(tx, alias)?;
        rooms::put_alias(tx, alias, &new_room, user, now)?;
    }
    if let Some(canonical) = read::current_readable_state_event(tx, old_room, "m.room.canonical_alias", "")? {
        let content = canonical.get("content").cloned().unwrap_or_else(|| json!({}));
        if content.as_object().is_some_and(|c| !c.is_empty()) {
            send(&new_room, "m.room.canonical_alias", Some(""), content)?;
            let _ = without_forbidden(send(old_room, "m.room.canonical_alias", Some(""), json!({})))?;
        }
    }
    if rooms::get(tx, old_room)?.is_some_and(|r| r.published) {
        rooms::set_published(tx, old_room, false)?;
        rooms::set_published(tx, &new_room, true)?;
    }

    // The tombstone, then the old room closed to ordinary members.
    send(
        old_room,
        "m.room.tombstone",
        Some(""),
        json!({ "body": "This room has been replaced", "replacement_room": new_room }),
    )?;
    let restricted = restricted_levels(old_version, &levels)?;
    let _ = without_forbidden(send(old_room, "m.room.power_levels", Some(""), restricted))?;
    Ok(new_room)
}

/// A refusal by the auth rules is not a failure of the upgrade.
fn without_forbidden<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == ErrorKind::Forbidden => Ok(None),
        Err(e) => Err(e),
    }
}

/// The old room's levels as the new room's `m.room.power_levels` content:
/// integers only, and in a v12 room without the creators (who may not be
/// listed: they have unlimited power).
fn carried_levels(
    version: &RoomVersion,
    levels: &PowerLevels,
    user: &str,
    additional: &[String],
) -> Result<Value> {
    let mut content = levels.to_content();
    if version.privileged_creators {
        if let Some(users) = content["users"].as_object_mut() {
            users.remove(user);
            for c in additional {
                users.remove(c);
            }
        }
        // v12 asks tombstones to need more than the state default.
        let state_default = levels.state_default();
        let tombstone = levels.event_level("m.room.tombstone", true);
        if tombstone <= state_default {
            content["events"]["m.room.tombstone"] = json!(state_default + 1);
        }
    }
    power_levels::parse(version, &content)
        .map_err(|e| Error::invalid_param(format!("The room's power levels: {e}")))?;
    Ok(content)
}

/// The old room's levels with `events_default` and `invite` raised above
/// ordinary members (at least 50, and above `users_default`).
fn restricted_levels(version: &RoomVersion, levels: &PowerLevels) -> Result<Value> {
    let mut content = levels.to_content();
    let floor = 50i64.max(levels.users_default().saturating_add(1));
    content["events_default"] = json!(levels.events_default().max(floor));
    content["invite"] = json!(levels.invite().max(floor));
    power_levels::parse(version, &content).map_err(|e| Error::internal(format!("restricted levels: {e}")))?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::power_levels::{Creators, Level};
    use crate::core::room_version;

    #[test]
    fn levels_carried_into_v12_drop_the_creators_and_raise_tombstones() {
        let v9 = room_version::get("9").unwrap();
        let v12 = room_version::get("12").unwrap();
        let old = power_levels::parse(
            v9,
            &json!({ "users": { "@a:x": "100", "@b:x": 50 }, "state_default": "50", "events": { "m.room.tombstone": 50 } }),
        )
        .unwrap();
        let carried = carried_levels(v12, &old, "@a:x", &[]).unwrap();
        assert_eq!(carried["users"], json!({ "@b:x": 50 }));
        assert_eq!(carried["state_default"], json!(50));
        assert_eq!(carried["events"]["m.room.tombstone"], json!(51));
        let v10 = room_version::get("10").unwrap();
        let carried = carried_levels(v10, &old, "@a:x", &[]).unwrap();
        assert_eq!(carried["users"], json!({ "@a:x": 100, "@b:x": 50 }), "strings become integers");
        let creators =
            Creators::from_create(v10, &json!({ "content": { "creator": "@z:x" }, "sender": "@z:x" }));
        assert_eq!(old.user_level("@b:x", &creators), Level::Finite(50));
    }

    #[test]
    fn the_old_room_is_closed_to_ordinary_members() {
        let v10 = room_version::get("10").unwrap();
        let old = power_levels::parse(v10, &json!({ "users_default": 0, "events_default": 0, "invite": 0 }))
            .unwrap();
        let r = restricted_levels(v10, &old).unwrap();
        assert_eq!((r["events_default"].as_i64(), r["invite"].as_i64()), (Some(50), Some(50)));
        let old = power_levels::parse(v10, &json!({ "users_default": 60, "events_default": 70 })).unwrap();
        let r = restricted_levels(v10, &old).unwrap();
        assert_eq!((r["events_default"].as_i64(), r["invite"].as_i64()), (Some(70), Some(61)));
    }
}
