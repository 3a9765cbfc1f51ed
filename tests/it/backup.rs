//! Backups and restores, through the built binary against a real server: `backup` while
//! four threads send messages keeps every message acknowledged before it started, and the
//! copy restores and serves; `restore` refuses to run under a server, refuses damaged and
//! foreign files before replacing anything, and keeps the replaced database; a second
//! `serve` on one database is refused; scheduled backups keep exactly the newest N, each
//! sound, survive a vanished backup directory, and stop at once on SIGTERM; `backup` never
//! overwrites a file.
use crate::support::{self, Client};

use crate::support::bin::{
    self, assert_ok, assert_one_line_error, run, stderr, stdout, ServeProcess,
};

use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary as every test runs it, with its info log (the schedule is followed there).
fn whitebeat(db: &Path) -> Command {
    let mut c = bin::whitebeat(db);
    c.env("WHITEBEAT_LOG", "info");
    c
}

fn backup(db: &Path, dest: &Path) -> Output {
    run(whitebeat(db).arg("backup").arg(dest))
}

fn restore(db: &Path, file: &Path) -> Output {
    run(whitebeat(db).arg("restore").arg(file))
}

/// An in-process server on an existing database file.
fn server_on(db: &Path) -> support::TestServer {
    let db = db.to_path_buf();
    support::start_with(move |c| c.db_path = db)
}

fn open_ro(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn integrity(path: &Path) -> String {
    open_ro(path)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn count(path: &Path, table: &str) -> i64 {
    open_ro(path)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// A server on `dir/wb.sqlite3` where alice wrote "in the backup" to bob, and a backup of
/// that as `dir/copy.sqlite3`. Returns the database, the server, alice's token and the copy.
fn chat_with_a_backup(dir: &Path) -> (PathBuf, support::TestServer, String, PathBuf) {
    let db = dir.join("wb.sqlite3");
    let s = server_on(&db);
    let alice = s.user("alice");
    s.user("bob");
    assert_eq!(s.send(&alice, "bob", "in the backup").status, 201);
    let copy = dir.join("copy.sqlite3");
    assert_ok(&backup(&db, &copy));
    (db, s, alice, copy)
}

/// Every message in a database file, by id.
fn messages(path: &Path) -> HashMap<i64, String> {
    let conn = open_ro(path);
    let mut st = conn.prepare("SELECT id, content FROM messages").unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Adds `n` messages of a few hundred bytes straight through the store, so the database is
/// many backup steps long.
fn seed_messages(db: &Path, from: &str, to: &str, n: usize) {
    use whitebeat::store::{self, chat::NewMessage};
    let conn = store::open(db, whitebeat::config::SyncMode::Normal).unwrap();
    let a = store::users::find_id(&conn, from).unwrap().unwrap();
    let b = store::users::find_id(&conn, to).unwrap().unwrap();
    let filler = "x".repeat(300);
    support::write_in_batches(&conn, n, |tx, i| {
        let content = format!("seed {i} {filler}");
        let m = NewMessage {
            sender_id: a,
            receiver_id: b,
            content: &content,
            now: store::now_us(),
        };
        store::chat::insert_message(tx, &m).unwrap();
    });
}

#[test]
fn backup_under_write_load_keeps_every_message_acknowledged_before_it() {
    let s = support::start_with(|c| c.threads = 8);
    let db = s.db_path();
    let senders: Vec<(String, String)> = (0..4)
        .map(|i| {
            (
                s.user(&format!("sender{i}")),
                format!("sender{}", (i + 1) % 4),
            )
        })
        .collect();
    seed_messages(&db, "sender0", "sender1", 60_000);

    // Each acknowledged send: (id, content, when the 201 arrived).
    let acked: Arc<Mutex<Vec<(i64, String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let base = s.base.clone();
    let threads: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(t, (token, to))| {
            let (acked, stop, base) = (acked.clone(), stop.clone(), base.clone());
            std::thread::spawn(move || {
                let client = Client::new(base);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let content = format!("load {t}-{n}");
                    n += 1;
                    let r = client.send(&token, &to, &content);
                    match r.status {
                        201 => {
                            let id = r.body["message"]["id"]
                                .as_i64()
                                .unwrap_or_else(|| panic!("no id in {}", r.body));
                            acked.lock().unwrap().push((id, content, Instant::now()));
                        }
                        status => panic!("send answered {status}"),
                    }
                }
            })
        })
        .collect();

    // Let the load get going, then back up while it continues.
    while acked.lock().unwrap().len() < 1000 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.sqlite3");
    let started = Instant::now();
    let sent_before = acked.lock().unwrap().len();
    let o = backup(&db, &copy);
    let took = started.elapsed();
    let sent_during = acked.lock().unwrap().len() - sent_before;
    // And a little after, so the server is still busy when the backup is checked.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("integrity_check ok"), "{out}");
    assert!(out.contains("4 users"), "{out}");
    assert!(sent_during > 0, "the backup did not overlap any send");
    // Self-contained: no journal files beside it, and nothing else left in the directory.
    assert_eq!(names(dir.path()), ["copy.sqlite3"]);
    // Private: it holds every password hash and message.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&copy).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(integrity(&copy), "ok");

    // Restore the copy into a fresh database and serve it.
    let fresh = dir.path().join("restored.sqlite3");
    let o = restore(&fresh, &copy);
    assert_ok(&o);
    assert!(stdout(&o).contains("4 users"), "{}", stdout(&o));
    assert_eq!(integrity(&fresh), "ok");
    let restored = messages(&fresh);
    let acked = acked.lock().unwrap();
    let must_have: Vec<_> = acked.iter().filter(|(_, _, at)| *at < started).collect();
    assert!(must_have.len() >= 1000);
    for (id, content, _) in &must_have {
        assert_eq!(
            restored.get(id),
            Some(content),
            "message {id} was acknowledged before the backup started but is not in it"
        );
    }
    let seeded = restored.values().filter(|c| c.starts_with("seed ")).count();
    assert_eq!(seeded, 60_000);
    // Nothing in the copy was never acknowledged (every send was answered before the end).
    let all: HashMap<i64, &String> = acked.iter().map(|(id, c, _)| (*id, c)).collect();
    for (id, content) in &restored {
        if !content.starts_with("seed ") {
            assert_eq!(all.get(id), Some(&content), "message {id} was never sent");
        }
    }
    let db_bytes = std::fs::metadata(&copy).unwrap().len();
    println!(
        "backup of a {:.1} MB database under load took {:.2} s; {} messages acknowledged \
         before it were all in the copy ({} were acknowledged while it ran, {} of them in it)",
        db_bytes as f64 / 1e6,
        took.as_secs_f64(),
        must_have.len(),
        sent_during,
        restored.len() - seeded - must_have.len(),
    );
    drop(acked);
    drop(s);

    // The restored database serves, and the messages are there through the API too.
    let r = server_on(&fresh);
    let l = r.login("sender1", "password123");
    assert_eq!(l.status, 200, "{}", l.text);
    let token = l.body["token"].as_str().unwrap().to_string();
    let page = r.get(
        "/api/messages/?other_username=sender0&limit=5",
        Some(&token),
    );
    assert_eq!(page.status, 200, "{}", page.text);
    let newest = page.body["messages"][4]["id"].as_i64().unwrap();
    assert_eq!(
        restored.get(&newest),
        Some(
            &page.body["messages"][4]["content"]
                .as_str()
                .unwrap()
                .to_string()
        )
    );
    let health = r.get("/api/health/", None);
    assert_eq!(health.body["stats"]["total_messages"], restored.len());
}

#[test]
fn restore_refuses_under_a_server_and_keeps_the_replaced_database() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut s, alice, copy) = chat_with_a_backup(dir.path());
    assert_eq!(s.send(&alice, "bob", "after the backup").status, 201);

    // Under a running server: refused, nothing changed.
    let before = names(dir.path());
    let o = restore(&db, &copy);
    assert_one_line_error(
        &o,
        &format!(
            "a server is running on this database (pid {})",
            std::process::id()
        ),
    );
    assert_eq!(names(dir.path()), before);
    assert_eq!(s.get("/api/health/", None).status, 200);
    assert_eq!(count(&db, "messages"), 2);
    s.stop();

    // Damaged and foreign files are refused before anything is replaced.
    let db_bytes = std::fs::read(&db).unwrap();
    // The page header of the messages table, overwritten.
    let root: usize = open_ro(&copy)
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'messages'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut corrupt = std::fs::read(&copy).unwrap();
    let page = 4096;
    for b in &mut corrupt[page * (root - 1)..page * (root - 1) + 12] {
        *b = 0x5a;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("corrupt.sqlite3", corrupt, "cannot restore"),
        (
            "text.sqlite3",
            b"not a database at all\n".repeat(500),
            "not a readable",
        ),
        ("empty.sqlite3", Vec::new(), "not a White Beat database"),
    ];
    let mut refused = Vec::new();
    for (name, bytes, needle) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        refused.push((p, needle));
    }
    let foreign = dir.path().join("foreign.sqlite3");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (x); INSERT INTO notes VALUES (1);")
        .unwrap();
    refused.push((foreign, "not a White Beat database"));
    // A version-2 database without the table version 2 added.
    let partial = dir.path().join("partial.sqlite3");
    std::fs::copy(&copy, &partial).unwrap();
    Connection::open(&partial)
        .unwrap()
        .execute_batch("DROP TABLE invites;")
        .unwrap();
    refused.push((partial, "no table invites"));
    let newer = dir.path().join("newer.sqlite3");
    std::fs::copy(&copy, &newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    refused.push((newer, "newer"));
    refused.push((dir.path().join("missing.sqlite3"), "no such file"));
    let before = names(dir.path());
    for (file, needle) in &refused {
        let o = restore(&db, file);
        assert_one_line_error(&o, needle);
        assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
        assert_eq!(names(dir.path()), before, "{}", file.display());
        assert!(
            std::fs::read(&db).unwrap() == db_bytes,
            "{}",
            file.display()
        );
    }
    // The corrupt file really is damaged: it is refused for its content, not its name.
    assert_ne!(integrity(&refused[0].0), "ok");

    // Stopped: the restore goes through and keeps the old database aside; the new file
    // has the old one's permissions.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = restore(&db, &copy);
    assert_ok(&o);
    let mode = std::fs::metadata(&db).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    let kept: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("wb.sqlite3.before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", names(dir.path()));
    let kept = dir.path().join(&kept[0]);
    assert!(
        stdout(&o).contains(&kept.display().to_string()),
        "{}",
        stdout(&o)
    );
    // No leftovers: no scratch copy, and no stale journal of the old file beside the new.
    for n in names(dir.path()) {
        assert!(!n.starts_with('.'), "scratch file left: {n}");
        assert!(!n.starts_with("wb.sqlite3-"), "stale journal left: {n}");
    }
    let now: Vec<String> = messages(&db).into_values().collect();
    assert_eq!(now, ["in the backup"]);
    let mut old: Vec<String> = messages(&kept).into_values().collect();
    old.sort();
    assert_eq!(old, ["after the backup", "in the backup"]);
    assert_eq!(integrity(&kept), "ok");

    // The restored database serves; and restoring the kept file undoes the restore.
    let s = server_on(&db);
    assert_eq!(s.login("alice", "password123").status, 200);
    drop(s);
    assert_ok(&restore(&db, &kept));
    assert_eq!(messages(&db).len(), 2);
}

#[test]
fn restore_waits_for_other_programs_to_close_the_database_so_undo_works() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut s, alice, copy) = chat_with_a_backup(dir.path());
    assert_eq!(
        s.send(&alice, "bob", "only in the old database").status,
        201
    );
    s.stop();

    // A sqlite3 shell (or Litestream) still has it open, with commits in its WAL.
    let other = Connection::open(&db).unwrap();
    other
        .execute_batch("PRAGMA journal_mode = WAL; UPDATE users SET status = 'busy'")
        .unwrap();
    let before = names(dir.path());
    let o = restore(&db, &copy);
    assert_one_line_error(&o, "is open in another program");
    assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
    assert_eq!(names(dir.path()), before);
    drop(other);

    // Closed: the restore works, and restoring the kept file undoes it, WAL commits and all.
    let o = restore(&db, &copy);
    assert_ok(&o);
    assert_eq!(count(&db, "messages"), 1);
    let kept = stdout(&o)
        .split("kept as ")
        .nth(1)
        .and_then(|rest| rest.split(" (restore it to undo)").next())
        .unwrap_or_else(|| panic!("no kept file named: {}", stdout(&o)))
        .to_string();
    assert_ok(&restore(&db, Path::new(&kept)));
    assert_eq!(count(&db, "messages"), 2);
    let busy: i64 = open_ro(&db)
        .query_row(
            "SELECT COUNT(*) FROM users WHERE status = 'busy'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(busy, 2);
}

#[test]
fn a_second_server_on_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let s = server_on(&db);
    let o = run(whitebeat(&db).args(["serve", "--bind", "127.0.0.1:0"]));
    assert_one_line_error(
        &o,
        &format!(
            "a server is running on this database (pid {})",
            std::process::id()
        ),
    );
    assert!(!stdout(&o).contains("listening"), "{}", stdout(&o));
    // Another spelling of the same path finds the same lock; in-process too.
    let dotted = dir.path().join(".").join("wb.sqlite3");
    let o = run(whitebeat(&dotted).args(["serve", "--bind", "127.0.0.1:0"]));
    assert_one_line_error(&o, "a server is running on this database");
    let mut config = support::test_config(dir.path());
    config.db_path = db.clone();
    assert!(whitebeat::serve(config).is_err());
    // Admin commands do not take the lock: they work while the server runs.
    let o = run(whitebeat(&db)
        .args(["createsuperuser", "--noinput", "--username", "root"])
        .env("WHITEBEAT_SUPERUSER_PASSWORD", "correct-horse"));
    assert_ok(&o);
    assert_eq!(s.login("root", "correct-horse").status, 200);
    drop(s);
    // Once the first has stopped, a new one starts.
    let server = start_server(&db, &[], &dir.path().join("log"));
    stop_server(server);
}

#[test]
fn backup_refuses_an_existing_destination() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let s = server_on(&db);
    s.user("alice");
    let dest = dir.path().join("taken.sqlite3");
    std::fs::write(&dest, b"precious").unwrap();
    let before = names(dir.path());
    let o = backup(&db, &dest);
    assert_one_line_error(&o, "already exists");
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    assert_eq!(names(dir.path()), before, "nothing left behind");
    // Also a destination in a missing directory, and a missing database.
    let o = backup(&db, &dir.path().join("nowhere/x.sqlite3"));
    assert_one_line_error(&o, "does not exist");
    let o = backup(&dir.path().join("missing.sqlite3"), &dir.path().join("y"));
    assert_one_line_error(&o, "does not exist");
    assert!(!dir.path().join("missing.sqlite3").exists());
}

/// `whitebeat serve` as a child process, logging to a file.
fn start_server(db: &Path, args: &[&str], log: &Path) -> ServeProcess {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = whitebeat(db);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--threads", "2"])
        .args(args)
        .stderr(err);
    bin::spawn_serve(&mut cmd, Some(log))
}

/// SIGTERM; asserts a clean exit and returns how long it took.
fn stop_server(mut server: ServeProcess) -> Duration {
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status:?}: {}", server.log());
    started.elapsed()
}

#[test]
fn scheduled_backups_keep_the_newest_n_each_sound() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    // Files that only look alike are never deleted.
    for other in ["notes.txt", "whitebeat-manual.sqlite3"] {
        std::fs::write(backups.join(other), b"mine").unwrap();
    }
    let args = [
        "--backup-dir",
        backups.to_str().unwrap(),
        "--backup-every",
        "0.0003",
        "--backup-keep",
        "2",
    ];
    let server = start_server(&db, &args, &dir.path().join("log"));
    let client = Client::new(server.base.clone());
    let signup = |name: &str| assert_eq!(client.signup(name).status, 201);
    signup("alice");
    server.wait_log("backup written to", 4);
    signup("bob");
    // The two newest are both taken after bob signed up.
    server.wait_log("backup written to", 6);
    let took = stop_server(server);
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.matches("old backup").count() >= 3, "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    let left = names(&backups);
    let own: Vec<&String> = left.iter().filter(|n| n.ends_with("Z.sqlite3")).collect();
    assert_eq!(own.len(), 2, "{left:?}");
    assert_eq!(
        left.len(),
        4,
        "only the two newest and the other files: {left:?}"
    );
    assert!(left.contains(&"notes.txt".to_string()));
    assert!(left.contains(&"whitebeat-manual.sqlite3".to_string()));
    for name in own {
        let p = backups.join(name);
        assert_eq!(integrity(&p), "ok", "{name}");
        assert_eq!(count(&p, "users"), 2, "{name}");
        // Named after a time, and the newest the log mentions.
        assert!(log.contains(name.as_str()), "{name} not in the log");
    }
}

#[test]
fn a_failing_scheduled_backup_is_logged_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let args = [
        "--backup-dir",
        backups.to_str().unwrap(),
        "--backup-every",
        "0.0003",
    ];
    let server = start_server(&db, &args, &dir.path().join("log"));
    server.wait_log("backup written to", 1);
    std::fs::remove_dir_all(&backups).unwrap();
    server.wait_log("scheduled backup failed", 1);
    let health = Client::new(server.base.clone()).get("/api/health/", None);
    assert_eq!(health.status, 200);
    std::fs::create_dir(&backups).unwrap();
    server.wait_log("backup written to", 2);
    assert_eq!(names(&backups).len(), 1);
    stop_server(server);

    // Bad settings are refused at start, in one line.
    for (args, needle) in [
        (vec!["--backup-dir", "/nonexistent/dir"], "/nonexistent/dir"),
        (
            vec!["--backup-dir", ".", "--backup-every", "0"],
            "--backup-every",
        ),
        (
            vec!["--backup-dir", ".", "--backup-every", "soon"],
            "--backup-every",
        ),
        (
            vec!["--backup-dir", ".", "--backup-every", "3e15"],
            "at most ten years",
        ),
        (
            vec!["--backup-dir", ".", "--backup-keep", "0"],
            "--backup-keep",
        ),
    ] {
        let o = run(whitebeat(&db)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(&args)
            .env("WHITEBEAT_LOG", "warn"));
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}
