#![doc = include_str!("../README.md")]

mod a2a;
mod badges;
mod billing;
mod conditional;
#[cfg(feature = "console")]
pub mod console;
mod cors;
mod domain_proof;
mod drain;
mod extract;
mod federation;
mod guarded;
mod layers;
mod manage;
mod members;
mod metrics;
mod oauth;
mod ops;
mod people;
mod problem;
mod public;
mod session;
mod streams;
mod trust_policies;
mod views;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, map_response};
use sentryagent_core::BackendHealth;
use sentryagent_core::Idp;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use cors::CorsOrigin;
pub use domain_proof::{DomainProofFetcherConfig, HttpDomainProofFetcher};
pub use drain::Drain;
pub use extract::MAX_JSON_DEPTH;
pub use federation::{ALLOW_HTTP_LOOPBACK_ENV, JwksFetcher, JwksFetcherConfig, MIN_REFETCH_ENV};
pub use guarded::address_allowed;
pub use layers::REQUEST_ID;
pub use problem::{ApiError, PROBLEM_JSON, Problem};
pub use sentryagent_core::OAuthError;
pub use session::{CSRF_HEADER, cookie_name};
pub use streams::{DEFAULT_AUDIT_STREAMS, DEFAULT_AUDIT_STREAMS_PER_TENANT};

/// Default largest request body: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// A health probe of a backend the router does not know by itself (the
/// [`Idp`]'s store and usage meter are always probed). Any
/// `Fn() -> impl Future<Output = Vec<BackendHealth>>` is one, so a host using
/// `sentryagent-storage` passes `move || { let b = backends.clone(); async
/// move { b.health().await } }`.
pub trait HealthProbe: Send + Sync + 'static {
    /// Probes, returning one entry per backend.
    fn probe(&self) -> Pin<Box<dyn Future<Output = Vec<BackendHealth>> + Send + 'static>>;
}

impl<F, Fut> HealthProbe for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<BackendHealth>> + Send + 'static,
{
    fn probe(&self) -> Pin<Box<dyn Future<Output = Vec<BackendHealth>> + Send + 'static>> {
        Box::pin(self())
    }
}

/// Options of [`router_with`]. Start from [`RouterConfig::default`].
#[derive(Clone)]
#[non_exhaustive]
pub struct RouterConfig {
    /// Largest request body in bytes (413 beyond). Default
    /// [`DEFAULT_BODY_LIMIT`].
    pub body_limit: usize,
    /// Longest time to the response head (503 beyond). Default 30 s.
    pub request_timeout: Duration,
    /// Interval of keep-alive comments on the audit event stream. Default
    /// 15 s.
    pub sse_keep_alive: Duration,
    /// Extra backend probes for `/health/ready`, `/health/detailed` and the
    /// backend gauges of `/metrics`.
    pub health_probes: Vec<Arc<dyn HealthProbe>>,
    /// Whether to serve the API explorer at `/explorer/`. Default true.
    pub explorer: bool,
    /// The server's shutdown switch: once started, `/health/ready` answers
    /// 503 and live event streams end. Default none.
    pub drain: Option<Drain>,
    /// Origins whose pages may call the API cross-origin (CORS). Default
    /// none. The public, read-only documents (discovery, JWKS, marketplace,
    /// DID documents, publishers) are readable from any origin regardless.
    pub cors_origins: Vec<CorsOrigin>,
    /// Live audit streams (`/v1/audit/stream`) a tenant may hold open on
    /// this router at once (429 beyond). Default
    /// [`DEFAULT_AUDIT_STREAMS_PER_TENANT`].
    pub audit_streams_per_tenant: usize,
    /// Live audit streams open on this router at once, all tenants and
    /// operators together (503 beyond). Default [`DEFAULT_AUDIT_STREAMS`].
    pub audit_streams_total: usize,
    /// The bearer token `/metrics` requires (`Authorization: Bearer
    /// <token>`, compared in constant time; 401 otherwise). Default none:
    /// `/metrics` answers anyone who reaches the listener.
    pub metrics_token: Option<Arc<str>>,
    /// The web console, served by this router next to the API (same
    /// listener, same request log, timeout, drain and metrics) when set.
    /// Default none. A host that wants the console under its own prefix
    /// nests [`console::router`] instead.
    #[cfg(feature = "console")]
    pub console: Option<console::ConsoleConfig>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: Duration::from_secs(30),
            sse_keep_alive: Duration::from_secs(15),
            health_probes: Vec::new(),
            explorer: true,
            drain: None,
            cors_origins: Vec::new(),
            audit_streams_per_tenant: DEFAULT_AUDIT_STREAMS_PER_TENANT,
            audit_streams_total: DEFAULT_AUDIT_STREAMS,
            metrics_token: None,
            #[cfg(feature = "console")]
            console: None,
        }
    }
}

impl std::fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RouterConfig");
        d.field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("sse_keep_alive", &self.sse_keep_alive)
            .field("health_probes", &self.health_probes.len())
            .field("explorer", &self.explorer)
            .field("drain", &self.drain)
            .field("cors_origins", &self.cors_origins)
            .field("audit_streams_per_tenant", &self.audit_streams_per_tenant)
            .field("audit_streams_total", &self.audit_streams_total)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "(set)"),
            );
        #[cfg(feature = "console")]
        d.field("console", &self.console);
        d.finish()
    }
}

impl RouterConfig {
    /// Serves the web console at this router's root, next to the API, behind
    /// the same layers (request log, timeout, drain, metrics).
    #[cfg(feature = "console")]
    pub fn console(mut self, console: console::ConsoleConfig) -> Self {
        self.console = Some(console);
        self
    }

    /// Sets the body limit.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the SSE keep-alive interval.
    pub fn sse_keep_alive(mut self, interval: Duration) -> Self {
        self.sse_keep_alive = interval;
        self
    }

    /// Adds a health probe.
    pub fn health_probe(mut self, probe: impl HealthProbe) -> Self {
        self.health_probes.push(Arc::new(probe));
        self
    }

    /// Sets the shutdown switch ([`Drain`]).
    pub fn drain(mut self, drain: Drain) -> Self {
        self.drain = Some(drain);
        self
    }

    /// Sets the origins allowed to call the API cross-origin.
    pub fn cors_origins(mut self, origins: impl IntoIterator<Item = CorsOrigin>) -> Self {
        self.cors_origins = origins.into_iter().collect();
        self
    }

    /// Sets the caps on live audit streams: per tenant and in total.
    pub fn audit_streams(mut self, per_tenant: usize, total: usize) -> Self {
        self.audit_streams_per_tenant = per_tenant;
        self.audit_streams_total = total;
        self
    }

    /// Requires `Authorization: Bearer <token>` on `/metrics`.
    pub fn metrics_token(mut self, token: impl Into<String>) -> Self {
        self.metrics_token = Some(token.into().into());
        self
    }

    /// Turns the API explorer on or off.
    pub fn explorer(mut self, on: bool) -> Self {
        self.explorer = on;
        self
    }
}

/// What every handler shares, behind one `Arc`: every layer and handler
/// clones the state per request, and one reference count is cheaper than
/// one per part.
#[derive(Clone)]
pub(crate) struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The parts of [`AppState`].
pub(crate) struct SharedState {
    pub(crate) idp: Idp,
    pub(crate) config: Arc<RouterConfig>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) openapi: Arc<OnceLock<String>>,
    pub(crate) upgrade_url: Arc<str>,
    pub(crate) audit_streams: Arc<streams::StreamSlots>,
    /// Refused billing webhook deliveries: one log line a minute.
    pub(crate) webhook_refusals: layers::LogThrottle,
}

/// The IdP as an axum router with default [`RouterConfig`]; nest it where
/// the issuer URL says (`IdpConfig::issuer` is the public base URL including
/// the prefix):
///
/// ```no_run
/// # async fn host() -> sentryagent_core::Result<()> {
/// let idp = sentryagent_core::Idp::builder("https://example.com/idp").build().await?;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "host app" }))
///     .nest("/idp", sentryagent_http::router(idp));
/// # Ok(()) }
/// ```
pub fn router<S: Clone + Send + Sync + 'static>(idp: Idp) -> Router<S> {
    router_with(idp, RouterConfig::default())
}

/// The IdP as an axum router, with options.
pub fn router_with<S: Clone + Send + Sync + 'static>(idp: Idp, config: RouterConfig) -> Router<S> {
    let metrics = Arc::new(metrics::Metrics::new());
    idp.add_observer(metrics.observer());
    let state = AppState(Arc::new(SharedState {
        upgrade_url: format!("{}/api/tiers/upgrade", idp.config().issuer).into(),
        audit_streams: streams::StreamSlots::new(
            config.audit_streams_per_tenant,
            config.audit_streams_total,
        ),
        idp,
        config: Arc::new(config),
        metrics,
        openapi: Arc::new(OnceLock::new()),
        webhook_refusals: layers::LogThrottle::new(Duration::from_secs(60)),
    }));
    let (api, mut doc) = api_routes(&state).split_for_parts();
    doc.servers = Some(vec![utoipa::openapi::Server::new(
        state.idp.config().issuer.clone(),
    )]);
    session_security(&mut doc, cookie_name(&state.idp.config().issuer));
    let json = doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    let _ = state.openapi.set(json);

    let mut app = api.route("/openapi.json", axum::routing::get(ops::openapi_json));
    #[cfg(feature = "console")]
    if let Some(console) = state.config.console.clone() {
        app = app.merge(console::router(state.idp.clone(), console));
    }
    let mut app = app
        .fallback(ops::no_route)
        .method_not_allowed_fallback(ops::method_not_allowed);
    if state.config.explorer {
        app = app
            .route("/explorer", axum::routing::get(ops::explorer_redirect))
            .route("/explorer/", axum::routing::get(ops::explorer_index))
            .route("/explorer/{*file}", axum::routing::get(ops::explorer_file));
    }
    let timeout = state.config.request_timeout;
    if let Some(d) = state.config.drain.clone() {
        app = app.layer(from_fn_with_state(d, drain::layer));
    }
    app.layer(from_fn_with_state(timeout, layers::timeout))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(from_fn_with_state(
            state.clone(),
            layers::announced_body_limit,
        ))
        .layer(from_fn_with_state(state.clone(), cors::layer))
        .layer(from_fn_with_state(state.clone(), layers::record))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(layers::make_span)
                .on_response(layers::on_response)
                .on_failure({
                    let throttle = Arc::new(layers::LogThrottle::new(Duration::from_secs(10)));
                    move |class, latency, _: &tracing::Span| {
                        layers::on_failure(&throttle, class, latency);
                    }
                }),
        )
        .layer(from_fn_with_state(state.clone(), layers::context))
        .layer(map_response(layers::security_headers))
        .with_state(state)
}

/// Serves the RFC 8414 metadata at its *inserted* well-known location
/// (`/.well-known/oauth-authorization-server/<issuer path>`), for hosts that
/// nest the IdP under a prefix: merge this router at the host's root. The
/// nested router already answers at `<issuer>/.well-known/...`.
pub fn well_known_router<S: Clone + Send + Sync + 'static>(idp: Idp) -> Router<S> {
    let path = oauth::issuer_path(&idp.config().issuer);
    let mut r = Router::new();
    if !path.is_empty() {
        r = r.route(
            &format!("/.well-known/oauth-authorization-server{path}"),
            axum::routing::get(oauth::metadata_for),
        );
    }
    r.with_state(idp)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "SentryAgent",
        description = "Identity provider for AI agents: OAuth 2.0 client credentials with EdDSA JWT access tokens, did:key identities, management API, marketplace.",
        license(name = "Apache-2.0")
    ),
    components(schemas(views::ProblemDoc, views::OAuthErrorDoc)),
    modifiers(&SecurityAddon),
    tags(
        (name = "oauth", description = "OAuth 2.0 and discovery"),
        (name = "management", description = "Management API (`Authorization: Bearer <admin key>` or a management token from a token exchange, or a member's session cookie with `X-CSRF-Token` on state-changing requests)"),
        (name = "members", description = "A tenant's people: members, roles, invitations, password reset links"),
        (name = "people", description = "Sign-up, sign-in, sessions and the signed-in account"),
        (name = "billing", description = "Tiers, usage and billing"),
        (name = "public", description = "Marketplace, DID documents and publishers"),
        (name = "operations", description = "Health and metrics")
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Declares the session cookie as a security scheme, and as an
/// alternative to the admin key on every operation that takes one: a
/// member's session is accepted wherever an admin key is, with the role's
/// scopes.
fn session_security(doc: &mut utoipa::openapi::OpenApi, cookie: &str) {
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            cookie,
            "the session cookie set by sign-in; state-changing requests also send the session's CSRF token as `X-CSRF-Token`",
        ))),
    );
    let key = serde_json::to_value(SecurityRequirement::new("admin_key", Vec::<String>::new()))
        .unwrap_or_default();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(security) = &mut op.security {
                let takes_key = security
                    .iter()
                    .any(|r| serde_json::to_value(r).is_ok_and(|v| v == key));
                if takes_key {
                    security.push(SecurityRequirement::new("session", Vec::<String>::new()));
                }
            }
        }
    }
}

fn api_routes(state: &AppState) -> OpenApiRouter<AppState> {
    let oauth = OpenApiRouter::new()
        .routes(routes!(oauth::metadata))
        .routes(routes!(oauth::openid_configuration))
        .routes(routes!(oauth::jwks))
        .routes(routes!(public::issuer_did_json))
        .routes(routes!(public::issuer_did_json_at_path))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::introspect))
        .routes(routes!(oauth::revoke));
    let ops = OpenApiRouter::new()
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics));
    // Provider events can be larger than management bodies.
    let webhook = OpenApiRouter::new()
        .routes(routes!(billing::webhook))
        .layer(DefaultBodyLimit::max(billing::WEBHOOK_BODY_LIMIT));
    let authed = OpenApiRouter::new()
        // Public, with each backend's details for operators only.
        .routes(routes!(ops::detailed))
        .routes(routes!(manage::create_tenant))
        .routes(routes!(manage::list_tenants))
        .routes(routes!(manage::get_tenant))
        .routes(routes!(manage::patch_tenant))
        .routes(routes!(manage::put_publisher))
        .routes(routes!(manage::start_domain_proof))
        .routes(routes!(manage::verify_domain_proof))
        .routes(routes!(manage::create_tenant_key))
        .routes(routes!(manage::list_tenant_keys))
        .routes(routes!(manage::revoke_tenant_key))
        .routes(routes!(manage::create_operator_key))
        .routes(routes!(manage::list_operator_keys))
        .routes(routes!(manage::revoke_operator_key))
        .routes(routes!(manage::register_agent))
        .routes(routes!(manage::list_agents))
        .routes(routes!(manage::get_agent))
        .routes(routes!(manage::patch_agent))
        .routes(routes!(manage::lifecycle))
        .routes(routes!(manage::rotate_secret))
        .routes(routes!(manage::revoke_secrets))
        .routes(routes!(manage::audit))
        .routes(routes!(manage::audit_verify))
        .routes(routes!(manage::audit_stream))
        .routes(routes!(manage::daily_tokens))
        .routes(routes!(manage::heatmap))
        .routes(routes!(manage::agent_table))
        .routes(routes!(
            trust_policies::create_trust_policy,
            trust_policies::list_trust_policies
        ))
        .routes(routes!(
            trust_policies::get_trust_policy,
            trust_policies::patch_trust_policy,
            trust_policies::delete_trust_policy
        ))
        .routes(routes!(billing::usage))
        .routes(routes!(billing::checkout))
        .routes(routes!(billing::upgrade))
        .routes(routes!(billing::subscription))
        .routes(routes!(billing::portal))
        .routes(routes!(public::search))
        .routes(routes!(public::categories))
        .routes(routes!(public::marketplace_agent))
        .routes(routes!(public::agent_card))
        .routes(routes!(public::oasf_record))
        .routes(routes!(badges::badge))
        .routes(routes!(badges::status_list))
        .routes(routes!(badges::verify))
        .routes(routes!(public::did_json))
        .routes(routes!(public::publisher))
        .routes(routes!(members::list_members))
        .routes(routes!(members::change_role, members::remove_member))
        .routes(routes!(members::member_password_reset))
        .routes(routes!(
            members::create_invitation,
            members::list_invitations
        ))
        .routes(routes!(members::revoke_invitation))
        .routes(routes!(members::user_password_reset))
        .routes(routes!(members::find_user))
        .routes(routes!(members::update_settings))
        .route_layer(from_fn_with_state(state.clone(), layers::admin_auth));
    // Routes that start a session: no session needed (the one a request
    // comes with is ended, not checked).
    let sign_in = OpenApiRouter::new()
        .routes(routes!(people::sign_up))
        .routes(routes!(people::sign_in))
        .routes(routes!(people::accept_invitation))
        .routes(routes!(people::complete_password_reset));
    // The signed-in person's own routes.
    let account = OpenApiRouter::new()
        .routes(routes!(people::sign_out))
        .routes(routes!(people::switch_tenant))
        .routes(routes!(people::me))
        .routes(routes!(people::list_sessions, people::end_other_sessions))
        .routes(routes!(people::end_session))
        .routes(routes!(people::change_password))
        .routes(routes!(people::begin_totp, people::disable_totp))
        .routes(routes!(people::confirm_totp))
        .route_layer(from_fn_with_state(state.clone(), session::people_layer));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(oauth)
        .merge(ops)
        .merge(webhook)
        .merge(authed)
        .merge(sign_in)
        .merge(account)
}
