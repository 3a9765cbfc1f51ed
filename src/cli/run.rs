//! Running the command line once clap has read it: each subcommand, the server's start and
//! signals, and the prompts for passwords.

use super::accounts;
use super::args::{Cli, Command, InviteCommand, SuperuserArgs};
use super::CliResult;
use crate::config::{Config, GlobalSettings, LogLevel, ServeSettings};
use crate::ops::backup::human_bytes;
use std::io::{BufRead, IsTerminal};

/// Info by default; WHITEBEAT_LOG's directives on top; `--log-level`, when given, sets the
/// overall level last (so it wins over a bare level in WHITEBEAT_LOG, while its per-module
/// directives stay).
pub fn init_logging(level: Option<LogLevel>) {
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

/// Runs the command the command line names.
pub fn run(cli: Cli) -> CliResult {
    let global = GlobalSettings::from(cli.global);
    let cost = global.argon2()?;
    let db = global.db.clone();
    let sync = global.sync;
    match cli.command {
        Command::Serve(args) => serve(global, ServeSettings::from(*args)),
        Command::Migrate => {
            let version = super::migrate(&db, sync)?;
            println!("{}: schema at version {version}", db.display());
            Ok(())
        }
        Command::Createsuperuser(args) => {
            let conn = super::open_db(&db, sync)?;
            let (username, email, password) = superuser_input(args)?;
            let id = super::create_superuser(&conn, cost, &username, &email, &password)?;
            println!("Superuser `{username}` created (id {id}).");
            Ok(())
        }
        Command::MakeAdmin { username } => {
            super::set_admin(&super::open_existing_db(&db, sync)?, &username, true)?;
            println!("`{username}` is now an admin.");
            Ok(())
        }
        Command::RemoveAdmin { username } => {
            super::set_admin(&super::open_existing_db(&db, sync)?, &username, false)?;
            println!("`{username}` is no longer an admin.");
            Ok(())
        }
        Command::Changepassword { username } => {
            let conn = super::open_existing_db(&db, sync)?;
            let password = new_password()?;
            super::change_password(&conn, cost, &username, &password)?;
            println!("Password of `{username}` changed; their sessions were ended.");
            Ok(())
        }
        Command::Deactivate { username } => {
            super::set_active(&super::open_existing_db(&db, sync)?, &username, false)?;
            println!("`{username}` is deactivated; their sessions were ended.");
            Ok(())
        }
        Command::Activate { username } => {
            super::set_active(&super::open_existing_db(&db, sync)?, &username, true)?;
            println!("`{username}` is active.");
            Ok(())
        }
        Command::ListUsers { search } => {
            let conn = super::open_existing_db(&db, sync)?;
            print!("{}", accounts::list_users(&conn, search.as_deref())?);
            Ok(())
        }
        Command::CreateUser {
            username,
            email,
            admin,
        } => {
            let conn = super::open_existing_db(&db, sync)?;
            let password = new_password()?;
            let id = super::create_account(
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
        Command::Invite(command) => invite(&super::open_existing_db(&db, sync)?, command),
        Command::Backup { destination } => {
            let r = super::backup(&db, &destination)?;
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
            let r = super::restore(&db, &backup)?;
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
            let report = crate::ops::import_django::import(&source, &db, sync)?;
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            let plural = crate::ops::import_django::plural;
            println!(
                "Imported from {} into {}: {} ({}), {}, {}.",
                source.display(),
                db.display(),
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
            let invite = accounts::create_invite(conn, uses, days, &note)?;
            println!("{}", invite.code);
            eprintln!(
                "Invite created. Share the code, or the link https://<your server>/?invite={}",
                invite.code
            );
        }
        InviteCommand::List => print!("{}", accounts::list_invites(conn)?),
        InviteCommand::Revoke { code } => {
            accounts::revoke_invite(conn, &code)?;
            println!("Invite `{code}` revoked.");
        }
    }
    Ok(())
}

fn serve(global: GlobalSettings, settings: ServeSettings) -> CliResult {
    // The database lives under a file-size limit on some hosts; a write past it must fail
    // with an error (answered 503), not kill the process.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    crate::server::raise_fd_limit();
    limit_malloc_arenas();
    let config = Config::from_settings(global, settings)?;
    if std::env::var_os("WHITEBEAT_TRUST_PROXY").is_some() && config.trusted_proxies.is_empty() {
        log::warn!(
            "WHITEBEAT_TRUST_PROXY is no longer read: list your proxies in \
             WHITEBEAT_TRUSTED_PROXY (e.g. 127.0.0.1); X-Forwarded-For is ignored until then"
        );
    }
    let signup = config.signup;
    if let Some(dir) = &config.ui_dir {
        if !dir.join("index.html").is_file() {
            return Err(format!("--ui-dir {}: no index.html there", dir.display()));
        }
    }
    if let Some(parent) = config
        .db_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        if !parent.is_dir() {
            return Err(format!("directory {} does not exist", parent.display()));
        }
    }
    let handle = crate::server::serve(config)?;
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
            .unwrap_or_else(|| crate::domain::auth::default_email(&username));
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
            let default = crate::domain::auth::default_email(&username);
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
