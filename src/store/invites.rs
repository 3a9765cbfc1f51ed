//! Invitations: codes an admin hands out so that someone may sign up on an invite-only
//! server. A code may be limited in uses and in time, and revoked.

use rusqlite::{named_params, Connection, OptionalExtension, Row};

#[derive(Clone, Debug)]
pub struct Invite {
    pub id: i64,
    pub code: String,
    pub note: String,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub expires_at: Option<i64>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Invite {
    /// `usable`, `revoked`, `expired` or `used up`, as of `now`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else if self.max_uses.is_some_and(|m| self.uses >= m) {
            "used up"
        } else {
            "usable"
        }
    }
}

const INVITE_COLUMNS: &str = "i.id, i.code, i.note, i.max_uses, i.uses, i.expires_at, \
     u.username, i.created_at, i.revoked_at";

fn invite_from_row(r: &Row) -> rusqlite::Result<Invite> {
    Ok(Invite {
        id: r.get(0)?,
        code: r.get(1)?,
        note: r.get(2)?,
        max_uses: r.get(3)?,
        uses: r.get(4)?,
        expires_at: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        revoked_at: r.get(8)?,
    })
}

pub struct NewInvite<'a> {
    pub code: &'a str,
    pub note: &'a str,
    pub max_uses: Option<i64>,
    pub expires_at: Option<i64>,
    pub created_by: Option<i64>,
    pub now: i64,
}

pub fn create(conn: &Connection, new: &NewInvite) -> rusqlite::Result<Invite> {
    let tx = super::write_tx(conn)?;
    tx.prepare_cached(
        "INSERT INTO invites (code, note, max_uses, expires_at, created_by, created_at)
         VALUES (:code, :note, :max_uses, :expires_at, :created_by, :now)",
    )?
    .execute(named_params! {
        ":code": new.code, ":note": new.note, ":max_uses": new.max_uses,
        ":expires_at": new.expires_at, ":created_by": new.created_by, ":now": new.now,
    })?;
    let id = tx.last_insert_rowid();
    let invite = find(&tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    tx.commit()?;
    Ok(invite)
}

pub fn find(conn: &Connection, id: i64) -> rusqlite::Result<Option<Invite>> {
    conn.prepare_cached(&format!(
        "SELECT {INVITE_COLUMNS} FROM invites i LEFT JOIN users u ON u.id = i.created_by
         WHERE i.id = ?1"
    ))?
    .query_row([id], invite_from_row)
    .optional()
}

/// Every invite, newest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Invite>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {INVITE_COLUMNS} FROM invites i LEFT JOIN users u ON u.id = i.created_by
         ORDER BY i.id DESC"
    ))?;
    let rows = stmt.query_map([], invite_from_row)?;
    rows.collect()
}

/// Revokes an invite by id or by code. `false` when there is no such invite.
pub fn revoke(conn: &Connection, id_or_code: &str, now: i64) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE invites SET revoked_at = COALESCE(revoked_at, :now)
             WHERE code = :key OR (CAST(id AS TEXT) = :key)",
        )?
        .execute(named_params! {":key": id_or_code.trim(), ":now": now})?;
    Ok(changed > 0)
}

/// Whether a code would let someone sign up now (a cheap check before hashing a password;
/// the sign-up transaction checks again with `consume`).
pub fn is_usable(conn: &Connection, code: &str, now: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM invites WHERE code = :code AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > :now)
             AND (max_uses IS NULL OR uses < max_uses))",
    )?
    .query_row(named_params! {":code": code, ":now": now}, |r| r.get(0))
}

/// Counts one use of a usable code, inside the caller's sign-up transaction; the id of the
/// invite, or `None` when the code is unknown, revoked, expired or used up. Two sign-ups
/// racing for a code's last use cannot both get it: the check and the count are one UPDATE.
pub fn consume(conn: &Connection, code: &str, now: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "UPDATE invites SET uses = uses + 1
         WHERE code = :code AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > :now)
           AND (max_uses IS NULL OR uses < max_uses)
         RETURNING id",
    )?
    .query_row(named_params! {":code": code, ":now": now}, |r| r.get(0))
    .optional()
}
