//! White Beat: a self-hosted chat server in one executable. This library holds everything;
//! `main.rs` is only the command line, so tests can start the real server in-process with
//! [`serve`].
//!
//! The folders are layers, and a layer uses only itself and the layers below it (the
//! `layering` test checks every `crate::` path):
//!
//! ```text
//! cli      the administrative commands
//! server   listener, worker pools, the request pipeline, the web UI files, access log
//! api      thin handlers: parse, call the rules and the store, shape JSON; the route table
//! ops      backups, restore, the lock, the request log, metrics, the Django import
//! live     the event hub and the Server-Sent Events streams
//! domain   the rules shared by the API and the command line: passwords, sessions, limits
//! store    all SQL: open, migrations, one file per table family, the single message writer
//! base     error, config, time, http (request/response types, routing, proxies)
//! ```

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod live;
pub mod ops;
pub mod server;
pub mod store;
pub mod time;

#[cfg(test)]
mod layering;

pub use config::Config;
pub use server::{serve, ServerHandle};
