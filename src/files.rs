//! How orch replaces a file: the new content goes to a temp file in the same
//! directory, then a rename puts it in place, so a crash or SIGKILL at any
//! moment leaves the old content or the new one, never a torn file. Every
//! writer of a whole file (the file tools, the plan, mission state, memory,
//! the compiled-plugin cache, `orch init`) goes through here, and so does
//! the per-file lock a compare-and-replace holds ([`lock`]).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// What must hold after a power loss, on top of crash safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The rename alone: a crash leaves old or new, a power loss may roll
    /// the file back. For records orch can rebuild (state from the journal,
    /// caches).
    Crash,
    /// File and directory synced before returning: for what a person or an
    /// agent wrote (project files, the plan, memory).
    Synced,
}

/// New content written beside its destination, not yet in place. Dropping
/// it removes the temp file.
pub struct Replacement {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
    durability: Durability,
}

/// Write `bytes` beside `path` (creating its directory), with the existing
/// file's permissions, or the usual 0666 minus the umask for a new file.
pub fn prepare(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<Replacement> {
    prepare_as(path, bytes, durability, None)
}

/// [`prepare`] with the permissions `mode` (such as 0o600 for a key),
/// whatever the file had: the temp file is created with them, so the
/// content is never readable more widely.
pub fn prepare_with_mode(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
    mode: u32,
) -> io::Result<Replacement> {
    prepare_as(path, bytes, durability, Some(mode))
}

fn prepare_as(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
    mode: Option<u32>,
) -> io::Result<Replacement> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let wanted = match mode {
        Some(mode) => Some(fs::Permissions::from_mode(mode)),
        None => fs::metadata(path).ok().map(|meta| meta.permissions()),
    };
    // An unpredictable name: nothing can plant a file or link at it first.
    let mut temp = tempfile::Builder::new()
        .prefix(".orch-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode.unwrap_or(0o666)))
        .tempfile_in(dir)?;
    // Exactly the mode asked for, whatever the umask took away.
    if let Some(permissions) = wanted {
        temp.as_file().set_permissions(permissions)?;
    }
    temp.write_all(bytes)?;
    if durability == Durability::Synced {
        temp.as_file().sync_all()?;
    }
    Ok(Replacement {
        temp,
        path: path.to_path_buf(),
        durability,
    })
}

impl Replacement {
    /// Rename the new content over the destination.
    pub fn commit(self) -> io::Result<()> {
        let Replacement {
            temp,
            path,
            durability,
        } = self;
        temp.persist(&path).map_err(|err| err.error)?;
        sync_dir(&path, durability);
        Ok(())
    }

    /// Put the new content in place only if nothing is there yet; `false`
    /// (and nothing changed) when a file already is.
    pub fn commit_new(self) -> io::Result<bool> {
        let Replacement {
            temp,
            path,
            durability,
        } = self;
        match temp.persist_noclobber(&path) {
            Ok(_) => {
                sync_dir(&path, durability);
                Ok(true)
            }
            Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(err.error),
        }
    }
}

/// Make a rename durable. Best effort: the rename already happened, and
/// some file systems refuse to sync a directory.
fn sync_dir(path: &Path, durability: Durability) {
    if durability == Durability::Synced
        && let Some(dir) = path.parent()
        && let Ok(dir) = fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// Replace `path` with `bytes` (see the module docs).
pub fn replace(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    prepare(path, bytes, durability)?.commit()
}

/// The sha256 of `bytes`, as lowercase hex (plugin grants, trust).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Hold the process-wide lock of the file at `path`: one check-and-replace
/// of a file at a time, whichever session makes it.
pub fn lock(path: &Path) -> FileLock {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .expect("file locks lock");
    // Forget locks nobody holds, so the table stays as small as the
    // writes in flight.
    if locks.len() > 64 {
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
    }
    let lock = locks.entry(path.to_path_buf()).or_default().clone();
    drop(locks);
    FileLock { lock }
}

/// A held per-file lock (see [`lock`]).
pub struct FileLock {
    lock: Arc<Mutex<()>>,
}

impl FileLock {
    /// Run `f` while holding the lock.
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        let _held = self.hold();
        f()
    }

    /// Hold the lock until the guard is dropped.
    pub fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_keeping_permissions_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.txt");
        replace(&path, b"one", Durability::Synced).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        // A new file is not tempfile's private 0600.
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode, 0o600, "{mode:o}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
        replace(&path, b"two", Durability::Crash).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750);
        assert!(leftovers(path.parent().unwrap()).is_empty());
    }

    #[test]
    fn a_dropped_replacement_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.md");
        fs::write(&path, "old").unwrap();
        let pending = prepare(&path, b"new", Durability::Synced).unwrap();
        assert_eq!(leftovers(dir.path()).len(), 1);
        drop(pending);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn commit_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.wasm");
        assert!(
            prepare(&path, b"first", Durability::Crash)
                .unwrap()
                .commit_new()
                .unwrap()
        );
        assert!(
            !prepare(&path, b"second", Durability::Crash)
                .unwrap()
                .commit_new()
                .unwrap()
        );
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn one_writer_per_file_at_a_time() {
        let path = PathBuf::from("/nonexistent/locked");
        let first = lock(&path);
        let second = lock(&path);
        assert!(Arc::ptr_eq(&first.lock, &second.lock));
        let other = lock(Path::new("/nonexistent/other"));
        assert!(!Arc::ptr_eq(&first.lock, &other.lock));
    }

    #[test]
    fn a_given_mode_holds_from_the_first_byte_and_over_an_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let mode_of = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let pending = prepare_with_mode(&path, b"secret", Durability::Synced, 0o600).unwrap();
        let temp = dir.path().join(&leftovers(dir.path())[0]);
        assert_eq!(mode_of(&temp), 0o600);
        assert!(pending.commit_new().unwrap());
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        // The mode asked for wins over the old file's.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        prepare_with_mode(&path, b"new", Durability::Crash, 0o600)
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert!(leftovers(dir.path()).is_empty());
    }
}
