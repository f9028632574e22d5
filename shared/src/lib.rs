//! Everything two or more parts of the platform share, by layer, in crates of their own
//! (the way kube-rs splits kube-core, kube-client and kube-runtime behind `kube`):
//!
//! - `gigalixir-core`: the domain and wire types, the pipeline messages, the ports with
//!   their contracts, the names every part agrees on. No I/O: the CLI depends on it alone.
//! - `gigalixir-function` (feature `http` or `embedded`): the function runtime — backends by
//!   URL, serving, push handling, API keys, store locks.
//! - the adapters, one crate per backend: `gigalixir-embedded` (SQLite, a directory),
//!   `gigalixir-docker`, `gigalixir-kube`, `gigalixir-gcp`; `gigalixir-local` (tar and git
//!   on this machine's disk); `gigalixir-hex` (the package cache).
//! - `gigalixir-contract` (features `contract`, `fakes`): the ports' conformance suites and
//!   the in-memory builder and runtime of the steps' handler tests.
//!
//! This crate re-exports them under the paths the functions use (`shared::domain`,
//! `shared::embedded`, …), each behind the feature of the same name.

pub use gigalixir_core::{
    blob_keys, deployment, domain, error, lock_keys, messages, mixlock, model, ports, stack, wire,
    PortError, PortResult,
};

#[cfg(feature = "contract")]
pub use gigalixir_contract as contract;
#[cfg(feature = "fakes")]
pub use gigalixir_contract::fakes;
#[cfg(feature = "contract")]
pub use gigalixir_contract::{
    blobs_contract, bus_contract, contract_tests, runtime_contract, store_contract,
};
#[cfg(feature = "docker")]
pub use gigalixir_docker as docker;
#[cfg(feature = "embedded")]
pub use gigalixir_embedded as embedded;
#[cfg(feature = "http")]
pub use gigalixir_function::{auth, dead_letters, push, pushauth, service, web};
#[cfg(any(feature = "embedded", feature = "http"))]
pub use gigalixir_function::{backends, cleanup, locks};
#[cfg(any(feature = "gcs", feature = "firestore", feature = "pubsub"))]
pub use gigalixir_gcp as gcp;
#[cfg(feature = "hex")]
pub use gigalixir_hex as hex;
#[cfg(feature = "kube")]
pub use gigalixir_kube as kube_runtime;
#[cfg(feature = "embedded")]
pub use gigalixir_local::{archive, gitfetch};
