//! The tenant's audit trail: a filterable list, the chain's verification
//! status, and a live tail (the API's event stream, read by the page's
//! script; the list works without it).

use maud::html;
use sentryagent_core::{AuditQuery, Error, Timestamp};
use serde::Deserialize;

use super::auth::Member;
use super::page::{Nav, Page, PageError, PageQuery, PageResult};

/// Events per page.
const PAGE_SIZE: usize = 50;

/// The query of `/audit`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    /// `YYYY-MM-DD`, from the start of that UTC day.
    #[serde(default)]
    from: Option<String>,
    /// `YYYY-MM-DD`, to the end of that UTC day.
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

fn clean(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A `YYYY-MM-DD` day as the timestamp of its start (plus `days`).
fn day(s: &str, days: u64) -> Result<Timestamp, PageError> {
    let t = Timestamp::parse_rfc3339(&format!("{s}T00:00:00Z"))
        .ok_or_else(|| PageError::bad_request("Dates are written YYYY-MM-DD."))?;
    Ok(t.plus(std::time::Duration::from_secs(days * 86_400)))
}

/// `GET /audit`: `action`, `actor`, `from`, `to` (days) and `cursor`.
pub(crate) async fn list(m: Member, PageQuery(p): PageQuery<AuditParams>) -> PageResult {
    let ctx = &m.ctx;
    let (action, actor, from, to) = (
        clean(&p.action),
        clean(&p.actor),
        clean(&p.from),
        clean(&p.to),
    );
    let query = AuditQuery {
        tenant_id: Some(m.tenant.clone()),
        from: from.as_deref().map(|d| day(d, 0)).transpose()?,
        to: to.as_deref().map(|d| day(d, 1)).transpose()?,
        action: action.clone(),
        actor: actor.clone(),
        cursor: clean(&p.cursor),
        limit: Some(PAGE_SIZE),
    };
    let page = ctx
        .state
        .idp
        .query_audit(&m.caller, &query)
        .await
        .map_err(|e| match e {
            Error::Invalid { .. } => {
                PageError::bad_request("The filters or the page link are not valid.")
            }
            e => e.into(),
        })?;
    let chain = ctx.state.idp.verify_audit(&m.caller, Some(&m.tenant)).await;
    let next = page.next_cursor.as_ref().map(|c| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("action", &action),
            ("actor", &actor),
            ("from", &from),
            ("to", &to),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.append_pair("cursor", c);
        format!("{}?{}", ctx.url("/audit"), s.finish())
    });
    let stream = ctx.api_url("/v1/audit/stream");
    let body = html! {
        @match &chain {
            Ok(Some(head)) => p data-chain="verified" { span class="badge active" { "chain verified" } " " (head.seq) " events, head " code { (head.hash.get(..16).unwrap_or(&head.hash)) } },
            Ok(None) => p data-chain="empty" { span class="badge" { "no events yet" } },
            Err(Error::Unavailable { .. }) | Err(Error::Internal { .. }) => p data-chain="unknown" { span class="badge suspended" { "chain not checked" } " the store did not answer" },
            Err(e) => p data-chain="broken" role="alert" { span class="badge revoked" { "chain broken" } " " (e) },
        }
        form class="row" method="get" action=(ctx.url("/audit")) {
            label { "Action" input type="text" name="action" value=(action.as_deref().unwrap_or("")) placeholder="agent.created"; }
            label { "Actor" input type="text" name="actor" value=(actor.as_deref().unwrap_or("")) placeholder="user:usr_..."; }
            label { "From" input type="date" name="from" value=(from.as_deref().unwrap_or("")); }
            label { "To" input type="date" name="to" value=(to.as_deref().unwrap_or("")); }
            button type="submit" { "Filter" }
        }
        div hidden data-needs-js {
            p { span class="badge" data-live-status { "live tail off" } " "
                button type="button" class="secondary" data-audit-stream=(stream) { "Follow live" } }
        }
        div class="table-wrap" { table {
            thead { tr {
                th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Actor" }
                th scope="col" { "Target" } th scope="col" { "Outcome" }
            } }
            tbody id="audit-rows" {
                @for e in &page.items {
                    tr data-seq=(e.seq) {
                        td { (e.event.at) } td { code { (e.event.action) } } td { (e.event.actor) }
                        td { (e.event.target.as_deref().unwrap_or("")) }
                        td { (format!("{:?}", e.event.outcome).to_lowercase()) }
                    }
                }
            }
        } }
        @if page.items.is_empty() { p class="muted" { "No event matches." } }
        @if let Some(n) = &next { nav class="pager" aria-label="Pages" { a href=(n) rel="next" { "Older events" } } }
    };
    Ok(ctx.page(Page::new("Audit trail", Nav::Audit, body)))
}
