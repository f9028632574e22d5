//! `gigalixir-api`: the API as a service — HTTP on `$PORT` (Cloud Run), or Lambda events
//! (API Gateway, Function URL) when `AWS_LAMBDA_RUNTIME_API` is set. Its environment:
//! `PORT`, `GIGALIXIR_STORE`, `GIGALIXIR_BUS`, `GIGALIXIR_BLOBS`, `GIGALIXIR_RUNTIME`,
//! `GIGALIXIR_DOMAIN`, `GIGALIXIR_RESERVED_DOMAINS`, and for account mail
//! `GIGALIXIR_SMTP_URL`, `GIGALIXIR_OUTBOX_DIR`, `GIGALIXIR_MAIL_FROM`,
//! `GIGALIXIR_PUBLIC_URL`, `GIGALIXIR_EMAIL_CONFIRMATION`, and for managed databases
//! `GIGALIXIR_POSTGRES_URL`, `GIGALIXIR_POSTGRES_HOST` (`shared::deployment::env`).

use anyhow::Context;
use gigalixir_api::{mail::Mailer, router, Accounts, ApiState};
use shared::backends::{RuntimeContext, RuntimeRole};
use shared::deployment::{self, Function};
use shared::service::Service;

const FUNCTION: Function = Function::Api;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((_, env)) = shared::service::start(FUNCTION)? else {
        return Ok(());
    };
    // The apps' runtime, to look at (`ps`, `logs`, `ps:ssh`): deploy changes it, not this.
    let runtime = shared::backends::open_runtime(
        env.required(&deployment::RUNTIME)?,
        RuntimeContext {
            blobs_url: env.required(&deployment::BLOBS)?.to_owned(),
            blobs: env.blobs()?,
            domain: env.domain().to_owned(),
            role: RuntimeRole::Reads,
        },
    )
    .await
    .with_context(|| format!("opening {}", deployment::RUNTIME.name))?;
    let get = |var| env.get(var).filter(|v: &&str| !v.is_empty());
    let from = get(&deployment::MAIL_FROM)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("noreply@{}", env.domain()));
    let mailer = Mailer::new(
        get(&deployment::SMTP_URL),
        get(&deployment::OUTBOX_DIR)
            .unwrap_or("/tmp/gigalixir-outbox")
            .into(),
        &from,
    )?;
    let confirm_email = match get(&deployment::EMAIL_CONFIRMATION) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => anyhow::bail!(
            "{} is true or false, not {other:?}",
            deployment::EMAIL_CONFIRMATION.name
        ),
    };
    let public_url = get(&deployment::PUBLIC_URL)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("http://localhost:{}", env.port().unwrap_or(8080)));
    tracing::info!(mail = %mailer.describe(), confirm_email, "account mail");
    // Managed databases: on the server the operator gives (Cloud SQL), or none.
    let databases = match get(&deployment::POSTGRES_URL) {
        Some(url) => Some(std::sync::Arc::new(
            gigalixir_postgres::Server::from_url(url, get(&deployment::POSTGRES_HOST))
                .with_context(|| format!("reading {}", deployment::POSTGRES_URL.name))?,
        ) as std::sync::Arc<dyn shared::ports::Databases>),
        None => None,
    };
    let app = router(ApiState {
        store: env.store()?,
        bus: env.bus()?,
        runtime: Some(runtime.runtime),
        app_domain: env.domain().to_owned(),
        certificates: None,
        reserved_domains: env.reserved_domains()?.into(),
        accounts: Accounts {
            mailer,
            confirm_email,
            public_url,
        },
        databases,
        blobs: Some(env.blobs()?),
        drains_allow_loopback: false,
    });
    Service::new(FUNCTION, app).run(&env).await?;
    Ok(())
}
