//! The database holds the signing key seed, password hashes and
//! registration tokens: it, its `-wal` and `-shm` files and backups are
//! readable by their owner only, whatever the umask, and looser modes
//! found at start are tightened (and logged).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Server, TempDir, V3};
use serde_json::json;

/// The umask of a typical shell, under which files are created 0644
/// unless the program asks otherwise.
const PERMISSIVE_UMASK: libc::mode_t = 0o022;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The database and the two files SQLite keeps beside it in WAL mode.
fn db_files(s: &Server) -> [PathBuf; 3] {
    let db = s.db();
    [beside(&db, "-wal"), beside(&db, "-shm"), db]
}

#[test]
fn database_files_and_backups_are_private_and_loose_modes_are_tightened() {
    // SAFETY: umask only sets the process's file mode creation mask; the
    // servers started below inherit it.
    unsafe { libc::umask(PERMISSIVE_UMASK) };
    let mut s = Server::start();
    let (_, token, device) = s.register("alice", "pw-alice");
    let (status, r) = s.put(&format!("{V3}/devices/{device}"), Some(&token), json!({ "display_name": "x" }));
    assert_eq!(status, 200, "{r}");
    for file in db_files(&s) {
        assert_eq!(mode(&file) & 0o077, 0, "{} is {:04o}", file.display(), mode(&file));
    }

    let backups = TempDir::new();
    let copy = backups.join("copy.db");
    let (code, _, err) = s.hearth(&["backup", &copy.display().to_string()], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&copy) & 0o077, 0, "the backup is {:04o}", mode(&copy));

    // Files left readable by others (by an older Hearth, a copy, a
    // restore) are tightened at the next start.
    let _ = s.terminate();
    for file in db_files(&s) {
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    s.restart();
    for file in db_files(&s) {
        assert_eq!(mode(&file), 0o600, "{} is {:04o} after a restart", file.display(), mode(&file));
    }
    assert!(s.log_text().contains("was readable by others"), "{}", s.log_text());
    s.login("alice", "pw-alice");
}
