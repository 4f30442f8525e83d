//! Federation's queries and room-free endpoints between two Hearth
//! servers on the test bed (`common::fed`): profiles, aliases, published
//! room directories and end-to-end keys, asked by one server's clients
//! of the other server, and the federation endpoints called directly
//! with signed requests.

mod common;

use std::time::{Duration, Instant};

use common::ca::TestCa;
use common::fed::{self, Peer};
use common::synapse::Synapse;
use common::{assert_error, create_room, enc, password_login, wait_until, TempDir, User, V3};
use hearth::crypto::canonical::to_canonical_excluding;
use hearth::crypto::sign::verify_json;
use serde_json::{json, Value};
use vodozemac::olm::Account;
use vodozemac::Ed25519Keypair;

const PW: &str = "federation-queries-password";

fn bed() -> (TempDir, TestCa) {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    (dir, ca)
}

/// Two servers of the bed.
fn two() -> (TempDir, TestCa, Peer, Peer) {
    let (dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    (dir, ca, a, b)
}

fn profile_path(user_id: &str, field: &str) -> String {
    match field {
        "" => format!("{V3}/profile/{}", enc(user_id)),
        f => format!("{V3}/profile/{}/{f}", enc(user_id)),
    }
}

fn set_profile(p: &Peer, who: &User, field: &str, value: &str) {
    let (status, r) = p.server.put(&profile_path(&who.id, field), Some(&who.token), json!({ field: value }));
    assert_eq!(status, 200, "{r}");
}

/// A request to `to` signed by `from` with its real key.
fn signed(
    agent: &ureq::Agent,
    from: &Peer,
    to: &Peer,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    fed::signed(agent, &from.signing_key(), &from.name, &to.name, method, uri, body)
}

#[test]
fn profiles_both_ways_cached_briefly() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    set_profile(&b, &bob, "displayname", "Bob Builder");
    set_profile(&b, &bob, "avatar_url", "mxc://example.org/bob");
    set_profile(&a, &alice, "displayname", "Alice");

    // A's client asks for B's user, whole and field by field.
    let (status, p) = a.server.get(&profile_path(&bob.id, ""), Some(&alice.token));
    assert_eq!(status, 200, "{p}");
    assert_eq!(p, json!({ "displayname": "Bob Builder", "avatar_url": "mxc://example.org/bob" }));
    let (status, p) = a.server.get(&profile_path(&bob.id, "displayname"), Some(&alice.token));
    assert_eq!((status, p), (200, json!({ "displayname": "Bob Builder" })));
    let (status, p) = a.server.get(&profile_path(&bob.id, "avatar_url"), None);
    assert_eq!((status, p), (200, json!({ "avatar_url": "mxc://example.org/bob" })), "no token needed");

    // B's client asks for A's user, who has no avatar.
    let (status, p) = b.server.get(&profile_path(&alice.id, ""), Some(&bob.token));
    assert_eq!((status, p), (200, json!({ "displayname": "Alice" })));
    assert_error(&b.server.get(&profile_path(&alice.id, "avatar_url"), Some(&bob.token)), 404, "M_NOT_FOUND");

    // Remembered briefly: a change on B shows on A once the minute is up,
    // not at once; B itself shows it at once.
    set_profile(&b, &bob, "displayname", "Robert");
    let (_, p) = a.server.get(&profile_path(&bob.id, "displayname"), Some(&alice.token));
    assert_eq!(p, json!({ "displayname": "Bob Builder" }), "A's answer is its cached one");
    let (_, p) = b.server.get(&profile_path(&bob.id, "displayname"), None);
    assert_eq!(p, json!({ "displayname": "Robert" }));

    // An unknown user of B: B's 404 is A's.
    let nobody = format!("@nobody:{}", b.name);
    assert_error(&a.server.get(&profile_path(&nobody, ""), Some(&alice.token)), 404, "M_NOT_FOUND");
    assert_error(&a.server.get(&profile_path(&nobody, "displayname"), None), 404, "M_NOT_FOUND");
    // A remote user's profile is not A's to change (404, as before
    // federation: A holds none of theirs).
    let put = a.server.put(
        &profile_path(&bob.id, "displayname"),
        Some(&alice.token),
        json!({ "displayname": "x" }),
    );
    assert_error(&put, 404, "M_NOT_FOUND");
    assert_eq!(b.server.get(&profile_path(&bob.id, "displayname"), None).1["displayname"], "Robert");

    // A server that is down: 502, as Synapse answers.
    let down = format!("@x:127.0.0.1:{}", fed::free_port());
    assert_error(&a.server.get(&profile_path(&down, ""), Some(&alice.token)), 502, "M_UNKNOWN");
}

#[test]
fn aliases_resolve_across_servers() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let room = create_room(&b.server, &bob.token, json!({ "room_alias_name": "kitchen" }));
    let alias = format!("#kitchen:{}", b.name);
    let path = |alias: &str| format!("{V3}/directory/room/{}", enc(alias));

    let (status, r) = a.server.get(&path(&alias), Some(&alice.token));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!({ "room_id": room, "servers": [b.name] }));
    // Without a token too, as for a local alias.
    assert_eq!(a.server.get(&path(&alias), None).1["room_id"], room.as_str());
    // B's own answer is the same.
    assert_eq!(b.server.get(&path(&alias), None).1, r);

    assert_error(&a.server.get(&path(&format!("#pantry:{}", b.name)), None), 404, "M_NOT_FOUND");
    let down = format!("#x:127.0.0.1:{}", fed::free_port());
    assert_error(&a.server.get(&path(&down), None), 502, "M_UNKNOWN");
}

fn room_ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn public_rooms_over_federation() {
    let (_dir, _ca, a, b) = two();
    let alice = a.server.user("alice", PW);
    let bob = b.server.user("bob", PW);
    let bread = create_room(
        &b.server,
        &bob.token,
        json!({ "preset": "public_chat", "visibility": "public", "name": "Bread club",
                "topic": "Sourdough and rye", "room_alias_name": "bread" }),
    );
    let cheese = create_room(
        &b.server,
        &bob.token,
        json!({ "preset": "public_chat", "visibility": "public", "name": "Cheese" }),
    );
    create_room(&b.server, &bob.token, json!({ "name": "Private", "visibility": "private" }));
    let local = create_room(&a.server, &alice.token, json!({ "visibility": "public", "name": "A's own" }));

    // A's client lists B's directory: B's published rooms, as B lists them.
    let url = |q: &str| format!("{V3}/publicRooms?server={}{q}", enc(&b.name));
    let (status, page) = a.server.get(&url(""), Some(&alice.token));
    assert_eq!(status, 200, "{page}");
    let mut ids = room_ids(&page);
    ids.sort();
    let mut want = vec![bread.clone(), cheese.clone()];
    want.sort();
    assert_eq!(ids, want);
    let entry = page["chunk"].as_array().unwrap().iter().find(|r| r["room_id"] == bread.as_str()).unwrap();
    assert_eq!(
        entry,
        &json!({
            "room_id": bread, "name": "Bread club", "topic": "Sourdough and rye",
            "canonical_alias": format!("#bread:{}", b.name), "num_joined_members": 1,
            "world_readable": false, "guest_can_join": false, "join_rule": "public",
        })
    );
    assert_eq!(page["total_room_count_estimate"], 2);
    let (_, on_b) = b.server.get(&format!("{V3}/publicRooms"), None);
    assert_eq!(page, on_b);

    // Paging through B's directory with B's tokens.
    let (_, first) = a.server.get(&url("&limit=1"), Some(&alice.token));
    assert_eq!(room_ids(&first).len(), 1, "{first}");
    let next = first["next_batch"].as_str().expect("next_batch");
    let (_, second) = a.server.get(&url(&format!("&limit=1&since={}", enc(next))), Some(&alice.token));
    assert_eq!(room_ids(&second).len(), 1, "{second}");
    assert_ne!(room_ids(&first), room_ids(&second));
    assert!(second.get("next_batch").is_none(), "{second}");

    // POST with a search term goes to B as a POST.
    let filter = json!({ "filter": { "generic_search_term": "sourdough" } });
    let (status, found) = a.server.post(&url(""), Some(&alice.token), filter);
    assert_eq!(status, 200, "{found}");
    assert_eq!(room_ids(&found), vec![bread.clone()]);
    let (_, none) =
        a.server.post(&url(""), Some(&alice.token), json!({ "filter": { "generic_search_term": "wine" } }));
    assert_eq!(room_ids(&none), Vec::<String>::new());

    // Naming A itself lists A's; another server's needs a token.
    let (_, own) = a.server.get(&format!("{V3}/publicRooms?server={}", enc(&a.name)), None);
    assert_eq!(room_ids(&own), [local]);
    assert_error(&a.server.get(&url(""), None), 401, "M_MISSING_TOKEN");
    let down = format!("127.0.0.1:{}", fed::free_port());
    let r = a.server.get(&format!("{V3}/publicRooms?server={}", enc(&down)), Some(&alice.token));
    assert_error(&r, 502, "M_UNKNOWN");
}

/// A logged-in device with its own Olm account.
struct Dev {
    user_id: String,
    device_id: String,
    token: String,
    account: Account,
}

/// A client API POST on some server: (path, token, body) → (status, answer).
type Post<'a> = &'a dyn Fn(&str, Option<&str>, Value) -> (u16, Value);

impl Dev {
    fn login(p: &Peer, user: &str, device_id: &str) -> Dev {
        Dev::login_with(&|path, token, body| p.server.post(path, token, body), user, device_id)
    }

    fn login_with(post: Post, user: &str, device_id: &str) -> Dev {
        let mut body = password_login(user, PW);
        body["device_id"] = json!(device_id);
        body["initial_device_display_name"] = json!("Secret phone name");
        let (status, login) = post(&format!("{V3}/login"), None, body);
        assert_eq!(status, 200, "{login}");
        Dev {
            user_id: login["user_id"].as_str().unwrap().to_owned(),
            device_id: device_id.to_owned(),
            token: login["access_token"].as_str().unwrap().to_owned(),
            account: Account::new(),
        }
    }

    fn sign(&self, v: &mut Value) {
        let canonical = to_canonical_excluding(v, &["signatures", "unsigned"]).unwrap();
        let sig = self.account.sign(canonical.as_bytes()).to_base64();
        v["signatures"][&self.user_id][format!("ed25519:{}", self.device_id)] = json!(sig);
    }

    fn ed25519(&self) -> [u8; 32] {
        self.account.identity_keys().ed25519.as_bytes().to_owned()
    }

    fn device_keys(&self) -> Value {
        let keys = self.account.identity_keys();
        let mut v = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", self.device_id): keys.curve25519.to_base64(),
                format!("ed25519:{}", self.device_id): keys.ed25519.to_base64(),
            },
            "signatures": {},
        });
        self.sign(&mut v);
        v
    }

    /// Uploads identity keys, `n` one-time keys and a fallback key; the
    /// device keys and the one-time and fallback key IDs.
    fn upload(&mut self, p: &Peer, n: usize) -> (Value, Vec<String>, String) {
        self.upload_with(&|path, token, body| p.server.post(path, token, body), n)
    }

    fn upload_with(&mut self, post: Post, n: usize) -> (Value, Vec<String>, String) {
        self.account.generate_one_time_keys(n);
        let mut otks = json!({});
        for (id, key) in self.account.one_time_keys() {
            let mut k = json!({ "key": key.to_base64(), "signatures": {} });
            self.sign(&mut k);
            otks[format!("signed_curve25519:{}", id.to_base64())] = k;
        }
        self.account.generate_fallback_key();
        let mut fallback = json!({});
        for (id, key) in self.account.fallback_key() {
            let mut k = json!({ "key": key.to_base64(), "fallback": true, "signatures": {} });
            self.sign(&mut k);
            fallback[format!("signed_curve25519:{}", id.to_base64())] = k;
        }
        self.account.mark_keys_as_published();
        let device_keys = self.device_keys();
        let body = json!({ "device_keys": device_keys, "one_time_keys": otks, "fallback_keys": fallback });
        let (status, r) = post(&format!("{V3}/keys/upload"), Some(&self.token), body);
        assert_eq!(status, 200, "{r}");
        let otk_ids = otks.as_object().unwrap().keys().cloned().collect();
        let fallback_id = fallback.as_object().unwrap().keys().next().unwrap().clone();
        (device_keys, otk_ids, fallback_id)
    }
}

fn cross_key(user_id: &str, usage: &str, key: &Ed25519Keypair, signer: Option<&Ed25519Keypair>) -> Value {
    let public = key.public_key().to_base64();
    let mut v =
        json!({ "user_id": user_id, "usage": [usage], "keys": { format!("ed25519:{public}"): public } });
    if let Some(signer) = signer {
        let canonical = to_canonical_excluding(&v, &["signatures", "unsigned"]).unwrap();
        let signer_public = signer.public_key().to_base64();
        v["signatures"] = json!({ user_id: { format!("ed25519:{signer_public}"): signer.sign(canonical.as_bytes()).to_base64() } });
    }
    v
}

/// Uploads master, self-signing and user-signing keys for `d`'s user;
/// the master and self-signing key objects.
fn upload_cross_signing(p: &Peer, d: &Dev) -> (Value, Value) {
    let (master, ssk, usk) = (Ed25519Keypair::new(), Ed25519Keypair::new(), Ed25519Keypair::new());
    let (m, s) = (
        cross_key(&d.user_id, "master", &master, None),
        cross_key(&d.user_id, "self_signing", &ssk, Some(&master)),
    );
    let body = json!({
        "master_key": m, "self_signing_key": s,
        "user_signing_key": cross_key(&d.user_id, "user_signing", &usk, Some(&master)),
    });
    let (status, r) = p.server.post(&format!("{V3}/keys/device_signing/upload"), Some(&d.token), body);
    assert_eq!(status, 200, "{r}");
    (m, s)
}

fn keys_query(p: &Peer, d: &Dev, body: Value) -> Value {
    let (status, r) = p.server.post(&format!("{V3}/keys/query"), Some(&d.token), body);
    assert_eq!(status, 200, "{r}");
    r
}

fn keys_claim(p: &Peer, d: &Dev, body: Value) -> Value {
    let (status, r) = p.server.post(&format!("{V3}/keys/claim"), Some(&d.token), body);
    assert_eq!(status, 200, "{r}");
    r
}

#[test]
fn device_keys_are_queried_and_claimed_across_servers() {
    let (_dir, _ca, a, b) = two();
    a.server.register("alice", PW);
    b.server.register("bob", PW);
    let mut alice = Dev::login(&a, "alice", "ALICEDEV");
    let mut bob = Dev::login(&b, "bob", "BOBDEV");
    let (alice_keys, _, _) = alice.upload(&a, 1);
    let (bob_keys, otks, fallback) = bob.upload(&b, 2);
    let (master, ssk) = upload_cross_signing(&b, &bob);

    // A's user asks for her own and B's user's keys: each server once.
    let r = keys_query(&a, &alice, json!({ "device_keys": { &alice.user_id: [], &bob.user_id: [] } }));
    assert_eq!(r["failures"], json!({}), "{r}");
    assert_eq!(r["device_keys"][&bob.user_id], json!({ "BOBDEV": bob_keys }), "as uploaded, no device name");
    let mut mine = alice_keys.clone();
    mine["unsigned"] = json!({ "device_display_name": "Secret phone name" });
    assert_eq!(r["device_keys"][&alice.user_id], json!({ "ALICEDEV": mine }), "a local user's own names");
    assert_eq!(r["master_keys"][&bob.user_id], master);
    assert_eq!(r["self_signing_keys"][&bob.user_id], ssk);
    assert_eq!(r["user_signing_keys"], json!({}), "another user's user-signing key is never shown");
    assert!(verify_json(
        &r["device_keys"][&bob.user_id]["BOBDEV"],
        &bob.user_id,
        "ed25519:BOBDEV",
        &bob.ed25519()
    ));
    // Named devices only.
    let r = keys_query(&a, &alice, json!({ "device_keys": { &bob.user_id: ["NOPE"] } }));
    assert_eq!(r["device_keys"][&bob.user_id], json!({}), "{r}");

    // Claims: B's two one-time keys, each once, then its fallback key.
    let claim = json!({ "one_time_keys": { &bob.user_id: { "BOBDEV": "signed_curve25519" } } });
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = keys_claim(&a, &alice, claim.clone());
        assert_eq!(r["failures"], json!({}), "{r}");
        let keys = r["one_time_keys"][&bob.user_id]["BOBDEV"].as_object().expect("a key").clone();
        assert_eq!(keys.len(), 1, "{r}");
        let (id, key) = keys.into_iter().next().unwrap();
        assert!(verify_json(&key, &bob.user_id, "ed25519:BOBDEV", &bob.ed25519()), "signed by the device");
        got.push(id);
    }
    let mut first_two = got[..2].to_vec();
    first_two.sort();
    let mut uploaded = otks.clone();
    uploaded.sort();
    assert_eq!(first_two, uploaded, "each one-time key once");
    assert_eq!(got[2], fallback);
    // B's user claims A's user's key the other way.
    let r = keys_claim(
        &b,
        &bob,
        json!({ "one_time_keys": { &alice.user_id: { "ALICEDEV": "signed_curve25519" } } }),
    );
    assert!(r["one_time_keys"][&alice.user_id]["ALICEDEV"].is_object(), "{r}");

    // A server that is down lands in failures; the others still answer.
    let down = format!("127.0.0.1:{}", fed::free_port());
    let gone = format!("@x:{down}");
    let r = keys_query(&a, &alice, json!({ "device_keys": { &gone: [], &bob.user_id: [] } }));
    assert!(r["failures"][&down].is_object(), "{r}");
    assert_eq!(r["failures"].as_object().unwrap().len(), 1, "{r}");
    assert!(r["device_keys"][&bob.user_id]["BOBDEV"].is_object(), "{r}");
    let r = keys_claim(&a, &alice, json!({ "one_time_keys": { &gone: { "D": "signed_curve25519" } } }));
    assert!(r["failures"][&down].is_object(), "{r}");
    assert_eq!(r["one_time_keys"], json!({}));
}

#[test]
fn a_silent_server_is_given_up_on_at_the_timeout() {
    let (_dir, _ca, a, b) = two();
    a.server.register("alice", PW);
    b.server.register("bob", PW);
    let alice = Dev::login(&a, "alice", "ALICEDEV");
    let mut bob = Dev::login(&b, "bob", "BOBDEV");
    bob.upload(&b, 1);
    // Connections to it are accepted (by the kernel) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_name = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let started = Instant::now();
    let r = keys_query(
        &a,
        &alice,
        json!({ "device_keys": { format!("@x:{silent_name}"): [], &bob.user_id: [] }, "timeout": 1500 }),
    );
    let took = started.elapsed();
    assert!(r["failures"][&silent_name].is_object(), "{r}");
    assert!(r["device_keys"][&bob.user_id]["BOBDEV"].is_object(), "{r}");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(8), "took {took:?}");
    drop(silent);
}

#[test]
fn federation_endpoints_answer_signed_requests() {
    let (_dir, ca, a, b) = two();
    b.server.register("bob", PW);
    let mut bob = Dev::login(&b, "bob", "BOBDEV");
    let (bob_keys, _, _) = bob.upload(&b, 1);
    let (master, ssk) = upload_cross_signing(&b, &bob);
    set_profile(&b, &User { id: bob.user_id.clone(), token: bob.token.clone() }, "displayname", "Bob");
    let room = create_room(
        &b.server,
        &bob.token,
        json!({ "visibility": "public", "name": "Bakery", "room_alias_name": "bakery" }),
    );
    let agent = fed::agent(&ca);
    let q = |uri: &str| signed(&agent, &a, &b, "GET", uri, None);
    let p = |uri: &str, body: Value| signed(&agent, &a, &b, "POST", uri, Some(&body));
    const F: &str = "/_matrix/federation/v1";

    // Directory queries.
    let alias = format!("#bakery:{}", b.name);
    let (status, r) = q(&format!("{F}/query/directory?room_alias={}", enc(&alias)));
    assert_eq!((status, r), (200, json!({ "room_id": room, "servers": [b.name] })));
    assert_error(
        &q(&format!("{F}/query/directory?room_alias={}", enc(&format!("#nope:{}", b.name)))),
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &q(&format!("{F}/query/directory?room_alias={}", enc(&format!("#x:{}", a.name)))),
        400,
        "M_INVALID_PARAM",
    );
    assert_error(&q(&format!("{F}/query/directory")), 400, "M_MISSING_PARAM");

    // Profile queries.
    let user = |u: &str| format!("{F}/query/profile?user_id={}", enc(u));
    assert_eq!(q(&user(&bob.user_id)), (200, json!({ "displayname": "Bob" })));
    assert_eq!(
        q(&format!("{}&field=displayname", user(&bob.user_id))),
        (200, json!({ "displayname": "Bob" }))
    );
    assert_eq!(q(&format!("{}&field=avatar_url", user(&bob.user_id))), (200, json!({})));
    assert_error(&q(&format!("{}&field=m.tz", user(&bob.user_id))), 404, "M_NOT_FOUND");
    assert_error(&q(&user(&format!("@nobody:{}", b.name))), 404, "M_NOT_FOUND");
    assert_error(&q(&user(&format!("@x:{}", a.name))), 400, "M_INVALID_PARAM");

    // The published room directory.
    let (status, page) = q(&format!("{F}/publicRooms?limit=0"));
    assert_eq!(status, 200, "{page}");
    assert_eq!(room_ids(&page), vec![room.clone()]);
    assert_eq!(page["chunk"][0]["name"], "Bakery");
    assert_eq!(page["chunk"][0]["canonical_alias"], alias.as_str());
    let (status, page) =
        p(&format!("{F}/publicRooms"), json!({ "filter": { "generic_search_term": "BAKE" }, "limit": 5 }));
    assert_eq!((status, room_ids(&page)), (200, vec![room.clone()]));
    let (_, page) = p(&format!("{F}/publicRooms"), json!({ "filter": { "generic_search_term": "butcher" } }));
    assert_eq!(room_ids(&page), Vec::<String>::new());
    let (_, page) = q(&format!("{F}/publicRooms?third_party_instance_id=irc"));
    assert_eq!(room_ids(&page), Vec::<String>::new());

    // Devices and keys.
    let (status, d) = q(&format!("{F}/user/devices/{}", enc(&bob.user_id)));
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["user_id"], bob.user_id.as_str());
    assert!(d["stream_id"].as_i64().is_some_and(|n| n > 0), "{d}");
    assert_eq!(d["devices"], json!([{ "device_id": "BOBDEV", "keys": bob_keys }]), "no display names");
    assert_eq!(d["master_key"], master);
    assert_eq!(d["self_signing_key"], ssk);
    let (status, d) = q(&format!("{F}/user/devices/{}", enc(&format!("@nobody:{}", b.name))));
    assert_eq!((status, &d["devices"]), (200, &json!([])), "{d}");
    assert_error(&q(&format!("{F}/user/devices/{}", enc(&format!("@x:{}", a.name)))), 400, "M_INVALID_PARAM");

    let (status, r) = p(&format!("{F}/user/keys/query"), json!({ "device_keys": { &bob.user_id: [] } }));
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r,
        json!({
            "device_keys": { &bob.user_id: { "BOBDEV": bob_keys } },
            "master_keys": { &bob.user_id: master },
            "self_signing_keys": { &bob.user_id: ssk },
        })
    );
    let foreign = json!({ "device_keys": { &bob.user_id: [], format!("@x:{}", a.name): [] } });
    assert_error(&p(&format!("{F}/user/keys/query"), foreign), 400, "M_INVALID_PARAM");
    let claim = json!({ "one_time_keys": { &bob.user_id: { "BOBDEV": "signed_curve25519" } } });
    let (status, r) = p(&format!("{F}/user/keys/claim"), claim.clone());
    assert_eq!(status, 200, "{r}");
    let keys = r["one_time_keys"][&bob.user_id]["BOBDEV"].as_object().expect("a key");
    assert!(keys.keys().all(|k| k.starts_with("signed_curve25519:")) && keys.len() == 1, "{r}");
    let foreign = json!({ "one_time_keys": { format!("@x:{}", a.name): { "D": "signed_curve25519" } } });
    assert_error(&p(&format!("{F}/user/keys/claim"), foreign), 400, "M_INVALID_PARAM");

    // Unsigned requests are refused, whatever the endpoint.
    for (method, uri, body) in [
        ("GET", format!("{F}/query/directory?room_alias={}", enc(&alias)), None),
        ("GET", user(&bob.user_id), None),
        ("GET", format!("{F}/publicRooms"), None),
        ("POST", format!("{F}/publicRooms"), Some(json!({}))),
        ("GET", format!("{F}/user/devices/{}", enc(&bob.user_id)), None),
        ("POST", format!("{F}/user/keys/query"), Some(json!({ "device_keys": {} }))),
        ("POST", format!("{F}/user/keys/claim"), Some(claim.clone())),
    ] {
        let got = fed::call(&agent, method, &b.name, &uri, &[], body.as_ref());
        assert_error(&got, 401, "M_UNAUTHORIZED");
    }
    // Nothing was claimed by the refused claim: the fallback key is next.
    let (_, r) = p(&format!("{F}/user/keys/claim"), claim);
    let key =
        r["one_time_keys"][&bob.user_id]["BOBDEV"].as_object().unwrap().values().next().unwrap().clone();
    assert_eq!(key["fallback"], true, "{r}");

    // OpenID's userinfo, which needs no signature, still answers.
    let (status, t) = b.server.post(
        &format!("{V3}/user/{}/openid/request_token", enc(&bob.user_id)),
        Some(&bob.token),
        json!({}),
    );
    assert_eq!(status, 200, "{t}");
    let uri = format!("{F}/openid/userinfo?access_token={}", enc(t["access_token"].as_str().unwrap()));
    assert_eq!(fed::call(&agent, "GET", &b.name, &uri, &[], None), (200, json!({ "sub": bob.user_id })));
    let uri = format!("{F}/openid/userinfo?access_token=nope");
    assert_error(&fed::call(&agent, "GET", &b.name, &uri, &[], None), 401, "M_UNKNOWN_TOKEN");
}

#[test]
fn refused_servers_fail_cleanly() {
    let (_dir, ca) = bed();
    let b = Peer::start(&ca, &[], &[]);
    let fenced = Peer::start(&ca, &["--federation-domain-allowlist", "friends.example"], &[]);
    let off = Peer::start(&ca, &["--federation", "false"], &[]);
    b.server.register("bob", PW);
    let bob = format!("@bob:{}", b.name);
    for p in [&fenced, &off] {
        p.server.register("alice", PW);
        let alice = Dev::login(p, "alice", "ALICEDEV");
        let who = Some(alice.token.as_str());
        assert_error(&p.server.get(&profile_path(&bob, ""), who), 403, "M_FORBIDDEN");
        assert_error(&p.server.get(&profile_path(&bob, "displayname"), who), 403, "M_FORBIDDEN");
        let alias = format!("{V3}/directory/room/{}", enc(&format!("#x:{}", b.name)));
        assert_error(&p.server.get(&alias, who), 403, "M_FORBIDDEN");
        let rooms = format!("{V3}/publicRooms?server={}", enc(&b.name));
        assert_error(&p.server.get(&rooms, who), 403, "M_FORBIDDEN");
        let r = keys_query(p, &alice, json!({ "device_keys": { &bob: [] } }));
        assert_eq!(r["failures"][&b.name]["status"], 403, "{r}");
        assert_eq!(r["device_keys"], json!({}));
        let r = keys_claim(p, &alice, json!({ "one_time_keys": { &bob: { "D": "signed_curve25519" } } }));
        assert_eq!(r["failures"][&b.name]["errcode"], "M_FORBIDDEN", "{r}");
    }
}

/// Hearth and Synapse (the reference server) ask each other: profiles,
/// aliases, published rooms, device keys and claims, both ways. What
/// Synapse answers Hearth's client and what Synapse's client gets from
/// Hearth show that each side's requests and answers have the shapes the
/// other expects.
#[test]
fn hearth_and_synapse_query_each_other() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    // Synapse lets only admins publish rooms unless told otherwise.
    let synapse = Synapse::start_with(&ca, "room_list_publication_rules:\n  - action: allow\n");
    hearth.server.register("alice", PW);
    synapse.register("sam", PW);
    let on_synapse = |path: &str, token: Option<&str>, body: Value| synapse.post(path, token, body);
    let mut alice = Dev::login(&hearth, "alice", "ALICEDEV");
    let mut sam = Dev::login_with(&on_synapse, "sam", "SAMDEV");
    let (alice_token, sam_token) = (alice.token.clone(), sam.token.clone());
    let (a_tok, s_tok) = (Some(alice_token.as_str()), Some(sam_token.as_str()));
    let put = |path: &str, token, body| {
        let (status, r) = synapse.put(path, token, body);
        assert_eq!(status, 200, "{r}");
    };
    put(&profile_path(&sam.user_id, "displayname"), s_tok, json!({ "displayname": "Sam" }));
    set_profile(
        &hearth,
        &User { id: alice.user_id.clone(), token: alice.token.clone() },
        "displayname",
        "Alice",
    );

    // Profiles.
    let (status, p) = hearth.server.get(&profile_path(&sam.user_id, ""), a_tok);
    assert_eq!((status, &p["displayname"]), (200, &json!("Sam")), "{p}");
    let (status, p) = synapse.get(&profile_path(&alice.user_id, "displayname"), s_tok);
    assert_eq!((status, p), (200, json!({ "displayname": "Alice" })), "{}", synapse.log_tail(20));
    let (status, p) = synapse.get(&profile_path(&alice.user_id, ""), s_tok);
    assert_eq!((status, &p["displayname"]), (200, &json!("Alice")), "{p}");
    let nobody = format!("@nobody:{}", hearth.name);
    assert_eq!(synapse.get(&profile_path(&nobody, ""), s_tok).0, 404, "Hearth's 404 is Synapse's");

    // Aliases and published rooms, each server's room asked by the other.
    let (status, r) = synapse.post(
        &format!("{V3}/createRoom"),
        s_tok,
        json!({ "room_alias_name": "samroom", "visibility": "public", "preset": "public_chat", "name": "Sam's" }),
    );
    assert_eq!(status, 200, "{r}");
    let sams_room = r["room_id"].as_str().unwrap().to_owned();
    let alices_room = create_room(
        &hearth.server,
        &alice.token,
        json!({ "room_alias_name": "aliceroom", "visibility": "public", "preset": "public_chat", "name": "Alice's" }),
    );
    let alias_path = |alias: &str| format!("{V3}/directory/room/{}", enc(alias));
    let (status, r) = hearth.server.get(&alias_path(&format!("#samroom:{}", synapse.server_name())), a_tok);
    assert_eq!((status, &r["room_id"]), (200, &json!(sams_room)), "{r}");
    assert_eq!(r["servers"][0], synapse.server_name());
    let (status, r) = synapse.get(&alias_path(&format!("#aliceroom:{}", hearth.name)), s_tok);
    assert_eq!((status, &r["room_id"]), (200, &json!(alices_room)), "{r}");
    assert!(r["servers"].as_array().unwrap().contains(&json!(hearth.name)), "{r}");

    let listing = |server: &str| format!("{V3}/publicRooms?server={}", enc(server));
    // Synapse lists a newly published room once its room statistics
    // caught up (a background job).
    wait_until(&hearth.server, "Synapse lists Sam's room itself", || {
        !room_ids(&synapse.get(&format!("{V3}/publicRooms"), s_tok).1).is_empty()
    });
    let (status, page) = hearth.server.get(&listing(synapse.server_name()), a_tok);
    assert_eq!((status, room_ids(&page)), (200, vec![sams_room.clone()]), "{page}");
    assert_eq!(page["chunk"][0]["name"], "Sam's");
    let (status, page) = synapse.get(&listing(&hearth.name), s_tok);
    assert_eq!((status, room_ids(&page)), (200, vec![alices_room.clone()]), "{page}");
    let search = json!({ "filter": { "generic_search_term": "alice" } });
    let (status, page) = synapse.post(&listing(&hearth.name), s_tok, search);
    assert_eq!((status, room_ids(&page)), (200, vec![alices_room.clone()]), "{page}");
    let search = json!({ "filter": { "generic_search_term": "sam" } });
    let (status, page) = hearth.server.post(&listing(synapse.server_name()), a_tok, search);
    assert_eq!((status, room_ids(&page)), (200, vec![sams_room]), "{page}");

    // Keys, uploaded on each side and queried and claimed from the other.
    let (alice_keys, alice_otks, _) = alice.upload(&hearth, 1);
    let (sam_keys, sam_otks, _) = sam.upload_with(&on_synapse, 1);
    let without_unsigned = |mut v: Value| {
        v.as_object_mut().map(|o| o.remove("unsigned"));
        v
    };
    let r = keys_query(&hearth, &alice, json!({ "device_keys": { &sam.user_id: [] } }));
    assert_eq!(r["failures"], json!({}), "{r}");
    assert_eq!(without_unsigned(r["device_keys"][&sam.user_id]["SAMDEV"].clone()), sam_keys, "{r}");
    let (status, r) =
        synapse.post(&format!("{V3}/keys/query"), s_tok, json!({ "device_keys": { &alice.user_id: [] } }));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["failures"], json!({}), "{r}");
    assert_eq!(without_unsigned(r["device_keys"][&alice.user_id]["ALICEDEV"].clone()), alice_keys, "{r}");

    let claim =
        |user: &str, device: &str| json!({ "one_time_keys": { user: { device: "signed_curve25519" } } });
    let r = keys_claim(&hearth, &alice, claim(&sam.user_id, "SAMDEV"));
    let got = r["one_time_keys"][&sam.user_id]["SAMDEV"].as_object().cloned().unwrap_or_default();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), sam_otks, "{r}");
    assert!(verify_json(got.values().next().unwrap(), &sam.user_id, "ed25519:SAMDEV", &sam.ed25519()));
    let (status, r) = synapse.post(&format!("{V3}/keys/claim"), s_tok, claim(&alice.user_id, "ALICEDEV"));
    assert_eq!(status, 200, "{r}");
    let got = r["one_time_keys"][&alice.user_id]["ALICEDEV"].as_object().cloned().unwrap_or_default();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), alice_otks, "{r}\n{}", synapse.log_tail(20));
}
