//! The Docker engine (through bollard) as the builder and the single-machine runtime.
//!
//! Every container and network carries the label `gigalixir.instance=<instance>`, so one
//! platform (or one test) finds and removes exactly what it made.

mod builder;
pub mod guard;
mod runtime;

// The core's modules, by the paths the modules of this crate use.
use gigalixir_core::{blob_keys, domain, error, lock_keys, model, ports, stack};
use gigalixir_local::{archive, gitfetch};

use std::collections::HashMap;

use bollard::Docker;

pub use builder::DockerBuilder;
pub use runtime::DockerRuntime;

use crate::error::PortError;

/// Label naming the platform instance that owns a container or network.
pub const LABEL_INSTANCE: &str = "gigalixir.instance";
/// Label naming the app of a container.
pub const LABEL_APP: &str = "gigalixir.app";
/// Label naming the build of a build container.
pub const LABEL_BUILD: &str = "gigalixir.build";
/// Label of a build container kept running between an app's builds (a warm builder): its
/// value fingerprints what it was made for (image, cache volume, limits); it is named
/// `gx-build-<build>` while it holds a build, `gx-build-<instance>-<app>-idle-…` between.
pub const LABEL_WARM: &str = "gigalixir.warm-build";
/// Label naming the release version of an app container.
pub const LABEL_RELEASE: &str = "gigalixir.release";

/// Connects to the local engine (`DOCKER_HOST` or the default socket).
pub fn connect() -> Result<Docker, PortError> {
    Docker::connect_with_local_defaults().map_err(PortError::unavailable)
}

/// Maps engine errors onto the port's meanings.
pub(crate) fn map_err(err: bollard::errors::Error) -> PortError {
    use bollard::errors::Error as E;
    match &err {
        E::DockerResponseServerError {
            status_code: 404, ..
        } => PortError::NotFound,
        E::DockerResponseServerError {
            status_code: 409, ..
        } => PortError::AlreadyExists,
        _ => PortError::unavailable(err),
    }
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub use gigalixir_core::lines::{LineSplitter, MAX_LINE_BYTES};
