//! A full disk, through the real server: writes fail with a 503 that says
//! so, while `/sync`, `/messages` and `/whoami` keep answering; the server
//! starts on the full disk (it writes nothing at start when the schema is
//! current); once space is freed, writes succeed again without a restart.
//!
//! Two disks. A real one where the test may mount it (as root, as in CI):
//! a small tmpfs holding only the database, filled up by a ballast file
//! and freed by deleting it, so SQLite meets `ENOSPC` on the WAL at
//! commit. And a simulated one everywhere: SQLite's `max_page_count`
//! through the test-only `HEARTH_TEST_MAX_PAGE_COUNT`, which fails the
//! statement that would grow the database with `SQLITE_FULL`; space is
//! freed by shrinking stored values, as deleting data elsewhere would.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{enc, room_path, Server, TempDir, V3};
use serde_json::{json, Value};

/// Pages the simulated disk leaves for the test's writes beyond the new
/// database: registration, a room and a message fit, with room to spare.
const SIMULATED_SPARE_PAGES: u64 = 200;
/// Size of the real disk (a tmpfs).
const TMPFS_BYTES: u64 = 8 * 1024 * 1024;
/// Size of one filler value: a few database pages.
const FILLER_BYTES: usize = 32 * 1024;
/// Bound on the filler writes: the disk is full long before.
const FILL_WRITES_MAX: usize = 1000;
/// The test-only page cap of the server (see `storage::TEST_MAX_PAGE_COUNT_ENV`).
const MAX_PAGE_COUNT_ENV: &str = "HEARTH_TEST_MAX_PAGE_COUNT";

/// Where the database lives, and how it is filled and freed.
enum Disk {
    /// A tmpfs of `TMPFS_BYTES` mounted on `dir` for this test; `ballast`
    /// takes up what the database does not.
    Real { dir: TempDir, ballast: PathBuf },
    /// A database capped at `max_pages` pages.
    Simulated { dir: TempDir, max_pages: u64 },
}

impl Disk {
    /// A tmpfs, if this process may mount one.
    fn real() -> Option<Disk> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: a tmpfs cannot be mounted, the disk is simulated");
            return None;
        }
        let dir = TempDir::new();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status();
        if !mounted.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("mounting a tmpfs failed ({mounted:?}): the disk is simulated");
            return None;
        }
        let ballast = dir.join("ballast");
        Some(Disk::Real { dir, ballast })
    }

    /// A database created by the admin command line, capped a little
    /// above its size.
    fn simulated() -> Disk {
        let dir = TempDir::new();
        let db = dir.join("hearth.db");
        let (code, _, err) = common::hearth(&["user", "list", "--database", &db.display().to_string()], "");
        assert_eq!(code, 0, "creating the database: {err}");
        let max_pages = page_count(&db) + SIMULATED_SPARE_PAGES;
        Disk::Simulated { dir, max_pages }
    }

    fn db(&self) -> PathBuf {
        match self {
            Disk::Real { dir, .. } | Disk::Simulated { dir, .. } => dir.join("hearth.db"),
        }
    }

    fn start(&self) -> Server {
        let db = self.db().display().to_string();
        match self {
            Disk::Real { .. } => Server::start_with(&["--database", &db], &[]),
            Disk::Simulated { max_pages, .. } => {
                Server::start_with(&["--database", &db], &[(MAX_PAGE_COUNT_ENV, &max_pages.to_string())])
            }
        }
    }

    /// Takes up the space that is left (the real disk; the simulated one
    /// fills by the server's own writes).
    fn fill(&self) {
        let Disk::Real { ballast, .. } = self else { return };
        let mut file =
            OpenOptions::new().create(true).append(true).open(ballast).expect("opening the ballast");
        let page = [0xA5u8; 4096];
        while file.write_all(&page).and_then(|()| file.sync_data()).is_ok() {}
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Disk::Real { dir, .. } = self {
            let ok = Command::new("umount").arg(dir.path()).status().is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
            }
        }
    }
}

/// Pages of an SQLite file that no connection has open: its size over the
/// page size in its header.
fn page_count(db: &Path) -> u64 {
    let bytes = std::fs::read(db).expect("reading the database");
    let size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    bytes.len() as u64 / size
}

fn wal_len(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).map(|m| m.len()).unwrap_or(0)
}

fn filler_path(user: &str, i: usize) -> String {
    format!("{V3}/user/{}/account_data/org.example.filler.{i}", enc(user))
}

#[track_caller]
fn assert_storage_full(got: &(u16, Value)) {
    assert_eq!(got.0, 503, "{}", got.1);
    assert_eq!(got.1, json!({ "errcode": "M_UNKNOWN", "error": "server storage is full" }));
}

fn send(s: &Server, token: &str, room: &str, txn: &str, body: &str) -> (u16, Value) {
    s.put(
        &room_path(room, &format!("send/m.room.message/{txn}")),
        Some(token),
        json!({ "msgtype": "m.text", "body": body }),
    )
}

/// The reads a client goes on making: all answer 200.
fn assert_reads_work(s: &Server, token: &str, room: &str, since: &str) {
    let (status, who) = s.get(&format!("{V3}/account/whoami"), Some(token));
    assert_eq!(status, 200, "whoami: {who}");
    let (status, sync) = s.get(&format!("{V3}/sync?since={since}&timeout=0"), Some(token));
    assert_eq!(status, 200, "sync: {sync}");
    let (status, history) = s.get(&room_path(room, "messages?dir=b&limit=50"), Some(token));
    assert_eq!(status, 200, "messages: {history}");
    let bodies: Vec<&str> = history["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert!(bodies.contains(&"before"), "{history}");
}

/// The whole story on one disk.
fn full_disk_story(disk: Disk) {
    let db = disk.db();
    let mut s = disk.start();
    let (user, token, _) = s.register("alice", "pw-alice");
    let (status, created) = s.post(&format!("{V3}/createRoom"), Some(&token), json!({}));
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    assert_eq!(send(&s, &token, &room, "t1", "before").0, 200);
    let (status, first) = s.get(&format!("{V3}/sync"), Some(&token));
    assert_eq!(status, 200, "{first}");
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();

    // Fill until a write fails: with the storage error, not a 500.
    disk.fill();
    let filler = json!({ "x": "f".repeat(FILLER_BYTES) });
    let mut fillers = 0;
    let refused = loop {
        assert!(fillers < FILL_WRITES_MAX, "{FILL_WRITES_MAX} filler writes and the disk is not full");
        let got = s.put(&filler_path(&user, fillers), Some(&token), filler.clone());
        if got.0 != 200 {
            break got;
        }
        fillers += 1;
    };
    // The simulated disk is freed later by shrinking these: some must fit.
    assert!(
        fillers > 0 || matches!(disk, Disk::Real { .. }),
        "no filler fitted: raise SIMULATED_SPARE_PAGES"
    );
    assert_storage_full(&refused);
    // Pages that still have room take small writes (a database cap leaves
    // such room; a real disk rarely does): messages until they fail too.
    let mut filled_with_messages = 0;
    let refused = loop {
        assert!(
            filled_with_messages < FILL_WRITES_MAX,
            "{FILL_WRITES_MAX} messages and the disk is not full"
        );
        let got = send(&s, &token, &room, &format!("fill{filled_with_messages}"), "filling");
        if got.0 != 200 {
            break got;
        }
        filled_with_messages += 1;
    };
    assert_storage_full(&refused);
    assert_storage_full(&send(&s, &token, &room, "t2", "while full"));
    assert_reads_work(&s, &token, &room, &since);
    assert!(s.log_text().contains("no space left"), "{}", s.log_text());

    // The server starts on the full disk and writes nothing while starting.
    let _ = s.terminate();
    disk.fill();
    let wal_before = wal_len(&db);
    s.restart();
    assert_eq!(wal_len(&db), wal_before, "starting wrote to the database");
    assert_reads_work(&s, &token, &room, &since);
    assert_storage_full(&send(&s, &token, &room, "t3", "still full"));

    // Space is freed; writes succeed again, without a restart.
    match &disk {
        Disk::Real { ballast, .. } => std::fs::remove_file(ballast).expect("removing the ballast"),
        Disk::Simulated { .. } => {
            // Shrinking a stored value frees its pages for other writes.
            for i in 0..fillers {
                let (status, r) = s.put(&filler_path(&user, i), Some(&token), json!({}));
                assert_eq!(status, 200, "shrinking filler {i} on a full database: {r}");
            }
        }
    }
    let (status, sent) = send(&s, &token, &room, "t4", "after");
    assert_eq!(status, 200, "{sent}");
    let (status, sync) = s.get(&format!("{V3}/sync?since={since}&timeout=0"), Some(&token));
    assert_eq!(status, 200, "{sync}");
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    let bodies: Vec<&str> = timeline
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .filter(|b| *b != "filling")
        .collect();
    // What was refused was not stored.
    assert_eq!(bodies, ["after"], "{sync}");
    assert!(s.log_text().contains("space available again"), "{}", s.log_text());
}

#[test]
fn simulated_full_disk_fails_writes_with_503_keeps_reads_and_recovers() {
    full_disk_story(Disk::simulated());
}

#[test]
fn real_full_disk_fails_writes_with_503_keeps_reads_and_recovers() {
    full_disk_story(Disk::real().unwrap_or_else(Disk::simulated));
}
