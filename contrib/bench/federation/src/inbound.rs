//! `inbound`: a fake server resident in a small room (10 members) that a
//! Hearth user joined sends it transactions of `m.room.message` PDUs, one
//! transaction in flight at a time as servers send them. The PDUs (linear
//! `prev_events`, auth events create + power levels + the sender's join)
//! and the requests' `X-Matrix` signatures are all made before the timed
//! run, so only Hearth's work is timed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hearth::util::percent_encode;
use serde_json::{json, Value};

use crate::fake::FakeNet;
use crate::join::{base_state, create, member, member_content};
use crate::room::{ResidentRoom, Room};
use crate::server::Hearth;
use crate::{ms, quantile, room_version, secs, Options, Result};

/// Joined members of the fake server's room by default, the admin included.
const MEMBERS: usize = 10;
/// How long strace may take to attach to every thread of Hearth.
const STRACE_ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// A prepared transaction: its URI, Authorization header and body.
struct Txn {
    uri: String,
    auth: String,
    body: Vec<u8>,
    pdus: usize,
}

pub fn run(o: &Options, dir: &std::path::Path) -> Result<()> {
    let members = o.members.unwrap_or(MEMBERS).max(1);
    let version = room_version(&o.room_version)?;
    let ca = crate::tls::Ca::new(dir)?;
    let slot: Arc<OnceLock<crate::room::ResidentRoom>> = Arc::new(OnceLock::new());
    let net = FakeNet::start(1, ca.server_config()?, Some(slot.clone()))?;
    net.inbox.set_version(version);
    let fake = net.fakes[0].clone();
    let admin = format!("@admin:{}", fake.name);
    let mut room = Room::new(version, &fake.name);
    create(&mut room, &fake, &admin)?;
    base_state(&mut room, &fake, &admin, 0)?;
    for i in 1..members {
        let (user, _) = member(&net.fakes, i);
        room.add(
            &fake.name,
            &fake.key,
            &user,
            "m.room.member",
            Some(&user),
            member_content("join", i, &fake.name, 0),
        )?;
    }
    let room_id = room.room_id.clone();
    let (resident, ..) = ResidentRoom::new(room, vec![fake.name.clone()])?;
    if slot.set(resident).is_err() {
        return Err("the room was served twice".into());
    }
    let resident = slot.get().ok_or("no room")?;

    let hearth = Hearth::start(&o.hearth, dir, &ca)?;
    let (_, token) = hearth.register("bench")?;
    let path = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        percent_encode(&room_id),
        percent_encode(&fake.name)
    );
    hearth.client_ok("POST", &path, Some(&token), Some(&json!({})))?;

    // Every PDU and request made now, after the join (the chain goes on from it).
    let mut txns = Vec::with_capacity(o.transactions);
    let mut last_id = String::new();
    {
        let mut room = resident.room();
        let mut n = 0usize;
        for t in 0..o.transactions {
            let mut pdus = Vec::with_capacity(o.pdus);
            for _ in 0..o.pdus {
                n += 1;
                let (sender, _) = if members > 1 {
                    member(&net.fakes, 1 + n % (members - 1))
                } else {
                    (admin.clone(), &*fake)
                };
                let content = json!({
                    "msgtype": "m.text",
                    "body": format!("Message {n} of the inbound benchmark: a line of ordinary chat text."),
                });
                last_id = room.add(&fake.name, &fake.key, &sender, "m.room.message", None, content)?;
                pdus.push(room.events.last().map(|e| e.pdu.clone()).ok_or("no event")?);
            }
            let count = pdus.len();
            let body =
                json!({ "origin": fake.name, "origin_server_ts": hearth::util::now_ms(), "pdus": pdus });
            let uri = format!("/_matrix/federation/v1/send/bench{t}");
            let auth = hearth::federation::xmatrix::authorization(
                &fake.key,
                &fake.name,
                &hearth.name,
                "PUT",
                &uri,
                Some(&body),
            )?;
            txns.push(Txn { uri, auth, body: body.to_string().into_bytes(), pdus: count });
        }
    }

    let strace = if o.strace { Some(Strace::attach(hearth.pid, &dir.join("strace.txt"))?) } else { None };
    let mut times = Vec::with_capacity(txns.len());
    let mut errors = 0usize;
    let mut first_error: Option<String> = None;
    let started = Instant::now();
    for txn in &txns {
        let t0 = Instant::now();
        let (status, answer) = hearth.federation_raw("PUT", &txn.uri, &txn.auth, &txn.body)?;
        times.push(t0.elapsed());
        let results = answer.get("pdus").and_then(Value::as_object);
        let bad = match (status, results) {
            (200, Some(map)) => {
                let failed = map.values().filter(|r| r.get("error").is_some()).count();
                failed + txn.pdus.saturating_sub(map.len())
            }
            _ => txn.pdus,
        };
        if bad > 0 {
            errors += bad;
            first_error.get_or_insert_with(|| format!("PUT {}: {status} {answer}", txn.uri));
        }
    }
    let total = started.elapsed();
    let fsyncs = strace.map(Strace::finish).transpose()?;
    let sent: usize = txns.iter().map(|t| t.pdus).sum();

    let (status, last) = hearth.client(
        "GET",
        &format!("{}/event/{}", Hearth::room_path(&room_id), percent_encode(&last_id)),
        Some(&token),
        None,
    )?;
    let readable = status == 200 && last.get("event_id").and_then(Value::as_str) == Some(&last_id);
    times.sort();
    let line = json!({
        "mode": "inbound",
        "room_version": version.id,
        "transactions": txns.len(),
        "pdus": sent,
        "total_s": secs(total),
        "pdus_per_s": (sent as f64 / total.as_secs_f64()).round(),
        "txn_p50_ms": ms(quantile(&times, 0.50)),
        "txn_p99_ms": ms(quantile(&times, 0.99)),
        "txn_max_ms": ms(times.last().copied().unwrap_or_default()),
        "pdu_errors": errors,
        "last_event_readable": readable,
        "fsync_calls": fsyncs.map(|(fsync, _)| fsync),
        "fdatasync_calls": fsyncs.map(|(_, fdatasync)| fdatasync),
        "syncs_per_send": fsyncs.map(|(a, b)| ((a + b) as f64 / txns.len() as f64 * 100.0).round() / 100.0),
    });
    if let Some(e) = &first_error {
        eprintln!("first refused transaction: {e}");
    }
    if !readable {
        eprintln!("the last event, {last_id}, read back: {status} {last}");
    }
    println!("{line}");
    hearth.stop()?;
    if errors > 0 || !readable {
        return Err("Hearth refused PDUs or lost the last one (see above)".into());
    }
    Ok(())
}

/// `strace -f -c` counting fsync and fdatasync over every thread of a process.
struct Strace {
    child: Child,
    out: std::path::PathBuf,
}

impl Strace {
    /// Starts strace on `pid`; returns once it says it attached.
    fn attach(pid: u32, out: &std::path::Path) -> Result<Strace> {
        let mut child = Command::new("strace")
            .args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting strace: {e}"))?;
        let stderr = child.stderr.take().ok_or("strace has no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let attached = line.contains("attached");
                let detached = line.contains("detached");
                if !attached && !detached {
                    eprintln!("strace: {line}");
                }
                let _ = tx.send(attached);
            }
        });
        let deadline = Instant::now() + STRACE_ATTACH_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(true) => return Ok(Strace { child, out: out.to_owned() }),
                Ok(false) => continue,
                Err(_) => {
                    let _ = child.kill();
                    return Err("strace did not attach".into());
                }
            }
        }
    }

    /// Detaches (SIGINT) and reads the summary: (fsync calls, fdatasync calls).
    fn finish(mut self) -> Result<(u64, u64)> {
        Command::new("kill").args(["-INT", &self.child.id().to_string()]).status()?;
        self.child.wait()?;
        let text = std::fs::read_to_string(&self.out)?;
        let calls = |name: &str| {
            text.lines()
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    (cols.last() == Some(&name)).then(|| cols.get(3).and_then(|c| c.parse::<u64>().ok()))?
                })
                .sum()
        };
        Ok((calls("fsync"), calls("fdatasync")))
    }
}
