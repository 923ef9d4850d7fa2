//! `--check-config`: every setting and every backend, checked without
//! serving.

use std::sync::Arc;

use sentryagent_core::HealthStatus;
use sentryagent_core::{Clock, SystemClock};
use sentryagent_storage::{BackendUrls, open};

use crate::config::{Args, check_bootstrap_key, check_issuer, check_metrics_token};

/// The outcome of one check.
struct Check {
    what: &'static str,
    result: Result<String, String>,
}

/// Runs every check, prints one line each, and returns whether all passed.
pub(crate) async fn run(args: &Args) -> bool {
    let mut checks = Vec::new();
    if let Some(p) = &args.config {
        // Read and merged before the checks: any problem stopped the start.
        checks.push(Check {
            what: "config file",
            result: Ok(format!("{} read", p.display())),
        });
    }
    let issuer = args.issuer();
    checks.push(Check {
        what: "issuer",
        result: check_issuer(&issuer).map(|()| issuer.clone()),
    });
    checks.push(Check {
        what: "sign-up",
        result: Ok(args.signup_mode().as_str().to_owned()),
    });
    if let Some(k) = &args.bootstrap_key {
        checks.push(Check {
            what: "bootstrap key",
            result: check_bootstrap_key(k).map(|()| "well formed".into()),
        });
    }
    if let Some(t) = &args.metrics_token {
        checks.push(Check {
            what: "metrics token",
            result: check_metrics_token(t).map(|()| "well formed; /metrics requires it".into()),
        });
    }
    checks.push(Check {
        what: "tiers",
        result: args.tier_table().map(|_| match &args.tiers {
            Some(p) => format!("{} is valid", p.display()),
            None => "built-in table".into(),
        }),
    });
    checks.push(Check {
        what: "billing",
        result: args.stripe().map(|c| match c {
            Some(_) => "Stripe settings are complete".into(),
            None => "off (no Stripe secret key)".into(),
        }),
    });
    let urls = BackendUrls {
        store: args.store.clone(),
        limiter: args.limiter.clone(),
        meter: args.meter.clone(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match open(&urls, clock).await {
        Err(e) => checks.push(Check {
            what: "backends",
            result: Err(e.to_string()),
        }),
        Ok(backends) => {
            for h in backends.health().await {
                let result = if h.status == HealthStatus::Down {
                    Err(h.error.unwrap_or_else(|| "down".into()))
                } else {
                    Ok(format!(
                        "{} {}{}",
                        h.backend,
                        format!("{:?}", h.status).to_lowercase(),
                        h.latency_us
                            .map(|us| format!(" ({us} µs)"))
                            .unwrap_or_default()
                    ))
                };
                checks.push(Check {
                    what: "backend",
                    result,
                });
            }
        }
    }
    let mut ok = true;
    for c in &checks {
        match &c.result {
            Ok(s) => println!("ok     {}: {s}", c.what),
            Err(e) => {
                ok = false;
                println!("ERROR  {}: {e}", c.what);
            }
        }
    }
    if ok {
        println!("configuration OK");
    } else {
        let n = checks.iter().filter(|c| c.result.is_err()).count();
        println!("configuration has {n} problem(s)");
    }
    ok
}
