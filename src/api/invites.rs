//! Invite codes for invite-only sign-up, managed by admins from the admin page (the
//! command line has the same through `whitebeat invite`).

use crate::api::ctx::Ctx;
use crate::domain::auth;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store::{self, invites::Invite, invites::NewInvite};
use crate::time::{rfc3339, DAY_US};
use serde::Deserialize;
use serde_json::{json, Value};

/// An invite as the API shows it.
pub fn invite_json(i: &Invite, now: i64) -> Value {
    json!({
        "id": i.id,
        "code": i.code,
        "note": i.note,
        "max_uses": i.max_uses,
        "uses": i.uses,
        "expires_at": i.expires_at.map(rfc3339),
        "created_by": i.created_by,
        "created_at": rfc3339(i.created_at),
        "revoked": i.revoked_at.is_some(),
        "state": i.state(now),
    })
}

/// # `GET /api/admin/invites/`
/// Admins only. Every invite, newest first, and the server's sign-up mode.
pub fn list(ctx: &Ctx, req: &Request) -> Result<Response> {
    ctx.require_admin(req)?;
    let now = store::now_us();
    let invites: Vec<_> = store::invites::list(ctx.db)?
        .iter()
        .map(|i| invite_json(i, now))
        .collect();
    Response::json(
        200,
        &json!({"invites": invites, "signup": ctx.app.config.signup.as_str()}),
    )
}

#[derive(Deserialize)]
struct CreateBody {
    /// Sign-ups allowed; `null` or 0 for any number. Default 1.
    #[serde(default = "one_use")]
    max_uses: Option<i64>,
    /// Days until it expires; `null` or 0 for never. Default 7.
    #[serde(default = "one_week")]
    expires_in_days: Option<f64>,
    #[serde(default)]
    note: String,
}

fn one_use() -> Option<i64> {
    Some(1)
}

fn one_week() -> Option<f64> {
    Some(7.0)
}

/// Validated limits of a new invite: (max uses, expiry time), `None` for no limit.
pub fn limits(
    max_uses: Option<i64>,
    expires_in_days: Option<f64>,
    now: i64,
) -> Result<(Option<i64>, Option<i64>)> {
    let max_uses = match max_uses {
        None | Some(0) => None,
        Some(n) if (1..=1_000_000).contains(&n) => Some(n),
        Some(_) => return Err(Error::bad_request("max_uses must be 0 to 1000000")),
    };
    let expires_at = match expires_in_days {
        None | Some(0.0) => None,
        Some(d) if d.is_finite() && d > 0.0 && d <= 3650.0 => {
            Some(now + (d * DAY_US as f64) as i64)
        }
        Some(_) => {
            return Err(Error::bad_request(
                "expires_in_days must be more than 0 and at most 3650 (0 for never)",
            ))
        }
    };
    Ok((max_uses, expires_at))
}

/// # `POST /api/admin/invites/`
/// Admins only. A new invite code; by default good for one sign-up within seven days.
pub fn create(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_admin(req)?;
    let body: CreateBody = req.json()?;
    let now = store::now_us();
    let (max_uses, expires_at) = limits(body.max_uses, body.expires_in_days, now)?;
    let note = body.note.trim();
    if note.chars().count() > 200 {
        return Err(Error::bad_request("note must be at most 200 characters"));
    }
    let code = auth::new_invite_code()?;
    let invite = store::invites::create(
        ctx.db,
        &NewInvite {
            code: &code,
            note,
            max_uses,
            expires_at,
            created_by: Some(me.user_id),
            now,
        },
    )?;
    Response::json(201, &invite_json(&invite, now))
}

#[derive(Deserialize)]
struct RevokeBody {
    id: Option<i64>,
    code: Option<String>,
}

/// # `POST /api/admin/invites/revoke/`
/// Admins only. Revokes an invite by `id` or `code`; accounts made with it stay.
pub fn revoke(ctx: &Ctx, req: &Request) -> Result<Response> {
    ctx.require_admin(req)?;
    let body: RevokeBody = req.json()?;
    let key = match (body.id, body.code) {
        (Some(id), _) => id.to_string(),
        (None, Some(code)) if !code.trim().is_empty() => code.trim().to_ascii_lowercase(),
        _ => return Err(Error::bad_request("id or code is required")),
    };
    if !store::invites::revoke(ctx.db, &key, store::now_us())? {
        return Err(Error::not_found("Invite not found"));
    }
    Response::json(200, &json!({"success": true, "message": "Invite revoked"}))
}
