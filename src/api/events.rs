//! The live-event endpoints: opening a user's event stream (the stream itself is
//! `live`), and telling the other member of a conversation that you are typing.

use crate::api::ctx::Ctx;
use crate::error::{Error, Result};
use crate::http::{Request, Response, Taken};
use crate::live;
use crate::store::{self, chat::MessageRow};
use serde::Deserialize;

/// A message as one user sees it in an event's `data`: the API's message object.
pub fn render_message(m: &MessageRow, viewer: i64) -> String {
    super::messages::message_json(m, viewer).to_string()
}

/// # `GET /api/events/`
/// The logged-in user's event stream (`text/event-stream`): `message`, `read`, `typing` and
/// `presence` events. With `Last-Event-ID` (or `?last_event_id=`), every message after that
/// id is replayed from the database first; beyond the replay window (more than
/// `live::REPLAY_WINDOW_EVENTS` newer messages, the first of them older than `live::REPLAY_WINDOW_AGE`,
/// or an id this database never had) the stream starts instead with one `resync` event
/// carrying the newest id (`{"newest_id": N}`): the client reloads its state. `503` beyond
/// the stream caps in all and per user, `429` with `Retry-After` beyond the cap per client
/// address.
pub fn events(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    let last_id = match req
        .header("last-event-id")
        .or_else(|| req.query("last_event_id"))
    {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<i64>()
                .map_err(|_| Error::bad_request("Last-Event-ID must be a message id"))?,
        ),
    };
    let contacts = store::chat::contacts_of(ctx.db, me.user_id)?;
    // The newest message now stored is read before subscribing and the replay after: a
    // message committed in between is then in the replay, the queue, or both, and the
    // cursor drops the duplicate. A fresh stream starts after it.
    let newest = store::chat::max_message_id(ctx.db)?;
    let (after, resync) = match last_id.map(|id| id.max(0)) {
        None => (newest, None),
        Some(id) if live::beyond_replay_window(ctx.db, id, newest)? => (newest, Some(newest)),
        Some(id) => (id, None),
    };
    let config = &ctx.app.config;
    let (registration, rx) = ctx.app.hub.register(
        me.user_id,
        &me.username,
        me.token_hash.clone(),
        contacts,
        crate::http::proxy::client_network(req.client_ip),
        config.streams_per_address,
    )?;
    // One page here (on failure `registration` gives the place back); the stream's thread
    // reads any further pages itself.
    let first = store::chat::replay_page(
        ctx.db,
        me.user_id,
        after,
        live::REPLAY_PAGE,
        live::REPLAY_PAGE_BYTES,
    )?;
    let replay = live::Replay {
        user_id: me.user_id,
        after,
        resync,
        first,
        db_path: config.db_path.clone(),
        sync: config.sync,
        render: render_message,
        heartbeat: config.heartbeat,
        peer_check: config.peer_check,
    };
    // Streams are revalidated, never stored; the server passes this header on.
    let mut resp = Response::new(200).with_header("Cache-Control", "no-cache");
    resp.takeover = Some(Box::new(move |taken: Taken| {
        live::spawn_stream(taken.into_stream(), replay, rx, registration);
    }));
    Ok(resp)
}

#[derive(Deserialize)]
struct TypingBody {
    conversation_id: Option<i64>,
    other_username: Option<String>,
}

/// # `POST /api/typing/`
/// `{"conversation_id": N}` or `{"other_username": "..."}`: tells the other member you are
/// typing. `204`; repeated calls within a second and a half are absorbed.
pub fn typing(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    let body: TypingBody = req.json()?;
    let (conversation_id, other) = match (body.conversation_id, body.other_username) {
        (Some(cid), _) => {
            let (a, b) = store::chat::conversation_members(ctx.db, cid)?
                .filter(|(a, b)| *a == me.user_id || *b == me.user_id)
                .ok_or_else(|| Error::not_found("Conversation not found"))?;
            (cid, if a == me.user_id { b } else { a })
        }
        (None, Some(name)) if !name.is_empty() => {
            let other = store::users::find_id(ctx.db, &name)?
                .ok_or_else(|| Error::not_found("User not found"))?;
            let cid = store::chat::conversation_between(ctx.db, me.user_id, other)?
                .ok_or_else(|| Error::not_found("Conversation not found"))?;
            (cid, other)
        }
        _ => {
            return Err(Error::bad_request(
                "conversation_id or other_username is required",
            ))
        }
    };
    if other != me.user_id {
        ctx.app
            .hub
            .publish_typing(conversation_id, me.user_id, &me.username, other);
    }
    Ok(Response::new(204))
}
