//! The command line: every documented variable is a flag with the same
//! default, `--help` shows them all, and `--check-config` reports what is
//! wrong.

use std::collections::BTreeMap;
use std::process::Command;

/// `(flag, default)` by variable, from the README's configuration table.
fn readme_table() -> BTreeMap<String, (String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("| variable | flag | default |")
        .expect("the README's configuration table");
    let mut out = BTreeMap::new();
    for line in readme[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let unquote = |s: &str| s.trim_matches('`').to_owned();
        out.insert(unquote(cells[1]), (unquote(cells[2]), unquote(cells[3])));
    }
    out
}

/// `(flag, default)` by variable, from the command definition.
fn flags() -> BTreeMap<String, (String, Option<String>)> {
    sentryagentd::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_owned();
            let flag = format!("--{}", a.get_long()?);
            let default = a
                .get_default_values()
                .first()
                .map(|v| v.to_string_lossy().into_owned());
            Some((env, (flag, default)))
        })
        .collect()
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sentryagentd"));
    c.env_clear();
    c
}

#[test]
fn readme_table_flags_and_variables_agree() {
    let table = readme_table();
    let flags = flags();
    assert_eq!(
        table.keys().collect::<Vec<_>>(),
        flags.keys().collect::<Vec<_>>(),
        "the README table and the flags' variables differ"
    );
    for (env, (flag, default)) in &flags {
        let (doc_flag, doc_default) = &table[env];
        assert_eq!(doc_flag, flag, "{env}");
        if let Some(d) = default {
            assert_eq!(doc_default, d, "documented default of {env}");
        }
    }
    // Every variable with a Stripe name that the billing crate reads is here.
    for v in [
        "SENTRYAGENT_STRIPE_SECRET_KEY",
        "SENTRYAGENT_STRIPE_WEBHOOK_SECRET",
        "SENTRYAGENT_STRIPE_PRICE_PRO",
        "SENTRYAGENT_STRIPE_PRICE_ENTERPRISE",
        "SENTRYAGENT_STRIPE_SUCCESS_URL",
        "SENTRYAGENT_STRIPE_CANCEL_URL",
        "SENTRYAGENT_STRIPE_PORTAL_RETURN_URL",
        "SENTRYAGENT_STRIPE_API_BASE",
        "SENTRYAGENT_STRIPE_API_VERSION",
        "SENTRYAGENT_STRIPE_METER_API_CALLS",
        "SENTRYAGENT_STRIPE_METER_TOKEN_ISSUANCES",
    ] {
        assert!(flags.contains_key(v), "{v} has no flag");
    }
}

#[test]
fn help_lists_every_flag_variable_and_default() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (env, (flag, default)) in flags() {
        assert!(help.contains(&flag), "--help lacks {flag}");
        assert!(help.contains(&format!("env: {env}")), "--help lacks {env}");
        if let Some(d) = default {
            assert!(
                help.contains(&format!("default: {d}")),
                "--help lacks the default of {flag}"
            );
        }
    }
    assert!(help.contains("--check-config"));
}

#[test]
fn check_config_passes_on_a_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let tiers = dir.path().join("tiers.json");
    std::fs::write(&tiers, r#"{"free": {"max_agents": 10}}"#).unwrap();
    let out = bin()
        .args(["--check-config", "--store"])
        .arg(format!("sled://{}", dir.path().join("data").display()))
        .arg("--tiers")
        .arg(&tiers)
        .env(
            "SENTRYAGENT_BOOTSTRAP_KEY",
            format!("sa_ak_{}", "k".repeat(40)),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("sled up"), "{stdout}");
    assert!(
        !stdout.contains(&"k".repeat(40)),
        "the key is never printed"
    );
}

#[test]
fn check_config_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let tiers = dir.path().join("tiers.json");
    std::fs::write(&tiers, r#"{"free": {"max_agent": 10}}"#).unwrap();
    let out = bin()
        .args([
            "--check-config",
            "--store",
            "postgres://postgres@127.0.0.1:1/test",
        ])
        .args(["--issuer", "ftp://idp.example"])
        .arg("--tiers")
        .arg(&tiers)
        .env("SENTRYAGENT_BOOTSTRAP_KEY", "sa_ak_short-and-secret")
        .env("SENTRYAGENT_STRIPE_SECRET_KEY", "sk_test_0123456789")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for needle in [
        "ERROR  issuer: issuer \"ftp://idp.example\" must use http or https",
        "ERROR  bootstrap key: the bootstrap key must be sa_ak_",
        "ERROR  tiers:",
        "free.max_agent: unknown limit",
        "ERROR  billing:",
        "SENTRYAGENT_STRIPE_WEBHOOK_SECRET is not set",
        "ERROR  backends:",
        "configuration has 5 problem(s)",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    assert!(!stdout.contains("short-and-secret"));
    assert!(!stdout.contains("sk_test_0123456789"));
}

#[test]
fn a_bad_tier_file_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let tiers = dir.path().join("tiers.json");
    std::fs::write(&tiers, r#"{"gold": {}}"#).unwrap();
    let out = bin()
        .args(["--store", "memory://", "--listen", "127.0.0.1:0", "--tiers"])
        .arg(&tiers)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown tier \"gold\""), "{stderr}");
}

#[test]
fn a_config_file_fills_in_below_the_environment_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sentryagentd.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9001\"\nstore = \"memory://\"\nmaintenance-secs = 7\n",
    )
    .unwrap();
    let issuer_with = |env: Option<&str>, flag: Option<&str>| {
        let mut c = bin();
        c.arg("--check-config").arg("--config").arg(&file);
        if let Some(e) = env {
            c.env("SENTRYAGENT_LISTEN", e);
        }
        if let Some(f) = flag {
            c.args(["--listen", f]);
        }
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("config file"), "{stdout}");
        assert!(stdout.contains("memory up"), "the file's store: {stdout}");
        stdout
    };
    assert!(issuer_with(None, None).contains("http://127.0.0.1:9001"));
    assert!(issuer_with(Some("127.0.0.1:9002"), None).contains("http://127.0.0.1:9002"));
    assert!(
        issuer_with(Some("127.0.0.1:9002"), Some("127.0.0.1:9003"))
            .contains("http://127.0.0.1:9003")
    );

    // A file that is wrong stops the start with one line naming it.
    std::fs::write(&file, "listen = \"127.0.0.1:9001\"\nlisen = 1\n").unwrap();
    let out = bin().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown setting `lisen`"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
