//! The one route table: every API path with its methods and handlers. Paths match with or
//! without a trailing slash (`http::normalize`); a known path with the wrong method is `405`
//! with `Allow`; an unknown path under `/api/` is a JSON `404`.

use crate::api;
use crate::api::ctx::Ctx;
use crate::error::{Error, Result};
use crate::http::{Method, Request, Response};

pub type Handler = fn(&Ctx, &Request) -> Result<Response>;

pub struct Route {
    pub path: &'static str,
    pub methods: &'static [(Method, Handler)],
    /// The route may run Argon2 (tens of milliseconds of CPU and 19 MiB each), so it is
    /// served by a small pool of its own: a storm of logins cannot take every worker from
    /// chat.
    pub password: bool,
}

use Method::{Get, Post};

pub static ROUTES: &[Route] = &[
    Route {
        path: "/api/signup",
        methods: &[(Get, api::auth::signup_mode), (Post, api::auth::signup)],
        password: true,
    },
    Route {
        path: "/api/login",
        methods: &[(Post, api::auth::login)],
        password: true,
    },
    Route {
        path: "/api/logout",
        methods: &[(Post, api::auth::logout)],
        password: false,
    },
    Route {
        path: "/api/verify-admin",
        methods: &[(Post, api::auth::verify_admin)],
        password: false,
    },
    Route {
        path: "/api/make-admin",
        methods: &[(Post, api::auth::make_admin)],
        password: true,
    },
    Route {
        path: "/api/remove-admin",
        methods: &[(Post, api::auth::remove_admin)],
        password: true,
    },
    Route {
        path: "/api/users",
        methods: &[(Get, api::users::users)],
        password: false,
    },
    Route {
        path: "/api/conversations",
        methods: &[(Get, api::messages::conversations)],
        password: false,
    },
    Route {
        path: "/api/messages",
        methods: &[(Get, api::messages::messages)],
        password: false,
    },
    Route {
        path: "/api/send-message",
        methods: &[(Post, api::messages::send_message)],
        password: false,
    },
    Route {
        path: "/api/mark-as-read",
        methods: &[(Post, api::messages::mark_as_read)],
        password: false,
    },
    Route {
        path: "/api/admin/stats",
        methods: &[(Get, api::admin::stats)],
        password: false,
    },
    Route {
        path: "/api/admin/users",
        methods: &[(Get, api::accounts::list), (Post, api::accounts::create)],
        password: true,
    },
    Route {
        path: "/api/admin/deactivate",
        methods: &[(Post, api::accounts::deactivate)],
        password: false,
    },
    Route {
        path: "/api/admin/activate",
        methods: &[(Post, api::accounts::activate)],
        password: false,
    },
    Route {
        path: "/api/admin/reset-password",
        methods: &[(Post, api::accounts::reset_password)],
        password: true,
    },
    Route {
        path: "/api/admin/invites",
        methods: &[(Get, api::invites::list), (Post, api::invites::create)],
        password: false,
    },
    Route {
        path: "/api/admin/invites/revoke",
        methods: &[(Post, api::invites::revoke)],
        password: false,
    },
    Route {
        path: "/api/health",
        methods: &[(Get, api::health::health)],
        password: false,
    },
    Route {
        path: "/api/events",
        methods: &[(Get, api::events::events)],
        password: false,
    },
    Route {
        path: "/api/typing",
        methods: &[(Post, api::events::typing)],
        password: false,
    },
    Route {
        path: "/api/openapi.json",
        methods: &[(Get, api::openapi::openapi)],
        password: false,
    },
];

/// The position in `ROUTES` of a decoded path's route.
pub fn find_index(path: &str) -> Option<usize> {
    let path = crate::http::normalize(path);
    ROUTES.iter().position(|r| r.path == path)
}

pub fn find(path: &str) -> Option<&'static Route> {
    find_index(path).map(|i| &ROUTES[i])
}

pub fn allowed(route: &Route) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = route.methods.iter().map(|(m, _)| m.as_str()).collect();
    methods.push("OPTIONS");
    methods
}

/// Runs the handler of an API request's route (found once, by the server).
pub fn dispatch(ctx: &Ctx, req: &Request, route: Option<&Route>) -> Result<Response> {
    let route = route.ok_or_else(|| Error::not_found("Not found"))?;
    match route.methods.iter().find(|(m, _)| *m == req.method) {
        Some((_, handler)) => handler(ctx, req),
        None => Err(Error::MethodNotAllowed(allowed(route))),
    }
}
