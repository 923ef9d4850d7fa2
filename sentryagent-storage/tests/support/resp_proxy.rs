//! A TCP proxy in front of Redis that counts the commands clients send
//! (top-level RESP arrays), by command name.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Commands counted so far, by upper-case name.
#[derive(Clone, Default)]
pub(crate) struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counts {
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }

    fn add(&self, name: String) {
        *self.0.lock().unwrap().entry(name).or_default() += 1;
    }
}

/// The commands in `after` not yet in `before`, by name, and their total.
pub(crate) fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> (BTreeMap<String, u64>, u64) {
    let mut d = BTreeMap::new();
    for (k, v) in after {
        let n = v - before.get(k).copied().unwrap_or(0);
        if n > 0 {
            d.insert(k.clone(), n);
        }
    }
    let total = d.values().sum();
    (d, total)
}

/// Starts the proxy on a free loopback port in front of `upstream`
/// (`host:port`); returns its address and the counts.
pub(crate) async fn start(upstream: String) -> (String, Counts) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let counts = Counts::default();
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::spawn(relay(client, server, c.clone()));
        }
    });
    (addr, counts)
}

async fn relay(client: TcpStream, server: TcpStream, counts: Counts) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        while let Some((name, used)) = parse_command(&pending[at..]) {
            counts.add(name);
            at += used;
        }
        pending.drain(..at);
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    down.abort();
}

fn line(b: &[u8]) -> Option<(&[u8], usize)> {
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    Some((&b[..end], end + 2))
}

/// One complete command at the start of `b`: its name and its length in
/// bytes; `None` until it is complete.
fn parse_command(b: &[u8]) -> Option<(String, usize)> {
    if b.first()? != &b'*' {
        // An inline command (not sent by the driver): one line.
        let (l, used) = line(b)?;
        let name = String::from_utf8_lossy(l)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_uppercase();
        return Some((name, used));
    }
    let (l, mut at) = line(&b[1..])?;
    at += 1;
    let n: usize = std::str::from_utf8(l).ok()?.parse().ok()?;
    let mut name = String::new();
    for i in 0..n {
        if b.get(at)? != &b'$' {
            return None;
        }
        let (l, used) = line(&b[at + 1..])?;
        let len: usize = std::str::from_utf8(l).ok()?.parse().ok()?;
        let start = at + 1 + used;
        if b.len() < start + len + 2 {
            return None;
        }
        if i == 0 {
            name = String::from_utf8_lossy(&b[start..start + len]).to_uppercase();
        }
        at = start + len + 2;
    }
    Some((name, at))
}

#[test]
fn parses_commands_split_anywhere() {
    let cmd = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
    assert_eq!(parse_command(cmd), Some(("GET".into(), cmd.len())));
    for cut in 0..cmd.len() {
        assert_eq!(parse_command(&cmd[..cut]), None);
    }
}
