//! Live delivery over Server-Sent Events. The hub keeps, per user, the open streams and a
//! bounded queue for each; publishing never blocks (a stream whose queue is full is closed,
//! and its client resumes from the database with `Last-Event-ID`). Each stream is written
//! by its own small thread, so an open stream holds no request worker.
//!
//! Event ids are message ids: a `message` event's id is the message's, and every other event
//! carries the id of the last message the stream delivered, so `Last-Event-ID` is always a
//! resume point. Messages are published by the single message writer right after each
//! commit, hence in id order.

use crate::app::Ctx;
use crate::db::{self, chat::MessageRow};
use crate::error::{Error, Result};
use crate::http::{Request, Response, Taken};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often an idle stream checks that its client is still there (one cheap syscall),
/// so a closed tab frees its stream slot within about a second.
const PEER_CHECK: Duration = Duration::from_secs(1);
const QUEUE_PER_STREAM: usize = 128;
const STREAM_STACK: usize = 64 * 1024;
const REPLAY_PAGE: i64 = 500;
const TYPING_EVERY: Duration = Duration::from_millis(1500);

#[derive(Clone, Debug)]
enum Event {
    /// A message event: its id and its JSON data.
    Message(i64, Arc<str>),
    Other(&'static str, Arc<str>),
}

struct Stream {
    id: u64,
    username: Arc<str>,
    token_hash: Vec<u8>,
    contacts: Vec<i64>,
    tx: Sender<Event>,
}

#[derive(Default)]
struct Inner {
    streams: HashMap<i64, Vec<Stream>>,
    total: usize,
    last_typing: HashMap<i64, Instant>,
    /// Users whose last stream the hub itself just closed (logout, slow reader): their
    /// contacts still have to hear they went offline. Drained by `announce_offline`.
    went_offline: Vec<(i64, Arc<str>, Vec<i64>)>,
}

pub struct Hub {
    inner: Mutex<Inner>,
    max_total: usize,
    max_per_user: usize,
    next_id: AtomicU64,
}

impl Hub {
    pub fn new(max_total: usize, max_per_user: usize) -> Hub {
        Hub {
            inner: Mutex::new(Inner::default()),
            max_total,
            max_per_user,
            next_id: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The users with at least one open stream, read under one lock (for lists).
    pub fn connected_users(&self) -> std::collections::HashSet<i64> {
        self.lock().streams.keys().copied().collect()
    }

    /// Whether the user has at least one open stream.
    pub fn is_connected(&self, user_id: i64) -> bool {
        self.lock()
            .streams
            .get(&user_id)
            .is_some_and(|s| !s.is_empty())
    }

    pub fn open_streams(&self) -> usize {
        self.lock().total
    }

    fn send_to(inner: &mut Inner, user_id: i64, event: &Event) {
        let Some(list) = inner.streams.get_mut(&user_id) else {
            return;
        };
        // A full queue means the client stopped reading: drop it rather than wait. (Nothing
        // is allocated unless a stream is dropped.)
        let dropped: Vec<Stream> = list
            .extract_if(.., |s| s.tx.try_send(event.clone()).is_err())
            .collect();
        Self::forget(inner, user_id, dropped);
    }

    /// Bookkeeping for streams the hub removed: the count, and when they were the user's
    /// last, the offline notice owed to their contacts (the stream threads' own
    /// `unregister` will find nothing left to announce).
    fn forget(inner: &mut Inner, user_id: i64, dropped: Vec<Stream>) {
        let Some(last) = dropped.last() else {
            return;
        };
        inner.total -= dropped.len();
        if inner.streams.get(&user_id).is_some_and(Vec::is_empty) {
            inner.streams.remove(&user_id);
            let notice = (user_id, last.username.clone(), last.contacts.clone());
            inner.went_offline.push(notice);
        }
    }

    /// Sends the offline presence events owed (sending them may close more slow streams,
    /// hence the loop).
    fn announce_offline(inner: &mut Inner) {
        while let Some((user_id, username, contacts)) = inner.went_offline.pop() {
            Self::publish_presence(inner, user_id, &username, false, &contacts);
        }
    }

    /// Fans a committed message out to both ends (once for a note to self).
    pub fn publish_message(&self, m: &MessageRow) {
        let mut inner = self.lock();
        let for_user = |uid: i64| {
            let data = crate::api::messages::message_json(m, uid).to_string();
            Event::Message(m.id, data.into())
        };
        Self::send_to(&mut inner, m.receiver_id, &for_user(m.receiver_id));
        if m.sender_id != m.receiver_id {
            Self::send_to(&mut inner, m.sender_id, &for_user(m.sender_id));
        }
        Self::announce_offline(&mut inner);
    }

    /// Tells `other_id` that `reader_id` read their messages up to `up_to_id`.
    pub fn publish_read(&self, conversation_id: i64, reader_id: i64, other_id: i64, up_to_id: i64) {
        let data = json!({
            "conversation_id": conversation_id,
            "reader_id": reader_id,
            "up_to_id": up_to_id,
        });
        let event = Event::Other("read", data.to_string().into());
        let mut inner = self.lock();
        Self::send_to(&mut inner, other_id, &event);
        Self::announce_offline(&mut inner);
    }

    /// Sends a typing event unless the user sent one very recently. Returns whether it went.
    pub fn publish_typing(
        &self,
        conversation_id: i64,
        user_id: i64,
        username: &str,
        to: i64,
    ) -> bool {
        let mut inner = self.lock();
        let now = Instant::now();
        if inner
            .last_typing
            .get(&user_id)
            .is_some_and(|t| now.duration_since(*t) < TYPING_EVERY)
        {
            return false;
        }
        inner.last_typing.insert(user_id, now);
        if inner.last_typing.len() > 10_000 {
            inner
                .last_typing
                .retain(|_, t| now.duration_since(*t) < TYPING_EVERY);
        }
        let data = json!({"conversation_id": conversation_id, "username": username});
        Self::send_to(
            &mut inner,
            to,
            &Event::Other("typing", data.to_string().into()),
        );
        Self::announce_offline(&mut inner);
        true
    }

    fn publish_presence(
        inner: &mut Inner,
        user_id: i64,
        username: &str,
        online: bool,
        contacts: &[i64],
    ) {
        let data = json!({"user_id": user_id, "username": username, "is_online": online});
        let event = Event::Other("presence", data.to_string().into());
        for &c in contacts {
            Self::send_to(inner, c, &event);
        }
    }

    fn register(
        &self,
        user_id: i64,
        username: &str,
        token_hash: Vec<u8>,
        contacts: Vec<i64>,
    ) -> Result<(u64, Receiver<Event>)> {
        let mut inner = self.lock();
        if inner.total >= self.max_total {
            return Err(Error::Unavailable(
                "Too many open event streams on this server".into(),
            ));
        }
        let mine = inner.streams.get(&user_id).map_or(0, Vec::len);
        if mine >= self.max_per_user {
            return Err(Error::Unavailable(
                "Too many open event streams for this user; close one first".into(),
            ));
        }
        let (tx, rx) = bounded(QUEUE_PER_STREAM);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if mine == 0 {
            Self::publish_presence(&mut inner, user_id, username, true, &contacts);
            Self::announce_offline(&mut inner);
        }
        inner.streams.entry(user_id).or_default().push(Stream {
            id,
            username: username.into(),
            token_hash,
            contacts,
            tx,
        });
        inner.total += 1;
        Ok((id, rx))
    }

    fn unregister(&self, user_id: i64, stream_id: u64) {
        let mut inner = self.lock();
        let Some(list) = inner.streams.get_mut(&user_id) else {
            return;
        };
        let dropped: Vec<Stream> = list.extract_if(.., |s| s.id == stream_id).collect();
        Self::forget(&mut inner, user_id, dropped);
        Self::announce_offline(&mut inner);
    }

    /// Closes every stream opened with this session (logout).
    pub fn close_session(&self, token_hash: &[u8]) {
        self.retain_sessions(|h| h != token_hash);
    }

    /// Closes every stream of a user (deactivated, or their password reset).
    pub fn close_user(&self, user_id: i64) {
        let mut inner = self.lock();
        if let Some(dropped) = inner.streams.get_mut(&user_id).map(std::mem::take) {
            Self::forget(&mut inner, user_id, dropped);
        }
        Self::announce_offline(&mut inner);
    }

    /// Closes the streams whose session no longer passes `valid` (expired, revoked from the
    /// command line, user deactivated).
    pub fn retain_sessions(&self, mut valid: impl FnMut(&[u8]) -> bool) {
        let mut inner = self.lock();
        let mut removed = Vec::new();
        for (&user_id, list) in inner.streams.iter_mut() {
            let dropped: Vec<Stream> = list.extract_if(.., |s| !valid(&s.token_hash)).collect();
            if !dropped.is_empty() {
                removed.push((user_id, dropped));
            }
        }
        for (user_id, dropped) in removed {
            Self::forget(&mut inner, user_id, dropped);
        }
        Self::announce_offline(&mut inner);
    }

    /// Closes every stream (shutdown).
    pub fn close_all(&self) {
        let mut inner = self.lock();
        inner.streams.clear();
        inner.total = 0;
    }

    /// Session hashes of all open streams (for the periodic validity check).
    pub fn session_hashes(&self) -> Vec<Vec<u8>> {
        let inner = self.lock();
        let mut out: Vec<Vec<u8>> = inner
            .streams
            .values()
            .flatten()
            .map(|s| s.token_hash.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// # `GET /api/events/`
/// The logged-in user's event stream (`text/event-stream`): `message`, `read`, `typing` and
/// `presence` events. With `Last-Event-ID` (or `?last_event_id=`), every message after that
/// id is replayed from the database first. `503` beyond the stream caps.
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
    let contacts = db::chat::contacts_of(ctx.db, me.user_id)?;
    // A fresh stream starts after the newest message now stored. Read that before
    // subscribing and the backlog after: a message committed in between is then in the
    // backlog, the queue, or both, and the cursor drops the duplicate.
    let start = match last_id {
        Some(id) => id,
        None => db::chat::max_message_id(ctx.db)?,
    };
    let hub = ctx.app.hub.clone();
    let (stream_id, rx) =
        hub.register(me.user_id, &me.username, me.token_hash.clone(), contacts)?;
    let mut backlog = Vec::new();
    let mut after = start;
    loop {
        let page = match db::chat::messages_for_user_after(ctx.db, me.user_id, after, REPLAY_PAGE) {
            Ok(p) => p,
            Err(e) => {
                hub.unregister(me.user_id, stream_id);
                return Err(e.into());
            }
        };
        for m in &page {
            after = m.id;
            let data = crate::api::messages::message_json(m, me.user_id).to_string();
            backlog.push(Event::Message(m.id, data.into()));
        }
        if (page.len() as i64) < REPLAY_PAGE {
            break;
        }
    }
    let cursor = start;
    let user_id = me.user_id;
    // Streams are revalidated, never stored; the server passes this header on.
    let mut resp = Response::new(200).with_header("Cache-Control", "no-cache");
    resp.takeover = Some(Box::new(move |taken: Taken| {
        let stream = taken.into_stream();
        let mut done = stream.done;
        done.status(200);
        let (writer, headers, peer_fd) = (stream.writer, stream.headers, stream.peer_fd);
        let spawned = std::thread::Builder::new()
            .name("event-stream".into())
            .stack_size(STREAM_STACK)
            .spawn({
                let hub = hub.clone();
                move || {
                    run_stream(writer, &headers, peer_fd, backlog, cursor, rx);
                    hub.unregister(user_id, stream_id);
                    done.end();
                }
            });
        if spawned.is_err() {
            log::error!("cannot start an event stream thread");
            hub.unregister(user_id, stream_id);
        }
    }));
    Ok(resp)
}

fn write_event(w: &mut dyn Write, id: i64, name: &str, data: &str) -> std::io::Result<()> {
    // JSON from serde has no raw newlines, so one `data:` line is enough.
    write!(w, "id: {id}\nevent: {name}\ndata: {data}\n\n")?;
    w.flush()
}

fn run_stream(
    mut w: Box<dyn Write + Send>,
    headers: &[(String, String)],
    peer_fd: Option<i32>,
    backlog: Vec<Event>,
    mut cursor: i64,
    rx: Receiver<Event>,
) {
    let fixed = [
        ("Content-Type", "text/event-stream"),
        ("X-Accel-Buffering", "no"),
        ("Connection", "close"),
    ];
    // Then the server's own headers: nosniff, no-store, and CORS for an allowed origin.
    let mut head = crate::http::response_head(
        200,
        fixed
            .into_iter()
            .chain(headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    head.push_str(": connected\nretry: 2000\n\n");
    if w.write_all(head.as_bytes())
        .and_then(|_| w.flush())
        .is_err()
    {
        return;
    }
    let mut deliver = |w: &mut Box<dyn Write + Send>, ev: Event| -> std::io::Result<()> {
        match ev {
            Event::Message(id, data) => {
                if id <= cursor {
                    return Ok(()); // already delivered from the backlog
                }
                cursor = id;
                write_event(w.as_mut(), id, "message", &data)
            }
            Event::Other(name, data) => write_event(w.as_mut(), cursor, name, &data),
        }
    };
    for ev in backlog {
        if deliver(&mut w, ev).is_err() {
            return;
        }
    }
    let mut last_write = Instant::now();
    loop {
        match rx.recv_timeout(PEER_CHECK) {
            Ok(ev) => {
                if deliver(&mut w, ev).is_err() {
                    return;
                }
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if peer_fd.is_some_and(crate::http::peer_gone) {
                    return;
                }
                if last_write.elapsed() >= HEARTBEAT {
                    if w.write_all(b": heartbeat\n\n")
                        .and_then(|_| w.flush())
                        .is_err()
                    {
                        return;
                    }
                    last_write = Instant::now();
                }
            }
            // The hub dropped this stream (logout, expiry, slow client, shutdown).
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
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
            let (a, b) = db::chat::conversation_members(ctx.db, cid)?
                .filter(|(a, b)| *a == me.user_id || *b == me.user_id)
                .ok_or_else(|| Error::not_found("Conversation not found"))?;
            (cid, if a == me.user_id { b } else { a })
        }
        (None, Some(name)) if !name.is_empty() => {
            let other = db::users::find_id(ctx.db, &name)?
                .ok_or_else(|| Error::not_found("User not found"))?;
            let cid = db::chat::conversation_between(ctx.db, me.user_id, other)?
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
