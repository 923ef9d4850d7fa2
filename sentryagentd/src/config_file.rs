//! The optional settings file (`--config`, `SENTRYAGENT_CONFIG`): TOML whose
//! keys are the long flag names, e.g.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! issuer = "https://idp.example.com"
//! store = "postgres://sentryagent@db/sentryagent"
//! cors-origins = ["https://console.example.com"]
//! max-audit-streams = 512
//! ```
//!
//! A setting applies only when neither its flag nor its environment
//! variable is given: flag > environment > file > default. The file is
//! merged by handing its settings to the same parser as flags, so a value
//! is checked exactly as the flag's would be.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _};

use crate::config::Args;

/// Flags that are actions or the file itself, not settings.
const NOT_SETTINGS: &[&str] = &["config", "check-config", "help", "version"];

/// Parses flags and environment, then fills what they leave unset from the
/// settings file if one is named. Errors are clap's (usage, `--help`,
/// `--version` included) or one line about the file.
pub(crate) fn parse_args(argv: Vec<OsString>) -> Result<Args, ParseError> {
    let cmd = Args::command();
    let matches = cmd
        .clone()
        .try_get_matches_from(argv.iter())
        .map_err(ParseError::Clap)?;
    let Some(path) = matches.get_one::<std::path::PathBuf>("config").cloned() else {
        return Args::from_arg_matches(&matches).map_err(ParseError::Clap);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ParseError::File(format!("cannot read {}: {e}", path.display())))?;
    let extra = settings_as_flags(&cmd, &matches, &path, &text)?;
    warn_if_readable_by_others(&path, &text);
    let mut all = argv;
    all.extend(extra);
    let matches = cmd.try_get_matches_from(all).map_err(|e| {
        // A bad value from the file: say where it came from.
        ParseError::File(format!(
            "{}: {}",
            path.display(),
            e.to_string()
                .lines()
                .next()
                .unwrap_or("invalid setting")
                .trim_start_matches("error: ")
        ))
    })?;
    Args::from_arg_matches(&matches).map_err(ParseError::Clap)
}

/// Why the settings could not be read.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// Flags or environment (clap prints and exits as usual).
    Clap(clap::Error),
    /// The settings file, in one line.
    File(String),
}

/// The file's settings that flags and environment left unset, as
/// `--name=value` arguments.
fn settings_as_flags(
    cmd: &clap::Command,
    matches: &ArgMatches,
    path: &Path,
    text: &str,
) -> Result<Vec<OsString>, ParseError> {
    let file = path.display();
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ParseError::File(format!("{file}: not TOML: {}", one_line(&e.to_string())))
    })?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .filter(|_| !NOT_SETTINGS.contains(&key.as_str()))
            .ok_or_else(|| {
                ParseError::File(format!(
                    "{file}: unknown setting `{key}` (settings are the long flag names of --help, e.g. `listen`)"
                ))
            })?;
        let given = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for v in values {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(ParseError::File(format!(
                        "{file}: `{key}` takes a string, a number or a list of them"
                    )));
                }
            };
            out.push(OsString::from(format!("--{key}={v}")));
        }
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Settings that are secrets (or may carry one, as URLs with passwords).
const SECRET_SETTINGS: &[&str] = &[
    "store",
    "limiter",
    "meter",
    "bootstrap-key",
    "stripe-secret-key",
    "stripe-webhook-secret",
];

/// A file holding secrets should be readable by its owner only: says so
/// on stderr when it is not.
fn warn_if_readable_by_others(path: &Path, text: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let holds_secret = text
            .parse::<toml::Table>()
            .is_ok_and(|t| t.keys().any(|k| SECRET_SETTINGS.contains(&k.as_str())));
        if holds_secret && meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "sentryagentd: warning: {} holds secrets and is readable by others; chmod 600 it",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], file: &str) -> Result<Args, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentryagentd.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["sentryagentd".into()];
        argv.push(format!("--config={}", path.display()).into());
        argv.extend(args.iter().map(OsString::from));
        parse_args(argv).map_err(|e| match e {
            ParseError::Clap(e) => e.to_string(),
            ParseError::File(s) => s,
        })
    }

    #[test]
    fn the_file_fills_what_flags_leave_unset() {
        let a = parse(
            &["--body-limit=1000"],
            r#"
listen = "127.0.0.1:9999"
body-limit = 5000
cors-origins = ["https://a.example", "https://b.example"]
log-format = "json"
"#,
        )
        .unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(a.body_limit, 1000, "a flag wins over the file");
        assert_eq!(a.cors_origins.len(), 2);
        assert_eq!(a.log_format, crate::LogFormat::Json);
        // Left out: the default.
        assert_eq!(a.maintenance_secs, 5);
    }

    #[test]
    fn a_bad_file_is_one_clear_line() {
        for (file, says) in [
            ("listen = ", "not TOML"),
            ("lisen = \"x\"", "unknown setting `lisen`"),
            ("check-config = true", "unknown setting `check-config`"),
            ("listen = \"not an address\"", "listen"),
            ("cors-origins = \"https://a.example/path\"", "no path"),
            ("listen = { host = \"x\" }", "takes a string"),
        ] {
            let e = parse(&[], file).unwrap_err();
            assert!(e.contains(says), "{file:?}: {e}");
            assert!(
                e.contains("sentryagentd.toml"),
                "{file:?} names the file: {e}"
            );
            assert!(!e.trim().contains('\n'), "{file:?}: one line: {e}");
        }
        let e = parse_args(vec![
            "sentryagentd".into(),
            "--config=/nonexistent/x.toml".into(),
        ])
        .map_err(|e| match e {
            ParseError::File(s) => s,
            ParseError::Clap(e) => e.to_string(),
        })
        .unwrap_err();
        assert!(e.contains("cannot read /nonexistent/x.toml"), "{e}");
    }
}
