//! Conversations and messages: the chat itself.

use crate::api::ctx::{check_identity_field, Ctx};
use crate::error::{Error, Result};
use crate::http::{Request, Response, Taken};
use crate::store::writer::SendJob;
use crate::store::{self, chat::MessageRow};
use crate::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const MAX_CONTENT_CHARS: usize = 10_000;
pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 500;

// The hot responses are typed structs rather than `json!` values: serialising a struct
// allocates nothing per field, where a `Value` allocates a map entry and a key per field.

/// A message as `messages/` and the event stream show it.
#[derive(Serialize)]
pub struct MessageOut<'a> {
    id: i64,
    conversation_id: i64,
    sender: &'a str,
    receiver: &'a str,
    content: &'a str,
    is_read: bool,
    created_at: String,
    is_mine: bool,
}

impl std::fmt::Display for MessageOut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

pub fn message_json(m: &MessageRow, my_id: i64) -> MessageOut<'_> {
    MessageOut {
        id: m.id,
        conversation_id: m.conversation_id,
        sender: &m.sender,
        receiver: &m.receiver,
        content: &m.content,
        is_read: m.is_read,
        created_at: rfc3339(m.created_at),
        is_mine: m.sender_id == my_id,
    }
}

#[derive(Serialize)]
struct OtherUserOut<'a> {
    id: i64,
    username: &'a str,
    email: &'a str,
    status: &'a str,
    is_online: bool,
}

#[derive(Serialize)]
struct LastMessageOut<'a> {
    content: &'a str,
    created_at: String,
    sender: &'a str,
}

#[derive(Serialize)]
struct ConversationOut<'a> {
    id: i64,
    other_user: OtherUserOut<'a>,
    last_message: Option<LastMessageOut<'a>>,
    unread_count: i64,
    updated_at: String,
}

#[derive(Serialize)]
struct ConversationsPage<'a> {
    success: bool,
    count: usize,
    conversations: Vec<ConversationOut<'a>>,
}

#[derive(Serialize)]
struct MessagesPage<'a> {
    success: bool,
    conversation_id: i64,
    count: usize,
    has_more: bool,
    messages: Vec<MessageOut<'a>>,
}

/// # `GET /api/conversations/`
/// Your conversations, newest first, each with the other user, the last message and your
/// unread count; one query whatever their number.
pub fn conversations(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    check_identity_field(&me, req.query("username"))?;
    let rows = store::chat::conversations_for(ctx.db, me.user_id)?;
    let presence = super::Presence::new(ctx.app);
    let list: Vec<ConversationOut> = rows
        .iter()
        .map(|c| ConversationOut {
            id: c.id,
            other_user: OtherUserOut {
                id: c.other_id,
                username: &c.other_username,
                email: &c.other_email,
                status: &c.other_status,
                is_online: presence.is_online(c.other_id, c.other_last_activity),
            },
            last_message: match (&c.last_content, c.last_created_at, &c.last_sender) {
                (Some(content), Some(at), Some(sender)) => Some(LastMessageOut {
                    content,
                    created_at: rfc3339(at),
                    sender,
                }),
                _ => None,
            },
            unread_count: c.unread,
            updated_at: rfc3339(c.updated_at),
        })
        .collect();
    Response::json(
        200,
        &ConversationsPage {
            success: true,
            count: list.len(),
            conversations: list,
        },
    )
}

/// # `GET /api/messages/?other_username=&limit=&before_id=`
/// A page of your conversation with `other_username` (alias `contact_username`), oldest
/// first, creating the conversation if there is none (as the original did). An empty
/// conversation is listed in `conversations/` for you, who opened it, and for the other
/// member only from its first message on. Marks what you received as read in the same
/// transaction; the page shows `is_read` as it was before.
pub fn messages(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    check_identity_field(&me, req.query("username"))?;
    let other_name = req
        .query("other_username")
        .or_else(|| req.query("contact_username"))
        .ok_or_else(|| Error::bad_request("other_username is required"))?;
    let limit = req.query_int("limit")?.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::bad_request(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    let before_id = req.query_int("before_id")?;
    if before_id.is_some_and(|b| b < 1) {
        return Err(Error::bad_request(
            "`before_id` must be a positive message id",
        ));
    }
    let other_id = store::users::find_id(ctx.db, other_name)?
        .ok_or_else(|| Error::not_found("User not found"))?;
    let conversation_id =
        store::chat::open_conversation(ctx.db, me.user_id, other_id, store::now_us())?;
    let read =
        store::chat::read_page_and_mark(ctx.db, conversation_id, me.user_id, before_id, limit);
    let (rows, has_more, marked, up_to) = match read.map_err(Error::from) {
        Ok(done) => done,
        // The disk is full (or the database busy): still show the page, unmarked; the
        // messages stay unread until a later read can record it.
        Err(Error::Unavailable(why)) => {
            log::warn!("messages: could not mark as read ({why}); serving the page unmarked");
            let (rows, more) = store::chat::page(ctx.db, conversation_id, before_id, limit)?;
            (rows, more, 0, None)
        }
        Err(e) => return Err(e),
    };
    if let (true, Some(up_to)) = (marked > 0, up_to) {
        ctx.app
            .hub
            .publish_read(conversation_id, me.user_id, other_id, up_to);
    }
    let list: Vec<MessageOut> = rows.iter().map(|m| message_json(m, me.user_id)).collect();
    Response::json(
        200,
        &MessagesPage {
            success: true,
            conversation_id,
            count: list.len(),
            has_more,
            messages: list,
        },
    )
}

#[derive(Deserialize)]
struct SendBody {
    sender: Option<String>,
    /// Not in the original's send body, but clients send it; checked like `sender`.
    username: Option<String>,
    receiver: Option<String>,
    contact_username: Option<String>,
    content: Option<String>,
}

/// # `POST /api/send-message/`
/// Sends `content` (trimmed, 1–10,000 characters) to `receiver` (alias `contact_username`).
/// `sender` and `username`, when given, must name you (`403`). At most
/// `--sends-per-minute` sends per user (`429` with `Retry-After`). The `201` is written only
/// after the message is committed.
pub fn send_message(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    let body: SendBody = req.json()?;
    let receiver = body
        .receiver
        .or(body.contact_username)
        .filter(|r| !r.is_empty());
    let (Some(receiver), Some(content)) = (receiver, body.content) else {
        return Err(Error::bad_request("receiver and content are required"));
    };
    // A body that is not a send at all is a 400 whatever else it claims; one that is, but
    // in someone else's name, is refused before anything is looked up.
    check_identity_field(&me, body.sender.as_deref())?;
    check_identity_field(&me, body.username.as_deref())?;
    let content = content.trim();
    let chars = content.chars().count();
    if chars == 0 {
        return Err(Error::bad_request("Message content cannot be empty"));
    }
    if chars > MAX_CONTENT_CHARS {
        return Err(Error::bad_request(format!(
            "Message content must be at most {MAX_CONTENT_CHARS} characters"
        )));
    }
    let receiver_user = store::users::find_by_username(ctx.db, &receiver)?
        .filter(|u| u.is_active)
        .ok_or_else(|| Error::not_found("User not found"))?;
    // Counted only for a send that would be stored: a refused one (bad content, unknown
    // receiver) writes nothing and costs no more than any other small request, and a
    // client's mistakes should not use up its allowance.
    ctx.app.send_limit.check(&me.user_id)?;
    // The worker is done here: the writer stores the message with whatever other sends are
    // waiting, and the answer is written on this connection after the commit.
    let (sender_id, sender) = (me.user_id, me.username);
    let (receiver_id, receiver) = (receiver_user.id, receiver_user.username);
    let content = content.to_string();
    let writer = ctx.app.writer.clone();
    let mut resp = Response::new(201);
    resp.takeover = Some(Box::new(move |taken: Taken| {
        writer.submit(SendJob {
            sender_id,
            sender,
            receiver_id,
            receiver,
            content,
            on_done: Box::new(move |result| taken.respond(sent_response(result))),
        });
    }));
    Ok(resp)
}

#[derive(Serialize)]
struct SentOut<'a> {
    id: i64,
    conversation_id: i64,
    sender: &'a str,
    receiver: &'a str,
    content: &'a str,
    created_at: String,
    is_read: bool,
}

#[derive(Serialize)]
struct SentPage<'a> {
    success: bool,
    message: SentOut<'a>,
}

/// The answer to a send, once its commit is done.
fn sent_response(result: Result<MessageRow>) -> Response {
    let built = result.and_then(|row| {
        Response::json(
            201,
            &SentPage {
                success: true,
                message: SentOut {
                    id: row.id,
                    conversation_id: row.conversation_id,
                    sender: &row.sender,
                    receiver: &row.receiver,
                    content: &row.content,
                    created_at: rfc3339(row.created_at),
                    is_read: row.is_read,
                },
            },
        )
    });
    built.unwrap_or_else(|e| {
        if e.status() >= 500 {
            log::error!("send-message: {e}");
        }
        Response::error(&e)
    })
}

#[derive(Deserialize)]
struct MarkBody {
    username: Option<String>,
    conversation_id: Option<i64>,
}

/// # `POST /api/mark-as-read/`
/// Marks every message you received in one of your conversations as read; `404` for a
/// conversation that is not yours.
pub fn mark_as_read(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    let body: MarkBody = req.json()?;
    check_identity_field(&me, body.username.as_deref())?;
    let conversation_id = body
        .conversation_id
        .ok_or_else(|| Error::bad_request("conversation_id is required"))?;
    let (a, b) = store::chat::conversation_members(ctx.db, conversation_id)?
        .filter(|(a, b)| *a == me.user_id || *b == me.user_id)
        .ok_or_else(|| Error::not_found("Conversation not found"))?;
    let other = if a == me.user_id { b } else { a };
    let (marked, up_to) = store::chat::mark_conversation_read(ctx.db, conversation_id, me.user_id)?;
    if let (true, Some(up_to)) = (marked > 0, up_to) {
        ctx.app
            .hub
            .publish_read(conversation_id, me.user_id, other, up_to);
    }
    Response::json(200, &json!({"success": true, "marked_read": marked}))
}
