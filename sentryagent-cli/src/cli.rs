//! The command line: every command, flag and environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

/// Administration of a SentryAgent server: agents, tokens, tenants, API keys
/// and the audit trail.
#[derive(Debug, Parser)]
#[command(
    name = "sentryagent",
    version,
    about,
    after_help = "Examples:\n  sentryagent login --url https://id.example.com\n  sentryagent register-agent --name billing-bot --capability invoices --save\n  TOKEN=$(sentryagent issue-token --agent <agent-id>)\n  sentryagent tail-audit-log --follow\n\nExit codes: 0 ok, 1 other error, 2 usage error, 3 not authenticated or not allowed,\n4 not found, 5 limit reached, 6 server unreachable or timed out."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// Server URL (default: the profile's, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "SENTRYAGENT_URL", value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Admin API key (prefer `login` or SENTRYAGENT_API_KEY: a flag value is
    /// visible to other local users).
    #[arg(
        long,
        global = true,
        env = "SENTRYAGENT_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub(crate) api_key: Option<String>,
    /// Profile of the config file to use (default: the config's default).
    #[arg(long, global = true, env = "SENTRYAGENT_PROFILE", value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// Tenant an operator key acts on (default: the profile's tenant).
    #[arg(long, global = true, env = "SENTRYAGENT_TENANT", value_name = "ID")]
    pub(crate) tenant: Option<String>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Adds the request id to error messages.
    #[arg(long, short = 'v', global = true)]
    pub(crate) verbose: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Checks an admin key against the server and saves it in a profile.
    #[command(
        after_help = "Examples:\n  sentryagent login --url https://id.example.com\n  echo \"$KEY\" | sentryagent login --profile staging --api-key-stdin"
    )]
    Login(LoginArgs),
    /// Removes the admin key from the profile.
    #[command(after_help = "Example:\n  sentryagent logout --profile staging")]
    Logout,
    /// Says which key is in use: operator or tenant, which tenant, scopes.
    #[command(after_help = "Example:\n  sentryagent whoami --json")]
    Whoami,
    /// Reads and changes the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Registers an agent; prints its id, client id, DID and secret once.
    #[command(
        after_help = "Example:\n  sentryagent register-agent --name billing-bot --capability invoices --scope invoices:read --save"
    )]
    RegisterAgent(RegisterArgs),
    /// Lists agents (all pages unless --limit).
    #[command(after_help = "Example:\n  sentryagent list-agents --state active --limit 20")]
    ListAgents(ListAgentsArgs),
    /// Shows one agent.
    #[command(after_help = "Example:\n  sentryagent get-agent 0190c3e4-...")]
    GetAgent {
        /// Agent id.
        id: String,
    },
    /// Changes an agent's description fields.
    #[command(
        after_help = "Example:\n  sentryagent update-agent <id> --description 'Pays invoices' --capability invoices --capability refunds"
    )]
    UpdateAgent(UpdateAgentArgs),
    /// Moves an agent through its lifecycle.
    #[command(after_help = "Example:\n  sentryagent set-state <id> active")]
    SetState {
        /// Agent id.
        id: String,
        /// Target state.
        state: State,
    },
    /// Revokes every client secret of an agent at once.
    #[command(after_help = "Example:\n  sentryagent revoke-credentials <id>")]
    RevokeCredentials {
        /// Agent id.
        id: String,
    },
    /// Gets an access token by client credentials; prints the bare token.
    #[command(
        after_help = "Examples:\n  TOKEN=$(sentryagent issue-token --agent <id> --scope invoices:read)\n  sentryagent issue-token --agent <id> --auth private-key-jwt --decode\n  printf %s \"$SECRET\" | sentryagent issue-token --client-id <id> --client-secret-stdin"
    )]
    IssueToken(IssueTokenArgs),
    /// Issues a new client secret; prints it once.
    #[command(
        after_help = "Examples:\n  sentryagent rotate-credentials <id> --save\n  sentryagent rotate-credentials <id> --grace 1h"
    )]
    RotateCredentials(RotateArgs),
    /// Shows the latest audit events, or follows the live stream.
    #[command(
        after_help = "Examples:\n  sentryagent tail-audit-log --since 1h --action agent.registered\n  sentryagent tail-audit-log --follow --json | jq .action"
    )]
    TailAuditLog(TailArgs),
    /// Shows the tier, each limit with its use, and the 80% warning.
    #[command(after_help = "Example:\n  sentryagent usage")]
    Usage,
    /// The public marketplace.
    #[command(subcommand)]
    Marketplace(MarketplaceCommand),
    /// Tenants (operator key).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Admin API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// A tenant's members: list, change a role, remove, issue a password
    /// reset link.
    #[command(subcommand)]
    Members(MembersCommand),
    /// A tenant's invitations: invite, list, revoke.
    #[command(subcommand)]
    Invitations(InvitationsCommand),
    /// A tenant's publisher profile: prove control of its domain.
    #[command(subcommand)]
    Publisher(PublisherCommand),
    /// Verifies the audit hash chain.
    #[command(after_help = "Example:\n  sentryagent verify-audit --tenant <tenant-id>")]
    VerifyAudit,
    /// Prints a shell completion script.
    #[command(
        after_help = "Examples:\n  sentryagent completion bash > ~/.local/share/bash-completion/completions/sentryagent\n  sentryagent completion zsh > \"${fpath[1]}/_sentryagent\"\n  sentryagent completion fish > ~/.config/fish/completions/sentryagent.fish"
    )]
    Completion {
        /// The shell.
        shell: Shell,
    },
    /// Writes man pages (sentryagent.1 and one per command) into a directory.
    #[command(
        after_help = "Example:\n  sentryagent man-pages --out ~/.local/share/man/man1 && man sentryagent-issue-token"
    )]
    ManPages {
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Reads the key from the first line of stdin instead of prompting.
    #[arg(long)]
    pub(crate) api_key_stdin: bool,
}

/// `config`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Lists the profiles (keys masked).
    #[command(after_help = "Example:\n  sentryagent config list")]
    List,
    /// Prints one setting of the profile: url, api_key (masked), tenant, or default_profile.
    #[command(after_help = "Example:\n  sentryagent config get url --profile staging")]
    Get {
        /// url, api_key, tenant or default_profile.
        key: String,
    },
    /// Changes one setting of the profile: url or tenant (keys go through `login`).
    #[command(
        after_help = "Example:\n  sentryagent config set url https://id.example.com --profile prod"
    )]
    Set {
        /// url or tenant.
        key: String,
        /// The value (empty to clear the tenant).
        value: String,
    },
    /// Makes a profile the default.
    #[command(after_help = "Example:\n  sentryagent config use staging")]
    Use {
        /// Profile name.
        name: String,
    },
}

/// Lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum State {
    /// Registered, not in use.
    Draft,
    /// Deployed.
    Deployed,
    /// Listed in the marketplace.
    Listed,
    /// Active.
    Active,
    /// Paused: no tokens.
    Paused,
    /// Retired for good.
    Retired,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Deployed => "deployed",
            State::Listed => "listed",
            State::Active => "active",
            State::Paused => "paused",
            State::Retired => "retired",
        }
    }
}

/// Marketplace visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Visibility {
    /// Everyone, through the marketplace.
    Public,
    /// Only its tenant.
    Private,
}

impl Visibility {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

/// `register-agent`.
#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// Name.
    #[arg(long)]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) fields: AgentFields,
    /// Initial lifecycle state.
    #[arg(long)]
    pub(crate) state: Option<State>,
    /// The agent's own key: a `did:key:...` or a file holding a public JWK
    /// (default: the server generates a key pair).
    #[arg(long, value_name = "DID_OR_JWK_FILE")]
    pub(crate) public_key: Option<String>,
    /// Saves the client secret and the private JWK under
    /// ~/.sentryagent/credentials/AGENT_ID.json (0600).
    #[arg(long)]
    pub(crate) save: bool,
}

/// The descriptive fields of an agent, given at registration or changed by
/// `update-agent` (where a repeatable one replaces the whole list).
#[derive(Debug, Args)]
pub(crate) struct AgentFields {
    /// Description.
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// Version string.
    #[arg(long = "agent-version", value_name = "VERSION")]
    pub(crate) agent_version: Option<String>,
    /// A capability (repeatable).
    #[arg(long = "capability", value_name = "C")]
    pub(crate) capabilities: Vec<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "T")]
    pub(crate) tags: Vec<String>,
    /// Category.
    #[arg(long)]
    pub(crate) category: Option<String>,
    /// Marketplace visibility.
    #[arg(long)]
    pub(crate) visibility: Option<Visibility>,
    /// A scope the agent may request (repeatable).
    #[arg(long = "scope", value_name = "S")]
    pub(crate) scopes: Vec<String>,
}

/// `list-agents`.
#[derive(Debug, Args)]
pub(crate) struct ListAgentsArgs {
    /// Only agents in this state.
    #[arg(long)]
    pub(crate) state: Option<State>,
    /// Only agents with this capability.
    #[arg(long)]
    pub(crate) capability: Option<String>,
    /// At most this many agents.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
}

/// `update-agent`.
#[derive(Debug, Args)]
pub(crate) struct UpdateAgentArgs {
    /// Agent id.
    pub(crate) id: String,
    /// New name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[command(flatten)]
    pub(crate) fields: AgentFields,
}

/// Client authentication at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuthMethod {
    /// client_secret_basic.
    Secret,
    /// private_key_jwt, signed with the saved private JWK.
    PrivateKeyJwt,
}

/// `issue-token`.
#[derive(Debug, Args)]
pub(crate) struct IssueTokenArgs {
    /// Agent whose saved credentials to use.
    #[arg(
        long,
        conflicts_with = "client_id",
        required_unless_present = "client_id"
    )]
    pub(crate) agent: Option<String>,
    /// Client id; the secret comes from --client-secret-stdin or
    /// SENTRYAGENT_CLIENT_SECRET.
    #[arg(long)]
    pub(crate) client_id: Option<String>,
    /// Reads the client secret from the first line of stdin.
    #[arg(long, requires = "client_id")]
    pub(crate) client_secret_stdin: bool,
    /// With --client-id and --auth private-key-jwt: a file holding the
    /// private JWK.
    #[arg(long, value_name = "FILE", requires = "client_id")]
    pub(crate) private_key: Option<PathBuf>,
    /// Scope to request (repeatable, or space-separated).
    #[arg(long = "scope", value_name = "S")]
    pub(crate) scopes: Vec<String>,
    /// Audience (resource) of the token (repeatable).
    #[arg(long = "audience", value_name = "A")]
    pub(crate) audiences: Vec<String>,
    /// How to authenticate.
    #[arg(long, default_value = "secret")]
    pub(crate) auth: AuthMethod,
    /// Verifies the token against the server's JWKS and prints its claims.
    #[arg(long)]
    pub(crate) decode: bool,
}

/// `rotate-credentials`.
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// Agent id.
    pub(crate) id: String,
    /// How long the old secret stays valid: 30s, 30m, 1h, 7d (at most 30d;
    /// 0s ends it at once). Default: the server's configured grace period.
    #[arg(long, value_name = "DURATION")]
    pub(crate) grace: Option<String>,
    /// Saves the new secret in the agent's credentials file.
    #[arg(long)]
    pub(crate) save: bool,
}

/// `tail-audit-log`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Follows the live stream until Ctrl-C.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Events at or after this time: RFC 3339, or a duration ago (30s, 10m, 2h, 7d).
    #[arg(long, value_name = "TIME_OR_DURATION")]
    pub(crate) since: Option<String>,
    /// Only this action (e.g. agent.registered).
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Only this actor (e.g. admin_key:KEY_ID).
    #[arg(long)]
    pub(crate) actor: Option<String>,
    /// Without --follow: how many of the latest events (default 20). With
    /// --follow: stop after this many events.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
}

/// `publisher`.
#[derive(Debug, Subcommand)]
pub(crate) enum PublisherCommand {
    /// Starts a proof of control of the publisher's domain (prints the token
    /// to serve at https://DOMAIN/.well-known/sentryagent-publisher.txt), or
    /// with --check asks the server to fetch it and verify the publisher.
    #[command(
        name = "verify-domain",
        after_help = "Examples:\n  sentryagent publisher verify-domain acme.example\n  sentryagent publisher verify-domain acme.example --check"
    )]
    VerifyDomain {
        /// The domain: the host of the publisher's website.
        domain: String,
        /// Verify the token served on the domain (after starting a proof).
        #[arg(long)]
        check: bool,
    },
}

/// `marketplace`.
#[derive(Debug, Subcommand)]
pub(crate) enum MarketplaceCommand {
    /// Searches public agents.
    #[command(
        after_help = "Example:\n  sentryagent marketplace search invoice --capability invoices"
    )]
    Search(SearchArgs),
}

/// `marketplace search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// Words, all of which must match.
    pub(crate) query: Option<String>,
    /// Exact capability.
    #[arg(long)]
    pub(crate) capability: Option<String>,
    /// Exact category.
    #[arg(long)]
    pub(crate) category: Option<String>,
    /// Exact tag.
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// Publisher (tenant) id.
    #[arg(long)]
    pub(crate) publisher: Option<String>,
    /// At most this many agents.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
}

/// Tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Tier {
    /// Free.
    Free,
    /// Pro.
    Pro,
    /// Enterprise.
    Enterprise,
}

impl Tier {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }
}

/// Tenant statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TenantStatus {
    /// Active.
    Active,
    /// Suspended.
    Suspended,
}

/// `tenants`.
#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCommand {
    /// Creates a tenant.
    #[command(after_help = "Example:\n  sentryagent tenants create --name Acme --tier pro")]
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Tier (default free).
        #[arg(long)]
        tier: Option<Tier>,
        /// URL slug (default: from the name).
        #[arg(long)]
        slug: Option<String>,
    },
    /// Lists tenants.
    #[command(after_help = "Example:\n  sentryagent tenants list --json | jq '.[].id'")]
    List {
        /// At most this many tenants.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Shows a tenant.
    #[command(after_help = "Example:\n  sentryagent tenants get <tenant-id>")]
    Get {
        /// Tenant id.
        id: String,
    },
    /// Changes a tenant's tier or status.
    #[command(after_help = "Example:\n  sentryagent tenants update <tenant-id> --tier enterprise")]
    Update {
        /// Tenant id.
        id: String,
        /// New tier.
        #[arg(long)]
        tier: Option<Tier>,
        /// New status.
        #[arg(long)]
        status: Option<TenantStatus>,
    },
}

/// A member's role in a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// Everything in the tenant, settings and ownership included.
    Owner,
    /// Keys, members up to admin, billing and agents.
    Admin,
    /// Agents and their credentials; reads usage.
    Developer,
    /// Reads.
    Viewer,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }
}

/// `members`. The tenant is --tenant (an operator, or to be explicit) or
/// the key's own.
#[derive(Debug, Subcommand)]
pub(crate) enum MembersCommand {
    /// Lists the members, their roles and whether they have a second factor.
    #[command(after_help = "Example:\n  sentryagent members list --tenant <tenant-id>")]
    List,
    /// Changes a member's role (the last owner keeps it).
    #[command(
        name = "set-role",
        after_help = "Example:\n  sentryagent members set-role <user-id> admin"
    )]
    SetRole {
        /// The member's user id.
        user_id: String,
        /// The new role.
        role: Role,
    },
    /// Removes a member; their sessions in the tenant end.
    #[command(after_help = "Example:\n  sentryagent members remove <user-id>")]
    Remove {
        /// The member's user id.
        user_id: String,
    },
    /// Issues a password reset link for a member, shown once; an operator
    /// without --tenant issues one for any account (id, or --email).
    #[command(
        name = "reset-password",
        after_help = "Examples:\n  sentryagent members reset-password <user-id>\n  sentryagent members reset-password --email ada@example.com   # operator key"
    )]
    ResetPassword {
        /// The member's user id.
        #[arg(required_unless_present = "email")]
        user_id: Option<String>,
        /// The account's email (operator key, instead of the id).
        #[arg(long, conflicts_with = "user_id")]
        email: Option<String>,
    },
}

/// `invitations`. The tenant is --tenant (an operator, or to be explicit)
/// or the key's own.
#[derive(Debug, Subcommand)]
pub(crate) enum InvitationsCommand {
    /// Lists invitations and their status.
    #[command(after_help = "Example:\n  sentryagent invitations list")]
    List,
    /// Invites an email with a role; prints the link to pass on, once.
    #[command(
        visible_alias = "invite",
        after_help = "Example:\n  sentryagent invitations create --email grace@example.com --role developer"
    )]
    Create {
        /// Who to invite.
        #[arg(long)]
        email: String,
        /// The role to give.
        #[arg(long, value_enum, default_value = "developer")]
        role: Role,
    },
    /// Revokes a pending invitation.
    #[command(after_help = "Example:\n  sentryagent invitations revoke <invitation-id>")]
    Revoke {
        /// Invitation id.
        id: String,
    },
}

/// `api-keys`.
#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeysCommand {
    /// Creates an admin key (shown once). An operator names the tenant with
    /// --tenant (without it: an operator key); a tenant key creates one for
    /// its own tenant.
    #[command(
        after_help = "Example:\n  sentryagent api-keys create --tenant <tenant-id> --name ci --scope agents_read"
    )]
    Create {
        /// Label.
        #[arg(long)]
        name: String,
        /// Scope (repeatable; default: the key's own): admin, agents_read,
        /// agents_write, audit_read, billing_read, billing_write,
        /// members_read, members_write, api_keys_write.
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        /// When the key stops working: an RFC 3339 time, or a duration
        /// from now (30s, 10m, 2h, 90d). Default: never.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// Lists admin keys (without the keys), with their request counts.
    #[command(after_help = "Example:\n  sentryagent api-keys list --tenant <tenant-id>")]
    List,
    /// Revokes an admin key: a tenant's (--tenant, or a tenant key's own),
    /// or, for an operator without --tenant, an operator key.
    #[command(
        after_help = "Examples:\n  sentryagent api-keys revoke <key-id> --tenant <tenant-id>\n  sentryagent api-keys revoke <operator-key-id>"
    )]
    Revoke {
        /// Key id.
        id: String,
        /// Why (kept with the key and shown in listings).
        #[arg(long)]
        reason: Option<String>,
    },
}
