//! The exclusive lock a server (or a restore) holds on its database for its whole life, so
//! that two servers never share one database (the design has one message writer) and a
//! restore never replaces the file under a running server. Other admin commands do not take
//! it: they are short transactions SQLite already serialises.
//!
//! It is an `flock` on a separate file, `<db>.lock`, never on the database itself: SQLite
//! uses `fcntl` locks on the database, and a restore replaces the database by rename, which
//! would silently leave a lock on the database's old inode. The lock file is never deleted
//! (deleting a lock file lets two processes lock two different inodes); the kernel drops the
//! lock when its holder exits, however it exits, so a crash never leaves a stale lock.
//! Like the database, it is created readable by its owner only, whatever the umask.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Who holds the lock, written into the lock file for the error message of whoever waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Server,
    Restore,
    Import,
}

impl Holder {
    fn as_str(self) -> &'static str {
        match self {
            Holder::Server => "serve",
            Holder::Restore => "restore",
            Holder::Import => "import",
        }
    }
}

/// Held until dropped.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
}

/// The database path with symbolic links resolved, so that every spelling of one database
/// finds the same lock file, and a restore replaces the real file rather than a link.
pub fn resolve(db: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(db) {
        return real;
    }
    // Not created yet: resolve the directory, which must exist.
    match (db.parent(), db.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            std::fs::canonicalize(parent)
                .map(|p| p.join(name))
                .unwrap_or_else(|_| db.to_path_buf())
        }
        _ => db.to_path_buf(),
    }
}

pub fn lock_path(db: &Path) -> PathBuf {
    crate::store::with_suffix(&resolve(db), ".lock")
}

/// Takes the lock without waiting. On failure the error names the process holding it.
pub fn acquire(db: &Path, holder: Holder) -> Result<DbLock, String> {
    let path = lock_path(db);
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let existed = path.exists();
    let opened = options.open(&path);
    if let (Ok(file), false) = (&opened, existed) {
        give_to_database_owner(file, &resolve(db));
    }
    // A lock file another account created (an admin's `sudo whitebeat restore`) may not be
    // writable by the server's account; reading is enough to lock it.
    let opened = match opened {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path),
        other => other,
    };
    let mut file =
        opened.map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
    if !try_flock(&file).map_err(|e| format!("cannot lock {}: {e}", path.display()))? {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        return Err(held_by(&text));
    }
    // Best effort: the lock itself is what protects; the text only improves the message.
    let _ = file.set_len(0).and_then(|()| {
        file.rewind()?;
        writeln!(file, "{} {}", std::process::id(), holder.as_str())
    });
    Ok(DbLock { _file: file })
}

/// A lock file that root creates (a `sudo whitebeat restore` or `import-django`) would be
/// root's, and with mode 0600 the service's account could no longer open it. So when root
/// creates it beside an existing database, it goes to the database's owner, as SQLite does
/// with the `-wal` and `-shm` files it creates as root. Best effort: a failure only means
/// the service account may have to be given the file by hand, as before.
fn give_to_database_owner(file: &File, db: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let Ok(meta) = std::fs::metadata(db) else {
            return;
        };
        if meta.uid() != 0 {
            // SAFETY: fchown on a descriptor we own; no memory is involved.
            unsafe { libc::fchown(file.as_raw_fd(), meta.uid(), meta.gid()) };
        }
    }
    #[cfg(not(unix))]
    let _ = (file, db);
}

/// "a server is running on this database (pid 4242)" and the like, from the lock file text.
fn held_by(text: &str) -> String {
    let mut words = text.split_whitespace();
    let pid = words
        .next()
        .filter(|p| p.parse::<u32>().is_ok())
        .map(|p| format!("pid {p}"))
        .unwrap_or_else(|| "pid unknown".into());
    match words.next() {
        Some("restore") => format!("a restore is in progress on this database ({pid})"),
        Some("import") => format!("an import is in progress on this database ({pid})"),
        _ => format!("a server is running on this database ({pid})"),
    }
}

/// `Ok(false)` when another open file holds the lock.
fn try_flock(file: &File) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        loop {
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(true);
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => return Ok(false),
                Some(libc::EINTR) => continue,
                _ => return Err(err),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.sqlite3");
        let first = acquire(&db, Holder::Server).unwrap();
        let err = acquire(&db, Holder::Restore).unwrap_err();
        assert_eq!(
            err,
            format!(
                "a server is running on this database (pid {})",
                std::process::id()
            )
        );
        drop(first);
        let second = acquire(&db, Holder::Restore).unwrap();
        let err = acquire(&db, Holder::Server).unwrap_err();
        assert!(err.starts_with("a restore is in progress"), "{err}");
        drop(second);
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.sqlite3");
        let _lock = acquire(&db, Holder::Server).unwrap();
        let mode = std::fs::metadata(lock_path(&db))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn every_spelling_of_a_path_finds_one_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.sqlite3");
        let dotted = dir.path().join(".").join("x.sqlite3");
        assert_eq!(lock_path(&db), lock_path(&dotted));
    }
}
