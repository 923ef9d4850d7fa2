//! Fast failure during a Postgres outage.
//!
//! Without it, every operation during an outage waits for the pool's
//! `acquire_timeout` (the pool keeps trying to connect) before failing. The
//! tracker keeps one flag, *down*, read by every operation before it starts:
//! while it is set, operations fail at once with [`Error::Unavailable`]
//! (HTTP 503 with `Retry-After`).
//!
//! Only the probe sets and clears the flag. The probe is one background task
//! (never more than one at a time) that opens a connection of its own,
//! outside the pool, and runs `SELECT 1`, each attempt bounded by
//! [`PROBE_TIMEOUT`]:
//!
//! - it starts when an operation fails with a connection-class error (I/O,
//!   TLS, protocol, pool timeout, SQLSTATE class 08, a server shutting down
//!   or starting: 57P01, 57P02, 57P03), or when an operation has waited more
//!   than [`SUSPECT_AFTER`] (at most once per [`SUSPECT_COOLDOWN`]), since an
//!   operation waiting for a connection learns nothing before the acquire
//!   timeout;
//! - when an attempt fails the same way (the connection refused, reset or
//!   closed, an error of class 08 or 57P0x), the database is marked down:
//!   operations waiting at that moment fail at once, new ones do not start;
//!   the probe tries again every [`PROBE_EVERY`];
//! - when Postgres answers (the query, or any error of the database itself,
//!   such as too many connections), the mark is cleared and the probe ends;
//! - an attempt that only runs out of time proves nothing (an overloaded
//!   host is slow, not down): it never marks a database down, it only keeps
//!   one marked down; the probe ends and operations wait for the pool as
//!   they would without the tracker.
//!
//! A probe that succeeds at once is a false alarm (a slow query, one broken
//! connection): nothing was refused. Nothing here touches the commit path:
//! an operation cut short by the mark answers 503, so it was never
//! acknowledged; one that committed before answered as usual.

use std::borrow::Cow;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use sentryagent_core::Error;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::watch;

/// Time between two probe attempts while the database is down.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);
/// The bound of one probe attempt (connect and `SELECT 1`).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// An operation still waiting after this long starts a probe.
pub(crate) const SUSPECT_AFTER: Duration = Duration::from_millis(500);
/// After a probe found the database up, slow operations start no new probe
/// for this long (connection-class errors still do).
pub(crate) const SUSPECT_COOLDOWN: Duration = Duration::from_secs(5);

/// What one probe attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Postgres answered.
    Up,
    /// The connection failed (refused, reset, closed, class 08 or 57P0x).
    Unreachable,
    /// Neither within [`PROBE_TIMEOUT`].
    NoAnswer,
}

/// The outage state shared by every clone of a pool's `Db`.
pub(crate) struct Outage {
    /// `true` while the database is marked down.
    down: watch::Sender<bool>,
    /// Whether a probe task is running.
    probing: AtomicBool,
    /// When the last probe found the database up.
    last_up: Mutex<Option<Instant>>,
    /// Where the probe connects (the pool's options).
    connect: PgConnectOptions,
}

impl std::fmt::Debug for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outage")
            .field("down", &self.is_down())
            .field("probing", &self.probing.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Whether `e` says the database cannot be reached (rather than that it
/// refused this statement).
pub(crate) fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().map(Cow::into_owned).unwrap_or_default();
            code.starts_with("08") || matches!(code.as_str(), "57P01" | "57P02" | "57P03")
        }
        _ => false,
    }
}

impl Outage {
    pub(crate) fn new(connect: PgConnectOptions) -> Arc<Outage> {
        Arc::new(Outage {
            down: watch::channel(false).0,
            probing: AtomicBool::new(false),
            last_up: Mutex::new(None),
            connect,
        })
    }

    /// Whether the database is marked down.
    pub(crate) fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// The error of an operation refused because the database is down.
    pub(crate) fn refusal() -> Error {
        Error::Unavailable {
            message: "postgres: the database cannot be reached (outage detected; \
                      retrying in the background)"
                .into(),
            source: None,
        }
    }

    /// An operation failed with `e`: a connection-class error starts a
    /// probe.
    pub(crate) fn observe(self: &Arc<Self>, e: &sqlx::Error) {
        if is_connection_error(e) {
            self.start_probe();
        }
    }

    /// Runs `op` unless the database is down, cutting it short (with `None`)
    /// if the database is marked down while it waits. An operation waiting
    /// longer than [`SUSPECT_AFTER`] starts a probe.
    pub(crate) async fn guard<T>(self: &Arc<Self>, op: impl Future<Output = T>) -> Option<T> {
        if self.is_down() {
            return None;
        }
        let mut op = pin!(op);
        let mut watch = pin!(self.until_down());
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = op.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if watch.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Resolves once the database is marked down; after [`SUSPECT_AFTER`]
    /// of waiting it starts a probe (unless one found the database up
    /// within [`SUSPECT_COOLDOWN`]).
    async fn until_down(self: &Arc<Self>) {
        let mut rx = self.down.subscribe();
        tokio::time::sleep(SUSPECT_AFTER).await;
        let recent = self
            .last_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < SUSPECT_COOLDOWN);
        if !recent {
            self.start_probe();
        }
        if rx.wait_for(|down| *down).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Starts the probe task unless one runs (or no Tokio runtime is
    /// current: then nothing is ever marked down).
    fn start_probe(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let me = Arc::clone(self);
        rt.spawn(async move { me.probe().await });
    }

    /// Probes until Postgres answers: marks the database down after each
    /// attempt that could not connect, clears the mark and ends when it
    /// answers (or when an attempt of a database not marked down only ran
    /// out of time).
    async fn probe(self: Arc<Self>) {
        loop {
            let found = self.attempt().await;
            if found == Probe::Up || (found == Probe::NoAnswer && !self.is_down()) {
                *self.last_up.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                // Stop probing before clearing the mark: an error seen in
                // between starts a new probe rather than being lost.
                self.probing.store(false, Ordering::Release);
                self.down
                    .send_if_modified(|down| std::mem::replace(down, false));
                return;
            }
            self.down
                .send_if_modified(|down| !std::mem::replace(down, true));
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// One attempt: a connection of its own and `SELECT 1`, within
    /// [`PROBE_TIMEOUT`]. Any answer of the database itself counts as up.
    async fn attempt(&self) -> Probe {
        let attempt = async {
            let mut conn = PgConnection::connect_with(&self.connect).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            let _ = conn.close().await;
            Ok::<(), sqlx::Error>(())
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(())) => Probe::Up,
            Ok(Err(e)) if is_connection_error(&e) => Probe::Unreachable,
            Ok(Err(_)) => Probe::Up,
            Err(_) => Probe::NoAnswer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options of a server that is not there (nothing listens on port 1).
    fn nowhere() -> PgConnectOptions {
        "postgres://postgres@127.0.0.1:1/test".parse().unwrap()
    }

    #[test]
    fn connection_errors_are_told_from_statement_errors() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_connection_error(&io));
        assert!(is_connection_error(&sqlx::Error::PoolTimedOut));
        assert!(is_connection_error(&sqlx::Error::Protocol("eof".into())));
        assert!(!is_connection_error(&sqlx::Error::RowNotFound));
        assert!(!is_connection_error(&sqlx::Error::PoolClosed));
        assert!(!is_connection_error(&sqlx::Error::ColumnNotFound(
            "x".into()
        )));
    }

    #[tokio::test]
    async fn an_unreachable_database_is_marked_down_and_refused_at_once() {
        let outage = Outage::new(nowhere());
        assert!(!outage.is_down());
        outage.observe(&sqlx::Error::PoolTimedOut);
        let mut rx = outage.down.subscribe();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|d| *d))
            .await
            .expect("marked down")
            .unwrap();
        assert!(outage.is_down());
        // While down, an operation does not start.
        let ran = Arc::new(AtomicBool::new(false));
        let r = outage
            .guard(async {
                ran.store(true, Ordering::SeqCst);
            })
            .await;
        assert!(r.is_none());
        assert!(!ran.load(Ordering::SeqCst));
        assert!(matches!(Outage::refusal(), Error::Unavailable { .. }));
    }

    #[tokio::test]
    async fn a_waiting_operation_is_cut_short_once_the_database_is_down() {
        let outage = Outage::new(nowhere());
        // An operation that would wait for ever: after SUSPECT_AFTER it
        // starts a probe, which finds nothing listening.
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            outage.guard(std::future::pending::<()>()),
        )
        .await
        .expect("cut short, not left waiting");
        assert!(r.is_none());
        assert!(outage.is_down());
    }

    #[tokio::test]
    async fn statement_errors_start_no_probe_and_fast_operations_pass() {
        let outage = Outage::new(nowhere());
        outage.observe(&sqlx::Error::RowNotFound);
        assert!(!outage.probing.load(Ordering::SeqCst));
        assert_eq!(outage.guard(async { 7 }).await, Some(7));
        assert!(!outage.is_down());
    }
}
