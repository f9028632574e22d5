//! The production backends on Google Cloud: Pub/Sub (bus), Firestore (store) and Cloud
//! Storage (blobs). Each sits behind its own feature so that a function links only what it
//! uses, and each passes the same contract suite as its embedded twin, against the
//! emulators (`scripts/emulators start`, one script per emulator).

#[cfg(feature = "firestore")]
pub mod firestore;
#[cfg(feature = "gcs")]
pub mod gcs;
#[cfg(feature = "pubsub")]
pub mod pubsub;

// The core's modules, by the paths the modules of this crate use.
use gigalixir_core::{deployment, domain, error, messages, model, ports};
