//! Figures for the health check and the admin dashboard: trigger-kept counters, the request
//! log (written in batches by the log writer) and its daily and hourly roll-ups.

use crate::time::{day, start_of_day, DAY_US, HOUR_US};
use rusqlite::{named_params, Connection};

/// Totals kept by triggers in the same transaction as the rows they count.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub users: i64,
    pub messages: i64,
    pub conversations: i64,
    pub admins: i64,
}

pub fn counters(conn: &Connection) -> rusqlite::Result<Counters> {
    let mut c = Counters::default();
    let mut stmt = conn.prepare_cached("SELECT name, value FROM counters")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let name: String = r.get(0)?;
        let value: i64 = r.get(1)?;
        match name.as_str() {
            "users" => c.users = value,
            "messages" => c.messages = value,
            "conversations" => c.conversations = value,
            "admins" => c.admins = value,
            _ => {}
        }
    }
    Ok(c)
}

/// Adds `by` to one column of today's daily_stats row.
pub fn bump_daily(conn: &Connection, now: i64, column: &str, by: i64) -> rusqlite::Result<()> {
    let sql = match column {
        "signups" => {
            "INSERT INTO daily_stats (day, signups) VALUES (?1, ?2)
             ON CONFLICT (day) DO UPDATE SET signups = signups + excluded.signups"
        }
        "messages" => {
            "INSERT INTO daily_stats (day, messages) VALUES (?1, ?2)
             ON CONFLICT (day) DO UPDATE SET messages = messages + excluded.messages"
        }
        "api_calls" => {
            "INSERT INTO daily_stats (day, api_calls) VALUES (?1, ?2)
             ON CONFLICT (day) DO UPDATE SET api_calls = api_calls + excluded.api_calls"
        }
        other => unreachable!("no daily_stats column {other}"),
    };
    conn.prepare_cached(sql)?
        .execute(rusqlite::params![day(now), by])?;
    Ok(())
}

/// One request, as the log writer stores it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub created_at: i64,
    pub method: String,
    pub endpoint: String,
    pub status: u16,
    pub duration_us: i64,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub ip_address: String,
    pub user_agent: String,
}

/// Writes a batch of log entries and the roll-ups in one transaction, then trims the table
/// to `max_rows` (see `trim_log`; 0: no cap). `counted_only` holds the times of requests
/// that are counted in the roll-ups but not stored (a client over its bound in the log
/// writer), so the dashboard's figures stay true during a flood. The roll-ups are summed
/// per hour and per day first: one upsert per hour touched, not one per request. Returns
/// the rows trimmed.
pub fn insert_log_batch(
    conn: &Connection,
    entries: &[LogEntry],
    counted_only: &[i64],
    max_rows: u64,
) -> rusqlite::Result<usize> {
    let mut per_hour: Vec<(i64, i64)> = Vec::new();
    let mut per_day: Vec<(i64, i64)> = Vec::new();
    for at in entries
        .iter()
        .map(|e| e.created_at)
        .chain(counted_only.iter().copied())
    {
        add_count(&mut per_hour, at.div_euclid(HOUR_US));
        add_count(&mut per_day, start_of_day(at));
    }
    let tx = super::write_tx(conn)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO request_log (created_at, method, endpoint, status, duration_us,
                                      user_id, username, ip_address, user_agent)
             VALUES (:at, :method, :endpoint, :status, :dur, :uid, :uname, :ip, :ua)",
        )?;
        for e in entries {
            insert.execute(named_params! {
                ":at": e.created_at, ":method": e.method, ":endpoint": e.endpoint,
                ":status": e.status, ":dur": e.duration_us, ":uid": e.user_id,
                ":uname": e.username, ":ip": e.ip_address, ":ua": e.user_agent,
            })?;
        }
        let mut hourly = tx.prepare_cached(
            "INSERT INTO hourly_api_calls (hour, calls) VALUES (?1, ?2)
             ON CONFLICT (hour) DO UPDATE SET calls = calls + excluded.calls",
        )?;
        for (hour, calls) in &per_hour {
            hourly.execute([hour, calls])?;
        }
    }
    for (day_start, calls) in per_day {
        bump_daily(&tx, day_start, "api_calls", calls)?;
    }
    let trimmed = if entries.is_empty() {
        0
    } else {
        trim_log(&tx, max_rows)?
    };
    tx.commit()?;
    Ok(trimmed)
}

/// Rows `trim_log` deletes at most per call: a table far over its cap (the cap lowered, an
/// old flooded database) is trimmed in short transactions, so senders waiting for the write
/// lock are not held up for long.
pub const TRIM_CHUNK: u64 = 5_000;

/// Deletes the oldest request-log rows beyond the newest `max_rows` (0: no cap), at most
/// `TRIM_CHUNK` of them; returns how many. Ids only grow (new rows take the largest id plus
/// one), so the rows to keep are those with an id above the largest minus `max_rows`: two
/// lookups at the ends of the table's b-tree and a range delete, no count. Only the log's
/// rows go: the dashboard's figures come from the roll-ups (`daily_stats`,
/// `hourly_api_calls`), which keep counting them, and `recent_logs` lists the newest.
pub fn trim_log(conn: &Connection, max_rows: u64) -> rusqlite::Result<usize> {
    if max_rows == 0 {
        return Ok(0);
    }
    let keep = i64::try_from(max_rows).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "DELETE FROM request_log WHERE id <= MIN(
             (SELECT MAX(id) FROM request_log) - ?1,
             (SELECT MIN(id) FROM request_log) + ?2 - 1)",
    )?
    .execute(rusqlite::params![keep, TRIM_CHUNK as i64])
}

/// Adds one to `key`'s count in a short list (a batch spans one or two hours at most).
fn add_count(counts: &mut Vec<(i64, i64)>, key: i64) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
}

/// Deletes request-log rows and hourly figures older than `cutoff` (the retention; the
/// size cap is `trim_log`'s).
pub fn prune_log(conn: &Connection, cutoff: i64) -> rusqlite::Result<usize> {
    let tx = super::write_tx(conn)?;
    let n = tx
        .prepare_cached("DELETE FROM request_log WHERE created_at < ?1")?
        .execute([cutoff])?;
    tx.prepare_cached("DELETE FROM hourly_api_calls WHERE hour < ?1")?
        .execute([cutoff.div_euclid(HOUR_US)])?;
    tx.commit()?;
    Ok(n)
}

pub fn api_calls_on(conn: &Connection, now: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(api_calls), 0) FROM daily_stats WHERE day = ?1")?
        .query_row([day(now)], |r| r.get(0))
}

/// Requests per hour for the `hours` hours ending with the current one, oldest first.
pub fn api_usage(conn: &Connection, now: i64, hours: i64) -> rusqlite::Result<Vec<i64>> {
    let current = now.div_euclid(HOUR_US);
    let first = current - hours + 1;
    let mut out = vec![0; hours as usize];
    let mut stmt = conn
        .prepare_cached("SELECT hour, calls FROM hourly_api_calls WHERE hour BETWEEN ?1 AND ?2")?;
    let mut rows = stmt.query([first, current])?;
    while let Some(r) = rows.next()? {
        let hour: i64 = r.get(0)?;
        out[(hour - first) as usize] = r.get(1)?;
    }
    Ok(out)
}

/// Sign-ups per day for the `days` days before today, oldest first.
pub fn user_growth(conn: &Connection, now: i64, days: i64) -> rusqlite::Result<Vec<i64>> {
    let today = start_of_day(now);
    let first = today - days * DAY_US;
    let mut out = vec![0; days as usize];
    let mut stmt = conn.prepare_cached(
        "SELECT (date_joined - ?1) / ?3, COUNT(*) FROM users
         WHERE date_joined >= ?1 AND date_joined < ?2 GROUP BY 1",
    )?;
    let mut rows = stmt.query([first, today, DAY_US])?;
    while let Some(r) = rows.next()? {
        let day: i64 = r.get(0)?;
        out[day as usize] = r.get(1)?;
    }
    Ok(out)
}

pub fn recent_logs(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<(i64, LogEntry)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, created_at, method, endpoint, status, duration_us, user_id, username,
                ip_address, user_agent
           FROM request_log ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok((
            r.get(0)?,
            LogEntry {
                created_at: r.get(1)?,
                method: r.get(2)?,
                endpoint: r.get(3)?,
                status: r.get(4)?,
                duration_us: r.get(5)?,
                user_id: r.get(6)?,
                username: r.get(7)?,
                ip_address: r.get(8)?,
                user_agent: r.get(9)?,
            },
        ))
    })?;
    rows.collect()
}

/// Rows in the request log (for tests and the soak's pruning check).
pub fn log_rows(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM request_log", [], |r| r.get(0))
}
