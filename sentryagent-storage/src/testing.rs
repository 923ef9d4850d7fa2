//! Test plumbing for live Postgres and Redis (feature `testing`), shared by
//! the tests of this workspace and usable by backend authors: where the
//! services are, the skip-or-fail rule when they are absent, and isolation
//! per test (a fresh Postgres schema, a random Redis key prefix) with
//! cleanup.
//!
//! URLs come from `SENTRYAGENT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `SENTRYAGENT_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`). An unreachable service makes the test
//! print `SKIPPED <test>: <service> unreachable at <url>` and return, unless
//! `SENTRYAGENT_REQUIRE_SERVICES=1`, where it panics.

#[cfg(any(feature = "postgres", feature = "redis"))]
use std::future::Future;
#[cfg(any(feature = "postgres", feature = "redis"))]
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
#[cfg(any(feature = "postgres", feature = "redis"))]
use std::pin::Pin;
#[cfg(any(feature = "postgres", feature = "redis"))]
use std::task::{Context, Poll};
#[cfg(any(feature = "postgres", feature = "redis"))]
use std::time::Duration;

/// Runs a future to its end, returning its panic (if any) instead of
/// unwinding, so cleanup can run before the panic goes on.
#[cfg(any(feature = "postgres", feature = "redis"))]
async fn catching<F: Future<Output = ()>>(fut: F) -> Result<(), Box<dyn std::any::Any + Send>> {
    struct Catch<F>(Pin<Box<F>>);
    impl<F: Future<Output = ()>> Future for Catch<F> {
        type Output = Result<(), Box<dyn std::any::Any + Send>>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let inner = self.0.as_mut();
            match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
                Err(panic) => Poll::Ready(Err(panic)),
            }
        }
    }
    Catch(Box::pin(fut)).await
}

/// The Postgres URL of the tests.
pub fn postgres_url() -> String {
    std::env::var("SENTRYAGENT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The Redis URL of the tests.
pub fn redis_url() -> String {
    std::env::var("SENTRYAGENT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Skips (or, when services are required, fails) `test`: the core's rule,
/// [`skip_or_fail`](sentryagent_core::conformance::kit::skip_or_fail).
pub fn unreachable(test: &str, service: &str, url: &str, why: &str) {
    sentryagent_core::conformance::kit::skip_or_fail(test, service, url, why);
}

/// A random suffix.
pub fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// The Postgres URL if the server answers; otherwise skips.
#[cfg(feature = "postgres")]
pub async fn postgres(test: &str) -> Option<String> {
    use sqlx::Connection;
    let url = postgres_url();
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::postgres::PgConnection::connect(&url),
    )
    .await;
    match attempt {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Some(url)
        }
        Ok(Err(e)) => {
            unreachable(test, "postgres", &url, &e.to_string());
            None
        }
        Err(_) => {
            unreachable(test, "postgres", &url, "timed out");
            None
        }
    }
}

/// Runs `body` with the URL of a fresh schema (`?schema=sa_test_<random>`),
/// then drops the schema, also when `body` panics. Skips when Postgres is
/// unreachable.
#[cfg(feature = "postgres")]
pub async fn with_schema<F, Fut>(test: &str, body: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = postgres(test).await else {
        return;
    };
    let schema = format!("sa_test_{}", random());
    let sep = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{sep}schema={schema}");
    let outcome = catching(body(schema_url, schema.clone())).await;
    drop_schema(&url, &schema).await;
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

#[cfg(feature = "postgres")]
/// Drops a schema and everything in it (errors ignored: cleanup).
pub async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::postgres::PgConnection::connect(url).await else {
        return;
    };
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}

/// The Redis URL if the server answers a PING; otherwise skips.
#[cfg(feature = "redis")]
pub async fn redis(test: &str) -> Option<String> {
    let url = redis_url();
    let attempt = tokio::time::timeout(Duration::from_secs(10), async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    })
    .await;
    match attempt {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => {
            unreachable(test, "redis", &url, &e.to_string());
            None
        }
        Err(_) => {
            unreachable(test, "redis", &url, "timed out");
            None
        }
    }
}

/// A random key prefix for one test.
pub fn redis_prefix() -> String {
    format!("sa-test-{}:", random())
}

/// Runs `body` with the Redis URL and a random key prefix, then deletes
/// every key under the prefix, also when `body` panics. Skips when Redis
/// is unreachable.
#[cfg(feature = "redis")]
pub async fn with_prefix<F, Fut>(test: &str, body: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = redis(test).await else {
        return;
    };
    let prefix = redis_prefix();
    let outcome = catching(body(url.clone(), prefix.clone())).await;
    delete_prefix(&url, &prefix).await;
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

/// Deletes the keys of a prefix (they sit in a hash tag: `{<prefix>...`).
#[cfg(feature = "redis")]
pub async fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{{{prefix}*");
    let mut cursor: u64 = 0;
    for _ in 0..100_000 {
        let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<()> =
                redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A Postgres schema dropped when the guard is dropped (from a thread of
/// its own, so any runtime may drop it).
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub struct SchemaGuard {
    url: String,
    schema: String,
}

#[cfg(feature = "postgres")]
impl SchemaGuard {
    /// A fresh schema name on the server at `url` (created by the store's
    /// migrations on first connect); returns the URL selecting it.
    pub fn fresh(url: &str) -> (String, SchemaGuard) {
        let schema = format!("sa_test_{}", random());
        let sep = if url.contains('?') { '&' } else { '?' };
        let schema_url = format!("{url}{sep}schema={schema}");
        let guard = SchemaGuard {
            url: url.to_owned(),
            schema,
        };
        (schema_url, guard)
    }
}

#[cfg(feature = "postgres")]
impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_schema(&url, &schema));
            }
        })
        .join();
    }
}

/// Redis keys of a prefix, deleted when the guard is dropped.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub struct PrefixGuard {
    url: String,
    prefix: String,
}

#[cfg(feature = "redis")]
impl PrefixGuard {
    /// A fresh key prefix on the Redis at `url`.
    pub fn fresh(url: &str) -> (String, PrefixGuard) {
        let prefix = redis_prefix();
        let guard = PrefixGuard {
            url: url.to_owned(),
            prefix: prefix.clone(),
        };
        (prefix, guard)
    }
}

#[cfg(feature = "redis")]
impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(delete_prefix(&url, &prefix));
            }
        })
        .join();
    }
}

thread_local! {
    static AT_THREAD_EXIT: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps `guard` until the current thread ends (each test runs on a thread
/// of its own), for cleanup a test cannot scope.
pub fn drop_at_thread_exit<T: 'static>(guard: T) {
    AT_THREAD_EXIT.with(|g| g.borrow_mut().push(Box::new(guard)));
}
