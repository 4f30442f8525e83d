//! Guest access (issue 12; the spec's guest access module): behind
//! `allow_guest_access`, `register?kind=guest` makes a password-less
//! account that may use only the guest routes, joins only rooms whose
//! `m.room.guest_access` is `can_join`, leaves them when that changes, and
//! upgrades to a full account under the same user ID.

mod common;

use common::{assert_error, create_room, enc, room_path, send_text, set_state, state_content, Server, V3};
use serde_json::{json, Value};

const PW: &str = "guest-test-password";

fn guest_server() -> Server {
    Server::start_with(&[], &[("HEARTH_ALLOW_GUEST_ACCESS", "true")])
}

/// Registers a guest; (user_id, access_token).
fn guest(s: &Server) -> (String, String) {
    let (status, body) = s.post(&format!("{V3}/register?kind=guest"), None, json!({}));
    assert_eq!(status, 200, "guest registration: {body}");
    assert!(body.get("refresh_token").is_none());
    (body["user_id"].as_str().unwrap().to_owned(), body["access_token"].as_str().unwrap().to_owned())
}

fn set_guest_access(s: &Server, token: &str, room: &str, value: &str) {
    set_state(s, token, room, "m.room.guest_access", "", json!({ "guest_access": value }));
}

fn membership(s: &Server, token: &str, room: &str, user: &str) -> Value {
    state_content(s, token, room, "m.room.member", user)["membership"].clone()
}

#[test]
fn guest_registration_is_refused_unless_configured() {
    let s = Server::start();
    let got = s.post(&format!("{V3}/register?kind=guest"), None, json!({}));
    assert_error(&got, 403, "M_GUEST_ACCESS_FORBIDDEN");
    assert_error(&s.post(&format!("{V3}/register?kind=robot"), None, json!({})), 400, "M_INVALID_PARAM");
}

#[test]
fn a_guest_uses_only_the_guest_routes() {
    let s = guest_server();
    let (id, token) = guest(&s);
    let (status, who) = s.get(&format!("{V3}/account/whoami"), Some(&token));
    assert_eq!(status, 200, "{who}");
    assert_eq!((who["user_id"].as_str(), who["is_guest"].as_bool()), (Some(id.as_str()), Some(true)));
    // Allowed: its own devices, sync, profile name, keys.
    for path in ["devices", "sync?timeout=0", "capabilities", "pushrules/"] {
        let (status, body) = s.get(&format!("{V3}/{path}"), Some(&token));
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = s.put(
        &format!("{V3}/profile/{}/displayname", enc(&id)),
        Some(&token),
        json!({ "displayname": "Visitor" }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        s.post(&format!("{V3}/keys/query"), Some(&token), json!({ "device_keys": { &id: [] } }));
    assert_eq!(status, 200, "{body}");
    // Refused: making rooms, account settings, directory, pushers.
    let refused = [
        s.post(&format!("{V3}/createRoom"), Some(&token), json!({})),
        s.post(&format!("{V3}/account/password"), Some(&token), json!({ "new_password": "x".repeat(12) })),
        s.post(&format!("{V3}/user_directory/search"), Some(&token), json!({ "search_term": "a" })),
        s.post(&format!("{V3}/pushers/set"), Some(&token), json!({})),
        s.get(&format!("{V3}/pushers"), Some(&token)),
        s.post(&format!("{V3}/user/{}/openid/request_token", enc(&id)), Some(&token), json!({})),
    ];
    for got in &refused {
        assert_error(got, 403, "M_GUEST_ACCESS_FORBIDDEN");
    }
    // A guest token is a token: without one the answer is still 401.
    assert_error(&s.get(&format!("{V3}/devices"), None), 401, "M_MISSING_TOKEN");
}

#[test]
fn guests_join_where_guest_access_allows_and_leave_when_it_stops() {
    let s = guest_server();
    let alice = s.user("alice", PW);
    let (gid, gtoken) = guest(&s);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    // public_chat sets guest_access forbidden: the guest may not join.
    let join = |token: &str| s.post(&room_path(&room, "join"), Some(token), json!({}));
    assert_error(&join(&gtoken), 403, "M_GUEST_ACCESS_FORBIDDEN");
    assert_error(
        &s.post(&format!("{V3}/join/{}", enc(&room)), Some(&gtoken), json!({})),
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );

    set_guest_access(&s, &alice.token, &room, "can_join");
    let before = send_text(&s, &alice.token, &room, "t1", "welcome");
    let (status, body) = join(&gtoken);
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership(&s, &alice.token, &room, &gid), "join");
    // A guest sends messages, and nothing else.
    let mine = send_text(&s, &gtoken, &room, "g1", "hello from a guest");
    let got = s.put(&room_path(&room, "send/m.reaction/g2"), Some(&gtoken), json!({}));
    assert_error(&got, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let got = s.put(&room_path(&room, "state/m.room.topic/"), Some(&gtoken), json!({ "topic": "x" }));
    assert_error(&got, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let got = s.post(&room_path(&room, "invite"), Some(&gtoken), json!({ "user_id": alice.id }));
    assert_error(&got, 403, "M_GUEST_ACCESS_FORBIDDEN");
    // It reads the room like a member.
    let (status, page) = s.get(&room_path(&room, "messages?dir=b&limit=10"), Some(&gtoken));
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert!(ids.contains(&before.as_str()) && ids.contains(&mine.as_str()), "{ids:?}");
    let (status, sync) = s.get(&format!("{V3}/sync?timeout=0"), Some(&gtoken));
    assert_eq!(status, 200, "{sync}");
    assert!(sync["rooms"]["join"].get(&room).is_some(), "{sync}");
    let since = sync["next_batch"].as_str().unwrap().to_owned();

    // The room closes to guests: the guest's membership becomes leave.
    set_guest_access(&s, &alice.token, &room, "forbidden");
    assert_eq!(membership(&s, &alice.token, &room, &gid), "leave");
    let (status, sync) = s.get(&format!("{V3}/sync?timeout=0&since={since}"), Some(&gtoken));
    assert_eq!(status, 200, "{sync}");
    assert!(sync["rooms"]["leave"].get(&room).is_some(), "{sync}");
    assert_error(&join(&gtoken), 403, "M_GUEST_ACCESS_FORBIDDEN");
    // Full members stay.
    assert_eq!(membership(&s, &alice.token, &room, &alice.id), "join");
}

#[test]
fn a_guest_upgrades_to_a_full_account_under_its_own_id() {
    let s = guest_server();
    let alice = s.user("alice", PW);
    let (gid, gtoken) = guest(&s);
    let localpart = gid.trim_start_matches('@').split(':').next().unwrap().to_owned();
    let (status, body) = s.put(
        &format!("{V3}/profile/{}/displayname", enc(&gid)),
        Some(&gtoken),
        json!({ "displayname": "Visitor" }),
    );
    assert_eq!(status, 200, "{body}");

    let register = |body: Value| s.post(&format!("{V3}/register"), None, body);
    // Another name than its own, or a token that is not a guest's, is refused.
    let got = register(json!({ "guest_access_token": gtoken, "username": "someone", "password": PW }));
    assert_error(&got, 403, "M_FORBIDDEN");
    let got = register(json!({ "guest_access_token": alice.token, "password": PW }));
    assert_error(&got, 403, "M_FORBIDDEN");
    assert_error(
        &register(json!({ "guest_access_token": "nonsense", "password": PW })),
        401,
        "M_UNKNOWN_TOKEN",
    );

    // The ordinary flow, with the guest's token and its localpart.
    let body = json!({ "guest_access_token": gtoken, "username": localpart, "password": PW });
    let (status, first) = register(body.clone());
    assert_eq!(status, 401, "{first}");
    let mut body = body;
    body["auth"] = json!({ "type": "m.login.dummy", "session": first["session"] });
    let (status, done) = register(body);
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["user_id"], gid.as_str());
    let token = done["access_token"].as_str().unwrap().to_owned();
    let (_, who) = s.get(&format!("{V3}/account/whoami"), Some(&token));
    assert_eq!(who["is_guest"], false, "{who}");
    // Now a full account: rooms, password login; the guest's name kept.
    create_room(&s, &token, json!({}));
    let (_, who) = s.get(&format!("{V3}/account/whoami"), Some(&gtoken));
    assert_eq!(who["is_guest"], false, "the guest's own token now speaks for a full account: {who}");
    assert!(s.login(&localpart, PW).starts_with("hth_"));
    let (status, name) = s.get(&format!("{V3}/profile/{}/displayname", enc(&gid)), None);
    assert_eq!((status, name["displayname"].as_str()), (200, Some("Visitor")));
    // It upgrades once.
    let got = register(json!({ "guest_access_token": gtoken, "password": PW }));
    assert_error(&got, 403, "M_FORBIDDEN");
}
