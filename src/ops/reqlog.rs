//! The request log writer: handlers never write the log themselves. Each request's entry
//! goes into a bounded channel; one background thread writes entries in batches (one
//! transaction per batch), keeps the hourly/daily roll-ups, prunes rows older than the
//! retention, deletes expired sessions, and closes event streams whose session has ended.
//!
//! The table is bounded twice (see `Limits`): one client may add at most
//! `PER_CLIENT_PER_MINUTE` rows a minute (beyond, its requests are counted in the roll-ups
//! but not stored), and the table keeps at most `MAX_ROWS` rows (the oldest beyond go).

use crate::config::Config;
use crate::http::proxy::client_network;
use crate::live::Hub;
use crate::store::{self, stats::LogEntry};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Entries waiting for the writer. The channel allocates all its slots up front (about
/// 170 bytes each), so this is kept to what a busy second can queue between two batches.
const QUEUE: usize = 8_192;
const BATCH: usize = 1_000;
const FLUSH_EVERY: Duration = Duration::from_millis(250);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);

/// Rows one client (an IPv4 address, an IPv6 /64) may add to the request log per minute.
/// The web app makes a handful of calls per action and is pushed the rest over its event
/// stream: a very busy person stays under 100 a minute, and a family or an office behind
/// one NAT address several times that. A flood from one address (77,000 requests in 8 s
/// once added 46 MB) then adds at most 600 rows, about 150 KB, a minute.
pub const PER_CLIENT_PER_MINUTE: u32 = 600;

/// Rows the request log keeps at most (see `config::LOG_MAX_ROWS`).
pub const MAX_ROWS: u64 = crate::config::LOG_MAX_ROWS;

/// Distinct clients counted per minute. Past this many in one minute (a flood from many
/// addresses) the new ones share one count with the same bound, so the counts take at
/// most about 0.5 MB.
const MAX_CLIENTS: usize = 10_000;

/// The bounds of the request log table. 0 means no bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rows one client may add per minute.
    pub per_client_per_minute: u32,
    /// Rows kept at most.
    pub max_rows: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_client_per_minute: PER_CLIENT_PER_MINUTE,
            max_rows: MAX_ROWS,
        }
    }
}

#[derive(Clone)]
pub struct LogSender {
    tx: Sender<LogEntry>,
    dropped: Arc<AtomicU64>,
    throttled: Arc<AtomicU64>,
}

impl LogSender {
    /// Entries dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Entries not stored so far because their client was over its bound for the minute
    /// (`Limits::per_client_per_minute`). They are still counted in the dashboard's
    /// figures (`api_calls_today`, `api_usage`).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Never blocks: if the writer is that far behind, the entry is counted and dropped
    /// rather than slowing the request.
    pub fn send(&self, entry: LogEntry) {
        match self.tx.try_send(entry) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    log::warn!("request log: {dropped} entries dropped so far (writer behind)");
                }
            }
        }
    }
}

/// Starts the writer thread with the default `Limits`. It exits, after a last flush, once
/// every `LogSender` is gone.
pub fn start(config: &Config, hub: Arc<Hub>) -> Result<(LogSender, JoinHandle<()>), String> {
    let limits = Limits {
        max_rows: config.log_max_rows,
        ..Limits::default()
    };
    start_with(config, hub, limits)
}

/// Starts the writer thread with the given bounds.
pub fn start_with(
    config: &Config,
    hub: Arc<Hub>,
    limits: Limits,
) -> Result<(LogSender, JoinHandle<()>), String> {
    let (tx, rx) = bounded(QUEUE);
    let conn = store::open(&config.db_path, config.sync)?;
    let retention = config.log_retention_days;
    let (max_rows, check_every) = (limits.max_rows, config.stream_check_every);
    let throttled = Arc::new(AtomicU64::new(0));
    let per_client = PerClient::new(limits.per_client_per_minute, throttled.clone());
    let handle = std::thread::Builder::new()
        .name("request-log".into())
        .spawn(move || run(conn, rx, retention, max_rows, check_every, per_client, &hub))
        .map_err(|e| format!("cannot start the log writer: {e}"))?;
    Ok((
        LogSender {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            throttled,
        },
        handle,
    ))
}

fn run(
    conn: rusqlite::Connection,
    rx: Receiver<LogEntry>,
    retention_days: u32,
    max_rows: u64,
    stream_check_every: Duration,
    mut per_client: PerClient,
    hub: &Hub,
) {
    let mut batch = Vec::with_capacity(BATCH);
    // The times of entries over their client's bound: counted, not stored.
    let mut counted_only = Vec::new();
    let mut last_housekeeping: Option<Instant> = None;
    let mut last_stream_check = Instant::now();
    loop {
        let disconnected = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(first) => {
                for entry in std::iter::once(first).chain(rx.try_iter().take(BATCH - 1)) {
                    if per_client.admit(&entry) {
                        batch.push(entry);
                    } else {
                        counted_only.push(entry.created_at);
                    }
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if !batch.is_empty() || !counted_only.is_empty() {
            if let Err(e) = store::stats::insert_log_batch(&conn, &batch, &counted_only, max_rows) {
                log::error!(
                    "request log: dropped {} entries: {e}",
                    batch.len() + counted_only.len()
                );
            }
            batch.clear();
            counted_only.clear();
        }
        if last_housekeeping.is_none_or(|t| t.elapsed() >= HOUSEKEEPING_EVERY) {
            housekeeping(&conn, retention_days, max_rows);
            last_housekeeping = Some(Instant::now());
        }
        if last_stream_check.elapsed() >= stream_check_every {
            close_ended_streams(&conn, hub);
            last_stream_check = Instant::now();
        }
        if disconnected {
            break;
        }
    }
}

/// Prunes the request log (rows older than the retention, then the oldest beyond
/// `max_rows`) and expired sessions. Every batch trims the table too; this catches up a
/// table that was over the cap at start-up, in short transactions.
pub fn housekeeping(conn: &rusqlite::Connection, retention_days: u32, max_rows: u64) {
    let now = store::now_us();
    let cutoff = now - i64::from(retention_days) * crate::time::DAY_US;
    match store::stats::prune_log(conn, cutoff) {
        Ok(n) if n > 0 => {
            log::info!("request log: pruned {n} entries older than {retention_days} days")
        }
        Ok(_) => {}
        Err(e) => log::error!("request log: pruning failed: {e}"),
    }
    let mut trimmed = 0;
    loop {
        let chunk = store::write_tx(conn).and_then(|tx| {
            let n = store::stats::trim_log(&tx, max_rows)?;
            tx.commit().map(|()| n)
        });
        match chunk {
            Ok(n) => {
                trimmed += n;
                if (n as u64) < store::stats::TRIM_CHUNK {
                    break;
                }
            }
            Err(e) => {
                log::error!("request log: trimming failed: {e}");
                break;
            }
        }
    }
    if trimmed > 0 {
        log::info!("request log: deleted the {trimmed} oldest entries beyond {max_rows}");
    }
    if let Err(e) = store::sessions::delete_expired(conn, now) {
        log::error!("sessions: cleanup failed: {e}");
    }
}

/// Closes the event streams of sessions that expired or were revoked (by logout elsewhere,
/// a password change, or deactivation from the command line).
pub fn close_ended_streams(conn: &rusqlite::Connection, hub: &Hub) {
    let now = store::now_us();
    let hashes = hub.session_hashes();
    if hashes.is_empty() {
        return;
    }
    let mut ended = Vec::new();
    for h in hashes {
        match store::sessions::find(conn, &h) {
            Ok(Some(s)) if s.is_valid(now) => {}
            Ok(_) => ended.push(h),
            Err(e) => log::error!("stream check: {e}"),
        }
    }
    if !ended.is_empty() {
        hub.retain_sessions(|h| !ended.iter().any(|e| e == h));
    }
}

/// Who a client is for the per-minute bound: an IPv4 address, or an IPv6 address's /64 (the
/// smallest network one subscriber is given, so one client cannot rotate within it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    /// The address, or an IPv6 address's network (`http::proxy::client_network`).
    Net(IpAddr),
    /// Every client past `MAX_CLIENTS` in one minute (and any address that does not parse).
    Others,
}

impl Client {
    fn of(address: &str) -> Client {
        address
            .parse::<IpAddr>()
            .map_or(Client::Others, |ip| Client::Net(client_network(ip)))
    }

    fn describe(self, address: &str) -> String {
        match self {
            Client::Net(IpAddr::V4(_)) => format!("client {address}"),
            Client::Net(IpAddr::V6(net)) => format!("client {net}/64"),
            Client::Others => format!("clients past the first {MAX_CLIENTS} this minute"),
        }
    }
}

/// Each client's entries in the current minute, counted in the writer thread (the only one:
/// no lock, and nothing added to a request's own work). The counts are dropped when the
/// minute ends, and at most `MAX_CLIENTS` clients are counted apart.
struct PerClient {
    limit: u32,
    minute: i64,
    counts: HashMap<Client, u32>,
    throttled: Arc<AtomicU64>,
}

const MINUTE_US: i64 = 60_000_000;

impl PerClient {
    fn new(limit: u32, throttled: Arc<AtomicU64>) -> PerClient {
        PerClient {
            limit,
            minute: i64::MIN,
            counts: HashMap::new(),
            throttled,
        }
    }

    /// Whether `entry` is stored; one not stored is counted in `throttled`, and the first
    /// of a client in a minute is said once on the log.
    fn admit(&mut self, entry: &LogEntry) -> bool {
        if self.limit == 0 {
            return true;
        }
        let minute = entry.created_at.div_euclid(MINUTE_US);
        // A new minute; or the clock went back (entries of a minute just ended, finished
        // by other workers, still count in the new one).
        if minute > self.minute || minute < self.minute - 1 {
            self.minute = minute;
            self.counts.clear();
            self.counts.shrink_to(1_024);
        }
        let mut client = Client::of(&entry.ip_address);
        if self.counts.len() >= MAX_CLIENTS && !self.counts.contains_key(&client) {
            client = Client::Others;
        }
        let n = self.counts.entry(client).or_insert(0);
        *n = n.saturating_add(1);
        if *n <= self.limit {
            return true;
        }
        if *n == self.limit + 1 {
            log::warn!(
                "request log: {} made over {} requests this minute; the rest of its \
                 requests this minute are counted but not stored",
                client.describe(&entry.ip_address),
                self.limit
            );
        }
        self.throttled.fetch_add(1, Ordering::Relaxed);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: i64, ip: &str) -> LogEntry {
        LogEntry {
            created_at: at,
            method: "GET".into(),
            endpoint: "(unknown)".into(),
            status: 404,
            duration_us: 0,
            user_id: None,
            username: None,
            ip_address: ip.into(),
            user_agent: String::new(),
        }
    }

    fn admitted(p: &mut PerClient, at: i64, ip: &str, n: usize) -> usize {
        (0..n).filter(|_| p.admit(&entry(at, ip))).count()
    }

    #[test]
    fn each_client_gets_its_bound_per_minute() {
        let throttled = Arc::new(AtomicU64::new(0));
        let mut p = PerClient::new(5, throttled.clone());
        let t = 100 * MINUTE_US;
        assert_eq!(admitted(&mut p, t, "192.0.2.1", 8), 5);
        assert_eq!(admitted(&mut p, t + 1, "192.0.2.2", 3), 3, "another client");
        assert_eq!(throttled.load(Ordering::Relaxed), 3);
        // Late entries of the minute before count in this one.
        assert_eq!(admitted(&mut p, t + MINUTE_US, "192.0.2.1", 2), 2);
        assert_eq!(admitted(&mut p, t + MINUTE_US - 1, "192.0.2.1", 4), 3);
        assert_eq!(admitted(&mut p, t + 2 * MINUTE_US, "192.0.2.1", 6), 5);
        // The clock set back by an hour starts a new minute rather than a long silence.
        assert_eq!(admitted(&mut p, t - 60 * MINUTE_US, "192.0.2.1", 6), 5);
        // Zero: no bound.
        let mut p = PerClient::new(0, throttled);
        assert_eq!(admitted(&mut p, t, "192.0.2.1", 50), 50);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let mut p = PerClient::new(4, Arc::new(AtomicU64::new(0)));
        let t = 7 * MINUTE_US;
        let stored = (0..10)
            .filter(|i| p.admit(&entry(t, &format!("2001:db8:1:2::{i:x}"))))
            .count();
        assert_eq!(stored, 4);
        assert_eq!(admitted(&mut p, t, "2001:db8:1:3::1", 4), 4, "another /64");
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(admitted(&mut p, t, "::ffff:192.0.2.9", 2), 2);
        assert_eq!(admitted(&mut p, t, "192.0.2.9", 4), 2);
        assert_eq!(
            Client::of("2001:db8:1:2::7").describe("2001:db8:1:2::7"),
            "client 2001:db8:1:2::/64"
        );
    }

    #[test]
    fn counts_stay_bounded_under_a_flood_from_many_addresses() {
        let mut p = PerClient::new(3, Arc::new(AtomicU64::new(0)));
        let t = 3 * MINUTE_US;
        let ip = |i: u32| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        for i in 0..MAX_CLIENTS as u32 {
            assert!(p.admit(&entry(t, &ip(i))));
        }
        // Clients past the first MAX_CLIENTS share one count.
        let stored = (0..100)
            .filter(|i| p.admit(&entry(t, &ip(MAX_CLIENTS as u32 + i))))
            .count();
        assert_eq!(stored, 3);
        assert_eq!(p.counts.len(), MAX_CLIENTS + 1);
        // Known clients keep their own.
        assert!(p.admit(&entry(t, &ip(0))));
        // A new minute forgets them all.
        assert!(p.admit(&entry(t + MINUTE_US, &ip(MAX_CLIENTS as u32 + 500))));
        assert_eq!(p.counts.len(), 1);
        assert!(p.counts.capacity() < MAX_CLIENTS);
    }
}
