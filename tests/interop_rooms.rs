//! Rooms over federation against the reference server (issue 17): a real
//! Synapse from PyPI (tests/common/synapse.rs) and a Hearth on the same
//! bed. Synapse as the resident server and as the joining server, rooms
//! of the default versions and of older ones, messages both ways in the
//! same order.

mod common;

use common::ca::TestCa;
use common::fed::Peer;
use common::synapse::Synapse;
use common::{create_room, enc, say, wait_until, TempDir, User, V3};
use serde_json::{json, Value};

const PW: &str = "interop-rooms-password";

fn bed() -> (TempDir, TestCa) {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    (dir, ca)
}

/// Message bodies of a room, oldest first, from a `/messages` answer.
fn bodies_of(answer: &Value) -> Vec<String> {
    let mut out: Vec<String> = answer["chunk"]
        .as_array()
        .map(|c| c.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    out.reverse();
    out
}

fn hearth_messages(h: &Peer, who: &User, room: &str) -> Vec<String> {
    let (status, r) =
        h.server.get(&format!("{V3}/rooms/{}/messages?dir=b&limit=100", enc(room)), Some(&who.token));
    if status == 200 {
        bodies_of(&r)
    } else {
        Vec::new()
    }
}

fn synapse_messages(s: &Synapse, token: &str, room: &str) -> Vec<String> {
    let (status, r) = s.get(&format!("{V3}/rooms/{}/messages?dir=b&limit=100", enc(room)), Some(token));
    if status == 200 {
        bodies_of(&r)
    } else {
        Vec::new()
    }
}

fn synapse_say(s: &Synapse, token: &str, room: &str, body: &str, txn: &str) {
    let path = format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room));
    let (status, r) = s.put(&path, Some(token), json!({ "msgtype": "m.text", "body": body }));
    assert_eq!(status, 200, "{r}\n{}", s.log_tail(40));
}

fn synapse_joined(s: &Synapse, token: &str, room: &str) -> Value {
    let (_, r) = s.get(&format!("{V3}/rooms/{}/joined_members", enc(room)), Some(token));
    r["joined"].clone()
}

/// Synapse is the resident server; Hearth's user joins by room ID through
/// it, for a room of `version` (None: Synapse's default).
fn hearth_joins_a_synapse_room(version: Option<&str>) {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let (sam, sam_token) = synapse.register("sam", PW);
    let mut body = json!({ "preset": "public_chat", "name": "On Synapse" });
    if let Some(v) = version {
        body["room_version"] = json!(v);
    }
    let (status, r) = synapse.post(&format!("{V3}/createRoom"), Some(&sam_token), body);
    assert_eq!(status, 200, "{r}");
    let room = r["room_id"].as_str().expect("room_id").to_owned();
    synapse_say(&synapse, &sam_token, &room, "before the join", "t0");

    let hal = hearth.server.user("hal", PW);
    let (status, r) = hearth.server.post(
        &format!("{V3}/join/{}?server_name={}", enc(&room), enc(synapse.server_name())),
        Some(&hal.token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}\n{}\n{}", hearth.server.log_text(), synapse.log_tail(60));
    let (status, name) =
        hearth.server.get(&format!("{V3}/rooms/{}/state/m.room.name", enc(&room)), Some(&hal.token));
    assert_eq!((status, name["name"].as_str()), (200, Some("On Synapse")), "{name}");
    wait_until(&hearth.server, "Synapse sees Hearth's user joined", || {
        synapse_joined(&synapse, &sam_token, &room).get(&hal.id).is_some()
    });
    assert!(sam.starts_with("@sam:"));

    say(&hearth.server, &hal.token, &room, "hello from hearth");
    wait_until(&hearth.server, "Hearth's message reaches Synapse", || {
        synapse_messages(&synapse, &sam_token, &room).contains(&"hello from hearth".into())
    });
    synapse_say(&synapse, &sam_token, &room, "hello from synapse", "t1");
    wait_until(&hearth.server, "Synapse's message reaches Hearth", || {
        hearth_messages(&hearth, &hal, &room).contains(&"hello from synapse".into())
    });
    let since_join = |v: Vec<String>| v.into_iter().filter(|m| m != "before the join").collect::<Vec<_>>();
    let on_hearth = since_join(hearth_messages(&hearth, &hal, &room));
    let on_synapse = since_join(synapse_messages(&synapse, &sam_token, &room));
    assert_eq!(on_hearth, vec!["hello from hearth", "hello from synapse"]);
    assert_eq!(on_synapse, on_hearth);
}

#[test]
fn hearth_joins_a_room_on_synapse_of_its_default_version() {
    hearth_joins_a_synapse_room(None);
}

#[test]
fn hearth_joins_an_older_room_on_synapse() {
    hearth_joins_a_synapse_room(Some("5"));
}

/// Hearth is the resident server of a v12 room; Synapse's user joins
/// through it, then both talk.
#[test]
fn synapse_joins_a_room_on_hearth() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let hal = hearth.server.user("hal", PW);
    let room =
        create_room(&hearth.server, &hal.token, json!({ "preset": "public_chat", "name": "On Hearth" }));
    say(&hearth.server, &hal.token, &room, "before the join");
    let (sam, sam_token) = synapse.register("sam", PW);
    let (status, r) = synapse.post(
        &format!("{V3}/join/{}?server_name={}", enc(&room), enc(&hearth.name)),
        Some(&sam_token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}\n{}\n{}", synapse.log_tail(80), hearth.server.log_text());
    let (status, r) =
        hearth.server.get(&format!("{V3}/rooms/{}/joined_members", enc(&room)), Some(&hal.token));
    assert_eq!(status, 200);
    assert!(r["joined"].get(&sam).is_some(), "{r}");

    synapse_say(&synapse, &sam_token, &room, "hello from synapse", "t1");
    wait_until(&hearth.server, "Synapse's message reaches Hearth", || {
        hearth_messages(&hearth, &hal, &room).contains(&"hello from synapse".into())
    });
    say(&hearth.server, &hal.token, &room, "hello from hearth");
    wait_until(&hearth.server, "Hearth's message reaches Synapse", || {
        synapse_messages(&synapse, &sam_token, &room).contains(&"hello from hearth".into())
    });
    let on_hearth = hearth_messages(&hearth, &hal, &room);
    let on_synapse = synapse_messages(&synapse, &sam_token, &room);
    assert_eq!(&on_hearth[on_hearth.len() - 2..], ["hello from synapse", "hello from hearth"]);
    assert_eq!(on_synapse[on_synapse.len() - 2..], on_hearth[on_hearth.len() - 2..]);
}

/// Hearth invites a Synapse user, who accepts through Hearth.
#[test]
fn a_synapse_user_accepts_an_invite_from_hearth() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let hal = hearth.server.user("hal", PW);
    let room =
        create_room(&hearth.server, &hal.token, json!({ "preset": "private_chat", "name": "Invite only" }));
    let (sam, sam_token) = synapse.register("sam", PW);
    let (status, r) = hearth.server.post(
        &format!("{V3}/rooms/{}/invite", enc(&room)),
        Some(&hal.token),
        json!({ "user_id": sam }),
    );
    assert_eq!(status, 200, "{r}\n{}\n{}", hearth.server.log_text(), synapse.log_tail(60));
    let (status, r) = synapse.post(&format!("{V3}/rooms/{}/join", enc(&room)), Some(&sam_token), json!({}));
    assert_eq!(status, 200, "{r}\n{}", synapse.log_tail(60));
    synapse_say(&synapse, &sam_token, &room, "thanks for the invite", "t1");
    wait_until(&hearth.server, "Synapse's message reaches Hearth", || {
        hearth_messages(&hearth, &hal, &room).contains(&"thanks for the invite".into())
    });
}

/// A Synapse user invites a Hearth user, who accepts through Synapse.
#[test]
fn a_hearth_user_accepts_an_invite_from_synapse() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let hal = hearth.server.user("hal", PW);
    let (_, sam_token) = synapse.register("sam", PW);
    let (status, r) = synapse.post(
        &format!("{V3}/createRoom"),
        Some(&sam_token),
        json!({ "preset": "private_chat", "name": "From Synapse", "invite": [hal.id] }),
    );
    assert_eq!(status, 200, "{r}\n{}\n{}", synapse.log_tail(60), hearth.server.log_text());
    let room = r["room_id"].as_str().expect("room_id").to_owned();
    wait_until(&hearth.server, "the invite shows in Hearth's sync", || {
        common::sync(&hearth.server, &hal.token, "")["rooms"]["invite"].get(&room).is_some()
    });
    let invite = common::sync(&hearth.server, &hal.token, "")["rooms"]["invite"][&room].clone();
    let state = invite["invite_state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "From Synapse"),
        "{invite}"
    );
    let (status, r) =
        hearth.server.post(&format!("{V3}/rooms/{}/join", enc(&room)), Some(&hal.token), json!({}));
    assert_eq!(status, 200, "{r}\n{}\n{}", hearth.server.log_text(), synapse.log_tail(60));
    say(&hearth.server, &hal.token, &room, "joined from hearth");
    wait_until(&hearth.server, "Hearth's message reaches Synapse", || {
        synapse_messages(&synapse, &sam_token, &room).contains(&"joined from hearth".into())
    });
}

/// History from before the join comes by backfill from Synapse when
/// Hearth's user pages back: 50 messages, in order, none twice, and an
/// incremental sync does not show them as new.
#[test]
fn history_before_the_join_is_backfilled_from_synapse() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let (_, sam_token) = synapse.register("sam", PW);
    let (status, r) =
        synapse.post(&format!("{V3}/createRoom"), Some(&sam_token), json!({ "preset": "public_chat" }));
    assert_eq!(status, 200, "{r}");
    let room = r["room_id"].as_str().expect("room_id").to_owned();
    let sent: Vec<String> = (0..50).map(|i| format!("old {i}")).collect();
    for (i, body) in sent.iter().enumerate() {
        synapse_say(&synapse, &sam_token, &room, body, &format!("h{i}"));
    }
    let hal = hearth.server.user("hal", PW);
    let before = common::sync(&hearth.server, &hal.token, "");
    let since = common::next_batch(&before);
    let (status, r) = hearth.server.post(
        &format!("{V3}/join/{}?server_name={}", enc(&room), enc(synapse.server_name())),
        Some(&hal.token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}");
    // Page back to the start, 20 at a time.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..20 {
        let mut path = format!("{V3}/rooms/{}/messages?dir=b&limit=20", enc(&room));
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let (status, page) = hearth.server.get(&path, Some(&hal.token));
        assert_eq!(status, 200, "{page}\n{}", hearth.server.log_text());
        for e in page["chunk"].as_array().unwrap() {
            if let Some(b) = e["content"]["body"].as_str() {
                seen.push(b.to_owned());
            }
        }
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    seen.reverse();
    assert_eq!(seen, sent, "every message before the join, in order, once\n{}", hearth.server.log_text());
    // The backfilled history is not new to an incremental sync.
    let later = common::sync_since(&hearth.server, &hal.token, &since);
    let bodies: Vec<&str> =
        common::timeline(&later, &room).iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert!(bodies.len() <= 20 && bodies.iter().all(|b| b.starts_with("old")), "{bodies:?}");
    let again = common::sync_since(&hearth.server, &hal.token, &common::next_batch(&later));
    assert!(common::timeline(&again, &room).is_empty(), "nothing new after that: {again}");
}
