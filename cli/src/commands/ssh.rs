//! SSH: the account's keys (`account:ssh_keys`, `account:ssh_keys:add`,
//! `account:ssh_keys:remove`) and the commands that run the real `ssh` into one of an app's
//! replicas (`ps:ssh`, `ps:run`, `ps:remote_console`, `ps:migrate`).
//!
//! The replicas' SSH servers admit the login `app` with the account's keys, on a port
//! published on the platform's loopback; their host keys change at every boot, so ssh is
//! told not to check or remember them. `ssh` inherits the terminal, and its exit code
//! becomes the command's.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{anyhow, bail, Context};
use gigalixir_core::domain::AppName;
use gigalixir_core::wire::{SshAccess, SshKeyView};

use super::apps::not_found;
use super::{say, Ctx, Exit};
use crate::args::{PsMigrateArgs, PsRunArgs, PsSshArgs, SshOnlyArgs, SshOptions};
use crate::client::ApiError;

/// What an account without keys is told.
const NO_KEYS: &str = "you have no SSH keys yet: add one with `gigalixir account:ssh_keys:add \"$(cat ~/.ssh/id_ed25519.pub)\"` (no key at all? make one with `ssh-keygen -t ed25519`)";

/// Largest key file read by `account:ssh_keys:add`.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// `account:ssh_keys`.
pub fn list(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let auth = ctx.auth()?;
    let keys = ctx.client.ssh_keys(&auth)?;
    if json {
        return say(serde_json::to_string_pretty(&keys)?);
    }
    say(render(&keys))
}

/// The key's type and comment, without its data: `ssh-ed25519 ada@laptop`.
fn summary(key: &str) -> String {
    let mut words = key.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let comment: Vec<&str> = words.skip(1).collect();
    if comment.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} {}", comment.join(" "))
    }
}

fn render(keys: &[SshKeyView]) -> String {
    if keys.is_empty() {
        return "You have no SSH keys yet: add one with `gigalixir account:ssh_keys:add \"$(cat ~/.ssh/id_ed25519.pub)\"`.".to_owned();
    }
    let rows: Vec<[String; 3]> = keys
        .iter()
        .map(|k| [k.id.clone(), k.fingerprint.clone(), summary(&k.key)])
        .collect();
    super::table(["ID", "FINGERPRINT", "KEY"], &rows)
}

/// The key `account:ssh_keys:add` was given: the contents of the file it names, else the
/// text itself. A private key is refused here, before it travels anywhere.
fn key_text(given: &str, home: Option<&Path>) -> anyhow::Result<String> {
    let trimmed = given.trim();
    if trimmed.is_empty() {
        bail!("the key is empty: give your public key, e.g. `gigalixir account:ssh_keys:add \"$(cat ~/.ssh/id_ed25519.pub)\"`");
    }
    let path = expand_home(trimmed, home);
    let (text, source) = if path.is_file() {
        let size = std::fs::metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        if size > MAX_KEY_FILE_BYTES {
            bail!(
                "{} is {size} bytes, too large for a public key file: give the .pub file of your key",
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} as text", path.display()))?;
        (text, Some(path))
    } else if trimmed.contains(char::is_whitespace)
        || ["ssh-", "ecdsa-", "sk-"]
            .iter()
            .any(|p| trimmed.starts_with(p))
    {
        (trimmed.to_owned(), None)
    } else {
        bail!(
            "no file `{trimmed}`: give the public key itself (`ssh-ed25519 AAAA… comment`) or the path of a .pub file"
        );
    };
    if text.contains("PRIVATE KEY") {
        return Err(match source {
            Some(path) => anyhow!(
                "{} is a private key: never share it; give its public key instead ({}.pub)",
                path.display(),
                path.display()
            ),
            None => anyhow!(
                "that is a private key: never share it; give the public key instead (the contents of the .pub file)"
            ),
        });
    }
    Ok(text.trim().to_owned())
}

/// `~/x` as a path under `home`.
fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// `account:ssh_keys:add KEY`.
pub fn add(ctx: &Ctx, given: &str) -> anyhow::Result<()> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let key = key_text(given, home.as_deref())?;
    let auth = ctx.auth()?;
    let added = ctx.client.add_ssh_key(&auth, &key)?;
    say(format!(
        "Added SSH key {} ({}), id {}.\nYour apps' replicas admit it within a minute: then `gigalixir ps:ssh` connects.",
        added.fingerprint,
        summary(&added.key),
        added.id
    ))
}

/// `account:ssh_keys:remove ID`.
pub fn remove(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let auth = ctx.auth()?;
    ctx.client
        .remove_ssh_key(&auth, id.trim())
        .map_err(|e| match e {
            ApiError::NotFound(_) => anyhow!(
                "you have no SSH key with id `{}`: `gigalixir account:ssh_keys` lists yours",
                id.trim()
            ),
            e => anyhow!(e),
        })?;
    say(format!(
        "Removed SSH key {}: your apps' replicas refuse it within a minute (open sessions go on).",
        id.trim()
    ))
}

/// Whether ssh gets a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tty {
    /// `-t` when our stdin is a terminal, else `-T` (input piped in).
    IfInteractive,
    /// `-T`: the command's output only, as it is.
    Never,
}

/// `ps:ssh [CMD...]`.
pub fn ssh(ctx: &Ctx, args: PsSshArgs) -> anyhow::Result<()> {
    let remote = remote_command(&args.command);
    connect(ctx, args.ssh, remote, Tty::IfInteractive)
}

/// `ps:run CMD...`.
pub fn run(ctx: &Ctx, args: PsRunArgs) -> anyhow::Result<()> {
    let remote = remote_command(&args.command);
    connect(ctx, args.ssh, remote, Tty::IfInteractive)
}

/// `ps:remote_console`.
pub fn remote_console(ctx: &Ctx, args: SshOnlyArgs) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() {
        eprintln!(
            "Leave the console with Ctrl-\\ (or Ctrl-G then q): q() and System.halt() stop the app's node."
        );
    }
    connect(
        ctx,
        args.ssh,
        Some("gigalixir-remote-console".to_owned()),
        Tty::IfInteractive,
    )
}

/// `ps:migrate`.
pub fn migrate(ctx: &Ctx, args: PsMigrateArgs) -> anyhow::Result<()> {
    if let Some(inner) = &args.migration_app_name {
        eprintln!(
            "note: -m {inner} is not needed here and is ignored: ps:migrate evaluates <Release>.Release.migrate() of the app's release (for an umbrella, define it in the release's main app), or the config var GIGALIXIR_MIGRATE_EVAL when set (e.g. `gigalixir config:set GIGALIXIR_MIGRATE_EVAL='MyApp.Release.migrate()'`)."
        );
    }
    connect(
        ctx,
        args.ssh,
        Some("gigalixir-migrate".to_owned()),
        Tty::Never,
    )
}

/// Looks everything up, then runs ssh into the chosen replica.
fn connect(ctx: &Ctx, opts: SshOptions, remote: Option<String>, tty: Tty) -> anyhow::Result<()> {
    let name = ctx.app(opts.app.app)?;
    let mut user_opts = Vec::new();
    for given in &opts.ssh_opts {
        user_opts
            .extend(split_words(given).map_err(|why| anyhow!("cannot read -o `{given}`: {why}"))?);
    }
    let program = opts.ssh_cmd;
    if !on_path(&program, std::env::var_os("PATH")) {
        bail!(missing_program(&program));
    }
    let auth = ctx.auth()?;
    if ctx.client.ssh_keys(&auth)?.is_empty() {
        bail!(NO_KEYS);
    }
    let access = ctx.client.ssh_access(&auth, &name).map_err(|e| match e {
        ApiError::NotFound(m) if !m.contains("not found") => anyhow!(m),
        e => not_found(&name)(e),
    })?;
    let (host, port) = target(&name, &access, opts.replica)?;
    let identity = std::env::var("GIGALIXIR_IDENTITY_FILE")
        .ok()
        .filter(|f| !f.trim().is_empty());
    let tty = match tty {
        Tty::IfInteractive => std::io::stdin().is_terminal(),
        Tty::Never => false,
    };
    let argv = ssh_argv(&SshCall {
        user_opts: &user_opts,
        identity: identity.as_deref(),
        tty,
        user: &access.ssh_user,
        host: &host,
        port,
        remote: remote.as_deref(),
    });
    run_ssh(&program, &argv)
}

/// The replica to connect to: `-r INDEX`, else the first running one.
fn target(
    name: &AppName,
    access: &SshAccess,
    replica: Option<u32>,
) -> anyhow::Result<(String, u16)> {
    let Some(index) = replica else {
        return Ok((access.ssh_ip.clone(), access.ssh_port));
    };
    match access.replicas.iter().find(|r| r.index == index) {
        Some(r) => Ok((r.host.clone(), r.port)),
        None => {
            let mut running: Vec<String> = access
                .replicas
                .iter()
                .map(|r| r.index.to_string())
                .collect();
            running.dedup();
            bail!(
                "replica {index} of {name} is not running: pick one of {} with -r (`gigalixir ps` lists them)",
                running.join(", ")
            )
        }
    }
}

/// How to call ssh.
struct SshCall<'a> {
    /// What `-o` gave, word by word; it comes first so that it wins (ssh keeps the first
    /// value of each setting).
    user_opts: &'a [String],
    /// `GIGALIXIR_IDENTITY_FILE`.
    identity: Option<&'a str>,
    /// `-t` rather than `-T`.
    tty: bool,
    user: &'a str,
    host: &'a str,
    port: u16,
    /// The command line to run there; none for a shell.
    remote: Option<&'a str>,
}

/// ssh's options that take an argument (OpenSSH 9's `ssh` getopt string).
const SSH_OPTS_WITH_ARG: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Whether the words hold one of `flags` as an ssh option (`-t`, `-vt`, `-i file`), or an
/// `-o` setting whose name (lower case) is in `settings`, read the way ssh's getopt reads
/// them.
fn has_option(words: &[String], flags: &[char], settings: &[&str]) -> bool {
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let Some(letters) = word
            .strip_prefix('-')
            .filter(|l| !l.is_empty() && *l != "-")
        else {
            continue;
        };
        for (i, c) in letters.char_indices() {
            if flags.contains(&c) {
                return true;
            }
            if SSH_OPTS_WITH_ARG.contains(c) {
                let inline = &letters[i + c.len_utf8()..];
                let arg = if inline.is_empty() {
                    words.next().map(String::as_str).unwrap_or_default()
                } else {
                    inline
                };
                if c == 'o' {
                    let setting = arg.to_ascii_lowercase();
                    let name = setting
                        .split(|c: char| c == '=' || c.is_ascii_whitespace())
                        .next()
                        .unwrap_or_default();
                    if settings.contains(&name) {
                        return true;
                    }
                }
                break;
            }
        }
    }
    false
}

/// The arguments of ssh: the user's options, then ours, then `-- user@host [command]`.
fn ssh_argv(call: &SshCall<'_>) -> Vec<String> {
    let mut argv: Vec<String> = call.user_opts.to_vec();
    argv.extend(
        [
            "-p",
            &call.port.to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ]
        .map(str::to_owned),
    );
    if let Some(identity) = call.identity {
        if !has_option(call.user_opts, &['i'], &["identityfile"]) {
            argv.extend(["-i".to_owned(), identity.to_owned()]);
        }
    }
    if !has_option(call.user_opts, &['t', 'T'], &["requesttty"]) {
        argv.push(if call.tty { "-t" } else { "-T" }.to_owned());
    }
    argv.push("--".to_owned());
    argv.push(format!("{}@{}", call.user, call.host));
    if let Some(remote) = call.remote {
        argv.push(remote.to_owned());
    }
    argv
}

/// The command line to run in the replica: one argument as it is (a shell command line, as
/// `ssh host 'CMD'` takes it), several each quoted so that the replica sees them as given.
fn remote_command(args: &[String]) -> Option<String> {
    match args {
        [] => None,
        [one] if !one.trim().is_empty() => Some(one.clone()),
        many => Some(
            many.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    }
}

/// `s` quoted for a POSIX shell, left as it is when it needs no quotes (like Python's
/// `shlex.quote`, which GIGALIXIR's CLI uses).
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

/// Splits `-o`'s text into words the way a POSIX shell would (quotes and backslashes; no
/// expansions).
fn split_words(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("a single quote is not closed"),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("a double quote is not closed"),
                        },
                        Some(c) => w.push(c),
                        None => return Err("a double quote is not closed"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("it ends with a backslash"),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// Whether `program` can be run: a path that exists, or a name found on `path`.
fn on_path(program: &str, path: Option<OsString>) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    path.is_some_and(|p| std::env::split_paths(&p).any(|dir| dir.join(program).is_file()))
}

fn missing_program(program: &str) -> String {
    if program == "ssh" {
        "ssh is not installed (or not on PATH): install OpenSSH's client (Debian/Ubuntu: `sudo apt-get install openssh-client`; macOS has it), or name another ssh program with -c".to_owned()
    } else {
        format!("cannot find the ssh program `{program}` given with -c: check its name or path")
    }
}

/// Runs ssh with the terminal, and ends with its exit code.
fn run_ssh(program: &str, argv: &[String]) -> anyhow::Result<()> {
    let status = match Command::new(program).args(argv).status() {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(missing_program(program)),
        Err(e) => bail!("cannot run `{program}`: {e}"),
    };
    match exit_code(status) {
        0 => Ok(()),
        255 => {
            eprintln!(
                "error: ssh failed (exit code 255). If it said `Permission denied (publickey)`, the replica does not admit the key ssh offered: check `gigalixir account:ssh_keys` (a new key takes up to a minute to reach the replicas) and give ssh that key's private half with GIGALIXIR_IDENTITY_FILE or -o \"-i FILE\"."
            );
            Err(Exit(255).into())
        }
        code => Err(Exit(code).into()),
    }
}

/// A child's exit code as a shell reports it: its code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + (signal & 0x7f)).unwrap_or(1);
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use gigalixir_core::wire::SshReplica;

    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrloD7x9w/v15IUUUg24mSXyzhSvsi63NaloVoYCMTw ada@laptop";

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| (*w).to_owned()).collect()
    }

    fn call<'a>(
        user_opts: &'a [String],
        identity: Option<&'a str>,
        tty: bool,
        remote: Option<&'a str>,
    ) -> SshCall<'a> {
        SshCall {
            user_opts,
            identity,
            tty,
            user: "app",
            host: "127.0.0.1",
            port: 32768,
            remote,
        }
    }

    const OURS: [&str; 8] = [
        "-p",
        "32768",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ];

    #[test]
    fn ssh_gets_the_port_no_host_key_checks_and_the_command_last() {
        let argv = ssh_argv(&call(&[], None, false, Some("echo hi")));
        let mut want = words(&OURS);
        want.extend(words(&["-T", "--", "app@127.0.0.1", "echo hi"]));
        assert_eq!(argv, want);

        let argv = ssh_argv(&call(&[], Some("/keys/id_ed25519"), true, None));
        let mut want = words(&OURS);
        want.extend(words(&[
            "-i",
            "/keys/id_ed25519",
            "-t",
            "--",
            "app@127.0.0.1",
        ]));
        assert_eq!(argv, want);
    }

    #[test]
    fn the_users_options_come_first_and_replace_ours() {
        let user = words(&["-i", "/other", "-tt", "-o", "LogLevel=DEBUG"]);
        let argv = ssh_argv(&call(&user, Some("/keys/id"), false, Some("ls")));
        let mut want = user.clone();
        want.extend(words(&OURS));
        want.extend(words(&["--", "app@127.0.0.1", "ls"]));
        assert_eq!(argv, want, "no -i and no -T of ours");

        for (opts, flags, settings, has) in [
            (&["-T"][..], &['t', 'T'][..], &[][..], true),
            (&["-vt"], &['t', 'T'], &[], true),
            (&["-oStrictHostKeyChecking=yes"], &['t', 'T'], &[], false),
            (&["-o", "ForwardAgent=no"], &['t', 'T'], &[], false),
            (&["-p", "22", "-v"], &['t', 'T'], &[], false),
            (&["-L", "4000:localhost:4000"], &['t', 'T'], &[], false),
            (&["-ifile"], &['i'], &["identityfile"], true),
            (&["-o", "IdentityFile=/k"], &['i'], &["identityfile"], true),
            (&["-o", "identityfile /k"], &['i'], &["identityfile"], true),
            (
                &["-o", "RequestTTY=force"],
                &['t', 'T'],
                &["requesttty"],
                true,
            ),
            (&["-F", "/cfg-with-t"], &['t', 'T'], &[], false),
        ] {
            assert_eq!(has_option(&words(opts), flags, settings), has, "{opts:?}");
        }
    }

    #[test]
    fn commands_are_passed_so_the_replica_sees_them_as_given() {
        assert_eq!(remote_command(&[]), None);
        assert_eq!(
            remote_command(&words(&["echo $PORT && ls"])).as_deref(),
            Some("echo $PORT && ls")
        );
        assert_eq!(
            remote_command(&words(&["bin/hello", "eval", "IO.puts 1+1"])).as_deref(),
            Some("bin/hello eval 'IO.puts 1+1'")
        );
        assert_eq!(
            remote_command(&words(&["echo", "it's", "", "-n"])).as_deref(),
            Some("echo 'it'\"'\"'s' '' -n")
        );
        assert_eq!(
            shell_quote("a-b_c.d/e:f=g@h%i+j,k"),
            "a-b_c.d/e:f=g@h%i+j,k"
        );
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("é"), "'é'");
    }

    #[test]
    fn ssh_options_split_like_a_shell() {
        assert_eq!(
            split_words("  -i ~/.ssh/k   -o 'ProxyCommand=nc %h %p' -v").expect("ok"),
            words(&["-i", "~/.ssh/k", "-o", "ProxyCommand=nc %h %p", "-v"])
        );
        assert_eq!(
            split_words(r#"-o "A=\"b\" c" x\ y ''"#).expect("ok"),
            words(&["-o", "A=\"b\" c", "x y", ""])
        );
        assert_eq!(split_words("").expect("ok"), Vec::<String>::new());
        assert!(split_words("-o 'open").is_err());
        assert!(split_words("-o \"open").is_err());
        assert!(split_words("x\\").is_err());
    }

    fn access() -> SshAccess {
        let r = |index, port, version| SshReplica {
            index,
            host: "127.0.0.1".into(),
            port,
            version,
        };
        SshAccess {
            ssh_ip: "127.0.0.1".into(),
            ssh_port: 40000,
            ssh_user: "app".into(),
            replicas: vec![r(0, 40000, 4), r(0, 30000, 3), r(2, 40002, 4)],
        }
    }

    #[test]
    fn replicas_are_chosen_by_slot() {
        let name = AppName::parse("my-app").expect("name");
        assert_eq!(
            target(&name, &access(), None).expect("first"),
            ("127.0.0.1".to_owned(), 40000)
        );
        assert_eq!(
            target(&name, &access(), Some(2)).expect("slot 2"),
            ("127.0.0.1".to_owned(), 40002)
        );
        assert_eq!(
            target(&name, &access(), Some(0)).expect("slot 0, newest"),
            ("127.0.0.1".to_owned(), 40000)
        );
        let e = target(&name, &access(), Some(1)).expect_err("not running");
        assert_eq!(
            e.to_string(),
            "replica 1 of my-app is not running: pick one of 0, 2 with -r (`gigalixir ps` lists them)"
        );
    }

    #[test]
    fn keys_are_given_as_text_or_as_a_pub_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path();
        std::fs::create_dir(home.join(".ssh")).expect("mkdir");
        std::fs::write(home.join(".ssh/id_ed25519.pub"), format!("{KEY}\n")).expect("write");
        std::fs::write(
            home.join(".ssh/id_ed25519"),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nxxx\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .expect("write");

        assert_eq!(
            key_text(&format!(" {KEY}\n"), Some(home)).expect("text"),
            KEY
        );
        assert_eq!(
            key_text("~/.ssh/id_ed25519.pub", Some(home)).expect("file"),
            KEY
        );
        let abs = home.join(".ssh/id_ed25519.pub");
        assert_eq!(
            key_text(abs.to_str().expect("utf-8"), None).expect("file"),
            KEY
        );
        // Malformed text still goes to the platform, which says what is wrong with it.
        assert_eq!(key_text("ssh-ed25519", None).expect("text"), "ssh-ed25519");

        let e = key_text("~/.ssh/id_ed25519", Some(home)).expect_err("private");
        assert!(
            e.to_string().contains("is a private key: never share it"),
            "{e}"
        );
        assert!(e.to_string().ends_with("id_ed25519.pub)"), "{e}");
        let e = key_text("-----BEGIN OPENSSH PRIVATE KEY----- b3Bl", None).expect_err("private");
        assert!(e.to_string().starts_with("that is a private key"), "{e}");
        let e = key_text(" \n", Some(home)).expect_err("empty");
        assert!(e.to_string().starts_with("the key is empty"), "{e}");
        let e = key_text("~/.ssh/missing.pub", Some(home)).expect_err("missing");
        assert!(
            e.to_string().starts_with("no file `~/.ssh/missing.pub`"),
            "{e}"
        );
    }

    #[test]
    fn keys_list_as_a_table_without_their_data() {
        let at = Utc
            .with_ymd_and_hms(2024, 5, 1, 9, 0, 0)
            .single()
            .expect("date");
        let keys = vec![
            SshKeyView {
                id: "6f1c".into(),
                key: KEY.into(),
                fingerprint: "SHA256:Pz+qqGLw4LqaK/z3a+ImNfyT7m2bF86CqoFO3kqTbQM".into(),
                created_at: at,
            },
            SshKeyView {
                id: "a2".into(),
                key: "ssh-rsa AAAAB3Nza".into(),
                fingerprint: "SHA256:x".into(),
                created_at: at,
            },
        ];
        assert_eq!(
            render(&keys),
            "ID    FINGERPRINT                                         KEY\n\
             6f1c  SHA256:Pz+qqGLw4LqaK/z3a+ImNfyT7m2bF86CqoFO3kqTbQM  ssh-ed25519 ada@laptop\n\
             a2    SHA256:x                                            ssh-rsa"
        );
        assert!(render(&[])
            .starts_with("You have no SSH keys yet: add one with `gigalixir account:ssh_keys:add"));
    }

    #[test]
    fn programs_are_found_on_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("myssh"), "").expect("write");
        let path = Some(dir.path().as_os_str().to_owned());
        assert!(on_path("myssh", path.clone()));
        assert!(!on_path("nossh", path));
        assert!(!on_path("myssh", None));
        let full = dir.path().join("myssh");
        assert!(on_path(full.to_str().expect("utf-8"), None));
        assert!(missing_program("ssh").starts_with("ssh is not installed"));
    }

    #[test]
    fn exit_codes_pass_through() {
        let code = |script: &str| {
            exit_code(
                Command::new("sh")
                    .args(["-c", script])
                    .status()
                    .expect("sh runs"),
            )
        };
        assert_eq!(code("exit 0"), 0);
        assert_eq!(code("exit 3"), 3);
        assert_eq!(code("exit 255"), 255);
        assert_eq!(code("kill -TERM $$"), 128 + 15);
    }
}
