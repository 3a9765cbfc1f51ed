//! Live delivery over Server-Sent Events. The hub keeps, per user, the open streams and a
//! bounded queue for each; publishing never blocks (a stream whose queue is full is closed,
//! and its client resumes from the database with `Last-Event-ID`). Each stream is written
//! by its own small thread, so an open stream holds no request worker.
//!
//! Event ids are message ids: a `message` event's id is the message's, and every other event
//! carries the id of the last message the stream delivered, so `Last-Event-ID` is always a
//! resume point. Messages are published by the single message writer right after each
//! commit, hence in id order.
//!
//! A client that reconnects with `Last-Event-ID` is sent what it missed one page at a time
//! (a stream holds at most one page in memory, however long the history), or, beyond the
//! replay window, one `resync` event: it reloads its state and continues live.

use crate::config::SyncMode;
use crate::error::{Error, Result};
use crate::http::Stream as TakenStream;
use crate::store::{self, chat::MessageRow, chat::ReplayPage};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;
use serde_json::json;
use std::collections::{hash_map::Entry, HashMap};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const QUEUE_PER_STREAM: usize = 128;
const STREAM_STACK: usize = 64 * 1024;
/// A replaying stream reads a page of messages from the database, writes it, then reads
/// the next: a page is at most this many messages...
pub const REPLAY_PAGE: i64 = 100;
/// ...and ends after the message that brings its contents to this many bytes, so a stream
/// holds about this much of the history at a time (plus one message of at most 10,000
/// characters), however long the messages.
pub const REPLAY_PAGE_BYTES: usize = 256 * 1024;
/// The replay window: a client that missed more than this many events (message ids)...
pub const REPLAY_WINDOW_EVENTS: i64 = 100_000;
/// ...or whose first missed message is older than this, gets a `resync` event instead.
pub const REPLAY_WINDOW_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Page cache of a stream's own replay connection (it reads forward once; the workers'
/// connections keep 2 MiB each).
const REPLAY_CACHE_KIB: u32 = 256;
/// `Retry-After` of a stream refused by the per-address cap (`--streams-per-address`): a
/// closed stream frees its place within about a second (`Replay::peer_check`).
pub const STREAMS_RETRY_AFTER: u64 = 5;
const TYPING_EVERY: Duration = Duration::from_millis(1500);

#[derive(Clone, Debug)]
pub enum Event {
    /// A message event: its id and its JSON data.
    Message(i64, Arc<str>),
    Other(&'static str, Arc<str>),
}

struct Stream {
    id: u64,
    username: Arc<str>,
    token_hash: Vec<u8>,
    contacts: Vec<i64>,
    /// The client address it was opened from (`--streams-per-address`).
    addr: IpAddr,
    tx: Sender<Event>,
    /// Cleared when the hub lets go of the stream, so a replay in progress stops at once
    /// (its queue's disconnection is seen only after the replay).
    open: Arc<AtomicBool>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.open.store(false, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Inner {
    streams: HashMap<i64, Vec<Stream>>,
    total: usize,
    /// Open streams per client address; an address with none has no entry.
    per_address: HashMap<IpAddr, usize>,
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

    /// Open streams opened from one client address.
    pub fn open_streams_from(&self, addr: IpAddr) -> usize {
        self.lock().per_address.get(&addr).copied().unwrap_or(0)
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
        for s in &dropped {
            if let Entry::Occupied(mut n) = inner.per_address.entry(s.addr) {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    n.remove();
                }
            }
        }
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
    pub fn publish_message(&self, m: &MessageRow, render: Render) {
        let mut inner = self.lock();
        let for_user = |uid: i64| Event::Message(m.id, render(m, uid).into());
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

    /// Subscribes a new stream, within the caps: in all and per user (`503`), and per
    /// client address when `per_address` is not 0 (`429`). Nothing is registered when
    /// refused. The place is given back when the `Registration` is dropped.
    pub fn register(
        self: &Arc<Self>,
        user_id: i64,
        username: &str,
        token_hash: Vec<u8>,
        contacts: Vec<i64>,
        addr: IpAddr,
        per_address: usize,
    ) -> Result<(Registration, Receiver<Event>)> {
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
        let from_addr = inner.per_address.get(&addr).copied().unwrap_or(0);
        if per_address > 0 && from_addr >= per_address {
            return Err(Error::TooManyRequests(STREAMS_RETRY_AFTER));
        }
        let (tx, rx) = bounded(QUEUE_PER_STREAM);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if mine == 0 {
            Self::publish_presence(&mut inner, user_id, username, true, &contacts);
            Self::announce_offline(&mut inner);
        }
        let open = Arc::new(AtomicBool::new(true));
        inner.streams.entry(user_id).or_default().push(Stream {
            id,
            username: username.into(),
            token_hash,
            contacts,
            addr,
            tx,
            open: open.clone(),
        });
        inner.total += 1;
        *inner.per_address.entry(addr).or_default() += 1;
        let registration = Registration {
            hub: self.clone(),
            user_id,
            stream_id: id,
            open,
        };
        Ok((registration, rx))
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
        inner.per_address.clear();
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

/// A stream's place in the hub, given back when it is dropped: when its thread ends, when
/// the thread cannot start, or when the request fails before the stream begins. (A stream
/// the hub already let go of is not counted twice.)
pub struct Registration {
    hub: Arc<Hub>,
    user_id: i64,
    stream_id: u64,
    /// False once the hub has let go of the stream (logout, slow reader, shutdown).
    open: Arc<AtomicBool>,
}

impl Registration {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.user_id, self.stream_id);
    }
}

/// How a message is shown to one user (`data` of its event): the API's view.
pub type Render = fn(&MessageRow, i64) -> String;

/// What a new stream sends before live events.
pub struct Replay {
    pub user_id: i64,
    /// The last message id the client has: only later messages are sent.
    pub after: i64,
    /// Set beyond the replay window: a `resync` event (with the newest id) and no replay.
    pub resync: Option<i64>,
    /// The first page, read by the request's worker (usually all there is).
    pub first: ReplayPage,
    /// For the stream's own connection when there is more than one page.
    pub db_path: PathBuf,
    pub sync: SyncMode,
    pub render: Render,
    /// With nothing to send for this long, the stream sends a heartbeat (`config.heartbeat`).
    pub heartbeat: Duration,
    /// How often an idle stream checks that its client is still there (one cheap syscall),
    /// so a closed tab frees its place within about this (`config.peer_check`).
    pub peer_check: Duration,
}

/// Starts a stream on a connection taken over for it: its own small thread writes the
/// preamble, the replay (page by page) and then live events until the client goes or the
/// hub lets go of it; the stream's place in the hub is given back when it ends.
pub fn spawn_stream(
    stream: TakenStream,
    replay: Replay,
    rx: Receiver<Event>,
    registration: Registration,
) {
    let mut done = stream.done;
    done.status(200);
    let (writer, headers, peer_fd) = (stream.writer, stream.headers, stream.peer_fd);
    let spawned = std::thread::Builder::new()
        .name("event-stream".into())
        .stack_size(STREAM_STACK)
        .spawn(move || {
            run_stream(writer, &headers, peer_fd, replay, rx, &registration);
            drop(registration);
            done.end();
        });
    if spawned.is_err() {
        // The closure, with the registration, is dropped: the place is given back.
        log::error!("cannot start an event stream thread");
    }
}

/// Whether a client whose last event was `last` is beyond the replay window: more than
/// `REPLAY_WINDOW_EVENTS` messages newer than it, or the first of them older than
/// `REPLAY_WINDOW_AGE`, or an id above the newest (the client saw messages this database
/// does not have, as after a restore: replaying from there would skip the next ones).
pub fn beyond_replay_window(conn: &Connection, last: i64, newest: i64) -> Result<bool> {
    if last > newest {
        return Ok(true);
    }
    if newest.saturating_sub(last) > REPLAY_WINDOW_EVENTS {
        return Ok(true);
    }
    let oldest_allowed = store::now_us() - REPLAY_WINDOW_AGE.as_micros() as i64;
    Ok(store::chat::first_message_time_after(conn, last)?.is_some_and(|t| t < oldest_allowed))
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
    replay: Replay,
    rx: Receiver<Event>,
    registration: &Registration,
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
    let mut cursor = replay.after;
    let (heartbeat, peer_check) = (replay.heartbeat, replay.peer_check);
    if let Some(newest) = replay.resync {
        let data = json!({ "newest_id": newest }).to_string();
        if write_event(w.as_mut(), newest, "resync", &data).is_err() {
            return;
        }
    }
    if !send_missed(w.as_mut(), replay, &mut cursor, peer_fd, registration) {
        return;
    }
    // Live: whatever the queue gathered since the subscription, then what comes.
    let mut deliver = |w: &mut Box<dyn Write + Send>, ev: Event| -> std::io::Result<()> {
        match ev {
            Event::Message(id, data) => {
                if id <= cursor {
                    return Ok(()); // already delivered by the replay
                }
                cursor = id;
                write_event(w.as_mut(), id, "message", &data)
            }
            Event::Other(name, data) => write_event(w.as_mut(), cursor, name, &data),
        }
    };
    let mut last_write = Instant::now();
    loop {
        match rx.recv_timeout(peer_check) {
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
                if last_write.elapsed() >= heartbeat {
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

/// Writes the messages after `cursor` stored now, one page at a time: the first page came
/// with the request; further ones are read on a connection of this stream's own, opened
/// only when there is more and closed once caught up. Stops early (false: end the stream)
/// when the client goes, the hub lets go of the stream (a logged-out session is sent
/// nothing more), or the database fails (the client resumes from the last id it got).
fn send_missed(
    w: &mut dyn Write,
    replay: Replay,
    cursor: &mut i64,
    peer_fd: Option<i32>,
    registration: &Registration,
) -> bool {
    let mut page = replay.first;
    let mut conn: Option<Connection> = None;
    loop {
        for m in &page.messages {
            if !registration.is_open() {
                return false;
            }
            if m.id <= *cursor {
                continue;
            }
            *cursor = m.id;
            let data = (replay.render)(m, replay.user_id);
            if write_event(w, m.id, "message", &data).is_err() {
                return false;
            }
        }
        if !page.more {
            return true;
        }
        if peer_fd.is_some_and(crate::http::peer_gone) {
            return false;
        }
        let c = match conn {
            Some(ref c) => c,
            None => match store::open_read_only(&replay.db_path, replay.sync, REPLAY_CACHE_KIB) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    log::warn!("event stream replay: {e}");
                    return false;
                }
            },
        };
        // One page in memory at a time: this one goes before the next is read.
        drop(std::mem::take(&mut page.messages));
        page = match store::chat::replay_page(
            c,
            replay.user_id,
            *cursor,
            REPLAY_PAGE,
            REPLAY_PAGE_BYTES,
        ) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("event stream replay: {e}");
                return false;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A stream of `user` with session `token`, from `addr`, at most `cap` per address.
    fn open(
        hub: &Arc<Hub>,
        user: i64,
        token: u8,
        addr: &str,
        cap: usize,
    ) -> Result<(Registration, Receiver<Event>)> {
        hub.register(user, "u", vec![token], Vec::new(), ip(addr), cap)
    }

    #[test]
    fn the_per_address_cap_refuses_with_429_and_registers_nothing() {
        let hub = Arc::new(Hub::new(100, 100));
        let a: Vec<_> = (1..=3)
            .map(|u| open(&hub, u, 1, "192.0.2.1", 3).unwrap())
            .collect();
        let over = open(&hub, 4, 1, "192.0.2.1", 3).err().unwrap();
        assert!(matches!(over, Error::TooManyRequests(s) if s == STREAMS_RETRY_AFTER));
        assert_eq!(hub.open_streams(), 3);
        assert!(!hub.is_connected(4));
        // Another address, and no cap (0), are not limited.
        let _b = open(&hub, 4, 1, "192.0.2.2", 3).unwrap();
        let _c = open(&hub, 5, 1, "192.0.2.1", 0).unwrap();
        assert_eq!(hub.open_streams_from(ip("192.0.2.1")), 4);
        drop(a);
        assert_eq!(hub.open_streams_from(ip("192.0.2.1")), 1);
    }

    #[test]
    fn every_way_a_stream_ends_gives_its_place_back_once() {
        let hub = Arc::new(Hub::new(100, 100));
        let from = |hub: &Hub| hub.open_streams_from(ip("192.0.2.1"));
        // Its thread ends.
        let (r, _rx) = open(&hub, 1, 1, "192.0.2.1", 0).unwrap();
        assert_eq!(from(&hub), 1);
        drop(r);
        assert_eq!(from(&hub), 0);
        // Logout, then its thread ends: counted down once.
        let (keep, _k) = open(&hub, 1, 1, "192.0.2.1", 0).unwrap();
        let (r, _rx) = open(&hub, 1, 2, "192.0.2.1", 0).unwrap();
        assert_eq!(from(&hub), 2);
        hub.close_session(&[2]);
        assert!(!r.is_open() && keep.is_open());
        assert_eq!(from(&hub), 1);
        drop(r);
        assert_eq!(from(&hub), 1);
        // Deactivation, expiry.
        let (r2, _rx2) = open(&hub, 2, 3, "192.0.2.1", 0).unwrap();
        let (r3, _rx3) = open(&hub, 3, 4, "192.0.2.1", 0).unwrap();
        hub.close_user(2);
        hub.retain_sessions(|h| h != [4]);
        assert!(!r2.is_open() && !r3.is_open());
        assert_eq!(from(&hub), 1);
        // A reader too slow for its queue.
        let (slow, _never_read) = open(&hub, 4, 5, "192.0.2.1", 0).unwrap();
        for i in 0..=QUEUE_PER_STREAM as i64 {
            hub.publish_read(1, 9, 4, i);
        }
        assert!(!slow.is_open());
        assert_eq!(from(&hub), 1);
        drop((r2, r3, slow));
        assert_eq!(from(&hub), 1);
        // Shutdown.
        hub.close_all();
        assert!(!keep.is_open());
        assert_eq!((from(&hub), hub.open_streams()), (0, 0));
        drop(keep);
        assert_eq!((from(&hub), hub.open_streams()), (0, 0));
    }

    fn chat_db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        store::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, email, password_hash, last_activity, date_joined)
             VALUES (1, 'ann', 'ann@example.com', '', 0, 0),
                    (2, 'ben', 'ben@example.com', '', 0, 0),
                    (3, 'cat', 'cat@example.com', '', 0, 0);
             INSERT INTO conversations (id, user1_id, user2_id, created_at, updated_at)
             VALUES (1, 1, 2, 0, 0), (2, 2, 3, 0, 0);",
        )
        .unwrap();
        conn
    }

    fn insert(conn: &Connection, conversation: i64, len: usize, created_at: i64) -> i64 {
        let (from, to) = if conversation == 1 { (1, 2) } else { (2, 3) };
        conn.execute(
            "INSERT INTO messages (conversation_id, sender_id, receiver_id, content, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![conversation, from, to, "x".repeat(len), created_at],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    #[test]
    fn a_replay_page_walks_ids_and_sorts_nothing() {
        let conn = chat_db();
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                store::chat::replay_page_sql()
            ))
            .unwrap()
            .query_map(
                rusqlite::named_params! {":after": 0, ":me": 1, ":limit": 1},
                |r| r.get(3),
            )
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("INTEGER PRIMARY KEY (rowid>?)"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn replay_pages_end_at_their_byte_or_row_limit() {
        let conn = chat_db();
        let long: Vec<i64> = (0..40).map(|_| insert(&conn, 1, 10_000, 0)).collect();
        let others = insert(&conn, 2, 10, 0); // ben and cat's: not ann's
        let short: Vec<i64> = (0..150).map(|_| insert(&conn, 1, 10, 0)).collect();
        let mut after = 0;
        let mut pages = Vec::new();
        loop {
            let page =
                store::chat::replay_page(&conn, 1, after, REPLAY_PAGE, REPLAY_PAGE_BYTES).unwrap();
            let ids: Vec<i64> = page.messages.iter().map(|m| m.id).collect();
            after = *ids.last().unwrap_or(&after);
            pages.push((ids, page.more));
            if !page.more {
                break;
            }
        }
        let per_bytes = REPLAY_PAGE_BYTES.div_ceil(10_000);
        assert_eq!(pages[0].0, long[..per_bytes]);
        assert!(pages[0].1);
        let all: Vec<i64> = pages.iter().flat_map(|(ids, _)| ids.clone()).collect();
        let expected: Vec<i64> = long.iter().chain(&short).copied().collect();
        assert_eq!(all, expected, "every one of hers once, in order");
        assert!(!all.contains(&others));
        // 27 long ones (256 KiB), then 13 long and 87 short (100 messages), then the rest.
        let sizes: Vec<(usize, bool)> = pages.iter().map(|(ids, m)| (ids.len(), *m)).collect();
        assert_eq!(sizes, [(per_bytes, true), (100, true), (63, false)]);
    }

    #[test]
    fn the_replay_window() {
        let conn = chat_db();
        let day = 24 * 3600 * 1_000_000;
        let now = store::now_us();
        let old = insert(&conn, 1, 1, now - 8 * day);
        let recent = insert(&conn, 1, 1, now - 6 * day);
        let newest = recent;
        assert!(!beyond_replay_window(&conn, recent, newest).unwrap());
        assert!(!beyond_replay_window(&conn, old, newest).unwrap());
        assert!(
            beyond_replay_window(&conn, old - 1, newest).unwrap(),
            "8 days"
        );
        assert!(beyond_replay_window(&conn, newest + 1, newest).unwrap());
        // (Nothing is stored after `recent`: only the count of ids decides.)
        let window = recent + REPLAY_WINDOW_EVENTS;
        assert!(!beyond_replay_window(&conn, recent, window).unwrap());
        assert!(beyond_replay_window(&conn, recent, window + 1).unwrap());
        assert!(beyond_replay_window(&conn, 0, i64::MAX).unwrap());
    }
}
