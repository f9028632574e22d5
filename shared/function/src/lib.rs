//! The function runtime: what every function's binary is made of. Picking the backends
//! from their URLs, serving a router (HTTP, Pub/Sub push, AWS Lambda), the push handling
//! and its authentication, API keys, store locks held by live work, the dead-letter
//! consumer, and the removal of a destroyed app's blobs.

pub mod auth;
pub mod backends;
pub mod cleanup;
pub mod dead_letters;
pub mod locks;
pub mod push;
pub mod pushauth;
pub mod service;
pub mod web;

// The core's modules, by the paths the modules above use.
use gigalixir_core::{blob_keys, deployment, domain, error, messages, model, ports};
// The adapters `backends` opens.
#[cfg(feature = "docker")]
use gigalixir_docker as docker;
use gigalixir_embedded as embedded;
#[cfg(any(feature = "gcs", feature = "firestore", feature = "pubsub"))]
use gigalixir_gcp as gcp;
#[cfg(feature = "kube")]
use gigalixir_kube as kube_runtime;
