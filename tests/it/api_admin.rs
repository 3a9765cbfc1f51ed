//! The admin dashboard (`admin/stats/`: who may see it, every field of API.md, the request
//! log written in batches showing up in `recent_logs` and `api_calls_today`) and the public
//! health check (`health/`: shape and counters that match what was created).
use crate::support;
use crate::support::TestServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use whitebeat::config::SyncMode;

fn stats(s: &TestServer, token: &str) -> Value {
    let r = s.get("/api/admin/stats/", Some(token));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Waits until the request log holds exactly `n` rows (the writer flushes every 250 ms).
fn wait_for_log_rows(s: &TestServer, n: i64) {
    let conn = s.db();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = whitebeat::store::stats::log_rows(&conn).unwrap();
        if rows == n {
            return;
        }
        assert!(rows < n, "more log rows ({rows}) than requests made ({n})");
        assert!(
            Instant::now() < deadline,
            "request log has {rows} rows, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_day(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

#[test]
fn stats_is_for_admins_only() {
    let s = support::start();
    let root = s.admin("root");
    let alice = s.user("alice");
    let r = s.get("/api/admin/stats/", None);
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.body["error"].is_string());
    let r = s.get("/api/admin/stats/", Some(&alice));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.body["error"].is_string());
    let r = s.get("/api/admin/stats/", Some("not-a-token"));
    assert_eq!(r.status, 401);
    assert_eq!(s.get("/api/admin/stats", Some(&root)).status, 200);
}

#[test]
fn stats_has_every_field_with_the_right_values() {
    let s = support::start();
    let root = s.admin("root");
    let alice = s.user("alice");
    let bob = s.user("bob");
    s.user("carol");
    // Eight messages: revenue 0.016 rounds to 0.02.
    for i in 0..5 {
        assert_eq!(s.send(&alice, "bob", &format!("a{i}")).status, 201);
    }
    for i in 0..3 {
        assert_eq!(s.send(&bob, "carol", &format!("b{i}")).status, 201);
    }
    // Sign-ups on earlier days, straight into the store: 1 yesterday, 2 three days ago,
    // 1 six days ago, 1 a week ago (outside the six days).
    let now = whitebeat::store::now_us();
    let day = 86_400_000_000i64;
    let conn = s.db();
    for (name, days_ago) in [
        ("old1", 1),
        ("old3a", 3),
        ("old3b", 3),
        ("old6", 6),
        ("old7", 7),
    ] {
        let at = now - days_ago * day;
        conn.execute(
            "INSERT INTO users (username, email, password_hash, last_activity, date_joined)
             VALUES (?1, ?1 || '@example.com', 'x', ?2, ?2)",
            rusqlite::params![name, at],
        )
        .unwrap();
    }
    whitebeat::cli::set_active(
        &whitebeat::cli::open_db(&s.db_path(), SyncMode::Full).unwrap(),
        "carol",
        false,
    )
    .unwrap();

    let st = stats(&s, &root);
    assert_eq!(st["total_users"], 9);
    assert_eq!(st["total_messages"], 8);
    assert_eq!(st["revenue"].as_f64().unwrap(), 0.02);
    // root, alice and bob hold live sessions; carol's ended with her deactivation.
    assert_eq!(st["active_sessions"], 3);
    assert!(st["api_calls_today"].as_i64().unwrap() >= 0);

    assert_eq!(st["user_growth"], json!([1, 0, 0, 2, 0, 1]), "oldest first");
    let usage = st["api_usage"].as_array().unwrap();
    assert_eq!(usage.len(), 6);
    assert!(usage.iter().all(|v| v.as_i64().unwrap() >= 0));

    let recent = st["recent_users"].as_array().unwrap();
    assert_eq!(recent.len(), 9, "fewer than ten users: all of them");
    let order: Vec<&str> = recent
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["carol", "bob", "alice", "root", "old1", "old3b", "old3a", "old6", "old7"],
        "newest first"
    );
    for u in recent {
        for key in [
            "id",
            "name",
            "email",
            "username",
            "status",
            "joined",
            "total_messages",
            "is_admin",
            "groups",
        ] {
            assert!(u.get(key).is_some(), "{key} missing from {u}");
        }
        assert!(is_day(u["joined"].as_str().unwrap()), "{u}");
        assert!(u["id"].as_i64().unwrap() > 0);
    }
    let by_name = |n: &str| recent.iter().find(|u| u["username"] == n).unwrap();
    let a = by_name("alice");
    assert_eq!(a["name"], "alice", "no first/last name: the username");
    assert_eq!(a["email"], "alice@whitebeat.com");
    assert_eq!(a["status"], "Active");
    assert_eq!(a["total_messages"], 5);
    assert_eq!(a["is_admin"], false);
    assert_eq!(a["groups"], json!([]));
    assert_eq!(
        a["joined"],
        chrono::Utc::now().format("%Y-%m-%d").to_string()
    );
    assert_eq!(by_name("bob")["total_messages"], 3);
    assert_eq!(by_name("carol")["status"], "Inactive");
    let r = by_name("root");
    assert_eq!(r["is_admin"], true);
    assert_eq!(r["groups"], json!(["Admin"]));
    assert_eq!(r["total_messages"], 0);

    // Eleven more users: only the ten newest are listed.
    for i in 0..11 {
        assert_eq!(s.signup(&format!("late{i:02}")).status, 201);
    }
    let st = stats(&s, &root);
    let recent = st["recent_users"].as_array().unwrap();
    assert_eq!(recent.len(), 10);
    assert_eq!(recent[0]["username"], "late10");
    assert_eq!(recent[9]["username"], "late01");
    assert_eq!(st["total_users"], 20);
}

#[test]
fn revenue_follows_the_message_count() {
    let s = support::start();
    let root = s.admin("root");
    assert_eq!(stats(&s, &root)["revenue"].as_f64().unwrap(), 0.0);
    let alice = s.user("alice");
    s.user("bob");
    for (n, expected) in [(2, 0.0), (3, 0.01), (7, 0.01), (8, 0.02), (13, 0.03)] {
        while s.get("/api/health/", None).body["stats"]["total_messages"] != n {
            assert_eq!(s.send(&alice, "bob", "x").status, 201);
        }
        let st = stats(&s, &root);
        assert_eq!(st["total_messages"], n);
        let revenue = st["revenue"].as_f64().unwrap();
        assert!((revenue - expected).abs() < 1e-9, "{n} messages: {revenue}");
    }
}

#[test]
fn the_request_log_shows_up_in_the_dashboard() {
    let s = support::start();
    let root = s.admin("root"); // 1 request (login)
    let alice = s.user("alice"); // 2 (signup, login)
    s.user("bob"); // 2
    assert_eq!(s.get("/api/health/", None).status, 200);
    assert_eq!(s.get("/api/users/", Some(&alice)).status, 200);
    assert_eq!(s.send(&alice, "bob", "logged").status, 201);
    assert_eq!(s.get("/api/nope-marker", None).status, 404);
    assert_eq!(s.get("/api/users/", None).status, 401);
    let made = 1 + 2 + 2 + 5;
    wait_for_log_rows(&s, made);

    let st = stats(&s, &root);
    assert_eq!(st["api_calls_today"], made, "every request counted once");
    let usage: i64 = st["api_usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(usage, made, "all in the last six hours");
    assert!(
        st["api_usage"][5].as_i64().unwrap() > 0,
        "this hour is last"
    );

    let logs = st["recent_logs"].as_array().unwrap();
    assert_eq!(logs.len(), made as usize);
    for l in logs {
        assert!(l["id"].as_i64().unwrap() > 0);
        let time = l["time"].as_str().unwrap();
        assert!(
            time.ends_with("ms") && time[..time.len() - 2].parse::<u64>().is_ok(),
            "{time}"
        );
        assert_eq!(l["ip_address"], "127.0.0.1");
        chrono::DateTime::parse_from_rfc3339(l["created_at"].as_str().unwrap()).unwrap();
        assert!(l["status"].is_u64());
        assert!(l["method"].is_string());
    }
    let ids: Vec<i64> = logs.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let find = |endpoint: &str, status: u64| {
        logs.iter()
            .find(|l| l["endpoint"] == endpoint && l["status"] == status)
            .unwrap_or_else(|| panic!("no {endpoint} {status} in {logs:?}"))
    };
    assert_eq!(logs[0]["endpoint"], "/api/users", "the last request first");
    assert_eq!(logs[0]["status"], 401);
    assert_eq!(logs[0]["user"], "Anonymous");
    // An unknown path is logged under one label, not as typed.
    let l = find("(unknown)", 404);
    assert_eq!(l["method"], "GET");
    let l = find("/api/send-message", 201);
    assert_eq!(l["method"], "POST");
    assert_eq!(l["user"], "alice");
    let l = find("/api/users", 200);
    assert_eq!(l["user"], "alice");
    let l = find("/api/health", 200);
    assert_eq!(l["user"], "Anonymous");
    let l = find("/api/signup", 201);
    assert_eq!(l["method"], "POST");
    // A login is credited to whoever logged in.
    assert!(logs
        .iter()
        .any(|l| l["endpoint"] == "/api/login" && l["user"] == "root"));

    // More than twenty requests: only the newest twenty are listed.
    for _ in 0..25 {
        s.get("/api/health", None);
    }
    wait_for_log_rows(&s, made + 1 + 25);
    let st = stats(&s, &root);
    assert_eq!(st["recent_logs"].as_array().unwrap().len(), 20);
    assert_eq!(st["api_calls_today"], made + 1 + 25);
}

#[test]
fn health_reports_the_counters() {
    let s = support::start();
    let r = s.get("/api/health/", None);
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["status"], "healthy");
    assert_eq!(b["service"], "White Beat Backend - User Chat");
    assert_eq!(b["database_connected"], true);
    assert_eq!(b["admin_group_exists"], true);
    let features = b["features"].as_object().expect("features object");
    assert!(!features.is_empty());
    assert!(features.values().all(Value::is_boolean), "{features:?}");
    assert_eq!(
        b["stats"],
        json!({"total_users": 0, "total_messages": 0, "total_conversations": 0, "admin_users": 0})
    );

    s.admin("root");
    s.admin("root2");
    let alice = s.user("alice");
    let bob = s.user("bob");
    s.user("carol");
    for _ in 0..3 {
        s.send(&alice, "bob", "hi");
    }
    s.send(&bob, "alice", "hello");
    s.send(&bob, "carol", "hey");
    s.send(&alice, "alice", "note");
    // Opening a conversation creates it even without a message.
    s.get("/api/messages/?other_username=root", Some(&alice));
    let st = s.get("/api/health", None).body["stats"].clone();
    assert_eq!(
        st,
        json!({"total_users": 5, "total_messages": 6, "total_conversations": 4, "admin_users": 2})
    );
    // Failed sign-ups and sends change nothing.
    s.signup("alice");
    s.send(&alice, "ghost", "x");
    s.send(&alice, "bob", "   ");
    assert_eq!(s.get("/api/health", None).body["stats"], st);
}
