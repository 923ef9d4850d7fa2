//! A host application with its own routes that nests the SentryAgent IdP
//! under `/idp`.
//!
//! ```sh
//! cargo run --example embed
//! curl http://127.0.0.1:3000/idp/.well-known/oauth-authorization-server
//! ```
//!
//! The issuer is the public base URL *including* the prefix, so tokens,
//! metadata and every endpoint URL point under `/idp`.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use sentryagent::{AdminScope, Caller, Idp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let listen: SocketAddr = std::env::var("EMBED_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;

    // In-memory parts; a real host would pick backends (see the server example).
    let idp = Idp::builder(format!("http://{listen}/idp")).build().await?;
    let (_, key) = idp
        .create_admin_key(
            &Caller::system(),
            None,
            "embed demo",
            Some(vec![AdminScope::Admin]),
        )
        .await?;
    println!("operator key for this run: {key}");

    let app = Router::new()
        .route("/", get(|| async { "the host application" }))
        .route("/hello/{name}", get(hello))
        .nest("/idp", sentryagent::http::router(idp.clone()))
        // RFC 8414's inserted location: /.well-known/oauth-authorization-server/idp
        .merge(sentryagent::http::well_known_router(idp));

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("host app on http://{listen}/, IdP on http://{listen}/idp");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

async fn hello(axum::extract::Path(name): axum::extract::Path<String>) -> String {
    format!("hello, {name}")
}
