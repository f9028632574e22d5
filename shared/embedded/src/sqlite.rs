//! One SQLite connection shared by a backend, used from blocking threads.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ErrorCode};

use crate::error::{PortError, PortResult};

/// A connection behind a mutex; SQLite serialises writers anyway, and one connection keeps
/// transactions simple.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating) the database file and applies `schema`.
    pub(crate) fn open(path: &Path, schema: &str) -> PortResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(PortError::unavailable)?;
        }
        let conn = Connection::open(path).map_err(PortError::unavailable)?;
        // WAL lets a second process (a restarted platform, a test) read while one writes;
        // the busy timeout waits out the other's write instead of failing.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(PortError::unavailable)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(PortError::unavailable)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(PortError::unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(PortError::unavailable)?;
        conn.execute_batch(schema).map_err(PortError::unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection in this thread (schema migrations at open).
    pub(crate) fn blocking_call<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> PortResult<T>,
    ) -> PortResult<T> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| PortError::unavailable("sqlite connection poisoned"))?;
        f(&mut guard)
    }

    /// Runs `f` on the connection in a blocking thread.
    pub(crate) async fn call<T, F>(&self, f: F) -> PortResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> PortResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| PortError::unavailable("sqlite connection poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(PortError::unavailable)?
    }
}

/// Maps SQLite errors onto the port's meanings.
pub(crate) fn map_err(err: rusqlite::Error) -> PortError {
    match &err {
        rusqlite::Error::QueryReturnedNoRows => PortError::NotFound,
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation => {
            PortError::AlreadyExists
        }
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::DiskFull => PortError::NoSpace,
        _ => PortError::unavailable(err),
    }
}

/// Serialises a record to its JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> PortResult<String> {
    serde_json::to_string(value).map_err(PortError::unavailable)
}

/// Reads a record from its JSON column.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> PortResult<T> {
    serde_json::from_str(text).map_err(PortError::unavailable)
}

/// Milliseconds since the epoch, the time unit of every SQLite column here.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
