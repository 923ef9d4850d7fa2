//! The A2A agent card of a marketplace agent (A2A protocol 1.0
//! `AgentCard`): how another agent finds out what it does and how to get a
//! token to call it. Built from public data only, and signed by the IdP: a
//! JWS in `signatures` over the card's RFC 8785 canonical form without
//! `signatures`, by the IdP's signing key (its `kid` is in the JWKS).
//!
//! The card is written in ProtoJSON form as A2A's canonicalization rules
//! ask: no member holds a protobuf default value unless the field is
//! required or explicitly optional, so a verifier that re-serializes the
//! card the A2A way signs the same bytes.

use std::collections::BTreeMap;

use sentryagent_core::jose::DetachedSignature;
use sentryagent_core::{Agent, Idp, Tenant};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::ApiError;

/// The A2A protocol version of the card's interfaces.
pub(crate) const A2A_PROTOCOL_VERSION: &str = "1.0";

/// The URI of the card extension that carries the agent's DID.
pub(crate) const DID_EXTENSION_URI: &str = "urn:sentryagent:a2a:agent-did:v1";

/// An A2A agent card (protocol 1.0).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentCard {
    /// The agent's name.
    name: String,
    /// Its description.
    description: String,
    /// Its marketplace entry on this IdP (agents register no service
    /// endpoint here).
    supported_interfaces: Vec<AgentInterface>,
    /// The publisher.
    provider: AgentProvider,
    /// Its software version.
    version: String,
    /// Its marketplace entry on this IdP.
    documentation_url: String,
    /// Optional protocol features (none), and the DID extension.
    capabilities: AgentCapabilities,
    /// `oauth2`: client credentials at this IdP's token endpoint.
    security_schemes: SecuritySchemes,
    /// `[{"schemes": {"oauth2": {}}}]`.
    security_requirements: Vec<SecurityRequirement>,
    /// `["application/json"]`.
    default_input_modes: Vec<&'static str>,
    /// `["application/json"]`.
    default_output_modes: Vec<&'static str>,
    /// One skill per capability.
    skills: Vec<AgentSkill>,
    /// The IdP's JWS signatures over the card without `signatures` (RFC
    /// 8785 canonical form, detached payload; header
    /// `{"alg":"EdDSA","typ":"JOSE","kid":..}`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    signatures: Vec<DetachedSignature>,
}

/// An interface of an [`AgentCard`].
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentInterface {
    /// URL.
    url: String,
    /// `JSONRPC`.
    protocol_binding: &'static str,
    /// `1.0`.
    protocol_version: &'static str,
}

/// The provider of an [`AgentCard`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AgentProvider {
    /// Its website, or its profile on this IdP.
    url: String,
    /// The publisher's display name.
    organization: String,
}

/// Optional A2A features of an [`AgentCard`].
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentCapabilities {
    /// `false`.
    streaming: bool,
    /// `false`.
    push_notifications: bool,
    /// The agent's DID, as an extension.
    extensions: Vec<AgentExtension>,
}

/// A protocol extension of an [`AgentCard`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AgentExtension {
    /// `urn:sentryagent:a2a:agent-did:v1`.
    uri: &'static str,
    /// What it says.
    description: &'static str,
    /// The agent's DID.
    params: DidParams,
}

/// The parameters of the DID extension.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DidParams {
    /// The agent's `did:key`.
    did: String,
}

/// A skill of an [`AgentCard`]: one capability.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AgentSkill {
    /// The capability.
    id: String,
    /// The capability.
    name: String,
    /// `<agent> offers <capability>`.
    description: String,
    /// The agent's tags.
    tags: Vec<String>,
}

/// The security schemes of an [`AgentCard`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct SecuritySchemes {
    /// OAuth 2.0 client credentials at this IdP.
    oauth2: SecurityScheme,
}

/// A security scheme (one of A2A's kinds: here OAuth 2.0).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecurityScheme {
    /// The OAuth 2.0 scheme.
    oauth2_security_scheme: OAuth2Scheme,
}

/// An OAuth 2.0 security scheme.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OAuth2Scheme {
    /// What it is.
    description: &'static str,
    /// Its flows.
    flows: OAuth2Flows,
    /// This IdP's RFC 8414 metadata.
    oauth2_metadata_url: String,
}

/// The flows of an [`OAuth2Scheme`].
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OAuth2Flows {
    /// The client credentials flow.
    client_credentials: ClientCredentialsFlow,
}

/// The client credentials flow of an [`OAuth2Scheme`].
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientCredentialsFlow {
    /// This IdP's token endpoint.
    token_url: String,
    /// Scopes (none advertised).
    scopes: BTreeMap<String, String>,
}

/// A security requirement of an [`AgentCard`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct SecurityRequirement {
    /// Scheme name to the scopes it needs.
    schemes: BTreeMap<&'static str, ScopeList>,
}

/// Scopes of a [`SecurityRequirement`] (an empty list is left out).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ScopeList {
    /// The scopes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    list: Vec<String>,
}

/// The URL of an agent's marketplace entry.
pub(crate) fn entry_url(issuer: &str, agent: &Agent) -> String {
    format!("{issuer}/v1/marketplace/agents/{}", agent.id)
}

/// The URL of an agent's signed card.
pub(crate) fn card_url(issuer: &str, agent: &Agent) -> String {
    format!("{}/agent-card.json", entry_url(issuer, agent))
}

/// The unsigned agent card. The interface and `documentationUrl` point at
/// the agent's marketplace entry on this IdP: agents do not register a
/// service endpoint here. Each capability becomes a skill. The only
/// security scheme is OAuth 2.0 client credentials at this IdP's token
/// endpoint.
pub(crate) fn agent_card(
    agent: &Agent,
    tenant: &Tenant,
    issuer: &str,
    token_url: &str,
) -> AgentCard {
    let entry = entry_url(issuer, agent);
    let skills = agent
        .capabilities
        .iter()
        .map(|c| AgentSkill {
            id: c.clone(),
            name: c.clone(),
            description: format!("{} offers `{c}`", agent.name),
            tags: agent.tags.clone(),
        })
        .collect();
    let provider_url = tenant
        .publisher
        .website
        .clone()
        .unwrap_or_else(|| format!("{issuer}/v1/publishers/{}", tenant.slug));
    AgentCard {
        name: agent.name.clone(),
        description: agent.description.clone(),
        supported_interfaces: vec![AgentInterface {
            url: entry.clone(),
            protocol_binding: "JSONRPC",
            protocol_version: A2A_PROTOCOL_VERSION,
        }],
        provider: AgentProvider {
            url: provider_url,
            organization: tenant.publisher.display_name.clone(),
        },
        version: agent.version.clone(),
        documentation_url: entry,
        capabilities: AgentCapabilities {
            streaming: false,
            push_notifications: false,
            extensions: vec![AgentExtension {
                uri: DID_EXTENSION_URI,
                description: "The agent's W3C DID (did:key), resolvable at its marketplace entry",
                params: DidParams {
                    did: agent.did.clone(),
                },
            }],
        },
        security_schemes: SecuritySchemes {
            oauth2: SecurityScheme {
                oauth2_security_scheme: OAuth2Scheme {
                    description: "OAuth 2.0 client credentials at the SentryAgent IdP",
                    flows: OAuth2Flows {
                        client_credentials: ClientCredentialsFlow {
                            token_url: token_url.to_owned(),
                            scopes: BTreeMap::new(),
                        },
                    },
                    oauth2_metadata_url: format!("{issuer}/.well-known/oauth-authorization-server"),
                },
            },
        },
        security_requirements: vec![SecurityRequirement {
            schemes: BTreeMap::from([("oauth2", ScopeList { list: Vec::new() })]),
        }],
        default_input_modes: vec!["application/json"],
        default_output_modes: vec!["application/json"],
        skills,
        signatures: Vec::new(),
    }
}

/// The agent card signed by the IdP.
pub(crate) fn signed_agent_card(
    idp: &Idp,
    agent: &Agent,
    tenant: &Tenant,
) -> Result<AgentCard, ApiError> {
    let config = idp.config();
    let mut card = agent_card(agent, tenant, &config.issuer, &config.token_endpoint);
    let unsigned = serde_json::to_value(&card)
        .map_err(|e| sentryagent_core::Error::internal("serialize agent card", e))?;
    card.signatures = vec![idp.sign_jcs(&unsigned)?];
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn fixtures() -> (Agent, Tenant) {
        let agent: Agent = serde_json::from_value(json!({
            "id": "agt_1", "tenant_id": "ten_1", "name": "Finder", "description": "finds",
            "version": "2.1.0", "capabilities": ["a.search", "a.read"], "tags": ["t"],
            "category": null, "visibility": "public", "state": "active",
            "did": "did:key:z6Mk", "allowed_scopes": [], "custom_claims": {},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "revision": 1
        }))
        .unwrap();
        let tenant: Tenant = serde_json::from_value(json!({
            "id": "ten_1", "name": "Acme", "slug": "acme", "tier": "pro", "status": "active",
            "billing": {"customer_id": null, "subscription_id": null, "subscription_status": null,
                        "current_period_end": null, "last_event_at": null},
            "publisher": {"display_name": "Acme Labs", "website": null, "verified": false},
            "allowed_audiences": [],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "revision": 1
        }))
        .unwrap();
        (agent, tenant)
    }

    /// The card as A2A 1.0 ProtoJSON, with no protobuf default values
    /// (A2A's canonicalization rules).
    #[test]
    fn card_json_is_the_a2a_1_0_shape() {
        let (agent, tenant) = fixtures();
        let card = agent_card(&agent, &tenant, "http://i", "http://i/oauth2/token");
        let entry = "http://i/v1/marketplace/agents/agt_1";
        let skill = |c: &str| json!({"id": c, "name": c, "description": format!("Finder offers `{c}`"), "tags": ["t"]});
        assert_eq!(
            serde_json::to_value(&card).unwrap(),
            json!({
                "name": "Finder",
                "description": "finds",
                "supportedInterfaces": [
                    { "url": entry, "protocolBinding": "JSONRPC", "protocolVersion": "1.0" }
                ],
                "provider": {"url": "http://i/v1/publishers/acme", "organization": "Acme Labs"},
                "version": "2.1.0",
                "documentationUrl": entry,
                "capabilities": {
                    "streaming": false,
                    "pushNotifications": false,
                    "extensions": [{
                        "uri": "urn:sentryagent:a2a:agent-did:v1",
                        "description": "The agent's W3C DID (did:key), resolvable at its marketplace entry",
                        "params": {"did": "did:key:z6Mk"}
                    }],
                },
                "securitySchemes": {
                    "oauth2": {
                        "oauth2SecurityScheme": {
                            "description": "OAuth 2.0 client credentials at the SentryAgent IdP",
                            "flows": {
                                "clientCredentials": { "tokenUrl": "http://i/oauth2/token", "scopes": {} }
                            },
                            "oauth2MetadataUrl": "http://i/.well-known/oauth-authorization-server",
                        }
                    }
                },
                "securityRequirements": [{ "schemes": { "oauth2": {} } }],
                "defaultInputModes": ["application/json"],
                "defaultOutputModes": ["application/json"],
                "skills": [skill("a.search"), skill("a.read")],
            })
        );
    }

    /// The signature covers the card without `signatures`, verifies with
    /// the published JWKS, and breaks when any member changes.
    #[tokio::test]
    async fn signed_card_verifies_from_the_jwks() {
        let (agent, tenant) = fixtures();
        let idp = Idp::builder("https://idp.example").build().await.unwrap();
        let card = serde_json::to_value(signed_agent_card(&idp, &agent, &tenant).unwrap()).unwrap();
        let mut body = card.as_object().unwrap().clone();
        let sigs: Vec<DetachedSignature> =
            serde_json::from_value(body.remove("signatures").unwrap()).unwrap();
        assert_eq!(sigs.len(), 1);
        let keys = sentryagent_core::jose::KeySet::from_jwks(&idp.jwks()).unwrap();
        let body = Value::Object(body);
        let header = sentryagent_core::jose::verify_jcs(&body, &sigs[0], &keys).unwrap();
        assert_eq!(header.typ.as_deref(), Some("JOSE"));
        assert!(idp.jwks().keys.iter().any(|k| k.kid == header.kid));
        let mut tampered = body.clone();
        tampered["skills"][0]["id"] = json!("a.write");
        assert!(sentryagent_core::jose::verify_jcs(&tampered, &sigs[0], &keys).is_err());
    }
}
