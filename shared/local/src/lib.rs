//! Work on this machine's files that steps and adapters share: tar archives (merging,
//! re-rooting, capped reading) and git repositories named by a push or a webhook.

pub mod archive;
pub mod gitfetch;

// The core's modules, by the paths the modules of this crate use.
use gigalixir_core::ports;
