//! Questions asked at the terminal. Nothing here waits on a pipe or on /dev/null: without
//! a terminal on stdin the caller is told which flag supplies the answer instead.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};

/// Whether there is someone at a terminal to ask.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// `given`, or else the answer to `question` (a visible line), or else an error naming
/// `flag`.
pub fn value_or_ask(given: Option<String>, question: &str, flag: &str) -> anyhow::Result<String> {
    if let Some(value) = given {
        return Ok(value);
    }
    if !interactive() {
        bail!("{flag} is missing and there is no terminal to ask on: pass {flag}");
    }
    line(question)
}

/// `given`, or else a password typed without echo (twice when `confirm`), or else an error
/// naming `flag`.
pub fn password_or_ask(
    given: Option<String>,
    question: &str,
    flag: &str,
    confirm: bool,
) -> anyhow::Result<String> {
    if let Some(value) = given {
        return Ok(value);
    }
    if !interactive() {
        bail!("{flag} is missing and there is no terminal to ask on: pass {flag}");
    }
    let first = rpassword::prompt_password(question).context("cannot read the password")?;
    if confirm {
        let again =
            rpassword::prompt_password("Confirm password: ").context("cannot read the password")?;
        if again != first {
            bail!("the two passwords differ: nothing was done; run the command again");
        }
    }
    Ok(first)
}

/// One line typed at the terminal, trimmed.
pub fn line(question: &str) -> anyhow::Result<String> {
    let mut stderr = std::io::stderr();
    // The question goes to stderr so that stdout stays clean for scripts.
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut answer = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read from the terminal")?;
    if read == 0 {
        bail!("no answer (end of input): nothing was done");
    }
    Ok(answer.trim().to_owned())
}

/// A yes/no question whose default is no.
pub fn yes_no(question: &str) -> anyhow::Result<bool> {
    let answer = line(&format!("{question} [y/N] "))?;
    Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// A yes/no question whose default is yes.
pub fn yes_no_default_yes(question: &str) -> anyhow::Result<bool> {
    let answer = line(&format!("{question} [Y/n] "))?;
    Ok(!matches!(answer.to_ascii_lowercase().as_str(), "n" | "no"))
}

/// Checks, before anything happens, that something needing confirmation can get one:
/// `yes` (-y), or a terminal to ask on later; else an error saying to pass -y to `action`.
pub fn can_confirm(yes: bool, action: &str) -> anyhow::Result<()> {
    if !yes && !interactive() {
        bail!("refusing to {action} without confirmation (no terminal to ask on): pass -y to {action}");
    }
    Ok(())
}

/// Goes ahead when `yes` (-y) or when the person at the terminal says yes to `question`
/// (default no); else an error saying `nothing` (what was left undone).
pub fn confirm(yes: bool, question: &str, nothing: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !interactive() {
        bail!("no terminal to ask on: pass -y to go ahead; {nothing}");
    }
    if !yes_no(question)? {
        bail!("{nothing}");
    }
    Ok(())
}
