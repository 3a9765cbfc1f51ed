//! The shortest whole chat through the real server: sign up two users, send, read.
use crate::support;
use serde_json::json;

#[test]
fn two_users_chat_end_to_end() {
    let s = support::start();
    let alice = s.user("alice");
    let bob = s.user("bob");
    let sent = s.send(&alice, "bob", "  hello bob  ");
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert_eq!(sent.body["message"]["content"], "hello bob");
    let page = s.get("/api/messages/?other_username=alice", Some(&bob));
    assert_eq!(page.status, 200);
    assert_eq!(page.body["count"], 1);
    assert_eq!(page.body["messages"][0]["is_mine"], false);
    assert_eq!(page.body["messages"][0]["is_read"], false);
    let again = s.get("/api/messages/?other_username=alice", Some(&bob));
    assert_eq!(again.body["messages"][0]["is_read"], true);
    let health = s.get("/api/health", None);
    assert_eq!(health.body["stats"]["total_messages"], 1);
    assert_eq!(
        s.post(
            "/api/send-message/",
            None,
            json!({"receiver": "bob", "content": "x"})
        )
        .status,
        401
    );
}
