//! Sign-in timing for an unknown email against a known email with a wrong
//! password: the two must take the same order of time, so that timing does
//! not tell which emails have an account (the core verifies a dummy argon2id
//! hash of the same cost for an unknown email).
//!
//! `cargo bench --bench people`; ids under the group `people` (figures in
//! docs/benchmarks.md). Wall time: the argon2 work runs on Tokio's blocking
//! pool, not on the bench thread. The `Idp` is the in-memory one; its
//! sign-in throttles are raised so that no attempt is refused.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sentryagent::{Error, Idp, Quota, RequestMeta, SignIn, SignUp, SignupMode};

const PASSWORD: &str = "correct horse battery staple";

fn attempt(email: &str) -> SignIn {
    SignIn {
        email: email.into(),
        password: "not the password at all".into(),
        totp: None,
        tenant_id: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let idp = rt.block_on(async {
        let unlimited = Quota::new(u32::MAX, Duration::from_secs(1));
        let idp = Idp::builder("https://idp.example")
            .configure(|c| {
                c.people.signup = SignupMode::Open;
                c.people.sign_in_per_ip = unlimited;
                c.people.sign_in_failures_per_account = unlimited;
            })
            .build()
            .await
            .expect("idp");
        idp.sign_up(
            &SignUp {
                email: "known@example.com".into(),
                password: PASSWORD.into(),
                tenant_name: "Bench".into(),
                display_name: None,
            },
            &RequestMeta::default(),
            None,
        )
        .await
        .expect("sign-up");
        idp
    });
    let meta = RequestMeta::default();
    let mut g = c.benchmark_group("people");
    g.sample_size(30).measurement_time(Duration::from_secs(10));
    for (id, email) in [
        ("sign_in_unknown_email", "nobody@example.com"),
        ("sign_in_known_email", "known@example.com"),
    ] {
        let input = attempt(email);
        g.bench_function(id, |b| {
            b.to_async(&rt).iter(|| async {
                let r = idp.sign_in(&input, &meta, None).await;
                assert!(matches!(r, Err(Error::Unauthenticated)), "{r:?}");
            });
        });
    }
    g.finish();
}

criterion_group!(people, bench);
criterion_main!(people);
