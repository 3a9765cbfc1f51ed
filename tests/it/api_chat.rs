//! The chat itself, through the real server: the user directory (`users/`), the
//! conversation list (`conversations/`), reading (`messages/`, paging, read marks), sending
//! (`send-message/`), `mark-as-read/`, privacy between users, unread counts, a 1,000-message
//! history walked page by page, concurrent senders, and a 100,000-message history put
//! straight into the store that the API must still answer quickly and correctly.
use crate::support;
use crate::support::conversation_with;

use crate::support::{Resp, TestServer};
use serde_json::{json, Value};
use std::collections::HashSet;

fn ok(r: Resp) -> Resp {
    assert!(
        r.status == 200 || r.status == 201,
        "{} {}",
        r.status,
        r.text
    );
    r
}

fn sent_id(r: &Resp) -> i64 {
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["message"]["id"].as_i64().unwrap()
}

fn ids(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect()
}

fn assert_timestamp(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
}

fn conversations(s: &TestServer, token: &str) -> Value {
    ok(s.get("/api/conversations/", Some(token))).body
}

// ---------------------------------------------------------------- users/

#[test]
fn users_lists_everyone_but_you_with_presence() {
    let s = support::start();
    let alice = s.user("alice");
    s.user("bob");
    s.user("carol");
    s.user("dave");
    // Dave has not been seen for ten minutes.
    let ten_min_ago = whitebeat::store::now_us() - 10 * 60 * 1_000_000;
    s.db()
        .execute(
            "UPDATE users SET last_activity = ?1 WHERE username = 'dave'",
            [ten_min_ago],
        )
        .unwrap();

    let r = ok(s.get("/api/users/", Some(&alice)));
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["count"], 3);
    assert_eq!(names(&r.body, "users"), ["bob", "carol", "dave"]);
    for u in r.body["users"].as_array().unwrap() {
        assert!(u["id"].as_i64().unwrap() > 0);
        assert_eq!(
            u["email"],
            format!("{}@whitebeat.com", u["username"].as_str().unwrap())
        );
        assert_eq!(u["status"], "Hey there! I am using White Beat");
        assert_timestamp(&u["last_activity"]);
        let online = u["is_online"].as_bool().unwrap();
        assert_eq!(online, u["username"] != "dave", "{u}");
    }
}

#[test]
fn users_search_limit_and_offset() {
    let s = support::start();
    let alice = s.user("alice");
    for name in ["bob", "bobby", "carol", "Bonnie", "b_x", "bax"] {
        s.user(name);
    }
    let r = ok(s.get("/api/users/?search=bo", Some(&alice)));
    let mut found = names(&r.body, "users");
    found.sort();
    assert_eq!(found, ["Bonnie", "bob", "bobby"], "prefix, any case");
    assert_eq!(r.body["count"], 3);
    // `_` is a literal character, not a LIKE wildcard.
    let r = ok(s.get("/api/users/?search=b_", Some(&alice)));
    assert_eq!(names(&r.body, "users"), ["b_x"]);
    let r = ok(s.get("/api/users/?search=zzz", Some(&alice)));
    assert_eq!(r.body["count"], 0);
    assert_eq!(r.body["users"], json!([]));
    // Searching for yourself does not find you.
    let r = ok(s.get("/api/users/?search=ali", Some(&alice)));
    assert_eq!(r.body["count"], 0);

    let all = names(&ok(s.get("/api/users/", Some(&alice))).body, "users");
    assert_eq!(all.len(), 6);
    let r = ok(s.get("/api/users/?limit=2", Some(&alice)));
    assert_eq!(names(&r.body, "users"), all[..2]);
    let r = ok(s.get("/api/users/?limit=2&offset=2", Some(&alice)));
    assert_eq!(names(&r.body, "users"), all[2..4]);
    let r = ok(s.get("/api/users/?offset=5", Some(&alice)));
    assert_eq!(names(&r.body, "users"), all[5..]);
    let r = ok(s.get("/api/users/?offset=50", Some(&alice)));
    assert_eq!(r.body["count"], 0);

    for bad in [
        "limit=abc",
        "limit=0",
        "limit=-1",
        "limit=1.5",
        "offset=-1",
        "offset=x",
    ] {
        let r = s.get(&format!("/api/users/?{bad}"), Some(&alice));
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        r.error();
    }
}

// ---------------------------------------------------------------- conversations/

#[test]
fn conversations_newest_first_with_last_message_and_unread() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let carol = s.user("carol");
    let empty = ok(s.get("/api/conversations/", Some(&alice)));
    assert_eq!(
        empty.body,
        json!({"success": true, "count": 0, "conversations": []})
    );

    sent_id(&s.send(&alice, "bob", "hi bob"));
    sent_id(&s.send(&bob, "alice", "hi alice"));
    sent_id(&s.send(&carol, "alice", "one"));
    sent_id(&s.send(&carol, "alice", "two"));

    let list = conversations(&s, &alice);
    assert_eq!(list["success"], true);
    assert_eq!(list["count"], 2);
    let convs = list["conversations"].as_array().unwrap();
    assert_eq!(convs[0]["other_user"]["username"], "carol", "newest first");
    assert_eq!(convs[1]["other_user"]["username"], "bob");
    let c = &convs[0];
    assert!(c["id"].as_i64().unwrap() > 0);
    let other = &c["other_user"];
    assert!(other["id"].as_i64().unwrap() > 0);
    assert_eq!(other["email"], "carol@whitebeat.com");
    assert_eq!(other["status"], "Hey there! I am using White Beat");
    assert_eq!(other["is_online"], true);
    assert_eq!(c["last_message"]["content"], "two");
    assert_eq!(c["last_message"]["sender"], "carol");
    assert_timestamp(&c["last_message"]["created_at"]);
    assert_eq!(c["unread_count"], 2);
    assert_timestamp(&c["updated_at"]);
    let b = &convs[1];
    assert_eq!(b["last_message"]["content"], "hi alice");
    assert_eq!(b["last_message"]["sender"], "bob");
    assert_eq!(b["unread_count"], 1);

    // A new message moves a conversation to the top.
    sent_id(&s.send(&alice, "bob", "back on top"));
    let list = conversations(&s, &alice);
    assert_eq!(list["conversations"][0]["other_user"]["username"], "bob");
    assert_eq!(list["conversations"][0]["last_message"]["sender"], "alice");
    assert_eq!(list["conversations"][0]["unread_count"], 1);

    // Opening a conversation with nobody said yet lists it with no last message.
    s.user("dave");
    ok(s.get("/api/messages/?other_username=dave", Some(&alice)));
    let list = conversations(&s, &alice);
    assert_eq!(list["count"], 3);
    let d = conversation_with(&list, "dave");
    assert_eq!(d["last_message"], Value::Null);
    assert_eq!(d["unread_count"], 0);
}

// ---------------------------------------------------------------- messages/

#[test]
fn messages_shape_alias_and_conversation_creation() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    // Reading a conversation that does not exist yet creates it.
    let first = ok(s.get("/api/messages/?other_username=bob", Some(&alice)));
    assert_eq!(first.body["success"], true);
    assert_eq!(first.body["count"], 0);
    assert_eq!(first.body["messages"], json!([]));
    assert_eq!(first.body["has_more"], false);
    let conv = first.body["conversation_id"].as_i64().unwrap();
    assert_eq!(
        s.get("/api/health/", None).body["stats"]["total_conversations"],
        1
    );

    let m1 = sent_id(&s.send(&alice, "bob", "first"));
    let m2 = sent_id(&s.send(&bob, "alice", "second"));
    let page = ok(s.get("/api/messages/?contact_username=bob", Some(&alice)));
    assert_eq!(
        page.body["conversation_id"], conv,
        "same conversation both ways"
    );
    assert_eq!(page.body["count"], 2);
    assert_eq!(ids(&page.body), [m1, m2], "oldest first");
    let msgs = page.body["messages"].as_array().unwrap();
    let mine = &msgs[0];
    assert_eq!(mine["sender"], "alice");
    assert_eq!(mine["receiver"], "bob");
    assert_eq!(mine["content"], "first");
    assert_eq!(mine["is_read"], false);
    assert_eq!(mine["is_mine"], true);
    assert_timestamp(&mine["created_at"]);
    assert_eq!(msgs[1]["is_mine"], false);
    assert_eq!(msgs[1]["sender"], "bob");
    // Bob sees the same conversation from his side.
    let bobs = ok(s.get("/api/messages/?other_username=alice", Some(&bob)));
    assert_eq!(bobs.body["conversation_id"], conv);
    assert_eq!(bobs.body["messages"][0]["is_mine"], false);
    assert_eq!(bobs.body["messages"][1]["is_mine"], true);
    assert_eq!(
        s.get("/api/health/", None).body["stats"]["total_conversations"],
        1
    );

    let r = s.get("/api/messages/?other_username=ghost", Some(&alice));
    assert_eq!(r.status, 404, "{}", r.text);
    r.error();
    for path in ["/api/messages/", "/api/messages/?other_username="] {
        let r = s.get(path, Some(&alice));
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        r.error();
    }
}

#[test]
fn a_fetch_shows_is_read_as_before_and_marks_it_read() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let sent: Vec<i64> = (0..3)
        .map(|i| sent_id(&s.send(&alice, "bob", &format!("m{i}"))))
        .collect();
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        3
    );
    // Alice fetching does not mark her own sent messages read.
    let a = ok(s.get("/api/messages/?other_username=bob", Some(&alice)));
    assert!(a.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["is_read"] == false));

    let page = ok(s.get("/api/messages/?other_username=alice", Some(&bob)));
    assert_eq!(ids(&page.body), sent);
    for m in page.body["messages"].as_array().unwrap() {
        assert_eq!(m["is_read"], false, "shown as before the fetch");
    }
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        0
    );
    let again = ok(s.get("/api/messages/?other_username=alice", Some(&bob)));
    for m in again.body["messages"].as_array().unwrap() {
        assert_eq!(m["is_read"], true, "marked by the previous fetch");
    }
    // The sender sees the read receipts.
    let a = ok(s.get("/api/messages/?other_username=bob", Some(&alice)));
    assert!(a.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["is_read"] == true));
}

#[test]
fn paging_defaults_caps_and_before_id() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let all = send_many(&s, &alice, &bob, 600, 4);
    let path = "/api/messages/?other_username=bob";

    let page = ok(s.get(path, Some(&alice)));
    assert_eq!(page.body["count"], 100, "default limit");
    assert_eq!(ids(&page.body), all[500..]);
    assert_eq!(page.body["has_more"], true);

    let page = ok(s.get(&format!("{path}&limit=500"), Some(&alice)));
    assert_eq!(page.body["count"], 500);
    assert_eq!(ids(&page.body), all[100..]);
    assert_eq!(page.body["has_more"], true);

    let page = ok(s.get(
        &format!("{path}&limit=500&before_id={}", all[100]),
        Some(&alice),
    ));
    assert_eq!(ids(&page.body), all[..100]);
    assert_eq!(page.body["has_more"], false);

    let page = ok(s.get(
        &format!("{path}&limit=10&before_id={}", all[10]),
        Some(&alice),
    ));
    assert_eq!(ids(&page.body), all[..10]);
    assert_eq!(page.body["has_more"], false, "exactly the rest");
    let page = ok(s.get(
        &format!("{path}&limit=10&before_id={}", all[11]),
        Some(&alice),
    ));
    assert_eq!(ids(&page.body), all[1..11]);
    assert_eq!(page.body["has_more"], true);
    let page = ok(s.get(&format!("{path}&before_id={}", all[0]), Some(&alice)));
    assert_eq!(page.body["count"], 0);
    assert_eq!(page.body["has_more"], false);

    for bad in [
        "limit=501",
        "limit=0",
        "limit=-5",
        "limit=ten",
        "before_id=0",
        "before_id=x",
    ] {
        let r = s.get(&format!("{path}&{bad}"), Some(&alice));
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        r.error();
    }
}

/// Sends `n` messages between two users from `threads` threads (alternating directions)
/// and returns their ids in ascending order.
fn send_many(s: &TestServer, a: &str, b: &str, n: usize, threads: usize) -> Vec<i64> {
    let names = [("bob", a), ("alice", b)];
    let mut all: Vec<i64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let (to, token) = names[i % 2];
                            sent_id(&s.send(token, to, &format!("message {i}")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    all.sort_unstable();
    assert_eq!(all.len(), n);
    all
}

#[test]
fn a_thousand_message_history_is_walked_exactly_once() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let all = send_many(&s, &alice, &bob, 1000, 4);
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(unique.len(), 1000);

    // Walk backwards with an odd page size, as a client scrolling up does.
    let mut pages: Vec<Vec<i64>> = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut path = "/api/messages/?other_username=alice&limit=137".to_string();
        if let Some(b) = before {
            path.push_str(&format!("&before_id={b}"));
        }
        let page = ok(s.get(&path, Some(&bob)));
        let got = ids(&page.body);
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "each page oldest first"
        );
        let more = page.body["has_more"].as_bool().unwrap();
        assert_eq!(page.body["count"], got.len());
        if let Some(b) = before {
            assert!(got.iter().all(|&id| id < b));
        }
        before = got.first().copied();
        pages.push(got);
        if !more {
            break;
        }
        assert!(pages.len() < 20, "paging does not end");
    }
    assert_eq!(pages.len(), 8, "1000 / 137 rounded up");
    let walked: Vec<i64> = pages.into_iter().rev().flatten().collect();
    assert_eq!(walked, all, "every id once, in order");
    // Every message bob received is read now; those he sent are not marked by him.
    let page = ok(s.get("/api/messages/?other_username=alice&limit=500", Some(&bob)));
    for m in page.body["messages"].as_array().unwrap() {
        assert_eq!(m["is_read"], m["is_mine"] == false, "{m}");
    }
}

// ---------------------------------------------------------------- send-message/

#[test]
fn send_message_shape_alias_and_trimming() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let r = s.send(&alice, "bob", "  \n hello bob \t ");
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["success"], true);
    let m = &r.body["message"];
    assert!(m["id"].as_i64().unwrap() > 0);
    assert_eq!(m["sender"], "alice");
    assert_eq!(m["receiver"], "bob");
    assert_eq!(m["content"], "hello bob");
    assert_eq!(m["is_read"], false);
    assert_timestamp(&m["created_at"]);

    let r = s.post(
        "/api/send-message/",
        Some(&alice),
        json!({"contact_username": "bob", "content": "by alias"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["message"]["receiver"], "bob");
    let page = ok(s.get("/api/messages/?other_username=alice", Some(&bob)));
    let contents: Vec<&str> = page.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["hello bob", "by alias"]);

    // Content is kept exactly (unicode, markup as text).
    let text = "héllo 👋 <b>&amp;</b> \"quoted\"\nsecond line";
    let r = s.send(&bob, "alice", text);
    assert_eq!(r.body["message"]["content"], text);
    let page = ok(s.get("/api/messages/?other_username=bob", Some(&alice)));
    assert_eq!(page.body["messages"][2]["content"], text);
}

#[test]
fn send_message_validates_content_and_receiver() {
    let s = support::start();
    let alice = s.user("alice");
    s.user("bob");
    for content in ["", "   ", "\n\t \r\n"] {
        let r = s.send(&alice, "bob", content);
        assert_eq!(r.status, 400, "{content:?}: {}", r.text);
        r.error();
    }
    let r = s.send(&alice, "bob", &"x".repeat(10_000));
    assert_eq!(r.status, 201, "10,000 chars is allowed");
    assert_eq!(r.body["message"]["content"].as_str().unwrap().len(), 10_000);
    // Characters, not bytes.
    let r = s.send(&alice, "bob", &"é".repeat(10_000));
    assert_eq!(
        r.status, 201,
        "10,000 two-byte chars is allowed: {}",
        r.text
    );
    let r = s.send(&alice, "bob", &format!("  {}  ", "x".repeat(10_000)));
    assert_eq!(r.status, 201, "the limit applies after trimming");
    let r = s.send(&alice, "bob", &"x".repeat(10_001));
    assert_eq!(r.status, 400, "{}", r.text);
    r.error();

    let r = s.send(&alice, "ghost", "hello?");
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "User not found");

    let missing = [
        json!({"content": "no receiver"}),
        json!({"receiver": "bob"}),
        json!({"receiver": "", "content": "empty receiver"}),
        json!({}),
    ];
    for body in missing {
        let r = s.post("/api/send-message/", Some(&alice), body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        r.error();
    }
    assert_eq!(
        s.get("/api/health/", None).body["stats"]["total_messages"],
        3
    );
}

#[test]
fn a_note_to_self_is_allowed_and_never_unread() {
    let s = support::start();
    let alice = s.user("alice");
    let r = s.send(&alice, "alice", "remember the milk");
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["message"]["is_read"], true);
    let list = conversations(&s, &alice);
    assert_eq!(list["count"], 1, "listed once: {list}");
    let c = &list["conversations"][0];
    assert_eq!(c["other_user"]["username"], "alice");
    assert_eq!(c["unread_count"], 0);
    assert_eq!(c["last_message"]["content"], "remember the milk");
    let page = ok(s.get("/api/messages/?other_username=alice", Some(&alice)));
    assert_eq!(page.body["count"], 1);
    assert_eq!(page.body["messages"][0]["is_mine"], true);
    let r = s.post(
        "/api/mark-as-read/",
        Some(&alice),
        json!({"conversation_id": c["id"]}),
    );
    assert_eq!(r.body["marked_read"], 0);
}

// ---------------------------------------------------------------- mark-as-read/

#[test]
fn mark_as_read_counts_and_refuses_other_peoples_conversations() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let carol = s.user("carol");
    let conv = s.send(&alice, "bob", "1").body["message"]["conversation_id"]
        .as_i64()
        .unwrap();
    s.send(&alice, "bob", "2");
    s.send(&bob, "alice", "3");

    let r = s.post(
        "/api/mark-as-read/",
        Some(&bob),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"success": true, "marked_read": 2}));
    let r = s.post(
        "/api/mark-as-read/",
        Some(&bob),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.body["marked_read"], 0, "nothing left");
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        0
    );
    assert_eq!(
        conversation_with(&conversations(&s, &alice), "bob")["unread_count"],
        1,
        "alice's unread untouched"
    );

    let r = s.post(
        "/api/mark-as-read/",
        Some(&carol),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    r.error();
    let r = s.post(
        "/api/mark-as-read/",
        Some(&alice),
        json!({"conversation_id": 999_999}),
    );
    assert_eq!(r.status, 404);
    let r = s.post("/api/mark-as-read/", Some(&alice), json!({}));
    assert_eq!(r.status, 400, "{}", r.text);
    r.error();
    assert_eq!(
        conversation_with(&conversations(&s, &alice), "bob")["unread_count"],
        1,
        "carol's attempt marked nothing"
    );
    let r = s.post(
        "/api/mark-as-read/",
        Some(&alice),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.body["marked_read"], 1);
}

// ---------------------------------------------------------------- privacy and unread

#[test]
fn a_third_user_sees_nothing_of_a_chat() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let carol = s.user("carol");
    let conv = s.send(&alice, "bob", "secret for bob").body["message"]["conversation_id"]
        .as_i64()
        .unwrap();
    s.send(&bob, "alice", "secret for alice");

    let list = conversations(&s, &carol);
    assert_eq!(list["count"], 0, "{list}");
    for other in ["alice", "bob"] {
        let page = ok(s.get(
            &format!("/api/messages/?other_username={other}"),
            Some(&carol),
        ));
        assert_eq!(page.body["count"], 0, "carol with {other}: {}", page.text);
        assert_ne!(page.body["conversation_id"], conv);
        assert!(!page.text.contains("secret"));
    }
    let r = s.post(
        "/api/mark-as-read/",
        Some(&carol),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.status, 404);
    // Carol's own chat with alice does not mix with alice and bob's.
    s.send(&carol, "alice", "hi alice");
    let page = ok(s.get("/api/messages/?other_username=alice", Some(&carol)));
    assert_eq!(page.body["count"], 1);
    assert!(!page.text.contains("secret"));
    let page = ok(s.get("/api/messages/?other_username=bob", Some(&alice)));
    assert_eq!(page.body["count"], 2);
    assert!(!page.text.contains("hi alice"));
    // And alice and bob's unread counts were not touched by carol.
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        1
    );
}

#[test]
fn unread_counts_in_both_directions() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    for i in 0..2 {
        sent_id(&s.send(&alice, "bob", &format!("a{i}")));
    }
    for i in 0..3 {
        sent_id(&s.send(&bob, "alice", &format!("b{i}")));
    }
    assert_eq!(
        conversation_with(&conversations(&s, &alice), "bob")["unread_count"],
        3
    );
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        2
    );
    ok(s.get("/api/messages/?other_username=bob", Some(&alice)));
    assert_eq!(
        conversation_with(&conversations(&s, &alice), "bob")["unread_count"],
        0
    );
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        2
    );
    sent_id(&s.send(&bob, "alice", "one more"));
    assert_eq!(
        conversation_with(&conversations(&s, &alice), "bob")["unread_count"],
        1
    );
    ok(s.get("/api/messages/?other_username=alice", Some(&bob)));
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        0
    );
}

// ---------------------------------------------------------------- concurrency

#[test]
fn concurrent_sends_lose_nothing() {
    const THREADS: usize = 8;
    const EACH: usize = 50;
    let s = support::start();
    let inbox = s.user("inbox");
    let senders: Vec<String> = (0..THREADS)
        .map(|i| s.user(&format!("sender{i}")))
        .collect();
    let per_thread: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = senders
            .iter()
            .enumerate()
            .map(|(t, token)| {
                let s = &s;
                scope.spawn(move || {
                    (0..EACH)
                        .map(|i| sent_id(&s.send(token, "inbox", &format!("t{t} m{i}"))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = HashSet::new();
    for (t, list) in per_thread.iter().enumerate() {
        assert_eq!(list.len(), EACH);
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "thread {t}: ids not increasing: {list:?}"
        );
        all.extend(list.iter().copied());
    }
    assert_eq!(all.len(), THREADS * EACH, "ids unique overall");
    let health = s.get("/api/health/", None);
    assert_eq!(health.body["stats"]["total_messages"], THREADS * EACH);
    assert_eq!(health.body["stats"]["total_conversations"], THREADS);

    let list = conversations(&s, &inbox);
    assert_eq!(list["count"], THREADS);
    for c in list["conversations"].as_array().unwrap() {
        assert_eq!(c["unread_count"], EACH, "{c}");
    }
    for (t, list) in per_thread.iter().enumerate() {
        let page = ok(s.get(
            &format!("/api/messages/?other_username=sender{t}"),
            Some(&inbox),
        ));
        assert_eq!(&ids(&page.body), list, "sender{t}'s messages, in order");
        let contents: Vec<String> = (0..EACH).map(|i| format!("t{t} m{i}")).collect();
        let got: Vec<&str> = page.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(got, contents);
    }
}

// ---------------------------------------------------------------- a big history

#[test]
fn a_hundred_thousand_message_history_still_answers() {
    const N: i64 = 100_000;
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let carol = s.user("carol");
    let id_of = |name: &str| -> i64 {
        s.db()
            .query_row("SELECT id FROM users WHERE username = ?1", [name], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let (a, b) = (id_of("alice"), id_of("bob"));
    sent_id(&s.send(&carol, "alice", "from carol, before"));

    let conn = s.db();
    let start = whitebeat::store::now_us() - N;
    let mut inserted = Vec::with_capacity(N as usize);
    support::write_in_batches(&conn, N as usize, |tx, i| {
        let i = i as i64;
        // Even: alice to bob; odd: bob to alice.
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let content = format!("history {i}");
        let m = whitebeat::store::chat::NewMessage {
            sender_id: from,
            receiver_id: to,
            content: &content,
            now: start + i,
        };
        inserted.push(whitebeat::store::chat::insert_message(tx, &m).unwrap().id);
    });
    drop(conn);

    let health = s.get("/api/health/", None);
    assert_eq!(health.body["stats"]["total_messages"], N + 1);
    assert_eq!(health.body["stats"]["total_conversations"], 2);

    // Conversation lists with the right unread counts and last message.
    let list = conversations(&s, &alice);
    assert_eq!(list["count"], 2);
    let with_bob = conversation_with(&list, "bob");
    assert_eq!(with_bob["unread_count"], N / 2);
    assert_eq!(
        with_bob["last_message"]["content"],
        format!("history {}", N - 1)
    );
    assert_eq!(with_bob["last_message"]["sender"], "bob");
    assert_eq!(conversation_with(&list, "carol")["unread_count"], 1);
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        N / 2
    );

    // The newest page.
    let page = ok(s.get("/api/messages/?other_username=bob", Some(&alice)));
    assert_eq!(page.body["count"], 100);
    assert_eq!(page.body["has_more"], true);
    assert_eq!(ids(&page.body), inserted[inserted.len() - 100..]);
    assert_eq!(
        page.body["messages"][99]["content"],
        format!("history {}", N - 1)
    );
    // That fetch marked alice's 50,000 as read, and only hers.
    let list = conversations(&s, &alice);
    assert_eq!(conversation_with(&list, "bob")["unread_count"], 0);
    assert_eq!(conversation_with(&list, "carol")["unread_count"], 1);
    assert_eq!(
        conversation_with(&conversations(&s, &bob), "alice")["unread_count"],
        N / 2
    );
    // A page from deep in the past.
    let mid = inserted[50_000];
    let page = ok(s.get(
        &format!("/api/messages/?other_username=alice&limit=500&before_id={mid}"),
        Some(&bob),
    ));
    assert_eq!(ids(&page.body), inserted[49_500..50_000]);
    assert_eq!(page.body["has_more"], true);
    let page = ok(s.get(
        &format!(
            "/api/messages/?other_username=alice&limit=500&before_id={}",
            inserted[300]
        ),
        Some(&bob),
    ));
    assert_eq!(ids(&page.body), inserted[..300]);
    assert_eq!(page.body["has_more"], false);
    // And sending still works on top of it.
    let id = sent_id(&s.send(&bob, "alice", "still here"));
    assert!(id > *inserted.last().unwrap());
    assert_eq!(
        conversation_with(&conversations(&s, &alice), "bob")["unread_count"],
        1
    );
}
