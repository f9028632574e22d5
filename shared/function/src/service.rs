//! Runs one function's router the way its environment asks (DESIGN §2, "one handler, three
//! ways to run it"):
//!
//! - **AWS Lambda** when `AWS_LAMBDA_RUNTIME_API` is set (Lambda sets it): the router
//!   answers API Gateway, Function URL and ALB events through `lambda_http` (built with the
//!   `lambda` feature only);
//! - **a pull worker** for a function whose subscriptions [`deployment`] marks as pulled
//!   (`build`, `upload`), or any step asked to pull: each message goes through the router
//!   exactly as a Pub/Sub push would, at its subscription's path ([`RouterEndpoint`]); no
//!   port is opened;
//! - **an HTTP server** on `$PORT` otherwise (Cloud Run): Pub/Sub pushes to `POST /`, or
//!   the API and git.
//!
//! The settings come from the environment variables [`deployment::env`] lists for the
//! function, read by [`FunctionEnv`]; a missing one stops the function with a message that
//! names it and shows an example.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::deployment::{self, EnvVar, Function, Settings};
use crate::error::PortError;
use crate::ports::{Blobs, Bus, Store};
use crate::push::RouterEndpoint;

/// Set by AWS Lambda in every function's environment; its presence selects the Lambda
/// runtime.
pub const LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// How long open requests get to finish after SIGTERM (Cloud Run allows 10 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a function could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Required variables are missing; each entry names one and shows an example.
    #[error("{}", .0.join("\n"))]
    MissingEnv(Vec<String>),
    /// A variable is set to something unusable.
    #[error("{name}={value:?} is not usable: {why}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// A backend named by a URL could not be opened.
    #[error("cannot open the {what} ({name})")]
    Backend {
        /// `store`, `bus`, `blob store`, `runtime`.
        what: &'static str,
        /// The variable holding its URL.
        name: &'static str,
        /// Why.
        #[source]
        source: PortError,
    },
    /// The port is taken or not ours.
    #[error("cannot listen on port {port}")]
    Bind {
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("serving HTTP failed")]
    Serve(#[source] std::io::Error),
    /// A pull loop failed.
    #[error("delivering {subscription} failed")]
    Deliver {
        /// The subscription.
        subscription: String,
        /// Why.
        #[source]
        source: PortError,
    },
    /// Running under Lambda was asked for, but this binary cannot.
    #[error("{LAMBDA_RUNTIME_API} is set, but this binary was built without the `lambda` feature: rebuild with `--features lambda`")]
    LambdaUnavailable,
    /// A pull loop ended abnormally.
    #[error("a delivery loop stopped: {0}")]
    LoopStopped(String),
    /// The Lambda runtime stopped with an error.
    #[error("the Lambda runtime failed: {0}")]
    Lambda(String),
    /// The command line is not understood.
    #[error("{0}")]
    Usage(String),
}

/// What every function binary does first: reads its flags (printing the usage for
/// `--help`, then `Ok(None)`), sets up logging, and reads its environment.
pub fn start(function: Function) -> Result<Option<(Flags, FunctionEnv)>, ServiceError> {
    let Some(flags) =
        Flags::parse(function, std::env::args().skip(1)).map_err(ServiceError::Usage)?
    else {
        println!("{}", usage(function));
        return Ok(None);
    };
    crate::web::init_tracing();
    Ok(Some((flags, FunctionEnv::from_env(function)?)))
}

/// The values of the variables a function reads ([`deployment::env`]), checked at start.
#[derive(Clone)]
pub struct FunctionEnv {
    function: Function,
    values: BTreeMap<&'static str, String>,
}

impl std::fmt::Debug for FunctionEnv {
    // Backend URLs may carry credentials: only the names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionEnv")
            .field("function", &self.function)
            .field("set", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `NAME is not set: DOC (e.g. NAME=EXAMPLE)`.
fn missing(var: &EnvVar) -> String {
    format!(
        "{} is not set: {} (e.g. {}={})",
        var.name,
        var.doc,
        var.name,
        deployment::example(var)
    )
}

impl FunctionEnv {
    /// Reads the function's variables from the process environment.
    pub fn from_env(function: Function) -> Result<Self, ServiceError> {
        Self::from_lookup(function, |name| std::env::var(name).ok())
    }

    /// Reads the function's variables through `lookup`; an empty value counts as unset.
    /// Fails naming every required variable that is missing.
    pub fn from_lookup(
        function: Function,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ServiceError> {
        let mut values = BTreeMap::new();
        let mut absent = Vec::new();
        for var in deployment::env(function) {
            match lookup(var.name).filter(|v| !v.trim().is_empty()) {
                Some(value) => {
                    values.insert(var.name, value);
                }
                None if var.required => absent.push(missing(&var)),
                None => {}
            }
        }
        if absent.is_empty() {
            Ok(Self { function, values })
        } else {
            Err(ServiceError::MissingEnv(absent))
        }
    }

    /// The function these settings are for.
    pub fn function(&self) -> Function {
        self.function
    }

    /// The value of `var`, if it is set.
    pub fn get(&self, var: &EnvVar) -> Option<&str> {
        self.values.get(var.name).map(String::as_str)
    }

    /// The value of `var`, which the function cannot do without.
    pub fn required(&self, var: &EnvVar) -> Result<&str, ServiceError> {
        self.get(var)
            .ok_or_else(|| ServiceError::MissingEnv(vec![missing(var)]))
    }

    /// `PORT`, else 8080.
    pub fn port(&self) -> Result<u16, ServiceError> {
        match self.get(&deployment::PORT) {
            None => Ok(8080),
            Some(p) => p.trim().parse().map_err(|_| ServiceError::InvalidEnv {
                name: deployment::PORT.name,
                value: p.to_owned(),
                why: "not a port number".into(),
            }),
        }
    }

    /// `GIGALIXIR_DOMAIN`, else `localhost`.
    pub fn domain(&self) -> &str {
        self.get(&deployment::DOMAIN).unwrap_or("localhost")
    }

    /// The builder `GIGALIXIR_BUILDER` names (default `docker://`), with the package
    /// cache's socket directory `packages_dir` mounted into builds.
    #[cfg(feature = "docker")]
    pub fn builder(
        &self,
        packages_dir: Option<std::path::PathBuf>,
    ) -> Result<Arc<dyn crate::ports::Builder>, ServiceError> {
        let var = deployment::BUILDER;
        let url = self.get(&var).unwrap_or("docker://");
        crate::backends::open_builder(url, packages_dir).map_err(|source| ServiceError::Backend {
            what: "builder",
            name: var.name,
            source,
        })
    }

    /// `GIGALIXIR_RESERVED_DOMAINS`: the names no app may take as a custom domain.
    pub fn reserved_domains(&self) -> Result<Vec<crate::domain::Fqdn>, ServiceError> {
        let var = deployment::RESERVED_DOMAINS;
        crate::domain::Fqdn::parse_list(self.get(&var).unwrap_or_default()).map_err(|why| {
            ServiceError::InvalidEnv {
                name: var.name,
                value: self.get(&var).unwrap_or_default().to_owned(),
                why,
            }
        })
    }

    /// Opens the store `GIGALIXIR_STORE` names.
    pub fn store(&self) -> Result<Arc<dyn Store>, ServiceError> {
        let var = deployment::STORE;
        crate::backends::open_store(self.required(&var)?).map_err(|source| ServiceError::Backend {
            what: "store",
            name: var.name,
            source,
        })
    }

    /// Opens the bus `GIGALIXIR_BUS` names.
    pub fn bus(&self) -> Result<Arc<dyn Bus>, ServiceError> {
        let var = deployment::BUS;
        crate::backends::open_bus(self.required(&var)?).map_err(|source| ServiceError::Backend {
            what: "bus",
            name: var.name,
            source,
        })
    }

    /// Opens the blob store `GIGALIXIR_BLOBS` names.
    pub fn blobs(&self) -> Result<Arc<dyn Blobs>, ServiceError> {
        let var = deployment::BLOBS;
        crate::backends::open_blobs(self.required(&var)?).map_err(|source| ServiceError::Backend {
            what: "blob store",
            name: var.name,
            source,
        })
    }

    /// Whether the bus is this machine's SQLite bus, whose subscriptions nobody else
    /// creates (on Pub/Sub, Terraform does).
    pub fn bus_is_local(&self) -> bool {
        self.get(&deployment::BUS)
            .is_some_and(|url| url.starts_with("sqlite://"))
    }
}

/// How the function is asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Under AWS Lambda.
    Lambda,
    /// Pulling its subscriptions.
    Pull,
    /// An HTTP server on this port.
    Http {
        /// `$PORT`.
        port: u16,
    },
}

/// Whether `deployment` has `function` pull (rather than be pushed) its messages.
pub fn pulls(function: Function) -> bool {
    delivered(function, deployment::Delivery::Pull)
}

/// Whether Pub/Sub pushes `function`'s messages to it.
pub fn pushed(function: Function) -> bool {
    delivered(function, deployment::Delivery::Push)
}

fn delivered(function: Function, delivery: deployment::Delivery) -> bool {
    deployment::subscriptions(Settings::default())
        .iter()
        .any(|w| w.function == function && w.delivery == delivery)
}

/// The check of the pushes a function serves on its port: it does not start without
/// their audience and service account.
fn push_auth(env: &FunctionEnv) -> Result<crate::pushauth::PushAuth, ServiceError> {
    let (audience, invoker) = (
        env.get(&deployment::PUSH_AUDIENCE),
        env.get(&deployment::PUSH_INVOKER),
    );
    match (audience, invoker) {
        (Some(audience), Some(invoker)) => Ok(crate::pushauth::PushAuth::new(
            audience,
            invoker,
            env.get(&deployment::PUSH_JWKS)
                .unwrap_or(crate::pushauth::GOOGLE_JWKS),
        )),
        _ => Err(ServiceError::MissingEnv(
            [deployment::PUSH_AUDIENCE, deployment::PUSH_INVOKER]
                .iter()
                .filter(|v| env.get(v).is_none())
                .map(missing)
                .collect(),
        )),
    }
}

/// Picks the trigger: Lambda when `lambda` (its runtime API is set), else pulling when the
/// deployment says so or `force_pull`, else HTTP on `$PORT`.
pub fn trigger(env: &FunctionEnv, lambda: bool, force_pull: bool) -> Result<Trigger, ServiceError> {
    if lambda {
        Ok(Trigger::Lambda)
    } else if force_pull || pulls(env.function()) {
        Ok(Trigger::Pull)
    } else {
        Ok(Trigger::Http { port: env.port()? })
    }
}

/// The command line of a function binary: `--pull` (pull the function's subscriptions
/// instead of serving pushes) and `--help`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--pull`.
    pub pull: bool,
}

impl Flags {
    /// Reads `args` (without the program name). `Ok(None)`: help was asked for, and
    /// `usage` is what to print.
    pub fn parse(
        function: Function,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Option<Self>, String> {
        let mut flags = Flags::default();
        for arg in args {
            match arg.as_str() {
                "--pull" => flags.pull = true,
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument `{other}`\n\n{}", usage(function))),
            }
        }
        Ok(Some(flags))
    }
}

/// What `--help` prints: the triggers and the environment.
pub fn usage(function: Function) -> String {
    format!(
        "gigalixir-{name}: the {name} function.\n\n\
         Usage: gigalixir-{name} [--pull]\n\n\
         Runs under AWS Lambda when {LAMBDA_RUNTIME_API} is set; else pulls its \
         subscriptions when the deployment says so or with --pull; else serves HTTP on $PORT.\n\n\
         Environment:\n{}",
        env_table(function),
        name = function.name(),
    )
}

/// Adds `GET /healthz` answering `ok`, for routers that have none (`receive`; the step
/// routers and the API have their own).
pub fn with_health(router: Router) -> Router {
    router.route("/healthz", get(|| async { "ok" }))
}

/// One function, ready to run.
pub struct Service {
    function: Function,
    router: Router,
    bus: Option<Arc<dyn Bus>>,
    force_pull: bool,
    settings: Settings,
}

impl Service {
    /// `router` as `function`.
    pub fn new(function: Function, router: Router) -> Self {
        Self {
            function,
            router,
            bus: None,
            force_pull: false,
            settings: Settings::default(),
        }
    }

    /// The bus to pull from, for a function that pulls.
    pub fn bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Pulls the function's subscriptions even if the deployment pushes them.
    pub fn force_pull(mut self, yes: bool) -> Self {
        self.force_pull = yes;
        self
    }

    /// The step durations the subscriptions derive from (default: [`Settings::default`]).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Runs until SIGTERM/SIGINT (or, under Lambda, until the runtime stops it).
    pub async fn run(self, env: &FunctionEnv) -> Result<(), ServiceError> {
        let lambda = std::env::var_os(LAMBDA_RUNTIME_API).is_some();
        let trigger = trigger(env, lambda, self.force_pull)?;
        let router = self.router.layer(crate::web::trace_layer());
        tracing::info!(function = self.function.name(), ?trigger, "starting");
        match trigger {
            Trigger::Lambda => run_lambda(router).await,
            Trigger::Http { port } => {
                let router = if pushed(self.function) {
                    crate::pushauth::guard(router, Arc::new(push_auth(env)?))
                } else {
                    router
                };
                let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
                    .await
                    .map_err(|source| ServiceError::Bind { port, source })?;
                serve_until(listener, router, crate::web::shutdown_signal()).await
            }
            Trigger::Pull => {
                let Some(bus) = self.bus else {
                    return Err(ServiceError::MissingEnv(vec![missing(&deployment::BUS)]));
                };
                let stop = CancellationToken::new();
                let signal = stop.clone();
                tokio::spawn(async move {
                    crate::web::shutdown_signal().await;
                    signal.cancel();
                });
                pull(
                    self.function,
                    router,
                    bus,
                    env.bus_is_local(),
                    self.settings,
                    stop,
                )
                .await
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then gives open requests
/// [`SHUTDOWN_GRACE`] to finish (a `git push` stays open until its deploy ends).
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    serve_until_with(
        listener,
        router,
        shutdown,
        crate::web::ServeLimits::default(),
    )
    .await
}

/// [`serve_until`] with the server's `limits` (timeouts, connection cap).
pub async fn serve_until_with(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: crate::web::ServeLimits,
) -> Result<(), ServiceError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    tracing::info!(port, "listening");
    let stop = CancellationToken::new();
    let signalled = stop.clone();
    let server = crate::web::serve_with(
        listener,
        router,
        async move {
            shutdown.await;
            signalled.cancel();
        },
        limits,
    );
    let grace = async {
        stop.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(ServiceError::Serve),
        _ = grace => {
            tracing::warn!("requests still open {} s after the signal; stopping anyway", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    }
}

/// Pulls each of `function`'s subscriptions into `router` until `stop` is cancelled.
/// With `create`, the subscriptions are created first (the local bus; on Pub/Sub they are
/// Terraform's).
pub async fn pull(
    function: Function,
    router: Router,
    bus: Arc<dyn Bus>,
    create: bool,
    settings: Settings,
    stop: CancellationToken,
) -> Result<(), ServiceError> {
    let wires: Vec<_> = deployment::subscriptions(settings)
        .into_iter()
        .filter(|w| w.function == function)
        .collect();
    let mut loops = tokio::task::JoinSet::new();
    for wire in wires {
        let spec = wire.spec;
        if create {
            bus.ensure_subscription(&spec)
                .await
                .map_err(|source| ServiceError::Deliver {
                    subscription: spec.name.clone(),
                    source,
                })?;
        }
        let (bus, endpoint) = (
            bus.clone(),
            Arc::new(RouterEndpoint::new(router.clone(), wire.path)),
        );
        let shutdown = stop.clone().cancelled_owned().boxed();
        tracing::info!(subscription = %spec.name, "pulling");
        loops.spawn(async move {
            let name = spec.name;
            bus.deliver(&name, endpoint, shutdown)
                .await
                .map_err(|source| ServiceError::Deliver {
                    subscription: name,
                    source,
                })
        });
    }
    let mut result = Ok(());
    while let Some(done) = loops.join_next().await {
        let outcome =
            done.unwrap_or_else(|panic| Err(ServiceError::LoopStopped(panic.to_string())));
        if let Err(err) = outcome {
            // One loop failing stops the worker: the orchestrator restarts it whole.
            stop.cancel();
            if result.is_ok() {
                result = Err(err);
            }
        }
    }
    result
}

#[cfg(feature = "lambda")]
async fn run_lambda(router: Router) -> Result<(), ServiceError> {
    lambda_http::run(router)
        .await
        .map_err(|e| ServiceError::Lambda(e.to_string()))
}

#[cfg(not(feature = "lambda"))]
async fn run_lambda(_router: Router) -> Result<(), ServiceError> {
    Err(ServiceError::LambdaUnavailable)
}

/// The function's environment as a Markdown table (name, required, example, meaning), as
/// each function's README shows it.
pub fn env_table(function: Function) -> String {
    let mut out =
        String::from("| variable | required | example | what it sets |\n|---|---|---|---|\n");
    for var in deployment::env(function) {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            var.name,
            if var.required { "yes" } else { "no" },
            deployment::example(&var),
            var.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn missing_variables_are_named_with_an_example() {
        let err = FunctionEnv::from_lookup(
            Function::Receive,
            lookup(&[("GIGALIXIR_BUS", "sqlite:///x"), ("GIGALIXIR_BLOBS", " ")]),
        )
        .expect_err("store and blobs are missing");
        let text = err.to_string();
        assert!(
            text.contains("GIGALIXIR_STORE is not set")
                && text.contains("e.g. GIGALIXIR_STORE=sqlite://"),
            "{text}"
        );
        assert!(text.contains("GIGALIXIR_BLOBS is not set"), "{text}");
        assert!(!text.contains("GIGALIXIR_BUS"), "{text}");
    }

    #[test]
    fn the_trigger_follows_the_environment_and_the_deployment() {
        let base = [
            ("GIGALIXIR_STORE", "sqlite:///s"),
            ("GIGALIXIR_BUS", "sqlite:///b"),
            ("GIGALIXIR_BLOBS", "file:///f"),
        ];
        let release = FunctionEnv::from_lookup(Function::Release, lookup(&base)).expect("env");
        assert_eq!(
            trigger(&release, false, false).expect("t"),
            Trigger::Http { port: 8080 }
        );
        assert_eq!(trigger(&release, true, false).expect("t"), Trigger::Lambda);
        assert_eq!(trigger(&release, false, true).expect("t"), Trigger::Pull);
        assert!(release.bus_is_local());
        let build = FunctionEnv::from_lookup(Function::Build, lookup(&base)).expect("env");
        assert_eq!(trigger(&build, false, false).expect("t"), Trigger::Pull);
        let mut with_port = base.to_vec();
        with_port.push(("PORT", "nope"));
        with_port.push(("GIGALIXIR_RUNTIME", "docker://"));
        let api = FunctionEnv::from_lookup(Function::Api, lookup(&with_port)).expect("env");
        let err = trigger(&api, false, false).expect_err("bad port");
        assert!(err.to_string().contains("PORT=\"nope\""), "{err}");
    }

    #[test]
    fn the_table_lists_every_variable() {
        let table = env_table(Function::Deploy);
        for var in deployment::env(Function::Deploy) {
            assert!(table.contains(&format!("| `{}` |", var.name)), "{table}");
        }
        assert!(
            table.contains("| `GIGALIXIR_RUNTIME` | yes | `docker://` |"),
            "{table}"
        );
    }
}
