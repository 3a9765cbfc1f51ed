//! `whitebeat restore FILE`: replaces the database with a backup. It holds the server lock
//! throughout (so it refuses to run under a server, and no server starts half-way), checks
//! a private copy of the backup before anything is replaced, keeps the replaced database
//! beside it, and swaps the file in with one rename.

use crate::ops::backup::{remove_scratch, sync_dir};
use crate::ops::lock::{self, Holder};
use crate::store::backup::{self as dbb, Fold, Summary};
use crate::store::with_suffix;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Restored {
    pub db: PathBuf,
    pub summary: Summary,
    /// Where the replaced database now is (none if there was none).
    pub kept: Option<PathBuf>,
    /// The replaced database could not be made whole on its own (it is damaged), so its
    /// WAL was kept beside it as `<kept>-wal`.
    pub kept_with_wal: bool,
}

pub fn restore(db: &Path, backup: &Path) -> Result<Restored, String> {
    let db = lock::resolve(db);
    let _lock = lock::acquire(&db, Holder::Restore).map_err(|e| format!("cannot restore: {e}"))?;
    let refuse = |e: String| {
        format!(
            "cannot restore {}: {e}; nothing was changed",
            backup.display()
        )
    };
    if !backup.is_file() {
        return Err(refuse("no such file".into()));
    }
    if lock::resolve(backup) == db {
        return Err(refuse("it is the database itself".into()));
    }
    // A backup with its own WAL beside it holds commits the main file lacks.
    if fs::metadata(with_suffix(backup, "-wal")).is_ok_and(|m| m.len() > 0) {
        return Err(refuse(
            "a -wal file lies beside it, so the file alone is not the whole database \
             (make backups with `whitebeat backup`)"
                .into(),
        ));
    }
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(refuse(format!(
            "directory {} does not exist",
            dir.display()
        )));
    }
    let name = db.file_name().unwrap_or_default().to_string_lossy();
    let scratch = dir.join(format!(".{name}.restore-{}", std::process::id()));
    remove_scratch(&scratch);
    let result = prepare(backup, &scratch)
        .and_then(|summary| Ok((summary, fold_old(&db)?)))
        .map_err(refuse)
        .and_then(|(summary, fold)| {
            let kept = swap(&db, &scratch, fold == Fold::Done)?;
            Ok((summary, kept, fold))
        });
    remove_scratch(&scratch);
    let (summary, kept, fold) = result?;
    Ok(Restored {
        db,
        summary,
        kept_with_wal: kept.is_some() && fold != Fold::Done,
        kept,
    })
}

/// Folds the old database's WAL into it, so the file kept aside is whole and can be
/// restored to undo. Someone else having it open is a reason to stop: they would go on
/// writing into the file being set aside.
fn fold_old(db: &Path) -> Result<Fold, String> {
    if !db.exists() {
        return Ok(Fold::Done);
    }
    match dbb::fold_wal(db) {
        Fold::InUse => Err(format!(
            "{} is open in another program (a sqlite3 shell, a backup, Litestream?): \
             close it first",
            db.display()
        )),
        fold => Ok(fold),
    }
}

/// Copies the backup next to the database and checks the copy, which is what will be
/// installed: the backup itself is only read (opening it with SQLite, even read-only,
/// could create `-wal` and `-shm` files beside it), and no change to it after the check can
/// slip through.
fn prepare(backup: &Path, scratch: &Path) -> Result<Summary, String> {
    fs::copy(backup, scratch).map_err(|e| format!("cannot copy it: {e}"))?;
    let conn = dbb::open_copy(scratch)?;
    let summary = dbb::check(&conn)?;
    dbb::make_self_contained(&conn)?;
    drop(conn);
    fs::File::open(scratch)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync the copy: {e}"))?;
    Ok(summary)
}

/// Sets the old database aside and renames the checked copy into its place.
fn swap(db: &Path, scratch: &Path, folded: bool) -> Result<Option<PathBuf>, String> {
    let failed = |e: String| format!("restore failed: {e}");
    let kept = match fs::metadata(db) {
        Ok(old) => {
            same_owner_and_mode(scratch, &old);
            Some(set_aside(db, folded).map_err(failed)?)
        }
        Err(_) => None,
    };
    // Whatever journal is left belongs to the old file (and went with it above if it held
    // anything): SQLite would replay a leftover WAL or hot journal into the new database.
    for suffix in ["-wal", "-journal", "-shm"] {
        let p = with_suffix(db, suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(failed(format!("cannot remove {}: {e}", p.display()))),
        }
    }
    fs::rename(scratch, db)
        .map_err(|e| failed(format!("cannot move the copy to {}: {e}", db.display())))?;
    sync_dir(db);
    Ok(kept)
}

/// The new file gets the old one's permissions and, when run as root, its owner: a restore
/// run with `sudo` must not leave a database the server's account cannot write.
fn same_owner_and_mode(scratch: &Path, old: &fs::Metadata) {
    let _ = fs::set_permissions(scratch, old.permissions());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(scratch, Some(old.uid()), Some(old.gid()));
    }
}

/// Keeps the database about to be replaced as `<db>.before-restore-<UTC time>`, so a
/// mistaken restore can be undone by restoring that file.
fn set_aside(db: &Path, folded: bool) -> Result<PathBuf, String> {
    // When the WAL could not be folded in (a damaged database is a common reason to
    // restore), its WAL and journal are kept beside it under the matching names instead,
    // where SQLite will find them.
    let stamp = crate::time::file_stamp_now();
    let mut kept = with_suffix(db, &format!(".before-restore-{stamp}"));
    for n in 2.. {
        if fs::symlink_metadata(&kept).is_err() {
            break;
        }
        kept = with_suffix(db, &format!(".before-restore-{stamp}-{n}"));
    }
    // A hard link keeps the old file without copying it, and the database keeps its name
    // until the rename: there is never a moment without a database file.
    if fs::hard_link(db, &kept).is_err() {
        fs::copy(db, &kept)
            .and_then(|_| fs::File::open(&kept)?.sync_all())
            .map_err(|e| format!("cannot keep the old database as {}: {e}", kept.display()))?;
    }
    if !folded {
        for suffix in ["-wal", "-journal"] {
            let from = with_suffix(db, suffix);
            if fs::symlink_metadata(&from).is_ok() {
                fs::rename(&from, with_suffix(&kept, suffix))
                    .map_err(|e| format!("cannot keep {}: {e}", from.display()))?;
            }
        }
    }
    sync_dir(&kept);
    Ok(kept)
}
