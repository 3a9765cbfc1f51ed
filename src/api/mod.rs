//! The endpoint handlers, grouped as API.md groups them. Each reads like its row of the
//! contract: parse the input, check who may do it, call the store, build the JSON.

pub mod admin;
pub mod auth;
pub mod health;
pub mod messages;
pub mod openapi;
pub mod users;

/// Whether a user counts as online: seen within the last five minutes, or holding an open
/// event stream.
pub fn is_online(app: &crate::app::App, user_id: i64, last_activity: i64, now: i64) -> bool {
    const ONLINE_WINDOW_US: i64 = 5 * 60 * 1_000_000;
    now - last_activity < ONLINE_WINDOW_US || app.hub.is_connected(user_id)
}
