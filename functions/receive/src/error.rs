//! What can go wrong while the platform serves git: each kind says what failed, in words a
//! pusher can act on, and none of them names a credential.

use shared::PortError;

/// A git request or a push the platform could not carry out.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The store, bus or blob store failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The local disk, or starting a process, failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A blocking task died.
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// git failed or answered something unexpected.
    #[error("{0}")]
    Git(String),
    /// The repository is larger than the platform keeps.
    #[error("the repository is larger than 1 GB")]
    RepositoryTooLarge,
    /// The push lost the app's push lock while it ran (its process was paused past the
    /// lock's life): a newer push holds it now.
    #[error("this push lost the app's push lock while it ran; its repository is not stored (push again)")]
    LostLock,
}

/// The result of the receive function's own work.
pub type Result<T, E = ReceiveError> = std::result::Result<T, E>;
