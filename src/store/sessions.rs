//! Login sessions, stored by the SHA-256 of their token; the token itself never touches disk.

use rusqlite::{named_params, Connection, OptionalExtension};

/// A live session joined with what authorization needs of its user.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub token_hash: Vec<u8>,
    pub user_id: i64,
    pub username: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub last_seen: i64,
    pub expires_at: i64,
}

impl SessionUser {
    /// Whether the session still lets its user in at `now`: not expired, user active.
    pub fn is_valid(&self, now: i64) -> bool {
        self.expires_at > now && self.is_active
    }
}

pub fn create(
    conn: &Connection,
    token_hash: &[u8],
    user_id: i64,
    now: i64,
    idle_us: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen, expires_at)
         VALUES (:hash, :user, :now, :now, :expires)",
    )?
    .execute(named_params! {
        ":hash": token_hash, ":user": user_id, ":now": now, ":expires": now + idle_us,
    })?;
    Ok(())
}

pub fn find(conn: &Connection, token_hash: &[u8]) -> rusqlite::Result<Option<SessionUser>> {
    conn.prepare_cached(
        "SELECT s.token_hash, s.user_id, u.username, u.is_admin, u.is_active,
                s.last_seen, s.expires_at
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ?1",
    )?
    .query_row([token_hash], |r| {
        Ok(SessionUser {
            token_hash: r.get(0)?,
            user_id: r.get(1)?,
            username: r.get(2)?,
            is_admin: r.get(3)?,
            is_active: r.get(4)?,
            last_seen: r.get(5)?,
            expires_at: r.get(6)?,
        })
    })
    .optional()
}

/// Slides the idle expiry forward and records the user's activity, in one transaction.
pub fn touch(
    conn: &Connection,
    token_hash: &[u8],
    user_id: i64,
    now: i64,
    idle_us: i64,
) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    tx.prepare_cached("UPDATE sessions SET last_seen = ?2, expires_at = ?3 WHERE token_hash = ?1")?
        .execute(rusqlite::params![token_hash, now, now + idle_us])?;
    super::users::touch_activity(&tx, user_id, now)?;
    tx.commit()
}

pub fn delete(conn: &Connection, token_hash: &[u8]) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
        .execute([token_hash])?
        > 0)
}

pub fn delete_expired(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
        .execute([now])
}

/// Users with an unexpired session used since `since`.
pub fn active_users_since(conn: &Connection, since: i64, now: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(DISTINCT user_id) FROM sessions WHERE last_seen >= ?1 AND expires_at > ?2",
    )?
    .query_row([since, now], |r| r.get(0))
}
