//! Push rules, notifications, unread counts and push gateways through the
//! real server (issue 7): the default ruleset's shape, what notifies and
//! what highlights, rule edits and their order, counts and receipts, and a
//! local push gateway that receives pushes and rejects pushkeys.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    assert_error, enc, join, public_room, room_path, send_message, sync, sync_since, text, wait_until,
    Server, User, V3,
};
use serde_json::{json, Value};

const PW: &str = "push-test-password";
/// How long a push may take to reach the test gateway.
const PUSH_WAIT: Duration = Duration::from_secs(20);
/// Lets the server push to the gateway on 127.0.0.1 over plain HTTP.
const ALLOW_PRIVATE: (&str, &str) = ("HEARTH_OUTBOUND_ALLOW_PRIVATE", "true");

#[track_caller]
fn notifications(s: &Server, who: &User, query: &str) -> Vec<Value> {
    let (status, r) = s.get(&format!("{V3}/notifications{query}"), Some(&who.token));
    assert_eq!(status, 200, "notifications: {r}");
    r["notifications"].as_array().expect("notifications").clone()
}

/// The notification for an event, if any.
fn notification_for(list: &[Value], event_id: &str) -> Option<Value> {
    list.iter().find(|n| n["event"]["event_id"] == event_id).cloned()
}

fn is_highlight(n: &Value) -> bool {
    n["actions"].as_array().is_some_and(|a| {
        a.iter().any(|x| x["set_tweak"] == "highlight" && (x.get("value").is_none() || x["value"] == true))
    })
}

#[track_caller]
fn receipt(s: &Server, who: &User, room: &str, kind: &str, event_id: &str) {
    let (status, r) =
        s.post(&room_path(room, &format!("receipt/{kind}/{}", enc(event_id))), Some(&who.token), json!({}));
    assert_eq!(status, 200, "receipt: {r}");
}

fn rule_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list of rules")
        .iter()
        .map(|r| r["rule_id"].as_str().expect("rule_id").to_owned())
        .collect()
}

fn rules_path(rest: &str) -> String {
    format!("{V3}/pushrules/global/{rest}")
}

// ------------------------------------------------------------ the gateway

/// A push gateway on 127.0.0.1: records each POSTed body and answers
/// `{"rejected": [...]}` with the pushkeys it is told to reject.
struct Gateway {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
    reject: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::on(TcpListener::bind("127.0.0.1:0").expect("binding the gateway"))
    }

    fn on(listener: TcpListener) -> Gateway {
        let port = listener.local_addr().expect("gateway address").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let reject = Arc::new(Mutex::new(Vec::<String>::new()));
        let (b, r) = (bodies.clone(), reject.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = serve_one(stream, &b, &r);
            }
        });
        Gateway { port, bodies, reject }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/_matrix/push/v1/notify", self.port)
    }

    /// Waits until at least `n` pushes arrived; returns them all.
    #[track_caller]
    fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + PUSH_WAIT;
        loop {
            let got = self.bodies.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "the gateway got {} pushes, expected {n}", got.len());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_one(
    stream: TcpStream,
    bodies: &Mutex<Vec<Value>>,
    reject: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert!(request_line.starts_with("POST /_matrix/push/v1/notify "), "{request_line}");
    bodies.lock().unwrap().push(value);
    let answer = json!({ "rejected": *reject.lock().unwrap() }).to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    stream.flush()
}

#[track_caller]
fn set_pusher(s: &Server, who: &User, pushkey: &str, data: Value) {
    let (status, r) = s.post(
        &format!("{V3}/pushers/set"),
        Some(&who.token),
        json!({
            "kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
            "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
            "data": data,
        }),
    );
    assert_eq!(status, 200, "pushers/set: {r}");
}

#[track_caller]
fn pushers(s: &Server, who: &User) -> Vec<Value> {
    let (status, r) = s.get(&format!("{V3}/pushers"), Some(&who.token));
    assert_eq!(status, 200, "pushers: {r}");
    r["pushers"].as_array().expect("pushers").clone()
}

// ------------------------------------------------------------------ tests

#[test]
fn default_ruleset_has_the_spec_shape() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let (status, all) = s.get(&format!("{V3}/pushrules/"), Some(&alice.token));
    assert_eq!(status, 200, "{all}");
    let global = &all["global"];
    assert_eq!(
        rule_ids(&global["override"]),
        [
            ".m.rule.master",
            ".m.rule.suppress_notices",
            ".m.rule.invite_for_me",
            ".m.rule.member_event",
            ".m.rule.is_user_mention",
            ".m.rule.contains_display_name",
            ".m.rule.is_room_mention",
            ".m.rule.roomnotif",
            ".m.rule.tombstone",
            ".m.rule.reaction",
            ".m.rule.room.server_acl",
            ".m.rule.suppress_edits",
        ]
    );
    assert_eq!(rule_ids(&global["content"]), [".m.rule.contains_user_name"]);
    assert_eq!(global["room"], json!([]));
    assert_eq!(global["sender"], json!([]));
    assert_eq!(
        rule_ids(&global["underride"]),
        [
            ".m.rule.call",
            ".m.rule.encrypted_room_one_to_one",
            ".m.rule.room_one_to_one",
            ".m.rule.message",
            ".m.rule.encrypted",
        ]
    );
    for kind in ["override", "content", "underride"] {
        for rule in global[kind].as_array().unwrap() {
            assert_eq!(rule["default"], true, "{rule}");
            assert!(rule["enabled"].is_boolean() && rule["actions"].is_array(), "{rule}");
            assert_eq!(rule.get("conditions").is_some(), kind != "content", "{rule}");
        }
    }
    let master = &global["override"][0];
    assert_eq!(
        master,
        &json!({ "rule_id": ".m.rule.master", "default": true, "enabled": false, "conditions": [], "actions": [] })
    );
    let invite = &global["override"][2];
    assert_eq!(
        invite["conditions"][2],
        json!({ "kind": "event_match", "key": "state_key", "pattern": alice.id })
    );
    assert_eq!(invite["actions"], json!(["notify", { "set_tweak": "sound", "value": "default" }]));
    let mention = &global["override"][4];
    assert_eq!(
        mention["conditions"],
        json!([{ "kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": alice.id }])
    );
    assert_eq!(global["content"][0]["pattern"], "alice");
    assert_eq!(global["underride"][3]["actions"], json!(["notify"]));

    // The same ruleset under /pushrules/global/, one kind, one rule.
    let (status, g) = s.get(&format!("{V3}/pushrules/global/"), Some(&alice.token));
    assert_eq!((status, &g), (200, global));
    let (status, u) = s.get(&format!("{V3}/pushrules/global/underride"), Some(&alice.token));
    assert_eq!((status, &u), (200, &global["underride"]));
    let (status, m) = s.get(&rules_path("underride/.m.rule.message"), Some(&alice.token));
    assert_eq!((status, &m), (200, &global["underride"][3]));
    assert_error(&s.get(&rules_path("underride/nope"), Some(&alice.token)), 404, "M_NOT_FOUND");
    assert_error(&s.get(&rules_path("sideways/nope"), Some(&alice.token)), 400, "M_INVALID_PARAM");
    assert_error(&s.get(&format!("{V3}/pushrules/"), None), 401, "M_MISSING_TOKEN");
}

#[test]
fn mentions_highlight_and_notices_are_silent() {
    let s = Server::start();
    let (alice, bob, carol) = (s.user("alice", PW), s.user("bob", PW), s.user("carol", PW));
    let (status, r) = s.put(
        &format!("{V3}/profile/{}/displayname", enc(&bob.id)),
        Some(&bob.token),
        json!({ "displayname": "Bobby Tables" }),
    );
    assert_eq!(status, 200, "{r}");
    let room = public_room(&s, &alice.token);
    join(&s, &bob.token, &room);
    join(&s, &carol.token, &room);

    let plain = send_message(&s, &alice.token, &room, text("hello everyone"));
    let by_name = send_message(&s, &alice.token, &room, text("are you there, bobby tables?"));
    let partial = send_message(&s, &alice.token, &room, text("bobby tablesXYZ is not a mention"));
    let by_localpart = send_message(&s, &alice.token, &room, text("ping bob"));
    let at_room = send_message(&s, &alice.token, &room, text("@room lunch is ready"));
    let at_room_powerless = send_message(&s, &carol.token, &room, text("@room me too"));
    let intentional = send_message(
        &s,
        &alice.token,
        &room,
        json!({ "msgtype": "m.text", "body": "hi", "m.mentions": { "user_ids": [bob.id] } }),
    );
    let no_legacy = send_message(
        &s,
        &alice.token,
        &room,
        json!({ "msgtype": "m.text", "body": "Bobby Tables", "m.mentions": {} }),
    );
    let room_mention = send_message(
        &s,
        &alice.token,
        &room,
        json!({ "msgtype": "m.text", "body": "all", "m.mentions": { "room": true } }),
    );
    let notice =
        send_message(&s, &alice.token, &room, json!({ "msgtype": "m.notice", "body": "Bobby Tables @room" }));

    let list = notifications(&s, &bob, "?limit=100");
    let highlighted = |id: &str| {
        let n = notification_for(&list, id).unwrap_or_else(|| panic!("no notification for {id}: {list:?}"));
        is_highlight(&n)
    };
    assert!(!highlighted(&plain));
    assert!(highlighted(&by_name));
    assert!(!highlighted(&partial));
    assert!(highlighted(&by_localpart));
    assert!(highlighted(&at_room));
    assert!(!highlighted(&at_room_powerless));
    assert!(highlighted(&intentional));
    assert!(!highlighted(&no_legacy));
    assert!(highlighted(&room_mention));
    assert!(notification_for(&list, &notice).is_none(), "m.notice notified");
    // The sender is never notified of their own events.
    assert!(notification_for(&notifications(&s, &alice, ""), &plain).is_none());

    // only=highlight keeps highlights; the shape is the spec's.
    let only = notifications(&s, &bob, "?only=highlight&limit=100");
    assert_eq!(only.len(), 5, "{only:?}");
    let n = &only[0];
    assert_eq!(n["room_id"], room.as_str());
    assert_eq!(n["read"], false);
    assert!(
        n["ts"].is_i64() && n["event"].get("room_id").is_none() && n["event"]["content"].is_object(),
        "{n}"
    );
}

#[test]
fn one_to_one_rooms_notify_with_sound_and_invites_notify() {
    let s = Server::start();
    let (alice, bob, carol) = (s.user("alice", PW), s.user("bob", PW), s.user("carol", PW));
    let room = public_room(&s, &alice.token);
    join(&s, &bob.token, &room);
    let one = send_message(&s, &alice.token, &room, text("just us"));
    let n = notification_for(&notifications(&s, &bob, ""), &one).expect("1:1 notification");
    assert_eq!(n["actions"], json!(["notify", { "set_tweak": "sound", "value": "default" }]));
    join(&s, &carol.token, &room);
    let group = send_message(&s, &alice.token, &room, text("now three"));
    let n = notification_for(&notifications(&s, &bob, ""), &group).expect("group notification");
    assert_eq!(n["actions"], json!(["notify"]));
    // Joins do not notify; an invite notifies its target.
    let dave = s.user("dave", PW);
    assert!(notifications(&s, &bob, "").iter().all(|n| n["event"]["type"] == "m.room.message"));
    let (status, r) = s.post(&room_path(&room, "invite"), Some(&alice.token), json!({ "user_id": dave.id }));
    assert_eq!(status, 200, "{r}");
    let list = notifications(&s, &dave, "");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["event"]["type"], "m.room.member");
    assert_eq!(list[0]["event"]["state_key"], dave.id.as_str());
}

#[test]
fn notifications_are_read_by_receipts_and_by_sending() {
    let s = Server::start();
    let (alice, bob, carol) = (s.user("alice", PW), s.user("bob", PW), s.user("carol", PW));
    let room = public_room(&s, &alice.token);
    join(&s, &bob.token, &room);
    join(&s, &carol.token, &room);
    let ids: Vec<String> =
        (0..3).map(|i| send_message(&s, &alice.token, &room, text(&format!("m{i}")))).collect();
    let read = |who: &User, id: &str| {
        notification_for(&notifications(&s, who, ""), id).expect("notification")["read"].clone()
    };
    assert_eq!(read(&bob, &ids[2]), false);
    receipt(&s, &bob, &room, "m.read", &ids[1]);
    assert_eq!((read(&bob, &ids[1]), read(&bob, &ids[2])), (json!(true), json!(false)));
    // A private receipt ahead of the public one counts.
    receipt(&s, &bob, &room, "m.read.private", &ids[2]);
    assert_eq!(read(&bob, &ids[2]), true);
    // Sending an event reads the room up to it.
    assert_eq!(read(&carol, &ids[2]), false);
    send_message(&s, &carol.token, &room, text("caught up"));
    assert_eq!(read(&carol, &ids[2]), true);
    // Pagination: newest first, next_token continues. Bob has four: the
    // three messages and carol's.
    let (status, page) = s.get(&format!("{V3}/notifications?limit=2"), Some(&bob.token));
    assert_eq!(status, 200);
    let first: Vec<&Value> =
        page["notifications"].as_array().unwrap().iter().map(|n| &n["event"]["event_id"]).collect();
    assert_eq!(first.len(), 2);
    assert_eq!(first[1], &ids[2]);
    let next = page["next_token"].as_str().expect("next_token");
    let (_, rest) = s.get(&format!("{V3}/notifications?limit=3&from={next}"), Some(&bob.token));
    let rest_ids: Vec<&Value> =
        rest["notifications"].as_array().unwrap().iter().map(|n| &n["event"]["event_id"]).collect();
    assert_eq!(rest_ids, [&ids[1], &ids[0]], "{rest}");
    assert!(rest.get("next_token").is_none(), "{rest}");
    assert_error(
        &s.get(&format!("{V3}/notifications?from=nonsense"), Some(&bob.token)),
        400,
        "M_INVALID_PARAM",
    );
}

/// Reads the counts through `/sync`'s `unread_notifications` (needs sync's
/// wiring of `storage::push::unread_counts`).
#[test]
fn sync_unread_counts_follow_messages_and_receipts() {
    let s = Server::start();
    let (alice, bob, carol) = (s.user("alice", PW), s.user("bob", PW), s.user("carol", PW));
    let room = public_room(&s, &alice.token);
    join(&s, &bob.token, &room);
    join(&s, &carol.token, &room);
    let first = sync(&s, &bob.token, "");
    let counts = |v: &Value| v["rooms"]["join"][&room]["unread_notifications"].clone();
    assert_eq!(counts(&first), json!({ "notification_count": 0, "highlight_count": 0 }));
    let since = first["next_batch"].as_str().unwrap().to_owned();
    send_message(&s, &alice.token, &room, text("one"));
    send_message(&s, &alice.token, &room, text("two"));
    let mention = send_message(&s, &alice.token, &room, text("bob, look"));
    let second = sync_since(&s, &bob.token, &since);
    assert_eq!(counts(&second), json!({ "notification_count": 3, "highlight_count": 1 }));
    let since = second["next_batch"].as_str().unwrap().to_owned();
    receipt(&s, &bob, &room, "m.read", &mention);
    let third = sync_since(&s, &bob.token, &since);
    assert_eq!(counts(&third), json!({ "notification_count": 0, "highlight_count": 0 }));
}

#[test]
fn rule_edits_order_enable_and_take_effect() {
    let s = Server::start();
    let (alice, bob) = (s.user("alice", PW), s.user("bob", PW));
    let room = public_room(&s, &alice.token);
    join(&s, &bob.token, &room);
    let since = sync(&s, &bob.token, "")["next_batch"].as_str().unwrap().to_owned();
    let put = |path: &str, body: Value| s.put(&rules_path(path), Some(&bob.token), body);

    // Ordering among the user's content rules.
    assert_eq!(put("content/a", json!({ "pattern": "apple", "actions": ["notify"] })).0, 200);
    assert_eq!(put("content/b", json!({ "pattern": "banana", "actions": ["notify"] })).0, 200);
    assert_eq!(put("content/c?after=a", json!({ "pattern": "cherry", "actions": ["notify"] })).0, 200);
    assert_eq!(put("content/d?before=b", json!({ "pattern": "date", "actions": ["notify"] })).0, 200);
    let (_, content) = s.get(&rules_path("content"), Some(&bob.token));
    assert_eq!(rule_ids(&content), ["d", "b", "a", "c", ".m.rule.contains_user_name"]);
    assert_eq!(
        content[0],
        json!({ "rule_id": "d", "default": false, "enabled": true, "pattern": "date", "actions": ["notify"] })
    );
    // Replacing keeps the place; legacy actions are stripped.
    assert_eq!(
        put("content/a", json!({ "pattern": "apricot", "actions": ["notify", "dont_notify"] })).0,
        200
    );
    let (_, a) = s.get(&rules_path("content/a"), Some(&bob.token));
    assert_eq!((a["pattern"].clone(), a["actions"].clone()), (json!("apricot"), json!(["notify"])));
    let (_, content) = s.get(&rules_path("content"), Some(&bob.token));
    assert_eq!(rule_ids(&content)[..4], ["d", "b", "a", "c"]);
    assert_eq!(s.delete(&rules_path("content/b"), Some(&bob.token), json!({})).0, 200);
    assert_error(&s.delete(&rules_path("content/b"), Some(&bob.token), json!({})), 404, "M_NOT_FOUND");

    // Refusals.
    assert_error(&put("content/.mine", json!({ "pattern": "x", "actions": [] })), 400, "M_INVALID_PARAM");
    assert_error(&put("content/x?before=nope", json!({ "pattern": "x", "actions": [] })), 400, "M_UNKNOWN");
    assert_error(&put("content/x", json!({ "actions": [] })), 400, "M_MISSING_PARAM");
    assert_error(&put("content/x", json!({ "pattern": "x" })), 400, "M_MISSING_PARAM");
    assert_error(
        &put("content/x", json!({ "pattern": "x", "actions": ["explode"] })),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(&put("room/not-a-room", json!({ "actions": [] })), 400, "M_INVALID_PARAM");
    assert_error(
        &s.delete(&rules_path("override/.m.rule.master"), Some(&bob.token), json!({})),
        400,
        "M_INVALID_PARAM",
    );

    // Enabled and actions, for own and default rules.
    let enabled =
        |path: &str| s.get(&rules_path(&format!("{path}/enabled")), Some(&bob.token)).1["enabled"].clone();
    assert_eq!(put("content/d/enabled", json!({ "enabled": false })).0, 200);
    assert_eq!(enabled("content/d"), false);
    assert_eq!(
        put(
            "underride/.m.rule.message/actions",
            json!({ "actions": ["notify", { "set_tweak": "sound", "value": "ding" }] })
        )
        .0,
        200
    );
    let (_, act) = s.get(&rules_path("underride/.m.rule.message/actions"), Some(&bob.token));
    assert_eq!(act["actions"], json!(["notify", { "set_tweak": "sound", "value": "ding" }]));
    assert_error(&put("underride/nope/enabled", json!({ "enabled": true })), 404, "M_NOT_FOUND");
    assert_error(&put("underride/.m.rule.message/enabled", json!({ "enabled": "yes" })), 400, "M_BAD_JSON");

    // The changes reach bob's devices as m.push_rules account data.
    let later = sync_since(&s, &bob.token, &since);
    let data: Vec<&Value> = later["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.push_rules")
        .collect();
    assert_eq!(data.len(), 1, "{later}");
    assert_eq!(rule_ids(&data[0]["content"]["global"]["content"])[..3], ["d", "a", "c"]);

    // Rules take effect: a sender rule silences alice, then a user
    // override beats it, then the master rule silences everything.
    let n = |id: &str| notification_for(&notifications(&s, &bob, "?limit=100"), id);
    let m1 = send_message(&s, &alice.token, &room, text("hello"));
    assert_eq!(
        n(&m1).unwrap()["actions"],
        json!(["notify", { "set_tweak": "sound", "value": "default" }]),
        "1:1 room"
    );
    assert_eq!(put(&format!("sender/{}", enc(&alice.id)), json!({ "actions": [] })).0, 200);
    let m2 = send_message(&s, &alice.token, &room, text("hello again"));
    assert!(n(&m2).is_none());
    let beer = json!({
        "conditions": [{ "kind": "event_match", "key": "content.body", "pattern": "beer" }, { "kind": "room_member_count", "is": "<=10" }],
        "actions": ["notify", { "set_tweak": "highlight" }],
    });
    assert_eq!(put("override/beer", beer).0, 200);
    let m3 = send_message(&s, &alice.token, &room, text("Beer o'clock?"));
    assert!(is_highlight(&n(&m3).expect("beer notifies")));
    assert_eq!(put("override/.m.rule.master/enabled", json!({ "enabled": true })).0, 200);
    let m4 = send_message(&s, &alice.token, &room, text("beer!"));
    assert!(n(&m4).is_none());
}

#[test]
fn pushers_are_validated_listed_and_replaced() {
    let s = Server::start();
    let (bob, carol) = (s.user("bob", PW), s.user("carol", PW));
    let set = |who: &User, body: Value| s.post(&format!("{V3}/pushers/set"), Some(&who.token), body);
    let full = |url: &str| {
        json!({
            "kind": "http", "app_id": "org.example.app", "pushkey": "KEY", "app_display_name": "Example",
            "device_display_name": "Phone", "lang": "en", "profile_tag": "tag", "data": { "url": url, "format": "event_id_only" },
        })
    };
    // Without HEARTH_OUTBOUND_ALLOW_PRIVATE: HTTPS only, public addresses only.
    assert_error(&set(&bob, full("http://push.example.org/_matrix/push/v1/notify")), 400, "M_INVALID_PARAM");
    assert_error(&set(&bob, full("https://127.0.0.1/_matrix/push/v1/notify")), 400, "M_INVALID_PARAM");
    assert_error(&set(&bob, full("https://push.example.org/notify")), 400, "M_INVALID_PARAM");
    let mut missing = full("https://push.example.org/_matrix/push/v1/notify");
    missing.as_object_mut().unwrap().remove("lang");
    assert_error(&set(&bob, missing), 400, "M_MISSING_PARAM");
    assert_error(
        &set(&bob, json!({ "kind": "email", "app_id": "m.email", "pushkey": "a@b" })),
        400,
        "M_INVALID_PARAM",
    );

    let good = full("https://push.example.org/_matrix/push/v1/notify");
    assert_eq!(set(&bob, good.clone()).0, 200);
    let list = pushers(&s, &bob);
    assert_eq!(
        list,
        [json!({
            "pushkey": "KEY", "kind": "http", "app_id": "org.example.app", "app_display_name": "Example",
            "device_display_name": "Phone", "lang": "en", "profile_tag": "tag",
            "data": { "url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only" },
        })]
    );
    // The same app and pushkey for another account takes it over...
    assert_eq!(set(&carol, good.clone()).0, 200);
    assert!(pushers(&s, &bob).is_empty());
    // ...unless appended.
    let mut appended = good.clone();
    appended["append"] = json!(true);
    assert_eq!(set(&bob, appended).0, 200);
    assert_eq!((pushers(&s, &bob).len(), pushers(&s, &carol).len()), (1, 1));
    // kind null deletes.
    let delete = json!({ "kind": null, "app_id": "org.example.app", "pushkey": "KEY" });
    assert_eq!(set(&bob, delete).0, 200);
    assert!(pushers(&s, &bob).is_empty());
}

#[test]
fn gateway_receives_pushes_and_rejection_removes_the_pusher() {
    let s = Server::start_with(&[], &[ALLOW_PRIVATE]);
    let gateway = Gateway::start();
    let (alice, bob, carol) = (s.user("alice", PW), s.user("bob", PW), s.user("carol", PW));
    let (status, r) = s.put(
        &format!("{V3}/profile/{}/displayname", enc(&alice.id)),
        Some(&alice.token),
        json!({ "displayname": "Alice" }),
    );
    assert_eq!(status, 200, "{r}");
    let room = public_room(&s, &alice.token);
    let (status, r) =
        s.put(&room_path(&room, "state/m.room.name/"), Some(&alice.token), json!({ "name": "Kitchen" }));
    assert_eq!(status, 200, "{r}");
    join(&s, &bob.token, &room);
    join(&s, &carol.token, &room);
    set_pusher(&s, &bob, "BOBKEY", json!({ "url": gateway.url(), "custom": "kept" }));
    set_pusher(&s, &carol, "CAROLKEY", json!({ "url": gateway.url(), "format": "event_id_only" }));

    let event_id = send_message(&s, &alice.token, &room, text("bob: dinner is ready"));
    let got = gateway.wait_for(2);
    let by_key = |key: &str| {
        got.iter()
            .find(|b| b["notification"]["devices"][0]["pushkey"] == key)
            .unwrap_or_else(|| panic!("no push for {key}: {got:?}"))["notification"]
            .clone()
    };
    let full = by_key("BOBKEY");
    assert_eq!(full["event_id"], event_id.as_str());
    assert_eq!(full["room_id"], room.as_str());
    assert_eq!(full["type"], "m.room.message");
    assert_eq!(full["sender"], alice.id.as_str());
    assert_eq!(full["sender_display_name"], "Alice");
    assert_eq!(full["room_name"], "Kitchen");
    assert_eq!(full["content"], text("bob: dinner is ready"));
    assert_eq!(full["prio"], "high");
    assert_eq!(full["counts"], json!({ "unread": 1 }));
    let device = &full["devices"][0];
    assert_eq!(device["app_id"], "org.example.app");
    assert_eq!(device["data"], json!({ "custom": "kept" }), "the url stays home");
    assert_eq!(device["tweaks"], json!({ "sound": "default", "highlight": true }));
    assert!(device["pushkey_ts"].is_i64());
    // event_id_only: no content, sender or type.
    let slim = by_key("CAROLKEY");
    assert_eq!(slim["event_id"], event_id.as_str());
    assert_eq!(slim["room_id"], room.as_str());
    assert!(
        slim.get("content").is_none() && slim.get("sender").is_none() && slim.get("type").is_none(),
        "{slim}"
    );
    assert_eq!(slim["devices"][0]["data"], json!({ "format": "event_id_only" }));
    assert_eq!(slim["devices"][0]["tweaks"], json!({}));
    assert_eq!(slim["prio"], "low");

    // The gateway rejects bob's pushkey: his pusher goes, carol's stays.
    gateway.reject.lock().unwrap().push("BOBKEY".into());
    send_message(&s, &alice.token, &room, text("again"));
    gateway.wait_for(4);
    let deadline = Instant::now() + PUSH_WAIT;
    while !pushers(&s, &bob).is_empty() {
        assert!(Instant::now() < deadline, "bob's rejected pusher was not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pushers(&s, &carol).len(), 1);
    // The sender's own messages are never pushed to them.
    set_pusher(&s, &alice, "ALICEKEY", json!({ "url": gateway.url() }));
    gateway.reject.lock().unwrap().clear();
    send_message(&s, &alice.token, &room, text("third"));
    let got = gateway.wait_for(5);
    // Every queued push done (a row is deleted only after its gateway
    // answered): a push to alice, had one been queued, has arrived by now.
    wait_until(&s, "the push outbox drained", || outbox_len(&s) == 0);
    let got_now = gateway.bodies.lock().unwrap().clone();
    assert_eq!(got_now.len(), got.len(), "only carol's push: {got_now:?}");
    assert!(got_now.iter().all(|b| b["notification"]["devices"][0]["pushkey"] != "ALICEKEY"));
}

#[test]
fn a_pending_push_survives_a_gateway_outage_and_a_restart() {
    let mut s = Server::start_with(&[], &[ALLOW_PRIVATE]);
    // A port with nothing listening on it yet.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/_matrix/push/v1/notify");
    let (alice, bob) = (s.user("alice", PW), s.user("bob", PW));
    let room = public_room(&s, &alice.token);
    join(&s, &bob.token, &room);
    set_pusher(&s, &bob, "BOBKEY", json!({ "url": url }));
    let event_id = send_message(&s, &alice.token, &room, text("are you up?"));
    // The first attempt fails; the push stays queued through a crash.
    wait_until(&s, "a failed push attempt", || {
        let db = rusqlite::Connection::open_with_flags(s.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening the database");
        let attempts: i64 = db
            .query_row("SELECT COALESCE(MAX(attempts), 0) FROM push_outbox", [], |r| r.get(0))
            .expect("reading the push outbox");
        attempts > 0
    });
    s.kill9();
    let gateway = Gateway::on(TcpListener::bind(("127.0.0.1", port)).expect("rebinding the gateway port"));
    s.restart();
    let got = gateway.wait_for(1);
    assert_eq!(got[0]["notification"]["event_id"], event_id.as_str());
    // Delivered once: its row is gone once the gateway answered, so
    // nothing is left to send it again.
    wait_until(&s, "the delivered push removed from the outbox", || outbox_len(&s) == 0);
    assert_eq!(gateway.bodies.lock().unwrap().len(), 1);
}

/// Pushes still queued, read from the database file (read-only).
fn outbox_len(s: &Server) -> i64 {
    let db = rusqlite::Connection::open_with_flags(s.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("opening the database");
    db.query_row("SELECT count(*) FROM push_outbox", [], |r| r.get(0)).expect("reading the push outbox")
}

/// Logs `user` in on a new device; the session as a `User`.
fn device_of(s: &Server, user: &User) -> User {
    let localpart = user.id.trim_start_matches('@').split(':').next().expect("localpart");
    User { id: user.id.clone(), token: s.login(localpart, PW) }
}

fn pushkeys(s: &Server, who: &User) -> Vec<String> {
    let mut keys: Vec<String> =
        pushers(s, who).iter().map(|p| p["pushkey"].as_str().expect("pushkey").to_owned()).collect();
    keys.sort();
    keys
}

/// Issue 12: a pusher belongs to the device that set it. Signing the
/// other devices out with a password change takes their pushers too, so a
/// lost phone stops receiving notifications; logging a device out takes
/// its own.
#[test]
fn signing_devices_out_removes_their_pushers() {
    let s = Server::start();
    let main = s.user("alice", PW);
    let (phone, laptop) = (device_of(&s, &main), device_of(&s, &main));
    let data = json!({ "url": "https://push.example.org/_matrix/push/v1/notify" });
    set_pusher(&s, &main, "main-key", data.clone());
    set_pusher(&s, &phone, "phone-key", data.clone());
    set_pusher(&s, &laptop, "laptop-key", data.clone());
    assert_eq!(pushkeys(&s, &main), ["laptop-key", "main-key", "phone-key"]);

    // Logging out the laptop takes its pusher only.
    assert_eq!(s.post(&format!("{V3}/logout"), Some(&laptop.token), json!({})).0, 200);
    assert_eq!(pushkeys(&s, &main), ["main-key", "phone-key"]);

    // A password change that keeps the other devices keeps their pushers.
    let path = format!("{V3}/account/password");
    let change = |new: &str, keep: Option<bool>| {
        let mut body = json!({ "new_password": new });
        if let Some(keep) = keep {
            body["logout_devices"] = json!(!keep);
        }
        let (status, uia) = s.post(&path, Some(&main.token), body.clone());
        assert_eq!(status, 401, "{uia}");
        body["auth"] = common::password_auth(&main.id, PW, uia["session"].as_str().expect("session"));
        let (status, r) = s.post(&path, Some(&main.token), body);
        assert_eq!(status, 200, "{r}");
    };
    change(PW, Some(true));
    assert_eq!(pushkeys(&s, &main), ["main-key", "phone-key"]);
    // By default the others are signed out, pushers and all.
    change(PW, None);
    assert_eq!(pushkeys(&s, &main), ["main-key"]);
    assert_error(&s.get(&format!("{V3}/account/whoami"), Some(&phone.token)), 401, "M_UNKNOWN_TOKEN");

    // A device that sets an existing pusher again takes it over.
    let tablet = device_of(&s, &main);
    set_pusher(&s, &tablet, "main-key", data);
    assert_eq!(s.post(&format!("{V3}/logout"), Some(&tablet.token), json!({})).0, 200);
    assert!(pushkeys(&s, &main).is_empty());
}

/// Issue 12: an event from a user the recipient ignores
/// (`m.ignored_user_list`) makes no notification and no push for them.
#[test]
fn ignored_senders_neither_notify_nor_push() {
    let s = Server::start_with(&[], &[ALLOW_PRIVATE]);
    let gateway = Gateway::start();
    let (alice, bob, carol) = (s.user("alice", PW), s.user("bob", PW), s.user("carol", PW));
    let room = public_room(&s, &alice.token);
    join(&s, &bob.token, &room);
    join(&s, &carol.token, &room);
    set_pusher(&s, &bob, "BOBKEY", json!({ "url": gateway.url(), "format": "event_id_only" }));
    let (status, r) = s.put(
        &format!("{V3}/user/{}/account_data/m.ignored_user_list", enc(&bob.id)),
        Some(&bob.token),
        json!({ "ignored_users": { alice.id.clone(): {} } }),
    );
    assert_eq!(status, 200, "{r}");

    let from_alice = send_message(&s, &alice.token, &room, text("bob: hello"));
    let from_carol = send_message(&s, &carol.token, &room, text("bob: hi"));
    let list = notifications(&s, &bob, "");
    assert!(notification_for(&list, &from_alice).is_none(), "{list:?}");
    assert!(notification_for(&list, &from_carol).is_some(), "{list:?}");
    // Carol, who ignores nobody, is notified of alice's mention-less
    // message as usual.
    assert!(notification_for(&notifications(&s, &carol, ""), &from_alice).is_some());
    // The outbox is drained in order: carol's push arrives, alice's never
    // was queued.
    let got = gateway.wait_for(1);
    let pushed: Vec<&Value> = got.iter().map(|b| &b["notification"]["event_id"]).collect();
    assert_eq!(pushed, [&json!(from_carol)], "{got:?}");
}
