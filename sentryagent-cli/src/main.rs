//! The `sentryagent` command: administration of a SentryAgent server
//! (tenants, API keys, agents and their lifecycle, audit) over its HTTP API,
//! and shell completion. The commands arrive with the HTTP adapter; for now
//! it prints its version.

fn main() {
    println!("sentryagent {}", env!("CARGO_PKG_VERSION"));
}
