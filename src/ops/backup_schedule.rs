//! Backups taken by the server itself (`serve --backup-dir`): a background thread takes one
//! every `--backup-every` hours into the directory, named by its UTC start time
//! (`whitebeat-20261124T181500Z.sqlite3`, so names sort by age), and deletes the oldest of
//! its own beyond `--backup-keep`. A failure (a full disk, a missing directory) is logged and
//! tried again at the next turn; it never stops the server.

use crate::config::BackupSchedule;
use crate::ops::backup::{self, human_bytes, Cancel};
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PREFIX: &str = "whitebeat-";
const SUFFIX: &str = ".sqlite3";

/// The running schedule. `stop` ends it promptly, abandoning a backup in progress.
pub struct BackupThread {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackupThread {
    pub fn start(db: PathBuf, schedule: BackupSchedule) -> Result<BackupThread, String> {
        let (stop, stopped) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("backups".into())
            .spawn(move || {
                let cancel = Cancel::on_disconnect(stopped.clone());
                let mut next = Instant::now() + first_wait(&schedule);
                loop {
                    let wait = next.saturating_duration_since(Instant::now());
                    if stopped.recv_timeout(wait) != Err(RecvTimeoutError::Timeout) {
                        return;
                    }
                    // Start to start, so the times do not drift by the backups' durations.
                    next = Instant::now() + schedule.every;
                    let turn = AssertUnwindSafe(|| take_one(&db, &schedule, &cancel));
                    if std::panic::catch_unwind(turn).is_err() {
                        log::error!("scheduled backup panicked; trying again at the next turn");
                    }
                }
            })
            .map_err(|e| format!("cannot start the backup thread: {e}"))?;
        Ok(BackupThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Tells the thread to stop; `join` waits for it.
    pub fn signal_stop(&mut self) {
        self.stop.take();
    }

    pub fn join(mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The first backup is due one interval after the newest one in the directory (at once if
/// there is none), so a server restarted more often than the interval still takes them.
fn first_wait(schedule: &BackupSchedule) -> Duration {
    let newest = own_backups(&schedule.dir)
        .last()
        .and_then(|(_, name)| taken_at(name));
    let Some(newest) = newest else {
        return Duration::ZERO;
    };
    let age = (chrono::Utc::now().naive_utc() - newest)
        .to_std()
        .unwrap_or(Duration::ZERO);
    schedule.every.saturating_sub(age)
}

fn take_one(db: &Path, schedule: &BackupSchedule, cancel: &Cancel) {
    let name = format!("{PREFIX}{}{SUFFIX}", crate::time::file_stamp_now());
    match backup::backup_to(db, &schedule.dir.join(name), cancel) {
        Ok(r) => {
            log::info!(
                "backup written to {} ({}, {} users, {} messages) in {:.2} s",
                r.path.display(),
                human_bytes(r.bytes),
                r.summary.users,
                r.summary.messages,
                r.took.as_secs_f64()
            );
            prune(&schedule.dir, schedule.keep);
        }
        Err(_) if cancel.is_set() => log::info!("scheduled backup abandoned: shutting down"),
        Err(e) => log::error!("scheduled backup failed: {e}"),
    }
}

/// Deletes the oldest of this schedule's backups beyond `keep`; other files are not touched.
fn prune(dir: &Path, keep: usize) {
    let own = own_backups(dir);
    let excess = own.len().saturating_sub(keep);
    for (path, _) in own.into_iter().take(excess) {
        match std::fs::remove_file(&path) {
            Ok(()) => log::info!("old backup {} deleted", path.display()),
            Err(e) => log::error!("cannot delete old backup {}: {e}", path.display()),
        }
    }
}

/// The directory's files named like this schedule's backups, oldest first.
fn own_backups(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut own: Vec<(PathBuf, String)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            taken_at(&name).map(|_| (e.path(), name))
        })
        .collect();
    own.sort_by(|a, b| a.1.cmp(&b.1));
    own
}

/// The time in a backup's name, if the name is exactly one of ours.
fn taken_at(name: &str) -> Option<chrono::NaiveDateTime> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    // Fixed width, so that sorting names sorts times.
    if stamp.len() != "20261124T181500Z".len() {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(stamp, crate::time::FILE_STAMP).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_the_exact_pattern_are_ours() {
        assert!(taken_at("whitebeat-20261124T181500Z.sqlite3").is_some());
        for other in [
            "whitebeat-20261124T181500Z.sqlite3-journal",
            ".whitebeat-20261124T181500Z.sqlite3.partial-12",
            "whitebeat-2026112T181500Z.sqlite3",
            "whitebeat-20261124T181500Z.sqlite3.bak",
            "whitebeat-latest.sqlite3",
            "whitebeat.sqlite3",
            "whitebeat-20261324T181500Z.sqlite3",
        ] {
            assert!(taken_at(other).is_none(), "{other}");
        }
    }

    #[test]
    fn prune_keeps_the_newest_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "whitebeat-20260101T000000Z.sqlite3",
            "whitebeat-20260102T000000Z.sqlite3",
            "whitebeat-20260103T000000Z.sqlite3",
            "notes.txt",
            "whitebeat-manual.sqlite3",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        prune(dir.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "whitebeat-20260102T000000Z.sqlite3",
                "whitebeat-20260103T000000Z.sqlite3",
                "whitebeat-manual.sqlite3",
            ]
        );
    }
}
