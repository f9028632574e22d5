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
  GIGALIXIR_API_URL        the platform [default: http://localhost:5080]
  GIGALIXIR_APP            the app for app commands, when -a is not given
  GIGALIXIR_IDENTITY_FILE  the private key the ps:ssh commands give ssh (-i), unless -o has -i
  NETRC                    the netrc file [default: ~/.netrc]";

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

    /// Show your account: email, tier, when it was created, whether its email is confirmed
    /// and whether login asks for a second factor.
    Account,

    /// Confirm your email (or a new email set with `account:email:set`) with the token
    /// from the mail; then `gigalixir login`.
    #[command(name = "account:confirm")]
    AccountConfirm(AccountConfirmArgs),

    /// Mail a new confirmation link to an account whose email is not confirmed yet (no login
    /// needed).
    #[command(name = "account:confirmation:resend")]
    ConfirmationResend(EmailArgs),

    /// Forgot your password? `-e EMAIL` mails a reset token; `--token T --password P` then
    /// sets a new password with it (like `account:password:set`). No login needed.
    #[command(name = "account:password:reset")]
    PasswordReset(PasswordResetArgs),

    /// Set a new password with the token from a reset mail (`account:password:reset -e
    /// EMAIL` sends one). Every API key of the account is revoked: log in again after.
    #[command(name = "account:password:set")]
    PasswordSet(PasswordSetArgs),

    /// Change your password; every other API key of the account is revoked (this
    /// machine's stays).
    #[command(name = "account:password:change")]
    PasswordChange(PasswordChangeArgs),

    /// Change your account's email: a confirmation goes to the new one, and the account
    /// moves there once it is confirmed (`gigalixir account:confirm`).
    #[command(name = "account:email:set")]
    EmailSet(EmailSetArgs),

    /// Destroy your account and every app it owns, for good (asks first, unless -y); then
    /// remove its API key from netrc.
    #[command(name = "account:destroy")]
    AccountDestroy(AccountDestroyArgs),

    /// Turn on multi-factor authentication: add the secret to an authenticator app, enter
    /// the code it shows, and keep the recovery codes; from then on `gigalixir login` asks
    /// for a code.
    ///
    /// Without a terminal, the command prints the secret and stops; `account:mfa:activate
    /// -t CODE` then finishes with a code from it.
    #[command(name = "account:mfa:activate")]
    MfaActivate(MfaActivateArgs),

    /// Turn off multi-factor authentication: login needs the password alone again (asks
    /// first, unless -y).
    #[command(name = "account:mfa:deactivate")]
    MfaDeactivate(YesArgs),

    /// Replace your multi-factor recovery codes: the old ones stop working (asks first,
    /// unless -y).
    #[command(name = "account:mfa:recovery_codes:regenerate")]
    MfaRecoveryCodes(YesArgs),

    /// Revoke every API key of your account and save a new one in netrc.
    ///
    /// Needs your password. Every other machine must then run `gigalixir login` again.
    #[command(name = "account:api_key:reset")]
    ApiKeyReset(ResetArgs),

    /// List your SSH keys (ID, FINGERPRINT, KEY).
    #[command(name = "account:ssh_keys")]
    SshKeys(SshKeysArgs),

    /// Add an SSH public key to your account; your apps' replicas admit it within a minute.
    ///
    /// KEY is the public key line (`ssh-ed25519 AAAA… comment`, the contents of a .pub
    /// file) or the path of a .pub file. At most 50 keys per account.
    #[command(name = "account:ssh_keys:add")]
    SshKeysAdd(SshKeyAddArgs),

    /// Remove one of your SSH keys (its ID from `gigalixir account:ssh_keys`); your apps'
    /// replicas refuse it within a minute (open sessions go on).
    #[command(name = "account:ssh_keys:remove")]
    SshKeysRemove(SshKeyRemoveArgs),

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

    /// Show who did what to an app, newest first (WHEN, WHO, ACTION, DETAIL).
    #[command(name = "apps:activity")]
    AppsActivity(AppListArgs),

    /// Give an app to another account (asks first, unless -y); you stay on as a
    /// collaborator.
    #[command(name = "apps:transfer")]
    AppsTransfer(TransferArgs),

    /// Show who may use an app (EMAIL, ROLE): its owner, collaborators and viewers.
    Access(AppListArgs),

    /// Give someone with an account access to an app: a COLLABORATOR deploys, configures
    /// and reaches into it; a VIEWER only sees it. Again for someone listed: changes their
    /// role. Owner only.
    #[command(name = "access:add")]
    AccessAdd(AccessAddArgs),

    /// Take away someone's access to an app. Owner only.
    #[command(name = "access:remove")]
    AccessRemove(AccessRemoveArgs),

    /// Set the stack every later build of an app uses (bookworm: Elixir 1.14 / OTP 25,
    /// trixie: Elixir 1.18 / OTP 27, forky: Debian testing); `-s auto` goes back to choosing
    /// per build from the versions the app asks for. The next build starts from an empty
    /// build cache.
    #[command(name = "stack:set")]
    StackSet(StackSetArgs),

    /// Point this repository's `gigalixir` git remote at an app.
    #[command(name = "git:remote")]
    GitRemote(GitRemoteArgs),

    /// List an app's releases, newest first (VERSION, STATUS, SHA, CREATED, SUMMARY).
    Releases(ReleasesArgs),

    /// Roll back: a new release with the slug and the config of an earlier one
    /// (default: the one before the running release), deployed like any release.
    #[command(name = "releases:rollback")]
    Rollback(RollbackArgs),

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

    /// Show an app's custom domains (DOMAIN, CNAME TARGET).
    Domains(ConfigArgs),

    /// Make an app answer on a domain of yours: then point a CNAME (or ALIAS) record of it
    /// at the app's host, as the command says.
    #[command(name = "domains:add")]
    DomainsAdd(DomainArgs),

    /// Stop an app answering on one of its custom domains.
    #[command(name = "domains:remove")]
    DomainsRemove(DomainArgs),

    /// Show an app's replicas (REPLICA, STATUS, VERSION, SINCE).
    Ps(PsArgs),

    /// Set how many replicas an app runs (0–16), and how much memory each has.
    #[command(name = "ps:scale")]
    PsScale(ScaleArgs),

    /// Show how new replicas prove they are ready (TCP or an HTTP path), the boot timeout
    /// and the drain period.
    Health(HealthArgs),

    /// Set the health check: `--path /health [--status 200]` for HTTP, `--tcp` for a TCP
    /// connect; `--boot-timeout S`, `--drain S`. Applies from the next deploy.
    #[command(name = "health:set")]
    HealthSet(HealthSetArgs),

    /// Restart an app's replicas, one at a time, each new one healthy before the old one
    /// stops.
    #[command(alias = "ps:restart")]
    Restart(RestartArgs),

    /// Show the app's canary: the app that gets a share of its requests, and the share.
    Canary(CanaryArgs),

    /// Send WEIGHT percent of the app's new visitors to CANARY (another app of the same
    /// owner), each browser kept on one side by a cookie; 0 or 100 switches all at once.
    #[command(name = "canary:set")]
    CanarySet(CanarySetArgs),

    /// Send every request to the app again.
    #[command(name = "canary:unset")]
    CanaryUnset(CanaryUnsetArgs),

    /// Kill one replica (as `ps` names it) the way a crash would; the platform starts it
    /// again within seconds, as it does crashed replicas.
    #[command(name = "ps:kill")]
    PsKill(PsKillArgs),

    /// List the app's log drains: where its lines (replicas, jobs, builds, deploys, the
    /// router) are shipped.
    Drains(PgArgs),

    /// Ship the app's logs to URL: `https://…` (batched POSTs, Heroku's logplex framing)
    /// or `syslog+tls://HOST:PORT` (RFC 5424 over TLS). At most 5 per app.
    #[command(name = "drains:add")]
    DrainsAdd(DrainsAddArgs),

    /// Stop shipping to a drain (its id as `gigalixir drains` shows it).
    #[command(name = "drains:remove")]
    DrainsRemove(DrainsRemoveArgs),

    /// List the app's managed PostgreSQL databases: id, state, size, URL.
    Pg(PgArgs),

    /// Create a PostgreSQL database for the app: its URL becomes the app's `DATABASE_URL`
    /// (and `POOL_SIZE`) in a new release. `-s SIZE` sets its connection limit; `--free`
    /// gives a small one (4 connections).
    #[command(name = "pg:create")]
    PgCreate(PgCreateArgs),

    /// Destroy a database, its data and its backups; `DATABASE_URL` goes from the config.
    #[command(name = "pg:destroy")]
    PgDestroy(PgDbYesArgs),

    /// Open `psql` on the app's database.
    #[command(name = "pg:psql")]
    PgPsql(PgArgs),

    /// Change a database's size (its connection limit).
    #[command(name = "pg:scale")]
    PgScale(PgScaleArgs),

    /// End every session of a database (apps' pools reconnect).
    #[command(name = "pg:restart")]
    PgRestart(PgDbYesArgs),

    /// Stop a database: nobody may connect until `pg:start`.
    #[command(name = "pg:stop")]
    PgStop(PgDbYesArgs),

    /// Start a stopped database.
    #[command(name = "pg:start")]
    PgStart(PgDbArgs),

    /// List a database's backups, newest first: the daily ones (the newest 7 kept) and
    /// those taken on request.
    #[command(name = "pg:backups")]
    PgBackups(PgDbArgs),

    /// Take a backup of a database now (`pg_dump`, kept by the platform).
    #[command(name = "pg:backups:create")]
    PgBackupsCreate(PgDbArgs),

    /// Replace a database's content with a backup's (its sessions end). Asks first.
    #[command(name = "pg:backups:restore")]
    PgBackupsRestore(PgRestoreArgs),

    /// Put an app in maintenance: it keeps running (SSH, `ps:run` and deploys work), but
    /// every request gets 503 with `Retry-After` and a maintenance page: the app's own
    /// `/maintenance.html` (e.g. Phoenix's `priv/static/maintenance.html`), else a plain one.
    #[command(name = "maintenance:on")]
    MaintenanceOn(MaintenanceArgs),

    /// Take an app out of maintenance: the router sends it requests again.
    #[command(name = "maintenance:off")]
    MaintenanceOff(MaintenanceArgs),

    /// Print an app's log: the last lines, then new ones as they come until Ctrl-C.
    Logs(LogsArgs),

    /// Open a shell in one of the app's replicas over SSH, or run CMD there.
    ///
    /// The session has the app's environment (config vars, RELEASE_NODE, the cookie, …) and
    /// starts in /app. One CMD argument is run as a shell command line (`ps:ssh 'echo
    /// $PORT'`); several are run as they are, each quoted (`ps:ssh ls -la /app`). The exit
    /// code is the command's (255: ssh itself failed). Needs an SSH key on your account
    /// (`account:ssh_keys:add`) and the `ssh` program.
    #[command(name = "ps:ssh")]
    PsSsh(PsSshArgs),

    /// Run a command in one of the app's replicas, with the app's environment (like
    /// `ps:ssh CMD`).
    #[command(name = "ps:run")]
    PsRun(PsRunArgs),

    /// Run a command once as a job in a container of its own, with the app's running
    /// release and config (not in a web replica): prints its output as it comes and
    /// exits with its code. It shows in `ps` while it runs and is killed at `--timeout`
    /// (default 300 s, at most 3600; exit code 137). One CMD argument is a shell command
    /// line; several are quoted one by one.
    Run(RunArgs),

    /// Open an IEx shell on the app's running node; with input piped in, evaluate it on the
    /// node and print the results.
    ///
    /// Leave with Ctrl-\ (or Ctrl-G then q): `q()` and `System.halt()` stop the app's node.
    #[command(name = "ps:remote_console")]
    PsRemoteConsole(SshOnlyArgs),

    /// Run the app's migrations in one of its replicas and print their output.
    ///
    /// Evaluates `<Release>.Release.migrate()` of the app's release (the module `mix
    /// phx.gen.release` writes), or the config var GIGALIXIR_MIGRATE_EVAL when it is set;
    /// the exit code is the migration's.
    #[command(name = "ps:migrate")]
    PsMigrate(PsMigrateArgs),
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
    /// The app's stack (bookworm, trixie, forky); without one, each build picks the stack
    /// that has the Elixir and Erlang versions the app asks for.
    #[arg(short = 's', long = "stack", value_name = "STACK")]
    pub stack: Option<String>,
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
    /// A code from your authenticator app, or a recovery code, when the account has
    /// multi-factor authentication (asked when the platform wants one and it is not given).
    #[arg(
        short = 't',
        long = "mfa_token",
        alias = "mfa-token",
        value_name = "TOKEN"
    )]
    pub mfa_token: Option<String>,
    /// Save the key in netrc without asking (needed when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `account:confirm`.
#[derive(Debug, Args)]
pub struct AccountConfirmArgs {
    /// The token from the mail (`ID.CODE`; asked when not given).
    #[arg(short = 't', long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// Commands that take one email: `account:confirmation:resend`.
#[derive(Debug, Args)]
pub struct EmailArgs {
    /// The account's email (asked when not given).
    #[arg(short = 'e', long, value_name = "EMAIL")]
    pub email: Option<String>,
}

/// `account:password:reset`.
#[derive(Debug, Args)]
pub struct PasswordResetArgs {
    /// The account's email: a reset token is mailed to it (asked when neither -e nor
    /// --token is given).
    #[arg(short = 'e', long, value_name = "EMAIL", conflicts_with_all = ["token", "password"])]
    pub email: Option<String>,
    /// The token from the reset mail: sets a new password with it.
    #[arg(short = 't', long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The new password, with --token: at least 8 characters (asked, hidden, when not given).
    #[arg(short = 'p', long, value_name = "PASSWORD", requires = "token")]
    pub password: Option<String>,
}

/// `account:password:set`.
#[derive(Debug, Args)]
pub struct PasswordSetArgs {
    /// The token from the reset mail (asked when not given).
    #[arg(short = 't', long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The new password: at least 8 characters (asked, hidden, when not given).
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,
}

/// `account:password:change`.
#[derive(Debug, Args)]
pub struct PasswordChangeArgs {
    /// Your current password (asked, hidden, when not given).
    #[arg(
        short = 'p',
        long = "current_password",
        alias = "current-password",
        value_name = "PASSWORD"
    )]
    pub current_password: Option<String>,
    /// The new password: at least 8 characters (asked, hidden, when not given).
    #[arg(
        short = 'n',
        long = "new_password",
        alias = "new-password",
        value_name = "PASSWORD"
    )]
    pub new_password: Option<String>,
}

/// `account:email:set`.
#[derive(Debug, Args)]
pub struct EmailSetArgs {
    /// The new email (asked when not given).
    #[arg(short = 'e', long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Your password (asked, hidden, when not given).
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,
}

/// `account:destroy`.
#[derive(Debug, Args)]
pub struct AccountDestroyArgs {
    /// The account's email, to be sure which account goes (asked when not given).
    #[arg(short = 'e', long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Your password (asked, hidden, when not given).
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Destroy the account and its apps without asking (needed when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `account:mfa:activate`.
#[derive(Debug, Args)]
pub struct MfaActivateArgs {
    /// Finish an activation begun earlier: the code your authenticator app shows for the
    /// secret printed then (no new secret is made). Without it, a new secret is made and
    /// the code is asked for at the terminal.
    #[arg(
        short = 't',
        long = "mfa_token",
        alias = "mfa-token",
        value_name = "CODE"
    )]
    pub mfa_token: Option<String>,
    /// Print the recovery codes without asking whether you are ready to save them.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Commands whose only option is -y.
#[derive(Debug, Args)]
pub struct YesArgs {
    /// Go ahead without asking (needed when there is no terminal).
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
    /// The app's stack (bookworm, trixie, forky); without one, each build picks the stack
    /// that has the Elixir and Erlang versions the app asks for.
    #[arg(short = 's', long = "stack", value_name = "STACK")]
    pub stack: Option<String>,
}

/// `apps:create`.
#[derive(Debug, Args)]
pub struct AppsCreateArgs {
    /// The app's name: 3–63 lowercase letters, digits and hyphens, starting with a letter.
    /// Without one, the platform picks a name.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// The app's stack (bookworm, trixie, forky); without one, each build picks the stack
    /// that has the Elixir and Erlang versions the app asks for.
    #[arg(short = 's', long = "stack", value_name = "STACK")]
    pub stack: Option<String>,
}

/// `stack:set`.
#[derive(Debug, Args)]
pub struct StackSetArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// bookworm, trixie, forky, or auto.
    #[arg(short = 's', long = "stack", value_name = "STACK")]
    pub stack: String,
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

/// `access`, `apps:activity`.
#[derive(Debug, Args)]
pub struct AppListArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Print the list as a JSON array, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `apps:transfer`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The email of the account that will own the app.
    #[arg(value_name = "EMAIL")]
    pub email: String,
    /// Transfer without asking (needed when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `access:add`.
#[derive(Debug, Args)]
pub struct AccessAddArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The email of the account to give access.
    #[arg(value_name = "EMAIL")]
    pub email: String,
    /// COLLABORATOR (deploys, configures, reaches into the app) or VIEWER (only sees it).
    #[arg(
        long,
        value_name = "ROLE",
        default_value = "COLLABORATOR",
        value_parser = clap::builder::PossibleValuesParser::new(["COLLABORATOR", "VIEWER"]),
        ignore_case = true
    )]
    pub role: String,
}

/// `access:remove`.
#[derive(Debug, Args)]
pub struct AccessRemoveArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The email of the account whose access goes.
    #[arg(value_name = "EMAIL")]
    pub email: String,
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

/// `releases:rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The release to go back to (`3` or `v3`) [default: the one before the running one].
    #[arg(
        short = 'r',
        long = "rollback_version",
        visible_alias = "version",
        value_name = "VERSION"
    )]
    pub version: Option<String>,
}

/// `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
}

/// `health:set`.
#[derive(Debug, Args)]
pub struct HealthSetArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// HTTP path that must answer `--status` (e.g. /health).
    #[arg(long, conflicts_with = "tcp")]
    pub path: Option<String>,
    /// Go back to the TCP check (the port accepts connections).
    #[arg(long)]
    pub tcp: bool,
    /// The status the path must answer [default: 200].
    #[arg(long)]
    pub status: Option<u16>,
    /// Seconds a new replica may take to become healthy [default: 60].
    #[arg(long = "boot-timeout", value_name = "SECONDS")]
    pub boot_timeout: Option<u32>,
    /// Seconds a leaving replica gets to finish its requests [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub drain: Option<u32>,
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

/// `domains:add`, `domains:remove`.
#[derive(Debug, Args)]
pub struct DomainArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The domain, e.g. www.example.com.
    #[arg(value_name = "FQDN")]
    pub fqdn: String,
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

/// `canary`.
#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
}

/// `canary:set`.
#[derive(Debug, Args)]
pub struct CanarySetArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The canary app (default: the one set).
    #[arg(short = 'c', long = "canary_name")]
    pub canary: Option<String>,
    /// Percent of new visitors sent to the canary, 0–100 (default: 10, or the one set).
    #[arg(short = 'w', long)]
    pub weight: Option<i64>,
}

/// `canary:unset`.
#[derive(Debug, Args)]
pub struct CanaryUnsetArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The canary app.
    #[arg(short = 'c', long = "canary_name")]
    pub canary: String,
}

/// `drains:add`.
#[derive(Debug, Args)]
pub struct DrainsAddArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// `https://…` or `syslog+tls://HOST:PORT`.
    pub url: String,
}

/// `drains:remove`.
#[derive(Debug, Args)]
pub struct DrainsRemoveArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The drain's id.
    pub drain_id: String,
}

/// `pg`, `pg:psql`, `drains`: the app alone.
#[derive(Debug, Args)]
pub struct PgArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
}

/// `pg:create`.
#[derive(Debug, Args)]
pub struct PgCreateArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Size in GB as GIGALIXIR sells them (0.6, 1.7, 4, 8, 16, 32, 48, 64, 96): sets the
    /// connection limit (25 to 250).
    #[arg(short = 's', long, default_value_t = 0.6)]
    pub size: f64,
    /// A free database: 4 connections, one per app.
    #[arg(short = 'f', long)]
    pub free: bool,
    /// Major version, e.g. POSTGRES_15 (the platform runs one).
    #[arg(short = 'v', long)]
    pub version: Option<String>,
    /// Don't ask first (free databases).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Commands on one database.
#[derive(Debug, Args)]
pub struct PgDbArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The database, as `gigalixir pg` shows it.
    #[arg(short = 'd', long = "database_id")]
    pub database: String,
}

/// Commands on one database that ask first.
#[derive(Debug, Args)]
pub struct PgDbYesArgs {
    /// The app and database.
    #[command(flatten)]
    pub db: PgDbArgs,
    /// Don't ask first.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `pg:scale`.
#[derive(Debug, Args)]
pub struct PgScaleArgs {
    /// The app and database.
    #[command(flatten)]
    pub db: PgDbArgs,
    /// The new size (0.6, 1.7, 4, 8, 16, 32, 48, 64, 96).
    #[arg(short = 's', long)]
    pub size: f64,
}

/// `pg:backups:restore`.
#[derive(Debug, Args)]
pub struct PgRestoreArgs {
    /// The app and database.
    #[command(flatten)]
    pub db: PgDbArgs,
    /// The backup, as `gigalixir pg:backups` shows it.
    #[arg(short = 'b', long = "backup_id")]
    pub backup: String,
    /// Don't ask first.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `ps:kill`.
#[derive(Debug, Args)]
pub struct PsKillArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The replica, as `gigalixir ps` names it.
    #[arg(short = 'p', long)]
    pub pod: String,
    /// Don't ask first.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `maintenance:on` and `maintenance:off`.
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Don't ask first.
    #[arg(short = 'y', long)]
    pub yes: bool,
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

/// `account:ssh_keys`.
#[derive(Debug, Args)]
pub struct SshKeysArgs {
    /// Print the keys as a JSON array, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `account:ssh_keys:add`.
#[derive(Debug, Args)]
pub struct SshKeyAddArgs {
    /// The public key (`ssh-ed25519 AAAA… comment`), or the path of a .pub file.
    #[arg(value_name = "KEY")]
    pub key: String,
}

/// `account:ssh_keys:remove`.
#[derive(Debug, Args)]
pub struct SshKeyRemoveArgs {
    /// The key's ID, as `gigalixir account:ssh_keys` lists it.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// How to reach a replica over SSH: what every SSH command takes.
#[derive(Debug, Args)]
pub struct SshOptions {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// The replica's slot (HOST_INDEX) [default: the lowest running one].
    #[arg(short = 'r', long = "replica", value_name = "INDEX")]
    pub replica: Option<u32>,
    /// Options for ssh, as one string: `-o "-i ~/.ssh/other -v"`. They come before the
    /// CLI's own, so they win (`-o "-o LogLevel=DEBUG"`); may be repeated.
    #[arg(
        short = 'o',
        long = "ssh_opts",
        alias = "ssh-opts",
        value_name = "SSH OPTS",
        allow_hyphen_values = true,
        action = clap::ArgAction::Append
    )]
    pub ssh_opts: Vec<String>,
    /// The ssh program to run.
    #[arg(
        short = 'c',
        long = "ssh_cmd",
        alias = "ssh-cmd",
        value_name = "PROGRAM",
        default_value = "ssh"
    )]
    pub ssh_cmd: String,
}

/// `ps:ssh`.
#[derive(Debug, Args)]
pub struct PsSshArgs {
    /// Where and how to connect.
    #[command(flatten)]
    pub ssh: SshOptions,
    /// The command to run; without one, an interactive shell.
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The app.
    #[command(flatten)]
    pub app: AppArg,
    /// Seconds it may run before it is killed (1–3600).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// The command to run.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `ps:run`.
#[derive(Debug, Args)]
pub struct PsRunArgs {
    /// Where and how to connect.
    #[command(flatten)]
    pub ssh: SshOptions,
    /// The command to run.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `ps:remote_console`.
#[derive(Debug, Args)]
pub struct SshOnlyArgs {
    /// Where and how to connect.
    #[command(flatten)]
    pub ssh: SshOptions,
}

/// `ps:migrate`.
#[derive(Debug, Args)]
pub struct PsMigrateArgs {
    /// Where and how to connect.
    #[command(flatten)]
    pub ssh: SshOptions,
    /// GIGALIXIR's inner app of an umbrella. Not needed here: the migration is the release's
    /// `<Release>.Release.migrate()` or GIGALIXIR_MIGRATE_EVAL (the option is accepted and
    /// ignored, with a note).
    #[arg(short = 'm', long = "migration_app_name", value_name = "APP")]
    pub migration_app_name: Option<String>,
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
                what: Some(CreateWhat::App(CreateAppArgs { name: Some(_), .. })),
                ..
            })
        ));
        assert!(matches!(
            parse(&["create", "-n", "my-app"]),
            Command::Create(CreateArgs {
                what: None,
                name: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse(&["apps:create", "-n", "my-app"]),
            Command::AppsCreate(AppsCreateArgs { name: Some(_), .. })
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
            parse(&["maintenance:on", "-a", "x-app", "-y"]),
            Command::MaintenanceOn(MaintenanceArgs { yes: true, .. })
        ));
        match parse(&[
            "run",
            "-a",
            "x-app",
            "--timeout",
            "5",
            "mix",
            "ecto.migrate",
            "-v",
        ]) {
            Command::Run(a) => {
                assert_eq!(a.timeout, 5);
                assert_eq!(a.command, ["mix", "ecto.migrate", "-v"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["canary:set", "-c", "x-green", "-w", "10"]),
            Command::CanarySet(CanarySetArgs {
                weight: Some(10),
                ..
            })
        ));
        assert!(matches!(
            parse(&["canary:unset", "--canary_name", "x-green"]),
            Command::CanaryUnset(_)
        ));
        assert!(matches!(
            parse(&["ps:kill", "-p", "gx-x-v1-0", "-y"]),
            Command::PsKill(PsKillArgs { yes: true, .. })
        ));
        assert!(matches!(
            parse(&["maintenance:off"]),
            Command::MaintenanceOff(MaintenanceArgs { yes: false, .. })
        ));
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
    fn ssh_commands_parse_with_gigalixirs_flags() {
        match parse(&["account:ssh_keys:add", "ssh-ed25519 AAAA ada@laptop"]) {
            Command::SshKeysAdd(a) => assert_eq!(a.key, "ssh-ed25519 AAAA ada@laptop"),
            other => panic!("{other:?}"),
        }
        match parse(&["account:ssh_keys:remove", "6f1c"]) {
            Command::SshKeysRemove(a) => assert_eq!(a.id, "6f1c"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["account:ssh_keys", "--json"]),
            Command::SshKeys(SshKeysArgs { json: true })
        ));
        // Options before the command are ours; everything from the command on is its.
        match parse(&[
            "ps:ssh",
            "-a",
            "x-app",
            "-r",
            "2",
            "-o",
            "-i ~/.ssh/k",
            "-o",
            "-v",
            "ls",
            "-la",
            "-a",
        ]) {
            Command::PsSsh(a) => {
                assert_eq!(a.ssh.app.app.as_deref(), Some("x-app"));
                assert_eq!(a.ssh.replica, Some(2));
                assert_eq!(a.ssh.ssh_opts, ["-i ~/.ssh/k", "-v"]);
                assert_eq!(a.ssh.ssh_cmd, "ssh");
                assert_eq!(a.command, ["ls", "-la", "-a"]);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["ps:ssh"]) {
            Command::PsSsh(a) => {
                assert!(a.command.is_empty());
                assert!(a.ssh.ssh_opts.is_empty());
                assert_eq!(a.ssh.replica, None);
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "ps:run",
            "--ssh_opts=-T",
            "--ssh_cmd",
            "/usr/bin/ssh",
            "bin/app",
            "eval",
            "IO.puts 1",
        ]) {
            Command::PsRun(a) => {
                assert_eq!(a.ssh.ssh_opts, ["-T"]);
                assert_eq!(a.ssh.ssh_cmd, "/usr/bin/ssh");
                assert_eq!(a.command, ["bin/app", "eval", "IO.puts 1"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["ps:remote_console", "--app_name", "x-app"]),
            Command::PsRemoteConsole(_)
        ));
        match parse(&["ps:migrate", "-m", "inner_app", "-a", "x-app"]) {
            Command::PsMigrate(a) => {
                assert_eq!(a.migration_app_name.as_deref(), Some("inner_app"));
                assert_eq!(a.ssh.app.app.as_deref(), Some("x-app"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn account_commands_parse_with_gigalixirs_flags() {
        match parse(&["login", "-e", "a@b.co", "-p", "pw", "-t", "123456", "-y"]) {
            Command::Login(a) => {
                assert_eq!(a.mfa_token.as_deref(), Some("123456"));
                assert!(a.yes);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["login", "--mfa_token=abcd-ef01-2345"]) {
            Command::Login(a) => assert_eq!(a.mfa_token.as_deref(), Some("abcd-ef01-2345")),
            other => panic!("{other:?}"),
        }
        match parse(&["account:confirm", "--token", "ID.CODE"]) {
            Command::AccountConfirm(a) => assert_eq!(a.token.as_deref(), Some("ID.CODE")),
            other => panic!("{other:?}"),
        }
        match parse(&["account:confirmation:resend", "-e", "a@b.co"]) {
            Command::ConfirmationResend(a) => assert_eq!(a.email.as_deref(), Some("a@b.co")),
            other => panic!("{other:?}"),
        }
        match parse(&["account:password:reset", "--email", "a@b.co"]) {
            Command::PasswordReset(a) => {
                assert_eq!(a.email.as_deref(), Some("a@b.co"));
                assert_eq!((a.token, a.password), (None, None));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["account:password:reset", "--token", "T", "--password", "P"]) {
            Command::PasswordReset(a) => {
                assert_eq!(a.email, None);
                assert_eq!(
                    (a.token.as_deref(), a.password.as_deref()),
                    (Some("T"), Some("P"))
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["account:password:set", "-t", "T", "-p", "P"]) {
            Command::PasswordSet(a) => assert_eq!(
                (a.token.as_deref(), a.password.as_deref()),
                (Some("T"), Some("P"))
            ),
            other => panic!("{other:?}"),
        }
        match parse(&["account:password:change", "-p", "old", "-n", "new"]) {
            Command::PasswordChange(a) => assert_eq!(
                (a.current_password.as_deref(), a.new_password.as_deref()),
                (Some("old"), Some("new"))
            ),
            other => panic!("{other:?}"),
        }
        match parse(&[
            "account:password:change",
            "--current_password",
            "old",
            "--new_password",
            "new",
        ]) {
            Command::PasswordChange(a) => assert_eq!(
                (a.current_password.as_deref(), a.new_password.as_deref()),
                (Some("old"), Some("new"))
            ),
            other => panic!("{other:?}"),
        }
        match parse(&["account:email:set", "-e", "new@b.co", "-p", "pw"]) {
            Command::EmailSet(a) => assert_eq!(
                (a.email.as_deref(), a.password.as_deref()),
                (Some("new@b.co"), Some("pw"))
            ),
            other => panic!("{other:?}"),
        }
        match parse(&["account:destroy", "-y", "-e", "a@b.co", "-p", "pw"]) {
            Command::AccountDestroy(a) => {
                assert!(a.yes);
                assert_eq!(a.email.as_deref(), Some("a@b.co"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["account:destroy"]) {
            Command::AccountDestroy(a) => assert!(!a.yes && a.email.is_none()),
            other => panic!("{other:?}"),
        }
        match parse(&["account:mfa:activate", "-t", "123456", "-y"]) {
            Command::MfaActivate(a) => {
                assert_eq!(a.mfa_token.as_deref(), Some("123456"));
                assert!(a.yes);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["account:mfa:activate"]),
            Command::MfaActivate(MfaActivateArgs {
                mfa_token: None,
                yes: false
            })
        ));
        assert!(matches!(
            parse(&["account:mfa:deactivate", "-y"]),
            Command::MfaDeactivate(YesArgs { yes: true })
        ));
        assert!(matches!(
            parse(&["account:mfa:recovery_codes:regenerate"]),
            Command::MfaRecoveryCodes(YesArgs { yes: false })
        ));
    }

    #[test]
    fn access_commands_parse_with_gigalixirs_flags() {
        match parse(&["access", "-a", "x-app"]) {
            Command::Access(a) => {
                assert_eq!(a.app.app.as_deref(), Some("x-app"));
                assert!(!a.json);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["access:add", "--app_name", "x-app", "bob@b.co"]) {
            Command::AccessAdd(a) => {
                assert_eq!(a.app.app.as_deref(), Some("x-app"));
                assert_eq!(
                    (a.email.as_str(), a.role.as_str()),
                    ("bob@b.co", "COLLABORATOR")
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["access:add", "bob@b.co", "--role", "viewer"]) {
            Command::AccessAdd(a) => assert_eq!(a.role.to_ascii_uppercase(), "VIEWER"),
            other => panic!("{other:?}"),
        }
        match parse(&["access:remove", "-a", "x-app", "bob@b.co"]) {
            Command::AccessRemove(a) => assert_eq!(a.email, "bob@b.co"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["apps:activity", "--json"]),
            Command::AppsActivity(AppListArgs { json: true, .. })
        ));
        match parse(&["apps:transfer", "-a", "x-app", "bob@b.co", "-y"]) {
            Command::AppsTransfer(a) => {
                assert_eq!(a.app.app.as_deref(), Some("x-app"));
                assert_eq!(a.email, "bob@b.co");
                assert!(a.yes);
            }
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
            &["ps:run"],
            &["ps:remote_console", "extra"],
            &["account:ssh_keys:add"],
            &["account:ssh_keys:remove"],
            &["ps:ssh", "-r", "-1"],
            &["access:add"],
            &["access:add", "bob@b.co", "--role", "ADMIN"],
            &["access:remove"],
            &["apps:transfer", "-y"],
            &["account:password:reset", "-e", "a@b.co", "--token", "T"],
            &["account:password:reset", "-p", "P"],
            &["account:mfa:deactivate", "extra"],
        ] {
            let mut argv = vec!["gigalixir"];
            argv.extend_from_slice(args);
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
        }
    }
}
