//! The Docker engine (through bollard) as the builder and the single-machine runtime.
//!
//! Every container and network carries the label `gigalixir.instance=<instance>`, so one
//! platform (or one test) finds and removes exactly what it made.

mod builder;
mod runtime;

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

/// Splits a byte stream into lines, keeping an unfinished last line for later.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            out.push(
                String::from_utf8_lossy(&line[..line.len() - 1])
                    .trim_end_matches('\r')
                    .to_owned(),
            );
        }
        out
    }

    pub(crate) fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            None
        } else {
            let rest = std::mem::take(&mut self.pending);
            Some(String::from_utf8_lossy(&rest).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"one\ntw"), vec!["one"]);
        assert_eq!(s.push(b"o\r\nthree"), vec!["two"]);
        assert_eq!(s.finish().as_deref(), Some("three"));
        assert_eq!(s.finish(), None);
    }
}
