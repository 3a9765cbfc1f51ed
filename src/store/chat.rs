//! Conversations and messages: the hot paths of the product. Every query here is served by
//! an index (see schema.sql); none scans the messages table.
//!
//! A conversation without messages is listed only for the members who opened it (the
//! `user1_opened`/`user2_opened` flags of migration 3): reading someone's conversation
//! creates it, as in the original, but must not put you in their list before you write.

use rusqlite::{named_params, Connection, OptionalExtension, Row};

/// A stored message with the usernames of both ends.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: i64,
    pub conversation_id: i64,
    pub sender_id: i64,
    pub sender: String,
    pub receiver_id: i64,
    pub receiver: String,
    pub content: String,
    pub is_read: bool,
    pub created_at: i64,
}

const MESSAGE_SELECT: &str = "SELECT m.id, m.conversation_id, m.sender_id, s.username,
        m.receiver_id, r.username, m.content, m.is_read, m.created_at
     FROM messages m JOIN users s ON s.id = m.sender_id JOIN users r ON r.id = m.receiver_id";

fn message_from_row(r: &Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        sender_id: r.get(2)?,
        sender: r.get(3)?,
        receiver_id: r.get(4)?,
        receiver: r.get(5)?,
        content: r.get(6)?,
        is_read: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn ordered(a: i64, b: i64) -> (i64, i64) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

pub fn conversation_between(conn: &Connection, a: i64, b: i64) -> rusqlite::Result<Option<i64>> {
    let (u1, u2) = ordered(a, b);
    conn.prepare_cached("SELECT id FROM conversations WHERE user1_id = ?1 AND user2_id = ?2")?
        .query_row([u1, u2], |r| r.get(0))
        .optional()
}

/// Returns the conversation of the pair, creating it if there is none; a new one is marked
/// opened by `a` (the member whose request made it). Call inside a write transaction when
/// the creation must be atomic with what follows.
pub fn get_or_create_conversation(
    conn: &Connection,
    a: i64,
    b: i64,
    now: i64,
) -> rusqlite::Result<i64> {
    if let Some(id) = conversation_between(conn, a, b)? {
        return Ok(id);
    }
    let (u1, u2) = ordered(a, b);
    conn.prepare_cached(
        "INSERT INTO conversations (user1_id, user2_id, created_at, updated_at,
                                    user1_opened, user2_opened)
         VALUES (:u1, :u2, :now, :now, :u1 = :a, :u2 = :a)
         ON CONFLICT (user1_id, user2_id) DO NOTHING",
    )?
    .execute(named_params! {":u1": u1, ":u2": u2, ":now": now, ":a": a})?;
    conversation_between(conn, a, b).map(|id| id.expect("conversation exists after insert"))
}

/// The conversation `me` opens with `other` (`GET messages/`): created if there is none, as
/// the original did, and from then on listed for `me` even while it is empty; never for
/// `other` until its first message. Read-only when the conversation is already listed for
/// `me` (the usual case); otherwise one short write.
pub fn open_conversation(
    conn: &Connection,
    me: i64,
    other: i64,
    now: i64,
) -> rusqlite::Result<i64> {
    let (u1, u2) = ordered(me, other);
    let listed: Option<(i64, bool)> = conn
        .prepare_cached(
            "SELECT id, last_message_id IS NOT NULL
                        OR (user1_id = :me AND user1_opened) OR (user2_id = :me AND user2_opened)
               FROM conversations WHERE user1_id = :u1 AND user2_id = :u2",
        )?
        .query_row(named_params! {":me": me, ":u1": u1, ":u2": u2}, |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((id, true)) = listed {
        return Ok(id);
    }
    let tx = super::write_tx(conn)?;
    let id = get_or_create_conversation(&tx, me, other, now)?;
    tx.prepare_cached(
        "UPDATE conversations
            SET user1_opened = user1_opened OR user1_id = :me,
                user2_opened = user2_opened OR user2_id = :me
          WHERE id = :id",
    )?
    .execute(named_params! {":id": id, ":me": me})?;
    tx.commit()?;
    Ok(id)
}

/// The two members of a conversation, if it exists.
pub fn conversation_members(
    conn: &Connection,
    conversation_id: i64,
) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.prepare_cached("SELECT user1_id, user2_id FROM conversations WHERE id = ?1")?
        .query_row([conversation_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// What a new message needs; `content` is already validated.
pub struct NewMessage<'a> {
    pub sender_id: i64,
    pub receiver_id: i64,
    pub content: &'a str,
    pub now: i64,
}

/// The stored form of a just-sent message.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub id: i64,
    pub conversation_id: i64,
    pub is_read: bool,
    pub created_at: i64,
}

/// Inserts one message with everything that must change with it (the conversation's order
/// and last message, the sender's message count, the daily figure). Call inside a write
/// transaction: the caller commits, possibly together with other sends.
pub fn insert_message(conn: &Connection, m: &NewMessage) -> rusqlite::Result<SentMessage> {
    let conversation_id = get_or_create_conversation(conn, m.sender_id, m.receiver_id, m.now)?;
    // A note to self is read the moment it is written: it must never count as unread.
    let is_read = m.sender_id == m.receiver_id;
    conn.prepare_cached(
        "INSERT INTO messages (conversation_id, sender_id, receiver_id, content, is_read, created_at)
         VALUES (:conv, :sender, :receiver, :content, :read, :now)",
    )?
    .execute(named_params! {
        ":conv": conversation_id, ":sender": m.sender_id, ":receiver": m.receiver_id,
        ":content": m.content, ":read": is_read, ":now": m.now,
    })?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached(
        "UPDATE conversations SET updated_at = ?2, last_message_id = ?3 WHERE id = ?1",
    )?
    .execute([conversation_id, m.now, id])?;
    conn.prepare_cached("UPDATE users SET message_count = message_count + 1 WHERE id = ?1")?
        .execute([m.sender_id])?;
    super::stats::bump_daily(conn, m.now, "messages", 1)?;
    Ok(SentMessage {
        id,
        conversation_id,
        is_read,
        created_at: m.now,
    })
}

/// One page of a conversation, oldest first: the newest `limit` messages with an id below
/// `before_id` (all when `None`), and whether older ones remain.
pub fn page(
    conn: &Connection,
    conversation_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> rusqlite::Result<(Vec<MessageRow>, bool)> {
    let mut stmt = conn.prepare_cached(&format!(
        "{MESSAGE_SELECT} WHERE m.conversation_id = :conv AND m.id < :before
         ORDER BY m.id DESC LIMIT :limit"
    ))?;
    let mut rows: Vec<MessageRow> = stmt
        .query_map(
            named_params! {
                ":conv": conversation_id,
                ":before": before_id.unwrap_or(i64::MAX),
                ":limit": limit + 1,
            },
            message_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    rows.reverse();
    Ok((rows, has_more))
}

pub fn has_unread(
    conn: &Connection,
    conversation_id: i64,
    reader_id: i64,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM messages
                       WHERE receiver_id = ?2 AND conversation_id = ?1 AND is_read = 0)",
    )?
    .query_row([conversation_id, reader_id], |r| r.get(0))
}

/// Marks every message `reader_id` received in the conversation as read; returns how many
/// changed and the highest id marked.
pub fn mark_read(
    conn: &Connection,
    conversation_id: i64,
    reader_id: i64,
) -> rusqlite::Result<(usize, Option<i64>)> {
    let mut stmt = conn.prepare_cached(
        "UPDATE messages SET is_read = 1
         WHERE receiver_id = ?2 AND conversation_id = ?1 AND is_read = 0
         RETURNING id",
    )?;
    let mut rows = stmt.query([conversation_id, reader_id])?;
    let (mut changed, mut max_id) = (0, None);
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        changed += 1;
        max_id = max_id.max(Some(id));
    }
    Ok((changed, max_id))
}

/// `mark_read` in a write transaction of its own, taken only when there is something to
/// mark (most calls find nothing, and need not wait for the writer).
pub fn mark_conversation_read(
    conn: &Connection,
    conversation_id: i64,
    reader_id: i64,
) -> rusqlite::Result<(usize, Option<i64>)> {
    if !has_unread(conn, conversation_id, reader_id)? {
        return Ok((0, None));
    }
    let tx = super::write_tx(conn)?;
    let marked = mark_read(&tx, conversation_id, reader_id)?;
    tx.commit()?;
    Ok(marked)
}

/// Reads a page and marks what the reader received as read, atomically: the page shows
/// `is_read` as it was before. Takes the write lock only when there is something to mark.
pub fn read_page_and_mark(
    conn: &Connection,
    conversation_id: i64,
    reader_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> rusqlite::Result<(Vec<MessageRow>, bool, usize, Option<i64>)> {
    if !has_unread(conn, conversation_id, reader_id)? {
        let (rows, more) = page(conn, conversation_id, before_id, limit)?;
        return Ok((rows, more, 0, None));
    }
    let tx = super::write_tx(conn)?;
    let (rows, more) = page(&tx, conversation_id, before_id, limit)?;
    let (marked, max_id) = mark_read(&tx, conversation_id, reader_id)?;
    tx.commit()?;
    Ok((rows, more, marked, max_id))
}

/// A page of an event stream's replay (see `replay_page`).
#[derive(Default)]
pub struct ReplayPage {
    pub messages: Vec<MessageRow>,
    /// Whether it stopped at a limit: there may be more after it.
    pub more: bool,
}

/// The statement of `replay_page`: it walks the messages by id (the `+` keeps SQLite off the
/// conversation index), reading only as far as the page goes. Searching each conversation
/// through its index instead sorts all of the user's later messages, contents included, in
/// a temporary B-tree for every page (in memory: `temp_store = MEMORY`), whatever the limit.
pub fn replay_page_sql() -> String {
    format!(
        "{MESSAGE_SELECT} WHERE m.id > :after AND +m.conversation_id IN (
             SELECT id FROM conversations WHERE user1_id = :me OR user2_id = :me)
         ORDER BY m.id LIMIT :limit"
    )
}

/// The user's messages after `after_id`, in id order: at most `max_rows`, ending with the
/// one that brings their contents to `max_bytes`. Over a whole replay the walk covers the
/// messages after the first `after_id` once, and the replay window bounds them.
pub fn replay_page(
    conn: &Connection,
    user_id: i64,
    after_id: i64,
    max_rows: i64,
    max_bytes: usize,
) -> rusqlite::Result<ReplayPage> {
    let mut stmt = conn.prepare_cached(&replay_page_sql())?;
    let mut rows = stmt.query(named_params! {
        ":after": after_id,
        ":me": user_id,
        ":limit": max_rows,
    })?;
    let mut page = ReplayPage::default();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        let m = message_from_row(r)?;
        bytes += m.content.len();
        page.messages.push(m);
        if bytes >= max_bytes {
            page.more = true;
            return Ok(page);
        }
    }
    page.more = page.messages.len() as i64 >= max_rows;
    Ok(page)
}

/// When the first message after `after_id` was sent, if there is one.
pub fn first_message_time_after(conn: &Connection, after_id: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT created_at FROM messages WHERE id > ?1 ORDER BY id LIMIT 1")?
        .query_row([after_id], |r| r.get(0))
        .optional()
}

/// One row of `conversations/`.
#[derive(Debug)]
pub struct ConversationRow {
    pub id: i64,
    pub other_id: i64,
    pub other_username: String,
    pub other_email: String,
    pub other_status: String,
    pub other_last_activity: i64,
    pub last_content: Option<String>,
    pub last_created_at: Option<i64>,
    pub last_sender: Option<String>,
    pub unread: i64,
    pub updated_at: i64,
}

/// Every conversation of a user, newest first, with the other user, the last message and
/// the unread count, in one query whatever their number. An empty conversation is there
/// only if this user opened it.
pub fn conversations_for(conn: &Connection, me: i64) -> rusqlite::Result<Vec<ConversationRow>> {
    let mut stmt = conn.prepare_cached(
        "WITH mine AS (
             SELECT id, user2_id AS other_id, updated_at, last_message_id
               FROM conversations
              WHERE user1_id = :me AND (last_message_id IS NOT NULL OR user1_opened)
             UNION ALL
             SELECT id, user1_id, updated_at, last_message_id
               FROM conversations
              WHERE user2_id = :me AND user1_id != :me
                AND (last_message_id IS NOT NULL OR user2_opened)
         ),
         unread AS (
             SELECT conversation_id, COUNT(*) AS n FROM messages
              WHERE receiver_id = :me AND is_read = 0 GROUP BY conversation_id
         )
         SELECT c.id, o.id, o.username, o.email, o.status, o.last_activity,
                m.content, m.created_at, s.username, COALESCE(un.n, 0), c.updated_at
           FROM mine c
           JOIN users o ON o.id = c.other_id
           LEFT JOIN messages m ON m.id = c.last_message_id
           LEFT JOIN users s ON s.id = m.sender_id
           LEFT JOIN unread un ON un.conversation_id = c.id
          ORDER BY c.updated_at DESC, c.id DESC",
    )?;
    let rows = stmt.query_map(named_params! {":me": me}, |r| {
        Ok(ConversationRow {
            id: r.get(0)?,
            other_id: r.get(1)?,
            other_username: r.get(2)?,
            other_email: r.get(3)?,
            other_status: r.get(4)?,
            other_last_activity: r.get(5)?,
            last_content: r.get(6)?,
            last_created_at: r.get(7)?,
            last_sender: r.get(8)?,
            unread: r.get(9)?,
            updated_at: r.get(10)?,
        })
    })?;
    rows.collect()
}

/// The users with a conversation with `user_id` in their list, who are told of `user_id`'s
/// presence: a member of an empty conversation that only the other member opened is not
/// (it is not in their list).
pub fn contacts_of(conn: &Connection, user_id: i64) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user2_id FROM conversations WHERE user1_id = ?1 AND user2_id != ?1
            AND (last_message_id IS NOT NULL OR user2_opened)
         UNION SELECT user1_id FROM conversations WHERE user2_id = ?1 AND user1_id != ?1
            AND (last_message_id IS NOT NULL OR user1_opened)",
    )?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    rows.collect()
}

/// The highest message id stored (0 when there are none).
pub fn max_message_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM messages")?
        .query_row([], |r| r.get(0))
}
