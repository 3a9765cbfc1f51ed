//! Crash safety of the real binary. (1) Four threads send messages (and mark conversations
//! read) as fast as they can while the server is killed with SIGKILL at random moments,
//! more than 20 times, restarting on the same SQLite file each time. After every kill the
//! file is read directly: every message answered 201 is there with its content and id, no
//! message exists that was never sent, `PRAGMA integrity_check` is ok, and the trigger-kept
//! counters, per-user message counts, daily figures and each conversation's last message
//! agree with the rows; after every restart the API's health counters, unread counts and
//! conversation order agree with the file. (2) Disk full: under RLIMIT_FSIZE a few MB above
//! the database, sends fail with 503 JSON while reads (health, conversations, messages)
//! keep working, the file passes integrity_check, and without the limit writes work again.
use crate::support::bin::{self, ServeProcess};
use crate::support::Client;
use rand::Rng;
use rusqlite::Connection;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts `whitebeat serve` on `db`, optionally under a file-size limit, and waits for its
/// "listening on" line; its log goes to `log`.
fn start_server(db: &Path, fsize_limit: Option<u64>, log: &Path) -> ServeProcess {
    let mut cmd = bin::whitebeat(db);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--login-attempts", "1000"])
        // Four senders as fast as they can go: the per-user send limit is not under test.
        .args(["--sends-per-minute", "0", "--signups-per-hour", "0"]);
    match fsize_limit {
        // The log file would be under the limit too: discard it.
        Some(limit) => {
            cmd.stderr(Stdio::null());
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent's;
            // the limit is the child's alone (set between fork and exec).
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit as libc::rlim_t,
                        rlim_max: limit as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            bin::spawn_serve(&mut cmd, None)
        }
        None => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            cmd.stderr(f);
            bin::spawn_serve(&mut cmd, Some(log))
        }
    }
}

/// A client of a server that may be killed under it: 10 s per request, and a transport
/// failure is an `Err` (see `Client::try_request`).
fn client(base: &str) -> Client {
    Client::with_timeout(base, Duration::from_secs(10))
}

/// What the load threads tried and what the server confirmed.
#[derive(Default)]
struct Ledger {
    attempted: HashSet<String>,
    /// content -> message id, for every send answered 201.
    acked: HashMap<String, i64>,
    /// Anything other than 201/200 or a transport failure.
    unexpected: Vec<String>,
}

fn query_i64(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Reads the file directly (the server is dead) and checks it against the ledger.
fn check_file(db: &Path, ledger: &Ledger, round: usize) {
    let conn = Connection::open(db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "round {round}: integrity_check");
    let fk: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        fk.is_empty(),
        "round {round}: foreign key violations in {fk:?}"
    );

    let mut stored: HashMap<String, i64> = HashMap::new();
    let mut stmt = conn.prepare("SELECT id, content FROM messages").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    for row in rows {
        let (id, content) = row.unwrap();
        assert!(
            ledger.attempted.contains(&content),
            "round {round}: message {id} {content:?} was never sent"
        );
        assert!(
            stored.insert(content.clone(), id).is_none(),
            "round {round}: {content:?} stored twice"
        );
    }
    for (content, id) in &ledger.acked {
        assert_eq!(
            stored.get(content),
            Some(id),
            "round {round}: {content:?} was answered 201 with id {id} but is not on disk as such"
        );
    }

    let counter = |name: &str| -> i64 {
        conn.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let messages = query_i64(&conn, "SELECT COUNT(*) FROM messages");
    assert_eq!(messages, stored.len() as i64);
    assert_eq!(
        counter("messages"),
        messages,
        "round {round}: messages counter"
    );
    assert_eq!(
        counter("conversations"),
        query_i64(&conn, "SELECT COUNT(*) FROM conversations"),
        "round {round}: conversations counter"
    );
    assert_eq!(
        counter("users"),
        query_i64(&conn, "SELECT COUNT(*) FROM users"),
        "round {round}: users counter"
    );
    assert_eq!(
        counter("admins"),
        query_i64(&conn, "SELECT COUNT(*) FROM users WHERE is_admin = 1"),
        "round {round}: admins counter"
    );
    assert_eq!(
        query_i64(&conn, "SELECT COALESCE(SUM(messages), 0) FROM daily_stats"),
        messages,
        "round {round}: daily message figures"
    );
    assert_eq!(
        query_i64(
            &conn,
            "SELECT COUNT(*) FROM users u WHERE message_count !=
                 (SELECT COUNT(*) FROM messages m WHERE m.sender_id = u.id)"
        ),
        0,
        "round {round}: users.message_count disagrees with the messages"
    );
    assert_eq!(
        query_i64(
            &conn,
            "SELECT COUNT(*) FROM conversations c WHERE
                 c.last_message_id IS NOT (SELECT MAX(id) FROM messages m
                                           WHERE m.conversation_id = c.id)
              OR (c.last_message_id IS NOT NULL AND c.updated_at !=
                 (SELECT created_at FROM messages m WHERE m.id = c.last_message_id))"
        ),
        0,
        "round {round}: a conversation's last message or order disagrees with its messages"
    );
    assert_eq!(
        query_i64(
            &conn,
            "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
              WHERE NOT ((c.user1_id = m.sender_id AND c.user2_id = m.receiver_id)
                      OR (c.user2_id = m.sender_id AND c.user1_id = m.receiver_id))"
        ),
        0,
        "round {round}: a message filed under someone else's conversation"
    );
}

/// What the API should show after a restart, read from the file.
struct Expected {
    total_users: i64,
    total_messages: i64,
    total_conversations: i64,
    admin_users: i64,
    /// user id -> conversations newest first: (id, unread, last content)
    conversations: HashMap<i64, Vec<(i64, i64, Option<String>)>>,
}

fn expected_from_file(db: &Path, user_ids: &[i64]) -> Expected {
    let conn = Connection::open(db).unwrap();
    let mut conversations = HashMap::new();
    for &me in user_ids {
        let mut stmt = conn
            .prepare(
                "SELECT c.id,
                        (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id
                            AND m.receiver_id = ?1 AND m.is_read = 0),
                        (SELECT content FROM messages m WHERE m.id =
                            (SELECT MAX(id) FROM messages WHERE conversation_id = c.id))
                   FROM conversations c WHERE c.user1_id = ?1 OR c.user2_id = ?1
                  ORDER BY (SELECT COALESCE(MAX(created_at), c.created_at) FROM messages
                             WHERE conversation_id = c.id) DESC, c.id DESC",
            )
            .unwrap();
        let list = stmt
            .query_map([me], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        conversations.insert(me, list);
    }
    Expected {
        total_users: query_i64(&conn, "SELECT COUNT(*) FROM users"),
        total_messages: query_i64(&conn, "SELECT COUNT(*) FROM messages"),
        total_conversations: query_i64(&conn, "SELECT COUNT(*) FROM conversations"),
        admin_users: query_i64(&conn, "SELECT COUNT(*) FROM users WHERE is_admin = 1"),
        conversations,
    }
}

fn check_api(base: &str, tokens: &[(i64, String)], expected: &Expected, round: usize) {
    let a = client(base);
    let health = a.try_request("GET", "/api/health/", None, None).unwrap();
    assert_eq!(health.status, 200, "round {round}: health");
    let stats = &health.body["stats"];
    assert_eq!(stats["total_users"], expected.total_users, "round {round}");
    assert_eq!(
        stats["total_messages"], expected.total_messages,
        "round {round}: health total_messages vs COUNT(*)"
    );
    assert_eq!(
        stats["total_conversations"], expected.total_conversations,
        "round {round}: health total_conversations vs COUNT(*)"
    );
    assert_eq!(stats["admin_users"], expected.admin_users, "round {round}");
    for (uid, token) in tokens {
        let r = a
            .try_request("GET", "/api/conversations/", Some(token), None)
            .unwrap();
        assert_eq!(r.status, 200, "round {round}: conversations/");
        let got: Vec<(i64, i64, Option<String>)> = r.body["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_i64().unwrap(),
                    c["unread_count"].as_i64().unwrap(),
                    c["last_message"]["content"].as_str().map(String::from),
                )
            })
            .collect();
        assert_eq!(
            &got, &expected.conversations[uid],
            "round {round}: user {uid}: conversations/ (id, unread_count, last message) in \
             order vs the file"
        );
    }
}

/// One load thread: sends as `me` to `to` until the server dies; every 8th step marks the
/// conversation read instead.
fn load(
    base: String,
    token: String,
    to: String,
    tag: String,
    ledger: Arc<Mutex<Ledger>>,
    conversation: Arc<Mutex<Option<i64>>>,
) {
    let a = client(&base);
    for n in 0.. {
        if n % 8 == 7 {
            let Some(cid) = *conversation.lock().unwrap() else {
                continue;
            };
            match a.try_request(
                "POST",
                "/api/mark-as-read/",
                Some(&token),
                Some(json!({"conversation_id": cid})),
            ) {
                Err(_) => return,
                Ok(r) if r.status == 200 => {}
                Ok(r) => ledger
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("mark-as-read: {} {}", r.status, r.body)),
            }
            continue;
        }
        let content = format!("{tag}-{n}-{}", "x".repeat(n % 300));
        ledger.lock().unwrap().attempted.insert(content.clone());
        match a.try_request(
            "POST",
            "/api/send-message/",
            Some(&token),
            Some(json!({"receiver": to, "content": content})),
        ) {
            Err(_) => return,
            Ok(r) if r.status == 201 => {
                assert_eq!(r.body["message"]["content"], content.as_str());
                let id = r.body["message"]["id"].as_i64().unwrap();
                *conversation.lock().unwrap() = r.body["message"]["conversation_id"].as_i64();
                ledger.lock().unwrap().acked.insert(content, id);
            }
            Ok(r) => ledger
                .lock()
                .unwrap()
                .unexpected
                .push(format!("send: {} {}", r.status, r.body)),
        }
    }
}

#[test]
fn sigkill_during_concurrent_sends_loses_nothing_acknowledged() {
    const KILLS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.sqlite3");
    let log = dir.path().join("server.log");
    let started = Instant::now();

    let mut server = start_server(&db, None, &log);
    let names = ["ann", "ben", "cat", "dan"];
    let tokens: Vec<String> = names.iter().map(|n| client(&server.base).user(n)).collect();
    server.terminate();
    let user_ids: Vec<i64> = {
        let conn = Connection::open(&db).unwrap();
        names
            .iter()
            .map(|n| {
                conn.query_row("SELECT id FROM users WHERE username = ?1", [n], |r| {
                    r.get(0)
                })
                .unwrap()
            })
            .collect()
    };
    let with_ids: Vec<(i64, String)> = user_ids.iter().copied().zip(tokens.clone()).collect();
    // ann <-> ben and cat <-> dan, both ways.
    let partners = [1usize, 0, 3, 2];
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let conversations: Vec<Arc<Mutex<Option<i64>>>> =
        (0..4).map(|_| Arc::new(Mutex::new(None))).collect();
    let mut rng = rand::thread_rng();
    let mut acked_per_round = Vec::new();

    for round in 0..=KILLS {
        let mut server = start_server(&db, None, &log);
        let base = server.base.clone();
        let expected = expected_from_file(&db, &user_ids);
        check_api(&base, &with_ids, &expected, round);
        if round == KILLS {
            server.terminate();
            break;
        }
        let before = ledger.lock().unwrap().acked.len();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (base, token) = (base.clone(), tokens[t].clone());
                let to = names[partners[t]].to_string();
                let tag = format!("r{round}-t{t}");
                let (ledger, conv) = (ledger.clone(), conversations[t].clone());
                std::thread::spawn(move || load(base, token, to, tag, ledger, conv))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        server.kill9();
        for t in threads {
            t.join().unwrap();
        }
        let ledger = ledger.lock().unwrap();
        assert!(
            ledger.unexpected.is_empty(),
            "round {round}: unexpected answers under load: {:?}",
            ledger.unexpected
        );
        acked_per_round.push(ledger.acked.len() - before);
        check_file(&db, &ledger, round);
    }
    let total: usize = acked_per_round.iter().sum();
    assert!(
        total >= 100,
        "too few sends were acknowledged to prove anything: {acked_per_round:?}"
    );
    eprintln!(
        "{KILLS} kills in {:?}; messages acknowledged per round: {acked_per_round:?}",
        started.elapsed()
    );
}

/// Size of the database and its WAL, in bytes.
fn db_bytes(db: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    [db.to_path_buf(), wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[test]
fn disk_full_fails_writes_with_503_and_keeps_reads_working() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.sqlite3");
    let log = dir.path().join("server.log");

    // Set up users and sessions without a limit.
    let mut server = start_server(&db, None, &log);
    let base = server.base.clone();
    let alice = client(&base).user("alice");
    let bob = client(&base).user("bob");
    // A second session of alice's, to be used only for reading once the disk is full.
    let alice_reader = client(&base).token("alice", "password123");
    let a = client(&base);
    let r = a
        .try_request(
            "POST",
            "/api/send-message/",
            Some(&alice),
            Some(json!({"receiver": "bob", "content": "before the limit"})),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    server.terminate();
    // The reader session was last used two minutes ago, so its next use wants to refresh
    // its expiry (a write).
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE sessions SET last_seen = last_seen - 120000000 WHERE token_hash = ?1",
            [whitebeat::domain::auth::hash_token(&alice_reader)],
        )
        .unwrap();
    }

    let limit = db_bytes(&db) + 3 * 1024 * 1024;
    let mut server = start_server(&db, Some(limit), &log);
    let base = server.base.clone();
    let a = client(&base);
    let mut acked: Vec<(i64, String)> = Vec::new();
    let mut refused = None;
    for n in 0..3000 {
        let content = format!("{n} {}", "y".repeat(8000));
        let r = a
            .try_request(
                "POST",
                "/api/send-message/",
                Some(&alice),
                Some(json!({"receiver": "bob", "content": content})),
            )
            .expect("the server survives a full disk");
        if r.status == 201 {
            acked.push((r.body["message"]["id"].as_i64().unwrap(), content));
            continue;
        }
        refused = Some(r);
        break;
    }
    let refused = refused.expect("sends eventually fail under the file-size limit");
    assert_eq!(
        refused.status, 503,
        "a write past the disk's end is 503: {}",
        refused.body
    );
    assert!(refused.body["error"].is_string(), "{}", refused.body);
    assert!(!acked.is_empty(), "some sends fit before the limit");
    // Further writes keep failing cleanly.
    for _ in 0..5 {
        let r = a
            .try_request(
                "POST",
                "/api/send-message/",
                Some(&alice),
                Some(json!({"receiver": "bob", "content": "z".repeat(8000)})),
            )
            .unwrap();
        assert!(
            matches!(r.status, 201 | 503),
            "send on a full disk: {} {}",
            r.status,
            r.body
        );
        assert!(r.status == 201 || r.body["error"].is_string());
        if r.status == 201 {
            acked.push((
                r.body["message"]["id"].as_i64().unwrap(),
                r.body["message"]["content"].as_str().unwrap().to_string(),
            ));
        }
    }

    // Reads keep working.
    let health = a.try_request("GET", "/api/health/", None, None).unwrap();
    assert_eq!(health.status, 200, "health on a full disk: {}", health.body);
    assert_eq!(
        health.body["stats"]["total_messages"],
        acked.len() as i64 + 1
    );
    let page = a
        .try_request(
            "GET",
            "/api/messages/?other_username=bob&limit=5",
            Some(&alice),
            None,
        )
        .unwrap();
    assert_eq!(page.status, 200, "messages/ on a full disk: {}", page.body);
    assert_eq!(
        page.body["messages"][4]["content"],
        acked.last().unwrap().1.as_str()
    );
    let convs = a
        .try_request("GET", "/api/conversations/", Some(&bob), None)
        .unwrap();
    assert_eq!(convs.status, 200, "conversations/ on a full disk");
    // Bob has unread messages: reading them wants a write (the read mark), which cannot be
    // made; the page is still served, and the messages stay unread.
    let unread = a
        .try_request(
            "GET",
            "/api/messages/?other_username=alice&limit=5",
            Some(&bob),
            None,
        )
        .unwrap();
    assert_eq!(
        unread.status, 200,
        "bob's unread page on a full disk: {}",
        unread.body
    );
    assert_eq!(unread.body["messages"][4]["is_read"], false);
    // A session that wants its periodic refresh must still be able to read.
    let stale_read = a
        .try_request("GET", "/api/conversations/", Some(&alice_reader), None)
        .unwrap();
    server.terminate();

    {
        let conn = Connection::open(&db).unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "integrity after the disk filled up");
        for (id, content) in &acked {
            let stored: String = conn
                .query_row("SELECT content FROM messages WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .unwrap_or_else(|e| panic!("acknowledged message {id} missing: {e}"));
            assert_eq!(&stored, content);
        }
        assert_eq!(
            query_i64(&conn, "SELECT COUNT(*) FROM messages"),
            acked.len() as i64 + 1,
            "nothing refused was stored"
        );
        assert_eq!(
            query_i64(&conn, "SELECT value FROM counters WHERE name = 'messages'"),
            acked.len() as i64 + 1
        );
    }

    // Without the limit, writes work again.
    let mut server = start_server(&db, None, &log);
    let base = server.base.clone();
    let a = client(&base);
    let r = a
        .try_request(
            "POST",
            "/api/send-message/",
            Some(&alice),
            Some(json!({"receiver": "bob", "content": "after the limit"})),
        )
        .unwrap();
    assert_eq!(
        r.status, 201,
        "a send after the space came back: {}",
        r.body
    );
    let health = a.try_request("GET", "/api/health/", None, None).unwrap();
    assert_eq!(
        health.body["stats"]["total_messages"],
        acked.len() as i64 + 2
    );
    server.terminate();

    assert_eq!(
        stale_read.status, 200,
        "on a full disk, a read with a session last used over a minute ago failed ({}: {}): \
         authenticate() refreshes the session's expiry with a write and propagates its \
         failure, so every returning user is locked out of reading",
        stale_read.status, stale_read.body
    );
}
