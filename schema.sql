-- White Beat schema, version 1. Applied by `whitebeat migrate` (and on `serve`) inside one
-- transaction; PRAGMA user_version records it. Times are Unix microseconds, UTC.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    username       TEXT    NOT NULL UNIQUE,
    email          TEXT    NOT NULL COLLATE NOCASE,
    password_hash  TEXT    NOT NULL,
    first_name     TEXT    NOT NULL DEFAULT '',
    last_name      TEXT    NOT NULL DEFAULT '',
    is_active      INTEGER NOT NULL DEFAULT 1,
    -- Membership of the Admin group (the original's Django group).
    is_admin       INTEGER NOT NULL DEFAULT 0,
    is_superuser   INTEGER NOT NULL DEFAULT 0,
    status         TEXT    NOT NULL DEFAULT 'Hey there! I am using White Beat',
    last_activity  INTEGER NOT NULL,
    message_count  INTEGER NOT NULL DEFAULT 0,
    date_joined    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email ON users(email);
CREATE INDEX users_date_joined ON users(date_joined);

CREATE TABLE sessions (
    -- SHA-256 of the token; the token itself is never stored.
    token_hash  BLOB    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_last_seen ON sessions(last_seen);

CREATE TABLE conversations (
    id               INTEGER PRIMARY KEY,
    -- The pair is stored ordered (user1_id <= user2_id) so it is unique either way round.
    user1_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user2_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    -- Kept in the send transaction so the conversation list needs no scan of messages.
    last_message_id  INTEGER,
    CHECK (user1_id <= user2_id),
    UNIQUE (user1_id, user2_id)
);
CREATE INDEX conversations_user1 ON conversations(user1_id, updated_at);
CREATE INDEX conversations_user2 ON conversations(user2_id, updated_at);

CREATE TABLE messages (
    id               INTEGER PRIMARY KEY,
    conversation_id  INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    sender_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    receiver_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    content          TEXT    NOT NULL,
    is_read          INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX messages_conversation ON messages(conversation_id, id);
-- Unread counts and mark-as-read touch only unread rows.
CREATE INDEX messages_unread ON messages(receiver_id, conversation_id) WHERE is_read = 0;

CREATE TABLE request_log (
    id           INTEGER PRIMARY KEY,
    created_at   INTEGER NOT NULL,
    method       TEXT    NOT NULL,
    endpoint     TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL,
    user_id      INTEGER,
    username     TEXT,
    ip_address   TEXT    NOT NULL,
    user_agent   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX request_log_created ON request_log(created_at);

-- Daily roll-up of the request log and activity, kept by the log writer.
CREATE TABLE daily_stats (
    day        TEXT    PRIMARY KEY,  -- YYYY-MM-DD, UTC
    api_calls  INTEGER NOT NULL DEFAULT 0,
    signups    INTEGER NOT NULL DEFAULT 0,
    messages   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Requests per hour (Unix hour number), for the admin dashboard's API usage chart.
CREATE TABLE hourly_api_calls (
    hour   INTEGER PRIMARY KEY,
    calls  INTEGER NOT NULL DEFAULT 0
);

-- Totals shown on every health check, kept by triggers so nothing scans a big table.
CREATE TABLE counters (
    name   TEXT    PRIMARY KEY,
    value  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters(name, value) VALUES
    ('users', 0), ('messages', 0), ('conversations', 0), ('admins', 0);

CREATE TRIGGER users_count_insert AFTER INSERT ON users BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'users';
    UPDATE counters SET value = value + NEW.is_admin WHERE name = 'admins';
END;
CREATE TRIGGER users_count_delete AFTER DELETE ON users BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'users';
    UPDATE counters SET value = value - OLD.is_admin WHERE name = 'admins';
END;
CREATE TRIGGER users_count_admin AFTER UPDATE OF is_admin ON users
WHEN NEW.is_admin != OLD.is_admin BEGIN
    UPDATE counters SET value = value + NEW.is_admin - OLD.is_admin WHERE name = 'admins';
END;
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'messages';
END;
CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'messages';
END;
CREATE TRIGGER conversations_count_insert AFTER INSERT ON conversations BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'conversations';
END;
CREATE TRIGGER conversations_count_delete AFTER DELETE ON conversations BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'conversations';
END;
