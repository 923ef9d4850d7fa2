//! Shutdown of a router that is being drained: readiness turns 503 and live
//! event streams end, so that a load balancer stops sending traffic and
//! the server's connections can close.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use tokio::sync::watch;

/// A shutdown switch shared by a server and its router
/// ([`RouterConfig::drain`](crate::RouterConfig::drain)).
///
/// Once [`start`](Drain::start)ed, `/health/ready` answers 503
/// `{"status":"draining"}` and every live `text/event-stream` response (the
/// audit tail) ends cleanly after the event it is sending. Clones share the
/// switch.
#[derive(Clone, Debug)]
pub struct Drain(watch::Sender<bool>);

impl Default for Drain {
    fn default() -> Self {
        Drain(watch::Sender::new(false))
    }
}

impl Drain {
    /// A switch that is off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns the switch on (idempotent).
    pub fn start(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`start`](Drain::start) was called.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the switch is on.
    pub async fn started(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close here.
        let _ = rx.wait_for(|on| *on).await;
    }
}

/// The drain layer: readiness is 503 while draining, and event streams end
/// when draining starts.
pub(crate) async fn layer(State(drain): State<Drain>, req: Request, next: Next) -> Response {
    let readiness = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .is_some_and(|p| p.as_str() == "/health/ready");
    if readiness && drain.is_draining() {
        let mut res = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "draining" })),
        )
            .into_response();
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let res = next.run(req).await;
    let streaming = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return res;
    }
    let (parts, body) = res.into_parts();
    let stream = body.into_data_stream().take_until(async move {
        drain.started().await;
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
