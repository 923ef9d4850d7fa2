//! The public marketplace: search with filters and paging, an agent's page
//! (capabilities, DID document, agent card, publisher) and a publisher's.

use axum::extract::Path;
use maud::{Markup, html};
use sentryagent_core::{Agent, AgentId, Error, MarketplaceQuery, PageRequest, Tenant};
use serde::Deserialize;

use super::page::{Ctx, Nav, Page, PageQuery, PageResult};
use crate::a2a::agent_card;

/// Agents per marketplace page.
const PAGE_SIZE: usize = 20;

/// The query of `/marketplace`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchParams {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    capability: Option<String>,
    #[serde(default)]
    category: Option<String>,
    /// A publisher's slug.
    #[serde(default)]
    publisher: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// One agent in a list.
pub(crate) fn agent_card_markup(ctx: &Ctx, a: &Agent) -> Markup {
    html! {
        article class="card" {
            h2 { a href=(ctx.url(&format!("/marketplace/agents/{}", a.id))) { (a.name) } }
            p { (a.description) }
            @if !a.capabilities.is_empty() {
                p {
                    @for c in &a.capabilities { span class="badge" { (c) } " " }
                }
            }
            @if let Some(cat) = &a.category { p class="muted" { "Category: " (cat) } }
        }
    }
}

/// `GET /marketplace`: `?q=` words, `capability`, `category`, `publisher`
/// (a slug) and `cursor` for the next page.
pub(crate) async fn search(ctx: Ctx, PageQuery(p): PageQuery<SearchParams>) -> PageResult {
    let (q, capability, category, publisher_slug) = (
        non_empty(&p.q),
        non_empty(&p.capability),
        non_empty(&p.category),
        non_empty(&p.publisher),
    );
    let publisher = match &publisher_slug {
        Some(slug) => match ctx.state.idp.publisher(slug).await {
            Ok(t) => Some(Some(t)),
            Err(Error::NotFound { .. }) => Some(None),
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let found = match &publisher {
        // An unknown publisher has no agents.
        Some(None) => sentryagent_core::Page {
            items: Vec::new(),
            next_cursor: None,
        },
        _ => {
            let query = MarketplaceQuery {
                text: q.clone(),
                capability: capability.clone(),
                tag: None,
                category: category.clone(),
                publisher: publisher
                    .as_ref()
                    .and_then(|p| p.as_ref())
                    .map(|t| t.id.clone()),
                ..Default::default()
            };
            let page = PageRequest {
                cursor: non_empty(&p.cursor),
                limit: Some(PAGE_SIZE),
            };
            match ctx.state.idp.search_marketplace(&query, &page).await {
                Ok(found) => found,
                Err(Error::Invalid { message, .. }) => {
                    return Err(super::page::PageError::bad_request(format!(
                        "The search cannot run: {message}."
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let next_href = found.next_cursor.as_ref().map(|cursor| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &q),
            ("capability", &capability),
            ("category", &category),
            ("publisher", &publisher_slug),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.append_pair("cursor", cursor);
        format!("{}?{}", ctx.url("/marketplace"), s.finish())
    });
    let filtered =
        q.is_some() || capability.is_some() || category.is_some() || publisher_slug.is_some();
    let body = html! {
        form class="row" method="get" action=(ctx.url("/marketplace")) role="search" {
            label { "Search" input type="search" name="q" value=(q.as_deref().unwrap_or("")) maxlength="200"; }
            label { "Capability" input type="text" name="capability" value=(capability.as_deref().unwrap_or("")); }
            label { "Category" input type="text" name="category" value=(category.as_deref().unwrap_or("")); }
            label { "Publisher" input type="text" name="publisher" value=(publisher_slug.as_deref().unwrap_or("")) placeholder="slug"; }
            button type="submit" { "Search" }
        }
        @if filtered { p { a href=(ctx.url("/marketplace")) { "Clear the filters" } } }
        @if found.items.is_empty() {
            p class="muted" { "No agent matches." }
        } @else {
            div class="cards" {
                @for a in &found.items { (agent_card_markup(&ctx, a)) }
            }
        }
        @if p.cursor.is_some() || next_href.is_some() {
            nav class="pager" aria-label="Pages" {
                @if p.cursor.is_some() { a href=(ctx.url("/marketplace")) { "First page" } }
                @if let Some(h) = &next_href { a href=(h) rel="next" { "Next page" } }
            }
        }
    };
    Ok(ctx.page(Page::new("Marketplace", Nav::Marketplace, body)))
}

fn publisher_facts(ctx: &Ctx, t: &Tenant) -> Markup {
    html! {
        dl class="facts" {
            dt { "Publisher" }
            dd {
                a href=(ctx.url(&format!("/publishers/{}", t.slug))) { (t.publisher.display_name) }
                @if t.publisher.verified { " " span class="badge active" { "verified" } }
            }
            @if let Some(v) = &t.publisher.verification {
                dt { "Verified" }
                dd data-verification=(v.method.as_str()) {
                    @match &v.domain {
                        Some(d) => { "owns " code { (d) } " (domain proof)" }
                        None => { "by the operator" }
                    }
                    ", " (super::fmt::date(v.verified_at))
                }
            }
            @if let Some(w) = &t.publisher.website {
                dt { "Website" }
                dd {
                    @if w.starts_with("https://") || w.starts_with("http://") {
                        a href=(w) rel="noopener nofollow" { (w) }
                    } @else { (w) }
                }
            }
        }
    }
}

/// `GET /marketplace/agents/{id}`: the agent, its capabilities, DID
/// document, agent card and publisher.
pub(crate) async fn agent(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let id = AgentId::parse(&id).map_err(|_| Error::not_found("agent"))?;
    let (agent, tenant) = ctx.state.idp.marketplace_agent(&id).await?;
    let did = ctx.state.idp.did_document(None, &agent.id).await?;
    let cfg = ctx.state.idp.config();
    let card = agent_card(&agent, &tenant, &cfg.issuer, &cfg.token_endpoint);
    let did_json = serde_json::to_string_pretty(&did).unwrap_or_default();
    let card_json = serde_json::to_string_pretty(&card).unwrap_or_default();
    let body = html! {
        p class="lead" { (agent.description) }
        (publisher_facts(&ctx, &tenant))
        dl class="facts" {
            dt { "DID" } dd { code { (agent.did) } }
            dt { "Version" } dd { (agent.version) }
            dt { "State" } dd { span class={"badge " (agent.state.as_str())} { (agent.state.as_str()) } }
            @if let Some(c) = &agent.category { dt { "Category" } dd { (c) } }
        }
        h2 { "Capabilities" }
        @if agent.capabilities.is_empty() { p class="muted" { "None declared." } }
        @else {
            ul { @for c in &agent.capabilities {
                li { a href={(ctx.url("/marketplace")) "?capability=" (form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>())} { (c) } }
            } }
        }
        h2 id="did-document" { "DID document" }
        pre { code { (did_json) } }
        h2 id="agent-card" { "Agent card" }
        pre { code { (card_json) } }
    };
    Ok(ctx.page(Page::new(agent.name.clone(), Nav::Marketplace, body)))
}

/// `GET /publishers/{slug}`: the publisher and its marketplace agents.
pub(crate) async fn publisher(ctx: Ctx, Path(slug): Path<String>) -> PageResult {
    let tenant = ctx.state.idp.publisher(&slug).await?;
    let agents = ctx
        .state
        .idp
        .search_marketplace(
            &MarketplaceQuery {
                publisher: Some(tenant.id.clone()),
                ..Default::default()
            },
            &PageRequest::first(PAGE_SIZE),
        )
        .await?;
    let more = agents.next_cursor.is_some();
    let body = html! {
        (publisher_facts(&ctx, &tenant))
        h2 { "Agents" }
        @if agents.items.is_empty() { p class="muted" { "No public agent yet." } }
        @else { div class="cards" { @for a in &agents.items { (agent_card_markup(&ctx, a)) } } }
        @if more {
            p { a href={(ctx.url("/marketplace")) "?publisher=" (tenant.slug)} { "All of its agents" } }
        }
    };
    Ok(ctx.page(Page::new(
        tenant.publisher.display_name.clone(),
        Nav::Marketplace,
        body,
    )))
}
