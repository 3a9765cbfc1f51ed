//! A raw HTTP/1.1 client over `TcpStream`, for what an HTTP library would not send or would
//! tidy up: bytes exactly as given (invalid UTF-8, odd framing, pipelined requests, repeated
//! header lines, paths with `..`), clients that trickle, never read or half-close, and
//! answers taken as they arrive (every response of a pipelined exchange, a response cut
//! short, how and when the connection ended).

use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One response as it arrived.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The status line and the header lines, without the blank line that ends them.
    pub head: String,
    pub body: Vec<u8>,
    /// The whole body arrived: all that `Content-Length` announced, or the last chunk.
    pub complete: bool,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.head, name)
    }

    /// The one response of a connection read until the server closed it: its head, and
    /// everything after the head as its body. Without a whole head, all is head.
    pub fn until_closed(buf: &[u8]) -> Reply {
        let end = find(buf, b"\r\n\r\n");
        let head = String::from_utf8_lossy(&buf[..end.unwrap_or(buf.len())]).into_owned();
        Reply {
            status: status_of(&head),
            body: end.map(|e| buf[e + 4..].to_vec()).unwrap_or_default(),
            complete: end.is_some(),
            head,
        }
    }
}

/// The value of a header line of `head` (the status line is not one).
pub fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status code of a status line (0 when there is none).
pub fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body at the start of `buf`: the body, the bytes consumed, and whether
/// the last chunk (and the blank line after the trailers) arrived.
fn dechunk(buf: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut body = Vec::new();
    let mut at = 0;
    let mut complete = false;
    while let Some(eol) = find(&buf[at..], b"\r\n") {
        let size_text = String::from_utf8_lossy(&buf[at..at + eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        at += eol + 2;
        if size == 0 {
            // Skip trailers up to the blank line.
            match find(&buf[at..], b"\r\n") {
                Some(e) => {
                    at += e + 2;
                    complete = true;
                }
                None => at = buf.len(),
            }
            break;
        }
        let end = (at + size).min(buf.len());
        body.extend_from_slice(&buf[at..end]);
        at = (end + 2).min(buf.len());
    }
    (body, at, complete)
}

/// Every response in `buf` whose head arrived (a pipelined exchange gives several), framed
/// by `Content-Length` or chunked; the last one may be cut short (`complete == false`).
pub fn parse_replies(mut buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while let Some(end) = find(buf, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = status_of(&head);
        let rest = &buf[end + 4..];
        let chunked = header_of(&head, "transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            let (body, used, complete) = dechunk(rest);
            out.push(Reply {
                status,
                head,
                body,
                complete,
            });
            buf = &rest[used..];
            continue;
        }
        let length = header_of(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let take = length.min(rest.len());
        out.push(Reply {
            status,
            head,
            body: rest[..take].to_vec(),
            complete: take == length,
        });
        buf = &rest[take..];
    }
    out
}

/// `body` in chunks of `chunk` bytes, with the last chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A connection whose reads and writes give up after 20 s.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads a connection until the server closes it (or resets it, or the socket's read
/// timeout passes).
pub fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
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

/// How a read of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// End of file or a reset: the server closed the connection.
    Closed,
    /// The deadline passed with the connection still open.
    Open,
}

/// Reads everything `s` receives until the server closes it or `deadline` passes.
pub fn read_until_closed_by(s: &mut TcpStream, deadline: Instant) -> (Vec<u8>, End) {
    read_until(s, deadline, |_| false)
}

/// The first whole response on `s`, if it arrives by `deadline`.
pub fn read_reply(s: &mut TcpStream, deadline: Instant) -> Option<Reply> {
    let first_whole = |buf: &[u8]| parse_replies(buf).into_iter().next().filter(|r| r.complete);
    let (buf, _) = read_until(s, deadline, |buf| first_whole(buf).is_some());
    first_whole(&buf)
}

/// Reads what `s` receives until `done(what arrived)`, the server closes the connection,
/// or `deadline` passes (`End::Open`, also when done).
fn read_until(
    s: &mut TcpStream,
    deadline: Instant,
    done: impl Fn(&[u8]) -> bool,
) -> (Vec<u8>, End) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if done(&buf) || left.is_zero() {
            return (buf, End::Open);
        }
        if s.set_read_timeout(Some(left)).is_err() {
            return (buf, End::Closed);
        }
        match s.read(&mut chunk) {
            Ok(0) => return (buf, End::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return (buf, End::Closed),
        }
    }
}

/// Sends raw bytes (write errors ignored: the server may close early), half-closes, and
/// returns every response the server wrote before closing.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<Reply> {
    let mut s = connect(addr);
    let _ = s.write_all(request);
    let _ = s.flush();
    let _ = s.shutdown(Shutdown::Write);
    parse_replies(&read_until_closed(&mut s))
}

/// One request with `Connection: close` (and a `Content-Length` unless `headers` frame the
/// body), exchanged as above; `None` when the server closed without answering.
pub fn send(
    addr: SocketAddr,
    method: &str,
    target: &[u8],
    headers: &[&str],
    body: &[u8],
) -> Option<Reply> {
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for h in headers {
        req.extend_from_slice(h.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    if !headers.iter().any(|h| {
        h.to_ascii_lowercase().starts_with("content-length")
            || h.to_ascii_lowercase().starts_with("transfer-encoding")
    }) && !body.is_empty()
    {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    exchange(addr, &req).into_iter().next()
}

/// A JSON POST with an optional bearer token, over raw TCP.
pub fn post_raw(addr: SocketAddr, path: &str, token: Option<&str>, body: &[u8]) -> Option<Reply> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut headers = vec!["Content-Type: application/json"];
    if let Some(a) = &auth {
        headers.push(a);
    }
    send(addr, "POST", path.as_bytes(), &headers, body)
}

/// A GET with an optional bearer token, over raw TCP.
pub fn get_raw(addr: SocketAddr, target: &[u8], token: Option<&str>) -> Option<Reply> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    send(addr, "GET", target, &headers, b"")
}

/// The bytes of a GET, keep-alive or `Connection: close`.
pub fn get_request(target: &str, token: Option<&str>, keep_alive: bool) -> String {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !keep_alive {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    req
}

/// The bytes of a JSON POST, keep-alive or `Connection: close`.
pub fn post_request(path: &str, token: Option<&str>, body: &str, keep_alive: bool) -> String {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !keep_alive {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// Sends `raw` on a new connection and waits up to `limit` for one whole response; returns
/// it and how long it took, or `None` when none came in time.
pub fn timed_request(addr: SocketAddr, raw: &[u8], limit: Duration) -> Option<(Reply, Duration)> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(raw).ok()?;
    let r = read_reply(&mut s, started + limit)?;
    Some((r, started.elapsed()))
}

/// A health check answered `200` within `limit`: how long it took.
pub fn health_within(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let (r, took) = timed_request(
        addr,
        get_request("/api/health/", None, false).as_bytes(),
        limit,
    )?;
    (r.status == 200).then_some(took)
}

/// A connection with a receive buffer of `recv_buffer` bytes and, if given, a maximum
/// segment size, both set before connecting.
pub fn small_buffer_client(addr: SocketAddr, recv_buffer: usize, mss: Option<u32>) -> TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    sock.set_recv_buffer_size(recv_buffer).unwrap();
    if let Some(mss) = mss {
        sock.set_mss(mss).unwrap();
    }
    sock.connect(&addr.into()).unwrap();
    TcpStream::from(sock)
}

/// A client that reads nothing: a tiny receive buffer and a small segment size. On loopback
/// (MTU 64 KiB) the kernel sizes a socket's send buffer from the segment size, to about
/// 2.6 MB, so without a small MSS megabytes of answers would disappear into the server's
/// send buffer and no write of the server's would ever block.
pub fn non_reading_client(addr: SocketAddr) -> TcpStream {
    small_buffer_client(addr, 2048, Some(1000))
}

/// Writes `bytes` on a thread of its own (the server may stop reading them).
pub fn write_in_background(sock: &TcpStream, bytes: Vec<u8>) -> JoinHandle<()> {
    let mut w = sock.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
    })
}
