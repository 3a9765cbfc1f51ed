//! The `whitebeat` command line: parses flags and environment variables with clap, runs
//! the chosen subcommand, and turns any failure into one line on stderr and exit code 1.

use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use whitebeat::cli::accounts as cli_accounts;
use whitebeat::cli::{self, CliResult};
use whitebeat::config::{
    default_threads, Argon2Cost, BackupSchedule, Config, PublicUrl, SignupMode, SyncMode,
};
use whitebeat::http::proxy::TrustedProxies;
use whitebeat::ops::backup::human_bytes;

#[derive(Parser)]
#[command(
    name = "whitebeat",
    version,
    about = "White Beat: a self-hosted chat server in one executable"
)]
struct Cli {
    /// SQLite database file (serve, migrate, createsuperuser, import-django and restore
    /// create it if missing; the other commands refuse a path with no database).
    #[arg(
        long,
        env = "WHITEBEAT_DB",
        default_value = "whitebeat.sqlite3",
        global = true
    )]
    db: PathBuf,
    /// Durability of commits: `full` survives a power cut; `normal` survives a crash of the
    /// process but may lose the last commits on power loss, and is faster on slow disks.
    #[arg(long, env = "WHITEBEAT_SYNC", default_value = "full", global = true)]
    sync: SyncMode,
    /// Argon2id memory cost in KiB for password hashes (OWASP: 19456).
    #[arg(
        long,
        env = "WHITEBEAT_ARGON2_MEMORY_KIB",
        default_value_t = 19_456,
        global = true
    )]
    argon2_memory_kib: u32,
    /// Argon2id iterations for password hashes (OWASP: 2).
    #[arg(
        long,
        env = "WHITEBEAT_ARGON2_ITERATIONS",
        default_value_t = 2,
        global = true
    )]
    argon2_iterations: u32,
    /// What goes to stderr: `info` includes one line per request, `warn` only problems.
    /// WHITEBEAT_LOG, an env_logger filter such as `info,whitebeat::access=off`, still sets
    /// levels per module; this sets the overall level [default: info].
    #[arg(long, env = "WHITEBEAT_LOG_LEVEL", global = true)]
    log_level: Option<LogLevel>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
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

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Create an admin account (prompts on a terminal; see --noinput for scripts).
    Createsuperuser(SuperuserArgs),
    /// Add a user to the Admin group.
    MakeAdmin { username: String },
    /// Remove a user from the Admin group (the last admin cannot be removed).
    RemoveAdmin { username: String },
    /// Set a user's password (prompted twice, or one line on stdin) and end their sessions.
    Changepassword { username: String },
    /// Stop a user from logging in and end their sessions.
    Deactivate { username: String },
    /// Let a deactivated user log in again.
    Activate { username: String },
    /// Write a consistent, checked copy of the database to a new file (safe while serving).
    Backup { destination: PathBuf },
    /// Replace the database with a backup (the server must be stopped); the replaced
    /// database is kept beside it.
    Restore { backup: PathBuf },
    /// Copy users, admins, conversations and messages from the original Django app's
    /// db.sqlite3 into an empty database, in one transaction; old passwords keep working.
    ImportDjango {
        /// The Django app's SQLite database (only read).
        source: PathBuf,
    },
    /// List every account, active or not.
    ListUsers {
        /// Only accounts whose username or email contains this.
        #[arg(long)]
        search: Option<String>,
    },
    /// Create an account (the way in on a server with `--signup closed`); the password is
    /// prompted twice, or read as one line from stdin.
    CreateUser {
        username: String,
        /// Email address (default: <username>@whitebeat.com).
        #[arg(long)]
        email: Option<String>,
        /// Put the account in the Admin group.
        #[arg(long)]
        admin: bool,
    },
    /// Manage invite codes for `--signup invite`.
    #[command(subcommand)]
    Invite(InviteCommand),
}

#[derive(Subcommand)]
enum InviteCommand {
    /// Create an invite code and print it.
    Create {
        /// Sign-ups it allows (0: any number).
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// Days until it expires (0: never; fractions allowed).
        #[arg(long, default_value_t = 7.0)]
        days: f64,
        /// A note for yourself: who it is for.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List every invite code and its state.
    List,
    /// Revoke an invite code (by code or id); accounts made with it stay.
    Revoke { code: String },
}

#[derive(Args)]
struct ServeArgs {
    /// Who may sign up: `open` (anyone who can reach the server), `invite` (with a code from
    /// an admin; recommended for a public server) or `closed` (admins create accounts).
    #[arg(long, env = "WHITEBEAT_SIGNUP", default_value = "open")]
    signup: SignupMode,
    /// Address and port to listen on.
    #[arg(long, env = "WHITEBEAT_BIND", default_value = "127.0.0.1:8000")]
    bind: std::net::SocketAddr,
    /// Request worker threads (default: from the CPU count).
    #[arg(long, env = "WHITEBEAT_THREADS")]
    threads: Option<usize>,
    /// Browser origins allowed to call the API with credentials, comma-separated.
    #[arg(
        long,
        env = "WHITEBEAT_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:3000,http://127.0.0.1:3000"
    )]
    cors_origins: Vec<String>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WHITEBEAT_BODY_LIMIT", default_value_t = 65_536)]
    body_limit: usize,
    /// A session expires after this many days without use.
    #[arg(long, env = "WHITEBEAT_SESSION_DAYS", default_value_t = 30)]
    session_days: u64,
    /// The URL users reach the server at, such as https://chat.example.org. With https the
    /// session cookie is `Secure`; its origin may call the API from a browser.
    #[arg(long, env = "WHITEBEAT_PUBLIC_URL", value_name = "URL")]
    public_url: Option<PublicUrl>,
    /// Mark the session cookie `Secure` even without an https --public-url.
    #[arg(long, env = "WHITEBEAT_COOKIE_SECURE")]
    cookie_secure: bool,
    /// Reverse proxies whose X-Forwarded-For gives the client address: IP addresses or CIDR
    /// ranges, comma-separated (e.g. 127.0.0.1,10.0.0.0/8,::1). From anyone else the header
    /// is ignored.
    #[arg(
        long,
        env = "WHITEBEAT_TRUSTED_PROXY",
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ','
    )]
    trusted_proxy: Vec<String>,
    /// Delete request-log entries older than this many days.
    #[arg(long, env = "WHITEBEAT_LOG_RETENTION_DAYS", default_value_t = 30)]
    log_retention_days: u32,
    /// The request log keeps at most this many rows (about 250 bytes each); the oldest
    /// beyond are deleted (0: no cap).
    #[arg(long, env = "WHITEBEAT_LOG_MAX_ROWS", default_value_t = whitebeat::ops::reqlog::MAX_ROWS)]
    log_max_rows: u64,
    /// Serve the web UI from this directory instead of the embedded one.
    #[arg(long, env = "WHITEBEAT_UI_DIR")]
    ui_dir: Option<PathBuf>,
    /// Failed logins allowed per account (and four times that per address) per 15 minutes.
    #[arg(long, env = "WHITEBEAT_LOGIN_ATTEMPTS", default_value_t = 5)]
    login_attempts: u32,
    /// Seconds a client has to send a whole request (head and body); also the idle
    /// keep-alive timeout.
    #[arg(long, env = "WHITEBEAT_REQUEST_TIMEOUT", default_value_t = 10)]
    request_timeout: u64,
    /// Seconds a new connection has to send its first byte.
    #[arg(long, env = "WHITEBEAT_FIRST_BYTE_TIMEOUT", default_value_t = 5)]
    first_byte_timeout: u64,
    /// Seconds a response has to reach the client, however slowly it reads; then the
    /// connection is closed.
    #[arg(long, env = "WHITEBEAT_RESPONSE_TIMEOUT", default_value_t = 30)]
    response_timeout: u64,
    /// Most client connections open at once; more are answered 503 and closed.
    #[arg(long, env = "WHITEBEAT_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Most connections open from one client address (0: no limit); more are answered 429
    /// and closed. Trusted proxies' own addresses are exempt.
    #[arg(long, env = "WHITEBEAT_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    connections_per_address: usize,
    /// MiB that large responses (over 64 KiB) waiting for slowly reading clients may hold
    /// in all; past it a new one is answered 503.
    #[arg(long, env = "WHITEBEAT_MAX_UNSENT_MB", default_value_t = 64)]
    max_unsent_mb: usize,
    /// Open event streams allowed per client address (0: no limit); more are answered 429.
    #[arg(long, env = "WHITEBEAT_STREAMS_PER_ADDRESS", default_value_t = 64)]
    streams_per_address: usize,
    /// Accounts one client address may create per hour (0: no limit); more are answered 429.
    #[arg(long, env = "WHITEBEAT_SIGNUPS_PER_HOUR", default_value_t = 20)]
    signups_per_hour: u32,
    /// Messages one user may send per minute, in a burst or spread out (0: no limit); more
    /// are answered 429.
    #[arg(long, env = "WHITEBEAT_SENDS_PER_MINUTE", default_value_t = 120)]
    sends_per_minute: u32,
    /// Open event streams allowed in all.
    #[arg(long, env = "WHITEBEAT_MAX_STREAMS", default_value_t = 2000)]
    max_streams: usize,
    /// Open event streams allowed per user.
    #[arg(long, env = "WHITEBEAT_MAX_STREAMS_PER_USER", default_value_t = 8)]
    max_streams_per_user: usize,
    /// Take backups on a schedule into this directory (none without it).
    #[arg(long, env = "WHITEBEAT_BACKUP_DIR")]
    backup_dir: Option<PathBuf>,
    /// Hours between scheduled backups (fractions allowed, e.g. 0.5).
    #[arg(long, env = "WHITEBEAT_BACKUP_EVERY", default_value_t = 24.0)]
    backup_every: f64,
    /// Scheduled backups kept; older ones are deleted.
    #[arg(long, env = "WHITEBEAT_BACKUP_KEEP", default_value_t = 7)]
    backup_keep: usize,
}

#[derive(Args)]
struct SuperuserArgs {
    /// Do not prompt: take --username, --email and the password from
    /// WHITEBEAT_SUPERUSER_PASSWORD.
    #[arg(long)]
    noinput: bool,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    email: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Info by default; WHITEBEAT_LOG's directives on top; `--log-level`, when given, sets the
/// overall level last (so it wins over a bare level in WHITEBEAT_LOG, while its per-module
/// directives stay).
fn init_logging(level: Option<LogLevel>) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log::LevelFilter::Info);
    if let Ok(spec) = std::env::var("WHITEBEAT_LOG") {
        builder.parse_filters(&spec);
    }
    if let Some(level) = level {
        builder.filter_level(level.into());
    }
    builder.format_target(false).init();
}

fn run(cli: Cli) -> CliResult {
    let cost = Argon2Cost {
        memory_kib: cli.argon2_memory_kib,
        iterations: cli.argon2_iterations,
    };
    if cost.memory_kib < 8 || cost.iterations < 1 {
        return Err("argon2 memory must be at least 8 KiB and iterations at least 1".into());
    }
    match cli.command {
        Command::Serve(args) => serve(&cli.db, cli.sync, cost, *args),
        Command::Migrate => {
            let version = cli::migrate(&cli.db, cli.sync)?;
            println!("{}: schema at version {version}", cli.db.display());
            Ok(())
        }
        Command::Createsuperuser(args) => {
            let conn = cli::open_db(&cli.db, cli.sync)?;
            let (username, email, password) = superuser_input(args)?;
            let id = cli::create_superuser(&conn, cost, &username, &email, &password)?;
            println!("Superuser `{username}` created (id {id}).");
            Ok(())
        }
        Command::MakeAdmin { username } => {
            cli::set_admin(&cli::open_existing_db(&cli.db, cli.sync)?, &username, true)?;
            println!("`{username}` is now an admin.");
            Ok(())
        }
        Command::RemoveAdmin { username } => {
            cli::set_admin(&cli::open_existing_db(&cli.db, cli.sync)?, &username, false)?;
            println!("`{username}` is no longer an admin.");
            Ok(())
        }
        Command::Changepassword { username } => {
            let conn = cli::open_existing_db(&cli.db, cli.sync)?;
            let password = new_password()?;
            cli::change_password(&conn, cost, &username, &password)?;
            println!("Password of `{username}` changed; their sessions were ended.");
            Ok(())
        }
        Command::Deactivate { username } => {
            cli::set_active(&cli::open_existing_db(&cli.db, cli.sync)?, &username, false)?;
            println!("`{username}` is deactivated; their sessions were ended.");
            Ok(())
        }
        Command::Activate { username } => {
            cli::set_active(&cli::open_existing_db(&cli.db, cli.sync)?, &username, true)?;
            println!("`{username}` is active.");
            Ok(())
        }
        Command::ListUsers { search } => {
            let conn = cli::open_existing_db(&cli.db, cli.sync)?;
            print!("{}", cli_accounts::list_users(&conn, search.as_deref())?);
            Ok(())
        }
        Command::CreateUser {
            username,
            email,
            admin,
        } => {
            let conn = cli::open_existing_db(&cli.db, cli.sync)?;
            let password = new_password()?;
            let id = cli::create_account(
                &conn,
                cost,
                &username,
                email.as_deref(),
                &password,
                admin,
                false,
            )?;
            println!("Account `{username}` created (id {id}).");
            Ok(())
        }
        Command::Invite(command) => invite(&cli::open_existing_db(&cli.db, cli.sync)?, command),
        Command::Backup { destination } => {
            let r = cli::backup(&cli.db, &destination)?;
            println!(
                "Backup written to {}: {}, {} users, {} messages, integrity_check ok, in {:.2} s.",
                r.path.display(),
                human_bytes(r.bytes),
                r.summary.users,
                r.summary.messages,
                r.took.as_secs_f64()
            );
            Ok(())
        }
        Command::Restore { backup } => {
            let r = cli::restore(&cli.db, &backup)?;
            println!(
                "Restored {} into {}: {} users, {} messages.",
                backup.display(),
                r.db.display(),
                r.summary.users,
                r.summary.messages
            );
            match (r.kept, r.kept_with_wal) {
                (Some(kept), false) => println!(
                    "The previous database is kept as {} (restore it to undo).",
                    kept.display()
                ),
                (Some(kept), true) => println!(
                    "The previous database could not be made whole (is it damaged?); it is \
                     kept as {} with its WAL beside it as {}-wal.",
                    kept.display(),
                    kept.display()
                ),
                (None, _) => {}
            }
            Ok(())
        }
        Command::ImportDjango { source } => {
            let report = whitebeat::ops::import_django::import(&source, &cli.db, cli.sync)?;
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            let plural = whitebeat::ops::import_django::plural;
            println!(
                "Imported from {} into {}: {} ({}), {}, {}.",
                source.display(),
                cli.db.display(),
                plural(report.users, "user"),
                plural(report.admins, "admin"),
                plural(report.conversations, "conversation"),
                plural(report.messages, "message"),
            );
            Ok(())
        }
    }
}

fn invite(conn: &rusqlite::Connection, command: InviteCommand) -> CliResult {
    match command {
        InviteCommand::Create { uses, days, note } => {
            let invite = cli_accounts::create_invite(conn, uses, days, &note)?;
            println!("{}", invite.code);
            eprintln!(
                "Invite created. Share the code, or the link https://<your server>/?invite={}",
                invite.code
            );
        }
        InviteCommand::List => print!("{}", cli_accounts::list_invites(conn)?),
        InviteCommand::Revoke { code } => {
            cli_accounts::revoke_invite(conn, &code)?;
            println!("Invite `{code}` revoked.");
        }
    }
    Ok(())
}

fn serve(db: &std::path::Path, sync: SyncMode, argon2: Argon2Cost, a: ServeArgs) -> CliResult {
    // The database lives under a file-size limit on some hosts; a write past it must fail
    // with an error (answered 503), not kill the process.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    whitebeat::server::raise_fd_limit();
    limit_malloc_arenas();
    let mut config = Config::new(db);
    config.bind = a.bind;
    config.threads = a.threads.unwrap_or_else(default_threads);
    config.cors_origins = a
        .cors_origins
        .into_iter()
        .filter(|o| !o.is_empty())
        .collect();
    config.body_limit = a.body_limit;
    config.session_idle = Duration::from_secs(a.session_days.max(1) * 24 * 3600);
    config.argon2 = argon2;
    config.sync = sync;
    config.cookie_secure = a.cookie_secure;
    config.public_url = a.public_url;
    config.trusted_proxies = TrustedProxies::parse(&a.trusted_proxy.join(","))
        .map_err(|e| format!("--trusted-proxy: {e}"))?;
    if std::env::var_os("WHITEBEAT_TRUST_PROXY").is_some() && config.trusted_proxies.is_empty() {
        log::warn!(
            "WHITEBEAT_TRUST_PROXY is no longer read: list your proxies in \
             WHITEBEAT_TRUSTED_PROXY (e.g. 127.0.0.1); X-Forwarded-For is ignored until then"
        );
    }
    config.log_retention_days = a.log_retention_days;
    config.log_max_rows = a.log_max_rows;
    config.ui_dir = a.ui_dir;
    config.login_attempts = a.login_attempts;
    config.max_streams = a.max_streams;
    config.request_timeout = Duration::from_secs(a.request_timeout.max(1));
    config.max_connections = a.max_connections.max(1);
    config.first_byte_timeout = Duration::from_secs(a.first_byte_timeout.max(1));
    config.response_timeout = Duration::from_secs(a.response_timeout.max(1));
    config.connections_per_address = a.connections_per_address;
    config.max_unsent_bytes = a.max_unsent_mb.max(1).saturating_mul(1024 * 1024);
    config.streams_per_address = a.streams_per_address;
    config.signups_per_hour = a.signups_per_hour;
    config.sends_per_minute = a.sends_per_minute;
    config.max_streams_per_user = a.max_streams_per_user;
    config.signup = a.signup;
    let signup = a.signup;
    if let Some(dir) = a.backup_dir {
        if a.backup_keep < 1 {
            return Err("--backup-keep must be at least 1".into());
        }
        let mut schedule = BackupSchedule::new(dir);
        schedule.every = BackupSchedule::hours(a.backup_every)?;
        schedule.keep = a.backup_keep;
        config.backups = Some(schedule);
    }
    if let Some(dir) = &config.ui_dir {
        if !dir.join("index.html").is_file() {
            return Err(format!("--ui-dir {}: no index.html there", dir.display()));
        }
    }
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(format!("directory {} does not exist", parent.display()));
        }
    }
    let handle = whitebeat::serve(config)?;
    // Handlers first: whoever reads the line below may send SIGTERM at once, and it must
    // stop the server gracefully rather than kill it.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    println!("White Beat listening on http://{}", handle.addr());
    log::info!("sign-up is {}", signup.as_str());
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig} received: finishing in-flight requests");
    }
    handle.shutdown();
    Ok(())
}

/// glibc gives each busy thread its own malloc arena; with a worker pool, a writer, a log
/// writer and a thread per connection, freed memory then sits in dozens of arenas and the
/// resident size climbs far above what is live (a soak showed a 60 MiB plateau over 19 MiB
/// live). Two arenas keep it close to what is live, for a small server the better trade.
/// glibc's allocator settings for a small, long-running server: two arenas, and a fixed
/// 1 MiB threshold above which memory is mapped for the allocation alone and returned to the
/// system when freed. Left dynamic, the threshold rises to the size of the largest block
/// freed, and every big block (once each Argon2 hash's 19 MiB: ten sign-ups took the process
/// from 9 to 185 MB) is afterwards carved from the heap and kept. Argon2 memory no longer
/// comes and goes (each password thread keeps one buffer, see `auth::PasswordHasher`); the
/// threshold still returns large responses and other big blocks, among them the temporary
/// memory of an old hash costlier than the configured one.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn superuser_input(a: SuperuserArgs) -> CliResult<(String, String, String)> {
    if a.noinput {
        let username = a.username.ok_or("--noinput needs --username")?;
        let email = a
            .email
            .unwrap_or_else(|| whitebeat::domain::auth::default_email(&username));
        let password = std::env::var("WHITEBEAT_SUPERUSER_PASSWORD")
            .map_err(|_| "--noinput needs the password in WHITEBEAT_SUPERUSER_PASSWORD")?;
        return Ok((username, email, password));
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            "not a terminal: use --noinput with --username, --email and \
                    WHITEBEAT_SUPERUSER_PASSWORD"
                .into(),
        );
    }
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username: ")?,
    };
    let email = match a.email {
        Some(e) => e,
        None => {
            let default = whitebeat::domain::auth::default_email(&username);
            let e = prompt(&format!("Email address [{default}]: "))?;
            if e.is_empty() {
                default
            } else {
                e
            }
        }
    };
    Ok((username, email, new_password()?))
}

fn prompt(label: &str) -> CliResult<String> {
    eprint!("{label}");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read input: {e}"))?;
    Ok(line.trim().to_string())
}

/// A password typed twice on a terminal, or one line from stdin in scripts.
fn new_password() -> CliResult<String> {
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password("Password (again): ").map_err(|e| e.to_string())?;
    if first != second {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}
