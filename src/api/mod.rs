//! The endpoint handlers, grouped as API.md groups them. Each reads like its row of the
//! contract: parse the input, check who may do it, call the store, build the JSON.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod ctx;
pub mod events;
pub mod health;
pub mod invites;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod users;

use std::collections::HashSet;

/// Who counts as online: seen within the last five minutes, or holding an open event
/// stream. Built once per request so a list does not lock the hub once per user.
pub struct Presence {
    now: i64,
    streaming: HashSet<i64>,
}

impl Presence {
    pub fn new(app: &crate::api::ctx::App) -> Presence {
        Presence {
            now: crate::store::now_us(),
            streaming: app.hub.connected_users(),
        }
    }

    pub fn is_online(&self, user_id: i64, last_activity: i64) -> bool {
        const ONLINE_WINDOW_US: i64 = 5 * 60 * 1_000_000;
        self.now - last_activity < ONLINE_WINDOW_US || self.streaming.contains(&user_id)
    }
}
