//! The config file (`~/.sentryagent/config.json`, or `SENTRYAGENT_CONFIG`)
//! with its profiles, saved agent credentials, and how flags, environment
//! and profile combine.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::GlobalArgs;
use crate::error::CliError;

/// The server URL when nothing names one.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// The profile name when nothing names one.
pub(crate) const DEFAULT_PROFILE: &str = "default";

/// The config file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// The profile used when neither `--profile` nor `SENTRYAGENT_PROFILE`
    /// names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default_profile: Option<String>,
    /// Profiles by name.
    #[serde(default)]
    pub(crate) profiles: BTreeMap<String, Profile>,
}

/// One server and key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// Server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// Admin API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) api_key: Option<String>,
    /// Default tenant (for operator keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<String>,
}

/// The config file's path: `SENTRYAGENT_CONFIG`, else
/// `~/.sentryagent/config.json`.
pub(crate) fn config_path() -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os("SENTRYAGENT_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::home_dir()
        .filter(|h| !h.as_os_str().is_empty())
        .ok_or_else(|| CliError::other("no home directory; set SENTRYAGENT_CONFIG"))?;
    Ok(home.join(".sentryagent").join("config.json"))
}

/// The directory of saved agent credentials: `credentials/` next to the
/// config file.
pub(crate) fn credentials_dir() -> Result<PathBuf, CliError> {
    let path = config_path()?;
    Ok(path
        .parent()
        .map_or_else(|| PathBuf::from("credentials"), |d| d.join("credentials")))
}

impl Config {
    /// Reads the config file; a missing file is an empty config.
    pub(crate) fn load() -> Result<Config, CliError> {
        let path = config_path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                CliError::other(format!("config file {} is not valid: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(CliError::other(format!(
                "cannot read config file {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes the config file atomically (directory 0700, file 0600).
    pub(crate) fn save(&self) -> Result<PathBuf, CliError> {
        let path = config_path()?;
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|e| CliError::other(format!("cannot encode the config: {e}")))?;
        json.push(b'\n');
        write_private(&path, &json)?;
        Ok(path)
    }

    /// The profile name in effect: flag or environment, else the default.
    pub(crate) fn profile_name(&self, global: &GlobalArgs) -> String {
        global
            .profile
            .clone()
            .or_else(|| self.default_profile.clone())
            .unwrap_or_else(|| DEFAULT_PROFILE.to_owned())
    }
}

/// Settings in effect for one run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Profile name.
    pub(crate) profile: String,
    /// Server URL, without a trailing slash.
    pub(crate) url: String,
    /// Admin key, if any.
    pub(crate) api_key: Option<String>,
    /// Tenant for operator keys, if any.
    pub(crate) tenant: Option<String>,
}

/// Combines flags, environment (already folded into the flags by clap),
/// profile and defaults, in that order.
pub(crate) fn resolve(global: &GlobalArgs, config: &Config) -> Settings {
    let profile = config.profile_name(global);
    let p = config.profiles.get(&profile).cloned().unwrap_or_default();
    let url = global
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .or(p.url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    Settings {
        profile,
        url: url.trim_end_matches('/').to_owned(),
        api_key: global
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .or(p.api_key),
        tenant: global.tenant.clone().filter(|t| !t.is_empty()).or(p.tenant),
    }
}

/// `key` masked for display: its first characters, then asterisks.
pub(crate) fn mask(key: &str) -> String {
    let shown: String = key.chars().take(8.min(key.chars().count() / 3)).collect();
    format!("{shown}****")
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, with the directory 0700 and the file 0600.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |what: &str, e: std::io::Error| {
        CliError::other(format!("cannot {what} {}: {e}", path.display()))
    };
    create_private_dir(dir).map_err(|e| fail("create the directory of", e))?;
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = open_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    // Our own directories are kept private even if created otherwise.
    let private = dir
        .file_name()
        .is_some_and(|n| n == ".sentryagent" || n == "credentials");
    if private {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// An agent's saved credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedCredentials {
    /// Agent id.
    pub(crate) agent_id: String,
    /// OAuth client id.
    pub(crate) client_id: String,
    /// Client secret.
    pub(crate) client_secret: Option<String>,
    /// The generated private key (RFC 8037 JWK), when the server made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) private_jwk: Option<serde_json::Value>,
    /// The server it belongs to.
    pub(crate) url: String,
}

/// The credentials file of an agent.
pub(crate) fn credentials_path(agent_id: &str) -> Result<PathBuf, CliError> {
    let safe = !agent_id.is_empty()
        && agent_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !safe {
        return Err(CliError::usage(format!("not an agent id: {agent_id:?}")));
    }
    Ok(credentials_dir()?.join(format!("{agent_id}.json")))
}

impl SavedCredentials {
    /// Reads an agent's saved credentials.
    pub(crate) fn load(agent_id: &str) -> Result<SavedCredentials, CliError> {
        let path = credentials_path(agent_id)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CliError::not_found(format!(
                    "no saved credentials for agent {agent_id} ({}); register with --save or rotate-credentials --save",
                    path.display()
                ))
            } else {
                CliError::other(format!("cannot read {}: {e}", path.display()))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::other(format!("{} is not valid: {e}", path.display())))
    }

    /// Writes them (0600, atomically); returns the path.
    pub(crate) fn save(&self) -> Result<PathBuf, CliError> {
        let path = credentials_path(&self.agent_id)?;
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|e| CliError::other(format!("cannot encode credentials: {e}")))?;
        json.push(b'\n');
        write_private(&path, &json)?;
        Ok(path)
    }
}
