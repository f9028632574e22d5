//! The function's settings, from the environment.

use anyhow::Context;

/// Settings of the standalone `api` service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port to listen on (`PORT`, default 8080, as Cloud Run sets it).
    pub port: u16,
    /// Store backend URL (`STORE_URL`).
    pub store_url: String,
}

impl Config {
    /// Reads `PORT` and `STORE_URL`.
    pub fn from_env() -> anyhow::Result<Self> {
        let port = match std::env::var("PORT") {
            Ok(p) => p
                .parse()
                .with_context(|| format!("PORT `{p}` is not a port number"))?,
            Err(_) => 8080,
        };
        let store_url = std::env::var("STORE_URL")
            .context("STORE_URL is not set (e.g. sqlite:///var/lib/gigalixir/store.db)")?;
        Ok(Self { port, store_url })
    }
}
