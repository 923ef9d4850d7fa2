//! The standalone SentryAgent server.
//!
//! ```sh
//! cargo run --release --example server
//! ```
//!
//! listens on 127.0.0.1:8080 with sled storage in `./sentryagent-data`.
//! Configuration by environment or flags (`--help`):
//!
//! | variable | flag | default |
//! |---|---|---|
//! | `SENTRYAGENT_LISTEN` | `--listen` | `127.0.0.1:8080` |
//! | `SENTRYAGENT_STORE` | `--store` | `sled://./sentryagent-data` |
//! | `SENTRYAGENT_LIMITER` | `--limiter` | the store's URL |
//! | `SENTRYAGENT_METER` | `--meter` | the store's URL |
//! | `SENTRYAGENT_ISSUER` | `--issuer` | `http://<listen>` |
//! | `SENTRYAGENT_BOOTSTRAP_KEY` | `--bootstrap-key` | none |
//! | `SENTRYAGENT_MAINTENANCE_SECS` | `--maintenance-secs` | `5` |
//! | `RUST_LOG` | | `info` |
//!
//! `SENTRYAGENT_BOOTSTRAP_KEY` (`sa_ak_` and at least 32 more characters of
//! `A-Z a-z 0-9 - _`) becomes an operator key at start, idempotently. Without
//! it, the first start (no operator key yet) creates one and prints it once
//! to stdout.
//!
//! Billing: with `SENTRYAGENT_STRIPE_SECRET_KEY` set (and the other Stripe
//! settings: `SENTRYAGENT_STRIPE_WEBHOOK_SECRET`, `SENTRYAGENT_STRIPE_PRICE_PRO`,
//! `SENTRYAGENT_STRIPE_PRICE_ENTERPRISE`, `SENTRYAGENT_STRIPE_SUCCESS_URL`,
//! `SENTRYAGENT_STRIPE_CANCEL_URL`, optionally `SENTRYAGENT_STRIPE_API_BASE`;
//! see the `sentryagent-billing` crate docs) the server bills through Stripe
//! and reports usage of paid tenants as meter events every maintenance tick.
//! Without them billing is off (`NoBilling`): the upgrade routes answer 501
//! "billing is not configured on this deployment".
//!
//! SIGTERM or Ctrl-C stops accepting connections, lets requests in flight
//! finish, flushes buffered usage and exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sentryagent::storage::{BackendUrls, open};
use sentryagent::{AdminScope, BillingProvider, Caller, Clock, Idp, SystemClock};

/// The server's allocator. Under load the glibc allocator contends on its
/// arena locks between the runtime's worker threads (a response allocated
/// on one worker is often freed on another); mimalloc's thread-local free
/// lists do not (see `docs/load-test.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The SentryAgent identity provider for AI agents, over HTTP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SENTRYAGENT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Store URL: `sled://<dir>`, `postgres://...` or `memory://`.
    #[arg(
        long,
        env = "SENTRYAGENT_STORE",
        default_value = "sled://./sentryagent-data",
        hide_env_values = true
    )]
    store: String,
    /// Rate limiter URL (default: the store's).
    #[arg(long, env = "SENTRYAGENT_LIMITER", hide_env_values = true)]
    limiter: Option<String>,
    /// Usage meter URL (default: the store's).
    #[arg(long, env = "SENTRYAGENT_METER", hide_env_values = true)]
    meter: Option<String>,
    /// Public base URL (token `iss`; endpoint URLs derive from it).
    #[arg(long, env = "SENTRYAGENT_ISSUER")]
    issuer: Option<String>,
    /// Makes this value an operator key at start (idempotent).
    #[arg(long, env = "SENTRYAGENT_BOOTSTRAP_KEY", hide_env_values = true)]
    bootstrap_key: Option<String>,
    /// Seconds between maintenance runs (usage flush, key rotation, purges).
    #[arg(long, env = "SENTRYAGENT_MAINTENANCE_SECS", default_value_t = 5)]
    maintenance_secs: u64,
}

/// The billing provider of this deployment. Billing is off here; the billing
/// crate's provider (configured from `SENTRYAGENT_STRIPE_*`) replaces it.
/// The billing provider and, with Stripe, its meter-event names.
type Billing = (
    Arc<dyn BillingProvider>,
    Option<sentryagent::billing_providers::MeterEventNames>,
);

/// Stripe when the environment configures it, otherwise billing off.
fn billing_provider() -> Result<Billing, Box<dyn std::error::Error>> {
    let config = sentryagent::billing_providers::StripeConfig::from_env()?;
    let names = config.as_ref().map(|c| c.meter_event_names.clone());
    let provider = sentryagent::billing_providers::provider_from_config(config)?;
    Ok((provider, names))
}

/// The scheme of a backend URL, for logs (URLs may hold passwords).
fn scheme(url: &str) -> &str {
    url.split_once("://").map_or("?", |(s, _)| s)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sentryagent: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let issuer = args
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let urls = BackendUrls {
        store: args.store.clone(),
        limiter: args.limiter.clone(),
        meter: args.meter.clone(),
    };
    let backends = open(&urls, clock.clone()).await?;
    let (billing, meter_names) = billing_provider()?;
    let idp = backends
        .apply(Idp::builder(&issuer))
        .clock(clock)
        .billing(billing)
        .build()
        .await?;
    tracing::info!(
        %issuer,
        store = scheme(&urls.store),
        limiter = idp.limiter().name(),
        meter = idp.meter().name(),
        billing = idp.billing().name(),
        "identity provider ready"
    );

    bootstrap(&idp, args.bootstrap_key.as_deref()).await?;

    let maintenance = {
        let idp = idp.clone();
        let every = Duration::from_secs(args.maintenance_secs.max(1));
        let reporter =
            meter_names.map(|n| sentryagent::billing_providers::MeterReporter::new(idp.clone(), n));
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

    // The store and meter are probed by the router; a Redis limiter is
    // probed here (ping, failure policy, failure counters).
    let mut config = sentryagent::http::RouterConfig::default();
    if let Some(limiter) = backends.limiter_health.clone() {
        config = config.health_probe(move || {
            let limiter = limiter.clone();
            async move { vec![limiter.health().await] }
        });
    }
    let app = axum::Router::new().merge(sentryagent::http::router_with(idp.clone(), config));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;

    maintenance.abort();
    match idp.flush_usage().await {
        Ok(n) => tracing::info!(increments = n, "usage flushed; bye"),
        Err(e) => tracing::error!(error = %e, "usage flush failed at shutdown"),
    }
    Ok(())
}

/// Makes the bootstrap key an operator key, or on first start creates one
/// and prints it once.
async fn bootstrap(idp: &Idp, key: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
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

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
