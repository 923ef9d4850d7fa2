//! One module per group of commands; [`dispatch`] runs the parsed one.

mod admin;
mod agents;
mod audit;
mod people;
mod session;
mod token;

use crate::Ctx;
use crate::cli::Command;
use crate::error::CliError;

pub(crate) use session::identify;

/// Runs `command`.
pub(crate) async fn dispatch(ctx: &mut Ctx, command: Command) -> Result<(), CliError> {
    match command {
        Command::Login(args) => session::login(ctx, args).await,
        Command::Logout => session::logout(ctx),
        Command::Whoami => session::whoami(ctx).await,
        Command::Config(c) => session::config(ctx, c),
        Command::RegisterAgent(args) => agents::register(ctx, args).await,
        Command::ListAgents(args) => agents::list(ctx, args).await,
        Command::GetAgent { id } => agents::get(ctx, &id).await,
        Command::UpdateAgent(args) => agents::update(ctx, args).await,
        Command::SetState { id, state } => agents::set_state(ctx, &id, state).await,
        Command::RevokeCredentials { id } => agents::revoke(ctx, &id).await,
        Command::RotateCredentials(args) => agents::rotate(ctx, args).await,
        Command::IssueToken(args) => token::issue(ctx, args).await,
        Command::TailAuditLog(args) => audit::tail(ctx, args).await,
        Command::VerifyAudit => audit::verify(ctx).await,
        Command::Usage => admin::usage(ctx).await,
        Command::Marketplace(c) => admin::marketplace(ctx, c).await,
        Command::Tenants(c) => admin::tenants(ctx, c).await,
        Command::ApiKeys(c) => admin::api_keys(ctx, c).await,
        Command::Members(c) => people::members(ctx, c).await,
        Command::Invitations(c) => people::invitations(ctx, c).await,
        Command::Publisher(c) => people::publisher(ctx, c).await,
        // Handled before the config is read.
        Command::Completion { .. } | Command::ManPages { .. } => Ok(()),
    }
}

/// `?tenant_id=` for operator keys, when a tenant is set.
pub(crate) fn tenant_query(ctx: &Ctx) -> String {
    crate::client::query(&[("tenant_id", ctx.settings.tenant.as_deref())])
}
