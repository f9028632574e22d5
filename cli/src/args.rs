//! The command line: every command, in the seed's syntax (`create user`, `create app NAME`)
//! and in GIGALIXIR's colon forms (`apps:create`, `account:api_key:reset`).

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Getting started:
  gigalixir signup                 create an account
  gigalixir login                  save your API key in ~/.netrc (used by git push too)
  gigalixir create app my-app      inside your project: creates the app and the `gigalixir` remote
  git push gigalixir main          deploy

Environment:
  GIGALIXIR_API_URL   the platform [default: http://localhost:5080]
  GIGALIXIR_APP       the app for app commands, when -a is not given
  NETRC               the netrc file [default: ~/.netrc]";

/// Deploy Elixir apps with `git push`: accounts, API keys and apps on a gigalixir platform.
#[derive(Debug, Parser)]
#[command(name = "gigalixir", version, after_help = AFTER_HELP)]
#[command(subcommand_required = true, arg_required_else_help = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account (`create user`) or an app (`create app NAME`, `create -n NAME`).
    #[command(args_conflicts_with_subcommands = true)]
    Create(CreateArgs),

    /// Create an account; then run `gigalixir login`.
    Signup(SignupArgs),

    /// Log in and save an API key in netrc for the API and git.
    ///
    /// Asks for your email and password (or takes -e/-p), gets a new API key, and saves it as
    /// the netrc entry `machine HOST login EMAIL password KEY`, where HOST is the host of
    /// GIGALIXIR_API_URL; git and curl use the same entry. The rest of the file is kept byte
    /// for byte; a malformed file is left alone. Other machines stay logged in.
    Login(LoginArgs),

    /// Remove the platform's entry from netrc (the rest of the file is kept).
    ///
    /// The key itself stays valid until it expires; `gigalixir account:api_key:reset` revokes
    /// every key of the account.
    Logout,

    /// Show your account: email, tier and when it was created.
    Account,

    /// Revoke every API key of your account and save a new one in netrc.
    ///
    /// Needs your password. Every other machine must then run `gigalixir login` again.
    #[command(name = "account:api_key:reset")]
    ApiKeyReset(ResetArgs),

    /// List your apps (NAME, REPLICAS, SIZE, STACK).
    Apps(ListArgs),

    /// Create an app; inside a git repository, also add the `gigalixir` remote.
    #[command(name = "apps:create")]
    AppsCreate(AppsCreateArgs),

    /// Show an app's details.
    #[command(name = "apps:info")]
    AppsInfo(InfoArgs),

    /// Destroy an app for good (asks you to type its name, unless -y).
    #[command(name = "apps:destroy")]
    AppsDestroy(DestroyArgs),

    /// Point this repository's `gigalixir` git remote at an app.
    #[command(name = "git:remote")]
    GitRemote(GitRemoteArgs),

    /// List an app's releases, newest first (VERSION, STATUS, SHA, CREATED, SUMMARY).
    Releases(ReleasesArgs),
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What to create.
    #[command(subcommand)]
    pub what: Option<CreateWhat>,
    /// The app's name (like `apps:create -n`); without one, the platform picks a name.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
}

/// `create user` / `create app`.
#[derive(Debug, Subcommand)]
pub enum CreateWhat {
    /// Create an account; then run `gigalixir login`.
    User(SignupArgs),
    /// Create an app; inside a git repository, also add the `gigalixir` remote.
    App(CreateAppArgs),
}

/// `signup` / `create user`.
#[derive(Debug, Args)]
pub struct SignupArgs {
    /// Your email (asked when not given).
    #[arg(short = 'e', long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// A password of at least 8 characters (asked, hidden, when not given; on the command
    /// line it is visible to other users of this machine).
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,
}

/// `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Your email (asked when not given).
    #[arg(short = 'e', long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Your password (asked, hidden, when not given).
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Save the key in netrc without asking (needed when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `account:api_key:reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Your password (asked, hidden, when not given).
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Save the new key in netrc without asking (needed when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `create app`.
#[derive(Debug, Args)]
pub struct CreateAppArgs {
    /// The app's name: 3–63 lowercase letters, digits and hyphens, starting with a letter.
    /// Without one, the platform picks a name.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

/// `apps:create`.
#[derive(Debug, Args)]
pub struct AppsCreateArgs {
    /// The app's name: 3–63 lowercase letters, digits and hyphens, starting with a letter.
    /// Without one, the platform picks a name.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
}

/// `apps`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the apps as a JSON array, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Which app a command is about.
#[derive(Debug, Args)]
pub struct AppArg {
    /// The app [default: GIGALIXIR_APP, else the app of this repository's `gigalixir`
    /// git remote].
    #[arg(
        short = 'a',
        long = "app",
        value_name = "NAME",
        env = "GIGALIXIR_APP",
        hide_env = true
    )]
    pub app: Option<String>,
}

/// `apps:info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Print the app as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `apps:destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Destroy without asking (needed when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `releases`.
#[derive(Debug, Args)]
pub struct ReleasesArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Print the releases as a JSON array, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `git:remote`.
#[derive(Debug, Args)]
pub struct GitRemoteArgs {
    /// The app the remote should deploy to.
    #[arg(value_name = "NAME", required_unless_present = "app")]
    pub name: Option<String>,
    /// The app (same as NAME).
    #[arg(
        short = 'a',
        long = "app",
        value_name = "NAME",
        conflicts_with = "name"
    )]
    pub app: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Command {
        let mut argv = vec!["gigalixir"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").command
    }

    #[test]
    fn seed_and_colon_forms_parse() {
        assert!(matches!(
            parse(&["create", "user", "-e", "a@b.co"]),
            Command::Create(CreateArgs {
                what: Some(CreateWhat::User(_)),
                ..
            })
        ));
        assert!(matches!(
            parse(&["create", "app", "my-app"]),
            Command::Create(CreateArgs {
                what: Some(CreateWhat::App(CreateAppArgs { name: Some(_) })),
                ..
            })
        ));
        assert!(matches!(
            parse(&["create", "-n", "my-app"]),
            Command::Create(CreateArgs {
                what: None,
                name: Some(_)
            })
        ));
        assert!(matches!(
            parse(&["apps:create", "-n", "my-app"]),
            Command::AppsCreate(AppsCreateArgs { name: Some(_) })
        ));
        assert!(matches!(
            parse(&["account:api_key:reset", "-y"]),
            Command::ApiKeyReset(ResetArgs { yes: true, .. })
        ));
        assert!(matches!(
            parse(&["git:remote", "my-app"]),
            Command::GitRemote(_)
        ));
        assert!(matches!(
            parse(&["git:remote", "-a", "my-app"]),
            Command::GitRemote(_)
        ));
        assert!(matches!(
            parse(&["apps:destroy", "-a", "x-app", "-y"]),
            Command::AppsDestroy(DestroyArgs { yes: true, .. })
        ));
        assert!(matches!(
            parse(&["releases"]),
            Command::Releases(ReleasesArgs { json: false, .. })
        ));
        match parse(&["releases", "-a", "x-app", "--json"]) {
            Command::Releases(ReleasesArgs {
                app: AppArg { app: Some(app) },
                json: true,
            }) => assert_eq!(app, "x-app"),
            other => panic!("{other:?}"),
        }
    }
}
