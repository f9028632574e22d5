//! Who may do what to an app: its owner, the people the owner gave access
//! (`access:add`, as a collaborator or a viewer), nobody else.
//!
//! [`APP_ROUTES`] is the one table of every app route and what it needs; [`AppAccess`]
//! (the extractor every app route takes) looks the route up there, so a route missing
//! from the table answers 500 rather than anything permissive. Someone with no access to
//! an app gets 404, exactly as for a missing app; someone with too little gets 403.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, MatchedPath, Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shared::domain::{AppName, Email, UserId};
use shared::messages::{Envelope, Event};
use shared::model::{Activity, App, Member, Role, User};
use shared::PortError;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson};
use crate::ApiState;

/// What a route needs of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Seeing the app: info, releases, status, logs, domains, health, activity, access.
    Read,
    /// Changing or reaching into it: config (values included), deploys, rollbacks,
    /// scale, restart, SSH, domains, health, stack, webhook.
    Change,
    /// Owning it: destroying it, managing access, transferring it.
    Own,
}

/// What the caller is to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its owner.
    Owner,
    /// Given access by its owner.
    Member(Role),
}

impl Standing {
    /// Whether this standing is enough for `need`.
    pub fn allows(self, need: Need) -> bool {
        match (self, need) {
            (Standing::Owner, _) => true,
            (Standing::Member(Role::Collaborator), Need::Read | Need::Change) => true,
            (Standing::Member(Role::Viewer), Need::Read) => true,
            (Standing::Member(_), _) => false,
        }
    }

    /// Its name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Owner => "OWNER",
            Standing::Member(role) => role.as_str(),
        }
    }
}

/// Every app route (method, path as routed) and what it needs. The README's table is
/// this one; `tests/access_matrix.rs` checks every row for every kind of caller.
pub const APP_ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/api/apps/{name}", Need::Read),
    ("DELETE", "/api/apps/{name}", Need::Own),
    ("GET", "/api/apps/{name}/releases", Need::Read),
    (
        "POST",
        "/api/apps/{name}/releases/{version}/rollback",
        Need::Change,
    ),
    ("GET", "/api/apps/{name}/domains", Need::Read),
    ("POST", "/api/apps/{name}/domains", Need::Change),
    ("DELETE", "/api/apps/{name}/domains", Need::Change),
    ("PUT", "/api/apps/{name}/stack", Need::Change),
    ("GET", "/api/apps/{name}/health", Need::Read),
    ("PUT", "/api/apps/{name}/health", Need::Change),
    ("GET", "/api/apps/{name}/configs", Need::Change),
    ("POST", "/api/apps/{name}/configs", Need::Change),
    ("DELETE", "/api/apps/{name}/configs", Need::Change),
    ("POST", "/api/apps/{name}/configs/copy", Need::Change),
    ("GET", "/api/apps/{name}/status", Need::Read),
    ("PUT", "/api/apps/{name}/scale", Need::Change),
    ("PUT", "/api/apps/{name}/restart", Need::Change),
    ("GET", "/api/apps/{name}/logs", Need::Read),
    ("GET", "/api/apps/{name}/ssh_ip", Need::Change),
    ("POST", "/api/apps/{name}/webhook", Need::Change),
    ("DELETE", "/api/apps/{name}/webhook", Need::Change),
    ("GET", "/api/apps/{name}/activity", Need::Read),
    ("GET", "/api/apps/{name}/permissions", Need::Read),
    ("POST", "/api/apps/{name}/permissions", Need::Own),
    ("DELETE", "/api/apps/{name}/permissions", Need::Own),
    ("PUT", "/api/apps/{name}/owner", Need::Own),
    ("PUT", "/api/apps/{name}/maintenance", Need::Change),
    ("DELETE", "/api/apps/{name}/pods/{pod}", Need::Change),
    ("POST", "/api/apps/{name}/run", Need::Change),
    ("GET", "/api/apps/{name}/canaries", Need::Read),
    ("PUT", "/api/apps/{name}/canaries", Need::Change),
    ("DELETE", "/api/apps/{name}/canaries/{canary}", Need::Change),
    // Drain and database URLs hold tokens and passwords: listing them is a change-level
    // right, as config is.
    ("GET", "/api/apps/{name}/drains", Need::Change),
    ("POST", "/api/apps/{name}/drains", Need::Change),
    ("DELETE", "/api/apps/{name}/drains", Need::Change),
    ("GET", "/api/apps/{name}/databases", Need::Change),
    ("POST", "/api/apps/{name}/databases", Need::Change),
    ("POST", "/api/apps/{name}/free_databases", Need::Change),
    ("PUT", "/api/apps/{name}/databases/{id}", Need::Change),
    ("DELETE", "/api/apps/{name}/databases/{id}", Need::Own),
    (
        "PUT",
        "/api/apps/{name}/databases/{id}/restart",
        Need::Change,
    ),
    ("PUT", "/api/apps/{name}/databases/{id}/stop", Need::Change),
    ("PUT", "/api/apps/{name}/databases/{id}/start", Need::Change),
    (
        "POST",
        "/api/apps/{name}/databases/{id}/upgrade",
        Need::Change,
    ),
    (
        "GET",
        "/api/apps/{name}/databases/{id}/read_replicas",
        Need::Change,
    ),
    (
        "POST",
        "/api/apps/{name}/databases/{id}/read_replicas",
        Need::Change,
    ),
    (
        "GET",
        "/api/apps/{name}/databases/{id}/backups",
        Need::Change,
    ),
    (
        "POST",
        "/api/apps/{name}/databases/{id}/backups",
        Need::Change,
    ),
    (
        "POST",
        "/api/apps/{name}/databases/{id}/backups/{backup}/restore",
        Need::Own,
    ),
];

/// [`APP_ROUTES`] as the README's Markdown table: route, owner, collaborator, viewer.
pub fn readme_table() -> String {
    let mut out = String::from("| route | owner | collaborator | viewer |\n|---|---|---|---|\n");
    for (method, path, need) in APP_ROUTES {
        let mark = |standing: Standing| if standing.allows(*need) { "yes" } else { "403" };
        out.push_str(&format!(
            "| `{method} {path}` | {} | {} | {} |\n",
            mark(Standing::Owner),
            mark(Standing::Member(Role::Collaborator)),
            mark(Standing::Member(Role::Viewer)),
        ));
    }
    out
}

/// What `method path` needs, from [`APP_ROUTES`].
pub fn need_of(method: &Method, path: &str) -> Option<Need> {
    APP_ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, need)| *need)
}

/// The caller's standing with the app called `name`: `None` when they have none or there
/// is no such app.
pub async fn standing(
    state: &ApiState,
    user: &User,
    name: &AppName,
) -> Result<Option<(App, Standing)>, ApiError> {
    let app = match state.store.app(name).await {
        Ok(app) => app,
        Err(PortError::NotFound) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    if app.owner == user.id {
        return Ok(Some((app, Standing::Owner)));
    }
    let members = state.store.members_of(name).await?;
    Ok(members
        .iter()
        .find(|m| m.user == user.id)
        .map(|m| (app, Standing::Member(m.role))))
}

/// The app called `raw` if `user` may do what `need` says to it: 404 when they have no
/// access (or it does not exist), 403 when their role is too little.
pub async fn app_for(
    state: &ApiState,
    user: &User,
    raw: &str,
    need: Need,
) -> Result<(App, Standing), ApiError> {
    let missing = || ApiError::not_found(format!("App `{raw}` not found."));
    let name = AppName::parse(raw).map_err(|_| missing())?;
    let (app, standing) = standing(state, user, &name).await?.ok_or_else(missing)?;
    if !standing.allows(need) {
        let what = match need {
            Need::Read => "see",
            Need::Change => "change",
            Need::Own => "do this to",
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "As a {} of `{raw}` you may not {what} it{}.",
                standing.as_str().to_lowercase(),
                if need == Need::Own {
                    ": only its owner may"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok((app, standing))
}

/// An app route's caller and app, checked against [`APP_ROUTES`].
pub struct AppAccess {
    /// The caller.
    pub user: User,
    /// The app.
    pub app: App,
    /// What the caller is to it.
    pub standing: Standing,
}

impl FromRequestParts<ApiState> for AppAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let Some(need) = need_of(&parts.method, &route) else {
            tracing::error!(method = %parts.method, route, "an app route missing from APP_ROUTES");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This route has no access rule.",
            ));
        };
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("App not found."))?;
        let name = params.get("name").cloned().unwrap_or_default();
        let (app, standing) = app_for(state, &user, &name, need).await?;
        Ok(AppAccess {
            user,
            app,
            standing,
        })
    }
}

/// Records something `actor` did to `app` (`apps:activity`). A failure to record is
/// logged, never the caller's error: what was done is done.
pub async fn record(state: &ApiState, app: &AppName, actor: &str, action: &str, detail: String) {
    let entry = Activity {
        app: app.clone(),
        at: Utc::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail,
    };
    if let Err(err) = state.store.add_activity(&entry).await {
        tracing::warn!(app = %app, action, error = %err, "activity not recorded");
    }
}

/// One person with access, as `access` lists them.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessView {
    /// Their email.
    pub email: String,
    /// `OWNER`, `COLLABORATOR` or `VIEWER`.
    pub role: String,
}

/// `GET /api/apps/NAME/permissions`: the owner, then everyone given access, oldest first.
pub async fn list(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<Json<Value>, ApiError> {
    let owner = state.store.user(&access.app.owner).await?;
    let mut rows = vec![AccessView {
        email: owner.email.to_string(),
        role: Standing::Owner.as_str().into(),
    }];
    for member in state.store.members_of(&access.app.name).await? {
        match state.store.user(&member.user).await {
            Ok(user) => rows.push(AccessView {
                email: user.email.to_string(),
                role: member.role.as_str().into(),
            }),
            Err(PortError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Json(json!({ "data": rows })))
}

/// The body of `access:add` and `access:remove`.
#[derive(Debug, Deserialize)]
pub struct AccessChange {
    email: String,
    #[serde(default)]
    role: Option<String>,
}

/// The account of `raw`, or 422 naming the field.
async fn account_of(state: &ApiState, raw: &str) -> Result<User, ApiError> {
    let email = Email::parse(raw).map_err(|e| ApiError::invalid("email", e.0))?;
    match state.store.user_by_email(&email).await {
        Ok(user) if user.confirmed => Ok(user),
        Ok(_) | Err(PortError::NotFound) => Err(ApiError::invalid(
            "email",
            format!("`{raw}` has no account here (they sign up first, with `gigalixir signup`)"),
        )),
        Err(err) => Err(err.into()),
    }
}

/// Tells the deploy step to give the replicas of `app` its people's current SSH keys
/// (`user` changed among them).
pub(crate) async fn keys_changed(
    state: &ApiState,
    user: &UserId,
    app: &AppName,
) -> Result<(), ApiError> {
    let event = Event::SshKeysChanged {
        user: user.clone(),
        app: Some(app.clone()),
    };
    state
        .bus
        .publish(&event.topic(), &Envelope::event(&event, None))
        .await?;
    Ok(())
}

/// `POST /api/apps/NAME/permissions` `{"email", "role"}`: gives someone with an account
/// access as `COLLABORATOR` (the default) or `VIEWER`, or changes their role. Owner only.
pub async fn add(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<AccessChange>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let role = match body.role.as_deref() {
        None | Some("") => Role::Collaborator,
        Some(raw) => Role::parse(raw)
            .ok_or_else(|| ApiError::invalid("role", "is COLLABORATOR or VIEWER"))?,
    };
    let user = account_of(&state, &body.email).await?;
    if user.id == access.app.owner {
        return Err(ApiError::invalid("email", "is the app's owner"));
    }
    const MAX_MEMBERS: usize = 50;
    let members = state.store.members_of(&access.app.name).await?;
    if members.len() >= MAX_MEMBERS && !members.iter().any(|m| m.user == user.id) {
        return Err(ApiError::invalid(
            "email",
            format!("an app may have at most {MAX_MEMBERS} people besides its owner"),
        ));
    }
    // A change of role keeps the person's place in the list.
    let added_at = members
        .iter()
        .find(|m| m.user == user.id)
        .map_or_else(Utc::now, |m| m.added_at);
    state
        .store
        .put_member(&Member {
            app: access.app.name.clone(),
            user: user.id.clone(),
            role,
            added_at,
        })
        .await?;
    keys_changed(&state, &user.id, &access.app.name).await?;
    record(
        &state,
        &access.app.name,
        access.user.email.as_str(),
        "access:add",
        format!("{} as {}", user.email, role.as_str()),
    )
    .await;
    tracing::info!(app = %access.app.name, member = %user.id, role = role.as_str(), "access given");
    Ok((
        StatusCode::CREATED,
        Json(json!({"data": {"email": user.email.to_string(), "role": role.as_str()}})),
    ))
}

/// `DELETE /api/apps/NAME/permissions` `{"email"}`: takes someone's access away. Owner only.
pub async fn remove(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<AccessChange>,
) -> Result<Json<Value>, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid("email", e.0))?;
    let not_member = || ApiError::invalid("email", format!("`{email}` has no access to this app"));
    let user = match state.store.user_by_email(&email).await {
        Ok(user) => user,
        Err(PortError::NotFound) => return Err(not_member()),
        Err(err) => return Err(err.into()),
    };
    match state.store.remove_member(&access.app.name, &user.id).await {
        Ok(()) => {}
        Err(PortError::NotFound) => return Err(not_member()),
        Err(err) => return Err(err.into()),
    }
    keys_changed(&state, &user.id, &access.app.name).await?;
    record(
        &state,
        &access.app.name,
        access.user.email.as_str(),
        "access:remove",
        email.to_string(),
    )
    .await;
    tracing::info!(app = %access.app.name, member = %user.id, "access taken away");
    Ok(Json(json!({"data": {}})))
}

/// `PUT /api/apps/NAME/owner` `{"email"}` (`apps:transfer`): gives the app to another
/// account. The new owner's own access record goes; the old owner stays on as a
/// collaborator, so nobody is locked out by a mistyped address.
pub async fn transfer(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<AccessChange>,
) -> Result<Json<Value>, ApiError> {
    let to = account_of(&state, &body.email).await?;
    if to.id == access.app.owner {
        return Err(ApiError::invalid("email", "already owns the app"));
    }
    let name = access.app.name.clone();
    crate::apps::with_record_lock(&state, &name, || async {
        let mut app = crate::apps::reload(&state, &name).await?;
        if app.owner != access.user.id {
            return Err(ApiError::not_found(format!("App `{name}` not found.")));
        }
        if state.store.apps_of(&to.id).await?.len() >= crate::apps::MAX_APPS_PER_ACCOUNT {
            return Err(ApiError::invalid(
                "email",
                "that account already has as many apps as an account may have",
            ));
        }
        let old = app.owner.clone();
        app.owner = to.id.clone();
        state.store.update_app(&app).await?;
        match state.store.remove_member(&name, &to.id).await {
            Ok(()) | Err(PortError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
        state
            .store
            .put_member(&Member {
                app: name.clone(),
                user: old,
                role: Role::Collaborator,
                added_at: Utc::now(),
            })
            .await?;
        keys_changed(&state, &to.id, &app.name).await?;
        Ok(())
    })
    .await?;
    record(
        &state,
        &name,
        access.user.email.as_str(),
        "transfer",
        format!("to {}", to.email),
    )
    .await;
    // Its canary, and any of the old owner's apps whose canary it was, are another
    // owner's now: their routes change (no share of requests crosses accounts).
    crate::domains::announce(&state, &name).await;
    if let Ok(apps) = state.store.apps_of(&access.user.id).await {
        for other in apps {
            if other.canary.as_ref().is_some_and(|c| c.app == name) {
                crate::domains::announce(&state, &other.name).await;
            }
        }
    }
    tracing::info!(app = %name, to = %to.id, "app transferred");
    Ok(Json(json!({"data": {"owner": to.email.to_string()}})))
}

/// Query of `apps:activity`.
#[derive(Debug, Default, Deserialize)]
pub struct ActivityQuery {
    limit: Option<usize>,
}

/// `GET /api/apps/NAME/activity`: who did what and when, newest first (at most 1,000; a
/// year at most).
pub async fn activity(
    State(state): State<ApiState>,
    access: AppAccess,
    axum::extract::Query(query): axum::extract::Query<ActivityQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.store.activity_of(&access.app.name, limit).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|a| {
            json!({
                "at": a.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "actor": a.actor,
                "action": a.action,
                "detail": a.detail,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}
