//! Live delivery over Server-Sent Events (`GET /api/events/`), spoken as raw HTTP over a
//! socket: messages reach both ends and nobody else, `Last-Event-ID` replays exactly what a
//! client missed (also while messages keep coming), logout closes the stream, a client that
//! never reads cannot hold up anyone else, `read`, `typing` and `presence` events, the
//! stream caps (`503`), and `401` without a session.
use crate::support;
use crate::support::events::{Next, Opts, SseClient};
use crate::support::TestServer;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn open(s: &TestServer, token: &str) -> SseClient {
    let c = SseClient::open(s.addr(), token);
    assert_eq!(c.status, 200, "{:?}", c.body);
    c
}

fn message_ids(events: &[support::events::SseEvent]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| e.data["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn a_message_reaches_the_receiver_and_the_sender() {
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    let mut bob_stream = open(&s, &bob);
    assert!(bob_stream
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(bob_stream.header("cache-control"), Some("no-cache"));
    let mut alice_stream = open(&s, &alice);

    let sent = s.sent(&alice, "bob", "  live hello  ");
    let id = sent["id"].as_i64().unwrap();

    let ev = bob_stream.expect_message(WAIT);
    assert_eq!(ev.id, Some(id), "the event id is the message id");
    let d = &ev.data;
    assert_eq!(d["id"], id);
    assert_eq!(d["conversation_id"], sent["conversation_id"]);
    assert_eq!(d["sender"], "alice");
    assert_eq!(d["receiver"], "bob");
    assert_eq!(d["content"], "live hello");
    assert_eq!(d["is_read"], false);
    assert_eq!(d["is_mine"], false);
    assert_eq!(d["created_at"], sent["created_at"]);

    // The same fields messages/ shows, plus conversation_id.
    let page = s.get("/api/messages/?other_username=alice", Some(&bob));
    let listed = &page.body["messages"][0];
    for key in ["id", "sender", "receiver", "content", "created_at"] {
        assert_eq!(d[key], listed[key], "{key}");
    }
    for key in listed.as_object().unwrap().keys() {
        assert!(d.get(key).is_some(), "{key} missing from the event");
    }

    let ev = alice_stream.expect_message(WAIT);
    assert_eq!(ev.id, Some(id));
    assert_eq!(ev.data["is_mine"], true);
    assert_eq!(ev.data["content"], "live hello");

    // A note to self arrives once.
    let note = s.sent(&alice, "alice", "note")["id"].as_i64().unwrap();
    let evs = alice_stream.collect_for(Duration::from_millis(500));
    assert_eq!(message_ids(&evs), [note]);
}

#[test]
fn a_third_users_stream_gets_nothing_of_it() {
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    let (carol, _) = s.user_and_id("carol");
    let mut carol_stream = open(&s, &carol);
    let mut bob_stream = open(&s, &bob);
    for i in 0..5 {
        s.sent(&alice, "bob", &format!("private {i}"));
        s.sent(&bob, "alice", &format!("private reply {i}"));
    }
    // Typing and read receipts between them stay between them too.
    let conv = s.sent(&alice, "bob", "last")["conversation_id"].clone();
    assert_eq!(
        s.post(
            "/api/typing/",
            Some(&alice),
            json!({"conversation_id": conv})
        )
        .status,
        204
    );
    s.get("/api/messages/?other_username=bob", Some(&alice));
    // A marker for carol: the first thing her stream shows must be it.
    let marker = s.sent(&alice, "carol", "for carol")["id"].as_i64().unwrap();
    let ev = carol_stream.next(WAIT);
    let Next::Event(ev) = ev else {
        panic!("carol got {ev:?}")
    };
    assert_eq!(ev.event, "message", "{ev:?}");
    assert_eq!(ev.data["id"], marker);
    let rest = carol_stream.collect_for(Duration::from_millis(300));
    assert!(rest.iter().all(|e| !e.raw.contains("private")), "{rest:?}");
    // Bob got all eleven of his.
    let evs = bob_stream.collect_for(Duration::from_millis(1000));
    assert_eq!(message_ids(&evs).len(), 11, "{evs:?}");
}

#[test]
fn last_event_id_replays_exactly_what_was_missed() {
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    let (carol, _) = s.user_and_id("carol");
    let mut first = open(&s, &bob);
    let m1 = s.sent(&alice, "bob", "m1")["id"].as_i64().unwrap();
    let m2 = s.sent(&bob, "alice", "m2")["id"].as_i64().unwrap();
    assert_eq!(first.expect_message(WAIT).id, Some(m1));
    let seen = first.expect_message(WAIT).id.unwrap();
    assert_eq!(seen, m2);
    drop(first);

    // While bob is away: his conversations move on, and others' too.
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(
            s.sent(&alice, "bob", &format!("away {i}"))["id"]
                .as_i64()
                .unwrap(),
        );
    }
    missed.push(s.sent(&carol, "bob", "from carol")["id"].as_i64().unwrap());
    missed.push(
        s.sent(&bob, "carol", "from bob elsewhere")["id"]
            .as_i64()
            .unwrap(),
    );
    s.sent(&alice, "carol", "not bob's business");

    let mut again = SseClient::open_after(s.addr(), &bob, seen);
    assert_eq!(again.status, 200);
    let mut got = Vec::new();
    for _ in 0..missed.len() {
        got.push(again.expect_message(WAIT).data["id"].as_i64().unwrap());
    }
    assert_eq!(got, missed, "exactly the missed ones, in order");
    let live = s.sent(&alice, "bob", "live again")["id"].as_i64().unwrap();
    let evs = again.collect_for(Duration::from_millis(700));
    assert_eq!(message_ids(&evs), [live], "then live, without duplicates");

    // The query parameter works as the header does.
    let mut by_query = SseClient::open_with(
        s.addr(),
        Some(&bob),
        Opts {
            query: &format!("?last_event_id={}", missed[4]),
            ..Opts::default()
        },
    );
    assert_eq!(by_query.status, 200);
    let evs = by_query.collect_for(Duration::from_millis(700));
    assert_eq!(message_ids(&evs), [missed[5], missed[6], live]);

    // A bad id is refused.
    let bad = SseClient::open_with(
        s.addr(),
        Some(&bob),
        Opts {
            headers: vec![("Last-Event-ID", "abc")],
            ..Opts::default()
        },
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body["error"].is_string());
}

#[test]
fn reconnecting_while_messages_keep_coming_loses_and_repeats_nothing() {
    const N: usize = 300;
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    let mut first = open(&s, &bob);
    let sent: Vec<i64> = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            (0..N)
                .map(|i| {
                    s.sent(&alice, "bob", &format!("n{i}"))["id"]
                        .as_i64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        });
        // Read some, drop the connection mid-flow, resume from the last id seen.
        let mut seen: Vec<i64> = Vec::new();
        while seen.len() < 40 {
            seen.push(first.expect_message(WAIT).id.unwrap());
        }
        drop(first);
        let mut second = SseClient::open_after(s.addr(), &bob, *seen.last().unwrap());
        assert_eq!(second.status, 200);
        while seen.len() < N {
            seen.push(second.expect_message(Duration::from_secs(15)).id.unwrap());
        }
        let sent = sender.join().unwrap();
        let extra = second.collect_for(Duration::from_millis(500));
        assert!(message_ids(&extra).is_empty(), "duplicates: {extra:?}");
        assert_eq!(seen, sent, "every message once, in order");
        sent
    });
    let unique: HashSet<_> = sent.iter().collect();
    assert_eq!(unique.len(), N);
}

#[test]
fn logout_closes_the_stream_of_that_session() {
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    let bob2 = s.token("bob", "password123");
    let mut stream = open(&s, &bob);
    let mut other = open(&s, &bob2);
    let r = s.post("/api/logout/", Some(&bob), json!({}));
    assert_eq!(r.status, 200);
    assert!(
        stream.closes_within(Duration::from_secs(5)),
        "the stream stayed open after logout"
    );
    // The other session's stream lives on.
    let id = s.sent(&alice, "bob", "still here")["id"].as_i64().unwrap();
    assert_eq!(other.expect_message(WAIT).id, Some(id));
    // And the revoked token cannot open a new one.
    let again = SseClient::open(s.addr(), &bob);
    assert_eq!(again.status, 401);
}

#[test]
fn a_client_that_never_reads_does_not_hold_up_others() {
    // The flood is megabytes of messages; fsync per batch is not what is under test.
    let s = support::start_with(|c| c.sync = whitebeat::config::SyncMode::Normal);
    let (alice, _) = s.user_and_id("alice");
    let (slow, slow_id) = s.user_and_id("slowpoke");
    let (carol, _) = s.user_and_id("carol");
    let flooders: Vec<String> = (0..4)
        .map(|i| s.user_and_id(&format!("flood{i}")).0)
        .collect();
    // Opens its stream, then never reads a byte.
    let stalled = SseClient::open_with(
        s.addr(),
        Some(&slow),
        Opts {
            small_recv_buffer: true,
            ..Opts::default()
        },
    );
    assert_eq!(stalled.status, 200);
    let mut carol_stream = open(&s, &carol);
    let hub = &s.handle.as_ref().unwrap().app().hub;
    assert!(hub.is_connected(slow_id));

    let big = "z".repeat(10_000);
    let mut worst = Duration::ZERO;
    let mut rounds = 0;
    let started = Instant::now();
    while hub.is_connected(slow_id) {
        rounds += 1;
        assert!(
            rounds <= 40,
            "the stalled stream was never dropped after {} messages",
            rounds * 100
        );
        std::thread::scope(|scope| {
            for token in &flooders {
                let big = &big;
                let s = &s;
                scope.spawn(move || {
                    for _ in 0..25 {
                        s.sent(token, "slowpoke", big);
                    }
                });
            }
            // Meanwhile carol's messages arrive at once.
            let t = Instant::now();
            let id = s.sent(&alice, "carol", "are you there?")["id"]
                .as_i64()
                .unwrap();
            let ev = carol_stream.expect_message(WAIT);
            assert_eq!(ev.id, Some(id));
            worst = worst.max(t.elapsed());
        });
    }
    eprintln!(
        "stalled stream dropped after {} messages in {:?}; carol's worst latency {worst:?}",
        rounds * 100,
        started.elapsed()
    );
    assert!(worst < Duration::from_secs(2), "carol waited {worst:?}");
    // After the drop, carol still gets hers promptly and sends still succeed.
    let id = s.sent(&alice, "carol", "after")["id"].as_i64().unwrap();
    assert_eq!(carol_stream.expect_message(WAIT).id, Some(id));
    s.sent(&flooders[0], "slowpoke", "one more");
    drop(stalled);
    // The slow user can resume from the database.
    let mut resumed = SseClient::open_after(s.addr(), &slow, id);
    assert_eq!(resumed.status, 200);
    let ev = resumed.expect_message(WAIT);
    assert_eq!(ev.data["content"], "one more");
}

#[test]
fn reading_sends_a_read_event_to_the_other_side() {
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, bob_id) = s.user_and_id("bob");
    let mut alice_stream = open(&s, &alice);
    s.sent(&alice, "bob", "one");
    let m2 = s.sent(&alice, "bob", "two");
    let conv = m2["conversation_id"].as_i64().unwrap();
    let page = s.get("/api/messages/?other_username=alice", Some(&bob));
    assert_eq!(page.status, 200);
    let ev = alice_stream.expect("read", WAIT);
    assert_eq!(ev.data["conversation_id"], conv);
    assert_eq!(ev.data["reader_id"], bob_id);
    assert_eq!(ev.data["up_to_id"], m2["id"]);
    assert_eq!(
        ev.id,
        m2["id"].as_i64(),
        "other events carry the last message id"
    );

    // Fetching again marks nothing: no event. Then mark-as-read of a new one: an event.
    s.get("/api/messages/?other_username=alice", Some(&bob));
    let m3 = s.sent(&alice, "bob", "three");
    let r = s.post(
        "/api/mark-as-read/",
        Some(&bob),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.body["marked_read"], 1);
    let evs = alice_stream.collect_for(Duration::from_millis(700));
    let reads: Vec<&Value> = evs
        .iter()
        .filter(|e| e.event == "read")
        .map(|e| &e.data)
        .collect();
    assert_eq!(reads.len(), 1, "{evs:?}");
    assert_eq!(reads[0]["up_to_id"], m3["id"]);
}

#[test]
fn typing_reaches_the_other_member() {
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    let (carol, _) = s.user_and_id("carol");
    let (dave, _) = s.user_and_id("dave");
    let conv = s.sent(&alice, "bob", "hi")["conversation_id"]
        .as_i64()
        .unwrap();
    s.sent(&carol, "bob", "hi from carol");
    let mut bob_stream = open(&s, &bob);

    let r = s.post(
        "/api/typing/",
        Some(&alice),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty());
    let ev = bob_stream.expect("typing", WAIT);
    assert_eq!(ev.data["conversation_id"], conv);
    assert_eq!(ev.data["username"], "alice");

    let r = s.post(
        "/api/typing/",
        Some(&carol),
        json!({"other_username": "bob"}),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let ev = bob_stream.expect("typing", WAIT);
    assert_eq!(ev.data["username"], "carol");

    // A burst is absorbed: the next thing after alice's repeat is her message.
    let r = s.post(
        "/api/typing/",
        Some(&alice),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.status, 204);
    let id = s.sent(&alice, "bob", "typed")["id"].as_i64().unwrap();
    match bob_stream.next(WAIT) {
        Next::Event(ev) => {
            assert_eq!(ev.event, "message", "{ev:?}");
            assert_eq!(ev.data["id"], id);
        }
        other => panic!("{other:?}"),
    }

    // Errors.
    let r = s.post(
        "/api/typing/",
        Some(&dave),
        json!({"conversation_id": conv}),
    );
    assert_eq!(r.status, 404, "not dave's conversation: {}", r.text);
    let r = s.post(
        "/api/typing/",
        Some(&dave),
        json!({"other_username": "bob"}),
    );
    assert_eq!(r.status, 404, "no conversation yet: {}", r.text);
    let r = s.post(
        "/api/typing/",
        Some(&dave),
        json!({"other_username": "ghost"}),
    );
    assert_eq!(r.status, 404);
    let r = s.post("/api/typing/", Some(&dave), json!({}));
    assert_eq!(r.status, 400);
    let r = s.post("/api/typing/", None, json!({"conversation_id": conv}));
    assert_eq!(r.status, 401);
    let evs = bob_stream.collect_for(Duration::from_millis(300));
    assert!(evs.iter().all(|e| e.event != "typing"), "{evs:?}");
}

fn online_in_users(s: &TestServer, token: &str, who: &str) -> bool {
    let r = s.get("/api/users/", Some(token));
    r.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == who)
        .unwrap()["is_online"]
        .as_bool()
        .unwrap()
}

fn online_in_conversations(s: &TestServer, token: &str, who: &str) -> bool {
    let r = s.get("/api/conversations/", Some(token));
    r.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["other_user"]["username"] == who)
        .unwrap()["other_user"]["is_online"]
        .as_bool()
        .unwrap()
}

#[test]
fn an_open_stream_makes_you_online_for_your_contacts() {
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, bob_id) = s.user_and_id("bob");
    let (carol, _) = s.user_and_id("carol");
    s.sent(&alice, "bob", "we are contacts");
    let mut alice_stream = open(&s, &alice);
    let mut carol_stream = open(&s, &carol);
    // Bob was last active ten minutes ago.
    let old = whitebeat::store::now_us() - 10 * 60 * 1_000_000;
    s.db()
        .execute(
            "UPDATE users SET last_activity = ?1 WHERE id = ?2",
            [old, bob_id],
        )
        .unwrap();
    assert!(!online_in_users(&s, &alice, "bob"));
    assert!(!online_in_conversations(&s, &alice, "bob"));

    let _bob_stream = open(&s, &bob);
    let ev = alice_stream.expect("presence", WAIT);
    assert_eq!(ev.data["user_id"], bob_id);
    assert_eq!(ev.data["username"], "bob");
    assert_eq!(ev.data["is_online"], true);
    assert!(online_in_users(&s, &alice, "bob"));
    assert!(online_in_conversations(&s, &alice, "bob"));
    // Carol is no contact of bob's: she sees him online in users/ but gets no event.
    assert!(online_in_users(&s, &carol, "bob"));
    // A second stream of bob's is no news.
    let bob2 = s.token("bob", "password123");
    // (Logging in is activity: set it back again.)
    s.db()
        .execute(
            "UPDATE users SET last_activity = ?1 WHERE id = ?2",
            [old, bob_id],
        )
        .unwrap();
    let _bob_stream2 = open(&s, &bob2);
    let evs = alice_stream.collect_for(Duration::from_millis(300));
    assert!(evs.iter().all(|e| e.event != "presence"), "{evs:?}");

    // Logging out ends bob's first stream; he is still online through the second.
    s.post("/api/logout/", Some(&bob), json!({}));
    let evs = alice_stream.collect_for(Duration::from_millis(500));
    assert!(evs.iter().all(|e| e.event != "presence"), "{evs:?}");
    assert!(online_in_users(&s, &alice, "bob"));
    // Ending the last one: offline again, and the contacts hear of it.
    s.post("/api/logout/", Some(&bob2), json!({}));
    let ev = alice_stream.expect("presence", WAIT);
    assert_eq!(ev.data["user_id"], bob_id);
    assert_eq!(ev.data["is_online"], false);
    assert!(!online_in_users(&s, &alice, "bob"));
    assert!(!online_in_conversations(&s, &alice, "bob"));
    let evs = carol_stream.collect_for(Duration::from_millis(200));
    assert!(evs.iter().all(|e| e.event != "presence"), "{evs:?}");
}

#[test]
fn stream_caps_answer_503() {
    let s = support::start_with(|c| {
        c.max_streams_per_user = 2;
        c.max_streams = 3;
    });
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    let a1 = open(&s, &alice);
    let _a2 = open(&s, &alice);
    let third = SseClient::open(s.addr(), &alice);
    assert_eq!(third.status, 503);
    assert!(third.body["error"].is_string(), "{:?}", third.body);
    assert!(third
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    let _b1 = open(&s, &bob);
    let over = SseClient::open(s.addr(), &bob);
    assert_eq!(over.status, 503, "the server-wide cap");
    assert!(over.body["error"].is_string());

    // Closing one (logout of its session) frees a place.
    let alice2 = s.token("alice", "password123");
    drop(a1);
    s.post("/api/logout/", Some(&alice), json!({}));
    let deadline = Instant::now() + WAIT;
    loop {
        let c = SseClient::open(s.addr(), &alice2);
        if c.status == 200 {
            break;
        }
        assert_eq!(c.status, 503);
        assert!(Instant::now() < deadline, "the place was never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stream_needs_a_session() {
    let s = support::start();
    s.user_and_id("alice");
    let c = SseClient::open_with(s.addr(), None, Opts::default());
    assert_eq!(c.status, 401);
    assert!(c.body["error"].is_string());
    let c = SseClient::open(s.addr(), "not-a-token");
    assert_eq!(c.status, 401);
    // A cookie session works, as for a browser's EventSource.
    let token = s.token("alice", "password123");
    let cookie = format!("whitebeat_session={token}");
    let c = SseClient::open_with(
        s.addr(),
        None,
        Opts {
            headers: vec![("Cookie", &cookie), ("Origin", "http://localhost:3000")],
            ..Opts::default()
        },
    );
    assert_eq!(c.status, 200);
    assert_eq!(
        c.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(c.header("access-control-allow-credentials"), Some("true"));
}

#[test]
fn an_idle_stream_stays_open_while_its_client_is_there() {
    // The server checks every second whether an idle stream's client has gone; a client
    // that is still connected must never be taken for gone.
    let s = support::start();
    let (alice, _) = s.user_and_id("alice");
    let (bob, _) = s.user_and_id("bob");
    let mut bob_stream = open(&s, &bob);
    let quiet = bob_stream.collect_for(Duration::from_millis(3500));
    assert!(
        quiet.iter().all(|e| e.event != "message"),
        "no message was sent yet: {quiet:?}"
    );
    let sent = s.sent(&alice, "bob", "after a quiet spell");
    let ev = bob_stream.expect_message(WAIT);
    assert_eq!(ev.id, sent["id"].as_i64());
    assert_eq!(ev.data["content"], "after a quiet spell");
}

#[test]
fn a_closed_stream_frees_its_slot_within_seconds() {
    let s = support::start_with(|c| c.max_streams_per_user = 1);
    let (bob, _) = s.user_and_id("bob");
    let first = open(&s, &bob);
    drop(first); // the client goes away without a word
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    loop {
        let again = support::events::SseClient::open(s.addr(), &bob);
        if again.status == 200 {
            break;
        }
        assert_eq!(again.status, 503);
        assert!(
            std::time::Instant::now() < deadline,
            "the slot of a closed stream was not freed within 4 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
