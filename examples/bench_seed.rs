//! Prepares a benchmark database directly through the store (not over HTTP), so that even a
//! million messages take seconds: `bench/run` calls it once per database size.
//!
//! ```text
//! cargo run --release --example bench_seed -- --db target/bench/data/large.sqlite3 \
//!     --users 1000 --conversations 20000 --messages 1000000 --tokens large.tokens
//! ```
//!
//! What it arranges (the scenarios of `bench/run` rely on it):
//! - users `user0000` .. `userNNNN`, all with the same password (hashed once with the
//!   server's Argon2 cost, the string reused for every user), each with one open session
//!   whose token is written to the tokens file as `username token partner`, where `partner`
//!   is a user they share a conversation with;
//! - `user0000` (the reader) and `user0001` (the writer) share a conversation of 5,000
//!   messages in which everything the reader received is already read, so the reader's
//!   `GET messages/` is read-only;
//! - `user0002` (the hub) has exactly 100 conversations;
//! - the remaining messages are spread round-robin over the other conversations; all of them
//!   are read except the newest message of each conversation, as in a live chat.
//!
//! The roles are printed on stdout as shell assignments for `bench/run` to source.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use whitebeat::config::{Argon2Cost, SyncMode};
use whitebeat::domain::auth::{self, PasswordHasher};
use whitebeat::store::{self, chat::NewMessage, users::NewUser};

const READER: usize = 0;
const WRITER: usize = 1;
const HUB: usize = 2;
/// The first user that is neither reader, writer nor hub.
const FIRST_PLAIN: usize = 3;
const BIG_CONVERSATION: usize = 5_000;
const HUB_CONVERSATIONS: usize = 100;
/// Messages per write transaction while seeding.
const BATCH: usize = 50_000;
const SESSION_DAYS: i64 = 30;

struct Args {
    db: PathBuf,
    tokens: PathBuf,
    users: usize,
    conversations: usize,
    messages: usize,
    password: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: PathBuf::new(),
        tokens: PathBuf::new(),
        users: 1_000,
        conversations: 20_000,
        messages: 1_000_000,
        password: "bench-password-1".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--db" => args.db = value.clone().into(),
            "--tokens" => args.tokens = value.clone().into(),
            "--users" => args.users = number()?,
            "--conversations" => args.conversations = number()?,
            "--messages" => args.messages = number()?,
            "--password" => args.password = value.clone(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.db.as_os_str().is_empty() || args.tokens.as_os_str().is_empty() {
        return Err("usage: bench_seed --db PATH --tokens PATH [--users N] \
                    [--conversations N] [--messages N] [--password P]"
            .into());
    }
    if args.users < FIRST_PLAIN + HUB_CONVERSATIONS + 1 {
        return Err(format!(
            "--users must be at least {}",
            FIRST_PLAIN + HUB_CONVERSATIONS + 1
        ));
    }
    let plain = args.users - FIRST_PLAIN;
    let max_pairs = 1 + HUB_CONVERSATIONS + plain * ((plain - 1) / 2);
    if args.conversations < 1 + HUB_CONVERSATIONS || args.conversations > max_pairs {
        return Err(format!(
            "--conversations must be between {} and {max_pairs}",
            1 + HUB_CONVERSATIONS
        ));
    }
    if args.messages < BIG_CONVERSATION + args.conversations {
        return Err(format!(
            "--messages must be at least {}",
            BIG_CONVERSATION + args.conversations
        ));
    }
    Ok(args)
}

/// The conversation pairs: the big one, the hub's, then plain users paired at growing
/// distances on a ring (every pair distinct, the hub never among them).
fn conversation_pairs(users: usize, count: usize) -> Vec<(usize, usize)> {
    let mut pairs = vec![(READER, WRITER)];
    pairs.extend((0..HUB_CONVERSATIONS).map(|k| (HUB, FIRST_PLAIN + k)));
    let plain = users - FIRST_PLAIN;
    let mut distance = 1;
    'outer: loop {
        for a in 0..plain {
            if pairs.len() == count {
                break 'outer;
            }
            let b = (a + distance) % plain;
            pairs.push((FIRST_PLAIN + a, FIRST_PLAIN + b));
        }
        distance += 1;
    }
    pairs
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_seed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let started = Instant::now();
    for path in [
        args.db.clone(),
        PathBuf::from(format!("{}-wal", args.db.display())),
        PathBuf::from(format!("{}-shm", args.db.display())),
    ] {
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let mut conn = store::open(&args.db, SyncMode::Normal)?;
    store::migrate(&mut conn)?;
    let sql = |e: rusqlite::Error| e.to_string();
    // Seeding only: nothing here must survive a power cut, and a big cache keeps the
    // million-row transactions in memory.
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -524288;")
        .map_err(sql)?;

    let hash = PasswordHasher::new(Argon2Cost::default(), 1)
        .hash(&args.password)
        .map_err(|e| e.to_string())?;
    let now = store::now_us();
    let names: Vec<String> = (0..args.users).map(|i| format!("user{i:04}")).collect();
    let mut ids = Vec::with_capacity(args.users);
    for name in &names {
        let email = format!("{name}@bench.whitebeat.test");
        let new = NewUser {
            username: name,
            email: &email,
            password_hash: &hash,
            is_admin: false,
            is_superuser: false,
            invite_code: None,
            now,
        };
        let id = store::users::create(&conn, &new).map_err(|e| format!("create {name}: {e:?}"))?;
        ids.push(id);
    }

    let pairs = conversation_pairs(args.users, args.conversations);
    let mut partner = vec![usize::MAX; args.users];
    for &(a, b) in &pairs {
        if partner[a] == usize::MAX {
            partner[a] = b;
        }
        if partner[b] == usize::MAX {
            partner[b] = a;
        }
    }

    // Messages, one millisecond apart and ending now. First the history: all but the newest
    // message of each conversation (the big one gets 5,000 in all, in both directions; the
    // rest go round-robin over the others), then all marked read. Last, one fresh, unread
    // message per conversation (the big one's is from the reader, so the reader has nothing
    // unread).
    let others = pairs.len() - 1;
    let rest = args.messages - BIG_CONVERSATION - others;
    let base = now - args.messages as i64 * 1_000;
    let content = "Hello there! This is a benchmark message of ordinary length, about 80 chars.";
    let mut stamp = 0i64;
    let mut conv_ids = vec![0i64; pairs.len()];
    let history = (0..BIG_CONVERSATION - 1)
        .map(|i| (0usize, i.is_multiple_of(2)))
        .chain((0..rest).map(|j| (1 + j % others, (j / others).is_multiple_of(2))));
    let fresh = (0..pairs.len()).map(|conv| (conv, conv != 0));
    let mut plan = history
        .map(|m| (m, false))
        .chain(fresh.map(|m| (m, true)))
        .peekable();
    let mut marked = false;
    while plan.peek().is_some() {
        let tx = store::write_tx(&conn).map_err(sql)?;
        while let Some(((conv, forward), is_fresh)) =
            plan.next_if(|(_, is_fresh)| !*is_fresh || marked)
        {
            let (a, b) = pairs[conv];
            // `forward`: from the second member to the first (the writer to the reader).
            let (from, to) = if forward { (b, a) } else { (a, b) };
            stamp += 1;
            let m = NewMessage {
                sender_id: ids[from],
                receiver_id: ids[to],
                content,
                now: base + stamp * 1_000,
            };
            let sent = store::chat::insert_message(&tx, &m).map_err(sql)?;
            conv_ids[conv] = sent.conversation_id;
            if !is_fresh && (stamp as usize).is_multiple_of(BATCH) {
                break;
            }
        }
        if !marked && plan.peek().is_none_or(|(_, is_fresh)| *is_fresh) {
            for (conv, &(a, b)) in pairs.iter().enumerate() {
                store::chat::mark_read(&tx, conv_ids[conv], ids[a]).map_err(sql)?;
                store::chat::mark_read(&tx, conv_ids[conv], ids[b]).map_err(sql)?;
            }
            marked = true;
        }
        tx.commit().map_err(sql)?;
    }

    // One session per user, valid for the default 30 days.
    let tx = store::write_tx(&conn).map_err(sql)?;
    let mut tokens = String::new();
    for (i, name) in names.iter().enumerate() {
        let (token, token_hash) = auth::new_token().map_err(|e| e.to_string())?;
        let idle = SESSION_DAYS * 24 * 3_600 * 1_000_000;
        store::sessions::create(&tx, &token_hash, ids[i], now, idle).map_err(sql)?;
        let p = partner[i];
        let p = if p == usize::MAX {
            (i + 1) % args.users
        } else {
            p
        };
        tokens.push_str(&format!("{name} {token} {}\n", names[p]));
    }
    tx.commit().map_err(sql)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize;")
        .map_err(sql)?;
    drop(conn);
    std::fs::write(&args.tokens, tokens).map_err(|e| format!("{}: {e}", args.tokens.display()))?;

    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "READER={}", names[READER]);
    let _ = writeln!(out, "WRITER={}", names[WRITER]);
    let _ = writeln!(out, "HUB={}", names[HUB]);
    let _ = writeln!(out, "PASSWORD='{}'", args.password);
    let _ = writeln!(out, "SEED_USERS={}", args.users);
    let _ = writeln!(out, "SEED_CONVERSATIONS={}", pairs.len());
    let _ = writeln!(out, "SEED_MESSAGES={stamp}");
    let _ = writeln!(out, "SEED_MS={}", started.elapsed().as_millis());
    Ok(())
}
