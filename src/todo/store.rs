//! `TodoStore`: the one writer of a project's `.opencode/todo.md`.
//!
//! Every change goes through [`TodoStore::modify`]: under a lock held for the
//! whole read-modify-write, it re-reads the file from disk (so an edit a
//! person made since the last read is the base of this change, never
//! overwritten), applies a pure [`Plan`] operation, writes the result to a
//! synced temp file in the same directory, checks that the file on disk is
//! still exactly what it read, and renames the temp file over it. If the
//! file changed in between, the operation is redone on the new text.
//!
//! The remaining window (between that last check and the rename) is the
//! length of one `rename(2)`; closing it fully would need every editor to
//! take a lock, which people's editors do not do. Readers never see a torn
//! file, since the rename is atomic.
//!
//! The store emits no events: it returns what changed and the caller
//! reports it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use super::{Item, NewItem, Plan, Status, StatusChange, SyncIssues, TodoError, sync};
use crate::files::{self, Durability};

/// How often an update is redone because the file changed under it before
/// giving up.
const MAX_ATTEMPTS: u32 = 8;

/// The result of [`TodoStore::update`].
#[derive(Debug, Clone)]
pub struct Updated {
    pub change: StatusChange,
    /// The agent that asked for the change.
    pub agent: String,
    /// The plan as written.
    pub plan: Plan,
}

/// The result of [`TodoStore::add`].
#[derive(Debug, Clone)]
pub struct Added {
    /// The new item as parsed from the plan that was written.
    pub item: Item,
    pub plan: Plan,
}

/// The plan file of one project, with a single writer.
#[derive(Debug)]
pub struct TodoStore {
    plan_path: PathBuf,
    sync_path: PathBuf,
    /// Held across each whole read-modify-write, so updates from parallel
    /// sessions apply one after another and none is lost. An async mutex,
    /// because the guard lives as long as the blocking file work does.
    writer: Arc<Mutex<()>>,
}

impl TodoStore {
    /// The store for the project at `root`: `.opencode/todo.md` and
    /// `.opencode/sync-issues.md`.
    pub fn new(root: &Path) -> TodoStore {
        let dir = root.join(".opencode");
        TodoStore::at(dir.join("todo.md"), dir.join("sync-issues.md"))
    }

    /// A store for a plan and sync-issues file at explicit paths.
    pub fn at(plan_path: PathBuf, sync_path: PathBuf) -> TodoStore {
        TodoStore {
            plan_path,
            sync_path,
            writer: Arc::new(Mutex::new(())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.plan_path
    }

    pub fn sync_path(&self) -> &Path {
        &self.sync_path
    }

    /// The plan as it is on disk now. A missing file is [`TodoError::NoPlan`].
    pub async fn read(&self) -> Result<Plan, TodoError> {
        match read_text(&self.plan_path).await? {
            Some(text) => Ok(Plan::parse(&text)),
            None => Err(TodoError::NoPlan {
                path: self.plan_path.clone(),
            }),
        }
    }

    /// Whether the plan file exists.
    pub async fn exists(&self) -> bool {
        tokio::fs::try_exists(&self.plan_path)
            .await
            .unwrap_or(false)
    }

    /// The sync issues, or `None` when the file does not exist.
    pub async fn sync_issues(&self) -> Result<Option<SyncIssues>, TodoError> {
        Ok(read_text(&self.sync_path)
            .await?
            .map(|text| SyncIssues::parse(&text)))
    }

    /// Set the status of the item whose ID is exactly `id`. `agent` is who
    /// asked, passed back in the result; the store does not judge it.
    pub async fn update(
        &self,
        id: &str,
        status: Status,
        agent: &str,
    ) -> Result<Updated, TodoError> {
        let id = id.to_string();
        let (change, plan) = self
            .modify(false, move |plan| plan.set_status(&id, status))
            .await?;
        Ok(Updated {
            change,
            agent: agent.to_string(),
            plan,
        })
    }

    /// Add a pending item (see [`Plan::add`]). Creates the file when there
    /// is no plan yet.
    pub async fn add(&self, new: NewItem) -> Result<Added, TodoError> {
        let (item, plan) = self.modify(true, move |plan| plan.add(new.clone())).await?;
        Ok(Added { item, plan })
    }

    /// Replace the whole plan (the Planner writing it), creating
    /// `.opencode/` if needed.
    pub async fn write_plan(&self, text: &str) -> Result<Plan, TodoError> {
        let text = text.to_string();
        let ((), plan) = self
            .modify(true, move |plan| {
                *plan = Plan::parse(&text);
                Ok(())
            })
            .await?;
        Ok(plan)
    }

    /// Record an open sync issue; returns the issues after.
    pub async fn add_sync_issue(&self, issue: &str) -> Result<SyncIssues, TodoError> {
        let issue = issue.to_string();
        self.modify_sync(move |text| Ok(sync::add_issue(text, &issue)))
            .await
    }

    /// Check off the open sync issue on `line`; returns the issues after.
    pub async fn resolve_sync_issue(&self, line: usize) -> Result<SyncIssues, TodoError> {
        self.modify_sync(move |text| sync::resolve_issue(text, line).map_err(TodoError::Invalid))
            .await
    }

    /// Rewrite the sync-issues file through `change`, one writer at a time.
    async fn modify_sync(
        &self,
        change: impl FnOnce(&str) -> Result<String, TodoError> + Send + 'static,
    ) -> Result<SyncIssues, TodoError> {
        let writer = self.writer.clone().lock_owned().await;
        let path = self.sync_path.clone();
        tokio::task::spawn_blocking(move || {
            let before = read_bytes(&path)?.unwrap_or_default();
            let text = std::str::from_utf8(&before)
                .map_err(|_| TodoError::NotText { path: path.clone() })?;
            let after = change(text)?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|source| TodoError::Io {
                    action: "create the folder of",
                    path: path.clone(),
                    source,
                })?;
            }
            files::replace(&path, after.as_bytes(), Durability::Synced).map_err(|source| {
                TodoError::Io {
                    action: "replace",
                    path: path.clone(),
                    source,
                }
            })?;
            drop(writer);
            Ok(SyncIssues::parse(&after))
        })
        .await
        .map_err(|err| TodoError::Io {
            action: "update",
            path: self.sync_path.clone(),
            source: io::Error::other(err),
        })?
    }

    /// Apply `operation` to the plan on disk and write the result, one
    /// writer at a time. `create` allows starting from a missing file.
    async fn modify<T, F>(&self, create: bool, operation: F) -> Result<(T, Plan), TodoError>
    where
        T: Send + 'static,
        F: FnMut(&mut Plan) -> Result<T, TodoError> + Send + 'static,
    {
        // The guard moves into the blocking task: if the caller is cancelled
        // while the file work runs, the lock is still held until it ends,
        // so the next writer never overlaps it.
        let writer = self.writer.clone().lock_owned().await;
        let path = self.plan_path.clone();
        tokio::task::spawn_blocking(move || {
            let result = modify_file(&path, create, operation);
            drop(writer);
            result
        })
        .await
        .map_err(|err| TodoError::Io {
            action: "update",
            path: self.plan_path.clone(),
            source: io::Error::other(err),
        })?
    }
}

/// The read-modify-check-rename loop described in the module docs.
fn modify_file<T>(
    path: &Path,
    create: bool,
    mut operation: impl FnMut(&mut Plan) -> Result<T, TodoError>,
) -> Result<(T, Plan), TodoError> {
    for _ in 0..MAX_ATTEMPTS {
        let before = read_bytes(path)?;
        if before.is_none() && !create {
            return Err(TodoError::NoPlan {
                path: path.to_path_buf(),
            });
        }
        let text = match &before {
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| TodoError::NotText {
                path: path.to_path_buf(),
            })?,
            None => "",
        };
        let mut plan = Plan::parse(text);
        let value = match operation(&mut plan) {
            Ok(value) => value,
            // An editor that truncates and then writes can show us half a
            // file; an error on that is not the answer for the finished one.
            Err(_) if read_bytes(path)? != before => continue,
            Err(err) => return Err(err),
        };
        let after = plan.to_string();
        if before.as_deref() == Some(after.as_bytes()) {
            return Ok((value, plan));
        }
        let replacement =
            files::prepare(path, after.as_bytes(), Durability::Synced).map_err(|source| {
                TodoError::Io {
                    action: "write a temp file for",
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        if read_bytes(path)? != before {
            // Someone wrote the file since we read it: redo the operation on
            // their version. Dropping the replacement removes its temp file.
            continue;
        }
        replacement.commit().map_err(|source| TodoError::Io {
            action: "replace",
            path: path.to_path_buf(),
            source,
        })?;
        return Ok((value, plan));
    }
    Err(TodoError::Contended {
        path: path.to_path_buf(),
        attempts: MAX_ATTEMPTS,
    })
}

/// The file's bytes, or `None` when it does not exist.
fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, TodoError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TodoError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

async fn read_text(path: &Path) -> Result<Option<String>, TodoError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| TodoError::NotText {
                path: path.to_path_buf(),
            }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TodoError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_plan_is_an_error_for_read_and_update() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = TodoStore::new(dir.path());
        assert!(matches!(store.read().await, Err(TodoError::NoPlan { .. })));
        assert!(matches!(
            store.update("T1", Status::Done, "Reviewer").await,
            Err(TodoError::NoPlan { .. })
        ));
        assert!(!store.exists().await);
        assert_eq!(store.sync_issues().await.expect("no file is fine"), None);
    }

    #[tokio::test]
    async fn add_creates_the_plan_and_update_edits_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = TodoStore::new(dir.path());
        let added = store
            .add(NewItem {
                text: "first".into(),
                ..NewItem::default()
            })
            .await
            .expect("add to a new plan");
        assert_eq!(added.item.id.as_deref(), Some("T1"));
        let updated = store
            .update("T1", Status::InProgress, "Worker")
            .await
            .expect("update");
        assert_eq!(updated.agent, "Worker");
        assert!(updated.change.changed());
        let on_disk = fs::read_to_string(store.path()).expect("plan written");
        assert_eq!(on_disk, "- [/] T1: first\n");
        assert_eq!(updated.plan.to_string(), on_disk);
    }

    #[tokio::test]
    async fn a_failed_operation_writes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = TodoStore::new(dir.path());
        store.write_plan("- [ ] T1: a\n").await.expect("write plan");
        let err = store
            .update("T9", Status::Done, "Reviewer")
            .await
            .expect_err("unknown ID");
        assert!(matches!(err, TodoError::UnknownId { .. }));
        assert_eq!(
            fs::read_to_string(store.path()).expect("plan"),
            "- [ ] T1: a\n"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_utf8_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = TodoStore::new(dir.path());
        fs::create_dir_all(dir.path().join(".opencode")).expect("dir");
        fs::write(store.path(), [0xff, 0xfe, b'\n']).expect("write");
        assert!(matches!(store.read().await, Err(TodoError::NotText { .. })));
        assert!(matches!(
            store.update("T1", Status::Done, "Reviewer").await,
            Err(TodoError::NotText { .. })
        ));
    }

    #[test]
    fn a_change_between_read_and_rename_redoes_the_operation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("todo.md");
        fs::write(&path, "- [ ] T1: a\n").expect("write");
        let mut runs = 0;
        let (change, plan) = modify_file(&path, false, |plan| {
            runs += 1;
            if runs == 1 {
                // A person saves the file while the first attempt is running.
                fs::write(&path, "- [ ] T1: a\n- [ ] T2: added by a person\n").expect("human edit");
            }
            plan.set_status("T1", Status::Done)
        })
        .expect("second attempt succeeds");
        assert_eq!(runs, 2);
        assert!(change.changed());
        let expected = "- [x] T1: a\n- [ ] T2: added by a person\n";
        assert_eq!(plan.to_string(), expected);
        assert_eq!(fs::read_to_string(&path).expect("plan"), expected);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec!["todo.md"]);
    }

    #[test]
    fn an_error_on_a_file_that_changed_meanwhile_is_retried() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("todo.md");
        // A half-written file: the item is not there yet.
        fs::write(&path, "# Mission: m\n").expect("write");
        let mut runs = 0;
        let (change, _) = modify_file(&path, false, |plan| {
            runs += 1;
            if runs == 1 {
                fs::write(&path, "# Mission: m\n- [ ] T1: a\n").expect("finish the write");
            }
            plan.set_status("T1", Status::InProgress)
        })
        .expect("the finished file has T1");
        assert_eq!((runs, change.to), (2, Status::InProgress));
    }

    #[test]
    fn a_file_that_keeps_changing_gives_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("todo.md");
        fs::write(&path, "- [ ] T1: a\n").expect("write");
        let mut runs = 0;
        let err = modify_file(&path, false, |plan| {
            runs += 1;
            fs::write(&path, format!("- [ ] T1: a\n<!-- edit {runs} -->\n")).expect("edit");
            plan.set_status("T1", Status::Done)
        })
        .expect_err("never settles");
        assert!(matches!(
            err,
            TodoError::Contended {
                attempts: MAX_ATTEMPTS,
                ..
            }
        ));
        assert_eq!(runs, MAX_ATTEMPTS);
    }
}
