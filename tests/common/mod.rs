//! Test harness shared by the integration tests: starts the real server in-process on
//! `127.0.0.1:0` with a fresh temporary database, and speaks HTTP to it.
#![allow(dead_code)]

pub mod bin;

use serde_json::Value;
use std::time::Duration;
use whitebeat::config::Argon2Cost;
use whitebeat::{Config, ServerHandle};

pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub agent: ureq::Agent,
}

/// A config for tests: temp DB, port 0, cheap Argon2 (the cost is not what is under test).
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir.join("test.sqlite3"));
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.threads = 4;
    c.argon2 = Argon2Cost {
        memory_kib: 64,
        iterations: 1,
    };
    // Suites make many accounts, sends and connections from one address; the tests of the
    // limits themselves turn them on.
    c.signups_per_hour = 0;
    c.sends_per_minute = 0;
    c.streams_per_address = 0;
    c.connections_per_address = 0;
    c
}

pub fn start() -> TestServer {
    start_with(|_| {})
}

pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let handle = whitebeat::serve(config).expect("server starts");
    let base = format!("http://{}", handle.addr());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    TestServer {
        handle: Some(handle),
        dir,
        base,
        agent,
    }
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

/// The response of a request, whatever its status; a transport error fails the test.
pub fn finish(result: Result<ureq::Response, ureq::Error>) -> Resp {
    match result {
        Ok(r) => to_resp(r),
        Err(ureq::Error::Status(_, r)) => to_resp(r),
        Err(e) => panic!("transport error: {e}"),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.handle.as_ref().unwrap().addr()
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("test.sqlite3")
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
        let l = self.login(username, "password123");
        assert_eq!(l.status, 200, "login {username}: {}", l.text);
        l.body["token"].as_str().unwrap().to_string()
    }

    /// Creates an admin directly in the store (as `createsuperuser` does) and logs in.
    pub fn admin(&self, username: &str) -> String {
        let conn =
            whitebeat::cli::open_db(&self.db_path(), whitebeat::config::SyncMode::Full).unwrap();
        whitebeat::cli::create_superuser(
            &conn,
            Argon2Cost {
                memory_kib: 64,
                iterations: 1,
            },
            username,
            &format!("{username}@example.com"),
            "password123",
        )
        .unwrap();
        let l = self.login(username, "password123");
        assert_eq!(l.status, 200, "admin login: {}", l.text);
        l.body["token"].as_str().unwrap().to_string()
    }

    pub fn send(&self, token: &str, to: &str, content: &str) -> Resp {
        self.post(
            "/api/send-message/",
            Some(token),
            serde_json::json!({"receiver": to, "content": content}),
        )
    }

    /// Stops the server gracefully (flushes the request log).
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
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

/// Reads a raw connection until the server closes it (or resets it, or the socket's read
/// timeout passes).
pub fn read_until_closed(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::{ErrorKind, Read};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    buf
}
