//! The ports: what a function needs from the outside world, as traits with written
//! contracts. Each has an embedded implementation (one machine, no setup) and a cloud one;
//! the suites in `contract` hold every implementation to the same behaviour.

pub mod blobs;
pub mod builder;
pub mod bus;
pub mod databases;
pub mod runtime;
pub mod store;

pub use blobs::Blobs;
pub use builder::Builder;
pub use bus::{Ack, Bus, PushEndpoint, SubscriptionSpec};
pub use databases::Databases;
pub use runtime::Runtime;
pub use store::{LockState, Store};
