//! `MeterReporter`: hourly usage of paid tenants reaches Stripe's meter
//! once, after the hour closed.

use std::sync::Arc;
use std::time::Duration;

use sentryagent_billing::meter::{MARKER_NAMESPACE, meter_identifier};
use sentryagent_billing::testing::FakeStripe;
use sentryagent_billing::{MeterEventNames, MeterReporter, StripeBilling};
use sentryagent_core::UsageKind;
use sentryagent_core::{
    BillingOutcome, Caller, ClientCredentials, Clock, Idp, ManualClock, NewAgent, NewTenant,
    RequestMeta, Tenant, Tier, Timestamp, TokenRequest,
};

/// 2025-11-21T04:00:00Z, the start of an hour.
const HOUR0: i64 = 1_763_697_600;

struct World {
    fake: FakeStripe,
    idp: Idp,
    clock: ManualClock,
    op: Caller,
}

async fn world() -> World {
    let fake = FakeStripe::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(HOUR0 + 60));
    let stripe = StripeBilling::with_clock(fake.config(), Arc::new(clock.clone())).unwrap();
    let idp = Idp::builder("https://idp.example")
        .clock(Arc::new(clock.clone()))
        .billing(Arc::new(stripe))
        .build()
        .await
        .unwrap();
    World {
        fake,
        idp,
        clock,
        op: Caller::system(),
    }
}

impl World {
    async fn tenant(&self, name: &str, paid: bool) -> Tenant {
        let t = self
            .idp
            .create_tenant(
                &self.op,
                NewTenant {
                    name: name.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if paid {
            let s = self
                .idp
                .start_checkout(&self.op, &t.id, Tier::Pro)
                .await
                .unwrap();
            let w = self
                .fake
                .complete_checkout(&s.id, self.clock.now())
                .unwrap();
            let outcome = self
                .idp
                .handle_billing_webhook(&w.header, &w.body, &RequestMeta::default())
                .await
                .unwrap();
            assert_eq!(outcome, BillingOutcome::Applied);
        }
        self.idp.get_tenant(&self.op, &t.id).await.unwrap()
    }

    async fn api_calls(&self, t: &Tenant, n: usize) {
        for _ in 0..n {
            self.idp.admit_api_call(&t.id).await.unwrap();
        }
    }

    async fn tokens(&self, t: &Tenant, n: usize) {
        let agent = self
            .idp
            .register_agent(
                &self.op,
                &t.id,
                NewAgent {
                    name: format!("bot-{}", self.clock.now().unix_micros()),
                    allowed_scopes: vec!["read".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let req = TokenRequest {
            grant_type: "client_credentials".into(),
            client: ClientCredentials::Secret {
                client_id: agent.agent.id.to_string(),
                client_secret: agent.client_secret.clone().unwrap(),
            },
            scope: Some("read".into()),
            resources: vec![],
        };
        for _ in 0..n {
            self.idp
                .issue_token(&req, &RequestMeta::default())
                .await
                .unwrap();
        }
    }

    fn reporter(&self) -> MeterReporter {
        MeterReporter::new(self.idp.clone(), MeterEventNames::default())
    }
}

#[tokio::test]
async fn closed_hours_of_paid_tenants_are_reported_once() {
    let w = world().await;
    let paid = w.tenant("Paid", true).await;
    let free = w.tenant("Free", false).await;
    let customer = paid.billing.customer_id.clone().unwrap();

    // Hour 0: 5 API calls and 3 tokens for the paid tenant; use by the free one.
    w.api_calls(&paid, 5).await;
    w.tokens(&paid, 3).await;
    w.api_calls(&free, 7).await;
    // Hour 1: 2 more API calls.
    w.clock.set(Timestamp::from_unix_secs(HOUR0 + 3600 + 10));
    w.api_calls(&paid, 2).await;
    w.idp.flush_usage().await.unwrap();

    // Still inside hour 1 (and within the settle time of hour 0): nothing.
    w.clock.set(Timestamp::from_unix_secs(HOUR0 + 3600 + 120));
    let run = w.reporter().run().await.unwrap();
    assert_eq!((run.tenants, run.sent), (1, 0));
    assert!(w.fake.meter_events().is_empty());

    // Hour 0 closed and settled: its two reports go out.
    w.clock.set(Timestamp::from_unix_secs(HOUR0 + 3600 + 301));
    let run = w.reporter().run().await.unwrap();
    assert_eq!(run.sent, 2, "{run:?}");
    assert!(run.error.is_none());
    assert_eq!(w.fake.meter_total("sentryagent_api_calls", &customer), 5);
    assert_eq!(
        w.fake.meter_total("sentryagent_token_issuances", &customer),
        3
    );
    let ids: Vec<_> = w
        .fake
        .meter_events()
        .into_iter()
        .map(|e| e.identifier)
        .collect();
    assert!(
        ids.contains(&format!("{}:api_call:{HOUR0}", paid.id)),
        "{ids:?}"
    );
    assert!(
        ids.contains(&format!("{}:token_issued:{HOUR0}", paid.id)),
        "{ids:?}"
    );
    assert!(w.fake.meter_events().iter().all(|e| e.timestamp == HOUR0));
    assert!(
        w.idp
            .store()
            .markers
            .has_marker(
                MARKER_NAMESPACE,
                &meter_identifier(
                    paid.id.as_str(),
                    UsageKind::ApiCall,
                    Timestamp::from_unix_secs(HOUR0)
                ),
                w.clock.now()
            )
            .await
            .unwrap()
    );

    // Running again sends nothing new.
    let run = w.reporter().run().await.unwrap();
    assert_eq!((run.sent, run.already_sent), (0, 2));
    let requests = w.fake.requests_to("/v1/billing/meter_events").len();
    assert_eq!(requests, 2);

    // Hour 1 closes: only its report is sent.
    w.clock
        .set(Timestamp::from_unix_secs(HOUR0 + 2 * 3600 + 301));
    let run = w.reporter().run().await.unwrap();
    assert_eq!((run.sent, run.already_sent), (1, 2));
    assert_eq!(w.fake.meter_total("sentryagent_api_calls", &customer), 7);
    assert_eq!(w.fake.meter_events().len(), 3);
    assert_eq!(w.fake.meter_duplicates(), 0);
}

#[tokio::test]
async fn failed_reports_are_sent_on_the_next_run() {
    let w = world().await;
    let paid = w.tenant("Paid", true).await;
    let customer = paid.billing.customer_id.clone().unwrap();
    w.api_calls(&paid, 4).await;
    w.idp.flush_usage().await.unwrap();
    w.clock.set(Timestamp::from_unix_secs(HOUR0 + 3600 + 301));

    w.fake.fail_next(1000, 500);
    let run = w.reporter().run().await.unwrap();
    assert_eq!((run.sent, run.failed), (0, 1));
    assert!(run.error.is_some());
    assert_eq!(w.fake.meter_total("sentryagent_api_calls", &customer), 0);

    w.fake.clear_failures();
    let run = w.reporter().run().await.unwrap();
    assert_eq!((run.sent, run.failed, run.already_sent), (1, 0, 0));
    assert_eq!(w.fake.meter_total("sentryagent_api_calls", &customer), 4);
}

#[tokio::test]
async fn downgraded_tenants_and_hours_past_the_lookback_are_not_reported() {
    let w = world().await;
    let paid = w.tenant("Paid", true).await;
    w.api_calls(&paid, 3).await;
    w.idp.flush_usage().await.unwrap();

    // Ten days later the hour is outside a 7-day lookback.
    w.clock.set(Timestamp::from_unix_secs(HOUR0 + 10 * 86_400));
    let run = w.reporter().run().await.unwrap();
    assert_eq!((run.tenants, run.sent), (1, 0));
    // With a longer lookback it is reported.
    let run = w
        .reporter()
        .lookback(Duration::from_secs(14 * 86_400))
        .run()
        .await
        .unwrap();
    assert_eq!(run.sent, 1);

    // A tenant back on free is not reported.
    let sub = w.fake.subscriptions()[0].id.clone();
    let del = w.fake.delete_subscription(&sub, w.clock.now()).unwrap();
    w.idp
        .handle_billing_webhook(&del.header, &del.body, &RequestMeta::default())
        .await
        .unwrap();
    w.api_calls(&paid, 2).await;
    w.idp.flush_usage().await.unwrap();
    w.clock.advance(Duration::from_secs(2 * 3600));
    let run = w.reporter().run().await.unwrap();
    assert_eq!((run.tenants, run.sent), (0, 0));
}

#[tokio::test]
async fn without_billing_nothing_is_reported() {
    let idp = Idp::builder("https://idp.example").build().await.unwrap();
    let run = MeterReporter::new(idp, MeterEventNames::default())
        .run()
        .await
        .unwrap();
    assert_eq!((run.tenants, run.sent), (0, 0));
}
