-- White Beat schema, version 2: invitations for invite-only sign-up.

CREATE TABLE invites (
    id          INTEGER PRIMARY KEY,
    -- The code itself is shown to admins again (they share it as a link), so it is kept
    -- as it is; it only lets someone create an account, never act as an existing one.
    code        TEXT    NOT NULL UNIQUE,
    note        TEXT    NOT NULL DEFAULT '',
    -- NULL: any number of sign-ups.
    max_uses    INTEGER,
    uses        INTEGER NOT NULL DEFAULT 0,
    -- NULL: never expires.
    expires_at  INTEGER,
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Which invite an account signed up with, for the admin's record.
ALTER TABLE users ADD COLUMN invite_id INTEGER REFERENCES invites(id) ON DELETE SET NULL;
