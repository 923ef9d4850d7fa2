//! Test plumbing of the console: an IdP on a chosen store, the console
//! router (under a prefix or at the root) driven with `oneshot`, a
//! cookie-keeping browser, and readers of the HTML answered.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use sentryagent_core::{Clock, Idp, IdpConfig, ManualClock, SystemClock};
use sentryagent_http::console::{self, ConsoleConfig};
use sentryagent_storage::{BackendUrls, open};
use tower::ServiceExt as _;

pub const PW: &str = "correct horse battery staple";

/// A console under test.
pub struct Console {
    pub idp: Idp,
    pub app: Router,
    pub prefix: String,
    pub clock: ManualClock,
    _dir: Option<tempfile::TempDir>,
}

/// An answer: status, headers and the body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn location(&self) -> &str {
        self.header("location")
    }

    /// The `name=value` of the session cookie set, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("sentryagent_session="))
            .map(|v| v.split(';').next().unwrap().to_owned())
    }

    /// The value of the first hidden `csrf_token` field.
    pub fn csrf(&self) -> Option<String> {
        attr_after(&self.body, "name=\"csrf_token\" value=\"")
    }
}

/// The text from `marker` to the next `"`.
pub fn attr_after(body: &str, marker: &str) -> Option<String> {
    let at = body.find(marker)? + marker.len();
    let rest = &body[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Which store.
#[derive(Debug, Clone, Copy)]
pub enum Store {
    Memory,
    Sled,
    Postgres,
}

impl Console {
    /// A console at the root on the memory store.
    pub async fn new() -> Console {
        Console::with(Store::Memory, "", |_| {}).await
    }

    /// A console on `store` under `prefix`; `store` Postgres takes the URL
    /// (with its schema) from `url`.
    pub async fn with(
        store: Store,
        prefix: &str,
        configure: impl FnOnce(&mut IdpConfig) + Send + 'static,
    ) -> Console {
        Console::on(store, None, prefix, configure).await
    }

    pub async fn on(
        store: Store,
        postgres_url: Option<String>,
        prefix: &str,
        configure: impl FnOnce(&mut IdpConfig) + Send + 'static,
    ) -> Console {
        Console::full(
            store,
            postgres_url,
            configure,
            None,
            ConsoleConfig::new(prefix),
        )
        .await
    }

    /// A console on the memory store whose billing is Stripe on a fresh
    /// fake Stripe, with console options.
    pub async fn with_stripe(
        console: ConsoleConfig,
    ) -> (Console, sentryagent_billing::testing::FakeStripe) {
        let fake = sentryagent_billing::testing::FakeStripe::start()
            .await
            .unwrap();
        let stripe: Arc<dyn sentryagent_core::BillingProvider> =
            Arc::new(sentryagent_billing::StripeBilling::new(fake.config()).unwrap());
        let c = Console::full(Store::Memory, None, |_| {}, Some(stripe), console).await;
        (c, fake)
    }

    pub async fn full(
        store: Store,
        postgres_url: Option<String>,
        configure: impl FnOnce(&mut IdpConfig) + Send + 'static,
        billing: Option<Arc<dyn sentryagent_core::BillingProvider>>,
        console: ConsoleConfig,
    ) -> Console {
        let prefix = console.prefix.clone();
        let clock = ManualClock::new(SystemClock.now());
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let mut dir = None;
        let url = match store {
            Store::Memory => "memory://".to_owned(),
            Store::Sled => {
                let d = tempfile::tempdir().unwrap();
                let u = format!("sled://{}", d.path().display());
                dir = Some(d);
                u
            }
            Store::Postgres => postgres_url.expect("a Postgres URL"),
        };
        let limiter = matches!(store, Store::Postgres).then(|| "memory://".to_owned());
        let backends = open(
            &BackendUrls {
                store: url,
                limiter,
                ..Default::default()
            },
            shared.clone(),
        )
        .await
        .unwrap();
        let mut builder = backends.apply(Idp::builder("http://127.0.0.1:8080"));
        if let Some(b) = billing {
            builder = builder.billing(b);
        }
        let idp = builder
            .clock(shared)
            // Many sign-ups per test, all from one (absent) address.
            .configure(|cfg| cfg.people.signup_per_ip = sentryagent_core::Quota::per_minute(1_000))
            .configure(configure)
            .build()
            .await
            .unwrap();
        let router = console::router(idp.clone(), console);
        let app = if prefix.is_empty() {
            Router::new().merge(router)
        } else {
            Router::new().nest(&prefix, router)
        };
        Console {
            idp,
            app,
            prefix,
            clock,
            _dir: dir,
        }
    }

    /// Console path `path` with the prefix.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// Sends a request.
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 10 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `GET path` (prefix added) with an optional cookie.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut r = Request::get(self.url(path));
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        self.send(r.body(Body::empty()).unwrap()).await
    }

    /// `POST path` (prefix added) with a form and an optional cookie.
    pub async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut r = Request::post(self.url(path))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        self.send(r.body(Body::from(body)).unwrap()).await
    }

    /// Signs up through the form: a new account owning a new tenant.
    pub async fn sign_up(&self, email: &str, tenant: &str) -> Browser {
        let a = self
            .post(
                "/signup",
                None,
                &[("email", email), ("password", PW), ("tenant_name", tenant)],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let cookie = a.session_cookie().expect("a session cookie");
        self.browser(cookie).await
    }

    /// A browser with `cookie`, its CSRF token read from a page.
    pub async fn browser(&self, cookie: String) -> Browser {
        let page = self.get("/docs", Some(&cookie)).await;
        let csrf = page
            .csrf()
            .expect("a signed-in page carries the CSRF token");
        Browser { cookie, csrf }
    }
}

impl Console {
    /// The session of a browser, as the core sees it.
    pub async fn session(&self, b: &Browser) -> sentryagent_core::SessionAuth {
        let secret = b.cookie.split_once('=').unwrap().1;
        self.idp
            .authenticate_session(
                &sentryagent_core::SessionCredentials {
                    secret,
                    csrf_token: None,
                    method: "GET",
                },
                &sentryagent_core::RequestMeta::default(),
            )
            .await
            .unwrap()
    }

    /// The browser's tenant and its caller (the member's role).
    pub async fn member(
        &self,
        b: &Browser,
    ) -> (sentryagent_core::TenantId, sentryagent_core::Caller) {
        let caller = self.session(b).await.caller.expect("a member");
        (caller.tenant.clone().unwrap(), caller)
    }

    /// A new member of the browser's tenant with `role`, signed in (an
    /// invitation accepted through the core).
    pub async fn join(&self, owner: &Browser, role: sentryagent_core::Role) -> Browser {
        let (tenant, caller) = self.member(owner).await;
        let email = unique_email(role.as_str());
        let inv = self
            .idp
            .create_invitation(
                &caller,
                &tenant,
                &sentryagent_core::NewInvitation {
                    email: email.clone(),
                    role,
                },
            )
            .await
            .unwrap();
        let signed = self
            .idp
            .accept_invitation(
                &sentryagent_core::AcceptInvitation {
                    token: inv.token.expose().to_owned(),
                    password: PW.into(),
                    display_name: None,
                    totp: None,
                },
                &sentryagent_core::RequestMeta::default(),
                None,
            )
            .await
            .unwrap();
        self.browser(format!("sentryagent_session={}", signed.secret.expose()))
            .await
    }

    /// Moves the browser's tenant to the enterprise tier (the free tier
    /// holds 3 agents).
    pub async fn raise_tier(&self, b: &Browser) {
        let (tenant, _) = self.member(b).await;
        self.idp
            .set_tenant_tier(
                &sentryagent_core::Caller::system(),
                &tenant,
                sentryagent_core::Tier::Enterprise,
            )
            .await
            .unwrap();
    }

    /// Registers an agent in the browser's tenant, through the core.
    pub async fn agent(
        &self,
        b: &Browser,
        name: &str,
        public: bool,
        capabilities: &[&str],
    ) -> sentryagent_core::RegisteredAgent {
        let (tenant, caller) = self.member(b).await;
        self.idp
            .register_agent(
                &caller,
                &tenant,
                sentryagent_core::NewAgent {
                    name: name.into(),
                    description: format!("{name} does things"),
                    capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
                    category: Some("finance".into()),
                    visibility: Some(if public {
                        sentryagent_core::Visibility::Public
                    } else {
                        sentryagent_core::Visibility::Private
                    }),
                    allowed_scopes: vec!["invoices:read".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

impl Browser {
    pub fn cookie(&self) -> Option<&str> {
        Some(&self.cookie)
    }
}

/// A unique email address.
pub fn unique_email(name: &str) -> String {
    format!(
        "{name}-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
