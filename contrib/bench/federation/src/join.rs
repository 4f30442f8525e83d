//! `join`: a Hearth user joins a big room a fake server is resident in.
//!
//! The room (made before Hearth starts): the create event and the join of
//! `@admin` on the first fake server, power levels, public join rules,
//! shared history, 40 other settings, then the members (spread over the
//! fake servers by index), with a power levels change every
//! `members / POWER_CHANGES` joins, every `INVITE_EVERY`th member invited
//! by the admin before joining, and every `PROFILE_CHANGE_EVERY`th member,
//! `PROFILE_CHANGE_LAG` joins later, joining again with a new displayname
//! (the earlier join stays in the auth chain, not in the state).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hearth::util::percent_encode;
use serde_json::{json, Value};

use crate::fake::{Fake, FakeNet, Resident};
use crate::room::{ResidentRoom, Room};
use crate::server::Hearth;
use crate::{room_version, secs, Options, Result};

/// Joined members by default, the admin included.
const MEMBERS: usize = 28_000;
/// Power levels events in the room's history, the first included.
const POWER_CHANGES: usize = 100;
/// Members invited by the admin before they joined: one in this many.
const INVITE_EVERY: usize = 28;
/// Members who joined again with a new displayname: one in this many...
const PROFILE_CHANGE_EVERY: usize = 14;
/// ... this many joins after their first.
const PROFILE_CHANGE_LAG: usize = 50;
/// State events besides the members, power levels, join rules, history
/// visibility and create.
const SETTINGS: usize = 40;
/// Users listed in the power levels (besides the admin), the latest
/// moderators.
const MODERATORS_LISTED: usize = 12;
/// How long the message sent after the join may take to reach the fake
/// servers.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Slack allowed when checking that the peak RSS was reset, in KiB.
const HWM_RESET_SLACK_KIB: u64 = 1024;

const FIRST_NAMES: [&str; 8] =
    ["Alexandra", "Benedikt", "Chiamaka", "Dmitri", "Eleanor", "Fernando", "Guinevere", "Hiroshi"];
const LAST_NAMES: [&str; 8] = [
    "Oyelaran",
    "Kowalczyk",
    "Fitzgerald",
    "Nakamura",
    "Abernathy",
    "Villanueva",
    "Lindqvist",
    "Papadopoulos",
];

impl Resident for OnceLock<ResidentRoom> {
    fn answer(&self, fake: &Fake, req: &crate::fake::Request) -> Option<crate::fake::Answer> {
        self.get()?.answer(fake, req)
    }
}

/// A member's join (or invite) content, ~700–1,000 bytes as an event: a
/// displayname and an avatar like real clients set.
pub fn member_content(membership: &str, i: usize, server: &str, revision: usize) -> Value {
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    let last = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
    let suffix = if revision == 0 { String::new() } else { format!(" (away until {revision}/12)") };
    let media: String = format!("{:024x}", (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c) >> 8);
    json!({
        "membership": membership,
        "displayname": format!("{first} {last} #{i}{suffix}"),
        "avatar_url": format!("mxc://{server}/{}", &media[..24]),
    })
}

/// The user ID of member `i` and the fake server they are on.
pub fn member(fakes: &[Arc<Fake>], i: usize) -> (String, &Fake) {
    let fake = &fakes[i % fakes.len()];
    (format!("@u{i}:{}", fake.name), fake)
}

/// The settings and base state every benchmark room starts with (after
/// create and the admin's join): power levels, join rules, history.
pub fn base_state(room: &mut Room, admin_fake: &Fake, admin: &str, settings: usize) -> Result<()> {
    let (s, k) = (admin_fake.name.as_str(), &admin_fake.key);
    room.add(s, k, admin, "m.room.power_levels", Some(""), power_levels(room, admin, &[]))?;
    room.add(s, k, admin, "m.room.join_rules", Some(""), json!({ "join_rule": "public" }))?;
    room.add(s, k, admin, "m.room.history_visibility", Some(""), json!({ "history_visibility": "shared" }))?;
    let named = [
        ("m.room.name", json!({ "name": "Federation benchmark: a big public room" })),
        ("m.room.topic", json!({ "topic": "A synthetic room for measuring joins. ".repeat(4) })),
        ("m.room.avatar", json!({ "url": format!("mxc://{s}/roomavatar0123456789abcdef") })),
        ("m.room.canonical_alias", json!({ "alias": format!("#bench:{s}") })),
        ("m.room.guest_access", json!({ "guest_access": "forbidden" })),
        ("m.room.server_acl", json!({ "allow": ["*"], "deny": [], "allow_ip_literals": true })),
    ];
    let named_count = named.len().min(settings);
    for (kind, content) in named.into_iter().take(settings) {
        room.add(s, k, admin, kind, Some(""), content)?;
    }
    for n in named_count..settings {
        let content = json!({ "value": format!("setting {n}"), "updated_by": admin });
        room.add(s, k, admin, "org.example.setting", Some(&format!("s{n}")), content)?;
    }
    Ok(())
}

/// Power levels with `moderators` at 50 (and, before v12, the admin at 100).
fn power_levels(room: &Room, admin: &str, moderators: &[String]) -> Value {
    let mut users = serde_json::Map::new();
    if !room.version.privileged_creators {
        users.insert(admin.to_owned(), json!(100));
    }
    for m in moderators {
        users.insert(m.clone(), json!(50));
    }
    json!({
        "users": users, "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100,
        },
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
        "historical": 100, "notifications": { "room": 50 },
    })
}

/// The create event and the admin's join.
pub fn create(room: &mut Room, admin_fake: &Fake, admin: &str) -> Result<()> {
    let (s, k) = (admin_fake.name.as_str(), &admin_fake.key);
    let mut content = json!({ "room_version": room.version.id });
    if room.version.create_has_creator_field {
        content["creator"] = json!(admin);
    }
    room.add(s, k, admin, "m.room.create", Some(""), content)?;
    room.add(s, k, admin, "m.room.member", Some(admin), member_content("join", 0, s, 0))?;
    Ok(())
}

/// Builds the big room; the admin is member 0.
fn big_room(o: &Options, fakes: &[Arc<Fake>], members: usize) -> Result<Room> {
    let version = room_version(&o.room_version)?;
    let admin_fake = &fakes[0];
    let admin = format!("@admin:{}", admin_fake.name);
    let mut room = Room::new(version, &admin_fake.name);
    create(&mut room, admin_fake, &admin)?;
    base_state(&mut room, admin_fake, &admin, SETTINGS)?;
    let power_every = (members / POWER_CHANGES).max(1);
    let mut moderators: Vec<String> = Vec::new();
    let (s, k) = (admin_fake.name.as_str(), &admin_fake.key);
    for i in 1..members {
        let (user, fake) = member(fakes, i);
        if i.is_multiple_of(INVITE_EVERY) {
            room.add(s, k, &admin, "m.room.member", Some(&user), member_content("invite", i, &fake.name, 0))?;
        }
        room.add(
            &fake.name,
            &fake.key,
            &user,
            "m.room.member",
            Some(&user),
            member_content("join", i, &fake.name, 0),
        )?;
        if i >= PROFILE_CHANGE_LAG && (i - PROFILE_CHANGE_LAG).is_multiple_of(PROFILE_CHANGE_EVERY) {
            let j = i - PROFILE_CHANGE_LAG;
            if j > 0 {
                let (user, fake) = member(fakes, j);
                let content = member_content("join", j, &fake.name, 1 + j % 12);
                room.add(&fake.name, &fake.key, &user, "m.room.member", Some(&user), content)?;
            }
        }
        if i.is_multiple_of(power_every) {
            moderators.push(user);
            if moderators.len() > MODERATORS_LISTED {
                moderators.remove(0);
            }
            room.add(
                s,
                k,
                &admin,
                "m.room.power_levels",
                Some(""),
                power_levels(&room, &admin, &moderators),
            )?;
        }
    }
    Ok(room)
}

pub fn run(o: &Options, dir: &std::path::Path) -> Result<()> {
    let servers = o.servers.unwrap_or(1);
    let members = o.members.unwrap_or(MEMBERS).max(2);
    let ca = crate::tls::Ca::new(dir)?;
    let slot: Arc<OnceLock<ResidentRoom>> = Arc::new(OnceLock::new());
    let net = FakeNet::start(servers, ca.server_config()?, Some(slot.clone()))?;
    let built = Instant::now();
    let room = big_room(o, &net.fakes, members)?;
    let version = room.version;
    net.inbox.set_version(version);
    let member_sizes: Vec<usize> = room
        .events
        .iter()
        .filter(|e| e.pdu["type"] == "m.room.member")
        .map(|e| e.pdu.to_string().len())
        .collect();
    let member_mean = member_sizes.iter().sum::<usize>() / member_sizes.len().max(1);
    let (events, room_id) = (room.events.len(), room.room_id.clone());
    let names: Vec<String> = net.fakes.iter().map(|f| f.name.clone()).collect();
    let (resident, answer_bytes, state_events, chain_events) = ResidentRoom::new(room, names.clone())?;
    if slot.set(resident).is_err() {
        return Err("the room was served twice".into());
    }
    eprintln!(
        "room {room_id} (v{}): {events} events, {state_events} in the state, auth chain {chain_events}, \
         member events {member_mean} bytes on average, send_join answer {answer_bytes} bytes; built in {:.1} s",
        version.id,
        built.elapsed().as_secs_f64()
    );

    let hearth = Hearth::start(&o.hearth, dir, &ca)?;
    let (user, token) = hearth.register("bench")?;
    let (rss_before, _) = hearth.memory_kib()?;
    let (hwm_before_reset, hwm_reset) = hearth.reset_peak(HWM_RESET_SLACK_KIB)?;
    let path = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        percent_encode(&room_id),
        percent_encode(&names[0])
    );
    let started = Instant::now();
    let (status, answer) = hearth.client("POST", &path, Some(&token), Some(&json!({})))?;
    let join_time = started.elapsed();
    let (rss_after, hwm_after) = hearth.memory_kib()?;
    let resident = slot.get().ok_or("no room")?;
    let send_join_at = resident.joined().first().map(|j| j.at.saturating_duration_since(started));
    let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    let mut line = json!({
        "mode": "join",
        "room_version": version.id,
        "servers": servers,
        "join_status": status,
        "join_s": secs(join_time),
        "send_join_request_at_s": send_join_at.map(secs),
        "rss_before_mib": mib(rss_before),
        "rss_after_mib": mib(rss_after),
        "peak_growth_mib": mib(hwm_after.saturating_sub(rss_before)),
        "peak_before_reset_mib": mib(hwm_before_reset),
        "peak_reset_ok": hwm_reset,
        "answer_bytes": answer_bytes,
        "state_events": state_events,
        "auth_chain_events": chain_events,
        "room_events": events,
        "member_event_bytes_mean": member_mean,
        "user": user,
    });
    if status != 200 {
        // The figures still say what was tried; the run fails.
        line["join_error"] = answer;
        println!("{line}");
        return Err(format!("POST {path}: {status}; see {}", hearth.log.display()).into());
    }

    let joined = hearth.client_ok(
        "GET",
        &format!("{}/joined_members", Hearth::room_path(&room_id)),
        Some(&token),
        None,
    )?;
    let joined_count = joined["joined"].as_object().map(|m| m.len()).unwrap_or(0);
    let sent = hearth.client_ok(
        "PUT",
        &format!("{}/send/m.room.message/bench1", Hearth::room_path(&room_id)),
        Some(&token),
        Some(&json!({ "msgtype": "m.text", "body": "hello from Hearth" })),
    )?;
    let message_id = sent["event_id"].as_str().ok_or("the send answered no event_id")?.to_owned();
    let sent_at = Instant::now();
    let all: Vec<usize> = (0..servers).collect();
    let arrived = net.inbox.wait_for(&message_id, &all, sent_at + DELIVERY_TIMEOUT);
    let delivery = arrived.iter().map(|(_, at)| at.saturating_duration_since(sent_at)).max();
    let counts = net.inbox.counts();
    let extra = json!({
        "joined_members": joined_count,
        "joined_members_expected": members + 1,
        "message_reached_servers": arrived.len(),
        "message_delivery_s": delivery.map(secs),
        "pdus_received": counts.pdus,
        "pdus_unidentified": counts.unidentified,
        "unrecognised_requests": counts.unrecognised,
    });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    if !counts.unrecognised_kept.is_empty() {
        eprintln!("requests the fake servers did not serve: {:?}", counts.unrecognised_kept);
    }
    println!("{line}");
    hearth.stop()?;
    if joined_count != members + 1 || arrived.len() != servers {
        return Err("the room was not usable after the join (see the figures above)".into());
    }
    Ok(())
}
