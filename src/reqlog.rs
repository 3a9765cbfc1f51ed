//! The request log writer: handlers never write the log themselves. Each request's entry
//! goes into a bounded channel; one background thread writes entries in batches (one
//! transaction per batch), keeps the hourly/daily roll-ups, prunes rows older than the
//! retention, deletes expired sessions, and closes event streams whose session has ended.

use crate::config::Config;
use crate::db::{self, stats::LogEntry};
use crate::live::Hub;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
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
const STREAM_CHECK_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct LogSender {
    tx: Sender<LogEntry>,
    dropped: Arc<AtomicU64>,
}

impl LogSender {
    /// Entries dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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

/// Starts the writer thread. It exits, after a last flush, once every `LogSender` is gone.
pub fn start(config: &Config, hub: Arc<Hub>) -> Result<(LogSender, JoinHandle<()>), String> {
    let (tx, rx) = bounded(QUEUE);
    let conn = db::open(&config.db_path, config.sync)?;
    let retention = config.log_retention_days;
    let handle = std::thread::Builder::new()
        .name("request-log".into())
        .spawn(move || run(conn, rx, retention, &hub))
        .map_err(|e| format!("cannot start the log writer: {e}"))?;
    Ok((
        LogSender {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        },
        handle,
    ))
}

fn run(conn: rusqlite::Connection, rx: Receiver<LogEntry>, retention_days: u32, hub: &Hub) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_housekeeping: Option<Instant> = None;
    let mut last_stream_check = Instant::now();
    loop {
        let disconnected = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(entry) => {
                batch.push(entry);
                batch.extend(rx.try_iter().take(BATCH - 1));
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if !batch.is_empty() {
            if let Err(e) = db::stats::insert_log_batch(&conn, &batch) {
                log::error!("request log: dropped {} entries: {e}", batch.len());
            }
            batch.clear();
        }
        if last_housekeeping.is_none_or(|t| t.elapsed() >= HOUSEKEEPING_EVERY) {
            housekeeping(&conn, retention_days);
            last_housekeeping = Some(Instant::now());
        }
        if last_stream_check.elapsed() >= STREAM_CHECK_EVERY {
            close_ended_streams(&conn, hub);
            last_stream_check = Instant::now();
        }
        if disconnected {
            break;
        }
    }
}

/// Prunes the request log and expired sessions.
pub fn housekeeping(conn: &rusqlite::Connection, retention_days: u32) {
    let now = db::now_us();
    let cutoff = now - i64::from(retention_days) * crate::time::DAY_US;
    match db::stats::prune_log(conn, cutoff) {
        Ok(n) if n > 0 => {
            log::info!("request log: pruned {n} entries older than {retention_days} days")
        }
        Ok(_) => {}
        Err(e) => log::error!("request log: pruning failed: {e}"),
    }
    if let Err(e) = db::sessions::delete_expired(conn, now) {
        log::error!("sessions: cleanup failed: {e}");
    }
}

/// Closes the event streams of sessions that expired or were revoked (by logout elsewhere,
/// a password change, or deactivation from the command line).
pub fn close_ended_streams(conn: &rusqlite::Connection, hub: &Hub) {
    let now = db::now_us();
    let hashes = hub.session_hashes();
    if hashes.is_empty() {
        return;
    }
    let mut ended = Vec::new();
    for h in hashes {
        match db::sessions::find(conn, &h) {
            Ok(Some(s)) if s.is_valid(now) => {}
            Ok(_) => ended.push(h),
            Err(e) => log::error!("stream check: {e}"),
        }
    }
    if !ended.is_empty() {
        hub.retain_sessions(|h| !ended.iter().any(|e| e == h));
    }
}
