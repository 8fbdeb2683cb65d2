//! Path safety: every path a tool touches resolves inside the project root.
//!
//! `resolve` works in two steps. First it normalizes the path lexically
//! (`.` dropped, `..` pops a component) so the result never contains `..`
//! and the OS never interprets one. Then it canonicalizes the longest prefix
//! that exists, which resolves every symbolic link on the way, and checks the
//! result is still under the canonical root. A dangling symbolic link is
//! followed by hand (its target may be a file about to be created), so a
//! link pointing out of the project is refused whether or not its target
//! exists.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// How many symbolic links `resolve` follows by hand before giving up, like
/// the kernel's `ELOOP` limit.
const MAX_LINK_HOPS: usize = 40;

/// Resolve `path` (as the model wrote it) against the canonical project
/// `root`. Relative paths are joined to the root; absolute paths must lie
/// inside it. The returned path is absolute, free of `.`/`..`, and every
/// existing part of it is canonical, so opening it cannot leave the root.
pub fn resolve(root: &Path, path: &str) -> Result<PathBuf, String> {
    if path.contains('\0') {
        return Err(format!("path {path:?} contains a NUL byte"));
    }
    let given = Path::new(path);
    let joined = if given.is_absolute() {
        given.to_path_buf()
    } else {
        root.join(given)
    };
    let resolved = canonical_prefix(&normalize(&joined), 0).map_err(|err| match err {
        Resolve::Loop => format!("path {path:?} goes through too many symbolic links"),
        Resolve::Io(err) => format!("cannot resolve path {path:?}: {err}"),
    })?;
    // The root is canonical by contract; a caller that passed another
    // spelling of it is still served correctly.
    let inside = resolved.starts_with(root)
        || std::fs::canonicalize(root).is_ok_and(|root| resolved.starts_with(root));
    if inside {
        Ok(resolved)
    } else {
        Err(format!(
            "path {path:?} is outside the project root; use a path inside the project"
        ))
    }
}

/// [`resolve`] for a path a tool is about to change: besides staying in the
/// project, it must not be under `.opencode/` (the engine's: the plan, its
/// config, records and caches) or `.git/` (git's own). The refusal says which
/// tool to use instead.
pub fn resolve_writable(root: &Path, path: &str) -> Result<PathBuf, String> {
    let resolved = resolve(root, path)?;
    let inner = resolved
        .strip_prefix(root)
        .ok()
        .map(Path::to_path_buf)
        .or_else(|| {
            let root = std::fs::canonicalize(root).ok()?;
            Some(resolved.strip_prefix(root).ok()?.to_path_buf())
        })
        .unwrap_or_default();
    match crate::paths::engine_owned(&inner) {
        Some(refusal) => Err(format!("{path:?}: {refusal}")),
        None => Ok(resolved),
    }
}

/// `path` relative to `root` for display (`.` for the root itself); paths
/// outside the root are shown whole.
pub fn relative(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rest) if rest.as_os_str().is_empty() => ".".to_string(),
        Ok(rest) => rest.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// Drop `.` components and apply `..` lexically. `..` at the filesystem root
/// stays at the root, as the kernel does.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

enum Resolve {
    Loop,
    Io(io::Error),
}

/// Canonicalize the longest existing prefix of the absolute, normalized
/// `path` and append the components that do not exist yet.
fn canonical_prefix(path: &Path, hops: usize) -> Result<PathBuf, Resolve> {
    if hops > MAX_LINK_HOPS {
        return Err(Resolve::Loop);
    }
    let mut missing: Vec<OsString> = Vec::new();
    let mut current = path.to_path_buf();
    loop {
        match std::fs::canonicalize(&current) {
            Ok(mut canonical) => {
                canonical.extend(missing.iter().rev());
                return Ok(canonical);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // `current` may itself be a symbolic link whose target does
                // not exist: follow it by hand so its target is checked too.
                if let Ok(meta) = std::fs::symlink_metadata(&current)
                    && meta.file_type().is_symlink()
                {
                    let target = std::fs::read_link(&current).map_err(Resolve::Io)?;
                    // The parent exists (the link is in it), so it
                    // canonicalizes; the target is relative to it.
                    let parent = current.parent().unwrap_or(Path::new("/"));
                    let parent = std::fs::canonicalize(parent).map_err(Resolve::Io)?;
                    let mut next = parent.join(target);
                    next.extend(missing.iter().rev());
                    return canonical_prefix(&normalize(&next), hops + 1);
                }
                let Some(name) = current.file_name() else {
                    return Err(Resolve::Io(err));
                };
                missing.push(name.to_os_string());
                current.pop();
            }
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => return Err(Resolve::Loop),
            Err(err) => return Err(Resolve::Io(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn project() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("proj");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "fn main() {}\n").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        (dir, root)
    }

    #[test]
    fn normalize_is_lexical() {
        let cases = [
            ("/a/b/../c", "/a/c"),
            ("/a/./b/.", "/a/b"),
            ("/a/../../..", "/"),
            ("/a//b", "/a/b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(Path::new(input)), PathBuf::from(want), "{input}");
        }
    }

    #[test]
    fn accepts_paths_inside_the_root() {
        let (_dir, root) = project();
        let inside = [
            ("src/lib.rs", "src/lib.rs"),
            ("./src/../src/lib.rs", "src/lib.rs"),
            ("new/dir/file.txt", "new/dir/file.txt"),
            (".", ""),
            ("", ""),
            ("src/./", "src"),
        ];
        for (input, want) in inside {
            assert_eq!(resolve(&root, input).unwrap(), root.join(want), "{input}");
        }
        let absolute = root.join("src/lib.rs");
        assert_eq!(
            resolve(&root, absolute.to_str().unwrap()).unwrap(),
            absolute
        );
    }

    #[test]
    fn refuses_paths_outside_the_root() {
        let (dir, root) = project();
        symlink(dir.path().join("secret.txt"), root.join("link-file")).unwrap();
        symlink(dir.path(), root.join("link-dir")).unwrap();
        symlink(dir.path().join("nowhere.txt"), root.join("dangling-out")).unwrap();
        let outside = [
            "..",
            "../secret.txt",
            "a/../../x",
            "./././..",
            "src/../../secret.txt",
            "/etc/passwd",
            "/",
            "link-file",
            "link-dir/secret.txt",
            "link-dir/new/file.txt",
            "dangling-out",
        ];
        for input in outside {
            let err = resolve(&root, input).unwrap_err();
            assert!(err.contains("outside the project root"), "{input}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{input}: {err}");
        }
    }

    #[test]
    fn follows_links_that_stay_inside() {
        let (_dir, root) = project();
        symlink(root.join("src"), root.join("alias")).unwrap();
        symlink("src/new.rs", root.join("dangling-in")).unwrap();
        assert_eq!(
            resolve(&root, "alias/lib.rs").unwrap(),
            root.join("src/lib.rs")
        );
        assert_eq!(
            resolve(&root, "dangling-in").unwrap(),
            root.join("src/new.rs")
        );
    }

    #[test]
    fn a_dot_dot_after_a_link_is_lexical() {
        // `link/..` is the directory holding the link, not the link target's
        // parent, because `..` is applied before anything touches the disk.
        let (dir, root) = project();
        symlink(dir.path(), root.join("up")).unwrap();
        assert_eq!(resolve(&root, "up/../src").unwrap(), root.join("src"));
    }

    #[test]
    fn symlink_loops_are_reported() {
        let (_dir, root) = project();
        symlink(root.join("b"), root.join("a")).unwrap();
        symlink(root.join("a"), root.join("b")).unwrap();
        let err = resolve(&root, "a/x").unwrap_err();
        assert!(err.contains("too many symbolic links"), "{err}");
    }

    #[test]
    fn relative_display() {
        let root = Path::new("/p");
        assert_eq!(relative(root, Path::new("/p")), ".");
        assert_eq!(relative(root, Path::new("/p/a/b")), "a/b");
        assert_eq!(relative(root, Path::new("/q")), "/q");
    }
}
