//! White Beat: a self-hosted chat server in one executable. This library holds everything;
//! `main.rs` is only the command line, so tests can start the real server in-process with
//! [`serve`].

pub mod access;
pub mod api;
pub mod app;
pub mod assets;
pub mod auth;
pub mod backup;
pub mod backup_schedule;
pub mod cli;
pub mod cli_accounts;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod import_django;
pub mod live;
pub mod lock;
pub mod metrics;
pub mod proxy;
pub mod rate_limit;
pub mod reqlog;
pub mod restore;
pub mod router;
pub mod server;
pub mod time;
pub mod writer;

pub use config::Config;
pub use server::{serve, ServerHandle};
