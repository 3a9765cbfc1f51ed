//! Running the server for others: backups (one, and on a schedule), restore, the lock that
//! keeps two servers off one database, the batched request log, metrics, and moving in
//! from the Django original.

pub mod backup;
pub mod backup_schedule;
pub mod import_django;
pub mod lock;
pub mod metrics;
pub mod reqlog;
pub mod restore;
