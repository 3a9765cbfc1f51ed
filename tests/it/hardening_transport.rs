//! Regression tests for the transport (vendor/tiny_http, see its PATCHES.md), over raw TCP
//! against the in-process server:
//!
//! - a client that does not read its answers holds only its own connection: no worker, nor
//!   the one thread that answers every send after its commit, ever writes to a client
//!   socket, so other users' sends and live events go on; the connection's own thread gives
//!   up after `response_timeout` and closes it;
//! - a body over the limit gets its `413` and the connection ends, its rest never drained;
//! - ambiguous body framing and folded header lines are `400` and close, so nothing
//!   smuggled in a body is ever read as a request;
//! - open connections are capped per client address (trusted proxies exempt), and a
//!   connection that sends nothing is closed after `first_byte_timeout`.
//!
//! Clients that must not read use a socket with a tiny receive buffer and a small segment
//! size (`support::raw::non_reading_client`).
use crate::support;
use crate::support::events::SseClient;
use crate::support::raw::{
    get_request, health_within, non_reading_client, parse_replies, post_request, read_reply,
    read_until_closed_by, timed_request, write_in_background, End,
};
use crate::support::TestServer;
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use whitebeat::config::SyncMode;
use whitebeat::http::proxy::TrustedProxies;

/// Dave's live-event stream: just enough to see which messages arrive.
fn event_stream(addr: SocketAddr, token: &str) -> SseClient {
    let stream = SseClient::open(addr, token);
    assert_eq!(stream.status, 200, "event stream: {:?}", stream.body);
    stream
}

fn count_messages(s: &TestServer) -> i64 {
    s.db()
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. A slow reader of its `201`s stops nobody's sends nor live delivery.

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn clients_that_do_not_read_their_201s_hold_up_no_other_send_nor_live_event() {
    let s = support::start_with(|c| {
        c.sync = SyncMode::Normal;
        c.response_timeout = RESPONSE_TIMEOUT;
        c.request_timeout = Duration::from_secs(5);
    });
    let addr = s.addr();
    let alice = s.user("alice");
    s.user("bob");
    let carol = s.user("carol");
    let dave = s.user("dave");
    let mut dave_stream = event_stream(addr, &dave);

    // 10,000 four-byte characters: a 40 KB body, echoed back in a 40 KB `201`.
    const SLOW: usize = 3;
    const PIPELINED: usize = 4;
    let content = "\u{1F600}".repeat(10_000);
    let body = json!({"receiver": "bob", "content": content}).to_string();
    let requests = post_request("/api/send-message/", Some(&alice), &body, true).repeat(PIPELINED);
    let slow_since = Instant::now();
    let mut slow = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..SLOW {
        let sock = non_reading_client(addr);
        writers.push(write_in_background(&sock, requests.clone().into_bytes()));
        slow.push(sock);
    }
    // Every slow connection's first send is stored: its answer (and those of the sends
    // pipelined behind it) is being written now, into a socket nobody reads.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_messages(&s) < SLOW as i64 {
        assert!(
            Instant::now() < deadline,
            "the slow clients' sends were not stored within 10 s ({} stored)",
            count_messages(&s)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Meanwhile, and past the slow connections' response deadline, carol's sends to dave are
    // answered promptly and reach dave's open stream.
    let until = slow_since + RESPONSE_TIMEOUT + Duration::from_millis(1500);
    let (mut rounds, mut worst_send, mut worst_event) = (0, Duration::ZERO, Duration::ZERO);
    while rounds < 5 || Instant::now() < until {
        rounds += 1;
        // The send is not waited for before the event: each is checked on its own.
        let content = format!("carol-to-dave-{rounds}");
        let body = json!({"receiver": "dave", "content": content}).to_string();
        let req = post_request("/api/send-message/", Some(&carol), &body, false);
        let sent_at = Instant::now();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let event = dave_stream.text_within(&format!("\"{content}\""), Duration::from_secs(2));
        let reply = read_reply(&mut c, sent_at + Duration::from_secs(5));
        let answered = sent_at.elapsed();
        let behind = format!(
            "round {rounds}, {:?} after {SLOW} clients stopped reading the answers to their \
             sends",
            slow_since.elapsed()
        );
        assert!(
            event.is_some() && reply.is_some(),
            "{behind}: carol's message to dave reached dave's event stream: {event:?} (limit \
             2 s); carol's send was answered: {} (limit 5 s). The one thread that publishes \
             and answers every send after its commit is blocked writing into a socket \
             nobody reads",
            if reply.is_some() { "yes" } else { "no" }
        );
        let (r, event) = (reply.unwrap(), event.unwrap());
        assert_eq!(
            r.status,
            201,
            "{behind}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            answered < Duration::from_secs(2),
            "{behind}: carol's send took {answered:?}"
        );
        worst_send = worst_send.max(answered);
        worst_event = worst_event.max(event);
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{rounds} sends by carol while {SLOW} clients did not read: slowest answer \
         {worst_send:?}, slowest event {worst_event:?}"
    );

    // Past `response_timeout` the server gave up on each slow connection and closed it,
    // without writing the answers to the sends pipelined behind the stuck one.
    for (i, sock) in slow.iter_mut().enumerate() {
        let (bytes, end) = read_until_closed_by(sock, Instant::now() + Duration::from_secs(5));
        let answered = parse_replies(&bytes)
            .iter()
            .filter(|r| r.complete && r.status == 201)
            .count();
        assert_eq!(
            end,
            End::Closed,
            "slow connection {i} still open {:?} after it stopped reading (response_timeout \
             {RESPONSE_TIMEOUT:?}); {answered} whole answers arrived",
            slow_since.elapsed()
        );
        assert!(
            answered < PIPELINED,
            "slow connection {i}: all {PIPELINED} answers were written to a client that did \
             not read: the test did not fill the socket's buffers"
        );
    }
    for w in writers {
        w.join().unwrap();
    }
    drop(slow);
    assert!(health_within(addr, Duration::from_secs(2)).is_some());
}

// ---------------------------------------------------------------------------------------
// 2. A few slow connections cannot occupy every worker.

#[derive(Debug, Default)]
struct Trickled {
    /// The status the server answered, and when (from connecting).
    status: Option<u16>,
    answered_at: Option<Duration>,
    /// When the server closed the connection (EOF, reset, or a write refused).
    closed_at: Option<Duration>,
}

/// A client that announces a 1 MB body to `path`, sends a few bytes of it, then one byte a
/// second (waiting for each by reading, which also catches the answer and the close).
/// Reports on `tx` once it has an answer or was closed.
fn trickle_oversized_body(
    addr: SocketAddr,
    path: &'static str,
    tx: mpsc::Sender<()>,
    give_up: Duration,
) -> JoinHandle<Trickled> {
    std::thread::spawn(move || {
        let mut out = Trickled::default();
        let started = Instant::now();
        let mut tx = Some(tx);
        let mut s = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000\r\n\r\n{{\"username\": \""
        );
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        if s.write_all(head.as_bytes()).is_ok() {
            while started.elapsed() < give_up {
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                match s.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        if out.status.is_none() {
                            if let Some(r) = parse_replies(&buf).into_iter().next() {
                                out.status = Some(r.status);
                                out.answered_at = Some(started.elapsed());
                                if let Some(tx) = tx.take() {
                                    let _ = tx.send(());
                                }
                            }
                        }
                        continue;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
                if s.write_all(b"a").is_err() {
                    break;
                }
            }
        }
        if started.elapsed() < give_up {
            out.closed_at = Some(started.elapsed());
        }
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
        out
    })
}

#[test]
fn oversized_bodies_trickled_in_hold_no_worker_and_their_connections_end() {
    let s = support::start_with(|c| {
        c.threads = 2;
        c.request_timeout = Duration::from_secs(5);
        c.response_timeout = RESPONSE_TIMEOUT;
    });
    let addr = s.addr();
    s.user("erin");
    // Logins are served by the password threads (half the cores, at least one), every other
    // route by the `threads` workers: three tricklers for each, more than either has.
    const TRICKLERS: usize = 6;
    let (tx, rx) = mpsc::channel();
    let tricklers: Vec<_> = ["/api/login/", "/api/send-message/"]
        .iter()
        .cycle()
        .take(TRICKLERS)
        .map(|path| trickle_oversized_body(addr, path, tx.clone(), Duration::from_secs(15)))
        .collect();
    drop(tx);
    // Wait (with a deadline) until each has been answered or closed; on a server whose
    // workers drain the bodies, the last ones never are, and the checks below tell why.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut settled = 0;
    while settled < TRICKLERS {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(()) => settled += 1,
            Err(_) => break,
        }
    }

    // Another client is served promptly meanwhile: health checks and a real login.
    for i in 0..3 {
        let took = health_within(addr, Duration::from_secs(5)).unwrap_or_else(|| {
            panic!(
                "health check {i} not answered within 5 s while {TRICKLERS} clients trickle \
                 bodies over the limit ({settled} of them answered or closed so far) with 2 \
                 workers: each worker is held draining an unread body"
            )
        });
        assert!(
            took < Duration::from_secs(2),
            "health check {i} took {took:?}"
        );
    }
    let login = post_request(
        "/api/login/",
        None,
        r#"{"username": "erin", "password": "password123"}"#,
        false,
    );
    let (r, took) =
        timed_request(addr, login.as_bytes(), Duration::from_secs(5)).unwrap_or_else(|| {
            panic!(
                "a login not answered within 5 s while {TRICKLERS} clients trickle bodies over \
                 the limit ({settled} of them answered or closed so far): the password \
                 threads are held draining unread login bodies"
            )
        });
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["token"].is_string());
    assert!(took < Duration::from_secs(2), "login took {took:?}");

    // Each got its 413 (or was closed at once), and the server ended the connection soon
    // after, however the body kept trickling.
    for (i, t) in tricklers.into_iter().enumerate() {
        let out = t.join().unwrap();
        assert!(
            matches!(out.status, None | Some(413)),
            "trickler {i}: {out:?}"
        );
        let closed = out.closed_at.unwrap_or_else(|| {
            panic!(
                "trickler {i} was still open 15 s after it connected, a byte a second after \
                 its answer ({out:?}): the server keeps reading a body it refused"
            )
        });
        let since = out.answered_at.unwrap_or(Duration::ZERO);
        assert!(
            closed.saturating_sub(since) < Duration::from_secs(3),
            "trickler {i}: closed {:?} after its answer ({out:?})",
            closed.saturating_sub(since)
        );
    }
}

#[test]
fn slow_readers_of_big_pages_hold_no_worker() {
    let s = support::start_with(|c| {
        c.threads = 2;
        c.sync = SyncMode::Normal;
        c.response_timeout = RESPONSE_TIMEOUT;
        c.request_timeout = Duration::from_secs(10);
    });
    let addr = s.addr();
    let alice = s.user("alice");
    let bob = s.user("bob");
    // 500 messages of 500 four-byte characters: a page of about 1.1 MB.
    let content = "\u{1F600}".repeat(500);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (s, alice, content) = (&s, &alice, &content);
            scope.spawn(move || {
                for _ in 0..125 {
                    let r = s.send(alice, "bob", content);
                    assert_eq!(r.status, 201, "{}", r.text);
                }
            });
        }
    });
    const SLOW: usize = 4;
    let page = get_request(
        "/api/messages/?other_username=alice&limit=500",
        Some(&bob),
        true,
    );
    let slow_since = Instant::now();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut c = non_reading_client(addr);
            c.write_all(page.as_bytes()).unwrap();
            c
        })
        .collect();
    // And one that does read, but 2 KB every 100 ms (20 KB/s: a minute for the page), until
    // past the deadline, then as fast as it can: the deadline is on the whole response, not on
    // each write, so the page is cut short.
    let dribbler = {
        let mut c = non_reading_client(addr);
        c.write_all(page.as_bytes()).unwrap();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut got = 0;
            let mut chunk = [0u8; 2048];
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            while started.elapsed() < RESPONSE_TIMEOUT + Duration::from_millis(1500) {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => return (End::Closed, got),
                    Ok(n) => got += n,
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let (rest, end) = read_until_closed_by(&mut c, Instant::now() + Duration::from_secs(5));
            (end, got + rest.len())
        })
    };

    // Health checks are answered promptly, up to past the slow readers' response deadline.
    let until = slow_since + RESPONSE_TIMEOUT + Duration::from_millis(1500);
    let mut rounds = 0;
    while rounds < 5 || Instant::now() < until {
        rounds += 1;
        let took = health_within(addr, Duration::from_secs(5)).unwrap_or_else(|| {
            panic!(
                "health check {rounds} ({:?} after {SLOW} clients asked for a 1 MB page and \
                 did not read it) not answered within 5 s with 2 workers: the workers are \
                 blocked writing the pages",
                slow_since.elapsed()
            )
        });
        assert!(
            took < Duration::from_secs(2),
            "health check {rounds} took {took:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The server gave up on them: each page was cut short and its connection closed.
    for (i, c) in slow.iter_mut().enumerate() {
        let (bytes, end) = read_until_closed_by(c, Instant::now() + Duration::from_secs(5));
        assert_eq!(
            end,
            End::Closed,
            "slow reader {i} still open {:?} after asking (response_timeout {:?})",
            slow_since.elapsed(),
            RESPONSE_TIMEOUT
        );
        if let Some(r) = parse_replies(&bytes).first() {
            assert_eq!(r.status, 200);
            assert!(
                !r.complete,
                "slow reader {i}: the whole page was written: the test did not fill the \
                 socket's buffers"
            );
        }
    }
    let (end, got) = dribbler.join().unwrap();
    assert_eq!(
        end,
        End::Closed,
        "a client reading its page at 20 KB/s, then fast, still connected ({got} bytes read)"
    );
    assert!(
        got < 500_000,
        "a client reading its page at 20 KB/s for {:?}, then fast, got {got} bytes of about \
         1.1 MB: the response deadline ({RESPONSE_TIMEOUT:?}) did not cut it short",
        RESPONSE_TIMEOUT + Duration::from_millis(1500)
    );
}

// ---------------------------------------------------------------------------------------
// 9. Ambiguous body framing and folded header lines are refused; nothing smuggled in a body
//    is ever served.

#[test]
fn ambiguous_framing_and_folded_headers_are_one_400_and_a_close() {
    let s = support::start_with(|c| {
        c.request_timeout = Duration::from_secs(10);
    });
    let addr = s.addr();
    let smuggled = "GET /api/health/ HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let chunked_end = format!("0\r\n\r\n{smuggled}");
    let cl_te = format!("Content-Length: {}", chunked_end.len());
    let two_lengths = format!("Content-Length: {}", smuggled.len());
    let plus_body = format!("abcde{smuggled}");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "Content-Length with Transfer-Encoding",
            vec![&cl_te, "Transfer-Encoding: chunked"],
            &chunked_end,
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            vec!["Transfer-Encoding: gzip, chunked"],
            &chunked_end,
        ),
        (
            "Transfer-Encoding: identity",
            vec!["Transfer-Encoding: identity"],
            &chunked_end,
        ),
        (
            "two equal Content-Lengths",
            vec!["Content-Length: 0", "Content-Length: 0"],
            smuggled,
        ),
        (
            "two different Content-Lengths",
            vec!["Content-Length: 0", &two_lengths],
            smuggled,
        ),
        ("Content-Length: +5", vec!["Content-Length: +5"], &plus_body),
        ("Content-Length: 5 5", vec!["Content-Length: 5 5"], smuggled),
        (
            "a header folded with a space",
            vec!["Content-Length: 0", "X-Note: a", " X-Folded: b"],
            smuggled,
        ),
        (
            "a Content-Length folded with a tab",
            vec!["X-Note: a", "\tContent-Length: 0"],
            smuggled,
        ),
    ];
    for (what, headers, body) in cases {
        let mut req = String::from(
            "POST /api/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n",
        );
        for h in &headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        // Keep-alive, and no half-close: the server must end the connection by itself.
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let (bytes, end) = read_until_closed_by(&mut c, Instant::now() + Duration::from_secs(3));
        let replies = parse_replies(&bytes);
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [400],
            "{what}: expected exactly one 400; got {statuses:?} (a second answer is the \
             request smuggled in the body):\n{}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(
            end,
            End::Closed,
            "{what}: the connection stayed open after the 400"
        );
        assert!(
            health_within(addr, Duration::from_secs(2)).is_some(),
            "after {what}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 13. Connections per client address, and the first-byte timeout.

/// Opens a connection and asks for the health check on it, keeping it open: the status.
fn open_and_check(addr: SocketAddr) -> (TcpStream, Option<u16>) {
    let mut c = TcpStream::connect(addr).unwrap();
    let _ = c.write_all(get_request("/api/health/", None, true).as_bytes());
    let status = read_reply(&mut c, Instant::now() + Duration::from_secs(5)).map(|r| r.status);
    (c, status)
}

#[test]
fn connections_are_capped_per_address_except_for_trusted_proxies() {
    let s = support::start_with(|c| {
        c.connections_per_address = 8;
        c.first_byte_timeout = Duration::from_secs(30);
        c.request_timeout = Duration::from_secs(30);
    });
    let addr = s.addr();
    // Eight idle connections are in.
    let mut idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // The ninth is refused at once, without sending a byte: 429, Retry-After, closed.
    let mut ninth = TcpStream::connect(addr).unwrap();
    let (bytes, end) = read_until_closed_by(&mut ninth, Instant::now() + Duration::from_secs(3));
    let replies = parse_replies(&bytes);
    let refusal = replies.first().unwrap_or_else(|| {
        panic!(
            "the 9th connection from one address (cap 8) got no answer within 3 s and is \
             {end:?}: there is no per-address cap"
        )
    });
    assert_eq!(refusal.status, 429, "{}", refusal.head);
    let retry = refusal.header("retry-after").expect("Retry-After");
    assert!(retry.parse::<u64>().is_ok(), "Retry-After: {retry}");
    assert!(refusal.json()["error"].is_string(), "{:?}", refusal.json());
    assert_eq!(end, End::Closed, "the refused connection is closed");
    // The eight were really admitted: each is served.
    for (i, c) in idle.iter_mut().enumerate() {
        c.write_all(get_request("/api/health/", None, true).as_bytes())
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        while !parse_replies(&buf).iter().any(|r| r.complete) {
            assert!(Instant::now() < deadline, "idle connection {i} not served");
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            match c.read(&mut chunk) {
                Ok(0) => panic!("idle connection {i} was closed"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        assert_eq!(parse_replies(&buf)[0].status, 200, "idle connection {i}");
    }

    // Closing three lets three new ones in (as soon as the server has noticed).
    idle.truncate(5);
    let deadline = Instant::now() + Duration::from_secs(5);
    while idle.len() < 8 {
        let (c, status) = open_and_check(addr);
        match status {
            Some(200) => idle.push(c),
            Some(429) => {
                assert!(
                    Instant::now() < deadline,
                    "5 s after three connections were closed, a new one is still refused \
                     ({} open)",
                    idle.len()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("a new connection got {other:?}"),
        }
    }
    let (_, status) = open_and_check(addr);
    assert_eq!(
        status,
        Some(429),
        "eight are open again: the next is refused"
    );
    drop(idle);

    // A trusted proxy's own address is exempt: every user arrives through it.
    let proxied = support::start_with(|c| {
        c.connections_per_address = 2;
        c.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    });
    let open: Vec<(TcpStream, Option<u16>)> =
        (0..12).map(|_| open_and_check(proxied.addr())).collect();
    let statuses: Vec<Option<u16>> = open.iter().map(|(_, st)| *st).collect();
    assert!(
        statuses.iter().all(|st| *st == Some(200)),
        "12 connections from a trusted proxy (cap 2 per address): {statuses:?}"
    );
}

#[test]
fn a_silent_connection_is_closed_after_the_first_byte_timeout_a_started_one_is_not() {
    let s = support::start_with(|c| {
        c.first_byte_timeout = Duration::from_secs(1);
        c.request_timeout = Duration::from_secs(5);
    });
    let addr = s.addr();
    let closed_after = |first: &'static [u8]| {
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(first).unwrap();
            let (_, end) = read_until_closed_by(&mut c, started + Duration::from_secs(15));
            (end == End::Closed).then(|| started.elapsed())
        })
    };
    let silent = closed_after(b"");
    let started = closed_after(b"GET /api/hea");
    let silent = silent
        .join()
        .unwrap()
        .expect("silent connection closed within 15 s");
    let started = started
        .join()
        .unwrap()
        .expect("started connection closed within 15 s");
    eprintln!("silent connection closed after {silent:?}, half a request line after {started:?}");
    assert!(
        silent >= Duration::from_millis(500) && silent < Duration::from_secs(3),
        "a connection that sent nothing was closed after {silent:?} (first_byte_timeout 1 s, \
         request_timeout 5 s)"
    );
    assert!(
        started >= Duration::from_millis(3500) && started < Duration::from_secs(10),
        "a connection with half a request line was closed after {started:?} \
         (request_timeout 5 s): the first-byte timeout must not apply once a byte came"
    );
    assert!(
        started > silent + Duration::from_secs(2),
        "still open when the silent one was closed"
    );
}

// ---------------------------------------------------------------------------------------
// Found in review: other ways a client could hold a worker, a connection slot, or memory.

/// Upstream tiny_http handed the raw socket to any request saying `Connection: upgrade`, so
/// the worker reading its body read the client's socket with no deadline.
#[test]
fn an_upgrade_request_holds_no_worker() {
    let s = support::start_with(|c| {
        c.threads = 2;
        c.request_timeout = Duration::from_secs(30);
    });
    let addr = s.addr();
    let upgrade = "GET /api/health/ HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
                   Upgrade: websocket\r\n\r\n";
    let mut clients: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(upgrade.as_bytes()).unwrap();
            c
        })
        .collect();
    // They trickle on, as if sending a body.
    for c in &mut clients {
        let _ = c.write_all(b"x");
    }
    for round in 0..5 {
        let took = health_within(addr, Duration::from_secs(5)).unwrap_or_else(|| {
            panic!("health check {round} not answered within 5 s beside 4 upgrade requests")
        });
        assert!(took < Duration::from_secs(2), "health check took {took:?}");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = read_reply(c, Instant::now() + Duration::from_secs(3))
            .unwrap_or_else(|| panic!("upgrade request {i} not answered"));
        assert_eq!(r.status, 200, "no upgrade: an ordinary answer");
    }
}

/// A request line of HTTP/2.0 was answered with a second writer while the request held the
/// first: the connection's thread waited for good and its connection slot was never freed.
#[test]
fn a_request_of_an_unsupported_version_frees_its_connection() {
    let s = support::start_with(|c| c.connections_per_address = 3);
    let addr = s.addr();
    for i in 0..3 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/2.0\r\n\r\n").unwrap();
        let (bytes, end) = read_until_closed_by(&mut c, Instant::now() + Duration::from_secs(3));
        assert_eq!(
            end,
            End::Closed,
            "HTTP/2.0 request {i}: connection left open"
        );
        let replies = parse_replies(&bytes);
        assert_eq!(replies.first().map(|r| r.status), Some(400), "request {i}");
    }
    // Their slots are free again: a fourth, fifth and sixth connection are served.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut served = 0;
    while served < 3 {
        let (_c, status) = open_and_check(addr);
        match status {
            Some(200) => served += 1,
            other => assert!(
                Instant::now() < deadline,
                "connections after three HTTP/2.0 requests still refused: {other:?}"
            ),
        }
    }
}

/// Workers no longer wait for slow readers, so without a bound the large responses waiting
/// for them could fill the memory. Past `max_unsent_bytes` a large one is `503` instead.
#[test]
fn large_responses_waiting_for_slow_readers_are_bounded() {
    let s = support::start_with(|c| {
        c.sync = SyncMode::Normal;
        c.response_timeout = Duration::from_secs(3);
        c.max_unsent_bytes = 2_500_000;
    });
    let addr = s.addr();
    let alice = s.user("alice");
    let bob = s.user("bob");
    // 500 messages of 500 four-byte characters: a page of about 1.1 MB.
    let content = "\u{1F600}".repeat(500);
    for _ in 0..500 {
        assert_eq!(s.send(&alice, "bob", &content).status, 201);
    }
    let page = get_request(
        "/api/messages/?other_username=alice&limit=500",
        Some(&bob),
        true,
    );
    // Two pages fit in the budget; the third and fourth are refused while those wait.
    let mut slow: Vec<TcpStream> = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let mut c = non_reading_client(addr);
        c.write_all(page.as_bytes()).unwrap();
        // Each answer's head arrives (the receive buffer takes a little).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        let deadline = Instant::now() + Duration::from_secs(3);
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            if let Ok(n) = c.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        statuses.push(head.split(' ').nth(1).unwrap_or("").to_string());
        slow.push(c);
    }
    assert_eq!(statuses, ["200", "200", "503", "503"], "{statuses:?}");
    // Small answers always go, and once the slow readers' deadline has passed, a page does.
    assert!(health_within(addr, Duration::from_secs(2)).is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(page.as_bytes()).unwrap();
        let r = read_reply(&mut c, Instant::now() + Duration::from_secs(5)).expect("a page");
        if r.status == 200 {
            assert_eq!(r.json()["count"], 500);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the deadline",
            r.status
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One IPv6 host may use any address of its /64: the per-client limits count the /64.
#[test]
fn an_ipv6_client_is_its_64() {
    let s = support::start_with(|c| {
        c.signups_per_hour = 2;
        c.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    });
    let signup = |name: &str, from: &str| {
        let body = json!({"username": name, "password": "a-good-password"}).to_string();
        s.raw(
            "POST",
            "/api/signup/",
            &[
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", from),
            ],
            body.as_bytes(),
        )
    };
    assert_eq!(signup("v6a", "2001:db8:1:2::1").status, 201);
    assert_eq!(signup("v6b", "2001:db8:1:2::2").status, 201);
    let third = signup("v6c", "2001:db8:1:2:ffff:ffff:ffff:3");
    assert_eq!(third.status, 429, "{}", third.text);
    assert!(third.header("Retry-After").is_some());
    assert_eq!(signup("v6d", "2001:db8:1:3::1").status, 201, "another /64");
}
