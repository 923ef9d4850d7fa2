//! The `sentryagent` binary; the command lives in the `sentryagent_cli`
//! library.

fn main() -> std::process::ExitCode {
    sentryagent_cli::main()
}
