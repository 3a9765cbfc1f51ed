//! The SQL side of backups and restores: copying a live database page by page with SQLite's
//! online backup API, making a copy self-contained, and checking that a file is a sound
//! White Beat database. The file handling around it is in `backup.rs` and `restore.rs`.

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Pages copied per step (4 MiB with the default 4 KiB pages), with a pause between steps
/// so the copy's reads and writes leave the disk to the server's commits now and then.
const STEP_PAGES: i32 = 1024;
const STEP_PAUSE: Duration = Duration::from_millis(10);

/// The tables a White Beat database has, each with the schema version that added it
/// (schema.sql is version 1, migrations/ the later ones).
const TABLES: &[(&str, i64)] = &[
    ("users", 1),
    ("sessions", 1),
    ("conversations", 1),
    ("messages", 1),
    ("request_log", 1),
    ("daily_stats", 1),
    ("hourly_api_calls", 1),
    ("counters", 1),
    ("invites", 2),
];

/// Copies `src` into the empty database `dest` while other connections keep writing.
///
/// The online backup API restarts from the first page whenever another connection commits
/// between two steps; under a steady stream of messages a large copy would never finish.
/// So the copy runs inside one read transaction on `src`: in WAL mode that snapshot costs
/// the writers nothing (they append to the WAL; checkpoints only wait to reuse it until the
/// copy ends), and the copy is exactly the database as of its first step.
///
/// `stop` is asked between steps; when it says so the copy is abandoned.
pub fn online_copy(
    src: &Connection,
    dest: &mut Connection,
    stop: &dyn Fn() -> bool,
) -> Result<(), String> {
    // The destination is a scratch file until the caller has checked and synced it: skip
    // SQLite's own syncs.
    dest.execute_batch("PRAGMA synchronous = OFF")
        .map_err(|e| e.to_string())?;
    src.execute_batch("BEGIN DEFERRED; SELECT count(*) FROM sqlite_schema;")
        .map_err(|e| format!("cannot start reading the database: {e}"))?;
    let result = copy_steps(src, dest, stop);
    // Ends the snapshot whatever happened (a read transaction has nothing to lose).
    let _ = src.execute_batch("ROLLBACK");
    result
}

fn copy_steps(
    src: &Connection,
    dest: &mut Connection,
    stop: &dyn Fn() -> bool,
) -> Result<(), String> {
    let backup = Backup::new(src, dest).map_err(|e| e.to_string())?;
    loop {
        if stop() {
            return Err("stopped before the copy was complete".into());
        }
        match backup.step(STEP_PAGES).map_err(|e| e.to_string())? {
            StepResult::Done => return Ok(()),
            // More to copy; busy or locked only concerns the destination, a private file:
            // either way, pause and go on.
            _ => std::thread::sleep(STEP_PAUSE),
        }
    }
}

/// A copy made from a WAL database says "WAL" in its header, so opening it would create
/// `-wal` and `-shm` files beside it. Rollback-journal mode makes it one file that can be
/// moved, copied and opened read-only anywhere.
pub fn make_self_contained(conn: &Connection) -> Result<(), String> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if mode.eq_ignore_ascii_case("delete") {
        Ok(())
    } else {
        Err(format!("journal mode stayed {mode}"))
    }
}

/// What became of a database's WAL before it is set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Folded into the main file, which now holds every commit on its own.
    Done,
    /// Another program has the database open (a `sqlite3` shell, a backup, Litestream).
    InUse,
    /// Not possible (a damaged file, say): the WAL must travel with the main file.
    Failed,
}

/// Before a database is set aside: folds its WAL into the main file and leaves WAL mode, so
/// the main file alone holds every commit. Leaving WAL mode needs the only connection, so
/// a busy answer means someone else has the file open.
pub fn fold_wal(path: &Path) -> Fold {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(conn) = Connection::open_with_flags(path, flags) else {
        return Fold::Failed;
    };
    match conn.query_row("PRAGMA journal_mode = DELETE", [], |r| {
        r.get::<_, String>(0)
    }) {
        Ok(mode) if mode.eq_ignore_ascii_case("delete") => Fold::Done,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Fold::InUse
        }
        _ => Fold::Failed,
    }
}

/// What a check of a database found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub schema_version: i64,
    pub users: i64,
    pub messages: i64,
}

/// Checks that `conn` is a sound White Beat database this binary can serve: every page and
/// index consistent (`PRAGMA integrity_check`), every table there, and a schema version
/// neither missing nor newer than this binary's. The error is one line about the problem.
pub fn check(conn: &Connection) -> Result<Summary, String> {
    let not_a_db = |e: rusqlite::Error| format!("not a readable SQLite database ({e})");
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(5)")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(not_a_db)?;
    if problems != ["ok"] {
        return Err(format!(
            "integrity_check failed: {}",
            problems.join("; ").replace('\n', " ")
        ));
    }
    let version = super::schema_version(conn).map_err(not_a_db)?;
    let mut missing = Vec::new();
    for (table, _) in TABLES.iter().filter(|(_, since)| *since <= version) {
        let found: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
                [table],
                |r| r.get(0),
            )
            .map_err(not_a_db)?;
        if !found {
            missing.push(*table);
        }
    }
    if !missing.is_empty() || version < 1 {
        return Err(format!(
            "not a White Beat database (no table {})",
            missing.first().unwrap_or(&"versions")
        ));
    }
    super::check_not_newer(version)?;
    let count = |table: &str| -> Result<i64, String> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .map_err(|e| format!("cannot count {table}: {e}"))
    };
    Ok(Summary {
        schema_version: version,
        users: count("users")?,
        messages: count("messages")?,
    })
}

/// Opens a file that must already be a database, with no pragmas of the server's: for
/// copies, which are inspected and converted, never served.
pub fn open_copy(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags).map_err(|e| e.to_string())
}

/// Opens the new, empty file a copy is written into.
pub fn create_copy(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags).map_err(|e| e.to_string())
}
