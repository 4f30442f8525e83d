//! Drives Hearth through matrix-rust-sdk (`matrix-sdk` and `matrix-sdk-ui`,
//! the libraries Element X runs): simplified sliding sync (MSC4186) through
//! the SDK's `SyncService` and `RoomListService`. Run by tests/msdk.rs:
//!
//!   hearth-msdk SCENARIO BASE_URL [--record FILE]
//!
//! Prints one JSON line per observed fact (`{"fact": NAME, ...}`), then a
//! result line `{"scenario": NAME, "ok": true}`, exit 0; or, on the first
//! failure, `{"scenario": NAME, "ok": false, "step": ..., "error": ...}`,
//! exit 1. Every step is bounded; nothing waits forever. The SDK talks to
//! the server through a relay of the harness's (`record.rs`), which counts
//! the sliding sync exchanges; `--record FILE` has it write every exchange
//! the SDK makes (request and response bodies) to FILE, one JSON line each. `HEARTH_MSDK_LOG=matrix_sdk=debug,...` turns on the SDK's
//! tracing (stderr).
//!
//! Scenarios:
//!
//!   room-list   A (the SDK) logs in and starts the sync service; B (plain
//!               HTTP) creates a room, writes some history and invites A;
//!               A sees the invite in the room list, joins, opens the room
//!               and paginates back to the history, sees B's message sent
//!               after the join, sends one B reads back, sees B's read
//!               receipt and B's typing notice come and go, and the
//!               connections then stay quiet (long-polling, no busy loop).

// The SDK's futures nest deeply; the scenario's future holds many of them.
#![recursion_limit = "256"]

mod plain;
mod record;

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use matrix_sdk::ruma::events::receipt::{ReceiptThread, ReceiptType};
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, RoomId};
use matrix_sdk::sliding_sync::Version as SlidingSyncVersion;
use matrix_sdk::{Client, RoomState};
use matrix_sdk_ui::eyeball_im::Vector;
use matrix_sdk_ui::room_list_service::{filters, RoomListItem};
use matrix_sdk_ui::sync_service::{State as SyncState, SyncService};
use matrix_sdk_ui::timeline::{RoomExt, Timeline};
use serde_json::{json, Value};

use plain::Plain;

/// Longest any one step may take.
const STEP: Duration = Duration::from_secs(20);
/// Longest a whole scenario may take.
const SCENARIO: Duration = Duration::from_secs(150);
/// How often a condition is re-checked while waiting for it.
const POLL: Duration = Duration::from_millis(50);
/// Messages B writes before inviting A: more than the room subscription's
/// timeline_limit (20), so some only come by paginating back.
const HISTORY: usize = 25;
/// The window over which an idle client's sync requests are counted.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// Sliding sync requests an idle client may make in that window (it
/// long-polls for 30 s, so anything above a couple is a busy loop).
const IDLE_MAX: u64 = 2;

/// Why a scenario stopped: the step and what went wrong.
#[derive(Debug)]
pub struct Failure {
    step: String,
    error: String,
}

impl Failure {
    pub fn new(step: &str, error: impl std::fmt::Display) -> Failure {
        Failure { step: step.to_owned(), error: error.to_string() }
    }
}

/// Prints one fact line.
fn fact(name: &str, mut details: Value) {
    if !details.is_object() {
        details = json!({ "value": details });
    }
    details["fact"] = json!(name);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{details}");
    let _ = out.flush();
}

/// Runs `fut` under the step bound.
async fn step<T>(name: &str, fut: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    match tokio::time::timeout(STEP, fut).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(name, format!("timed out after {STEP:?}"))),
    }
}

/// An SDK call under the step bound, its error turned into a failure.
async fn sdk<T, E: std::fmt::Display>(
    name: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, Failure> {
    step(name, async { fut.await.map_err(|e| Failure::new(name, e)) }).await
}

/// What the SDK user's sync machinery is doing, watched while waiting, so a
/// sync error fails the step at once with the SDK's error instead of a
/// timeout.
struct Watch {
    sync: Arc<SyncService>,
}

impl Watch {
    fn sync_error(&self) -> Option<String> {
        match self.sync.state().get() {
            SyncState::Error(e) => Some(format!("the sync service stopped with an error: {e}")),
            SyncState::Terminated => Some("the sync service terminated".to_owned()),
            _ => None,
        }
    }

    /// Waits until `check` gives `Some`, re-checking every `POLL`, at most
    /// `STEP`; fails early if the sync service errs.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Some(v) = check().await {
                return Ok(v);
            }
            if let Some(e) = self.sync_error() {
                return Err(Failure::new(what, e));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Failure::new(what, format!("not seen within {STEP:?}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A unique suffix for user names, so runs against one server don't clash.
fn run_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos % 0xff_ffff)
}

/// The newest message item with `body` in the timeline: its sender, its
/// event ID once it has one, and whether it is still a local echo.
async fn find_message(timeline: &Timeline, body: &str) -> Option<(String, Option<OwnedEventId>, bool)> {
    timeline.items().await.iter().rev().find_map(|item| {
        let ev = item.as_event()?;
        let msg = ev.content().as_message()?;
        (msg.body() == body)
            .then(|| (ev.sender().to_string(), ev.event_id().map(ToOwned::to_owned), ev.is_local_echo()))
    })
}

async fn room_list(base: &str, record: Option<std::fs::File>) -> Result<(), Failure> {
    let run = run_id();
    let password = "msdk-password";

    // A registers over plain HTTP, then logs in through the SDK.
    let a_name = format!("msdka{run}");
    let (a_id, _) = step("register A", plain::register(base, &a_name, password)).await?;
    let b = step("register B", Plain::register(base, &format!("msdkb{run}"), password)).await?;
    fact("registered", json!({ "a": a_id, "b": b.user_id }));

    let (sdk_base, counts) = sdk("starting the relay", record::start(base.to_owned(), record)).await?;
    // The login answer's well_known base_url would move the SDK off the
    // relay (Hearth names itself there), so it is ignored.
    let builder = Client::builder().homeserver_url(&sdk_base).respect_login_well_known(false);
    let client = sdk("building the client", builder.build()).await?;
    // What Element X checks before it offers a login: /versions must list
    // org.matrix.simplified_msc3575 in unstable_features.
    let advertised = step("discovering sliding sync", async {
        Ok(client
            .available_sliding_sync_versions()
            .await
            .iter()
            .any(|v| matches!(v, SlidingSyncVersion::Native)))
    })
    .await?;
    fact("sliding_sync_advertised", json!({ "value": advertised }));
    // Use it either way, so the endpoint itself is exercised.
    client.set_sliding_sync_version(SlidingSyncVersion::Native);

    let login = sdk(
        "login",
        client
            .matrix_auth()
            .login_username(&a_name, password)
            .initial_device_display_name("hearth-msdk")
            .send(),
    )
    .await?;
    fact(
        "logged_in",
        json!({ "user_id": login.user_id.to_string(), "device_id": login.device_id.to_string() }),
    );

    let sync =
        Arc::new(sdk("building the sync service", SyncService::builder(client.clone()).build()).await?);
    step("starting the sync service", async {
        sync.start().await;
        Ok(())
    })
    .await?;
    let watch = Watch { sync: sync.clone() };
    let rls = sync.room_list_service();

    // The room list as a UI sees it: non-left rooms, kept up to date from
    // the dynamic entries stream by a task of its own.
    let all_rooms = sdk("all_rooms", rls.all_rooms()).await?;
    let entries: Arc<Mutex<Vector<RoomListItem>>> = Arc::default();
    {
        let entries = entries.clone();
        tokio::spawn(async move {
            let (stream, controller) = all_rooms.entries_with_dynamic_adapters(50);
            controller.set_filter(Box::new(filters::new_filter_non_left()));
            futures_util::pin_mut!(stream);
            while let Some(diffs) = stream.next().await {
                let mut list = entries.lock().unwrap_or_else(|p| p.into_inner());
                for diff in diffs {
                    diff.apply(&mut list);
                }
            }
        });
    }
    watch
        .until("the room list service running", || async {
            matches!(rls.state().get(), matrix_sdk_ui::room_list_service::State::Running).then_some(())
        })
        .await?;
    fact("room_list_running", json!({ "rooms": entries.lock().unwrap_or_else(|p| p.into_inner()).len() }));

    // B creates a room and invites A.
    let room_name = format!("msdk room {run}");
    let room_id = step(
        "B creates a room",
        b.create_room(json!({ "preset": "private_chat", "name": room_name, "topic": "sliding sync" })),
    )
    .await?;
    for i in 0..HISTORY {
        step("B writes history", b.send_text(&room_id, &format!("h{i}"), &format!("history {i}"))).await?;
    }
    step("B invites A", b.invite(&room_id, &a_id)).await?;
    fact("invited", json!({ "room_id": room_id }));
    let room_id: OwnedRoomId = RoomId::parse(&room_id).map_err(|e| Failure::new("room ID", e))?;

    let in_list = |state: RoomState| {
        let entries = entries.clone();
        let room_id = room_id.clone();
        move || {
            let entries = entries.clone();
            let room_id = room_id.clone();
            async move {
                let list = entries.lock().unwrap_or_else(|p| p.into_inner());
                list.iter()
                    .find(|r| r.room_id() == room_id && r.state() == state)
                    .map(|r| (r.clone(), r.cached_display_name().map(|n| n.to_string())))
            }
        }
    };
    let (item, name) = watch.until("the invite in the room list", in_list(RoomState::Invited)).await?;
    let inviter = item.invite_details().await.ok().map(|d| d.inviter_id.to_string());
    fact("invite_seen", json!({ "room_id": room_id.as_str(), "name": name, "inviter": inviter }));

    let room = item.into_inner();
    sdk("joining", room.join()).await?;
    let (_, name) = watch.until("the room joined in the room list", in_list(RoomState::Joined)).await?;
    fact("joined", json!({ "room_id": room_id.as_str(), "name": name }));

    // Opening the room as Element X does: a room subscription, a timeline.
    step("subscribing to the room", async {
        rls.subscribe_to_rooms(&[&room_id]).await;
        Ok(())
    })
    .await?;
    let timeline = sdk("building the timeline", room.timeline()).await?;
    let oldest = "history 0";
    let mut pages = 0;
    while find_message(&timeline, oldest).await.is_none() {
        pages += 1;
        if pages > 10 {
            return Err(Failure::new("paginating back", format!("{oldest:?} not reached in 10 pages")));
        }
        let start = sdk("paginating back", timeline.paginate_backwards(20)).await?;
        if start {
            // The page's items reach the timeline asynchronously: wait for
            // them (bounded) before calling the history missing.
            let mut polls = 0;
            while find_message(&timeline, oldest).await.is_none() {
                polls += 1;
                if polls > 200 {
                    return Err(Failure::new(
                        "paginating back",
                        format!("reached the room's start without {oldest:?}"),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
    }
    let mut history = 0;
    for i in 0..HISTORY {
        history += usize::from(find_message(&timeline, &format!("history {i}")).await.is_some());
    }
    if history != HISTORY {
        return Err(Failure::new("paginating back", format!("{history} of {HISTORY} history messages seen")));
    }
    fact("history_seen", json!({ "messages": history, "pages": pages }));
    let (typing_guard, mut typing) = room.subscribe_to_typing_notifications();

    let from_b = format!("hello from B {run}");
    let b_event =
        step("B sends a message", b.send_text(room_id.as_str(), &format!("b{run}"), &from_b)).await?;
    let (sender, seen_id, _) = watch
        .until("B's message in A's timeline", || async {
            find_message(&timeline, &from_b).await.filter(|(_, id, _)| id.is_some())
        })
        .await?;
    fact(
        "message_received",
        json!({ "event_id": seen_id.map(|e| e.to_string()), "sent_as": b_event, "sender": sender, "body": from_b }),
    );

    let from_a = format!("hello from A {run}");
    sdk("A sends a message", timeline.send(RoomMessageEventContent::text_plain(&from_a).into())).await?;
    let a_event = watch
        .until("A's message acknowledged (a remote echo)", || async {
            find_message(&timeline, &from_a).await.and_then(|(_, id, local)| id.filter(|_| !local))
        })
        .await?;
    fact("message_sent", json!({ "event_id": a_event.as_str(), "body": from_a }));
    let read_back = b
        .messages(room_id.as_str(), 10)
        .await?
        .iter()
        .any(|e| e["event_id"] == json!(a_event.as_str()) && e["content"]["body"] == json!(from_a));
    if !read_back {
        return Err(Failure::new("B reads A's message back", format!("{a_event} not in B's /messages")));
    }
    fact("message_read_by_b", json!({ "event_id": a_event.as_str() }));

    step("B sends a read receipt", b.read_receipt(room_id.as_str(), a_event.as_str())).await?;
    let b_user = matrix_sdk::ruma::UserId::parse(&b.user_id).map_err(|e| Failure::new("B's ID", e))?;
    let stored = watch
        .until("B's read receipt (from the receipts extension)", || async {
            room.load_user_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, &b_user)
                .await
                .ok()
                .flatten()
                .filter(|(id, _)| *id == a_event)
        })
        .await?;
    let in_timeline = timeline.latest_user_read_receipt(&b_user).await.map(|(id, _)| id.to_string());
    fact(
        "receipt_seen",
        json!({ "event_id": stored.0.as_str(), "user": b.user_id, "timeline": in_timeline }),
    );

    step("B starts typing", b.typing(room_id.as_str(), true)).await?;
    let typers = step("B's typing notice", async {
        loop {
            match typing.recv().await {
                Ok(users) if users.contains(&b_user) => return Ok(users),
                Ok(_) => continue,
                Err(e) => return Err(Failure::new("B's typing notice", e)),
            }
        }
    })
    .await?;
    fact("typing_seen", json!({ "users": typers.iter().map(|u| u.to_string()).collect::<Vec<_>>() }));
    step("B stops typing", b.typing(room_id.as_str(), false)).await?;
    step("B's typing notice cleared", async {
        loop {
            match typing.recv().await {
                Ok(users) if !users.contains(&b_user) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(Failure::new("B's typing notice cleared", e)),
            }
        }
    })
    .await?;
    fact("typing_stopped", json!({ "user": b.user_id }));
    drop(typing_guard);

    // Nothing happens now: both connections should sit in their long-polls.
    // (A measurement over a window, not a wait for a fact.)
    let before = counts.get();
    tokio::time::sleep(IDLE_WINDOW).await;
    let after = counts.get();
    let idle: serde_json::Map<String, Value> = after
        .iter()
        .map(|(conn, n)| (conn.clone(), json!(n - before.get(conn).copied().unwrap_or(0))))
        .collect();
    fact("idle_requests", json!({ "window_ms": IDLE_WINDOW.as_millis() as u64, "by_conn_id": idle }));
    if let Some((conn, n)) = idle.iter().find(|(_, n)| n.as_u64().unwrap_or(0) > IDLE_MAX) {
        return Err(Failure::new(
            "idle",
            format!("connection {conn:?} made {n} sliding sync requests in {IDLE_WINDOW:?} with nothing happening (a busy loop)"),
        ));
    }

    step("stopping the sync service", async {
        sync.stop().await;
        Ok(())
    })
    .await?;
    Ok(())
}

fn usage() -> ! {
    eprintln!("usage: hearth-msdk room-list BASE_URL [--record FILE]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(scenario), Some(base)) = (args.first(), args.get(1)) else { usage() };
    let record = match args.get(2).map(String::as_str) {
        None => None,
        Some("--record") => match args.get(3) {
            Some(path) => Some(std::fs::File::create(path).unwrap_or_else(|e| {
                eprintln!("hearth-msdk: creating {path}: {e}");
                std::process::exit(2)
            })),
            None => usage(),
        },
        Some(_) => usage(),
    };
    if let Ok(filter) = std::env::var("HEARTH_MSDK_LOG") {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let targets: tracing_subscriber::filter::Targets = filter.parse().unwrap_or_default();
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false))
            .with(targets)
            .init();
    }
    let base = base.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        let fut = match scenario.as_str() {
            "room-list" => room_list(&base, record),
            _ => usage(),
        };
        match tokio::time::timeout(SCENARIO, fut).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new("scenario", format!("did not finish within {SCENARIO:?}"))),
        }
    });
    let line = match &result {
        Ok(()) => json!({ "scenario": scenario, "ok": true }),
        Err(f) => json!({ "scenario": scenario, "ok": false, "step": f.step, "error": f.error }),
    };
    println!("{line}");
    let _ = std::io::stdout().flush();
    // Background SDK tasks are not waited for.
    std::process::exit(if result.is_ok() { 0 } else { 1 });
}
