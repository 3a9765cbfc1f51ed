//! The request log's bounds, through the real server: a flood from one client stores at
//! most its per-minute bound while the dashboard still counts every request; the row cap
//! deletes the oldest rows and leaves the dashboard's figures alone; and what a client
//! typed (a password in a query string, even one that does not decode) is never stored.
use crate::support;
use crate::support::raw::{self, Reply};
use crate::support::TestServer;
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use whitebeat::config::SyncMode;
use whitebeat::ops::reqlog::{self, Limits, PER_CLIENT_PER_MINUTE};
use whitebeat::store::stats::{self, LogEntry};

const MINUTE_US: i64 = 60_000_000;

fn db(path: &std::path::Path) -> rusqlite::Connection {
    whitebeat::store::open(path, SyncMode::Normal).unwrap()
}

fn stats(s: &TestServer, token: &str) -> Value {
    let r = s.get("/api/admin/stats/", Some(token));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Waits until `cond` holds on the database (the log writer flushes every 250 ms).
fn wait_for(
    path: &std::path::Path,
    what: &str,
    mut cond: impl FnMut(&rusqlite::Connection) -> bool,
) {
    let conn = db(path);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond(&conn) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rows_where(conn: &rusqlite::Connection, ip_like: &str) -> i64 {
    conn.query_row(
        "SELECT COUNT(*) FROM request_log WHERE ip_address LIKE ?1",
        [ip_like],
        |r| r.get(0),
    )
    .unwrap()
}

/// The dashboard's two request figures straight from the roll-ups: today's calls and the
/// calls of the last six hours.
fn figures(conn: &rusqlite::Connection) -> (i64, i64) {
    let now = whitebeat::store::now_us();
    let today = stats::api_calls_on(conn, now).unwrap();
    let hours = stats::api_usage(conn, now, 6).unwrap().iter().sum();
    (today, hours)
}

fn dashboard_figures(st: &Value) -> (i64, i64) {
    let hours = st["api_usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    (st["api_calls_today"].as_i64().unwrap(), hours)
}

/// Unknown paths with a query, as fast as one connection allows, each claiming (through the
/// trusted proxy) to come from `ip(i)`. Returns the minutes (of the server's clock) the
/// flood spanned.
fn flood(s: &TestServer, n: usize, ip: impl Fn(usize) -> String) -> i64 {
    let first = whitebeat::store::now_us().div_euclid(MINUTE_US);
    for i in 0..n {
        let r = s.raw(
            "GET",
            &format!("/api/flood-{i}/x?q={i}"),
            &[("X-Forwarded-For", &ip(i))],
            b"",
        );
        assert_eq!(r.status, 404, "{}", r.text);
    }
    whitebeat::store::now_us().div_euclid(MINUTE_US) - first + 1
}

/// Waits, if the current minute is nearly over, for the next one: a flood within one
/// minute stores exactly the bound.
fn at_the_start_of_a_minute() {
    let into = whitebeat::store::now_us().rem_euclid(MINUTE_US);
    if into > 40_000_000 {
        std::thread::sleep(Duration::from_micros((MINUTE_US - into) as u64 + 100_000));
    }
}

#[test]
fn a_flood_from_one_client_stores_its_bound_and_the_dashboard_counts_it_all() {
    let s = support::start_with(|c| {
        c.trusted_proxies = whitebeat::http::proxy::TrustedProxies::parse("127.0.0.1").unwrap();
    });
    let root = s.admin("root"); // 1 request, from 127.0.0.1
    let bound = PER_CLIENT_PER_MINUTE as i64;
    let n = PER_CLIENT_PER_MINUTE as usize + 400;

    at_the_start_of_a_minute();
    // One IPv4 address...
    let v4_minutes = flood(&s, n, |_| "203.0.113.9".into());
    // ...and one IPv6 /64, a new address for every request.
    let v6_minutes = flood(&s, n, |i| format!("2001:db8:5:6:{:x}::1", i + 1));
    // Another client, after both floods, is logged in full.
    for _ in 0..5 {
        let r = s.raw(
            "GET",
            "/api/health/",
            &[("X-Forwarded-For", "198.51.100.7")],
            b"",
        );
        assert_eq!(r.status, 200);
    }
    let made = 1 + 2 * n as i64 + 5;

    let log = &s.handle.as_ref().unwrap().app().log;
    wait_for(&s.db_path(), "the writer to catch up", |conn| {
        stats::log_rows(conn).unwrap() + log.throttled() as i64 == made
            && rows_where(conn, "198.51.100.7") == 5
    });
    let conn = db(&s.db_path());
    let v4 = rows_where(&conn, "203.0.113.9");
    let v6 = rows_where(&conn, "2001:db8:5:6:%");
    for (what, stored, minutes) in [("IPv4", v4, v4_minutes), ("IPv6", v6, v6_minutes)] {
        if minutes == 1 {
            assert_eq!(stored, bound, "{what} flood stores its bound");
        } else {
            // Across a minute's end, each minute has its own bound.
            assert!(
                stored >= bound && stored <= bound * minutes,
                "{what}: {stored}"
            );
        }
    }
    assert_eq!(log.throttled() as i64, 2 * n as i64 - v4 - v6);
    assert_eq!(rows_where(&conn, "127.0.0.1"), 1, "the admin's login");
    let endpoints: Vec<String> = conn
        .prepare("SELECT DISTINCT endpoint FROM request_log WHERE ip_address <> '198.51.100.7' AND ip_address <> '127.0.0.1'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(endpoints, ["(unknown)"]);

    // The dashboard counts every request, stored or not: a flood shows in its figures.
    assert_eq!(figures(&conn), (made, made));
    let st = stats(&s, &root);
    assert_eq!(dashboard_figures(&st), (made, made));
    let newest = &st["recent_logs"].as_array().unwrap()[0];
    assert_eq!(newest["ip_address"], "198.51.100.7");
}

fn entry(ip: &str) -> LogEntry {
    LogEntry {
        created_at: whitebeat::store::now_us(),
        method: "GET".into(),
        endpoint: "/api/health".into(),
        status: 200,
        duration_us: 1_000,
        user_id: None,
        username: None,
        ip_address: ip.into(),
        user_agent: "test".into(),
    }
}

fn ips_by_id(conn: &rusqlite::Connection) -> Vec<String> {
    conn.prepare("SELECT ip_address FROM request_log ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn the_row_cap_deletes_the_oldest_rows_and_keeps_the_dashboard_figures() {
    const CAP: u64 = 10;
    let mut s = support::start();
    s.admin("root");
    for _ in 0..29 {
        assert_eq!(s.get("/api/health/", None).status, 200);
    }
    let path = s.db_path();
    wait_for(&path, "30 rows", |c| stats::log_rows(c).unwrap() == 30);
    let before = figures(&db(&path));
    assert_eq!(before, (30, 30));
    s.stop();

    // The log writer with a cap of ten rows (the server's is `reqlog::MAX_ROWS`).
    let config = support::test_config(s.dir.path());
    let hub = Arc::new(whitebeat::live::Hub::new(10, 10));
    let limits = Limits {
        max_rows: CAP,
        ..Limits::default()
    };
    let (log, writer) = reqlog::start_with(&config, hub, limits).unwrap();
    // At start-up, its housekeeping trims the table to the newest ten.
    wait_for(&path, "the start-up trim", |c| {
        stats::log_rows(c).unwrap() == 10
    });
    let conn = db(&path);
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM request_log ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        ids,
        (21..=30).collect::<Vec<_>>(),
        "the newest ten are kept"
    );
    // Every batch trims: the table never holds more than the cap.
    let mut sent = 0;
    for round in 0..3 {
        for _ in 0..7 {
            log.send(entry(&format!("198.51.100.{sent}")));
            sent += 1;
        }
        let last = format!("198.51.100.{}", sent - 1);
        wait_for(&path, &format!("round {round}"), |c| {
            ips_by_id(c).last() == Some(&last)
        });
        assert_eq!(stats::log_rows(&conn).unwrap(), CAP as i64, "round {round}");
    }
    drop(log);
    writer.join().unwrap();
    let kept: Vec<String> = (11..21).map(|i| format!("198.51.100.{i}")).collect();
    assert_eq!(ips_by_id(&conn), kept, "the oldest went first");
    // The roll-ups count every request, deleted rows included.
    assert_eq!(figures(&conn), (30 + 21, 30 + 21));

    // The dashboard on the same database says so too.
    let s2 = support::start_with(|c| c.db_path = path.clone());
    let token = s2.login("root", "password123");
    assert_eq!(token.status, 200, "{}", token.text);
    let token = token.body["token"].as_str().unwrap();
    wait_for(&path, "the login's row", |c| {
        stats::log_rows(c).unwrap() == 11
    });
    let st = stats(&s2, token);
    assert_eq!(dashboard_figures(&st), (30 + 21 + 1, 30 + 21 + 1));
    let listed: Vec<&str> = st["recent_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ip_address"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = kept.iter().map(String::as_str).rev().collect();
    expected.insert(0, "127.0.0.1");
    assert_eq!(listed, expected, "newest first");
}

/// One request written byte for byte (a client library would re-encode the target);
/// returns the status.
fn raw_request(addr: std::net::SocketAddr, head: &str) -> u16 {
    let mut sock = raw::connect(addr);
    write!(
        sock,
        "{head} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    Reply::until_closed(&raw::read_until_closed(&mut sock)).status
}

#[test]
fn a_password_in_the_target_is_never_stored() {
    let mut s = support::start();
    let root = s.admin("root");
    let targets = [
        // A query that does not decode: the request is refused before any route runs.
        ("GET", "/api/login/?username=x&password=secret&x=%FF", 400),
        ("POST", "/api/login/?username=x&password=secret&x=%FF", 400),
        // One that does, on a route.
        ("GET", "/api/login/?username=x&password=secret", 405),
        // A path that does not decode, and an unknown one.
        ("GET", "/api/secret%FF?password=secret", 400),
        ("GET", "/api/nope/secret?password=secret", 404),
    ];
    for (method, target, status) in targets {
        assert_eq!(
            raw_request(s.addr(), &format!("{method} {target}")),
            status,
            "{method} {target}"
        );
    }
    let path = s.db_path();
    wait_for(&path, "every request logged", |c| {
        stats::log_rows(c).unwrap() == 1 + targets.len() as i64
    });

    let st = stats(&s, &root);
    let logs = st["recent_logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1 + targets.len());
    let listed = serde_json::to_string(logs).unwrap();
    assert!(!listed.to_lowercase().contains("secret"), "{listed}");
    for l in logs {
        let endpoint = l["endpoint"].as_str().unwrap();
        assert!(
            ["(unknown)", "/api/login"].contains(&endpoint),
            "{endpoint}"
        );
    }

    s.stop();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut stmt = conn.prepare("SELECT * FROM request_log").unwrap();
    let columns = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut seen = 0;
    while let Some(row) = rows.next().unwrap() {
        seen += 1;
        for i in 0..columns {
            let value = match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).to_string(),
                other => format!("{other:?}"),
            };
            assert!(
                !value.to_lowercase().contains("secret"),
                "column {i} of a request-log row: {value}"
            );
        }
    }
    assert_eq!(seen, 2 + targets.len(), "and the dashboard's own request");
}
