//! Room creation: the spec's sequence of initial events.

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::core::event::{self, PduTemplate};
use crate::core::room_version::RoomVersion;
use crate::crypto::token;
use crate::error::{Error, Result};
use crate::rooms::{append, event_error, new_event_id, persist, NewEvent};
use crate::storage::{self, rooms, state};

/// Length of the random part of a room ID (rooms before v12).
const ROOM_ID_RANDOM_LEN: usize = 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Preset> {
        match s {
            "private_chat" => Some(Preset::PrivateChat),
            "trusted_private_chat" => Some(Preset::TrustedPrivateChat),
            "public_chat" => Some(Preset::PublicChat),
            _ => None,
        }
    }
}

/// A validated createRoom request.
pub struct CreateRoom {
    pub version: &'static RoomVersion,
    pub preset: Preset,
    pub name: Option<String>,
    pub topic: Option<String>,
    /// Full user IDs, already validated.
    pub invite: Vec<String>,
    pub is_direct: bool,
    /// `(type, state_key, content)` in request order.
    pub initial_state: Vec<(String, String, Value)>,
    pub power_level_content_override: Option<Map<String, Value>>,
    pub creation_content: Map<String, Value>,
    /// The full alias (`#local:server`), already validated and free.
    pub alias: Option<String>,
    pub publish: bool,
}

/// Creates the room and returns its ID. All events go into the caller's
/// transaction: either the whole room exists afterwards or none of it.
pub fn create_room(app: &App, conn: &crate::storage::Tx, creator: &str, req: CreateRoom) -> Result<String> {
    let version = req.version;
    let server = app.config.server_name.as_str();
    let now = storage::now_ms();

    // 1. m.room.create
    let mut create_content = req.creation_content.clone();
    create_content.insert("room_version".into(), json!(version.id));
    if version.create_has_creator_field {
        create_content.insert("creator".into(), json!(creator));
    } else {
        create_content.remove("creator");
    }
    if version.privileged_creators && req.preset == Preset::TrustedPrivateChat && !req.invite.is_empty() {
        let mut extra: Vec<Value> =
            create_content.get("additional_creators").and_then(Value::as_array).cloned().unwrap_or_default();
        for user in &req.invite {
            if !extra.iter().any(|v| v.as_str() == Some(user)) {
                extra.push(json!(user));
            }
        }
        create_content.insert("additional_creators".into(), Value::Array(extra));
    }
    let room_id = if version.room_id_from_create {
        None
    } else {
        Some(format!("!{}:{server}", token::random_string(ROOM_ID_RANDOM_LEN, token::ALNUM)))
    };
    let template = PduTemplate {
        room_id: room_id.clone(),
        sender: creator.to_owned(),
        kind: "m.room.create".into(),
        state_key: Some(String::new()),
        content: Value::Object(create_content),
        redacts: None,
        event_id: new_event_id(version, server),
        prev_events: Vec::new(),
        auth_events: Vec::new(),
        reference_hashes: Default::default(),
        depth: 1,
        origin_server_ts: now,
    };
    let (create_id, create_pdu) =
        event::build_pdu(version, &app.server_key, server, template).map_err(event_error)?;
    crate::core::auth::check(
        version,
        &create_pdu,
        &std::collections::HashMap::<(String, String), serde_json::Value>::new(),
    )
    .map_err(|e| Error::bad_json(format!("Invalid creation_content: {}", e.reason)))?;
    let room_id = match room_id {
        Some(id) => id,
        None => event::room_id_from_create(version, &create_pdu).map_err(event_error)?,
    };
    let empty = state::new_snapshot(conn, &room_id, &Default::default())?;
    let room = rooms::Room {
        room_id: room_id.clone(),
        version: version.id.to_owned(),
        creator: creator.to_owned(),
        created_ts: now,
        state_group: empty,
        depth: 0,
        published: req.publish,
    };
    rooms::create(conn, &room)?;
    persist(conn, &room, &create_id, &create_pdu, None)?;

    let send_state = |kind: &str, key: &str, content: Value| -> Result<()> {
        append(
            app,
            conn,
            &room_id,
            creator,
            NewEvent { kind, state_key: Some(key), content, redacts: None, txn: None },
        )
        .map(|_| ())
    };
    // 2. The creator joins.
    send_state("m.room.member", creator, json!({ "membership": "join" }))?;
    // 3. Power levels, with the caller's overrides on top.
    let mut levels = default_power_levels(version, creator, &req);
    if let Some(overrides) = &req.power_level_content_override {
        for (k, v) in overrides {
            levels.insert(k.clone(), v.clone());
        }
    }
    send_state("m.room.power_levels", "", Value::Object(levels))?;
    // 4. The canonical alias.
    if let Some(alias) = &req.alias {
        if !rooms::put_alias(conn, alias, &room_id, creator, now)? {
            return Err(Error::new(crate::error::ErrorKind::RoomInUse, "Room alias already taken"));
        }
        send_state("m.room.canonical_alias", "", json!({ "alias": alias }))?;
    }
    // 5. The preset's rules.
    let (join_rule, guest_access) = match req.preset {
        Preset::PublicChat => ("public", "forbidden"),
        Preset::PrivateChat | Preset::TrustedPrivateChat => ("invite", "can_join"),
    };
    send_state("m.room.join_rules", "", json!({ "join_rule": join_rule }))?;
    send_state("m.room.history_visibility", "", json!({ "history_visibility": "shared" }))?;
    send_state("m.room.guest_access", "", json!({ "guest_access": guest_access }))?;
    // 6. initial_state, in order.
    for (kind, key, content) in &req.initial_state {
        send_state(kind, key, content.clone())?;
    }
    // 7. Name and topic.
    if let Some(name) = &req.name {
        send_state("m.room.name", "", json!({ "name": name }))?;
    }
    if let Some(topic) = &req.topic {
        send_state(
            "m.room.topic",
            "",
            json!({ "topic": topic, "m.topic": { "m.text": [{ "body": topic, "mimetype": "text/plain" }] } }),
        )?;
    }
    // 8. Invites.
    for user in &req.invite {
        let mut content = json!({ "membership": "invite" });
        if req.is_direct {
            content["is_direct"] = json!(true);
        }
        send_state("m.room.member", user, content)?;
    }
    Ok(room_id)
}

/// The power levels a new room starts with. Before v12 the creator (and,
/// for `trusted_private_chat`, the invitees) get 100; from v12 creators
/// have unlimited power and are not listed.
fn default_power_levels(version: &RoomVersion, creator: &str, req: &CreateRoom) -> Map<String, Value> {
    let mut users = Map::new();
    if !version.privileged_creators {
        users.insert(creator.to_owned(), json!(100));
        if req.preset == Preset::TrustedPrivateChat {
            for user in &req.invite {
                users.insert(user.clone(), json!(100));
            }
        }
    }
    // Room v12 requires tombstones to need more than state_default.
    let tombstone = if version.privileged_creators { 150 } else { 100 };
    let levels = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": tombstone,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "notifications": { "room": 50 },
    });
    match levels {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
