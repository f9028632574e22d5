//! Store locks held by live work: taken for a short time and renewed by a heartbeat while
//! the work runs, so that a lock whose holder died (a killed platform, a function instance
//! gone) frees itself within [`HELD_TTL`] instead of after the longest the work could take.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{PortError, PortResult};
use crate::ports::Store;

/// The lock a push of `app` holds while it runs (and that destroying the app takes).
pub fn push_lock(app: &crate::domain::AppName) -> String {
    format!("push:{app}")
}

/// The lock a deploy (or scale, restart) of `app` holds while it moves the app's replicas.
pub fn deploy_lock(app: &crate::domain::AppName) -> String {
    format!("deploy:{app}")
}

/// How long a held lock outlives its last heartbeat.
pub const HELD_TTL: Duration = Duration::from_secs(30);

/// A lock this process holds; renewed every third of [`HELD_TTL`] until
/// [`release`](Held::release)d or dropped (then it expires by itself).
pub struct Held {
    store: Arc<dyn Store>,
    name: String,
    holder: String,
    beat: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Takes `name` for `holder` if it is free (or already `holder`'s, or expired);
    /// [`PortError::Precondition`] when someone else holds it.
    pub async fn take(store: &Arc<dyn Store>, name: &str, holder: &str) -> PortResult<Self> {
        store.try_lock(name, holder, HELD_TTL).await?;
        let (beat_store, beat_name, beat_holder) =
            (store.clone(), name.to_owned(), holder.to_owned());
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HELD_TTL / 3).await;
                match beat_store
                    .try_lock(&beat_name, &beat_holder, HELD_TTL)
                    .await
                {
                    Ok(()) => {}
                    Err(PortError::Precondition) => {
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
            beat,
        })
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
