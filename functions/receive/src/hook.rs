//! The pre-receive hook: a relay between `git receive-pack` and the receive function.
//!
//! git runs the hook with the pushed objects in quarantine and the ref updates on stdin.
//! The hook sends both (the updates, and the variables that locate the quarantined objects)
//! over the Unix socket the function listens on for this push, then copies every line it
//! gets back to stderr — git forwards them to the pusher as `remote:` lines — and exits
//! with the status the function sends last. A non-zero status rejects the push: no ref
//! moves.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use shared::domain::GitSha;

/// The variable naming the socket of this push.
pub const SOCKET_ENV: &str = "GIGALIXIR_HOOK_SOCKET";
/// The first argument that turns a platform binary into the hook.
pub const HOOK_ARG: &str = "__git-hook";
/// Prefix of the last line the function sends: the exit status.
pub const EXIT_PREFIX: &str = "\u{0}exit ";

/// One ref update, as git gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefUpdate {
    /// Old object id (all zeros: a new ref).
    pub old: GitSha,
    /// New object id (all zeros: a deletion).
    pub new: GitSha,
    /// Full ref name, `refs/heads/master`.
    pub name: String,
}

/// What the hook sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookRequest {
    /// The updates.
    pub updates: Vec<RefUpdate>,
    /// `GIT_*` variables locating the quarantined objects.
    pub env: BTreeMap<String, String>,
}

/// Parses git's `old new ref` lines.
pub fn parse_updates(input: &str) -> Vec<RefUpdate> {
    input
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some(RefUpdate {
                old: GitSha::parse(parts.next()?).ok()?,
                new: GitSha::parse(parts.next()?).ok()?,
                name: parts.next()?.to_owned(),
            })
        })
        .collect()
}

/// The hook's `main`.
pub fn main() -> ExitCode {
    match relay() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: the platform could not process this push ({err}); try again");
            ExitCode::from(1)
        }
    }
}

fn relay() -> std::io::Result<u8> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let env = std::env::vars()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "GIT_OBJECT_DIRECTORY" | "GIT_ALTERNATE_OBJECT_DIRECTORIES" | "GIT_QUARANTINE_PATH"
            )
        })
        .collect();
    let request = HookRequest {
        updates: parse_updates(&input),
        env,
    };
    let path = std::env::var(SOCKET_ENV)
        .map_err(|_| std::io::Error::other("the hook was started outside a push"))?;
    let mut socket = std::os::unix::net::UnixStream::connect(path)?;
    let mut line = serde_json::to_vec(&request)?;
    line.push(b'\n');
    socket.write_all(&line)?;
    let mut stderr = std::io::stderr();
    for line in BufReader::new(socket).lines() {
        let line = line?;
        if let Some(code) = line.strip_prefix(EXIT_PREFIX) {
            return Ok(code.trim().parse().unwrap_or(1));
        }
        writeln!(stderr, "{line}")?;
        stderr.flush()?;
    }
    Err(std::io::Error::other(
        "the platform closed the connection early",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_parse() {
        let input = "0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 refs/heads/master\nbad\n";
        let u = parse_updates(input);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].name, "refs/heads/master");
    }
}
