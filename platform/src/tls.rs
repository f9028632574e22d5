//! HTTPS for apps: the router on a second port (`--https-port`), with a certificate per
//! name chosen by SNI — `APP.<domain>` for an app that exists, or an app's custom domain —
//! issued by a local certificate authority kept in the data directory (`ca/ca.pem` is what
//! clients trust: `curl --cacert DATA_DIR/ca/ca.pem`). Requests then go through the same
//! router as plain HTTP, marked as HTTPS (`X-Forwarded-Proto: https`). A name the platform
//! does not serve gets no certificate: the handshake fails. With an ACME server
//! ([`crate::acme`]) its certificates are preferred; the local CA's serve until one is there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::acme::Acme;
use crate::router::{Https, Proxy};

/// How long an issued certificate is valid; it is issued again after two thirds of that.
const LEAF_DAYS: i64 = 90;
/// The most names whose certificates are kept in memory.
const MAX_CACHED: usize = 10_000;

/// The local certificate authority: its key and the certificate clients trust.
struct LocalCa {
    key: KeyPair,
    /// The CA as an issuer (its parameters and key, as on disk).
    issuer: rcgen::Certificate,
    /// `ca.pem` as DER, sent after each leaf.
    der: CertificateDer<'static>,
}

fn ca_params(instance: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("gigalixir local CA ({instance})"),
    );
    dn.push(DnType::OrganizationName, "gigalixir platform");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, 3650);
    Ok(params)
}

/// Valid from yesterday to `days` days from now.
fn set_validity(params: &mut CertificateParams, days: i64) {
    use chrono::Datelike;
    let day = |d: chrono::DateTime<chrono::Utc>| {
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let now = chrono::Utc::now();
    params.not_before = day(now - chrono::Duration::days(1));
    params.not_after = day(now + chrono::Duration::days(days));
}

impl LocalCa {
    /// Loads the CA of `dir` (`ca.pem`, `ca.key`), making one the first time.
    fn open(dir: &Path, instance: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        let params = ca_params(instance)?;
        if cert_path.exists() && key_path.exists() {
            let key = KeyPair::from_pem(&std::fs::read_to_string(&key_path)?)
                .with_context(|| format!("reading {}", key_path.display()))?;
            let pem = std::fs::read_to_string(&cert_path)?;
            let der = rustls_pemfile_first(&pem)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            // The same name and key as on disk: the certificates it signs chain to ca.pem.
            let issuer = params.self_signed(&key)?;
            return Ok(Self { key, issuer, der });
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // the key is never readable by others, not even for a moment
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)?;
            file.write_all(key.serialize_pem().as_bytes())?;
        }
        std::fs::write(&cert_path, cert.pem())?;
        tracing::info!(ca = %cert_path.display(), "made the local certificate authority for HTTPS");
        let der = cert.der().clone();
        Ok(Self {
            key,
            issuer: cert,
            der,
        })
    }

    /// A certificate for `name`, and its key.
    fn issue(
        &self,
        name: &str,
    ) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        set_validity(&mut params, LEAF_DAYS);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok((
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }
}

/// The first certificate of a PEM file, as DER.
fn rustls_pemfile_first(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())?)
}

/// Certificates by name: from the ACME server when there is one, else (and while an
/// order has not succeeded) from the local CA, issued on first use.
pub struct Certificates {
    ca: LocalCa,
    /// Where clients find the local CA's certificate.
    pub ca_file: PathBuf,
    issued: Mutex<HashMap<String, (Arc<ServerConfig>, Instant)>>,
    acme: Option<Arc<Acme>>,
}

/// How long a handshake waits for a first ACME certificate of its name.
const ACME_WAIT: Duration = Duration::from_secs(30);

impl Certificates {
    /// The certificates of the local CA in `dir`, and of `acme` if given.
    pub fn open(dir: &Path, instance: &str, acme: Option<Arc<Acme>>) -> anyhow::Result<Self> {
        Ok(Self {
            ca: LocalCa::open(dir, instance)?,
            ca_file: dir.join("ca.pem"),
            issued: Mutex::default(),
            acme,
        })
    }

    /// The TLS configuration that presents `name`'s certificate: the ACME one (waiting a
    /// while for a first order), else the local CA's.
    async fn config_for(&self, name: &str) -> anyhow::Result<Arc<ServerConfig>> {
        if let Some(acme) = &self.acme {
            if let Some(config) = acme.current(name) {
                return Ok(config);
            }
            acme.ensure(name);
            let waited = Instant::now();
            while waited.elapsed() < ACME_WAIT {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(config) = acme.current(name) {
                    return Ok(config);
                }
                if acme.describe(name).starts_with("failed") {
                    break;
                }
            }
            tracing::warn!(
                name,
                "no ACME certificate yet: the local CA's serves meanwhile"
            );
        }
        self.local(name)
    }

    /// What the local CA issued for `name`.
    fn local(&self, name: &str) -> anyhow::Result<Arc<ServerConfig>> {
        let renew_after = Duration::from_secs(LEAF_DAYS as u64 * 86_400 * 2 / 3);
        if let Ok(issued) = self.issued.lock() {
            if let Some((config, at)) = issued.get(name) {
                if at.elapsed() < renew_after {
                    return Ok(config.clone());
                }
            }
        }
        let (leaf, key) = self.ca.issue(name)?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![leaf, self.ca.der.clone()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut issued) = self.issued.lock() {
            if issued.len() >= MAX_CACHED {
                issued.clear();
            }
            issued.insert(name.to_owned(), (config.clone(), Instant::now()));
        }
        Ok(config)
    }
}

/// Serves HTTPS on `listener` until `shutdown`: each connection's certificate by SNI, for
/// names `proxy` routes; then `app` (the router in front of the platform's routes).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    proxy: Proxy,
    certs: Arc<Certificates>,
    limits: shared::web::ServeLimits,
    shutdown: CancellationToken,
) {
    let header_timeout = limits.header_read_timeout;
    // Its own cap on open connections (the HTTP port has the same): beyond, a new one is
    // closed before its handshake.
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_idle_timeout,
    ));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = Arc::new(builder);
    loop {
        let (tcp, peer) = tokio::select! {
            conn = shared::web::accept(&listener) => conn,
            () = shutdown.cancelled() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, "HTTPS connection refused: too many open connections");
            continue;
        };
        let (app, proxy, certs, builder) =
            (app.clone(), proxy.clone(), certs.clone(), builder.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = async {
                let start =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
                        .await?;
                let name = start
                    .client_hello()
                    .server_name()
                    .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
                let Some(name) = name else {
                    anyhow::bail!("no server name (SNI) in the handshake");
                };
                if !proxy.serves(&name).await {
                    anyhow::bail!("no app answers on {name}");
                }
                let config = certs.config_for(&name).await?;
                Ok(start.into_stream(config).await?)
            };
            let tls = match tokio::time::timeout(header_timeout + ACME_WAIT, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(peer = %peer, error = %format!("{err:#}"), "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(
                move |req: axum::http::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req.extensions_mut().insert(Https { port });
                    app.clone().oneshot(req)
                },
            );
            if let Err(err) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(error = %err, "HTTPS connection ended");
            }
        });
    }
}

/// The local CA as the API sees it: every served name gets a certificate at its first
/// handshake.
pub struct LocalForApi;

impl gigalixir_api::DomainCertificates for LocalForApi {
    fn requested(&self, _fqdn: &str) {}

    fn status(&self, _fqdn: &str) -> String {
        "issued by the platform's local CA at the first HTTPS request".into()
    }
}
