//! `gigalixir`: the command-line client of the platform.
//!
//! It speaks the platform's HTTP JSON API at `GIGALIXIR_API_URL` (default
//! `http://localhost:5080`) with HTTP Basic `email:api_key`, the key kept in netrc by
//! `gigalixir login` — the same entry `git push` uses. Commands come in the seed's syntax
//! (`gigalixir create user`, `gigalixir create app NAME`) and in GIGALIXIR's colon forms
//! (`apps:create`, `apps:info`, `account:api_key:reset`, …).
//!
//! This file is transport only: parse the command line, run the command, print an error as
//! one `error: …` line on stderr, and exit 1 (clap exits 2 on usage errors; the SSH
//! commands exit with the code of what they ran).
//!
//! - [`args`]: the command line;
//! - [`commands`]: what each command does;
//! - [`client`]: the API client;
//! - [`netrc`]: reading and editing netrc without disturbing the rest of the file;
//! - [`git`]: the `gigalixir` remote;
//! - [`prompt`]: questions at the terminal.

mod args;
mod client;
mod commands;
mod git;
mod netrc;
mod prompt;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A bug should read as one line too, not as a panic report.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!("error: internal error in gigalixir ({what}); please report it");
    }));
    let cli = args::Cli::parse();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<commands::Exit>() {
            Some(commands::Exit(code)) => ExitCode::from(*code),
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Whether the output was cut short by its reader (`gigalixir apps | head -1`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
