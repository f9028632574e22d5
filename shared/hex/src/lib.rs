//! The platform's Hex package cache: a read-only Hex repository (the layout of Hex's
//! repository specification) that pulls from an upstream, hex.pm by default. Builds fetch
//! their Hex packages from it and reach nothing else; the build step holds every build to
//! its mix.lock against it ([`HexCache::check_lock`]).

pub mod cache;
pub mod registry;
pub mod router;

// The core's modules, by the paths the modules of this crate use.
use gigalixir_core::{blob_keys, error, mixlock, ports};
#[cfg(test)]
use gigalixir_embedded as embedded;
use gigalixir_function::web;

pub use cache::{Freshness, HexCache, HexError, HexSettings, LockReport};
