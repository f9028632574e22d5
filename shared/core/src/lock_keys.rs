//! The names of the store locks every part agrees on (held through
//! `gigalixir_function::locks`).

/// The lock a push of `app` holds while it runs (and that destroying the app takes).
pub fn push_lock(app: &crate::domain::AppName) -> String {
    format!("push:{app}")
}

/// The lock a deploy (or scale, restart) of `app` holds while it moves the app's replicas.
pub fn deploy_lock(app: &crate::domain::AppName) -> String {
    format!("deploy:{app}")
}

/// The lock the release step holds while it numbers a release of `app`: pushes' releases,
/// config changes and rollbacks take turns, so each release's slug and config are those of
/// the moment it is made.
pub fn release_lock(app: &crate::domain::AppName) -> String {
    format!("release:{app}")
}
