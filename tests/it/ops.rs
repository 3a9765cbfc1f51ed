//! Running behind a proxy, logs and metrics, through the real server: `X-Forwarded-For`
//! believed only from trusted proxies (read from the right, several header lines as one
//! list), the `Secure` cookie and CORS origin of an https `--public-url`, `GET /metrics` in
//! the Prometheus text format (counters, the stream gauge, sends, who may scrape), and the
//! one line per request on the binary's stderr (never the query string; `--log-level warn`
//! silences it).
use crate::support;
use crate::support::bin;
use crate::support::raw::{connect, read_until_closed, Reply};
use crate::support::TestServer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use whitebeat::http::proxy::TrustedProxies;

// ---------------------------------------------------------------------------------------
// Requests over a raw socket: the headers exactly as given (repeated lines included) and
// any address to connect to.

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let mut s = connect(addr);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let reply = Reply::until_closed(&read_until_closed(&mut s));
    assert!(reply.complete, "a whole response head: {:?}", reply.head);
    reply
}

/// A failed login for `username` with the given `X-Forwarded-For` lines.
fn bad_login(addr: SocketAddr, username: &str, xff: &[&str]) -> u16 {
    let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("X-Forwarded-For", *v)).collect();
    let body = json!({"username": username, "password": "wrong-password"});
    request(addr, "POST", "/api/login/", &headers, Some(&body)).status
}

/// The client addresses the request log recorded, newest first (after the server stopped,
/// so the log is flushed).
fn logged_ips(db: &Path, n: i64) -> Vec<String> {
    let conn = whitebeat::store::open(db, whitebeat::config::SyncMode::Normal).unwrap();
    whitebeat::store::stats::recent_logs(&conn, n)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.ip_address)
        .collect()
}

/// One failed login per account allowed, so four per address (the per-address limit is
/// four times the per-account one); every test login uses a fresh account name.
fn throttled(tweak: impl FnOnce(&mut whitebeat::Config)) -> TestServer {
    support::start_with(|c| {
        c.login_attempts = 1;
        tweak(c);
    })
}

// ---------------------------------------------------------------------------------------
// Trusted proxies

#[test]
fn forwarded_for_is_ignored_from_an_untrusted_peer() {
    let mut s = throttled(|_| {});
    let addr = s.addr();
    for i in 0..4 {
        let xff = format!("203.0.113.{i}");
        assert_eq!(bad_login(addr, &format!("u{i}"), &[&xff]), 401);
    }
    // A fifth address in the header changes nothing: the peer is throttled.
    assert_eq!(bad_login(addr, "u9", &["198.51.100.9"]), 429);
    assert_eq!(bad_login(addr, "u10", &[]), 429);
    s.stop();
    assert!(logged_ips(&s.db_path(), 6)
        .iter()
        .all(|ip| ip == "127.0.0.1"));
}

#[test]
fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let mut s = throttled(|c| c.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap());
    let addr = s.addr();
    for i in 0..4 {
        assert_eq!(bad_login(addr, &format!("a{i}"), &["203.0.113.1"]), 401);
    }
    assert_eq!(bad_login(addr, "a9", &["203.0.113.1"]), 429);
    // Another client behind the same proxy has its own allowance.
    assert_eq!(bad_login(addr, "b0", &["203.0.113.2"]), 401);
    // A malformed header means the peer (the proxy) itself.
    assert_eq!(bad_login(addr, "c0", &["not-an-address"]), 401);
    s.stop();
    let ips = logged_ips(&s.db_path(), 3);
    assert_eq!(ips, ["127.0.0.1", "203.0.113.2", "203.0.113.1"]);
}

#[test]
fn a_chain_of_proxies_is_walked_from_the_right() {
    let mut s =
        throttled(|c| c.trusted_proxies = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap());
    let addr = s.addr();
    // The client wrote 198.51.100.66 itself; 203.0.113.7 is what the outer proxy (10.1.1.1)
    // saw, and 10.1.1.1 is what the inner one (the peer) saw.
    let chain = "198.51.100.66, 203.0.113.7, 10.1.1.1";
    for i in 0..4 {
        assert_eq!(bad_login(addr, &format!("a{i}"), &[chain]), 401);
    }
    assert_eq!(bad_login(addr, "a8", &["203.0.113.7"]), 429, "same client");
    assert_eq!(
        bad_login(addr, "a9", &["198.51.100.66"]),
        401,
        "not the client"
    );
    // Two header lines are one list.
    assert_eq!(
        bad_login(addr, "b0", &["198.51.100.66, 203.0.113.8", "10.2.2.2"]),
        401
    );
    s.stop();
    let ips = logged_ips(&s.db_path(), 3);
    assert_eq!(ips, ["203.0.113.8", "198.51.100.66", "203.0.113.7"]);
}

// ---------------------------------------------------------------------------------------
// HTTPS awareness

#[test]
fn an_https_public_url_makes_the_cookie_secure_and_its_origin_allowed() {
    let s =
        support::start_with(|c| c.public_url = Some("https://chat.example.org".parse().unwrap()));
    s.signup("alice");
    // Plain HTTP over loopback (a proxy terminated TLS): still `Secure`.
    let r = s.login("alice", "password123");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));
    let r = s.raw(
        "GET",
        "/api/health/",
        &[("Origin", "https://chat.example.org")],
        b"",
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://chat.example.org")
    );
    let r = s.raw(
        "GET",
        "/api/health/",
        &[("Origin", "https://evil.example")],
        b"",
    );
    assert_eq!(r.header("access-control-allow-origin"), None);

    let plain = support::start();
    plain.signup("alice");
    let r = plain.login("alice", "password123");
    assert!(!r.header("set-cookie").unwrap().contains("Secure"));
    let http =
        support::start_with(|c| c.public_url = Some("http://chat.example.org".parse().unwrap()));
    http.signup("alice");
    let r = http.login("alice", "password123");
    assert!(!r.header("set-cookie").unwrap().contains("Secure"));
}

// ---------------------------------------------------------------------------------------
// Metrics

/// Sample lines as `name{labels}` → value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "TYPE given twice: {line}");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    assert!(!v.contains('\n'));
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "no TYPE before {line}");
        assert!(out.insert(series.to_string(), value).is_none(), "{line}");
    }
    out
}

fn scrape(s: &TestServer) -> HashMap<String, f64> {
    let r = s.raw("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text);
    let ct = r.header("content-type").unwrap();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse_metrics(&r.text)
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const STATIC_200: &str =
    r#"whitebeat_http_requests_total{route="static",method="GET",status="200"}"#;
const HEALTH_200: &str =
    r#"whitebeat_http_requests_total{route="/api/health",method="GET",status="200"}"#;

#[test]
fn metrics_from_loopback_count_requests_streams_and_sends() {
    let s = support::start();
    let alice = s.user("alice");
    s.user("bob");
    let before = scrape(&s);
    for _ in 0..3 {
        assert_eq!(s.get("/api/health/?x=1", None).status, 200);
    }
    assert_eq!(s.get("/api/nope/123", None).status, 404);
    assert_eq!(s.get("/", None).status, 200);
    // A request is recorded once its response is written, so the client may see the
    // answer a moment before the counter moves.
    let mut after = HashMap::new();
    wait_for("the requests to be counted", || {
        after = scrape(&s);
        value(&after, HEALTH_200) - value(&before, HEALTH_200) >= 3.0
            && value(&after, STATIC_200) >= 1.0
    });
    assert_eq!(value(&after, HEALTH_200) - value(&before, HEALTH_200), 3.0);
    assert!(
        value(
            &after,
            r#"whitebeat_http_requests_total{route="other",method="GET",status="404"}"#
        ) >= 1.0
    );
    // The first scrape itself is counted by the second.
    assert!(
        value(
            &after,
            r#"whitebeat_http_requests_total{route="/metrics",method="GET",status="200"}"#
        ) >= 1.0
    );
    let h = "whitebeat_http_request_duration_seconds";
    let count = value(&after, &format!(r#"{h}_count{{route="/api/health"}}"#));
    assert!(count >= 3.0);
    assert_eq!(
        value(
            &after,
            &format!(r#"{h}_bucket{{route="/api/health",le="+Inf"}}"#)
        ),
        count
    );
    assert!(
        value(
            &after,
            &format!(r#"{h}_bucket{{route="/api/health",le="10"}}"#)
        ) <= count
    );
    assert!(value(&after, &format!(r#"{h}_sum{{route="/api/health"}}"#)) > 0.0);
    assert_eq!(value(&after, "whitebeat_users"), 2.0);
    assert!(value(&after, "whitebeat_database_size_bytes") > 0.0);
    // Every worker has a connection with a page cache by now.
    assert!(value(&after, "whitebeat_sqlite_memory_bytes") > 100_000.0);
    assert!(value(&after, "process_start_time_seconds") > 1.6e9);
    assert_eq!(
        value(
            &after,
            &format!(
                r#"whitebeat_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );

    // Sends are counted once committed.
    let sent = value(&after, "whitebeat_messages_sent_total");
    assert_eq!(s.send(&alice, "bob", "hello").status, 201);
    assert_eq!(s.send(&alice, "bob", "again").status, 201);
    let m = scrape(&s);
    assert_eq!(value(&m, "whitebeat_messages_sent_total"), sent + 2.0);
    let send_201 =
        r#"whitebeat_http_requests_total{route="/api/send-message",method="POST",status="201"}"#;
    wait_for("the sends to be counted", || {
        value(&scrape(&s), send_201) >= 2.0
    });
    let m = scrape(&s);
    assert_eq!(
        value(
            &m,
            r#"whitebeat_http_requests_total{route="/api/send-message",method="POST",status="201"}"#
        ),
        2.0
    );

    // The stream gauge follows an open stream; the stream is counted when it ends.
    let events = r#"whitebeat_http_requests_total{route="/api/events",method="GET",status="200"}"#;
    assert_eq!(value(&m, "whitebeat_event_streams_open"), 0.0);
    let mut stream = connect(s.addr());
    write!(
        stream,
        "GET /api/events/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while !line.starts_with(": connected") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream closed");
    }
    let m = scrape(&s);
    assert_eq!(value(&m, "whitebeat_event_streams_open"), 1.0);
    assert_eq!(value(&m, events), 0.0, "not counted while open");
    drop(reader);
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(stream);
    wait_for("the stream to close", || {
        let m = scrape(&s);
        value(&m, "whitebeat_event_streams_open") == 0.0 && value(&m, events) == 1.0
    });
}

/// An address of this machine other than loopback, if it has one.
fn non_loopback_ip() -> Option<IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    if probe.connect("192.0.2.1:9").is_ok() {
        if let Ok(a) = probe.local_addr() {
            if !a.ip().is_loopback() && !a.ip().is_unspecified() {
                return Some(a.ip());
            }
        }
    }
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

#[test]
fn metrics_elsewhere_need_an_admin_session() {
    let s = support::start_with(|c| {
        c.bind = "0.0.0.0:0".parse().unwrap();
        // Even a trusted proxy's forwarded address is never what decides.
        c.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    });
    let port = s.addr().port();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let root = s.admin("root");
    let alice = s.user("alice");

    // From loopback through a proxy (a forwarding header): refused, even forwarded "from"
    // loopback.
    for h in [
        ("X-Forwarded-For", "203.0.113.5"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Real-IP", "127.0.0.1"),
        ("Forwarded", "for=127.0.0.1"),
    ] {
        let r = request(loopback, "GET", "/metrics", &[h], None);
        assert_eq!(r.status, 403, "{h:?}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{}", r.text());
    }
    let bearer = format!("Bearer {root}");
    let r = request(
        loopback,
        "GET",
        "/metrics",
        &[
            ("X-Forwarded-For", "203.0.113.5"),
            ("Authorization", &bearer),
        ],
        None,
    );
    assert_eq!(r.status, 200, "an admin through the proxy: {}", r.text());
    assert_eq!(request(loopback, "POST", "/metrics", &[], None).status, 405);

    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped the non-loopback half: this machine has no other address");
        return;
    };
    let remote = SocketAddr::new(ip, port);
    let r = request(remote, "GET", "/metrics", &[], None);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json()["error"],
        "Metrics are served to the local host and to admins"
    );
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let user = format!("Bearer {alice}");
    assert_eq!(
        request(remote, "GET", "/metrics", &[("Authorization", &user)], None).status,
        403
    );
    let r = request(
        remote,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(parse_metrics(&r.text()).contains_key("whitebeat_users"));
    let cookie = format!("whitebeat_session={root}");
    let r = request(remote, "GET", "/metrics", &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 200, "admin cookie: {}", r.text());
}

// ---------------------------------------------------------------------------------------
// The request line on the binary's stderr

/// Runs `serve` on a free port with `args`, calls `exercise` with its address, stops it
/// with SIGTERM and returns its stderr.
fn serve_and_capture(args: &[&str], env: &[(&str, &str)], exercise: impl FnOnce(&str)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin::whitebeat(&dir.path().join("wb.sqlite3"));
    // The server's own log settings: its request lines are what is under test.
    cmd.env_remove("WHITEBEAT_LOG")
        .args(["serve", "--bind", "127.0.0.1:0", "--threads", "2"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped());
    let mut server = bin::spawn_serve(&mut cmd, None);
    exercise(&server.addr().to_string());
    assert!(server.signal(libc::SIGTERM));
    let mut err = String::new();
    let mut stderr = server.child.stderr.take().unwrap();
    stderr.read_to_string(&mut err).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    err
}

fn exercise(addr: &str) {
    let addr: SocketAddr = addr.parse().unwrap();
    let r = request(
        addr,
        "GET",
        "/api/health/?token=sekrit-token-123",
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    let r = request(addr, "GET", "/api/users/?search=hidden-term", &[], None);
    assert_eq!(r.status, 401);
    for name in ["alice", "bob"] {
        let body = json!({"username": name, "password": "password123"});
        assert_eq!(
            request(addr, "POST", "/api/signup/", &[], Some(&body)).status,
            201
        );
    }
    let body = json!({"username": "alice", "password": "password123"});
    let login = request(addr, "POST", "/api/login/", &[], Some(&body));
    let token = login.json()["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let send = json!({"receiver": "bob", "content": "hi"});
    let r = request(
        addr,
        "POST",
        "/api/send-message/",
        &[("Authorization", &bearer)],
        Some(&send),
    );
    assert_eq!(r.status, 201);
}

#[test]
fn one_line_per_request_on_stderr_without_the_query() {
    let err = serve_and_capture(&[], &[], exercise);
    let line = |needle: &str| {
        err.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{err}"))
            .to_string()
    };
    let health = line("GET /api/health/ 200 ");
    assert!(health.ends_with(" -"), "anonymous: {health}");
    assert!(health.contains(" INFO "), "{health}");
    let ms = health.split_whitespace().rev().nth(1).unwrap();
    assert!(
        ms.ends_with("ms") && ms.trim_end_matches("ms").parse::<f64>().is_ok(),
        "{health}"
    );
    assert!(line("GET /api/users/ 401 ").ends_with(" -"));
    line("POST /api/signup/ 201 ");
    // Logged in by the request itself, and a send answered after its commit.
    assert!(line("POST /api/login/ 200 ").ends_with(" 1"));
    assert!(line("POST /api/send-message/ 201 ").ends_with(" 1"));
    assert!(!err.contains("sekrit-token-123"), "{err}");
    assert!(!err.contains("hidden-term"), "{err}");
    assert!(!err.contains('?'), "no query string: {err}");
}

#[test]
fn log_level_warn_silences_request_lines() {
    for (args, env) in [
        (&["--log-level", "warn"][..], &[][..]),
        (&[][..], &[("WHITEBEAT_LOG_LEVEL", "warn")][..]),
        (
            &[][..],
            &[("WHITEBEAT_LOG", "info,whitebeat::access=off")][..],
        ),
    ] {
        let err = serve_and_capture(args, env, exercise);
        assert!(!err.contains("/api/"), "{args:?} {env:?}:\n{err}");
    }
}

#[test]
fn bad_proxy_and_url_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let run = |args: &[&str]| {
        Command::new(bin::BIN)
            .arg("--db")
            .arg(&db)
            .arg("serve")
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .env_remove("WHITEBEAT_TRUSTED_PROXY")
            .env_remove("WHITEBEAT_PUBLIC_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(&["--trusted-proxy", "10.0.0.0/8,proxy.local"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("proxy.local"), "{err}");
    for url in [
        "ftp://chat.example.org",
        "https://chat.example.org/chat",
        "chat.example.org",
    ] {
        let o = run(&["--public-url", url]);
        assert_eq!(o.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("--public-url"), "{err}");
    }
}
