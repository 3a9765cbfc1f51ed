//! The health check, in the original's shape.

use crate::api::ctx::Ctx;
use crate::error::Result;
use crate::http::{Request, Response};
use crate::store;
use serde_json::json;

pub const SERVICE_NAME: &str = "White Beat Backend - User Chat";

/// # `GET /api/health/`
/// `200` with the service's counters, or `503` with `status: "unhealthy"` when the database
/// cannot be read. Cheap: the counters are kept by triggers.
pub fn health(ctx: &Ctx, _req: &Request) -> Result<Response> {
    let features = json!({
        "user_to_user_chat": true,
        "group_based_admin": true,
        "signup": true,
        "authentication": true,
        "live_events": true,
    });
    match store::stats::counters(ctx.db) {
        Ok(c) => Response::json(
            200,
            &json!({
                "status": "healthy",
                "service": SERVICE_NAME,
                "version": env!("CARGO_PKG_VERSION"),
                "database_connected": true,
                "admin_group_exists": true,
                "features": features,
                "stats": {
                    "total_users": c.users,
                    "total_messages": c.messages,
                    "total_conversations": c.conversations,
                    "admin_users": c.admins,
                },
            }),
        ),
        Err(e) => {
            log::error!("health: database unreadable: {e}");
            Response::json(
                503,
                &json!({
                    "status": "unhealthy",
                    "service": SERVICE_NAME,
                    "database_connected": false,
                    "admin_group_exists": false,
                    "features": features,
                    "error": "The database cannot be read",
                }),
            )
        }
    }
}
