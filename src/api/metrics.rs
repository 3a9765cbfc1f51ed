//! `GET /metrics`: who may scrape, and the figures read at that moment (the counters are
//! `ops::metrics`). It answers the loopback interface (a scraper on the same host) or an
//! admin session.

use crate::api::ctx::Ctx;
use crate::error::Error;
use crate::http::{Method, Request, Response};
use crate::ops::metrics::{database_bytes, Gauges};
use crate::store;
use std::net::IpAddr;

/// Who may scrape. A request is local when its TCP peer is a loopback address and it
/// carries no forwarding header: a reverse proxy on the same host also connects from
/// loopback, and what it forwards comes from anywhere. Anyone else needs an admin session.
pub fn is_local(peer: IpAddr, req: &Request) -> bool {
    peer.to_canonical().is_loopback()
        && ["x-forwarded-for", "x-real-ip", "forwarded"]
            .iter()
            .all(|h| req.header(h).is_none())
}

/// # `GET /metrics`
/// The Prometheus exposition. `403` unless local (see `is_local`) or an admin's session;
/// never `401`, which would only invite a scraper to retry with credentials it lacks.
pub fn scrape(ctx: &Ctx, req: &Request, peer: IpAddr) -> Response {
    if !matches!(req.method, Method::Get | Method::Head) {
        return Response::error(&Error::MethodNotAllowed(vec!["GET", "HEAD"]));
    }
    if !is_local(peer, req) {
        let admin = matches!(ctx.optional_user(req), Ok(Some(me)) if me.is_admin);
        if !admin {
            return Response::error(&Error::forbidden(
                "Metrics are served to the local host and to admins",
            ));
        }
    }
    let app = ctx.app;
    let users = match store::stats::counters(ctx.db) {
        Ok(c) => Some(c.users),
        Err(e) => {
            log::warn!("metrics: cannot read the counters: {e}");
            None
        }
    };
    let gauges = Gauges {
        event_streams: app.hub.open_streams(),
        database_bytes: database_bytes(&app.config.db_path),
        users,
        request_log_dropped: app.log.dropped(),
        request_log_throttled: app.log.throttled(),
    };
    Response::new(200)
        .with_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .with_header("Cache-Control", "no-store")
        .with_body(app.metrics.render(&gauges).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::PATH;

    #[test]
    fn local_means_loopback_and_not_forwarded() {
        let req = |headers: &[(&str, &str)]| Request {
            method: Method::Get,
            path: PATH.into(),
            query: Vec::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            client_ip: "127.0.0.1".parse().unwrap(),
        };
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(is_local(lo, &req(&[])));
        assert!(is_local("::1".parse().unwrap(), &req(&[])));
        assert!(is_local("::ffff:127.0.0.1".parse().unwrap(), &req(&[])));
        assert!(!is_local("192.0.2.7".parse().unwrap(), &req(&[])));
        assert!(!is_local(lo, &req(&[("x-forwarded-for", "203.0.113.5")])));
        assert!(!is_local(lo, &req(&[("x-real-ip", "203.0.113.5")])));
        assert!(!is_local(lo, &req(&[("forwarded", "for=203.0.113.5")])));
    }
}
