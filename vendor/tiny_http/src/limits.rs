//! Connection limits (added for White Beat; not in upstream tiny_http 0.12).
//!
//! Upstream reads every connection on its own thread with no socket timeouts, no bound on
//! header lines, and no cap on connections, so a few slow or idle clients can pin threads
//! and memory. These limits are enforced where they belong, at the accepting socket and
//! while a request's head is read.

use crate::connection::Connection;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits applied to every accepted connection.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Socket read timeout: an idle keep-alive connection is closed after this.
    pub read_timeout: Option<Duration>,
    /// Socket write timeout: a peer that stops reading cannot block a writer forever.
    pub write_timeout: Option<Duration>,
    /// From the first byte of a request, its head (and a pre-buffered body) must arrive
    /// within this time, however slowly it trickles in.
    pub request_timeout: Duration,
    /// Connections beyond this are answered `503` and closed at once.
    pub max_connections: usize,
    /// Longest request line, in bytes.
    pub max_request_line: usize,
    /// Most header lines, and most header bytes in all.
    pub max_headers: usize,
    pub max_header_bytes: usize,
    /// Bodies with a `Content-Length` up to this are read on the connection's thread
    /// before the request is handed to a worker.
    pub prebuffer_body: usize,
    /// Requests to these paths (event streams) are the last on their connection, as an
    /// upgrade is: the connection stops reading further requests, so when the handler drops
    /// the writer it took with `into_writer()`, the socket closes at once.
    pub final_request_paths: Vec<String>,
}

impl Limits {
    pub(crate) fn is_final_request(&self, url: &str) -> bool {
        let path = url.split('?').next().unwrap_or(url);
        self.final_request_paths.iter().any(|p| p == path)
    }
}

impl Default for Limits {
    /// Upstream's behaviour, minus the unbounded header lines.
    fn default() -> Limits {
        Limits {
            read_timeout: None,
            write_timeout: None,
            request_timeout: Duration::from_secs(3600),
            max_connections: usize::MAX,
            max_request_line: 64 * 1024,
            max_headers: 1024,
            max_header_bytes: 256 * 1024,
            prebuffer_body: 1024,
            final_request_paths: Vec::new(),
        }
    }
}

/// Counts one open connection for as long as it lives.
pub(crate) struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> OpenGuard {
        count.fetch_add(1, Ordering::SeqCst);
        OpenGuard(count.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers a connection over the cap with `503` and closes it.
pub(crate) fn refuse(sock: Connection) {
    let mut sock = sock;
    let body = "{\"error\": \"Too many connections; try again shortly\"}";
    let _ = write!(
        sock,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        body
    );
    let _ = sock.flush();
}

/// Accept failures that say nothing about the listening socket itself.
pub(crate) fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
    ) || matches!(e.raw_os_error(), Some(23) | Some(24) | Some(105) | Some(12))
    // ENFILE, EMFILE, ENOBUFS, ENOMEM
}
