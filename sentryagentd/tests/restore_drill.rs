//! The restore drill of `docs/operations.md`, run with the commands it
//! documents: a server holds a tenant, an agent and a token; it is stopped,
//! backed up, wiped (a server on the wiped store knows none of it),
//! restored and started again; then the old token still verifies against
//! the JWKS and introspects as active, the old client secret still gets
//! tokens and the old admin keys still work.
//!
//! sled: `tar` of the data directory. Postgres: `pg_dump` of the schema,
//! `pg_restore` into a fresh database (skipped, or failed under
//! `SENTRYAGENT_REQUIRE_SERVICES=1`, without Postgres or its client tools).

mod daemon;

use std::path::Path;
use std::process::Command;

use daemon::{Daemon, client, key, post, spawn};
use sentryagent_core::jose::jwt::{Validation, verify_jwt};
use sentryagent_core::jose::{JwkSet, KeySet};
use sentryagent_core::{AccessTokenClaims, Clock, SystemClock};
use serde_json::json;

/// The public URL of every server of a drill: tokens name it, so it stays
/// the same across restarts (and ports).
const ISSUER: &str = "https://idp.drill.example";

/// Runs a documented command; panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the drill creates before the backup.
struct Issued {
    operator_key: String,
    tenant: String,
    tenant_key: String,
    client_id: String,
    client_secret: String,
    token: String,
}

/// A token by `client_secret_basic`: the status and the body.
async fn token(d: &Daemon, id: &str, secret: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("{}/oauth2/token", d.base))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// Whether the server's JWKS verifies `token` (signature, `typ`, issuer,
/// expiry).
async fn jwks_verifies(d: &Daemon, token: &str) -> bool {
    let jwks: JwkSet = client()
        .get(format!("{}/.well-known/jwks.json", d.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let mut v = Validation::new(ISSUER, SystemClock.now());
    v.required_typ = Some(sentryagent_core::ACCESS_TOKEN_TYP.to_owned());
    verify_jwt::<AccessTokenClaims, _>(token, &keys, &v).is_ok()
}

impl Issued {
    async fn create(d: &Daemon, operator_key: String) -> Issued {
        let http = client();
        let b = &d.base;
        let t = post(
            &http,
            format!("{b}/v1/tenants"),
            &operator_key,
            json!({"name": "Drill", "tier": "pro"}),
        )
        .await;
        let tenant = t["id"].as_str().unwrap().to_owned();
        let k = post(
            &http,
            format!("{b}/v1/tenants/{tenant}/api-keys"),
            &operator_key,
            json!({"name": "drill"}),
        )
        .await;
        let tenant_key = k["key"].as_str().unwrap().to_owned();
        let a = post(
            &http,
            format!("{b}/v1/agents"),
            &tenant_key,
            json!({"name": "drill-bot"}),
        )
        .await;
        let client_id = a["client_id"].as_str().unwrap().to_owned();
        let client_secret = a["client_secret"].as_str().unwrap().to_owned();
        let (st, body) = token(d, &client_id, &client_secret).await;
        assert_eq!(st, 200, "{body}");
        let issued = Issued {
            operator_key,
            tenant,
            tenant_key,
            client_id,
            client_secret,
            token: body["access_token"].as_str().unwrap().to_owned(),
        };
        assert!(jwks_verifies(d, &issued.token).await);
        issued
    }

    /// A server on a wiped store knows none of it.
    async fn unknown_to(&self, d: &Daemon) {
        let (st, _) = token(d, &self.client_id, &self.client_secret).await;
        assert_eq!(st, 401, "the wiped store still knows the client");
        assert!(
            !jwks_verifies(d, &self.token).await,
            "the wiped store still has the signing key"
        );
        let r = client()
            .get(format!("{}/v1/tenants/{}", d.base, self.tenant))
            .bearer_auth(&self.operator_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "the wiped store still knows the key");
    }

    /// The restored server knows all of it.
    async fn known_to(&self, d: &Daemon) {
        assert!(
            jwks_verifies(d, &self.token).await,
            "the token issued before the backup verifies against the JWKS"
        );
        let r = client()
            .post(format!("{}/oauth2/introspect", d.base))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", self.token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let i: serde_json::Value = r.json().await.unwrap();
        assert_eq!(i["active"], true, "{i}");
        let (st, body) = token(d, &self.client_id, &self.client_secret).await;
        assert_eq!(st, 200, "the old client secret gets a token: {body}");
        let fresh = body["access_token"].as_str().unwrap();
        assert!(jwks_verifies(d, fresh).await);
        let http = client();
        for key in [&self.operator_key, &self.tenant_key] {
            let r = http
                .get(format!("{}/v1/tenants/{}", d.base, self.tenant))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "an admin key of before the backup");
        }
    }
}

async fn start(store: &str, env: &[(&str, &str)]) -> Daemon {
    spawn(
        &[
            "--store",
            store,
            "--limiter",
            "memory://",
            "--issuer",
            ISSUER,
        ],
        env,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sled_backup_wipe_restore_keeps_tokens_secrets_and_keys() {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().to_str().unwrap();
    let data = root.path().join("sentryagent");
    let backup = root.path().join("sentryagent.tar.gz");
    let backup = backup.to_str().unwrap();
    let store = format!("sled://{}", data.display());
    let op = key();
    let mut d = start(&store, &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)]).await;
    let issued = Issued::create(&d, op).await;

    // Back up: stop the node, archive its data directory.
    d.stop();
    run("tar", &["-C", parent, "-czf", backup, "sentryagent"]);
    // Wipe; a node on the empty directory knows nothing.
    std::fs::remove_dir_all(&data).unwrap();
    let mut empty = start(&store, &[]).await;
    issued.unknown_to(&empty).await;
    empty.stop();
    // Restore: the directory back in place, then start.
    std::fs::remove_dir_all(&data).unwrap();
    run("tar", &["-C", parent, "-xzf", backup]);
    assert!(Path::new(&data).is_dir());
    let mut restored = start(&store, &[]).await;
    issued.known_to(&restored).await;
    restored.stop();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sentryagent_storage::testing;

    const TEST: &str = "postgres_dump_wipe_restore_keeps_tokens_secrets_and_keys";

    /// `url` (a database URL) naming the database `db` instead.
    fn with_database(url: &str, db: &str) -> String {
        let (base, query) = url
            .split_once('?')
            .map_or((url, None), |(b, q)| (b, Some(q)));
        let (server, _) = base.rsplit_once('/').expect("a database in the URL");
        match query {
            Some(q) => format!("{server}/{db}?{q}"),
            None => format!("{server}/{db}"),
        }
    }

    /// Drops the restored database, also when the test panics.
    struct DropDatabase {
        url: String,
        db: String,
    }

    impl Drop for DropDatabase {
        fn drop(&mut self) {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db);
            let _ = Command::new("psql")
                .args(["--quiet", "--dbname", &self.url, "--command", &sql])
                .output();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_dump_wipe_restore_keeps_tokens_secrets_and_keys() {
        let Some(url) = testing::postgres(TEST).await else {
            return;
        };
        for tool in ["pg_dump", "pg_restore", "psql"] {
            if let Err(e) = Command::new(tool).arg("--version").output() {
                testing::unreachable(TEST, tool, "PATH", &e.to_string());
                return;
            }
        }
        testing::with_schema(TEST, |store, schema| async move {
            let dir = tempfile::tempdir().unwrap();
            let dump = dir.path().join("sentryagent.dump");
            let dump = dump.to_str().unwrap();
            let op = key();
            let mut d = start(&store, &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)]).await;
            let issued = Issued::create(&d, op).await;
            d.stop();

            // Back up the schema.
            let schema_arg = format!("--schema={schema}");
            run(
                "pg_dump",
                &[
                    "--format=custom",
                    &schema_arg,
                    "--file",
                    dump,
                    "--dbname",
                    &url,
                ],
            );
            // Wipe; a node on the empty schema knows nothing.
            let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
            run("psql", &["--quiet", "--dbname", &url, "--command", &drop]);
            let mut empty = start(&store, &[]).await;
            issued.unknown_to(&empty).await;
            empty.stop();
            // Restore into a fresh database (as on a new database server).
            let db = format!("sentryagent_drill_{}", testing::random());
            let _cleanup = DropDatabase {
                url: url.clone(),
                db: db.clone(),
            };
            let create = format!("CREATE DATABASE \"{db}\"");
            run("psql", &["--quiet", "--dbname", &url, "--command", &create]);
            let restored_url = with_database(&url, &db);
            run(
                "pg_restore",
                &["--no-owner", "--dbname", &restored_url, dump],
            );
            let sep = if restored_url.contains('?') { '&' } else { '?' };
            let restored_store = format!("{restored_url}{sep}schema={schema}");
            let mut restored = start(&restored_store, &[]).await;
            issued.known_to(&restored).await;
            restored.stop();
        })
        .await;
    }

    #[test]
    fn database_urls_name_the_restored_database() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
