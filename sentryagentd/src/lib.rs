//! The SentryAgent server, `sentryagentd`: the identity provider for AI
//! agents over HTTP.
//!
//! ```sh
//! cargo install --locked --path sentryagentd
//! sentryagentd --help
//! ```
//!
//! With no setting it listens on `127.0.0.1:8080` and keeps everything with
//! sled in `./sentryagent-data`; the first start prints a one-time operator
//! key on stdout. Every flag is also an environment variable (`--help` lists
//! them with their defaults; the project README has the table).
//! `--check-config` validates the settings and reaches every backend
//! without serving; `--healthcheck` asks a running server whether it is
//! ready (a container's `HEALTHCHECK`).
//!
//! SIGTERM or Ctrl-C: `/health/ready` answers 503 at once, the listener
//! closes, live audit streams end, requests in flight finish, buffered usage
//! is flushed, and the process exits, within `--shutdown-timeout` even with
//! clients still attached.
//!
//! [`main`] is the whole program, so that a host (or the repository's
//! `examples/server.rs`) runs the same server with one call.

mod check;
pub mod config;
mod config_file;
mod logging;
mod probe;
mod serve;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory as _;
use sentryagent_billing::MeterReporter;
use sentryagent_core::{
    AdminScope, BillingProvider, Caller, Clock, Idp, MonotonicClock, SystemClock,
};
use sentryagent_http::console::ConsoleConfig;
use sentryagent_http::{Drain, RouterConfig};
use sentryagent_storage::{BackendUrls, open};

pub use config::{Args, LogFormat};
pub use logging::colour_allowed;

/// Any error of the server's start.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The command line of the server (flags, environment variables, help).
pub fn command() -> clap::Command {
    Args::command()
}

/// Runs the server with the process's flags and environment; returns the
/// exit code (0: clean shutdown or configuration OK).
pub fn main() -> ExitCode {
    let args = match config_file::parse_args(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(config_file::ParseError::Clap(e)) => e.exit(),
        Err(config_file::ParseError::File(line)) => {
            eprintln!("sentryagentd: {line}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sentryagentd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

/// Runs the server with these settings until SIGTERM or SIGINT.
pub async fn run(args: Args) -> ExitCode {
    if args.healthcheck {
        return if probe::ready(args.listen).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if args.check_config {
        return if check::run(&args).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if let Err(e) = logging::init(args.log_format, &args.log_filter) {
        eprintln!("sentryagentd: {e}");
        return ExitCode::FAILURE;
    }
    match serve_until_signal(args).await {
        Ok(serve::Shutdown::Clean) => ExitCode::SUCCESS,
        Ok(serve::Shutdown::TimedOut) => {
            tracing::warn!("shutdown timeout reached with connections still open");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("sentryagentd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The scheme of a backend URL, for logs (URLs may hold passwords).
fn scheme(url: &str) -> &str {
    url.split_once("://").map_or("?", |(s, _)| s)
}

async fn serve_until_signal(args: Args) -> Result<serve::Shutdown, BoxError> {
    let issuer = args.issuer();
    config::check_issuer(&issuer)?;
    if let Some(k) = &args.bootstrap_key {
        config::check_bootstrap_key(k)?;
    }
    if let Some(t) = &args.metrics_token {
        config::check_metrics_token(t)?;
    }
    let tiers = args.tier_table()?;
    let stripe = args.stripe()?;
    let meter_names = stripe.as_ref().map(|c| c.meter_event_names.clone());
    let billing: Arc<dyn BillingProvider> = sentryagent_billing::provider_from_config(stripe)?;

    // Time never goes back for this process: a backward step of the system
    // clock neither revives expired tokens nor refills rate limits.
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new(SystemClock));
    let urls = BackendUrls {
        store: args.store.clone(),
        limiter: args.limiter.clone(),
        meter: args.meter.clone(),
    };
    let backends = open(&urls, clock.clone()).await?;
    let issuer_keys = sentryagent_http::JwksFetcher::new(args.jwks_fetcher(), clock.clone())?;
    // Publisher domain proofs are fetched under the same address policy
    // (and the same development flag) as issuer discovery.
    let domain_proofs = sentryagent_http::HttpDomainProofFetcher::new(
        sentryagent_http::DomainProofFetcherConfig::default()
            .allow_http_loopback(args.federation_allow_http_loopback),
    )?;
    if args.federation_allow_http_loopback {
        tracing::warn!(
            "token exchange may fetch plain-http loopback issuers: for development and tests only"
        );
    }
    let idp = backends
        .apply(Idp::builder(&issuer))
        .configure(|c| {
            c.tiers = tiers;
            c.people.signup = args.signup_mode();
            // The console is at the root: its pages open the links.
            c.people.invitation_url = format!("{issuer}/invitations/accept");
            c.people.password_reset_url = format!("{issuer}/password-reset");
        })
        .clock(clock)
        .billing(billing)
        .issuer_keys(Arc::new(issuer_keys))
        .domain_proofs(Arc::new(domain_proofs))
        .build()
        .await?;
    tracing::info!(
        %issuer,
        store = scheme(&urls.store),
        limiter = idp.limiter().name(),
        meter = idp.meter().name(),
        billing = idp.billing().name(),
        signup = idp.config().people.signup.as_str(),
        "identity provider ready"
    );
    bootstrap(&idp, args.bootstrap_key.as_deref()).await?;

    let maintenance = {
        let idp = idp.clone();
        let every = Duration::from_secs(args.maintenance_secs.max(1));
        let reporter = meter_names.map(|n| MeterReporter::new(idp.clone(), n));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = idp.maintenance().await {
                    tracing::warn!(error = %e, "maintenance failed; retrying next tick");
                }
                if let Some(r) = &reporter
                    && let Err(e) = r.run().await
                {
                    tracing::warn!(error = %e, "usage report to billing failed; retrying next tick");
                }
            }
        })
    };

    let drain = Drain::new();
    // The store and meter are probed by the router; a Redis limiter is
    // probed here (ping, failure policy, failure counters).
    let mut config = RouterConfig::default()
        .drain(drain.clone())
        .body_limit(args.body_limit)
        .request_timeout(Duration::from_secs(args.request_timeout.max(1)))
        .cors_origins(args.cors_origins.iter().cloned())
        .audit_streams(args.max_audit_streams_per_tenant, args.max_audit_streams);
    if let Some(t) = &args.metrics_token {
        config = config.metrics_token(t.clone());
    }
    if let Some(limiter) = backends.limiter_health.clone() {
        config = config.health_probe(move || {
            let limiter = limiter.clone();
            async move { vec![limiter.health().await] }
        });
    }
    // The web console at the root, behind the API's layers; the API keeps
    // its paths (none collide).
    let config = config.console(
        ConsoleConfig::default()
            .refresh_interval(Duration::from_secs(args.console_usage_refresh_seconds)),
    );
    let app: axum::Router = sentryagent_http::router_with(idp.clone(), config);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "listening");
    let limits = serve::Limits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
        max_header_bytes: args.max_header_bytes as usize,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
    };
    let outcome = serve::serve(listener, app, drain, limits, serve::signal()).await;

    maintenance.abort();
    match idp.flush_usage().await {
        Ok(n) => tracing::info!(increments = n, "usage flushed; bye"),
        Err(e) => tracing::error!(error = %e, "usage flush failed at shutdown"),
    }
    Ok(outcome)
}

/// Makes the bootstrap key an operator key, or on first start creates one
/// and prints it once (on stdout, never in the logs).
async fn bootstrap(idp: &Idp, key: Option<&str>) -> Result<(), BoxError> {
    if let Some(key) = key {
        let k = idp.ensure_operator_key(key).await?;
        tracing::info!(prefix = %k.prefix, "bootstrap operator key in place");
        return Ok(());
    }
    let system = Caller::system();
    let existing = idp.list_admin_keys(&system, None).await?;
    if existing.iter().any(|k| k.revoked_at.is_none()) {
        return Ok(());
    }
    let (k, secret) = idp
        .create_admin_key(
            &system,
            None,
            "initial operator key",
            Some(vec![AdminScope::Admin]),
        )
        .await?;
    tracing::info!(prefix = %k.prefix, "created the initial operator key");
    println!(
        "\nInitial operator key (shown once; store it now):\n\n    {secret}\n\n\
         Use it as `Authorization: Bearer <key>` on the management API.\n"
    );
    Ok(())
}
