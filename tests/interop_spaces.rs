//! Spaces across Hearth and the reference server (a real Synapse,
//! tests/common/synapse.rs): each server's space walk reaches a child
//! room only the other holds, through the other's
//! `/_matrix/federation/v1/hierarchy`.

mod common;

use common::ca::TestCa;
use common::fed::Peer;
use common::synapse::Synapse;
use common::{create_room, enc, set_state, TempDir, User, V3};
use serde_json::{json, Value};

const PW: &str = "interop-spaces-password";

fn ids_of(page: &Value) -> Vec<String> {
    let rooms = page["rooms"].as_array().map(Vec::as_slice).unwrap_or_default();
    rooms.iter().filter_map(|r| r["room_id"].as_str().map(str::to_owned)).collect()
}

fn synapse_room(s: &Synapse, token: &str, body: Value) -> String {
    let (status, r) = s.post(&format!("{V3}/createRoom"), Some(token), body);
    assert_eq!(status, 200, "{r}\n{}", s.log_tail(40));
    r["room_id"].as_str().expect("room_id").to_owned()
}

fn synapse_child(s: &Synapse, token: &str, parent: &str, child: &str, via: &str) {
    let path = format!("{V3}/rooms/{}/state/m.space.child/{}", enc(parent), enc(child));
    let (status, r) = s.put(&path, Some(token), json!({ "via": [via] }));
    assert_eq!(status, 200, "{r}");
}

/// A Hearth with its user `hal` and a Synapse with its user `sam` (the
/// access token), on one test bed.
struct Bed {
    _dir: TempDir,
    hearth: Peer,
    synapse: Synapse,
    hal: User,
    sam: String,
}

fn bed() -> Bed {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let hal = hearth.server.user("hal", PW);
    let (_, sam) = synapse.register("sam", PW);
    Bed { _dir: dir, hearth, synapse, hal, sam }
}

fn space_body(name: &str) -> Value {
    json!({ "preset": "public_chat", "name": name, "creation_content": { "type": "m.space" } })
}

#[test]
fn hearth_walks_into_a_space_on_synapse() {
    let Bed { _dir, hearth, synapse, hal, sam } = bed();
    let s_space = synapse_room(&synapse, &sam, space_body("Synapse space"));
    let s_room = synapse_room(&synapse, &sam, json!({ "preset": "public_chat", "name": "Synapse room" }));
    let s_private =
        synapse_room(&synapse, &sam, json!({ "preset": "private_chat", "name": "Synapse private" }));
    synapse_child(&synapse, &sam, &s_space, &s_room, synapse.server_name());
    synapse_child(&synapse, &sam, &s_space, &s_private, synapse.server_name());
    let h_space = create_room(&hearth.server, &hal.token, space_body("Hearth space"));
    set_state(
        &hearth.server,
        &hal.token,
        &h_space,
        "m.space.child",
        &s_space,
        json!({ "via": [synapse.server_name()] }),
    );

    let path = format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&h_space));
    let (status, page) = hearth.server.get(&path, Some(&hal.token));
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        ids_of(&page),
        [h_space.clone(), s_space.clone(), s_room.clone()],
        "{page}\n{}",
        hearth.server.log_text()
    );
    assert_eq!(page["rooms"][1]["name"], "Synapse space");
    assert_eq!(page["rooms"][1]["room_type"], "m.space");
    assert_eq!(page["rooms"][2]["name"], "Synapse room");
}

#[test]
fn synapse_walks_into_a_space_on_hearth() {
    let Bed { _dir, hearth, synapse, hal, sam } = bed();
    let h_space = create_room(&hearth.server, &hal.token, space_body("Hearth space"));
    let h_room =
        create_room(&hearth.server, &hal.token, json!({ "preset": "public_chat", "name": "Hearth room" }));
    let h_private = create_room(
        &hearth.server,
        &hal.token,
        json!({ "preset": "private_chat", "name": "Hearth private" }),
    );
    for child in [&h_room, &h_private] {
        set_state(
            &hearth.server,
            &hal.token,
            &h_space,
            "m.space.child",
            child,
            json!({ "via": [hearth.name] }),
        );
    }
    let s_space = synapse_room(&synapse, &sam, space_body("Synapse space"));
    synapse_child(&synapse, &sam, &s_space, &h_space, &hearth.name);

    let path = format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&s_space));
    let (status, page) = synapse.get(&path, Some(&sam));
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        ids_of(&page),
        [s_space.clone(), h_space.clone(), h_room.clone()],
        "{page}\n{}\n{}",
        synapse.log_tail(60),
        hearth.server.log_text()
    );
    let h = page["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == h_space.as_str()).unwrap();
    assert_eq!(h["name"], "Hearth space");
    assert_eq!(h["children_state"].as_array().map(Vec::len), Some(2), "{h}");
}
