//! Who is asking: Argon2id password hashing on a bounded pool (and verification of the
//! Django original's PBKDF2 hashes, kept as imported until their owner's next login),
//! session tokens (random from the OS, stored hashed), finding the user of a session token,
//! login throttling per account and per client address, and the rules for
//! a new account's fields (among them the look-alike key that keeps usernames unique by
//! how they look, not only by their bytes).

use crate::config::Argon2Cost;
use crate::error::{Error, Result};
use crate::store;
use base64::Engine;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "whitebeat_session";
pub const MIN_PASSWORD_LEN: usize = 8;
/// Session expiry and user activity are written at most this often per session.
const TOUCH_EVERY_US: i64 = 60_000_000;
/// How Django's `PBKDF2PasswordHasher` (its default) marks what it stores:
/// `pbkdf2_sha256$<iterations>$<salt>$<base64 of the 32-byte derived key>`.
const DJANGO_PBKDF2_PREFIX: &str = "pbkdf2_sha256$";
/// The most PBKDF2 iterations a stored hash may ask for. Django 4.2 uses 600,000; the cap
/// keeps a crafted row from making one login burn a core for minutes.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// What kind of stored password hash a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// Ours (the PHC string format, `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>`).
    Argon2,
    /// A well-formed Django PBKDF2-SHA256 hash, within the iteration cap.
    DjangoPbkdf2,
    /// Anything else: Django's unusable passwords (`!...`), other Django hashers (`argon2$`,
    /// `bcrypt_sha256$`, ...), malformed or over-costly PBKDF2. Never matches a password.
    Unsupported,
}

pub fn hash_kind(stored: &str) -> HashKind {
    if stored.starts_with("$argon2") {
        if argon2_cost_is_sane(stored) {
            HashKind::Argon2
        } else {
            HashKind::Unsupported
        }
    } else if parse_django_pbkdf2(stored).is_some() {
        HashKind::DjangoPbkdf2
    } else {
        HashKind::Unsupported
    }
}

/// Argon2 takes its cost from the stored hash itself, so a row that came from elsewhere (an
/// import, a hand-edited database) could ask for gigabytes and minutes per login attempt.
/// Hashes over 1 GiB, 100 passes or 16 lanes are not verified at all.
fn argon2_cost_is_sane(stored: &str) -> bool {
    let Some(params) = stored.split('$').find(|p| p.starts_with("m=")) else {
        return false;
    };
    params.split(',').all(|kv| match kv.split_once('=') {
        Some(("m", v)) => v.parse::<u32>().is_ok_and(|m| m <= 1024 * 1024),
        Some(("t", v)) => v.parse::<u32>().is_ok_and(|t| t <= 100),
        Some(("p", v)) => v.parse::<u32>().is_ok_and(|p| p <= 16),
        _ => true,
    })
}

/// The parts of a Django PBKDF2-SHA256 hash.
struct DjangoPbkdf2<'a> {
    iterations: u32,
    salt: &'a str,
    derived: Vec<u8>,
}

fn parse_django_pbkdf2(stored: &str) -> Option<DjangoPbkdf2<'_>> {
    let rest = stored.strip_prefix(DJANGO_PBKDF2_PREFIX)?;
    // Django splits on the first three `$`; its salts never contain one.
    let mut parts = rest.splitn(3, '$');
    let (iterations, salt, hash) = (parts.next()?, parts.next()?, parts.next()?);
    if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let iterations: u32 = iterations.parse().ok()?;
    if !(1..=MAX_PBKDF2_ITERATIONS).contains(&iterations) || salt.is_empty() {
        return None;
    }
    let derived = base64::engine::general_purpose::STANDARD
        .decode(hash)
        .ok()?;
    // Django derives SHA-256's own length and compares the whole encoding, so any other
    // length never matched there either.
    (derived.len() == 32).then_some(DjangoPbkdf2 {
        iterations,
        salt,
        derived,
    })
}

/// Checks a password against a Django PBKDF2-SHA256 hash, comparing in constant time.
fn verify_django_pbkdf2(stored: &str, password: &str) -> bool {
    let Some(h) = parse_django_pbkdf2(stored) else {
        return false;
    };
    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        password.as_bytes(),
        h.salt.as_bytes(),
        h.iterations,
        &mut derived,
    );
    bool::from(derived.as_slice().ct_eq(&h.derived))
}

/// An Argon2 hash as stored, in the PHC string format
/// `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>` (salt and hash in unpadded standard
/// base64), read exactly as rust-argon2 (which wrote every hash stored before) read it:
/// `argon2d`, `argon2i` or `argon2id`; `v=16` or `v=19`, or no version field for the
/// original 1.0; then `m`, `t` and `p` in that order.
struct EncodedArgon2 {
    algorithm: argon2::Algorithm,
    version: argon2::Version,
    params: argon2::Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// `None` for anything that is not a well-formed Argon2 hash within `argon2_cost_is_sane`.
fn parse_argon2(stored: &str) -> Option<EncodedArgon2> {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    if !argon2_cost_is_sane(stored) {
        return None;
    }
    let fields: Vec<&str> = stored.split('$').collect();
    let (algorithm, version, params, salt, hash) = match fields.as_slice() {
        ["", a, v, params, salt, hash] => (*a, Some(*v), *params, *salt, *hash),
        ["", a, params, salt, hash] => (*a, None, *params, *salt, *hash),
        _ => return None,
    };
    let algorithm = match algorithm {
        "argon2id" => argon2::Algorithm::Argon2id,
        "argon2i" => argon2::Algorithm::Argon2i,
        "argon2d" => argon2::Algorithm::Argon2d,
        _ => return None,
    };
    let version = match version {
        Some("v=19") => argon2::Version::V0x13,
        Some("v=16") | None => argon2::Version::V0x10,
        Some(_) => return None,
    };
    let mut costs = params.split(',');
    let mut cost = |name: &str| -> Option<u32> {
        let (key, value) = costs.next()?.split_once('=')?;
        (key == name).then(|| value.parse().ok()).flatten()
    };
    let (m, t, p) = (cost("m")?, cost("t")?, cost("p")?);
    if costs.next().is_some() {
        return None;
    }
    let salt = STANDARD_NO_PAD.decode(salt).ok()?;
    let hash = STANDARD_NO_PAD.decode(hash).ok()?;
    if salt.len() < argon2::MIN_SALT_LEN || hash.len() < argon2::Params::MIN_OUTPUT_LEN {
        return None;
    }
    Some(EncodedArgon2 {
        algorithm,
        version,
        params: argon2::Params::new(m, t, p, None).ok()?,
        salt,
        hash,
    })
}

thread_local! {
    /// The Argon2 memory this thread keeps between hashes: allocated on its first hash (19
    /// MiB at the default cost), then reused, so a hash pays no page faults for memory the
    /// allocator would otherwise map and unmap each time. Hashing runs on the server's
    /// password threads (half the cores, at least one) and on the main thread of a CLI
    /// command, so a server keeps one buffer per password thread.
    static ARGON2_MEMORY: RefCell<Vec<argon2::Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `blocks` blocks of Argon2 memory: this thread's kept buffer (grown to at
/// least `keep` blocks the first time) when the hash needs no more than it holds or than
/// `keep`, otherwise (an old hash with a higher cost than the configured one) a temporary
/// allocation, freed (and unmapped, see `main::limit_malloc_arenas`) afterwards. The kept
/// buffer is zeroed after use so that nothing derived from a password outlives its hash.
fn with_argon2_memory<T>(
    blocks: usize,
    keep: usize,
    f: impl FnOnce(&mut [argon2::Block]) -> T,
) -> T {
    let mut f = Some(f);
    let kept = ARGON2_MEMORY.try_with(|cell| {
        let mut memory = cell.try_borrow_mut().ok()?;
        if blocks > memory.len().max(keep) {
            return None;
        }
        if memory.len() < blocks {
            *memory = vec![argon2::Block::new(); keep.max(blocks)];
        }
        let used = &mut memory[..blocks];
        let out = (f.take()?)(used);
        used.fill(argon2::Block::new());
        Some(out)
    });
    match (kept, f) {
        (Ok(Some(out)), _) => out,
        (_, Some(f)) => f(&mut vec![argon2::Block::new(); blocks]),
        (_, None) => unreachable!("`f` ran on the kept buffer"),
    }
}

#[cfg(test)]
thread_local! {
    /// The `(m, t, p)` of every Argon2 computation this thread ran, for the tests.
    static ARGON2_RUNS: RefCell<Vec<(u32, u32, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Argon2id hashing. At most `permits` hashes run at once, so a storm of logins cannot take
/// every core (and every byte of its 19 MiB per hash) away from chat traffic.
pub struct PasswordHasher {
    cost: Argon2Cost,
    /// Blocks of Argon2 memory a hash at the configured cost uses, kept per thread.
    keep_blocks: usize,
    permits: Mutex<usize>,
    freed: Condvar,
    /// Verified against when the user does not exist, so both cases cost the same.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(cost: Argon2Cost, permits: usize) -> PasswordHasher {
        // An encoded hash with the configured cost that no password matches: verifying
        // against it costs what a real verification costs, and building it costs nothing
        // at start-up (the salt is "somesaltsomesalt", the hash all zeros).
        let dummy_hash = format!(
            "$argon2id$v=19$m={},t={},p=1$c29tZXNhbHRzb21lc2FsdA${}",
            cost.memory_kib,
            cost.iterations,
            "A".repeat(43)
        );
        let keep_blocks = argon2::Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_or(0, |p| p.block_count());
        PasswordHasher {
            cost,
            keep_blocks,
            permits: Mutex::new(permits.max(1)),
            freed: Condvar::new(),
            dummy_hash,
        }
    }

    fn with_permit<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut free = self.permits.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        drop(free);
        let out = f();
        *self.permits.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.freed.notify_one();
        out
    }

    /// One Argon2 computation into `out`, on this thread's kept memory when it fits.
    fn argon2(
        &self,
        algorithm: argon2::Algorithm,
        version: argon2::Version,
        params: argon2::Params,
        password: &str,
        salt: &[u8],
        out: &mut [u8],
    ) -> std::result::Result<(), argon2::Error> {
        #[cfg(test)]
        ARGON2_RUNS.with(|r| {
            r.borrow_mut()
                .push((params.m_cost(), params.t_cost(), params.p_cost()))
        });
        let blocks = params.block_count();
        let argon2 = argon2::Argon2::new(algorithm, version, params);
        with_argon2_memory(blocks, self.keep_blocks, |memory| {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, memory)
        })
    }

    pub fn hash(&self, password: &str) -> Result<String> {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| Error::internal(format!("getrandom: {e}")))?;
        let Argon2Cost {
            memory_kib,
            iterations,
        } = self.cost;
        let params = argon2::Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| Error::internal(format!("argon2: {e}")))?;
        let mut out = [0u8; 32];
        self.with_permit(|| {
            self.argon2(
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                params,
                password,
                &salt,
                &mut out,
            )
        })
        .map_err(|e| Error::internal(format!("argon2: {e}")))?;
        Ok(format!(
            "$argon2id$v=19$m={memory_kib},t={iterations},p=1${}${}",
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(out)
        ))
    }

    /// Checks a password against an Argon2 hash, comparing in constant time; `false` for
    /// one that does not parse or asks for too much (`argon2_cost_is_sane`), unhashed.
    fn verify_argon2(&self, stored: &str, password: &str) -> bool {
        let Some(h) = parse_argon2(stored) else {
            return false;
        };
        let mut derived = vec![0u8; h.hash.len()];
        self.argon2(
            h.algorithm,
            h.version,
            h.params,
            password,
            &h.salt,
            &mut derived,
        )
        .is_ok()
            && bool::from(derived.as_slice().ct_eq(&h.hash))
    }

    /// Checks a password against a stored hash (ours, or an imported Django one); `None`
    /// (unknown user) and a hash that can never match still do the work of an Argon2
    /// verification, so an unknown username takes as long as a known one. (An imported
    /// Django hash costs its own PBKDF2 rounds until the first login replaces it, so timing
    /// can tell such not-yet-used imported accounts apart.)
    pub fn verify(&self, stored: Option<&str>, password: &str) -> bool {
        let kind = stored.map_or(HashKind::Unsupported, hash_kind);
        self.with_permit(|| match (kind, stored) {
            (HashKind::Argon2, Some(encoded)) => self.verify_argon2(encoded, password),
            (HashKind::DjangoPbkdf2, Some(encoded)) => verify_django_pbkdf2(encoded, password),
            _ => {
                let _ = self.verify_argon2(&self.dummy_hash, password);
                false
            }
        })
    }

    /// Whether a hash that just verified should be replaced by a fresh Argon2id one (an
    /// imported Django hash, at its owner's first login here).
    pub fn needs_rehash(stored: &str) -> bool {
        hash_kind(stored) != HashKind::Argon2
    }
}

/// A new session token (256 random bits from the OS, hex) and the hash stored for it.
pub fn new_token() -> Result<(String, Vec<u8>)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("getrandom: {e}")))?;
    let token = hex::encode(bytes);
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// A new invite code: 96 random bits from the OS as 24 lower-case hex digits (short enough
/// to read out, far too many to guess).
pub fn new_invite_code() -> Result<String> {
    random_hex::<12>()
}

/// A password an admin hands to a user after a reset: 80 random bits, 20 hex digits.
pub fn new_temporary_password() -> Result<String> {
    random_hex::<10>()
}

fn random_hex<const N: usize>() -> Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("getrandom: {e}")))?;
    Ok(hex::encode(bytes))
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The user a request acts for.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: i64,
    pub username: String,
    pub is_admin: bool,
    pub token_hash: Vec<u8>,
}

/// The user of a session token (a request's bearer token or cookie), if the session is
/// valid; refreshes its expiry at most once a minute. `session_idle` is how long an unused
/// session lives.
pub fn authenticate(
    db: &Connection,
    token: Option<&str>,
    session_idle: Duration,
) -> Result<Option<Identity>> {
    let Some(token) = token else {
        return Ok(None);
    };
    if token.len() > 256 {
        return Ok(None);
    }
    let hash = hash_token(token);
    let Some(session) = store::sessions::find(db, &hash)? else {
        return Ok(None);
    };
    // The lookup was by hash already; compare again in constant time so no timing of the
    // index walk can be turned into a comparison oracle.
    if !bool::from(session.token_hash.as_slice().ct_eq(&hash)) {
        return Ok(None);
    }
    let now = store::now_us();
    if !session.is_valid(now) {
        return Ok(None);
    }
    if now - session.last_seen >= TOUCH_EVERY_US {
        let idle = session_idle.as_micros() as i64;
        // Best effort: a full disk or a busy database must not lock a valid session out of
        // reading; the touch is retried on the next request.
        if let Err(e) = store::sessions::touch(db, &hash, session.user_id, now, idle) {
            log::warn!("could not refresh a session's expiry: {e}");
        }
    }
    Ok(Some(Identity {
        user_id: session.user_id,
        username: session.username,
        is_admin: session.is_admin,
        token_hash: hash,
    }))
}

/// Whose failed logins a throttle counter counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LoginKey {
    /// An existing account, by id: every spelling that reaches it counts against it, and
    /// only its own successful login clears it.
    Account(i64),
    /// A name no account has, so that guesses at unknown names are throttled just as those
    /// at known ones are (a `429` must not tell which names exist). Lower-cased and cut to
    /// the longest valid username, so no request can make the map hold a huge key.
    Name(String),
    /// The client address.
    Address(IpAddr),
}

impl LoginKey {
    /// The key of the account a login names: its id when the user exists, else the name.
    pub fn for_login(user_id: Option<i64>, username: &str) -> LoginKey {
        match user_id {
            Some(id) => LoginKey::Account(id),
            None => LoginKey::Name(
                username
                    .chars()
                    .take(MAX_USERNAME_CHARS)
                    .collect::<String>()
                    .to_lowercase(),
            ),
        }
    }
}

/// Failed-login bookkeeping, in memory: a restart forgives, which is acceptable for a
/// throttle whose job is to make online guessing slow.
pub struct LoginThrottle {
    attempts_per_account: u32,
    attempts_per_address: u32,
    window: Duration,
    failures: Mutex<HashMap<LoginKey, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(attempts: u32, window: Duration) -> LoginThrottle {
        LoginThrottle {
            attempts_per_account: attempts.max(1),
            // One address may try several accounts (a family behind one router), not many.
            attempts_per_address: attempts.max(1) * 4,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(429)` while either the account (or unknown name) or the address is over its
    /// limit.
    pub fn check(&self, account: &LoginKey, ip: IpAddr) -> Result<()> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, start)| now.duration_since(*start) < self.window);
        for (key, limit) in [
            (account, self.attempts_per_account),
            (&LoginKey::Address(ip), self.attempts_per_address),
        ] {
            if let Some((count, start)) = map.get(key) {
                if *count >= limit {
                    let wait = self.window.saturating_sub(now.duration_since(*start));
                    return Err(Error::TooManyRequests(wait.as_secs().max(1)));
                }
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, account: &LoginKey, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in [account.clone(), LoginKey::Address(ip)] {
            let entry = map.entry(key).or_insert((0, now));
            entry.0 += 1;
        }
    }

    /// Forgives the failures of this account only: the address keeps its count, and no
    /// other account's success (a look-alike name that once lower-cased to the same key)
    /// ever clears it.
    pub fn record_success(&self, account: &LoginKey) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account);
    }
}

/// The original's address for an account that gave none.
pub fn default_email(username: &str) -> String {
    format!("{username}@whitebeat.com")
}

/// A new account's fields, checked the same way however it is created (sign-up, the admin
/// page, the shell): the username trimmed and valid, the password long enough, the email
/// valid if given and otherwise the original's default. Returns (username, email).
pub fn new_account_fields(
    username: &str,
    password: &str,
    email: Option<&str>,
) -> Result<(String, String)> {
    let username = username.trim();
    if username.is_empty() || password.is_empty() {
        return Err(Error::bad_request("Username and password are required"));
    }
    validate_username(username)?;
    validate_password(password)?;
    // Only a given email is checked: the default built from a valid username (which may
    // itself contain `@`) is the original's and must not refuse the account.
    let email = match email.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => {
            validate_email(e)?;
            e.to_string()
        }
        None => default_email(username),
    };
    Ok((username.to_string(), email))
}

/// The longest username, in characters (Django's limit).
pub const MAX_USERNAME_CHARS: usize = 150;

/// Username rule of the API: 1–150 characters of letters, digits and `@.+-_`.
pub fn validate_username(username: &str) -> Result<()> {
    let len = username.chars().count();
    if len == 0 || len > MAX_USERNAME_CHARS {
        return Err(Error::bad_request("Username must be 1 to 150 characters"));
    }
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
    {
        return Err(Error::bad_request(
            "Username may contain only letters, digits and @ . + - _",
        ));
    }
    Ok(())
}

/// What two usernames share when they look alike (defined with the users' table, whose
/// uniqueness it is).
pub use crate::store::users::name_key;

pub fn validate_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::bad_request(format!(
            "Password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(Error::bad_request("Password must be at most 1024 bytes"));
    }
    Ok(())
}

/// A deliberately plain check: one `@` with something on both sides and a dot in the domain.
pub fn validate_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request("Enter a valid email address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_django_rule() {
        assert!(validate_username("john.doe+1@x_y-z").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("<script>").is_err());
        assert!(validate_username(&"a".repeat(151)).is_err());
    }

    #[test]
    fn emails_must_look_like_emails() {
        assert!(validate_email("a@b.co").is_ok());
        for bad in ["", "a", "a@b", "@b.co", "a@.co", "a b@c.de", "a@b@c.de"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (t1, h1) = new_token().unwrap();
        let (t2, _) = new_token().unwrap();
        assert_ne!(t1, t2);
        assert_eq!(t1.len(), 64);
        assert_eq!(h1, hash_token(&t1));
    }

    #[test]
    fn throttle_blocks_after_the_limit_and_only_the_accounts_success_clears_it() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let bob = LoginKey::for_login(Some(7), "bob");
        t.check(&bob, ip).unwrap();
        t.record_failure(&bob, ip);
        t.record_failure(&bob, ip);
        assert!(matches!(t.check(&bob, ip), Err(Error::TooManyRequests(_))));
        // Another account with a name that lower-cases the same does not clear it.
        t.record_success(&LoginKey::for_login(Some(8), "BOB"));
        assert!(matches!(t.check(&bob, ip), Err(Error::TooManyRequests(_))));
        t.record_success(&bob);
        assert!(t.check(&bob, ip).is_ok());
        // Unknown names are throttled alike, by name.
        let ghost = LoginKey::for_login(None, "Ghost");
        t.record_failure(&ghost, ip);
        t.record_failure(&ghost, ip);
        assert!(t.check(&LoginKey::for_login(None, "ghost"), ip).is_err());
        assert_eq!(
            LoginKey::for_login(None, &"x".repeat(100_000)),
            LoginKey::Name("x".repeat(MAX_USERNAME_CHARS))
        );
    }

    #[test]
    fn look_alike_names_share_a_key() {
        let admin = name_key("admin");
        for alike in [
            "admin",
            "Admin",
            "ADMIN",
            "\u{430}dmin",
            "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}",
            "\u{1d41a}\u{1d41d}\u{1d426}\u{1d422}\u{1d427}",
            "\u{1d400}dmin",
            "adrnin",
        ] {
            assert_eq!(name_key(alike), admin, "{alike}");
        }
        for other in ["admins", "admin1", "bob", "adm_in"] {
            assert_ne!(name_key(other), admin, "{other}");
        }
        assert_eq!(name_key("stra\u{df}e"), name_key("STRASSE"));
    }

    #[test]
    fn argon2_hashes_asking_for_too_much_are_never_verified() {
        let ok = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAA";
        assert_eq!(hash_kind(ok), HashKind::Argon2);
        for greedy in [
            "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAA",
            "$argon2id$v=19$m=19456,t=100000,p=1$c29tZXNhbHRzb21lc2FsdA$AAAA",
            "$argon2id$v=19$m=19456,t=2,p=255$c29tZXNhbHRzb21lc2FsdA$AAAA",
            "$argon2id$v=19$m=lots,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAA",
            "$argon2id$v=19",
        ] {
            assert_eq!(hash_kind(greedy), HashKind::Unsupported, "{greedy}");
        }
    }

    #[test]
    fn hasher_verifies_and_refuses_unknown_users() {
        let h = PasswordHasher::new(
            Argon2Cost {
                memory_kib: 64,
                iterations: 1,
            },
            1,
        );
        let stored = h.hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(h.verify(Some(&stored), "correct horse"));
        assert!(!h.verify(Some(&stored), "wrong"));
        assert!(!h.verify(None, "password123"));
        // The stand-in for unknown users parses (so it is really computed) with the cost of
        // a real hash.
        assert!(parse_argon2(&h.dummy_hash).is_some());
        assert!(h.dummy_hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
    }

    fn argon2_runs() -> Vec<(u32, u32, u32)> {
        ARGON2_RUNS.with(|r| std::mem::take(&mut *r.borrow_mut()))
    }

    fn kept_buffer() -> (*const argon2::Block, usize, usize) {
        ARGON2_MEMORY.with(|m| {
            let m = m.borrow();
            (m.as_ptr(), m.len(), m.capacity())
        })
    }

    /// Made by the server before it moved to RustCrypto's `argon2`: the first by `whitebeat
    /// createsuperuser` at the default cost, the others by `rust-argon2` 3.0's
    /// `hash_encoded` with other costs, lanes, output lengths, variant and version.
    const RUST_ARGON2_VECTORS: [(&str, &str); 5] = [
        (
            "made by the old binary",
            "$argon2id$v=19$m=19456,t=2,p=1$8C/6dd9J532+ykl+m7/BmA$\
             ydvZ7hA90gAjlSYJ9TPLrmH+5KXJbn4pKxQ4LBfJYxA",
        ),
        (
            "correct horse battery staple",
            "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
             gy5SuVm5Z7Vw7keB9se9p87QGcomaseB/S2U1OhTsM0",
        ),
        (
            "Tr0ub4dor&3",
            "$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$\
             j2tNRxSr7fM07NEeURypGYYVClBiur8MqrE6F0OkJv4",
        ),
        (
            "hunter2 hunter2",
            "$argon2id$v=19$m=64,t=1,p=2$ZWlnaHRieXQ$YRNJ9LDHKOO1PzW3AtclJg",
        ),
        (
            "old school",
            "$argon2i$v=16$m=256,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
             J+3OyjJ2eP108aiV4pPZfXdcH8K3FaZAuYXa6cnwxpY",
        ),
    ];

    #[test]
    fn hashes_made_by_rust_argon2_still_verify() {
        // Configured below every vector's cost: the larger ones run on temporary memory.
        let h = PasswordHasher::new(
            Argon2Cost {
                memory_kib: 64,
                iterations: 1,
            },
            1,
        );
        for (password, stored) in RUST_ARGON2_VECTORS {
            assert_eq!(hash_kind(stored), HashKind::Argon2, "{stored}");
            assert!(!PasswordHasher::needs_rehash(stored), "{stored}");
            assert!(h.verify(Some(stored), password), "{stored}");
            assert!(!h.verify(Some(stored), &format!("{password}!")), "{stored}");
            assert!(!h.verify(Some(stored), ""), "{stored}");
        }
        // The kept buffer stayed at the configured size.
        assert_eq!(kept_buffer().1, 64);
        // A tampered hash or salt no longer matches.
        let (password, stored) = RUST_ARGON2_VECTORS[2];
        let flipped_hash = stored.replace("j2tNRx", "j2tNRy");
        let flipped_salt = stored.replace("c2FsdHNh", "c2FsdHNi");
        assert!(!h.verify(Some(&flipped_hash), password));
        assert!(!h.verify(Some(&flipped_salt), password));
    }

    #[test]
    fn default_cost_hashes_verify_on_the_kept_buffer() {
        let h = PasswordHasher::new(Argon2Cost::default(), 1);
        let (password, stored) = RUST_ARGON2_VECTORS[0];
        assert!(h.verify(Some(stored), password));
        assert!(!h.verify(Some(stored), "made by the new binary"));
        let ours = h.hash(password).unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(h.verify(Some(&ours), password));
        assert_eq!(kept_buffer().1, 19456);
    }

    #[test]
    fn the_kept_buffer_is_reused_and_a_costlier_hash_borrows_its_own() {
        let h = PasswordHasher::new(
            Argon2Cost {
                memory_kib: 256,
                iterations: 1,
            },
            1,
        );
        let stored = h.hash("password123").unwrap();
        let first = kept_buffer();
        assert_eq!(first.1, 256);
        assert!(h.verify(Some(&stored), "password123"));
        assert!(!h.verify(None, "password123"));
        assert_eq!(kept_buffer(), first, "same allocation, not grown");
        // An old hash with a higher cost runs on temporary memory and leaves the kept
        // buffer as it was.
        let (password, costlier) = RUST_ARGON2_VECTORS[2];
        assert!(h.verify(Some(costlier), password));
        assert_eq!(kept_buffer(), first);
        // One with a lower cost uses the kept one.
        let (password, cheaper) = RUST_ARGON2_VECTORS[3];
        assert!(h.verify(Some(cheaper), password));
        assert_eq!(kept_buffer(), first);
        // Nothing a hash derived stays behind in it.
        ARGON2_MEMORY.with(|m| {
            assert!(m
                .borrow()
                .iter()
                .all(|b| b.as_ref().iter().all(|w| *w == 0)));
        });
    }

    #[test]
    fn each_verification_is_one_argon2_run_and_greedy_hashes_are_never_run() {
        let h = PasswordHasher::new(
            Argon2Cost {
                memory_kib: 64,
                iterations: 1,
            },
            1,
        );
        let configured = (64, 1, 1);
        let stored = h.hash("password123").unwrap();
        assert_eq!(argon2_runs(), [configured]);
        assert!(h.verify(Some(&stored), "password123"));
        assert_eq!(argon2_runs(), [configured]);
        // An unknown user: one verification at the configured cost.
        assert!(!h.verify(None, "password123"));
        assert_eq!(argon2_runs(), [configured]);
        let salt_and_hash = "$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for params in [
            "m=1048577,t=1,p=1",
            "m=4194304,t=2,p=1",
            "m=64,t=101,p=1",
            "m=64,t=100000,p=1",
            "m=256,t=1,p=17",
            "m=64,t=1,p=255",
            "m=64,t=1,p=1,m=4194304",
            "m=lots,t=1,p=1",
        ] {
            let greedy = format!("$argon2id$v=19${params}{salt_and_hash}");
            assert_eq!(hash_kind(&greedy), HashKind::Unsupported, "{greedy}");
            assert!(parse_argon2(&greedy).is_none(), "{greedy}");
            assert!(!h.verify(Some(&greedy), "password123"), "{greedy}");
            // Only the stand-in ran, at the configured cost.
            assert_eq!(argon2_runs(), [configured], "{greedy}");
        }
        // The limits themselves are allowed.
        let at_limits = format!("$argon2id$v=19$m=1048576,t=100,p=16{salt_and_hash}");
        assert!(parse_argon2(&at_limits).is_some());
        // Malformed ones do no Argon2 work of their own either.
        for malformed in [
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAA",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA==$AAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=18$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
            "$argon2x$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAA$",
            "$argon2id$v=19$m=4,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=64,t=0,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=64,t=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=64,p=1,t=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(parse_argon2(malformed).is_none(), "{malformed}");
            assert!(!h.verify(Some(malformed), "password123"), "{malformed}");
            let runs = argon2_runs();
            let own_runs = if hash_kind(malformed) == HashKind::Argon2 {
                0
            } else {
                1
            };
            assert_eq!(runs.len(), own_runs, "{malformed}");
        }
    }

    /// Made by Django's way with Python: `hashlib.pbkdf2_hmac("sha256", password, salt,
    /// 1000)`, base64 of the 32 derived bytes.
    const DJANGO_VECTOR: &str = "pbkdf2_sha256$1000$Fr3shSaltFr0mDjang0xyz$\
                                 wDRO9MWnIuCJILMTsZsKS8Pea+6EzsgGBDXPHhU9mpI=";

    #[test]
    fn django_pbkdf2_hashes_verify_and_want_a_rehash() {
        let h = PasswordHasher::new(
            Argon2Cost {
                memory_kib: 64,
                iterations: 1,
            },
            1,
        );
        assert_eq!(hash_kind(DJANGO_VECTOR), HashKind::DjangoPbkdf2);
        assert!(h.verify(Some(DJANGO_VECTOR), "correct horse battery staple"));
        assert!(!h.verify(Some(DJANGO_VECTOR), "correct horse battery stapl"));
        assert!(!h.verify(Some(DJANGO_VECTOR), ""));
        assert!(PasswordHasher::needs_rehash(DJANGO_VECTOR));
        let ours = h.hash("correct horse battery staple").unwrap();
        assert!(!PasswordHasher::needs_rehash(&ours));
    }

    #[test]
    fn unsupported_and_malformed_hashes_never_match() {
        let h = PasswordHasher::new(
            Argon2Cost {
                memory_kib: 64,
                iterations: 1,
            },
            1,
        );
        let good_tail = "$Fr3shSaltFr0mDjang0xyz$wDRO9MWnIuCJILMTsZsKS8Pea+6EzsgGBDXPHhU9mpI=";
        let over_cap = format!("pbkdf2_sha256${}{good_tail}", MAX_PBKDF2_ITERATIONS + 1);
        let bad = [
            "",
            "!",
            "!Yx3vq0J2kU9yS0FqP1ZbN4sWm8TcR6hLeD5gA7oB",
            "argon2$argon2id$v=19$m=102400,t=2,p=8$c29tZXNhbHQ$aGFzaGhhc2hoYXNo",
            "bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuuXyZ",
            "pbkdf2_sha1$1000$salt$aGFzaA==",
            "md5$salt$5f4dcc3b5aa765d61d8327deb882cf99",
            "pbkdf2_sha256$",
            "pbkdf2_sha256$1000",
            "pbkdf2_sha256$1000$salt",
            "pbkdf2_sha256$0$Fr3shSaltFr0mDjang0xyz$wDRO9MWnIuCJILMTsZsKS8Pea+6EzsgGBDXPHhU9mpI=",
            "pbkdf2_sha256$-5$Fr3shSaltFr0mDjang0xyz$wDRO9MWnIuCJILMTsZsKS8Pea+6EzsgGBDXPHhU9mpI=",
            "pbkdf2_sha256$+1000$Fr3shSaltFr0mDjang0xyz$wDRO9MWnIuCJILMTsZsKS8Pea+6EzsgGBDXPHhU9mpI=",
            "pbkdf2_sha256$99999999999999999999$s$wDRO9MWnIuCJILMTsZsKS8Pea+6EzsgGBDXPHhU9mpI=",
            "pbkdf2_sha256$1000$$wDRO9MWnIuCJILMTsZsKS8Pea+6EzsgGBDXPHhU9mpI=",
            "pbkdf2_sha256$1000$Fr3shSaltFr0mDjang0xyz$not base64!",
            "pbkdf2_sha256$1000$Fr3shSaltFr0mDjang0xyz$aGFzaA==",
            &over_cap,
        ];
        for stored in bad {
            assert_eq!(hash_kind(stored), HashKind::Unsupported, "{stored}");
            assert!(
                !h.verify(Some(stored), "correct horse battery staple"),
                "{stored}"
            );
            assert!(!h.verify(Some(stored), ""), "{stored}");
        }
    }
}
