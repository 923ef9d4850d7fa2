//! Operations: health, metrics, the OpenAPI document and the API explorer.

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sentryagent_core::Caller;
use sentryagent_core::{BackendHealth, HealthStatus};

use crate::AppState;
use crate::extract::MaybeAdmin;
use crate::problem::Problem;
use crate::views::{DetailedHealth, ProblemDoc, StatusView, TimedOut};

/// Probes each distinct backend of the Idp's store, its usage meter, and
/// the configured extra probes.
async fn probe(s: &AppState) -> Vec<BackendHealth> {
    let mut out = s.idp.store().health().await;
    out.push(s.idp.meter().health().await);
    out.push(s.idp.issuer_keys().health().await);
    for p in &s.config.health_probes {
        out.extend(p.probe().await);
    }
    s.metrics.backends(&out);
    out
}

fn overall(health: &[BackendHealth]) -> HealthStatus {
    if health.iter().any(|h| h.status == HealthStatus::Down) {
        HealthStatus::Down
    } else if health.iter().any(|h| h.status == HealthStatus::Degraded) {
        HealthStatus::Degraded
    } else {
        HealthStatus::Up
    }
}

fn status_code(s: HealthStatus) -> StatusCode {
    if s == HealthStatus::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/health", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"up\"}`", body = StatusView), TimedOut)
)]
pub(crate) async fn health() -> Json<StatusView> {
    Json(StatusView {
        status: HealthStatus::Up,
    })
}

/// Readiness: every backend answers (503 otherwise).
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "every backend answers (`up`, or `degraded`)", body = StatusView),
        (status = 503, description = "a required backend is down (`{\"status\": \"down\"}`), or the request timed out (a problem)", content(
            (StatusView = "application/json"),
            (ProblemDoc = "application/problem+json"),
        )),
    )
)]
pub(crate) async fn ready(State(s): State<AppState>) -> Response {
    let status = overall(&probe(&s).await);
    (status_code(status), Json(StatusView { status })).into_response()
}

/// Each backend's status and ping latency (503 when one is down); with an
/// operator key, also its figures (pool, sizes, paths, counters) and error
/// texts, which are not for the public: they name hosts, paths and how
/// many tenants and agents the deployment holds.
#[utoipa::path(
    get, path = "/health/detailed", tag = "operations",
    responses(
        (status = 200, description = "each backend's status; `details` and `error` text only for an operator key", body = DetailedHealth),
        (status = 503, description = "a required backend is down (the same document), or the request timed out (a problem)", content(
            (DetailedHealth = "application/json"),
            (ProblemDoc = "application/problem+json"),
        )),
        (status = 401, description = "an `Authorization` header that does not authenticate", content_type = "application/problem+json", body = ProblemDoc),
        (status = 402, description = "the daily API calls of a tenant key's tier are used up", content_type = "application/problem+json", body = ProblemDoc),
        (status = 429, description = "a tenant key's rate limit", content_type = "application/problem+json", body = ProblemDoc),
    ),
    security((), ("admin_key" = []))
)]
pub(crate) async fn detailed(
    State(s): State<AppState>,
    MaybeAdmin(caller): MaybeAdmin,
) -> Response {
    let mut backends = probe(&s).await;
    let status = overall(&backends);
    if !caller.as_ref().is_some_and(Caller::is_operator) {
        for b in &mut backends {
            b.details.clear();
            if b.error.is_some() {
                b.error = Some("unavailable (details for operator keys)".into());
            }
        }
    }
    (
        status_code(status),
        Json(DetailedHealth {
            status,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            limiter: s.idp.limiter().name().to_owned(),
            billing: s.idp.billing().name().to_owned(),
            backends,
        }),
    )
        .into_response()
}

/// Prometheus metrics (OpenMetrics text). Open by default; with a metrics
/// token configured, only for `Authorization: Bearer <token>`.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "a metrics token is configured and the request does not carry it (`WWW-Authenticate: Bearer`)", content_type = "application/problem+json", body = ProblemDoc),
        TimedOut,
    ),
    security((), ("metrics_token" = []))
)]
pub(crate) async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &s.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, t)| t.trim());
        if !sentryagent_core::secrets_match(presented, expected) {
            return Problem::unauthenticated("use `Authorization: Bearer <metrics token>`")
                .into_response();
        }
    }
    probe(&s).await;
    match s.idp.agents_by_state().await {
        Ok(counts) => s.metrics.agents(Some(&counts)),
        Err(e) => {
            tracing::warn!(error = %e, "agents by state unavailable for /metrics");
            s.metrics.agents(None);
        }
    }
    let mut res = s.metrics.encode().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// The OpenAPI 3.1 document of this router.
pub(crate) async fn openapi_json(State(s): State<AppState>) -> Response {
    let body = s.openapi.get().cloned().unwrap_or_else(|| "{}".to_owned());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// 404 problem for paths that name nothing.
pub(crate) async fn no_route() -> Problem {
    Problem::no_route()
}

/// 405 problem.
pub(crate) async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .detail("this endpoint does not accept the method; see /openapi.json")
}

/// The explorer loads the document relative to its own URL, so it works
/// wherever the router is nested.
static EXPLORER: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
    LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::new(["../openapi.json"])));

/// `/explorer` -> `explorer/` (relative, so it works under any prefix).
pub(crate) async fn explorer_redirect() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, "explorer/")],
    )
        .into_response()
}

fn explorer_serve(file: &str) -> Response {
    match utoipa_swagger_ui::serve(file, EXPLORER.clone()) {
        Ok(Some(f)) => {
            let mut res = f.bytes.into_owned().into_response();
            if let Ok(v) = HeaderValue::from_str(&f.content_type) {
                res.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            if f.gzpipped {
                res.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            res
        }
        Ok(None) => Problem::no_route().into_response(),
        Err(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .into_response(),
    }
}

/// The API explorer page (Swagger UI, served from the binary).
pub(crate) async fn explorer_index() -> Response {
    explorer_serve("index.html")
}

/// The explorer's assets.
pub(crate) async fn explorer_file(Path(file): Path<String>) -> Response {
    explorer_serve(&file)
}
