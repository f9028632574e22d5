//! The app's bare repository, kept in the blob store between pushes as a tar, unpacked
//! into a temporary directory for the length of one request.

use std::path::{Path, PathBuf};

use shared::domain::AppName;
use shared::ports::Blobs;
use shared::PortError;

use crate::error::{ReceiveError, Result};

/// Largest push accepted, and largest repository kept.
pub const MAX_REPO_BYTES: u64 = 1 << 30;

/// A repository unpacked for one request; removed when dropped.
pub struct Checkout {
    /// Holds the directory.
    pub dir: tempfile::TempDir,
    /// `GIT_PROJECT_ROOT`: the directory holding `APP.git`.
    pub root: PathBuf,
    /// The bare repository itself.
    pub git_dir: PathBuf,
}

async fn git(args: &[&str], dir: &Path) -> Result<()> {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .await?;
    if !out.status.success() {
        return Err(ReceiveError::Git(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// How every repository is served, given to git in its environment
/// ([`crate::cgi::start`]) rather than written into each one (seven `git config` runs cost
/// some 30 ms per request).
pub const SETTINGS: [(&str, &str); 7] = [
    ("http.receivepack", "true"),
    ("http.uploadpack", "true"),
    ("receive.denyNonFastForwards", "false"),
    ("receive.denyDeletes", "false"),
    // Keepalives during a quiet pre-receive hook (a long compile) keep proxies from
    // dropping the connection.
    ("receive.keepAlive", "5"),
    ("receive.maxInputSize", "1073741824"),
    ("core.logAllRefUpdates", "false"),
];

/// Unpacks the app's repository (or makes an empty one) and puts its pre-receive hook in
/// place.
pub async fn fetch(blobs: &dyn Blobs, app: &AppName, hook_exe: &Path) -> Result<Checkout> {
    let dir = tempfile::Builder::new().prefix("gx-receive-").tempdir()?;
    let root = dir.path().join("repos");
    let git_dir = root.join(format!("{app}.git"));
    std::fs::create_dir_all(&root)?;
    // Streamed from the blob store into place: a repository costs disk, not memory.
    match blobs.get_stream(&shared::blob_keys::repo(app)).await {
        Ok(stream) => {
            use futures::TryStreamExt;
            let reader = tokio_util::io::StreamReader::new(
                shared::ports::blobs::capped(stream, MAX_REPO_BYTES)
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
            let target = git_dir.clone();
            tokio::task::spawn_blocking(move || {
                tar::Archive::new(tokio_util::io::SyncIoBridge::new(reader)).unpack(&target)
            })
            .await??;
        }
        Err(PortError::NotFound) => {
            git(
                &[
                    "init",
                    "--bare",
                    "--quiet",
                    "--initial-branch=master",
                    &git_dir.to_string_lossy(),
                ],
                &root,
            )
            .await?;
        }
        Err(err) => return Err(err.into()),
    }
    let hooks = git_dir.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let hook = hooks.join("pre-receive");
    let script = format!(
        "#!/bin/sh\nexec '{}' __git-hook pre-receive\n",
        hook_exe.display().to_string().replace('\'', "'\\''")
    );
    std::fs::write(&hook, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(Checkout { dir, root, git_dir })
}

/// Packs the repository back into the blob store (hooks excluded: they are per request),
/// through a file beside the checkout.
pub async fn store(blobs: &dyn Blobs, app: &AppName, checkout: &Checkout) -> Result<()> {
    let git_dir = checkout.git_dir.clone();
    let path = checkout.dir.path().join("repo.tar");
    let file = std::fs::File::create(&path)?;
    let size = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
        builder.follow_symlinks(false);
        for entry in std::fs::read_dir(&git_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == "hooks" {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                builder.append_dir_all(&name, &path)?;
            } else {
                builder.append_path_with_name(&path, &name)?;
            }
        }
        let file = builder
            .into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    })
    .await??;
    if size > MAX_REPO_BYTES {
        return Err(ReceiveError::RepositoryTooLarge);
    }
    let file = tokio::fs::File::open(&path).await?;
    let stream = {
        use futures::TryStreamExt;
        tokio_util::io::ReaderStream::new(file).map_err(shared::PortError::unavailable)
    };
    blobs
        .put_stream(&shared::blob_keys::repo(app), Box::pin(stream))
        .await?;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(())
}
