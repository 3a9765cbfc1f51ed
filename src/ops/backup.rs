//! One backup, for `whitebeat backup FILE` and for each scheduled backup: an online copy
//! of the live database written to a scratch file beside the destination, made
//! self-contained, checked, synced, and only then given its final name. A crash or a full
//! disk therefore never leaves a partial backup under a name that looks finished.

use crate::config::SyncMode;
use crate::store::{self, backup::Summary};
use crossbeam_channel::{Receiver, TryRecvError};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A finished, checked backup.
#[derive(Debug, Clone)]
pub struct Report {
    pub path: PathBuf,
    pub bytes: u64,
    pub summary: Summary,
    pub took: Duration,
}

/// Tells a backup in progress to give up: set when every sender of the channel is dropped
/// (the server shutting down).
#[derive(Clone, Default)]
pub struct Cancel(Option<Receiver<()>>);

impl Cancel {
    pub fn on_disconnect(rx: Receiver<()>) -> Cancel {
        Cancel(Some(rx))
    }

    pub fn is_set(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|rx| rx.try_recv() == Err(TryRecvError::Disconnected))
    }
}

/// Backs the database at `db` up to the new file `dest`. Safe while a server writes to it.
pub fn backup_to(db: &Path, dest: &Path, cancel: &Cancel) -> Result<Report, String> {
    let started = Instant::now();
    let fail = |e: String| format!("backup to {} failed: {e}", dest.display());
    if fs::symlink_metadata(dest).is_ok() {
        return Err(exists(dest));
    }
    if !db.is_file() {
        return Err(format!("database {} does not exist", db.display()));
    }
    let (dir, name) = split(dest)?;
    let scratch = dir.join(format!(".{name}.partial-{}", std::process::id()));
    remove_scratch(&scratch);
    let result = write_checked(db, &scratch, cancel)
        .map_err(fail)
        .and_then(|summary| {
            place(&scratch, dest)?;
            Ok(summary)
        });
    remove_scratch(&scratch);
    let summary = result?;
    let bytes = fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(Report {
        path: dest.to_path_buf(),
        bytes,
        summary,
        took: started.elapsed(),
    })
}

fn exists(dest: &Path) -> String {
    format!("{} already exists; choose a new file", dest.display())
}

/// The destination's directory (which must exist) and file name.
fn split(dest: &Path) -> Result<(PathBuf, String), String> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} is not a file name", dest.display()))?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    Ok((dir, name.to_string()))
}

/// Copies, converts and checks into `scratch`, then syncs it to disk.
fn write_checked(db: &Path, scratch: &Path, cancel: &Cancel) -> Result<Summary, String> {
    // Only reads: the durability setting does not matter.
    let src = store::open(db, SyncMode::Normal)?;
    create_private(scratch)?;
    {
        let mut copy = store::backup::create_copy(scratch)?;
        store::backup::online_copy(&src, &mut copy, &|| cancel.is_set())?;
    }
    drop(src);
    let copy = store::backup::open_copy(scratch)?;
    // The check of a large copy takes a while: let a shutdown interrupt it too.
    let interrupt = cancel.clone();
    copy.progress_handler(100_000, Some(move || interrupt.is_set()));
    let checked =
        store::backup::make_self_contained(&copy).and_then(|()| store::backup::check(&copy));
    drop(copy);
    if cancel.is_set() {
        return Err("stopped: the server is shutting down".into());
    }
    let summary = checked.map_err(|e| format!("the copy failed its check: {e}"))?;
    File::open(scratch)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", scratch.display()))?;
    Ok(summary)
}

/// A backup holds every password hash and message: only its owner may read it. SQLite
/// gives its journal the same permissions. (An empty file is an empty database.)
fn create_private(path: &Path) -> Result<(), String> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Gives the synced scratch file its final name, never replacing an existing file: a hard
/// link fails if the name is taken, where a rename would silently replace it.
fn place(scratch: &Path, dest: &Path) -> Result<(), String> {
    match fs::hard_link(scratch, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(exists(dest)),
        // A file system without hard links: check, then rename (a small race, but only
        // with someone creating the same name at the same moment).
        Err(_) => {
            if fs::symlink_metadata(dest).is_ok() {
                return Err(exists(dest));
            }
            fs::rename(scratch, dest)
                .map_err(|e| format!("cannot move the backup to {}: {e}", dest.display()))?;
        }
    }
    sync_dir(dest);
    Ok(())
}

/// Makes a new name in a directory durable (the file's own data is synced already).
pub fn sync_dir(file: &Path) {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes a scratch database and whatever SQLite may have left beside it.
pub fn remove_scratch(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let p = crate::store::with_suffix(path, suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", p.display()),
        }
    }
}

/// "12.3 MiB" and the like, for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn cancel_is_set_when_the_sender_is_gone() {
        assert!(!Cancel::default().is_set());
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let cancel = Cancel::on_disconnect(rx);
        assert!(!cancel.is_set());
        drop(tx);
        assert!(cancel.is_set());
    }
}
