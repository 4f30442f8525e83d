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
