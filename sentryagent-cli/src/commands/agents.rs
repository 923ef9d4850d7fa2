//! Agents: register, list, get, update, lifecycle, credentials.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::tenant_query;
use crate::Ctx;
use crate::cli::{AgentFields, ListAgentsArgs, RegisterArgs, RotateArgs, State, UpdateAgentArgs};
use crate::client::{enc, query};
use crate::config::SavedCredentials;
use crate::error::CliError;
use crate::output::{list as list_field, print_json, s};

/// Largest page the server serves.
const MAX_PAGE: usize = 500;

fn agent_path(id: &str) -> String {
    format!("/v1/agents/{}", enc(id))
}

impl AgentFields {
    /// Puts the fields that were given into a request body (API names).
    fn write_to(self, body: &mut Map<String, Value>) {
        let mut put = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        if let Some(v) = self.description {
            put("description", json!(v));
        }
        if let Some(v) = self.agent_version {
            put("version", json!(v));
        }
        if !self.capabilities.is_empty() {
            put("capabilities", json!(self.capabilities));
        }
        if !self.tags.is_empty() {
            put("tags", json!(self.tags));
        }
        if let Some(v) = self.category {
            put("category", json!(v));
        }
        if let Some(v) = self.visibility {
            put("visibility", json!(v.as_str()));
        }
        if !self.scopes.is_empty() {
            put("allowed_scopes", json!(self.scopes));
        }
    }
}

/// `register-agent`.
pub(crate) async fn register(ctx: &mut Ctx, a: RegisterArgs) -> Result<(), CliError> {
    let mut body = Map::new();
    body.insert("name".into(), json!(a.name));
    a.fields.write_to(&mut body);
    if let Some(st) = a.state {
        body.insert("state".into(), json!(st.as_str()));
    }
    if let Some(k) = a.public_key {
        if k.starts_with("did:") {
            body.insert("did".into(), json!(k));
        } else {
            let text = std::fs::read_to_string(&k).map_err(|e| {
                CliError::usage(format!("cannot read the public key file {k}: {e}"))
            })?;
            let jwk: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::usage(format!("{k} is not a JWK (JSON): {e}")))?;
            if jwk.get("d").is_some() {
                return Err(CliError::usage(format!(
                    "{k} holds a private key: give the public JWK only (without \"d\")"
                )));
            }
            body.insert("public_jwk".into(), jwk);
        }
    }
    let path = format!("/v1/agents{}", tenant_query(ctx));
    let req = ctx.client.authed(Method::POST, &path)?.json(&body);
    let agent = ctx.ui.spin("registering", ctx.client.json(req)).await?;
    let saved = if a.save {
        let creds = SavedCredentials {
            agent_id: s(&agent, "id").to_owned(),
            client_id: s(&agent, "client_id").to_owned(),
            client_secret: Some(s(&agent, "client_secret").to_owned()),
            private_jwk: agent.get("private_jwk").cloned(),
            url: ctx.client.base().to_owned(),
        };
        Some(creds.save()?)
    } else {
        None
    };
    if ctx.ui.json {
        print_json(&agent);
        return Ok(());
    }
    ctx.ui.done(&format!(
        "Registered agent {}",
        ctx.ui.bold(s(&agent, "name"))
    ));
    ctx.ui.print_fields(&[
        ("agent id", s(&agent, "id").to_owned()),
        ("client id", s(&agent, "client_id").to_owned()),
        ("DID", s(&agent, "did").to_owned()),
        ("state", s(&agent, "state").to_owned()),
        (
            "client secret",
            format!(
                "{}  {}",
                s(&agent, "client_secret"),
                ctx.ui.yellow("(shown once)")
            ),
        ),
    ]);
    match (&saved, agent.get("private_jwk")) {
        (Some(p), _) => println!("Credentials saved to {}", p.display()),
        (None, Some(jwk)) => {
            println!(
                "Private key (JWK, {}; or use --save next time):",
                ctx.ui.yellow("shown once")
            );
            println!("{}", serde_json::to_string(jwk).unwrap_or_default());
        }
        (None, None) => {}
    }
    Ok(())
}

/// Reads every page of a `{items, next_cursor}` listing at `path` (which
/// may hold a query already), up to `limit` items kept by `keep`.
pub(crate) async fn collect_pages(
    ctx: &Ctx,
    path: &str,
    authed: bool,
    limit: Option<usize>,
    keep: impl Fn(&Value) -> bool,
) -> Result<Vec<Value>, CliError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let page_size = MAX_PAGE.to_string();
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let q = query(&[("limit", Some(&page_size)), ("cursor", cursor.as_deref())]);
        let url = format!("{path}{sep}{}", &q[1..]);
        let req = if authed {
            ctx.client.authed(Method::GET, &url)?
        } else {
            ctx.client.public(Method::GET, &url)
        };
        let page = ctx.client.json(req).await?;
        for item in page
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if keep(item) {
                out.push(item.clone());
                if limit.is_some_and(|l| out.len() >= l) {
                    return Ok(out);
                }
            }
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(c) if !c.is_empty() && Some(c) != cursor.as_deref() => cursor = Some(c.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// `list-agents`.
pub(crate) async fn list(ctx: &mut Ctx, a: ListAgentsArgs) -> Result<(), CliError> {
    let path = format!("/v1/agents{}", tenant_query(ctx));
    let state = a.state.map(State::as_str);
    let cap = a.capability.clone();
    let keep = move |v: &Value| {
        state.is_none_or(|st| s(v, "state") == st)
            && cap.as_deref().is_none_or(|c| {
                v.get("capabilities")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|x| x.as_str() == Some(c)))
            })
    };
    let agents = ctx
        .ui
        .spin(
            "listing agents",
            collect_pages(ctx, &path, true, a.limit, keep),
        )
        .await?;
    if ctx.ui.json {
        print_json(&Value::Array(agents));
        return Ok(());
    }
    if agents.is_empty() {
        println!("No agents");
        return Ok(());
    }
    let mut t = ctx.ui.table(&[
        "ID",
        "NAME",
        "STATE",
        "VISIBILITY",
        "CAPABILITIES",
        "CREATED",
    ]);
    for v in &agents {
        t.add_row(vec![
            s(v, "id").to_owned(),
            s(v, "name").to_owned(),
            s(v, "state").to_owned(),
            s(v, "visibility").to_owned(),
            list_field(v, "capabilities"),
            s(v, "created_at").to_owned(),
        ]);
    }
    ctx.ui.print_table(&t);
    Ok(())
}

fn print_agent(ctx: &Ctx, v: &Value) {
    ctx.ui.print_fields(&[
        ("id", s(v, "id").to_owned()),
        ("name", s(v, "name").to_owned()),
        ("description", s(v, "description").to_owned()),
        ("version", s(v, "version").to_owned()),
        ("state", s(v, "state").to_owned()),
        ("visibility", s(v, "visibility").to_owned()),
        ("tenant", s(v, "tenant_id").to_owned()),
        ("DID", s(v, "did").to_owned()),
        ("capabilities", list_field(v, "capabilities")),
        ("tags", list_field(v, "tags")),
        ("category", s(v, "category").to_owned()),
        ("scopes", list_field(v, "allowed_scopes")),
        ("created", s(v, "created_at").to_owned()),
        ("updated", s(v, "updated_at").to_owned()),
    ]);
}

/// `get-agent`.
pub(crate) async fn get(ctx: &mut Ctx, id: &str) -> Result<(), CliError> {
    let req = ctx.client.authed(Method::GET, &agent_path(id))?;
    let agent = ctx.ui.spin("fetching", ctx.client.json(req)).await?;
    if ctx.ui.json {
        print_json(&agent);
    } else {
        print_agent(ctx, &agent);
    }
    Ok(())
}

/// `update-agent`.
pub(crate) async fn update(ctx: &mut Ctx, a: UpdateAgentArgs) -> Result<(), CliError> {
    let mut body = Map::new();
    if let Some(v) = a.name {
        body.insert("name".into(), json!(v));
    }
    a.fields.write_to(&mut body);
    if body.is_empty() {
        return Err(CliError::usage(
            "nothing to change: give at least one of --name, --description, --agent-version, --capability, --tag, --category, --visibility, --scope",
        ));
    }
    let req = ctx
        .client
        .authed(Method::PATCH, &agent_path(&a.id))?
        .json(&body);
    let agent = ctx.ui.spin("updating", ctx.client.json(req)).await?;
    if ctx.ui.json {
        print_json(&agent);
    } else {
        ctx.ui.done(&format!("Updated agent {}", s(&agent, "id")));
    }
    Ok(())
}

/// The states an agent in `from` may move to (the core's table).
fn allowed_from(from: &str) -> Vec<&'static str> {
    let Ok(from) = from.parse::<sentryagent_core::LifecycleState>() else {
        return Vec::new();
    };
    sentryagent_core::LifecycleState::ALL
        .into_iter()
        .filter(|to| from.can_transition_to(*to))
        .map(sentryagent_core::LifecycleState::as_str)
        .collect()
}

/// `set-state`.
pub(crate) async fn set_state(ctx: &mut Ctx, id: &str, state: State) -> Result<(), CliError> {
    let req = ctx
        .client
        .authed(Method::POST, &format!("{}/lifecycle", agent_path(id)))?
        .json(&json!({ "state": state.as_str() }));
    let res = ctx.ui.spin("changing state", ctx.client.send(req)).await;
    let res = match res {
        Ok(r) => r,
        Err(mut e) if e.message.contains("cannot go from") => {
            // Name the legal moves from the current state.
            let current = ctx
                .client
                .json(ctx.client.authed(Method::GET, &agent_path(id))?)
                .await
                .ok();
            if let Some(cur) = current.as_ref().map(|a| s(a, "state")) {
                let allowed = allowed_from(cur);
                let allowed = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                };
                e.message = format!("{}; allowed from {cur}: {allowed}", e.message);
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let agent: Value = res.json().await.map_err(|e| ctx.client.transport(&e))?;
    if ctx.ui.json {
        print_json(&agent);
    } else {
        ctx.ui.done(&format!(
            "Agent {} is now {}",
            s(&agent, "id"),
            ctx.ui.bold(s(&agent, "state"))
        ));
    }
    Ok(())
}

/// `revoke-credentials`.
pub(crate) async fn revoke(ctx: &mut Ctx, id: &str) -> Result<(), CliError> {
    let req = ctx.client.authed(
        Method::POST,
        &format!("{}/credentials/revoke", agent_path(id)),
    )?;
    let out = ctx.ui.spin("revoking", ctx.client.json(req)).await?;
    if ctx.ui.json {
        print_json(&out);
    } else {
        let n = out.get("revoked").and_then(Value::as_u64).unwrap_or(0);
        ctx.ui
            .done(&format!("Revoked {n} client secret(s) of agent {id}"));
    }
    Ok(())
}

/// Longest `--grace` the server takes: 30 days.
const MAX_GRACE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Parses `30s`, `10m`, `2h`, `7d` (or plain seconds).
pub(crate) fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult).map(std::time::Duration::from_secs)
}

/// A duration in words: `1d 2h`, `45m`, `30s`.
fn human(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (mins, "m")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        format!("{secs}s")
    } else {
        parts.join(" ")
    }
}

/// `rotate-credentials`.
pub(crate) async fn rotate(ctx: &mut Ctx, a: RotateArgs) -> Result<(), CliError> {
    let grace = match &a.grace {
        Some(g) => match parse_duration(g) {
            Some(d) if d <= MAX_GRACE => Some(d),
            Some(_) => {
                return Err(CliError::usage(format!(
                    "--grace {g} is longer than the 30 days allowed"
                )));
            }
            None => {
                return Err(CliError::usage(format!(
                    "--grace {g:?} is not a duration (e.g. 0s, 30m, 1h, 7d)"
                )));
            }
        },
        None => None,
    };
    let mut req = ctx.client.authed(
        Method::POST,
        &format!("{}/credentials/rotate", agent_path(&a.id)),
    )?;
    if let Some(d) = grace {
        req = req.json(&serde_json::json!({ "grace_seconds": d.as_secs() }));
    }
    let out = ctx.ui.spin("rotating", ctx.client.json(req)).await?;
    let secret = s(&out, "client_secret").to_owned();
    let until = s(&out, "previous_valid_until").to_owned();
    let saved = if a.save {
        let mut creds = match SavedCredentials::load(&a.id) {
            Ok(c) => c,
            Err(e) if e.exit == crate::error::Exit::NotFound => SavedCredentials {
                agent_id: a.id.clone(),
                client_id: a.id.clone(),
                client_secret: None,
                private_jwk: None,
                url: ctx.client.base().to_owned(),
            },
            Err(e) => return Err(e),
        };
        creds.client_secret = Some(secret.clone());
        Some(creds.save()?)
    } else {
        None
    };
    if ctx.ui.json {
        print_json(&out);
        return Ok(());
    }
    ctx.ui
        .done(&format!("Rotated the client secret of agent {}", a.id));
    // The server's answer when the grace is known, else from the clock.
    let remaining = grace.map(human).or_else(|| {
        sentryagent_core::Timestamp::parse_rfc3339(&until).map(|t| {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let secs = u64::try_from(t.unix_secs() - now).unwrap_or(0);
            human(std::time::Duration::from_secs(secs))
        })
    });
    ctx.ui.print_fields(&[
        (
            "new secret",
            format!("{secret}  {}", ctx.ui.yellow("(shown once)")),
        ),
        (
            "old secret",
            match remaining {
                _ if grace == Some(std::time::Duration::ZERO) => {
                    format!("no longer valid (ended at {until})")
                }
                Some(r) => format!("valid until {until} (for {r})"),
                None => format!("valid until {until}"),
            },
        ),
    ]);
    if let Some(p) = saved {
        println!("Credentials saved to {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("90"),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("10m"),
            Some(std::time::Duration::from_secs(600))
        );
        assert_eq!(
            parse_duration("2h"),
            Some(std::time::Duration::from_secs(7200))
        );
        assert_eq!(
            parse_duration("1d"),
            Some(std::time::Duration::from_secs(86_400))
        );
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(
            human(std::time::Duration::from_secs(86_400 + 7200)),
            "1d 2h"
        );
        assert_eq!(human(std::time::Duration::from_secs(5)), "5s");
    }

    #[test]
    fn allowed_transitions_come_from_the_core() {
        assert_eq!(allowed_from("retired"), Vec::<&str>::new());
        assert_eq!(allowed_from("draft"), vec!["deployed", "active", "retired"]);
    }
}
