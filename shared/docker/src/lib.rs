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

/// The longest line kept of a build's or an app's output; the rest of a longer one is
/// dropped, and the line says so.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Splits a byte stream into lines, keeping an unfinished last line for later (at most
/// [`MAX_LINE_BYTES`] of it: memory never holds more of one line).
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    /// The current line was cut: its rest, up to the next newline, is dropped.
    cutting: bool,
}

fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_owned()
}

impl LineSplitter {
    pub(crate) fn push(&mut self, mut chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|b| *b == b'\n');
            let (part, rest) = match newline {
                Some(pos) => (&chunk[..pos], &chunk[pos + 1..]),
                None => (chunk, &[][..]),
            };
            if !self.cutting {
                let room = MAX_LINE_BYTES.saturating_sub(self.pending.len());
                self.pending
                    .extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    let mut line = text(&std::mem::take(&mut self.pending));
                    line.push_str(&format!(" [line cut at {} kB]", MAX_LINE_BYTES >> 10));
                    out.push(line);
                    self.cutting = true;
                }
            }
            if newline.is_some() {
                if self.cutting {
                    self.cutting = false;
                } else {
                    out.push(text(&std::mem::take(&mut self.pending)));
                }
            }
            chunk = rest;
        }
        out
    }

    pub(crate) fn finish(&mut self) -> Option<String> {
        self.cutting = false;
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

    #[test]
    fn a_line_longer_than_the_cap_is_cut_and_says_so() {
        let mut s = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let mut lines = s.push(b"before\n");
        for piece in long.chunks(1000) {
            lines.extend(s.push(piece));
        }
        assert!(s.pending.len() <= MAX_LINE_BYTES);
        lines.extend(s.push(b"yyy\nafter\n"));
        assert_eq!(
            lines.len(),
            3,
            "{:?}",
            lines.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        assert_eq!(lines[0], "before");
        assert!(lines[1].starts_with("xxx") && lines[1].ends_with("[line cut at 64 kB]"));
        assert_eq!(
            lines[1].len(),
            MAX_LINE_BYTES + " [line cut at 64 kB]".len()
        );
        assert_eq!(lines[2], "after");
    }
}
