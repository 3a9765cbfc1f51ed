//! The rules shared by the API and the command line, with no HTTP types: passwords and
//! their hashing, session tokens, the login throttle, what a valid account looks like, and
//! the per-client rate limits.

pub mod auth;
pub mod rate_limit;
