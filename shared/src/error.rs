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
}

impl PortError {
    /// Wraps a backend failure.
    pub fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(err.into())
    }

    /// Whether retrying the same call later may give another answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Shorthand for port results.
pub type PortResult<T> = Result<T, PortError>;
