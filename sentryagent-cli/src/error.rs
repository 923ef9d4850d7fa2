//! Errors of the command, each with its documented exit code.

use std::fmt;

/// Exit codes (documented in the README and `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 1: any other error.
    Other = 1,
    /// 2: bad usage.
    Usage = 2,
    /// 3: not authenticated or not allowed (401/403).
    Auth = 3,
    /// 4: not found (404).
    NotFound = 4,
    /// 5: a limit is reached (402/429).
    Limit = 5,
    /// 6: the server is unreachable or timed out.
    Unreachable = 6,
}

/// One line for stderr and an exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
        }
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        CliError::new(Exit::Other, message)
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::new(Exit::Usage, message)
    }

    pub(crate) fn auth(message: impl Into<String>) -> Self {
        CliError::new(Exit::Auth, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        CliError::new(Exit::NotFound, message)
    }

    /// The exit code for an HTTP error status.
    pub(crate) fn exit_for_status(status: u16) -> Exit {
        match status {
            401 | 403 => Exit::Auth,
            404 => Exit::NotFound,
            402 | 429 => Exit::Limit,
            _ => Exit::Other,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
