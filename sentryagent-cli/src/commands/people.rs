//! `members` and `invitations`: a tenant's people.

use reqwest::Method;
use serde_json::{Value, json};

use super::admin::keys_tenant;
use crate::Ctx;
use crate::cli::{InvitationsCommand, MembersCommand, PublisherCommand};
use crate::client::{enc, query};
use crate::error::CliError;
use crate::output::{print_json, s};

/// The tenant the command acts on: --tenant, the profile's, or the key's
/// own; an operator must name one.
async fn tenant(ctx: &Ctx) -> Result<String, CliError> {
    keys_tenant(ctx).await?.ok_or_else(|| {
        CliError::usage("an operator key must name the tenant: --tenant <tenant-id>")
    })
}

/// Prints a link shown once.
fn print_link(ctx: &Ctx, what: &str, v: &Value) {
    ctx.ui.print_fields(&[
        (what, s(v, "url").to_owned()),
        (
            "token",
            format!("{}  {}", s(v, "token"), ctx.ui.yellow("(shown once)")),
        ),
        ("expires", s(v, "expires_at").to_owned()),
    ]);
}

/// `members ...`.
pub(crate) async fn members(ctx: &mut Ctx, c: MembersCommand) -> Result<(), CliError> {
    match c {
        MembersCommand::List => {
            let t = tenant(ctx).await?;
            let req = ctx
                .client
                .authed(Method::GET, &format!("/v1/tenants/{}/members", enc(&t)))?;
            let list = ctx.ui.spin("listing members", ctx.client.json(req)).await?;
            if ctx.ui.json {
                print_json(&list);
                return Ok(());
            }
            let mut table = ctx.ui.table(&[
                "USER ID",
                "EMAIL",
                "NAME",
                "ROLE",
                "2FA",
                "JOINED",
                "LAST SIGN-IN",
            ]);
            for m in list.as_array().into_iter().flatten() {
                let totp = m.get("totp_enabled").and_then(Value::as_bool) == Some(true);
                table.add_row(vec![
                    s(m, "user_id").to_owned(),
                    s(m, "email").to_owned(),
                    s(m, "display_name").to_owned(),
                    s(m, "role").to_owned(),
                    if totp { "yes" } else { "no" }.to_owned(),
                    s(m, "joined_at").to_owned(),
                    s(m, "last_sign_in_at").to_owned(),
                ]);
            }
            ctx.ui.print_table(&table);
        }
        MembersCommand::SetRole { user_id, role } => {
            let t = tenant(ctx).await?;
            let path = format!("/v1/tenants/{}/members/{}", enc(&t), enc(&user_id));
            let req = ctx
                .client
                .authed(Method::PATCH, &path)?
                .json(&json!({"role": role.as_str()}));
            let m = ctx
                .ui
                .spin("changing the role", ctx.client.json(req))
                .await?;
            if ctx.ui.json {
                print_json(&m);
            } else {
                ctx.ui.done(&format!(
                    "{} ({}) is now {} of tenant {t}",
                    s(&m, "email"),
                    s(&m, "user_id"),
                    ctx.ui.bold(s(&m, "role"))
                ));
            }
        }
        MembersCommand::Remove { user_id } => {
            let t = tenant(ctx).await?;
            let path = format!("/v1/tenants/{}/members/{}", enc(&t), enc(&user_id));
            let req = ctx.client.authed(Method::DELETE, &path)?;
            ctx.ui.spin("removing", ctx.client.send(req)).await?;
            if ctx.ui.json {
                print_json(&json!({"tenant_id": t, "user_id": user_id, "removed": true}));
            } else {
                ctx.ui.done(&format!(
                    "Removed {user_id} from tenant {t}; their sessions there ended"
                ));
            }
        }
        MembersCommand::ResetPassword { user_id, email } => {
            let path = match keys_tenant(ctx).await? {
                Some(t) => {
                    let Some(user) = user_id else {
                        return Err(CliError::usage(
                            "--email finds any account: an operator key without --tenant; give the member's user id",
                        ));
                    };
                    format!(
                        "/v1/tenants/{}/members/{}/password-reset",
                        enc(&t),
                        enc(&user)
                    )
                }
                None => {
                    let user = match (user_id, email) {
                        (Some(u), _) => u,
                        (None, Some(e)) => {
                            let p = format!("/v1/users{}", query(&[("email", Some(&e))]));
                            let req = ctx.client.authed(Method::GET, &p)?;
                            let acct = ctx.ui.spin("finding", ctx.client.json(req)).await?;
                            s(&acct, "id").to_owned()
                        }
                        (None, None) => {
                            return Err(CliError::usage("give a user id or --email"));
                        }
                    };
                    format!("/v1/users/{}/password-reset", enc(&user))
                }
            };
            let req = ctx.client.authed(Method::POST, &path)?;
            let link = ctx.ui.spin("issuing", ctx.client.json(req)).await?;
            if ctx.ui.json {
                print_json(&link);
                return Ok(());
            }
            ctx.ui.done(&format!(
                "Password reset link for {}: pass it on to them",
                s(&link, "user_id")
            ));
            print_link(ctx, "link", &link);
        }
    }
    Ok(())
}

/// `invitations ...`.
pub(crate) async fn invitations(ctx: &mut Ctx, c: InvitationsCommand) -> Result<(), CliError> {
    let t = tenant(ctx).await?;
    let base = format!("/v1/tenants/{}/invitations", enc(&t));
    match c {
        InvitationsCommand::List => {
            let req = ctx.client.authed(Method::GET, &base)?;
            let list = ctx
                .ui
                .spin("listing invitations", ctx.client.json(req))
                .await?;
            if ctx.ui.json {
                print_json(&list);
                return Ok(());
            }
            let mut table =
                ctx.ui
                    .table(&["ID", "EMAIL", "ROLE", "STATUS", "INVITED BY", "EXPIRES"]);
            for i in list.as_array().into_iter().flatten() {
                table.add_row(vec![
                    s(i, "id").to_owned(),
                    s(i, "email").to_owned(),
                    s(i, "role").to_owned(),
                    s(i, "status").to_owned(),
                    s(i, "invited_by").to_owned(),
                    s(i, "expires_at").to_owned(),
                ]);
            }
            ctx.ui.print_table(&table);
        }
        InvitationsCommand::Create { email, role } => {
            let req = ctx
                .client
                .authed(Method::POST, &base)?
                .json(&json!({"email": email, "role": role.as_str()}));
            let inv = ctx.ui.spin("inviting", ctx.client.json(req)).await?;
            if ctx.ui.json {
                print_json(&inv);
                return Ok(());
            }
            ctx.ui.done(&format!(
                "Invited {} as {} to tenant {t}: pass the link on to them",
                s(&inv, "email"),
                ctx.ui.bold(s(&inv, "role"))
            ));
            print_link(ctx, "link", &inv);
            ctx.ui.print_fields(&[("id", s(&inv, "id").to_owned())]);
        }
        InvitationsCommand::Revoke { id } => {
            let req = ctx
                .client
                .authed(Method::DELETE, &format!("{base}/{}", enc(&id)))?;
            ctx.ui.spin("revoking", ctx.client.send(req)).await?;
            if ctx.ui.json {
                print_json(&json!({"tenant_id": t, "id": id, "revoked": true}));
            } else {
                ctx.ui
                    .done(&format!("Revoked invitation {id} of tenant {t}"));
            }
        }
    }
    Ok(())
}

/// `publisher ...`.
pub(crate) async fn publisher(ctx: &mut Ctx, c: PublisherCommand) -> Result<(), CliError> {
    match c {
        PublisherCommand::VerifyDomain { domain, check } => {
            let t = tenant(ctx).await?;
            let base = format!("/v1/tenants/{}/publisher/domain-proofs", enc(&t));
            if check {
                let req = ctx
                    .client
                    .authed(Method::POST, &format!("{base}/verify"))?
                    .json(&json!({"domain": domain}));
                let tenant = ctx
                    .ui
                    .spin("fetching the proof", ctx.client.json(req))
                    .await?;
                if ctx.ui.json {
                    print_json(&tenant);
                    return Ok(());
                }
                let v = &tenant["publisher"]["verification"];
                ctx.ui.print_fields(&[
                    (
                        "publisher",
                        s(&tenant["publisher"], "display_name").to_owned(),
                    ),
                    ("verified", ctx.ui.green("yes")),
                    ("method", s(v, "method").to_owned()),
                    ("domain", s(v, "domain").to_owned()),
                    ("verified at", s(v, "verified_at").to_owned()),
                ]);
            } else {
                let req = ctx
                    .client
                    .authed(Method::POST, &base)?
                    .json(&json!({"domain": domain}));
                let c = ctx
                    .ui
                    .spin("starting a domain proof", ctx.client.json(req))
                    .await?;
                if ctx.ui.json {
                    print_json(&c);
                    return Ok(());
                }
                ctx.ui.print_fields(&[
                    ("domain", s(&c, "domain").to_owned()),
                    ("serve at", s(&c, "url").to_owned()),
                    ("token", s(&c, "token").to_owned()),
                    ("expires", s(&c, "expires_at").to_owned()),
                ]);
                println!(
                    "\nPut the token on a line of its own in that file, then run:\n  sentryagent publisher verify-domain {} --check",
                    s(&c, "domain")
                );
            }
        }
    }
    Ok(())
}
