//! The few git operations the CLI needs, done with the real `git` command so that the
//! user's own git configuration and version decide how the repository is touched.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};

/// The name of the remote that `git push` deploys through.
pub const REMOTE: &str = "gigalixir";

/// Whether `dir` is inside a git repository. `Ok(false)` also when git is not installed:
/// the caller then says how to add the remote later.
pub fn is_repository(dir: &Path) -> bool {
    Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The URL of remote `name` in the repository around `dir`, if there is one.
pub fn remote_url(dir: &Path, name: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["remote", "get-url", name])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let url = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!url.is_empty()).then_some(url)
}

/// What [`set_remote`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteChange {
    /// The remote did not exist and was added.
    Added,
    /// The remote pointed elsewhere (the old URL) and now points to the new one.
    Replaced(String),
    /// The remote already had this URL.
    Unchanged,
}

/// Points remote `name` of the repository around `dir` at `url`, adding it if needed.
pub fn set_remote(dir: &Path, name: &str, url: &str) -> anyhow::Result<RemoteChange> {
    let (args, change) = match remote_url(dir, name) {
        Some(old) if old == url => return Ok(RemoteChange::Unchanged),
        Some(old) => (
            ["remote", "set-url", name, url],
            RemoteChange::Replaced(old),
        ),
        None => (["remote", "add", name, url], RemoteChange::Added),
    };
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!("git is not installed (or not on PATH)")
            } else {
                anyhow!(e)
            }
        })
        .context("cannot run git")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`git {}` failed: {}",
            args.join(" "),
            stderr
                .trim()
                .trim_start_matches("error: ")
                .trim_start_matches("fatal: ")
        );
    }
    Ok(change)
}

/// The app a remote URL deploys to: its last path segment without `.git`
/// (`http://localhost:5080/my-app.git` → `my-app`).
pub fn app_from_remote_url(url: &str) -> Option<String> {
    let path = url.trim().trim_end_matches('/');
    let last = path.rsplit(['/', ':']).next()?;
    let name = last.strip_suffix(".git").unwrap_or(last);
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_name_is_the_last_segment_of_the_remote() {
        assert_eq!(
            app_from_remote_url("http://localhost:5080/my-app.git").as_deref(),
            Some("my-app")
        );
        assert_eq!(
            app_from_remote_url("https://git.gigalixir.com/my-app.git/").as_deref(),
            Some("my-app")
        );
        assert_eq!(
            app_from_remote_url("http://localhost:5080/my-app").as_deref(),
            Some("my-app")
        );
        assert_eq!(
            app_from_remote_url("git@host:my-app.git").as_deref(),
            Some("my-app")
        );
        assert_eq!(app_from_remote_url(""), None);
    }

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn sets_adds_and_replaces_the_remote() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!is_repository(dir.path()));
        git(dir.path(), &["init", "-q"]);
        assert!(is_repository(dir.path()));
        assert_eq!(remote_url(dir.path(), REMOTE), None);
        let a = "http://localhost:5080/a-app.git";
        let b = "http://localhost:5080/b-app.git";
        assert_eq!(
            set_remote(dir.path(), REMOTE, a).expect("add"),
            RemoteChange::Added
        );
        assert_eq!(
            set_remote(dir.path(), REMOTE, a).expect("same"),
            RemoteChange::Unchanged
        );
        assert_eq!(
            set_remote(dir.path(), REMOTE, b).expect("replace"),
            RemoteChange::Replaced(a.into())
        );
        assert_eq!(remote_url(dir.path(), REMOTE).as_deref(), Some(b));
    }
}
