//! Relations over federation against the reference server (issue 19): in
//! a room on Synapse joined by a Hearth user, an edit made on Synapse and a
//! reaction and thread reply made on Hearth reach the other side, and both
//! servers list them (`/relations`, `/threads`) and bundle them
//! (`unsigned.m.relations`) alike; a reaction redacted on Hearth leaves
//! both lists.

mod common;

use common::ca::TestCa;
use common::fed::Peer;
use common::synapse::Synapse;
use common::{enc, wait_until, TempDir, V3};
use serde_json::{json, Value};

const PW: &str = "interop-relations-password";
const V1: &str = "/_matrix/client/v1";

fn ids(answer: &Value) -> Vec<String> {
    answer["chunk"]
        .as_array()
        .map(|c| c.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The keys of an object, sorted (to compare shapes across servers).
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

#[test]
fn relations_made_on_either_side_are_listed_and_bundled_alike() {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let (_sam, sam_token) = synapse.register("sam", PW);
    let (status, r) =
        synapse.post(&format!("{V3}/createRoom"), Some(&sam_token), json!({ "preset": "public_chat" }));
    assert_eq!(status, 200, "{r}");
    let room = r["room_id"].as_str().expect("room_id").to_owned();
    let hal = hearth.server.user("hal", PW);
    let (status, r) = hearth.server.post(
        &format!("{V3}/join/{}?server_name={}", enc(&room), enc(synapse.server_name())),
        Some(&hal.token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}\n{}", synapse.log_tail(40));
    let send_path = |kind: &str, txn: &str| format!("{V3}/rooms/{}/send/{kind}/{txn}", enc(&room));

    // Synapse: the root and, later, its edit.
    let (status, r) = synapse.put(
        &send_path("m.room.message", "s0"),
        Some(&sam_token),
        json!({ "msgtype": "m.text", "body": "helo" }),
    );
    assert_eq!(status, 200, "{r}");
    let root = r["event_id"].as_str().unwrap().to_owned();
    let on_hearth = |event: &str| {
        let path = format!("{V3}/rooms/{}/event/{}", enc(&room), enc(event));
        hearth.server.get(&path, Some(&hal.token))
    };
    wait_until(&hearth.server, "the root reaches Hearth", || on_hearth(&root).0 == 200);

    // Hearth: a reaction (a duplicate refused) and a thread reply.
    let reaction = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" } });
    let (status, r) = hearth.server.put(&send_path("m.reaction", "h0"), Some(&hal.token), reaction.clone());
    assert_eq!(status, 200, "{r}");
    let reaction_id = r["event_id"].as_str().unwrap().to_owned();
    let dup = hearth.server.put(&send_path("m.reaction", "h1"), Some(&hal.token), reaction.clone());
    common::assert_error(&dup, 400, "M_DUPLICATE_ANNOTATION");
    let (status, r) = hearth.server.put(
        &send_path("m.room.message", "h2"),
        Some(&hal.token),
        json!({ "msgtype": "m.text", "body": "in thread",
                "m.relates_to": { "rel_type": "m.thread", "event_id": root } }),
    );
    assert_eq!(status, 200, "{r}");
    let reply = r["event_id"].as_str().unwrap().to_owned();
    let (status, r) = synapse.put(
        &send_path("m.room.message", "s1"),
        Some(&sam_token),
        json!({ "msgtype": "m.text", "body": "* hello", "m.new_content": { "msgtype": "m.text", "body": "hello" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": root } }),
    );
    assert_eq!(status, 200, "{r}");
    let edit = r["event_id"].as_str().unwrap().to_owned();
    // Synapse refuses a duplicate reaction the same way.
    let (status, r) = synapse.put(&send_path("m.reaction", "s2"), Some(&sam_token), reaction.clone());
    assert_eq!(status, 200, "{r}");
    let (status, r) = synapse.put(&send_path("m.reaction", "s3"), Some(&sam_token), reaction.clone());
    assert_eq!((status, r["errcode"].as_str()), (400, Some("M_DUPLICATE_ANNOTATION")), "{r}");

    let relations = |on_synapse: bool, rest: &str| -> Value {
        let path = format!("{V1}/rooms/{}/relations/{}{rest}", enc(&room), enc(&root));
        let (status, r) = if on_synapse {
            synapse.get(&path, Some(&sam_token))
        } else {
            hearth.server.get(&path, Some(&hal.token))
        };
        assert_eq!(status, 200, "{r}");
        r
    };
    let bundle = |on_synapse: bool| -> Value {
        let path = format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&root));
        let (_, r) = if on_synapse {
            synapse.get(&path, Some(&sam_token))
        } else {
            hearth.server.get(&path, Some(&hal.token))
        };
        r["unsigned"]["m.relations"].clone()
    };
    wait_until(&hearth.server, "every relation on both servers", || {
        [true, false].iter().all(|&side| {
            let b = bundle(side);
            b["m.replace"]["event_id"] == json!(edit)
                && b["m.thread"]["latest_event"]["event_id"] == json!(reply)
                && ids(&relations(side, "/m.annotation?limit=10")).len() == 2
        })
    });
    for side in [true, false] {
        let b = bundle(side);
        assert_eq!(keys(&b), ["m.replace", "m.thread"], "side synapse={side}: {b}");
        assert_eq!(keys(&b["m.thread"]), ["count", "current_user_participated", "latest_event"], "{b}");
        assert_eq!(b["m.thread"]["count"], 1, "{b}");
        assert_eq!(ids(&relations(side, "/m.thread")), std::slice::from_ref(&reply));
        let threads = {
            let path = format!("{V1}/rooms/{}/threads", enc(&room));
            if side {
                synapse.get(&path, Some(&sam_token)).1
            } else {
                hearth.server.get(&path, Some(&hal.token)).1
            }
        };
        assert_eq!(ids(&threads), std::slice::from_ref(&root), "{threads}");
    }
    // hal took part in the thread; sam wrote its root: both participated.
    assert_eq!(bundle(false)["m.thread"]["current_user_participated"], true);
    assert_eq!(bundle(true)["m.thread"]["current_user_participated"], true);

    // Redacted on Hearth, the reaction leaves both lists.
    let (status, r) = hearth.server.put(
        &format!("{V3}/rooms/{}/redact/{}/h3", enc(&room), enc(&reaction_id)),
        Some(&hal.token),
        json!({}),
    );
    assert_eq!(status, 200, "{r}");
    wait_until(&hearth.server, "the redacted reaction gone on both", || {
        [true, false].iter().all(|&side| {
            let listed = ids(&relations(side, "/m.annotation?limit=10"));
            listed.len() == 1 && !listed.contains(&reaction_id)
        })
    });
}
