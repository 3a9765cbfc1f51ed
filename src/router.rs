//! The one route table: every API path with its methods and handlers. Paths match with or
//! without a trailing slash; a known path with the wrong method is `405` with `Allow`; an
//! unknown path under `/api/` is a JSON `404`.

use crate::api;
use crate::app::Ctx;
use crate::error::{Error, Result};
use crate::http::{Method, Request, Response};
use crate::live;

pub type Handler = fn(&Ctx, &Request) -> Result<Response>;

pub struct Route {
    pub path: &'static str,
    pub methods: &'static [(Method, Handler)],
}

use Method::{Get, Post};

pub static ROUTES: &[Route] = &[
    Route {
        path: "/api/signup",
        methods: &[(Get, api::auth::signup_mode), (Post, api::auth::signup)],
    },
    Route {
        path: "/api/login",
        methods: &[(Post, api::auth::login)],
    },
    Route {
        path: "/api/logout",
        methods: &[(Post, api::auth::logout)],
    },
    Route {
        path: "/api/verify-admin",
        methods: &[(Post, api::auth::verify_admin)],
    },
    Route {
        path: "/api/make-admin",
        methods: &[(Post, api::auth::make_admin)],
    },
    Route {
        path: "/api/remove-admin",
        methods: &[(Post, api::auth::remove_admin)],
    },
    Route {
        path: "/api/users",
        methods: &[(Get, api::users::users)],
    },
    Route {
        path: "/api/conversations",
        methods: &[(Get, api::messages::conversations)],
    },
    Route {
        path: "/api/messages",
        methods: &[(Get, api::messages::messages)],
    },
    Route {
        path: "/api/send-message",
        methods: &[(Post, api::messages::send_message)],
    },
    Route {
        path: "/api/mark-as-read",
        methods: &[(Post, api::messages::mark_as_read)],
    },
    Route {
        path: "/api/admin/stats",
        methods: &[(Get, api::admin::stats)],
    },
    Route {
        path: "/api/admin/users",
        methods: &[(Get, api::accounts::list), (Post, api::accounts::create)],
    },
    Route {
        path: "/api/admin/deactivate",
        methods: &[(Post, api::accounts::deactivate)],
    },
    Route {
        path: "/api/admin/activate",
        methods: &[(Post, api::accounts::activate)],
    },
    Route {
        path: "/api/admin/reset-password",
        methods: &[(Post, api::accounts::reset_password)],
    },
    Route {
        path: "/api/admin/invites",
        methods: &[(Get, api::invites::list), (Post, api::invites::create)],
    },
    Route {
        path: "/api/admin/invites/revoke",
        methods: &[(Post, api::invites::revoke)],
    },
    Route {
        path: "/api/health",
        methods: &[(Get, api::health::health)],
    },
    Route {
        path: "/api/events",
        methods: &[(Get, live::events)],
    },
    Route {
        path: "/api/typing",
        methods: &[(Post, live::typing)],
    },
    Route {
        path: "/api/openapi.json",
        methods: &[(Get, api::openapi::openapi)],
    },
];

/// Routes that may run Argon2 (tens of milliseconds of CPU and 19 MiB each). They are served
/// by a small pool of their own so a storm of logins cannot take every worker from chat.
const PASSWORD_ROUTES: &[&str] = &[
    "/api/login",
    "/api/signup",
    "/api/make-admin",
    "/api/remove-admin",
    "/api/admin/users",
    "/api/admin/reset-password",
];

/// Whether a request target (path and query) goes to the password pool.
pub fn uses_password_pool(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or(target);
    PASSWORD_ROUTES.contains(&normalize(path))
}

/// `/api/login/` and `/api/login` are the same route.
pub fn normalize(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}

pub fn find(path: &str) -> Option<&'static Route> {
    let path = normalize(path);
    ROUTES.iter().find(|r| r.path == path)
}

pub fn allowed(route: &Route) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = route.methods.iter().map(|(m, _)| m.as_str()).collect();
    methods.push("OPTIONS");
    methods
}

/// Runs the handler for an API request.
pub fn dispatch(ctx: &Ctx, req: &Request) -> Result<Response> {
    let route = find(&req.path).ok_or_else(|| Error::not_found("Not found"))?;
    match route.methods.iter().find(|(m, _)| *m == req.method) {
        Some((_, handler)) => handler(ctx, req),
        None => Err(Error::MethodNotAllowed(allowed(route))),
    }
}
