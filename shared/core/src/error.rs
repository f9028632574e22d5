//! The one error type of every port. A variant means the same thing whatever the backend,
//! so callers decide retries and HTTP statuses without knowing which backend answered.

/// What went wrong in a port call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The record, message or object does not exist.
    #[error("not found")]
    NotFound,
    /// A create met an existing record with the same key.
    #[error("already exists")]
    AlreadyExists,
    /// A conditional write found the state other than expected (lock held, wrong state).
    #[error("precondition failed")]
    Precondition,
    /// The caller passed something the backend cannot take (bad key, bad URL).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend could not be reached or failed; retrying later may succeed.
    #[error("backend unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The disk the backend writes to is full: nothing of the write was kept.
    #[error("{DISK_FULL}")]
    NoSpace,
}

/// What a write refused for lack of space says.
pub const DISK_FULL: &str = "the platform's disk is full; nothing was changed";

/// Whether `err`, or an error it was caused by, is the operating system's "no space left
/// on device" (or a quota exceeded).
pub fn is_disk_full(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) || io.raw_os_error() == Some(28)
            {
                return true;
            }
        }
        next = e.source();
    }
    false
}

impl PortError {
    /// Wraps a backend failure.
    pub fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(err.into())
    }

    /// Whether retrying the same call later may give another answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::NoSpace)
    }

    /// Wraps an I/O failure: [`PortError::NoSpace`] when the disk is full.
    pub fn from_io(err: std::io::Error) -> Self {
        if is_disk_full(&err) {
            Self::NoSpace
        } else {
            Self::unavailable(err)
        }
    }
}

/// Shorthand for port results.
pub type PortResult<T> = Result<T, PortError>;
