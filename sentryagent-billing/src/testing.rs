//! [`FakeStripe`]: a loopback fake of the Stripe endpoints this crate uses,
//! for tests (feature `testing`).
//!
//! It listens on `127.0.0.1` on a free port and implements
//! `POST /v1/checkout/sessions`, `POST /v1/billing_portal/sessions` and
//! `POST /v1/billing/meter_events` strictly:
//! - `Authorization: Bearer <key>` must carry its secret key (else 401);
//! - the body must be `application/x-www-form-urlencoded`, and every
//!   parameter is checked as Stripe would (unknown parameters, missing
//!   required ones, unknown prices or customers: 400 with a Stripe-shaped
//!   error body);
//! - an `Idempotency-Key` is required (Stripe does not require one, but this
//!   crate always sends one). A replay with the same key and body gets the
//!   first answer again and creates nothing; the same key with another body
//!   is a 400 `idempotency_error`;
//! - meter events are deduplicated by `identifier` and summed per event name
//!   and customer.
//!
//! Every request is recorded ([`FakeStripe::requests`]). Failures can be
//! injected: [`FakeStripe::fail_next`] answers the next requests with an
//! error status before doing anything, [`FakeStripe::lose_next_responses`]
//! does the work and then answers 500 (a response lost on the way back, the
//! case that double-counts without idempotency).
//!
//! It also plays Stripe's side of the webhooks: [`FakeStripe::complete_checkout`],
//! [`update_subscription`](FakeStripe::update_subscription),
//! [`delete_subscription`](FakeStripe::delete_subscription),
//! [`pay_invoice`](FakeStripe::pay_invoice),
//! [`fail_invoice`](FakeStripe::fail_invoice) and [`event`](FakeStripe::event)
//! move its state and return a [`SignedWebhook`] (event JSON in the shape of
//! API version `2025-03-31.basil`, signed `t=...,v1=...` with its webhook
//! secret), which a test applies directly or [`deliver`](FakeStripe::deliver)s
//! to a URL.
//!
//! ```
//! use sentryagent_billing::testing::FakeStripe;
//! use sentryagent_billing::StripeBilling;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fake = FakeStripe::start().await.unwrap();
//! let billing = StripeBilling::new(fake.config()).unwrap();
//! # let _ = billing;
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sentryagent_core::{Tier, Timestamp};
use serde_json::{Value, json};

use crate::config::{PriceIds, RetryPolicy, StripeConfig};
use crate::webhook::{SIGNATURE_HEADER, signature_header};

/// Secret key the fake accepts by default.
pub const FAKE_SECRET_KEY: &str = "sk_test_fake_0123456789abcdef";
/// Webhook signing secret the fake signs with by default.
pub const FAKE_WEBHOOK_SECRET: &str = "whsec_fake_0123456789abcdef";
/// Pro price id of the fake.
pub const FAKE_PRICE_PRO: &str = "price_fake_pro";
/// Enterprise price id of the fake.
pub const FAKE_PRICE_ENTERPRISE: &str = "price_fake_enterprise";

/// Length of a subscription period in the fake.
const PERIOD: Duration = Duration::from_secs(30 * 24 * 3600);

/// A request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Path, such as `/v1/checkout/sessions`.
    pub path: String,
    /// Whether `Authorization` carried the fake's key.
    pub authorized: bool,
    /// `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// `Stripe-Version` header.
    pub stripe_version: Option<String>,
    /// Decoded form parameters, in order.
    pub form: Vec<(String, String)>,
    /// Status answered.
    pub status: u16,
    /// Whether the answer was an idempotent replay.
    pub replayed: bool,
}

impl RecordedRequest {
    /// The first value of a form parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A Checkout Session the fake created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCheckoutSession {
    /// `cs_test_...`.
    pub id: String,
    /// Checkout URL handed out.
    pub url: String,
    /// The price bought.
    pub price: String,
    /// `client_reference_id`.
    pub client_reference_id: String,
    /// `metadata[...]`.
    pub metadata: BTreeMap<String, String>,
    /// `subscription_data[metadata][...]`.
    pub subscription_metadata: BTreeMap<String, String>,
    /// `customer`, given or created on completion.
    pub customer: Option<String>,
    /// Subscription created on completion.
    pub subscription: Option<String>,
    /// Whether it was completed.
    pub completed: bool,
}

/// A subscription the fake holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSubscription {
    /// `sub_...`.
    pub id: String,
    /// Its customer.
    pub customer: String,
    /// Stripe status (`active`, `past_due`, `canceled`...).
    pub status: String,
    /// Price of its one item.
    pub price: String,
    /// Metadata (from `subscription_data[metadata]`).
    pub metadata: BTreeMap<String, String>,
    /// End of the current period.
    pub current_period_end: i64,
}

/// A meter event the fake accepted (first of its identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMeterEvent {
    /// `event_name`.
    pub event_name: String,
    /// `payload[stripe_customer_id]`.
    pub customer: String,
    /// `payload[value]`.
    pub value: u64,
    /// `identifier`.
    pub identifier: String,
    /// `timestamp`.
    pub timestamp: i64,
}

/// A signed webhook delivery: the `Stripe-Signature` header and raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedWebhook {
    /// Event id (`evt_...`).
    pub event_id: String,
    /// `Stripe-Signature` value.
    pub header: String,
    /// Raw JSON body.
    pub body: Vec<u8>,
}

/// A misuse of the fake's webhook builders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FakeError {
    /// No such checkout session or subscription in the fake.
    #[error("the fake Stripe has no {0}")]
    Unknown(String),
    /// The checkout session was already completed.
    #[error("checkout session {0} is already completed")]
    AlreadyCompleted(String),
}

#[derive(Debug, Default)]
struct Stored {
    path: String,
    body: Vec<u8>,
    status: u16,
    response: String,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    idempotent: HashMap<String, Stored>,
    fail_next: VecDeque<u16>,
    lose_next: usize,
    sessions: BTreeMap<String, FakeCheckoutSession>,
    customers: Vec<String>,
    subscriptions: BTreeMap<String, FakeSubscription>,
    meter_events: Vec<FakeMeterEvent>,
    meter_duplicates: usize,
    seq: u64,
}

impl Inner {
    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}_test_{:06}", self.seq)
    }
}

#[derive(Debug, Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    secret_key: Arc<str>,
    prices: Arc<PriceIds>,
    base: Arc<str>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fake Stripe server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeStripe {
    shared: Shared,
    addr: SocketAddr,
    webhook_secret: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn stripe_error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> (u16, String) {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    (status.as_u16(), json!({ "error": error }).to_string())
}

fn invalid(code: Option<&str>, message: impl AsRef<str>) -> (u16, String) {
    stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        code,
        message.as_ref(),
    )
}

fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A plain page standing in for Stripe's hosted checkout or portal.
fn hosted_page(what: &str, id: &str) -> Response {
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>Fake Stripe {what}</title></head>\
         <body><h1>Fake Stripe {what}</h1><p id=\"session\">{id}</p></body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && s.len() > 8
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Checkout,
    Portal,
    MeterEvent,
}

impl FakeStripe {
    /// Starts a fake with the default key, webhook secret and prices.
    pub async fn start() -> std::io::Result<FakeStripe> {
        Self::start_with(FAKE_SECRET_KEY, FAKE_WEBHOOK_SECRET).await
    }

    /// Starts a fake that accepts `secret_key` and signs webhooks with
    /// `webhook_secret`.
    pub async fn start_with(secret_key: &str, webhook_secret: &str) -> std::io::Result<FakeStripe> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            inner: Arc::default(),
            secret_key: secret_key.into(),
            prices: Arc::new(PriceIds {
                pro: FAKE_PRICE_PRO.into(),
                enterprise: Some(FAKE_PRICE_ENTERPRISE.into()),
            }),
            base: format!("http://{addr}").into(),
        };
        let route = |endpoint: Endpoint| {
            post(
                move |State(s): State<Shared>, headers: HeaderMap, body: Bytes| async move {
                    handle(s, endpoint, headers, body)
                },
            )
        };
        let app = Router::new()
            .route("/v1/checkout/sessions", route(Endpoint::Checkout))
            .route("/v1/billing_portal/sessions", route(Endpoint::Portal))
            .route("/v1/billing/meter_events", route(Endpoint::MeterEvent))
            // The hosted pages the session URLs point at, as a browser
            // lands on them.
            .route(
                "/checkout/{id}",
                get(|Path(id): Path<String>| async move { hosted_page("Checkout", &id) }),
            )
            .route(
                "/portal/{id}",
                get(|Path(id): Path<String>| async move { hosted_page("Customer portal", &id) }),
            )
            .fallback(|| async {
                let (status, body) = stripe_error(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    None,
                    "Unrecognized request URL. The fake implements only the endpoints sentryagent-billing uses.",
                );
                json_response(status, body)
            })
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeStripe {
            shared,
            addr,
            webhook_secret: webhook_secret.to_owned(),
            server,
        })
    }

    /// The API base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        self.shared.base.to_string()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook signing secret.
    pub fn webhook_secret(&self) -> &str {
        &self.webhook_secret
    }

    /// A [`StripeConfig`] pointing at this fake, with its key, secret and
    /// prices, example URLs and quick retries (1 ms base delay).
    pub fn config(&self) -> StripeConfig {
        let mut c = StripeConfig::new(
            self.shared.secret_key.to_string(),
            vec![self.webhook_secret.clone()],
            PriceIds::clone(&self.shared.prices),
            "https://app.example/billing/success?session={CHECKOUT_SESSION_ID}",
            "https://app.example/billing/cancel",
        );
        c.portal_return_url = Some("https://app.example/billing".into());
        c.api_base = self.base_url();
        c.retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
            request_timeout: Duration::from_secs(10),
            concurrency: 4,
        };
        c
    }

    /// Answers the next `n` requests with `status` (429 or 5xx make sense)
    /// before doing anything.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut s = self.shared.lock();
        s.fail_next.extend(std::iter::repeat_n(status, n));
    }

    /// Forgets the failures still queued by [`fail_next`](Self::fail_next)
    /// and [`lose_next_responses`](Self::lose_next_responses).
    pub fn clear_failures(&self) {
        let mut s = self.shared.lock();
        s.fail_next.clear();
        s.lose_next = 0;
    }

    /// Does the work of the next `n` requests, then answers them with 500 as
    /// if the response had been lost.
    pub fn lose_next_responses(&self, n: usize) {
        self.shared.lock().lose_next += n;
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests received on `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Checkout Sessions created.
    pub fn checkout_sessions(&self) -> Vec<FakeCheckoutSession> {
        self.shared.lock().sessions.values().cloned().collect()
    }

    /// Subscriptions.
    pub fn subscriptions(&self) -> Vec<FakeSubscription> {
        self.shared.lock().subscriptions.values().cloned().collect()
    }

    /// A subscription by id.
    pub fn subscription(&self, id: &str) -> Option<FakeSubscription> {
        self.shared.lock().subscriptions.get(id).cloned()
    }

    /// Creates a customer (as if made in the dashboard); returns its id.
    pub fn create_customer(&self) -> String {
        let mut s = self.shared.lock();
        let id = s.next_id("cus");
        s.customers.push(id.clone());
        id
    }

    /// Meter events accepted (one per identifier).
    pub fn meter_events(&self) -> Vec<FakeMeterEvent> {
        self.shared.lock().meter_events.clone()
    }

    /// Meter events received again with an identifier already accepted.
    pub fn meter_duplicates(&self) -> usize {
        self.shared.lock().meter_duplicates
    }

    /// Sum of accepted meter event values for an event name and customer.
    pub fn meter_total(&self, event_name: &str, customer: &str) -> u64 {
        self.shared
            .lock()
            .meter_events
            .iter()
            .filter(|e| e.event_name == event_name && e.customer == customer)
            .map(|e| e.value)
            .sum()
    }

    // ---- webhooks ----

    /// Signs an event body at `at` with the fake's webhook secret.
    pub fn sign(&self, body: &[u8], at: Timestamp) -> String {
        signature_header(&self.webhook_secret, at.unix_secs(), body)
    }

    /// An event of any type around `object`, created and signed at `at`.
    pub fn event(&self, event_type: &str, object: Value, at: Timestamp) -> SignedWebhook {
        let id = self.shared.lock().next_id("evt");
        let body = json!({
            "id": id,
            "object": "event",
            "api_version": crate::config::DEFAULT_API_VERSION,
            "created": at.unix_secs(),
            "livemode": false,
            "pending_webhooks": 1,
            "type": event_type,
            "data": {"object": object},
        })
        .to_string()
        .into_bytes();
        SignedWebhook {
            event_id: id,
            header: self.sign(&body, at),
            body,
        }
    }

    /// Completes a Checkout Session as a paying customer would: creates the
    /// customer (unless the session named one) and an active subscription,
    /// and returns `checkout.session.completed`.
    pub fn complete_checkout(
        &self,
        session_id: &str,
        at: Timestamp,
    ) -> Result<SignedWebhook, FakeError> {
        let object = {
            let mut s = self.shared.lock();
            let session = s
                .sessions
                .get(session_id)
                .cloned()
                .ok_or_else(|| FakeError::Unknown(format!("checkout session {session_id}")))?;
            if session.completed {
                return Err(FakeError::AlreadyCompleted(session_id.to_owned()));
            }
            let customer = match &session.customer {
                Some(c) => c.clone(),
                None => {
                    let c = s.next_id("cus");
                    s.customers.push(c.clone());
                    c
                }
            };
            let sub_id = s.next_id("sub");
            s.subscriptions.insert(
                sub_id.clone(),
                FakeSubscription {
                    id: sub_id.clone(),
                    customer: customer.clone(),
                    status: "active".into(),
                    price: session.price.clone(),
                    metadata: session.subscription_metadata.clone(),
                    current_period_end: at.plus(PERIOD).unix_secs(),
                },
            );
            let entry = s.sessions.entry(session_id.to_owned()).or_insert(session);
            entry.completed = true;
            entry.customer = Some(customer.clone());
            entry.subscription = Some(sub_id.clone());
            json!({
                "id": entry.id,
                "object": "checkout.session",
                "mode": "subscription",
                "status": "complete",
                "payment_status": "paid",
                "client_reference_id": entry.client_reference_id,
                "customer": customer,
                "subscription": sub_id,
                "metadata": entry.metadata,
                "url": null,
            })
        };
        Ok(self.event("checkout.session.completed", object, at))
    }

    fn subscription_object(sub: &FakeSubscription) -> Value {
        json!({
            "id": sub.id,
            "object": "subscription",
            "customer": sub.customer,
            "status": sub.status,
            "metadata": sub.metadata,
            "cancel_at_period_end": false,
            "items": {"object": "list", "data": [{
                "id": format!("si_{}", sub.id),
                "object": "subscription_item",
                "price": {"id": sub.price, "object": "price"},
                "quantity": 1,
                "current_period_end": sub.current_period_end,
            }]},
        })
    }

    fn with_subscription<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut FakeSubscription) -> T,
    ) -> Result<T, FakeError> {
        let mut s = self.shared.lock();
        let sub = s
            .subscriptions
            .get_mut(id)
            .ok_or_else(|| FakeError::Unknown(format!("subscription {id}")))?;
        Ok(f(sub))
    }

    /// Sets a subscription's status (and, with `tier`, its price) and
    /// returns `customer.subscription.updated`.
    pub fn update_subscription(
        &self,
        id: &str,
        status: &str,
        tier: Option<Tier>,
        at: Timestamp,
    ) -> Result<SignedWebhook, FakeError> {
        let prices = self.shared.prices.clone();
        let object = self.with_subscription(id, |sub| {
            sub.status = status.to_owned();
            if let Some(p) = tier.and_then(|t| prices.price_of(t)) {
                sub.price = p.to_owned();
            }
            Self::subscription_object(sub)
        })?;
        Ok(self.event("customer.subscription.updated", object, at))
    }

    /// Cancels a subscription now; returns `customer.subscription.deleted`.
    pub fn delete_subscription(&self, id: &str, at: Timestamp) -> Result<SignedWebhook, FakeError> {
        let object = self.with_subscription(id, |sub| {
            sub.status = "canceled".into();
            Self::subscription_object(sub)
        })?;
        Ok(self.event("customer.subscription.deleted", object, at))
    }

    fn invoice_object(&self, sub: &FakeSubscription, paid: bool) -> Value {
        let id = self.shared.lock().next_id("in");
        json!({
            "id": id,
            "object": "invoice",
            "customer": sub.customer,
            "status": if paid { "paid" } else { "open" },
            "billing_reason": "subscription_cycle",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": sub.id, "metadata": sub.metadata},
            },
            "lines": {"object": "list", "data": [{
                "object": "line_item",
                "pricing": {"price_details": {"price": sub.price}},
                "period": {
                    "start": sub.current_period_end - PERIOD.as_secs() as i64,
                    "end": sub.current_period_end,
                },
            }]},
        })
    }

    /// Renews a subscription for one period (status active) and returns
    /// `invoice.payment_succeeded`.
    pub fn pay_invoice(
        &self,
        subscription: &str,
        at: Timestamp,
    ) -> Result<SignedWebhook, FakeError> {
        let sub = self.with_subscription(subscription, |sub| {
            sub.status = "active".into();
            sub.current_period_end += PERIOD.as_secs() as i64;
            sub.clone()
        })?;
        let object = self.invoice_object(&sub, true);
        Ok(self.event("invoice.payment_succeeded", object, at))
    }

    /// Marks a renewal payment failed (status past_due) and returns
    /// `invoice.payment_failed`.
    pub fn fail_invoice(
        &self,
        subscription: &str,
        at: Timestamp,
    ) -> Result<SignedWebhook, FakeError> {
        let sub = self.with_subscription(subscription, |sub| {
            sub.status = "past_due".into();
            sub.clone()
        })?;
        let object = self.invoice_object(&sub, false);
        Ok(self.event("invoice.payment_failed", object, at))
    }

    /// POSTs a webhook to `url` as Stripe would (`Stripe-Signature`, JSON
    /// body); returns the status and body of the answer.
    pub async fn deliver(
        &self,
        url: &str,
        webhook: &SignedWebhook,
    ) -> sentryagent_core::Result<(u16, String)> {
        let client = crate::stripe::http_client(Duration::from_secs(10))?;
        let fail = |e: reqwest::Error| sentryagent_core::Error::unavailable("webhook delivery", e);
        let resp = client
            .post(url)
            .header(SIGNATURE_HEADER, &webhook.header)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(webhook.body.clone())
            .send()
            .await
            .map_err(fail)?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(fail)?))
    }
}

fn handle(s: Shared, endpoint: Endpoint, headers: HeaderMap, body: Bytes) -> Response {
    let path = match endpoint {
        Endpoint::Checkout => "/v1/checkout/sessions",
        Endpoint::Portal => "/v1/billing_portal/sessions",
        Endpoint::MeterEvent => "/v1/billing/meter_events",
    };
    let header_str = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorized =
        header_str("authorization").is_some_and(|v| v == format!("Bearer {}", s.secret_key));
    let idempotency_key = header_str("idempotency-key");
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let mut rec = RecordedRequest {
        path: path.to_owned(),
        authorized,
        idempotency_key: idempotency_key.clone(),
        stripe_version: header_str("stripe-version"),
        form: form.clone(),
        status: 0,
        replayed: false,
    };
    let mut inner = s.lock();
    let (status, response) = 'answer: {
        if !authorized {
            break 'answer stripe_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "Invalid API Key provided: sk_test_****",
            );
        }
        if let Some(status) = inner.fail_next.pop_front() {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = if status == StatusCode::TOO_MANY_REQUESTS {
                ("rate_limit_error", Some("rate_limit"))
            } else {
                ("api_error", None)
            };
            break 'answer stripe_error(status, kind.0, kind.1, "injected failure");
        }
        let form_type = header_str("content-type")
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            break 'answer invalid(None, "the body must be application/x-www-form-urlencoded");
        }
        let Some(key) = idempotency_key else {
            break 'answer invalid(None, "the fake requires an Idempotency-Key header");
        };
        if key.is_empty() || key.len() > 255 {
            break 'answer invalid(None, "Idempotency-Key must be 1 to 255 characters");
        }
        if let Some(stored) = inner.idempotent.get(&key) {
            if stored.path == path && stored.body == body.as_ref() {
                rec.replayed = true;
                break 'answer (stored.status, stored.response.clone());
            }
            break 'answer stripe_error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            );
        }
        let result = match endpoint {
            Endpoint::Checkout => checkout(&s, &mut inner, &form),
            Endpoint::Portal => portal(&s, &mut inner, &form),
            Endpoint::MeterEvent => meter_event(&mut inner, &form),
        };
        let result = match result {
            Ok(v) => (200, v.to_string()),
            Err(e) => e,
        };
        if result.0 == 200 {
            inner.idempotent.insert(
                key,
                Stored {
                    path: path.to_owned(),
                    body: body.to_vec(),
                    status: result.0,
                    response: result.1.clone(),
                },
            );
            if inner.lose_next > 0 {
                inner.lose_next -= 1;
                break 'answer stripe_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    None,
                    "injected lost response",
                );
            }
        }
        result
    };
    rec.status = status;
    inner.requests.push(rec);
    drop(inner);
    json_response(status, response)
}

type Answer = Result<Value, (u16, String)>;

fn only_known(
    form: &[(String, String)],
    known: impl Fn(&str) -> bool,
) -> Result<(), (u16, String)> {
    match form.iter().find(|(k, _)| !known(k)) {
        Some((k, _)) => Err(invalid(
            Some("parameter_unknown"),
            format!("Received unknown parameter: {k}"),
        )),
        None => Ok(()),
    }
}

fn required<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, (u16, String)> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            invalid(
                Some("parameter_missing"),
                format!("Missing required param: {name}."),
            )
        })
}

fn optional<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn bracket_map(form: &[(String, String)], prefix: &str) -> BTreeMap<String, String> {
    form.iter()
        .filter_map(|(k, v)| {
            let key = k
                .strip_prefix(prefix)?
                .strip_prefix('[')?
                .strip_suffix(']')?;
            (!key.contains('[')).then(|| (key.to_owned(), v.clone()))
        })
        .collect()
}

fn checkout(s: &Shared, inner: &mut Inner, form: &[(String, String)]) -> Answer {
    only_known(form, |k| {
        matches!(
            k,
            "mode"
                | "line_items[0][price]"
                | "line_items[0][quantity]"
                | "client_reference_id"
                | "success_url"
                | "cancel_url"
                | "customer"
        ) || (k.starts_with("metadata[") && k.ends_with(']'))
            || (k.starts_with("subscription_data[metadata][") && k.ends_with(']'))
    })?;
    if required(form, "mode")? != "subscription" {
        return Err(invalid(
            Some("parameter_invalid"),
            "mode must be subscription here",
        ));
    }
    let price = required(form, "line_items[0][price]")?;
    let Some(price_tier) = s.prices.tier_of(price) else {
        return Err(invalid(
            Some("resource_missing"),
            format!("No such price: '{price}'"),
        ));
    };
    if required(form, "line_items[0][quantity]")? != "1" {
        return Err(invalid(Some("parameter_invalid"), "quantity must be 1"));
    }
    for url in ["success_url", "cancel_url"] {
        if !is_http_url(required(form, url)?) {
            return Err(invalid(
                Some("url_invalid"),
                format!("Not a valid URL: {url}"),
            ));
        }
    }
    let reference = required(form, "client_reference_id")?;
    let metadata = bracket_map(form, "metadata");
    let sub_metadata = bracket_map(form, "subscription_data[metadata]");
    for (name, m) in [
        ("metadata", &metadata),
        ("subscription_data[metadata]", &sub_metadata),
    ] {
        if m.get("tenant_id").map(String::as_str) != Some(reference) {
            return Err(invalid(
                Some("parameter_invalid"),
                format!("{name}[tenant_id] must equal client_reference_id"),
            ));
        }
        if m.get("target_tier").map(String::as_str) != Some(price_tier.as_str()) {
            return Err(invalid(
                Some("parameter_invalid"),
                format!("{name}[target_tier] must name the tier of the price"),
            ));
        }
    }
    let customer = optional(form, "customer").map(str::to_owned);
    if let Some(c) = &customer
        && !inner.customers.contains(c)
    {
        return Err(invalid(
            Some("resource_missing"),
            format!("No such customer: '{c}'"),
        ));
    }
    let id = inner.next_id("cs");
    let url = format!("{}/checkout/{id}", s.base);
    let session = FakeCheckoutSession {
        id: id.clone(),
        url: url.clone(),
        price: price.to_owned(),
        client_reference_id: reference.to_owned(),
        metadata: metadata.clone(),
        subscription_metadata: sub_metadata,
        customer: customer.clone(),
        subscription: None,
        completed: false,
    };
    inner.sessions.insert(id.clone(), session);
    Ok(json!({
        "id": id,
        "object": "checkout.session",
        "mode": "subscription",
        "status": "open",
        "payment_status": "unpaid",
        "client_reference_id": reference,
        "customer": customer,
        "metadata": metadata,
        "success_url": optional(form, "success_url"),
        "cancel_url": optional(form, "cancel_url"),
        "url": url,
    }))
}

fn portal(s: &Shared, inner: &mut Inner, form: &[(String, String)]) -> Answer {
    only_known(form, |k| matches!(k, "customer" | "return_url"))?;
    let customer = required(form, "customer")?;
    if !inner.customers.iter().any(|c| c == customer) {
        return Err(invalid(
            Some("resource_missing"),
            format!("No such customer: '{customer}'"),
        ));
    }
    let return_url = optional(form, "return_url");
    if let Some(u) = return_url
        && !is_http_url(u)
    {
        return Err(invalid(Some("url_invalid"), "Not a valid URL: return_url"));
    }
    let id = inner.next_id("bps");
    Ok(json!({
        "id": id,
        "object": "billing_portal.session",
        "customer": customer,
        "return_url": return_url,
        "url": format!("{}/portal/{id}", s.base),
    }))
}

fn meter_event(inner: &mut Inner, form: &[(String, String)]) -> Answer {
    only_known(form, |k| {
        matches!(
            k,
            "event_name"
                | "payload[stripe_customer_id]"
                | "payload[value]"
                | "identifier"
                | "timestamp"
        )
    })?;
    let event_name = required(form, "event_name")?;
    let customer = required(form, "payload[stripe_customer_id]")?;
    if !customer.starts_with("cus_") {
        return Err(invalid(
            Some("parameter_invalid"),
            "payload[stripe_customer_id] must be a customer id",
        ));
    }
    let value: u64 = required(form, "payload[value]")?.parse().map_err(|_| {
        invalid(
            Some("parameter_invalid"),
            "payload[value] must be a whole number",
        )
    })?;
    let identifier = required(form, "identifier")?;
    if identifier.len() > 100 || event_name.len() > 100 {
        return Err(invalid(
            Some("parameter_invalid"),
            "identifier and event_name: at most 100 characters",
        ));
    }
    let timestamp: i64 = required(form, "timestamp")?
        .parse()
        .map_err(|_| invalid(Some("parameter_invalid"), "timestamp must be Unix seconds"))?;
    let event = match inner
        .meter_events
        .iter()
        .find(|e| e.identifier == identifier)
    {
        Some(first) => {
            inner.meter_duplicates += 1;
            first.clone()
        }
        None => {
            let e = FakeMeterEvent {
                event_name: event_name.to_owned(),
                customer: customer.to_owned(),
                value,
                identifier: identifier.to_owned(),
                timestamp,
            };
            inner.meter_events.push(e.clone());
            e
        }
    };
    Ok(json!({
        "object": "billing.meter_event",
        "event_name": event.event_name,
        "identifier": event.identifier,
        "livemode": false,
        "payload": {"stripe_customer_id": event.customer, "value": event.value.to_string()},
        "timestamp": event.timestamp,
    }))
}
