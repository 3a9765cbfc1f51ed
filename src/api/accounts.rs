//! Account administration for admins: every account (active or not), creating accounts
//! (the only way in on a closed server), deactivating and reactivating, and password resets.

use crate::api::auth::register;
use crate::api::ctx::Ctx;
use crate::domain::auth;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store::{self, users::AdminChange, users::User};
use crate::time::rfc3339;
use serde::Deserialize;
use serde_json::json;

/// # `GET /api/admin/users/`
/// Admins only. Every account by username, with `q` (part of a username or email),
/// `limit` (1–200, default 50) and `offset`; `total` counts all matches.
pub fn list(ctx: &Ctx, req: &Request) -> Result<Response> {
    ctx.require_admin(req)?;
    let search = req.query("q").map(str::trim).filter(|q| !q.is_empty());
    if search.is_some_and(|q| q.len() > 150) {
        return Err(Error::bad_request("q must be at most 150 characters"));
    }
    let limit = req.query_int("limit")?.unwrap_or(50);
    let offset = req.query_int("offset")?.unwrap_or(0);
    if !(1..=200).contains(&limit) || offset < 0 {
        return Err(Error::bad_request(
            "limit must be 1 to 200 and offset at least 0",
        ));
    }
    let (rows, total) = store::users::accounts(ctx.db, search, limit, offset)?;
    let users: Vec<_> = rows
        .into_iter()
        .map(|u| {
            json!({
                "id": u.id,
                "username": u.username,
                "email": u.email,
                "is_active": u.is_active,
                "is_admin": u.is_admin,
                "date_joined": rfc3339(u.date_joined),
                "last_activity": rfc3339(u.last_activity),
                "message_count": u.message_count,
            })
        })
        .collect();
    Response::json(200, &json!({"users": users, "total": total}))
}

#[derive(Deserialize)]
struct CreateBody {
    username: Option<String>,
    password: Option<String>,
    email: Option<String>,
    #[serde(default)]
    is_admin: bool,
}

/// # `POST /api/admin/users/`
/// Admins only. Creates an account whatever the sign-up mode; `is_admin` puts it in the
/// Admin group. Same rules and errors as sign-up.
pub fn create(ctx: &Ctx, req: &Request) -> Result<Response> {
    ctx.require_admin(req)?;
    let body: CreateBody = req.json()?;
    let (Some(username), Some(password)) = (body.username, body.password) else {
        return Err(Error::bad_request("Username and password are required"));
    };
    let (user_id, username, email) = register(
        ctx,
        &username,
        &password,
        body.email,
        body.is_admin,
        None,
        None,
    )?;
    Response::json(
        201,
        &json!({
            "success": true,
            "user_id": user_id,
            "username": username,
            "email": email,
            "is_admin": body.is_admin,
            "message": format!("Account {username} created"),
        }),
    )
}

#[derive(Deserialize)]
struct TargetBody {
    username: Option<String>,
    /// For a password reset: the new password; without it one is generated.
    password: Option<String>,
}

fn target(ctx: &Ctx, body: &TargetBody) -> Result<User> {
    let name = body
        .username
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::bad_request("username is required"))?;
    store::users::find_by_username(ctx.db, name)?.ok_or_else(|| Error::not_found("User not found"))
}

/// # `POST /api/admin/deactivate/`
/// Admins only. The user can no longer log in; their sessions and event streams end at
/// once; their messages stay. You cannot deactivate yourself, nor the last active admin.
pub fn deactivate(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_admin(req)?;
    let body: TargetBody = req.json()?;
    let user = target(ctx, &body)?;
    if user.id == me.user_id {
        return Err(Error::Conflict(
            "You cannot deactivate your own account".into(),
        ));
    }
    if store::users::set_active(ctx.db, user.id, false)? == AdminChange::LastAdmin {
        return Err(Error::Conflict(
            "Cannot deactivate the last admin; make another user admin first".into(),
        ));
    }
    ctx.app.hub.close_user(user.id);
    active_response(&user.username, false)
}

/// # `POST /api/admin/activate/`
/// Admins only. A deactivated user may log in again.
pub fn activate(ctx: &Ctx, req: &Request) -> Result<Response> {
    ctx.require_admin(req)?;
    let body: TargetBody = req.json()?;
    let user = target(ctx, &body)?;
    store::users::set_active(ctx.db, user.id, true)?;
    active_response(&user.username, true)
}

fn active_response(username: &str, active: bool) -> Result<Response> {
    let message = if active {
        format!("{username} can log in again")
    } else {
        format!("{username} is deactivated and logged out everywhere")
    };
    Response::json(
        200,
        &json!({"success": true, "username": username, "is_active": active, "message": message}),
    )
}

/// # `POST /api/admin/reset-password/`
/// Admins only. Sets `password`, or a generated one returned once in the answer, and ends
/// the user's sessions and event streams.
pub fn reset_password(ctx: &Ctx, req: &Request) -> Result<Response> {
    ctx.require_admin(req)?;
    let body: TargetBody = req.json()?;
    let user = target(ctx, &body)?;
    let (password, generated) = match body.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            auth::validate_password(&p)?;
            (p, false)
        }
        None => (auth::new_temporary_password()?, true),
    };
    let hash = ctx.app.hasher.hash(&password)?;
    store::users::set_password(ctx.db, user.id, &hash)?;
    ctx.app.hub.close_user(user.id);
    let mut out = json!({
        "success": true,
        "username": user.username,
        "message": format!("Password of {} changed; their sessions were ended", user.username),
    });
    if generated {
        out["password"] = json!(password);
    }
    Response::json(200, &out)
}
