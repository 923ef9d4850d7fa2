//! A Redis Cluster connection: the slot map, one multiplexed connection per
//! primary, and redirections (`MOVED`, `ASK`, `TRYAGAIN`) followed.
//!
//! The driver's own cluster client follows an `ASK` by sending `ASKING` and
//! then the command as two separate requests on the node's multiplexed
//! connection; under concurrent load another request can slip between them,
//! so the flag goes to the wrong command and the redirected one bounces
//! (seen as errors and stalls while a slot migrates). Here `ASKING` and the
//! command travel as one pipeline, which the multiplexed connection writes
//! contiguously.
//!
//! Every command this backend sends names its keys in one hash tag, so it
//! is routed by the slot of its first key: the first argument, or the first
//! key of `EVALSHA`/`EVAL`. `SCRIPT ...` goes to every primary, `PING` and
//! other key-less commands to one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

/// Slots of a Redis Cluster.
const SLOTS: usize = 16_384;
/// Attempts of one command at most (redirections and retries; the time
/// bound, five response timeouts, usually comes first).
const MAX_ATTEMPTS: usize = 10_000;

/// A cluster connection (cheap to clone).
#[derive(Clone)]
pub(crate) struct ClusterConn {
    inner: Arc<Inner>,
}

struct Inner {
    /// `redis://` URLs of the seed nodes.
    seeds: Vec<String>,
    /// `redis://` URL of a node from its `host:port`, with the seeds' user,
    /// password and parameters: `(before, after)` the address.
    template: (String, String),
    config: AsyncConnectionConfig,
    /// How long one command may spend on retries (`TRYAGAIN`, a cluster
    /// being reconfigured) in all.
    patience: Duration,
    state: RwLock<State>,
    /// One topology refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The primary (`host:port`) of each slot, once known.
    slots: Vec<Option<Arc<str>>>,
    conns: HashMap<Arc<str>, MultiplexedConnection>,
}

/// Where a command goes.
enum Route {
    Slot(u16),
    AllPrimaries,
    AnyNode,
}

impl ClusterConn {
    /// A connection to the cluster the `seeds` (`redis://host:port...`
    /// URLs) belong to; nothing is connected before the first command.
    pub(crate) fn new(seeds: Vec<String>, connect: Duration, response: Duration) -> Self {
        let first = seeds.first().cloned().unwrap_or_default();
        let rest = first.strip_prefix("redis://").unwrap_or(&first);
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (format!("{a}@"), r),
            None => (String::new(), rest),
        };
        let query = rest.find(['/', '?']).map_or("", |i| &rest[i..]);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(response));
        ClusterConn {
            inner: Arc::new(Inner {
                seeds,
                template: (format!("redis://{auth}"), query.to_owned()),
                config,
                patience: response.saturating_mul(super::conn::TRYAGAIN_ROUNDS),
                state: RwLock::new(State::default()),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection to `addr` (`host:port`), opened if needed.
    async fn conn(&self, addr: &str) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.read().conns.get(addr) {
            return Ok(c.clone());
        }
        let (before, after) = &self.inner.template;
        let client = redis::Client::open(format!("{before}{addr}{after}"))?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.inner.config)
            .await?;
        self.write().conns.insert(addr.into(), conn.clone());
        Ok(conn)
    }

    /// Reads the slot map (`CLUSTER SLOTS`) from a known node or a seed.
    async fn refresh(&self) -> RedisResult<()> {
        let _one = self.inner.refreshing.lock().await;
        let mut candidates: Vec<String> = self.read().conns.keys().map(|a| a.to_string()).collect();
        for seed in &self.inner.seeds {
            let addr = seed.trim_start_matches("redis://");
            let addr = addr.rsplit_once('@').map_or(addr, |(_, a)| a);
            let addr = addr.split(['/', '?']).next().unwrap_or(addr);
            candidates.push(addr.to_owned());
        }
        let mut last = None;
        for addr in candidates {
            let attempt = async {
                let mut c = self.conn(&addr).await?;
                let v: Value = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut c)
                    .await?;
                parse_slots(&v)
            };
            match attempt.await {
                Ok(ranges) => {
                    let mut slots = vec![None; SLOTS];
                    for (start, end, addr) in ranges {
                        let addr: Arc<str> = addr.into();
                        for s in start..=end.min(SLOTS as u16 - 1) {
                            slots[usize::from(s)] = Some(addr.clone());
                        }
                    }
                    self.write().slots = slots;
                    return Ok(());
                }
                Err(e) => {
                    self.write().conns.remove(addr.as_str());
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((ErrorKind::Client, "no Redis Cluster node to ask for slots"))
        }))
    }

    /// The primary of `slot`, refreshing the map if it is not known.
    async fn owner(&self, slot: u16) -> RedisResult<Arc<str>> {
        if let Some(Some(a)) = self.read().slots.get(usize::from(slot)) {
            return Ok(a.clone());
        }
        self.refresh().await?;
        self.read()
            .slots
            .get(usize::from(slot))
            .cloned()
            .flatten()
            .ok_or_else(|| RedisError::from((ErrorKind::Client, "slot not served by the cluster")))
    }

    /// Every primary.
    async fn primaries(&self) -> RedisResult<Vec<Arc<str>>> {
        if self.read().slots.is_empty() {
            self.refresh().await?;
        }
        let mut all: Vec<Arc<str>> = self.read().slots.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        Ok(all)
    }

    async fn run(&self, cmd: &Cmd) -> RedisResult<Value> {
        match route(cmd) {
            Route::Slot(slot) => self.run_in_slot(slot, cmd).await,
            Route::AllPrimaries => {
                let mut last = Value::Nil;
                for addr in self.primaries().await? {
                    last = self.conn(&addr).await?.req_packed_command(cmd).await?;
                }
                Ok(last)
            }
            Route::AnyNode => {
                let addr = self.owner(0).await?;
                self.conn(&addr).await?.req_packed_command(cmd).await
            }
        }
    }

    /// Sends `cmd` to the primary of `slot`, following `MOVED` (the map is
    /// updated) and `ASK` (`ASKING` and the command in one pipeline), and
    /// retrying `TRYAGAIN` and `CLUSTERDOWN` every few milliseconds. These
    /// replies mean the command did not run, so sending it again is safe.
    /// A connection failure is returned as is: the command may have run.
    async fn run_in_slot(&self, slot: u16, cmd: &Cmd) -> RedisResult<Value> {
        let deadline = Instant::now() + self.inner.patience;
        let mut ask: Option<String> = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (addr, asking) = match ask.take() {
                Some(a) => (Arc::<str>::from(a), true),
                None => (self.owner(slot).await?, false),
            };
            let mut conn = self.conn(&addr).await?;
            let reply = if asking {
                let mut p = Pipeline::new();
                p.cmd("ASKING").ignore().add_command(cmd.clone());
                conn.req_packed_commands(&p, 1, 1)
                    .await
                    .map(|mut v| v.pop().unwrap_or(Value::Nil))
            } else {
                conn.req_packed_command(cmd).await
            };
            let reply = match reply {
                Ok(v) => v,
                Err(e) => {
                    if e.is_io_error() || e.is_connection_dropped() {
                        self.write().conns.remove(&*addr);
                    }
                    return Err(e);
                }
            };
            let e = match reply.extract_error() {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retry_more = attempts < MAX_ATTEMPTS && Instant::now() < deadline;
            match e.kind() {
                ErrorKind::Server(ServerErrorKind::Moved) if retry_more => {
                    if let Some((to, s)) = e.redirect_node() {
                        let mut st = self.write();
                        if let Some(entry) = st.slots.get_mut(usize::from(s)) {
                            *entry = Some(to.into());
                        }
                    }
                }
                ErrorKind::Server(ServerErrorKind::Ask) if retry_more => {
                    ask = e.redirect_node().map(|(to, _)| to.to_owned());
                }
                ErrorKind::Server(ServerErrorKind::TryAgain) if retry_more => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                ErrorKind::Server(ServerErrorKind::ClusterDown) if retry_more => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = self.refresh().await;
                }
                _ => return Err(e),
            }
        }
    }
}

impl ConnectionLike for ClusterConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.run(cmd))
    }

    /// A pipeline goes to the slot of its first keyed command, without
    /// redirections (this backend sends none on a cluster).
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let slot = cmd.cmd_iter().find_map(|c| match route(c) {
                Route::Slot(s) => Some(s),
                _ => None,
            });
            let addr = self.owner(slot.unwrap_or(0)).await?;
            self.conn(&addr)
                .await?
                .req_packed_commands(cmd, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The route of a command of this backend.
fn route(cmd: &Cmd) -> Route {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .take(4)
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect();
    let name = args
        .first()
        .map(|n| n.to_ascii_uppercase())
        .unwrap_or_default();
    let key = match name.as_slice() {
        b"SCRIPT" => return Route::AllPrimaries,
        b"PING" | b"TIME" | b"INFO" | b"CLUSTER" => return Route::AnyNode,
        b"EVALSHA" | b"EVAL" | b"EVALSHA_RO" | b"EVAL_RO" => {
            let keys = args
                .get(2)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u32>().ok());
            match keys {
                Some(n) if n > 0 => args.get(3),
                _ => return Route::AnyNode,
            }
        }
        _ => args.get(1),
    };
    match key {
        Some(k) => Route::Slot(slot_of(k)),
        None => Route::AnyNode,
    }
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag (the
/// text between the first `{` and the next `}`, if not empty) or of the
/// whole key, modulo 16384.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// `(start, end, "host:port")` of each range in a `CLUSTER SLOTS` reply.
fn parse_slots(v: &Value) -> RedisResult<Vec<(u16, u16, String)>> {
    let bad = || RedisError::from((ErrorKind::Parse, "unexpected CLUSTER SLOTS reply"));
    let Value::Array(ranges) = v else {
        return Err(bad());
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let int = |v: &Value| match v {
        Value::Int(i) => u16::try_from(*i).ok(),
        _ => None,
    };
    let mut out = Vec::new();
    for r in ranges {
        let Value::Array(r) = r else {
            return Err(bad());
        };
        let (Some(start), Some(end), Some(Value::Array(node))) =
            (r.first().and_then(int), r.get(1).and_then(int), r.get(2))
        else {
            return Err(bad());
        };
        let host = node.first().and_then(text).ok_or_else(bad)?;
        let port = node.get(1).and_then(int).ok_or_else(bad)?;
        out.push((start, end, format!("{host}:{port}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // Reference values from the Redis Cluster specification and
        // `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(
            slot_of(b"{user1000}.following"),
            slot_of(b"{user1000}.followers")
        );
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_eq!(slot_of(b"{}x"), crc16(b"{}x") % 16_384);
        assert_eq!(
            slot_of(b"{sa:rl:tenant:T}/client:A"),
            slot_of(b"{sa:rl:tenant:T}")
        );
    }

    #[test]
    fn commands_are_routed_by_their_first_key() {
        let slot = |c: &Cmd| match route(c) {
            Route::Slot(s) => Some(s),
            _ => None,
        };
        let key = slot_of(b"{t}");
        assert_eq!(slot(redis::cmd("GET").arg("{t}")), Some(key));
        assert_eq!(
            slot(
                redis::cmd("EVALSHA")
                    .arg("sha")
                    .arg(2)
                    .arg("{t}/a")
                    .arg("{t}")
            ),
            Some(key)
        );
        assert!(matches!(
            route(redis::cmd("EVALSHA").arg("sha").arg(0)),
            Route::AnyNode
        ));
        assert!(matches!(
            route(redis::cmd("SCRIPT").arg("LOAD").arg("x")),
            Route::AllPrimaries
        ));
        assert!(matches!(route(&redis::cmd("PING")), Route::AnyNode));
    }
}
