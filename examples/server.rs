//! The standalone SentryAgent server, as an example:
//!
//! ```sh
//! cargo run --release --example server
//! ```
//!
//! listens on 127.0.0.1:8080 with sled storage in `./sentryagent-data`. It
//! is the `sentryagentd` binary (`cargo install --locked --path
//! sentryagentd`): every flag and environment variable is documented by
//! `--help` and in the README.

/// The server's allocator (the same as `sentryagentd`'s; see
/// `docs/load-test.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sentryagentd::main()
}
