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

    /// Show an app's config vars (KEY, VALUE).
    Config(ConfigArgs),

    /// Set config vars, all in one new release (one rolling restart).
    ///
    /// Each ASSIGNMENT is KEY=VALUE, split at the first `=`, so the value may hold `=`;
    /// quote values with spaces: `gigalixir config:set A=1 B="two words"`. Keys are
    /// letters, digits and underscores, not starting with a digit.
    #[command(name = "config:set")]
    ConfigSet(ConfigSetArgs),

    /// Remove config vars, all in one new release.
    #[command(name = "config:unset")]
    ConfigUnset(ConfigUnsetArgs),

    /// Copy every config var of one app into another (the source's values win), in one
    /// new release of the destination.
    #[command(name = "config:copy")]
    ConfigCopy(ConfigCopyArgs),

    /// Show an app's replicas (REPLICA, STATUS, VERSION, SINCE).
    Ps(PsArgs),

    /// Set how many replicas an app runs (0–16), and how much memory each has.
    #[command(name = "ps:scale")]
    PsScale(ScaleArgs),

    /// Restart an app's replicas, one at a time, each new one healthy before the old one
    /// stops.
    #[command(alias = "ps:restart")]
    Restart(RestartArgs),

    /// Print an app's log: the last lines, then new ones as they come until Ctrl-C.
    Logs(LogsArgs),
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
        alias = "app_name",
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

/// `config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Print the config as a JSON object, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `config:set`.
#[derive(Debug, Args)]
pub struct ConfigSetArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Store the config without a new release or restart; the app gets it with its next
    /// release (push or config change).
    #[arg(long = "no_restart", alias = "no-restart")]
    pub no_restart: bool,
    /// KEY=VALUE pairs.
    #[arg(value_name = "ASSIGNMENT", required = true)]
    pub assignments: Vec<String>,
}

/// `config:unset`.
#[derive(Debug, Args)]
pub struct ConfigUnsetArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The keys to remove.
    #[arg(value_name = "KEY", required = true)]
    pub keys: Vec<String>,
}

/// `config:copy`.
#[derive(Debug, Args)]
pub struct ConfigCopyArgs {
    /// The app to copy the config from.
    #[arg(short = 's', long = "src_app_name", alias = "src", value_name = "SRC")]
    pub src: String,
    /// The app to copy the config into.
    #[arg(short = 'd', long = "dst_app_name", alias = "dst", value_name = "DST")]
    pub dst: String,
    /// Copy without asking (it never asks when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Print the status as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `ps:scale`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["replicas", "size"])))]
pub struct ScaleArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// How many replicas to run, 0 to 16.
    #[arg(short = 'r', long, value_name = "N", allow_negative_numbers = true)]
    pub replicas: Option<i64>,
    /// GB of memory per replica, 0.2 to 8.
    #[arg(short = 's', long, value_name = "GB", allow_negative_numbers = true)]
    pub size: Option<f64>,
}

/// `restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// How many past lines to print first [default: 30].
    #[arg(short = 'n', long = "num", value_name = "N")]
    pub num: Option<usize>,
    /// Print the past lines and exit instead of following the log.
    #[arg(short = 't', long = "no_tail", alias = "no-tail")]
    pub no_tail: bool,
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

    #[test]
    fn config_and_process_commands_parse_with_gigalixirs_flags() {
        match parse(&[
            "config:set",
            "-a",
            "x-app",
            "--no_restart",
            "A=1",
            "B=two words=3",
        ]) {
            Command::ConfigSet(a) => {
                assert!(a.no_restart);
                assert_eq!(a.app.app.as_deref(), Some("x-app"));
                assert_eq!(a.assignments, ["A=1", "B=two words=3"]);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["config:unset", "A", "B"]) {
            Command::ConfigUnset(a) => assert_eq!(a.keys, ["A", "B"]),
            other => panic!("{other:?}"),
        }
        match parse(&["config:copy", "-s", "src-app", "-d", "dst-app"]) {
            Command::ConfigCopy(a) => {
                assert_eq!(
                    (a.src.as_str(), a.dst.as_str(), a.yes),
                    ("src-app", "dst-app", false)
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["config", "--app_name", "x-app", "--json"]),
            Command::Config(ConfigArgs { json: true, .. })
        ));
        match parse(&["ps:scale", "-r", "-1"]) {
            Command::PsScale(a) => assert_eq!((a.replicas, a.size), (Some(-1), None)),
            other => panic!("{other:?}"),
        }
        match parse(&["ps:scale", "--size", "1.5"]) {
            Command::PsScale(a) => assert_eq!((a.replicas, a.size), (None, Some(1.5))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&["ps:restart"]), Command::Restart(_)));
        assert!(matches!(
            parse(&["restart", "-a", "x-app"]),
            Command::Restart(_)
        ));
        assert!(matches!(
            parse(&["ps", "--json"]),
            Command::Ps(PsArgs { json: true, .. })
        ));
        match parse(&["logs", "-n", "20", "--no_tail"]) {
            Command::Logs(a) => assert_eq!((a.num, a.no_tail), (Some(20), true)),
            other => panic!("{other:?}"),
        }
        match parse(&["logs"]) {
            Command::Logs(a) => assert_eq!((a.num, a.no_tail), (None, false)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_missing_what_they_need_are_usage_errors() {
        for args in [
            &["config:set"][..],
            &["config:unset"],
            &["config:copy", "-s", "a-app"],
            &["ps:scale"],
        ] {
            let mut argv = vec!["gigalixir"];
            argv.extend_from_slice(args);
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
        }
    }
}
