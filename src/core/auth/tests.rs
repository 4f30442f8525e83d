//! Unit tests of `auth` (beside it, so the module reads without them).

use super::*;
use crate::core::room_version::{SUPPORTED, V1, V10, V11, V12, V2, V7, V8};
use crate::crypto::sign::ServerKey;
use serde_json::json;

const ALICE: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";
const CAROL: &str = "@carol:example.org";
const DAN: &str = "@dan:example.org";
const EVE: &str = "@eve:remote.test";

/// Every version served, oldest first.
const VERSIONS: &[&RoomVersion] = SUPPORTED;

type State = HashMap<(String, String), Value>;

/// A room: alice created it (100, or creator in v12), bob is a
/// moderator at 50, carol an ordinary member; the join rule is given.
struct TestRoom {
    version: &'static RoomVersion,
    room_id: String,
    state: State,
}

impl TestRoom {
    fn new(version: &'static RoomVersion, join_rule: &str) -> TestRoom {
        TestRoom::with_create(version, join_rule, json!({}))
    }

    /// As [`TestRoom::new`], with `extra` added to the create content.
    fn with_create(version: &'static RoomVersion, join_rule: &str, extra: Value) -> TestRoom {
        let mut room = TestRoom { version, room_id: "!room:example.org".to_owned(), state: State::new() };
        let create = room.create_event(extra);
        if version.room_id_from_create {
            room.room_id = event::room_id_from_create(version, &create).expect("the create hashes");
        }
        room.put(create);
        room.put(room.first_join());
        let users = if version.privileged_creators { json!({BOB: 50}) } else { json!({ALICE: 100, BOB: 50}) };
        room.put(room.event(
            POWER_LEVELS,
            Some(""),
            ALICE,
            json!({"users": users, "events": {"m.room.power_levels": 100, "m.room.tombstone": 100}}),
        ));
        room.put(room.event(JOIN_RULES, Some(""), ALICE, json!({ "join_rule": join_rule })));
        room.set_member(BOB, JOIN);
        room.set_member(CAROL, JOIN);
        room
    }

    fn create_event(&self, extra: Value) -> Value {
        let mut content = json!({"room_version": self.version.id});
        if self.version.create_has_creator_field {
            content["creator"] = json!(ALICE);
        }
        for (k, v) in extra.as_object().into_iter().flatten() {
            content[k] = v.clone();
        }
        let mut ev = json!({
            "type": CREATE, "state_key": "", "sender": ALICE, "content": content,
            "prev_events": [], "auth_events": [], "depth": 1, "origin_server_ts": 0,
        });
        if !self.version.room_id_from_create {
            ev["room_id"] = json!(self.room_id);
        }
        if self.version.event_id_in_event() {
            ev["event_id"] = json!("$create:example.org");
        }
        ev
    }

    fn first_join(&self) -> Value {
        let mut ev = self.event(MEMBER, Some(ALICE), ALICE, json!({"membership": JOIN}));
        ev["prev_events"] = self.refs(&[&self.create_id()]);
        ev
    }

    /// `prev_events` or `auth_events` citing `ids` in the version's format:
    /// `[id, {"sha256": …}]` pairs in v1–v2, plain IDs after.
    fn refs(&self, ids: &[&str]) -> Value {
        if self.version.references_carry_hashes() {
            ids.iter().map(|id| json!([id, {"sha256": "aGFzaA"}])).collect()
        } else {
            ids.iter().map(|id| json!(id)).collect()
        }
    }

    fn create_id(&self) -> String {
        let create = &self.state[&(CREATE.to_owned(), String::new())];
        event::event_id(self.version, create).expect("the create hashes")
    }

    fn event(&self, kind: &str, state_key: Option<&str>, sender: &str, content: Value) -> Value {
        let mut ev = json!({
            "type": kind, "sender": sender, "content": content, "room_id": self.room_id,
            "prev_events": self.refs(&["$previous:example.org"]), "auth_events": [], "depth": 10,
            "origin_server_ts": 0,
        });
        if let Some(key) = state_key {
            ev["state_key"] = json!(key);
        }
        if self.version.event_id_in_event() {
            // v1–v2 events carry their IDs, on the sender's server.
            let server = parse_user_id(sender).map_or("example.org", |(_, s)| s);
            ev["event_id"] = json!(format!("$e{}:{server}", self.state.len()));
        }
        ev
    }

    fn put(&mut self, ev: Value) {
        let kind = ev["type"].as_str().expect("test events have a type").to_owned();
        let key = ev["state_key"].as_str().expect("test state has a state key").to_owned();
        self.state.insert((kind, key), ev);
    }

    fn set_member(&mut self, user: &str, membership: &str) {
        self.put(self.event(MEMBER, Some(user), user, json!({ "membership": membership })));
    }

    fn set_pl(&mut self, content: Value) {
        self.put(self.event(POWER_LEVELS, Some(""), ALICE, content));
    }

    fn check(&self, ev: &Value) -> Result<(), AuthError> {
        check(self.version, ev, &self.state)
    }

    fn member(&self, sender: &str, target: &str, content: Value) -> Result<(), AuthError> {
        self.check(&self.event(MEMBER, Some(target), sender, content))
    }

    fn membership(&self, sender: &str, target: &str, membership: &str) -> Result<(), AuthError> {
        self.member(sender, target, json!({ "membership": membership }))
    }

    fn send(
        &self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Result<(), AuthError> {
        self.check(&self.event(kind, state_key, sender, content))
    }
}

#[track_caller]
fn refused(r: Result<(), AuthError>, needle: &str) {
    match r {
        Ok(()) => panic!("allowed, expected a refusal mentioning {needle:?}"),
        Err(e) => assert!(e.reason.contains(needle), "reason {:?} lacks {needle:?}", e.reason),
    }
}

// --- m.room.create ---

#[test]
fn create_event_rules() {
    for &version in VERSIONS {
        let room = TestRoom::new(version, "invite");
        let create = room.create_event(json!({}));
        assert_eq!(check(version, &create, &State::new()), Ok(()), "v{}", version.id);

        let mut with_prev = create.clone();
        with_prev["prev_events"] = room.refs(&["$x:example.org"]);
        refused(check(version, &with_prev, &State::new()), "prev_events");

        let unknown = room.create_event(json!({"room_version": "9000"}));
        refused(check(version, &unknown, &State::new()), "unknown room version");
        let not_string = room.create_event(json!({"room_version": 11}));
        refused(check(version, &not_string, &State::new()), "unknown room version");
    }
}

#[test]
fn creator_field_required_until_v11() {
    for &version in VERSIONS {
        let mut create = TestRoom::new(version, "invite").create_event(json!({}));
        create["content"].as_object_mut().expect("object").remove("creator");
        if version.create_has_creator_field {
            refused(check(version, &create, &State::new()), "no creator");
        } else {
            assert_eq!(check(version, &create, &State::new()), Ok(()), "v{}", version.id);
        }
    }
}

#[test]
fn create_room_id_server_must_match_sender_before_v12() {
    for &version in VERSIONS.iter().filter(|v| !v.room_id_from_create) {
        let mut create = TestRoom::new(version, "invite").create_event(json!({}));
        create["room_id"] = json!("!room:elsewhere.test");
        refused(check(version, &create, &State::new()), "room ID");
        create["room_id"] = json!("!noserver");
        refused(check(version, &create, &State::new()), "room ID");
    }
}

#[test]
fn v12_create_has_no_room_id_and_valid_additional_creators() {
    let room = TestRoom::new(&V12, "invite");
    let mut create = room.create_event(json!({}));
    create["room_id"] = json!(room.room_id);
    refused(check(&V12, &create, &State::new()), "room_id");

    let good = room.create_event(json!({"additional_creators": [BOB, EVE]}));
    assert_eq!(check(&V12, &good, &State::new()), Ok(()));
    for bad in [json!("@bob:example.org"), json!([BOB, 5]), json!(["bob"]), json!(["@bob:"])] {
        let ev = room.create_event(json!({ "additional_creators": bad }));
        refused(check(&V12, &ev, &State::new()), "additional_creators");
    }
    // Before v12 the field means nothing and is not validated.
    let v11 = TestRoom::new(&V11, "invite").create_event(json!({"additional_creators": 5}));
    assert_eq!(check(&V11, &v11, &State::new()), Ok(()));
}

// --- room identity and federation ---

#[test]
fn events_need_the_rooms_create_event() {
    for &version in VERSIONS {
        let room = TestRoom::new(version, "public");
        let msg = room.event("m.room.message", None, CAROL, json!({"body": "hi"}));
        refused(check(version, &msg, &State::new()), "no m.room.create");
        let mut elsewhere = msg.clone();
        elsewhere["room_id"] = json!("!other:example.org");
        assert!(room.check(&elsewhere).is_err(), "v{}", version.id);
        let mut no_room = msg;
        no_room.as_object_mut().expect("object").remove("room_id");
        refused(room.check(&no_room), "room_id");
    }
}

#[test]
fn v12_room_id_must_be_the_create_event_id() {
    let mut room = TestRoom::new(&V12, "public");
    let create = room.state.get_mut(&(CREATE.to_owned(), String::new())).expect("create");
    create["content"]["topic"] = json!("not the hashed create event");
    refused(room.send(CAROL, "m.room.message", None, json!({})), "not the ID");
    let mut room = TestRoom::new(&V12, "public");
    room.state.get_mut(&(CREATE.to_owned(), String::new())).expect("create")["room_id"] = json!("!x");
    refused(room.send(CAROL, "m.room.message", None, json!({})), "room_id");
}

#[test]
fn non_federating_rooms_refuse_other_servers() {
    for &version in VERSIONS {
        let room = TestRoom::with_create(version, "public", json!({"m.federate": false}));
        refused(room.membership(EVE, EVE, JOIN), "does not federate");
        assert_eq!(room.membership(DAN, DAN, JOIN), Ok(()));
    }
}

#[test]
fn malformed_events_are_refused() {
    let room = TestRoom::new(&V11, "public");
    let mut ev = room.event("m.room.message", None, CAROL, json!({}));
    ev["sender"] = json!("carol");
    refused(room.check(&ev), "not a valid user ID");
    let mut ev = room.event("m.room.message", None, CAROL, json!({}));
    ev["content"] = json!("text");
    refused(room.check(&ev), "content");
    let mut ev = room.event("m.room.topic", Some(""), ALICE, json!({}));
    ev["state_key"] = json!(5);
    refused(room.check(&ev), "state_key");
}

// --- joins ---

#[test]
fn creator_first_join_after_create() {
    for &version in VERSIONS {
        let room = TestRoom::new(version, "invite");
        let mut state = State::new();
        let create = room.create_event(json!({}));
        state.insert((CREATE.to_owned(), String::new()), create);
        assert_eq!(check(version, &room.first_join(), &state), Ok(()), "v{}", version.id);
        // Anyone else, or a prev event other than the create, falls to
        // the join rules, and there are none yet.
        let mut other = room.event(MEMBER, Some(BOB), BOB, json!({"membership": JOIN}));
        other["prev_events"] = room.refs(&[&room.create_id()]);
        refused(check(version, &other, &state), "no join rule");
        let mut late = room.first_join();
        late["prev_events"] = room.refs(&["$somethingelse:example.org"]);
        refused(check(version, &late, &state), "no join rule");
        let mut two = room.first_join();
        two["prev_events"] = room.refs(&[&room.create_id(), "$other:example.org"]);
        refused(check(version, &two, &state), "no join rule");
    }
}

#[test]
fn v10_first_join_uses_the_creator_field() {
    let room = TestRoom::new(&V10, "invite");
    let mut state = State::new();
    let mut create = room.create_event(json!({}));
    create["sender"] = json!(BOB);
    let mut join = room.first_join();
    join["prev_events"] = json!([event::event_id(&V10, &create).expect("the create hashes")]);
    state.insert((CREATE.to_owned(), String::new()), create);
    assert_eq!(check(&V10, &join, &state), Ok(()));
}

#[test]
fn public_join() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "public");
        assert_eq!(room.membership(DAN, DAN, JOIN), Ok(()));
        assert_eq!(room.membership(EVE, EVE, JOIN), Ok(()));
        refused(room.membership(DAN, EVE, JOIN), "on behalf of");
        room.set_member(DAN, BAN);
        refused(room.membership(DAN, DAN, JOIN), "banned");
        // A joined member may update their profile.
        assert_eq!(room.member(CAROL, CAROL, json!({"membership": JOIN, "displayname": "C"})), Ok(()));
    }
}

#[test]
fn invite_only_join() {
    for &version in VERSIONS {
        // Before v7 `knock` is no join rule at all: nobody may join.
        let mut room = TestRoom::new(version, "knock");
        room.set_member(DAN, INVITE);
        if !version.knocking {
            refused(room.membership(DAN, DAN, JOIN), "lets nobody join in room version");
        }
        let rules: &[&str] = if version.knocking { &["invite", "knock"] } else { &["invite"] };
        for &rule in rules {
            let mut room = TestRoom::new(version, rule);
            refused(room.membership(DAN, DAN, JOIN), "not invited");
            room.set_member(DAN, INVITE);
            assert_eq!(room.membership(DAN, DAN, JOIN), Ok(()));
            room.set_member(DAN, KNOCK);
            refused(room.membership(DAN, DAN, JOIN), "not invited");
            room.set_member(DAN, BAN);
            refused(room.membership(DAN, DAN, JOIN), "banned");
        }
    }
}

#[test]
fn unknown_or_missing_join_rule_refuses_joins() {
    let mut room = TestRoom::new(&V11, "private");
    refused(room.membership(DAN, DAN, JOIN), "\"private\"");
    room.state.remove(&(JOIN_RULES.to_owned(), String::new()));
    refused(room.membership(DAN, DAN, JOIN), "no join rule");
}

#[test]
fn restricted_join_rules_before_their_versions_let_nobody_in() {
    for &version in VERSIONS {
        for (rule, supported) in
            [("restricted", version.restricted_joins), ("knock_restricted", version.knock_restricted)]
        {
            if supported {
                continue;
            }
            let mut room = TestRoom::new(version, rule);
            let via = json!({"membership": JOIN, AUTHORISER_KEY: CAROL});
            refused(room.member(DAN, DAN, via), "lets nobody join");
            room.set_member(DAN, INVITE);
            refused(room.membership(DAN, DAN, JOIN), "lets nobody join");
        }
    }
    let supported = |rule: fn(&RoomVersion) -> bool| VERSIONS.iter().filter(|v| rule(v)).count();
    assert_eq!((supported(|v| v.restricted_joins), supported(|v| v.knock_restricted)), (5, 3));
}

#[test]
fn restricted_joins() {
    for &version in VERSIONS {
        for (rule, supported) in
            [("restricted", version.restricted_joins), ("knock_restricted", version.knock_restricted)]
        {
            if !supported {
                continue;
            }
            let mut room = TestRoom::new(version, rule);
            let via = |user: &str| json!({"membership": JOIN, AUTHORISER_KEY: user});
            refused(room.membership(DAN, DAN, JOIN), "authorisation");
            // Any joined member with invite power (invite defaults to 0).
            assert_eq!(room.member(DAN, DAN, via(CAROL)), Ok(()));
            assert_eq!(room.member(DAN, DAN, via(ALICE)), Ok(()));
            // The authoriser must be joined.
            refused(room.member(DAN, DAN, via(EVE)), "not in the room");
            room.set_member(EVE, INVITE);
            refused(room.member(DAN, DAN, via(EVE)), "not in the room");
            // ...and able to invite.
            room.set_pl(json!({"users": {BOB: 50}, "invite": 50}));
            refused(room.member(DAN, DAN, via(CAROL)), "may not invite: needs 50, has 0");
            assert_eq!(room.member(DAN, DAN, via(BOB)), Ok(()));
            // Invited users need no authoriser.
            room.set_member(DAN, INVITE);
            assert_eq!(room.membership(DAN, DAN, JOIN), Ok(()));
            room.set_member(DAN, BAN);
            refused(room.member(DAN, DAN, via(BOB)), "banned");
        }
    }
}

// --- invites ---

#[test]
fn invites() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "invite");
        assert_eq!(room.membership(CAROL, DAN, INVITE), Ok(()));
        assert_eq!(room.membership(CAROL, EVE, INVITE), Ok(()));
        refused(room.membership(DAN, EVE, INVITE), "is not in the room");
        refused(room.membership(CAROL, BOB, INVITE), "already in the room");
        room.set_member(DAN, BAN);
        refused(room.membership(CAROL, DAN, INVITE), "banned");
        room.set_pl(json!({"users": {BOB: 50}, "invite": 50}));
        refused(room.membership(CAROL, EVE, INVITE), "insufficient power level to invite: needs 50, has 0");
        assert_eq!(room.membership(BOB, EVE, INVITE), Ok(()));
        // An invited user may not invite.
        room.set_member(CAROL, INVITE);
        refused(room.membership(CAROL, EVE, INVITE), "is not in the room");
    }
}

/// A room with an `m.room.third_party_invite` from carol, signed by an
/// identity server key; returns the room and the key.
fn third_party_room(version: &'static RoomVersion) -> (TestRoom, ServerKey) {
    let mut room = TestRoom::new(version, "invite");
    let key = ServerKey::from_seed("ed25519:0", &[7u8; 32]);
    let invite = room.event(
        THIRD_PARTY_INVITE,
        Some("tok"),
        CAROL,
        json!({"display_name": "d...@example.com", "key_validity_url": "https://id.test/valid",
               "public_key": "bm90IGEga2V5",
               "public_keys": [{"public_key": key.public_key_b64()}]}),
    );
    room.put(invite);
    (room, key)
}

fn signed_block(key: &ServerKey, mxid: &str, token: &str) -> Value {
    let mut signed = json!({"mxid": mxid, "token": token});
    key.sign_json("id.test", &mut signed).expect("signing an object works");
    signed
}

fn third_party_content(signed: Value) -> Value {
    json!({"membership": INVITE, "third_party_invite": {"display_name": "d", "signed": signed}})
}

#[test]
fn third_party_invites() {
    for &version in VERSIONS {
        let (mut room, key) = third_party_room(version);
        let good = third_party_content(signed_block(&key, DAN, "tok"));
        assert_eq!(room.member(CAROL, DAN, good.clone()), Ok(()), "v{}", version.id);
        // Only the sender of the third-party invite may complete it.
        refused(room.member(BOB, DAN, good.clone()), "did not send");
        // The signed mxid must be the target.
        refused(room.member(CAROL, EVE, good.clone()), "not @eve");
        // Another key's signature does not count.
        let other = ServerKey::from_seed("ed25519:0", &[8u8; 32]);
        refused(room.member(CAROL, DAN, third_party_content(signed_block(&other, DAN, "tok"))), "signature");
        // Tampering with the signed block breaks the signature.
        let mut tampered = signed_block(&key, DAN, "tok");
        tampered["extra"] = json!(1);
        refused(room.member(CAROL, DAN, third_party_content(tampered)), "signature");
        // Unknown token, missing fields, missing signed block.
        refused(room.member(CAROL, DAN, third_party_content(signed_block(&key, DAN, "nope"))), "token");
        refused(room.member(CAROL, DAN, third_party_content(json!({"mxid": DAN}))), "mxid and token");
        refused(room.member(CAROL, DAN, json!({"membership": INVITE, "third_party_invite": {}})), "signed");
        // A banned target cannot be invited this way either.
        room.set_member(DAN, BAN);
        refused(room.member(CAROL, DAN, good), "banned");
    }
}

#[test]
fn third_party_invite_accepts_the_single_public_key() {
    let (mut room, key) = third_party_room(&V12);
    let key_ref = (THIRD_PARTY_INVITE.to_owned(), "tok".to_owned());
    let ev = room.state.get_mut(&key_ref).expect("invite");
    ev["content"] = json!({"public_key": key.public_key_b64()});
    assert_eq!(room.member(CAROL, DAN, third_party_content(signed_block(&key, DAN, "tok"))), Ok(()));
}

#[test]
fn third_party_invite_event_needs_invite_power() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "invite");
        let content = json!({"display_name": "x", "public_key": "abc"});
        assert_eq!(room.send(CAROL, THIRD_PARTY_INVITE, Some("t"), content.clone()), Ok(()));
        room.set_pl(json!({"users": {BOB: 50}, "invite": 50}));
        refused(room.send(CAROL, THIRD_PARTY_INVITE, Some("t"), content.clone()), "to invite");
        refused(room.send(DAN, THIRD_PARTY_INVITE, Some("t"), content), "not in the room");
    }
}

// --- leaving, kicks, bans ---

#[test]
fn leaving() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "invite");
        assert_eq!(room.membership(CAROL, CAROL, LEAVE), Ok(()));
        refused(room.membership(DAN, DAN, LEAVE), "not in the room");
        room.set_member(DAN, INVITE);
        assert_eq!(room.membership(DAN, DAN, LEAVE), Ok(()), "rejecting an invite");
        room.set_member(DAN, KNOCK);
        if version.knocking {
            assert_eq!(room.membership(DAN, DAN, LEAVE), Ok(()), "retracting a knock");
        } else {
            // v1–v6: "allow if and only if … `invite` or `join`".
            refused(room.membership(DAN, DAN, LEAVE), "not in the room");
        }
        room.set_member(DAN, LEAVE);
        refused(room.membership(DAN, DAN, LEAVE), "not in the room");
        room.set_member(DAN, BAN);
        refused(room.membership(DAN, DAN, LEAVE), "banned");
    }
}

#[test]
fn kicking() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "invite");
        assert_eq!(room.membership(BOB, CAROL, LEAVE), Ok(()), "moderator kicks member");
        refused(room.membership(CAROL, BOB, LEAVE), "insufficient power level to kick: needs 50, has 0");
        refused(room.membership(BOB, ALICE, LEAVE), "not below");
        assert_eq!(room.membership(ALICE, BOB, LEAVE), Ok(()));
        // Revoking an invite is a kick too.
        room.set_member(DAN, INVITE);
        assert_eq!(room.membership(BOB, DAN, LEAVE), Ok(()));
        refused(room.membership(CAROL, DAN, LEAVE), "to kick");
        // Equal levels cannot kick each other.
        room.set_member(EVE, JOIN);
        let users = if version.privileged_creators {
            json!({BOB: 50, EVE: 50})
        } else {
            json!({ALICE: 100, BOB: 50, EVE: 50})
        };
        room.set_pl(json!({ "users": users }));
        refused(room.membership(BOB, EVE, LEAVE), "not below");
        // A lower kick level lets members kick the default level.
        room.set_pl(json!({"users": {BOB: 50}, "users_default": 1, "kick": 1}));
        assert_eq!(room.membership(BOB, CAROL, LEAVE), Ok(()));
        refused(room.membership(CAROL, DAN, LEAVE), "not below");
        // Someone outside the room cannot kick.
        room.set_member(BOB, LEAVE);
        refused(room.membership(BOB, CAROL, LEAVE), "not in the room");
    }
}

#[test]
fn banning_and_unbanning() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "invite");
        assert_eq!(room.membership(BOB, CAROL, BAN), Ok(()));
        assert_eq!(room.membership(BOB, DAN, BAN), Ok(()), "ban someone never in the room");
        refused(room.membership(CAROL, DAN, BAN), "insufficient power level to ban: needs 50, has 0");
        refused(room.membership(BOB, ALICE, BAN), "not below");
        refused(room.membership(EVE, DAN, BAN), "not in the room");
        room.set_member(DAN, BAN);
        assert_eq!(room.membership(BOB, DAN, LEAVE), Ok(()), "unban");
        refused(room.membership(CAROL, DAN, LEAVE), "to unban");
        // Unbanning needs both the ban and the kick level.
        room.set_pl(json!({"users": {BOB: 50}, "kick": 60}));
        refused(room.membership(BOB, DAN, LEAVE), "to kick");
        room.set_pl(json!({"users": {BOB: 50}, "ban": 60, "kick": 0}));
        refused(room.membership(BOB, DAN, LEAVE), "to unban");
    }
}

// --- knocking ---

#[test]
fn knocking() {
    for &version in VERSIONS.iter().filter(|v| v.knocking) {
        let rules: &[&str] =
            if version.knock_restricted { &["knock", "knock_restricted"] } else { &["knock"] };
        for &rule in rules {
            let mut room = TestRoom::new(version, rule);
            assert_eq!(room.membership(DAN, DAN, KNOCK), Ok(()), "v{} {rule}", version.id);
            assert_eq!(room.membership(EVE, EVE, KNOCK), Ok(()));
            refused(room.membership(DAN, EVE, KNOCK), "on behalf of");
            refused(room.membership(CAROL, CAROL, KNOCK), "already in the room");
            room.set_member(DAN, INVITE);
            refused(room.membership(DAN, DAN, KNOCK), "already invited");
            room.set_member(DAN, BAN);
            refused(room.membership(DAN, DAN, KNOCK), "banned");
            room.set_member(DAN, KNOCK);
            assert_eq!(room.membership(DAN, DAN, KNOCK), Ok(()), "knocking again");
        }
        for rule in ["public", "invite", "restricted"] {
            let room = TestRoom::new(version, rule);
            refused(room.membership(DAN, DAN, KNOCK), "does not allow knocking");
        }
        // v7–v9 knock only where the rule is `knock` (v10 adds knock_restricted).
        if !version.knock_restricted {
            let room = TestRoom::new(version, "knock_restricted");
            refused(room.membership(DAN, DAN, KNOCK), "does not allow knocking");
        }
    }
}

#[test]
fn knock_needs_a_version_with_knocking() {
    for &version in VERSIONS.iter().filter(|v| !v.knocking) {
        let room = TestRoom::new(version, "knock");
        refused(room.membership(DAN, DAN, KNOCK), "unknown membership");
        refused(room.membership(DAN, DAN, JOIN), "lets nobody join");
    }
}

#[test]
fn membership_field_rules() {
    let room = TestRoom::new(&V11, "public");
    refused(room.member(DAN, DAN, json!({"membership": "dance"})), "unknown membership");
    refused(room.member(DAN, DAN, json!({"displayname": "D"})), "needs a membership");
    refused(room.member(DAN, DAN, json!({"membership": 1})), "needs a membership");
    refused(room.send(DAN, MEMBER, None, json!({"membership": JOIN})), "state_key");
}

// --- ordinary events ---

#[test]
fn messages_need_membership_and_power() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "public");
        assert_eq!(room.send(CAROL, "m.room.message", None, json!({"body": "hi"})), Ok(()));
        refused(room.send(DAN, "m.room.message", None, json!({})), "@dan:example.org is not in the room");
        room.set_member(DAN, INVITE);
        refused(room.send(DAN, "m.room.message", None, json!({})), "not in the room");
        room.set_pl(json!({"users": {BOB: 50}, "events_default": 10, "events": {"m.reaction": 0}}));
        refused(
            room.send(CAROL, "m.room.message", None, json!({})),
            "insufficient power level to send m.room.message: needs 10, has 0",
        );
        assert_eq!(room.send(CAROL, "m.reaction", None, json!({})), Ok(()));
        assert_eq!(room.send(BOB, "m.room.message", None, json!({})), Ok(()));
    }
}

#[test]
fn state_events_need_state_power() {
    for &version in VERSIONS {
        let room = TestRoom::new(version, "public");
        refused(
            room.send(CAROL, "m.room.name", Some(""), json!({"name": "x"})),
            "insufficient power level to send m.room.name: needs 50, has 0",
        );
        assert_eq!(room.send(BOB, "m.room.name", Some(""), json!({"name": "x"})), Ok(()));
        refused(room.send(BOB, "m.room.tombstone", Some(""), json!({})), "needs 100, has 50");
        assert_eq!(room.send(ALICE, "m.room.tombstone", Some(""), json!({})), Ok(()));
    }
}

#[test]
fn user_keyed_state_must_belong_to_the_sender() {
    for &version in VERSIONS {
        let room = TestRoom::new(version, "public");
        assert_eq!(room.send(BOB, "m.custom", Some(BOB), json!({})), Ok(()));
        refused(room.send(BOB, "m.custom", Some(CAROL), json!({})), "another user");
        refused(room.send(ALICE, "m.custom", Some(CAROL), json!({})), "another user");
        assert_eq!(room.send(BOB, "m.custom", Some("bob"), json!({})), Ok(()));
    }
}

#[test]
fn redaction_events_ignore_the_redact_level() {
    for &version in VERSIONS.iter().filter(|v| !v.redaction_auth_rule) {
        let mut room = TestRoom::new(version, "public");
        room.set_pl(json!({"users": {BOB: 50}, "redact": 100}));
        let content = json!({"redacts": "$target"});
        assert_eq!(room.send(CAROL, "m.room.redaction", None, content.clone()), Ok(()));
        room.set_pl(json!({"users": {BOB: 50}, "events": {"m.room.redaction": 20}}));
        refused(room.send(CAROL, "m.room.redaction", None, content), "needs 20, has 0");
    }
}

/// Rooms v1–v2, rule 11: the redact level, or the same server in the
/// redaction's event ID and the redacted one's.
#[test]
fn v1_redactions_are_authorised_by_event_id_servers() {
    for version in [&V1, &V2] {
        let mut room = TestRoom::new(version, "public");
        room.set_pl(json!({"users": {ALICE: 100, BOB: 50}, "redact": 50}));
        let redaction = |room: &TestRoom, sender: &str, target: Option<&str>| {
            let mut ev = room.event("m.room.redaction", None, sender, json!({}));
            if let Some(target) = target {
                ev["redacts"] = json!(target);
            }
            room.check(&ev)
        };
        // Carol (0) may redact events of her own server only.
        assert_eq!(redaction(&room, CAROL, Some("$theirs:example.org")), Ok(()), "v{}", version.id);
        refused(redaction(&room, CAROL, Some("$theirs:remote.test")), "another server: needs 50, has 0");
        refused(redaction(&room, CAROL, None), "another server");
        refused(redaction(&room, CAROL, Some("$nodomain")), "another server");
        // Bob has the redact level.
        assert_eq!(redaction(&room, BOB, Some("$theirs:remote.test")), Ok(()));
        // A remote member redacting a local event needs the level too.
        room.set_member(EVE, JOIN);
        refused(redaction(&room, EVE, Some("$ours:example.org")), "another server");
        assert_eq!(redaction(&room, EVE, Some("$own:remote.test")), Ok(()));
        // Rule 8 still comes first.
        room.set_pl(json!({"users": {ALICE: 100, BOB: 50}, "events": {"m.room.redaction": 60}}));
        refused(redaction(&room, BOB, Some("$theirs:example.org")), "needs 60, has 50");
    }
}

#[test]
fn applying_redactions() {
    for &version in VERSIONS.iter().filter(|v| !v.redaction_auth_rule) {
        let pl = parse_pl(version, json!({"users": {BOB: 50}}));
        let creators = Creators::new(vec![ALICE.to_owned()], false);
        assert!(may_apply_redaction(version, BOB, EVE, &pl, &creators));
        assert!(may_apply_redaction(version, CAROL, DAN, &pl, &creators), "same server");
        assert!(!may_apply_redaction(version, CAROL, EVE, &pl, &creators));
        assert!(!may_apply_redaction(version, "nobody", "nobody", &pl, &creators));
    }
    let v12 = Creators::new(vec![ALICE.to_owned()], true);
    let strict = parse_pl(&V12, json!({"redact": power_levels::LEVEL_MAX}));
    assert!(may_apply_redaction(&V12, ALICE, EVE, &strict, &v12));
    // In v1–v2 rule 11 decided already: what passed it applies.
    let pl = parse_pl(&V1, json!({"users": {BOB: 50}}));
    assert!(may_apply_redaction(&V1, CAROL, EVE, &pl, &Creators::default()));
}

/// Rooms v1–v5, rule 4: `m.room.aliases` belongs to the server its state
/// key names; v6 removed the rule, leaving the usual state rules.
#[test]
fn aliases_events_until_v6() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "invite");
        room.set_member(EVE, JOIN);
        let aliases = json!({"aliases": ["#a:example.org"]});
        let send = |sender: &str, key: Option<&str>| room.send(sender, ALIASES, key, aliases.clone());
        if version.special_case_aliases {
            // Dan is not even in the room.
            assert_eq!(send(DAN, Some("example.org")), Ok(()), "v{}", version.id);
            assert_eq!(send(CAROL, Some("example.org")), Ok(()));
            refused(send(CAROL, Some("remote.test")), "aliases of the server");
            assert_eq!(send(EVE, Some("remote.test")), Ok(()));
            refused(send(CAROL, None), "needs a state_key");
        } else {
            refused(send(DAN, Some("example.org")), "not in the room");
            refused(send(CAROL, Some("example.org")), "needs 50, has 0");
            assert_eq!(send(BOB, Some("remote.test")), Ok(()), "v{}", version.id);
        }
    }
}

fn parse_pl(version: &RoomVersion, content: Value) -> PowerLevels {
    power_levels::parse(version, &content).expect("valid power levels")
}

// --- power levels ---

fn pl_with_users(version: &RoomVersion, users: Value) -> Value {
    let mut users = users;
    if !version.privileged_creators {
        users[ALICE] = json!(100);
    }
    json!({"users": users, "events": {"m.room.power_levels": 50}})
}

#[test]
fn power_level_changes() {
    for &version in VERSIONS {
        let mut room = TestRoom::new(version, "public");
        room.set_pl(pl_with_users(version, json!({BOB: 50, CAROL: 50})));
        let send = |room: &TestRoom, users: Value| {
            room.send(BOB, POWER_LEVELS, Some(""), pl_with_users(version, users))
        };
        // Raising anyone above one's own level.
        refused(send(&room, json!({BOB: 51, CAROL: 50})), "above your power level 50");
        refused(send(&room, json!({BOB: 50, CAROL: 50, DAN: 75})), "above your power level");
        // Granting up to one's own level.
        assert_eq!(send(&room, json!({BOB: 50, CAROL: 50, DAN: 50})), Ok(()));
        // Demoting a peer.
        refused(send(&room, json!({BOB: 50, CAROL: 10})), "not below your power level");
        refused(send(&room, json!({BOB: 50})), "not below your power level");
        // Demoting oneself.
        assert_eq!(send(&room, json!({BOB: 20, CAROL: 50})), Ok(()));
        // Changing a threshold above one's level.
        let mut content = pl_with_users(version, json!({BOB: 50, CAROL: 50}));
        content["ban"] = json!(100);
        refused(room.send(BOB, POWER_LEVELS, Some(""), content), "`ban`");
        // Lacking the level to send power levels at all.
        let content = pl_with_users(version, json!({BOB: 50, CAROL: 50}));
        refused(room.send(DAN, POWER_LEVELS, Some(""), content.clone()), "not in the room");
        room.set_member(DAN, JOIN);
        refused(room.send(DAN, POWER_LEVELS, Some(""), content), "needs 50, has 0");
    }
}

#[test]
fn power_levels_must_be_integers_from_v10() {
    for &version in VERSIONS {
        let room = TestRoom::new(version, "public");
        let strings = [
            json!({"ban": "50"}),
            json!({"users": {ALICE: "100", BOB: "50"}}),
            json!({"events": {"m.room.name": "50"}}),
            json!({"notifications": {"room": " 50 "}}),
        ];
        for content in strings {
            let r = room.send(ALICE, POWER_LEVELS, Some(""), content);
            if version.integer_power_levels {
                refused(r, "invalid power levels");
            } else {
                assert_eq!(r, Ok(()), "v{}", version.id);
            }
        }
        for bad in [
            json!({"users": {"not-a-user": 5}}),
            json!({"users": {BOB: "fifty"}}),
            json!({"users": [BOB]}),
            json!({"ban": true}),
        ] {
            refused(room.send(ALICE, POWER_LEVELS, Some(""), bad), "invalid power levels");
        }
        let float = room.send(ALICE, POWER_LEVELS, Some(""), json!({"notifications": {"room": 50.5}}));
        let big = room.send(ALICE, POWER_LEVELS, Some(""), json!({"kick": -9_007_199_254_740_992_i64}));
        if version.strict_canonical_json {
            refused(float, "invalid power levels");
            refused(big, "invalid power levels");
        } else {
            assert_eq!((float, big), (Ok(()), Ok(())), "v{}", version.id);
        }
    }
}

/// A stored v1–v9 power levels event written with strings works as the
/// numbers it spells.
#[test]
fn stringy_current_power_levels_are_read_as_numbers() {
    for &version in VERSIONS.iter().filter(|v| !v.integer_power_levels) {
        let mut room = TestRoom::new(version, "public");
        room.set_pl(json!({"users": {ALICE: "100", BOB: " 050"}, "kick": "+50", "events_default": "0"}));
        assert_eq!(room.membership(BOB, CAROL, LEAVE), Ok(()), "v{}", version.id);
        refused(room.membership(CAROL, BOB, LEAVE), "needs 50, has 0");
    }
}

/// From v6 `notifications` follows the change rules of `events`.
#[test]
fn notifications_changes_from_v6() {
    for &version in VERSIONS.iter().filter(|v| !v.privileged_creators) {
        let mut room = TestRoom::new(version, "public");
        let base = json!({"users": {ALICE: 100, BOB: 50}, "notifications": {"room": 100}});
        room.set_pl(base);
        let lowered = json!({"users": {ALICE: 100, BOB: 50}, "notifications": {"room": 0}});
        let r = room.send(BOB, POWER_LEVELS, Some(""), lowered);
        if version.notifications_power_levels {
            refused(r, "`notifications.room` from 100");
        } else {
            assert_eq!(r, Ok(()), "v{}", version.id);
        }
    }
}

#[test]
fn first_power_levels_event_is_free() {
    for &version in VERSIONS.iter().filter(|v| !v.privileged_creators) {
        let mut room = TestRoom::new(version, "public");
        room.state.remove(&(POWER_LEVELS.to_owned(), String::new()));
        // Without a power levels event alice has 100, everyone else 0.
        let content = json!({"users": {ALICE: 100, BOB: 9000}});
        assert_eq!(room.send(ALICE, POWER_LEVELS, Some(""), content.clone()), Ok(()));
        assert_eq!(room.send(ALICE, "m.room.name", Some(""), json!({})), Ok(()));
        refused(room.send(BOB, "m.room.name", Some(""), json!({})), "needs 50, has 0");
        refused(room.send(BOB, POWER_LEVELS, Some(""), content), "needs 50, has 0");
        assert_eq!(room.send(CAROL, "m.room.message", None, json!({})), Ok(()));
    }
}

#[test]
fn v12_creators_have_infinite_power() {
    let mut room = TestRoom::with_create(&V12, "public", json!({"additional_creators": [DAN]}));
    room.set_member(DAN, JOIN);
    room.set_pl(json!({"users": {BOB: 100, CAROL: power_levels::LEVEL_MAX}}));
    // Creators outrank any finite level, and each other not at all.
    assert_eq!(room.membership(ALICE, CAROL, LEAVE), Ok(()));
    assert_eq!(room.membership(DAN, CAROL, BAN), Ok(()));
    refused(room.membership(ALICE, DAN, LEAVE), "not below");
    refused(room.membership(CAROL, ALICE, BAN), "not below");
    // A creator may set any level within range, but never list a creator.
    let content = json!({"users": {BOB: power_levels::LEVEL_MAX, CAROL: 0}, "ban": power_levels::LEVEL_MAX});
    assert_eq!(room.send(ALICE, POWER_LEVELS, Some(""), content), Ok(()));
    for creator in [ALICE, DAN] {
        let content = json!({"users": {BOB: 100, creator: 100}});
        refused(room.send(ALICE, POWER_LEVELS, Some(""), content), "may not list the room creator");
    }
    // Without a power levels event, creators are still infinite.
    room.state.remove(&(POWER_LEVELS.to_owned(), String::new()));
    assert_eq!(room.send(DAN, "m.room.tombstone", Some(""), json!({})), Ok(()));
    refused(room.send(BOB, "m.room.name", Some(""), json!({})), "needs 50, has 0");
}

#[test]
fn v11_creator_is_an_ordinary_user_once_power_levels_exist() {
    let mut room = TestRoom::new(&V11, "public");
    room.set_pl(json!({"users": {BOB: 100, ALICE: 100}}));
    refused(room.membership(ALICE, BOB, LEAVE), "not below");
    // Listing the creator is fine before v12.
    let content = json!({"users": {BOB: 100, ALICE: 50}});
    assert_eq!(room.send(ALICE, POWER_LEVELS, Some(""), content), Ok(()));
}

#[test]
fn invalid_current_power_levels_refuse_everything() {
    let mut room = TestRoom::new(&V10, "public");
    room.set_pl(json!({"ban": "50"}));
    refused(room.send(CAROL, "m.room.message", None, json!({})), "current power levels are invalid");
}

// --- auth events selection ---

fn types(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, s)| ((*k).to_owned(), (*s).to_owned())).collect()
}

#[test]
fn auth_event_selection() {
    // Before v8 the authoriser of a restricted join is not selected.
    let via = json!({"membership": JOIN, AUTHORISER_KEY: BOB});
    for version in [&V1, &V7] {
        let join = auth_types_for_event(version, MEMBER, Some(DAN), DAN, &via);
        assert_eq!(join, types(&[(CREATE, ""), (POWER_LEVELS, ""), (MEMBER, DAN), (JOIN_RULES, "")]));
    }
    let join = auth_types_for_event(&V8, MEMBER, Some(DAN), DAN, &via);
    assert_eq!(join.last(), Some(&(MEMBER.to_owned(), BOB.to_owned())));
    let msg = auth_types_for_event(&V11, "m.room.message", None, CAROL, &json!({}));
    assert_eq!(msg, types(&[(CREATE, ""), (POWER_LEVELS, ""), (MEMBER, CAROL)]));
    let msg12 = auth_types_for_event(&V12, "m.room.message", None, CAROL, &json!({}));
    assert_eq!(msg12, types(&[(POWER_LEVELS, ""), (MEMBER, CAROL)]));
    assert!(auth_types_for_event(&V10, CREATE, Some(""), ALICE, &json!({})).is_empty());

    let join = auth_types_for_event(&V12, MEMBER, Some(DAN), DAN, &json!({"membership": JOIN}));
    assert_eq!(join, types(&[(POWER_LEVELS, ""), (MEMBER, DAN), (JOIN_RULES, "")]));
    let via = json!({"membership": JOIN, AUTHORISER_KEY: BOB});
    let restricted = auth_types_for_event(&V10, MEMBER, Some(DAN), DAN, &via);
    assert_eq!(
        restricted,
        types(&[(CREATE, ""), (POWER_LEVELS, ""), (MEMBER, DAN), (JOIN_RULES, ""), (MEMBER, BOB)])
    );
    let kick = auth_types_for_event(&V11, MEMBER, Some(CAROL), BOB, &json!({"membership": LEAVE}));
    assert_eq!(kick, types(&[(CREATE, ""), (POWER_LEVELS, ""), (MEMBER, BOB), (MEMBER, CAROL)]));
    let knock = auth_types_for_event(&V12, MEMBER, Some(DAN), DAN, &json!({"membership": KNOCK}));
    assert_eq!(knock, types(&[(POWER_LEVELS, ""), (MEMBER, DAN), (JOIN_RULES, "")]));
    let tpi = json!({"membership": INVITE, "third_party_invite": {"signed": {"token": "tok"}}});
    let invite = auth_types_for_event(&V12, MEMBER, Some(DAN), CAROL, &tpi);
    assert_eq!(
        invite,
        types(&[
            (POWER_LEVELS, ""),
            (MEMBER, CAROL),
            (MEMBER, DAN),
            (JOIN_RULES, ""),
            (THIRD_PARTY_INVITE, "tok")
        ])
    );
}

fn joined<'a>(base: &[&'a Value], extra: &[&'a Value]) -> Vec<&'a Value> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn auth_events_checks() {
    for &version in VERSIONS {
        let room = TestRoom::new(version, "public");
        let get = |kind: &str, key: &str| room.state[&(kind.to_owned(), key.to_owned())].clone();
        let (create, pl, carol) = (get(CREATE, ""), get(POWER_LEVELS, ""), get(MEMBER, CAROL));
        let msg = room.event("m.room.message", None, CAROL, json!({}));
        let rules = get(JOIN_RULES, "");

        if version.room_id_from_create {
            assert_eq!(check_auth_events(version, &msg, &[&pl, &carol]), Ok(()));
            refused(check_auth_events(version, &msg, &[&create, &pl, &carol]), "may not cite");
        } else {
            assert_eq!(check_auth_events(version, &msg, &[&create, &pl, &carol]), Ok(()));
            refused(check_auth_events(version, &msg, &[&pl, &carol]), "m.room.create");
        }
        let base: Vec<&Value> = if version.room_id_from_create { vec![&pl] } else { vec![&create, &pl] };
        refused(check_auth_events(version, &msg, &joined(&base, &[&carol, &carol])), "twice");
        refused(check_auth_events(version, &msg, &joined(&base, &[&rules])), "may not cite");
        let mut foreign = carol.clone();
        foreign["room_id"] = json!("!other:example.org");
        refused(check_auth_events(version, &msg, &joined(&base, &[&foreign])), "another room");
        let mut not_state = carol.clone();
        not_state.as_object_mut().expect("object").remove("state_key");
        refused(check_auth_events(version, &msg, &joined(&base, &[&not_state])), "not a state event");
        // The join rules may be cited by a join.
        let join = room.event(MEMBER, Some(DAN), DAN, json!({"membership": JOIN}));
        assert_eq!(check_auth_events(version, &join, &joined(&base, &[&rules])), Ok(()));
        // The create event cites nothing and passes.
        assert_eq!(check_auth_events(version, &create, &[]), Ok(()));
    }
}

#[test]
fn state_lookup_impls() {
    let room = TestRoom::new(&V11, "public");
    let lookup: &dyn StateLookup = &room.state;
    assert!(lookup.get(MEMBER, BOB).is_some());
    assert!(lookup.get(MEMBER, DAN).is_none());
    let btree: BTreeMap<(String, String), Value> = room.state.clone().into_iter().collect();
    assert_eq!(check(&V11, &room.event("m.room.message", None, CAROL, json!({})), &btree), Ok(()));
    let err = AuthError { reason: "no".to_owned() };
    assert_eq!(err.to_string(), "no");
}
