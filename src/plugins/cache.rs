//! Compiled plugin code is the engine's own: it runs as native code, outside
//! the wasm sandbox, so only code this user's orch compiled is loaded.
//!
//! The cache lives in the user's cache directory
//! (`$XDG_CACHE_HOME/orch/plugins`, mode 0700, owned by the user), never in
//! a project, where `bash`, a plugin or a cloned repository could plant a
//! file. Every artifact carries an HMAC-SHA256 over its name and bytes with
//! a per-user key (`key` beside the artifacts, 0600, created with a
//! no-clobber rename so two orch processes agree on one); an artifact whose
//! tag does not verify is ignored and compiled again.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::files::{self, Durability};

/// What starts every artifact, before its tag.
const MAGIC: &[u8; 8] = b"ORCHMAC1";
const TAG_LEN: usize = 32;
const KEY_LEN: usize = 32;

/// The compiled-code cache of this user.
pub struct CodeCache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache").field("dir", &self.dir).finish()
    }
}

impl CodeCache {
    /// The cache in the user's cache directory; `Err` says why there is
    /// none (plugins are then compiled on every start).
    pub fn of_user() -> Result<CodeCache, String> {
        let dir = dirs::cache_dir()
            .ok_or("no user cache directory")?
            .join("orch")
            .join("plugins");
        CodeCache::open(&dir)
    }

    /// The cache in `dir`: created 0700 if missing; refused when another
    /// user owns it or others may write it.
    pub fn open(dir: &Path) -> Result<CodeCache, String> {
        let shown = dir.display();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|err| format!("cannot create {shown}: {err}"))?;
        let meta = std::fs::metadata(dir).map_err(|err| format!("{shown}: {err}"))?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!("{shown} belongs to another user"));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |err| format!("{shown} is open to other users and cannot be closed: {err}"),
            )?;
        }
        let key = key_in(dir)?;
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn tag(&self, name: &str, code: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(code);
        mac
    }

    /// The code stored under `name`, if it is there and its tag verifies.
    /// A use refreshes the file's modification time (for pruning).
    pub fn load(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.path(name);
        let mut bytes = std::fs::read(&path).ok()?;
        if bytes.len() < MAGIC.len() + TAG_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return None;
        }
        let (head, code) = bytes.split_at(MAGIC.len() + TAG_LEN);
        self.tag(name, code)
            .verify_slice(&head[MAGIC.len()..])
            .ok()?;
        if let Ok(file) = std::fs::File::open(&path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        bytes.drain(..MAGIC.len() + TAG_LEN);
        Some(bytes)
    }

    /// Keep `code` under `name` (temp file, then rename); a failed write
    /// only costs a compile next time.
    pub fn store(&self, name: &str, code: &[u8]) {
        let tag = self.tag(name, code).finalize().into_bytes();
        let mut bytes = Vec::with_capacity(MAGIC.len() + TAG_LEN + code.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&tag);
        bytes.extend_from_slice(code);
        let _ = files::replace(&self.path(name), &bytes, Durability::Crash);
    }
}

/// The per-user key in `dir`, created if missing. Two processes racing to
/// create it both end up with the one that landed first.
fn key_in(dir: &Path) -> Result<[u8; KEY_LEN], String> {
    let path = dir.join("key");
    for _ in 0..3 {
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == KEY_LEN => {
                let meta = std::fs::metadata(&path).map_err(|err| err.to_string())?;
                // SAFETY: geteuid has no preconditions.
                if meta.uid() != unsafe { libc::geteuid() }
                    || meta.permissions().mode() & 0o077 != 0
                {
                    return Err(format!("{} is not private to this user", path.display()));
                }
                let mut key = [0; KEY_LEN];
                key.copy_from_slice(&bytes);
                return Ok(key);
            }
            Ok(_) => return Err(format!("{} is not a key orch wrote", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(format!("{}: {err}", path.display())),
        }
        let mut key = [0; KEY_LEN];
        getrandom::getrandom(&mut key).map_err(|err| format!("no randomness for a key: {err}"))?;
        // Private from its first byte; the no-clobber rename publishes it
        // whole or not at all.
        let published = files::prepare_with_mode(&path, &key, Durability::Synced, 0o600)
            .and_then(files::Replacement::commit_new)
            .map_err(|err| format!("{}: {err}", path.display()))?;
        if published {
            return Ok(key);
        }
    }
    Err(format!("{} keeps changing", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_this_users_key_signed_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::open(&dir.path().join("plugins")).unwrap();
        let mode = std::fs::metadata(cache.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(cache.dir().join("key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        cache.store("a.cwasm", b"code a");
        assert_eq!(cache.load("a.cwasm").as_deref(), Some(&b"code a"[..]));
        // Renamed, the tag no longer matches its name.
        std::fs::copy(cache.dir().join("a.cwasm"), cache.dir().join("b.cwasm")).unwrap();
        assert_eq!(cache.load("b.cwasm"), None);
        // Changed bytes, planted files, another key: nothing loads.
        let mut bytes = std::fs::read(cache.dir().join("a.cwasm")).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(cache.dir().join("c.cwasm"), &bytes).unwrap();
        assert_eq!(cache.load("c.cwasm"), None);
        std::fs::write(cache.dir().join("d.cwasm"), b"native code").unwrap();
        assert_eq!(cache.load("d.cwasm"), None);
        let other = CodeCache::open(&dir.path().join("other")).unwrap();
        other.store("a.cwasm", b"evil");
        std::fs::copy(other.dir().join("a.cwasm"), cache.dir().join("a.cwasm")).unwrap();
        assert_eq!(cache.load("a.cwasm"), None);
        // A second open finds the same key.
        let again = CodeCache::open(cache.dir()).unwrap();
        again.store("e.cwasm", b"code e");
        assert_eq!(cache.load("e.cwasm").as_deref(), Some(&b"code e"[..]));
    }
}
