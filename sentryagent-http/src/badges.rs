//! Agent badges: the W3C Verifiable Credential the IdP issues for each
//! marketplace agent, the status list that revokes badges, and the
//! verification of any badge the IdP issued. The rules live in the core
//! (`Idp::agent_badge`, `Idp::badge_status_list`, `Idp::verify_credential`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::{CredentialVerification, Timestamp};
use serde_json::Value;

use crate::AppState;
use crate::conditional;
use crate::extract::{ApiJson, ApiPath};
use crate::manage::agent_id;
use crate::problem::ApiError;
use crate::views::{AuthErrors, BodyErrors, CredentialDoc, InputErrors, NotFound};

/// `application/vc`: a Verifiable Credential with an embedded proof.
const VC_MEDIA_TYPE: &str = "application/vc";

fn credential(doc: Value, cache: &'static str) -> Response {
    let mut res = Json(doc).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(VC_MEDIA_TYPE),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

/// The badge of a marketplace agent: a W3C Verifiable Credential 2.0 by
/// the IdP's `did:web` (subject: the agent's `did:key`; claims: name,
/// publisher, publisher verified, capabilities, listing time) with a Data
/// Integrity `eddsa-jcs-2022` proof and a Bitstring Status List entry.
/// Re-issued when the listing changes (the previous badge is revoked).
#[utoipa::path(
    get, path = "/v1/marketplace/agents/{id}/badge", tag = "public",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "the agent's badge (with `ETag` and `Last-Modified`)", content_type = "application/vc", body = CredentialDoc), (status = 304, description = "not modified (conditional GET: `If-None-Match` or `If-Modified-Since`)"), NotFound, AuthErrors)
)]
pub(crate) async fn badge(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let doc = s.idp.agent_badge(&agent_id(&id)?).await?;
    let issued = doc["validFrom"]
        .as_str()
        .and_then(Timestamp::parse_rfc3339)
        .unwrap_or(Timestamp::EPOCH);
    let modified = issued.max(s.idp.attestation_key_since());
    conditional::respond(
        &headers,
        &doc,
        Some(modified),
        VC_MEDIA_TYPE,
        "public, max-age=60",
    )
}

/// The IdP's badge status list: a `BitstringStatusListCredential` (purpose
/// `revocation`) with an `eddsa-jcs-2022` proof. A badge's bit is set once
/// its agent leaves the marketplace (unlisted, paused, retired, hidden) or
/// its listing changes. Not cached: the next fetch after a change shows it.
#[utoipa::path(
    get, path = "/v1/credentials/status/revocation", tag = "public",
    responses((status = 200, description = "the status list credential", content_type = "application/vc", body = CredentialDoc), AuthErrors)
)]
pub(crate) async fn status_list(State(s): State<AppState>) -> Result<Response, ApiError> {
    let doc = s.idp.badge_status_list().await?;
    Ok(credential(doc, "no-cache"))
}

/// Verifies a credential the IdP issued (a badge): the proof against the
/// IdP's `did:web` keys, its status in the status list and its validity
/// period. Answers each check's outcome; anything not issued here has an
/// `invalid` signature.
#[utoipa::path(
    post, path = "/v1/credentials/verify", tag = "public",
    request_body = CredentialDoc,
    responses((status = 200, description = "the outcome of each check", body = CredentialVerification), InputErrors, BodyErrors, AuthErrors)
)]
pub(crate) async fn verify(
    State(s): State<AppState>,
    ApiJson(doc): ApiJson<Value>,
) -> Result<Json<CredentialVerification>, ApiError> {
    Ok(Json(s.idp.verify_credential(&doc).await?))
}
