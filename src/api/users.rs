//! The user directory.

use crate::app::{check_identity_field, Ctx};
use crate::db;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::time::rfc3339;
use serde_json::json;

pub const DEFAULT_USERS_LIMIT: i64 = 1000;

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
    let rows = db::users::list(ctx.db, me.user_id, search, limit, offset)?;
    let now = db::now_us();
    let users: Vec<_> = rows
        .iter()
        .map(|u| {
            json!({
                "id": u.id,
                "username": u.username,
                "email": u.email,
                "status": u.status,
                "is_online": super::is_online(ctx.app, u.id, u.last_activity, now),
                "last_activity": rfc3339(u.last_activity),
            })
        })
        .collect();
    Response::json(
        200,
        &json!({"success": true, "count": users.len(), "users": users}),
    )
}
