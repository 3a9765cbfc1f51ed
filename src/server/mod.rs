//! The HTTP server: a listener, a fixed pool of worker threads (each with its own database
//! connection), the per-request pipeline (parse, CORS, body limit, route, catch panics,
//! log), and graceful shutdown.

pub mod access;
pub mod assets;

use crate::api::ctx::{App, Ctx};
use crate::api::routes;
use crate::config::Config;
use crate::error::Error;
use crate::http::{Done, Method, Request, Response, Taken};
use crate::live::Hub;
use crate::ops::backup_schedule::BackupThread;
use crate::ops::lock::{self, DbLock, Holder};
use crate::ops::metrics::{self, Metrics};
use crate::ops::reqlog;
use crate::server::access::Access;
use crate::store::writer::{MessageWriter, OnStored};
use crate::store::{self, stats::LogEntry};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::Connection;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running server. Dropping it (or calling `shutdown`) stops it gracefully.
pub struct ServerHandle {
    addr: SocketAddr,
    app: Option<Arc<App>>,
    http: Option<Arc<tiny_http::Server>>,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    password_queue: Option<Sender<Incoming>>,
    password_workers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    backups: Option<BackupThread>,
    /// Released last, once nothing of this server uses the database any more.
    lock: Option<DbLock>,
}

/// Requests waiting for a password worker; beyond this, logins are refused with `503`.
const PASSWORD_QUEUE: usize = 256;

/// Locks and migrates the database, binds, and starts the workers. Returns once the server
/// accepts connections.
pub fn serve(config: Config) -> Result<ServerHandle, String> {
    // Before anything touches the database: a second server on it would break the
    // one-writer design, and a restore must not have it replaced underneath.
    let db_lock = lock::acquire(&config.db_path, Holder::Server)
        .map_err(|e| format!("cannot serve {}: {e}", config.db_path.display()))?;
    if let Some(b) = &config.backups {
        if !b.dir.is_dir() {
            return Err(format!(
                "--backup-dir {}: no such directory",
                b.dir.display()
            ));
        }
    }
    let mut conn = store::open(&config.db_path, config.sync)?;
    store::migrate(&mut conn)?;
    drop(conn);

    let listener = bind(config.bind)?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let http = tiny_http::Server::from_listener_with_limits(listener, None, limits(&config))
        .map_err(|e| format!("cannot start the HTTP server: {e}"))?;
    let http = Arc::new(http);

    let hub = Arc::new(Hub::new(config.max_streams, config.max_streams_per_user));
    let metrics = Arc::new(Metrics::new(routes::ROUTES.iter().map(|r| r.path)));
    let (log, log_thread) = reqlog::start(&config, hub.clone())?;
    // Every committed message goes to the live hub, shown as the API shows it, and is
    // counted.
    let on_stored: OnStored = {
        let (hub, metrics) = (hub.clone(), metrics.clone());
        Box::new(move |row| {
            hub.publish_message(row, crate::api::events::render_message);
            metrics.messages_sent(1);
        })
    };
    let (writer, writer_threads) = MessageWriter::start(&config, on_stored)?;
    let threads = config.threads.max(1);
    log_proxy_settings(&config);
    // Password hashing gets half the cores at most, on threads of its own.
    let password_threads = (num_cpus::get() / 2).max(1);
    let app = Arc::new(App::new(
        config,
        log,
        hub,
        writer,
        metrics,
        password_threads,
    ));
    let stopping = Arc::new(AtomicBool::new(false));

    let (password_queue, password_rx) = bounded::<Incoming>(PASSWORD_QUEUE);
    let mut password_workers = Vec::with_capacity(password_threads);
    for i in 0..password_threads {
        let conn = store::open(&app.config.db_path, app.config.sync)?;
        let (app, rx) = (app.clone(), password_rx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("password-{i}"))
            .spawn(move || password_worker(&app, &conn, &rx))
            .map_err(|e| format!("cannot start password thread: {e}"))?;
        password_workers.push(handle);
    }

    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        let conn = store::open(&app.config.db_path, app.config.sync)?;
        let (app, http, stopping) = (app.clone(), http.clone(), stopping.clone());
        let queue = password_queue.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(&app, &conn, &http, &stopping, &queue))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        workers.push(handle);
    }
    let backups = match app.config.backups.clone() {
        Some(schedule) => Some(BackupThread::start(app.config.db_path.clone(), schedule)?),
        None => None,
    };
    log::info!("listening on http://{addr} with {threads} workers");
    Ok(ServerHandle {
        addr,
        app: Some(app),
        http: Some(http),
        stopping,
        workers,
        password_queue: Some(password_queue),
        password_workers,
        // Joined in this order: the writer's pending answers still log requests.
        background: writer_threads.into_iter().chain([log_thread]).collect(),
        backups,
        lock: Some(db_lock),
    })
}

/// What a deployment behind a proxy most often gets wrong, said once at start-up.
fn log_proxy_settings(config: &Config) {
    match &config.public_url {
        Some(url) => log::info!(
            "public URL {url} (session cookie {}; its origin may call the API)",
            if config.secure_cookie() {
                "Secure"
            } else {
                "not Secure"
            }
        ),
        None if config.cookie_secure => log::info!("session cookie Secure"),
        None => {}
    }
    if !config.trusted_proxies.is_empty() {
        log::info!(
            "client addresses from X-Forwarded-For of trusted proxies {}",
            config.trusted_proxies.describe()
        );
    }
}

/// The accept-side protections (see vendor/tiny_http/PATCHES.md): idle and slow
/// connections are closed (a silent new one sooner), bodies within the limit are read
/// before a worker sees the request, responses are written by each connection's own thread
/// within a deadline, and open connections are capped in all and per client address.
fn limits(config: &Config) -> tiny_http::Limits {
    let proxies = config.trusted_proxies.clone();
    tiny_http::Limits {
        read_timeout: Some(config.request_timeout),
        first_byte_timeout: Some(config.first_byte_timeout.min(config.request_timeout)),
        write_timeout: Some(config.response_timeout),
        response_timeout: config.response_timeout,
        request_timeout: config.request_timeout,
        max_connections: config.max_connections,
        max_connections_per_address: unlimited_if_zero(config.connections_per_address),
        exempt_from_per_address: Some(tiny_http::AddressFilter(Arc::new(move |ip| {
            proxies.contains(ip)
        }))),
        max_request_line: 16 * 1024,
        max_headers: 100,
        max_header_bytes: 64 * 1024,
        prebuffer_body: config.body_limit,
        max_unsent_bytes: config.max_unsent_bytes,
    }
}

/// The settings where `0` means "no limit".
pub fn unlimited_if_zero(n: usize) -> usize {
    if n == 0 {
        usize::MAX
    } else {
        n
    }
}

/// Every open connection and event stream is a file descriptor; the usual soft limit of
/// 1,024 is below what `--max-connections` allows, so raise it to the hard limit.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("cannot create a socket: {e}"))?;
    // Lets a restarted server bind at once although old connections linger in TIME_WAIT.
    socket
        .set_reuse_address(true)
        .map_err(|e| format!("cannot set SO_REUSEADDR: {e}"))?;
    socket
        .bind(&addr.into())
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    socket
        .listen(1024)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(socket.into())
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("app lives until shutdown")
    }

    /// Stops accepting, lets in-flight requests finish, flushes the request log and closes
    /// the database.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // A backup in progress is abandoned at its next step; joined below.
        if let Some(b) = &mut self.backups {
            b.signal_stop();
        }
        // Each unblock wakes one waiting worker; keep waking until all have left.
        if let Some(http) = &self.http {
            while self.workers.iter().any(|w| !w.is_finished()) {
                for _ in 0..self.workers.len() {
                    http.unblock();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // The last handle: closes the listener and answers what is still queued with 503.
        self.http.take();
        // The workers' queue handles are gone with them; dropping the last one lets the
        // password workers finish what is queued and exit.
        self.password_queue.take();
        for w in self.password_workers.drain(..) {
            let _ = w.join();
        }
        if let Some(app) = self.app.take() {
            app.hub.close_all();
            drop(app); // closes the log and message channels: their threads flush and exit
        }
        for t in self.background.drain(..) {
            let _ = t.join();
        }
        if let Some(b) = self.backups.take() {
            b.join();
        }
        self.lock.take();
        log::info!("server stopped");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request as a worker first sees it: its target decoded once, its route found once.
struct Incoming {
    rq: tiny_http::Request,
    target: std::result::Result<(String, Vec<(String, String)>), Error>,
    route: Option<usize>,
}

impl Incoming {
    fn new(rq: tiny_http::Request) -> Incoming {
        let target = Request::parse_target(rq.url());
        let route = target
            .as_ref()
            .ok()
            .and_then(|(path, _)| routes::find_index(path));
        Incoming { rq, target, route }
    }

    fn uses_password_pool(&self) -> bool {
        self.route.is_some_and(|i| routes::ROUTES[i].password)
    }
}

fn worker(
    app: &App,
    conn: &Connection,
    http: &tiny_http::Server,
    stopping: &AtomicBool,
    password_queue: &Sender<Incoming>,
) {
    while !stopping.load(Ordering::SeqCst) {
        match http.recv() {
            Ok(rq) => {
                let incoming = Incoming::new(rq);
                if !incoming.uses_password_pool() {
                    handle(app, conn, incoming, None);
                    continue;
                }
                match password_queue.try_send(incoming) {
                    Ok(()) => {}
                    Err(TrySendError::Full(incoming))
                    | Err(TrySendError::Disconnected(incoming)) => {
                        let busy = Error::Unavailable(
                            "Too many logins in progress; try again in a moment".into(),
                        );
                        handle(app, conn, incoming, Some(busy));
                    }
                }
            }
            Err(e) => {
                if !stopping.load(Ordering::SeqCst) {
                    log::debug!("recv: {e}");
                }
            }
        }
    }
}

/// Serves the requests that hash passwords, so they never hold a chat worker.
fn password_worker(app: &App, conn: &Connection, queue: &Receiver<Incoming>) {
    while let Ok(incoming) = queue.recv() {
        handle(app, conn, incoming, None);
    }
}

fn header_pairs(rq: &tiny_http::Request) -> Vec<(String, String)> {
    rq.headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect()
}

/// The TCP peer's address (a Unix-socket or test peer without one counts as loopback).
fn peer_ip(peer: Option<&SocketAddr>) -> IpAddr {
    peer.map(|a| a.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The client's address: the peer's, or what a trusted proxy forwarded (see `proxy.rs`).
fn client_ip(config: &Config, peer: IpAddr, headers: &[(String, String)]) -> IpAddr {
    let forwarded = headers
        .iter()
        .filter(|(k, _)| k == "x-forwarded-for")
        .map(|(_, v)| v.as_str());
    config.trusted_proxies.client_ip(peer, forwarded)
}

fn read_body(rq: &mut tiny_http::Request, limit: usize) -> Result<Vec<u8>, Error> {
    if rq.body_length().is_some_and(|len| len > limit) {
        return Err(Error::PayloadTooLarge(limit));
    }
    let mut body = Vec::new();
    rq.as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| Error::bad_request("Could not read the request body"))?;
    if body.len() > limit {
        return Err(Error::PayloadTooLarge(limit));
    }
    Ok(body)
}

/// CORS headers for an allowed `Origin` (never `*`: credentials are allowed).
pub fn cors_headers(config: &Config, req: &Request) -> Vec<(String, String)> {
    match req.header("origin") {
        Some(origin) if config.allows_origin(origin) => vec![
            ("Access-Control-Allow-Origin".into(), origin.to_string()),
            ("Access-Control-Allow-Credentials".into(), "true".into()),
            ("Vary".into(), "Origin".into()),
        ],
        _ => Vec::new(),
    }
}

fn preflight(config: &Config, req: &Request, route: Option<&routes::Route>) -> Response {
    let Some(route) = route else {
        return Response::error(&Error::not_found("Not found"));
    };
    let allowed = routes::allowed(route).join(", ");
    let mut resp = Response::new(204).with_header("Allow", &allowed);
    let cors = cors_headers(config, req);
    if !cors.is_empty() {
        resp.headers.extend(cors);
        resp = resp
            .with_header("Access-Control-Allow-Methods", &allowed)
            .with_header(
                "Access-Control-Allow-Headers",
                "Content-Type, Authorization, Last-Event-ID",
            )
            .with_header("Access-Control-Max-Age", "600");
    }
    resp
}

/// The whole life of one request. `refused` answers an API request with that error instead
/// of running its handler (a full password pool), through the same headers and logs.
fn handle(app: &App, conn: &Connection, incoming: Incoming, refused: Option<Error>) {
    let Incoming {
        mut rq,
        target: parsed,
        route: route_index,
    } = incoming;
    let route = route_index.map(|i| &routes::ROUTES[i]);
    let started = Instant::now();
    let method = Method::parse(rq.method().as_str());
    let headers = header_pairs(&rq);
    let peer = peer_ip(rq.remote_addr());
    let ip = client_ip(&app.config, peer, &headers);
    let target = rq.url().to_string();

    let is_api = match &parsed {
        Ok((path, _)) => path == "/api" || path.starts_with("/api/"),
        Err(_) => target.starts_with("/api"),
    };
    let is_metrics =
        matches!(&parsed, Ok((path, _)) if crate::http::normalize(path) == metrics::PATH);
    let slot = match &parsed {
        Ok(_) if is_api => route_index.unwrap_or(app.metrics.other()),
        Ok(_) if is_metrics => app.metrics.metrics(),
        Ok(_) => app.metrics.static_files(),
        Err(_) => app.metrics.other(),
    };
    let mut access = Access::new(app.metrics.clone(), started, method, slot, &target);
    let mut req = Request {
        method,
        path: String::new(),
        query: Vec::new(),
        headers,
        body: Vec::new(),
        client_ip: ip,
    };
    let ctx = Ctx::new(app, conn);
    let mut resp = match parsed {
        Err(e) => Response::error(&e),
        Ok((path, query)) => {
            req.path = path;
            req.query = query;
            if is_metrics {
                // Before the UI files, which would answer any other path with the app.
                crate::api::metrics::scrape(&ctx, &req, peer)
            } else if !is_api {
                let if_none_match = req.header("if-none-match");
                assets::serve(
                    method,
                    &req.path,
                    if_none_match,
                    app.config.ui_dir.as_deref(),
                )
            } else if let Some(e) = refused {
                Response::error(&e)
            } else if method == Method::Options {
                preflight(&app.config, &req, route)
            } else {
                match read_body(&mut rq, app.config.body_limit) {
                    Err(e) => Response::error(&e),
                    Ok(body) => {
                        req.body = body;
                        run_handler(&ctx, &req, route)
                    }
                }
            }
        }
    };
    resp.headers
        .push(("X-Content-Type-Options".into(), "nosniff".into()));
    let mut entry = None;
    let who = ctx.identity();
    access.set_user(who.as_ref().map(|i| i.user_id));
    if is_api {
        // A preflight carries them already (once: a second Access-Control-Allow-Origin
        // makes browsers refuse the response).
        if method != Method::Options {
            resp.headers.extend(cors_headers(&app.config, &req));
        }
        if resp.header("Cache-Control").is_none() {
            resp.headers
                .push(("Cache-Control".into(), "no-store".into()));
        }
        entry = Some(LogEntry {
            created_at: store::now_us(),
            method: method.as_str().to_string(),
            endpoint: log_label(route).to_string(),
            status: resp.status,
            duration_us: 0,
            user_id: who.as_ref().map(|i| i.user_id),
            username: who.map(|i| i.username),
            ip_address: ip.to_string(),
            user_agent: truncate(req.header("user-agent").unwrap_or(""), 300),
        });
    }
    // The log entry is completed when the status is final: at once for an ordinary
    // response, later for one written after a group commit. The stderr line and the
    // metrics wait for the end of the response (an event stream's is when it closes).
    let log = app.log.clone();
    let done = Done::new(
        move |status: u16| {
            if let Some(mut e) = entry {
                e.status = status;
                e.duration_us = started.elapsed().as_micros() as i64;
                log.send(e);
            }
        },
        move |status: u16| access.finish(status),
    );
    match resp.takeover.take() {
        Some(takeover) => takeover(Taken::new(rq, std::mem::take(&mut resp.headers), done)),
        None => {
            // Logged before it is sent (see `Taken::respond`); the stderr line and the
            // metrics, which carry the duration, once it is out.
            let mut done = done;
            done.status(resp.status);
            crate::http::write_response(rq, resp);
            done.end();
        }
    }
}

/// The endpoint a request-log row names: the route's own path, never what the client typed
/// (a query could carry a password, and every unknown path its own row), so unknown paths
/// share one label.
fn log_label(route: Option<&routes::Route>) -> &'static str {
    route.map_or(UNKNOWN_ROUTE, |r| r.path)
}

/// The request-log label of every path that is no route.
pub const UNKNOWN_ROUTE: &str = "(unknown)";

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Runs the handler; a panic becomes a `500` and the worker lives on.
fn run_handler(ctx: &Ctx, req: &Request, route: Option<&routes::Route>) -> Response {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| routes::dispatch(ctx, req, route)));
    let result = outcome.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::internal(format!("handler panicked: {what}")))
    });
    match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.status() >= 500 {
                log::error!("{} {}: {e}", req.method.as_str(), req.path);
            }
            Response::error(&e)
        }
    }
}
