//! Hardening of the live-event stream (`GET /api/events/`), each through the real server:
//!
//! - a replay (`Last-Event-ID`) of a long history to several streams at once holds one page
//!   at a time, not the history: the server's memory grows by far less than the history,
//!   and every message arrives once, in order;
//! - beyond the replay window (too many newer ids, a first missed message too old, an id
//!   the database never had) the stream sends one `resync` event and continues live;
//! - a message sent while a replay is under way arrives once, in order;
//! - a client address can open only `--streams-per-address` streams (`429` with
//!   `Retry-After`), and a closed one frees its place promptly;
//! - a stream opened on an encoded spelling of the path (`/api/%65vents/`) frees its slot
//!   promptly when its client goes.
//!
//! The memory is measured on the real binary serving the database, from its
//! `/proc/PID/status`, so that neither this test's clients nor the other tests running
//! meanwhile are counted.
use crate::support;
use crate::support::events::{Next, Opts, SseClient, SseEvent};
use crate::support::{Client, TestServer};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use whitebeat::config::SyncMode;
use whitebeat::live::{REPLAY_WINDOW_AGE, REPLAY_WINDOW_EVENTS};

const WAIT: Duration = Duration::from_secs(5);
/// The length of a long message (the largest a send accepts).
const LONG: usize = 10_000;

fn id_of(message: &Value) -> i64 {
    message["id"].as_i64().unwrap()
}

/// `n` messages of `LONG` characters from one user to another, sent by four clients at
/// once; their ids in ascending order.
fn send_long(s: &TestServer, token: &str, to: &str, n: usize) -> Vec<i64> {
    let mut ids: Vec<i64> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4)
            .map(|t| {
                scope.spawn(move || {
                    (t..n)
                        .step_by(4)
                        .map(|i| {
                            let mut content = format!("{i:06} ");
                            content.push_str(&"x".repeat(LONG - content.len()));
                            id_of(&s.sent(token, to, &content))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    ids.sort_unstable();
    ids
}

fn open_after(s: &TestServer, token: &str, last_event_id: i64) -> SseClient {
    let c = SseClient::open_after(s.addr(), token, last_event_id);
    assert_eq!(c.status, 200, "{:?}", c.body);
    c
}

/// The next event, whatever its kind; panics on a timeout or the end of the stream.
fn next_event(c: &mut SseClient, timeout: Duration) -> SseEvent {
    match c.next(timeout) {
        Next::Event(ev) => ev,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Reads `n` message events, checking each is a long message, and returns their ids (the
/// contents are not kept: this process's memory is under measurement).
fn read_long_messages(c: &mut SseClient, n: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let ev = c.expect_message(Duration::from_secs(30));
        let content = ev.data["content"].as_str().unwrap_or("");
        assert_eq!(content.len(), LONG, "message {:?}", ev.id);
        assert_eq!(
            ev.id,
            ev.data["id"].as_i64(),
            "the event id is the message id"
        );
        ids.push(ev.id.unwrap());
    }
    ids
}

/// A field of a process's `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`); None off Linux.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Resets a process's peak RSS (`VmHWM`) to its current RSS; false where unsupported.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Open event streams, from the server's own `/metrics` (answered to loopback).
fn streams_open(client: &Client) -> u64 {
    let r = client.get("/metrics", None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
        .lines()
        .find_map(|l| l.strip_prefix("whitebeat_event_streams_open "))
        .and_then(|v| v.trim().parse().ok())
        .expect("whitebeat_event_streams_open in /metrics")
}

#[test]
fn replaying_a_long_history_to_many_streams_holds_one_page_at_a_time() {
    const NOTES: usize = 1_200;
    const STREAMS: usize = 8;
    // The history, through the API of a server in this process...
    let mut s = support::start_with(|c| c.sync = SyncMode::Normal);
    let (alice, _) = s.user_and_id("alice");
    let notes = send_long(&s, &alice, "alice", NOTES);
    let history_kib = (NOTES * LONG / 1024) as u64;
    s.stop();
    // ...then replayed by the real binary on the same database (the session lives on), so
    // that the memory measured is the server's alone, not also this test's clients'.
    let server = support::bin::serve(&s.db_path(), &[]);
    let pid = server.child.id();
    let client = Client::new(server.base.clone());
    let addr = server.addr();
    let open_after = |last_event_id: i64| {
        let c = SseClient::open_after(addr, &alice, last_event_id);
        assert_eq!(c.status, 200, "{:?}", c.body);
        c
    };

    // A short replay on as many streams first (its first page read by a worker, the rest on
    // the stream's own connection), so the measured one pays for no first-time set-up.
    std::thread::scope(|scope| {
        for _ in 0..STREAMS {
            scope.spawn(|| {
                let mut c = open_after(notes[NOTES - 250]);
                assert_eq!(read_long_messages(&mut c, 249), notes[NOTES - 249..]);
            });
        }
    });
    wait_until("the warm-up streams closed", WAIT, || {
        streams_open(&client) == 0
    });

    let Some(before) = status_kib(pid, "VmRSS") else {
        eprintln!("no /proc/PID/status here: the memory is not measured");
        return;
    };
    let exact_peak = reset_peak_rss(pid);
    let peak = AtomicU64::new(before);
    let sampling = AtomicBool::new(true);
    let streams: Vec<(SseClient, Vec<i64>)> = std::thread::scope(|scope| {
        scope.spawn(|| {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = status_kib(pid, "VmRSS") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        // All of them connect, then read (as the tabs of a browser reopening do): nothing
        // is read until every stream has answered.
        let clients: Vec<SseClient> = (0..STREAMS).map(|_| open_after(0)).collect();
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                scope.spawn(move || {
                    let ids = read_long_messages(&mut c, NOTES);
                    (c, ids)
                })
            })
            .collect();
        let streams = readers.into_iter().map(|h| h.join().unwrap()).collect();
        sampling.store(false, Ordering::Relaxed);
        streams
    });
    let mut peak = peak.into_inner();
    if exact_peak {
        peak = peak.max(status_kib(pid, "VmHWM").unwrap_or(0));
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "{STREAMS} streams replayed {NOTES} messages of {LONG} characters ({history_kib} KiB \
         each, {} KiB in all): server RSS {before} KiB before, peak {peak} KiB (+{grown} KiB, \
         {})",
        history_kib * STREAMS as u64,
        if exact_peak { "VmHWM" } else { "sampled" }
    );
    for (_, ids) in &streams {
        assert_eq!(ids, &notes, "every message once, in order");
    }
    // Holding the history costs it at least once per stream (and its JSON once more); a
    // page at a time costs about a page per stream, whatever the history's length.
    assert!(
        grown < history_kib,
        "the server's memory grew by {grown} KiB while {STREAMS} streams replayed a history of \
         {history_kib} KiB each: the replay holds far more than a page at a time"
    );

    // Then live, once.
    let live: i64 = {
        let r = client.send(&alice, "alice", "live again");
        assert_eq!(r.status, 201, "{}", r.text);
        id_of(&r.body["message"])
    };
    for (mut c, _) in streams {
        let ev = c.expect_message(WAIT);
        assert_eq!(ev.id, Some(live));
        let more = c.collect_for(Duration::from_millis(300));
        assert!(more.iter().all(|e| e.event != "message"), "{more:?}");
    }
}

/// Opens a stream after `last_event_id`, expects `resync` as its first event, with the
/// newest id as its id and in its data; returns the stream.
fn expect_resync(s: &TestServer, token: &str, last_event_id: i64, newest: i64) -> SseClient {
    let mut c = open_after(s, token, last_event_id);
    let ev = next_event(&mut c, WAIT);
    assert_eq!(ev.event, "resync", "after {last_event_id}: {ev:?}");
    assert_eq!(
        ev.id,
        Some(newest),
        "the resync event's id is the newest message id"
    );
    assert_eq!(ev.data["newest_id"], newest, "{ev:?}");
    c
}

/// The message ids a stream sends within a short while.
fn message_ids_for(c: &mut SseClient, window: Duration) -> Vec<i64> {
    c.collect_for(window)
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| e.id.unwrap())
        .collect()
}

#[test]
fn beyond_the_replay_window_a_stream_sends_resync_then_goes_on_live() {
    let s = support::start();
    let (alice, alice_id) = s.user_and_id("alice");
    let (bob, bob_id) = s.user_and_id("bob");
    let db = s.db();

    // Too many newer ids. (A message stored with an id far ahead stands for the 100,000
    // between: ids are message ids.)
    let m1 = s.sent(&alice, "bob", "m1");
    let m2 = id_of(&s.sent(&alice, "bob", "m2"));
    let m3 = id_of(&s.sent(&bob, "alice", "m3"));
    let far = id_of(&m1) + REPLAY_WINDOW_EVENTS + 1;
    db.execute(
        "INSERT INTO messages (id, conversation_id, sender_id, receiver_id, content, created_at)
         VALUES (?1, ?2, ?3, ?4, 'far ahead', ?5)",
        [
            far,
            m1["conversation_id"].as_i64().unwrap(),
            alice_id,
            bob_id,
            whitebeat::store::now_us(),
        ],
    )
    .unwrap();
    let mut c = expect_resync(&s, &bob, id_of(&m1), far);
    let live = id_of(&s.sent(&alice, "bob", "after the resync"));
    assert!(live > far);
    assert_eq!(
        message_ids_for(&mut c, Duration::from_millis(700)),
        [live],
        "no replay, then live"
    );
    // Just within the window (`live` is the newest now): replayed as usual.
    let within = live - REPLAY_WINDOW_EVENTS;
    let mut c = open_after(&s, &bob, within);
    let ev = next_event(&mut c, WAIT);
    assert_eq!(ev.event, "message", "{ev:?}");
    let mut replayed = vec![ev.id.unwrap()];
    replayed.extend(message_ids_for(&mut c, Duration::from_millis(500)));
    let expected: Vec<i64> = [m2, m3, far, live]
        .into_iter()
        .filter(|&id| id > within)
        .collect();
    assert_eq!(replayed, expected);

    // An id this database never had (the client saw a newer database, as before a
    // restore): replaying after it would skip the next messages.
    let mut c = expect_resync(&s, &bob, live + 50, live);
    let next = id_of(&s.sent(&alice, "bob", "next"));
    assert!(next < live + 50);
    assert_eq!(message_ids_for(&mut c, Duration::from_millis(700)), [next]);

    // A first missed message older than the window.
    let a1 = id_of(&s.sent(&alice, "bob", "a1"));
    let a2 = id_of(&s.sent(&alice, "bob", "a2"));
    let a3 = id_of(&s.sent(&bob, "alice", "a3"));
    let age = |id: i64, ago: Duration| {
        let at = whitebeat::store::now_us() - ago.as_micros() as i64;
        db.execute(
            "UPDATE messages SET created_at = ?1 WHERE id = ?2",
            [at, id],
        )
        .unwrap();
    };
    let hour = Duration::from_secs(3600);
    age(a2, REPLAY_WINDOW_AGE + hour);
    let mut c = expect_resync(&s, &bob, a1, a3);
    assert!(message_ids_for(&mut c, Duration::from_millis(300)).is_empty());
    // After it the first missed message is recent: replayed.
    let mut c = open_after(&s, &bob, a2);
    assert_eq!(message_ids_for(&mut c, Duration::from_millis(500)), [a3]);
    // Just within the window: replayed.
    age(a2, REPLAY_WINDOW_AGE - hour);
    let mut c = open_after(&s, &bob, a1);
    assert_eq!(
        message_ids_for(&mut c, Duration::from_millis(500)),
        [a2, a3]
    );
}

#[test]
fn a_message_sent_during_a_replay_arrives_once_and_in_order() {
    let s = support::start_with(|c| c.sync = SyncMode::Normal);
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    // More history than the sockets can buffer between the server and a client that reads
    // slowly (the server's send buffer grows to tcp_wmem's maximum; the client's receive
    // buffer is kept small), so the replay is still being written when the client has read
    // only its start.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    let n = (2 * wmem_max / LONG).clamp(400, 4_000);
    let history = send_long(&s, &alice, "bob", n);

    let mut c = SseClient::open_with(
        s.addr(),
        Some(&bob),
        Opts {
            last_event_id: Some(0),
            small_recv_buffer: true,
            ..Opts::default()
        },
    );
    assert_eq!(c.status, 200, "{:?}", c.body);
    let mut got = read_long_messages(&mut c, 5);
    // While the replay waits on this client: messages both ways, committed after the
    // stream subscribed (so they are in its queue) and before its replay reaches them (so
    // they are in its pages too).
    let mut live: Vec<i64> = (0..20)
        .map(|i| {
            let (from, to) = if i % 2 == 0 {
                (&alice, "bob")
            } else {
                (&bob, "alice")
            };
            id_of(&s.sent(from, to, &format!("live {i}")))
        })
        .collect();
    // And more while it reads.
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            (20..60)
                .map(|i| id_of(&s.sent(&alice, "bob", &format!("live {i}"))))
                .collect::<Vec<_>>()
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < n + 20 {
            let ev = c.expect_message(deadline.saturating_duration_since(Instant::now()));
            got.push(ev.id.unwrap());
        }
        live.extend(sender.join().unwrap());
    });
    while got.len() < n + live.len() {
        got.push(c.expect_message(WAIT).id.unwrap());
    }
    let expected: Vec<i64> = history.iter().chain(&live).copied().collect();
    assert_eq!(got, expected, "every message once, in order");
    assert!(
        message_ids_for(&mut c, Duration::from_millis(500)).is_empty(),
        "duplicates after the replay"
    );
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

#[test]
fn streams_per_address_are_capped_and_a_closed_one_frees_its_place() {
    let s = support::start_with(|c| {
        c.streams_per_address = 3;
        c.trusted_proxies = whitebeat::http::proxy::TrustedProxies::parse("127.0.0.1").unwrap();
    });
    let hub = &s.handle.as_ref().unwrap().app().hub;
    // Four accounts, so that no per-user cap is what answers.
    let tokens: Vec<String> = ["ann", "ben", "cat", "dan"]
        .iter()
        .map(|n| s.user_and_id(n).0)
        .collect();
    let mut open: Vec<SseClient> = tokens[..3]
        .iter()
        .map(|t| {
            let c = SseClient::open(s.addr(), t);
            assert_eq!(c.status, 200, "{:?}", c.body);
            c
        })
        .collect();
    assert_eq!(hub.open_streams_from(localhost()), 3);

    let over = SseClient::open(s.addr(), &tokens[3]);
    assert_eq!(
        over.status, 429,
        "the 4th stream from one address: {:?}",
        over.body
    );
    let retry: u64 = over
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    assert!(over.body["error"].is_string(), "{:?}", over.body);
    assert_eq!(
        hub.open_streams(),
        3,
        "nothing registered for the refused one"
    );
    assert_eq!(hub.open_streams_from(localhost()), 3);
    // Another client behind the trusted proxy has its own allowance.
    let proxied = SseClient::open_with(
        s.addr(),
        Some(&tokens[3]),
        Opts {
            headers: vec![("X-Forwarded-For", "203.0.113.7")],
            ..Opts::default()
        },
    );
    assert_eq!(proxied.status, 200, "{:?}", proxied.body);
    drop(proxied);

    // A client closes one: a new one is accepted within a few seconds.
    drop(open.remove(0));
    let started = Instant::now();
    let mut accepted = loop {
        let c = SseClient::open(s.addr(), &tokens[3]);
        if c.status == 200 {
            break c;
        }
        assert_eq!(c.status, 429, "{:?}", c.body);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a closed stream's place was not freed within 3 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(accepted.wait_for_text(": connected", WAIT));
    // Logging out ends a stream and frees its place too.
    assert_eq!(
        SseClient::open(s.addr(), &tokens[0]).status,
        429,
        "full again"
    );
    let r = s.post("/api/logout/", Some(&tokens[1]), serde_json::json!({}));
    assert_eq!(r.status, 200);
    wait_until("the logged-out stream's place freed", WAIT, || {
        hub.open_streams_from(localhost()) == 2
    });
    let c = SseClient::open(s.addr(), &tokens[0]);
    assert_eq!(c.status, 200, "{:?}", c.body);
    drop(open);
    drop(accepted);
    drop(c);
    wait_until("every place freed", WAIT, || {
        hub.open_streams_from(localhost()) == 0
    });
}

#[test]
fn a_stream_on_an_encoded_path_frees_its_slot_when_the_client_goes() {
    let s = support::start_with(|c| c.max_streams_per_user = 1);
    let (token, _) = s.user_and_id("alice");
    let encoded = |token: &str| {
        SseClient::open_with(
            s.addr(),
            Some(token),
            Opts {
                path: Some("/api/%65vents/"),
                ..Opts::default()
            },
        )
    };
    let mut first = encoded(&token);
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert!(first
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    assert!(first.wait_for_text(": connected", WAIT), "no preamble");
    assert_eq!(encoded(&token).status, 503, "the one slot is taken");
    drop(first); // the client goes away without a word
    let started = Instant::now();
    loop {
        let again = encoded(&token);
        if again.status == 200 {
            break;
        }
        assert_eq!(again.status, 503, "{:?}", again.body);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "3 s after its client closed, a stream on /api/%65vents/ still holds its slot"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
