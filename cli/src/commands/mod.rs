//! What each command does. Every command returns `Ok` after printing its result to stdout,
//! or an error whose message is one sentence saying what went wrong and what to do next.

mod access;
mod account;
mod apps;
mod config;
mod databases;
mod domains;
mod drains;
mod health;
mod mfa;
mod processes;
mod releases;
mod ssh;

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use gigalixir_core::domain::AppName;

use crate::args::{Command, CreateWhat};
use crate::client::{ApiUrl, Auth, Client, DEFAULT_API_URL};
use crate::{git, netrc};

/// Runs one parsed command.
pub fn run(command: Command) -> anyhow::Result<()> {
    let ctx = Ctx::from_env()?;
    match command {
        Command::Create(args) => match (args.what, args.name) {
            (Some(CreateWhat::User(a)), _) => account::sign_up(&ctx, a),
            (Some(CreateWhat::App(a)), _) => apps::create(&ctx, a.name, a.stack),
            (None, name) => apps::create(&ctx, name, args.stack),
        },
        Command::Signup(a) => account::sign_up(&ctx, a),
        Command::Login(a) => account::log_in(&ctx, a),
        Command::Logout => account::log_out(&ctx),
        Command::Account => account::show(&ctx),
        Command::ApiKeyReset(a) => account::reset_key(&ctx, a),
        Command::AccountConfirm(a) => account::confirm(&ctx, a.token),
        Command::ConfirmationResend(a) => account::resend_confirmation(&ctx, a.email),
        Command::PasswordReset(a) => account::reset_password(&ctx, a),
        Command::PasswordSet(a) => account::set_password(&ctx, a.token, a.password),
        Command::PasswordChange(a) => account::change_password(&ctx, a),
        Command::EmailSet(a) => account::set_email(&ctx, a),
        Command::AccountDestroy(a) => account::destroy(&ctx, a),
        Command::MfaActivate(a) => mfa::activate(&ctx, a),
        Command::MfaDeactivate(a) => mfa::deactivate(&ctx, a.yes),
        Command::MfaRecoveryCodes(a) => mfa::regenerate(&ctx, a.yes),
        Command::Apps(a) => apps::list(&ctx, a.json),
        Command::AppsCreate(a) => apps::create(&ctx, a.name, a.stack),
        Command::StackSet(a) => apps::set_stack(&ctx, a.app.app, &a.stack),
        Command::AppsInfo(a) => apps::info(&ctx, a.app.app, a.json),
        Command::AppsDestroy(a) => apps::destroy(&ctx, a.app.app, a.yes),
        Command::AppsActivity(a) => access::activity(&ctx, a.app.app, a.json),
        Command::AppsTransfer(a) => access::transfer(&ctx, a),
        Command::Access(a) => access::list(&ctx, a.app.app, a.json),
        Command::AccessAdd(a) => access::add(&ctx, a),
        Command::AccessRemove(a) => access::remove(&ctx, a.app.app, &a.email),
        Command::GitRemote(a) => apps::git_remote(&ctx, a.name.or(a.app)),
        Command::Releases(a) => releases::list(&ctx, a.app.app, a.json),
        Command::Rollback(a) => releases::rollback(&ctx, a.app.app, a.version),
        Command::Config(a) => config::show(&ctx, a.app.app, a.json),
        Command::ConfigSet(a) => config::set(&ctx, a),
        Command::ConfigUnset(a) => config::unset(&ctx, a.app.app, a.keys),
        Command::ConfigCopy(a) => config::copy(&ctx, a),
        Command::Domains(a) => domains::list(&ctx, a.app.app, a.json),
        Command::DomainsAdd(a) => domains::add(&ctx, a.app.app, &a.fqdn),
        Command::DomainsRemove(a) => domains::remove(&ctx, a.app.app, &a.fqdn),
        Command::Ps(a) => processes::status(&ctx, a.app.app, a.json),
        Command::PsScale(a) => processes::scale(&ctx, a),
        Command::Health(a) => health::show(&ctx, a.app.app),
        Command::HealthSet(a) => health::set(&ctx, a),
        Command::Restart(a) => processes::restart(&ctx, a.app.app),
        Command::PsKill(a) => processes::kill(&ctx, a),
        Command::Drains(a) => drains::list(&ctx, a.app.app),
        Command::DrainsAdd(a) => drains::add(&ctx, a),
        Command::DrainsRemove(a) => drains::remove(&ctx, a),
        Command::Pg(a) => databases::list(&ctx, a.app.app),
        Command::PgCreate(a) => databases::create(&ctx, a),
        Command::PgDestroy(a) => databases::destroy(&ctx, a),
        Command::PgPsql(a) => databases::psql(&ctx, a.app.app),
        Command::PgScale(a) => databases::scale(&ctx, a),
        Command::PgRestart(a) => databases::restart(&ctx, a),
        Command::PgStop(a) => databases::stop(&ctx, a),
        Command::PgStart(a) => databases::start(&ctx, a),
        Command::PgBackups(a) => databases::backups(&ctx, a),
        Command::PgBackupsCreate(a) => databases::create_backup(&ctx, a),
        Command::PgBackupsRestore(a) => databases::restore(&ctx, a),
        Command::Canary(a) => processes::canary(&ctx, a.app.app),
        Command::CanarySet(a) => processes::set_canary(&ctx, a),
        Command::CanaryUnset(a) => processes::unset_canary(&ctx, a),
        Command::MaintenanceOn(a) => processes::maintenance(&ctx, a, true),
        Command::MaintenanceOff(a) => processes::maintenance(&ctx, a, false),
        Command::Logs(a) => processes::logs(&ctx, a),
        Command::SshKeys(a) => ssh::list(&ctx, a.json),
        Command::SshKeysAdd(a) => ssh::add(&ctx, &a.key),
        Command::SshKeysRemove(a) => ssh::remove(&ctx, &a.id),
        Command::PsSsh(a) => ssh::ssh(&ctx, a),
        Command::PsRun(a) => ssh::run(&ctx, a),
        Command::Run(a) => processes::run_job(&ctx, a),
        Command::PsRemoteConsole(a) => ssh::remote_console(&ctx, a),
        Command::PsMigrate(a) => ssh::migrate(&ctx, a),
    }
}

/// Ends the command with this exit code and no message of its own: the code of a program
/// it ran (ssh, or the command ssh ran), which said what it had to say.
#[derive(Debug)]
pub struct Exit(pub u8);

impl Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// What every command may need: the platform, the netrc file, the working directory.
pub struct Ctx {
    client: Client,
    cwd: PathBuf,
}

impl Ctx {
    fn from_env() -> anyhow::Result<Self> {
        let raw = std::env::var("GIGALIXIR_API_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        let api = ApiUrl::parse(&raw).map_err(|e| anyhow!(e))?;
        Ok(Self {
            client: Client::new(api)?,
            cwd: std::env::current_dir().context("cannot read the current directory")?,
        })
    }

    fn api(&self) -> &ApiUrl {
        self.client.api()
    }

    /// Where netrc is; asked only by the commands that use it, so that `signup` works
    /// without HOME.
    fn netrc_path(&self) -> anyhow::Result<PathBuf> {
        netrc::default_path()
    }

    /// The credentials saved by `gigalixir login`.
    fn auth(&self) -> anyhow::Result<Auth> {
        let path = self.netrc_path()?;
        let netrc = netrc::load(&path)?;
        let creds = netrc.credentials(self.api().host()).ok_or_else(|| {
            anyhow!(
                "not logged in: run `gigalixir login` ({} has no entry for `{}`)",
                path.display(),
                self.api().host()
            )
        })?;
        Ok(Auth {
            email: creds.login,
            key: creds.password,
        })
    }

    /// The app a command is about: `-a` (or `GIGALIXIR_APP`, which clap folds into it),
    /// else the app of this repository's `gigalixir` remote.
    fn app(&self, given: Option<String>) -> anyhow::Result<AppName> {
        if let Some(name) = given.filter(|n| !n.is_empty()) {
            return AppName::parse(&name).map_err(|e| {
                anyhow!("{e}: check the name given with -a or GIGALIXIR_APP (`gigalixir apps` lists yours)")
            });
        }
        let Some(url) = git::remote_url(&self.cwd, git::REMOTE) else {
            return Err(anyhow!(
                "no app given: pass -a NAME, set GIGALIXIR_APP, or run inside a repository with a `{}` remote",
                git::REMOTE
            ));
        };
        git::app_from_remote_url(&url)
            .and_then(|name| AppName::parse(&name).ok())
            .ok_or_else(|| {
                anyhow!(
                    "the `{}` git remote ({url}) does not name an app: pass -a NAME, or fix it with `gigalixir git:remote NAME`",
                    git::REMOTE
                )
            })
    }
}

/// Prints a line of output; a closed stdout (`gigalixir apps | head -1`) ends the command
/// quietly.
fn say(text: impl Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(anyhow::Error::from)
}

/// Lines of left-aligned columns two spaces apart, the header first; no line ends in
/// spaces.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.truncate(out.trim_end().len());
        out
    };
    let mut lines = vec![line(header)];
    for row in rows {
        lines.push(line(row.each_ref().map(String::as_str)));
    }
    lines.join("\n")
}
