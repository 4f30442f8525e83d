//! `fanout`: a Hearth user creates a public room; every fake server joins
//! one user to it through Hearth as the resident server (`make_join`, the
//! template filled, hashed and signed, `send_join` v2, all with `X-Matrix`
//! signatures), one after another. Once Hearth's queues drained (every
//! other fake server got the last join in a `/send`), the Hearth user
//! sends messages, one at a time; for each, the time from the send until
//! the last fake server received it, and the median arrival.

use std::time::{Duration, Instant};

use hearth::core::event;
use hearth::core::room_version;
use hearth::util::percent_encode;
use serde_json::json;

use crate::fake::FakeNet;
use crate::server::Hearth;
use crate::{ms, quantile, secs, Options, Result};

/// Fake servers by default.
const SERVERS: usize = 200;
/// How long Hearth may take to deliver the last join everywhere.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a message may take to reach every fake server.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(o: &Options, dir: &std::path::Path) -> Result<()> {
    let servers = o.servers.unwrap_or(SERVERS);
    let ca = crate::tls::Ca::new(dir)?;
    let net = FakeNet::start(servers, ca.server_config()?, None)?;
    let hearth = Hearth::start(&o.hearth, dir, &ca)?;
    let (_, token) = hearth.register("bench")?;
    let created = hearth.client_ok(
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&token),
        Some(&json!({ "preset": "public_chat", "name": "Fan-out benchmark" })),
    )?;
    let room_id = created["room_id"].as_str().ok_or("createRoom answered no room_id")?.to_owned();
    let versions: String =
        room_version::SUPPORTED.iter().map(|v| format!("ver={}", v.id)).collect::<Vec<_>>().join("&");

    let mut join_times = Vec::with_capacity(servers);
    let mut last_join = String::new();
    let mut version_id = String::new();
    let joins_started = Instant::now();
    for fake in &net.fakes {
        let user = format!("@bench:{}", fake.name);
        let t0 = Instant::now();
        let uri = format!(
            "/_matrix/federation/v1/make_join/{}/{}?{versions}",
            percent_encode(&room_id),
            percent_encode(&user)
        );
        let (status, answer) = hearth.federation(&fake.key, &fake.name, "GET", &uri, None)?;
        if status != 200 {
            return Err(format!("make_join for {user}: {status} {answer}").into());
        }
        version_id = answer["room_version"].as_str().unwrap_or("1").to_owned();
        let version =
            room_version::get(&version_id).ok_or_else(|| format!("unknown room version {version_id}"))?;
        net.inbox.set_version(version);
        let mut pdu = answer.get("event").cloned().ok_or("make_join answered no event")?;
        let obj = pdu.as_object_mut().ok_or("the template is not an object")?;
        for key in ["signatures", "hashes", "unsigned", "event_id"] {
            obj.remove(key);
        }
        obj.insert("origin".into(), json!(fake.name));
        obj.insert("origin_server_ts".into(), json!(hearth::util::now_ms()));
        event::hash_and_sign(version, &fake.key, &fake.name, &mut pdu)?;
        let event_id = event::event_id(version, &pdu)?;
        let uri = format!(
            "/_matrix/federation/v2/send_join/{}/{}",
            percent_encode(&room_id),
            percent_encode(&event_id)
        );
        let (status, answer) = hearth.federation(&fake.key, &fake.name, "PUT", &uri, Some(&pdu))?;
        if status != 200 {
            return Err(format!("send_join for {user}: {status} {answer}").into());
        }
        join_times.push(t0.elapsed());
        last_join = event_id;
    }
    let joins_took = joins_started.elapsed();
    // Every fake server but the last joiner's gets the last join.
    let others: Vec<usize> = (0..servers.saturating_sub(1)).collect();
    let drain_started = Instant::now();
    let reached = net.inbox.wait_for(&last_join, &others, drain_started + DRAIN_TIMEOUT);
    if reached.len() != others.len() {
        return Err(format!(
            "the last join reached {} of {} servers in {DRAIN_TIMEOUT:?}",
            reached.len(),
            others.len()
        )
        .into());
    }
    let drained = drain_started.elapsed();
    let before = net.inbox.counts();

    let all: Vec<usize> = (0..servers).collect();
    let mut lasts = Vec::with_capacity(o.messages);
    let mut medians = Vec::with_capacity(o.messages);
    let mut reached_counts = Vec::with_capacity(o.messages);
    for m in 0..o.messages {
        let t0 = Instant::now();
        let sent = hearth.client_ok(
            "PUT",
            &format!("{}/send/m.room.message/fanout{m}", Hearth::room_path(&room_id)),
            Some(&token),
            Some(&json!({ "msgtype": "m.text", "body": format!("fan-out message {m}") })),
        )?;
        let id = sent["event_id"].as_str().ok_or("the send answered no event_id")?.to_owned();
        let arrivals = net.inbox.wait_for(&id, &all, t0 + DELIVERY_TIMEOUT);
        let mut after: Vec<Duration> =
            arrivals.iter().map(|(_, at)| at.saturating_duration_since(t0)).collect();
        after.sort();
        reached_counts.push(arrivals.len());
        lasts.push(after.last().copied().unwrap_or(DELIVERY_TIMEOUT));
        medians.push(quantile(&after, 0.5));
    }
    let counts = net.inbox.counts();
    join_times.sort();
    let each_last: Vec<f64> = lasts.iter().map(|d| ms(*d)).collect();
    lasts.sort();
    medians.sort();
    let line = json!({
        "mode": "fanout",
        "room_version": version_id,
        "servers": servers,
        "joins_s": secs(joins_took),
        "join_p50_ms": ms(quantile(&join_times, 0.5)),
        "join_max_ms": ms(join_times.last().copied().unwrap_or_default()),
        "drain_s": secs(drained),
        "messages": o.messages,
        "last_arrival_median_ms": ms(quantile(&lasts, 0.5)),
        "arrival_p50_median_ms": ms(quantile(&medians, 0.5)),
        "last_arrival_each_ms": each_last,
        "servers_reached_each": reached_counts,
        "transactions_for_messages": counts.transactions - before.transactions,
        "connections_for_messages": counts.connections - before.connections,
        "pdus_received": counts.pdus,
        "pdus_unidentified": counts.unidentified,
        "unrecognised_requests": counts.unrecognised,
    });
    if !counts.unrecognised_kept.is_empty() {
        eprintln!("requests the fake servers did not serve: {:?}", counts.unrecognised_kept);
    }
    println!("{line}");
    hearth.stop()?;
    if reached_counts.iter().any(|&n| n != servers) {
        return Err("a message did not reach every fake server".into());
    }
    Ok(())
}
