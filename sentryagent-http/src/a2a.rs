//! The A2A agent card of a marketplace agent: how another agent finds out
//! what it does and how to get a token to call it. Built from public data
//! only.

use std::collections::BTreeMap;

use sentryagent_core::{Agent, Tenant};
use serde::Serialize;
use utoipa::ToSchema;

/// The A2A protocol version the card follows.
pub(crate) const A2A_PROTOCOL_VERSION: &str = "0.3.0";

/// An A2A agent card (protocol version 0.3.0).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentCard {
    /// `0.3.0`.
    protocol_version: &'static str,
    /// The agent's name.
    name: String,
    /// Its description.
    description: String,
    /// Its software version.
    version: String,
    /// Its marketplace entry on this IdP.
    url: String,
    /// `JSONRPC`.
    preferred_transport: &'static str,
    /// The marketplace entry, as an interface.
    supported_interfaces: Vec<AgentInterface>,
    /// The publisher.
    provider: AgentProvider,
    /// Optional protocol features (none).
    capabilities: AgentCapabilities,
    /// `["application/json"]`.
    default_input_modes: Vec<&'static str>,
    /// `["application/json"]`.
    default_output_modes: Vec<&'static str>,
    /// One skill per capability.
    skills: Vec<AgentSkill>,
    /// `oauth2`: client credentials at this IdP's token endpoint.
    security_schemes: SecuritySchemes,
    /// `[{"oauth2": []}]`.
    security: Vec<BTreeMap<&'static str, Vec<String>>>,
    /// The agent's identity.
    identity: CardIdentity,
}

/// An interface of an [`AgentCard`].
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentInterface {
    /// URL.
    url: String,
    /// `JSONRPC`.
    transport: &'static str,
}

/// The provider of an [`AgentCard`].
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentProvider {
    /// The publisher's display name.
    organization: String,
    /// Its website, or its profile on this IdP.
    url: String,
}

/// Optional A2A features of an [`AgentCard`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentCapabilities {
    /// `false`.
    streaming: bool,
    /// `false`.
    push_notifications: bool,
    /// `false`.
    state_transition_history: bool,
}

/// A skill of an [`AgentCard`]: one capability.
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecuritySchemes {
    /// OAuth 2.0 client credentials at this IdP.
    oauth2: OAuth2Scheme,
}

/// An OAuth 2.0 security scheme.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OAuth2Scheme {
    /// `oauth2`.
    #[serde(rename = "type")]
    type_: &'static str,
    /// What it is.
    description: &'static str,
    /// Its flows.
    flows: OAuth2Flows,
}

/// The flows of an [`OAuth2Scheme`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OAuth2Flows {
    /// The client credentials flow.
    client_credentials: ClientCredentialsFlow,
}

/// The client credentials flow of an [`OAuth2Scheme`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientCredentialsFlow {
    /// This IdP's token endpoint.
    token_url: String,
    /// Scopes (none advertised).
    scopes: BTreeMap<String, String>,
}

/// The identity of an [`AgentCard`].
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CardIdentity {
    /// The agent's `did:key`.
    did: String,
}

/// The agent card. `url` and `supportedInterfaces` point at the agent's
/// marketplace entry on this IdP: agents do not register a service endpoint
/// here. Each capability becomes a skill. The only security scheme is OAuth
/// 2.0 client credentials at this IdP's token endpoint.
pub(crate) fn agent_card(
    agent: &Agent,
    tenant: &Tenant,
    issuer: &str,
    token_url: &str,
) -> AgentCard {
    let entry = format!("{issuer}/v1/marketplace/agents/{}", agent.id);
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
        protocol_version: A2A_PROTOCOL_VERSION,
        name: agent.name.clone(),
        description: agent.description.clone(),
        version: agent.version.clone(),
        url: entry.clone(),
        preferred_transport: "JSONRPC",
        supported_interfaces: vec![AgentInterface {
            url: entry,
            transport: "JSONRPC",
        }],
        provider: AgentProvider {
            organization: tenant.publisher.display_name.clone(),
            url: provider_url,
        },
        capabilities: AgentCapabilities {
            streaming: false,
            push_notifications: false,
            state_transition_history: false,
        },
        default_input_modes: vec!["application/json"],
        default_output_modes: vec!["application/json"],
        skills,
        security_schemes: SecuritySchemes {
            oauth2: OAuth2Scheme {
                type_: "oauth2",
                description: "OAuth 2.0 client credentials at the SentryAgent IdP",
                flows: OAuth2Flows {
                    client_credentials: ClientCredentialsFlow {
                        token_url: token_url.to_owned(),
                        scopes: BTreeMap::new(),
                    },
                },
            },
        },
        security: vec![BTreeMap::from([("oauth2", Vec::new())])],
        identity: CardIdentity {
            did: agent.did.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The card as the A2A 0.3.0 JSON it has always been.
    #[test]
    fn card_json_is_the_a2a_shape() {
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
        let card = agent_card(&agent, &tenant, "http://i", "http://i/oauth2/token");
        let entry = "http://i/v1/marketplace/agents/agt_1";
        let skill = |c: &str| json!({"id": c, "name": c, "description": format!("Finder offers `{c}`"), "tags": ["t"]});
        assert_eq!(
            serde_json::to_value(&card).unwrap(),
            json!({
                "protocolVersion": "0.3.0",
                "name": "Finder",
                "description": "finds",
                "version": "2.1.0",
                "url": entry,
                "preferredTransport": "JSONRPC",
                "supportedInterfaces": [{ "url": entry, "transport": "JSONRPC" }],
                "provider": {"organization": "Acme Labs", "url": "http://i/v1/publishers/acme"},
                "capabilities": {
                    "streaming": false,
                    "pushNotifications": false,
                    "stateTransitionHistory": false,
                },
                "defaultInputModes": ["application/json"],
                "defaultOutputModes": ["application/json"],
                "skills": [skill("a.search"), skill("a.read")],
                "securitySchemes": {
                    "oauth2": {
                        "type": "oauth2",
                        "description": "OAuth 2.0 client credentials at the SentryAgent IdP",
                        "flows": {
                            "clientCredentials": { "tokenUrl": "http://i/oauth2/token", "scopes": {} }
                        },
                    }
                },
                "security": [{ "oauth2": [] }],
                "identity": { "did": "did:key:z6Mk" },
            })
        );
    }
}
