//! `tail-audit-log` (latest events, or the live stream over Server-Sent
//! Events) and `verify-audit`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::Value;

use super::agents::parse_duration;
use crate::Ctx;
use crate::cli::TailArgs;
use crate::client::query;
use crate::error::{CliError, Exit};
use crate::output::{print_json, s};

/// Events shown without `--follow` and `--limit`.
const DEFAULT_LATEST: usize = 20;
/// Page size of the audit listing (its maximum).
const AUDIT_PAGE: usize = 1000;
/// Longest wait between reconnections.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The chain an event belongs to (its tenant, or the system chain).
fn chain_of(event: &Value) -> Option<String> {
    event
        .get("tenant_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn seq_of(event: &Value) -> u64 {
    event.get("seq").and_then(Value::as_u64).unwrap_or(0)
}

/// `--since` as RFC 3339: a time, or a duration ago.
pub(crate) fn since_param(since: &str) -> Result<String, CliError> {
    if let Some(t) = sentryagent_core::Timestamp::parse_rfc3339(since) {
        return Ok(t.to_rfc3339());
    }
    let d = parse_duration(since).ok_or_else(|| {
        CliError::usage(format!(
            "--since {since:?} is neither an RFC 3339 time nor a duration (30s, 10m, 2h, 7d)"
        ))
    })?;
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(sentryagent_core::Timestamp::from_unix_secs(now.saturating_sub(secs)).to_rfc3339())
}

/// Filters and scope of one tail.
struct Filter {
    tenant: Option<String>,
    from: Option<String>,
    action: Option<String>,
    actor: Option<String>,
}

impl Filter {
    fn matches(&self, e: &Value) -> bool {
        self.action.as_deref().is_none_or(|a| s(e, "action") == a)
            && self.actor.as_deref().is_none_or(|a| s(e, "actor") == a)
    }

    /// The listing path for `chain` after `cursor`.
    fn listing(&self, chain: Option<&str>, cursor: Option<u64>) -> String {
        let cursor = cursor.map(|c| c.to_string());
        let limit = AUDIT_PAGE.to_string();
        format!(
            "/v1/audit{}",
            query(&[
                ("tenant_id", chain),
                ("from", self.from.as_deref()),
                ("action", self.action.as_deref()),
                ("actor", self.actor.as_deref()),
                ("cursor", cursor.as_deref()),
                ("limit", Some(&limit)),
            ])
        )
    }
}

/// Reads a chain's listing from `after` on, page by page, handing each
/// event to `each`.
async fn read_chain(
    ctx: &Ctx,
    f: &Filter,
    chain: Option<&str>,
    after: Option<u64>,
    mut each: impl FnMut(Value),
) -> Result<(), CliError> {
    let mut cursor = after;
    loop {
        let req = ctx.client.authed(Method::GET, &f.listing(chain, cursor))?;
        let page = ctx.client.json(req).await?;
        for e in page
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            each(e.clone());
        }
        match page
            .get("next_cursor")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<u64>().ok())
        {
            Some(c) if Some(c) != cursor => cursor = Some(c),
            _ => return Ok(()),
        }
    }
}

/// One event for people: time, action, actor, target, outcome.
fn print_event(ctx: &Ctx, e: &Value) {
    if ctx.ui.json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
        return;
    }
    let outcome = s(e, "outcome");
    let outcome = if outcome == "failure" {
        ctx.ui.yellow(outcome)
    } else {
        outcome.to_owned()
    };
    println!(
        "{}  {:<6} {:<28} {:<40} {:<38} {outcome}",
        ctx.ui.dim(s(e, "at")),
        seq_of(e),
        ctx.ui.bold(s(e, "action")),
        s(e, "actor"),
        s(e, "target"),
    );
}

/// `tail-audit-log`.
pub(crate) async fn tail(ctx: &mut Ctx, a: TailArgs) -> Result<(), CliError> {
    let f = Filter {
        tenant: ctx.settings.tenant.clone(),
        from: a.since.as_deref().map(since_param).transpose()?,
        action: a.action.clone(),
        actor: a.actor.clone(),
    };
    if a.follow {
        return follow(ctx, &f, a.limit).await;
    }
    let keep = a.limit.unwrap_or(DEFAULT_LATEST);
    let mut latest: VecDeque<Value> = VecDeque::with_capacity(keep.min(AUDIT_PAGE));
    let fetch = read_chain(ctx, &f, f.tenant.as_deref(), None, |e| {
        if latest.len() == keep {
            latest.pop_front();
        }
        if keep > 0 {
            latest.push_back(e);
        }
    });
    ctx.ui.spin("reading the audit trail", fetch).await?;
    if latest.is_empty() && !ctx.ui.json {
        eprintln!("No audit events");
    }
    for e in &latest {
        print_event(ctx, e);
    }
    Ok(())
}

/// One Server-Sent Event.
#[derive(Debug, Default)]
struct SseEvent {
    event: String,
    data: String,
    id: Option<String>,
}

/// An incremental `text/event-stream` parser.
#[derive(Debug, Default)]
struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let ev = std::mem::take(&mut self.current);
                if !ev.data.is_empty() || !ev.event.is_empty() {
                    out.push(ev);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (&*line, ""),
            };
            match field {
                "event" => value.clone_into(&mut self.current.event),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                "id" => self.current.id = Some(value.to_owned()),
                _ => {}
            }
        }
        out
    }
}

/// What the follower has printed: the last sequence number per chain.
struct Seen {
    last: HashMap<Option<String>, u64>,
    printed: usize,
    limit: Option<usize>,
}

impl Seen {
    /// Prints `e` unless already seen or filtered out; true when the limit
    /// is reached.
    fn offer(&mut self, ctx: &Ctx, f: &Filter, e: &Value) -> bool {
        let chain = chain_of(e);
        let seq = seq_of(e);
        let last = self.last.entry(chain).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        if f.matches(e) {
            print_event(ctx, e);
            self.printed += 1;
        }
        self.limit.is_some_and(|l| self.printed >= l)
    }

    /// `Last-Event-ID` (`<chain>:<seq>`) of the chain seen furthest, with
    /// that chain; none before any event was seen.
    fn last_event_id(&self) -> Option<(Option<String>, String)> {
        self.last
            .iter()
            .filter(|(_, s)| **s > 0)
            .max_by_key(|(_, s)| **s)
            .map(|(c, s)| {
                (
                    c.clone(),
                    format!("{}:{s}", c.as_deref().unwrap_or("system")),
                )
            })
    }
}

/// Why a stream ended.
enum End {
    /// The limit was reached.
    Done,
    /// The connection dropped; reconnect.
    Dropped(String),
}

/// Follows the live stream until Ctrl-C (exit 0) or `--limit` events,
/// reconnecting after a drop with `Last-Event-ID`: the server first replays
/// that chain's events after it. A stream of several chains (an operator
/// without a tenant) names one chain only, so the follower reads the other
/// chains' events after the last sequence number it printed from the
/// listing (and, with `--since`, the first time, the chain's events since
/// then). Stream events already printed are dropped: nothing is lost or
/// repeated.
async fn follow(ctx: &Ctx, f: &Filter, limit: Option<usize>) -> Result<(), CliError> {
    let mut seen = Seen {
        last: HashMap::new(),
        printed: 0,
        limit,
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut backoff = Duration::from_millis(500);
    let mut connected_once = false;
    let mut catch_up = f.from.is_some();
    if catch_up {
        // --since: the chain's events from then on come first.
        seen.last.insert(f.tenant.clone(), 0);
    }
    loop {
        let session = async {
            let path = format!(
                "/v1/audit/stream{}",
                query(&[("tenant_id", f.tenant.as_deref())])
            );
            let mut req = ctx.client.stream(&path)?;
            let mut resumed = None;
            if let Some((chain, id)) = seen.last_event_id() {
                req = req.header("last-event-id", id);
                resumed = Some(chain);
            }
            let res = ctx.client.send(req).await?;
            if !connected_once && !ctx.ui.json && ctx.ui.err_tty {
                eprintln!(
                    "Following the audit trail of {} (Ctrl-C to stop)",
                    ctx.client.base()
                );
            }
            connected_once = true;
            backoff = Duration::from_millis(500);
            // Events since the last one printed, from the listing.
            if catch_up {
                let chains: Vec<(Option<String>, u64)> = seen
                    .last
                    .iter()
                    .filter(|(c, _)| resumed.as_ref() != Some(*c))
                    .map(|(c, s)| (c.clone(), *s))
                    .collect();
                for (chain, after) in chains {
                    let mut events = Vec::new();
                    read_chain(ctx, f, chain.as_deref(), Some(after), |e| events.push(e)).await?;
                    for e in &events {
                        if seen.offer(ctx, f, e) {
                            return Ok(End::Done);
                        }
                    }
                }
            }
            catch_up = true;
            let mut parser = SseParser::default();
            let mut body = res.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => return Ok(End::Dropped(ctx.client.transport(&e).message)),
                };
                for ev in parser.feed(&chunk) {
                    match ev.event.as_str() {
                        "audit" => {
                            let Ok(e) = serde_json::from_str::<Value>(&ev.data) else {
                                continue;
                            };
                            if seen.offer(ctx, f, &e) {
                                return Ok(End::Done);
                            }
                        }
                        // Missed events: reconnect and read them from the listing.
                        "lagged" => {
                            return Ok(End::Dropped(format!("{} events missed", ev.data)));
                        }
                        _ => {}
                    }
                }
            }
            Ok::<End, CliError>(End::Dropped("the server closed the stream".into()))
        };
        let outcome = tokio::select! {
            r = session => r,
            _ = &mut ctrl_c => return Ok(()),
        };
        match outcome {
            Ok(End::Done) => return Ok(()),
            Ok(End::Dropped(why)) => {
                eprintln!("{} {why}; reconnecting", ctx.ui.warning_prefix());
            }
            // Until the first connection, errors end the command; then a
            // server that went away is waited for.
            Err(e) if !connected_once || e.exit != Exit::Unreachable => return Err(e),
            Err(e) => eprintln!("{} {}; retrying", ctx.ui.warning_prefix(), e.message),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// `verify-audit`.
pub(crate) async fn verify(ctx: &mut Ctx) -> Result<(), CliError> {
    let path = format!(
        "/v1/audit/verify{}",
        query(&[("tenant_id", ctx.settings.tenant.as_deref())])
    );
    let req = ctx.client.authed(Method::GET, &path)?;
    let out = ctx
        .ui
        .spin("verifying the audit chain", ctx.client.json(req))
        .await?;
    if ctx.ui.json {
        print_json(&out);
        return Ok(());
    }
    let chain = match &ctx.settings.tenant {
        Some(t) => format!("of tenant {t}"),
        None => "".to_owned(),
    };
    match out.get("head").filter(|h| !h.is_null()) {
        Some(h) => ctx.ui.done(
            &format!(
                "Audit chain {chain} verified: {} events, head hash {}",
                h.get("seq").and_then(Value::as_u64).unwrap_or(0),
                s(h, "hash")
            )
            .replace("  ", " "),
        ),
        None => ctx
            .ui
            .done(&format!("Audit chain {chain} is empty").replace("  ", " ")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_handles_split_chunks_comments_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keep-alive\n\nevent: au").is_empty());
        let evs = p.feed(b"dit\r\ndata: {\"seq\":1}\r\nid: 7\r\n\r\nevent: lagged\ndata: 3\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event, "audit");
        assert_eq!(evs[0].data, "{\"seq\":1}");
        assert_eq!(evs[0].id.as_deref(), Some("7"));
        assert_eq!(evs[1].event, "lagged");
        assert_eq!(evs[1].data, "3");
    }

    #[test]
    fn since_accepts_times_and_durations() {
        assert_eq!(
            since_param("2026-01-02T03:04:05Z").unwrap(),
            "2026-01-02T03:04:05Z"
        );
        assert!(since_param("10m").is_ok());
        assert_eq!(since_param("soon").unwrap_err().exit, Exit::Usage);
    }
}
