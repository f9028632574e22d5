//! Store locks held by live work: taken for a short time and renewed by a heartbeat while
//! the work runs, so that a lock whose holder died (a killed platform, a function instance
//! gone) frees itself within [`HELD_TTL`] instead of after the longest the work could take.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{PortError, PortResult};
use crate::ports::Store;

pub use gigalixir_core::lock_keys::{deploy_lock, push_lock, release_lock};

/// How long a held lock outlives its last heartbeat.
pub const HELD_TTL: Duration = Duration::from_secs(30);

static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process for the locks its work holds: `FAMILY/BOOT`, where a process that
/// starts again in the same family (the one-process platform on its data directory) frees
/// what its dead predecessor held ([`free_dead`]). Set once, at start; later calls change
/// nothing.
pub fn set_process(family: &str) {
    let _ = PROCESS.set(format!("{family}/{}", uuid::Uuid::new_v4()));
}

/// The holder name of one piece of work (a push, a deploy) of this process:
/// `FAMILY/BOOT/WORK`.
pub fn holder(work: &str) -> String {
    let process = PROCESS.get_or_init(|| format!("process/{}", uuid::Uuid::new_v4()));
    format!("{process}/{work}")
}

/// Frees at once every lock held by an earlier process of `family` (which must be unique
/// to this process's work: another live process of the same family would lose its locks).
/// Run at start, before any work takes a lock.
pub async fn free_dead(store: &dyn Store, family: &str) -> PortResult<u64> {
    store.free_locks_of(&format!("{family}/")).await
}

/// Whether the push that started `build` is gone: it was made by a `git push` whose
/// receiver held the app's push lock as `build.pusher`, and no longer holds it (the
/// receiver died; a new push may hold it now). Builds from webhooks have no pusher.
pub async fn pusher_gone(store: &dyn Store, build: &crate::model::Build) -> PortResult<bool> {
    let Some(pusher) = &build.pusher else {
        return Ok(false);
    };
    let state = store.lock_state(&push_lock(&build.app)).await?;
    Ok(state.is_none_or(|s| &s.holder != pusher))
}

/// A lock this process holds; renewed every third of [`HELD_TTL`] until
/// [`release`](Held::release)d or dropped (then it expires by itself).
pub struct Held {
    store: Arc<dyn Store>,
    name: String,
    holder: String,
    fence: u64,
    lost: Arc<std::sync::atomic::AtomicBool>,
    beat: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Takes `name` for `holder` if it is free (or already `holder`'s, or expired);
    /// [`PortError::Precondition`] when someone else holds it.
    pub async fn take(store: &Arc<dyn Store>, name: &str, holder: &str) -> PortResult<Self> {
        use std::sync::atomic::Ordering;
        let fence = store.try_lock(name, holder, HELD_TTL).await?;
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (beat_store, beat_name, beat_holder, beat_lost) = (
            store.clone(),
            name.to_owned(),
            holder.to_owned(),
            lost.clone(),
        );
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HELD_TTL / 3).await;
                match beat_store
                    .try_lock(&beat_name, &beat_holder, HELD_TTL)
                    .await
                {
                    Ok(now) if now == fence => {}
                    // Another holder had it in between (this process was paused): what it
                    // wrote must not be overwritten, so this work gives the lock up.
                    Ok(_) => {
                        beat_lost.store(true, Ordering::SeqCst);
                        let _ = beat_store.unlock(&beat_name, &beat_holder).await;
                        tracing::warn!(lock = %beat_name, "a held lock was lost (another holder had it meanwhile)");
                        return;
                    }
                    Err(PortError::Precondition) => {
                        beat_lost.store(true, Ordering::SeqCst);
                        tracing::warn!(lock = %beat_name, "a held lock was taken over (a heartbeat came too late)");
                        return;
                    }
                    // The store may come back; the lock lasts HELD_TTL meanwhile.
                    Err(err) => {
                        tracing::warn!(lock = %beat_name, error = %err, "renewing a held lock")
                    }
                }
            }
        });
        Ok(Self {
            store: store.clone(),
            name: name.to_owned(),
            holder: holder.to_owned(),
            fence,
            lost,
            beat,
        })
    }

    /// [`take`](Held::take), trying again every 50–250 ms while someone else holds it, for
    /// up to `wait`; then [`PortError::Precondition`].
    pub async fn take_waiting(
        store: &Arc<dyn Store>,
        name: &str,
        holder: &str,
        wait: Duration,
    ) -> PortResult<Self> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match Self::take(store, name, holder).await {
                Err(PortError::Precondition) if started.elapsed() < wait => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                other => return other,
            }
        }
    }

    /// The fencing token this lock was taken with.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Checks, just before a write the lock guards, that this work still holds the lock
    /// with its own fencing token: [`PortError::Precondition`] if another holder had it
    /// meanwhile (this process was paused past the lock's life), so that it does not write
    /// over the newer holder's work. The check and the write are two steps: a pause longer
    /// than the lock's life between them is not caught (the write itself is not fenced).
    pub async fn check(&self) -> PortResult<()> {
        if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PortError::Precondition);
        }
        match self.store.lock_state(&self.name).await? {
            Some(s) if s.holder == self.holder && s.fence == self.fence => Ok(()),
            _ => Err(PortError::Precondition),
        }
    }

    /// Frees the lock now.
    pub async fn release(self) {
        self.beat.abort();
        if let Err(err) = self.store.unlock(&self.name, &self.holder).await {
            tracing::warn!(lock = %self.name, error = %err, "could not free a lock; it expires by itself");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.beat.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::SqliteStore;

    #[tokio::test]
    async fn a_holder_that_lost_its_lock_is_fenced_off() {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store"));
        let a = Held::take(&store, "deploy:x", "run-1/a").await.expect("a");
        a.check().await.expect("a holds it");
        // a's process is declared dead (a restart frees its locks); b takes the lock
        assert_eq!(free_dead(&*store, "run-1").await.expect("free"), 1);
        let b = Held::take(&store, "deploy:x", "run-2/b").await.expect("b");
        assert!(b.fence() > a.fence());
        assert!(matches!(a.check().await, Err(PortError::Precondition)));
        b.check().await.expect("b holds it");
        b.release().await;
        assert!(matches!(a.check().await, Err(PortError::Precondition)));
        // a, resumed, takes the lock again under its old name: a new token, still fenced off
        let again = store
            .try_lock("deploy:x", "run-1/a", HELD_TTL)
            .await
            .expect("free again");
        assert!(again > a.fence());
        assert!(matches!(a.check().await, Err(PortError::Precondition)));
    }
}
