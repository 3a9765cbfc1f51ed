//! Settings of a running server, built once from flags and environment variables (see
//! `cli::args`) or directly by tests, then shared read-only by every thread.
//!
//! Every setting of the command line is declared once, in `settings!`: its name (the flag
//! is `--` and the name with dashes), its environment variable, its default and its help
//! text. From that one list come clap's arguments (`cli::args`), the typed defaults
//! ([`GlobalSettings`], [`ServeSettings`]) that [`Config::new`] converts, and the table
//! ([`all_settings`]) that a test holds the README's Configuration table to.

use crate::http::proxy::TrustedProxies;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting of `whitebeat`, once. Hands the list to the macro named `$then`
/// (`setting_types!` below, `clap_args!` in `cli::args`), where the types it names must be
/// in scope.
///
/// Each entry is the setting's help (its doc comment), `name: Type`, its environment
/// variable, then either `default "text"` (read as if given on the command line; `--help`
/// and the README show it) or `unset "meaning"` (no value: what the server does then, in the
/// README's words), and where needed `value_name` (what `--help` shows for the value) and
/// `delimiter` (a list given in one value, comma-separated). Global settings apply to every
/// command (`whitebeat --db x migrate`), the others to `serve`. A new setting is an entry
/// here, its use in `Config::from_settings` and its row in the README (a test says which is
/// missing).
macro_rules! settings {
    ($then:ident) => {
        $then! {
            global {
                /// SQLite database file (serve, migrate, createsuperuser, import-django and
                /// restore create it if missing; the other commands refuse a path with no
                /// database).
                db: PathBuf, env "WHITEBEAT_DB", default "whitebeat.sqlite3";
                /// Durability of commits: `full` survives a power cut; `normal` survives a
                /// crash of the process but may lose the last commits on power loss, and is
                /// faster on slow disks.
                sync: SyncMode, env "WHITEBEAT_SYNC", default "full";
                /// Argon2id memory cost in KiB for password hashes (OWASP: 19456).
                argon2_memory_kib: u32, env "WHITEBEAT_ARGON2_MEMORY_KIB", default "19456";
                /// Argon2id iterations for password hashes (OWASP: 2).
                argon2_iterations: u32, env "WHITEBEAT_ARGON2_ITERATIONS", default "2";
                /// What goes to stderr: `info` includes one line per request, `warn` only
                /// problems. WHITEBEAT_LOG, an env_logger filter such as
                /// `info,whitebeat::access=off`, still sets levels per module; this sets the
                /// overall level [default: info].
                log_level: Option<LogLevel>, env "WHITEBEAT_LOG_LEVEL", unset "info";
            }
            serve {
                /// Who may sign up: `open` (anyone who can reach the server), `invite` (with a
                /// code from an admin; recommended for a public server) or `closed` (admins
                /// create accounts).
                signup: SignupMode, env "WHITEBEAT_SIGNUP", default "open";
                /// Address and port to listen on.
                bind: SocketAddr, env "WHITEBEAT_BIND", default "127.0.0.1:8000";
                /// Request worker threads (default: from the CPU count).
                threads: Option<usize>, env "WHITEBEAT_THREADS", unset "4 × CPUs, 4–32";
                /// Browser origins allowed to call the API with credentials, comma-separated.
                cors_origins: Vec<String>, env "WHITEBEAT_CORS_ORIGINS",
                    default "http://localhost:3000,http://127.0.0.1:3000", delimiter ',';
                /// Largest accepted request body, in bytes.
                body_limit: usize, env "WHITEBEAT_BODY_LIMIT", default "65536";
                /// A session expires after this many days without use.
                session_days: u64, env "WHITEBEAT_SESSION_DAYS", default "30";
                /// The URL users reach the server at, such as https://chat.example.org. With
                /// https the session cookie is `Secure`; its origin may call the API from a
                /// browser.
                public_url: Option<PublicUrl>, env "WHITEBEAT_PUBLIC_URL", unset "none",
                    value_name "URL";
                /// Mark the session cookie `Secure` even without an https --public-url.
                cookie_secure: bool, env "WHITEBEAT_COOKIE_SECURE", unset "off";
                /// Reverse proxies whose X-Forwarded-For gives the client address: IP
                /// addresses or CIDR ranges, comma-separated (e.g. 127.0.0.1,10.0.0.0/8,::1).
                /// From anyone else the header is ignored.
                trusted_proxy: Vec<String>, env "WHITEBEAT_TRUSTED_PROXY", unset "none",
                    value_name "ADDR[,ADDR...]", delimiter ',';
                /// Delete request-log entries older than this many days.
                log_retention_days: u32, env "WHITEBEAT_LOG_RETENTION_DAYS", default "30";
                /// The request log keeps at most this many rows (about 250 bytes each); the
                /// oldest beyond are deleted (0: no cap).
                // A row takes about 250 bytes with its index (a browser's user agent is most
                // of it; at most 450 with the longest kept), so the table stays under about
                // 250 MB (450 MB at worst), small next to a database of messages and safe on
                // a Raspberry Pi's SD card. It holds 30 days of a 30-person server making
                // 1,000 requests per person a day.
                log_max_rows: u64, env "WHITEBEAT_LOG_MAX_ROWS", default "1000000";
                /// Serve the web UI from this directory instead of the embedded one.
                ui_dir: Option<PathBuf>, env "WHITEBEAT_UI_DIR", unset "embedded UI";
                /// Failed logins allowed per account (and four times that per address) per 15
                /// minutes.
                login_attempts: u32, env "WHITEBEAT_LOGIN_ATTEMPTS", default "5";
                /// Seconds a client has to send a whole request (head and body); also the idle
                /// keep-alive timeout.
                request_timeout: u64, env "WHITEBEAT_REQUEST_TIMEOUT", default "10";
                /// Seconds a new connection has to send its first byte.
                first_byte_timeout: u64, env "WHITEBEAT_FIRST_BYTE_TIMEOUT", default "5";
                /// Seconds a response has to reach the client, however slowly it reads; then
                /// the connection is closed.
                response_timeout: u64, env "WHITEBEAT_RESPONSE_TIMEOUT", default "30";
                /// Most client connections open at once; more are answered 503 and closed.
                max_connections: usize, env "WHITEBEAT_MAX_CONNECTIONS", default "4096";
                /// Most connections open from one client address (0: no limit); more are
                /// answered 429 and closed. Trusted proxies' own addresses are exempt.
                connections_per_address: usize, env "WHITEBEAT_CONNECTIONS_PER_ADDRESS",
                    default "256";
                /// MiB that large responses (over 64 KiB) waiting for slowly reading clients
                /// may hold in all; past it a new one is answered 503.
                max_unsent_mb: usize, env "WHITEBEAT_MAX_UNSENT_MB", default "64";
                /// Open event streams allowed per client address (0: no limit); more are
                /// answered 429.
                streams_per_address: usize, env "WHITEBEAT_STREAMS_PER_ADDRESS", default "64";
                /// Accounts one client address may create per hour (0: no limit); more are
                /// answered 429.
                signups_per_hour: u32, env "WHITEBEAT_SIGNUPS_PER_HOUR", default "20";
                /// Messages one user may send per minute, in a burst or spread out (0: no
                /// limit); more are answered 429.
                sends_per_minute: u32, env "WHITEBEAT_SENDS_PER_MINUTE", default "120";
                /// Open event streams allowed in all.
                max_streams: usize, env "WHITEBEAT_MAX_STREAMS", default "2000";
                /// Open event streams allowed per user.
                max_streams_per_user: usize, env "WHITEBEAT_MAX_STREAMS_PER_USER", default "8";
                /// Seconds an idle event stream waits before sending a heartbeat comment, so
                /// that proxies do not close it as idle (fractions allowed).
                heartbeat_secs: f64, env "WHITEBEAT_HEARTBEAT_SECS", default "15";
                /// Seconds between an idle event stream's checks that its client is still
                /// there: a closed tab frees its stream's place within this (fractions
                /// allowed).
                peer_check_secs: f64, env "WHITEBEAT_PEER_CHECK_SECS", default "1";
                /// Seconds between checks that each open event stream's session is still
                /// valid; a stream of an expired session is closed (fractions allowed).
                stream_check_secs: f64, env "WHITEBEAT_STREAM_CHECK_SECS", default "30";
                /// Take backups on a schedule into this directory (none without it).
                backup_dir: Option<PathBuf>, env "WHITEBEAT_BACKUP_DIR",
                    unset "none (no scheduled backups)";
                /// Hours between scheduled backups (fractions allowed, e.g. 0.5).
                backup_every: f64, env "WHITEBEAT_BACKUP_EVERY", default "24";
                /// Scheduled backups kept; older ones are deleted.
                backup_keep: usize, env "WHITEBEAT_BACKUP_KEEP", default "7";
            }
        }
    };
}
pub(crate) use settings;

/// One setting as the list declares it (its flag, environment variable and default), for
/// the checks that hold clap and the README to the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The field's name in [`GlobalSettings`] or [`ServeSettings`]; see [`Setting::flag`].
    pub name: &'static str,
    pub env: &'static str,
    /// Given to every command (placed before or after it), rather than to `serve` only.
    pub global: bool,
    /// The value taken when the setting is not given, as text.
    pub default: Option<&'static str>,
    /// For a setting with no default: what not giving it means.
    pub unset: Option<&'static str>,
}

impl Setting {
    /// `--sends-per-minute` for `sends_per_minute`.
    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }
}

/// Every setting: the global ones, then those of `serve`.
pub fn all_settings() -> impl Iterator<Item = &'static Setting> {
    GlobalSettings::TABLE.iter().chain(ServeSettings::TABLE)
}

/// Turns the list of `settings!` into a struct of typed values per group, whose `Default`
/// reads each default's text, and its `TABLE`.
macro_rules! setting_types {
    (global { $($global:tt)* } serve { $($serve:tt)* }) => {
        setting_types! {
            @group
            /// The settings every command takes (see `settings!`).
            GlobalSettings, true, $($global)*
        }
        setting_types! {
            @group
            /// The settings of `whitebeat serve` (see `settings!`), as given:
            /// [`Config::from_settings`] turns them into the server's [`Config`].
            ServeSettings, false, $($serve)*
        }
    };
    (
        @group $(#[$meta:meta])* $group:ident, $global:tt,
        $(
            $(#[doc = $doc:tt])*
            $name:ident: $ty:ident $(<$arg:ident>)?, env $env:tt
            $(, default $default:tt)? $(, unset $unset:tt)?
            $(, value_name $value_name:tt)? $(, delimiter $delimiter:tt)?;
        )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $group {
            $( $(#[doc = $doc])* pub $name: $ty $(<$arg>)?, )*
        }

        impl Default for $group {
            fn default() -> Self {
                $group {
                    $( $name: default_value!($ty $(<$arg>)?; $($default)?; $($delimiter)?), )*
                }
            }
        }

        impl $group {
            pub const TABLE: &'static [Setting] = &[$(
                Setting {
                    name: stringify!($name),
                    env: $env,
                    global: $global,
                    default: optional!($($default)?),
                    unset: optional!($($unset)?),
                },
            )*];
        }
    };
}

/// `Some(x)` or `None`.
macro_rules! optional {
    () => {
        None
    };
    ($x:tt) => {
        Some($x)
    };
}

/// A setting's value when it is not given, by the shape of its type: a plain value has a
/// default (its text parsed); an `Option` or a flag has none; a list may have either.
macro_rules! default_value {
    (Option<$t:ident>; ; ) => {
        None
    };
    (bool; ; ) => {
        false
    };
    (Vec<$t:ident>; ; $delimiter:tt) => {
        Vec::new()
    };
    (Vec<$t:ident>; $default:tt; $delimiter:tt) => {
        $default
            .split($delimiter)
            .map(parse_default::<$t>)
            .collect()
    };
    ($t:ident; $default:tt; ) => {
        parse_default::<$t>($default)
    };
}

fn parse_default<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .unwrap_or_else(|e| panic!("the default `{text}` is not valid: {e}"))
}

settings!(setting_types);

/// Rows the request log keeps at most by default: `--log-max-rows`'s default (see there), as
/// a constant for the request log's `Limits`.
pub const LOG_MAX_ROWS: u64 = decimal(setting_default("log_max_rows", ServeSettings::TABLE));

/// The default text of a setting, at compile time.
const fn setting_default(name: &str, table: &[Setting]) -> &'static str {
    let mut i = 0;
    while i < table.len() {
        if same(table[i].name.as_bytes(), name.as_bytes()) {
            if let Some(text) = table[i].default {
                return text;
            }
        }
        i += 1;
    }
    panic!("no such setting with a default");
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A decimal number's text as a number, at compile time.
const fn decimal(text: &str) -> u64 {
    let digits = text.as_bytes();
    let mut n: u64 = 0;
    let mut i = 0;
    while i < digits.len() {
        assert!(digits[i].is_ascii_digit(), "not a decimal number");
        n = n * 10 + (digits[i] - b'0') as u64;
        i += 1;
    }
    n
}

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
    /// `--argon2-memory-kib` and `--argon2-iterations` not given.
    fn default() -> Self {
        GlobalSettings::default()
            .argon2()
            .expect("the default cost is valid")
    }
}

/// `--log-level`: what goes to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const ALL: [LogLevel; 6] = [
        LogLevel::Off,
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl From<LogLevel> for log::LevelFilter {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl GlobalSettings {
    /// The password hashing cost, refused below Argon2's minimum.
    pub fn argon2(&self) -> Result<Argon2Cost, String> {
        let cost = Argon2Cost {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
        };
        if cost.memory_kib < 8 || cost.iterations < 1 {
            return Err("argon2 memory must be at least 8 KiB and iterations at least 1".into());
        }
        Ok(cost)
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
    /// An event stream with nothing to send for this long sends a heartbeat comment.
    pub heartbeat: Duration,
    /// How often an idle event stream checks that its client is still there (one cheap
    /// syscall), so a closed tab frees its stream's place within about this.
    pub peer_check: Duration,
    /// How often the request-log writer closes the event streams of ended sessions.
    pub stream_check_every: Duration,
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
    /// At the default interval (`--backup-every`), the default number kept (`--backup-keep`).
    pub fn new(dir: impl Into<PathBuf>) -> BackupSchedule {
        let defaults = ServeSettings::default();
        BackupSchedule {
            dir: dir.into(),
            every: BackupSchedule::hours(defaults.backup_every).expect("a valid default"),
            keep: defaults.backup_keep,
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
        let global = GlobalSettings {
            db: db_path.into(),
            ..GlobalSettings::default()
        };
        Config::from_settings(global, ServeSettings::default()).expect("the defaults are valid")
    }

    /// The server's settings from the command line's: seconds, days and hours become
    /// durations, MiB bytes; the timeouts and the connection cap are at least 1; an empty
    /// CORS origin is dropped. A malformed proxy list, backup schedule or event-stream
    /// interval is refused.
    pub fn from_settings(global: GlobalSettings, s: ServeSettings) -> Result<Config, String> {
        let argon2 = global.argon2()?;
        let trusted_proxies = TrustedProxies::parse(&s.trusted_proxy.join(","))
            .map_err(|e| format!("--trusted-proxy: {e}"))?;
        let backups = match s.backup_dir {
            None => None,
            Some(dir) => {
                if s.backup_keep < 1 {
                    return Err("--backup-keep must be at least 1".into());
                }
                Some(BackupSchedule {
                    dir,
                    every: BackupSchedule::hours(s.backup_every)?,
                    keep: s.backup_keep,
                })
            }
        };
        Ok(Config {
            db_path: global.db,
            bind: s.bind,
            threads: s.threads.unwrap_or_else(default_threads),
            cors_origins: s
                .cors_origins
                .into_iter()
                .filter(|o| !o.is_empty())
                .collect(),
            body_limit: s.body_limit,
            session_idle: Duration::from_secs(s.session_days.max(1) * 24 * 3600),
            argon2,
            sync: global.sync,
            cookie_secure: s.cookie_secure,
            trusted_proxies,
            public_url: s.public_url,
            log_retention_days: s.log_retention_days,
            log_max_rows: s.log_max_rows,
            ui_dir: s.ui_dir,
            request_timeout: Duration::from_secs(s.request_timeout.max(1)),
            max_connections: s.max_connections.max(1),
            login_attempts: s.login_attempts,
            login_window: Duration::from_secs(15 * 60),
            max_streams_per_user: s.max_streams_per_user,
            max_streams: s.max_streams,
            streams_per_address: s.streams_per_address,
            connections_per_address: s.connections_per_address,
            first_byte_timeout: Duration::from_secs(s.first_byte_timeout.max(1)),
            response_timeout: Duration::from_secs(s.response_timeout.max(1)),
            max_unsent_bytes: s.max_unsent_mb.max(1).saturating_mul(1024 * 1024),
            signups_per_hour: s.signups_per_hour,
            sends_per_minute: s.sends_per_minute,
            signup: s.signup,
            backups,
            heartbeat: interval("--heartbeat-secs", s.heartbeat_secs)?,
            peer_check: interval("--peer-check-secs", s.peer_check_secs)?,
            stream_check_every: interval("--stream-check-secs", s.stream_check_secs)?,
        })
    }
}

/// An event-stream interval from a number of seconds, which may be fractional: at least a
/// millisecond (a stream's idle loop waits this long between checks).
fn interval(flag: &str, secs: f64) -> Result<Duration, String> {
    let every = Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{flag} {secs}: not a number of seconds"))?;
    if every < Duration::from_millis(1) {
        return Err(format!("{flag} {secs}: at least 0.001 seconds is needed"));
    }
    Ok(every)
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

    /// One row of a Markdown table: its cells, split at each `|` not escaped as `\|`.
    fn cells(row: &str) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut chars = row.trim().trim_start_matches('|').chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => {
                    cells.last_mut().unwrap().push(chars.next().unwrap())
                }
                '|' => cells.push(String::new()),
                c => cells.last_mut().unwrap().push(c),
            }
        }
        cells.pop(); // after the closing `|`
        cells.iter().map(|c| c.trim().to_string()).collect()
    }

    /// The README's Configuration table lists exactly the declared settings, each with its
    /// flag (`serve --x` for a setting of `serve`), its environment variable and its default
    /// (or, with none, what not giving it means). A row with no flag (`WHITEBEAT_LOG`) is an
    /// environment variable that is no setting.
    #[test]
    fn the_readme_lists_every_setting_with_its_flag_variable_and_default() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .expect("a Configuration section")
            .split("\n## ")
            .next()
            .unwrap();
        let mut rows = Vec::new();
        for line in section.lines().filter(|l| l.starts_with('|')) {
            let row = cells(line);
            if row[0] == "flag" || row[0].starts_with("---") {
                continue;
            }
            assert_eq!(row.len(), 4, "a row of four cells: {line}");
            let env = row[1].replace('`', "");
            let env = env.split('=').next().unwrap().to_string();
            let flag_cell = row[0].replace('`', "");
            let mut words = flag_cell.split_whitespace();
            let (flag, global) = match words.next() {
                Some("serve") => (words.next().unwrap_or("").to_string(), false),
                Some(flag) => (flag.to_string(), true),
                None => {
                    assert!(
                        all_settings().all(|s| s.env != env),
                        "{env} has a row with no flag"
                    );
                    continue;
                }
            };
            rows.push((flag, global, env, row[2].replace('`', "")));
        }
        let mut wrong = Vec::new();
        for s in all_settings() {
            let expected = (
                s.flag(),
                s.global,
                s.env.to_string(),
                s.default.or(s.unset).unwrap_or_default().to_string(),
            );
            match rows
                .iter()
                .filter(|r| r.0 == expected.0)
                .collect::<Vec<_>>()[..]
            {
                [] => wrong.push(format!("{} has no row", expected.0)),
                [row] if *row != expected => {
                    wrong.push(format!("README says {row:?}, the settings {expected:?}"))
                }
                [_] => {}
                _ => wrong.push(format!("{} has more than one row", expected.0)),
            }
        }
        for row in &rows {
            if !all_settings().any(|s| s.flag() == row.0) {
                wrong.push(format!("{} is in the README but is no setting", row.0));
            }
        }
        assert!(
            wrong.is_empty(),
            "README.md's Configuration table and config.rs's `settings!` differ \
             (flag, global, environment, default):\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn every_setting_has_a_default_or_says_what_none_means() {
        for s in all_settings() {
            assert!(
                s.default.is_some() != s.unset.is_some(),
                "{}: a default or an unset meaning, one of them",
                s.name
            );
        }
        assert_eq!(LOG_MAX_ROWS, ServeSettings::default().log_max_rows);
    }

    /// `Config::new` is the defaults converted: days, seconds and MiB as the server uses
    /// them.
    #[test]
    fn the_default_config() {
        let c = Config::new("x.sqlite3");
        assert_eq!(c.db_path, PathBuf::from("x.sqlite3"));
        assert_eq!(c.bind, "127.0.0.1:8000".parse::<SocketAddr>().unwrap());
        assert_eq!(c.threads, default_threads());
        assert_eq!(
            c.cors_origins,
            ["http://localhost:3000", "http://127.0.0.1:3000"]
        );
        assert_eq!(c.body_limit, 65_536);
        assert_eq!(c.session_idle, Duration::from_secs(30 * 24 * 3600));
        assert_eq!((c.argon2.memory_kib, c.argon2.iterations), (19_456, 2));
        assert_eq!(c.sync, SyncMode::Full);
        assert!(!c.cookie_secure && c.trusted_proxies.is_empty() && c.public_url.is_none());
        assert_eq!((c.log_retention_days, c.log_max_rows), (30, 1_000_000));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.first_byte_timeout, Duration::from_secs(5));
        assert_eq!(c.response_timeout, Duration::from_secs(30));
        assert_eq!(c.max_connections, 4096);
        assert_eq!(c.connections_per_address, 256);
        assert_eq!(c.max_unsent_bytes, 64 * 1024 * 1024);
        assert_eq!(c.login_attempts, 5);
        assert_eq!((c.max_streams, c.max_streams_per_user), (2000, 8));
        assert_eq!(c.streams_per_address, 64);
        assert_eq!((c.signups_per_hour, c.sends_per_minute), (20, 120));
        assert_eq!(c.signup, SignupMode::Open);
        assert!(c.backups.is_none() && c.ui_dir.is_none());
        assert_eq!(c.heartbeat, Duration::from_secs(15));
        assert_eq!(c.peer_check, Duration::from_secs(1));
        assert_eq!(c.stream_check_every, Duration::from_secs(30));
        let b = BackupSchedule::new("backups");
        assert_eq!((b.every, b.keep), (Duration::from_secs(24 * 3600), 7));
    }

    /// What the command line gives is converted as it always was: zero timeouts and caps
    /// become 1, `0` limits stay `0` (no limit), fractions of a second are kept.
    #[test]
    fn settings_convert_to_the_config() {
        let serve = ServeSettings {
            session_days: 0,
            request_timeout: 0,
            max_connections: 0,
            max_unsent_mb: 0,
            sends_per_minute: 0,
            connections_per_address: 0,
            cors_origins: vec![String::new()],
            trusted_proxy: vec!["127.0.0.1".into(), "10.0.0.0/8".into()],
            heartbeat_secs: 0.05,
            peer_check_secs: 0.01,
            stream_check_secs: 0.2,
            backup_dir: Some("b".into()),
            backup_every: 0.5,
            ..ServeSettings::default()
        };
        let c = Config::from_settings(GlobalSettings::default(), serve).unwrap();
        assert_eq!(c.session_idle, Duration::from_secs(24 * 3600));
        assert_eq!(c.request_timeout, Duration::from_secs(1));
        assert_eq!((c.max_connections, c.max_unsent_bytes), (1, 1024 * 1024));
        assert_eq!((c.sends_per_minute, c.connections_per_address), (0, 0));
        assert!(c.cors_origins.is_empty());
        assert!(c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(c.heartbeat, Duration::from_millis(50));
        assert_eq!(c.peer_check, Duration::from_millis(10));
        assert_eq!(c.stream_check_every, Duration::from_millis(200));
        assert_eq!(c.backups.unwrap().every, Duration::from_secs(1800));
        for (heartbeat_secs, wrong) in [
            (0.0, "at least 0.001"),
            (-1.0, "not a number"),
            (f64::NAN, "not a number"),
        ] {
            let serve = ServeSettings {
                heartbeat_secs,
                ..ServeSettings::default()
            };
            let e = Config::from_settings(GlobalSettings::default(), serve).unwrap_err();
            assert!(
                e.starts_with("--heartbeat-secs") && e.contains(wrong),
                "{e}"
            );
        }
    }

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
