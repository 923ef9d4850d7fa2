//! `usage`, `marketplace search`, `tenants` and `api-keys`.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::agents::collect_pages;
use super::tenant_query;
use crate::Ctx;
use crate::cli::{ApiKeysCommand, MarketplaceCommand, TenantStatus, TenantsCommand};
use crate::client::{enc, query};
use crate::error::CliError;
use crate::output::{bar, list as list_field, print_json, s};

/// `usage`.
pub(crate) async fn usage(ctx: &mut Ctx) -> Result<(), CliError> {
    let path = format!("/billing/usage{}", tenant_query(ctx));
    let req = ctx.client.authed(Method::GET, &path)?;
    let u = ctx.ui.spin("reading usage", ctx.client.json(req)).await?;
    if ctx.ui.json {
        print_json(&u);
        return Ok(());
    }
    println!(
        "Tenant {}  tier {}",
        s(&u, "tenant_id"),
        ctx.ui.bold(s(&u, "tier"))
    );
    let mut t = ctx.ui.table(&["LIMIT", "USED", "OF", "", "%"]);
    let mut warn = Vec::new();
    for (key, label) in [
        ("agents", "agents"),
        ("api_calls_today", "API calls today"),
        ("token_issuances_this_month", "tokens this month"),
    ] {
        let l = u.get(key).cloned().unwrap_or(Value::Null);
        let used = l.get("used").and_then(Value::as_u64).unwrap_or(0);
        let limit = l.get("limit").and_then(Value::as_u64);
        let pct = l.get("percent").and_then(Value::as_u64).unwrap_or(0);
        let near = l
            .get("approaching_limit")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if near {
            warn.push(label);
        }
        let b = match limit {
            Some(_) if near => format!("{} !", bar(pct)),
            Some(_) => bar(pct),
            None => String::new(),
        };
        t.add_row(vec![
            label.to_owned(),
            used.to_string(),
            limit.map_or_else(|| "unlimited".to_owned(), |l| l.to_string()),
            b,
            limit.map(|_| format!("{pct}%")).unwrap_or_default(),
        ]);
    }
    ctx.ui.print_table(&t);
    if let Some(rpm) = u
        .get("limits")
        .and_then(|l| l.get("requests_per_minute"))
        .and_then(Value::as_u64)
    {
        println!(
            "{}",
            ctx.ui
                .dim(&format!("rate limit: {rpm} requests per minute"))
        );
    }
    if let Some(end) = u.get("current_period_end").and_then(Value::as_str) {
        println!("subscription {} until {end}", s(&u, "subscription_status"));
    }
    let approaching = u
        .get("approaching_limit")
        .and_then(Value::as_bool)
        .unwrap_or(!warn.is_empty());
    if approaching {
        let which = if warn.is_empty() {
            "a limit".to_owned()
        } else {
            warn.join(", ")
        };
        println!(
            "{} at or above 80% of {which}: upgrade with POST {}/api/tiers/upgrade {{\"tier\":\"pro\"}}",
            ctx.ui.yellow("warning:"),
            ctx.client.base()
        );
    }
    Ok(())
}

/// `marketplace search`.
pub(crate) async fn marketplace(ctx: &mut Ctx, c: MarketplaceCommand) -> Result<(), CliError> {
    let MarketplaceCommand::Search(a) = c;
    let path = format!(
        "/v1/marketplace/agents{}",
        query(&[
            ("q", a.query.as_deref()),
            ("capability", a.capability.as_deref()),
            ("category", a.category.as_deref()),
            ("tag", a.tag.as_deref()),
            ("publisher", a.publisher.as_deref()),
        ])
    );
    let found = ctx
        .ui
        .spin(
            "searching",
            collect_pages(ctx, &path, false, a.limit, |_| true),
        )
        .await?;
    if ctx.ui.json {
        print_json(&Value::Array(found));
        return Ok(());
    }
    if found.is_empty() {
        println!("No agents found");
        return Ok(());
    }
    let mut t = ctx.ui.table(&[
        "ID",
        "NAME",
        "CAPABILITIES",
        "CATEGORY",
        "PUBLISHER",
        "DESCRIPTION",
    ]);
    for v in &found {
        t.add_row(vec![
            s(v, "id").to_owned(),
            s(v, "name").to_owned(),
            list_field(v, "capabilities"),
            s(v, "category").to_owned(),
            s(v, "publisher_id").to_owned(),
            s(v, "description").to_owned(),
        ]);
    }
    ctx.ui.print_table(&t);
    Ok(())
}

fn print_tenant(ctx: &Ctx, v: &Value) {
    ctx.ui.print_fields(&[
        ("id", s(v, "id").to_owned()),
        ("name", s(v, "name").to_owned()),
        ("slug", s(v, "slug").to_owned()),
        ("tier", s(v, "tier").to_owned()),
        ("status", s(v, "status").to_owned()),
        ("created", s(v, "created_at").to_owned()),
    ]);
}

/// `tenants ...`.
pub(crate) async fn tenants(ctx: &mut Ctx, c: TenantsCommand) -> Result<(), CliError> {
    match c {
        TenantsCommand::Create { name, tier, slug } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            if let Some(t) = tier {
                body.insert("tier".into(), json!(t.as_str()));
            }
            if let Some(sl) = slug {
                body.insert("slug".into(), json!(sl));
            }
            let req = ctx.client.authed(Method::POST, "/v1/tenants")?.json(&body);
            let t = ctx.ui.spin("creating", ctx.client.json(req)).await?;
            if ctx.ui.json {
                print_json(&t);
            } else {
                ctx.ui.done(&format!(
                    "Created tenant {} ({})",
                    ctx.ui.bold(s(&t, "name")),
                    s(&t, "id")
                ));
            }
        }
        TenantsCommand::List { limit } => {
            let all = ctx
                .ui
                .spin(
                    "listing tenants",
                    collect_pages(ctx, "/v1/tenants", true, limit, |_| true),
                )
                .await?;
            if ctx.ui.json {
                print_json(&Value::Array(all));
                return Ok(());
            }
            let mut t = ctx
                .ui
                .table(&["ID", "NAME", "SLUG", "TIER", "STATUS", "CREATED"]);
            for v in &all {
                t.add_row(vec![
                    s(v, "id").to_owned(),
                    s(v, "name").to_owned(),
                    s(v, "slug").to_owned(),
                    s(v, "tier").to_owned(),
                    s(v, "status").to_owned(),
                    s(v, "created_at").to_owned(),
                ]);
            }
            ctx.ui.print_table(&t);
        }
        TenantsCommand::Get { id } => {
            let req = ctx
                .client
                .authed(Method::GET, &format!("/v1/tenants/{}", enc(&id)))?;
            let t = ctx.ui.spin("fetching", ctx.client.json(req)).await?;
            if ctx.ui.json {
                print_json(&t);
            } else {
                print_tenant(ctx, &t);
            }
        }
        TenantsCommand::Update { id, tier, status } => {
            let mut body = Map::new();
            if let Some(t) = tier {
                body.insert("tier".into(), json!(t.as_str()));
            }
            if let Some(st) = status {
                let st = match st {
                    TenantStatus::Active => "active",
                    TenantStatus::Suspended => "suspended",
                };
                body.insert("status".into(), json!(st));
            }
            if body.is_empty() {
                return Err(CliError::usage(
                    "nothing to change: give --tier or --status",
                ));
            }
            let req = ctx
                .client
                .authed(Method::PATCH, &format!("/v1/tenants/{}", enc(&id)))?
                .json(&body);
            let t = ctx.ui.spin("updating", ctx.client.json(req)).await?;
            if ctx.ui.json {
                print_json(&t);
            } else {
                ctx.ui.done(&format!(
                    "Tenant {} is on tier {}, {}",
                    s(&t, "id"),
                    s(&t, "tier"),
                    s(&t, "status")
                ));
            }
        }
    }
    Ok(())
}

/// The tenant whose keys a command manages: `--tenant` or the profile's;
/// for a tenant key without either, its own tenant (asked from the
/// server); `None` for an operator key's own keys.
pub(super) async fn keys_tenant(ctx: &Ctx) -> Result<Option<String>, CliError> {
    if let Some(t) = &ctx.settings.tenant {
        return Ok(Some(t.clone()));
    }
    let key = ctx.settings.api_key.clone().unwrap_or_default();
    let who = super::identify(&ctx.client, &key).await?;
    Ok(who.tenant_id)
}

/// `api-keys ...`.
pub(crate) async fn api_keys(ctx: &mut Ctx, c: ApiKeysCommand) -> Result<(), CliError> {
    let tenant = keys_tenant(ctx).await?;
    let base = match &tenant {
        Some(t) => format!("/v1/tenants/{}/api-keys", enc(t)),
        None => "/v1/api-keys".to_owned(),
    };
    match c {
        ApiKeysCommand::Create {
            name,
            scopes,
            expires,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            if !scopes.is_empty() {
                body.insert("scopes".into(), json!(scopes));
            }
            if let Some(e) = expires {
                body.insert("expires_at".into(), json!(expires_at(&e)?));
            }
            let req = ctx.client.authed(Method::POST, &base)?.json(&body);
            let k = ctx.ui.spin("creating", ctx.client.json(req)).await?;
            if ctx.ui.json {
                print_json(&k);
                return Ok(());
            }
            let whose = match &tenant {
                Some(t) => format!("tenant {t}"),
                None => "operators".to_owned(),
            };
            ctx.ui.done(&format!(
                "Created API key {} for {whose}",
                ctx.ui.bold(s(&k, "name"))
            ));
            ctx.ui.print_fields(&[
                ("id", s(&k, "id").to_owned()),
                ("scopes", list_field(&k, "scopes")),
                ("expires", s(&k, "expires_at").to_owned()),
                (
                    "key",
                    format!("{}  {}", s(&k, "key"), ctx.ui.yellow("(shown once)")),
                ),
            ]);
        }
        ApiKeysCommand::List => {
            let req = ctx.client.authed(Method::GET, &base)?;
            let keys = ctx.ui.spin("listing keys", ctx.client.json(req)).await?;
            if ctx.ui.json {
                print_json(&keys);
                return Ok(());
            }
            let mut t = ctx.ui.table(&[
                "ID",
                "NAME",
                "PREFIX",
                "SCOPES",
                "CREATED",
                "LAST USED",
                "REQUESTS",
                "EXPIRES",
                "REVOKED",
            ]);
            for v in keys.as_array().into_iter().flatten() {
                let revoked = match v.get("revocation_reason").and_then(Value::as_str) {
                    Some(r) => format!("{} ({r})", s(v, "revoked_at")),
                    None => s(v, "revoked_at").to_owned(),
                };
                t.add_row(vec![
                    s(v, "id").to_owned(),
                    s(v, "name").to_owned(),
                    format!("{}…", s(v, "prefix")),
                    list_field(v, "scopes"),
                    s(v, "created_at").to_owned(),
                    s(v, "last_used_at").to_owned(),
                    v.get("request_count")
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                        .to_string(),
                    s(v, "expires_at").to_owned(),
                    revoked,
                ]);
            }
            ctx.ui.print_table(&t);
        }
        ApiKeysCommand::Revoke { id, reason } => {
            let path = format!("{base}/{}", enc(&id));
            let mut req = ctx.client.authed(Method::DELETE, &path)?;
            if let Some(r) = &reason {
                req = req.json(&json!({"reason": r}));
            }
            ctx.ui.spin("revoking", ctx.client.send(req)).await?;
            if ctx.ui.json {
                print_json(&json!({"id": id, "tenant_id": tenant, "revoked": true}));
            } else {
                match &tenant {
                    Some(t) => ctx.ui.done(&format!("Revoked API key {id} of tenant {t}")),
                    None => ctx.ui.done(&format!("Revoked operator key {id}")),
                }
            }
        }
    }
    Ok(())
}

/// `--expires`: an RFC 3339 time, or a duration from now.
fn expires_at(when: &str) -> Result<String, CliError> {
    if sentryagent_core::Timestamp::parse_rfc3339(when).is_some() {
        return super::audit::since_param(when);
    }
    let d = super::agents::parse_duration(when).ok_or_else(|| {
        CliError::usage(format!(
            "--expires {when:?} is neither an RFC 3339 time nor a duration (30s, 10m, 2h, 90d)"
        ))
    })?;
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(sentryagent_core::Timestamp::from_unix_secs(now.saturating_add(secs)).to_rfc3339())
}
