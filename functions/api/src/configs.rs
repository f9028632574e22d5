//! Config vars: show, set, unset, copy. Each change is one change of the app's record and,
//! unless `avoid_restart`, exactly one new release: the slug of the app's latest release
//! that did not fail, with the new config (a release snapshots the config, so a rollback
//! restores it). An app without a release just keeps the config for its first release.
//!
//! Keys are shell-style names; values may hold anything but NUL. The whole config is capped
//! at [`MAX_CONFIG_BYTES`]. Values are secrets: shown to the app's owner, never logged.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use shared::domain::{AppName, Secret};
use shared::messages::ReleaseKind;
use shared::model::{ConfigVars, ReleaseStatus};
use shared::wire::{ConfigCopy, ConfigSet, ConfigUnset, Data};
use std::collections::BTreeMap;

use crate::access::AppAccess;
use crate::apps::{reload, with_record_lock};
use crate::error::{ApiError, ApiJson};
use crate::releases::{made_release, request_release};
use crate::ApiState;

/// Largest config per app: the bytes of every key and value together.
pub const MAX_CONFIG_BYTES: usize = 32 * 1024;

/// Keys the platform sets itself in every replica; a config var may not take them (the
/// platform's value would win anyway).
pub const RESERVED_KEYS: &[&str] = &[
    "PORT",
    "APP_NAME",
    "RELEASE_COOKIE",
    "ERLANG_COOKIE",
    "SECRET_KEY_BASE",
    "HOST_INDEX",
    "MY_POD_IP",
    "RELEASE_NODE",
    "MY_NODE_NAME",
    "SOURCE_VERSION",
    "SLUG_URL",
    "SLUG_SHA256",
    "MIX_ENV",
    "LIBCLUSTER_KUBERNETES_SELECTOR",
    "LIBCLUSTER_KUBERNETES_NODE_BASENAME",
    "GIGALIXIR_CLUSTER_DNS",
];

/// Checks a key: a shell variable name (`^[A-Za-z_][A-Za-z0-9_]*$`), not reserved.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    let shell_name = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shell_name {
        return Err(ApiError::invalid(
            "key",
            format!(
                "key `{}` is not a valid config var name: use letters, digits and underscores, not starting with a digit",
                key.escape_debug()
            ),
        ));
    }
    if RESERVED_KEYS.contains(&key) {
        return Err(ApiError::invalid(
            "key",
            format!("key `{key}` is reserved by the platform, which sets it in every replica"),
        ));
    }
    Ok(())
}

/// The bytes a config takes against [`MAX_CONFIG_BYTES`].
pub fn config_bytes(config: &ConfigVars) -> usize {
    config.iter().map(|(k, v)| k.len() + v.expose().len()).sum()
}

fn view(config: &ConfigVars) -> BTreeMap<String, String> {
    config
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect()
}

/// "Set A, B" for people; long lists end with "and N more".
fn summary(verb: &str, keys: &[&str]) -> String {
    const MAX: usize = 120;
    let mut out = format!("{verb} ");
    for (i, key) in keys.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let rest = keys.len() - i;
        if i > 0 && out.len() + sep.len() + key.len() > MAX {
            out.push_str(&format!(" and {rest} more"));
            return out;
        }
        out.push_str(sep);
        out.push_str(key);
    }
    out
}

/// Applies `edit` to the app's config, stores it and, unless `avoid_restart`, releases it.
/// Returns the new config.
pub(crate) async fn change(
    state: &ApiState,
    name: &AppName,
    (actor, action): (&str, &str),
    summary: String,
    avoid_restart: bool,
    edit: impl FnOnce(&mut ConfigVars) -> Result<(), ApiError>,
) -> Result<ConfigVars, ApiError> {
    let detail = summary.clone();
    let requested = with_record_lock(state, name, || async move {
        let mut app = reload(state, name).await?;
        let mut config = app.config.clone();
        edit(&mut config)?;
        let size = config_bytes(&config);
        if size > MAX_CONFIG_BYTES {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "config is larger than 32 kB ({size} bytes of keys and values, at most {MAX_CONFIG_BYTES}); nothing was changed"
                ),
            ));
        }
        app.config = config;
        state.store.update_app(&app).await?;
        if avoid_restart {
            tracing::info!(app = %name, change = %summary, "config changed, no release");
            return Ok((app.config, None));
        }
        // Nothing ran yet: the first push takes the config.
        let ran = state
            .store
            .releases(name)
            .await?
            .iter()
            .any(|r| r.status != ReleaseStatus::Failed);
        if !ran {
            tracing::info!(app = %name, change = %summary, "config changed; no release to make yet");
            return Ok((app.config, None));
        }
        let key = request_release(state, name, summary.clone(), ReleaseKind::Config).await?;
        Ok((app.config, Some(key)))
    })
    .await?;
    let (config, key) = requested;
    let mut detail = detail;
    if let Some(key) = key {
        let release = made_release(state, name, &key).await?;
        tracing::info!(app = %name, version = %release.version, "config released");
        detail = format!("{detail} ({})", release.version);
    }
    crate::access::record(state, name, actor, action, detail).await;
    Ok(config)
}

/// `GET /api/apps/NAME/configs`: `{"data": {"KEY": "value", …}}`.
pub async fn get(access: AppAccess) -> Result<Json<Data<BTreeMap<String, String>>>, ApiError> {
    let app = access.app;
    Ok(Json(Data {
        data: view(&app.config),
    }))
}

/// `POST /api/apps/NAME/configs` `{"configs": {…}, "avoid_restart": false}`: sets every
/// pair in one change. 201 (as GIGALIXIR's CLI expects) with the whole config.
pub async fn set(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<ConfigSet>,
) -> Result<(StatusCode, Json<Data<BTreeMap<String, String>>>), ApiError> {
    let app = access.app;
    if body.configs.is_empty() {
        return Err(ApiError::invalid(
            "configs",
            "configs is empty: give at least one KEY=VALUE",
        ));
    }
    for (key, value) in &body.configs {
        check_key(key)?;
        if value.contains('\0') {
            return Err(ApiError::invalid(
                "key",
                format!("key `{key}` has a value with a NUL character, which an environment variable cannot hold"),
            ));
        }
    }
    let keys: Vec<&str> = body.configs.keys().map(String::as_str).collect();
    let summary = summary("Set", &keys);
    let config = change(
        &state,
        &app.name,
        (access.user.email.as_str(), "config:set"),
        summary,
        body.avoid_restart,
        |config| {
            for (key, value) in &body.configs {
                config.insert(key.clone(), Secret::new(value.clone()));
            }
            Ok(())
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Data {
            data: view(&config),
        }),
    ))
}

/// `DELETE /api/apps/NAME/configs` `{"key": "A"}` (or `{"keys": ["A", "B"]}`): removes the
/// keys in one change. A key that is not set is refused (422) and nothing changes.
pub async fn unset(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<ConfigUnset>,
) -> Result<Json<Data<BTreeMap<String, String>>>, ApiError> {
    let app = access.app;
    let mut keys: Vec<String> = body.key.into_iter().chain(body.keys).collect();
    let mut seen = std::collections::BTreeSet::new();
    keys.retain(|k| seen.insert(k.clone()));
    if keys.is_empty() {
        return Err(ApiError::invalid(
            "key",
            "key is missing: name the config var to remove",
        ));
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let summary = summary("Unset", &refs);
    let config = change(
        &state,
        &app.name,
        (access.user.email.as_str(), "config:unset"),
        summary,
        body.avoid_restart,
        |config| {
            if let Some(missing) = keys.iter().find(|k| !config.contains_key(k.as_str())) {
                return Err(ApiError::invalid(
                    "key",
                    format!(
                        "key `{}` is not set on {}; nothing was changed",
                        missing.escape_debug(),
                        app.name
                    ),
                ));
            }
            for key in &keys {
                config.remove(key);
            }
            Ok(())
        },
    )
    .await?;
    Ok(Json(Data {
        data: view(&config),
    }))
}

/// `POST /api/apps/NAME/configs/copy` `{"from": "SRC"}`: merges SRC's config into NAME's
/// (SRC's values win) in one change. Both apps must be the caller's (404 otherwise).
pub async fn copy(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<ConfigCopy>,
) -> Result<Json<Data<BTreeMap<String, String>>>, ApiError> {
    let dst = access.app;
    let src = crate::access::app_for(
        &state,
        &access.user,
        &body.from,
        crate::access::Need::Change,
    )
    .await?
    .0;
    if src.name == dst.name {
        return Err(ApiError::invalid(
            "from",
            "from names the same app: copy config from another app",
        ));
    }
    if src.config.is_empty() {
        return Err(ApiError::invalid(
            "from",
            format!("from `{}` has no config vars: nothing to copy", src.name),
        ));
    }
    let summary = format!("Copy config from {}", src.name);
    let actor = (access.user.email.as_str(), "config:copy");
    let config = change(&state, &dst.name, actor, summary, false, |config| {
        config.extend(src.config.clone());
        Ok(())
    })
    .await?;
    Ok(Json(Data {
        data: view(&config),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shell_names_and_not_reserved() {
        for ok in ["A", "_x", "DATABASE_URL", "a1_B2", "POOL_SIZE"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É", "A.B", "$A"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        for reserved in ["PORT", "SECRET_KEY_BASE", "SLUG_SHA256", "MIX_ENV"] {
            assert!(check_key(reserved).is_err(), "{reserved}");
        }
    }

    #[test]
    fn size_counts_keys_and_values_in_bytes() {
        let mut c = ConfigVars::new();
        c.insert("AB".into(), Secret::new("é"));
        c.insert("C".into(), Secret::new(""));
        assert_eq!(config_bytes(&c), 2 + 2 + 1);
    }

    #[test]
    fn summaries_name_the_keys_and_stay_short() {
        assert_eq!(summary("Set", &["A", "B"]), "Set A, B");
        assert_eq!(summary("Unset", &["FOO"]), "Unset FOO");
        let many: Vec<String> = (0..100).map(|i| format!("KEY_NUMBER_{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let s = summary("Set", &refs);
        assert!(s.len() < 150, "{s}");
        assert!(s.starts_with("Set KEY_NUMBER_0, KEY_NUMBER_1"), "{s}");
        assert!(s.ends_with("more"), "{s}");
    }
}
