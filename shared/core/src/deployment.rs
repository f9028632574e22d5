//! How the functions are wired together: which function consumes which topic through which
//! subscription (pushed to its HTTP endpoint, or pulled by a worker), which buckets the blob
//! store uses, and which environment variables each function reads.
//!
//! One source of truth for the single-machine platform (which subscribes every function in
//! one process), the standalone function binaries, and the Terraform in `infra/` (checked
//! against [`manifest`] by `tests/infra`).

use std::time::Duration;

use serde::Serialize;

use crate::messages::Topic;
use crate::ports::SubscriptionSpec;

/// A pipeline function, deployed as its own service in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    /// The HTTP API for the CLI.
    Api,
    /// Git smart HTTP and the push webhook.
    Receive,
    /// Buildpacks in a container (needs a Docker engine).
    Build,
    /// Slug out of the build container into the slug store.
    Upload,
    /// Records the release.
    Release,
    /// Applies releases to the runtime.
    Deploy,
}

impl Function {
    /// Every function, in pipeline order.
    pub const ALL: [Function; 6] = [
        Function::Api,
        Function::Receive,
        Function::Build,
        Function::Upload,
        Function::Release,
        Function::Deploy,
    ];

    /// The function's name as used in service and subscription names.
    pub fn name(self) -> &'static str {
        match self {
            Function::Api => "api",
            Function::Receive => "receive",
            Function::Build => "build",
            Function::Upload => "upload",
            Function::Release => "release",
            Function::Deploy => "deploy",
        }
    }
}

/// How a subscription reaches its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The bus posts each message to the function's HTTP endpoint (Cloud Run).
    Push,
    /// Workers pull (the build and upload steps, which need the build's Docker engine
    /// next to them).
    Pull,
}

/// One subscription of the pipeline.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The consuming function.
    pub function: Function,
    /// How messages reach it.
    pub delivery: Delivery,
    /// The path of the function's router that takes them.
    pub path: &'static str,
    /// Name, topic, deadlines, retries, dead letter.
    pub spec: SubscriptionSpec,
}

/// What the subscriptions' settings derive from: step durations the ack deadlines must
/// cover, and how many builds a build worker runs at once.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Longest a build may run.
    pub build: Duration,
    /// Longest a release may take to pass its health check.
    pub boot: Duration,
    /// Builds one worker runs at once; later ones wait in order.
    pub build_concurrency: u32,
}

impl Default for Settings {
    /// 30-minute builds, 60 s boots, 2 builds at once.
    fn default() -> Self {
        Self {
            build: Duration::from_secs(30 * 60),
            boot: Duration::from_secs(60),
            build_concurrency: 2,
        }
    }
}

/// Every subscription of the pipeline. Ack deadlines cover the longest a step may take; a
/// message whose step dies is redelivered after it. (Pub/Sub caps push ack deadlines at
/// 600 s; its adapter clamps them and extends leases while a pulled message is handled.)
pub fn subscriptions(t: Settings) -> Vec<Wire> {
    let wire = |function, delivery, spec| Wire {
        function,
        delivery,
        path: "/",
        spec,
    };
    let push = Delivery::Push;
    // a rolling restart or scale boots every replica in turn, and a release phase first
    let long_deploy = t.boot * (crate::model::MAX_REPLICAS + 1) + Duration::from_secs(300);
    vec![
        wire(
            Function::Build,
            Delivery::Pull,
            SubscriptionSpec {
                ack_deadline: t.build + Duration::from_secs(300),
                max_attempts: 3,
                // A waiting room: the build step runs `build_concurrency` at once, one per
                // account, and the others wait their turn there without spending attempts.
                max_in_flight: t.build_concurrency.saturating_mul(8),
                ..SubscriptionSpec::new("build.build-requested", Topic::BUILD_REQUESTED)
            },
        ),
        // Upload reads the slug out of the build's container: it runs on the build
        // workers, next to their Docker engine, and pulls too.
        wire(
            Function::Upload,
            Delivery::Pull,
            SubscriptionSpec {
                ack_deadline: Duration::from_secs(600),
                ..SubscriptionSpec::new("upload.slug-built", Topic::SLUG_BUILT)
            },
        ),
        wire(
            Function::Release,
            push,
            SubscriptionSpec::new("release.slug-uploaded", Topic::SLUG_UPLOADED),
        ),
        wire(
            Function::Release,
            push,
            SubscriptionSpec::new("release.release-requested", Topic::RELEASE_REQUESTED),
        ),
        // Dead letters end their build as failed; `release` holds the consumer.
        Wire {
            path: DEAD_LETTERS_PATH,
            ..wire(
                Function::Release,
                push,
                SubscriptionSpec {
                    dead_letter: None,
                    ..SubscriptionSpec::new("platform.dead-letter", Topic::DEAD_LETTER)
                },
            )
        },
        wire(
            Function::Deploy,
            push,
            SubscriptionSpec {
                ack_deadline: t.boot + Duration::from_secs(300),
                ..SubscriptionSpec::new("deploy.release-created", Topic::RELEASE_CREATED)
            },
        ),
        wire(
            Function::Deploy,
            push,
            SubscriptionSpec::new("deploy.app-destroyed", Topic::APP_DESTROYED),
        ),
        wire(
            Function::Deploy,
            push,
            SubscriptionSpec::new("deploy.ssh-keys-changed", Topic::SSH_KEYS_CHANGED),
        ),
        wire(
            Function::Deploy,
            push,
            SubscriptionSpec::new("deploy.domains-changed", Topic::DOMAINS_CHANGED),
        ),
        wire(
            Function::Deploy,
            push,
            SubscriptionSpec {
                ack_deadline: long_deploy,
                ..SubscriptionSpec::new("deploy.app-scaled", Topic::APP_SCALED)
            },
        ),
        wire(
            Function::Deploy,
            push,
            SubscriptionSpec {
                ack_deadline: long_deploy,
                ..SubscriptionSpec::new("deploy.restart-requested", Topic::RESTART_REQUESTED)
            },
        ),
    ]
}

/// Where `release` takes the dead-letter topic's pushes.
pub const DEAD_LETTERS_PATH: &str = "/dead-letters";

/// Every topic the platform publishes to.
pub const TOPICS: [Topic; 13] = [
    Topic::BUILD_REQUESTED,
    Topic::SLUG_BUILT,
    Topic::SLUG_UPLOADED,
    Topic::RELEASE_REQUESTED,
    Topic::RELEASE_CREATED,
    Topic::DEPLOY_SUCCEEDED,
    Topic::DEPLOY_FAILED,
    Topic::APP_DESTROYED,
    Topic::APP_SCALED,
    Topic::RESTART_REQUESTED,
    Topic::SSH_KEYS_CHANGED,
    Topic::DOMAINS_CHANGED,
    Topic::DEAD_LETTER,
];

/// The first part of every blob key. On Cloud Storage each is its own bucket,
/// `<prefix>-<part>` for `gs://<prefix>`, so each can have its own lifecycle and access.
pub const BLOB_SPACES: [&str; 6] = ["repos", "sources", "slugs", "caches", "packages", "backups"];

/// An environment variable a standalone function reads.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EnvVar {
    /// Its name.
    pub name: &'static str,
    /// Whether the function refuses to start without it.
    pub required: bool,
    /// What it sets.
    pub doc: &'static str,
}

const fn var(name: &'static str, required: bool, doc: &'static str) -> EnvVar {
    EnvVar {
        name,
        required,
        doc,
    }
}

/// `PORT`, set by Cloud Run.
pub const PORT: EnvVar = var("PORT", false, "port to listen on (default 8080)");
/// The store's URL.
pub const STORE: EnvVar = var(
    "GIGALIXIR_STORE",
    true,
    "store URL: firestore://PROJECT or sqlite://PATH",
);
/// The bus's URL.
pub const BUS: EnvVar = var(
    "GIGALIXIR_BUS",
    true,
    "bus URL: pubsub://PROJECT or sqlite://PATH",
);
/// The blob store's URL.
pub const BLOBS: EnvVar = var(
    "GIGALIXIR_BLOBS",
    true,
    "blob store URL: gs://BUCKET-PREFIX or file://PATH",
);
/// The runtime's URL.
pub const RUNTIME: EnvVar = var(
    "GIGALIXIR_RUNTIME",
    true,
    "runtime URL: kube:// (in-cluster or KUBECONFIG) or docker://",
);
/// The builder's URL.
pub const BUILDER: EnvVar = var(
    "GIGALIXIR_BUILDER",
    false,
    "builder URL: docker://[?instance=NAME] (default docker://; build and upload must name the same instance)",
);
/// The apps' domain.
pub const DOMAIN: EnvVar = var(
    "GIGALIXIR_DOMAIN",
    false,
    "apps answer on APP.DOMAIN (default localhost)",
);

/// Names no app may take as a custom domain.
pub const RESERVED_DOMAINS: EnvVar = var(
    "GIGALIXIR_RESERVED_DOMAINS",
    false,
    "comma-separated names no app may add as a custom domain, nor any name under them: the platform's own hosts (API, git, website)",
);

/// Where account mail goes.
pub const SMTP_URL: EnvVar = var(
    "GIGALIXIR_SMTP_URL",
    false,
    "SMTP server for account mail (confirmations, password resets): smtp://[USER:PASSWORD@]HOST:PORT or smtps://…; unset: each mail is an .eml file in GIGALIXIR_OUTBOX_DIR",
);
/// Where account mail is written without an SMTP server.
pub const OUTBOX_DIR: EnvVar = var(
    "GIGALIXIR_OUTBOX_DIR",
    false,
    "directory account mail is written to when GIGALIXIR_SMTP_URL is unset (default /tmp/gigalixir-outbox)",
);
/// Who account mail is from.
pub const MAIL_FROM: EnvVar = var(
    "GIGALIXIR_MAIL_FROM",
    false,
    "sender of account mail (default noreply@DOMAIN)",
);
/// The API's address as users reach it, for links in mail.
pub const PUBLIC_URL: EnvVar = var(
    "GIGALIXIR_PUBLIC_URL",
    false,
    "the API's address as users reach it, for the links in account mail (default http://localhost:PORT)",
);
/// Whether new accounts confirm their email.
pub const EMAIL_CONFIRMATION: EnvVar = var(
    "GIGALIXIR_EMAIL_CONFIRMATION",
    false,
    "true (default): a new account confirms its email before it logs in; false: accounts are active at once (a private installation)",
);

/// The PostgreSQL server managed databases are made on.
pub const POSTGRES_URL: EnvVar = var(
    "GIGALIXIR_POSTGRES_URL",
    false,
    "admin URL of the PostgreSQL server that managed databases (pg:create) are made on, postgresql://USER:PASSWORD@HOST:PORT/DB (Cloud SQL's private address); unset: no managed databases",
);
/// Where apps reach that server.
pub const POSTGRES_HOST: EnvVar = var(
    "GIGALIXIR_POSTGRES_HOST",
    false,
    "the host apps put in their DATABASE_URL (default: the admin URL's host)",
);

/// The Hex repository the package cache pulls from.
pub const HEX_UPSTREAM: EnvVar = var(
    "GIGALIXIR_HEX_UPSTREAM",
    false,
    "the Hex repository the package cache pulls from (default hex.pm's, https://repo.hex.pm)",
);
/// The key that repository signs its registry with.
pub const HEX_UPSTREAM_KEY: EnvVar = var(
    "GIGALIXIR_HEX_UPSTREAM_KEY",
    false,
    "PEM file of the public key that upstream signs its registry with (default hex.pm's)",
);
/// Where the build worker serves the package cache to its builds.
pub const PACKAGES_DIR: EnvVar = var(
    "GIGALIXIR_PACKAGES_DIR",
    false,
    "directory of the package cache's socket, shared with the Docker engine and mounted read-only into builds (default /run/gigalixir/packages)",
);

/// The audience of the pushes a function takes (its service's URL).
pub const PUSH_AUDIENCE: EnvVar = var(
    "GIGALIXIR_PUSH_AUDIENCE",
    false,
    "audience of the Pub/Sub pushes' OIDC tokens, the service's URL (needed to serve pushes on PORT)",
);
/// The service account Pub/Sub pushes as.
pub const PUSH_INVOKER: EnvVar = var(
    "GIGALIXIR_PUSH_INVOKER",
    false,
    "service account the pushes' tokens name (needed to serve pushes on PORT)",
);
/// Where the keys that sign push tokens are published.
pub const PUSH_JWKS: EnvVar = var(
    "GIGALIXIR_PUSH_JWKS",
    false,
    "URL of the JWK set push tokens are signed with (default Google's)",
);

/// The environment variables `function` reads.
pub fn env(function: Function) -> Vec<EnvVar> {
    match function {
        // DOMAIN: a custom domain's CNAME target is APP.DOMAIN. RUNTIME (and BLOBS, which
        // it reads slugs from): `ps`, `logs`, `ps:ssh` look at the apps where they run.
        // SMTP_URL …: account mail and its links.
        Function::Api => vec![
            PORT,
            STORE,
            BUS,
            BLOBS,
            RUNTIME,
            DOMAIN,
            RESERVED_DOMAINS,
            SMTP_URL,
            OUTBOX_DIR,
            MAIL_FROM,
            PUBLIC_URL,
            EMAIL_CONFIRMATION,
            POSTGRES_URL,
            POSTGRES_HOST,
        ],
        // DOMAIN: a push ends with the app's URL.
        Function::Receive => vec![PORT, STORE, BUS, BLOBS, DOMAIN],
        // The worker serves the package cache to its builds over the shared blobs.
        Function::Build => vec![
            STORE,
            BUS,
            BLOBS,
            BUILDER,
            HEX_UPSTREAM,
            HEX_UPSTREAM_KEY,
            PACKAGES_DIR,
        ],
        // BUILDER: the slug is read out of the build's container, on the build's engine.
        Function::Upload => vec![STORE, BUS, BLOBS, BUILDER],
        Function::Release => vec![PORT, STORE, BUS, PUSH_AUDIENCE, PUSH_INVOKER, PUSH_JWKS],
        Function::Deploy => vec![
            PORT,
            STORE,
            BUS,
            BLOBS,
            RUNTIME,
            DOMAIN,
            PUSH_AUDIENCE,
            PUSH_INVOKER,
            PUSH_JWKS,
        ],
    }
}

/// A value of `var` to show in messages and docs: what a local setup would use.
pub fn example(var: &EnvVar) -> &'static str {
    match var.name {
        "PORT" => "8080",
        "GIGALIXIR_STORE" => "sqlite:///var/lib/gigalixir/store.db",
        "GIGALIXIR_BUS" => "sqlite:///var/lib/gigalixir/bus.db",
        "GIGALIXIR_BLOBS" => "file:///var/lib/gigalixir/blobs",
        "GIGALIXIR_RUNTIME" => "docker://",
        "GIGALIXIR_BUILDER" => "docker://?instance=default",
        "GIGALIXIR_DOMAIN" => "apps.example.com",
        "GIGALIXIR_RESERVED_DOMAINS" => "paas.example.com,git.example.com",
        "GIGALIXIR_HEX_UPSTREAM" => "https://repo.hex.pm",
        "GIGALIXIR_HEX_UPSTREAM_KEY" => "/etc/gigalixir/hex/public_key.pem",
        "GIGALIXIR_PACKAGES_DIR" => "/run/gigalixir/packages",
        "GIGALIXIR_SMTP_URL" => "smtps://mailer:PASSWORD@smtp.example.com:465",
        "GIGALIXIR_OUTBOX_DIR" => "/var/lib/gigalixir/outbox",
        "GIGALIXIR_MAIL_FROM" => "noreply@paas.example.com",
        "GIGALIXIR_PUBLIC_URL" => "https://paas.example.com",
        "GIGALIXIR_EMAIL_CONFIRMATION" => "true",
        "GIGALIXIR_POSTGRES_URL" => "postgresql://gigalixir:PASSWORD@10.20.0.3:5432/postgres",
        "GIGALIXIR_POSTGRES_HOST" => "10.20.0.3",
        "GIGALIXIR_PUSH_AUDIENCE" => "https://gigalixir-deploy-123456789.us-central1.run.app",
        "GIGALIXIR_PUSH_INVOKER" => "pubsub-invoker@PROJECT.iam.gserviceaccount.com",
        "GIGALIXIR_PUSH_JWKS" => "https://www.googleapis.com/oauth2/v3/certs",
        _ => "",
    }
}

/// The wiring as JSON, for the infrastructure checks: topics, subscriptions (with the
/// consuming function, delivery mode, ack deadline, attempts and backoff), blob spaces and
/// each function's environment.
pub fn manifest(t: Settings) -> serde_json::Value {
    let subs: Vec<_> = subscriptions(t)
        .into_iter()
        .map(|w| {
            serde_json::json!({
                "name": w.spec.name,
                "topic": w.spec.topic.as_str(),
                "function": w.function.name(),
                "path": w.path,
                "delivery": w.delivery,
                "ack_deadline_seconds": w.spec.ack_deadline.as_secs(),
                "max_attempts": w.spec.max_attempts,
                "min_backoff_seconds": w.spec.min_backoff.as_secs(),
                "max_backoff_seconds": w.spec.max_backoff.as_secs(),
                "dead_letter": w.spec.dead_letter.as_ref().map(|t| t.as_str()),
                "max_in_flight": w.spec.max_in_flight,
            })
        })
        .collect();
    let env: serde_json::Map<_, _> = Function::ALL
        .iter()
        .map(|f| (f.name().to_owned(), serde_json::json!(env(*f))))
        .collect();
    serde_json::json!({
        "topics": TOPICS.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "subscriptions": subs,
        "blob_spaces": BLOB_SPACES,
        "env": env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscribed_topic_is_published_and_names_are_unique() {
        let subs = subscriptions(Settings::default());
        let mut names: Vec<_> = subs.iter().map(|w| w.spec.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), subs.len());
        for w in &subs {
            assert!(TOPICS.contains(&w.spec.topic), "{}", w.spec.name);
        }
        let m = manifest(Settings::default());
        assert_eq!(m["subscriptions"][0]["delivery"], "pull");
        assert_eq!(m["env"]["api"][1]["name"], "GIGALIXIR_STORE");
    }

    #[test]
    fn every_variable_has_an_example() {
        for f in Function::ALL {
            for var in env(f) {
                assert!(!example(&var).is_empty(), "{}: {}", f.name(), var.name);
            }
        }
    }
}
