//! `whitebeat import-django`: moving in from the original Django app. Copies its users (with
//! their password hashes, which login verifies and upgrades to Argon2id), Admin-group
//! membership, profiles, conversations and messages into an empty White Beat database, in
//! one transaction, keeping ids and times.
//!
//! The choices, and why:
//! - Admin here means membership of the Django group `Admin`, which was the original's own
//!   check. `is_superuser` is copied but does not make an admin; a warning names superusers
//!   outside the group, so `make-admin` can be run for those who should be.
//! - Django writes datetimes to SQLite as text (`2024-03-01 12:34:56.123456`, UTC under
//!   `USE_TZ = True`, sometimes with `+00:00`); a time without an offset is taken as UTC.
//! - An empty email becomes `<username>@whitebeat.com`, the original's default. White Beat's
//!   emails are unique regardless of case, so when users share one, the lowest id keeps it
//!   and the others get their default address (with a warning naming them).
//! - A conversation is the pair of its users. Django rows for (a, b) and (b, a) are merged
//!   into the one with the lower id, and a message goes to the conversation of its sender and
//!   receiver, as White Beat finds it there, whatever its `conversation_id` says.
//! - Status, last activity and message count come from the profile (`api_userprofile`); a
//!   user without one gets the default status, their last login (or join date) as last
//!   activity, and the number of messages they sent. `is_online`, `is_staff`, avatars, the
//!   request log and the statistics tables are not carried over: White Beat derives or keeps
//!   its own.
//! - Usernames that look alike (`admin` and `Admin`, or a Cyrillic `аdmin`: the same
//!   `auth::name_key`) were allowed by the original and are imported as they are: each
//!   account keeps working and logs in by its exact name. A warning names them, and no new
//!   account can take a name like theirs.
//! - A conversation without messages is listed for neither member until one of them opens
//!   it (the original did not record who opened it; see migrations/003).

use crate::config::SyncMode;
use crate::domain::auth::{hash_kind, HashKind};
use crate::store::{self, django, import};
use crate::time::start_of_day;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use rusqlite::types::Value;
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The import's errors are messages for the command line.
type ImportResult<T = ()> = Result<T, String>;

/// What an import brought over, and what the operator should know about it.
#[derive(Debug, Default)]
pub struct Report {
    pub users: i64,
    pub admins: i64,
    pub conversations: i64,
    pub messages: i64,
    pub warnings: Vec<String>,
}

/// A column the import reads: the name it goes by here, the names the original may have
/// given it (first found wins), and whether the import can do without it.
struct Want {
    name: &'static str,
    names: &'static [&'static str],
    required: bool,
}

const fn req(name: &'static str, names: &'static [&'static str]) -> Want {
    Want {
        name,
        names,
        required: true,
    }
}

const fn opt(name: &'static str, names: &'static [&'static str]) -> Want {
    Want {
        name,
        names,
        required: false,
    }
}

const USER: &[Want] = &[
    req("id", &["id"]),
    req("username", &["username"]),
    req("password", &["password"]),
    req("date_joined", &["date_joined"]),
    opt("email", &["email"]),
    opt("first_name", &["first_name"]),
    opt("last_name", &["last_name"]),
    opt("is_active", &["is_active"]),
    opt("is_superuser", &["is_superuser"]),
    opt("last_login", &["last_login"]),
];

const PROFILE: &[Want] = &[
    req("user_id", &["user_id"]),
    opt("status", &["status"]),
    opt("last_activity", &["last_activity", "last_seen"]),
    opt("message_count", &["message_count", "total_messages"]),
];

const CONVERSATION: &[Want] = &[
    req("id", &["id"]),
    req("user1_id", &["user1_id"]),
    req("user2_id", &["user2_id"]),
    req("created_at", &["created_at", "created", "timestamp"]),
    opt("updated_at", &["updated_at", "updated", "modified_at"]),
];

const MESSAGE: &[Want] = &[
    req("id", &["id"]),
    req("sender_id", &["sender_id"]),
    req("receiver_id", &["receiver_id"]),
    req("content", &["content", "text", "body"]),
    req(
        "created_at",
        &["timestamp", "created_at", "created", "sent_at"],
    ),
    opt("is_read", &["is_read", "read"]),
];

/// A table of the Django database with the actual names of the columns the import reads.
struct Source {
    table: &'static str,
    wants: &'static [Want],
    columns: Vec<Option<String>>,
}

impl Source {
    /// Fails, naming the table or column, when something required is missing.
    fn find(conn: &Connection, table: &'static str, wants: &'static [Want]) -> ImportResult<Self> {
        let present = django::table_columns(conn, table)
            .map_err(|e| format!("cannot read the layout of table {table}: {e}"))?
            .ok_or_else(|| {
                format!(
                    "the Django database has no table {table} (is it the original's db.sqlite3?)"
                )
            })?;
        let mut columns = Vec::with_capacity(wants.len());
        for want in wants {
            let found = want.names.iter().find_map(|name| {
                present
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(name))
                    .cloned()
            });
            if found.is_none() && want.required {
                return Err(format!(
                    "table {table} of the Django database has no column {}",
                    want.names.join(" or ")
                ));
            }
            columns.push(found);
        }
        Ok(Source {
            table,
            wants,
            columns,
        })
    }

    /// Calls `f` with each row, in the order of the first column (the id).
    fn each(&self, conn: &Connection, mut f: impl FnMut(&Row) -> ImportResult) -> ImportResult {
        let columns: Vec<Option<&str>> = self.columns.iter().map(|c| c.as_deref()).collect();
        let order_by = columns[0].expect("the first column is required");
        django::for_each_row(conn, self.table, &columns, order_by, |values| {
            f(&Row {
                source: self,
                values,
            })
        })
    }
}

/// One row of a [`Source`], read by the names the import uses.
struct Row<'a> {
    source: &'a Source,
    values: Vec<Value>,
}

impl Row<'_> {
    fn get(&self, name: &str) -> &Value {
        let i = self.source.wants.iter().position(|w| w.name == name);
        &self.values[i.expect("a column the import declared")]
    }

    /// An error about one value, naming where it is.
    fn bad(&self, name: &str, what: &str) -> String {
        let key = &self.source.wants[0].name;
        let key_value = match &self.values[0] {
            Value::Integer(i) => i.to_string(),
            other => format!("{other:?}"),
        };
        format!(
            "table {} of the Django database, row with {key} {key_value}: {name} {what} \
             (found {:?})",
            self.source.table,
            self.get(name)
        )
    }

    fn int(&self, name: &str) -> ImportResult<Option<i64>> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(*i)),
            Value::Text(t) if t.trim().parse::<i64>().is_ok() => Ok(t.trim().parse().ok()),
            _ => Err(self.bad(name, "is not a whole number")),
        }
    }

    fn req_int(&self, name: &str) -> ImportResult<i64> {
        self.int(name)?.ok_or_else(|| self.bad(name, "is missing"))
    }

    fn text(&self, name: &str) -> ImportResult<Option<String>> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Integer(i) => Ok(Some(i.to_string())),
            Value::Blob(b) => String::from_utf8(b.clone())
                .map(Some)
                .map_err(|_| self.bad(name, "is not UTF-8 text")),
            Value::Real(_) => Err(self.bad(name, "is not text")),
        }
    }

    fn req_text(&self, name: &str) -> ImportResult<String> {
        self.text(name)?.ok_or_else(|| self.bad(name, "is missing"))
    }

    fn flag(&self, name: &str) -> ImportResult<Option<bool>> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(*i != 0)),
            Value::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "1" | "t" | "true" => Ok(Some(true)),
                "0" | "f" | "false" => Ok(Some(false)),
                _ => Err(self.bad(name, "is not a boolean")),
            },
            _ => Err(self.bad(name, "is not a boolean")),
        }
    }

    fn time(&self, name: &str) -> ImportResult<Option<i64>> {
        match self.get(name) {
            Value::Null => Ok(None),
            Value::Text(t) => parse_django_time(t)
                .map(Some)
                .ok_or_else(|| self.bad(name, "is not a date and time")),
            _ => Err(self.bad(name, "is not a date and time")),
        }
    }

    fn req_time(&self, name: &str) -> ImportResult<i64> {
        self.time(name)?.ok_or_else(|| self.bad(name, "is missing"))
    }
}

/// Unix microseconds of a datetime as Django stores it in SQLite: `YYYY-MM-DD HH:MM:SS`
/// with optional fraction and optional offset (`+00:00`, `Z`); `T` for the space is accepted
/// too. Without an offset the time is taken as UTC (Django's storage under `USE_TZ = True`).
pub fn parse_django_time(text: &str) -> Option<i64> {
    let s = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.timestamp_micros());
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// The profile fields White Beat keeps on the user row.
#[derive(Default)]
struct Profile {
    status: Option<String>,
    last_activity: Option<i64>,
    message_count: Option<i64>,
}

/// A conversation being brought over: the pair, and what its messages change.
struct Conversation {
    id: i64,
    updated_at: i64,
    last_message_id: Option<i64>,
}

/// `1 user`, `2 users`: counts in warnings and in the summary read as sentences.
pub fn plural(n: impl Into<i64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Up to five names and how many more, for a warning.
fn some_names(names: &[String]) -> String {
    let mut out = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        out.push_str(&format!(" and {} more", names.len() - 5));
    }
    out
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Imports the Django database at `source` into the (empty) White Beat database at `db_path`.
/// Every table and column is checked before anything is written; a failure after that
/// rolls the whole import back.
pub fn import(source: &Path, db_path: &Path, sync: SyncMode) -> ImportResult<Report> {
    if same_file(source, db_path) {
        return Err(format!(
            "{} is the Django database itself; name a new White Beat database with --db",
            source.display()
        ));
    }
    let django = django::open(source)?;
    let users = Source::find(&django, "auth_user", USER)?;
    let profiles = Source::find(&django, "api_userprofile", PROFILE)?;
    let conversations = Source::find(&django, "api_conversation", CONVERSATION)?;
    let messages = Source::find(&django, "api_message", MESSAGE)?;
    for (table, wanted) in [
        ("auth_group", ["id", "name"]),
        ("auth_user_groups", ["user_id", "group_id"]),
    ] {
        let present = django::table_columns(&django, table)
            .map_err(|e| format!("cannot read the layout of table {table}: {e}"))?
            .ok_or_else(|| format!("the Django database has no table {table}"))?;
        if let Some(missing) = wanted
            .iter()
            .find(|w| !present.iter().any(|p| p.eq_ignore_ascii_case(w)))
        {
            return Err(format!(
                "table {table} of the Django database has no column {missing}"
            ));
        }
    }
    let admins = django::group_members(&django, "Admin")
        .map_err(|e| format!("cannot read the Admin group: {e}"))?;

    // Like a restore, an import replaces what a server would be serving: not under one.
    let _lock = crate::ops::lock::acquire(
        &crate::ops::lock::resolve(db_path),
        crate::ops::lock::Holder::Import,
    )
    .map_err(|e| format!("cannot import: {e}"))?;
    let conn = crate::store::open_migrated(db_path, sync)?;
    let failed = |e: rusqlite::Error| format!("import failed, nothing was written: {e}");
    let tx = store::write_tx(&conn).map_err(failed)?;
    if !import::is_empty(&tx).map_err(failed)? {
        return Err(format!(
            "{} already has users or messages; import-django only fills an empty database",
            db_path.display()
        ));
    }
    let mut run = Import {
        conn: &tx,
        django: &django,
        warnings: Vec::new(),
        user_ids: HashSet::new(),
        counted_users: Vec::new(),
        sent: HashMap::new(),
        conversations: HashMap::new(),
        signups_per_day: BTreeMap::new(),
        messages_per_day: BTreeMap::new(),
    };
    let with_rollback = |e: String| format!("{e}; nothing was imported");
    run.users(&users, &profiles, &admins)
        .and_then(|_| run.conversations(&conversations))
        .and_then(|_| run.messages(&messages))
        .map_err(with_rollback)?;
    let counters = run.finish().map_err(failed)?;
    let warnings = run.warnings;
    tx.commit().map_err(failed)?;
    Ok(Report {
        users: counters.users,
        admins: counters.admins,
        conversations: counters.conversations,
        messages: counters.messages,
        warnings,
    })
}

/// The state of one import while it runs.
struct Import<'a> {
    conn: &'a Connection,
    django: &'a Connection,
    warnings: Vec<String>,
    user_ids: HashSet<i64>,
    /// Users whose message count is the number of messages they sent here.
    counted_users: Vec<i64>,
    sent: HashMap<i64, i64>,
    /// By ordered user pair.
    conversations: HashMap<(i64, i64), Conversation>,
    signups_per_day: BTreeMap<i64, i64>,
    messages_per_day: BTreeMap<i64, i64>,
}

/// A user id from `row` that was imported (a dangling one would break a foreign key).
fn known_user(user_ids: &HashSet<i64>, row: &Row, name: &str) -> ImportResult<i64> {
    let id = row.req_int(name)?;
    if user_ids.contains(&id) {
        Ok(id)
    } else {
        Err(row.bad(name, "is not the id of a user in auth_user"))
    }
}

fn db_err(e: rusqlite::Error) -> String {
    format!("cannot write to the White Beat database: {e}")
}

impl Import<'_> {
    fn users(&mut self, users: &Source, profiles: &Source, admins: &HashSet<i64>) -> ImportResult {
        let mut by_user: HashMap<i64, Profile> = HashMap::new();
        profiles.each(self.django, |row| {
            let profile = Profile {
                status: row.text("status")?,
                last_activity: row.time("last_activity")?,
                message_count: row.int("message_count")?,
            };
            by_user.insert(row.req_int("user_id")?, profile);
            Ok(())
        })?;

        let mut taken_emails: HashSet<String> = HashSet::new();
        let mut moved_emails = Vec::new();
        let mut no_password = Vec::new();
        let mut superusers_not_admin = Vec::new();
        users.each(self.django, |row| {
            let id = row.req_int("id")?;
            let username = row.req_text("username")?;
            let password = row.text("password")?.unwrap_or_default();
            let is_superuser = row.flag("is_superuser")?.unwrap_or(false);
            let date_joined = row.req_time("date_joined")?;
            let profile = by_user.remove(&id).unwrap_or_default();
            let is_admin = admins.contains(&id);
            let default_email = crate::domain::auth::default_email(&username);
            let wanted = row.text("email")?.unwrap_or_default().trim().to_string();
            // SQLite's NOCASE folds ASCII letters only: the same rule here, so what passes
            // this check passes the unique index.
            let mut email = if wanted.is_empty() {
                default_email.clone()
            } else {
                wanted.clone()
            };
            if taken_emails.contains(&email.to_ascii_lowercase()) {
                email = [default_email, format!("{username}+{id}@whitebeat.com")]
                    .into_iter()
                    .chain((1..).map(|n| format!("user{id}.{n}@whitebeat.com")))
                    .find(|e| !taken_emails.contains(&e.to_ascii_lowercase()))
                    .expect("an endless list has a free address");
                moved_emails.push(format!("{username} ({wanted} -> {email})"));
            }
            taken_emails.insert(email.to_ascii_lowercase());
            if hash_kind(&password) == HashKind::Unsupported {
                no_password.push(username.clone());
            }
            if is_superuser && !is_admin {
                superusers_not_admin.push(username.clone());
            }
            let last_activity = profile
                .last_activity
                .or(row.time("last_login")?)
                .unwrap_or(date_joined);
            if profile.message_count.is_none() {
                self.counted_users.push(id);
            }
            let first_name = row.text("first_name")?.unwrap_or_default();
            let last_name = row.text("last_name")?.unwrap_or_default();
            let user = import::ImportedUser {
                id,
                username: &username,
                email: &email,
                password_hash: &password,
                first_name: &first_name,
                last_name: &last_name,
                is_active: row.flag("is_active")?.unwrap_or(true),
                is_admin,
                is_superuser,
                last_activity,
                message_count: profile.message_count.unwrap_or(0),
                date_joined,
            };
            import::insert_user(self.conn, &user).map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    format!("user {username} (id {id}) cannot be imported: {e}")
                }
                e => db_err(e),
            })?;
            if let Some(status) = &profile.status {
                import::set_status(self.conn, id, status).map_err(db_err)?;
            }
            self.user_ids.insert(id);
            *self
                .signups_per_day
                .entry(start_of_day(date_joined))
                .or_default() += 1;
            Ok(())
        })?;

        let alike = store::users::look_alike_groups(self.conn).map_err(db_err)?;
        if !alike.is_empty() {
            let groups: Vec<String> = alike.iter().map(|names| names.join(" and ")).collect();
            self.warnings.push(format!(
                "usernames that look alike (differing only in case, letter width or \
                 look-alike letters) were imported as they are, each account logging in by \
                 its exact name, and no new account can take a name like theirs: {}",
                some_names(&groups)
            ));
        }
        if !moved_emails.is_empty() {
            self.warnings.push(format!(
                "{} had an email address already used by another user (compared without \
                 case) and got their default address instead: {}",
                plural(moved_emails.len() as i64, "user"),
                some_names(&moved_emails)
            ));
        }
        if !no_password.is_empty() {
            self.warnings.push(format!(
                "{} without a password White Beat can check (unusable, or not Django's \
                 pbkdf2_sha256) cannot log in until one is set with \
                 `whitebeat changepassword`: {}",
                plural(no_password.len() as i64, "user"),
                some_names(&no_password)
            ));
        }
        if !superusers_not_admin.is_empty() {
            self.warnings.push(format!(
                "{} outside the Admin group, so not admin here (as in the original); use \
                 `whitebeat make-admin` for those who should be: {}",
                plural(superusers_not_admin.len() as i64, "superuser"),
                some_names(&superusers_not_admin)
            ));
        }
        if admins.is_empty() && !self.user_ids.is_empty() {
            self.warnings.push(
                "no user is in the Admin group; make one admin with `whitebeat make-admin`".into(),
            );
        }
        Ok(())
    }

    fn conversations(&mut self, source: &Source) -> ImportResult {
        let mut merged = 0;
        let mut rows = Vec::new();
        source.each(self.django, |row| {
            let a = known_user(&self.user_ids, row, "user1_id")?;
            let b = known_user(&self.user_ids, row, "user2_id")?;
            let created = row.req_time("created_at")?;
            let updated = row.time("updated_at")?.unwrap_or(created);
            rows.push((row.req_int("id")?, (a.min(b), a.max(b)), created, updated));
            Ok(())
        })?;
        // Merge the rows of one pair first, so each is inserted once with its final times.
        let mut pairs: HashMap<(i64, i64), (i64, i64, i64)> = HashMap::new();
        for (id, pair, created, updated) in &rows {
            match pairs.get_mut(pair) {
                Some((_, first_created, last_updated)) => {
                    merged += 1;
                    *first_created = (*first_created).min(*created);
                    *last_updated = (*last_updated).max(*updated);
                }
                None => {
                    pairs.insert(*pair, (*id, *created, *updated));
                }
            }
        }
        let mut kept: Vec<_> = pairs.into_iter().collect();
        kept.sort_by_key(|(_, (id, _, _))| *id);
        for ((u1, u2), (id, created, updated)) in kept {
            import::insert_conversation(self.conn, Some(id), u1, u2, created, updated)
                .map_err(db_err)?;
            self.conversations.insert(
                (u1, u2),
                Conversation {
                    id,
                    updated_at: updated,
                    last_message_id: None,
                },
            );
        }
        if merged > 0 {
            self.warnings.push(format!(
                "{} repeated a pair of users (the other way round) and were merged into \
                 the one with the lower id",
                plural(merged, "conversation")
            ));
        }
        Ok(())
    }

    fn messages(&mut self, source: &Source) -> ImportResult {
        let mut new_conversations = 0;
        source.each(self.django, |row| {
            let id = row.req_int("id")?;
            let sender = known_user(&self.user_ids, row, "sender_id")?;
            let receiver = known_user(&self.user_ids, row, "receiver_id")?;
            let created_at = row.req_time("created_at")?;
            // A note to self is read the moment it is written, as the send path has it.
            let is_read = sender == receiver || row.flag("is_read")?.unwrap_or(true);
            let pair = (sender.min(receiver), sender.max(receiver));
            if !self.conversations.contains_key(&pair) {
                let id = import::insert_conversation(
                    self.conn, None, pair.0, pair.1, created_at, created_at,
                )
                .map_err(db_err)?;
                new_conversations += 1;
                self.conversations.insert(
                    pair,
                    Conversation {
                        id,
                        updated_at: created_at,
                        last_message_id: None,
                    },
                );
            }
            let conversation = self.conversations.get_mut(&pair).expect("inserted above");
            let content = row.req_text("content")?;
            let message = import::ImportedMessage {
                id,
                conversation_id: conversation.id,
                sender_id: sender,
                receiver_id: receiver,
                content: &content,
                is_read,
                created_at,
            };
            import::insert_message(self.conn, &message).map_err(db_err)?;
            conversation.updated_at = conversation.updated_at.max(created_at);
            conversation.last_message_id = conversation.last_message_id.max(Some(id));
            *self.sent.entry(sender).or_default() += 1;
            *self
                .messages_per_day
                .entry(start_of_day(created_at))
                .or_default() += 1;
            Ok(())
        })?;
        if new_conversations > 0 {
            self.warnings.push(format!(
                "{} of users had messages but no conversation row; their conversations \
                 were created",
                plural(new_conversations, "pair")
            ));
        }
        Ok(())
    }

    /// What the send path and the triggers keep: last messages, message counts, the daily
    /// figures and the totals.
    fn finish(&mut self) -> rusqlite::Result<store::stats::Counters> {
        for c in self.conversations.values() {
            if let Some(last) = c.last_message_id {
                import::finish_conversation(self.conn, c.id, c.updated_at, last)?;
            }
        }
        for id in &self.counted_users {
            let sent = self.sent.get(id).copied().unwrap_or(0);
            if sent > 0 {
                import::set_message_count(self.conn, *id, sent)?;
            }
        }
        for (day, n) in &self.signups_per_day {
            store::stats::bump_daily(self.conn, *day, "signups", *n)?;
        }
        for (day, n) in &self.messages_per_day {
            store::stats::bump_daily(self.conn, *day, "messages", *n)?;
        }
        import::recount(self.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ways_django_stores_datetimes() {
        let us = 1_709_296_496_123_456; // 2024-03-01 12:34:56.123456 UTC
        for text in [
            "2024-03-01 12:34:56.123456",
            "2024-03-01 12:34:56.123456+00:00",
            "2024-03-01T12:34:56.123456Z",
            "2024-03-01T12:34:56.123456+00:00",
            " 2024-03-01 14:34:56.123456+02:00 ",
        ] {
            assert_eq!(parse_django_time(text), Some(us), "{text}");
        }
        assert_eq!(
            parse_django_time("2024-03-01 12:34:56"),
            Some(1_709_296_496_000_000)
        );
        assert_eq!(
            parse_django_time("2024-03-01 12:34:56+00:00"),
            Some(1_709_296_496_000_000)
        );
        assert_eq!(parse_django_time("2024-03-01"), Some(1_709_251_200_000_000));
        for bad in [
            "",
            "yesterday",
            "2024-13-01 00:00:00",
            "1709296496",
            "2024-03-01 25:00",
        ] {
            assert_eq!(parse_django_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn long_name_lists_are_cut() {
        let names: Vec<String> = (1..=7).map(|i| format!("u{i}")).collect();
        assert_eq!(some_names(&names[..2]), "u1, u2");
        assert_eq!(some_names(&names), "u1, u2, u3, u4, u5 and 2 more");
        assert_eq!(plural(1, "user"), "1 user");
        assert_eq!(plural(0, "admin"), "0 admins");
    }
}
