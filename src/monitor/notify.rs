//! A desktop notification when a mission ends, where the platform has a
//! notifier (`notify-send` on Linux and the BSDs, `osascript` on macOS).
//! Text always travels as program arguments, never through a shell string;
//! a missing notifier is skipped silently, and a slow one is killed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{self, Job, Keep, Program, scrubbed_env};

/// The longest a notifier may take before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// A notifier program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Whether to notify: the configuration allows it and this is not CI
/// (`CI` set to anything but `false` or `0` counts as CI, as it does for
/// the approval prompt).
pub fn wanted(enabled: bool, env: &BTreeMap<String, String>) -> bool {
    enabled
        && env
            .get("CI")
            .is_none_or(|value| value.is_empty() || value == "0" || value == "false")
}

/// The notifier for `os` (`std::env::consts::OS`), if one is installed
/// (`find` looks a program up on `PATH`). On Linux a graphical session or
/// a session bus must exist, or nobody would see the notification.
pub fn notifier(
    os: &str,
    env: &BTreeMap<String, String>,
    find: impl Fn(&str) -> Option<PathBuf>,
    title: &str,
    body: &str,
) -> Option<Notifier> {
    match os {
        "macos" => Some(Notifier {
            program: find("osascript")?,
            // The script is fixed; the text arrives as `argv`.
            args: vec![
                "-e".into(),
                "on run argv".into(),
                "-e".into(),
                "display notification (item 2 of argv) with title (item 1 of argv)".into(),
                "-e".into(),
                "end run".into(),
                title.into(),
                body.into(),
            ],
        }),
        "linux" | "freebsd" | "openbsd" | "netbsd" | "dragonfly" => {
            let session = ["DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"]
                .iter()
                .any(|var| env.get(*var).is_some_and(|v| !v.is_empty()));
            if !session {
                return None;
            }
            Some(Notifier {
                program: find("notify-send")?,
                args: vec![
                    "--app-name=orch".into(),
                    "--".into(),
                    title.into(),
                    body.into(),
                ],
            })
        }
        _ => None,
    }
}

/// `name` on `path` (a `PATH`-style list), if it is a file.
pub fn find_on_path(path: Option<&OsString>, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Notify that a mission ended, if wanted and possible. Waits at most
/// `NOTIFY_TIMEOUT`; every failure is silent (a notification is a nicety).
pub async fn mission_ended(enabled: bool, title: &str, body: &str) {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    if !wanted(enabled, &env) {
        return;
    }
    let path = std::env::var_os("PATH");
    let Some(notifier) = notifier(
        std::env::consts::OS,
        &env,
        |name| find_on_path(path.as_ref(), name),
        title,
        body,
    ) else {
        return;
    };
    let args: Vec<OsString> = notifier.args.iter().map(OsString::from).collect();
    let cancel = tokio_util::sync::CancellationToken::new();
    let root = std::env::temp_dir();
    // Through the launcher: its own process group, killed at the timeout;
    // any failure is silent.
    let _ = process::run(Job {
        program: Program::Exec(notifier.program.as_os_str(), &args),
        root: &root,
        timeout: NOTIFY_TIMEOUT,
        cancel: &cancel,
        keep: Keep::Tail(1024),
        env: scrubbed_env(std::env::vars_os()),
        live: None,
        sandbox: None,
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ci_and_the_config_turn_notifications_off() {
        assert!(wanted(true, &env(&[])));
        assert!(!wanted(false, &env(&[])));
        assert!(!wanted(true, &env(&[("CI", "1")])));
        assert!(!wanted(true, &env(&[("CI", "true")])));
        assert!(wanted(true, &env(&[("CI", "false")])));
    }

    #[test]
    fn text_travels_as_arguments_never_through_a_shell() {
        let hostile = "done'; rm -rf ~; echo \"$(id)\"";
        let found = |name: &str| Some(PathBuf::from(format!("/usr/bin/{name}")));
        let linux = notifier(
            "linux",
            &env(&[("DISPLAY", ":0")]),
            found,
            "orch: mission complete",
            hostile,
        )
        .unwrap();
        assert_eq!(linux.program, PathBuf::from("/usr/bin/notify-send"));
        assert_eq!(linux.args.last().map(String::as_str), Some(hostile));
        let mac = notifier("macos", &env(&[]), found, "t", hostile).unwrap();
        assert_eq!(mac.program, PathBuf::from("/usr/bin/osascript"));
        assert_eq!(mac.args[mac.args.len() - 2..], ["t", hostile]);
        // The script itself never contains the text.
        assert!(
            mac.args
                .iter()
                .filter(|a| a.contains("argv"))
                .all(|a| !a.contains(hostile))
        );
    }

    #[test]
    fn no_notifier_no_session_or_another_platform_means_silence() {
        let missing = |_: &str| None;
        let found = |name: &str| Some(PathBuf::from(name));
        assert_eq!(
            notifier("linux", &env(&[("DISPLAY", ":0")]), missing, "t", "b"),
            None
        );
        assert_eq!(notifier("linux", &env(&[]), found, "t", "b"), None);
        assert_eq!(notifier("windows", &env(&[]), found, "t", "b"), None);
    }

    #[test]
    fn programs_are_found_on_path_only_when_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("notify-send");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find_on_path(Some(&path), "notify-send"), None);
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_on_path(Some(&path), "notify-send"), Some(script));
        assert_eq!(find_on_path(None, "notify-send"), None);
    }
}
