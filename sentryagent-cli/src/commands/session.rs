//! `login`, `logout`, `whoami` and `config`.

use std::io::{BufRead, IsTerminal};

use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Ctx;
use crate::cli::{ConfigCommand, LoginArgs};
use crate::client::{Client, enc};
use crate::config::{Profile, mask};
use crate::error::CliError;
use crate::output::{print_json, s};

/// Who an admin key is.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// `operator` or `tenant`.
    pub(crate) kind: &'static str,
    /// The tenant of a tenant key.
    pub(crate) tenant_id: Option<String>,
    /// That tenant's name.
    pub(crate) tenant_name: Option<String>,
    /// The key's record (id, name, prefix, scopes), when the key may list
    /// keys.
    pub(crate) key: Option<Value>,
}

impl Identity {
    fn scopes(&self) -> Option<Vec<String>> {
        let k = self.key.as_ref()?;
        Some(
            k.get("scopes")?
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
        )
    }

    fn to_json(&self, ctx: &Ctx) -> Value {
        json!({
            "kind": self.kind,
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "key_id": self.key.as_ref().map(|k| s(k, "id")),
            "key_name": self.key.as_ref().map(|k| s(k, "name")),
            "key_prefix": self.key.as_ref().map(|k| s(k, "prefix")),
            "scopes": self.scopes(),
            "url": ctx.client.base(),
            "profile": ctx.settings.profile,
        })
    }

    fn describe(&self) -> String {
        let who = match (self.kind, &self.tenant_id, &self.tenant_name) {
            ("operator", _, _) => "operator key".to_owned(),
            (_, Some(id), Some(name)) => format!("tenant key of {name} ({id})"),
            (_, Some(id), None) => format!("tenant key of tenant {id}"),
            _ => "tenant key (tenant unknown: the key may read neither usage, agents nor audit)"
                .to_owned(),
        };
        let name = self
            .key
            .as_ref()
            .map(|k| format!(" \"{}\"", s(k, "name")))
            .unwrap_or_default();
        let scopes = match self.scopes() {
            Some(s) => s.join(", "),
            None => "unknown (the key may not list keys)".to_owned(),
        };
        format!("{who}{name}, scopes: {scopes}")
    }
}

/// The key in `list` whose visible prefix starts `key`.
fn own_key(list: &Value, key: &str) -> Option<Value> {
    list.as_array()?
        .iter()
        .find(|k| {
            let p = s(k, "prefix");
            !p.is_empty() && key.starts_with(p) && k.get("revoked_at").is_none_or(Value::is_null)
        })
        .cloned()
}

/// Asks the server who `key` is. The API has no "who am I" route: an
/// operator key may list operator keys; a tenant key reads its tenant's
/// usage (which names the tenant) and, with the admin scope, its tenant's
/// keys.
pub(crate) async fn identify(client: &Client, key: &str) -> Result<Identity, CliError> {
    let res = client
        .authed(Method::GET, "/v1/api-keys")?
        .send()
        .await
        .map_err(|e| client.transport(&e))?;
    let status = res.status().as_u16();
    if res.status().is_success() {
        let list: Value = res
            .json()
            .await
            .map_err(|e| CliError::other(format!("unexpected answer: {e}")))?;
        return Ok(Identity {
            kind: "operator",
            tenant_id: None,
            tenant_name: None,
            key: own_key(&list, key),
        });
    }
    if status != 403 {
        return Err(client.error_from(res).await);
    }
    let res = client
        .authed(Method::GET, "/billing/usage")?
        .send()
        .await
        .map_err(|e| client.transport(&e))?;
    match res.status().as_u16() {
        200 => {}
        // A tenant key without the billing_read scope: its agents or audit
        // events name its tenant, when it may read them.
        403 => {
            let mut tenant = None;
            for path in ["/v1/agents?limit=1", "/v1/audit?limit=1"] {
                if let Ok(page) = client.json(client.authed(Method::GET, path)?).await {
                    tenant = page
                        .get("items")
                        .and_then(|i| i.get(0))
                        .map(|a| s(a, "tenant_id").to_owned())
                        .filter(|t| !t.is_empty());
                }
                if tenant.is_some() {
                    break;
                }
            }
            return Ok(Identity {
                kind: "tenant",
                tenant_id: tenant,
                tenant_name: None,
                key: None,
            });
        }
        // An operator key without the admin scope must name a tenant here.
        422 => {
            return Ok(Identity {
                kind: "operator",
                tenant_id: None,
                tenant_name: None,
                key: None,
            });
        }
        _ => return Err(client.error_from(res).await),
    }
    let usage: Value = res
        .json()
        .await
        .map_err(|e| CliError::other(format!("unexpected answer: {e}")))?;
    let tenant = s(&usage, "tenant_id").to_owned();
    let keys = client
        .json(client.authed(
            Method::GET,
            &format!("/v1/tenants/{}/api-keys", enc(&tenant)),
        )?)
        .await
        .ok();
    let name = client
        .json(client.authed(Method::GET, &format!("/v1/tenants/{}", enc(&tenant)))?)
        .await
        .ok()
        .map(|t| s(&t, "name").to_owned());
    Ok(Identity {
        kind: "tenant",
        tenant_id: Some(tenant),
        tenant_name: name,
        key: keys.and_then(|k| own_key(&k, key)),
    })
}

/// Reads one line from stdin, without its line end.
fn read_stdin_line(what: &str) -> Result<Zeroizing<String>, CliError> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::other(format!("cannot read {what} from stdin: {e}")))?;
    let trimmed = Zeroizing::new(line.trim().to_owned());
    if trimmed.is_empty() {
        return Err(CliError::usage(format!("no {what} on stdin")));
    }
    Ok(trimmed)
}

pub(crate) fn read_secret_stdin(what: &str) -> Result<Zeroizing<String>, CliError> {
    read_stdin_line(what)
}

/// `login`.
pub(crate) async fn login(ctx: &mut Ctx, args: LoginArgs) -> Result<(), CliError> {
    let key: Zeroizing<String> = if args.api_key_stdin {
        read_stdin_line("API key")?
    } else if let Some(k) = ctx.global.api_key.clone() {
        Zeroizing::new(k)
    } else if std::io::stdin().is_terminal() {
        let prompt = format!("API key for {}: ", ctx.client.base());
        let k = rpassword::prompt_password(prompt)
            .map_err(|e| CliError::other(format!("cannot read the key: {e}")))?;
        let k = Zeroizing::new(k.trim().to_owned());
        if k.is_empty() {
            return Err(CliError::usage("no key entered"));
        }
        k
    } else {
        return Err(CliError::usage(
            "no terminal to ask for the key: pass --api-key-stdin and pipe the key",
        ));
    };
    let client = Client::new(ctx.client.base(), Some(key.to_string()), ctx.global.verbose)?;
    let who = ctx
        .ui
        .spin("checking the key", identify(&client, &key))
        .await?;
    let profile = ctx.settings.profile.clone();
    let entry = ctx.config.profiles.entry(profile.clone()).or_default();
    entry.url = Some(ctx.client.base().to_owned());
    entry.api_key = Some(key.to_string());
    if let Some(t) = &who.tenant_id {
        entry.tenant = Some(t.clone());
    } else if ctx.global.tenant.is_some() {
        entry.tenant.clone_from(&ctx.global.tenant);
    }
    if ctx.config.default_profile.is_none() {
        ctx.config.default_profile = Some(profile.clone());
    }
    let path = ctx.config.save()?;
    if ctx.ui.json {
        print_json(&who.to_json(ctx));
    } else {
        ctx.ui.done(&format!(
            "Logged in to {} as {}",
            ctx.ui.bold(ctx.client.base()),
            who.describe()
        ));
        println!("  saved as profile \"{profile}\" in {}", path.display());
    }
    Ok(())
}

/// `logout`.
pub(crate) fn logout(ctx: &mut Ctx) -> Result<(), CliError> {
    let profile = ctx.settings.profile.clone();
    let removed = ctx
        .config
        .profiles
        .get_mut(&profile)
        .and_then(|p| p.api_key.take())
        .is_some();
    if removed {
        ctx.config.save()?;
    }
    if ctx.ui.json {
        print_json(&json!({"profile": profile, "logged_out": removed}));
    } else if removed {
        ctx.ui
            .done(&format!("Removed the API key of profile \"{profile}\""));
    } else {
        println!("Profile \"{profile}\" holds no API key");
    }
    Ok(())
}

/// `whoami`.
pub(crate) async fn whoami(ctx: &mut Ctx) -> Result<(), CliError> {
    let key = ctx.settings.api_key.clone().ok_or_else(|| {
        CliError::auth("not logged in: run `sentryagent login` or set SENTRYAGENT_API_KEY")
    })?;
    let who = ctx
        .ui
        .spin("asking the server", identify(&ctx.client, &key))
        .await?;
    if ctx.ui.json {
        print_json(&who.to_json(ctx));
    } else {
        println!("{}", who.describe());
        ctx.ui.print_fields(&[
            ("server", ctx.client.base().to_owned()),
            ("profile", ctx.settings.profile.clone()),
            ("key", mask(&key)),
        ]);
    }
    Ok(())
}

fn profile_json(p: &Profile) -> Value {
    json!({
        "url": p.url,
        "api_key": p.api_key.as_deref().map(mask),
        "tenant": p.tenant,
    })
}

/// `config list|get|set|use`.
pub(crate) fn config(ctx: &mut Ctx, command: ConfigCommand) -> Result<(), CliError> {
    let profile = ctx.settings.profile.clone();
    match command {
        ConfigCommand::List => {
            let default = ctx.config.profile_name(&crate::cli::GlobalArgs {
                profile: None,
                ..ctx.global.clone()
            });
            if ctx.ui.json {
                let profiles: serde_json::Map<String, Value> = ctx
                    .config
                    .profiles
                    .iter()
                    .map(|(k, p)| (k.clone(), profile_json(p)))
                    .collect();
                print_json(&json!({"default_profile": default, "profiles": profiles}));
                return Ok(());
            }
            if ctx.config.profiles.is_empty() {
                println!("No profiles yet: run `sentryagent login`");
                return Ok(());
            }
            let mut t = ctx.ui.table(&["", "PROFILE", "URL", "API KEY", "TENANT"]);
            for (name, p) in &ctx.config.profiles {
                t.add_row(vec![
                    if *name == default { "*" } else { "" }.to_owned(),
                    name.clone(),
                    p.url.clone().unwrap_or_default(),
                    p.api_key.as_deref().map(mask).unwrap_or_default(),
                    p.tenant.clone().unwrap_or_default(),
                ]);
            }
            ctx.ui.print_table(&t);
        }
        ConfigCommand::Get { key } => {
            let p = ctx
                .config
                .profiles
                .get(&profile)
                .cloned()
                .unwrap_or_default();
            let value = match key.as_str() {
                "url" => p.url,
                "api_key" => p.api_key.as_deref().map(mask),
                "tenant" => p.tenant,
                "default_profile" => ctx.config.default_profile.clone(),
                other => {
                    return Err(CliError::usage(format!(
                        "unknown setting {other:?}: url, api_key, tenant or default_profile"
                    )));
                }
            };
            if ctx.ui.json {
                print_json(&json!({ key: value }));
            } else {
                match value {
                    Some(v) => println!("{v}"),
                    None => return Err(CliError::not_found(format!("{key} is not set"))),
                }
            }
        }
        ConfigCommand::Set { key, value } => {
            let entry = ctx.config.profiles.entry(profile.clone()).or_default();
            match key.as_str() {
                "url" => {
                    Client::new(value.trim_end_matches('/'), None, false)?;
                    entry.url = Some(value.trim_end_matches('/').to_owned());
                }
                "tenant" => entry.tenant = Some(value.clone()).filter(|v| !v.is_empty()),
                "api_key" => {
                    return Err(CliError::usage(
                        "keys are not set on the command line: use `sentryagent login` (it checks the key and reads it without echo or from --api-key-stdin)",
                    ));
                }
                other => {
                    return Err(CliError::usage(format!(
                        "unknown setting {other:?}: url or tenant"
                    )));
                }
            }
            ctx.config.save()?;
            if !ctx.ui.json {
                ctx.ui.done(&format!("Set {key} of profile \"{profile}\""));
            }
        }
        ConfigCommand::Use { name } => {
            if !ctx.config.profiles.contains_key(&name) {
                return Err(CliError::not_found(format!(
                    "no profile named {name:?} (see `sentryagent config list`)"
                )));
            }
            ctx.config.default_profile = Some(name.clone());
            ctx.config.save()?;
            if !ctx.ui.json {
                ctx.ui.done(&format!("Default profile is now \"{name}\""));
            }
        }
    }
    Ok(())
}
