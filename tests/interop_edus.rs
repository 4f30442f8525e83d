//! Typing, receipts and presence against the reference server (issue
//! 18): a real Synapse (tests/common/synapse.rs, presence on in its test
//! configuration) joined to a room on a Hearth; each kind both ways.

mod common;

use common::ca::TestCa;
use common::fed::Peer;
use common::synapse::Synapse;
use common::{create_room, enc, say, wait_until, TempDir, User, V3};
use serde_json::{json, Value};

const PW: &str = "interop-edus-password";

/// A Hearth with hal in a public room of his that Synapse's sam joined.
struct Bed {
    _dir: TempDir,
    hearth: Peer,
    synapse: Synapse,
    hal: User,
    sam: String,
    sam_token: String,
    room: String,
}

fn bed() -> Bed {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let hal = hearth.server.user("hal", PW);
    let room = create_room(&hearth.server, &hal.token, json!({ "preset": "public_chat" }));
    let (sam, sam_token) = synapse.register("sam", PW);
    let (status, r) = synapse.post(
        &format!("{V3}/join/{}?server_name={}", enc(&room), enc(&hearth.name)),
        Some(&sam_token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}\n{}\n{}", synapse.log_tail(80), hearth.server.log_text());
    Bed { _dir: dir, hearth, synapse, hal, sam, sam_token, room }
}

/// The room's ephemeral events of a type in a sync answer.
fn of_kind(sync: &Value, room: &str, kind: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|es| es.iter().filter(|e| e["type"] == kind).cloned().collect())
        .unwrap_or_default()
}

fn typers_in(sync: &Value, room: &str) -> Vec<String> {
    of_kind(sync, room, "m.typing")
        .iter()
        .flat_map(|e| e["content"]["user_ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

/// Whether a sync answer has `user`'s `m.read` receipt at `event_id`, and
/// its data.
fn receipt_in(sync: &Value, room: &str, event_id: &str, user: &str) -> Option<Value> {
    of_kind(sync, room, "m.receipt")
        .iter()
        .map(|e| e["content"][event_id]["m.read"][user].clone())
        .find(|d| d.is_object())
}

/// Synapse's initial sync of sam (no long-poll).
fn synapse_sync(b: &Bed) -> Value {
    let (status, r) = b.synapse.get(&format!("{V3}/sync?timeout=0"), Some(&b.sam_token));
    assert_eq!(status, 200, "{r}");
    r
}

fn hearth_sync(b: &Bed) -> Value {
    common::sync(&b.hearth.server, &b.hal.token, "")
}

/// Sam's sync followed from a first token: incremental syncs carry
/// `m.typing` only when the typers changed, so the last one seen holds.
struct Follow<'b> {
    b: &'b Bed,
    since: String,
    typers: Vec<String>,
}

impl<'b> Follow<'b> {
    fn new(b: &'b Bed) -> Follow<'b> {
        let since = synapse_sync(b)["next_batch"].as_str().expect("next_batch").to_owned();
        Follow { b, since, typers: Vec::new() }
    }

    /// The typers as of now (the last `m.typing` seen wins).
    fn typers(&mut self) -> Vec<String> {
        let path = format!("{V3}/sync?timeout=0&since={}", enc(&self.since));
        let (status, r) = self.b.synapse.get(&path, Some(&self.b.sam_token));
        assert_eq!(status, 200, "{r}");
        if !of_kind(&r, &self.b.room, "m.typing").is_empty() {
            self.typers = typers_in(&r, &self.b.room);
        }
        self.since = r["next_batch"].as_str().expect("next_batch").to_owned();
        self.typers.clone()
    }
}

#[test]
fn typing_crosses_between_hearth_and_synapse() {
    let b = bed();
    let room = b.room.as_str();
    let mut sam_sees = Follow::new(&b);

    // Hearth → Synapse: start, then stop.
    let path = format!("{V3}/rooms/{}/typing/{}", enc(room), enc(&b.hal.id));
    let (status, r) =
        b.hearth.server.put(&path, Some(&b.hal.token), json!({ "typing": true, "timeout": 20_000 }));
    assert_eq!(status, 200, "{r}");
    wait_until(&b.hearth.server, "hal's typing reaches Synapse", || sam_sees.typers() == [b.hal.id.clone()]);
    let (status, _) = b.hearth.server.put(&path, Some(&b.hal.token), json!({ "typing": false }));
    assert_eq!(status, 200);
    wait_until(&b.hearth.server, "hal's stop reaches Synapse", || sam_sees.typers().is_empty());
    // A notice that runs out on Hearth without a stop: Hearth tells
    // Synapse, which would otherwise hold it a minute (past this wait).
    let (status, _) =
        b.hearth.server.put(&path, Some(&b.hal.token), json!({ "typing": true, "timeout": 1_500 }));
    assert_eq!(status, 200);
    wait_until(&b.hearth.server, "hal's short typing reaches Synapse", || {
        sam_sees.typers() == [b.hal.id.clone()]
    });
    wait_until(&b.hearth.server, "hal's typing runs out on Synapse too", || sam_sees.typers().is_empty());

    // Synapse → Hearth: start, then stop.
    let path = format!("{V3}/rooms/{}/typing/{}", enc(room), enc(&b.sam));
    let (status, r) = b.synapse.put(&path, Some(&b.sam_token), json!({ "typing": true, "timeout": 20_000 }));
    assert_eq!(status, 200, "{r}");
    wait_until(&b.hearth.server, "sam's typing reaches Hearth", || {
        typers_in(&hearth_sync(&b), room) == [b.sam.clone()]
    });
    let (status, _) = b.synapse.put(&path, Some(&b.sam_token), json!({ "typing": false }));
    assert_eq!(status, 200);
    wait_until(&b.hearth.server, "sam's stop reaches Hearth", || {
        typers_in(&hearth_sync(&b), room).is_empty()
    });
}

#[test]
fn receipts_cross_between_hearth_and_synapse() {
    let b = bed();
    let room = b.room.as_str();
    let from_hal = say(&b.hearth.server, &b.hal.token, room, "read me, sam");
    let path = format!("{V3}/rooms/{}/send/m.room.message/t1", enc(room));
    let (status, r) =
        b.synapse.put(&path, Some(&b.sam_token), json!({ "msgtype": "m.text", "body": "read me, hal" }));
    assert_eq!(status, 200, "{r}");
    let from_sam = r["event_id"].as_str().expect("event_id").to_owned();
    wait_until(&b.hearth.server, "sam's message reaches Hearth", || {
        let path = format!("{V3}/rooms/{}/event/{}", enc(room), enc(&from_sam));
        b.hearth.server.get(&path, Some(&b.hal.token)).0 == 200
    });

    wait_until(&b.hearth.server, "hal's message reaches Synapse", || {
        let path = format!("{V3}/rooms/{}/event/{}", enc(room), enc(&from_hal));
        b.synapse.get(&path, Some(&b.sam_token)).0 == 200
    });

    // Hearth → Synapse, threaded on the main timeline.
    let path = format!("{V3}/rooms/{}/receipt/m.read/{}", enc(room), enc(&from_sam));
    let (status, r) = b.hearth.server.post(&path, Some(&b.hal.token), json!({ "thread_id": "main" }));
    assert_eq!(status, 200, "{r}");
    wait_until(&b.hearth.server, "hal's receipt reaches Synapse", || {
        receipt_in(&synapse_sync(&b), room, &from_sam, &b.hal.id).is_some_and(|d| d["thread_id"] == "main")
    });

    // Synapse → Hearth.
    let path = format!("{V3}/rooms/{}/receipt/m.read/{}", enc(room), enc(&from_hal));
    let (status, r) = b.synapse.post(&path, Some(&b.sam_token), json!({}));
    assert_eq!(status, 200, "{r}\n{}", b.synapse.log_tail(40));
    wait_until(&b.hearth.server, "sam's receipt reaches Hearth", || {
        receipt_in(&hearth_sync(&b), room, &from_hal, &b.sam).is_some_and(|d| d["ts"].is_i64())
    });
}

#[test]
fn presence_crosses_between_hearth_and_synapse() {
    let b = bed();

    // Synapse → Hearth.
    let path = format!("{V3}/presence/{}/status", enc(&b.sam));
    let (status, r) =
        b.synapse.put(&path, Some(&b.sam_token), json!({ "presence": "online", "status_msg": "on synapse" }));
    assert_eq!(status, 200, "{r}");
    wait_until(&b.hearth.server, "sam's presence reaches Hearth", || {
        let (_, p) = b.hearth.server.get(&path, Some(&b.hal.token));
        p["presence"] == "online" && p["status_msg"] == "on synapse"
    });

    // Hearth → Synapse.
    let path = format!("{V3}/presence/{}/status", enc(&b.hal.id));
    let (status, r) = b.hearth.server.put(
        &path,
        Some(&b.hal.token),
        json!({ "presence": "online", "status_msg": "on hearth" }),
    );
    assert_eq!(status, 200, "{r}");
    wait_until(&b.hearth.server, "hal's presence reaches Synapse", || {
        let (_, p) = b.synapse.get(&path, Some(&b.sam_token));
        p["presence"] == "online" && p["status_msg"] == "on hearth"
    });
}
