//! The function's settings, from the environment.

use shared::web::{backend_url_from_env, port_from_env};

/// Settings of the standalone `api` service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port to listen on (`PORT`, default 8080).
    pub port: u16,
    /// Store backend URL (`STORE_URL`).
    pub store_url: String,
    /// Bus backend URL (`BUS_URL`).
    pub bus_url: String,
}

impl Config {
    /// Reads `PORT`, `STORE_URL` and `BUS_URL`.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            port: port_from_env().map_err(anyhow::Error::msg)?,
            store_url: backend_url_from_env("STORE_URL", "sqlite:///var/lib/gigalixir/store.db")
                .map_err(anyhow::Error::msg)?,
            bus_url: backend_url_from_env("BUS_URL", "sqlite:///var/lib/gigalixir/bus.db")
                .map_err(anyhow::Error::msg)?,
        })
    }
}
