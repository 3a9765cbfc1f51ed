//! Settings of a running server, built once from flags and environment variables (see
//! `main.rs`) or directly by tests, then shared read-only by every thread.

use crate::http::proxy::TrustedProxies;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Rows the request log keeps at most by default, besides `--log-retention-days`; the oldest
/// beyond are deleted. A row takes about 250 bytes with its index (a browser's user agent is
/// most of it; at most 450 with the longest kept), so the table stays under about 250 MB
/// (450 MB at worst), small next to a database of messages and safe on a Raspberry Pi's SD
/// card. It holds 30 days of a 30-person server making 1,000 requests per person a day.
pub const LOG_MAX_ROWS: u64 = 1_000_000;

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

/// Who may create an account through `POST /api/signup/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignupMode {
    /// Anyone who can reach the server. The default, for a local run.
    Open,
    /// Only with a valid invite code from an admin. Recommended for a public server.
    Invite,
    /// Nobody: admins create accounts (admin page or command line).
    Closed,
}

impl SignupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SignupMode::Open => "open",
            SignupMode::Invite => "invite",
            SignupMode::Closed => "closed",
        }
    }
}

impl std::str::FromStr for SignupMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "open" => Ok(SignupMode::Open),
            "invite" => Ok(SignupMode::Invite),
            "closed" => Ok(SignupMode::Closed),
            other => Err(format!(
                "unknown sign-up mode `{other}` (use open, invite or closed)"
            )),
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
    /// Add `Secure` to the session cookie even without an https `public_url` (a server
    /// reached over HTTPS under more than one name).
    pub cookie_secure: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed (see `proxy.rs`).
    pub trusted_proxies: TrustedProxies,
    /// The address users reach the server at (`--public-url`), when known.
    pub public_url: Option<PublicUrl>,
    /// Request-log rows older than this many days are deleted.
    pub log_retention_days: u32,
    /// The request log keeps at most this many rows; the oldest beyond are deleted.
    pub log_max_rows: u64,
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
    /// Open event streams allowed per client address (0: no limit).
    pub streams_per_address: usize,
    /// Open connections allowed per client address (0: no limit); a trusted proxy's own
    /// address is exempt, since every user arrives through it.
    pub connections_per_address: usize,
    /// A new connection must send its first byte within this time (an idle keep-alive
    /// connection, and one mid-request, have `request_timeout`).
    pub first_byte_timeout: Duration,
    /// A response must be written to the client within this time, however slowly the client
    /// reads; after it the connection is closed.
    pub response_timeout: Duration,
    /// Large responses (over 64 KiB) waiting for clients that read slowly may hold this many
    /// bytes in all; past it a new one is answered `503` instead.
    pub max_unsent_bytes: usize,
    /// Accounts one client address may create per hour (0: no limit).
    pub signups_per_hour: u32,
    /// Messages one user may send per minute (0: no limit); a burst of that many is allowed.
    pub sends_per_minute: u32,
    /// Who may sign up.
    pub signup: SignupMode,
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
        // Far beyond any use, and the schedule's clock arithmetic stays in range.
        if every > Duration::from_secs(10 * 366 * 24 * 3600) {
            return Err(format!("--backup-every {hours}: at most ten years"));
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
            trusted_proxies: TrustedProxies::default(),
            public_url: None,
            log_retention_days: 30,
            log_max_rows: LOG_MAX_ROWS,
            ui_dir: None,
            request_timeout: Duration::from_secs(10),
            max_connections: 4096,
            login_attempts: 5,
            login_window: Duration::from_secs(15 * 60),
            max_streams_per_user: 8,
            max_streams: 2000,
            streams_per_address: 64,
            connections_per_address: 256,
            first_byte_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            max_unsent_bytes: 64 * 1024 * 1024,
            signups_per_hour: 20,
            sends_per_minute: 120,
            signup: SignupMode::Open,
            backups: None,
        }
    }
}

impl Config {
    /// Whether the session cookie is marked `Secure`: served over HTTPS by its public URL,
    /// or forced with `cookie_secure`.
    pub fn secure_cookie(&self) -> bool {
        self.cookie_secure || self.public_url.as_ref().is_some_and(PublicUrl::is_https)
    }

    /// Whether a browser origin may call the API with credentials: the configured CORS
    /// origins and the public URL's own origin.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.cors_origins.iter().any(|o| o == origin)
            || self
                .public_url
                .as_ref()
                .is_some_and(|u| u.origin() == origin)
    }
}

/// The URL users reach the server at, such as `https://chat.example.org`: a scheme (http or
/// https) and a host, with no path, query or credentials, since the server is served at the
/// root of its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    url: url::Url,
    origin: String,
}

impl PublicUrl {
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// As browsers send it in `Origin`: `https://chat.example.org` (default port left out).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl std::fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.origin)
    }
}

impl std::str::FromStr for PublicUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s.trim()).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the scheme must be http or https, not `{}`",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("a host is required, as in https://chat.example.org".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials do not belong in the public URL".into());
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(
                "the server is served at the root of its origin: no path, query or fragment".into(),
            );
        }
        let origin = url.origin().ascii_serialization();
        Ok(PublicUrl { url, origin })
    }
}

/// Enough workers to keep both the CPU and the disk busy: SQLite commits wait on fsync,
/// so a few more threads than cores pay off.
pub fn default_threads() -> usize {
    (num_cpus::get() * 4).clamp(4, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        let u: PublicUrl = "https://chat.example.org".parse().unwrap();
        assert!(u.is_https());
        assert_eq!(u.origin(), "https://chat.example.org");
        let u: PublicUrl = "HTTPS://Chat.Example.org:443/".parse().unwrap();
        assert_eq!(u.origin(), "https://chat.example.org");
        let u: PublicUrl = "http://10.0.0.5:8000".parse().unwrap();
        assert!(!u.is_https());
        assert_eq!(u.origin(), "http://10.0.0.5:8000");
        for bad in [
            "chat.example.org",
            "ftp://chat.example.org",
            "https://",
            "https://chat.example.org/chat",
            "https://chat.example.org/?x=1",
            "https://chat.example.org/#top",
            "https://me:pw@chat.example.org",
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secure_cookie_and_origins_follow_the_public_url() {
        let mut c = Config::new("x.sqlite3");
        assert!(!c.secure_cookie());
        assert!(!c.allows_origin("https://chat.example.org"));
        c.public_url = Some("https://chat.example.org".parse().unwrap());
        assert!(c.secure_cookie());
        assert!(c.allows_origin("https://chat.example.org"));
        assert!(c.allows_origin("http://localhost:3000"));
        c.public_url = Some("http://chat.example.org".parse().unwrap());
        assert!(!c.secure_cookie());
        c.cookie_secure = true;
        assert!(c.secure_cookie());
    }
}
