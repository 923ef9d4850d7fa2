//! Issued tokens: verification from the JWKS, introspection and revocation,
//! signing-key rotation, custom claims, ES256.

use super::*;

#[tokio::test]
async fn token_round_trip_verifies_from_the_jwks_alone() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let resp = idp
        .issue_token(&secret_request(&a, Some("read")), &Default::default())
        .await
        .unwrap();
    assert_eq!(resp.token_type, "Bearer");
    assert_eq!(resp.expires_in, 900);
    assert_eq!(resp.scope.as_deref(), Some("read"));

    // A relying party with only the published JWKS.
    let jwks: JwkSet = serde_json::from_value(serde_json::to_value(idp.jwks()).unwrap()).unwrap();
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let v = Validation {
        issuer: ISSUER.into(),
        audience: Some(ISSUER.into()),
        leeway: Duration::ZERO,
        now: c.now(),
        required_typ: Some("at+jwt".into()),
    };
    let (header, claims) =
        verify_jwt::<AccessTokenClaims, _>(&resp.access_token, &keys, &v).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims.sub, a.agent.id.as_str());
    assert_eq!(claims.client_id, a.agent.id.as_str());
    assert_eq!(claims.tenant_id, t.id.as_str());
    assert_eq!(claims.did, a.agent.did);
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.nbf, claims.iat);
    assert!(claims.jti.len() >= 22);

    // Expiry is enforced (with the default 30 s leeway).
    c.advance(Duration::from_secs(900 + 31));
    assert!(matches!(
        idp.verify_access_token(&resp.access_token, None),
        Err(Error::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn introspection_and_revocation_follow_rfc_7662_and_7009() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let rs = agent(&idp, &t, "resource-server").await;
    let rs_creds = secret_request(&rs, None).client;
    let a_creds = secret_request(&a, None).client;
    let meta = Default::default();
    let token = issue(&idp, &secret_request(&a, Some("read")))
        .await
        .unwrap();

    let i = idp.introspect(&rs_creds, &token, &meta).await.unwrap();
    assert!(i.active);
    let claims = i.claims.unwrap();
    assert_eq!(claims.client_id, a.agent.id.as_str());
    assert_eq!(claims.scope.as_deref(), Some("read"));
    let inactive =
        serde_json::to_value(idp.introspect(&rs_creds, "garbage", &meta).await.unwrap()).unwrap();
    assert_eq!(inactive, serde_json::json!({"active": false}));

    // Another tenant's client learns nothing.
    let t2 = tenant(&idp, Tier::Pro).await;
    let foreign = agent(&idp, &t2, "foreign").await;
    assert!(
        !idp.introspect(&secret_request(&foreign, None).client, &token, &meta)
            .await
            .unwrap()
            .active
    );
    // A bad caller is refused outright.
    let bad = with_secret(&rs, "nope").client;
    assert!(matches!(
        idp.introspect(&bad, &token, &meta).await,
        Err(Error::Unauthenticated)
    ));

    // Only the owning client revokes; unknown tokens are fine.
    idp.revoke(&rs_creds, &token, &meta).await.unwrap();
    assert!(
        idp.introspect(&rs_creds, &token, &meta)
            .await
            .unwrap()
            .active,
        "someone else's revocation does nothing"
    );
    idp.revoke(&a_creds, "not-a-token", &meta).await.unwrap();
    idp.revoke(&a_creds, &token, &meta).await.unwrap();
    assert!(
        !idp.introspect(&rs_creds, &token, &meta)
            .await
            .unwrap()
            .active
    );
    let jti = idp.verify_access_token(&token, None).unwrap().jti;
    assert!(idp.is_revoked(&jti).await.unwrap());

    // A paused agent's tokens are inactive.
    let other = issue(&idp, &secret_request(&a, None)).await.unwrap();
    idp.transition_agent(&Caller::system(), &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    assert!(
        !idp.introspect(&rs_creds, &other, &meta)
            .await
            .unwrap()
            .active
    );
}

#[tokio::test]
async fn rotated_signing_keys_stay_in_the_jwks_until_their_tokens_expire() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| {
        cfg.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256]
    })
    .await
    else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let jwks = idp.jwks();
    assert_eq!(jwks.keys.len(), 2, "one EdDSA and one ES256 key");
    let algs: Vec<_> = jwks.keys.iter().filter_map(|k| k.alg.clone()).collect();
    assert!(
        algs.contains(&"EdDSA".to_owned()) && algs.contains(&"ES256".to_owned()),
        "{algs:?}"
    );

    let old = issue(&idp, &secret_request(&a, None)).await.unwrap();
    idp.rotate_signing_keys().await.unwrap();
    assert_eq!(idp.jwks().keys.len(), 4, "old keys stay published");
    let new = issue(&idp, &secret_request(&a, None)).await.unwrap();
    let kid = |tok: &str| {
        sentryagent_core::jose::parse_compact(tok)
            .unwrap()
            .header()
            .kid
            .clone()
    };
    assert_ne!(kid(&old), kid(&new), "the new key signs");
    idp.verify_access_token(&old, None)
        .expect("old token still verifies");

    // A second node on the same store sees the same ring.
    let other = Idp::builder(ISSUER)
        .store_parts(idp.store().clone())
        .clock(Arc::new(c.clone()))
        .configure(|cfg| cfg.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256])
        .build()
        .await
        .unwrap();
    other.verify_access_token(&new, None).unwrap();
    other.verify_access_token(&old, None).unwrap();

    // Tokens from a token exchange may live up to an hour: retired keys
    // stay that long, whatever the configured lifetime.
    c.advance(Duration::from_secs(900 + 30 + 61));
    idp.maintenance().await.unwrap();
    assert_eq!(
        idp.jwks().keys.len(),
        4,
        "retired keys stay while exchanged tokens may live"
    );
    c.advance(Duration::from_secs(3600 - 900));
    idp.maintenance().await.unwrap();
    assert_eq!(
        idp.jwks().keys.len(),
        2,
        "retired keys leave after their tokens expired"
    );
    issue(&idp, &secret_request(&a, None)).await.unwrap();
}

#[tokio::test]
async fn keys_rotate_on_schedule() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| {
        cfg.key_rotation_period = Duration::from_secs(3600)
    })
    .await
    else {
        return;
    };
    let before = idp.jwks().keys[0].kid.clone();
    c.advance(Duration::from_secs(3599));
    idp.maintenance().await.unwrap();
    assert_eq!(idp.jwks().keys.len(), 1);
    c.advance(Duration::from_secs(1));
    idp.maintenance().await.unwrap();
    let keys = idp.jwks().keys;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.kid == before));
}

#[tokio::test]
async fn custom_claims_appear_and_reserved_names_are_refused() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let mut claims = serde_json::Map::new();
    claims.insert("team".into(), serde_json::json!("payments"));
    let a = register(
        &idp,
        &t,
        NewAgent {
            name: "c".into(),
            custom_claims: claims,
            ..Default::default()
        },
    )
    .await;
    let tok = issue(&idp, &secret_request(&a, None)).await.unwrap();
    let claims = idp.verify_access_token(&tok, None).unwrap();
    assert_eq!(
        claims.extra.get("team"),
        Some(&serde_json::json!("payments"))
    );

    let mut reserved = serde_json::Map::new();
    reserved.insert("sub".into(), serde_json::json!("someone-else"));
    let r = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "r".into(),
                custom_claims: reserved,
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Invalid { .. })));
    let mut big = serde_json::Map::new();
    big.insert("blob".into(), serde_json::json!("x".repeat(5000)));
    let r = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "b".into(),
                custom_claims: big,
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Invalid { .. })));
}

#[tokio::test]
async fn an_agent_may_take_es256_tokens_when_the_deployment_enables_it() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| {
        cfg.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256]
    })
    .await
    else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = register(
        &idp,
        &t,
        NewAgent {
            name: "spiffe-facing".into(),
            token_algorithm: Some(Algorithm::ES256),
            ..Default::default()
        },
    )
    .await;
    let tok = issue(&idp, &secret_request(&a, None)).await.unwrap();
    let header = sentryagent_core::jose::parse_compact(&tok)
        .unwrap()
        .header()
        .clone();
    assert_eq!(header.alg, Algorithm::ES256);
    idp.verify_access_token(&tok, None).unwrap();
    let plain = agent(&idp, &t, "default").await;
    let tok = issue(&idp, &secret_request(&plain, None)).await.unwrap();
    assert_eq!(
        sentryagent_core::jose::parse_compact(&tok)
            .unwrap()
            .header()
            .alg,
        Algorithm::EdDSA
    );

    let Some(eddsa_only) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t2 = tenant(&eddsa_only, Tier::Pro).await;
    let r = eddsa_only
        .register_agent(
            &Caller::system(),
            &t2.id,
            NewAgent {
                name: "x".into(),
                token_algorithm: Some(Algorithm::ES256),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
}

#[tokio::test]
async fn revocation_and_pause_end_the_tokens_issued_before_them() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let sys = Caller::system();
    let meta = Default::default();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let rs = secret_request(&agent(&idp, &t, "api").await, None).client;
    let active = |tok: String| {
        let (idp, rs) = (idp.clone(), rs.clone());
        async move {
            idp.introspect(&rs, &tok, &Default::default())
                .await
                .unwrap()
                .active
        }
    };

    // A pause ends the tokens issued before it, also once it resumes.
    let before_pause = issue(&idp, &secret_request(&a, None)).await.unwrap();
    assert!(active(before_pause.clone()).await);
    c.advance(Duration::from_secs(5));
    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Active)
        .await
        .unwrap();
    assert!(!active(before_pause).await, "the pause ended it");
    c.advance(Duration::from_secs(1));
    let after_resume = issue(&idp, &secret_request(&a, None)).await.unwrap();
    assert!(active(after_resume.clone()).await, "a token issued after");

    // Revoking the secrets ends every token issued so far; a new secret
    // gets tokens that are active.
    c.advance(Duration::from_secs(5));
    idp.revoke_client_secrets(&sys, &a.agent.id).await.unwrap();
    assert!(!active(after_resume).await, "the revocation ended it");
    let stored = idp.get_agent(&sys, &a.agent.id).await.unwrap();
    assert_eq!(stored.tokens_not_before, Some(c.now()));
    c.advance(Duration::from_secs(1));
    let (secret, _) = idp
        .rotate_client_secret(&sys, &a.agent.id, None)
        .await
        .unwrap();
    let fresh = idp
        .issue_token(&with_secret(&a, &secret), &meta)
        .await
        .unwrap()
        .access_token;
    assert!(active(fresh).await);
}
