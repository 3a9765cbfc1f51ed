//! The one error type of the server. Every handler returns `Result<Response, Error>`;
//! this file is the only place that maps a failure to an HTTP status. A client sees a
//! short human message; internals (SQL text, paths, panics) go to the server log only.

use std::fmt;

#[derive(Debug, Clone)]
pub enum Error {
    /// 400: the request is malformed or a field is invalid.
    BadRequest(String),
    /// 401: no valid session, or bad credentials.
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    Forbidden(String),
    /// 404: the thing asked for does not exist (or is not yours).
    NotFound(String),
    /// 405: the path exists but not with this method; carries the allowed methods.
    MethodNotAllowed(Vec<&'static str>),
    /// 409: the request conflicts with the current state.
    Conflict(String),
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge(usize),
    /// 415: a body that is not JSON.
    UnsupportedMediaType,
    /// 429: throttled; carries the seconds to wait.
    TooManyRequests(u64),
    /// 503: the server cannot serve this now (disk full, database unusable, at capacity).
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the text is for the log only.
    Internal(String),
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge(_) => 413,
            Error::UnsupportedMediaType => 415,
            Error::TooManyRequests(_) => 429,
            Error::Unavailable(_) => 503,
            Error::Internal(_) => 500,
        }
    }

    /// The message shown to the client.
    pub fn user_message(&self) -> String {
        match self {
            Error::BadRequest(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Unavailable(m) => m.clone(),
            Error::MethodNotAllowed(_) => "Method not allowed".into(),
            Error::PayloadTooLarge(limit) => {
                format!("Request body too large (limit {limit} bytes)")
            }
            Error::UnsupportedMediaType => "Content-Type must be application/json".into(),
            Error::TooManyRequests(secs) => {
                format!("Too many attempts, try again in {secs} seconds")
            }
            Error::Internal(_) => "Internal server error".into(),
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Error::Forbidden(msg.into())
    }
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Error::Unauthorized(msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal(m) => write!(f, "internal error: {m}"),
            other => write!(f, "{} {}", other.status(), other.user_message()),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            // A full disk or a file-size limit: writes cannot proceed, reads still can.
            Some(ErrorCode::DiskFull) => {
                Error::Unavailable("The server is out of disk space; try again later".into())
            }
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                Error::Unavailable("The database is busy; try again".into())
            }
            // A write beyond RLIMIT_FSIZE (EFBIG) or another storage failure: the client
            // should retry later; the server itself is not broken.
            Some(ErrorCode::SystemIoFailure) => {
                log::error!("storage: {e}");
                Error::Unavailable(
                    "The server could not write to its storage; try again later".into(),
                )
            }
            _ => Error::Internal(format!("database: {e}")),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("json: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
