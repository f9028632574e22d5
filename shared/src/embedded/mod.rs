//! The single-machine backends: SQLite for the store and the bus, a directory for blobs.

mod fs_blobs;
mod sqlite;
mod sqlite_bus;
mod sqlite_store;

pub use fs_blobs::FsBlobs;
pub use sqlite_bus::SqliteBus;
pub use sqlite_store::SqliteStore;
