//! The user directory.

use crate::api::ctx::{check_identity_field, Ctx};
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store;
use crate::time::rfc3339;
use serde::Serialize;

pub const DEFAULT_USERS_LIMIT: i64 = 1000;

#[derive(Serialize)]
struct UserOut<'a> {
    id: i64,
    username: &'a str,
    email: &'a str,
    status: &'a str,
    is_online: bool,
    last_activity: String,
}

#[derive(Serialize)]
struct UsersPage<'a> {
    success: bool,
    count: usize,
    users: Vec<UserOut<'a>>,
}

/// # `GET /api/users/?search=&limit=&offset=`
/// Everyone but you, by username, with status and presence. `search` is a username prefix.
pub fn users(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    check_identity_field(&me, req.query("username"))?;
    let limit = req.query_int("limit")?.unwrap_or(DEFAULT_USERS_LIMIT);
    if !(1..=DEFAULT_USERS_LIMIT).contains(&limit) {
        return Err(Error::bad_request(format!(
            "`limit` must be between 1 and {DEFAULT_USERS_LIMIT}"
        )));
    }
    let offset = req.query_int("offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(Error::bad_request("`offset` must not be negative"));
    }
    let search = req.query("search").map(str::trim).filter(|s| !s.is_empty());
    let rows = store::users::list(ctx.db, me.user_id, search, limit, offset)?;
    let presence = super::Presence::new(ctx.app);
    let users: Vec<UserOut> = rows
        .iter()
        .map(|u| UserOut {
            id: u.id,
            username: &u.username,
            email: &u.email,
            status: &u.status,
            is_online: presence.is_online(u.id, u.last_activity),
            last_activity: rfc3339(u.last_activity),
        })
        .collect();
    Response::json(
        200,
        &UsersPage {
            success: true,
            count: users.len(),
            users,
        },
    )
}
