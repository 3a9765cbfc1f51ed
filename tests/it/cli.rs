//! The `whitebeat` command line, run as the built binary against a database in a temp dir:
//! `migrate`, `createsuperuser --noinput`, `make-admin`/`remove-admin`, `changepassword`
//! from stdin, `backup`, the refusal of a newer schema and of unusable paths, `serve` on a
//! busy port, `--help`/`--version`, and `serve` stopping cleanly (exit 0) on SIGTERM.
use crate::support;
use crate::support::bin::{
    assert_ok, assert_one_line_error, run, run_with_stdin, stderr, stdout, whitebeat, BIN,
};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

fn createsuperuser(db: &Path, username: &str, email: &str, password: &str) -> Output {
    run(whitebeat(db)
        .args([
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            email,
        ])
        .env("WHITEBEAT_SUPERUSER_PASSWORD", password))
}

fn user_row(db: &Path, username: &str) -> Option<whitebeat::store::users::User> {
    let conn = whitebeat::store::open(db, whitebeat::config::SyncMode::Normal).unwrap();
    whitebeat::store::users::find_by_username(&conn, username).unwrap()
}

/// A temporary database holding one admin, `root` with password `correct-horse`.
fn db_with_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    assert_ok(&createsuperuser(
        &db,
        "root",
        "root@example.com",
        "correct-horse",
    ));
    (dir, db)
}

/// A test server on an existing database file.
fn server_on(db: &Path) -> support::TestServer {
    let db = db.to_path_buf();
    support::start_with(move |c| c.db_path = db)
}

#[test]
fn a_version_1_database_with_data_migrates_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v1.sqlite3");
    {
        // A database as the first release left it.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(include_str!("../../schema.sql"))
            .unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO users (username, email, password_hash, last_activity, date_joined)
             VALUES ('old', 'old@example.com', 'x', 1, 1);",
        )
        .unwrap();
    }
    let o = run(whitebeat(&db).arg("migrate"));
    assert_ok(&o);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, whitebeat::store::SCHEMA_VERSION);
    let (name, invite): (String, Option<i64>) = conn
        .query_row("SELECT username, invite_id FROM users", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((name.as_str(), invite), ("old", None));
    let invites: i64 = conn
        .query_row("SELECT COUNT(*) FROM invites", [], |r| r.get(0))
        .unwrap();
    assert_eq!(invites, 0);
    // And the invite commands work on it.
    assert_ok(&run(whitebeat(&db).args(["invite", "create"])));
}

/// The columns of every table of a database, for comparing layouts.
fn layout(conn: &rusqlite::Connection) -> Vec<(String, Vec<String>)> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let columns = conn
                .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
                .unwrap()
                .query_map([&t], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (t, columns)
        })
        .collect()
}

/// What every original endpoint (and the admin ones) answers to each user, minus what
/// moves by itself between two calls (the request log's figures). `reads` are the
/// conversations read, as (reader, other): reading opens a conversation, so only those that
/// exist are read.
fn answers(
    s: &support::TestServer,
    tokens: &[(&str, &str)],
    reads: &[(&str, &str)],
) -> Vec<(String, serde_json::Value)> {
    let token = |name: &str| tokens.iter().find(|(n, _)| *n == name).unwrap().1;
    let mut out = Vec::new();
    let mut get = |label: &str, path: &str, token: Option<&str>| {
        let r = s.get(path, token);
        assert!(r.status < 500, "{path}: {}", r.text);
        out.push((format!("{label} {path} {}", r.status), r.body));
    };
    get("anyone", "/api/health/", None);
    get("anyone", "/api/signup/", None);
    for (name, t) in tokens {
        get(name, "/api/users/", Some(t));
        get(name, "/api/users/?search=a&limit=2", Some(t));
        get(name, "/api/conversations/", Some(t));
    }
    for (reader, other) in reads {
        let t = Some(token(reader));
        get(reader, &format!("/api/messages/?other_username={other}"), t);
        get(
            reader,
            &format!("/api/messages/?other_username={other}&limit=1"),
            t,
        );
    }
    let root = token("root");
    get("root", "/api/admin/users/", Some(root));
    get("root", "/api/admin/invites/", Some(root));
    for (name, token) in tokens {
        let r = s.post("/api/verify-admin/", Some(*token), serde_json::json!({}));
        out.push((format!("{name} verify-admin {}", r.status), r.body));
    }
    let mut stats = s.get("/api/admin/stats/", Some(root)).body;
    for moving in ["api_calls_today", "api_usage", "recent_logs"] {
        stats.as_object_mut().unwrap().remove(moving);
    }
    out.push(("root admin/stats".into(), stats));
    out
}

/// Login answers without the new token.
fn logins(s: &support::TestServer, names: &[&str]) -> Vec<(u16, serde_json::Value)> {
    names
        .iter()
        .map(|name| {
            let mut r = s.login(name, "password123");
            if let Some(body) = r.body.as_object_mut() {
                body.remove("token");
            }
            (r.status, r.body)
        })
        .collect()
}

/// A version-2 database full of data (made by the API, then given exactly version 2's
/// layout) migrates, and every original endpoint answers as it did. The one deliberate
/// difference: an empty conversation from before version 3 (nobody knows who opened it) is
/// listed for neither member until one of them opens it again, which brings it back as it
/// was.
#[test]
fn a_version_2_database_full_of_data_migrates_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v2.sqlite3");
    assert_ok(&createsuperuser(
        &db,
        "root",
        "root@example.com",
        "password123",
    ));
    let s = server_on(&db);
    let root = s.login("root", "password123").body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let carol = s.user("carol");
    let dave = s.user("dave");
    s.user("erin");
    for (from, to, text) in [
        (&alice, "bob", "hello bob"),
        (&bob, "alice", "hi alice"),
        (&alice, "bob", "how are you?"),
        (&carol, "alice", "from carol"),
        (&alice, "alice", "a note to self"),
        (&root, "carol", "welcome"),
    ] {
        assert_eq!(s.send(from, to, text).status, 201);
    }
    // Read state, an admin, an invite, a deactivated user, and alice's empty conversation
    // with dave.
    assert_eq!(
        s.get("/api/messages/?other_username=alice", Some(&bob))
            .status,
        200
    );
    let r = s.post(
        "/api/make-admin/",
        Some(&root),
        serde_json::json!({"target_username": "carol"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.post(
        "/api/admin/invites/",
        Some(&root),
        serde_json::json!({"note": "for the choir", "max_uses": 3}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.post(
        "/api/admin/deactivate/",
        Some(&root),
        serde_json::json!({"username": "erin"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let empty = s.get("/api/messages/?other_username=dave", Some(&alice));
    let empty_id = empty.body["conversation_id"].as_i64().unwrap();

    let names = ["root", "alice", "bob", "carol", "dave", "erin"];
    let tokens = [
        ("root", root.as_str()),
        ("alice", alice.as_str()),
        ("bob", bob.as_str()),
        ("carol", carol.as_str()),
        ("dave", dave.as_str()),
    ];
    let reads = [
        ("alice", "bob"),
        ("bob", "alice"),
        ("alice", "carol"),
        ("carol", "alice"),
        ("alice", "alice"),
        ("root", "carol"),
        ("carol", "root"),
        ("alice", "dave"),
    ];
    let before_logins = logins(&s, &names);
    answers(&s, &tokens, &reads); // the first reads mark messages read
    let before = answers(&s, &tokens, &reads);
    let mut s = s;
    s.stop();
    drop(s);

    // Version 2's layout exactly: what version 3 added, taken away.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DROP INDEX users_name_key;
             ALTER TABLE users DROP COLUMN name_key;
             ALTER TABLE conversations DROP COLUMN user1_opened;
             ALTER TABLE conversations DROP COLUMN user2_opened;
             PRAGMA user_version = 2;",
        )
        .unwrap();
        let v2 = rusqlite::Connection::open_in_memory().unwrap();
        v2.execute_batch(include_str!("../../schema.sql")).unwrap();
        v2.execute_batch(include_str!("../../migrations/002_invites.sql"))
            .unwrap();
        assert_eq!(layout(&conn), layout(&v2));
    }
    let o = run(whitebeat(&db).arg("migrate"));
    assert_ok(&o);
    assert_eq!(stderr(&o), "", "nothing to warn about");

    let s = server_on(&db);
    let after = answers(&s, &tokens, &reads[..7]);
    // The empty conversation is listed for nobody now...
    let mut expected = before.clone();
    // (alice's read of it would open it: left out until then.)
    expected.retain(|(label, _)| !label.starts_with("alice /api/messages/?other_username=dave"));
    for (label, body) in expected.iter_mut() {
        if label.starts_with("alice /api/conversations/") {
            let list = body["conversations"].as_array_mut().unwrap();
            list.retain(|c| c["id"] != empty_id);
            body["count"] = list.len().into();
        }
    }
    assert_ne!(expected, before, "alice's list had the empty conversation");
    for ((label, want), (got_label, got)) in expected.iter().zip(&after) {
        assert_eq!(label, got_label);
        assert_eq!(want, got, "{label}");
    }
    assert_eq!(expected.len(), after.len());
    // ...until alice opens it again (the same conversation): then all is as before.
    let again = s.get("/api/messages/?other_username=dave", Some(&alice));
    assert_eq!(again.body["conversation_id"], empty_id);
    assert_eq!(answers(&s, &tokens, &reads), before);
    assert_eq!(logins(&s, &names), before_logins);
    // And it keeps working: a send, a read mark, a new account, a look-alike refused.
    assert_eq!(s.send(&dave, "alice", "hello at last").status, 201);
    let r = s.post(
        "/api/mark-as-read/",
        Some(&alice),
        serde_json::json!({"conversation_id": empty_id}),
    );
    assert_eq!(r.body["marked_read"], 1, "{}", r.text);
    assert_eq!(s.signup("frank").status, 201);
    assert_eq!(s.signup("Alice").status, 400);
}

#[test]
fn migrate_twice_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let first = run(whitebeat(&db).arg("migrate"));
    assert_ok(&first);
    assert!(db.exists());
    let version = format!("version {}", whitebeat::store::SCHEMA_VERSION);
    assert!(stdout(&first).contains(&version), "{}", stdout(&first));
    let second = run(whitebeat(&db).arg("migrate"));
    assert_ok(&second);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, whitebeat::store::SCHEMA_VERSION);
    // The environment variable works as the flag does.
    let other = dir.path().join("from-env.sqlite3");
    let mut cmd = Command::new(BIN);
    cmd.arg("migrate")
        .env("WHITEBEAT_DB", &other)
        .env("WHITEBEAT_LOG", "warn");
    assert_ok(&run(&mut cmd));
    assert!(other.exists());
}

#[test]
fn createsuperuser_makes_an_admin_who_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let o = createsuperuser(&db, "root", "root@example.com", "correct-horse");
    assert_ok(&o);
    assert!(stdout(&o).contains("root"), "{}", stdout(&o));
    let row = user_row(&db, "root").unwrap();
    assert!(row.is_admin);
    assert_eq!(row.email, "root@example.com");
    assert!(row.password_hash.starts_with("$argon2id$"), "hashed");

    let s = server_on(&db);
    let r = s.login("root", "correct-horse");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["is_admin"], true);
    assert_eq!(r.body["role"], "admin");
    let token = r.body["token"].as_str().unwrap();
    assert_eq!(s.get("/api/admin/stats/", Some(token)).status, 200);
    assert_eq!(s.login("root", "wrong-horse").status, 401);
}

#[test]
fn createsuperuser_refuses_duplicates_and_bad_input() {
    let (_dir, db) = db_with_root();

    let o = createsuperuser(&db, "root", "other@example.com", "correct-horse");
    assert_one_line_error(&o, "root");
    let o = createsuperuser(&db, "root2", "root@example.com", "correct-horse");
    assert_one_line_error(&o, "email");
    let o = createsuperuser(&db, "shorty", "shorty@example.com", "short");
    assert_one_line_error(&o, "8");
    let o = createsuperuser(&db, "bad name", "bad@example.com", "correct-horse");
    assert_one_line_error(&o, "username");
    let o = createsuperuser(&db, "mailless", "not-an-email", "correct-horse");
    assert_one_line_error(&o, "email");
    // --noinput without the password variable.
    let o = run(whitebeat(&db).args(["createsuperuser", "--noinput", "--username", "nopw"]));
    assert_one_line_error(&o, "WHITEBEAT_SUPERUSER_PASSWORD");
    for name in ["root2", "shorty", "bad name", "mailless", "nopw"] {
        assert!(user_row(&db, name).is_none(), "{name} was created");
    }
}

#[test]
fn make_admin_and_remove_admin() {
    let (_dir, db) = db_with_root();
    let s = server_on(&db);
    let bob = s.user("bob");
    assert_eq!(s.get("/api/admin/stats/", Some(&bob)).status, 403);

    assert_ok(&run(whitebeat(&db).args(["make-admin", "bob"])));
    assert!(user_row(&db, "bob").unwrap().is_admin);
    // The running server sees it on bob's next request.
    assert_eq!(s.get("/api/admin/stats/", Some(&bob)).status, 200);

    assert_ok(&run(whitebeat(&db).args(["remove-admin", "bob"])));
    assert!(!user_row(&db, "bob").unwrap().is_admin);
    assert_eq!(s.get("/api/admin/stats/", Some(&bob)).status, 403);

    // root is the last admin.
    let o = run(whitebeat(&db).args(["remove-admin", "root"]));
    assert_one_line_error(&o, "last admin");
    assert!(user_row(&db, "root").unwrap().is_admin);

    for cmd in [
        "make-admin",
        "remove-admin",
        "changepassword",
        "deactivate",
        "activate",
    ] {
        let o = run(whitebeat(&db).args([cmd, "ghost"]));
        assert_one_line_error(&o, "ghost");
    }
}

#[test]
fn deactivate_and_activate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let s = server_on(&db);
    let bob = s.user("bob");
    assert_ok(&run(whitebeat(&db).args(["deactivate", "bob"])));
    assert_eq!(s.get("/api/users/", Some(&bob)).status, 401);
    assert_eq!(s.login("bob", "password123").status, 401);
    assert_ok(&run(whitebeat(&db).args(["activate", "bob"])));
    assert_eq!(s.login("bob", "password123").status, 200);
}

#[test]
fn changepassword_reads_stdin_and_ends_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let s = server_on(&db);
    let bob = s.user("bob");

    let o = run_with_stdin(
        whitebeat(&db).args(["changepassword", "bob"]),
        "a-new-password\n",
    );
    assert_ok(&o);
    assert_eq!(
        s.get("/api/users/", Some(&bob)).status,
        401,
        "sessions ended"
    );
    assert_eq!(s.login("bob", "password123").status, 401);
    assert_eq!(s.login("bob", "a-new-password").status, 200);

    // Too short: refused, and the password stays.
    let o = run_with_stdin(whitebeat(&db).args(["changepassword", "bob"]), "short\n");
    assert_one_line_error(&o, "8");
    assert_eq!(s.login("bob", "a-new-password").status, 200);
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("future.sqlite3");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    for args in [
        vec!["migrate"],
        vec!["make-admin", "x"],
        vec!["serve", "--bind", "127.0.0.1:0"],
    ] {
        let o = run(whitebeat(&db).args(&args));
        assert_one_line_error(&o, "99");
        assert!(stderr(&o).contains("newer"), "{args:?}: {}", stderr(&o));
    }
    // Untouched.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);
    // And the library refuses it too.
    assert!(whitebeat::serve(whitebeat::Config::new(&db)).is_err());
}

#[test]
fn unusable_database_paths_fail_with_one_line() {
    let missing_dir = PathBuf::from("/nonexistent/dir/x.db");
    for args in [vec!["migrate"], vec!["serve", "--bind", "127.0.0.1:0"]] {
        let o = run(whitebeat(&missing_dir).args(&args));
        assert_one_line_error(&o, "/nonexistent/dir");
    }
    // A directory where the file should be.
    let dir = tempfile::tempdir().unwrap();
    let o = run(whitebeat(dir.path()).arg("migrate"));
    assert!(!o.status.success());
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    // A file that is not a database.
    let junk = dir.path().join("junk.sqlite3");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let o = run(whitebeat(&junk).arg("migrate"));
    assert!(!o.status.success());
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn serve_on_a_busy_port_fails() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let o = run(whitebeat(&db).args(["serve", "--bind", &addr]));
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains(&addr), "{}", stderr(&o));
    assert!(!stdout(&o).contains("listening"), "{}", stdout(&o));
}

#[test]
fn help_lists_the_environment_variables_and_version_works() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(Command::new(BIN).arg("--help"));
    assert_ok(&o);
    let top = stdout(&o);
    for needle in [
        "WHITEBEAT_DB",
        "serve",
        "migrate",
        "createsuperuser",
        "backup",
    ] {
        assert!(top.contains(needle), "{needle} missing from --help:\n{top}");
    }
    let o = run(whitebeat(&dir.path().join("x")).args(["serve", "--help"]));
    assert_ok(&o);
    let serve = stdout(&o);
    for var in [
        "WHITEBEAT_DB",
        "WHITEBEAT_BIND",
        "WHITEBEAT_THREADS",
        "WHITEBEAT_SYNC",
        "WHITEBEAT_CORS_ORIGINS",
        "WHITEBEAT_BODY_LIMIT",
        "WHITEBEAT_SESSION_DAYS",
        "WHITEBEAT_LOGIN_ATTEMPTS",
        "WHITEBEAT_MAX_STREAMS",
        "WHITEBEAT_TRUSTED_PROXY",
        "WHITEBEAT_PUBLIC_URL",
        "WHITEBEAT_LOG_LEVEL",
    ] {
        assert!(
            serve.contains(var),
            "{var} missing from serve --help:\n{serve}"
        );
    }
    let o = run(Command::new(BIN).arg("--version"));
    assert_ok(&o);
    assert_eq!(
        stdout(&o).trim(),
        format!("whitebeat {}", env!("CARGO_PKG_VERSION"))
    );
    // An unknown command is an error, not a crash.
    let o = run(Command::new(BIN).arg("frobnicate"));
    assert!(!o.status.success());
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
}

#[test]
fn backup_writes_a_database_with_the_users() {
    let (dir, db) = db_with_root();
    let s = server_on(&db);
    let alice = s.user("alice");
    s.user("bob");
    assert_eq!(s.send(&alice, "bob", "kept in the backup").status, 201);

    // While the server is running.
    let copy = dir.path().join("copy.sqlite3");
    let o = run(whitebeat(&db).arg("backup").arg(&copy));
    assert_ok(&o);
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let users: Vec<String> = conn
        .prepare("SELECT username FROM users ORDER BY username")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(users, ["alice", "bob", "root"]);
    let content: String = conn
        .query_row("SELECT content FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(content, "kept in the backup");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, whitebeat::store::SCHEMA_VERSION);
    drop(conn);

    // The copy serves: the users can log in on it.
    drop(s);
    let s2 = server_on(&copy);
    assert_eq!(s2.login("alice", "password123").status, 200);
    assert_eq!(s2.login("root", "correct-horse").status, 200);

    // An existing destination is not overwritten.
    let o = run(whitebeat(&db).arg("backup").arg(&copy));
    assert_one_line_error(&o, "exists");
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn serve_prints_its_address_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let mut child = whitebeat(&db)
        .args(["serve", "--bind", "127.0.0.1:0", "--threads", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("serve printed nothing");
        }
    };
    let prefix = "White Beat listening on http://";
    assert!(line.starts_with(prefix), "{line:?}");
    let addr = line[prefix.len()..].trim().to_string();
    let client = support::Client::new(format!("http://{addr}"));
    let health = client.get("/api/health/", None).body;
    assert_eq!(health["status"], "healthy");
    // Sign up through it, so there is something to flush.
    let r = client.signup("alice");
    assert_eq!(r.status, 201);

    let pid = child.id() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("serve did not stop on SIGTERM");
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(status.code(), Some(0));
    // Stopped: nothing listens any more, and the data is on disk.
    assert!(std::net::TcpStream::connect(&addr).is_err());
    assert!(user_row(&db, "alice").is_some());
    let conn = whitebeat::store::open(&db, whitebeat::config::SyncMode::Normal).unwrap();
    assert!(
        whitebeat::store::stats::log_rows(&conn).unwrap() >= 2,
        "the request log was flushed on shutdown"
    );
}
