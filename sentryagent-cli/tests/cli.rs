//! End-to-end tests: the built `sentryagent` binary against a real server
//! on a loopback port, with a private home directory each.

mod support;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Env, fails_with, json_out, text_out};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_profiles_whoami_config_and_logout() {
    let env = Env::new();
    let url = env.server.url.clone();
    let op = env.server.operator_key.clone();

    // Login with the key on stdin; it is checked and described.
    let out = text_out(
        env.cmd()
            .args([
                "login",
                "--url",
                &url,
                "--profile",
                "local",
                "--api-key-stdin",
            ])
            .write_stdin(format!("{op}\n")),
    );
    assert!(out.contains("operator key"), "{out}");
    assert!(!out.contains(&op), "the key is echoed: {out}");
    let config = env.dot_dir().join("config.json");
    #[cfg(unix)]
    {
        assert_eq!(mode(&config), 0o600);
        assert_eq!(mode(&env.dot_dir()), 0o700);
    }
    let file: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(file["default_profile"], "local");
    assert_eq!(file["profiles"]["local"]["url"], url.as_str());

    // A wrong key is refused before anything is saved.
    let err = fails_with(
        env.cmd()
            .args([
                "login",
                "--url",
                &url,
                "--profile",
                "bad",
                "--api-key-stdin",
            ])
            .write_stdin("sa_ak_notarealkeynotarealkeynotarealkey00\n"),
        3,
    );
    assert!(!err.contains("notarealkey"), "the key leaks: {err}");
    let file: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(file["profiles"].get("bad").is_none());

    // whoami from the saved profile.
    let who = json_out(env.cmd().args(["whoami", "--json"]));
    assert_eq!(who["kind"], "operator");
    assert_eq!(who["profile"], "local");
    assert_eq!(who["scopes"], serde_json::json!(["admin"]));

    // A second profile holding a tenant key.
    let (tenant, key) = env.tenant("Acme");
    text_out(
        env.cmd()
            .args([
                "login",
                "--url",
                &url,
                "--profile",
                "acme",
                "--api-key-stdin",
            ])
            .write_stdin(format!("{key}\n")),
    );
    let who = json_out(env.cmd().args(["whoami", "--json", "--profile", "acme"]));
    assert_eq!(who["kind"], "tenant");
    assert_eq!(who["tenant_id"], tenant.as_str());
    assert_eq!(who["tenant_name"], "Acme");

    // Keys are masked in listings.
    let list = text_out(env.cmd().args(["config", "list"]));
    assert!(list.contains("local") && list.contains("acme"), "{list}");
    assert!(!list.contains(&op) && !list.contains(&key), "{list}");
    let list = json_out(env.cmd().args(["config", "list", "--json"]));
    assert_eq!(list["default_profile"], "local");
    assert!(
        list["profiles"]["acme"]["api_key"]
            .as_str()
            .unwrap()
            .ends_with("****")
    );
    assert_eq!(
        text_out(
            env.cmd()
                .args(["config", "get", "tenant", "--profile", "acme"])
        )
        .trim(),
        tenant
    );

    // Switch the default; the environment and the flag win over it.
    text_out(env.cmd().args(["config", "use", "acme"]));
    assert_eq!(
        json_out(env.cmd().args(["whoami", "--json"]))["kind"],
        "tenant"
    );
    assert_eq!(
        json_out(
            env.cmd()
                .args(["whoami", "--json"])
                .env("SENTRYAGENT_PROFILE", "local")
        )["kind"],
        "operator"
    );
    assert_eq!(
        json_out(env.cmd().args(["whoami", "--json", "--profile", "local"]))["kind"],
        "operator"
    );
    // --api-key beats the profile's key.
    assert_eq!(
        json_out(env.cmd().args(["whoami", "--json", "--api-key", &op]))["kind"],
        "operator"
    );
    fails_with(env.cmd().args(["config", "use", "nope"]), 4);

    // Keys are never set on the command line.
    fails_with(env.cmd().args(["config", "set", "api_key", "x"]), 2);
    text_out(
        env.cmd()
            .args(["config", "set", "url", &url, "--profile", "spare"]),
    );
    assert_eq!(
        text_out(
            env.cmd()
                .args(["config", "get", "url", "--profile", "spare"])
        )
        .trim(),
        url
    );

    // Logout forgets the key.
    text_out(env.cmd().args(["logout"]));
    fails_with(env.cmd().args(["whoami"]), 3);
    #[cfg(unix)]
    assert_eq!(mode(&config), 0o600);

    // SENTRYAGENT_CONFIG moves the file.
    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("cfg").join("sa.json");
    text_out(
        env.cmd()
            .env("SENTRYAGENT_CONFIG", &path)
            .args(["login", "--url", &url, "--api-key-stdin"])
            .write_stdin(format!("{op}\n")),
    );
    assert!(path.exists());
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn agents_tokens_rotation_and_revocation() {
    agents_tokens_rotation_and_revocation_on(&Env::new());
}

#[cfg(feature = "postgres")]
#[test]
fn agents_tokens_rotation_and_revocation_on_postgres() {
    if let Some(env) = Env::postgres("agents_tokens_rotation_and_revocation_on_postgres") {
        agents_tokens_rotation_and_revocation_on(&env);
    }
}

/// Register, list, get, update, tokens, rotation, revocation, lifecycle.
fn agents_tokens_rotation_and_revocation_on(env: &Env) {
    let (_tenant, key) = env.tenant("Tokens");

    // Register and save the credentials.
    let agent = json_out(env.as_key(&key).args([
        "register-agent",
        "--name",
        "billing-bot",
        "--description",
        "pays invoices",
        "--capability",
        "invoices",
        "--tag",
        "finance",
        "--scope",
        "invoices:read",
        "--state",
        "active",
        "--save",
        "--json",
    ]));
    let id = agent["id"].as_str().unwrap().to_owned();
    assert_eq!(agent["client_id"], id.as_str());
    assert!(agent["did"].as_str().unwrap().starts_with("did:key:"));
    assert!(agent["client_secret"].is_string());
    let creds = env.dot_dir().join("credentials").join(format!("{id}.json"));
    #[cfg(unix)]
    {
        assert_eq!(mode(&creds), 0o600);
        assert_eq!(mode(&env.dot_dir().join("credentials")), 0o700);
    }
    let saved: Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    assert_eq!(saved["client_secret"], agent["client_secret"]);
    assert_eq!(saved["private_jwk"]["d"], agent["private_jwk"]["d"]);

    // People see the secret once, labelled.
    let human =
        text_out(
            env.as_key(&key)
                .args(["register-agent", "--name", "other", "--state", "draft"]),
        );
    assert!(
        human.contains("client secret") && human.contains("shown once"),
        "{human}"
    );

    // Listing follows pages, filters and limits.
    let all = json_out(env.as_key(&key).args(["list-agents", "--json"]));
    assert_eq!(all.as_array().unwrap().len(), 2);
    let active = json_out(
        env.as_key(&key)
            .args(["list-agents", "--state", "active", "--json"]),
    );
    assert_eq!(active.as_array().unwrap().len(), 1);
    assert_eq!(active[0]["id"], id.as_str());
    let by_cap =
        json_out(
            env.as_key(&key)
                .args(["list-agents", "--capability", "invoices", "--json"]),
        );
    assert_eq!(by_cap.as_array().unwrap().len(), 1);
    let one = json_out(
        env.as_key(&key)
            .args(["list-agents", "--limit", "1", "--json"]),
    );
    assert_eq!(one.as_array().unwrap().len(), 1);
    let table = text_out(env.as_key(&key).args(["list-agents"]));
    assert!(
        table.contains("billing-bot") && table.contains("NAME"),
        "{table}"
    );

    // get, update.
    let got = json_out(env.as_key(&key).args(["get-agent", &id, "--json"]));
    assert_eq!(got["name"], "billing-bot");
    let upd = json_out(env.as_key(&key).args([
        "update-agent",
        &id,
        "--description",
        "pays and files invoices",
        "--json",
    ]));
    assert_eq!(upd["description"], "pays and files invoices");
    fails_with(env.as_key(&key).args(["update-agent", &id]), 2);

    // A token from the saved secret: the bare token on stdout.
    let token = text_out(env.as_key(&key).args([
        "issue-token",
        "--agent",
        &id,
        "--scope",
        "invoices:read",
    ]));
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // The whole response with --json.
    let resp = json_out(
        env.as_key(&key)
            .args(["issue-token", "--agent", &id, "--json"]),
    );
    assert_eq!(resp["token_type"], "Bearer");
    // Verified claims with --decode.
    let claims = json_out(env.as_key(&key).args([
        "issue-token",
        "--agent",
        &id,
        "--scope",
        "invoices:read",
        "--decode",
    ]));
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["iss"], env.server.url.as_str());
    assert_eq!(claims["scope"], "invoices:read");
    // private_key_jwt with the saved private JWK.
    let claims = json_out(env.as_key(&key).args([
        "issue-token",
        "--agent",
        &id,
        "--auth",
        "private-key-jwt",
        "--decode",
    ]));
    assert_eq!(claims["sub"], id.as_str());
    // A scope the agent may not have is the server's OAuth error, exit 1.
    let err = fails_with(
        env.as_key(&key)
            .args(["issue-token", "--agent", &id, "--scope", "admin:all"]),
        1,
    );
    assert!(err.contains("invalid_scope"), "{err}");

    // --client-id with the secret from the environment or stdin, never a flag.
    let secret = agent["client_secret"].as_str().unwrap().to_owned();
    let t = text_out(
        env.cmd()
            .env("SENTRYAGENT_URL", &env.server.url)
            .env("SENTRYAGENT_CLIENT_SECRET", &secret)
            .args(["issue-token", "--client-id", &id]),
    );
    assert_eq!(t.trim().split('.').count(), 3);
    let t = text_out(
        env.cmd()
            .env("SENTRYAGENT_URL", &env.server.url)
            .args(["issue-token", "--client-id", &id, "--client-secret-stdin"])
            .write_stdin(format!("{secret}\n")),
    );
    assert_eq!(t.trim().split('.').count(), 3);
    fails_with(
        env.cmd()
            .env("SENTRYAGENT_URL", &env.server.url)
            .args(["issue-token", "--client-id", &id]),
        2,
    );
    fails_with(
        env.cmd().env("SENTRYAGENT_URL", &env.server.url).args([
            "issue-token",
            "--client-id",
            &id,
            "--client-secret",
            &secret,
        ]),
        2,
    );

    // Rotation saves the new secret; the next token uses it.
    let rotated = json_out(
        env.as_key(&key)
            .args(["rotate-credentials", &id, "--save", "--json"]),
    );
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_valid_until"].is_string());
    let saved: Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    assert_eq!(saved["client_secret"], new_secret);
    let claims = json_out(
        env.as_key(&key)
            .args(["issue-token", "--agent", &id, "--decode"]),
    );
    assert_eq!(claims["sub"], id.as_str());
    let human = text_out(env.as_key(&key).args(["rotate-credentials", &id]));
    assert!(human.contains("valid until"), "{human}");

    // --grace: how long the old secret stays valid, said in words; the saved
    // one still works within it, and stops at once with 0s.
    let human = text_out(
        env.as_key(&key)
            .args(["rotate-credentials", &id, "--grace", "1h"]),
    );
    assert!(human.contains("(for 1h)"), "{human}");
    let rotated =
        json_out(
            env.as_key(&key)
                .args(["rotate-credentials", &id, "--grace", "30m", "--json"]),
        );
    let until =
        sentryagent::Timestamp::parse_rfc3339(rotated["previous_valid_until"].as_str().unwrap())
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed();
    assert!(
        (1790..=1800).contains(&(until.unix_secs() - now)),
        "{rotated}"
    );
    text_out(env.as_key(&key).args(["issue-token", "--agent", &id]));
    let human = text_out(
        env.as_key(&key)
            .args(["rotate-credentials", &id, "--grace", "0s"]),
    );
    assert!(human.contains("no longer valid"), "{human}");
    let err = fails_with(env.as_key(&key).args(["issue-token", "--agent", &id]), 3);
    assert!(err.contains("invalid_client"), "{err}");
    text_out(
        env.as_key(&key)
            .args(["rotate-credentials", &id, "--grace", "1m", "--save"]),
    );
    text_out(env.as_key(&key).args(["issue-token", "--agent", &id]));
    for bad in ["31d", "soon"] {
        let err = fails_with(
            env.as_key(&key)
                .args(["rotate-credentials", &id, "--grace", bad]),
            2,
        );
        assert!(err.contains("--grace"), "{err}");
    }

    // Revocation: the saved secret no longer gets a token (exit 3).
    let out = json_out(env.as_key(&key).args(["revoke-credentials", &id, "--json"]));
    assert!(out["revoked"].as_u64().unwrap() >= 1, "{out}");
    let err = fails_with(env.as_key(&key).args(["issue-token", "--agent", &id]), 3);
    assert!(err.contains("invalid_client"), "{err}");
    assert!(text_out(env.as_key(&key).args(["revoke-credentials", &id])).contains("Revoked"));

    // Lifecycle: legal moves, then an illegal one names the allowed ones.
    let paused = json_out(
        env.as_key(&key)
            .args(["set-state", &id, "paused", "--json"]),
    );
    assert_eq!(paused["state"], "paused");
    text_out(env.as_key(&key).args(["set-state", &id, "retired"]));
    let err = fails_with(env.as_key(&key).args(["set-state", &id, "active"]), 1);
    assert!(err.contains("allowed from retired: none"), "{err}");
    let other = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] != id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = fails_with(env.as_key(&key).args(["set-state", &other, "listed"]), 1);
    assert!(
        err.contains("allowed from draft: deployed, active, retired"),
        "{err}"
    );
}

#[test]
fn exit_codes() {
    let env = Env::new();
    // 6: nothing listens (a port just released), and the URL is named.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let err = fails_with(
        env.cmd()
            .args(["list-agents", "--url", &dead, "--api-key", "sa_ak_x"]),
        6,
    );
    assert!(err.contains(&dead), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // 3: a key the server does not know.
    let err = fails_with(
        env.as_key("sa_ak_0000000000000000000000000000000000")
            .args(["list-agents"]),
        3,
    );
    assert!(!err.contains("sa_ak_0000"), "{err}");
    // 3: no key at all.
    fails_with(env.cmd().args(["list-agents", "--url", &env.server.url]), 3);
    // 3: a tenant key on an operator route.
    let (_t, key) = env.tenant("Codes");
    fails_with(env.as_key(&key).args(["tenants", "list"]), 3);
    // 4: an unknown agent.
    let err = fails_with(
        env.as_key(&key)
            .args(["get-agent", "0190c3e4-0000-7000-8000-000000000000"]),
        4,
    );
    assert!(err.to_lowercase().contains("not found"), "{err}");
    fails_with(
        env.as_key(&key)
            .args(["issue-token", "--agent", "nosuchagent"]),
        4,
    );
    // 5: the free tier's agent limit, with the limit, the use and the upgrade.
    let mut code = 0;
    let mut err = String::new();
    for i in 0..10 {
        let out = env
            .as_key(&key)
            .args(["register-agent", "--name", &format!("a{i}")])
            .output()
            .unwrap();
        if !out.status.success() {
            code = out.status.code().unwrap();
            err = String::from_utf8_lossy(&out.stderr).into_owned();
            break;
        }
    }
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("agents limit") && err.contains("upgrade"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // --verbose adds the request id.
    let err = fails_with(
        env.as_key(&key)
            .args(["register-agent", "--name", "again", "--verbose"]),
        5,
    );
    assert!(err.contains("request id"), "{err}");
    // 2: usage errors.
    fails_with(env.cmd().args(["list-agents", "--no-such-flag"]), 2);
    fails_with(env.cmd().args(["issue-token"]), 2);
    fails_with(env.cmd().args(["set-state", "x", "flying"]), 2);
    fails_with(
        env.cmd().args([
            "tail-audit-log",
            "--since",
            "soon",
            "--url",
            &env.server.url,
            "--api-key",
            &key,
        ]),
        2,
    );
    fails_with(env.cmd().args(["login", "--url", &env.server.url]), 2);
    // 0 and help with an example everywhere.
    for sub in [
        "login",
        "logout",
        "whoami",
        "register-agent",
        "list-agents",
        "get-agent",
        "update-agent",
        "set-state",
        "revoke-credentials",
        "issue-token",
        "rotate-credentials",
        "tail-audit-log",
        "usage",
        "verify-audit",
        "completion",
        "man-pages",
    ] {
        let help = text_out(env.cmd().args([sub, "--help"]));
        assert!(help.contains("Example"), "{sub} --help has no example");
    }
    for sub in [
        ["config", "list"],
        ["config", "get"],
        ["config", "set"],
        ["config", "use"],
        ["tenants", "create"],
        ["tenants", "list"],
        ["tenants", "get"],
        ["tenants", "update"],
        ["api-keys", "create"],
        ["api-keys", "list"],
        ["api-keys", "revoke"],
        ["marketplace", "search"],
    ] {
        let help = text_out(env.cmd().args([sub[0], sub[1], "--help"]));
        assert!(help.contains("Example"), "{sub:?} --help has no example");
    }
}

#[test]
fn tenants_keys_usage_marketplace_and_audit() {
    let env = Env::new();
    // Tenants (operator).
    let t = json_out(env.op().args([
        "tenants", "create", "--name", "Globex", "--tier", "pro", "--json",
    ]));
    let tid = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["tier"], "pro");
    let list = json_out(env.op().args(["tenants", "list", "--json"]));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == tid.as_str())
    );
    let got = json_out(env.op().args(["tenants", "get", &tid, "--json"]));
    assert_eq!(got["name"], "Globex");
    let upd =
        json_out(
            env.op()
                .args(["tenants", "update", &tid, "--tier", "enterprise", "--json"]),
        );
    assert_eq!(upd["tier"], "enterprise");
    assert!(text_out(env.op().args(["tenants", "list"])).contains("Globex"));
    fails_with(env.op().args(["tenants", "get", "nope"]), 4);

    // API keys: the operator names the tenant; a tenant key creates for its own.
    let k = json_out(env.op().args([
        "api-keys", "create", "--tenant", &tid, "--name", "ci", "--json",
    ]));
    let key = k["key"].as_str().unwrap().to_owned();
    let k2 = json_out(env.as_key(&key).args([
        "api-keys",
        "create",
        "--name",
        "reader",
        "--scope",
        "agents_read",
        "--json",
    ]));
    assert_eq!(k2["tenant_id"], tid.as_str());
    assert_eq!(k2["scopes"], serde_json::json!(["agents_read"]));
    let keys = json_out(env.as_key(&key).args(["api-keys", "list", "--json"]));
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("key").is_none())
    );
    let reader = k2["key"].as_str().unwrap().to_owned();
    let who = json_out(env.as_key(&reader).args(["whoami", "--json"]));
    assert_eq!(who["kind"], "tenant");
    fails_with(
        env.as_key(&reader).args(["register-agent", "--name", "x"]),
        3,
    );
    let out = json_out(env.as_key(&key).args([
        "api-keys",
        "revoke",
        k2["id"].as_str().unwrap(),
        "--json",
    ]));
    assert_eq!(out["revoked"], true);
    fails_with(env.as_key(&reader).args(["list-agents"]), 3);
    let ops = json_out(env.op().args(["api-keys", "list", "--json"]));
    assert!(!ops.as_array().unwrap().is_empty());

    // Operator keys: an operator revokes one without --tenant; it stops
    // working; a tenant key does not find it among its own (exit 4).
    let ci = json_out(
        env.op()
            .args(["api-keys", "create", "--name", "ci", "--json"]),
    );
    assert_eq!(ci["tenant_id"], Value::Null);
    let (ci_id, ci_key) = (ci["id"].as_str().unwrap(), ci["key"].as_str().unwrap());
    json_out(env.as_key(ci_key).args(["tenants", "list", "--json"]));
    fails_with(env.as_key(&key).args(["api-keys", "revoke", ci_id]), 4);
    let out = text_out(env.op().args(["api-keys", "revoke", ci_id]));
    assert!(out.contains("Revoked operator key"), "{out}");
    fails_with(env.as_key(ci_key).args(["tenants", "list"]), 3);
    fails_with(env.op().args(["api-keys", "revoke", "nope"]), 4);

    // Usage: JSON as the server sends it; a table with bars for people.
    let u = json_out(env.as_key(&key).args(["usage", "--json"]));
    assert_eq!(u["tenant_id"], tid.as_str());
    assert_eq!(u["tier"], "enterprise");
    let u = json_out(env.op().args(["usage", "--tenant", &tid, "--json"]));
    assert_eq!(u["tenant_id"], tid.as_str());
    let err = fails_with(env.op().args(["usage"]), 1);
    assert!(err.contains("--tenant"), "{err}");

    // The marketplace: a public, listed agent is found without a key.
    let agent = json_out(env.as_key(&key).args([
        "register-agent",
        "--name",
        "searchable-bot",
        "--capability",
        "search",
        "--category",
        "tools",
        "--visibility",
        "public",
        "--json",
    ]));
    let listed = json_out(env.as_key(&key).args([
        "set-state",
        agent["id"].as_str().unwrap(),
        "listed",
        "--json",
    ]));
    assert_eq!(listed["state"], "listed");
    let found = json_out(env.cmd().args([
        "marketplace",
        "search",
        "searchable",
        "--capability",
        "search",
        "--url",
        &env.server.url,
        "--json",
    ]));
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], agent["id"]);
    let none = json_out(env.cmd().args([
        "marketplace",
        "search",
        "--category",
        "nothing-here",
        "--url",
        &env.server.url,
        "--json",
    ]));
    assert_eq!(none, serde_json::json!([]));

    // Audit: latest events oldest first, one JSON object per line.
    let out = text_out(env.as_key(&key).args(["tail-audit-log", "--json"]));
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty());
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    assert!(events.iter().any(|e| e["action"] == "agent.registered"));
    let out = text_out(env.as_key(&key).args([
        "tail-audit-log",
        "--json",
        "--action",
        "agent.registered",
        "--since",
        "1h",
    ]));
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1);
    let out = text_out(
        env.as_key(&key)
            .args(["tail-audit-log", "--json", "--limit", "2"]),
    );
    assert_eq!(out.lines().count(), 2);
    let human = text_out(env.as_key(&key).args(["tail-audit-log"]));
    assert!(human.contains("agent.registered"), "{human}");

    // The chain verifies.
    let v = json_out(env.as_key(&key).args(["verify-audit", "--json"]));
    assert!(v["head"]["seq"].as_u64().unwrap() > 0);
    assert!(text_out(env.as_key(&key).args(["verify-audit"])).contains("verified"));
}

#[test]
fn piped_output_has_no_colour_or_spinner() {
    let env = Env::new();
    let (_t, key) = env.tenant("Plain");
    for args in [
        &["usage"][..],
        &["list-agents"],
        &["whoami"],
        &["tail-audit-log"],
    ] {
        let out = env.as_key(&key).args(args).output().unwrap();
        assert!(out.status.success());
        assert!(
            !out.stdout.contains(&0x1b),
            "{args:?}: escape codes in piped stdout"
        );
        assert!(
            !out.stderr.contains(&0x1b),
            "{args:?}: escape codes in piped stderr"
        );
    }
}

/// Sends SIGINT to a child process.
#[cfg(unix)]
fn interrupt(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[cfg(unix)]
#[test]
fn follow_receives_events_made_after_it_started_and_ctrl_c_exits_0() {
    follow_receives_events_on(&Env::new());
}

#[cfg(all(unix, feature = "postgres"))]
#[test]
fn follow_receives_events_made_after_it_started_on_postgres() {
    if let Some(env) = Env::postgres("follow_receives_events_made_after_it_started_on_postgres") {
        follow_receives_events_on(&env);
    }
}

/// `sentryagent tail-audit-log --follow --json --action agent.registered`
/// against `url`: the child (stderr piped) and its stdout lines.
#[cfg(unix)]
fn spawn_follow(
    env: &Env,
    url: &str,
    key: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sentryagent"))
        .env("HOME", env.home.path())
        .env("SENTRYAGENT_URL", url)
        .env("SENTRYAGENT_API_KEY", key)
        .env_remove("SENTRYAGENT_CONFIG")
        .env_remove("SENTRYAGENT_PROFILE")
        .env_remove("SENTRYAGENT_TENANT")
        .args([
            "tail-audit-log",
            "--follow",
            "--json",
            "--action",
            "agent.registered",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The follow mode receives an event produced after it started; Ctrl-C
/// ends it with exit 0.
#[cfg(unix)]
fn follow_receives_events_on(env: &Env) {
    let (_t, key) = env.tenant_on("Follow", "pro");
    let (mut child, rx) = spawn_follow(env, &env.server.url, &key);
    // Register agents until the follower shows one (it may take a moment
    // to connect); bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got: Option<Value> = None;
    let mut i = 0;
    while got.is_none() && Instant::now() < deadline {
        let name = format!("followed-{i}");
        i += 1;
        text_out(env.as_key(&key).args(["register-agent", "--name", &name]));
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(700)) {
            got = Some(serde_json::from_str(&line).unwrap());
        }
    }
    let Some(event) = got else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the follower printed nothing within 20 s");
    };
    assert_eq!(event["action"], "agent.registered");
    // A later event arrives too, once and in order.
    let first = event["seq"].as_u64().unwrap();
    text_out(
        env.as_key(&key)
            .args(["register-agent", "--name", "last-one"]),
    );
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the next event was not followed");
    let next: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(next["action"], "agent.registered");
    assert!(next["seq"].as_u64().unwrap() > first, "{next}");
    // Ctrl-C ends it with exit 0.
    interrupt(child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the follower did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn follow_with_limit_stops_by_itself() {
    let env = Env::new();
    let (_t, key) = env.tenant("Limit");
    text_out(
        env.as_key(&key)
            .args(["register-agent", "--name", "before"]),
    );
    // --since reads what happened already, then stops at the limit.
    let out = text_out(env.as_key(&key).args([
        "tail-audit-log",
        "--follow",
        "--since",
        "10m",
        "--limit",
        "1",
        "--json",
        "--action",
        "agent.registered",
    ]));
    let e: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(e["action"], "agent.registered");
}

#[test]
fn completion_scripts_parse_in_their_shells() {
    let env = Env::new();
    for (shell, check) in [
        ("bash", &["bash", "-n"][..]),
        ("zsh", &["zsh", "-n"]),
        ("fish", &["fish", "--no-execute"]),
        ("powershell", &[]),
        ("elvish", &[]),
    ] {
        let script = text_out(env.cmd().args(["completion", shell]));
        assert!(script.contains("sentryagent"), "{shell}");
        let Some((prog, args)) = check.split_first() else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("sentryagent.{shell}"));
        std::fs::write(&file, &script).unwrap();
        match std::process::Command::new(prog)
            .args(args)
            .arg(&file)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "{shell} rejects the script: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert_ne!(shell, "bash", "bash is required to check completions");
                eprintln!("SKIPPED the {shell} completion check: {prog} is not installed");
            }
            Err(e) => panic!("{prog}: {e}"),
        }
    }
}

/// A loopback TCP proxy that can cut every connection it carries.
struct Proxy {
    url: String,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let target = upstream.trim_start_matches("http://").to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let conns = open.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut list = conns.lock().unwrap();
                    list.push(client.try_clone().unwrap());
                    list.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { url, open }
    }

    /// Drops every open connection.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[cfg(unix)]
#[test]
fn follow_reconnects_without_losing_or_repeating_events() {
    let env = Env::new();
    let (_t, key) = env.tenant_on("Reconnect", "pro");
    let proxy = Proxy::start(&env.server.url);
    let (mut child, rx) = spawn_follow(&env, &proxy.url, &key);
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    // Wait until the follower is connected: it shows a new event.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = None;
    let mut i = 0;
    while first.is_none() && Instant::now() < deadline {
        text_out(
            env.as_key(&key)
                .args(["register-agent", "--name", &format!("r{i}")]),
        );
        i += 1;
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(700)) {
            first = Some(serde_json::from_str::<Value>(&line).unwrap());
        }
    }
    let first = first.expect("the follower printed nothing within 20 s")["seq"]
        .as_u64()
        .unwrap();
    // Drop the connection, make events while it is down, then one more.
    proxy.cut();
    for n in 0..3 {
        text_out(
            env.as_key(&key)
                .args(["register-agent", "--name", &format!("gap{n}")]),
        );
    }
    proxy.cut();
    text_out(env.as_key(&key).args(["register-agent", "--name", "after"]));
    // What the trail holds after the first event the follower showed.
    let listed = text_out(env.as_key(&key).args([
        "tail-audit-log",
        "--json",
        "--action",
        "agent.registered",
        "--limit",
        "1000",
    ]));
    let expected: Vec<u64> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .filter(|s| *s > first)
        .collect();
    assert!(expected.len() >= 4, "{expected:?}");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < expected.len() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            got.push(
                serde_json::from_str::<Value>(&line).unwrap()["seq"]
                    .as_u64()
                    .unwrap(),
            );
        }
    }
    // Nothing more arrives (no repeats).
    if let Ok(extra) = rx.recv_timeout(Duration::from_millis(1500)) {
        got.push(
            serde_json::from_str::<Value>(&extra).unwrap()["seq"]
                .as_u64()
                .unwrap(),
        );
    }
    interrupt(child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the follower did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = errors.join().unwrap();
    assert_eq!(got, expected, "stderr: {stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn man_pages_for_every_command() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    text_out(env.cmd().args(["man-pages", "--out"]).arg(dir.path()));
    for name in [
        "sentryagent",
        "sentryagent-issue-token",
        "sentryagent-tail-audit-log",
        "sentryagent-config-use",
        "sentryagent-api-keys-create",
        "sentryagent-members-set-role",
        "sentryagent-invitations-create",
        "sentryagent-publisher-verify-domain",
    ] {
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.1"))).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "{name}: {page}"
        );
        assert!(page.contains("Example"), "{name}: no example");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("-help")), "{names:?}");
    // The top page, 23 commands, 4 config, 4 tenants, 3 api-keys, 1
    // marketplace, 4 members, 3 invitations, 1 publisher.
    assert_eq!(names.len(), 1 + 23 + 4 + 4 + 3 + 1 + 4 + 3 + 1, "{names:?}");
}

/// Accepts an invitation over HTTP, as the person invited would; the
/// answer's JSON.
fn accept_invitation(url: &str, token: &str) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/invitations/accept"))
                .json(&serde_json::json!({"token": token, "password": "correct horse battery staple"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json().await.unwrap()
        })
}

#[test]
fn members_and_invitations() {
    let env = Env::new();
    let (tenant, key) = env.tenant_on("People", "pro");

    // Invite (a tenant key: its own tenant); the link is shown once.
    let out = text_out(env.as_key(&key).args([
        "invitations",
        "invite",
        "--email",
        "grace@example.com",
        "--role",
        "developer",
    ]));
    assert!(
        out.contains("grace@example.com") && out.contains("#token=sa_iv_"),
        "{out}"
    );
    assert!(out.contains("shown once"), "{out}");
    let inv = json_out(env.as_key(&key).args([
        "invitations",
        "create",
        "--email",
        "ada@example.com",
        "--role",
        "admin",
        "--json",
    ]));
    assert_eq!(inv["role"], "admin");
    let listed = json_out(env.as_key(&key).args(["invitations", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("token").is_none())
    );
    // The operator names the tenant; without it the command says so.
    let err = fails_with(env.op().args(["invitations", "list"]), 2);
    assert!(err.contains("--tenant"), "{err}");
    let as_op = json_out(
        env.op()
            .args(["invitations", "list", "--tenant", &tenant, "--json"]),
    );
    assert_eq!(as_op, listed);

    // Accepted by the person; revoked ones cannot be.
    let me = accept_invitation(&env.server.url, inv["token"].as_str().unwrap());
    let ada = me["user"]["id"].as_str().unwrap().to_owned();
    let grace = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["email"] == "grace@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = json_out(
        env.as_key(&key)
            .args(["invitations", "revoke", &grace, "--json"]),
    );
    assert_eq!(out["revoked"], true);
    let listed = json_out(env.as_key(&key).args(["invitations", "list", "--json"]));
    let status: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert!(
        status.contains(&"accepted") && status.contains(&"revoked"),
        "{status:?}"
    );
    fails_with(
        env.as_key(&key).args(["invitations", "revoke", "inv_nope"]),
        4,
    );

    // Members: list, change the role, reset the password, remove.
    let members = json_out(env.as_key(&key).args(["members", "list", "--json"]));
    assert_eq!(members[0]["email"], "ada@example.com");
    assert_eq!(members[0]["role"], "admin");
    let table = text_out(env.as_key(&key).args(["members", "list"]));
    assert!(
        table.contains("ada@example.com") && table.contains("admin"),
        "{table}"
    );
    let m = json_out(
        env.as_key(&key)
            .args(["members", "set-role", &ada, "viewer", "--json"]),
    );
    assert_eq!(m["role"], "viewer");
    let link = json_out(
        env.as_key(&key)
            .args(["members", "reset-password", &ada, "--json"]),
    );
    assert!(
        link["url"].as_str().unwrap().contains("#token=sa_pr_"),
        "{link}"
    );
    // The operator issues one for any account, found by email.
    let out = text_out(
        env.op()
            .args(["members", "reset-password", "--email", "ada@example.com"]),
    );
    assert!(out.contains("#token=sa_pr_") && out.contains(&ada), "{out}");
    fails_with(
        env.op()
            .args(["members", "reset-password", "--email", "nobody@example.com"]),
        4,
    );
    let out = text_out(env.as_key(&key).args(["members", "remove", &ada]));
    assert!(out.contains("Removed"), "{out}");
    let members = json_out(env.as_key(&key).args(["members", "list", "--json"]));
    assert!(members.as_array().unwrap().is_empty());
    fails_with(env.as_key(&key).args(["members", "remove", &ada]), 4);
    fails_with(
        env.as_key(&key)
            .args(["members", "set-role", &ada, "superuser"]),
        2,
    );
    // A key without members_write may read, not change.
    let reader = json_out(env.as_key(&key).args([
        "api-keys",
        "create",
        "--name",
        "reader",
        "--scope",
        "members_read",
        "--json",
    ]))["key"]
        .as_str()
        .unwrap()
        .to_owned();
    json_out(
        env.as_key(&reader)
            .args(["members", "list", "--tenant", &tenant, "--json"]),
    );
    fails_with(
        env.as_key(&reader).args([
            "invitations",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "x@example.com",
        ]),
        3,
    );
}

#[test]
fn api_keys_expire_and_keep_a_revocation_reason() {
    let env = Env::new();
    let (_, key) = env.tenant_on("Expiring", "pro");
    let k = json_out(env.as_key(&key).args([
        "api-keys",
        "create",
        "--name",
        "temp",
        "--expires",
        "90d",
        "--json",
    ]));
    assert!(k["expires_at"].is_string(), "{k}");
    fails_with(
        env.as_key(&key)
            .args(["api-keys", "create", "--name", "x", "--expires", "soon"]),
        2,
    );
    let id = k["id"].as_str().unwrap();
    json_out(
        env.as_key(&key)
            .args(["api-keys", "revoke", id, "--reason", "not needed", "--json"]),
    );
    let table = text_out(env.as_key(&key).args(["api-keys", "list"]));
    assert!(
        table.contains("REQUESTS") && table.contains("(not needed)"),
        "{table}"
    );
}

#[test]
fn publisher_verify_domain_starts_and_checks_a_proof() {
    let env = Env::new();
    let (_, key) = env.tenant_on("Proof Co", "pro");
    let out = text_out(
        env.as_key(&key)
            .args(["publisher", "verify-domain", "proof.localhost"]),
    );
    assert!(
        out.contains("https://proof.localhost/.well-known/sentryagent-publisher.txt"),
        "{out}"
    );
    assert!(out.contains("sa_dp_"), "{out}");
    assert!(out.contains("--check"), "{out}");
    let c = json_out(env.as_key(&key).args([
        "publisher",
        "verify-domain",
        "proof.localhost",
        "--json",
    ]));
    assert_eq!(c["domain"], "proof.localhost");
    assert!(c["token"].as_str().unwrap().starts_with("sa_dp_"));
    // Nothing serves it (and a loopback name is refused in production).
    let err = fails_with(
        env.as_key(&key)
            .args(["publisher", "verify-domain", "proof.localhost", "--check"]),
        1,
    );
    assert!(err.contains("domain proof failed (refused)"), "{err}");
    let err = fails_with(
        env.as_key(&key)
            .args(["publisher", "verify-domain", "127.0.0.1"]),
        1,
    );
    assert!(err.contains("IP addresses are refused"), "{err}");
}
