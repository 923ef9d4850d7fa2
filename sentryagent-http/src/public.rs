//! Public endpoints: the marketplace, signed A2A agent cards, DID documents
//! (the agents' and the IdP's own `did:web`) and publisher profiles.
//! Nothing here carries a secret or an agent's internal settings.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::did::DidDocument;
use sentryagent_core::oasf::{self, Record};
use sentryagent_core::{
    Agent, MarketplaceCategories, MarketplaceQuery, Page, PageRequest, Tenant, Timestamp,
};

use crate::AppState;
use crate::a2a::{AgentCard, card_url, entry_url, signed_agent_card};
use crate::conditional;
use crate::extract::{ApiPath, ApiQuery, MaybeAdmin};
use crate::manage::agent_id;
use crate::problem::ApiError;

/// The media type of the listings.
const JSON: &str = "application/json";
use crate::views::{
    AuthErrors, InputErrors, MarketplaceEntry, MarketplaceParams, NotFound, PublicAgent,
    PublisherPage, PublisherView, TimedOut,
};

/// Searches public agents in the listed or active state: words, the
/// exact filters, and the directory query kinds (agent, name, version,
/// OASF skill id and name, locator, OASF domain, author, verified,
/// annotation), all combined with AND; cursor paging by id.
#[utoipa::path(
    get, path = "/v1/marketplace/agents", tag = "public", params(MarketplaceParams),
    responses((status = 200, description = "a page of marketplace agents (with `ETag`)", body = Page<PublicAgent>), (status = 304, description = "not modified (conditional GET: `If-None-Match` or `If-Modified-Since`)"), AuthErrors, InputErrors)
)]
pub(crate) async fn search(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<MarketplaceParams>,
) -> Result<Response, ApiError> {
    let query = MarketplaceQuery {
        text: q.q,
        capability: q.capability,
        tag: q.tag,
        category: q.category,
        publisher: q.publisher,
        agent: q.agent,
        name: q.name,
        version: q.version,
        skill_id: q.skill_id,
        skill_name: q.skill_name,
        locator: q.locator,
        domain: q.domain,
        author: q.author,
        verified: q.verified,
        annotation: q.annotation,
    };
    let page = PageRequest {
        cursor: q.cursor,
        limit: q.limit,
    };
    let found = s.idp.search_marketplace(&query, &page).await?;
    conditional::respond(
        &headers,
        &found.map(|a| PublicAgent::from(&a)),
        None,
        JSON,
        "public, max-age=60",
    )
}

/// The categories and skills of the marketplace with the number of agents
/// listing each; skills name their OASF skill when they have one.
#[utoipa::path(
    get, path = "/v1/marketplace/categories", tag = "public",
    responses((status = 200, description = "categories and skills with counts (with `ETag`)", body = MarketplaceCategories), (status = 304, description = "not modified (conditional GET: `If-None-Match` or `If-Modified-Since`)"), AuthErrors)
)]
pub(crate) async fn categories(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let found = s.idp.marketplace_categories().await?;
    conditional::respond(&headers, &found, None, JSON, "public, max-age=60")
}

/// A marketplace agent with its publisher, DID document and A2A agent card.
#[utoipa::path(
    get, path = "/v1/marketplace/agents/{id}", tag = "public",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "the agent, its publisher, DID document and A2A agent card (with `ETag` and `Last-Modified`)", body = MarketplaceEntry), (status = 304, description = "not modified (conditional GET: `If-None-Match` or `If-Modified-Since`)"), NotFound, AuthErrors)
)]
pub(crate) async fn marketplace_agent(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (agent, tenant) = s.idp.marketplace_agent(&agent_id(&id)?).await?;
    let did = s.idp.did_document(None, &agent.id).await?;
    let card = signed_agent_card(&s.idp, &agent, &tenant)?;
    let entry = MarketplaceEntry {
        agent: PublicAgent::from(&agent),
        publisher: PublisherView::from(&tenant),
        did_document: did,
        agent_card: card,
        agent_card_url: card_url(&s.idp.config().issuer, &agent),
    };
    let modified = listing_modified(&s, &agent, &tenant);
    conditional::respond(&headers, &entry, Some(modified), JSON, "public, max-age=60")
}

/// When a listing's documents last changed: the agent, its publisher, or
/// the key that signs them.
fn listing_modified(s: &AppState, agent: &Agent, tenant: &Tenant) -> Timestamp {
    agent
        .updated_at
        .max(tenant.updated_at)
        .max(s.idp.attestation_key_since())
}

/// The A2A agent card (protocol 1.0) of a marketplace agent, signed by the
/// IdP: `signatures` holds a JWS over the card's RFC 8785 canonical form
/// without `signatures`, verifiable with the JWKS key its `kid` names.
#[utoipa::path(
    get, path = "/v1/marketplace/agents/{id}/agent-card.json", tag = "public",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "the signed A2A agent card (with `ETag` and `Last-Modified`)", body = AgentCard), (status = 304, description = "not modified (conditional GET: `If-None-Match` or `If-Modified-Since`)"), NotFound, AuthErrors)
)]
pub(crate) async fn agent_card(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (agent, tenant) = s.idp.marketplace_agent(&agent_id(&id)?).await?;
    let card = signed_agent_card(&s.idp, &agent, &tenant)?;
    let modified = listing_modified(&s, &agent, &tenant);
    conditional::respond(&headers, &card, Some(modified), JSON, "public, max-age=60")
}

/// The OASF record of a marketplace agent (agntcy/oasf
/// `types/v1/record.proto` field names): capabilities as OASF skills
/// through the shipped taxonomy, the rest in `annotations`, the signed A2A
/// card as the `integration/a2a` module.
#[utoipa::path(
    get, path = "/v1/marketplace/agents/{id}/oasf.json", tag = "public",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "the agent as an OASF record (with `ETag` and `Last-Modified`)", body = Record), (status = 304, description = "not modified (conditional GET: `If-None-Match` or `If-Modified-Since`)"), NotFound, AuthErrors)
)]
pub(crate) async fn oasf_record(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (agent, tenant) = s.idp.marketplace_agent(&agent_id(&id)?).await?;
    let card = signed_agent_card(&s.idp, &agent, &tenant)?;
    let card = serde_json::to_value(card)
        .map_err(|e| sentryagent_core::Error::internal("serialize agent card", e))?;
    let issuer = &s.idp.config().issuer;
    let record = oasf::record(
        &agent,
        &tenant,
        &entry_url(issuer, &agent),
        &card_url(issuer, &agent),
        card,
    );
    let modified = listing_modified(&s, &agent, &tenant);
    conditional::respond(
        &headers,
        &record,
        Some(modified),
        JSON,
        "public, max-age=60",
    )
}

/// The IdP's own DID document: `did:web` of its issuer, listing its
/// signing keys (Ed25519 keys as `Multikey` verification methods
/// `<did>#<kid>`). Where a `did:web` resolves: `/.well-known/did.json` for
/// an issuer without path.
#[utoipa::path(
    get, path = "/.well-known/did.json", tag = "public",
    responses((status = 200, description = "the IdP's W3C DID document (did:web)", content_type = "application/did+ld+json", body = DidDocument), TimedOut)
)]
pub(crate) async fn issuer_did_json(State(s): State<AppState>) -> Result<Response, ApiError> {
    issuer_did_response(&s)
}

/// The IdP's own DID document where a `did:web` with a path resolves:
/// `<issuer>/did.json` (the same document as `/.well-known/did.json`).
#[utoipa::path(
    get, path = "/did.json", tag = "public",
    responses((status = 200, description = "the IdP's W3C DID document (did:web)", content_type = "application/did+ld+json", body = DidDocument), TimedOut)
)]
pub(crate) async fn issuer_did_json_at_path(
    State(s): State<AppState>,
) -> Result<Response, ApiError> {
    issuer_did_response(&s)
}

fn issuer_did_response(s: &AppState) -> Result<Response, ApiError> {
    let doc = s.idp.issuer_did_document()?;
    let mut res = Json(doc).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/did+ld+json"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(res)
}

/// The DID document of an agent: public for marketplace agents, otherwise
/// for an admin key of its tenant.
#[utoipa::path(
    get, path = "/v1/agents/{id}/did.json", tag = "public",
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "W3C DID document", content_type = "application/did+ld+json", body = DidDocument), NotFound, AuthErrors)
)]
pub(crate) async fn did_json(
    State(s): State<AppState>,
    MaybeAdmin(caller): MaybeAdmin,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let doc = s.idp.did_document(caller.as_ref(), &agent_id(&id)?).await?;
    let mut res = Json(doc).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/did+ld+json"),
    );
    Ok(res)
}

/// A publisher's public profile and the first page of its marketplace
/// agents.
#[utoipa::path(
    get, path = "/v1/publishers/{slug}", tag = "public",
    params(("slug" = String, Path, description = "publisher slug")),
    responses((status = 200, description = "the publisher and the first page of its agents (with `ETag`)", body = PublisherPage), (status = 304, description = "not modified (conditional GET: `If-None-Match` or `If-Modified-Since`)"), NotFound, AuthErrors)
)]
pub(crate) async fn publisher(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = s.idp.publisher(&slug).await?;
    let agents = s
        .idp
        .search_marketplace(
            &MarketplaceQuery {
                publisher: Some(tenant.id.clone()),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await?;
    let page = PublisherPage {
        publisher: PublisherView::from(&tenant),
        agents: agents.map(|a| PublicAgent::from(&a)),
    };
    conditional::respond(&headers, &page, None, JSON, "public, max-age=60")
}
