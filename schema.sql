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
    deactivated   INTEGER NOT NULL DEFAULT 0,
    is_guest      INTEGER NOT NULL DEFAULT 0  -- a guest account (no password; spec's guest access)
) STRICT;

-- Users who asked, on deactivation, for their content to be erased, and
-- the stream position then: later joiners see their events redacted.
CREATE TABLE erased_users (
    user_id       TEXT PRIMARY KEY,
    pos           INTEGER NOT NULL,
    ts            INTEGER NOT NULL
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

-- OpenID tokens (/openid/request_token): proof of who a user is for
-- another service, exchanged at /_matrix/federation/v1/openid/userinfo;
-- not access tokens. Each belongs to the device that asked and goes with
-- it; bounded per user (storage::openid::TOKENS_PER_USER_MAX).
CREATE TABLE openid_tokens (
    token_hash  BLOB PRIMARY KEY,          -- sha256(token)
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    expires_ts  INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX openid_tokens_device ON openid_tokens(user_id, device_id);
CREATE INDEX openid_tokens_expiry ON openid_tokens(expires_ts);

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

-- User-interactive authentication sessions. op_hash binds a session to
-- the one operation it was opened for (endpoint, user and the parameters
-- that matter: api::uia), so it serves no other request; a session is
-- deleted with the request it authorised, so it cannot be replayed.
CREATE TABLE uia_sessions (
    session_id    TEXT PRIMARY KEY,
    op_hash       BLOB NOT NULL,           -- sha256(session_id, 0, canonical operation)
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
-- The room's topological order (`/messages`, `/context`; issue 17).
CREATE INDEX events_room_depth ON events(room_id, depth, pos);
CREATE INDEX events_room_ts ON events(room_id, origin_ts);
CREATE UNIQUE INDEX events_txn ON events(sender, txn_device, txn_id) WHERE txn_id IS NOT NULL;

-- State snapshots, stored as deltas: a group holds only the entries that
-- differ from its parent; a group without a parent is a full snapshot.
-- chain_len numbers the groups since their snapshot; group n's parent is
-- the group numbered n with its lowest bit cleared (storage::state), so a
-- lookup reads one group per set bit.
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
    displayname   TEXT,                    -- from the member event, for push rules
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

-- Media (issue 6). Bytes live in this file, in chunks, stored once per
-- distinct content (SHA-256); a media ID points at its content.
--
-- One row per stored content. `sha256` is NULL while an upload is still
-- arriving (staged): its chunks are written as they come, the row is
-- invisible to downloads, and `touched_ts` says when it last grew, so an
-- abandoned one can be found and removed.
CREATE TABLE media_content (
    id            INTEGER PRIMARY KEY,
    sha256        BLOB UNIQUE,             -- NULL while staged
    size          INTEGER NOT NULL,        -- bytes (so far, while staged)
    touched_ts    INTEGER NOT NULL
) STRICT;

-- The bytes, in fixed-size chunks (storage::media::CHUNK_BYTES; the last may be
-- shorter). A rowid table: large rows do not belong in WITHOUT ROWID ones.
CREATE TABLE media_chunks (
    content_id    INTEGER NOT NULL REFERENCES media_content(id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    data          BLOB NOT NULL,
    PRIMARY KEY (content_id, idx)
) STRICT;

-- Media IDs: local uploads (and, with federation, cached remote media).
-- `content_id` is NULL for an ID made by /create and not yet uploaded to;
-- such an ID lapses at `expires_ts`.
CREATE TABLE media (
    origin        TEXT NOT NULL,           -- server name of the mxc:// URI
    media_id      TEXT NOT NULL,
    user_id       TEXT,                    -- uploader (local media)
    content_id    INTEGER REFERENCES media_content(id),
    content_type  TEXT,
    filename      TEXT,
    size          INTEGER NOT NULL DEFAULT 0,
    created_ts    INTEGER NOT NULL,
    expires_ts    INTEGER,                 -- unused-ID expiry (async upload)
    uploaded_ts   INTEGER,                 -- bytes stored (remote: cached)
    PRIMARY KEY (origin, media_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX media_by_content ON media(content_id);
CREATE INDEX media_by_user ON media(user_id, created_ts);

-- Thumbnails, made on first request at the spec's sizes and kept; their
-- bytes are content too. Removed with the original's content.
CREATE TABLE media_thumbnails (
    content_id    INTEGER NOT NULL REFERENCES media_content(id) ON DELETE CASCADE,
    width         INTEGER NOT NULL,        -- the standard size asked for
    height        INTEGER NOT NULL,
    method        TEXT NOT NULL,           -- crop, scale
    thumb_id      INTEGER NOT NULL REFERENCES media_content(id),
    content_type  TEXT NOT NULL,
    PRIMARY KEY (content_id, width, height, method)
) STRICT, WITHOUT ROWID;
CREATE INDEX media_thumbnails_thumb ON media_thumbnails(thumb_id);

-- End-to-end encryption (issue 5). The server stores and relays keys; it
-- never sees plaintext. Everything that belongs to a device goes with it
-- (ON DELETE CASCADE from devices), so deleting a device or deactivating a
-- user needs no extra code.

-- A device's identity keys as uploaded (JSON without `unsigned`, with the
-- device's own signature). Signatures added later live in
-- e2e_device_signatures.
CREATE TABLE e2e_device_keys (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    key_json      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- Signatures of a device's keys made by other keys (the owner's
-- self-signing key), uploaded through /keys/signatures/upload.
CREATE TABLE e2e_device_signatures (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    signer_user   TEXT NOT NULL,
    signer_key    TEXT NOT NULL,           -- "ed25519:<public key>"
    signature     TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, signer_user, signer_key),
    FOREIGN KEY (user_id, device_id) REFERENCES e2e_device_keys(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- One-time keys: each is handed out once by /keys/claim, then deleted.
CREATE TABLE e2e_one_time_keys (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    algorithm     TEXT NOT NULL,           -- "signed_curve25519"
    key_id        TEXT NOT NULL,
    key_json      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- The fallback key per device and algorithm, handed out (and marked used)
-- when the one-time keys have run out; replaced by the next upload.
CREATE TABLE e2e_fallback_keys (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    algorithm     TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    key_json      TEXT NOT NULL,
    used          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- Cross-signing keys: the newest master, self-signing and user-signing key
-- of each user, as uploaded.
CREATE TABLE e2e_cross_signing_keys (
    user_id       TEXT NOT NULL,
    usage         TEXT NOT NULL,           -- master, self_signing, user_signing
    public_key    TEXT NOT NULL,           -- unpadded base64 ed25519 key
    key_json      TEXT NOT NULL,
    PRIMARY KEY (user_id, usage)
) STRICT, WITHOUT ROWID;

-- Signatures of a cross-signing key added later: by the owner's devices
-- (of their master key) or by another user's user-signing key. Keyed by
-- the signed public key, so a replaced key does not inherit them.
CREATE TABLE e2e_key_signatures (
    user_id       TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    signer_user   TEXT NOT NULL,
    signer_key    TEXT NOT NULL,
    signature     TEXT NOT NULL,
    PRIMARY KEY (user_id, public_key, signer_user, signer_key)
) STRICT, WITHOUT ROWID;

-- The newest stream position at which each user's device list or keys
-- changed; /sync's device_lists and /keys/changes read it by position.
CREATE TABLE e2e_device_list_changes (
    user_id       TEXT PRIMARY KEY,
    pos           INTEGER NOT NULL
) STRICT;
CREATE INDEX e2e_device_list_changes_pos ON e2e_device_list_changes(pos);

-- A device losing its keys (deleted, logged out, user deactivated) is a
-- device-list change, whichever code path deleted it.
CREATE TRIGGER e2e_device_keys_deleted AFTER DELETE ON e2e_device_keys BEGIN
    UPDATE stream_position SET pos = pos + 1 WHERE id = 1;
    INSERT OR REPLACE INTO e2e_device_list_changes (user_id, pos)
        VALUES (OLD.user_id, (SELECT pos FROM stream_position WHERE id = 1));
END;

-- A device added, renamed or removed is a device-list change too, before
-- (or without) any keys: clients show "new session" from it. Schema 3.
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

-- To-device messages waiting for their device's next /sync; deleted once a
-- sync with a later `since` acknowledges them.
CREATE TABLE to_device_messages (
    id            INTEGER PRIMARY KEY,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    pos           INTEGER NOT NULL,        -- stream position of the send
    sender        TEXT NOT NULL,
    type          TEXT NOT NULL,
    content       TEXT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX to_device_messages_device ON to_device_messages(user_id, device_id, pos);

-- Transaction IDs of /sendToDevice, for idempotence; pruned after a while.
CREATE TABLE to_device_txns (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    created_ts    INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- Server-side key backups (room_keys). Versions are never reused: a
-- deleted version keeps its row, marked deleted, and loses its keys.
CREATE TABLE backup_versions (
    user_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    algorithm     TEXT NOT NULL,
    auth_data     TEXT NOT NULL,           -- JSON object
    etag          INTEGER NOT NULL DEFAULT 0,
    deleted       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE backup_keys (
    user_id             TEXT NOT NULL,
    version             INTEGER NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index INTEGER NOT NULL,
    forwarded_count     INTEGER NOT NULL,
    is_verified         INTEGER NOT NULL,
    session_data        TEXT NOT NULL,     -- JSON object
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES backup_versions(user_id, version) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- Push (issue 7). An account's own push rules, and its changes to the
-- server-default rules (is_default = 1: only enabled and actions count;
-- the defaults themselves live in the code). Accounts that never changed
-- a rule have no rows.
CREATE TABLE push_rules (
    user_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,           -- override, content, room, sender, underride
    rule_id       TEXT NOT NULL,
    is_default    INTEGER NOT NULL,
    priority      INTEGER NOT NULL,        -- among the account's rules of a kind: higher first
    enabled       INTEGER NOT NULL,
    actions       TEXT,                    -- JSON array; NULL = the default rule's
    conditions    TEXT,                    -- JSON array (override, underride)
    pattern       TEXT,                    -- content rules
    PRIMARY KEY (user_id, kind, rule_id)
) STRICT, WITHOUT ROWID;

-- HTTP pushers: where a device wants its notifications pushed. A pusher
-- belongs to the device that set it and goes with it (logout, deletion,
-- a password change signing the other devices out); device_id is NULL
-- only for pushers set before schema version 2.
CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,     -- http
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,     -- JSON object, with the gateway's url
    pushkey_ts          INTEGER NOT NULL,
    device_id           TEXT,
    PRIMARY KEY (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX pushers_key ON pushers(app_id, pushkey);
CREATE INDEX pushers_device ON pushers(user_id, device_id);

-- Events that notified someone, written with the event: one row per event
-- and outcome (the matched rule's actions), naming the users notified by
-- their slot in the room, as a bitmap. An event in a room of a hundred
-- writes a row or two on one page, not a hundred rows on a hundred pages.
-- Unread counts are the rows after the user's read position (receipts,
-- push_read_marks) with the user's bit set; nothing is updated on read.
CREATE TABLE notifications (
    room_id       TEXT NOT NULL,
    pos           INTEGER NOT NULL,        -- the event's stream position
    actions       TEXT NOT NULL,           -- JSON array of the matched rule
    highlight     INTEGER NOT NULL,
    thread_id     TEXT NOT NULL,           -- 'main' or the thread root's event ID
    users         BLOB NOT NULL,           -- bit i (byte i / 8, bit i % 8) = slot i
    ts            INTEGER NOT NULL,
    PRIMARY KEY (room_id, pos, actions)
) STRICT, WITHOUT ROWID;
CREATE INDEX notifications_pos ON notifications(pos);

-- A local user's slot (bit) in a room's notification bitmaps; given on
-- their first notification there and kept.
CREATE TABLE push_slots (
    room_id       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    slot          INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX push_slots_user ON push_slots(user_id);

-- A user's newest event in a room: sending reads the room up to it.
CREATE TABLE push_read_marks (
    user_id       TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    pos           INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
) STRICT, WITHOUT ROWID;

-- Pushes to send to gateways: written in the event's transaction, deleted
-- once delivered (or given up after push::sender::ATTEMPTS_MAX tries).
-- destination is the pusher's gateway URL (its data.url), kept current
-- when the pusher changes: the outbound queue schedules per destination.
CREATE TABLE push_outbox (
    id            INTEGER PRIMARY KEY,
    user_id       TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    pushkey       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    tweaks        TEXT NOT NULL,           -- JSON object
    attempts      INTEGER NOT NULL,
    next_try_ts   INTEGER NOT NULL,
    destination   TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX push_outbox_due ON push_outbox(next_try_ts);
CREATE INDEX push_outbox_destination ON push_outbox(destination, next_try_ts);

-- A pusher's pending pushes go with it, whichever path deleted it.
CREATE TRIGGER pushers_deleted AFTER DELETE ON pushers BEGIN
    DELETE FROM push_outbox
        WHERE user_id = OLD.user_id AND app_id = OLD.app_id AND pushkey = OLD.pushkey;
END;

-- ACME (certificates by Let's Encrypt or another ACME server): the account
-- key per directory, and the newest certificate per set of names.
CREATE TABLE acme_accounts (
    directory     TEXT PRIMARY KEY,        -- the ACME directory URL
    key_pkcs8     BLOB NOT NULL,           -- ECDSA P-256 account key
    account_url   TEXT,                    -- the account's kid, once registered
    created_ts    INTEGER NOT NULL
) STRICT;
CREATE TABLE acme_certs (
    directory     TEXT NOT NULL,
    names         TEXT NOT NULL,           -- sorted, comma-separated
    chain_pem     TEXT NOT NULL,
    key_pem       TEXT NOT NULL,
    not_before_ms INTEGER NOT NULL,
    not_after_ms  INTEGER NOT NULL,
    issued_ts     INTEGER NOT NULL,
    PRIMARY KEY (directory, names)
) STRICT;

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

-- The auth edges of every stored event (issue 16): `auth_id` is one of
-- `event_id`'s `auth_events`. Written with the event, so an auth chain is
-- an indexed walk (`storage::events::auth_chain`), never a parse of stored
-- JSON per hop.
CREATE TABLE event_auth_edges (
    event_id      TEXT NOT NULL,
    auth_id       TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
) STRICT, WITHOUT ROWID;

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

-- Application services (issue 20, schema 12).
--
-- Per registration `id`: how far the event stream has been pushed to it,
-- and the one transaction in flight, sent again unchanged until the
-- application service acknowledges it (appservice::pusher). A registration
-- seen for the first time starts at the stream's end: it is not sent the
-- server's history.
CREATE TABLE appservice_state (
    as_id         TEXT PRIMARY KEY,
    pushed_pos    INTEGER NOT NULL,        -- events up to here are done
    txn_seq       INTEGER NOT NULL DEFAULT 0,  -- the last transaction's number
    txn_body      TEXT,                    -- the transaction in flight
    txn_up_to     INTEGER,                 -- pushed_pos once it is acknowledged
    failures      INTEGER NOT NULL DEFAULT 0,
    retry_at      INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

-- Rooms application services published in their networks' directories
-- (PUT /directory/list/appservice/{networkId}/{roomId}).
CREATE TABLE appservice_room_list (
    as_id         TEXT NOT NULL,
    network_id    TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    PRIMARY KEY (as_id, network_id, room_id)
) STRICT, WITHOUT ROWID;
