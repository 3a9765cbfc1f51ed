//! `whitebeat import-django`, run as the built binary on a database laid out the way Django
//! 4.2 creates the original's tables: the printed counts, then the real server on the
//! result (old passwords log in and are upgraded to Argon2id, the Admin group makes the
//! admin, conversations, messages, read state and times as they were, the health totals),
//! the choices for duplicate and empty emails, the other column names the original used,
//! and the refusals: a database that has users, a missing table or column, a bad row after
//! writing began (one transaction: nothing stays), the Django file itself as the target.
use crate::support;
use crate::support::bin::{run, stderr, stdout, whitebeat};
use crate::support::conversation_with;

use rusqlite::Connection;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use whitebeat::config::SyncMode;

/// Django 4.2's `CREATE TABLE`s for the auth tables and the original's `api` models.
const DJANGO_AUTH: &str = r#"
CREATE TABLE "auth_group" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "name" varchar(150) NOT NULL UNIQUE);
CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "password" varchar(128) NOT NULL, "last_login" datetime NULL, "is_superuser" bool NOT NULL,
    "username" varchar(150) NOT NULL UNIQUE, "last_name" varchar(150) NOT NULL,
    "email" varchar(254) NOT NULL, "is_staff" bool NOT NULL, "is_active" bool NOT NULL,
    "date_joined" datetime NOT NULL, "first_name" varchar(150) NOT NULL);
CREATE TABLE "auth_user_groups" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "user_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED,
    "group_id" integer NOT NULL REFERENCES "auth_group" ("id") DEFERRABLE INITIALLY DEFERRED);
CREATE UNIQUE INDEX "auth_user_groups_user_id_group_id_94350c0c_uniq"
    ON "auth_user_groups" ("user_id", "group_id");
"#;

const DJANGO_PROFILE: &str = r#"
CREATE TABLE "api_userprofile" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "role" varchar(20) NOT NULL, "joined_date" datetime NOT NULL,
    "is_active_session" bool NOT NULL, "last_activity" datetime NOT NULL,
    "total_messages" integer NOT NULL, "avatar" varchar(200) NULL,
    "status" varchar(200) NOT NULL,
    "user_id" integer NOT NULL UNIQUE REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED);
"#;

const DJANGO_CONVERSATION: &str = r#"
CREATE TABLE "api_conversation" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "created_at" datetime NOT NULL, "updated_at" datetime NOT NULL,
    "user1_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED,
    "user2_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED);
CREATE UNIQUE INDEX "api_conversation_user1_id_user2_id_6b2d5d2b_uniq"
    ON "api_conversation" ("user1_id", "user2_id");
"#;

const DJANGO_MESSAGE: &str = r#"
CREATE TABLE "api_message" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "content" text NOT NULL, "is_read" bool NOT NULL, "created_at" datetime NOT NULL,
    "conversation_id" bigint NOT NULL REFERENCES "api_conversation" ("id") DEFERRABLE INITIALLY DEFERRED,
    "receiver_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED,
    "sender_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED);
"#;

/// Made the way Django makes them, with Python:
/// `base64.b64encode(hashlib.pbkdf2_hmac("sha256", password, salt, iterations))`.
/// (Django 4.2 uses 600,000 iterations; fewer keep the test quick in a debug build.)
const ALICE_HASH: &str =
    "pbkdf2_sha256$1200$aliceSaltQ9wErTy7uIoP1$N4x8K2htVW8+GH/5qPDKxA2NxtirohLXC1dXZll3EAI=";
const BOB_HASH: &str =
    "pbkdf2_sha256$1000$bobSaltZx8cVbNm4LkJh2G$qGtbOi6WTDcS7EoOfu4LmzNuginQUXUE/u498+vxedk=";
const CAROL_HASH: &str =
    "pbkdf2_sha256$1000$carolSaltAs5dFgHj6KlQw3$Rfg4l733e65ToWipbXfUzHTVcwrfwjJtZlXQuPaLWv4=";
/// `pässwörd ünicode`: Django hashes the UTF-8 bytes.
const ERIN_HASH: &str =
    "pbkdf2_sha256$1000$uniSalt0123456789abcdE$1KWVsF0o/aqcdHf4gzHDPeqtJRWfmJEGZR6UhCUMzm4=";

/// The original's data: alice is in the Admin group; bob is a superuser outside it whose
/// email repeats alice's in other case; carol has an empty email and no profile; dave has
/// Django's unusable password; erin has a non-ASCII password. Conversations 1 and 2 are the
/// same pair both ways round; the pairs of message 13 (bob, carol) and 15 (alice's note to
/// self, marked unread) have no conversation row.
const DJANGO_DATA: &str = r#"
INSERT INTO auth_group (id, name) VALUES (1, 'Admin'), (2, 'Editors');
INSERT INTO auth_user (id, password, last_login, is_superuser, username, last_name, email,
                       is_staff, is_active, date_joined, first_name) VALUES
 (1, 'ALICE', '2024-03-01 12:00:00.000000', 0, 'alice', 'Liddell', 'alice@example.com',
  1, 1, '2024-01-05 09:00:00.250000', 'Alice'),
 (2, 'BOB', NULL, 1, 'bob', '', 'ALICE@Example.com', 1, 1, '2024-01-06 10:00:00', ''),
 (3, 'CAROL', '2024-02-20 18:30:00+00:00', 0, 'carol', '', '', 0, 1,
  '2024-02-01 08:00:00.000000', ''),
 (4, '!Yx3vq0J2kU9yS0FqP1ZbN4sWm8TcR6hLeD5gA7oB', NULL, 0, 'dave', '', 'dave@example.com',
  0, 1, '2024-02-01 09:00:00.000000', ''),
 (5, 'ERIN', NULL, 0, 'erin', '', 'erin@example.com', 0, 1, '2024-02-02 09:00:00', '');
INSERT INTO auth_user_groups (user_id, group_id) VALUES (1, 1), (2, 2);
INSERT INTO api_userprofile (role, joined_date, is_active_session, last_activity,
                             total_messages, avatar, status, user_id) VALUES
 ('admin', '2024-01-05 09:00:00', 0, '2024-03-02 08:05:00.000000', 7, NULL, 'Available', 1),
 ('user', '2024-01-06 10:00:00', 0, '2024-03-01 12:36:00.000000', 2, NULL, 'Busy', 2),
 ('user', '2024-02-01 09:00:00', 0, '2024-02-01 09:00:00', 0, NULL, '', 4),
 ('user', '2024-02-02 09:00:00', 0, '2024-02-02 09:00:00', 0, NULL, 'Hi', 5);
INSERT INTO api_conversation (id, created_at, updated_at, user1_id, user2_id) VALUES
 (1, '2024-03-01 12:00:00.000000', '2024-03-01 12:34:56.123456', 2, 1),
 (2, '2024-02-28 07:00:00.000000', '2024-03-01 12:35:00.000000', 1, 2),
 (5, '2024-03-02 07:59:00.000000', '2024-03-02 08:00:00.000000', 1, 3);
INSERT INTO api_message (id, content, is_read, created_at, conversation_id, receiver_id,
                         sender_id) VALUES
 (10, 'Hello Bob', 1, '2024-03-01 12:34:56.123456', 1, 2, 1),
 (11, 'Hi Alice', 0, '2024-03-01 12:35:00+00:00', 2, 1, 2),
 (12, 'Are you there?', 0, '2024-03-01 12:36:00.500000', 1, 1, 2),
 (13, 'Carol, hi from Bob', 0, '2024-03-01 13:00:00', 1, 3, 2),
 (14, 'Hey from Carol', 0, '2024-03-02 08:00:00.000000', 5, 1, 3),
 (15, 'Note to self', 0, '2024-03-02 09:00:00.000000', 5, 1, 1);
"#;

fn with_hashes(sql: &str) -> String {
    sql.replace("'ALICE'", &format!("'{ALICE_HASH}'"))
        .replace("'BOB'", &format!("'{BOB_HASH}'"))
        .replace("'CAROL'", &format!("'{CAROL_HASH}'"))
        .replace("'ERIN'", &format!("'{ERIN_HASH}'"))
}

/// A Django database at `dir/db.sqlite3` built from the given statements.
fn django_db(dir: &Path, sql: &[&str]) -> PathBuf {
    let path = dir.join("db.sqlite3");
    let conn = Connection::open(&path).unwrap();
    for part in sql {
        conn.execute_batch(&with_hashes(part)).unwrap();
    }
    path
}

fn full_django_db(dir: &Path) -> PathBuf {
    django_db(
        dir,
        &[
            DJANGO_AUTH,
            DJANGO_PROFILE,
            DJANGO_CONVERSATION,
            DJANGO_MESSAGE,
            DJANGO_DATA,
        ],
    )
}

/// `whitebeat --db DB import-django SOURCE`, with no inherited configuration.
fn import(db: &Path, source: &Path) -> Output {
    run(whitebeat(db).arg("import-django").arg(source))
}

/// A failure with one line on stderr that mentions every one of `needles`.
fn assert_fails_with(o: &Output, needles: &[&str]) {
    assert!(!o.status.success(), "expected failure: {}", stdout(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err:?}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{needle:?} not in {:?}",
            lines[0]
        );
    }
}

/// Rows in (users, conversations, messages, daily_stats) and the counters' totals.
fn contents(db: &Path) -> ([i64; 4], whitebeat::store::stats::Counters) {
    let conn = whitebeat::store::open(db, SyncMode::Normal).unwrap();
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let rows = [
        count("users"),
        count("conversations"),
        count("messages"),
        count("daily_stats"),
    ];
    (rows, whitebeat::store::stats::counters(&conn).unwrap())
}

fn migrated(db: &Path) {
    whitebeat::cli::open_db(db, SyncMode::Normal).unwrap();
}

fn stored_hash(db: &Path, username: &str) -> String {
    let conn = whitebeat::store::open(db, SyncMode::Normal).unwrap();
    whitebeat::store::users::find_by_username(&conn, username)
        .unwrap()
        .unwrap()
        .password_hash
}

fn login_token(s: &support::TestServer, username: &str, password: &str) -> Value {
    let r = s.login(username, password);
    assert_eq!(r.status, 200, "login {username}: {}", r.text);
    r.body
}

#[test]
fn imports_the_original_and_old_passwords_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let source = full_django_db(dir.path());
    let db = dir.path().join("whitebeat.sqlite3");
    let out = import(&db, &source);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("5 users (1 admin), 4 conversations, 6 messages."),
        "{}",
        stdout(&out)
    );
    // The choices made are told, naming who they concern.
    let warnings = stderr(&out);
    assert!(
        warnings.contains("bob (ALICE@Example.com -> bob@whitebeat.com)"),
        "{warnings}"
    );
    assert!(
        warnings.contains("1 user without a password White Beat can check")
            && warnings.contains("dave"),
        "{warnings}"
    );
    assert!(
        warnings.contains("1 superuser outside the Admin group") && warnings.contains("bob"),
        "{warnings}"
    );
    assert!(
        warnings.contains("1 conversation repeated a pair"),
        "{warnings}"
    );
    assert!(
        warnings.contains("2 pairs of users had messages but no conversation row"),
        "{warnings}"
    );
    assert!(stored_hash(&db, "alice").starts_with("pbkdf2_sha256$1200$"));
    // Last activity: the profile's, or else the last login (before anyone logs in here).
    let user = |name: &str| {
        let conn = whitebeat::store::open(&db, SyncMode::Normal).unwrap();
        whitebeat::store::users::find_by_username(&conn, name)
            .unwrap()
            .unwrap()
    };
    assert_eq!(user("carol").last_activity, 1_708_453_800_000_000);
    assert_eq!(user("alice").last_activity, 1_709_366_700_000_000);

    let s = support::start_with({
        let db = db.clone();
        move |c| c.db_path = db
    });
    let health = s.get("/api/health/", None);
    assert_eq!(
        health.body["stats"],
        json!({"total_users": 5, "total_messages": 6, "total_conversations": 4,
               "admin_users": 1})
    );

    // The old password logs in; the Admin group makes the admin; the hash is upgraded.
    let alice = login_token(&s, "alice", "alice-old-pass");
    assert_eq!(alice["user_id"], 1);
    assert_eq!(alice["role"], "admin");
    assert_eq!(alice["is_admin"], true);
    assert_eq!(alice["groups"], json!(["Admin"]));
    assert_eq!(alice["email"], "alice@example.com");
    let upgraded = stored_hash(&db, "alice");
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    let again = login_token(&s, "alice", "alice-old-pass");
    assert_eq!(stored_hash(&db, "alice"), upgraded, "upgraded once only");
    assert_eq!(s.login("alice", "alice-old-pas").status, 401);
    // The upgrade ended no session: the first token still works.
    let alice_token = alice["token"].as_str().unwrap();
    assert_eq!(s.get("/api/conversations/", Some(alice_token)).status, 200);
    assert_eq!(again["is_admin"], true);

    // A superuser outside the Admin group is no admin; a repeated email became the default.
    let bob = login_token(&s, "bob", "bob-old-password");
    assert_eq!(bob["is_admin"], false);
    assert_eq!(bob["role"], "user");
    assert_eq!(bob["email"], "bob@whitebeat.com");
    assert_eq!(s.login("bob", "alice-old-pass").status, 401);
    let carol = login_token(&s, "carol", "carol-old-pass");
    assert_eq!(carol["email"], "carol@whitebeat.com");
    let erin = login_token(&s, "erin", "pässwörd ünicode");
    assert_eq!(erin["user_id"], 5);
    // An unusable Django password never logs in, whatever is tried.
    for password in [
        "",
        "!",
        "Yx3vq0J2kU9yS0FqP1ZbN4sWm8TcR6hLeD5gA7oB",
        "dave-password",
    ] {
        assert_ne!(s.login("dave", password).status, 200);
    }
    assert!(stored_hash(&db, "dave").starts_with('!'));

    // Conversations: the pair merged into id 1, newest first, with unread counts; the
    // messages without a conversation row (bob to carol, alice's note to self) got new ones.
    let list = s.get("/api/conversations/", Some(alice_token)).body;
    assert_eq!(list["count"], 3, "{list}");
    let order: Vec<i64> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [7, 5, 1]);
    let with_bob = conversation_with(&list, "bob");
    assert_eq!(with_bob["unread_count"], 2);
    assert_eq!(with_bob["other_user"]["status"], "Busy");
    assert_eq!(
        with_bob["last_message"],
        json!({"content": "Are you there?", "sender": "bob",
               "created_at": "2024-03-01T12:36:00.500000+00:00"})
    );
    assert_eq!(with_bob["updated_at"], "2024-03-01T12:36:00.500000+00:00");
    let with_carol = conversation_with(&list, "carol");
    assert_eq!(with_carol["unread_count"], 1);
    assert_eq!(
        with_carol["other_user"]["status"],
        "Hey there! I am using White Beat"
    );
    assert_eq!(with_carol["last_message"]["content"], "Hey from Carol");
    // The note to self is read, whatever the original said.
    let conn = whitebeat::store::open(&db, SyncMode::Normal).unwrap();
    let note_read: bool = conn
        .query_row("SELECT is_read FROM messages WHERE id = 15", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(note_read);

    // Messages with their ids, times and read state as they were; reading marks them.
    let page = s
        .get("/api/messages/?other_username=bob", Some(alice_token))
        .body;
    assert_eq!(page["conversation_id"], 1);
    let shown: Vec<(i64, &str, bool, &str)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["sender"].as_str().unwrap(),
                m["is_read"].as_bool().unwrap(),
                m["created_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (10, "alice", true, "2024-03-01T12:34:56.123456+00:00"),
            (11, "bob", false, "2024-03-01T12:35:00.000000+00:00"),
            (12, "bob", false, "2024-03-01T12:36:00.500000+00:00"),
        ]
    );
    let list = s.get("/api/conversations/", Some(alice_token)).body;
    assert_eq!(conversation_with(&list, "bob")["unread_count"], 0);

    // The message without a conversation row landed in a new conversation of its pair.
    let carol_token = carol["token"].as_str().unwrap();
    let carol_list = s.get("/api/conversations/", Some(carol_token)).body;
    assert_eq!(carol_list["count"], 2, "{carol_list}");
    let with_bob = conversation_with(&carol_list, "bob");
    assert_eq!(with_bob["id"], 6);
    assert_eq!(with_bob["unread_count"], 1);
    assert_eq!(with_bob["last_message"]["content"], "Carol, hi from Bob");

    // Sending goes on after the imported ids.
    let sent = s.send(alice_token, "bob", "Back online");
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert_eq!(sent.body["message"]["id"], 16);

    // Profile counts where the original kept them, counted messages where it had none.
    let stats = s.get("/api/admin/stats/", Some(alice_token));
    assert_eq!(stats.status, 200, "{}", stats.text);
    let recent = stats.body["recent_users"].as_array().unwrap().clone();
    let total = |name: &str| {
        recent.iter().find(|u| u["username"] == name).unwrap()["total_messages"].clone()
    };
    assert_eq!(total("alice"), 8, "7 from the profile, 1 sent here");
    assert_eq!(total("carol"), 1);
    assert_eq!(total("dave"), 0);
    let joined = recent.iter().find(|u| u["username"] == "alice").unwrap()["joined"].clone();
    assert_eq!(joined, "2024-01-05");
    // The daily figures the writers keep were filled in from the imported times.
    let day: (i64, i64) = conn
        .query_row(
            "SELECT signups, messages FROM daily_stats WHERE day = '2024-03-01'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(day, (0, 4));
    let signups: i64 = conn
        .query_row(
            "SELECT signups FROM daily_stats WHERE day = '2024-02-01'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(signups, 2);
    assert_eq!(user("alice").last_name, "Liddell");
    assert!(user("bob").is_superuser);
}

#[test]
fn the_other_column_names_of_the_original_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let source = django_db(
        dir.path(),
        &[
            DJANGO_AUTH,
            r#"
CREATE TABLE "api_userprofile" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "user_id" integer NOT NULL UNIQUE, "status" varchar(200) NOT NULL,
    "is_online" bool NOT NULL, "last_seen" datetime NOT NULL, "message_count" integer NOT NULL);
CREATE TABLE "api_conversation" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "user1_id" integer NOT NULL, "user2_id" integer NOT NULL, "created_at" datetime NOT NULL,
    "updated_at" datetime NOT NULL);
CREATE TABLE "api_message" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "conversation_id" bigint NOT NULL, "sender_id" integer NOT NULL,
    "receiver_id" integer NOT NULL, "content" text NOT NULL,
    "timestamp" datetime NOT NULL, "is_read" bool NOT NULL);
INSERT INTO auth_user (id, password, last_login, is_superuser, username, last_name, email,
                       is_staff, is_active, date_joined, first_name) VALUES
 (7, 'ALICE', NULL, 0, 'alice', '', '', 0, 1, '2023-12-31 23:59:59.999999', ''),
 (9, 'BOB', NULL, 0, 'bob', '', '', 0, 0, '2024-01-01 00:00:00', '');
INSERT INTO api_userprofile (user_id, status, is_online, last_seen, message_count) VALUES
 (7, 'Here', 1, '2024-05-05 05:05:05.000005+00:00', 41);
INSERT INTO api_conversation (id, user1_id, user2_id, created_at, updated_at) VALUES
 (3, 9, 7, '2024-05-01 00:00:00', '2024-05-01 00:00:00');
INSERT INTO api_message (id, conversation_id, sender_id, receiver_id, content, timestamp,
                         is_read) VALUES
 (100, 3, 7, 9, 'one', '2024-05-01 10:00:00', 1),
 (101, 3, 9, 7, 'two', '2024-05-01 10:00:01.5', 0);
"#,
        ],
    );
    let db = dir.path().join("wb.sqlite3");
    let out = import(&db, &source);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 users (0 admins), 1 conversation, 2 messages."),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("no user is in the Admin group"));
    let conn = whitebeat::store::open(&db, SyncMode::Normal).unwrap();
    let alice = whitebeat::store::users::find_by_username(&conn, "alice")
        .unwrap()
        .unwrap();
    assert_eq!(
        (alice.id, alice.status.as_str(), alice.message_count),
        (7, "Here", 41)
    );
    assert_eq!(alice.last_activity, 1_714_885_505_000_005);
    assert_eq!(alice.date_joined, 1_704_067_199_999_999);
    let bob = whitebeat::store::users::find_by_username(&conn, "bob")
        .unwrap()
        .unwrap();
    assert!(!bob.is_active);
    assert_eq!(bob.message_count, 1);
    assert_eq!(bob.last_activity, bob.date_joined);
    let (rows, _) = contents(&db);
    assert_eq!(&rows[..3], &[2, 1, 2]);
    let (pair, last, times): ((i64, i64), i64, (i64, i64)) = conn
        .query_row(
            "SELECT user1_id, user2_id, last_message_id, m.created_at, c.updated_at
               FROM conversations c JOIN messages m ON m.id = c.last_message_id",
            [],
            |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?, (r.get(3)?, r.get(4)?))),
        )
        .unwrap();
    assert_eq!((pair, last), ((7, 9), 101));
    assert_eq!(times, (1_714_557_601_500_000, 1_714_557_601_500_000));
}

/// The original let `alice` and `Alice` (and a Cyrillic `аlice`) both in: all are imported,
/// each logs in by its exact name, the import names them, and no new account can take a
/// name like theirs. An empty conversation (nobody knows who opened it) is listed for
/// neither member until one of them opens it.
#[test]
fn look_alike_usernames_are_imported_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let source = django_db(
        dir.path(),
        &[
            DJANGO_AUTH,
            DJANGO_PROFILE,
            DJANGO_CONVERSATION,
            DJANGO_MESSAGE,
            r#"
INSERT INTO auth_user (id, password, last_login, is_superuser, username, last_name, email,
                       is_staff, is_active, date_joined, first_name) VALUES
 (1, 'ALICE', NULL, 0, 'alice', '', 'alice@example.com', 0, 1, '2024-01-05 09:00:00', ''),
 (2, 'ALICE', NULL, 0, 'Alice', '', 'impostor@example.com', 0, 1, '2024-01-06 09:00:00', ''),
 (3, 'ALICE', NULL, 0, 'аlice', '', 'cyrillic@example.com', 0, 1, '2024-01-07 09:00:00', ''),
 (4, 'BOB', NULL, 0, 'bob', '', 'bob@example.com', 0, 1, '2024-01-08 09:00:00', '');
INSERT INTO api_conversation (id, created_at, updated_at, user1_id, user2_id) VALUES
 (1, '2024-03-01 12:00:00', '2024-03-01 12:00:00', 2, 4);
"#,
        ],
    );
    let db = dir.path().join("wb.sqlite3");
    let out = import(&db, &source);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("4 users"), "{}", stdout(&out));
    let warnings = stderr(&out);
    assert!(
        warnings.contains("usernames that look alike")
            && warnings.contains("alice and Alice and аlice"),
        "{warnings}"
    );
    assert!(!warnings.contains("bob and"), "{warnings}");

    let db2 = db.clone();
    let s = support::start_with(move |c| c.db_path = db2);
    for name in ["alice", "Alice", "аlice"] {
        let body = login_token(&s, name, "alice-old-pass");
        assert_eq!(body["username"], name);
    }
    for name in ["ALICE", "ａｌｉｃｅ"] {
        let r = s.signup(name);
        assert_eq!(r.status, 400, "{name}: {}", r.text);
        assert!(r.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Username already exists"));
    }
    // The empty conversation of Alice and bob: in nobody's list, until bob opens it.
    let bob = login_token(&s, "bob", "bob-old-password")["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.get("/api/conversations/", Some(&bob)).body["count"], 0);
    let page = s.get("/api/messages/?other_username=Alice", Some(&bob));
    assert_eq!(page.body["conversation_id"], 1);
    let list = s.get("/api/conversations/", Some(&bob)).body;
    assert_eq!(conversation_with(&list, "Alice")["id"], 1);
}

#[test]
fn a_database_with_users_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let source = full_django_db(dir.path());
    let db = dir.path().join("wb.sqlite3");
    let conn = whitebeat::cli::open_db(&db, SyncMode::Normal).unwrap();
    whitebeat::cli::create_superuser(
        &conn,
        whitebeat::config::Argon2Cost {
            memory_kib: 64,
            iterations: 1,
        },
        "root",
        "root@example.com",
        "password123",
    )
    .unwrap();
    drop(conn);
    let before = contents(&db);
    let out = import(&db, &source);
    assert_fails_with(&out, &["already has users or messages", "empty database"]);
    let after = contents(&db);
    assert_eq!(before.0, after.0);
    assert_eq!(after.0[0], 1);
    assert_eq!(after.1.users, 1);
    assert_eq!(after.1.admins, 1);
    assert_eq!(after.1.messages, 0);
}

#[test]
fn an_import_under_a_running_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = full_django_db(dir.path());
    let db = dir.path().join("wb.sqlite3");
    let server = support::start_with({
        let db = db.clone();
        move |c| c.db_path = db
    });
    let out = import(&db, &source);
    assert_fails_with(
        &out,
        &["cannot import", "a server is running on this database"],
    );
    drop(server);
    assert_eq!(contents(&db).0, [0, 0, 0, 0]);
    let out = import(&db, &source);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_missing_table_or_column_fails_cleanly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    migrated(&db);

    let no_messages = tempfile::tempdir().unwrap();
    let source = django_db(
        no_messages.path(),
        &[DJANGO_AUTH, DJANGO_PROFILE, DJANGO_CONVERSATION],
    );
    assert_fails_with(&import(&db, &source), &["no table api_message"]);

    let no_time = tempfile::tempdir().unwrap();
    let source = django_db(
        no_time.path(),
        &[
            DJANGO_AUTH,
            DJANGO_PROFILE,
            DJANGO_CONVERSATION,
            r#"CREATE TABLE "api_message" ("id" integer NOT NULL PRIMARY KEY,
                "content" text NOT NULL, "sender_id" integer NOT NULL,
                "receiver_id" integer NOT NULL);"#,
        ],
    );
    assert_fails_with(
        &import(&db, &source),
        &["api_message", "timestamp or created_at"],
    );

    let not_sqlite = dir.path().join("notes.txt");
    std::fs::write(
        &not_sqlite,
        "these are not the tables you are looking for\n".repeat(50),
    )
    .unwrap();
    assert_fails_with(
        &import(&db, &not_sqlite),
        &["not a readable SQLite database"],
    );
    assert_fails_with(
        &import(&db, &dir.path().join("missing.sqlite3")),
        &["no such file"],
    );

    let (rows, counters) = contents(&db);
    assert_eq!(rows, [0, 0, 0, 0]);
    assert_eq!(
        (counters.users, counters.messages, counters.conversations),
        (0, 0, 0)
    );
}

#[test]
fn a_bad_row_after_writing_began_rolls_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let source = full_django_db(dir.path());
    let conn = Connection::open(&source).unwrap();
    // A dangling sender, as a database edited by hand may have. The users and conversations
    // are written by the time this row is read.
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    conn.execute(
        "INSERT INTO api_message (id, content, is_read, created_at, conversation_id,
                                  receiver_id, sender_id)
         VALUES (20, 'from nobody', 0, '2024-03-03 10:00:00', 1, 1, 99)",
        [],
    )
    .unwrap();
    drop(conn);
    let db = dir.path().join("wb.sqlite3");
    migrated(&db);
    let out = import(&db, &source);
    assert_fails_with(
        &out,
        &["api_message", "id 20", "sender_id", "nothing was imported"],
    );
    let (rows, counters) = contents(&db);
    assert_eq!(rows, [0, 0, 0, 0]);
    assert_eq!((counters.users, counters.admins), (0, 0));

    // A time that is not one stops it the same way.
    let conn = Connection::open(&source).unwrap();
    conn.execute(
        "UPDATE api_message SET sender_id = 1, created_at = 'last Tuesday' WHERE id = 20",
        [],
    )
    .unwrap();
    drop(conn);
    let out = import(&db, &source);
    assert_fails_with(&out, &["created_at", "not a date and time", "last Tuesday"]);
    assert_eq!(contents(&db).0, [0, 0, 0, 0]);
    // With the row fixed, the same database imports.
    let conn = Connection::open(&source).unwrap();
    conn.execute(
        "UPDATE api_message SET created_at = '2024-03-03 10:00:00' WHERE id = 20",
        [],
    )
    .unwrap();
    drop(conn);
    let out = import(&db, &source);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("7 messages"), "{}", stdout(&out));
}

#[test]
fn the_django_file_itself_is_never_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let source = full_django_db(dir.path());
    let before = std::fs::read(&source).unwrap();
    let out = import(&source, &source);
    assert_fails_with(&out, &["is the Django database itself"]);
    assert_eq!(std::fs::read(&source).unwrap(), before);
}
