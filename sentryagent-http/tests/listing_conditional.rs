//! Listing responses carry `ETag` (and `Last-Modified` where the time of
//! the last change is known) and honour conditional GETs: `304 Not
//! Modified` without a body while nothing changed, the new document once
//! the listing changed.

mod http_helpers;

use std::time::Duration;

use http_helpers::{Server, start};
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde_json::json;

async fn get(
    s: &Server,
    path: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> reqwest::Response {
    let mut r = s.http.get(s.url(path));
    for (k, v) in headers {
        r = r.header(k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn listings_answer_conditional_gets() {
    let s = start().await;
    let (_, key) = s.tenant("Cache Labs", "pro").await;
    let agent = s
        .agent(
            &key,
            json!({"name": "Cached", "visibility": "public", "capabilities": ["a.b"]}),
        )
        .await;
    let id = agent["id"].as_str().unwrap();
    let with_date = [
        format!("/v1/marketplace/agents/{id}"),
        format!("/v1/marketplace/agents/{id}/agent-card.json"),
        format!("/v1/marketplace/agents/{id}/oasf.json"),
        format!("/v1/marketplace/agents/{id}/badge"),
    ];
    let etag_only = [
        "/v1/marketplace/agents?q=cached".to_owned(),
        "/v1/publishers/cache-labs".to_owned(),
    ];
    let mut before = Vec::new();
    for path in with_date.iter().chain(&etag_only) {
        let r = get(&s, path, &[]).await;
        assert_eq!(r.status(), 200, "{path}");
        let etag = r.headers()[ETAG].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "{path}: {etag}"
        );
        let lm = r
            .headers()
            .get(LAST_MODIFIED)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(lm.is_some(), with_date.contains(path), "{path}");
        let body = r.bytes().await.unwrap();

        // Unchanged: 304 without a body, by entity tag or by date.
        let r = get(&s, path, &[(IF_NONE_MATCH, &etag)]).await;
        assert_eq!(r.status(), 304, "{path}");
        assert_eq!(r.headers()[ETAG].to_str().unwrap(), etag);
        assert!(r.bytes().await.unwrap().is_empty());
        let r = get(&s, path, &[(IF_NONE_MATCH, &format!("\"nope\", W/{etag}"))]).await;
        assert_eq!(r.status(), 304, "{path}: weak comparison in a list");
        let r = get(&s, path, &[(IF_NONE_MATCH, "\"nope\"")]).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.bytes().await.unwrap(), body, "{path}: the same bytes");
        if let Some(lm) = &lm {
            let r = get(&s, path, &[(IF_MODIFIED_SINCE, lm)]).await;
            assert_eq!(r.status(), 304, "{path}");
            let r = get(
                &s,
                path,
                &[(IF_MODIFIED_SINCE, "Thu, 01 Jan 1970 00:00:00 GMT")],
            )
            .await;
            assert_eq!(r.status(), 200, "{path}");
            // If-None-Match decides alone.
            let r = get(
                &s,
                path,
                &[(IF_NONE_MATCH, "\"nope\""), (IF_MODIFIED_SINCE, lm)],
            )
            .await;
            assert_eq!(r.status(), 200, "{path}");
            // A date that is not an IMF-fixdate is ignored.
            let r = get(&s, path, &[(IF_MODIFIED_SINCE, "tomorrow")]).await;
            assert_eq!(r.status(), 200, "{path}");
        }
        before.push((path.clone(), etag, lm));
    }

    // The listing changes: new documents, new validators.
    s.clock.advance(Duration::from_secs(2));
    let r = s
        .req(
            reqwest::Method::PATCH,
            &format!("/v1/agents/{id}"),
            Some(&key),
        )
        .json(&json!({"description": "cached, now described"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (path, etag, lm) in before {
        let r = get(&s, &path, &[(IF_NONE_MATCH, &etag)]).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_ne!(r.headers()[ETAG].to_str().unwrap(), etag, "{path}");
        if let Some(lm) = lm {
            let r = get(&s, &path, &[(IF_MODIFIED_SINCE, &lm)]).await;
            assert_eq!(r.status(), 200, "{path}: modified since {lm}");
        }
    }

    // Gone from the marketplace: 404, whatever the validators.
    let path = format!("/v1/marketplace/agents/{id}");
    let (st, _) = s
        .post(
            &format!("/v1/agents/{id}/lifecycle"),
            Some(&key),
            &json!({"state": "paused"}),
        )
        .await;
    assert_eq!(st, 200);
    let r = get(&s, &path, &[(IF_NONE_MATCH, "*")]).await;
    assert_eq!(r.status(), 404);
}
