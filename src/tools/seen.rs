//! What a session last saw of each file, so its writes never clobber a
//! change it has not seen.
//!
//! `read`, `write` and `edit` record a fingerprint of the file as the
//! session saw it (a SHA-256 of its content; for a file too large to edit,
//! its size, modification time and inode). A `write` or `edit` of an
//! existing file then compares and swaps under a per-file lock: a file the
//! session never read is refused ("read it first"), and so is one that
//! changed since it last saw it — by another session, a formatter or a
//! command ("read it again first"). Nothing is written in either case.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Files up to this size are fingerprinted by content.
const HASHED_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// A file as one session saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fingerprint {
    Content([u8; 32]),
    /// A file too large to hash on every read.
    Stat {
        len: u64,
        mtime_ns: i128,
        inode: u64,
    },
}

impl Fingerprint {
    /// The fingerprint of a file that holds `bytes`, when `bytes` were
    /// just read from it.
    pub fn of_bytes(bytes: &[u8]) -> Fingerprint {
        Fingerprint::Content(Sha256::digest(bytes).into())
    }

    /// The fingerprint of the file at `path` just written with `bytes`
    /// (a large one is fingerprinted by what the file system says).
    pub fn of_written(path: &Path, bytes: &[u8]) -> Option<Fingerprint> {
        if bytes.len() as u64 > HASHED_MAX_BYTES {
            Fingerprint::of_file(path).ok().flatten()
        } else {
            Some(Fingerprint::of_bytes(bytes))
        }
    }

    /// The fingerprint of the file at `path` now; `None` when it does not
    /// exist.
    pub fn of_file(path: &Path) -> io::Result<Option<Fingerprint>> {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        if meta.len() > HASHED_MAX_BYTES {
            return Ok(Some(Fingerprint::Stat {
                len: meta.len(),
                mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
                inode: meta.ino(),
            }));
        }
        let mut file = fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(Some(Fingerprint::Content(hasher.finalize().into())))
    }
}

/// What one session last saw of each file it read or wrote.
#[derive(Debug, Default)]
pub struct Seen {
    files: Mutex<HashMap<PathBuf, Fingerprint>>,
}

impl Seen {
    pub fn record(&self, path: &Path, fingerprint: Fingerprint) {
        self.files
            .lock()
            .expect("seen files lock")
            .insert(path.to_path_buf(), fingerprint);
    }

    /// Record the file at `path` as it is now (after a read).
    pub fn record_file(&self, path: &Path) {
        if let Ok(Some(fingerprint)) = Fingerprint::of_file(path) {
            self.record(path, fingerprint);
        }
    }

    /// Whether the session may replace the file at `path` (shown to the
    /// model as `shown`) as it is now: it does not exist, or it is exactly
    /// what the session last saw. Call under [`lock`].
    pub fn check(&self, path: &Path, shown: &str, tool: &str) -> Result<(), String> {
        let now = Fingerprint::of_file(path)
            .map_err(|err| format!("could not read {shown:?} to check it before {tool}: {err}"))?;
        self.check_as(path, now, shown, tool)
    }

    /// [`check`](Self::check) of a file the caller has just read as `now`
    /// (`None`: it does not exist).
    pub fn check_as(
        &self,
        path: &Path,
        now: Option<Fingerprint>,
        shown: &str,
        tool: &str,
    ) -> Result<(), String> {
        let Some(now) = now else {
            return Ok(());
        };
        match self.files.lock().expect("seen files lock").get(path) {
            Some(seen) if *seen == now => Ok(()),
            Some(_) => Err(format!(
                "{shown:?} changed since this session last read it (another agent, a formatter or a command changed it); read it again first, then {tool} (nothing was written)"
            )),
            None => Err(format!(
                "{shown:?} already exists and this session has not read it; read it first, then {tool} (nothing was written)"
            )),
        }
    }
}

impl Seen {
    /// Whether the session last saw the file at `path` as something other
    /// than `now`. Multi-file rewrites (`ast_replace`, `sed_replace`) read
    /// each file themselves, so a file the session never saw may be
    /// rewritten; one it saw and that has changed since may not.
    pub fn saw_otherwise(&self, path: &Path, now: Fingerprint) -> bool {
        self.files
            .lock()
            .expect("seen files lock")
            .get(path)
            .is_some_and(|seen| *seen != now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_must_be_seen_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        let seen = Seen::default();
        // Absent: anyone may create it.
        assert!(seen.check(&path, "a.txt", "write").is_ok());
        fs::write(&path, "one\n").unwrap();
        let never = seen.check(&path, "a.txt", "write").unwrap_err();
        assert!(never.contains("has not read it; read it first"), "{never}");
        seen.record_file(&path);
        assert!(seen.check(&path, "a.txt", "write").is_ok());
        fs::write(&path, "two\n").unwrap();
        let stale = seen.check(&path, "a.txt", "edit").unwrap_err();
        assert!(
            stale.contains("changed since this session last read it"),
            "{stale}"
        );
        // What the session wrote itself is what it saw.
        seen.record(&path, Fingerprint::of_bytes(b"three\n"));
        fs::write(&path, "three\n").unwrap();
        assert!(seen.check(&path, "a.txt", "write").is_ok());
    }
}
