//! Accounts: the users table with the original's profile fields and Admin-group flag, and
//! the look-alike key (`name_key`) that keeps a new username from
//! imitating an existing one.

use rusqlite::{named_params, Connection, OptionalExtension, Row};

/// What two usernames share when they look alike: the UTS #39 confusable skeleton of the
/// name after compatibility normalisation (NFKC) and case folding. `admin`, `Admin`, `аdmin`
/// (Cyrillic а), `ａｄｍｉｎ` (full width), `𝐚𝐝𝐦𝐢𝐧` (mathematical bold) and `adrnin` all have
/// the key of `admin`. A new account's key must be free (`create`); logins stay
/// by the exact name.
///
/// Case folding is Unicode's full mapping approximated by upper- then lower-casing (which
/// folds `ß` with `ss` and `ς` with `σ`), between two NFKC passes so that compatibility
/// characters without a case of their own (mathematical capitals) fold too. The tables
/// are those of the `unicode-normalization` and `unicode-security` crates.
pub fn name_key(username: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let compatible: String = username.nfkc().collect();
    let folded: String = compatible.to_uppercase().to_lowercase().nfkc().collect();
    unicode_security::skeleton(&folded).collect()
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_admin: bool,
    pub is_superuser: bool,
    pub status: String,
    pub last_activity: i64,
    pub message_count: i64,
    pub date_joined: i64,
}

const USER_COLUMNS: &str = "id, username, email, password_hash, first_name, last_name, \
     is_active, is_admin, is_superuser, status, last_activity, message_count, date_joined";

fn user_from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        password_hash: r.get(3)?,
        first_name: r.get(4)?,
        last_name: r.get(5)?,
        is_active: r.get(6)?,
        is_admin: r.get(7)?,
        is_superuser: r.get(8)?,
        status: r.get(9)?,
        last_activity: r.get(10)?,
        message_count: r.get(11)?,
        date_joined: r.get(12)?,
    })
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
    pub is_superuser: bool,
    /// The invite code the sign-up must use up (invite-only servers).
    pub invite_code: Option<&'a str>,
    pub now: i64,
}

#[derive(Debug)]
pub enum CreateUserError {
    /// An account has exactly this name.
    UsernameTaken,
    /// An account has a name that looks the same (the same look-alike key).
    UsernameLooksAlike,
    EmailTaken,
    /// The invite code is unknown, revoked, expired or used up.
    InviteInvalid,
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for CreateUserError {
    fn from(e: rusqlite::Error) -> Self {
        CreateUserError::Db(e)
    }
}

/// Inserts a user; the uniqueness checks (the exact name, the look-alike key, the email),
/// the use of the invite and the insert share one write transaction, so a refused sign-up
/// leaves nothing behind and two look-alike sign-ups racing each other cannot both win.
pub fn create(conn: &Connection, u: &NewUser) -> Result<i64, CreateUserError> {
    let key = name_key(u.username);
    let tx = super::write_tx(conn)?;
    let filled = fill_name_keys(&tx)?;
    let refused = match name_clash_key(&tx, u.username, &key)? {
        Some(NameClash::Exact) => Some(CreateUserError::UsernameTaken),
        Some(NameClash::LooksAlike) => Some(CreateUserError::UsernameLooksAlike),
        None => {
            let email_taken: bool = tx
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE email = ?1)")?
                .query_row([u.email], |r| r.get(0))?;
            email_taken.then_some(CreateUserError::EmailTaken)
        }
    };
    if let Some(refused) = refused {
        // Nothing of the sign-up is written; keys just computed for rows that lacked one
        // are kept, so they are not computed again.
        if filled > 0 {
            tx.commit()?;
        }
        return Err(refused);
    }
    let invite_id = match u.invite_code {
        Some(code) => {
            Some(super::invites::consume(&tx, code, u.now)?.ok_or(CreateUserError::InviteInvalid)?)
        }
        None => None,
    };
    tx.prepare_cached(
        "INSERT INTO users (username, name_key, email, password_hash, is_admin, is_superuser,
                            last_activity, date_joined, invite_id)
         VALUES (:username, :key, :email, :hash, :admin, :superuser, :now, :now, :invite)",
    )?
    .execute(named_params! {
        ":username": u.username, ":key": key, ":email": u.email, ":hash": u.password_hash,
        ":admin": u.is_admin, ":superuser": u.is_superuser, ":now": u.now,
        ":invite": invite_id,
    })?;
    let id = tx.last_insert_rowid();
    super::stats::bump_daily(&tx, u.now, "signups", 1)?;
    tx.commit()?;
    Ok(id)
}

/// Why a new account cannot have a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameClash {
    /// An account has exactly this name.
    Exact,
    /// An account has a name that looks the same (the same `auth::name_key`).
    LooksAlike,
}

/// Whether a new account could not be called `username`, and why. Answers from the keys
/// stored; the authoritative check is the one `create` repeats inside its write
/// transaction.
pub fn name_clash(conn: &Connection, username: &str) -> rusqlite::Result<Option<NameClash>> {
    name_clash_key(conn, username, &name_key(username))
}

fn name_clash_key(
    conn: &Connection,
    username: &str,
    key: &str,
) -> rusqlite::Result<Option<NameClash>> {
    let (exact, alike): (bool, bool) = conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1),
                    EXISTS(SELECT 1 FROM users WHERE name_key = ?2)",
        )?
        .query_row([username, key], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(if exact {
        Some(NameClash::Exact)
    } else if alike {
        Some(NameClash::LooksAlike)
    } else {
        None
    })
}

/// Computes the look-alike key of every row that has none: all rows when migration 3 adds
/// the column, afterwards only rows written by hand (SQL has no Unicode skeleton, so only
/// this code can fill it). Cheap when there is nothing to do: the lookup uses the index.
/// Returns how many rows it filled.
pub fn fill_name_keys(conn: &Connection) -> rusqlite::Result<usize> {
    let missing: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, username FROM users WHERE name_key IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut set = conn.prepare_cached("UPDATE users SET name_key = ?2 WHERE id = ?1")?;
    for (id, username) in &missing {
        set.execute(rusqlite::params![id, name_key(username)])?;
    }
    Ok(missing.len())
}

/// Groups of existing accounts whose names look alike (one look-alike key), each group's
/// names sorted by id. Such accounts can only predate the rule (or come from an import);
/// they all keep working and log in by their exact names.
pub fn look_alike_groups(conn: &Connection) -> rusqlite::Result<Vec<Vec<String>>> {
    let mut stmt = conn.prepare(
        "SELECT name_key, username FROM users
          WHERE name_key IN (SELECT name_key FROM users WHERE name_key IS NOT NULL
                              GROUP BY name_key HAVING COUNT(*) > 1)
          ORDER BY name_key, id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for row in rows {
        let (key, name) = row?;
        match groups.last_mut() {
            Some((k, names)) if *k == key => names.push(name),
            _ => groups.push((key, vec![name])),
        }
    }
    Ok(groups.into_iter().map(|(_, names)| names).collect())
}

pub fn find_by_username(conn: &Connection, username: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
    ))?
    .query_row([username], user_from_row)
    .optional()
}

pub fn find_id(conn: &Connection, username: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM users WHERE username = ?1")?
        .query_row([username], |r| r.get(0))
        .optional()
}

/// Result of changing a user's Admin-group membership or deactivating them.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminChange {
    Done,
    /// Refused: it would leave no active admin.
    LastAdmin,
}

/// Whether `id` is an active admin and no other active admin exists.
fn is_last_admin(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT is_admin AND is_active
                AND NOT EXISTS(SELECT 1 FROM users
                               WHERE is_admin = 1 AND is_active = 1 AND id != ?1)
         FROM users WHERE id = ?1",
    )?
    .query_row([id], |r| r.get::<_, Option<bool>>(0))
    .optional()
    .map(|v| v.flatten().unwrap_or(false))
}

/// Adds or removes a user from the Admin group. Removing the last admin is refused inside
/// the same transaction, so two concurrent removals cannot both succeed.
pub fn set_admin(conn: &Connection, id: i64, admin: bool) -> rusqlite::Result<AdminChange> {
    let tx = super::write_tx(conn)?;
    if !admin && is_last_admin(&tx, id)? {
        return Ok(AdminChange::LastAdmin);
    }
    tx.prepare_cached("UPDATE users SET is_admin = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id, admin])?;
    tx.commit()?;
    Ok(AdminChange::Done)
}

/// Replaces the password hash and revokes every session of the user, atomically.
pub fn set_password(conn: &Connection, id: i64, hash: &str) -> rusqlite::Result<()> {
    let tx = super::write_tx(conn)?;
    tx.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id, hash])?;
    tx.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
        .execute([id])?;
    tx.commit()
}

/// Whether the user is still active with the password hash that was just verified, read
/// inside the login's write transaction: a password reset or a deactivation that landed
/// while the password was being checked must not be followed by a new session.
pub fn still_verified(conn: &Connection, id: i64, hash: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM users WHERE id = ?1 AND password_hash = ?2 AND is_active)",
    )?
    .query_row(rusqlite::params![id, hash], |r| r.get(0))
}

/// Replaces a hash that was just verified by a stronger one without ending any session
/// (an imported Django hash, upgraded at login). Only if the row still holds `old`, so a
/// password change that raced the login is never undone. Returns whether it was replaced.
pub fn upgrade_password_hash(
    conn: &Connection,
    id: i64,
    old: &str,
    new: &str,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE users SET password_hash = :new WHERE id = :id AND password_hash = :old",
        )?
        .execute(named_params! {":id": id, ":old": old, ":new": new})?;
    Ok(changed == 1)
}

/// Activates or deactivates a user; deactivation revokes their sessions in the same
/// transaction and keeps their messages. Deactivating the last active admin is refused, so
/// the server always keeps someone who can administer it.
pub fn set_active(conn: &Connection, id: i64, active: bool) -> rusqlite::Result<AdminChange> {
    let tx = super::write_tx(conn)?;
    if !active && is_last_admin(&tx, id)? {
        return Ok(AdminChange::LastAdmin);
    }
    tx.prepare_cached("UPDATE users SET is_active = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id, active])?;
    if !active {
        tx.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
            .execute([id])?;
    }
    tx.commit()?;
    Ok(AdminChange::Done)
}

/// One account as the admin page and `whitebeat list-users` show it.
#[derive(Debug)]
pub struct AccountRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub is_active: bool,
    pub is_admin: bool,
    pub date_joined: i64,
    pub last_activity: i64,
    pub message_count: i64,
}

/// Every account, active or not, by username; optionally those whose username or email
/// contains `search` (case-insensitive). Also the number of matches, for paging.
pub fn accounts(
    conn: &Connection,
    search: Option<&str>,
    limit: i64,
    offset: i64,
) -> rusqlite::Result<(Vec<AccountRow>, i64)> {
    let pattern = search.map(|p| format!("%{}%", escape_like(p)));
    let filter = "(:pattern IS NULL OR username LIKE :pattern ESCAPE '\\'
                   OR email LIKE :pattern ESCAPE '\\')";
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM users WHERE {filter}"))?
        .query_row(named_params! {":pattern": pattern}, |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, username, email, is_active, is_admin, date_joined, last_activity,
                message_count
         FROM users WHERE {filter}
         ORDER BY username LIMIT :limit OFFSET :offset"
    ))?;
    let rows = stmt.query_map(
        named_params! {":pattern": pattern, ":limit": limit, ":offset": offset},
        |r| {
            Ok(AccountRow {
                id: r.get(0)?,
                username: r.get(1)?,
                email: r.get(2)?,
                is_active: r.get(3)?,
                is_admin: r.get(4)?,
                date_joined: r.get(5)?,
                last_activity: r.get(6)?,
                message_count: r.get(7)?,
            })
        },
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// What `users/` shows of someone.
#[derive(Debug)]
pub struct UserListing {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub status: String,
    pub last_activity: i64,
}

/// Everyone but `exclude_id`, by username, optionally those whose name starts with `prefix`
/// (case-insensitive).
pub fn list(
    conn: &Connection,
    exclude_id: i64,
    prefix: Option<&str>,
    limit: i64,
    offset: i64,
) -> rusqlite::Result<Vec<UserListing>> {
    let pattern = prefix.map(|p| format!("{}%", escape_like(p)));
    let mut stmt = conn.prepare_cached(
        "SELECT id, username, email, status, last_activity FROM users
         WHERE id != :me AND is_active = 1
           AND (:pattern IS NULL OR username LIKE :pattern ESCAPE '\\')
         ORDER BY username LIMIT :limit OFFSET :offset",
    )?;
    let rows = stmt.query_map(
        named_params! {":me": exclude_id, ":pattern": pattern, ":limit": limit, ":offset": offset},
        |r| {
            Ok(UserListing {
                id: r.get(0)?,
                username: r.get(1)?,
                email: r.get(2)?,
                status: r.get(3)?,
                last_activity: r.get(4)?,
            })
        },
    )?;
    rows.collect()
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The newest sign-ups, for the admin dashboard.
pub fn recent(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<User>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY date_joined DESC, id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], user_from_row)?;
    rows.collect()
}

/// Records the user's last activity (called with the session refresh, which runs at most
/// once a minute per session, so a busy client does not write on every request).
pub fn touch_activity(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE users SET last_activity = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id, now])?;
    Ok(())
}
