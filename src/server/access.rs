//! The end of every request: its line on stderr (at info level, under the log target
//! `whitebeat::access`) and its sample in the metrics. Both happen when the response is
//! over, so a send answered after its group commit and an event stream that ran for an
//! hour are reported with their final status and their whole duration.
//!
//! The line is `METHOD PATH STATUS DURATION USER`, for example
//! `POST /api/login/ 200 12.3ms 5` (`-` when no one is logged in). The path is the raw one
//! without its query string: tokens and search terms never reach the logs.

use crate::http::Method;
use crate::ops::metrics::Metrics;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// The log target of request lines, so a filter such as `WHITEBEAT_LOG=whitebeat::access=off`
/// can silence them alone.
pub const TARGET: &str = "whitebeat::access";

/// Longest path written to a line; longer ones are cut.
const MAX_PATH: usize = 200;

/// A request in flight, as the access log and the metrics need it.
pub struct Access {
    metrics: Arc<Metrics>,
    started: Instant,
    method: Method,
    route: usize,
    /// Kept only when request lines are logged: with them off, nothing is formatted or
    /// copied.
    path: Option<Box<str>>,
    user_id: Option<i64>,
}

impl Access {
    /// `target` is the raw request target; only its path is kept.
    pub fn new(
        metrics: Arc<Metrics>,
        started: Instant,
        method: Method,
        route: usize,
        target: &str,
    ) -> Access {
        let path = log::log_enabled!(target: TARGET, log::Level::Info).then(|| loggable(target));
        Access {
            metrics,
            started,
            method,
            route,
            path,
            user_id: None,
        }
    }

    pub fn set_user(&mut self, user_id: Option<i64>) {
        self.user_id = user_id;
    }

    /// The response is over.
    pub fn finish(self, status: u16) {
        let took = self.started.elapsed();
        self.metrics.observe(self.route, self.method, status, took);
        if let Some(path) = self.path {
            log::info!(
                target: TARGET,
                "{} {path} {status} {:.1}ms {}",
                self.method.as_str(),
                took.as_secs_f64() * 1e3,
                User(self.user_id)
            );
        }
    }
}

struct User(Option<i64>);

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "{id}"),
            None => f.write_str("-"),
        }
    }
}

/// The path of a request target, without the query, cut to `MAX_PATH` characters, with
/// anything but printable ASCII escaped so a request cannot forge or garble log lines.
fn loggable(target: &str) -> Box<str> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len().min(MAX_PATH));
    for (i, c) in path.chars().enumerate() {
        if i == MAX_PATH {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() {
            out.push(c);
        } else if c == ' ' {
            out.push_str("%20");
        } else {
            out.extend(c.escape_default());
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    out.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lose_the_query_and_cannot_forge_lines() {
        assert_eq!(&*loggable("/api/events/?token=secret"), "/api/events/");
        assert_eq!(&*loggable("/api/users/?search=a%20b#x"), "/api/users/");
        assert_eq!(&*loggable("/a\nGET /b 200"), "/a\\nGET%20/b%20200");
        assert_eq!(&*loggable("/caf\u{e9}"), "/caf\\u{e9}");
        assert_eq!(&*loggable(""), "-");
        let long = format!("/{}", "x".repeat(500));
        assert_eq!(loggable(&long).chars().count(), MAX_PATH + 1);
    }
}
