//! The small request/response types handlers see, so no handler touches tiny_http: parsing
//! of paths, queries, cookies and bearer tokens, JSON bodies (Content-Type and size checked
//! first), and the JSON/error responses with their standard headers.

pub mod proxy;

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// A request as handlers see it: decoded path, query pairs, lower-cased header names, and
/// the body already read under the size limit.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Percent-decoded path, without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub client_ip: IpAddr,
}

impl Request {
    /// Splits and decodes a request target such as `/api/users/?search=a%20b`.
    pub fn parse_target(target: &str) -> Result<(String, Vec<(String, String)>)> {
        let (raw_path, raw_query) = match target.split_once('?') {
            Some((p, q)) => (p, q),
            None => (target, ""),
        };
        let path = percent_encoding::percent_decode_str(raw_path)
            .decode_utf8()
            .map_err(|_| Error::bad_request("The path is not valid UTF-8"))?;
        if path.contains('\0') {
            return Err(Error::bad_request("The path contains a NUL byte"));
        }
        let mut query = Vec::new();
        for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
            if k.contains('\0')
                || v.contains('\0')
                || k.contains('\u{FFFD}')
                || v.contains('\u{FFFD}')
            {
                return Err(Error::bad_request(
                    "The query string is not valid UTF-8 text",
                ));
            }
            query.push((k.into_owned(), v.into_owned()));
        }
        Ok((path.into_owned(), query))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter; an empty value counts as absent.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// An integer query parameter, `400` when it is not one.
    pub fn query_int(&self, name: &str) -> Result<Option<i64>> {
        match self.query(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Error::bad_request(format!("`{name}` must be an integer"))),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    }

    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// Parses the body as a JSON object into `T`. `415` when the body is not declared as
    /// JSON, `400` when it is malformed, not an object, or a field has the wrong type.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if !self.body.is_empty() && !self.is_json() {
            return Err(Error::UnsupportedMediaType);
        }
        let text = std::str::from_utf8(&self.body)
            .map_err(|_| Error::bad_request("The body is not valid UTF-8"))?;
        if text.trim().is_empty() {
            return Err(Error::bad_request("A JSON object body is required"));
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_request(format!("Malformed JSON: {e}")))?;
        if !value.is_object() {
            return Err(Error::bad_request("The body must be a JSON object"));
        }
        serde_json::from_value(value).map_err(|e| Error::bad_request(format!("Invalid field: {e}")))
    }

    /// Like `json`, but an absent body gives `T::default()` (for endpoints whose fields are all
    /// optional).
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(T::default());
        }
        self.json()
    }

    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .map(|ct| {
                let mime = ct.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false)
    }
}

/// A response before it is written: status, headers and a body held in memory, or a
/// stream that takes over the connection.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Set for responses written later or over time (event streams, sends answered after
    /// their group commit): the server hands the raw connection to this function and the
    /// worker moves on at once.
    pub takeover: Option<Takeover>,
}

pub type Takeover = Box<dyn FnOnce(Taken) + Send>;

/// A request whose response comes later or over time, handed over by the server: answer it
/// once with `respond`, or take its socket for a stream with `into_stream`.
pub struct Taken {
    conn: tiny_http::Request,
    /// Headers the server adds to every response of this request (CORS, `nosniff`, ...).
    pub headers: Vec<(String, String)>,
    /// Reports the outcome: the final status once it is known, and the end of the response.
    pub done: Done,
}

/// A connection taken over for an event stream: its holder writes, on a thread of its own.
pub struct Stream {
    /// The raw response stream: the holder writes the status line, headers and body.
    pub writer: Box<dyn std::io::Write + Send>,
    /// Headers the server adds to every response of this request.
    pub headers: Vec<(String, String)>,
    pub done: Done,
    /// The socket's descriptor, to notice a client that has gone (see `peer_gone`); valid
    /// while `writer` lives.
    pub peer_fd: Option<i32>,
}

impl Taken {
    pub(crate) fn new(
        conn: tiny_http::Request,
        headers: Vec<(String, String)>,
        done: Done,
    ) -> Taken {
        Taken {
            conn,
            headers,
            done,
        }
    }

    /// Answers the request. The response is only handed to the connection's own thread,
    /// which writes it: this never blocks on the client, so the thread calling it (the one
    /// answering every send after its commit) cannot be held by a slow reader.
    pub fn respond(self, resp: Response) {
        let mut resp = resp;
        resp.headers.extend(self.headers);
        // The request log gets the entry before the client gets the answer, so a request the
        // client makes next is never logged ahead of this one.
        let mut done = self.done;
        done.status(resp.status);
        write_response(self.conn, resp);
        done.end();
    }

    /// Takes the socket for a response written over time; the connection serves no
    /// further requests.
    pub fn into_stream(self) -> Stream {
        let peer_fd = self.conn.peer_fd();
        Stream {
            writer: self.conn.into_writer(),
            headers: self.headers,
            done: self.done,
            peer_fd,
        }
    }
}

/// Hands a whole response to tiny_http, which serializes it for the connection's own thread
/// to write (see vendor/tiny_http/PATCHES.md).
pub(crate) fn write_response(rq: tiny_http::Request, resp: Response) {
    // The length is always known: never switch to chunked encoding for large bodies.
    let mut out = tiny_http::Response::from_data(resp.body)
        .with_status_code(resp.status)
        .with_chunked_threshold(usize::MAX);
    for (name, value) in &resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(h);
        }
    }
    if let Err(e) = rq.respond(out) {
        log::debug!("could not serialize a response: {e}");
    }
}

/// Whether the peer of a taken-over connection has closed or reset it. Read from the
/// socket's TCP state: the server itself has shut down reading on that socket, so a peek
/// would always see end-of-file, but the state leaves ESTABLISHED only when the peer sends
/// its FIN (CLOSE_WAIT) or a reset (CLOSE).
#[cfg(target_os = "linux")]
pub fn peer_gone(fd: i32) -> bool {
    // SAFETY: `fd` is the open socket of a connection whose writer the caller holds; `info`
    // and `len` describe a writable buffer of the size passed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    const TCP_ESTABLISHED: u8 = 1;
    rc == 0 && info.tcpi_state != TCP_ESTABLISHED
}

/// Elsewhere a gone client is noticed when a heartbeat write fails.
#[cfg(not(target_os = "linux"))]
pub fn peer_gone(_fd: i32) -> bool {
    false
}

/// How a taken-over response reports its outcome: `status` as soon as the final status is
/// known (it completes the request-log entry), `end` when the response is over (its line on
/// stderr and its metrics, with the whole duration). For a send both come together
/// (`finish`); an event stream knows its status at once and ends when it closes. Dropping
/// it ends it too, so a stream thread that panics or never starts is still reported (as a
/// `500` if it had no status yet).
pub struct Done {
    on_status: Option<Box<dyn FnOnce(u16) + Send>>,
    on_end: Option<Box<dyn FnOnce(u16) + Send>>,
    status: u16,
}

impl Done {
    pub fn new(
        on_status: impl FnOnce(u16) + Send + 'static,
        on_end: impl FnOnce(u16) + Send + 'static,
    ) -> Done {
        Done {
            on_status: Some(Box::new(on_status)),
            on_end: Some(Box::new(on_end)),
            status: 500,
        }
    }

    pub fn status(&mut self, status: u16) {
        self.status = status;
        if let Some(f) = self.on_status.take() {
            f(status);
        }
    }

    /// The response is over.
    pub fn end(self) {
        drop(self);
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(f) = self.on_status.take() {
            f(self.status);
        }
        if let Some(f) = self.on_end.take() {
            f(self.status);
        }
    }
}

/// The status line and headers, up to the blank line, of a response written by hand on a
/// taken-over connection.
pub fn response_head<'a>(status: u16, headers: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// The reason phrase of the statuses this server writes by hand.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            takeover: None,
        }
    }

    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<Response> {
        let body = serde_json::to_vec(value)?;
        Ok(Response::new(status)
            .with_header("Content-Type", "application/json")
            .with_body(body))
    }

    pub fn error(err: &Error) -> Response {
        let body = serde_json::json!({ "error": err.user_message() });
        let mut resp = Response::new(err.status())
            .with_header("Content-Type", "application/json")
            .with_body(body.to_string().into_bytes());
        match err {
            Error::MethodNotAllowed(allowed) => {
                resp = resp.with_header("Allow", &allowed.join(", "));
            }
            Error::TooManyRequests(secs) => {
                resp = resp.with_header("Retry-After", &secs.to_string());
            }
            Error::Unavailable(_) => {
                resp = resp.with_header("Retry-After", "5");
            }
            _ => {}
        }
        resp
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `/api/login/` and `/api/login` are the same route.
pub fn normalize(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}
