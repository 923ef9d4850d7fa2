//! A tenant's agents: the list, the onboarding wizard (register, the
//! credentials shown once, the first token), and an agent's page
//! (DID document, lifecycle, credentials, usage).

use axum::extract::Path;
use axum::http::StatusCode;
use maud::{Markup, html};
use sentryagent_core::{
    AdminScope, Agent, AgentId, CLIENT_CREDENTIALS, ClientCredentials, Error, LifecycleState,
    NewAgent, PageRequest, TokenRequest,
};
use serde::Deserialize;

use super::auth::Member;
use super::page::{Ctx, Flash, Nav, Page, PageError, PageForm, PageQuery, PageResult};
use crate::extract::Meta;

/// Agents per page of the list.
const PAGE_SIZE: usize = 50;

fn agent_id(id: &str) -> Result<AgentId, PageError> {
    AgentId::parse(id).map_err(|_| PageError::not_found("agent"))
}

/// A state badge.
pub(crate) fn state_badge(s: LifecycleState) -> Markup {
    html! { span class={"badge " (s.as_str())} data-state=(s.as_str()) { (s.as_str()) } }
}

/// The query of `/agents`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /agents`: the tenant's agents with their states; filters by state
/// and by words of the name, description or capabilities.
pub(crate) async fn list(m: Member, PageQuery(p): PageQuery<ListParams>) -> PageResult {
    let ctx = &m.ctx;
    let state = match p.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            LifecycleState::ALL
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| PageError::bad_request("There is no such state."))?,
        ),
        None => None,
    };
    let q =
        p.q.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
    let page = ctx
        .state
        .idp
        .list_agents(
            &m.caller,
            &m.tenant,
            &PageRequest {
                cursor: p.cursor.clone().filter(|c| !c.is_empty()),
                limit: Some(PAGE_SIZE),
            },
        )
        .await
        .map_err(|e| match e {
            Error::Invalid { .. } => PageError::bad_request("The page link is not valid."),
            e => e.into(),
        })?;
    let items: Vec<&Agent> = page
        .items
        .iter()
        .filter(|a| state.is_none_or(|s| a.state == s))
        .filter(|a| {
            q.as_deref().is_none_or(|q| {
                a.name.to_lowercase().contains(q)
                    || a.description.to_lowercase().contains(q)
                    || a.capabilities.iter().any(|c| c.to_lowercase().contains(q))
            })
        })
        .collect();
    let next = page.next_cursor.as_ref().map(|c| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(st) = state {
            s.append_pair("state", st.as_str());
        }
        if let Some(q) = &q {
            s.append_pair("q", q);
        }
        s.append_pair("cursor", c);
        format!("{}?{}", ctx.url("/agents"), s.finish())
    });
    let body = html! {
        @if m.may(AdminScope::AgentsWrite) {
            p { a class="button" href=(ctx.url("/agents/new")) { "Register an agent" } }
        }
        form class="row" method="get" action=(ctx.url("/agents")) {
            label { "Name or capability" input type="search" name="q" value=(q.as_deref().unwrap_or("")); }
            label { "State"
                select name="state" {
                    option value="" { "Any" }
                    @for s in LifecycleState::ALL {
                        option value=(s.as_str()) selected[state == Some(s)] { (s.as_str()) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if items.is_empty() {
            p class="muted" { "No agent here yet." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "State" }
                        th scope="col" { "Capabilities" } th scope="col" { "Client id" }
                    } }
                    tbody {
                        @for a in &items {
                            tr {
                                td { a href=(ctx.url(&format!("/agents/{}", a.id))) { (a.name) } }
                                td { (state_badge(a.state)) }
                                td { (a.capabilities.join(", ")) }
                                td { code { (a.id) } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(n) = &next {
            nav class="pager" aria-label="Pages" { a href=(n) rel="next" { "Next page" } }
        }
    };
    Ok(ctx.page(Page::new("Agents", Nav::Agents, body)))
}

/// The wizard's first step.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NewAgentForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// Comma or space separated.
    #[serde(default)]
    capabilities: String,
    /// Space separated.
    #[serde(default)]
    scopes: String,
    /// `generate` or `did`.
    #[serde(default)]
    key: String,
    #[serde(default)]
    did: String,
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn new_agent_form(ctx: &Ctx, f: &NewAgentForm) -> Markup {
    let paste = f.key == "did";
    html! {
        ol class="muted" { li { strong { "Describe the agent" } } li { "Save its credentials" } li { "Get a first token" } }
        form class="stack" method="post" action=(ctx.url("/agents/new")) {
            (ctx.csrf_field())
            label { "Name" span class="hint" { "Unique in your organization." }
                input type="text" name="name" required maxlength="100" value=(f.name);
            }
            label { "Description"
                textarea name="description" maxlength="2000" { (f.description) }
            }
            label { "Capabilities" span class="hint" { "What it offers, separated by commas: invoices, refunds." }
                input type="text" name="capabilities" value=(f.capabilities);
            }
            label { "Scopes" span class="hint" { "Scopes its tokens may carry, separated by spaces: invoices:read." }
                input type="text" name="scopes" value=(f.scopes);
            }
            fieldset {
                legend { "Key" }
                label { input type="radio" name="key" value="generate" checked[!paste]; " Generate a key pair (the private key is shown once)" }
                label { input type="radio" name="key" value="did" checked[paste]; " Use my own key: paste its did:key" }
                label { "did:key" span class="hint" { "Only with your own key." }
                    input type="text" name="did" value=(f.did) placeholder="did:key:z6Mk..." spellcheck="false";
                }
            }
            div { button type="submit" { "Register" } }
        }
    }
}

/// `GET /agents/new`: the onboarding wizard's first step.
pub(crate) async fn new_page(m: Member) -> PageResult {
    if !m.may(AdminScope::AgentsWrite) {
        return Err(PageError::forbidden(
            "Your role may not register agents: ask an admin or a developer of your organization.",
        ));
    }
    let body = new_agent_form(&m.ctx, &NewAgentForm::default());
    Ok(m.ctx
        .page(Page::new("Register an agent", Nav::Agents, body)))
}

fn snippets(ctx: &Ctx, client_id: &str, scopes: &[String]) -> Markup {
    let token_url = &ctx.state.idp.config().token_endpoint;
    let scope = scopes.join(" ");
    let curl = format!(
        "curl -s -u \"{client_id}:$CLIENT_SECRET\" \\\n  -d grant_type=client_credentials{} \\\n  {token_url}",
        if scope.is_empty() {
            String::new()
        } else {
            format!(" -d scope=\"{scope}\"")
        }
    );
    let cli = format!(
        "sentryagent login --url {}\nsentryagent issue-token --client-id {client_id} --client-secret-stdin <<< \"$CLIENT_SECRET\"",
        ctx.issuer()
    );
    let python = format!(
        "from authlib.integrations.requests_client import OAuth2Session\n\nsession = OAuth2Session(\"{client_id}\", CLIENT_SECRET{})\ntoken = session.fetch_token(\"{token_url}\", grant_type=\"client_credentials\")",
        if scope.is_empty() {
            String::new()
        } else {
            format!(", scope=\"{scope}\"")
        }
    );
    html! {
        h3 { "curl" }
        pre id="snippet-curl" { code { (curl) } }
        h3 { "CLI" }
        pre id="snippet-cli" { code { (cli) } }
        h3 { "Python" }
        pre id="snippet-python" { code { (python) } }
    }
}

/// The hidden fields and button that issue a first token with the secret
/// just shown.
fn first_token_form(ctx: &Ctx, agent: &Agent, secret: &str) -> Markup {
    html! {
        form method="post" action=(ctx.url(&format!("/agents/{}/token", agent.id))) {
            (ctx.csrf_field())
            input type="hidden" name="client_secret" value=(secret);
            button type="submit" { "Get a token now" }
        }
    }
}

/// The credentials of a new or rotated agent, shown once.
fn credentials_box(client_id: &str, secret: Option<&str>, jwk: Option<&str>) -> Markup {
    html! {
        div class="secret" data-secret="true" {
            p { strong { "Shown once." } " Store them now: the server keeps only a hash of the secret and never the private key." }
            dl class="facts" {
                dt { "Client id" } dd { code id="client-id" { (client_id) } }
                @if let Some(s) = secret {
                    dt { "Client secret" } dd { code id="client-secret" { (s) } }
                }
            }
            @if let Some(j) = jwk {
                p { "Private key (JWK):" }
                pre id="private-jwk" { (j) }
            }
            div class="actions" hidden data-needs-js {
                @if secret.is_some() {
                    button type="button" class="secondary" data-copy="#client-secret" { "Copy the secret" }
                }
                @if jwk.is_some() {
                    button type="button" class="secondary" data-copy="#private-jwk" { "Copy the private key" }
                    button type="button" class="secondary" data-download="#private-jwk" data-filename=(format!("{client_id}.jwk.json")) { "Download the private key" }
                }
                button type="button" class="secondary" data-download="#credentials-json" data-filename=(format!("{client_id}.json")) { "Download all" }
            }
            pre id="credentials-json" hidden {
                (serde_json::json!({"client_id": client_id, "client_secret": secret, "private_jwk": jwk.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())}).to_string())
            }
        }
    }
}

/// `POST /agents/new`: registers the agent, then shows its credentials
/// once (`no-store`) with the snippets and the first-token button.
pub(crate) async fn create(m: Member, PageForm(f): PageForm<NewAgentForm>) -> PageResult {
    let ctx = &m.ctx;
    let did = (f.key == "did").then(|| f.did.trim().to_owned());
    if did.as_deref() == Some("") {
        return Ok(ctx.page(
            Page::new("Register an agent", Nav::Agents, new_agent_form(ctx, &f))
                .flash(Flash::error(
                    "Paste the did:key of your key, or choose to generate one.",
                ))
                .status(StatusCode::UNPROCESSABLE_ENTITY),
        ));
    }
    let new = NewAgent {
        name: f.name.trim().to_owned(),
        description: f.description.trim().to_owned(),
        capabilities: split_list(&f.capabilities),
        allowed_scopes: split_list(&f.scopes),
        did,
        ..Default::default()
    };
    let registered = match ctx
        .state
        .idp
        .register_agent(&m.caller, &m.tenant, new)
        .await
    {
        Ok(r) => r,
        Err(
            e @ (Error::Invalid { .. } | Error::AlreadyExists { .. } | Error::QuotaExceeded { .. }),
        ) => {
            let text = match &e {
                Error::AlreadyExists { .. } => {
                    "An agent of this name exists in your organization.".to_owned()
                }
                Error::QuotaExceeded { .. } => format!("{e}."),
                _ => format!("Not registered: {e}."),
            };
            return Ok(ctx.page(
                Page::new("Register an agent", Nav::Agents, new_agent_form(ctx, &f))
                    .flash(Flash::error(text))
                    .status(StatusCode::UNPROCESSABLE_ENTITY),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let agent = &registered.agent;
    let jwk = registered
        .private_jwk
        .as_ref()
        .and_then(|j| serde_json::to_string_pretty(j).ok());
    let secret = registered.client_secret.as_deref();
    let body = html! {
        ol class="muted" { li { "Describe the agent" } li { strong { "Save its credentials" } } li { "Get a first token" } }
        (credentials_box(agent.id.as_str(), secret, jwk.as_deref()))
        h2 { "Get your first token" }
        (snippets(ctx, agent.id.as_str(), &agent.allowed_scopes))
        @if let Some(s) = secret {
            (first_token_form(ctx, agent, s))
        }
        p { a href=(ctx.url(&format!("/agents/{}", agent.id))) { "Go to the agent" } }
    };
    Ok(ctx.page(
        Page::new(format!("{} is registered", agent.name), Nav::Agents, body)
            .flash(Flash::success("The agent is registered."))
            .no_store(),
    ))
}

/// The first-token form.
#[derive(Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    client_secret: String,
}

/// `POST /agents/{id}/token`: issues a token with the secret just shown
/// and shows its decoded claims (`no-store`). The agent must be the
/// member's.
pub(crate) async fn first_token(
    m: Member,
    Meta(meta): Meta,
    Path(id): Path<String>,
    PageForm(f): PageForm<TokenForm>,
) -> PageResult {
    let ctx = &m.ctx;
    let id = agent_id(&id)?;
    let agent = ctx.state.idp.get_agent(&m.caller, &id).await?;
    let req = TokenRequest {
        grant_type: CLIENT_CREDENTIALS.to_owned(),
        client: ClientCredentials::Secret {
            client_id: agent.id.to_string(),
            client_secret: f.client_secret,
        },
        scope: None,
        resources: Vec::new(),
    };
    let issued = match ctx.state.idp.issue_token(&req, &meta).await {
        Ok(t) => t,
        Err(Error::Unauthenticated) => {
            return Err(PageError::new(
                StatusCode::UNAUTHORIZED,
                "No token",
                "The client secret was not accepted: it may have been rotated or revoked.",
            ));
        }
        Err(e) => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "No token",
                format!("No token was issued: {e}."),
            ));
        }
    };
    let claims = ctx
        .state
        .idp
        .verify_access_token(&issued.access_token, None)
        .map_err(PageError::from)?;
    let claims_json = serde_json::to_string_pretty(&claims).unwrap_or_default();
    let body = html! {
        p { "A token of " strong { (agent.name) } ", valid " (issued.expires_in) " seconds. Its claims, decoded:" }
        pre id="token-claims" data-claims { code { (claims_json) } }
        h2 { "The token" }
        pre id="access-token" { code { (issued.access_token) } }
        div class="actions" hidden data-needs-js {
            button type="button" class="secondary" data-copy="#access-token" { "Copy the token" }
        }
        p { a href=(ctx.url(&format!("/agents/{}", agent.id))) { "Go to the agent" } " · " a href=(ctx.url("/agents")) { "All agents" } }
    };
    Ok(ctx.page(Page::new("Your first token", Nav::Agents, body).no_store()))
}

/// `GET /agents/{id}`: the agent, its DID document, the transitions it
/// allows, its credentials and its usage this month.
pub(crate) async fn detail(m: Member, Path(id): Path<String>) -> PageResult {
    let ctx = &m.ctx;
    let id = agent_id(&id)?;
    let agent = ctx.state.idp.get_agent(&m.caller, &id).await?;
    let did = ctx
        .state
        .idp
        .did_document(Some(&m.caller), &agent.id)
        .await?;
    let did_json = serde_json::to_string_pretty(&did).unwrap_or_default();
    let usage = if m.may(AdminScope::BillingRead) {
        ctx.state
            .idp
            .agent_usage_table(&m.caller, &m.tenant, None)
            .await?
            .into_iter()
            .find(|r| r.agent_id == agent.id)
            .map_or(Some(0), |r| Some(r.token_issuances))
    } else {
        None
    };
    let write = m.may(AdminScope::AgentsWrite);
    let next_states: Vec<LifecycleState> = LifecycleState::ALL
        .into_iter()
        .filter(|s| agent.state.can_transition_to(*s))
        .collect();
    let body = html! {
        p class="lead" { (agent.description) }
        dl class="facts" {
            dt { "State" } dd { (state_badge(agent.state)) }
            dt { "Client id" } dd { code { (agent.id) } }
            dt { "DID" } dd { code { (agent.did) } }
            dt { "Capabilities" } dd { (agent.capabilities.join(", ")) }
            dt { "Scopes" } dd { (agent.allowed_scopes.join(" ")) }
            dt { "Visibility" } dd { (format!("{:?}", agent.visibility).to_lowercase()) }
            dt { "Created" } dd { (agent.created_at) }
        }
        @if let Some(n) = usage {
            h2 { "Usage" }
            p data-usage="token-issuances" { "Token issuances this month: " strong { (super::fmt::number(n)) } }
        }
        h2 { "Lifecycle" }
        @if !write {
            p class="muted" { "Your role may not change agents." }
        } @else if next_states.is_empty() {
            p class="muted" { "A retired agent stays retired." }
        } @else {
            div class="actions" {
                @for s in &next_states {
                    form method="post" action=(ctx.url(&format!("/agents/{}/lifecycle", agent.id))) class="inline" {
                        (ctx.csrf_field())
                        input type="hidden" name="to" value=(s.as_str());
                        button type="submit" class=[(*s == LifecycleState::Retired).then_some("danger")] { "Move to " (s.as_str()) }
                    }
                }
            }
        }
        @if write && agent.state != LifecycleState::Retired {
            h2 { "Credentials" }
            div class="actions" {
                form method="post" action=(ctx.url(&format!("/agents/{}/credentials", agent.id))) class="inline" {
                    (ctx.csrf_field())
                    input type="hidden" name="action" value="rotate";
                    button type="submit" class="secondary" { "Rotate the client secret" }
                }
                form method="post" action=(ctx.url(&format!("/agents/{}/credentials", agent.id))) class="inline" {
                    (ctx.csrf_field())
                    input type="hidden" name="action" value="revoke";
                    button type="submit" class="danger" { "Revoke every client secret" }
                }
            }
        }
        h2 id="did-document" { "DID document" }
        pre { code { (did_json) } }
    };
    Ok(ctx.page(Page::new(agent.name.clone(), Nav::Agents, body)))
}

/// A confirmation step: the same form again with `confirm=yes`.
fn confirm_page(
    ctx: &Ctx,
    title: &str,
    text: &str,
    action: &str,
    fields: &[(&str, &str)],
    back: &str,
) -> axum::response::Response {
    let body = html! {
        p class="lead" { (text) }
        div class="actions" {
            form method="post" action=(action) class="inline" {
                (ctx.csrf_field())
                @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
                input type="hidden" name="confirm" value="yes";
                button type="submit" class="danger" { "Yes, go on" }
            }
            a class="button secondary" href=(back) { "Cancel" }
        }
    };
    ctx.page(Page::new(title.to_owned(), Nav::Agents, body))
}

/// The lifecycle form.
#[derive(Deserialize)]
pub(crate) struct LifecycleForm {
    #[serde(default)]
    to: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /agents/{id}/lifecycle`: moves the agent; retiring asks for a
/// confirmation first.
pub(crate) async fn lifecycle(
    m: Member,
    Path(id): Path<String>,
    PageForm(f): PageForm<LifecycleForm>,
) -> PageResult {
    let ctx = &m.ctx;
    let id = agent_id(&id)?;
    let to = LifecycleState::ALL
        .into_iter()
        .find(|s| s.as_str() == f.to)
        .ok_or_else(|| PageError::bad_request("There is no such state."))?;
    let here = ctx.url(&format!("/agents/{id}"));
    if to == LifecycleState::Retired && f.confirm.as_deref() != Some("yes") {
        let agent = ctx.state.idp.get_agent(&m.caller, &id).await?;
        return Ok(confirm_page(
            ctx,
            "Retire the agent?",
            &format!(
                "{} will get no more tokens, its tokens end, and it cannot come back.",
                agent.name
            ),
            &ctx.url(&format!("/agents/{id}/lifecycle")),
            &[("to", "retired")],
            &here,
        ));
    }
    ctx.state.idp.transition_agent(&m.caller, &id, to).await?;
    Ok(super::page::see_other(&format!(
        "{here}?notice=agent-updated"
    )))
}

/// The credentials form.
#[derive(Deserialize)]
pub(crate) struct CredentialsForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /agents/{id}/credentials`: `action=rotate` (the new secret shown
/// once) or `action=revoke`, each after a confirmation step.
pub(crate) async fn credentials(
    m: Member,
    Path(id): Path<String>,
    PageForm(f): PageForm<CredentialsForm>,
) -> PageResult {
    let ctx = &m.ctx;
    let id = agent_id(&id)?;
    let here = ctx.url(&format!("/agents/{id}"));
    let action = ctx.url(&format!("/agents/{id}/credentials"));
    let agent = ctx.state.idp.get_agent(&m.caller, &id).await?;
    let confirmed = f.confirm.as_deref() == Some("yes");
    match f.action.as_str() {
        "rotate" if !confirmed => Ok(confirm_page(
            ctx,
            "Rotate the client secret?",
            &format!(
                "{} gets a new client secret; the current ones keep working for the grace period.",
                agent.name
            ),
            &action,
            &[("action", "rotate")],
            &here,
        )),
        "rotate" => {
            let (secret, until) = ctx
                .state
                .idp
                .rotate_client_secret(&m.caller, &id, None)
                .await?;
            let body = html! {
                (credentials_box(agent.id.as_str(), Some(&secret), None))
                p { "The previous secrets work until " (until) "." }
                p { a href=(here) { "Back to the agent" } }
            };
            Ok(ctx.page(
                Page::new("New client secret", Nav::Agents, body)
                    .flash(Flash::success("The client secret is rotated."))
                    .no_store(),
            ))
        }
        "revoke" if !confirmed => Ok(confirm_page(
            ctx,
            "Revoke every client secret?",
            &format!(
                "Every client secret of {} stops working at once, and its tokens end.",
                agent.name
            ),
            &action,
            &[("action", "revoke")],
            &here,
        )),
        "revoke" => {
            ctx.state.idp.revoke_client_secrets(&m.caller, &id).await?;
            Ok(super::page::see_other(&format!(
                "{here}?notice=secrets-revoked"
            )))
        }
        _ => Err(PageError::bad_request("There is no such action.")),
    }
}
