//! Connection limits (added for White Beat; not in upstream tiny_http 0.12).
//!
//! Upstream reads every connection on its own thread with no socket timeouts, no bound on
//! header lines, and no cap on connections, so a few slow or idle clients can pin threads
//! and memory. These limits are enforced where they belong, at the accepting socket and
//! while a request's head is read.

use crate::connection::Connection;
use std::io::Write;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits applied to every accepted connection.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Socket read timeout: an idle keep-alive connection is closed after this.
    pub read_timeout: Option<Duration>,
    /// A new connection must send its first byte within this time.
    pub first_byte_timeout: Option<Duration>,
    /// Socket write timeout of a taken-over writer (an event stream): a peer that stops
    /// reading cannot block its writer forever.
    pub write_timeout: Option<Duration>,
    /// A whole response must be written within this time, however slowly the peer reads;
    /// past it the connection is closed. Responses are written by the connection's own
    /// thread, so a slow reader holds nothing shared.
    pub response_timeout: Duration,
    /// From the first byte of a request, its head (and a pre-buffered body) must arrive
    /// within this time, however slowly it trickles in.
    pub request_timeout: Duration,
    /// Connections beyond this are answered `503` and closed at once.
    pub max_connections: usize,
    /// Connections from one peer address beyond this are answered `429` and closed at once.
    pub max_connections_per_address: usize,
    /// Peer addresses exempt from `max_connections_per_address` (a trusted reverse proxy,
    /// through which every user arrives).
    pub exempt_from_per_address: Option<AddressFilter>,
    /// Longest request line, in bytes.
    pub max_request_line: usize,
    /// Most header lines, and most header bytes in all.
    pub max_headers: usize,
    pub max_header_bytes: usize,
    /// Responses over `SMALL_RESPONSE` bytes that are waiting to be written (to clients that
    /// read slowly) hold at most this many bytes in all; past it a new one is replaced by a
    /// `503`. Small responses always go, so an answer such as a send's `201` is never lost.
    pub max_unsent_bytes: usize,
    /// Bodies with a `Content-Length` up to this are read on the connection's thread
    /// before the request is handed to a worker.
    pub prebuffer_body: usize,
}

/// A predicate on peer addresses.
#[derive(Clone)]
pub struct AddressFilter(pub Arc<dyn Fn(IpAddr) -> bool + Send + Sync>);

impl std::fmt::Debug for AddressFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressFilter")
    }
}

impl Default for Limits {
    /// Upstream's behaviour, minus the unbounded header lines.
    fn default() -> Limits {
        Limits {
            read_timeout: None,
            first_byte_timeout: None,
            write_timeout: None,
            response_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(3600),
            max_connections: usize::MAX,
            max_connections_per_address: usize::MAX,
            exempt_from_per_address: None,
            max_request_line: 64 * 1024,
            max_headers: 1024,
            max_header_bytes: 256 * 1024,
            prebuffer_body: 1024,
            max_unsent_bytes: usize::MAX,
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
    refuse_with(sock, "503 Service Unavailable", "Too many connections; try again shortly");
}

/// Answers a connection over its address's cap with `429` and closes it.
pub(crate) fn refuse_per_address(sock: Connection) {
    refuse_with(
        sock,
        "429 Too Many Requests",
        "Too many connections from your address; close some and try again",
    );
}

fn refuse_with(sock: Connection, status: &str, message: &str) {
    let mut sock = sock;
    // A fresh socket's buffer takes this small answer at once; the write timeout set at
    // accept bounds the rare case where it does not.
    let body = format!("{{\"error\": \"{message}\"}}");
    let _ = write!(
        sock,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
         Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        body
    );
    let _ = sock.flush();
}

/// Open connections per peer address, for `max_connections_per_address`.
#[derive(Default)]
pub(crate) struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// Counts a connection from `ip` unless that address is at `max`.
    /// An IPv6 peer counts by its /64: one host may take any address in it.
    pub(crate) fn admit(this: &Arc<PerAddress>, ip: IpAddr, max: usize) -> Option<AddressGuard> {
        let ip = match ip {
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !(u64::MAX as u128)).into()),
            v4 => v4,
        };
        let mut map = this.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressGuard(this.clone(), ip))
    }
}

/// One connection counted against its address while it lives.
pub(crate) struct AddressGuard(Arc<PerAddress>, IpAddr);

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
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

/// Responses up to this size are always written, and not counted in `max_unsent_bytes`.
pub const SMALL_RESPONSE: usize = 64 * 1024;

/// The bytes of large responses handed to connection threads and not yet written.
pub(crate) struct UnsentBudget {
    held: AtomicUsize,
    max: usize,
}

impl UnsentBudget {
    pub(crate) fn new(max: usize) -> Arc<UnsentBudget> {
        Arc::new(UnsentBudget {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// Reserves `n` bytes, unless that would pass the budget.
    pub(crate) fn reserve(this: &Arc<UnsentBudget>, n: usize) -> Option<Reservation> {
        let mut held = this.held.load(Ordering::SeqCst);
        loop {
            let after = held.checked_add(n).filter(|&a| a <= this.max)?;
            match this
                .held
                .compare_exchange(held, after, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(Reservation(this.clone(), n)),
                Err(now) => held = now,
            }
        }
    }
}

/// Bytes of one unsent response, given back when it is written or abandoned.
pub(crate) struct Reservation(Arc<UnsentBudget>, usize);

impl Drop for Reservation {
    fn drop(&mut self) {
        self.0.held.fetch_sub(self.1, Ordering::SeqCst);
    }
}
