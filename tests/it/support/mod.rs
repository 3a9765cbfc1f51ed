//! What the integration tests share. This module: the real server started in-process on
//! `127.0.0.1:0` with a fresh temporary database (`TestServer`), and the one HTTP client the
//! tests speak with (`Client`, on ureq), to that server or to the built binary running as a
//! child process. Beside it: `bin` runs the built binary, `raw` is the raw-socket HTTP/1.1
//! client, `events` reads event streams, `webdriver` drives a headless Chromium.

pub mod bin;
pub mod events;
pub mod raw;
pub mod webdriver;

use serde_json::Value;
use std::ops::{Deref, DerefMut};
use std::time::Duration;
use whitebeat::config::Argon2Cost;
use whitebeat::{Config, ServerHandle};

/// The real server, in this process, on its own temporary database. It speaks through its
/// `Client` (`s.get(..)`, `s.base`, `s.agent`), and stops when dropped.
pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub dir: tempfile::TempDir,
    pub client: Client,
}

/// A config for tests: temp DB, port 0, cheap Argon2 (the cost is not what is under test).
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir.join("test.sqlite3"));
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.threads = 4;
    c.argon2 = CHEAP_ARGON2;
    // Suites make many accounts, sends and connections from one address; the tests of the
    // limits themselves turn them on.
    c.signups_per_hour = 0;
    c.sends_per_minute = 0;
    c.streams_per_address = 0;
    c.connections_per_address = 0;
    c
}

/// The Argon2 cost of every test account.
pub const CHEAP_ARGON2: Argon2Cost = Argon2Cost {
    memory_kib: 64,
    iterations: 1,
};

pub fn start() -> TestServer {
    start_with(|_| {})
}

pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    process_setup();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let handle = whitebeat::serve(config).expect("server starts");
    let client = Client::new(format!("http://{}", handle.addr()));
    TestServer {
        handle: Some(handle),
        dir,
        client,
    }
}

/// Once per test process, as `whitebeat serve` does for itself: the soft limit on open
/// files raised to the hard one. Every test of the crate shares this process, its servers'
/// connections and their clients' sockets, and some tests open hundreds of each.
fn process_setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(whitebeat::server::raise_fd_limit);
}

/// A response: status, headers we care about, JSON body (Null when not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The message of a JSON `{"error": string}` body; anything else fails the test.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_else(|| {
            panic!(
                "expected a JSON error body, got {} {}",
                self.status, self.text
            )
        })
    }
}

fn to_resp(r: ureq::Response) -> Resp {
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .filter_map(|n| r.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect();
    let text = r.into_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        body,
        text,
        headers,
    }
}

/// The response of a request, whatever its status, or the transport error (a server that
/// is gone).
pub fn try_finish(result: Result<ureq::Response, ureq::Error>) -> Result<Resp, String> {
    match result {
        Ok(r) => Ok(to_resp(r)),
        Err(ureq::Error::Status(_, r)) => Ok(to_resp(r)),
        Err(e) => Err(e.to_string()),
    }
}

/// The response of a request, whatever its status; a transport error fails the test.
pub fn finish(result: Result<ureq::Response, ureq::Error>) -> Resp {
    try_finish(result).unwrap_or_else(|e| panic!("transport error: {e}"))
}

/// The HTTP client of the tests: a ureq agent (keep-alive, a deadline on every request) and
/// the server's base URL, `http://127.0.0.1:PORT`.
pub struct Client {
    pub base: String,
    pub agent: ureq::Agent,
}

impl Client {
    /// A client with a 30-second deadline on every request.
    pub fn new(base: impl Into<String>) -> Client {
        Client::with_timeout(base, Duration::from_secs(30))
    }

    pub fn with_timeout(base: impl Into<String>, timeout: Duration) -> Client {
        Client {
            base: base.into(),
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with an optional bearer token and JSON body; `Err` on a transport failure
    /// (for a server that may be gone), else the response whatever its status.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Resp, String> {
        let mut req = self.agent.request(method, &self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        try_finish(match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        })
    }

    /// A GET with an optional bearer token.
    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.agent.get(&self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        finish(req.call())
    }

    /// A POST of a JSON body with an optional bearer token.
    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        let mut req = self.agent.post(&self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        finish(req.send_json(body))
    }

    /// A request with full control over method, headers and raw body.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut req = self.agent.request(method, &self.url(path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        finish(req.send_bytes(body))
    }

    pub fn signup(&self, username: &str) -> Resp {
        self.post(
            "/api/signup/",
            None,
            serde_json::json!({"username": username, "password": "password123"}),
        )
    }

    pub fn login(&self, username: &str, password: &str) -> Resp {
        self.post(
            "/api/login/",
            None,
            serde_json::json!({"username": username, "password": password}),
        )
    }

    /// Signs a new user up, logs in, and returns the session token.
    pub fn user(&self, username: &str) -> String {
        let s = self.signup(username);
        assert_eq!(s.status, 201, "signup {username}: {}", s.text);
        self.token(username, "password123")
    }

    /// Signs a new user up and logs in: the session token and the user's id.
    pub fn user_and_id(&self, username: &str) -> (String, i64) {
        let r = self.signup(username);
        assert_eq!(r.status, 201, "signup {username}: {}", r.text);
        let id = r.body["user_id"].as_i64().unwrap();
        (self.token(username, "password123"), id)
    }

    /// Logs in and returns the session token.
    pub fn token(&self, username: &str, password: &str) -> String {
        let l = self.login(username, password);
        assert_eq!(l.status, 200, "login {username}: {}", l.text);
        l.body["token"].as_str().unwrap().to_string()
    }

    pub fn send(&self, token: &str, to: &str, content: &str) -> Resp {
        self.post(
            "/api/send-message/",
            Some(token),
            serde_json::json!({"receiver": to, "content": content}),
        )
    }

    /// A send that must succeed: the message as answered (`201`).
    pub fn sent(&self, token: &str, to: &str, content: &str) -> Value {
        let r = self.send(token, to, content);
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["message"].clone()
    }
}

impl TestServer {
    pub fn addr(&self) -> std::net::SocketAddr {
        self.handle.as_ref().unwrap().addr()
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("test.sqlite3")
    }

    /// A connection of the test's own to the server's database.
    pub fn db(&self) -> rusqlite::Connection {
        whitebeat::store::open(&self.db_path(), whitebeat::config::SyncMode::Normal).unwrap()
    }

    /// Creates an admin directly in the store (as `createsuperuser` does) and logs in.
    pub fn admin(&self, username: &str) -> String {
        let conn =
            whitebeat::cli::open_db(&self.db_path(), whitebeat::config::SyncMode::Full).unwrap();
        whitebeat::cli::create_superuser(
            &conn,
            CHEAP_ARGON2,
            username,
            &format!("{username}@example.com"),
            "password123",
        )
        .unwrap();
        let l = self.login(username, "password123");
        assert_eq!(l.status, 200, "admin login: {}", l.text);
        l.body["token"].as_str().unwrap().to_string()
    }

    /// Stops the server gracefully (flushes the request log).
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

impl Deref for TestServer {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for TestServer {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The entry of a `conversations/` answer whose other member is `other`.
pub fn conversation_with<'a>(list: &'a Value, other: &str) -> &'a Value {
    list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["other_user"]["username"] == other)
        .unwrap_or_else(|| panic!("no conversation with {other} in {list}"))
}

/// Writes `n` rows straight into a database through the server's write queue, in
/// transactions of 1,000: `write(conn, i)` writes row `i`. The queue
/// (`whitebeat::store::write_tx`) is one per process and every test's servers share this
/// process, so one transaction of 100,000 rows would hold up every other test's writes for
/// seconds. Between batches the queue is left free for a moment: its mutex is not fair, and
/// taken again at once it would go to this writer every time.
pub fn write_in_batches(
    conn: &rusqlite::Connection,
    n: usize,
    mut write: impl FnMut(&rusqlite::Connection, usize),
) {
    const BATCH: usize = 1_000;
    for start in (0..n).step_by(BATCH) {
        let tx = whitebeat::store::write_tx(conn).unwrap();
        for i in start..(start + BATCH).min(n) {
            write(&tx, i);
        }
        tx.commit().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}
