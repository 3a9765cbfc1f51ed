//! The integration tests: one crate (one binary to build and link, not one per area), one
//! module per area, and the support they share in `support/`: the in-process server and its
//! HTTP client, the raw-socket client, the event-stream reader, the built binary's runner
//! and the WebDriver client.
//!
//! Every test of every area runs in this one process, in parallel. What is global to a
//! process is therefore shared: nothing here changes the umask, an rlimit or an environment
//! variable of the test process (children get theirs between fork and exec, or through
//! `Command::env`); the file-descriptor limit is raised once, as the server does; and the
//! server's write queue (`whitebeat::store::write_tx`) is one per process, so a test that seeds
//! a database through it commits in batches rather than holding it for seconds.
//!
//! Run one area with `cargo test --test it crash::`, one test by (part of) its name.

mod support;

mod accounts;
mod accounts_cli;
mod api_admin;
mod api_auth;
mod api_chat;
mod authz_sweep;
mod backup;
mod browser;
mod cli;
mod crash;
mod events;
mod hardening_accounts;
mod hardening_events;
mod hardening_transport;
mod hostile;
mod import_django;
mod openapi;
mod ops;
mod request_log;
mod smoke;
