//! The function's settings, from the environment variables `shared::deployment::env`
//! lists for `api`.

use shared::deployment::{self, Function};
use shared::service::{FunctionEnv, ServiceError};

/// Settings of the standalone `api` service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every variable the function reads, checked.
    pub env: FunctionEnv,
}

impl Config {
    /// Reads `PORT`, `GIGALIXIR_STORE` and `GIGALIXIR_BUS`; fails naming each required one
    /// that is missing, with an example.
    pub fn from_env() -> Result<Self, ServiceError> {
        Ok(Self {
            env: FunctionEnv::from_env(Function::Api)?,
        })
    }

    /// Port to listen on (`PORT`, default 8080).
    pub fn port(&self) -> Result<u16, ServiceError> {
        self.env.port()
    }

    /// Store backend URL (`GIGALIXIR_STORE`).
    pub fn store_url(&self) -> Result<&str, ServiceError> {
        self.env.required(&deployment::STORE)
    }

    /// Bus backend URL (`GIGALIXIR_BUS`).
    pub fn bus_url(&self) -> Result<&str, ServiceError> {
        self.env.required(&deployment::BUS)
    }
}
