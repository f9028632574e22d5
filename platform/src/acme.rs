//! Certificates from an ACME server (`--acme-directory`: Let's Encrypt, or Pebble in the
//! tests) for app hosts and custom domains, with HTTP-01 challenges answered by the router
//! on the HTTP port. An order starts when a domain is added (or at the first handshake for
//! a name without a certificate); a failed one is retried with backoff and its reason
//! shown in `gigalixir domains`; a certificate is renewed once a third of its life (at most
//! 30 days) is left, the old one serving until the new one is there. The account's
//! credentials and the certificates are kept in the blob store (`tls/acme/…`), so a restart
//! or a second router reuses them.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use shared::ports::Blobs;

/// The first retry of a failed order; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often certificates are checked for renewal and failed orders for a retry.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// A certificate in use.
#[derive(Clone)]
struct Issued {
    config: Arc<ServerConfig>,
    not_before: i64,
    not_after: i64,
}

/// Where a name's certificate stands, for people.
#[derive(Clone, Debug)]
enum State {
    Pending,
    Issued {
        not_after: i64,
    },
    Failed {
        reason: String,
        retry_at: i64,
        backoff: Duration,
    },
}

/// A certificate as kept in the blob store.
#[derive(Serialize, Deserialize)]
struct Stored {
    chain_pem: String,
    key_pem: String,
}

/// The ACME client of the router.
pub struct Acme {
    directory: String,
    ca_file: Option<PathBuf>,
    blobs: Arc<dyn Blobs>,
    account: tokio::sync::Mutex<Option<Account>>,
    /// HTTP-01 tokens and their key authorizations, while an order runs.
    challenges: RwLock<HashMap<String, String>>,
    issued: RwLock<HashMap<String, Issued>>,
    states: RwLock<HashMap<String, State>>,
    in_flight: Mutex<HashSet<String>>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Acme {
    /// A client of the ACME server at `directory`, trusting `ca_file` besides the usual
    /// roots (a test server's own certificate).
    pub fn new(directory: String, ca_file: Option<PathBuf>, blobs: Arc<dyn Blobs>) -> Arc<Self> {
        Arc::new(Self {
            directory,
            ca_file,
            blobs,
            account: tokio::sync::Mutex::new(None),
            challenges: RwLock::default(),
            issued: RwLock::default(),
            states: RwLock::default(),
            in_flight: Mutex::default(),
        })
    }

    /// The key authorization for an HTTP-01 `token` of a running order.
    pub fn challenge(&self, token: &str) -> Option<String> {
        self.challenges.read().ok()?.get(token).cloned()
    }

    /// The TLS configuration with `name`'s certificate, if it has one.
    pub fn current(&self, name: &str) -> Option<Arc<ServerConfig>> {
        let issued = self.issued.read().ok()?.get(name).cloned()?;
        (issued.not_after > now()).then_some(issued.config)
    }

    /// Where `name`'s certificate stands, in words.
    pub fn describe(&self, name: &str) -> String {
        let state = self.states.read().ok().and_then(|s| s.get(name).cloned());
        match state {
            None => "not requested yet".into(),
            Some(State::Pending) => "pending (the ACME order runs)".into(),
            Some(State::Issued { not_after }) => format!(
                "issued, valid until {}",
                chrono::DateTime::from_timestamp(not_after, 0)
                    .map_or_else(|| not_after.to_string(), |t| t.to_rfc3339())
            ),
            Some(State::Failed {
                reason, retry_at, ..
            }) => format!(
                "failed: {reason} (retried in {} s)",
                (retry_at - now()).max(0)
            ),
        }
    }

    fn set_state(&self, name: &str, state: State) {
        if let Ok(mut states) = self.states.write() {
            states.insert(name.to_owned(), state);
        }
    }

    /// Starts getting a certificate for `name` unless it has a current one, an order runs,
    /// or a failed one waits for its retry.
    pub fn ensure(self: &Arc<Self>, name: &str) {
        if self.current(name).is_some() {
            return;
        }
        if let Some(State::Failed { retry_at, .. }) =
            self.states.read().ok().and_then(|s| s.get(name).cloned())
        {
            if retry_at > now() {
                return;
            }
        }
        self.start(name);
    }

    /// Runs an order for `name` in the background (one at a time per name).
    fn start(self: &Arc<Self>, name: &str) {
        let Ok(mut in_flight) = self.in_flight.lock() else {
            return;
        };
        if !in_flight.insert(name.to_owned()) {
            return;
        }
        drop(in_flight);
        let (me, name) = (self.clone(), name.to_owned());
        tokio::spawn(async move {
            if !matches!(
                me.states.read().ok().and_then(|s| s.get(&name).cloned()),
                Some(State::Issued { .. })
            ) {
                me.set_state(&name, State::Pending);
            }
            let outcome = match me.load(&name).await {
                Some(issued) if !me.due(&issued) => Ok(issued),
                _ => me.order(&name).await,
            };
            match outcome {
                Ok(issued) => {
                    tracing::info!(name = %name, not_after = issued.not_after, "certificate ready");
                    me.set_state(
                        &name,
                        State::Issued {
                            not_after: issued.not_after,
                        },
                    );
                    if let Ok(mut all) = me.issued.write() {
                        all.insert(name.clone(), issued);
                    }
                }
                Err(err) => {
                    let backoff = match me.states.read().ok().and_then(|s| s.get(&name).cloned()) {
                        Some(State::Failed { backoff, .. }) => (backoff * 2).min(MAX_BACKOFF),
                        _ => FIRST_BACKOFF,
                    };
                    let reason = format!("{err:#}");
                    tracing::warn!(name = %name, %reason, retry_in_s = backoff.as_secs(), "certificate order failed");
                    // A certificate still valid keeps serving meanwhile.
                    me.set_state(
                        &name,
                        State::Failed {
                            reason,
                            retry_at: now() + backoff.as_secs() as i64,
                            backoff,
                        },
                    );
                }
            }
            if let Ok(mut in_flight) = me.in_flight.lock() {
                in_flight.remove(&name);
            }
        });
    }

    /// Whether `issued` should be replaced now: a third of its life (at most 30 days) left.
    fn due(&self, issued: &Issued) -> bool {
        let life = issued.not_after - issued.not_before;
        let margin = (life / 3).min(30 * 86_400);
        now() >= issued.not_after - margin
    }

    /// Forgets `name` (no app answers on it any more): no renewal, no retry.
    fn forget(&self, name: &str) {
        if let Ok(mut issued) = self.issued.write() {
            issued.remove(name);
        }
        if let Ok(mut states) = self.states.write() {
            states.remove(name);
        }
    }

    /// Renews what is due and retries what failed — for names `proxy` still serves; the
    /// others are forgotten — until the process ends. A renewal that fails waits for its
    /// retry like any failed order, the old certificate serving meanwhile.
    pub fn spawn_upkeep(self: &Arc<Self>, proxy: crate::router::Proxy) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let due: Vec<String> = me
                    .issued
                    .read()
                    .map(|all| {
                        all.iter()
                            .filter(|(_, i)| me.due(i))
                            .map(|(n, _)| n.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let failed: Vec<String> = me
                    .states
                    .read()
                    .map(|s| {
                        s.iter()
                            .filter(|(_, st)| {
                                matches!(st, State::Failed { retry_at, .. } if *retry_at <= now())
                            })
                            .map(|(n, _)| n.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let waiting = |name: &str| {
                    me.states.read().ok().is_some_and(|s| {
                        matches!(s.get(name), Some(State::Failed { retry_at, .. }) if *retry_at > now())
                    })
                };
                for name in due.into_iter().chain(failed) {
                    if waiting(&name) {
                        continue;
                    }
                    if !proxy.serves(&name).await {
                        tracing::info!(name = %name, "no app answers on this name any more: its certificate is no longer renewed");
                        me.forget(&name);
                        continue;
                    }
                    tracing::info!(name = %name, "ordering a certificate (renewal or retry)");
                    me.start(&name);
                }
            }
        });
    }

    fn blob_key(&self, what: &str) -> String {
        // one directory per ACME server: a test server's certificates are not production's
        let server = format!(
            "{:x}",
            <sha2::Sha256 as sha2::Digest>::digest(self.directory.as_bytes())
        );
        format!("tls/acme/{}/{what}", &server[..16])
    }

    /// A kept certificate of `name`, if there is one still valid.
    async fn load(&self, name: &str) -> Option<Issued> {
        let bytes = self
            .blobs
            .get(&self.blob_key(&format!("certs/{name}.json")))
            .await
            .ok()?;
        let stored: Stored = serde_json::from_slice(&bytes).ok()?;
        let issued = issued(&stored).ok()?;
        (issued.not_after > now()).then_some(issued)
    }

    /// The account, made (and kept) the first time.
    async fn account(&self) -> anyhow::Result<Account> {
        let mut account = self.account.lock().await;
        if let Some(account) = account.as_ref() {
            return Ok(account.clone());
        }
        let builder = || match &self.ca_file {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        let key = self.blob_key("account.json");
        let made = match self.blobs.get(&key).await {
            Ok(bytes) => {
                let credentials: AccountCredentials = serde_json::from_slice(&bytes)?;
                builder()?.from_credentials(credentials).await?
            }
            Err(_) => {
                let (made, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &[],
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.directory.clone(),
                        None,
                    )
                    .await
                    .context("creating the ACME account")?;
                self.blobs
                    .put(&key, serde_json::to_vec(&credentials)?.into())
                    .await?;
                made
            }
        };
        *account = Some(made.clone());
        Ok(made)
    }

    /// One order for `name`, HTTP-01: the certificate, kept in the blob store.
    async fn order(&self, name: &str) -> anyhow::Result<Issued> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(name.to_owned())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .context("opening an order")?;
        let mut tokens = Vec::new();
        let retries = RetryPolicy::new().timeout(Duration::from_secs(90));
        let result: anyhow::Result<Stored> = async {
            let validated: anyhow::Result<()> = async {
                let mut authorizations = order.authorizations();
                while let Some(authz) = authorizations.next().await {
                    let mut authz = authz?;
                    match authz.status {
                        AuthorizationStatus::Pending => {}
                        AuthorizationStatus::Valid => continue,
                        other => anyhow::bail!("the authorization is {other:?}"),
                    }
                    let mut challenge = authz
                        .challenge(ChallengeType::Http01)
                        .context("the ACME server offers no HTTP-01 challenge")?;
                    let token = challenge.token.clone();
                    let answer = challenge.key_authorization().as_str().to_owned();
                    if let Ok(mut challenges) = self.challenges.write() {
                        challenges.insert(token.clone(), answer);
                    }
                    tokens.push(token);
                    challenge.set_ready().await?;
                }
                match order.poll_ready(&retries).await? {
                    OrderStatus::Ready => Ok(()),
                    status => {
                        let why = order
                            .state()
                            .error
                            .as_ref()
                            .and_then(|e| e.detail.clone())
                            .unwrap_or_else(|| format!("the order is {status:?}"));
                        anyhow::bail!("{why}");
                    }
                }
            }
            .await;
            validated.with_context(|| {
                format!(
                    "the ACME server could not check http://{name}/.well-known/acme-challenge/ \
                     (does {name} point at the platform?)"
                )
            })?;
            let key_pem = order.finalize().await?;
            let chain_pem = order.poll_certificate(&retries).await?;
            Ok(Stored { chain_pem, key_pem })
        }
        .await;
        if let Ok(mut challenges) = self.challenges.write() {
            for token in &tokens {
                challenges.remove(token);
            }
        }
        let stored = result?;
        let issued = issued(&stored)?;
        self.blobs
            .put(
                &self.blob_key(&format!("certs/{name}.json")),
                serde_json::to_vec(&stored)?.into(),
            )
            .await?;
        Ok(issued)
    }
}

/// The TLS configuration of a kept certificate, and its validity.
fn issued(stored: &Stored) -> anyhow::Result<Issued> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(stored.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("reading the certificate chain")?;
    let leaf = chain.first().context("an empty certificate chain")?.clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| anyhow::anyhow!("reading the certificate: {e}"))?;
    let (not_before, not_after) = (
        parsed.validity().not_before.timestamp(),
        parsed.validity().not_after.timestamp(),
    );
    let key = PrivateKeyDer::from_pem_slice(stored.key_pem.as_bytes())
        .context("reading the certificate's key")?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Issued {
        config: Arc::new(config),
        not_before,
        not_after,
    })
}

/// The ACME client as the API sees it (`gigalixir domains`, `domains:add`).
pub struct ForApi(pub Arc<Acme>);

impl gigalixir_api::DomainCertificates for ForApi {
    fn requested(&self, fqdn: &str) {
        self.0.ensure(fqdn);
    }

    fn status(&self, fqdn: &str) -> String {
        self.0.describe(fqdn)
    }
}
