//! Custom domains, as GIGALIXIR's CLI calls them: `GET|POST|DELETE /api/apps/NAME/domains`
//! (`{"fqdn": ...}`). A domain belongs to one app in the whole platform; the router sends
//! its requests to that app; destroying the app frees it. Each change announces
//! `domains-changed`, so that a runtime with its own ingress (Kubernetes) answers on the new
//! set; the platform's router reads the store.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use shared::domain::{AppName, Fqdn};
use shared::messages::{Envelope, Event};
use shared::model::CustomDomain;
use shared::wire::{Data, DomainView};
use shared::PortError;

use crate::access::AppAccess;
use crate::error::{ApiError, ApiJson};
use crate::ApiState;

/// The most custom domains one app may have.
pub const MAX_DOMAINS_PER_APP: usize = 20;

/// The body of `POST` and `DELETE`.
#[derive(Debug, Deserialize)]
pub struct DomainBody {
    /// The domain's name.
    pub fqdn: Option<String>,
}

fn view(state: &ApiState, domain: &CustomDomain) -> DomainView {
    DomainView {
        fqdn: domain.fqdn.to_string(),
        cname: format!("{}.{}", domain.app, state.app_domain),
        created_at: domain.created_at,
        certificate: state
            .certificates
            .as_ref()
            .map(|c| c.status(domain.fqdn.as_str())),
    }
}

/// Announces that the app's routes (custom domains, maintenance mode, canary) changed.
/// The change is stored already: if the bus cannot take the announcement, the runtime gets
/// the routes at the app's next deploy (which syncs them), and the caller is not told to
/// retry a change that was made.
pub(crate) async fn announce(state: &ApiState, app: &AppName) {
    let event = Event::DomainsChanged { app: app.clone() };
    if let Err(err) = state
        .bus
        .publish(&event.topic(), &Envelope::event(&event, None))
        .await
    {
        tracing::warn!(app = %app, error = %err, "domains-changed not announced; the next deploy applies the routes");
    }
}

fn fqdn_of(body: DomainBody) -> Result<Fqdn, ApiError> {
    let given = body
        .fqdn
        .ok_or_else(|| ApiError::invalid("fqdn", "fqdn is missing: name the domain"))?;
    Fqdn::parse(&given).map_err(|e| ApiError::invalid("fqdn", e.0))
}

/// `GET /api/apps/NAME/domains`: the app's custom domains, by name.
pub async fn list(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<Json<Data<Vec<DomainView>>>, ApiError> {
    let app = access.app;
    let domains = state.store.domains_of(&app.name).await?;
    Ok(Json(Data {
        data: domains.iter().map(|d| view(&state, d)).collect(),
    }))
}

/// `POST /api/apps/NAME/domains` `{"fqdn": "www.example.com"}`: 201 with the CNAME target.
/// 422 for a name that is not a domain, one under the platform's own domain or a reserved
/// one, one another app has, or past [`MAX_DOMAINS_PER_APP`].
pub async fn add(
    State(state): State<ApiState>,
    access: AppAccess,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<DomainBody>,
) -> Result<(StatusCode, Json<Data<DomainView>>), ApiError> {
    let app = access.app;
    let fqdn = fqdn_of(body)?;
    if fqdn.is_within(&state.app_domain) {
        return Err(ApiError::invalid(
            "fqdn",
            format!(
                "`{fqdn}` is under the platform's own domain {}: apps answer there already",
                state.app_domain
            ),
        ));
    }
    if let Some(reserved) = state
        .reserved_domains
        .iter()
        .find(|r| fqdn.is_within(r.as_str()))
    {
        return Err(ApiError::invalid(
            "fqdn",
            format!("`{fqdn}` is reserved by the platform (`{reserved}`): choose another"),
        ));
    }
    let existing = state.store.domains_of(&app.name).await?;
    if existing.iter().any(|d| d.fqdn == fqdn) {
        return Err(ApiError::invalid(
            "fqdn",
            format!("{} already has `{fqdn}`", app.name),
        ));
    }
    if existing.len() >= MAX_DOMAINS_PER_APP {
        return Err(ApiError::invalid(
            "fqdn",
            format!(
                "{} has {MAX_DOMAINS_PER_APP} domains, the most an app may have: remove one first",
                app.name
            ),
        ));
    }
    let domain = CustomDomain {
        fqdn,
        app: app.name.clone(),
        created_at: Utc::now(),
    };
    match state.store.add_domain(&domain).await {
        Ok(()) => {}
        Err(PortError::AlreadyExists) => {
            return Err(ApiError::invalid(
                "fqdn",
                format!(
                    "`{}` is used by another app: its owner must remove it first",
                    domain.fqdn
                ),
            ))
        }
        Err(PortError::NotFound) => {
            return Err(ApiError::not_found(format!("App `{name}` not found.")))
        }
        Err(err) => return Err(err.into()),
    }
    tracing::info!(app = %app.name, fqdn = %domain.fqdn, "custom domain added");
    crate::access::record(
        &state,
        &app.name,
        access.user.email.as_str(),
        "domain:add",
        domain.fqdn.to_string(),
    )
    .await;
    announce(&state, &app.name).await;
    if let Some(certificates) = &state.certificates {
        certificates.requested(domain.fqdn.as_str());
    }
    Ok((
        StatusCode::CREATED,
        Json(Data {
            data: view(&state, &domain),
        }),
    ))
}

/// `DELETE /api/apps/NAME/domains` `{"fqdn": "www.example.com"}`: the app stops answering
/// on it. 404 when the app does not have it.
pub async fn remove(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<DomainBody>,
) -> Result<Json<Data<serde_json::Value>>, ApiError> {
    let app = access.app;
    let fqdn = fqdn_of(body)?;
    match state.store.remove_domain(&app.name, &fqdn).await {
        Ok(()) => {}
        Err(PortError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "{} has no domain `{fqdn}`.",
                app.name
            )))
        }
        Err(err) => return Err(err.into()),
    }
    tracing::info!(app = %app.name, %fqdn, "custom domain removed");
    crate::access::record(
        &state,
        &app.name,
        access.user.email.as_str(),
        "domain:remove",
        fqdn.to_string(),
    )
    .await;
    announce(&state, &app.name).await;
    Ok(Json(Data {
        data: serde_json::json!({}),
    }))
}
