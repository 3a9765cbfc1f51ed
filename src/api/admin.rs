//! The admin dashboard's data.

use crate::api::ctx::Ctx;
use crate::error::Result;
use crate::http::{Request, Response};
use crate::store;
use crate::time::{day, rfc3339, DAY_US};
use serde_json::json;

/// # `GET /api/admin/stats/`
/// Admins only. Totals come from trigger-kept counters and the request log's roll-ups, so
/// the cost does not grow with the history.
pub fn stats(ctx: &Ctx, req: &Request) -> Result<Response> {
    ctx.require_admin(req)?;
    let now = store::now_us();
    let counters = store::stats::counters(ctx.db)?;
    let active_sessions = store::sessions::active_users_since(ctx.db, now - DAY_US, now)?;
    let recent_users: Vec<_> = store::users::recent(ctx.db, 10)?
        .into_iter()
        .map(|u| {
            let full = format!("{} {}", u.first_name, u.last_name)
                .trim()
                .to_string();
            json!({
                "id": u.id,
                "name": if full.is_empty() { u.username.clone() } else { full },
                "email": u.email,
                "username": u.username,
                "status": if u.is_active { "Active" } else { "Inactive" },
                "joined": day(u.date_joined),
                "total_messages": u.message_count,
                "is_admin": u.is_admin,
                "groups": crate::api::auth::groups(u.is_admin),
            })
        })
        .collect();
    let recent_logs: Vec<_> = store::stats::recent_logs(ctx.db, 20)?
        .into_iter()
        .map(|(id, e)| {
            json!({
                "id": id,
                "endpoint": e.endpoint,
                "method": e.method,
                "status": e.status,
                "time": format!("{}ms", (e.duration_us + 500) / 1000),
                "user": e.username.unwrap_or_else(|| "Anonymous".into()),
                "created_at": rfc3339(e.created_at),
                "ip_address": e.ip_address,
            })
        })
        .collect();
    let revenue = (counters.messages as f64 * 0.002 * 100.0).round() / 100.0;
    Response::json(
        200,
        &json!({
            "total_users": counters.users,
            "api_calls_today": store::stats::api_calls_on(ctx.db, now)?,
            "active_sessions": active_sessions,
            "total_messages": counters.messages,
            "revenue": revenue,
            "user_growth": store::stats::user_growth(ctx.db, now, 6)?,
            "api_usage": store::stats::api_usage(ctx.db, now, 6)?,
            "recent_users": recent_users,
            "recent_logs": recent_logs,
        }),
    )
}
