//! The platform's core: the validated domain types, the records, the pipeline messages and
//! the wire types of the API, the ports (store, bus, blobs, builder, runtime) with their
//! contracts, and the names every part agrees on (blob keys, lock names, the deployment's
//! topics and settings). No I/O: the CLI depends on this crate alone.

pub mod blob_keys;
pub mod deployment;
pub mod domain;
pub mod error;
pub mod lines;
pub mod lock_keys;
pub mod messages;
pub mod mixlock;
pub mod model;
pub mod ports;
pub mod stack;
pub mod wire;

pub use error::{PortError, PortResult};
