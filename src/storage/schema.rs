//! Applies `schema.sql` to a new database and upgrades older ones.
//!
//! The version lives in `PRAGMA user_version`. A new database gets the whole
//! current schema; an older one runs each upgrade step in turn. Everything
//! happens in one transaction, so a failed upgrade leaves the file as it was.
//! A database written by a newer Hearth is refused rather than guessed at.
//! A current database is only read: the server must start on a full disk.

use rusqlite::Connection;

/// The schema as it is now.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// The version `SCHEMA_SQL` describes.
pub const VERSION: i64 = 12;

/// Upgrade steps: `UPGRADES[i]` takes a database from version `i + 1` to
/// `i + 2`. Each ends where `SCHEMA_SQL` of its version begins; a test
/// upgrades the frozen first schema (`tests/data/schema-v1.sql`) and
/// compares it with a new database.
const UPGRADES: &[&str] = &[
    UPGRADE_TO_2,
    upgrade_3_device_list_triggers(),
    UPGRADE_TO_4,
    UPGRADE_TO_5,
    UPGRADE_TO_6,
    UPGRADE_TO_7,
    UPGRADE_TO_8,
    UPGRADE_TO_9,
    UPGRADE_TO_10,
    UPGRADE_TO_11,
    UPGRADE_TO_12,
];

/// Version 2 (issue 12).
///
/// UIA sessions are bound to their operation (`op_hash` replaces `kind`).
/// Sessions in progress are dropped — they live minutes, and cannot be
/// given an operation after the fact — and the registration-token uses
/// they held are given back, as an expiry would.
///
/// Pushers record the device that set them and go with it: the table is
/// rebuilt with `device_id` (NULL for the existing ones, whose device is
/// not known) and its foreign key; a trigger drops a deleted pusher's
/// pending pushes.
///
/// OpenID tokens get their table.
const UPGRADE_TO_2: &str = "
UPDATE registration_tokens SET pending = max(0, pending -
    (SELECT count(*) FROM uia_sessions s WHERE s.reg_token = registration_tokens.token));
DROP TABLE uia_sessions;
CREATE TABLE uia_sessions (
    session_id    TEXT PRIMARY KEY,
    op_hash       BLOB NOT NULL,
    user_id       TEXT,
    completed     TEXT NOT NULL DEFAULT '[]',
    reg_token     TEXT,
    created_ts    INTEGER NOT NULL
) STRICT;
CREATE INDEX uia_sessions_created ON uia_sessions(created_ts);

CREATE TABLE pushers_v2 (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    pushkey_ts          INTEGER NOT NULL,
    device_id           TEXT,
    PRIMARY KEY (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
INSERT INTO pushers_v2 (user_id, app_id, pushkey, kind, app_display_name, device_display_name,
                        profile_tag, lang, data, pushkey_ts)
    SELECT user_id, app_id, pushkey, kind, app_display_name, device_display_name,
           profile_tag, lang, data, pushkey_ts FROM pushers;
DROP TABLE pushers;
ALTER TABLE pushers_v2 RENAME TO pushers;
CREATE INDEX pushers_key ON pushers(app_id, pushkey);
CREATE INDEX pushers_device ON pushers(user_id, device_id);
CREATE TRIGGER pushers_deleted AFTER DELETE ON pushers BEGIN
    DELETE FROM push_outbox
        WHERE user_id = OLD.user_id AND app_id = OLD.app_id AND pushkey = OLD.pushkey;
END;

CREATE TABLE openid_tokens (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    expires_ts  INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX openid_tokens_device ON openid_tokens(user_id, device_id);
CREATE INDEX openid_tokens_expiry ON openid_tokens(expires_ts);
";

// ------------------------------------------------- upgrade step 2 -> 3 (sync)

/// Schema 3: devices added, renamed or removed record a device-list change
/// (`/sync`'s `device_lists.changed`) even before they upload keys. The
/// same triggers are in `schema.sql`.
const fn upgrade_3_device_list_triggers() -> &'static str {
    "
CREATE TRIGGER devices_added AFTER INSERT ON devices BEGIN
    UPDATE stream_position SET pos = pos + 1 WHERE id = 1;
    INSERT OR REPLACE INTO e2e_device_list_changes (user_id, pos)
        VALUES (NEW.user_id, (SELECT pos FROM stream_position WHERE id = 1));
END;
CREATE TRIGGER devices_renamed AFTER UPDATE OF display_name ON devices
    WHEN OLD.display_name IS NOT NEW.display_name BEGIN
    UPDATE stream_position SET pos = pos + 1 WHERE id = 1;
    INSERT OR REPLACE INTO e2e_device_list_changes (user_id, pos)
        VALUES (NEW.user_id, (SELECT pos FROM stream_position WHERE id = 1));
END;
CREATE TRIGGER devices_removed AFTER DELETE ON devices BEGIN
    UPDATE stream_position SET pos = pos + 1 WHERE id = 1;
    INSERT OR REPLACE INTO e2e_device_list_changes (user_id, pos)
        VALUES (OLD.user_id, (SELECT pos FROM stream_position WHERE id = 1));
END;
"
}

// ------------------------------------------------- upgrade step 3 -> 4 (guests)

/// Schema 4: accounts can be guests (`users.is_guest`), and the erasure
/// table, which schema 3 servers made on first use without `STRICT`, is
/// part of the schema: made if missing, then rebuilt into its final form
/// with the rows it held.
const UPGRADE_TO_4: &str = "
ALTER TABLE users ADD COLUMN is_guest INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS erased_users (
    user_id TEXT PRIMARY KEY NOT NULL,
    pos INTEGER NOT NULL,
    ts INTEGER NOT NULL
);
CREATE TABLE erased_users_v4 (
    user_id       TEXT PRIMARY KEY,
    pos           INTEGER NOT NULL,
    ts            INTEGER NOT NULL
) STRICT;
INSERT INTO erased_users_v4 (user_id, pos, ts) SELECT user_id, pos, ts FROM erased_users;
DROP TABLE erased_users;
ALTER TABLE erased_users_v4 RENAME TO erased_users;
";

// ------------------------------------------------- upgrade step 4 -> 5 (outbound)

/// Schema 5 (issue 13): each queued push names its destination, the
/// pusher's gateway URL, indexed with its due time, so the outbound queue
/// finds the gateways with due pushes by a walk of the index rather than
/// a scan of the whole outbox. Queued pushes get their pusher's URL.
const UPGRADE_TO_5: &str = "
ALTER TABLE push_outbox ADD COLUMN destination TEXT NOT NULL DEFAULT '';
UPDATE push_outbox SET destination = ifnull((SELECT CAST(ifnull(CASE WHEN json_valid(p.data)
        THEN json_extract(p.data, '$.url') END, '') AS TEXT)
    FROM pushers p WHERE p.user_id = push_outbox.user_id AND p.app_id = push_outbox.app_id
        AND p.pushkey = push_outbox.pushkey), '');
CREATE INDEX push_outbox_destination ON push_outbox(destination, next_try_ts);
";

// ------------------------------------------------- upgrade step 5 -> 6 (federation)

/// Schema 6 (issue 15): other servers' keys, the federation outbox and
/// the transactions received.
const UPGRADE_TO_6: &str = "
-- Federation (issue 15). Other servers' signing keys, as fetched from
-- their origin or a notary: one row per key, with the key document it
-- came in, kept as the origin signed it (served again by the notary
-- endpoints with Hearth's signature added). `valid_until_ts` is the
-- document's; `expired_ts` is set for keys listed in `old_verify_keys`.
CREATE TABLE remote_server_keys (
    server_name     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    public_key      TEXT NOT NULL,         -- unpadded base64 ed25519
    valid_until_ts  INTEGER NOT NULL,
    expired_ts      INTEGER,
    fetched_ts      INTEGER NOT NULL,
    doc             TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
) STRICT, WITHOUT ROWID;

-- What is waiting to go to another server, written in the transaction of
-- what it carries. Rows are taken into a transaction (`txn_id` set) at
-- most 50 PDUs and 100 EDUs at a time; the same `txn_id` is sent again
-- until the destination acknowledges it, then its rows go.
CREATE TABLE federation_outbox (
    id            INTEGER PRIMARY KEY,
    destination   TEXT NOT NULL,
    kind          TEXT NOT NULL,           -- 'pdu' or 'edu'
    body          TEXT NOT NULL,           -- the PDU or EDU as JSON
    txn_id        TEXT,                    -- NULL until taken into a transaction
    created_ts    INTEGER NOT NULL
) STRICT;
CREATE INDEX federation_outbox_destination ON federation_outbox(destination, id);

-- Transactions received, per origin: a retried transaction is answered
-- as the first time and not processed again. Pruned after a day.
CREATE TABLE federation_txns_in (
    origin        TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    response      TEXT NOT NULL,
    received_ts   INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX federation_txns_in_received ON federation_txns_in(received_ts);
";

// ------------------------------------------------- upgrade step 6 -> 7 (auth edges)

/// Schema 7 (issue 16): the auth edges of stored events, filled from the
/// PDUs already stored (either `auth_events` format: IDs, or the `[id,
/// hashes]` pairs of room versions 1 and 2).
const UPGRADE_TO_7: &str = "
-- The auth edges of every stored event (issue 16): `auth_id` is one of
-- `event_id`'s `auth_events`. Written with the event, so an auth chain is
-- an indexed walk (`storage::events::auth_chain`), never a parse of stored
-- JSON per hop.
CREATE TABLE event_auth_edges (
    event_id      TEXT NOT NULL,
    auth_id       TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
) STRICT, WITHOUT ROWID;

INSERT OR IGNORE INTO event_auth_edges (event_id, auth_id)
    SELECT e.event_id, CASE WHEN a.type = 'array' THEN json_extract(a.value, '$[0]') ELSE a.value END
    FROM events e, json_each(e.pdu, '$.auth_events') a
    WHERE json_valid(e.pdu) AND (a.type = 'text' OR a.type = 'array');
";

// ------------------------------------------------- upgrade step 7 -> 8 (the room as a graph)

/// Schema 8 (issue 17): events outside the timeline, prev edges (filled
/// from the stored PDUs), the state after each state event, and the
/// room's backward extremities.
const UPGRADE_TO_8: &str = "
-- Events known outside a room's timeline (issue 17): outliers (the auth
-- chain of a join, events fetched for their state), events rejected by
-- the authorization rules (with the reason; never shown, never state,
-- never cited as prev_events) and soft-failed events (passed the rules
-- at their own place in the graph but not against the current state:
-- not shown, not extremities, still resolvable when later events cite
-- them; `state_before` is theirs).
CREATE TABLE event_outliers (
    event_id      TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    status        TEXT NOT NULL,           -- 'outlier', 'rejected', 'soft_failed'
    reason        TEXT,
    type          TEXT NOT NULL,
    state_key     TEXT,
    sender        TEXT NOT NULL,
    origin_ts     INTEGER NOT NULL,
    depth         INTEGER NOT NULL,
    state_before  INTEGER,                 -- soft-failed: the state group before it
    pdu           TEXT NOT NULL,
    received_ts   INTEGER NOT NULL
) STRICT;
CREATE INDEX event_outliers_room ON event_outliers(room_id, status);

-- The prev edges of every stored event: `prev_id` is one of `event_id`'s
-- `prev_events` (walked by backfill and get_missing_events; the index by
-- `prev_id` says whether an event already has a successor).
CREATE TABLE event_prev_edges (
    event_id      TEXT NOT NULL,
    prev_id       TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX event_prev_edges_prev ON event_prev_edges(prev_id);

-- The state group after a state event (for a message it is the group
-- before it): what an event citing it as a prev event starts from.
CREATE TABLE event_state_after (
    event_id      TEXT PRIMARY KEY,
    state_group   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Events cited as prev_events that this server does not have: where
-- backfill goes on.
CREATE TABLE backward_extremities (
    room_id       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) STRICT, WITHOUT ROWID;

INSERT OR IGNORE INTO event_prev_edges (event_id, prev_id)
    SELECT e.event_id, CASE WHEN a.type = 'array' THEN json_extract(a.value, '$[0]') ELSE a.value END
    FROM events e, json_each(e.pdu, '$.prev_events') a
    WHERE json_valid(e.pdu) AND (a.type = 'text' OR a.type = 'array');
";

// ------------------------------------------------- upgrade step 8 -> 9 (topological order)

/// Schema 9 (issue 17): `/messages` and `/context` read a room in its
/// topological order, `(depth, pos)`, through an index.
const UPGRADE_TO_9: &str = "
CREATE INDEX events_room_depth ON events(room_id, depth, pos);
";

// ------------------------------------------------- upgrade step 9 -> 10 (device lists across servers)

/// Schema 10 (issue 18): the per-user stream of device-list updates sent
/// to other servers and what they were told, the cache of remote users'
/// devices and cross-signing keys, and the to-device messages received.
const UPGRADE_TO_10: &str = "
-- Device lists across servers (issue 18, schema 10).
--
-- What was last told other servers of each local device (its keys as
-- /user/devices renders them), and the per-user stream of those
-- m.device_list_update EDUs: each has stream_id = the user's next, prev_id
-- = the one before, so a receiver detects a gap, also after restarts.
CREATE TABLE device_list_streams (
    user_id       TEXT PRIMARY KEY,
    stream_id     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE device_list_sent (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    keys          TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
) STRICT, WITHOUT ROWID;

-- The cache of remote users' devices, filled by their server's
-- m.device_list_update and m.signing_key_update EDUs and by a resync
-- (/user/devices); stale when an update was missed (a gap), until resynced.
CREATE TABLE remote_device_lists (
    user_id       TEXT PRIMARY KEY,
    stream_id     INTEGER NOT NULL,
    stale         INTEGER NOT NULL DEFAULT 0,
    master_key    TEXT,
    self_signing_key TEXT,
    updated_ts    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE remote_devices (
    user_id       TEXT NOT NULL REFERENCES remote_device_lists(user_id) ON DELETE CASCADE,
    device_id     TEXT NOT NULL,
    keys          TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
) STRICT, WITHOUT ROWID;

-- m.direct_to_device EDUs received, by (origin, message_id), so a retried
-- transaction delivers them once; kept a day.
CREATE TABLE to_device_in (
    origin        TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    received_ts   INTEGER NOT NULL,
    PRIMARY KEY (origin, message_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX to_device_in_received ON to_device_in(received_ts);
";

/// Version 11 (issue 19): relations, threads, the search index and
/// reports; the indexes are filled from the events already stored.
const UPGRADE_TO_11: &str = "
-- Relations, threads, search and reports (issue 19, schema 11).
--
-- Every timeline event whose content has an `m.relates_to` with an
-- `event_id` and a `rel_type`, keyed by its position: written with the
-- event (storage::relations::index), gone when the event is redacted (its
-- content, and so its relation, goes).
CREATE TABLE event_relations (
    pos           INTEGER PRIMARY KEY,     -- the relating event's position
    relates_to    TEXT NOT NULL,           -- the event it relates to
    rel_type      TEXT NOT NULL,
    key           TEXT                     -- an m.annotation's key
) STRICT;
CREATE INDEX event_relations_parent ON event_relations(relates_to, rel_type, pos);

-- Threads by latest activity (/threads): a root has a row from its first
-- m.thread reply on; latest_pos is the newest reply's position.
CREATE TABLE threads (
    root_id       TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    latest_pos    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX threads_room ON threads(room_id, latest_pos);

-- Full-text search (POST /search): the `body` of m.room.message, the `name`
-- of m.room.name and the `topic` of m.room.topic, rowid = the event's
-- position. Contentless: the text stays in the PDU; a redaction deletes the
-- entry (storage::search).
CREATE VIRTUAL TABLE event_search USING fts5(
    text, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2'
);

-- Reports of events, rooms and users (hearth reports list|resolve).
CREATE TABLE reports (
    id            INTEGER PRIMARY KEY,
    received_ts   INTEGER NOT NULL,
    reporter      TEXT NOT NULL,
    room_id       TEXT,
    event_id      TEXT,
    user_id       TEXT,                    -- a reported user
    reason        TEXT,
    score         INTEGER,
    resolved_ts   INTEGER
) STRICT;
CREATE INDEX reports_open ON reports(resolved_ts, id);

INSERT INTO event_relations (pos, relates_to, rel_type, key)
    SELECT pos, pdu ->> '$.content.\"m.relates_to\".event_id',
           pdu ->> '$.content.\"m.relates_to\".rel_type',
           CASE WHEN pdu ->> '$.content.\"m.relates_to\".rel_type' = 'm.annotation'
                THEN pdu ->> '$.content.\"m.relates_to\".key' END
    FROM events
    WHERE redacted_by IS NULL
      AND CASE WHEN json_valid(pdu) THEN
              json_type(pdu, '$.content.\"m.relates_to\".event_id') = 'text'
              AND json_type(pdu, '$.content.\"m.relates_to\".rel_type') = 'text' END;
INSERT INTO threads (root_id, room_id, latest_pos)
    SELECT r.relates_to, e.room_id, max(r.pos)
    FROM event_relations r JOIN events e ON e.pos = r.pos
    WHERE r.rel_type = 'm.thread' GROUP BY r.relates_to;
INSERT INTO event_search (rowid, text)
    SELECT pos, CASE type WHEN 'm.room.message' THEN pdu ->> '$.content.body'
                          WHEN 'm.room.name' THEN pdu ->> '$.content.name'
                          ELSE pdu ->> '$.content.topic' END
    FROM events
    WHERE redacted_by IS NULL
      AND CASE WHEN json_valid(pdu) THEN ((type = 'm.room.message' AND json_type(pdu, '$.content.body') = 'text')
        OR (type = 'm.room.name' AND json_type(pdu, '$.content.name') = 'text')
        OR (type = 'm.room.topic' AND json_type(pdu, '$.content.topic') = 'text')) END;
";

/// Version 12 (issue 20): application services' push state and
/// published room lists.
const UPGRADE_TO_12: &str = "
CREATE TABLE appservice_state (
    as_id         TEXT PRIMARY KEY,
    pushed_pos    INTEGER NOT NULL,        -- events up to here are done
    txn_seq       INTEGER NOT NULL DEFAULT 0,  -- the last transaction's number
    txn_body      TEXT,                    -- the transaction in flight
    txn_up_to     INTEGER,                 -- pushed_pos once it is acknowledged
    failures      INTEGER NOT NULL DEFAULT 0,
    retry_at      INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

CREATE TABLE appservice_room_list (
    as_id         TEXT NOT NULL,
    network_id    TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    PRIMARY KEY (as_id, network_id, room_id)
) STRICT, WITHOUT ROWID;
";

// ------------------------------------------------- end of upgrade steps

/// Brings the schema of `conn`'s database to [`VERSION`]. Reads the version
/// first and opens a write transaction only when there is something to
/// create or upgrade.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    const _: () = assert!(UPGRADES.len() as i64 == VERSION - 1);
    let err = |e: rusqlite::Error| format!("schema migration failed: {e}");
    let version =
        |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map_err(err);
    let found = version(conn)?;
    check_not_newer(found)?;
    if found == VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive).map_err(err)?;
    // Read again under the lock: another process may have migrated meanwhile.
    let found = version(&tx)?;
    check_not_newer(found)?;
    if found == VERSION {
        return Ok(());
    }
    if found == 0 {
        let tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(err)?;
        if tables > 0 {
            return Err("the file is an SQLite database, but not one of Hearth's".into());
        }
        tx.execute_batch(SCHEMA_SQL).map_err(err)?;
    } else {
        for step in &UPGRADES[(found - 1) as usize..] {
            tx.execute_batch(step).map_err(err)?;
        }
    }
    tx.pragma_update(None, "user_version", VERSION).map_err(err)?;
    tx.commit().map_err(err)
}

fn check_not_newer(found: i64) -> Result<(), String> {
    if found > VERSION {
        return Err(format!(
            "the database has schema version {found}, but this Hearth knows only up to {VERSION}: \
             it was written by a newer Hearth; run that version or restore a backup"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_database_gets_current_version_and_reopens() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
        // A second run is a no-op, not a failure.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_current_database_is_opened_without_writing() {
        let dir = std::env::temp_dir().join(format!("hearth-schema-ro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        migrate(&mut Connection::open(&path).unwrap()).unwrap();
        // A read-only connection fails any write: migrating through one
        // proves the current schema needs none.
        let mut ro = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        migrate(&mut ro).unwrap();
        drop(ro);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A version 2 database (the current schema without what steps 3 to 7
    /// add) gets the device triggers, the same as a new one.
    #[test]
    fn upgrade_3_adds_the_device_list_triggers() {
        let triggers = |c: &Connection| -> Vec<String> {
            let mut st = c
                .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'devices_%' ORDER BY name")
                .unwrap();
            st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        let mut old = Connection::open_in_memory().unwrap();
        migrate(&mut old).unwrap();
        old.execute_batch(
            "DROP TRIGGER devices_added; DROP TRIGGER devices_renamed; DROP TRIGGER devices_removed;
             ALTER TABLE users DROP COLUMN is_guest; DROP TABLE erased_users;
             DROP INDEX push_outbox_destination; ALTER TABLE push_outbox DROP COLUMN destination;
             DROP TABLE remote_server_keys; DROP TABLE federation_outbox; DROP TABLE federation_txns_in;
             DROP TABLE event_auth_edges; DROP TABLE event_outliers; DROP TABLE event_prev_edges; DROP TABLE event_state_after; DROP TABLE backward_extremities;
             DROP INDEX events_room_depth; DROP TABLE remote_devices; DROP TABLE remote_device_lists; DROP TABLE device_list_sent; DROP TABLE device_list_streams; DROP TABLE to_device_in;
             DROP TABLE event_relations; DROP TABLE threads; DROP TABLE event_search; DROP TABLE reports;
             DROP TABLE appservice_state; DROP TABLE appservice_room_list;
             PRAGMA user_version = 2;",
        )
        .unwrap();
        migrate(&mut old).unwrap();
        assert_eq!(triggers(&old).len(), 3);
        assert_eq!(triggers(&old), triggers(&fresh));
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
    }

    /// A version 4 database's queued pushes get their gateway as their
    /// destination.
    #[test]
    fn upgrade_5_names_the_destination_of_queued_pushes() {
        let mut old = Connection::open_in_memory().unwrap();
        migrate(&mut old).unwrap();
        old.execute_batch(
            "DROP INDEX push_outbox_destination; ALTER TABLE push_outbox DROP COLUMN destination;
             INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name,
                                  lang, data, pushkey_ts)
                 VALUES ('@a:x', 'app', 'key', 'http', 'App', 'Phone', 'en',
                         '{\"url\":\"https://g.example/_matrix/push/v1/notify\"}', 5);
             INSERT INTO push_outbox (user_id, app_id, pushkey, event_id, tweaks, attempts, next_try_ts)
                 VALUES ('@a:x', 'app', 'key', '$e', '{}', 0, 1), ('@gone:x', 'app', 'key', '$f', '{}', 0, 1);
             DROP TABLE remote_server_keys; DROP TABLE federation_outbox; DROP TABLE federation_txns_in;
             DROP TABLE event_auth_edges; DROP TABLE event_outliers; DROP TABLE event_prev_edges; DROP TABLE event_state_after; DROP TABLE backward_extremities;
             DROP INDEX events_room_depth; DROP TABLE remote_devices; DROP TABLE remote_device_lists; DROP TABLE device_list_sent; DROP TABLE device_list_streams; DROP TABLE to_device_in;
             DROP TABLE event_relations; DROP TABLE threads; DROP TABLE event_search; DROP TABLE reports;
             DROP TABLE appservice_state; DROP TABLE appservice_room_list;
             PRAGMA user_version = 4;",
        )
        .unwrap();
        migrate(&mut old).unwrap();
        let mut st = old.prepare("SELECT destination FROM push_outbox ORDER BY id").unwrap();
        let got: Vec<String> = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, ["https://g.example/_matrix/push/v1/notify", ""]);
        drop(st);
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_eq!(shape(&old), shape(&fresh));
    }

    /// A version 6 database gets the auth edges of the events it holds,
    /// in both `auth_events` formats.
    #[test]
    fn upgrade_7_fills_the_auth_edges() {
        let mut old = Connection::open_in_memory().unwrap();
        migrate(&mut old).unwrap();
        old.execute_batch(
            "DROP TABLE event_auth_edges; DROP TABLE event_outliers; DROP TABLE event_prev_edges; DROP TABLE event_state_after; DROP TABLE backward_extremities;
             DROP INDEX events_room_depth; DROP TABLE remote_devices; DROP TABLE remote_device_lists; DROP TABLE device_list_sent; DROP TABLE device_list_streams; DROP TABLE to_device_in;
             INSERT INTO rooms (room_id, version, creator, created_ts, state_group, depth, published)
                 VALUES ('!r', '10', '@u:x', 1, 0, 0, 0);
             INSERT INTO events (pos, event_id, room_id, type, sender, origin_ts, depth, state_before, pdu)
                 VALUES (1, '$a', '!r', 'm.room.message', '@u:x', 1, 1, 0, '{\"auth_events\":[\"$c\",\"$p\"]}'),
                        (2, '$b:x', '!r', 'm.room.message', '@u:x', 1, 1, 0,
                         '{\"auth_events\":[[\"$c:x\",{\"sha256\":\"h\"}]]}'),
                        (3, '$bad', '!r', 'm.room.message', '@u:x', 1, 1, 0, 'not json');
             DROP TABLE event_relations; DROP TABLE threads; DROP TABLE event_search; DROP TABLE reports;
             DROP TABLE appservice_state; DROP TABLE appservice_room_list;
             PRAGMA user_version = 6;",
        )
        .unwrap();
        migrate(&mut old).unwrap();
        let mut st = old.prepare("SELECT event_id, auth_id FROM event_auth_edges ORDER BY 1, 2").unwrap();
        let got: Vec<(String, String)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        let want = [("$a", "$c"), ("$a", "$p"), ("$b:x", "$c:x")];
        assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
        drop(st);
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_eq!(shape(&old), shape(&fresh));
    }

    /// A version 7 database gets the prev edges of the events it holds,
    /// in both `prev_events` formats, and the graph tables.
    #[test]
    fn upgrade_8_fills_the_prev_edges() {
        let mut old = Connection::open_in_memory().unwrap();
        migrate(&mut old).unwrap();
        old.execute_batch(
            "DROP TABLE event_outliers; DROP TABLE event_prev_edges; DROP TABLE event_state_after;
             DROP TABLE backward_extremities; DROP INDEX events_room_depth; DROP TABLE remote_devices; DROP TABLE remote_device_lists; DROP TABLE device_list_sent; DROP TABLE device_list_streams; DROP TABLE to_device_in;
             INSERT INTO rooms (room_id, version, creator, created_ts, state_group, depth, published)
                 VALUES ('!r', '10', '@u:x', 1, 0, 0, 0);
             INSERT INTO events (pos, event_id, room_id, type, sender, origin_ts, depth, state_before, pdu)
                 VALUES (1, '$a', '!r', 'm.room.message', '@u:x', 1, 1, 0, '{\"prev_events\":[\"$p\",\"$q\"]}'),
                        (2, '$b:x', '!r', 'm.room.message', '@u:x', 1, 1, 0,
                         '{\"prev_events\":[[\"$p:x\",{\"sha256\":\"h\"}]]}'),
                        (3, '$bad', '!r', 'm.room.message', '@u:x', 1, 1, 0, 'not json');
             DROP TABLE event_relations; DROP TABLE threads; DROP TABLE event_search; DROP TABLE reports;
             DROP TABLE appservice_state; DROP TABLE appservice_room_list;
             PRAGMA user_version = 7;",
        )
        .unwrap();
        migrate(&mut old).unwrap();
        let mut st = old.prepare("SELECT event_id, prev_id FROM event_prev_edges ORDER BY 1, 2").unwrap();
        let got: Vec<(String, String)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        let want = [("$a", "$p"), ("$a", "$q"), ("$b:x", "$p:x")];
        assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
        drop(st);
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_eq!(shape(&old), shape(&fresh));
    }

    /// A version 8 database gets the index of the topological order.
    #[test]
    fn upgrade_9_indexes_the_topological_order() {
        let mut old = Connection::open_in_memory().unwrap();
        migrate(&mut old).unwrap();
        old.execute_batch("DROP INDEX events_room_depth; DROP TABLE remote_devices; DROP TABLE remote_device_lists; DROP TABLE device_list_sent; DROP TABLE device_list_streams; DROP TABLE to_device_in; DROP TABLE event_relations; DROP TABLE threads; DROP TABLE event_search; DROP TABLE reports; DROP TABLE appservice_state; DROP TABLE appservice_room_list; PRAGMA user_version = 8;").unwrap();
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_ne!(shape(&old), shape(&fresh));
        migrate(&mut old).unwrap();
        assert_eq!(shape(&old), shape(&fresh));
        assert!(shape(&old).contains(&"events index events_room_depth 0 room_id,depth,pos".to_owned()));
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
    }

    /// A version 10 database gets its relations, threads and search index
    /// from the events it holds; redacted and unreadable events stay out.
    #[test]
    fn upgrade_11_indexes_relations_threads_and_text() {
        let mut old = Connection::open_in_memory().unwrap();
        migrate(&mut old).unwrap();
        old.execute_batch(
            r#"DROP TABLE event_relations; DROP TABLE threads; DROP TABLE event_search; DROP TABLE reports;
             DROP TABLE appservice_state; DROP TABLE appservice_room_list;
             INSERT INTO rooms (room_id, version, creator, created_ts, state_group, depth, published)
                 VALUES ('!r', '10', '@u:x', 1, 0, 0, 0);
             INSERT INTO events (pos, event_id, room_id, type, sender, origin_ts, depth, state_before, pdu, redacted_by)
                 VALUES (1, '$root', '!r', 'm.room.message', '@u:x', 1, 1, 0, '{"content":{"body":"hello garden"}}', NULL),
                        (2, '$t1', '!r', 'm.room.message', '@u:x', 1, 2, 0,
                         '{"content":{"body":"in thread","m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}}', NULL),
                        (3, '$t2', '!r', 'm.room.message', '@u:x', 1, 3, 0,
                         '{"content":{"body":"again","m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}}', NULL),
                        (4, '$re', '!r', 'm.reaction', '@u:x', 1, 4, 0,
                         '{"content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$root","key":"👍"}}}', NULL),
                        (5, '$gone', '!r', 'm.room.message', '@u:x', 1, 5, 0, '{"content":{}}', '$x'),
                        (6, '$bad', '!r', 'm.room.message', '@u:x', 1, 6, 0, 'not json', NULL),
                        (7, '$topic', '!r', 'm.room.topic', '@u:x', 1, 7, 0, '{"content":{"topic":"garden plans"}}', NULL);
             PRAGMA user_version = 10;"#,
        )
        .unwrap();
        migrate(&mut old).unwrap();
        let mut st = old
            .prepare("SELECT pos, relates_to, rel_type, ifnull(key, '-') FROM event_relations ORDER BY pos")
            .unwrap();
        let got: Vec<(i64, String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], (4, "$root".to_owned(), "m.annotation".to_owned(), "👍".to_owned()));
        drop(st);
        let latest: i64 = old
            .query_row("SELECT latest_pos FROM threads WHERE root_id = '$root'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(latest, 3);
        let mut st = old
            .prepare("SELECT rowid FROM event_search WHERE event_search MATCH 'garden' ORDER BY rowid")
            .unwrap();
        let hits: Vec<i64> = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(hits, [1, 7]);
        drop(st);
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_eq!(shape(&old), shape(&fresh));
    }

    /// A version 9 database gets the device-list tables of schema 10.
    #[test]
    fn upgrade_10_adds_the_device_list_tables() {
        let mut old = Connection::open_in_memory().unwrap();
        migrate(&mut old).unwrap();
        old.execute_batch(
            "DROP TABLE remote_devices; DROP TABLE remote_device_lists; DROP TABLE device_list_sent;
             DROP TABLE device_list_streams; DROP TABLE to_device_in; DROP TABLE event_relations; DROP TABLE threads; DROP TABLE event_search; DROP TABLE reports; DROP TABLE appservice_state; DROP TABLE appservice_room_list; PRAGMA user_version = 9;",
        )
        .unwrap();
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_ne!(shape(&old), shape(&fresh));
        migrate(&mut old).unwrap();
        assert_eq!(shape(&old), shape(&fresh));
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1).unwrap();
        let e = migrate(&mut conn).unwrap_err();
        assert!(e.contains("newer Hearth"), "{e}");
    }

    /// Everything about a schema that matters, table by table: columns
    /// (name, type, not null, default, key), foreign keys, indexes (name,
    /// unique, columns) and triggers. The stored `CREATE` text is not
    /// compared: a table rebuilt by an upgrade is renamed into place, which
    /// quotes its name there.
    fn shape(conn: &Connection) -> Vec<String> {
        let strings = |sql: &str| -> Vec<String> {
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
            rows.collect::<rusqlite::Result<_>>().unwrap()
        };
        let mut out = Vec::new();
        let tables = strings("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
        for t in &tables {
            out.extend(strings(&format!(
                "SELECT '{t} column ' || name || ' ' || type || ' ' || \"notnull\" || ' ' || \
                 ifnull(dflt_value, '-') || ' ' || pk FROM pragma_table_info('{t}') ORDER BY cid"
            )));
            out.extend(strings(&format!(
                "SELECT '{t} fk ' || \"table\" || ' ' || \"from\" || ' ' || ifnull(\"to\", '-') || ' ' || on_delete \
                 FROM pragma_foreign_key_list('{t}') ORDER BY id, seq"
            )));
            out.extend(strings(&format!(
                "SELECT '{t} strict ' || strict || ' ' || wr FROM pragma_table_list WHERE name = '{t}'"
            )));
            for (index, unique) in {
                let mut stmt = conn
                    .prepare(&format!("SELECT name, \"unique\" FROM pragma_index_list('{t}') ORDER BY name"))
                    .unwrap();
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap();
                rows.collect::<rusqlite::Result<Vec<_>>>().unwrap()
            } {
                let columns = strings(&format!(
                    "SELECT ifnull(name, '?') FROM pragma_index_info('{index}') ORDER BY seqno"
                ));
                let name = if index.starts_with("sqlite_autoindex") { "auto".to_owned() } else { index };
                out.push(format!("{t} index {name} {unique} {}", columns.join(",")));
            }
        }
        out.extend(strings("SELECT 'trigger ' || name || ' on ' || tbl_name FROM sqlite_master WHERE type = 'trigger' ORDER BY name"));
        out.sort();
        out
    }

    #[test]
    fn upgrading_the_first_schema_gives_the_current_one() {
        let mut old = Connection::open_in_memory().unwrap();
        old.execute_batch(include_str!("../../tests/data/schema-v1.sql")).unwrap();
        old.pragma_update(None, "user_version", 1).unwrap();
        old.execute_batch(
            "INSERT INTO registration_tokens (token, uses_allowed, pending, created_ts) VALUES ('tok', 1, 1, 0);
             INSERT INTO uia_sessions (session_id, kind, completed, reg_token, created_ts)
                 VALUES ('s', 'register', '[\"m.login.registration_token\"]', 'tok', 0);
             INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name,
                                  lang, data, pushkey_ts)
                 VALUES ('@a:x', 'app', 'key', 'http', 'App', 'Phone', 'en', '{}', 5);
             CREATE TABLE erased_users (user_id TEXT PRIMARY KEY NOT NULL, pos INTEGER NOT NULL, ts INTEGER NOT NULL);
             INSERT INTO erased_users VALUES ('@gone:x', 3, 4);",
        )
        .unwrap();
        let mut new = Connection::open_in_memory().unwrap();
        migrate(&mut new).unwrap();
        // The comparison sees the difference the upgrade makes.
        assert_ne!(shape(&old), shape(&new));
        migrate(&mut old).unwrap();
        assert_eq!(shape(&old), shape(&new));
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
        // The dropped session's token use was given back.
        let pending: i64 = old
            .query_row("SELECT pending FROM registration_tokens WHERE token = 'tok'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pending, 0);
        let sessions: i64 = old.query_row("SELECT count(*) FROM uia_sessions", [], |r| r.get(0)).unwrap();
        assert_eq!(sessions, 0);
        // Rows of the erasure table schema 3 made on first use survive.
        let erased: i64 = old.query_row("SELECT count(*) FROM erased_users", [], |r| r.get(0)).unwrap();
        assert_eq!(erased, 1);
        // Pushers are kept, their device unknown.
        let pusher: (String, i64, Option<String>) = old
            .query_row("SELECT pushkey, pushkey_ts, device_id FROM pushers", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(pusher, ("key".to_owned(), 5, None));
    }

    #[test]
    fn foreign_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(migrate(&mut conn).is_err());
    }
}
