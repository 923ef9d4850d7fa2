//! The shutdown switch: readiness turns 503 and the live audit stream ends
//! cleanly once a server starts draining.

mod http_helpers;

use std::time::Duration;

use futures_util::StreamExt as _;
use http_helpers::{Setup, start_with};
use reqwest::{Method, StatusCode};
use sentryagent_http::{Drain, RouterConfig};

#[tokio::test]
async fn draining_turns_readiness_503_and_ends_audit_streams() {
    let drain = Drain::new();
    let s = start_with(Setup {
        router: RouterConfig::default().drain(drain.clone()),
        ..Default::default()
    })
    .await;
    let (_, key) = s.tenant("Drain", "free").await;

    let r = s
        .req(Method::GET, "/health/ready", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let stream = s
        .req(Method::GET, "/v1/audit/stream", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut body = stream.bytes_stream();

    assert!(!drain.is_draining());
    drain.start();
    assert!(drain.is_draining());

    // The stream ends (no error: the chunked body is terminated) promptly.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            chunk.expect("the stream ends cleanly, not with an error");
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the audit stream did not end after draining started"
    );

    let r = s
        .req(Method::GET, "/health/ready", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "draining");
    // Liveness is unaffected: the process is healthy, only leaving.
    let r = s.req(Method::GET, "/health", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
