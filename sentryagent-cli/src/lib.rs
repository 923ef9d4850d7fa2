#![doc = include_str!("../README.md")]
//!
//! The library holds the command; the `sentryagent` binary calls [`main`].

mod cli;
mod client;
mod commands;
mod config;
mod error;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::client::Client;
use crate::config::{Config, Settings};
use crate::error::{CliError, Exit};
use crate::output::Ui;

/// What every command gets.
pub(crate) struct Ctx {
    /// Parsed global flags.
    pub(crate) global: cli::GlobalArgs,
    /// The config file's content.
    pub(crate) config: Config,
    /// Flags, environment and profile combined.
    pub(crate) settings: Settings,
    /// Output settings.
    pub(crate) ui: Ui,
    /// The HTTP client of the server in effect.
    pub(crate) client: Client,
}

/// Runs the `sentryagent` command with the process's arguments and
/// environment; returns its exit code (see the table above).
pub fn main() -> ExitCode {
    // reqwest is built without a TLS provider of its own: ring, no C.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            // clap: 0 for --help/--version, 2 for usage errors.
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    let ui = Ui::detect(cli.global.json);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{} cannot start: {e}", ui.error_prefix());
            return ExitCode::from(Exit::Other as u8);
        }
    };
    match runtime.block_on(run(cli, ui)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{} {}", ui.error_prefix(), e.message);
            ExitCode::from(e.exit as u8)
        }
    }
}

async fn run(cli: Cli, ui: Ui) -> Result<(), CliError> {
    if let Command::Completion { shell } = cli.command {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "sentryagent", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::ManPages { out } = &cli.command {
        return man_pages(out);
    }
    let config = Config::load()?;
    let settings = config::resolve(&cli.global, &config);
    let client = Client::new(&settings.url, settings.api_key.clone(), cli.global.verbose)?;
    let mut ctx = Ctx {
        global: cli.global,
        config,
        settings,
        ui,
        client,
    };
    commands::dispatch(&mut ctx, cli.command).await
}

/// Writes `sentryagent.1` and `sentryagent-<command>[-<sub>].1` into `dir`.
fn man_pages(dir: &std::path::Path) -> Result<(), CliError> {
    fn write(dir: &std::path::Path, cmd: &clap::Command) -> Result<usize, CliError> {
        // After `build`, a subcommand's display name is `parent-sub`.
        let name = cmd.get_display_name().unwrap_or(cmd.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut page)
            .map_err(|e| CliError::other(format!("cannot render the man page of {name}: {e}")))?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page)
            .map_err(|e| CliError::other(format!("cannot write {}: {e}", path.display())))?;
        let mut n = 1;
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            n += write(dir, sub)?;
        }
        Ok(n)
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::other(format!("cannot create {}: {e}", dir.display())))?;
    let mut cmd = Cli::command();
    cmd.build();
    let n = write(dir, &cmd)?;
    println!("Wrote {n} man pages to {}", dir.display());
    Ok(())
}
