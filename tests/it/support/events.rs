//! A minimal Server-Sent Events client over a raw `TcpStream`, for the event-stream tests:
//! it writes the GET by hand (as a browser's `EventSource` would), reads the response head,
//! then parses `id:`/`event:`/`data:` blocks with a deadline on every wait, so a missing
//! event fails a test instead of hanging it.
use super::raw::{find, small_buffer_client};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One event of the stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<i64>,
    pub event: String,
    pub data: Value,
    pub raw: String,
}

/// What a wait produced.
#[derive(Debug)]
pub enum Next {
    Event(SseEvent),
    Timeout,
    Eof,
}

pub struct SseClient {
    tcp: TcpStream,
    buf: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body of a non-200 answer (a JSON error).
    pub body: Value,
    eof: bool,
}

/// Options of a connection beyond the token.
#[derive(Default, Clone)]
pub struct Opts<'a> {
    pub last_event_id: Option<i64>,
    pub headers: Vec<(&'a str, &'a str)>,
    pub query: &'a str,
    /// The path, when not `/api/events/` (an encoded spelling of it, say).
    pub path: Option<&'a str>,
    /// Shrink the client's receive buffer (for a client that never reads).
    pub small_recv_buffer: bool,
}

impl SseClient {
    /// Opens `GET /api/events/` with a bearer token and waits for the response head.
    pub fn open(addr: SocketAddr, token: &str) -> SseClient {
        Self::open_with(addr, Some(token), Opts::default())
    }

    pub fn open_after(addr: SocketAddr, token: &str, last_event_id: i64) -> SseClient {
        Self::open_with(
            addr,
            Some(token),
            Opts {
                last_event_id: Some(last_event_id),
                ..Opts::default()
            },
        )
    }

    pub fn open_with(addr: SocketAddr, token: Option<&str>, opts: Opts) -> SseClient {
        let tcp = if opts.small_recv_buffer {
            small_buffer_client(addr, 4096, None)
        } else {
            TcpStream::connect(addr).unwrap()
        };
        tcp.set_nodelay(true).unwrap();
        let mut req = format!(
            "GET {}{} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n",
            opts.path.unwrap_or("/api/events/"),
            opts.query
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(id) = opts.last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        for (k, v) in &opts.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut c = SseClient {
            tcp,
            buf: Vec::new(),
            status: 0,
            headers: Vec::new(),
            body: Value::Null,
            eof: false,
        };
        c.tcp.write_all(req.as_bytes()).unwrap();
        c.read_head();
        c
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads more bytes until `deadline`; false on timeout or EOF.
    fn fill(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let wait = (deadline - now).clamp(Duration::from_millis(1), Duration::from_millis(200));
        self.tcp.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => {
                // A reset counts as the end of the stream.
                self.eof = true;
                false
            }
        }
    }

    fn read_head(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            assert!(
                self.fill(deadline),
                "no response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        self.status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        self.headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if self.status != 200 {
            let len: usize = self
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while self.buf.len() < len && self.fill(deadline) {}
            self.body =
                serde_json::from_slice(&self.buf[..len.min(self.buf.len())]).unwrap_or(Value::Null);
        }
    }

    /// Whether the body so far (events not yet taken) contains `text` within `timeout`: for
    /// the `: connected` comment the server writes first, which `next` skips.
    pub fn wait_for_text(&mut self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while find(&self.buf, text.as_bytes()).is_none() {
            if !self.fill(deadline) {
                return false;
            }
        }
        true
    }

    /// How long it took until the body so far (events not yet taken) contained `text` (say,
    /// a message's unique content), or `None` when it did not within `limit`.
    pub fn text_within(&mut self, text: &str, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        self.wait_for_text(text, limit).then(|| started.elapsed())
    }

    /// The next event (comments and `retry:` skipped), or a timeout, or the end.
    pub fn next(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(pos) = find(&self.buf, b"\n\n") {
                let block = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                if let Some(ev) = parse_block(&block) {
                    return Next::Event(ev);
                }
            }
            if self.eof {
                return Next::Eof;
            }
            if !self.fill(deadline) {
                return if self.eof { Next::Eof } else { Next::Timeout };
            }
        }
    }

    /// The next event of kind `kind`, skipping others; panics after `timeout`.
    pub fn expect(&mut self, kind: &str, timeout: Duration) -> SseEvent {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Event(ev) if ev.event == kind => return ev,
                Next::Event(_) => {}
                other => panic!("waiting for a `{kind}` event: {other:?}"),
            }
        }
    }

    /// The next `message` event's data, skipping other kinds.
    pub fn expect_message(&mut self, timeout: Duration) -> SseEvent {
        self.expect("message", timeout)
    }

    /// Every event that arrives within `window`.
    pub fn collect_for(&mut self, window: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next(left) {
                Next::Event(ev) => out.push(ev),
                Next::Timeout | Next::Eof => return out,
            }
        }
    }

    /// Whether the server closes the stream within `timeout` (events before that are
    /// discarded).
    pub fn closes_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Eof => return true,
                Next::Timeout => return false,
                Next::Event(_) => {}
            }
        }
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in block.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => id = value.parse().ok(),
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() && event.is_none() {
        return None;
    }
    let raw = data.join("\n");
    Some(SseEvent {
        id,
        event: event.unwrap_or_else(|| "message".into()),
        data: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    })
}
