//! Reading the Django original's SQLite database for `whitebeat import-django`. It is opened
//! read-only, and its layout is learned from `PRAGMA table_info` rather than assumed: the
//! original's models changed between its versions, so the import names the columns it found.

use rusqlite::{types::Value, Connection, OpenFlags};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Opens the Django database read-only and checks that it is an SQLite database at all.
pub fn open(path: &Path) -> Result<Connection, String> {
    if !path.is_file() {
        return Err(format!("{}: no such file", path.display()));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // The original may still be running; wait for its writes rather than fail on them.
    conn.busy_timeout(Duration::from_secs(5))
        .and_then(|_| {
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map_err(|e| format!("{} is not a readable SQLite database: {e}", path.display()))?;
    Ok(conn)
}

/// The column names of `table`, or `None` when there is no such table.
pub fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Option<Vec<String>>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = stmt
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok((!names.is_empty()).then_some(names))
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Streams the rows of `table` in the order of `order_by`, one value per entry of `columns`
/// (an absent column, `None`, reads as NULL). The names come from [`table_columns`], and are
/// quoted all the same. Stops at the first error `f` returns.
pub fn for_each_row(
    conn: &Connection,
    table: &str,
    columns: &[Option<&str>],
    order_by: &str,
    mut f: impl FnMut(Vec<Value>) -> Result<(), String>,
) -> Result<(), String> {
    let list: Vec<String> = columns
        .iter()
        .map(|c| c.map_or_else(|| "NULL".to_string(), quote))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        list.join(", "),
        quote(table),
        quote(order_by)
    );
    let err = |e: rusqlite::Error| format!("cannot read table {table}: {e}");
    let mut stmt = conn.prepare(&sql).map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let values = (0..columns.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<Vec<Value>>>()
            .map_err(err)?;
        f(values)?;
    }
    Ok(())
}

/// The ids of the users in the Django group named `group` (`auth_group`, `auth_user_groups`).
pub fn group_members(conn: &Connection, group: &str) -> rusqlite::Result<HashSet<i64>> {
    let mut stmt = conn.prepare(
        "SELECT ug.user_id FROM auth_user_groups ug
           JOIN auth_group g ON g.id = ug.group_id
          WHERE g.name = ?1",
    )?;
    let ids = stmt.query_map([group], |r| r.get(0))?;
    ids.collect()
}
