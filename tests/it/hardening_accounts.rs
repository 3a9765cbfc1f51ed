//! Regression tests of the account and privacy hardening, through the real server (and the
//! real binary where files and the shell are concerned): the login throttle counts an
//! account by its id, so a look-alike account's successful logins never forgive guesses at
//! another; usernames are unique by how they look (case, width, mathematical letters,
//! mixed-script confusables) on every way in, and look-alikes from before the rule keep
//! working; reading a conversation puts it only in the reader's list; the database, its WAL
//! and shared-memory files and the lock file are private whatever the umask; make-admin and
//! remove-admin answer the original's fields; send-message checks `username`; and the
//! sign-up and send limits per client.
use crate::support;
use crate::support::bin::{
    assert_ok, run, run_with_stdin, spawn_serve, stderr, whitebeat, ServeProcess,
};
use crate::support::{Client, Resp, TestServer, CHEAP_ARGON2};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn count(s: &TestServer, table: &str) -> i64 {
    s.db()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// An account as an older version could make it beside a look-alike (straight into the
/// store, as sign-up now refuses it), with password `password123`.
fn legacy_account(s: &TestServer, username: &str) {
    let hash = whitebeat::domain::auth::PasswordHasher::new(CHEAP_ARGON2, 1)
        .hash("password123")
        .unwrap();
    s.db()
        .execute(
            "INSERT INTO users (username, email, password_hash, last_activity, date_joined)
             VALUES (?1, ?2, ?3, 1, 1)",
            rusqlite::params![
                username,
                format!("legacy-{}@example.com", hex::encode(username)),
                hash
            ],
        )
        .unwrap();
}

// ---------------------------------------------------------------- finding 4: the throttle

/// The attack: an account `Admin` (made before look-alikes were refused) logs in
/// successfully between guesses at `admin`'s password. The old throttle keyed both on
/// "admin" and each success cleared it: 12 wrong guesses with no 429.
#[test]
fn a_look_alikes_successful_logins_never_forgive_guesses_at_another_account() {
    let s = support::start_with(|c| c.login_attempts = 5);
    s.admin("admin");
    legacy_account(&s, "Admin");
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(s.login("admin", &format!("guess-{i}")).status);
        let own = s.login("Admin", "password123");
        assert_eq!(own.status, 200, "the attacker's own login: {}", own.text);
        assert_eq!(own.body["username"], "Admin");
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 7], "{statuses:?}");
    // The right password waits too, with Retry-After.
    let r = s.login("admin", "password123");
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    r.error();
}

#[test]
fn unknown_and_known_names_are_throttled_alike_and_the_address_limit_stays() {
    let s = support::start_with(|c| c.login_attempts = 3);
    s.signup("alice");
    for name in ["alice", "nobody-here"] {
        for i in 0..3 {
            assert_eq!(s.login(name, "wrongpassword").status, 401, "{name} {i}");
        }
        let r = s.login(name, "password123");
        assert_eq!(r.status, 429, "{name}: {}", r.text);
        assert!(r.header("retry-after").is_some());
    }
    // A successful login forgives only its own account: alice is still locked, and a
    // fresh account's success does not clear her count.
    s.signup("bob");
    assert_eq!(s.login("bob", "password123").status, 200);
    assert_eq!(s.login("alice", "password123").status, 429);
    // The address has 6 failures of its 12: six more, on six names, and it is locked too.
    for i in 0..6 {
        assert_eq!(s.login(&format!("ghost{i}"), "wrong").status, 401, "{i}");
    }
    assert_eq!(s.login("bob", "password123").status, 429);
}

// ---------------------------------------------------------------- finding 5: look-alikes

/// `admin` spelt with a capital, a Cyrillic а, full-width letters, mathematical bold
/// letters, and `rn` for `m`.
const ADMIN_ALIKES: [&str; 5] = [
    "Admin",
    "\u{430}dmin",
    "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}",
    "\u{1d41a}\u{1d41d}\u{1d426}\u{1d422}\u{1d427}",
    "adrnin",
];

#[test]
fn look_alike_usernames_are_refused_on_every_way_in() {
    let s = support::start();
    let root = s.admin("admin");
    let users = count(&s, "users");

    // The exact name keeps the original's message.
    let r = s.signup("admin");
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "Username already exists");
    for name in ADMIN_ALIKES {
        let r = s.signup(name);
        assert_eq!(r.status, 400, "sign-up {name}: {}", r.text);
        assert!(
            r.error().starts_with("Username already exists"),
            "{name}: {}",
            r.text
        );
        let r = s.post(
            "/api/admin/users/",
            Some(&root),
            json!({"username": name, "password": "password123", "email": "x@example.com"}),
        );
        assert_eq!(r.status, 400, "admin page {name}: {}", r.text);
        assert!(r.error().starts_with("Username already exists"));
        // The shell's ways in: createsuperuser and create-user.
        let conn = s.db();
        let e = whitebeat::cli::create_superuser(
            &conn,
            CHEAP_ARGON2,
            name,
            "y@example.com",
            "pw123456",
        )
        .unwrap_err();
        assert!(e.contains("already taken"), "{e}");
        let e = whitebeat::cli::create_account(
            &conn,
            CHEAP_ARGON2,
            name,
            None,
            "pw123456",
            false,
            false,
        )
        .unwrap_err();
        assert!(e.contains("already taken"), "{e}");
        // And none of them logs in as anything.
        assert_eq!(s.login(name, "password123").status, 401);
    }
    assert_eq!(count(&s, "users"), users, "nothing was written");
    // The real binary says so in one line.
    let o = run_with_stdin(
        whitebeat(&s.db_path()).args(["create-user", "\u{430}dmin"]),
        "password123\n",
    );
    support::bin::assert_one_line_error(&o, "already taken");
    assert_eq!(count(&s, "users"), users);

    // Names that only resemble each other loosely are still free.
    for name in ["admin2", "admins", "adm_in", "\u{430}\u{431}\u{432}"] {
        assert_eq!(s.signup(name).status, 201, "{name}");
    }
    // A look-alike of a deactivated account is refused too: the name stays theirs.
    s.signup("carol");
    whitebeat::cli::set_active(&s.db(), "carol", false).unwrap();
    assert_eq!(s.signup("CAROL").status, 400);
}

#[test]
fn look_alike_sign_ups_racing_each_other_make_one_account() {
    let s = support::start();
    let names = [
        "bob",
        "Bob",
        "BOB",
        "\u{ff42}\u{ff4f}\u{ff42}",
        "\u{1d41b}\u{1d428}\u{1d41b}",
        "b\u{43e}b",
    ];
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(|| s.signup(name).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 400).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(count(&s, "users"), 1);
}

/// Look-alikes an older version let in keep working, and new look-alikes of either are
/// refused. Rows written by hand, without a key, get theirs before a new name is checked.
#[test]
fn look_alikes_from_before_keep_logging_in_by_their_exact_names() {
    let s = support::start();
    s.user("eve");
    legacy_account(&s, "Eve");
    legacy_account(&s, "\u{435}ve");
    for name in ["eve", "Eve", "\u{435}ve"] {
        let r = s.login(name, "password123");
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        assert_eq!(r.body["username"], name);
    }
    for name in ["EVE", "\u{ff45}\u{ff56}\u{ff45}"] {
        assert_eq!(s.signup(name).status, 400, "{name}");
    }
    // Only a row without a key looks like `zed`: the check inside the write transaction
    // computes the missing keys first.
    legacy_account(&s, "Zed");
    let r = s.signup("zed");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error().starts_with("Username already exists"));
    let keys: Vec<Option<String>> = s
        .db()
        .prepare("SELECT name_key FROM users ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(keys.len(), 4);
    assert!(keys[..3].iter().all(|k| k == &keys[0]), "{keys:?}");
    assert!(keys.iter().all(Option::is_some), "{keys:?}");
    assert_ne!(keys[3], keys[0]);
}

/// A version-2 database holding `admin` and `Admin`: `migrate` fills the keys, warns naming
/// both, and both keep logging in; a third look-alike is refused.
#[test]
fn migrating_a_database_with_look_alikes_warns_and_keeps_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.sqlite3");
    let hash = whitebeat::domain::auth::PasswordHasher::new(CHEAP_ARGON2, 1)
        .hash("password123")
        .unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../schema.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../../migrations/002_invites.sql"))
            .unwrap();
        conn.execute_batch("PRAGMA user_version = 2;").unwrap();
        for (i, (name, admin)) in [("admin", 1), ("Admin", 0), ("zoe", 0)].iter().enumerate() {
            conn.execute(
                "INSERT INTO users (username, email, password_hash, is_admin, last_activity,
                                    date_joined)
                 VALUES (?1, ?2, ?3, ?4, 1, 1)",
                rusqlite::params![name, format!("user{i}@example.com"), hash, admin],
            )
            .unwrap();
        }
    }
    let o = run(whitebeat(&path).arg("migrate"));
    assert_ok(&o);
    let warning = stderr(&o);
    assert!(
        warning.contains("admin, Admin") && warning.contains("look alike"),
        "{warning}"
    );
    assert!(!warning.contains("zoe"), "{warning}");
    let path2 = path.clone();
    let s = support::start_with(move |c| c.db_path = path2);
    for name in ["admin", "Admin", "zoe"] {
        let r = s.login(name, "password123");
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        assert_eq!(r.body["username"], name);
    }
    assert_eq!(s.login("admin", "password123").body["is_admin"], true);
    assert_eq!(s.login("Admin", "password123").body["is_admin"], false);
    assert_eq!(s.signup("ADMIN").status, 400);
    assert_eq!(s.signup("\u{ff5a}oe").status, 400);
}

// ---------------------------------------------------------------- finding 11: reading

fn conversations(s: &TestServer, token: &str) -> Value {
    let r = s.get("/api/conversations/", Some(token));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

#[test]
fn reading_a_conversation_lists_it_for_the_reader_only_until_its_first_message() {
    let s = support::start();
    let mallory = s.user("mallory");
    let victim = s.user("victim");
    let bystander = s.user("bystander");

    // Mallory reads "her conversation" with the victim: it exists, as in the original...
    let r = s.get("/api/messages/?other_username=victim", Some(&mallory));
    assert_eq!(r.status, 200, "{}", r.text);
    let conv = r.body["conversation_id"].as_i64().unwrap();
    assert_eq!(r.body["count"], 0);
    let mine = conversations(&s, &mallory);
    assert_eq!(mine["count"], 1);
    let c = support::conversation_with(&mine, "victim");
    assert_eq!(c["id"], conv);
    assert_eq!(c["last_message"], Value::Null);
    // ...but it is not in the victim's list.
    assert_eq!(
        conversations(&s, &victim),
        json!({"success": true, "count": 0, "conversations": []})
    );
    // The same through a link that makes the bystander's browser read, with the cookie.
    let r = s.raw(
        "GET",
        "/api/messages/?other_username=victim",
        &[
            ("Cookie", &format!("whitebeat_session={bystander}")),
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "navigate"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(conversations(&s, &victim)["count"], 0);
    assert_eq!(conversations(&s, &bystander)["count"], 1);

    // The victim opening it too lists it for them, the same conversation.
    let r = s.get("/api/messages/?other_username=mallory", Some(&victim));
    assert_eq!(r.body["conversation_id"], conv);
    let theirs = conversations(&s, &victim);
    assert_eq!(theirs["count"], 1);
    assert_eq!(support::conversation_with(&theirs, "mallory")["id"], conv);

    // From the first message on, it is in both lists.
    let quiet = s.user("quiet");
    let r = s.get("/api/messages/?other_username=quiet", Some(&bystander));
    let quiet_conv = r.body["conversation_id"].as_i64().unwrap();
    assert_eq!(conversations(&s, &quiet)["count"], 0);
    let sent = s.send(&bystander, "quiet", "hello, quiet");
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert_eq!(sent.body["message"]["conversation_id"], quiet_conv);
    let list = conversations(&s, &quiet);
    assert_eq!(list["count"], 1);
    let c = support::conversation_with(&list, "bystander");
    assert_eq!(c["last_message"]["content"], "hello, quiet");
    assert_eq!(c["unread_count"], 1);
    // A note to self opened by reading is listed for its one member.
    let r = s.get("/api/messages/?other_username=quiet", Some(&quiet));
    assert_eq!(r.status, 200);
    assert_eq!(conversations(&s, &quiet)["count"], 2);
}

// ---------------------------------------------------------------- finding 14: file modes

/// Runs the child with this umask (set between fork and exec).
fn with_umask(cmd: &mut Command, mask: libc::mode_t) -> &mut Command {
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        })
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    whitebeat::store::with_suffix(path, suffix)
}

/// `whitebeat serve` under the given umask.
fn serve_with_umask(db: &Path, mask: libc::mode_t) -> ServeProcess {
    let mut cmd = whitebeat(db);
    with_umask(&mut cmd, mask)
        .args(["serve", "--bind", "127.0.0.1:0", "--threads", "2"])
        .stderr(Stdio::null());
    spawn_serve(&mut cmd, None)
}

#[test]
fn database_wal_shm_and_lock_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    assert_ok(&run(with_umask(&mut whitebeat(&db), 0o022).arg("migrate")));
    assert_eq!(mode(&db), 0o600, "migrate");

    let server = serve_with_umask(&db, 0o022);
    let client = Client::new(server.base.clone());
    let post = |path: &str, token: Option<&str>, body: Value| client.post(path, token, body);
    for name in ["alice", "bob"] {
        let r = post(
            "/api/signup/",
            None,
            json!({"username": name, "password": "password123"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let login = post(
        "/api/login/",
        None,
        json!({"username": "alice", "password": "password123"}),
    );
    let token = login.body["token"].as_str().unwrap().to_string();
    let r = post(
        "/api/send-message/",
        Some(&token),
        json!({"receiver": "bob", "content": "private"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    // While it serves: the database, its WAL and shared memory, and the lock file.
    for file in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
        whitebeat::ops::lock::lock_path(&db),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(server);

    // Created by createsuperuser under the most permissive umask: the same.
    let other = dir.path().join("other.sqlite3");
    let o = run(with_umask(&mut whitebeat(&other), 0)
        .args([
            "createsuperuser",
            "--noinput",
            "--username",
            "root",
            "--email",
            "r@x.org",
        ])
        .env("WHITEBEAT_SUPERUSER_PASSWORD", "password123"));
    assert_ok(&o);
    assert_eq!(mode(&other), 0o600);
}

#[test]
fn a_world_readable_database_from_before_is_made_private_on_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.sqlite3");
    assert_ok(&run(whitebeat(&db).arg("migrate")));
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(whitebeat(&db).arg("migrate"));
    assert_ok(&o);
    assert_eq!(
        mode(&db),
        0o640,
        "others lose their access, the group keeps its"
    );
    assert!(
        stderr(&o).contains("readable by every local account"),
        "{}",
        stderr(&o)
    );
    // Nothing to say the next time.
    let o = run(whitebeat(&db).arg("migrate"));
    assert_ok(&o);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

// ---------------------------------------------------------------- finding 15: admin fields

#[test]
fn make_and_remove_admin_answer_the_originals_fields() {
    let s = support::start();
    let root = s.admin("root");
    s.user("bob");
    for (path, make, body) in [
        ("/api/make-admin/", true, json!({"target_username": "bob"})),
        (
            "/api/remove-admin/",
            false,
            json!({"target_username": "bob"}),
        ),
        (
            "/api/make-admin/",
            true,
            json!({"admin_username": "root", "admin_password": "password123",
                   "target_username": "bob"}),
        ),
        (
            "/api/remove-admin/",
            false,
            json!({"admin_username": "root", "admin_password": "password123",
                   "target_username": "bob"}),
        ),
    ] {
        let token = body
            .get("admin_username")
            .is_none()
            .then_some(root.as_str());
        let r = s.post(path, token, body);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let fields: Vec<&str> = r
            .body
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for field in ["success", "message", "username", "is_admin_group", "groups"] {
            assert!(fields.contains(&field), "{path}: no {field} in {}", r.text);
        }
        assert_eq!(r.body["success"], true);
        assert_eq!(r.body["username"], "bob");
        assert_eq!(r.body["is_admin_group"], make, "{path}");
        assert_eq!(r.body["is_admin"], make);
        assert_eq!(
            r.body["groups"],
            if make { json!(["Admin"]) } else { json!([]) }
        );
        assert!(r.body["message"].as_str().unwrap().contains("bob"));
    }
}

// ---------------------------------------------------------------- finding 16: username

#[test]
fn send_message_refuses_a_username_naming_someone_else() {
    let s = support::start();
    let alice = s.user("alice");
    s.user("bob");
    let r = s.post(
        "/api/send-message/",
        Some(&alice),
        json!({"username": "bob", "receiver": "alice", "content": "spoofed"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    r.error();
    assert_eq!(count(&s, "messages"), 0, "nothing stored");
    // Naming yourself, or nobody, is fine.
    for username in [json!("alice"), json!(""), Value::Null] {
        let r = s.post(
            "/api/send-message/",
            Some(&alice),
            json!({"username": username, "receiver": "bob", "content": "hi"}),
        );
        assert_eq!(r.status, 201, "{username}: {}", r.text);
        assert_eq!(r.body["message"]["sender"], "alice");
    }
    // A wrong type is a 400, as for every field.
    let r = s.post(
        "/api/send-message/",
        Some(&alice),
        json!({"username": 7, "receiver": "bob", "content": "hi"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(count(&s, "messages"), 3);
}

// ---------------------------------------------------------------- finding 7: limits

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers))
        .parse()
        .unwrap()
}

#[test]
fn the_fourth_sign_up_from_one_address_in_an_hour_is_429() {
    let s = support::start_with(|c| {
        c.signups_per_hour = 3;
        c.trusted_proxies = whitebeat::http::proxy::TrustedProxies::parse("127.0.0.1").unwrap();
    });
    let root = s.admin("root");
    let users = count(&s, "users");
    // Refused sign-ups (a short password, a taken name) hash nothing and are not counted.
    let r = s.post(
        "/api/signup/",
        None,
        json!({"username": "typo", "password": "short"}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(s.signup("root").status, 400);
    for name in ["one", "two", "three"] {
        assert_eq!(s.signup(name).status, 201, "{name}");
    }
    let r = s.signup("four");
    assert_eq!(r.status, 429, "{}", r.text);
    assert!((1..=3600).contains(&retry_after(&r)), "{:?}", r.headers);
    r.error();
    assert_eq!(count(&s, "users"), users + 3, "no account for the fourth");
    assert_eq!(s.login("four", "password123").status, 401);
    // Another address (through the trusted proxy) has its own allowance...
    let r = s.raw(
        "POST",
        "/api/signup/",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
        br#"{"username": "four", "password": "password123"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    // ...and an admin creating accounts is not a sign-up.
    let r = s.post(
        "/api/admin/users/",
        Some(&root),
        json!({"username": "five", "password": "password123"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn the_sixth_send_in_a_minute_is_429_and_stores_nothing() {
    let s = support::start_with(|c| c.sends_per_minute = 5);
    let alice = s.user("alice");
    let bob = s.user("bob");
    // Refused sends (empty, to nobody) are not counted.
    assert_eq!(s.send(&alice, "bob", "   ").status, 400);
    assert_eq!(s.send(&alice, "ghost", "hello").status, 404);
    for i in 0..5 {
        let r = s.send(&alice, "bob", &format!("message {i}"));
        assert_eq!(r.status, 201, "{i}: {}", r.text);
    }
    let r = s.send(&alice, "bob", "one too many");
    assert_eq!(r.status, 429, "{}", r.text);
    assert!((1..=60).contains(&retry_after(&r)), "{:?}", r.headers);
    r.error();
    assert_eq!(count(&s, "messages"), 5, "the sixth was not stored");
    let page = s.get("/api/messages/?other_username=alice", Some(&bob));
    assert!(!page.text.contains("one too many"));
    // Bob has his own allowance.
    assert_eq!(s.send(&bob, "alice", "my turn").status, 201);
    assert_eq!(count(&s, "messages"), 6);
}
