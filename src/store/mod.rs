//! The store: opening the SQLite file with every pragma in one place (and owner-only file
//! permissions, since it holds every password hash and message), migrations by
//! `PRAGMA user_version`, and (in the submodules) every SQL statement of the product as
//! free functions on `&Connection`. Nothing outside `store/` writes SQL; the single message writer (`writer`) commits
//! every send.

pub mod backup;
pub mod chat;
pub mod django;
pub mod import;
pub mod invites;
pub mod sessions;
pub mod stats;
pub mod users;
pub mod writer;

use crate::config::SyncMode;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::ops::Deref;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// One schema version: its SQL, and what must be computed in Rust after it (in the same
/// transaction) when SQL alone cannot fill what it adds.
struct Migration {
    sql: &'static str,
    then: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

/// The migrations, in order; migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        sql: include_str!("../../schema.sql"),
        then: None,
    },
    Migration {
        sql: include_str!("../../migrations/002_invites.sql"),
        then: None,
    },
    Migration {
        sql: include_str!("../../migrations/003_lookalikes_and_openers.sql"),
        then: Some(fill_name_keys),
    },
];

/// Version 3: the look-alike key of every existing username. Accounts that already look
/// alike (`admin` and `Admin`, made before this rule) all keep working and log in by their
/// exact names; no new account can take a name like theirs. The operator is told who they
/// are, once, here.
fn fill_name_keys(conn: &Connection) -> rusqlite::Result<()> {
    users::fill_name_keys(conn)?;
    for names in users::look_alike_groups(conn)? {
        log::warn!(
            "these accounts have names that look alike ({}); they keep working and log in \
             by their exact names, and no new account can take a name like theirs; consider \
             deactivating an impostor",
            names.join(", ")
        );
    }
    Ok(())
}

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens and migrates the database, refusing a path whose directory does not exist (the
/// administrative commands and the import work on an up-to-date schema).
pub fn open_migrated(path: &Path, sync: SyncMode) -> Result<Connection, String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(format!(
                "cannot open database {}: directory {} does not exist",
                path.display(),
                parent.display()
            ));
        }
    }
    let mut conn = open(path, sync)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens (creating if needed) the database with the pragmas every connection needs. A new
/// database file is created readable and writable by its owner only, whatever the umask.
pub fn open(path: &Path, sync: SyncMode) -> Result<Connection, String> {
    create_private(path).map_err(|e| format!("cannot create database {}: {e}", path.display()))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    configure(&conn, sync).map_err(|e| format!("cannot use database {}: {e}", path.display()))?;
    Ok(conn)
}

/// Creates `path` as an empty file with mode 0600 unless it exists. SQLite creates the
/// `-wal`, `-shm` and `-journal` files with the mode of the database file, so they follow;
/// left to SQLite, the database would get 0644 under the usual umask 022, and every local
/// account could read the password hashes and messages. An empty file is an empty database
/// to SQLite.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A database made by an older version (or by hand) may be readable by every local account.
/// Takes the permissions of others away from it and from its `-wal` and `-shm`, keeping the
/// owner's and the group's (an operator may have given a group read access on purpose), and
/// says so. Runs once per process, after a successful migration (a database this binary
/// refuses is left as it is); a failure (not the owner) is only logged.
fn make_private(path: &Path) {
    #[cfg(unix)]
    for file in [
        path.to_path_buf(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if !meta.is_file() || mode & 0o007 == 0 {
            continue;
        }
        let private = mode & !0o007;
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(private)) {
            Ok(()) => log::warn!(
                "{} was readable by every local account (mode {mode:04o}); now {private:04o}",
                file.display()
            ),
            Err(e) => log::warn!(
                "{} is readable by every local account (mode {mode:04o}) and could not be \
                 changed ({e}); run chmod o= on it",
                file.display()
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn configure(conn: &Connection, sync: SyncMode) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL lets readers run while one writer commits; it is persistent in the file.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("journal_mode is {mode}, not WAL");
    }
    let sync = match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -2000;"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    // Keep each cached statement's plan: without the query-planner stability guarantee,
    // SQLite re-prepares a statement on every bind whose plan could depend on a bound value
    // (LIKE patterns, partial indexes), which was a tenth of a busy server's CPU.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Brings the schema up to date in one transaction. Refuses a database written by a newer
/// binary rather than guess at its layout.
pub fn migrate(conn: &mut Connection) -> Result<i64, String> {
    let err = |e: rusqlite::Error| format!("migration failed: {e}");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    check_not_newer(version)?;
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(migration.sql).map_err(err)?;
        if let Some(then) = migration.then {
            then(&tx).map_err(err)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(err)?;
    }
    tx.commit().map_err(err)?;
    if let Some(path) = conn.path().filter(|p| !p.is_empty()) {
        make_private(Path::new(path));
    }
    Ok(SCHEMA_VERSION)
}

/// Refuses a database written by a newer binary rather than guess at its layout.
pub fn check_not_newer(version: i64) -> Result<(), String> {
    if version > SCHEMA_VERSION {
        return Err(format!(
            "database schema version {version} is newer than this binary supports \
             ({SCHEMA_VERSION}); use a newer whitebeat"
        ));
    }
    Ok(())
}

/// A file beside a database named after it: its `-wal`, `-shm` or `-journal`, its `.lock`.
pub fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// Reads the schema version without changing anything.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Writers of this process queue here before asking SQLite for its write lock. SQLite's own
/// wait for a busy lock sleeps and polls (up to 100 ms a try), so a reader's occasional write
/// (marking messages read, refreshing a session) could lose to the message writer again and
/// again for a second or more; a mutex hands the lock over in order, at once.
static WRITE_QUEUE: Mutex<()> = Mutex::new(());

/// A write transaction that holds this process's place in the write queue until it ends.
pub struct WriteTx<'a> {
    tx: Transaction<'a>,
    _turn: MutexGuard<'static, ()>,
}

impl<'a> WriteTx<'a> {
    pub fn commit(self) -> rusqlite::Result<()> {
        self.tx.commit()
    }
}

impl<'a> Deref for WriteTx<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

/// Gives a connection a larger page cache (the message writer's, which touches index pages
/// all over a large database); the others keep 2 MiB each, as there is one per worker.
/// A read-only connection with a small page cache (an event stream's replay reads forward
/// once; the workers' larger caches would only fill with pages read once).
pub fn open_read_only(path: &Path, sync: SyncMode, cache_kib: u32) -> Result<Connection, String> {
    let conn = open(path, sync)?;
    set_cache_kib(&conn, cache_kib)
        .and_then(|()| conn.pragma_update(None, "query_only", true))
        .map_err(|e| format!("cannot set up a read-only connection: {e}"))?;
    Ok(conn)
}

pub fn set_cache_kib(conn: &Connection, kib: u32) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("PRAGMA cache_size = -{kib};"))
}

/// Starts a short write transaction that takes the write lock at once, so it never fails
/// half-way with SQLITE_BUSY on upgrade. Never nest two on one thread.
pub fn write_tx(conn: &Connection) -> rusqlite::Result<WriteTx<'_>> {
    let turn = WRITE_QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    Ok(WriteTx { tx, _turn: turn })
}

/// Current time as Unix microseconds.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
