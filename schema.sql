-- Hearth's schema: everything the server knows lives in this one SQLite file.
--
-- This file is the current schema, applied as a whole to a new database.
-- Its version is PRAGMA user_version (set by storage::schema, which also
-- holds the steps that upgrade older databases). Times are milliseconds
-- since the Unix epoch. Secrets (access and refresh tokens) are stored only
-- as SHA-256 hashes.

-- Server-wide facts: the ed25519 signing key, and later other singletons.
CREATE TABLE server_keys (
    key_id      TEXT PRIMARY KEY,          -- "ed25519:a_AbCd"
    seed        BLOB NOT NULL,             -- 32-byte ed25519 seed
    created_ts  INTEGER NOT NULL,
    expired_ts  INTEGER                    -- NULL while the key is current
) STRICT;

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,        -- "@alice:example.org"
    password_hash TEXT,                    -- argon2id PHC string; NULL = no password login
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_ts    INTEGER NOT NULL,
    deactivated   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE devices (
    user_id       TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    device_id     TEXT NOT NULL,
    display_name  TEXT,
    created_ts    INTEGER NOT NULL,
    last_seen_ts  INTEGER,
    last_seen_ip  TEXT,
    PRIMARY KEY (user_id, device_id)
) STRICT, WITHOUT ROWID;

-- An access token belongs to exactly one device; deleting the device
-- deletes its tokens.
CREATE TABLE access_tokens (
    token_hash  BLOB PRIMARY KEY,          -- sha256(token)
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    created_ts  INTEGER NOT NULL,
    expires_ts  INTEGER,                   -- NULL = does not expire
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX access_tokens_device ON access_tokens(user_id, device_id);

CREATE TABLE refresh_tokens (
    token_hash  BLOB PRIMARY KEY,          -- sha256(token)
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    created_ts  INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_tokens_device ON refresh_tokens(user_id, device_id);

-- Registration tokens (MSC3231 / spec "Token-authenticated registration").
-- pending counts UIA sessions that passed the token stage but have not yet
-- registered; completed counts registrations made with the token.
CREATE TABLE registration_tokens (
    token         TEXT PRIMARY KEY,
    uses_allowed  INTEGER,                 -- NULL = unlimited
    pending       INTEGER NOT NULL DEFAULT 0,
    completed     INTEGER NOT NULL DEFAULT 0,
    expiry_ts     INTEGER,                 -- NULL = never expires
    created_ts    INTEGER NOT NULL
) STRICT;

-- User-interactive authentication sessions. kind names the endpoint the
-- session was opened for, so a session cannot be replayed elsewhere.
CREATE TABLE uia_sessions (
    session_id    TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    user_id       TEXT,                    -- NULL for registration
    completed     TEXT NOT NULL DEFAULT '[]', -- JSON array of stage types
    reg_token     TEXT,                    -- registration token this session holds a pending use of
    created_ts    INTEGER NOT NULL
) STRICT;
CREATE INDEX uia_sessions_created ON uia_sessions(created_ts);

-- The global stream: every change a client syncs takes the next position
-- (events now; receipts, typing, to-device messages and account data use
-- the same counter), so one number orders everything.
CREATE TABLE stream_position (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    pos  INTEGER NOT NULL
) STRICT;
INSERT INTO stream_position (id, pos) VALUES (1, 0);

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    version       TEXT NOT NULL,
    creator       TEXT NOT NULL,
    created_ts    INTEGER NOT NULL,
    state_group   INTEGER NOT NULL,        -- the room's current state snapshot
    depth         INTEGER NOT NULL,        -- greatest event depth so far
    published     INTEGER NOT NULL DEFAULT 0 -- listed in the public room directory
) STRICT;

-- Every event, as the signed PDU. Messages do not copy state: an event
-- points at the state group in force before it.
CREATE TABLE events (
    pos           INTEGER PRIMARY KEY,     -- global stream position
    event_id      TEXT NOT NULL UNIQUE,
    room_id       TEXT NOT NULL REFERENCES rooms(room_id),
    type          TEXT NOT NULL,
    state_key     TEXT,                    -- NULL for non-state events
    sender        TEXT NOT NULL,
    origin_ts     INTEGER NOT NULL,
    depth         INTEGER NOT NULL,
    state_before  INTEGER NOT NULL,        -- state group before this event
    pdu           TEXT NOT NULL,           -- canonical JSON of the signed PDU
    redacted_by   TEXT,                    -- the redaction event applied to it
    txn_device    TEXT,                    -- device and transaction ID of a
    txn_id        TEXT                     -- client send, for idempotence
) STRICT;
CREATE INDEX events_room_pos ON events(room_id, pos);
CREATE INDEX events_room_ts ON events(room_id, origin_ts);
CREATE UNIQUE INDEX events_txn ON events(sender, txn_device, txn_id) WHERE txn_id IS NOT NULL;

-- State snapshots, stored as deltas: a group holds only the entries that
-- differ from its parent; a group without a parent is a full snapshot.
-- Chains are cut at storage::state::CHAIN_MAX so a lookup reads few groups.
CREATE TABLE state_groups (
    id            INTEGER PRIMARY KEY,
    room_id       TEXT NOT NULL,
    parent        INTEGER REFERENCES state_groups(id),
    chain_len     INTEGER NOT NULL         -- deltas between this and its snapshot
) STRICT;
CREATE TABLE state_entries (
    state_group   INTEGER NOT NULL REFERENCES state_groups(id),
    type          TEXT NOT NULL,
    state_key     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
) STRICT, WITHOUT ROWID;

-- The current state of each room, materialised for direct lookups.
CREATE TABLE current_state (
    room_id       TEXT NOT NULL,
    type          TEXT NOT NULL,
    state_key     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
) STRICT, WITHOUT ROWID;

-- Current membership of local and remote users, by user and by room.
CREATE TABLE memberships (
    user_id       TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    membership    TEXT NOT NULL,           -- join, invite, leave, ban, knock
    event_id      TEXT NOT NULL,
    pos           INTEGER NOT NULL,
    forgotten     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX memberships_room ON memberships(room_id, membership);

-- The events with no successor yet: the next event's prev_events.
CREATE TABLE forward_extremities (
    room_id       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE room_aliases (
    alias         TEXT PRIMARY KEY,        -- "#family:example.org"
    room_id       TEXT NOT NULL,
    creator       TEXT NOT NULL,
    created_ts    INTEGER NOT NULL
) STRICT;
CREATE INDEX room_aliases_room ON room_aliases(room_id);

-- Sync filters uploaded by clients (POST /user/{userId}/filter).
CREATE TABLE filters (
    user_id       TEXT NOT NULL,
    filter_id     INTEGER NOT NULL,
    json          TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
) STRICT, WITHOUT ROWID;

-- Account data, global (room_id = '') and per room; pos orders changes
-- on the global stream.
CREATE TABLE account_data (
    user_id       TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    type          TEXT NOT NULL,
    content       TEXT NOT NULL,
    pos           INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
) STRICT, WITHOUT ROWID;
CREATE INDEX account_data_pos ON account_data(user_id, pos);
CREATE INDEX account_data_room_pos ON account_data(pos) WHERE room_id != '';

-- Read receipts: the newest per user, room, type and thread.
CREATE TABLE receipts (
    room_id       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    receipt_type  TEXT NOT NULL,           -- m.read, m.read.private
    thread_id     TEXT NOT NULL,           -- '' = unthreaded
    event_id      TEXT NOT NULL,
    ts            INTEGER NOT NULL,
    pos           INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX receipts_pos ON receipts(pos);

-- Profiles (display name and avatar) of local users.
CREATE TABLE profiles (
    user_id       TEXT PRIMARY KEY,
    displayname   TEXT,
    avatar_url    TEXT
) STRICT;

-- Presence lists (the original specification): `owner` follows `target`'s
-- presence; `accepted` = 1 once `target` agreed, which is automatic when
-- `target` follows `owner` too (the reverse subscription).
CREATE TABLE presence_list (
    owner         TEXT NOT NULL,
    target        TEXT NOT NULL,
    accepted      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, target)
) STRICT, WITHOUT ROWID;
CREATE INDEX presence_list_target ON presence_list(target, accepted);
