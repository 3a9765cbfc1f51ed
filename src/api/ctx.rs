//! The shared state of a running server (`App`, one per process) and the per-request
//! context handlers receive (`Ctx`: the app, this worker's connection, who is asking).

use crate::config::Config;
use crate::domain::auth::{self, Identity, LoginThrottle, PasswordHasher};
use crate::domain::rate_limit::RateLimit;
use crate::error::{Error, Result};
use crate::http::Request;
use crate::live::Hub;
use crate::ops::metrics::Metrics;
use crate::ops::reqlog::LogSender;
use crate::store::writer::MessageWriter;
use rusqlite::Connection;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct App {
    pub config: Config,
    pub hasher: PasswordHasher,
    pub throttle: LoginThrottle,
    /// Sign-ups per client address (`--signups-per-hour`).
    pub signup_limit: RateLimit<IpAddr>,
    /// Sends per user (`--sends-per-minute`).
    pub send_limit: RateLimit<i64>,
    pub log: LogSender,
    pub hub: Arc<Hub>,
    pub writer: MessageWriter,
    pub metrics: Arc<Metrics>,
}

impl App {
    pub fn new(
        config: Config,
        log: LogSender,
        hub: Arc<Hub>,
        writer: MessageWriter,
        metrics: Arc<Metrics>,
        password_threads: usize,
    ) -> App {
        App {
            // As many hashes at once as there are password workers.
            hasher: PasswordHasher::new(config.argon2, password_threads),
            throttle: LoginThrottle::new(config.login_attempts, config.login_window),
            signup_limit: RateLimit::new(
                config.signups_per_hour,
                Duration::from_secs(3600),
                "sign-ups from one address",
            ),
            send_limit: RateLimit::new(
                config.sends_per_minute,
                Duration::from_secs(60),
                "messages from one user",
            ),
            config,
            log,
            hub,
            writer,
            metrics,
        }
    }
}

/// What a handler gets besides the request.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub db: &'a Connection,
    /// Set once the request is authenticated, for the request log.
    identity: RefCell<Option<Option<Identity>>>,
}

impl<'a> Ctx<'a> {
    pub fn new(app: &'a App, db: &'a Connection) -> Ctx<'a> {
        Ctx {
            app,
            db,
            identity: RefCell::new(None),
        }
    }

    /// The session's user, if the request carries a valid session (looked up once).
    pub fn optional_user(&self, req: &Request) -> Result<Option<Identity>> {
        if let Some(known) = self.identity.borrow().as_ref() {
            return Ok(known.clone());
        }
        let token = req
            .bearer_token()
            .or_else(|| req.cookie(auth::SESSION_COOKIE));
        let found = auth::authenticate(self.db, token, self.app.config.session_idle)?;
        *self.identity.borrow_mut() = Some(found.clone());
        Ok(found)
    }

    /// `401` unless the request carries a valid session.
    pub fn require_user(&self, req: &Request) -> Result<Identity> {
        self.optional_user(req)?
            .ok_or_else(|| Error::unauthorized("Authentication required"))
    }

    /// `401` without a session, `403` for a user outside the Admin group.
    pub fn require_admin(&self, req: &Request) -> Result<Identity> {
        let me = self.require_user(req)?;
        if !me.is_admin {
            return Err(Error::forbidden("Admin access required"));
        }
        Ok(me)
    }

    /// Remembers who a request acted for when it authenticated by password (login,
    /// make-admin with credentials), for the request log.
    pub fn set_identity(&self, identity: Identity) {
        *self.identity.borrow_mut() = Some(Some(identity));
    }

    pub fn identity(&self) -> Option<Identity> {
        self.identity.borrow().clone().flatten()
    }
}

/// `403` when a request names someone other than its session's user in an identity field
/// (`username`, `sender`): the original trusted those fields, we check them.
pub fn check_identity_field(me: &Identity, claimed: Option<&str>) -> Result<()> {
    match claimed {
        Some(name) if !name.is_empty() && name != me.username => Err(Error::forbidden(
            "You can only act as the user you are logged in as",
        )),
        _ => Ok(()),
    }
}
