//! Accounts and the HTTP conventions, through the real server: sign-up and its every `400`,
//! login (shape, cookie, `401`), bearer and cookie authentication, logout, session expiry,
//! password change and deactivation ending sessions, login throttling per account and per
//! address, verify-admin, make-admin/remove-admin, identity fields that name someone else,
//! `401` without a session, and the JSON conventions of API.md (415, 400, 413, trailing
//! slashes, 404/405, CORS).
use crate::support;
use crate::support::{Resp, TestServer, CHEAP_ARGON2};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use whitebeat::config::SyncMode;

fn signup_body(s: &TestServer, body: Value) -> Resp {
    s.post("/api/signup/", None, body)
}

fn cookie_get(s: &TestServer, path: &str, token: &str) -> Resp {
    s.raw(
        "GET",
        path,
        &[("Cookie", &format!("theme=dark; whitebeat_session={token}"))],
        b"",
    )
}

fn db(s: &TestServer) -> rusqlite::Connection {
    whitebeat::cli::open_db(&s.db_path(), SyncMode::Full).unwrap()
}

// ---------------------------------------------------------------- sign-up

#[test]
fn signup_returns_the_original_shape_with_the_default_email() {
    let s = support::start();
    let r = s.signup("alice");
    assert_eq!(r.status, 201, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["success"], true);
    assert_eq!(b["role"], "user");
    assert_eq!(b["username"], "alice");
    assert_eq!(b["email"], "alice@whitebeat.com");
    assert!(b["user_id"].as_i64().unwrap() > 0);
    assert!(!b["message"].as_str().unwrap().is_empty());

    let r = signup_body(
        &s,
        json!({"username": "bob", "password": "password123", "email": "bob@example.org"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["email"], "bob@example.org");
    assert_ne!(r.body["user_id"], b["user_id"]);
    // Unknown fields are ignored (the React front end sends extra ones).
    let r = signup_body(
        &s,
        json!({"username": "carol", "password": "password123", "confirm": "x", "x": [1]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn signup_rejects_every_bad_input_with_400() {
    let s = support::start();
    assert_eq!(s.signup("alice").status, 201);

    let missing = [
        json!({}),
        json!({"username": "x1"}),
        json!({"password": "password123"}),
        json!({"username": "", "password": "password123"}),
        json!({"username": "x2", "password": ""}),
    ];
    for body in missing {
        let r = signup_body(&s, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        r.error();
    }

    let r = s.signup("alice");
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "Username already exists");

    let r = signup_body(
        &s,
        json!({"username": "other", "password": "password123", "email": "alice@whitebeat.com"}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "Email already exists");

    for bad in ["a b", "<script>", "semi;colon", "tab\tname", "slash/x"] {
        let r = signup_body(&s, json!({"username": bad, "password": "password123"}));
        assert_eq!(r.status, 400, "username {bad:?}: {}", r.text);
        r.error();
    }
    let r = signup_body(
        &s,
        json!({"username": "a".repeat(151), "password": "password123"}),
    );
    assert_eq!(r.status, 400, "151 chars: {}", r.text);
    let r = signup_body(
        &s,
        json!({"username": "b".repeat(150), "password": "password123"}),
    );
    assert_eq!(r.status, 201, "150 chars is allowed: {}", r.text);
    let r = signup_body(
        &s,
        json!({"username": "john.doe+1@x_y-z", "password": "password123"}),
    );
    assert_eq!(r.status, 201, "every allowed punctuation: {}", r.text);

    let r = signup_body(&s, json!({"username": "shortpw", "password": "1234567"}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().contains('8'), "{}", r.text);
    let r = signup_body(&s, json!({"username": "okpw", "password": "12345678"}));
    assert_eq!(r.status, 201, "8 chars is enough: {}", r.text);

    for bad in ["nope", "a@b", "@b.co", "a b@c.de", "a@b@c.de"] {
        let r = signup_body(
            &s,
            json!({"username": "mailer", "password": "password123", "email": bad}),
        );
        assert_eq!(r.status, 400, "email {bad:?}: {}", r.text);
        r.error();
    }
    // Nothing half-written: the refused names are free, the count is right.
    let health = s.get("/api/health/", None);
    assert_eq!(health.body["stats"]["total_users"], 4);
    assert_eq!(s.signup("mailer").status, 201);
}

// ---------------------------------------------------------------- login

#[test]
fn login_returns_the_original_fields_plus_token_and_cookie() {
    let s = support::start();
    let id = s.signup("alice").body["user_id"].as_i64().unwrap();
    let r = s.login("alice", "password123");
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["role"], "user");
    assert_eq!(b["username"], "alice");
    assert_eq!(b["email"], "alice@whitebeat.com");
    assert!(!b["message"].as_str().unwrap().is_empty());
    assert_eq!(b["user_id"], id);
    assert_eq!(b["is_admin_group"], false);
    assert_eq!(b["groups"], json!([]));
    assert_eq!(b["is_admin"], false);
    assert!(b.get("is_staff").is_none(), "is_staff only for admins");
    let token = b["token"].as_str().unwrap();
    // At least 128 bits of entropy: 32+ hex characters.
    assert!(token.len() >= 32, "{token}");

    let cookie = r.header("set-cookie").expect("session cookie");
    assert!(
        cookie.starts_with(&format!("whitebeat_session={token}")),
        "{cookie}"
    );
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{part} missing from {cookie}");
    }
    assert!(!cookie.contains("Secure"), "not configured: {cookie}");

    // Two logins are two sessions with different tokens.
    let again = s.login("alice", "password123");
    assert_ne!(again.body["token"], b["token"]);
}

#[test]
fn admin_login_has_is_staff_and_the_admin_group() {
    let s = support::start();
    s.admin("root");
    let r = s.login("root", "password123");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["role"], "admin");
    assert_eq!(r.body["is_admin"], true);
    assert_eq!(r.body["is_admin_group"], true);
    assert_eq!(r.body["is_staff"], true);
    assert_eq!(r.body["groups"], json!(["Admin"]));
    assert_eq!(r.body["email"], "root@example.com");
}

#[test]
fn secure_cookie_when_configured() {
    let s = support::start_with(|c| c.cookie_secure = true);
    s.signup("alice");
    let r = s.login("alice", "password123");
    assert!(r.header("set-cookie").unwrap().contains("Secure"));
}

#[test]
fn wrong_password_and_unknown_user_are_the_same_401() {
    let s = support::start();
    s.signup("alice");
    for (user, pw) in [("alice", "wrongpassword"), ("nobody", "password123")] {
        let r = s.login(user, pw);
        assert_eq!(r.status, 401, "{user}: {}", r.text);
        assert_eq!(r.error(), "Invalid username or password");
        assert!(r.header("set-cookie").is_none());
    }
    let r = s.post("/api/login/", None, json!({"username": "alice"}));
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn bearer_and_cookie_both_authenticate() {
    let s = support::start();
    let alice = s.user("alice");
    s.user("bob");
    let bearer = s.get("/api/users/", Some(&alice));
    assert_eq!(bearer.status, 200);
    let cookie = cookie_get(&s, "/api/users/", &alice);
    assert_eq!(cookie.status, 200, "{}", cookie.text);
    assert_eq!(cookie.body, bearer.body);
    // A cookie authenticates a POST too.
    let r = s.raw(
        "POST",
        "/api/send-message/",
        &[
            ("Cookie", &format!("whitebeat_session={alice}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"receiver": "bob", "content": "by cookie"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["message"]["sender"], "alice");
    // Garbage tokens are simply unauthenticated.
    for bad in ["nonsense", "", &"f".repeat(64), &"a".repeat(5000)] {
        assert_eq!(s.get("/api/users/", Some(bad)).status, 401, "{bad:?}");
        assert_eq!(cookie_get(&s, "/api/users/", bad).status, 401);
    }
}

#[test]
fn logout_revokes_the_session_and_clears_the_cookie() {
    let s = support::start();
    let alice = s.user("alice");
    let other = s.login("alice", "password123").body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.post("/api/logout/", Some(&alice), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"success": true}));
    let cookie = r.header("set-cookie").expect("cleared cookie");
    assert!(cookie.starts_with("whitebeat_session=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    assert_eq!(s.get("/api/users/", Some(&alice)).status, 401);
    assert_eq!(cookie_get(&s, "/api/users/", &alice).status, 401);
    assert_eq!(s.post("/api/logout/", Some(&alice), json!({})).status, 401);
    // Only that session ends; the other login of the same user still works.
    assert_eq!(s.get("/api/users/", Some(&other)).status, 200);

    // Logout with no body at all, and through the cookie.
    let r = s.raw(
        "POST",
        "/api/logout",
        &[("Cookie", &format!("whitebeat_session={other}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.get("/api/users/", Some(&other)).status, 401);
}

#[test]
fn an_idle_session_expires() {
    let s = support::start_with(|c| c.session_idle = Duration::from_secs(1));
    let alice = s.user("alice");
    assert_eq!(s.get("/api/users/", Some(&alice)).status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let r = s.get("/api/conversations/", Some(&alice));
        if r.status == 401 {
            break;
        }
        assert_eq!(r.status, 200);
        assert!(Instant::now() < deadline, "session never expired");
    }
    // A new login works.
    let fresh = s.login("alice", "password123");
    assert_eq!(fresh.status, 200);
    let t = fresh.body["token"].as_str().unwrap();
    assert_eq!(s.get("/api/users/", Some(t)).status, 200);
}

#[test]
fn a_password_change_ends_every_session() {
    let s = support::start();
    let a1 = s.user("alice");
    let a2 = s.login("alice", "password123").body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let bob = s.user("bob");
    whitebeat::cli::change_password(&db(&s), CHEAP_ARGON2, "alice", "brand-new-pass").unwrap();
    assert_eq!(s.get("/api/users/", Some(&a1)).status, 401);
    assert_eq!(s.get("/api/users/", Some(&a2)).status, 401);
    assert_eq!(
        s.get("/api/users/", Some(&bob)).status,
        200,
        "bob unaffected"
    );
    assert_eq!(s.login("alice", "password123").status, 401);
    assert_eq!(s.login("alice", "brand-new-pass").status, 200);
    // Too short a password is refused and changes nothing.
    assert!(whitebeat::cli::change_password(&db(&s), CHEAP_ARGON2, "alice", "short").is_err());
    assert_eq!(s.login("alice", "brand-new-pass").status, 200);
}

#[test]
fn a_deactivated_user_cannot_log_in_and_loses_their_sessions() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    whitebeat::cli::set_active(&db(&s), "alice", false).unwrap();
    assert_eq!(s.get("/api/users/", Some(&alice)).status, 401);
    let r = s.login("alice", "password123");
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "Invalid username or password");
    // Others no longer see or reach them.
    let users = s.get("/api/users/", Some(&bob));
    assert!(users.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["username"] != "alice"));
    assert_eq!(s.send(&bob, "alice", "hello?").status, 404);

    whitebeat::cli::set_active(&db(&s), "alice", true).unwrap();
    assert_eq!(s.login("alice", "password123").status, 200);
}

// ---------------------------------------------------------------- throttling

#[test]
fn login_is_throttled_per_account() {
    let s = support::start_with(|c| c.login_attempts = 3);
    s.signup("alice");
    s.signup("bob");
    for i in 0..3 {
        let r = s.login("alice", "wrongpassword");
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text);
    }
    for _ in 0..2 {
        let r = s.login("alice", "password123");
        assert_eq!(r.status, 429, "even the right password waits: {}", r.text);
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=15 * 60).contains(&retry), "{retry}");
        r.error();
    }
    // The count is alice's account's. Logins are by the exact name, so `ALICE` is a name no
    // account has: counted on its own (as unknown names are), it cannot open alice's
    // account whatever its count.
    assert_eq!(s.login("ALICE", "password123").status, 401);
    // Another account from the same address is not locked out (3 < 4 * 3).
    assert_eq!(s.login("bob", "password123").status, 200);
}

#[test]
fn login_is_throttled_per_address_at_four_times_the_account_limit() {
    let s = support::start_with(|c| c.login_attempts = 2);
    s.signup("alice");
    // Eight failures, one per account, stay under each account's limit of 2...
    for i in 0..8 {
        let r = s.login(&format!("ghost{i}"), "wrongpassword");
        assert_eq!(r.status, 401, "failure {i}: {}", r.text);
    }
    // ...but the address has used its 4 * 2 = 8.
    let r = s.login("alice", "password123");
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    let r = s.login("someone-new", "whatever1");
    assert_eq!(r.status, 429);
}

#[test]
fn seven_address_failures_still_let_a_good_login_through() {
    let s = support::start_with(|c| c.login_attempts = 2);
    s.signup("alice");
    for i in 0..7 {
        assert_eq!(s.login(&format!("ghost{i}"), "wrongpassword").status, 401);
    }
    assert_eq!(s.login("alice", "password123").status, 200);
}

// ---------------------------------------------------------------- admin rights

#[test]
fn verify_admin_is_for_yourself_unless_you_are_an_admin() {
    let s = support::start();
    let root = s.admin("root");
    let alice = s.user("alice");
    s.user("bob");

    let r = s.post(
        "/api/verify-admin/",
        Some(&alice),
        json!({"username": "alice"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"is_admin": false, "is_admin_group": false, "username": "alice", "groups": []})
    );
    // Without a username: yourself.
    let r = s.post("/api/verify-admin/", Some(&alice), json!({}));
    assert_eq!(r.body["username"], "alice");

    let r = s.post(
        "/api/verify-admin/",
        Some(&alice),
        json!({"username": "bob"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s.post(
        "/api/verify-admin/",
        Some(&alice),
        json!({"username": "root"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);

    let r = s.post(
        "/api/verify-admin/",
        Some(&root),
        json!({"username": "bob"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body["is_admin"], false);
    let r = s.post(
        "/api/verify-admin/",
        Some(&root),
        json!({"username": "root"}),
    );
    assert_eq!(r.body["is_admin"], true);
    assert_eq!(r.body["is_admin_group"], true);
    assert_eq!(r.body["groups"], json!(["Admin"]));

    let r = s.post(
        "/api/verify-admin/",
        Some(&root),
        json!({"username": "nobody"}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    r.error();
    assert_eq!(
        s.post("/api/verify-admin/", None, json!({"username": "alice"}))
            .status,
        401
    );
}

#[test]
fn make_and_remove_admin_with_an_admin_session() {
    let s = support::start();
    let root = s.admin("root");
    let bob = s.user("bob");

    let r = s.post(
        "/api/make-admin/",
        Some(&root),
        json!({"target_username": "bob"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["username"], "bob");
    assert_eq!(r.body["is_admin"], true);
    assert_eq!(r.body["groups"], json!(["Admin"]));
    // Bob's existing session is an admin's now.
    let v = s.post("/api/verify-admin/", Some(&bob), json!({}));
    assert_eq!(v.body["is_admin"], true);
    assert_eq!(s.get("/api/admin/stats/", Some(&bob)).status, 200);
    assert_eq!(s.get("/api/health/", None).body["stats"]["admin_users"], 2);

    let r = s.post(
        "/api/remove-admin/",
        Some(&root),
        json!({"target_username": "bob"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["is_admin"], false);
    assert_eq!(r.body["groups"], json!([]));
    assert_eq!(s.get("/api/admin/stats/", Some(&bob)).status, 403);
    assert_eq!(s.get("/api/health/", None).body["stats"]["admin_users"], 1);
}

#[test]
fn make_admin_with_credentials_in_the_body() {
    let s = support::start();
    s.admin("root");
    s.user("bob");
    s.user("carol");
    let r = s.post(
        "/api/make-admin/",
        None,
        json!({"admin_username": "root", "admin_password": "password123", "target_username": "bob"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["is_admin"], true);

    // A wrong admin password, or a non-admin's credentials: 403.
    let r = s.post(
        "/api/make-admin/",
        None,
        json!({"admin_username": "root", "admin_password": "wrongpassword", "target_username": "carol"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s.post(
        "/api/make-admin/",
        None,
        json!({"admin_username": "carol", "admin_password": "password123", "target_username": "carol"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);

    let r = s.post(
        "/api/remove-admin/",
        None,
        json!({"admin_username": "bob", "admin_password": "password123", "target_username": "root"}),
    );
    assert_eq!(r.status, 200, "bob is an admin now: {}", r.text);
    let carol = s.login("carol", "password123").body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let v = s.post("/api/verify-admin/", Some(&carol), json!({}));
    assert_eq!(v.body["is_admin"], false);
}

#[test]
fn admin_changes_refuse_bad_requests() {
    let s = support::start();
    let root = s.admin("root");
    let alice = s.user("alice");

    for path in ["/api/make-admin/", "/api/remove-admin/"] {
        let r = s.post(path, Some(&root), json!({}));
        assert_eq!(r.status, 400, "{path} missing target: {}", r.text);
        let r = s.post(path, Some(&root), json!({"target_username": ""}));
        assert_eq!(r.status, 400, "{path} empty target: {}", r.text);

        let r = s.post(path, Some(&alice), json!({"target_username": "alice"}));
        assert_eq!(r.status, 403, "{path} non-admin: {}", r.text);
        let r = s.post(path, None, json!({"target_username": "alice"}));
        assert_eq!(r.status, 401, "{path} nobody: {}", r.text);

        let r = s.post(path, Some(&root), json!({"target_username": "ghost"}));
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error(), "Target user not found");
    }
    // Still not an admin after all that.
    assert_eq!(
        s.post("/api/verify-admin/", Some(&alice), json!({})).body["is_admin"],
        false
    );

    let r = s.post(
        "/api/remove-admin/",
        Some(&root),
        json!({"target_username": "root"}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    r.error();
    assert_eq!(s.get("/api/admin/stats/", Some(&root)).status, 200);
    // With a second admin, the first may step down.
    s.post(
        "/api/make-admin/",
        Some(&root),
        json!({"target_username": "alice"}),
    );
    let r = s.post(
        "/api/remove-admin/",
        Some(&root),
        json!({"target_username": "root"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.get("/api/admin/stats/", Some(&root)).status, 403);
    let r = s.post(
        "/api/remove-admin/",
        Some(&alice),
        json!({"target_username": "alice"}),
    );
    assert_eq!(r.status, 409, "alice is the last one now: {}", r.text);
}

// ---------------------------------------------------------------- identity fields

#[test]
fn identity_fields_naming_someone_else_are_403() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let sent = s.send(&bob, "alice", "hi");
    let conv = sent.body["message"]["conversation_id"].as_i64().unwrap();

    let forbidden = [
        s.get("/api/users/?username=bob", Some(&alice)),
        s.get("/api/conversations/?username=bob", Some(&alice)),
        s.get(
            "/api/messages/?username=bob&other_username=alice",
            Some(&alice),
        ),
        s.post(
            "/api/mark-as-read/",
            Some(&alice),
            json!({"username": "bob", "conversation_id": conv}),
        ),
        s.post(
            "/api/send-message/",
            Some(&alice),
            json!({"sender": "bob", "receiver": "alice", "content": "spoof"}),
        ),
        s.post("/api/logout/", Some(&alice), json!({"username": "bob"})),
    ];
    for r in &forbidden {
        assert_eq!(r.status, 403, "{}", r.text);
        r.error();
    }
    // Nothing happened: no spoofed message, bob's message still unread, alice logged in.
    let h = s.get("/api/health/", None);
    assert_eq!(h.body["stats"]["total_messages"], 1);
    let convs = s.get("/api/conversations/", Some(&alice));
    assert_eq!(convs.status, 200);
    assert_eq!(convs.body["conversations"][0]["unread_count"], 1);

    // Naming yourself is fine everywhere.
    let ok = [
        s.get("/api/users/?username=alice", Some(&alice)),
        s.get("/api/conversations/?username=alice", Some(&alice)),
        s.get(
            "/api/messages/?username=alice&other_username=bob",
            Some(&alice),
        ),
        s.post(
            "/api/mark-as-read/",
            Some(&alice),
            json!({"username": "alice", "conversation_id": conv}),
        ),
    ];
    for r in &ok {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = s.post(
        "/api/send-message/",
        Some(&alice),
        json!({"sender": "alice", "receiver": "bob", "content": "me"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.post("/api/logout/", Some(&alice), json!({"username": "alice"}));
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn every_user_endpoint_needs_a_session() {
    let s = support::start();
    s.user("alice");
    let gets = [
        "/api/users/",
        "/api/conversations/",
        "/api/messages/?other_username=alice",
        "/api/admin/stats/",
        "/api/events/",
    ];
    for path in gets {
        let r = s.get(path, None);
        assert_eq!(r.status, 401, "GET {path}: {}", r.text);
        r.error();
    }
    let posts = [
        (
            "/api/send-message/",
            json!({"receiver": "alice", "content": "x"}),
        ),
        ("/api/mark-as-read/", json!({"conversation_id": 1})),
        ("/api/logout/", json!({})),
        ("/api/verify-admin/", json!({"username": "alice"})),
        ("/api/make-admin/", json!({"target_username": "alice"})),
        ("/api/remove-admin/", json!({"target_username": "alice"})),
        ("/api/typing/", json!({"other_username": "alice"})),
    ];
    for (path, body) in posts {
        let r = s.post(path, None, body);
        assert_eq!(r.status, 401, "POST {path}: {}", r.text);
        r.error();
    }
    // The original's identity fields alone authenticate nothing.
    let r = s.get("/api/users/?username=alice", None);
    assert_eq!(r.status, 401);
    let r = s.post(
        "/api/send-message/",
        None,
        json!({"sender": "alice", "receiver": "alice", "content": "x"}),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        s.get("/api/health/", None).body["stats"]["total_messages"],
        0
    );
}

// ---------------------------------------------------------------- JSON conventions

#[test]
fn bodies_must_be_json_objects_of_the_right_types() {
    let s = support::start();
    let alice = s.user("alice");
    s.user("bob");
    let auth = format!("Bearer {alice}");

    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let r = s.raw(
            "POST",
            "/api/signup/",
            &[("Content-Type", ct)],
            br#"{"username": "zed", "password": "password123"}"#,
        );
        assert_eq!(r.status, 415, "{ct}: {}", r.text);
        r.error();
    }
    let r = s.raw(
        "POST",
        "/api/send-message/",
        &[("Authorization", &auth)],
        br#"{"receiver": "bob", "content": "no content type"}"#,
    );
    assert_eq!(r.status, 415, "{}", r.text);
    // A charset parameter is fine.
    let r = s.raw(
        "POST",
        "/api/send-message/",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        br#"{"receiver": "bob", "content": "with charset"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text);

    let json_ct = ("Content-Type", "application/json");
    let bad_bodies: [&[u8]; 9] = [
        br#"{"username": "zed", "password": "#,
        b"not json",
        b"[1, 2, 3]",
        b"\"a string\"",
        b"42",
        b"null",
        br#"{"username": 5, "password": "password123"}"#,
        br#"{"username": "zed", "password": ["password123"]}"#,
        b"\xff\xfe{}",
    ];
    for body in bad_bodies {
        let r = s.raw("POST", "/api/signup/", &[json_ct], body);
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(body),
            r.text
        );
        r.error();
    }
    let r = s.raw(
        "POST",
        "/api/mark-as-read/",
        &[json_ct, ("Authorization", &auth)],
        br#"{"conversation_id": "one"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.raw(
        "POST",
        "/api/send-message/",
        &[json_ct, ("Authorization", &auth)],
        br#"{"receiver": "bob", "content": 12}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    // Nothing was created by any of them.
    assert_eq!(s.get("/api/health/", None).body["stats"]["total_users"], 2);
    assert_eq!(
        s.get("/api/health/", None).body["stats"]["total_messages"],
        1
    );
}

#[test]
fn a_body_over_the_limit_is_413() {
    let s = support::start_with(|c| c.body_limit = 1024);
    let alice = s.user("alice");
    s.user("bob");
    let big = json!({"receiver": "bob", "content": "x".repeat(2000)});
    let r = s.post("/api/send-message/", Some(&alice), big);
    assert_eq!(r.status, 413, "{}", r.text);
    r.error();
    let small = json!({"receiver": "bob", "content": "x".repeat(900)});
    assert_eq!(
        s.post("/api/send-message/", Some(&alice), small).status,
        201
    );
    // Chunked, so no Content-Length tells the server the size in advance.
    let body = format!(
        r#"{{"receiver": "bob", "content": "{}"}}"#,
        "y".repeat(3000)
    );
    let status = chunked_post(&s, "/api/send-message/", &alice, body.as_bytes());
    assert_eq!(status, 413);
    let body = r#"{"receiver": "bob", "content": "small and chunked"}"#;
    let status = chunked_post(&s, "/api/send-message/", &alice, body.as_bytes());
    assert_eq!(status, 201);
    assert_eq!(
        s.get("/api/health/", None).body["stats"]["total_messages"],
        2
    );
}

/// A POST with `Transfer-Encoding: chunked` over a raw socket; returns the status code.
fn chunked_post(s: &TestServer, path: &str, token: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(s.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&support::raw::chunked(body, 500));
    // The server may answer and close before reading everything; that is fine.
    let _ = tcp.write_all(&req);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("no status line: {other:?} after {head:?}"),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn trailing_slash_is_optional() {
    let s = support::start();
    let alice = s.user("alice");
    s.user("bob");
    for path in ["/api/health", "/api/health/"] {
        assert_eq!(s.get(path, None).status, 200, "{path}");
    }
    for path in [
        "/api/users",
        "/api/users/",
        "/api/conversations",
        "/api/conversations/",
    ] {
        assert_eq!(s.get(path, Some(&alice)).status, 200, "{path}");
    }
    let r = s.post(
        "/api/send-message",
        Some(&alice),
        json!({"receiver": "bob", "content": "no slash"}),
    );
    assert_eq!(r.status, 201);
    let r = s.post(
        "/api/login",
        None,
        json!({"username": "alice", "password": "password123"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        s.get("/api/messages?other_username=bob", Some(&alice)).body["count"],
        1
    );
}

#[test]
fn unknown_api_paths_are_json_404_and_wrong_methods_405() {
    let s = support::start();
    for path in [
        "/api/nope",
        "/api/nope/",
        "/api/",
        "/api",
        "/api/users/extra",
        "/api/admin",
    ] {
        let r = s.get(path, None);
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        r.error();
    }
    let r = s.post("/api/nope/", None, json!({}));
    assert_eq!(r.status, 404);
    r.error();

    let cases = [
        ("GET", "/api/login/", "POST"),
        ("PUT", "/api/signup", "POST"),
        ("POST", "/api/users/", "GET"),
        ("DELETE", "/api/messages/", "GET"),
        ("PUT", "/api/send-message/", "POST"),
        ("POST", "/api/health", "GET"),
    ];
    for (method, path, allowed) in cases {
        let r = s.raw(method, path, &[("Content-Type", "application/json")], b"{}");
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
        let allow = r.header("allow").expect("Allow header");
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow}");
        r.error();
    }
}

#[test]
fn cors_echoes_allowed_origins_only_and_never_star() {
    let s = support::start();
    let alice = s.user("alice");
    let origin = "http://localhost:3000";

    let r = s.raw(
        "OPTIONS",
        "/api/login/",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert!(r.status == 200 || r.status == 204, "{}", r.status);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let methods = r.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = r
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(headers.contains("content-type"), "{headers}");
    assert!(headers.contains("authorization"), "{headers}");

    // The other default origin too, on an ordinary request.
    let r = s.raw(
        "GET",
        "/api/users/",
        &[
            ("Origin", "http://127.0.0.1:3000"),
            ("Authorization", &format!("Bearer {alice}")),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://127.0.0.1:3000")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    // Errors carry the header as well, so the browser shows the real error.
    let r = s.raw("GET", "/api/users/", &[("Origin", origin)], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));

    for foreign in ["http://evil.example", "null", "http://localhost:3001"] {
        let pre = s.raw(
            "OPTIONS",
            "/api/login/",
            &[
                ("Origin", foreign),
                ("Access-Control-Request-Method", "POST"),
            ],
            b"",
        );
        assert!(
            pre.header("access-control-allow-origin").is_none(),
            "{foreign}"
        );
        assert!(pre.header("access-control-allow-credentials").is_none());
        let r = s.raw(
            "GET",
            "/api/users/",
            &[
                ("Origin", foreign),
                ("Authorization", &format!("Bearer {alice}")),
            ],
            b"",
        );
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "{foreign}"
        );
    }
    // No Origin at all: no CORS headers, and never a wildcard anywhere.
    let r = s.get("/api/health/", None);
    assert!(r.header("access-control-allow-origin").is_none());
    let pre = s.raw("OPTIONS", "/api/health/", &[("Origin", origin)], b"");
    assert_ne!(pre.header("access-control-allow-origin"), Some("*"));
}
