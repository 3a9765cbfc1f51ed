//! The account commands a self-hoster runs from the shell: `whitebeat list-users` and
//! `whitebeat invite create|list|revoke`. They print plain tables for a terminal.

use crate::api::invites::limits;
use crate::cli::CliResult;
use crate::domain::auth;
use crate::store::{self, invites::Invite, invites::NewInvite};
use crate::time::{day, rfc3339};
use rusqlite::Connection;

/// Every account, one line each: id, username, email, role, state, joined, messages.
pub fn list_users(conn: &Connection, search: Option<&str>) -> CliResult<String> {
    let (rows, total) =
        store::users::accounts(conn, search, i64::MAX, 0).map_err(|e| e.to_string())?;
    let mut out = format!(
        "{:>6}  {:<24} {:<32} {:<6} {:<8} {:<10} {:>8}\n",
        "ID", "USERNAME", "EMAIL", "ROLE", "STATE", "JOINED", "MESSAGES"
    );
    for u in rows {
        out.push_str(&format!(
            "{:>6}  {:<24} {:<32} {:<6} {:<8} {:<10} {:>8}\n",
            u.id,
            u.username,
            u.email,
            if u.is_admin { "admin" } else { "user" },
            if u.is_active { "active" } else { "inactive" },
            day(u.date_joined),
            u.message_count
        ));
    }
    out.push_str(&format!("{total} account(s)\n"));
    Ok(out)
}

/// A new invite; `uses` 0 and `days` 0 mean no limit.
pub fn create_invite(conn: &Connection, uses: i64, days: f64, note: &str) -> CliResult<Invite> {
    let now = store::now_us();
    let (max_uses, expires_at) =
        limits(Some(uses), Some(days), now).map_err(|e| e.user_message())?;
    let code = auth::new_invite_code().map_err(|e| e.to_string())?;
    store::invites::create(
        conn,
        &NewInvite {
            code: &code,
            note: note.trim(),
            max_uses,
            expires_at,
            created_by: None,
            now,
        },
    )
    .map_err(|e| e.to_string())
}

/// Every invite, newest first, one line each.
pub fn list_invites(conn: &Connection) -> CliResult<String> {
    let now = store::now_us();
    let invites = store::invites::list(conn).map_err(|e| e.to_string())?;
    let mut out = format!(
        "{:>4}  {:<24} {:<8} {:>9} {:<20} {}\n",
        "ID", "CODE", "STATE", "USES", "EXPIRES", "NOTE"
    );
    for i in &invites {
        let uses = match i.max_uses {
            Some(m) => format!("{}/{m}", i.uses),
            None => format!("{}/any", i.uses),
        };
        let expires = i
            .expires_at
            .map(|t| rfc3339(t)[..16].replace('T', " "))
            .unwrap_or_else(|| "never".into());
        out.push_str(&format!(
            "{:>4}  {:<24} {:<8} {:>9} {:<20} {}\n",
            i.id,
            i.code,
            i.state(now),
            uses,
            expires,
            i.note
        ));
    }
    out.push_str(&format!("{} invite(s)\n", invites.len()));
    Ok(out)
}

pub fn revoke_invite(conn: &Connection, id_or_code: &str) -> CliResult {
    let key = id_or_code.trim().to_ascii_lowercase();
    if store::invites::revoke(conn, &key, store::now_us()).map_err(|e| e.to_string())? {
        Ok(())
    } else {
        Err(format!("no invite with id or code `{id_or_code}`"))
    }
}
