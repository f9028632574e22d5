//! The single-machine backends: SQLite for the store and the bus, a directory for blobs.

mod fs_blobs;
mod sqlite;
mod sqlite_bus;
mod sqlite_store;

// The core's modules, by the paths the modules of this crate use.
use gigalixir_core::{blob_keys, domain, error, messages, model, ports};

pub use fs_blobs::FsBlobs;
pub use sqlite_bus::SqliteBus;
pub use sqlite_store::SqliteStore;
