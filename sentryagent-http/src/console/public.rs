//! Public pages: the front page, pricing, the docs and the SDK links.

use axum::response::Response;
use maud::{Markup, html};
use sentryagent_core::{Tier, TierLimits};

use super::fmt::{number, tier_name};
use super::page::{Ctx, Nav, Page};

/// A limit for people: a number with thousands separators, or "Unlimited".
pub(crate) fn limit_text(limit: Option<u64>) -> String {
    match limit {
        None => "Unlimited".to_owned(),
        Some(n) => number(n),
    }
}

fn free_tier_list(free: &TierLimits) -> Markup {
    html! {
        ul {
            li { (limit_text(free.max_agents)) " agents" }
            li { (limit_text(free.api_calls_per_day)) " API calls a day" }
            li { (limit_text(free.token_issuances_per_month)) " token issuances a month" }
            li { (free.requests_per_minute) " requests a minute" }
        }
    }
}

/// `GET /`: what SentryAgent is, a quick start, the free tier, links.
pub(crate) async fn home(ctx: Ctx) -> Response {
    let tiers = &ctx.state.idp.config().tiers;
    let token_url = format!("{}/oauth2/token", ctx.issuer());
    let body = html! {
        p class="lead" {
            "SentryAgent gives AI agents an identity: each agent gets a "
            code { "did:key" } " identifier and OAuth 2.0 client credentials, and "
            "gets short-lived signed access tokens (EdDSA JWTs) that your services verify "
            "against the server's public keys."
        }
        div class="actions" {
            @if ctx.signed_in() {
                a class="button" href=(ctx.url("/agents/new")) { "Register an agent" }
                a class="button secondary" href=(ctx.url("/usage")) { "Usage" }
            } @else {
                a class="button" href=(ctx.url("/signup")) { "Start free" }
                a class="button secondary" href=(ctx.url("/login")) { "Sign in" }
            }
            a class="button secondary" href=(ctx.url("/docs")) { "Read the docs" }
        }
        h2 { "Quick start" }
        ol {
            li { a href=(ctx.url("/signup")) { "Sign up" } ": an account and an organization on the free tier." }
            li { a href=(ctx.url("/agents/new")) { "Register an agent" } ": you get its client id and secret, shown once." }
            li { "Get a token:" }
        }
        pre { code { "curl -s -u \"$CLIENT_ID:$CLIENT_SECRET\" \\\n  -d grant_type=client_credentials \\\n  " (token_url) } }
        h2 { "The free tier" }
        (free_tier_list(&tiers.free))
        p { a href=(ctx.url("/pricing")) { "All tiers" } }
        h2 { "More" }
        ul {
            li { a href=(ctx.url("/marketplace")) { "The marketplace" } ": public agents and their publishers." }
            li { a href=(ctx.url("/sdks")) { "SDKs and tools" } }
            li { a href=(ctx.api_url("/explorer/")) { "The API explorer" } " and " a href=(ctx.api_url("/openapi.json")) { "its OpenAPI document" } }
        }
    };
    ctx.page(Page::new("Identity for AI agents", Nav::Home, body))
}

/// `GET /pricing`: the tier table of this server's configuration; prices
/// only when billing is configured.
pub(crate) async fn pricing(ctx: Ctx) -> Response {
    let tiers = &ctx.state.idp.config().tiers;
    let billing = ctx.state.idp.billing().enabled();
    let prices = &ctx.state.config.prices;
    let body = html! {
        p { "The limits of each tier on this server." }
        div class="table-wrap" {
            table {
                caption class="muted" { "Limits per organization" }
                thead {
                    tr {
                        th scope="col" { "Tier" }
                        th scope="col" { "Agents" }
                        th scope="col" { "API calls a day" }
                        th scope="col" { "Token issuances a month" }
                        th scope="col" { "Requests a minute" }
                        @if billing { th scope="col" { "Price" } }
                    }
                }
                tbody {
                    @for t in Tier::ALL {
                        @let l = tiers.limits(t);
                        tr data-tier=(t.as_str()) {
                            th scope="row" { (tier_name(t)) }
                            td { (limit_text(l.max_agents)) }
                            td { (limit_text(l.api_calls_per_day)) }
                            td { (limit_text(l.token_issuances_per_month)) }
                            td { (number(u64::from(l.requests_per_minute))) }
                            @if billing {
                                td {
                                    @match (t, prices.iter().find(|(pt, _)| *pt == t)) {
                                        (Tier::Free, _) => "Free",
                                        (_, Some((_, label))) => (label),
                                        (_, None) => "See the billing page",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if billing {
            p { "Upgrade from " a href=(ctx.url("/settings/billing")) { "the billing page" } " once signed in." }
        } @else {
            p class="muted" { "Billing is not set up on this server: ask its operator to change a tier." }
        }
    };
    ctx.page(Page::new("Pricing", Nav::Pricing, body))
}

/// `GET /docs`: getting started with each client, and the free-tier rules.
pub(crate) async fn docs(ctx: Ctx) -> Response {
    let issuer = ctx.issuer().to_owned();
    let token_url = format!("{issuer}/oauth2/token");
    let free = &ctx.state.idp.config().tiers.free;
    let body = html! {
        p class="lead" {
            "An agent authenticates with the OAuth 2.0 client credentials grant: its client id "
            "and secret (or a signed JWT of its own key) against " code { (token_url) } "."
        }
        nav aria-label="On this page" {
            ul {
                li { a href="#curl" { "curl" } }
                li { a href="#rust" { "Rust" } }
                li { a href="#python" { "Python (authlib)" } }
                li { a href="#node" { "Node (openid-client)" } }
                li { a href="#go" { "Go (x/oauth2)" } }
                li { a href="#cli" { "The CLI" } }
                li { a href="#actions" { "GitHub Actions" } }
                li { a href="#free-tier" { "Free-tier rules" } }
            }
        }
        h2 id="curl" { "curl" }
        pre { code { "curl -s -u \"$CLIENT_ID:$CLIENT_SECRET\" \\\n  -d grant_type=client_credentials -d scope=\"invoices:read\" \\\n  " (token_url) } }
        p { "Verify tokens with the keys at " code { (issuer) "/.well-known/jwks.json" } ", or ask " code { (issuer) "/oauth2/introspect" } "." }
        h2 id="rust" { "Rust" }
        p { "Embed the identity provider in your own axum app with the " code { "sentryagent" } " crate, or ask for tokens with any OAuth 2.0 client such as " code { "oauth2" } ":" }
        pre { code { "let client = oauth2::basic::BasicClient::new(ClientId::new(client_id))\n    .set_client_secret(ClientSecret::new(client_secret))\n    .set_token_uri(TokenUrl::new(\"" (token_url) "\".into())?);\nlet token = client.exchange_client_credentials()\n    .add_scope(Scope::new(\"invoices:read\".into()))\n    .request_async(&reqwest::Client::new()).await?;" } }
        h2 id="python" { "Python (authlib)" }
        pre { code { "from authlib.integrations.requests_client import OAuth2Session\n\nsession = OAuth2Session(client_id, client_secret, scope=\"invoices:read\")\ntoken = session.fetch_token(\"" (token_url) "\", grant_type=\"client_credentials\")" } }
        h2 id="node" { "Node (openid-client)" }
        pre { code { "import * as client from \"openid-client\";\n\nconst config = await client.discovery(new URL(\"" (issuer) "\"), clientId, clientSecret);\nconst token = await client.clientCredentialsGrant(config, { scope: \"invoices:read\" });" } }
        h2 id="go" { "Go (x/oauth2 clientcredentials)" }
        pre { code { "cfg := clientcredentials.Config{\n    ClientID:     clientID,\n    ClientSecret: clientSecret,\n    TokenURL:     \"" (token_url) "\",\n    Scopes:       []string{\"invoices:read\"},\n}\ntoken, err := cfg.Token(ctx)" } }
        h2 id="cli" { "The CLI" }
        pre { code { "sentryagent login --url " (issuer) "\nsentryagent register-agent --name billing-bot --capability invoices --scope invoices:read --save\nTOKEN=$(sentryagent issue-token --agent <agent-id> --scope invoices:read)" } }
        h2 id="actions" { "GitHub Actions" }
        p { "The " code { "issue-token" } " action exchanges a job's GitHub ID token for an agent's access token, with no stored secret; " code { "register-agent" } " creates or updates an agent by name. Both need " code { "permissions: id-token: write" } " and a trust policy of your organization." }
        pre { code { "- uses: sentryagent/sentryagent/actions/issue-token@main\n  id: token\n  with:\n    url: " (issuer) "\n    agent-id: ${{ vars.AGENT_ID }}\n    scope: invoices:read" } }
        h2 id="free-tier" { "Free-tier rules" }
        p { "Every new organization starts on the free tier:" }
        (free_tier_list(free))
        p {
            "Limits count per organization: API calls per UTC day, token issuances per UTC month. "
            "Past a limit, requests are refused (HTTP 429 or 403 with the limit named) until the "
            "day or month turns, or until you upgrade. Retired agents do not count toward the agent limit."
        }
        p { a href=(ctx.url("/pricing")) { "Compare the tiers" } " · " a href=(ctx.url("/sdks")) { "SDKs and tools" } }
    };
    ctx.page(Page::new("Getting started", Nav::Docs, body))
}

/// `GET /sdks`: where to get the clients and tools.
pub(crate) async fn sdks(ctx: Ctx) -> Response {
    let rows: &[(&str, &str, &str)] = &[
        (
            "Rust",
            "sentryagent",
            "https://crates.io/crates/sentryagent",
        ),
        (
            "Rust CLI",
            "sentryagent-cli",
            "https://crates.io/crates/sentryagent-cli",
        ),
        ("Python", "authlib", "https://pypi.org/project/Authlib/"),
        (
            "Node",
            "openid-client",
            "https://www.npmjs.com/package/openid-client",
        ),
        (
            "Go",
            "golang.org/x/oauth2/clientcredentials",
            "https://pkg.go.dev/golang.org/x/oauth2/clientcredentials",
        ),
        (
            "GitHub Actions",
            "sentryagent/actions",
            "https://github.com/sentryagent/sentryagent/tree/main/actions",
        ),
    ];
    let body = html! {
        p { "SentryAgent speaks standard OAuth 2.0: any client credentials client works. These are the ones the docs show." }
        div class="table-wrap" {
            table {
                thead { tr { th scope="col" { "Language" } th scope="col" { "Package" } } }
                tbody {
                    @for (lang, name, href) in rows {
                        tr { td { (lang) } td { a href=(href) rel="noopener" { code { (name) } } } }
                    }
                }
            }
        }
        p { "Examples for each: " a href=(ctx.url("/docs")) { "the docs" } ". The API: " a href=(ctx.api_url("/explorer/")) { "explorer" } "." }
    };
    ctx.page(Page::new("SDKs and tools", Nav::Sdks, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(0), "0");
        assert_eq!(number(999), "999");
        assert_eq!(number(1_000), "1,000");
        assert_eq!(number(1_234_567), "1,234,567");
        assert_eq!(limit_text(None), "Unlimited");
    }
}
