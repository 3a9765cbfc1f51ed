//! Who may join and account administration over the API: the three sign-up modes, invite
//! codes (uses, expiry, revocation, the race for a code's last use), admins creating
//! accounts, deactivation ending sessions and event streams at once while keeping the
//! messages, reactivation, and password resets.
use crate::support;
use crate::support::events::SseClient;
use crate::support::TestServer;
use serde_json::{json, Value};
use std::time::Duration;
use whitebeat::config::SignupMode;

fn start(mode: SignupMode) -> TestServer {
    support::start_with(|c| c.signup = mode)
}

fn signup_with(s: &TestServer, username: &str, code: Option<&str>) -> support::Resp {
    let mut body = json!({"username": username, "password": "password123"});
    if let Some(code) = code {
        body["invite_code"] = json!(code);
    }
    s.post("/api/signup/", None, body)
}

fn user_count(s: &TestServer) -> i64 {
    let conn = s.db();
    conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap()
}

fn create_invite(s: &TestServer, admin: &str, body: Value) -> Value {
    let r = s.post("/api/admin/invites/", Some(admin), body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

#[test]
fn the_mode_is_public_and_open_is_the_default() {
    let s = support::start();
    let r = s.get("/api/signup/", None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"mode": "open"}));
    // Open ignores an invite code, valid or not.
    assert_eq!(signup_with(&s, "alice", Some("nonsense")).status, 201);
    for (mode, name) in [
        (SignupMode::Invite, "invite"),
        (SignupMode::Closed, "closed"),
    ] {
        let s = start(mode);
        assert_eq!(s.get("/api/signup", None).body["mode"], name);
    }
}

#[test]
fn closed_refuses_every_signup_with_403_and_admins_create_accounts() {
    let s = start(SignupMode::Closed);
    let root = s.admin("root");
    let before = user_count(&s);
    for body in [
        json!({"username": "mallory", "password": "password123"}),
        json!({"username": "mallory", "password": "password123", "invite_code": "x"}),
        json!({}),
    ] {
        let r = s.post("/api/signup/", None, body);
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(r.error().contains("closed"), "{}", r.text);
    }
    assert_eq!(user_count(&s), before, "a refused sign-up wrote nothing");

    // Only admins create accounts.
    let body =
        json!({"username": "gran", "password": "password123", "email": "gran@family.example"});
    assert_eq!(s.post("/api/admin/users/", None, body.clone()).status, 401);
    let r = s.post("/api/admin/users/", Some(&root), body.clone());
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["username"], "gran");
    assert_eq!(r.body["email"], "gran@family.example");
    assert_eq!(r.body["is_admin"], false);
    let gran = s.login("gran", "password123");
    assert_eq!(gran.status, 200, "{}", gran.text);
    let gran = gran.body["token"].as_str().unwrap().to_string();
    // An ordinary user cannot.
    let r = s.post(
        "/api/admin/users/",
        Some(&gran),
        json!({"username": "x1", "password": "password123"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    // The same rules as sign-up.
    let r = s.post("/api/admin/users/", Some(&root), body);
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "Username already exists");
    let r = s.post(
        "/api/admin/users/",
        Some(&root),
        json!({"username": "short", "password": "pw"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    // An admin account, when asked for.
    let r = s.post(
        "/api/admin/users/",
        Some(&root),
        json!({"username": "helper", "password": "password123", "is_admin": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let l = s.login("helper", "password123");
    assert_eq!(l.body["is_admin"], true, "{}", l.text);
}

#[test]
fn invite_mode_needs_a_usable_code() {
    let s = start(SignupMode::Invite);
    let root = s.admin("root");
    let before = user_count(&s);

    let r = signup_with(&s, "anna", None);
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error().contains("invite code"), "{}", r.text);
    let r = signup_with(&s, "anna", Some("0123456789abcdef01234567"));
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(user_count(&s), before);

    // Defaults: one use, seven days.
    let invite = create_invite(&s, &root, json!({"note": "for Anna"}));
    let code = invite["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 24, "{invite}");
    assert_eq!(invite["max_uses"], 1);
    assert_eq!(invite["uses"], 0);
    assert_eq!(invite["state"], "usable");
    assert_eq!(invite["note"], "for Anna");
    assert_eq!(invite["created_by"], "root");
    let expires = chrono::DateTime::parse_from_rfc3339(invite["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    let week = chrono::Utc::now().timestamp() + 7 * 86_400;
    assert!((expires - week).abs() < 60, "{invite}");

    // A bad username does not use the code up.
    let r = signup_with(&s, "an na", Some(&code));
    assert_eq!(r.status, 400, "{}", r.text);
    // Codes are case-insensitive and trimmed, as people paste them.
    let r = signup_with(&s, "anna", Some(&format!(" {} ", code.to_uppercase())));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(s.login("anna", "password123").status, 200);
    // Used up.
    let r = signup_with(&s, "ben", Some(&code));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error().contains("not valid"), "{}", r.text);

    let list = s.get("/api/admin/invites/", Some(&root));
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["signup"], "invite");
    let first = &list.body["invites"][0];
    assert_eq!(first["code"], code.as_str());
    assert_eq!(first["uses"], 1);
    assert_eq!(first["state"], "used up");

    // The account remembers its invite.
    let conn = s.db();
    let invite_id: Option<i64> = conn
        .query_row(
            "SELECT invite_id FROM users WHERE username = 'anna'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(invite_id, invite["id"].as_i64());
}

#[test]
fn invites_can_allow_several_uses_expire_and_be_revoked() {
    let s = start(SignupMode::Invite);
    let root = s.admin("root");
    let club = create_invite(
        &s,
        &root,
        json!({"max_uses": 3, "expires_in_days": 0, "note": "club"}),
    );
    assert_eq!(club["expires_at"], Value::Null);
    let code = club["code"].as_str().unwrap();
    for name in ["m1", "m2", "m3"] {
        assert_eq!(signup_with(&s, name, Some(code)).status, 201);
    }
    assert_eq!(signup_with(&s, "m4", Some(code)).status, 403);

    // Any number of uses until revoked; revoking keeps the accounts.
    let open = create_invite(&s, &root, json!({"max_uses": 0}));
    assert_eq!(open["max_uses"], Value::Null);
    let code = open["code"].as_str().unwrap();
    assert_eq!(signup_with(&s, "o1", Some(code)).status, 201);
    let r = s.post(
        "/api/admin/invites/revoke/",
        Some(&root),
        json!({"code": code}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(signup_with(&s, "o2", Some(code)).status, 403);
    assert_eq!(s.login("o1", "password123").status, 200);
    let list = s.get("/api/admin/invites/", Some(&root)).body;
    assert_eq!(list["invites"][0]["state"], "revoked");
    assert_eq!(list["invites"][0]["revoked"], true);
    let r = s.post(
        "/api/admin/invites/revoke/",
        Some(&root),
        json!({"id": 999}),
    );
    assert_eq!(r.status, 404, "{}", r.text);

    // An expired code is refused (made to expire by moving its time back in the store).
    let soon = create_invite(&s, &root, json!({"expires_in_days": 1}));
    let conn = s.db();
    conn.execute(
        "UPDATE invites SET expires_at = ?1 WHERE id = ?2",
        rusqlite::params![whitebeat::store::now_us() - 1, soon["id"].as_i64()],
    )
    .unwrap();
    assert_eq!(
        signup_with(&s, "late", Some(soon["code"].as_str().unwrap())).status,
        403
    );
    let list = s.get("/api/admin/invites/", Some(&root)).body;
    assert_eq!(list["invites"][0]["state"], "expired");

    // Bad limits are a 400; only admins manage invites.
    for bad in [
        json!({"max_uses": -1}),
        json!({"expires_in_days": -2}),
        json!({"expires_in_days": 99999}),
        json!({"note": "x".repeat(201)}),
        json!({"max_uses": "lots"}),
    ] {
        let r = s.post("/api/admin/invites/", Some(&root), bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    let member = s.login("m1", "password123").body["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.post("/api/admin/invites/", Some(&member), json!({}))
            .status,
        403
    );
    assert_eq!(s.get("/api/admin/invites/", Some(&member)).status, 403);
    assert_eq!(s.get("/api/admin/invites/", None).status, 401);
}

#[test]
fn two_signups_racing_for_the_last_use_get_one_account() {
    let s = start(SignupMode::Invite);
    let root = s.admin("root");
    let code = create_invite(&s, &root, json!({"max_uses": 1}))["code"]
        .as_str()
        .unwrap()
        .to_string();
    let before = user_count(&s);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (s, code) = (&s, &code);
                scope.spawn(move || signup_with(s, &format!("racer{i}"), Some(code)).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&c| c == 201 || c == 403),
        "{statuses:?}"
    );
    assert_eq!(user_count(&s), before + 1);
}

#[test]
fn admins_list_every_account_with_search_and_paging() {
    let s = support::start();
    let root = s.admin("root");
    for name in ["alice", "bob", "carol", "dave"] {
        s.user(name);
    }
    let alice = s.login("alice", "password123").body["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.get("/api/admin/users/", Some(&alice)).status, 403);
    assert_eq!(s.get("/api/admin/users/", None).status, 401);

    let r = s.post(
        "/api/admin/deactivate/",
        Some(&root),
        json!({"username": "dave"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let all = s.get("/api/admin/users/", Some(&root));
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body["total"], 5);
    let names: Vec<&str> = all.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave", "root"]);
    let dave = &all.body["users"][3];
    assert_eq!(dave["is_active"], false, "inactive accounts are listed too");
    assert_eq!(all.body["users"][4]["is_admin"], true);

    let page = s
        .get("/api/admin/users/?limit=2&offset=2", Some(&root))
        .body;
    assert_eq!(page["total"], 5);
    assert_eq!(page["users"][0]["username"], "carol");
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    let found = s.get("/api/admin/users/?q=AR", Some(&root)).body;
    assert_eq!(found["total"], 1);
    assert_eq!(found["users"][0]["username"], "carol");
    let by_email = s.get("/api/admin/users/?q=example.com", Some(&root)).body;
    assert_eq!(by_email["users"][0]["username"], "root");
    // LIKE wildcards are searched for literally.
    assert_eq!(
        s.get("/api/admin/users/?q=%25", Some(&root)).body["total"],
        0
    );
    for bad in ["limit=0", "limit=201", "offset=-1", "limit=x"] {
        let r = s.get(&format!("/api/admin/users/?{bad}"), Some(&root));
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
}

#[test]
fn deactivation_ends_sessions_and_streams_at_once_and_keeps_messages() {
    let s = support::start();
    let root = s.admin("root");
    let alice = s.user("alice");
    let bob = s.user("bob");
    assert_eq!(s.send(&alice, "bob", "hello bob").status, 201);
    let mut stream = SseClient::open(s.addr(), &alice);
    assert_eq!(stream.status, 200);
    // A second session of alice's, by cookie.
    let cookie_login = s.login("alice", "password123");
    let second = cookie_login.body["token"].as_str().unwrap().to_string();

    let r = s.post(
        "/api/admin/deactivate/",
        Some(&root),
        json!({"username": "alice"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["is_active"], false);
    assert!(
        stream.closes_within(Duration::from_secs(2)),
        "the event stream ends at once"
    );
    for token in [&alice, &second] {
        assert_eq!(s.get("/api/conversations/", Some(token)).status, 401);
    }
    assert_eq!(s.login("alice", "password123").status, 401);
    // Her messages stay, for bob too.
    let page = s.get("/api/messages/?other_username=alice", Some(&bob));
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.body["messages"][0]["content"], "hello bob");

    // Reactivated, she logs in again (old sessions stay ended).
    let r = s.post(
        "/api/admin/activate/",
        Some(&root),
        json!({"username": "alice"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["is_active"], true);
    assert_eq!(s.get("/api/conversations/", Some(&alice)).status, 401);
    assert_eq!(s.login("alice", "password123").status, 200);

    // Not yourself, not the last admin, not someone unknown, not as a non-admin.
    let r = s.post(
        "/api/admin/deactivate/",
        Some(&root),
        json!({"username": "root"}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    let r = s.post(
        "/api/admin/deactivate/",
        Some(&root),
        json!({"username": "nobody"}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s.post("/api/admin/deactivate/", Some(&root), json!({}));
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.post(
        "/api/admin/deactivate/",
        Some(&bob),
        json!({"username": "alice"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(s.login("root", "password123").status, 200);
}

#[test]
fn the_last_active_admin_cannot_be_deactivated_by_another_admin_either() {
    let s = support::start();
    let root = s.admin("root");
    let helper = s.admin("helper");
    let r = s.post(
        "/api/admin/deactivate/",
        Some(&helper),
        json!({"username": "root"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.get("/api/admin/stats/", Some(&root)).status, 401);
    // helper is now the only active admin; root (inactive) cannot remove them.
    let r = s.post(
        "/api/admin/activate/",
        Some(&helper),
        json!({"username": "root"}),
    );
    assert_eq!(r.status, 200);
    let root = s.login("root", "password123").body["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.post(
            "/api/remove-admin/",
            Some(&root),
            json!({"target_username": "root"})
        )
        .status,
        200
    );
    let r = s.post(
        "/api/admin/deactivate/",
        Some(&root),
        json!({"username": "helper"}),
    );
    assert_eq!(r.status, 403, "root is no admin now: {}", r.text);
}

#[test]
fn password_resets_end_sessions_and_can_generate_a_password() {
    let s = support::start();
    let root = s.admin("root");
    let alice = s.user("alice");
    let mut stream = SseClient::open(s.addr(), &alice);

    let r = s.post(
        "/api/admin/reset-password/",
        Some(&root),
        json!({"username": "alice", "password": "a-new-password"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body.get("password").is_none(),
        "a chosen password is not echoed"
    );
    assert!(stream.closes_within(Duration::from_secs(2)));
    assert_eq!(s.get("/api/conversations/", Some(&alice)).status, 401);
    assert_eq!(s.login("alice", "password123").status, 401);
    assert_eq!(s.login("alice", "a-new-password").status, 200);

    let r = s.post(
        "/api/admin/reset-password/",
        Some(&root),
        json!({"username": "alice"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let generated = r.body["password"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 20);
    assert_eq!(s.login("alice", "a-new-password").status, 401);
    assert_eq!(s.login("alice", &generated).status, 200);

    let r = s.post(
        "/api/admin/reset-password/",
        Some(&root),
        json!({"username": "alice", "password": "short"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(s.login("alice", &generated).status, 200, "unchanged");
    let alice = s.login("alice", &generated).body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.post(
        "/api/admin/reset-password/",
        Some(&alice),
        json!({"username": "root"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
}
