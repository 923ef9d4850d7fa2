//! The A2A agent card of a marketplace agent: how another agent finds out
//! what it does and how to get a token to call it. Built from public data
//! only.

use sentryagent_core::{Agent, Tenant};
use serde_json::{Value, json};

/// The A2A protocol version the card follows.
pub(crate) const A2A_PROTOCOL_VERSION: &str = "0.3.0";

/// The agent card. `url` and `supportedInterfaces` point at the agent's
/// marketplace entry on this IdP: agents do not register a service endpoint
/// here. Each capability becomes a skill. The only security scheme is OAuth
/// 2.0 client credentials at this IdP's token endpoint.
pub(crate) fn agent_card(agent: &Agent, tenant: &Tenant, issuer: &str, token_url: &str) -> Value {
    let entry = format!("{issuer}/v1/marketplace/agents/{}", agent.id);
    let skills: Vec<Value> = agent
        .capabilities
        .iter()
        .map(|c| {
            json!({
                "id": c,
                "name": c,
                "description": format!("{} offers `{c}`", agent.name),
                "tags": agent.tags,
            })
        })
        .collect();
    let provider_url = tenant
        .publisher
        .website
        .clone()
        .unwrap_or_else(|| format!("{issuer}/v1/publishers/{}", tenant.slug));
    json!({
        "protocolVersion": A2A_PROTOCOL_VERSION,
        "name": agent.name,
        "description": agent.description,
        "version": agent.version,
        "url": entry,
        "preferredTransport": "JSONRPC",
        "supportedInterfaces": [{ "url": entry, "transport": "JSONRPC" }],
        "provider": {
            "organization": tenant.publisher.display_name,
            "url": provider_url,
        },
        "capabilities": {
            "streaming": false,
            "pushNotifications": false,
            "stateTransitionHistory": false,
        },
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": skills,
        "securitySchemes": {
            "oauth2": {
                "type": "oauth2",
                "description": "OAuth 2.0 client credentials at the SentryAgent IdP",
                "flows": {
                    "clientCredentials": { "tokenUrl": token_url, "scopes": {} }
                },
            }
        },
        "security": [{ "oauth2": [] }],
        "identity": { "did": agent.did },
    })
}
