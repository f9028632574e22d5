//! Everything two or more parts of the platform share: the validated domain types, the
//! records, the pipeline messages, the ports (bus, store, blobs) with their contracts,
//! their embedded implementations, and the Pub/Sub push glue every function uses.
//!
//! Layers by weight: the default build has no I/O dependency, so the CLI compiles the wire
//! types alone. `embedded` adds the SQLite and directory backends, `http` the axum glue,
//! `contract` the conformance suites.

pub mod blob_keys;
pub mod cleanup;
pub mod deployment;
pub mod domain;
pub mod error;
pub mod messages;
pub mod mixlock;
pub mod model;
pub mod ports;
pub mod stack;
pub mod wire;

#[cfg(feature = "embedded")]
pub mod archive;
#[cfg(feature = "http")]
pub mod auth;
#[cfg(feature = "embedded")]
pub mod backends;
#[cfg(feature = "contract")]
pub mod contract;
#[cfg(feature = "http")]
pub mod dead_letters;
#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "fakes")]
pub mod fakes;
#[cfg(any(feature = "gcs", feature = "firestore", feature = "pubsub"))]
pub mod gcp;
#[cfg(feature = "embedded")]
pub mod gitfetch;
#[cfg(feature = "hex")]
pub mod hex;
#[cfg(feature = "kube")]
pub mod kube_runtime;
#[cfg(feature = "embedded")]
pub mod locks;
#[cfg(feature = "http")]
pub mod push;
#[cfg(feature = "http")]
pub mod pushauth;
#[cfg(all(feature = "http", feature = "embedded"))]
pub mod service;
#[cfg(feature = "http")]
pub mod web;

pub use error::{PortError, PortResult};
