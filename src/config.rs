//! Settings of a running server, built once from flags and environment variables (see
//! `main.rs`) or directly by tests, then shared read-only by every thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How hard SQLite flushes a commit to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `synchronous=FULL`: a commit survives a power cut. The default.
    Full,
    /// `synchronous=NORMAL`: a commit survives a process crash but the last ones may be lost
    /// on power loss. Faster on slow storage.
    Normal,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(SyncMode::Full),
            "normal" => Ok(SyncMode::Normal),
            other => Err(format!("unknown sync mode `{other}` (use full or normal)")),
        }
    }
}

/// Argon2id cost. The default follows OWASP's password storage guidance
/// (m = 19 MiB, t = 2, p = 1).
#[derive(Clone, Copy, Debug)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Argon2Cost {
            memory_kib: 19_456,
            iterations: 2,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub db_path: PathBuf,
    pub bind: SocketAddr,
    /// Request worker threads, each with its own database connection.
    pub threads: usize,
    /// Origins allowed to call the API from a browser with credentials.
    pub cors_origins: Vec<String>,
    pub body_limit: usize,
    /// A session expires after this long without use.
    pub session_idle: Duration,
    pub argon2: Argon2Cost,
    pub sync: SyncMode,
    /// Add `Secure` to the session cookie (set it when served over HTTPS).
    pub cookie_secure: bool,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted reverse proxy).
    pub trust_proxy: bool,
    /// Request-log rows older than this many days are deleted.
    pub log_retention_days: u32,
    /// Serve the web UI from this directory instead of the embedded one.
    pub ui_dir: Option<PathBuf>,
    /// A connection that has not sent a whole request in this time is closed.
    pub request_timeout: Duration,
    /// At most this many client connections are open at once.
    pub max_connections: usize,
    /// Failed logins allowed per account and per client address in one throttle window.
    pub login_attempts: u32,
    pub login_window: Duration,
    /// Open event streams allowed per user and in all.
    pub max_streams_per_user: usize,
    pub max_streams: usize,
    /// Backups the server takes itself; none unless a directory is given.
    pub backups: Option<BackupSchedule>,
}

/// `serve --backup-dir --backup-every --backup-keep`.
#[derive(Clone, Debug)]
pub struct BackupSchedule {
    /// Where the backups go (it must exist); one directory per database.
    pub dir: PathBuf,
    /// Time from the start of one backup to the start of the next.
    pub every: Duration,
    /// The newest this many are kept; older ones are deleted.
    pub keep: usize,
}

impl BackupSchedule {
    /// Every 24 hours, the last 7 kept.
    pub fn new(dir: impl Into<PathBuf>) -> BackupSchedule {
        BackupSchedule {
            dir: dir.into(),
            every: Duration::from_secs(24 * 3600),
            keep: 7,
        }
    }

    /// The interval from a number of hours, which may be fractional. Each backup is named
    /// by its second, so a shorter interval than one second is refused.
    pub fn hours(hours: f64) -> Result<Duration, String> {
        let every = Duration::try_from_secs_f64(hours * 3600.0)
            .map_err(|_| format!("--backup-every {hours}: not a number of hours"))?;
        if every < Duration::from_secs(1) {
            return Err(format!(
                "--backup-every {hours}: at least one second (0.0003 hours) is needed"
            ));
        }
        Ok(every)
    }
}

impl Config {
    /// The defaults of `whitebeat serve` with no flags.
    pub fn new(db_path: impl Into<PathBuf>) -> Config {
        Config {
            db_path: db_path.into(),
            bind: "127.0.0.1:8000".parse().expect("valid default address"),
            threads: default_threads(),
            cors_origins: vec![
                "http://localhost:3000".into(),
                "http://127.0.0.1:3000".into(),
            ],
            body_limit: 64 * 1024,
            session_idle: Duration::from_secs(30 * 24 * 3600),
            argon2: Argon2Cost::default(),
            sync: SyncMode::Full,
            cookie_secure: false,
            trust_proxy: false,
            log_retention_days: 30,
            ui_dir: None,
            request_timeout: Duration::from_secs(10),
            max_connections: 4096,
            login_attempts: 5,
            login_window: Duration::from_secs(15 * 60),
            max_streams_per_user: 8,
            max_streams: 2000,
            backups: None,
        }
    }
}

/// Enough workers to keep both the CPU and the disk busy: SQLite commits wait on fsync,
/// so a few more threads than cores pay off.
pub fn default_threads() -> usize {
    (num_cpus::get() * 4).clamp(4, 32)
}
