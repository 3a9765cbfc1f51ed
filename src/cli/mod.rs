//! The administrative commands behind `whitebeat migrate`, `createsuperuser`,
//! `make-admin`, `remove-admin`, `changepassword`, `activate`/`deactivate`, `backup` and
//! `restore`.
//! Each returns a one-line error for the command line to print. `args` is the command line
//! as clap reads it, `run` runs what it names.

pub mod accounts;
pub mod args;
pub mod run;

use crate::config::{Argon2Cost, SyncMode};
use crate::domain::auth::{self, PasswordHasher};
use crate::ops::backup::{Cancel, Report};
use crate::ops::restore::Restored;
use crate::store::{self, users::AdminChange, users::CreateUserError, users::NewUser};
use rusqlite::Connection;
use std::path::Path;

pub type CliResult<T = ()> = Result<T, String>;

/// Opens and migrates the database (every command works on an up-to-date schema).
pub fn open_db(path: &Path, sync: SyncMode) -> CliResult<Connection> {
    store::open_migrated(path, sync)
}

/// Opens an existing database for an admin command. Only `serve`, `migrate`,
/// `createsuperuser`, `import-django` and `restore` create one: a mistyped `--db` (or a missing
/// `WHITEBEAT_DB`) must not send an invite or a password change into a new empty file
/// while the real server never sees it.
pub fn open_existing_db(path: &Path, sync: SyncMode) -> CliResult<Connection> {
    if !path.is_file() {
        return Err(format!(
            "no database at {}: give the server's with --db or WHITEBEAT_DB",
            path.display()
        ));
    }
    open_db(path, sync)
}

pub fn migrate(path: &Path, sync: SyncMode) -> CliResult<i64> {
    open_db(path, sync)?;
    Ok(store::SCHEMA_VERSION)
}

pub(crate) fn user_id(conn: &Connection, username: &str) -> CliResult<i64> {
    store::users::find_id(conn, username)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user named `{username}`"))
}

pub fn create_superuser(
    conn: &Connection,
    cost: Argon2Cost,
    username: &str,
    email: &str,
    password: &str,
) -> CliResult<i64> {
    create_account(conn, cost, username, Some(email), password, true, true)
}

/// Creates an account from the shell (the way in on a closed server).
pub fn create_account(
    conn: &Connection,
    cost: Argon2Cost,
    username: &str,
    email: Option<&str>,
    password: &str,
    is_admin: bool,
    is_superuser: bool,
) -> CliResult<i64> {
    let (username, email) =
        auth::new_account_fields(username, password, email).map_err(|e| e.user_message())?;
    let hash = PasswordHasher::new(cost, 1)
        .hash(password)
        .map_err(|e| e.to_string())?;
    let new = NewUser {
        username: &username,
        email: &email,
        password_hash: &hash,
        is_admin,
        is_superuser,
        invite_code: None,
        now: store::now_us(),
    };
    store::users::create(conn, &new).map_err(|e| match e {
        CreateUserError::UsernameTaken => format!("username `{username}` is already taken"),
        CreateUserError::UsernameLooksAlike => format!(
            "username `{username}` is already taken by a name that looks the same (names \
             that differ only in case, letter width or look-alike letters count as one)"
        ),
        CreateUserError::EmailTaken => format!("email `{email}` is already in use"),
        CreateUserError::InviteInvalid => "the invite code is not valid".to_string(),
        CreateUserError::Db(e) => e.to_string(),
    })
}

pub fn set_admin(conn: &Connection, username: &str, admin: bool) -> CliResult {
    let id = user_id(conn, username)?;
    match store::users::set_admin(conn, id, admin).map_err(|e| e.to_string())? {
        AdminChange::Done => Ok(()),
        AdminChange::LastAdmin => Err(format!(
            "`{username}` is the last admin; make another user admin first"
        )),
    }
}

pub fn change_password(
    conn: &Connection,
    cost: Argon2Cost,
    username: &str,
    password: &str,
) -> CliResult {
    let id = user_id(conn, username)?;
    auth::validate_password(password).map_err(|e| e.user_message())?;
    let hash = PasswordHasher::new(cost, 1)
        .hash(password)
        .map_err(|e| e.to_string())?;
    store::users::set_password(conn, id, &hash).map_err(|e| e.to_string())
}

pub fn set_active(conn: &Connection, username: &str, active: bool) -> CliResult {
    let id = user_id(conn, username)?;
    match store::users::set_active(conn, id, active).map_err(|e| e.to_string())? {
        AdminChange::Done => Ok(()),
        AdminChange::LastAdmin => Err(format!(
            "`{username}` is the last active admin; make another user admin first"
        )),
    }
}

/// A consistent, checked copy of the live database (safe while the server runs; it does not
/// take the server lock).
pub fn backup(db: &Path, dest: &Path) -> CliResult<Report> {
    crate::ops::backup::backup_to(db, dest, &Cancel::default())
}

/// Replaces the database with a checked backup (refused while a server runs on it).
pub fn restore(db: &Path, backup: &Path) -> CliResult<Restored> {
    crate::ops::restore::restore(db, backup)
}
