//! Writing what `whitebeat import-django` brings over from the Django original: rows with
//! their original ids and times, all inside the one transaction the import runs in (the
//! caller commits, so a failure anywhere leaves the database as it was).

use super::stats::Counters;
use rusqlite::{named_params, Connection};

/// Whether the database holds no users and no messages (the only state imported into).
pub fn is_empty(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT NOT EXISTS(SELECT 1 FROM users) AND NOT EXISTS(SELECT 1 FROM messages)",
        [],
        |r| r.get(0),
    )
}

/// A user as imported: every column of `users` but the status (see [`set_status`]).
pub struct ImportedUser<'a> {
    pub id: i64,
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub is_active: bool,
    pub is_admin: bool,
    pub is_superuser: bool,
    pub last_activity: i64,
    pub message_count: i64,
    pub date_joined: i64,
}

/// Inserts a user with its look-alike key. Names that look alike are imported all the same
/// (the original allowed them); the caller reports them.
pub fn insert_user(conn: &Connection, u: &ImportedUser) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO users (id, username, name_key, email, password_hash, first_name,
                            last_name, is_active, is_admin, is_superuser, last_activity,
                            message_count, date_joined)
         VALUES (:id, :username, :key, :email, :hash, :first, :last, :active, :admin,
                 :superuser, :activity, :count, :joined)",
    )?
    .execute(named_params! {
        ":id": u.id, ":username": u.username, ":key": super::users::name_key(u.username),
        ":email": u.email, ":hash": u.password_hash,
        ":first": u.first_name, ":last": u.last_name, ":active": u.is_active,
        ":admin": u.is_admin, ":superuser": u.is_superuser, ":activity": u.last_activity,
        ":count": u.message_count, ":joined": u.date_joined,
    })?;
    Ok(())
}

/// Sets a profile status line; users without one keep the schema's default.
pub fn set_status(conn: &Connection, id: i64, status: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE users SET status = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![id, status])?;
    Ok(())
}

pub fn set_message_count(conn: &Connection, id: i64, count: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE users SET message_count = ?2 WHERE id = ?1")?
        .execute([id, count])?;
    Ok(())
}

/// Inserts a conversation of the ordered pair `user1 <= user2`, with the given id or (when
/// `None`) the next free one; returns its id. Neither member is marked as having opened it
/// (the original did not record who did): one left without messages is listed for neither
/// until one of them opens it, as for conversations from before schema version 3.
pub fn insert_conversation(
    conn: &Connection,
    id: Option<i64>,
    user1: i64,
    user2: i64,
    created_at: i64,
    updated_at: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO conversations (id, user1_id, user2_id, created_at, updated_at)
         VALUES (:id, :u1, :u2, :created, :updated)",
    )?
    .execute(named_params! {
        ":id": id, ":u1": user1, ":u2": user2, ":created": created_at, ":updated": updated_at,
    })?;
    Ok(conn.last_insert_rowid())
}

pub struct ImportedMessage<'a> {
    pub id: i64,
    pub conversation_id: i64,
    pub sender_id: i64,
    pub receiver_id: i64,
    pub content: &'a str,
    pub is_read: bool,
    pub created_at: i64,
}

pub fn insert_message(conn: &Connection, m: &ImportedMessage) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO messages (id, conversation_id, sender_id, receiver_id, content, is_read,
                               created_at)
         VALUES (:id, :conv, :sender, :receiver, :content, :read, :created)",
    )?
    .execute(named_params! {
        ":id": m.id, ":conv": m.conversation_id, ":sender": m.sender_id,
        ":receiver": m.receiver_id, ":content": m.content, ":read": m.is_read,
        ":created": m.created_at,
    })?;
    Ok(())
}

/// Sets what the send path keeps on a conversation: its last message and its place in the
/// newest-first order.
pub fn finish_conversation(
    conn: &Connection,
    id: i64,
    updated_at: i64,
    last_message_id: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE conversations SET updated_at = ?2, last_message_id = ?3 WHERE id = ?1",
    )?
    .execute([id, updated_at, last_message_id])?;
    Ok(())
}

/// Sets the health check's totals from the rows themselves. The triggers kept them while the
/// rows went in; counting once more at the moment the totals jump costs one scan and makes
/// them right even if they had drifted before.
pub fn recount(conn: &Connection) -> rusqlite::Result<Counters> {
    conn.execute_batch(
        "UPDATE counters SET value = (SELECT COUNT(*) FROM users) WHERE name = 'users';
         UPDATE counters SET value = (SELECT COUNT(*) FROM users WHERE is_admin = 1)
          WHERE name = 'admins';
         UPDATE counters SET value = (SELECT COUNT(*) FROM conversations)
          WHERE name = 'conversations';
         UPDATE counters SET value = (SELECT COUNT(*) FROM messages) WHERE name = 'messages';",
    )?;
    super::stats::counters(conn)
}
