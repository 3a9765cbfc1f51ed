//! Hostile clients over raw TCP against the in-process server: invalid UTF-8 and NUL bytes in
//! bodies, paths and queries; deeply nested JSON; huge numbers; wrong types; oversized
//! usernames; header floods, huge header lines and request lines; percent-encoding tricks;
//! lying or absurd Content-Lengths; chunked bodies over the limit or malformed; pipelined
//! requests; and slow clients (idle connections, heads and bodies trickled a byte at a time,
//! abandoned event streams). Each hostile request must get a 4xx or a closed connection —
//! never a 5xx — and the server must keep serving: a health check follows every attack.
use crate::support;
use crate::support::raw::{
    chunked, connect, exchange, get_raw, parse_replies, post_raw, read_until_closed, send, Reply,
};
use crate::support::TestServer;
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Assertions.

thread_local! {
    /// The server under test in this thread, health-checked after every hostile request.
    static SERVER: std::cell::Cell<Option<SocketAddr>> = const { std::cell::Cell::new(None) };
}

fn under_test(s: &TestServer) {
    SERVER.with(|c| c.set(Some(s.addr())));
}

fn check_alive(what: &str) {
    if let Some(addr) = SERVER.with(|c| c.get()) {
        healthy_at(addr, what);
    }
}

/// A 4xx with a JSON `{"error"}` body when the API answered, or a closed connection.
fn assert_rejected(what: &str, reply: Option<Reply>) {
    if let Some(r) = reply {
        assert!(
            (400..500).contains(&r.status),
            "{what}: expected a 4xx or a closed connection, got {}\n{}\n{}",
            r.status,
            r.head,
            r.text()
        );
    }
    check_alive(what);
}

/// An API 4xx that the router answered: JSON `{"error": string}`.
fn assert_json_4xx(what: &str, reply: Option<Reply>, expected: &[u16]) {
    let r = reply.unwrap_or_else(|| panic!("{what}: the connection closed without an answer"));
    assert!(
        expected.contains(&r.status),
        "{what}: expected one of {expected:?}, got {}\n{}\n{}",
        r.status,
        r.head,
        r.text()
    );
    assert!(
        r.json()["error"].is_string(),
        "{what}: error body must be {{\"error\": string}}, got {}",
        r.text()
    );
    check_alive(what);
}

fn assert_no_5xx(what: &str, reply: &Option<Reply>) {
    if let Some(r) = reply {
        assert!(
            r.status < 500,
            "{what}: server error {}\n{}\n{}",
            r.status,
            r.head,
            r.text()
        );
    }
    check_alive(what);
}

/// The server still answers a health check, promptly.
fn healthy_at(addr: SocketAddr, after: &str) {
    let started = Instant::now();
    let r = get_raw(addr, b"/api/health/", None)
        .unwrap_or_else(|| panic!("after {after}: health check got no answer"));
    assert_eq!(r.status, 200, "after {after}: health check: {}", r.text());
    assert_eq!(r.json()["status"], "healthy", "after {after}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "after {after}: health check took {:?}",
        started.elapsed()
    );
}

fn healthy(s: &TestServer, after: &str) {
    healthy_at(s.addr(), after);
}

// ---------------------------------------------------------------------------------------
// Bodies.

#[test]
fn invalid_utf8_and_nul_bytes_in_bodies() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    s.user("bob");
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "invalid UTF-8",
            b"{\"username\":\"\xff\xfe\xfd\",\"password\":\"password123\"}".to_vec(),
        ),
        (
            "lone continuation bytes",
            b"{\"username\":\"a\x80\x80\",\"password\":\"x\"}".to_vec(),
        ),
        (
            "overlong UTF-8",
            b"{\"username\":\"\xc0\xaf\",\"password\":\"password123\"}".to_vec(),
        ),
        (
            "UTF-16 surrogate escape",
            br#"{"username":"\ud800","password":"password123"}"#.to_vec(),
        ),
        (
            "raw NUL",
            b"{\"username\":\"a\x00b\",\"password\":\"password123\"}".to_vec(),
        ),
        (
            "escaped NUL",
            br#"{"username":"a\u0000b","password":"password123"}"#.to_vec(),
        ),
        ("NUL only", b"\x00\x00\x00\x00".to_vec()),
        (
            "BOM then JSON",
            b"\xef\xbb\xbf{\"username\":\"x\",\"password\":\"password123\"}".to_vec(),
        ),
    ];
    for (what, body) in &bodies {
        for path in ["/api/signup/", "/api/login/"] {
            let r = post_raw(addr, path, None, body);
            assert_json_4xx(&format!("{what} to {path}"), r, &[400, 401]);
        }
        let r = post_raw(addr, "/api/send-message/", Some(&token), body);
        assert_json_4xx(&format!("{what} to send-message"), r, &[400]);
    }
    healthy(&s, "invalid UTF-8 bodies");

    // NUL inside a message's content is either refused or stored and read back exactly.
    let r = post_raw(
        addr,
        "/api/send-message/",
        Some(&token),
        br#"{"receiver":"bob","content":"before\u0000after"}"#,
    )
    .expect("answer");
    assert_no_5xx(
        "NUL in content",
        &Some(Reply {
            status: r.status,
            head: r.head.clone(),
            body: r.body.clone(),
            complete: r.complete,
        }),
    );
    if r.status == 201 {
        let page = s.get("/api/messages/?other_username=bob", Some(&token));
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(page.body["messages"][0]["content"], "before\u{0}after");
    } else {
        assert_eq!(r.status, 400, "{}", r.text());
    }
    healthy(&s, "NUL in content");
}

#[test]
fn deeply_nested_and_malformed_json() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    // Within the 64 KiB limit: the parser's recursion limit must refuse it, not the stack.
    let nested_60k = "[".repeat(60_000);
    let objects_30k = "{\"a\":".repeat(12_000);
    // Beyond the limit: 413 before any parsing.
    let nested_100k = "[".repeat(100_000);
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("60k [", nested_60k.clone().into_bytes(), &[400]),
        (
            "60k [ closed",
            format!("{nested_60k}{}", "]".repeat(60_000 - 1)).into_bytes()[..65_000].to_vec(),
            &[400, 413],
        ),
        ("12k nested objects", objects_30k.into_bytes(), &[400]),
        ("100k [", nested_100k.into_bytes(), &[413]),
        (
            "truncated",
            br#"{"receiver":"bob","content":"#.to_vec(),
            &[400],
        ),
        (
            "trailing garbage",
            br#"{"receiver":"bob","content":"x"} {}"#.to_vec(),
            &[400],
        ),
        ("not an object: array", b"[]".to_vec(), &[400]),
        ("not an object: string", br#""hello""#.to_vec(), &[400]),
        ("not an object: null", b"null".to_vec(), &[400]),
        ("not an object: number", b"1e999999".to_vec(), &[400]),
        ("whitespace only", b"   \r\n\t ".to_vec(), &[400]),
        (
            "duplicate keys",
            br#"{"receiver":"bob","receiver":"bob","content":"x"}"#.to_vec(),
            &[400, 404],
        ),
        ("single quotes", b"{'receiver':'bob'}".to_vec(), &[400]),
        (
            "comments",
            b"{/* hi */\"receiver\":\"bob\"}".to_vec(),
            &[400],
        ),
    ];
    for (what, body, expected) in cases {
        for path in ["/api/send-message/", "/api/mark-as-read/", "/api/typing/"] {
            let r = post_raw(addr, path, Some(&token), &body);
            assert_json_4xx(&format!("{what} to {path}"), r, expected);
        }
        let r = post_raw(addr, "/api/signup/", None, &body);
        assert_json_4xx(&format!("{what} to signup"), r, expected);
    }
    healthy(&s, "nested JSON");
}

#[test]
fn huge_numbers_and_wrong_types() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    s.user("bob");
    let bodies: &[&str] = &[
        r#"{"conversation_id": 1e999999}"#,
        r#"{"conversation_id": -1e999999}"#,
        r#"{"conversation_id": 99999999999999999999999}"#,
        r#"{"conversation_id": -99999999999999999999999}"#,
        r#"{"conversation_id": 9223372036854775808}"#,
        r#"{"conversation_id": 1.5}"#,
        r#"{"conversation_id": "1"}"#,
        r#"{"conversation_id": [1]}"#,
        r#"{"conversation_id": {"$gt": 0}}"#,
        r#"{"conversation_id": true}"#,
    ];
    for body in bodies {
        for path in ["/api/mark-as-read/", "/api/typing/"] {
            let r = post_raw(addr, path, Some(&token), body.as_bytes());
            assert_json_4xx(&format!("{body} to {path}"), r, &[400]);
        }
    }
    for body in [
        r#"{"conversation_id": 1, "username": 5}"#,
        r#"{"conversation_id": 1, "username": ["alice"]}"#,
        r#"{"other_username": 5}"#,
    ] {
        let path = if body.contains("other_username") {
            "/api/typing/"
        } else {
            "/api/mark-as-read/"
        };
        let r = post_raw(addr, path, Some(&token), body.as_bytes());
        assert_json_4xx(&format!("{body} to {path}"), r, &[400]);
    }
    // The extremes that do parse as i64 are simply not found.
    for id in [i64::MAX, i64::MIN, 0, -1] {
        let body = json!({ "conversation_id": id }).to_string();
        let r = post_raw(addr, "/api/mark-as-read/", Some(&token), body.as_bytes());
        assert_json_4xx(&format!("conversation_id {id}"), r, &[404]);
    }
    let wrong_types: &[(&str, &str)] = &[
        ("/api/send-message/", r#"{"receiver": 5, "content": "x"}"#),
        (
            "/api/send-message/",
            r#"{"receiver": "bob", "content": 12}"#,
        ),
        (
            "/api/send-message/",
            r#"{"receiver": "bob", "content": ["x"]}"#,
        ),
        (
            "/api/send-message/",
            r#"{"receiver": "bob", "content": {"x": 1}}"#,
        ),
        (
            "/api/send-message/",
            r#"{"receiver": "bob", "content": "x", "sender": false}"#,
        ),
        (
            "/api/send-message/",
            r#"{"receiver": "bob", "content": 1e999999}"#,
        ),
        (
            "/api/signup/",
            r#"{"username": 1, "password": "password123"}"#,
        ),
        (
            "/api/signup/",
            r#"{"username": "zed", "password": 12345678}"#,
        ),
        (
            "/api/signup/",
            r#"{"username": "zed", "password": "password123", "email": 7}"#,
        ),
        ("/api/login/", r#"{"username": null, "password": null}"#),
        (
            "/api/login/",
            r#"{"username": ["alice"], "password": "password123"}"#,
        ),
        ("/api/make-admin/", r#"{"target_username": 1}"#),
        ("/api/verify-admin/", r#"{"username": {}}"#),
        ("/api/logout/", r#"{"username": 1}"#),
    ];
    for (path, body) in wrong_types {
        let r = post_raw(addr, path, Some(&token), body.as_bytes());
        assert_json_4xx(&format!("{body} to {path}"), r, &[400]);
    }
    // Huge numbers in queries and in Last-Event-ID.
    for target in [
        "/api/messages/?other_username=bob&before_id=99999999999999999999999",
        "/api/messages/?other_username=bob&limit=1e999999",
        "/api/messages/?other_username=bob&limit=-99999999999999999999",
        "/api/messages/?other_username=bob&limit=0",
        "/api/messages/?other_username=bob&before_id=0",
        "/api/users/?limit=99999999999999999999999",
        "/api/users/?offset=-1",
        "/api/users/?limit=abc",
        "/api/events/?last_event_id=99999999999999999999999",
        "/api/events/?last_event_id=1e3",
    ] {
        let r = get_raw(addr, target.as_bytes(), Some(&token));
        assert_json_4xx(target, r, &[400]);
    }
    for target in [
        "/api/users/?offset=9223372036854775807",
        "/api/messages/?other_username=bob&before_id=9223372036854775807",
    ] {
        let r = get_raw(addr, target.as_bytes(), Some(&token)).expect("answer");
        assert_eq!(r.status, 200, "{target}: {}", r.text());
    }
    let r = send(
        addr,
        "GET",
        b"/api/events/",
        &[
            &format!("Authorization: Bearer {token}"),
            "Last-Event-ID: 99999999999999999999999",
        ],
        b"",
    );
    assert_json_4xx("huge Last-Event-ID", r, &[400]);
    healthy(&s, "huge numbers");
}

#[test]
fn oversized_usernames_and_tokens() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    let long = "a".repeat(10_000);
    let r = post_raw(
        addr,
        "/api/signup/",
        None,
        json!({"username": long, "password": "password123"})
            .to_string()
            .as_bytes(),
    );
    assert_json_4xx("10k-char username signup", r, &[400]);
    let r = post_raw(
        addr,
        "/api/login/",
        None,
        json!({"username": long, "password": "password123"})
            .to_string()
            .as_bytes(),
    );
    assert_json_4xx("10k-char username login", r, &[401]);
    let r = post_raw(
        addr,
        "/api/send-message/",
        Some(&token),
        json!({"receiver": long, "content": "hi"})
            .to_string()
            .as_bytes(),
    );
    assert_json_4xx("10k-char receiver", r, &[404]);
    let target = format!("/api/messages/?other_username={long}");
    assert_json_4xx(
        "10k-char other_username",
        get_raw(addr, target.as_bytes(), Some(&token)),
        &[404],
    );
    let target = format!("/api/users/?search={long}");
    let r = get_raw(addr, target.as_bytes(), Some(&token)).expect("answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["count"], 0);
    // A 10k-character token, as bearer and as cookie.
    let r = get_raw(addr, b"/api/conversations/", Some(&long));
    assert_json_4xx("10k-char bearer token", r, &[401]);
    let cookie = format!("Cookie: whitebeat_session={long}");
    let r = send(addr, "GET", b"/api/conversations/", &[&cookie], b"");
    assert_json_4xx("10k-char cookie", r, &[401]);
    healthy(&s, "oversized usernames");
}

// ---------------------------------------------------------------------------------------
// Paths and queries.

#[test]
fn invalid_utf8_and_nul_in_paths_and_queries() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    let targets: &[&[u8]] = &[
        b"/api/users/%ff",
        b"/api/%c0%af",
        b"/api/health/%00",
        b"/api/%00/health/",
        b"/%ff%fe",
        b"/index.html%00.js",
        b"/api/users/?search=%ff",
        b"/api/users/?search=%00",
        b"/api/users/?%ff=1",
        b"/api/users/?search=%c0%af",
        b"/api/messages/?other_username=bob%00",
    ];
    for t in targets {
        let what = String::from_utf8_lossy(t).into_owned();
        let r = get_raw(addr, t, Some(&token));
        assert_json_4xx(&what, r, &[400]);
    }
    // Raw (not percent-encoded) bytes that HTTP does not allow in a request line.
    let raw: &[&[u8]] = &[
        b"/api/health/\xff",
        b"/\xc3\xa9",
        b"/api/users/?q=\xff",
        b"/api/hea\x00lth/",
    ];
    for t in raw {
        let what = format!("raw bytes {:?}", String::from_utf8_lossy(t));
        assert_rejected(&what, get_raw(addr, t, Some(&token)));
    }
    healthy(&s, "bad paths");
}

#[test]
fn percent_encoding_tricks_do_not_escape_or_confuse_routing() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    // Whatever they map to, none of these may serve a file from outside the embedded UI,
    // reach another route's data, or fail with a 5xx.
    let targets: &[&str] = &[
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/assets/..%2f..%2fCargo.toml",
        "/%252e%252e/%252e%252e/etc/passwd",
        "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/..%c0%af..%c0%afetc/passwd",
        "/....//....//etc/passwd",
        "/api/%2e%2e/api/health/",
        "/api/users/%2e%2e/admin/stats/",
        "/api/admin%2fstats/",
        "/api%2fadmin%2fstats",
        "/api/admin/stats/%2e",
        "/api/ADMIN/STATS/",
        "/api//admin//stats/",
        "/api/admin/./stats/",
        "/api/admin/stats/..;/",
        "/api/users/?search=%2525",
        "/api/users/?search=a%2Bb&search=%26",
        "/api/users/?search=%",
        "/api/users/?search=%zz",
        "/api/users/?&&&==&=",
        "/api/messages/?other_username=%2e%2e%2falice",
    ];
    for t in targets {
        let r = get_raw(addr, t.as_bytes(), Some(&token));
        assert_no_5xx(t, &r);
        if let Some(r) = r {
            let text = r.text();
            assert!(!text.contains("root:x:0:0"), "{t} served /etc/passwd");
            assert!(!text.contains("[package]"), "{t} served Cargo.toml");
            // Only a route under /api/admin/ may produce the admin figures, and never for
            // an ordinary user.
            assert!(
                r.json().get("total_messages").is_none(),
                "{t} leaked admin stats"
            );
        }
    }
    // Percent-encoded separators decode to the same route, and stay behind auth.
    let r = get_raw(addr, b"/api/admin%2fstats/", Some(&token)).expect("answer");
    assert!(
        matches!(r.status, 403 | 404),
        "admin%2fstats as a user: {}",
        r.status
    );
    healthy(&s, "percent-encoding tricks");
}

// ---------------------------------------------------------------------------------------
// Heads.

#[test]
fn header_floods_and_huge_lines() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    // 10,000 headers.
    let mut req = b"GET /api/health/ HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..10_000 {
        req.extend_from_slice(format!("X-Flood-{i}: {i}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert_rejected("10,000 headers", exchange(addr, &req).into_iter().next());
    healthy(&s, "10,000 headers");

    // One 1 MB header.
    let mut req = b"GET /api/health/ HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 1 << 20));
    req.extend_from_slice(b"\r\n\r\n");
    assert_rejected("1 MB header", exchange(addr, &req).into_iter().next());
    healthy(&s, "1 MB header");

    // A 1 MB cookie and a 1 MB authorization header.
    for name in ["Cookie: whitebeat_session=", "Authorization: Bearer "] {
        let mut req = format!("GET /api/conversations/ HTTP/1.1\r\nHost: x\r\n{name}").into_bytes();
        req.extend(std::iter::repeat_n(b'b', 1 << 20));
        req.extend_from_slice(b"\r\n\r\n");
        assert_rejected(name, exchange(addr, &req).into_iter().next());
    }
    healthy(&s, "1 MB cookie");

    // A 100 KB request line, as a path and as a query.
    for prefix in ["/api/health/", "/api/users/?search="] {
        let mut req = format!("GET {prefix}").into_bytes();
        req.extend(std::iter::repeat_n(b'a', 100 * 1024));
        req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_rejected(
            "100 KB request line",
            exchange(addr, &req).into_iter().next(),
        );
    }
    healthy(&s, "100 KB request line");

    // Many headers each under the limit but over the total.
    let mut req = b"GET /api/health/ HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..90 {
        req.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(2_000)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert_rejected("180 KB of headers", exchange(addr, &req).into_iter().next());

    // Garbage heads.
    let garbage: &[&[u8]] = &[
        b"\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /api/health/\r\n\r\n",
        b"GET /api/health/ FOO/1.1\r\n\r\n",
        b"GET /api/health/ HTTP/1.1\r\nNoColon\r\n\r\n",
        b"GET /api/health/ HTTP/1.1\r\nX-Bin: \xff\xfe\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for g in garbage {
        let what = format!("garbage head {:?}", String::from_utf8_lossy(g));
        let r = exchange(addr, g).into_iter().next();
        assert_rejected(&what, r);
    }
    healthy(&s, "garbage heads");
}

/// Field syntax that HTTP requires a server to refuse. RFC 9112 section 5.1: "A server MUST
/// reject, with a response status code of 400 (Bad Request), any received request message
/// that contains whitespace between a header field name and colon" (accepting
/// `Content-Length : 5` is a request-smuggling hazard behind a proxy that ignores it).
/// RFC 9110 section 5.5: a recipient of CR, LF or NUL within a field value "MUST either
/// reject the message or replace each of those characters with SP". An empty field name is
/// not a token (RFC 9110 section 5.1).
#[test]
fn malformed_header_fields_are_rejected() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let mut accepted = Vec::new();
    for head in [
        &b"GET /api/health/ HTTP/1.1\r\nHost : x\r\n\r\n"[..],
        b"POST /api/health/ HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}",
        b"GET /api/health/ HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n",
        b"GET /api/health/ HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
        b"GET /api/health/ HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    ] {
        let what = format!("{:?}", String::from_utf8_lossy(head));
        let r = exchange(addr, head).into_iter().next();
        assert_no_5xx(&what, &r);
        if let Some(r) = r.filter(|r| !(400..500).contains(&r.status)) {
            accepted.push(format!("{what} -> {}", r.status));
        }
    }
    healthy(&s, "malformed header fields");
    assert!(
        accepted.is_empty(),
        "requests with invalid header fields were served instead of refused with 400: {accepted:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Content-Length and chunked bodies.

#[test]
fn lying_and_absurd_content_lengths() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");

    // Content-Length larger than the body, then the client closes.
    let mut stream = connect(addr);
    let _ = stream.write_all(
        b"POST /api/signup/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 500\r\n\r\n{\"username\":\"half\"",
    );
    let _ = stream.shutdown(Shutdown::Write);
    let r = parse_replies(&read_until_closed(&mut stream))
        .into_iter()
        .next();
    assert_rejected("Content-Length larger than the body", r);
    healthy(&s, "short body");
    let r = s.login("half", "password123");
    assert_eq!(
        r.status, 401,
        "a truncated sign-up must not create the user"
    );

    // An absurd Content-Length: refused at once, nothing allocated for it.
    for path in [
        "/api/signup/",
        "/api/health/",
        "/api/send-message/",
        "/index.html",
        "/",
    ] {
        let mut stream = connect(addr);
        let _ = stream.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Authorization: Bearer {token}\r\nContent-Length: 99999999999999\r\n\r\n{{}}"
            )
            .as_bytes(),
        );
        let started = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        let r = parse_replies(&buf[..n]).into_iter().next();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path}: answer took too long"
        );
        assert_no_5xx(&format!("Content-Length 99999999999999 on {path}"), &r);
        if path.starts_with("/api/") {
            let r = r.unwrap_or_else(|| panic!("{path}: no answer to a huge Content-Length"));
            assert_eq!(r.status, 413, "{path}: {}", r.text());
        }
        drop(stream);
        healthy(&s, "Content-Length 99999999999999");
    }

    // Lengths that do not parse, negative, several, or with a sign.
    for cl in [
        "Content-Length: -1",
        "Content-Length: abc",
        "Content-Length: 18446744073709551616",
        "Content-Length: 1e3",
        "Content-Length: +5",
        "Content-Length: 5, 5",
    ] {
        let r = send(
            addr,
            "POST",
            b"/api/signup/",
            &["Content-Type: application/json", cl],
            b"{\"username\":\"cl\",\"password\":\"password123\"}",
        );
        assert_no_5xx(cl, &r);
    }
    healthy(&s, "bad Content-Length values");
    assert_eq!(
        s.login("cl", "password123").status,
        401,
        "a body framed by a bad Content-Length must not be acted on"
    );
}

#[test]
fn chunked_bodies_over_the_limit_or_malformed() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    s.user("bob");
    let auth = format!("Authorization: Bearer {token}");
    let headers = [
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
        auth.as_str(),
    ];
    // 200 KB of content, chunked: 413, and nothing stored.
    let big = json!({"receiver": "bob", "content": "x".repeat(200_000)}).to_string();
    let r = send(
        addr,
        "POST",
        b"/api/send-message/",
        &headers,
        &chunked(big.as_bytes(), 4096),
    );
    assert_json_4xx("200 KB chunked", r, &[413]);
    // Just over the limit, in one chunk and in many tiny ones.
    let over = json!({"receiver": "bob", "content": "y".repeat(65_536)}).to_string();
    for size in [over.len(), 7] {
        let r = send(
            addr,
            "POST",
            b"/api/send-message/",
            &headers,
            &chunked(over.as_bytes(), size),
        );
        assert_json_4xx(
            &format!("chunked over the limit in {size}-byte chunks"),
            r,
            &[413],
        );
    }
    // A chunk announcing an absurd size.
    let r = send(
        addr,
        "POST",
        b"/api/send-message/",
        &headers,
        b"fffffffffffffff\r\nabc",
    );
    assert_rejected("chunk of 2^60 bytes", r);
    let r = send(
        addr,
        "POST",
        b"/api/send-message/",
        &headers,
        b"ffffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    );
    assert_rejected("chunk size overflowing u64", r);
    // Malformed chunk framing.
    for body in [
        &b"zz\r\n{}\r\n0\r\n\r\n"[..],
        b"2\r\n{}",
        b"-1\r\n\r\n",
        b"2\r\n{}XX0\r\n\r\n",
    ] {
        let what = format!("malformed chunked {:?}", String::from_utf8_lossy(body));
        let r = send(addr, "POST", b"/api/send-message/", &headers, body);
        assert_rejected(&what, r);
    }
    healthy(&s, "chunked bodies");
    let page = s.get("/api/messages/?other_username=bob", Some(&token));
    assert_eq!(
        page.body["count"], 0,
        "no oversized or malformed body was stored: {}",
        page.text
    );

    // A well-formed chunked body within the limit works.
    let ok = json!({"receiver": "bob", "content": "chunked hello"}).to_string();
    let r = send(
        addr,
        "POST",
        b"/api/send-message/",
        &headers,
        &chunked(ok.as_bytes(), 5),
    )
    .expect("answer");
    assert_eq!(r.status, 201, "{}", r.text());
}

// ---------------------------------------------------------------------------------------
// Pipelining and methods.

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    s.user("bob");
    let send_body = json!({"receiver": "bob", "content": "pipelined"}).to_string();
    let mut req = Vec::new();
    req.extend_from_slice(b"GET /api/health/ HTTP/1.1\r\nHost: x\r\n\r\n");
    req.extend_from_slice(
        format!(
            "POST /api/send-message/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{send_body}",
            send_body.len()
        )
        .as_bytes(),
    );
    req.extend_from_slice(b"GET /api/nope/ HTTP/1.1\r\nHost: x\r\n\r\n");
    req.extend_from_slice(
        format!("GET /api/messages/?other_username=bob HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes(),
    );
    req.extend_from_slice(b"GET /api/health/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let replies = exchange(addr, &req);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![200, 201, 404, 200, 200],
        "pipelined answers in order"
    );
    assert_eq!(replies[1].json()["message"]["content"], "pipelined");
    assert!(
        replies[3].json()["messages"].is_array(),
        "{}",
        replies[3].text()
    );

    // A rejected request in the middle of a pipeline: the next ones are answered in order,
    // or the connection is closed; never a response that belongs to another request.
    let mut req = b"GET /api/health/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let big = "z".repeat(70_000);
    req.extend_from_slice(
        format!(
            "POST /api/signup/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{big}",
            big.len()
        )
        .as_bytes(),
    );
    req.extend_from_slice(
        b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let replies = exchange(addr, &req);
    assert!(!replies.is_empty());
    assert_eq!(replies[0].status, 200);
    if replies.len() > 1 {
        assert_eq!(replies[1].status, 413);
    }
    if replies.len() > 2 {
        assert_eq!(replies[2].status, 200);
        assert!(
            replies[2].json()["openapi"].is_string(),
            "third answer is the OpenAPI document"
        );
    }
    healthy(&s, "pipelining");

    // 200 pipelined health checks on one connection.
    let mut req = Vec::new();
    for _ in 0..199 {
        req.extend_from_slice(b"GET /api/health/ HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    req.extend_from_slice(b"GET /api/health/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let replies = exchange(addr, &req);
    assert_eq!(replies.len(), 200);
    assert!(replies.iter().all(|r| r.status == 200));
}

/// RFC 9112 section 9.3.2: a server may process pipelined requests in parallel only if they
/// all have safe methods. A GET pipelined after a POST on the same connection must see the
/// POST's effect, as it would if the client had waited for the answer.
#[test]
fn pipelined_read_after_write_sees_the_write() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    s.user("bob");
    let mut stale = Vec::new();
    for i in 0..20 {
        let content = format!("pipelined {i}");
        let body = json!({"receiver": "bob", "content": content}).to_string();
        let req = format!(
            "POST /api/send-message/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}\
             GET /api/messages/?other_username=bob HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let replies = exchange(addr, req.as_bytes());
        assert_eq!(replies.len(), 2, "two answers");
        assert_eq!(replies[0].status, 201, "{}", replies[0].text());
        assert_eq!(replies[1].status, 200, "{}", replies[1].text());
        let page = replies[1].json();
        let last = page["messages"].as_array().and_then(|m| m.last()).cloned();
        if last.as_ref().map(|m| &m["content"]) != Some(&json!(content)) {
            stale.push(i);
        }
    }
    assert!(
        stale.is_empty(),
        "a GET pipelined after a POST did not see the message the POST had stored (rounds \
         {stale:?} of 20): pipelined requests of one connection are handed to different workers \
         at once, so an unsafe request and the ones after it run in parallel"
    );
}

/// A server that closes a connection after a response must say so (`Connection: close`);
/// otherwise a client reuses the connection and its next request fails with an EOF (a
/// POST cannot even be retried safely). Seen: any answer on `/api/events/` (401, 400, 503)
/// ends the connection silently.
#[test]
fn a_connection_is_not_closed_without_saying_so() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    for first in [
        "GET /api/events/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /api/events/?last_event_id=abc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n",
        "GET /api/health/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /api/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        "GET /api/nope/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let req = format!("{first}GET /api/health/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let replies = exchange(addr, req.as_bytes());
        let what = first.lines().next().unwrap();
        assert!(!replies.is_empty(), "{what}: no answer");
        if replies.len() == 1 {
            assert!(
                replies[0].head.to_ascii_lowercase().contains("connection: close"),
                "{what}: answered {} and then closed the connection without \
                 `Connection: close`, so the next request on it (here a pipelined health \
                 check) is lost:\n{}",
                replies[0].status,
                replies[0].head
            );
        } else {
            assert_eq!(replies[1].status, 200, "{what}: the next request is served");
        }
    }
}

#[test]
fn odd_methods_and_versions() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    for (method, expect) in [
        ("PUT", 405),
        ("DELETE", 405),
        ("PATCH", 405),
        ("TRACE", 405),
        ("FOO", 405),
        ("get", 405),
        ("CONNECT", 405),
    ] {
        let r = send(addr, method, b"/api/health/", &[], b"");
        let r = r.unwrap_or_else(|| panic!("{method}: no answer"));
        assert!(
            r.status == expect || (400..500).contains(&r.status),
            "{method} /api/health/: {}",
            r.status
        );
    }
    for line in [
        &b"GET /api/health/ HTTP/1.0\r\n\r\n"[..],
        b"GET /api/health/ HTTP/0.9\r\n\r\n",
        b"GET http://localhost/api/health/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/health/ HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n",
        b"GET /api/health/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        let what = String::from_utf8_lossy(line).into_owned();
        let r = exchange(addr, line).into_iter().next();
        assert_no_5xx(&what, &r);
    }
    healthy(&s, "odd methods");
}

// ---------------------------------------------------------------------------------------
// Slow clients.

/// Opens a connection that trickles `bytes` one byte per `every`, and returns how long after
/// connecting the server closed it (or `None` if it was still open after `give_up`).
fn trickle(
    addr: SocketAddr,
    bytes: Vec<u8>,
    every: Duration,
    give_up: Duration,
) -> std::thread::JoinHandle<Option<Duration>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).ok()?;
        let started = Instant::now();
        let mut buf = [0u8; 512];
        for b in bytes.iter().cycle() {
            if started.elapsed() > give_up {
                return None;
            }
            if s.write_all(&[*b]).is_err() {
                return Some(started.elapsed());
            }
            // Wait for the next byte by reading: EOF, a reset or an answer (408) means the
            // server gave up on this request.
            s.set_read_timeout(Some(every)).unwrap();
            match s.read(&mut buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                _ => return Some(started.elapsed()),
            }
        }
        None
    })
}

/// Whether the server closed `s` (EOF, reset, or a 408/400 followed by close) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 before the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_and_idle_clients_cannot_starve_the_server() {
    let s = support::start_with(|c| {
        c.request_timeout = Duration::from_secs(2);
    });
    under_test(&s);
    let addr = s.addr();

    // 100 connections that send nothing at all.
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let idle_since = Instant::now();
    // 100 that send a request head one byte per second.
    let head = b"GET /api/health/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".to_vec();
    let tricklers: Vec<_> = (0..100)
        .map(|_| {
            trickle(
                addr,
                head.clone(),
                Duration::from_secs(1),
                Duration::from_secs(15),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // Normal requests are served promptly meanwhile.
    let token = s.user("alice");
    for i in 0..10 {
        let started = Instant::now();
        let r = s.get("/api/conversations/", Some(&token));
        assert_eq!(r.status, 200, "request {i} during the slow-client flood");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "request {i} took {:?} while slow clients were connected",
            started.elapsed()
        );
    }
    healthy(&s, "slow clients connected");

    // Connections that do not complete a request within the time limit are closed: idle
    // ones after request_timeout (2 s), trickling ones at their first byte past it.
    for (i, c) in idle.iter_mut().enumerate() {
        let left = Duration::from_secs(6).saturating_sub(idle_since.elapsed());
        assert!(
            closed_within(c, left.max(Duration::from_millis(10))),
            "idle connection {i} still open {:?} after it was opened (request_timeout 2 s)",
            idle_since.elapsed()
        );
    }
    let closed_after: Vec<Option<Duration>> =
        tricklers.into_iter().map(|t| t.join().unwrap()).collect();
    let late: Vec<_> = closed_after
        .iter()
        .enumerate()
        .filter(|(_, at)| !at.is_some_and(|d| d < Duration::from_secs(6)))
        .collect();
    assert!(
        late.is_empty(),
        "trickling heads not cut off within 6 s (request_timeout 2 s): {late:?}"
    );
    healthy(&s, "slow clients closed");
}

#[test]
fn slow_bodies_cannot_hold_every_worker() {
    let s = support::start_with(|c| {
        c.request_timeout = Duration::from_secs(2);
    });
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    s.user("bob");
    let stop = Arc::new(AtomicBool::new(false));
    // Twice as many slow senders as workers, each with a complete head and a body trickled
    // one byte every 300 ms: chunked, and `Expect: 100-continue` with a Content-Length.
    // They connect 100 ms apart (see the next test for what a burst does).
    let mut slow = Vec::new();
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(100));
        let head = if i % 2 == 0 {
            format!(
                "POST /api/send-message/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
        } else {
            format!(
                "POST /api/send-message/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Authorization: Bearer {token}\r\nExpect: 100-continue\r\nContent-Length: 60000\r\n\r\n"
            )
        };
        let (addr, stop) = (addr, stop.clone());
        slow.push(std::thread::spawn(move || {
            let Ok(mut c) = TcpStream::connect(addr) else {
                return;
            };
            if c.write_all(head.as_bytes()).is_err() {
                return;
            }
            let body: &[u8] = if i % 2 == 0 { b"1\r\nx\r\n" } else { b"x" };
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(12) {
                for b in body {
                    if c.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(800));
    let started = Instant::now();
    let r = get_raw(addr, b"/api/health/", None);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        let _ = t.join();
    }
    let r = r.expect("health answered");
    assert_eq!(r.status, 200);
    assert!(
        took < Duration::from_secs(2),
        "a health check waited {took:?} behind slow request bodies: a body trickled a byte at \
         a time holds a worker with no overall deadline"
    );
}

/// Each connection is read by a thread from tiny_http's pool, which is meant to grow when no
/// thread is free. A burst of connections that each send a request and then stay open
/// (keep-alive, as browsers do) must all be answered promptly, however many arrive at once.
#[test]
fn a_burst_of_keep_alive_connections_is_served_promptly() {
    let s = support::start();
    under_test(&s);
    let addr = s.addr();
    let barrier = Arc::new(std::sync::Barrier::new(12));
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                let mut c = connect(addr);
                c.write_all(b"GET /api/health/ HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                let mut buf = [0u8; 1024];
                let n = c.read(&mut buf).unwrap_or(0);
                let took = started.elapsed();
                let ok = buf[..n].starts_with(b"HTTP/1.1 200");
                // Stay connected, idle, as a keep-alive client does.
                std::thread::sleep(Duration::from_secs(3));
                drop(c);
                (took, ok)
            })
        })
        .collect();
    let results: Vec<(Duration, bool)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let slow: Vec<_> = results
        .iter()
        .filter(|(took, ok)| !ok || *took > Duration::from_secs(2))
        .collect();
    assert!(
        slow.is_empty(),
        "of 12 connections opened at once, these were not answered within 2 s: {slow:?} \
         (all: {results:?}). tiny_http's TaskPool::spawn queues a new connection instead of \
         starting a thread when `waiting_tasks` is not yet updated by a thread just woken for \
         the previous one; the queued connection then waits until some other connection \
         closes (keep-alive idle timeout, 10 s by default)"
    );
}

#[test]
fn abandoned_event_streams_release_their_slot_promptly() {
    let s = support::start_with(|c| {
        c.max_streams_per_user = 2;
    });
    under_test(&s);
    let addr = s.addr();
    let token = s.user("alice");
    let open = |token: &str| -> (Option<u16>, TcpStream) {
        let mut c = connect(addr);
        c.write_all(
            format!(
                "GET /api/events/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap_or(0);
        let status = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|h| h.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok());
        (status, c)
    };
    let (a, ca) = open(&token);
    let (b, cb) = open(&token);
    assert_eq!((a, b), (Some(200), Some(200)));
    let (c, _) = open(&token);
    assert_eq!(c, Some(503), "the per-user cap applies");
    // The client goes away (a browser tab closed, a page reloaded).
    drop(ca);
    drop(cb);
    let started = Instant::now();
    loop {
        let (status, _keep) = open(&token);
        if status == Some(200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "5 s after both streams were closed by the client, a new stream is still refused \
             ({status:?}): the server notices a gone client only when a write fails (next \
             heartbeat, every 15 s), so a reconnecting user is locked out meanwhile"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    healthy(&s, "abandoned streams");
}
