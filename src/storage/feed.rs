//! The change feed: what a write changed, recorded on its transaction and
//! announced once it is durable.
//!
//! Every write runs with a [`Tx`]: the connection, plus the list of what
//! the write changed (the stream position it reached, the rooms and the
//! users whose readers may now see something new). Code that changes
//! something the long-polls, the push sender or (later) the federation
//! sender care about says so on the `Tx` where it makes the change
//! ([`Tx::changed`]), so no caller can forget. When the write's batch has
//! committed, [`super::Db::write`] hands the [`Changes`] to the sink the
//! server installed (the hub), from whichever thread wrote: a request
//! worker, a background sender, later a federation receiver. A write that
//! failed announces nothing, and nothing is announced before it is on disk.

use std::cell::RefCell;
use std::ops::Deref;

use rusqlite::Connection;

/// What a write (or an in-memory change: typing, presence) changed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    /// The stream position reached (0 if only ephemeral data changed).
    pub pos: i64,
    /// The ephemeral serial reached (typing, presence), 0 if unchanged.
    pub ephemeral: u64,
    /// Rooms whose members may see something new.
    pub rooms: Vec<String>,
    /// Users who may see something new (an invitee, account data, to-device).
    pub users: Vec<String>,
    /// Something was queued for another server (the federation outbox).
    pub federation: bool,
}

impl Changes {
    /// An in-memory change (typing, presence) at ephemeral serial `serial`.
    pub fn ephemeral(serial: u64, rooms: &[&str], users: &[&str]) -> Changes {
        let mut c = Changes { ephemeral: serial, ..Changes::default() };
        c.add(0, rooms, users);
        c
    }

    /// True if nobody needs to hear of it.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.users.is_empty() && !self.federation
    }

    /// Adds a change at stream position `pos` concerning `rooms` and `users`.
    pub fn add(&mut self, pos: i64, rooms: &[&str], users: &[&str]) {
        self.pos = self.pos.max(pos);
        for room in rooms {
            if !self.rooms.iter().any(|r| r == room) {
                self.rooms.push((*room).to_owned());
            }
        }
        for user in users {
            if !self.users.iter().any(|u| u == user) {
                self.users.push((*user).to_owned());
            }
        }
    }
}

/// A write in progress: the connection (inside the write's savepoint) and
/// what the write has changed so far. Derefs to the connection, so every
/// storage function that takes `&Connection` takes a `&Tx` as well.
pub struct Tx<'a> {
    conn: &'a Connection,
    changes: &'a RefCell<Changes>,
}

impl<'a> Tx<'a> {
    /// A write on `conn` recording into `changes`; the database makes these
    /// (`Db::write`), and tests that drive services on a bare connection.
    pub fn new(conn: &'a Connection, changes: &'a RefCell<Changes>) -> Tx<'a> {
        Tx { conn, changes }
    }

    /// Records that this write reached stream position `pos`, and whose
    /// readers it concerns.
    pub fn changed(&self, pos: i64, rooms: &[&str], users: &[&str]) {
        self.changes.borrow_mut().add(pos, rooms, users);
    }

    /// Records that this write queued something for another server.
    pub fn queued_federation(&self) {
        self.changes.borrow_mut().federation = true;
    }

    /// The connection itself.
    pub fn conn(&self) -> &'a Connection {
        self.conn
    }
}

impl Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// Runs `f` as a write on a bare connection (unit tests of the services),
/// returning what it recorded beside its result.
#[cfg(test)]
pub fn on_conn<T>(conn: &Connection, f: impl FnOnce(&Tx) -> T) -> (T, Changes) {
    let changes = RefCell::new(Changes::default());
    let out = f(&Tx::new(conn, &changes));
    (out, changes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_merge_positions_and_deduplicate() {
        let mut c = Changes::default();
        assert!(c.is_empty());
        c.add(5, &["!a"], &["@u"]);
        c.add(3, &["!a", "!b"], &[]);
        assert_eq!(c.pos, 5);
        assert_eq!(c.rooms, ["!a", "!b"]);
        assert_eq!(c.users, ["@u"]);
        assert!(!c.is_empty());
    }

    #[test]
    fn a_tx_records_and_reads_through() {
        let conn = Connection::open_in_memory().unwrap();
        let (n, changes) = on_conn(&conn, |tx| {
            tx.changed(7, &[], &["@u"]);
            tx.query_row("SELECT 41 + 1", [], |r| r.get::<_, i64>(0)).unwrap()
        });
        assert_eq!(n, 42);
        assert_eq!(changes, Changes { pos: 7, users: vec!["@u".into()], ..Changes::default() });
    }
}
