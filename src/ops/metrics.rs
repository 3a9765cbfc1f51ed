//! `GET /metrics` in the Prometheus text format (0.0.4) and the counters behind it.
//!
//! Every label set is known in advance (route table × method × status), so the hot-path
//! counters are a fixed table of atomics: recording a request is three relaxed adds, with
//! no lock, no hashing and no allocation. A client crate such as `prometheus-client` would
//! find each label set in a locked map per request, and the text format is a few lines of
//! `write!`, so it is written here by hand.
//!
//! The endpoint itself (who may scrape, the gauges read at that moment) is
//! `api::metrics`.

use crate::http::Method;
use std::fmt::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where `/metrics` is served (outside `/api`, where scrapers look for it).
pub const PATH: &str = "/metrics";

/// In the order of `Method`'s variants (checked by a test), so `method as usize` indexes it.
const METHODS: [Method; 8] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Patch,
    Method::Delete,
    Method::Options,
    Method::Other,
];

/// The statuses this server answers; anything else is counted as `other`.
const STATUSES: [u16; 19] = [
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 409, 413, 415, 416, 429, 500, 503,
];
const STATUS_SLOTS: usize = STATUSES.len() + 1;

fn status_slot(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len())
}

/// Upper bounds of the latency buckets, in microseconds (1 ms to 10 s); a last bucket
/// holds the rest (`+Inf`).
const BUCKETS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
const BUCKET_SLOTS: usize = BUCKETS_US.len() + 1;

pub struct Metrics {
    /// The label of each route slot: the API routes in table order, then `other` (unknown
    /// paths), `static` (every UI file) and `/metrics`, so the label set stays bounded.
    routes: Vec<&'static str>,
    /// Requests by route × method × status.
    requests: Box<[AtomicU64]>,
    /// Requests by route × latency bucket (not cumulative; summed when rendered, which
    /// also gives the count).
    buckets: Box<[AtomicU64]>,
    /// Total latency by route, in microseconds.
    latency_us: Box<[AtomicU64]>,
    messages_sent: AtomicU64,
    started_at: SystemTime,
    started: Instant,
}

fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Metrics {
    /// Counters for these API routes (their paths, in route-table order; a request's route
    /// slot is its index) and the three slots after them.
    pub fn new(api_routes: impl IntoIterator<Item = &'static str>) -> Metrics {
        let mut routes: Vec<&'static str> = api_routes.into_iter().collect();
        routes.extend(["other", "static", PATH]);
        let slots = routes.len();
        Metrics {
            routes,
            requests: zeros(slots * METHODS.len() * STATUS_SLOTS),
            buckets: zeros(slots * BUCKET_SLOTS),
            latency_us: zeros(slots),
            messages_sent: AtomicU64::new(0),
            started_at: SystemTime::now(),
            started: Instant::now(),
        }
    }

    /// The slot of a path that is no route.
    pub fn other(&self) -> usize {
        self.routes.len() - 3
    }

    /// The slot of every UI file.
    pub fn static_files(&self) -> usize {
        self.routes.len() - 2
    }

    /// The slot of `/metrics` itself.
    pub fn metrics(&self) -> usize {
        self.routes.len() - 1
    }

    fn route_label(&self, slot: usize) -> &'static str {
        self.routes[slot]
    }

    /// Records one finished request.
    pub fn observe(&self, route: usize, method: Method, status: u16, took: Duration) {
        // A slot out of range (never made by the server) is counted as `other`.
        let route = if route < self.routes.len() {
            route
        } else {
            self.other()
        };
        let i = (route * METHODS.len() + method as usize) * STATUS_SLOTS + status_slot(status);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        let bucket = BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[route * BUCKET_SLOTS + bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_us[route].fetch_add(us, Ordering::Relaxed);
    }

    /// Messages committed by the writer.
    pub fn messages_sent(&self, n: u64) {
        self.messages_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// The whole exposition, with the figures read at scrape time.
    pub fn render(&self, now: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            );
        };
        counter(
            &mut out,
            "whitebeat_messages_sent_total",
            "Messages committed to the database since start.",
            self.messages_sent.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "whitebeat_event_streams_open",
            "Open event streams.",
            now.event_streams as f64,
        );
        if let Some(bytes) = now.database_bytes {
            gauge(
                &mut out,
                "whitebeat_database_size_bytes",
                "Size of the database file and its write-ahead log.",
                bytes as f64,
            );
        }
        if let Some(users) = now.users {
            gauge(&mut out, "whitebeat_users", "Accounts.", users as f64);
        }
        gauge(
            &mut out,
            "whitebeat_sqlite_memory_bytes",
            "Memory SQLite holds (page caches, statements), bounded by the cache sizes.",
            sqlite_memory_bytes() as f64,
        );
        counter(
            &mut out,
            "whitebeat_request_log_dropped_total",
            "Request-log entries dropped because the log writer was behind.",
            now.request_log_dropped,
        );
        counter(
            &mut out,
            "whitebeat_request_log_throttled_total",
            "Request-log entries not stored because their client was over its per-minute bound.",
            now.request_log_throttled,
        );
        let start = self
            .started_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        gauge(
            &mut out,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            start.as_secs() as f64,
        );
        gauge(
            &mut out,
            "whitebeat_uptime_seconds",
            "Seconds since the server started.",
            self.started.elapsed().as_secs_f64().floor(),
        );
        let _ = write!(
            out,
            "# HELP whitebeat_build_info The running version.\n\
             # TYPE whitebeat_build_info gauge\n\
             whitebeat_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        out
    }

    fn render_requests(&self, out: &mut String) {
        out.push_str(
            "# HELP whitebeat_http_requests_total HTTP requests answered, by route, method \
             and status.\n# TYPE whitebeat_http_requests_total counter\n",
        );
        for route in 0..self.routes.len() {
            for (m, method) in METHODS.iter().enumerate() {
                for s in 0..STATUS_SLOTS {
                    let i = (route * METHODS.len() + m) * STATUS_SLOTS + s;
                    let n = self.requests[i].load(Ordering::Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let status = match STATUSES.get(s) {
                        Some(code) => code.to_string(),
                        None => "other".into(),
                    };
                    let _ = writeln!(
                        out,
                        "whitebeat_http_requests_total{{route=\"{}\",method=\"{}\",\
                         status=\"{status}\"}} {n}",
                        self.route_label(route),
                        method.as_str()
                    );
                }
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        const NAME: &str = "whitebeat_http_request_duration_seconds";
        let _ = write!(
            out,
            "# HELP {NAME} Time from reading a request to the end of its response, by \
             route.\n# TYPE {NAME} histogram\n"
        );
        for route in 0..self.routes.len() {
            let counts: Vec<u64> = (0..BUCKET_SLOTS)
                .map(|b| self.buckets[route * BUCKET_SLOTS + b].load(Ordering::Relaxed))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let label = self.route_label(route);
            let mut cumulative = 0;
            for (b, n) in counts.iter().enumerate() {
                cumulative += n;
                let le = match BUCKETS_US.get(b) {
                    Some(&us) => (us as f64 / 1e6).to_string(),
                    None => "+Inf".into(),
                };
                let _ = writeln!(
                    out,
                    "{NAME}_bucket{{route=\"{label}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = self.latency_us[route].load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{NAME}_sum{{route=\"{label}\"}} {sum}");
            let _ = writeln!(out, "{NAME}_count{{route=\"{label}\"}} {total}");
        }
    }
}

/// Figures read at scrape time rather than counted.
#[derive(Debug, Default)]
pub struct Gauges {
    pub event_streams: usize,
    /// `None` when the file cannot be read (the line is left out, not reported as 0).
    pub database_bytes: Option<u64>,
    pub users: Option<i64>,
    pub request_log_dropped: u64,
    pub request_log_throttled: u64,
}

/// The database file plus its write-ahead log, which holds recent commits until a
/// checkpoint copies them into the file.
pub fn database_bytes(path: &Path) -> Option<u64> {
    let main = std::fs::metadata(path).ok()?.len();
    let wal = std::fs::metadata(crate::store::with_suffix(path, "-wal")).map_or(0, |m| m.len());
    Some(main + wal)
}

/// SQLite's own count of the memory it has allocated, for every connection of the
/// process: most of it is page caches, which fill up to their configured size under load
/// and then stay there, so growth here is not a leak.
pub fn sqlite_memory_bytes() -> i64 {
    // SAFETY: a read of SQLite's global memory statistics; no arguments, no state.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_in_variant_order() {
        for (i, m) in METHODS.iter().enumerate() {
            assert_eq!(*m as usize, i, "{m:?}");
        }
    }

    #[test]
    fn routes_fold_into_a_bounded_set() {
        let m = Metrics::new(["/api/signup", "/api/login"]);
        assert_eq!(m.route_label(1), "/api/login");
        assert_eq!(m.route_label(m.other()), "other");
        assert_eq!(m.route_label(m.static_files()), "static");
        assert_eq!(m.route_label(m.metrics()), "/metrics");
        // Out of range counts as `other`.
        m.observe(99, Method::Get, 200, Duration::ZERO);
        assert!(m
            .render(&Gauges::default())
            .contains(r#"route="other",method="GET",status="200"} 1"#));
    }

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::new(["/api/signup", "/api/login"]);
        let login = 1;
        m.observe(login, Method::Post, 200, Duration::from_micros(500));
        m.observe(login, Method::Post, 200, Duration::from_millis(30));
        m.observe(login, Method::Post, 418, Duration::from_secs(60));
        m.messages_sent(3);
        let text = m.render(&Gauges {
            event_streams: 2,
            database_bytes: Some(4096),
            users: Some(7),
            request_log_dropped: 0,
            request_log_throttled: 5,
        });
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        has(r#"whitebeat_http_requests_total{route="/api/login",method="POST",status="200"} 2"#);
        has("whitebeat_request_log_throttled_total 5");
        has(r#"whitebeat_http_requests_total{route="/api/login",method="POST",status="other"} 1"#);
        let b = "whitebeat_http_request_duration_seconds";
        has(&format!(r#"{b}_bucket{{route="/api/login",le="0.001"}} 1"#));
        has(&format!(r#"{b}_bucket{{route="/api/login",le="0.025"}} 1"#));
        has(&format!(r#"{b}_bucket{{route="/api/login",le="0.05"}} 2"#));
        has(&format!(r#"{b}_bucket{{route="/api/login",le="10"}} 2"#));
        has(&format!(r#"{b}_bucket{{route="/api/login",le="+Inf"}} 3"#));
        has(&format!(r#"{b}_sum{{route="/api/login"}} 60.0305"#));
        has(&format!(r#"{b}_count{{route="/api/login"}} 3"#));
        has("whitebeat_messages_sent_total 3");
        has("whitebeat_event_streams_open 2");
        has("whitebeat_database_size_bytes 4096");
        has("whitebeat_users 7");
        has(&format!(
            r#"whitebeat_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ));
        // Routes without traffic are left out.
        assert!(!text.contains("/api/users"), "{text}");
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
