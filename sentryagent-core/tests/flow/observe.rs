//! What the `Idp` reports to its observers (lifecycle transitions, tier
//! limit checks), and the agents-by-state figures it reads from the store.

use std::sync::Mutex;

use sentryagent_core::{AgentStateCounts, IdpEvent, IdpObserver};

use super::*;

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<IdpEvent>>);

impl IdpObserver for Recorder {
    fn observe(&self, event: &IdpEvent) {
        self.0.lock().unwrap().push(*event);
    }
}

impl Recorder {
    fn take(&self) -> Vec<IdpEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn quota(kind: LimitKind, used: u64, limit: u64, admitted: bool) -> IdpEvent {
    IdpEvent::QuotaChecked {
        tier: Tier::Free,
        kind,
        used,
        limit,
        admitted,
    }
}

fn moved(from: LifecycleState, to: LifecycleState) -> IdpEvent {
    IdpEvent::LifecycleTransition { from, to }
}

#[tokio::test]
async fn observers_hear_transitions_and_every_tier_limit_check() {
    let clock = clock();
    let Some(idp) = idp_with(&clock, |c| {
        c.tiers.free.max_agents = Some(2);
        c.tiers.free.api_calls_per_day = Some(2);
        c.tiers.free.token_issuances_per_month = Some(2);
    })
    .await
    else {
        return;
    };
    let seen = Arc::new(Recorder::default());
    idp.add_observer(seen.clone());
    let t = tenant(&idp, Tier::Free).await;
    assert_eq!(seen.take(), vec![], "creating a tenant checks no limit");

    // Agents: two admitted, the third refused.
    let a = agent(&idp, &t, "a").await;
    agent(&idp, &t, "b").await;
    let r = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "c".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::QuotaExceeded { .. })), "{r:?}");
    assert_eq!(
        seen.take(),
        vec![
            quota(LimitKind::Agents, 0, 2, true),
            quota(LimitKind::Agents, 1, 2, true),
            quota(LimitKind::Agents, 2, 2, false),
        ]
    );

    // Lifecycle: each stored change once; a refused one and a change of
    // description are no transition.
    let system = Caller::system();
    idp.transition_agent(&system, &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    idp.transition_agent(&system, &a.agent.id, LifecycleState::Active)
        .await
        .unwrap();
    let r = idp
        .transition_agent(&system, &a.agent.id, LifecycleState::Draft)
        .await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
    idp.update_agent(
        &system,
        &a.agent.id,
        sentryagent_core::AgentPatch {
            description: Some("changed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        seen.take(),
        vec![
            moved(LifecycleState::Active, LifecycleState::Paused),
            moved(LifecycleState::Paused, LifecycleState::Active),
        ]
    );

    // Tokens this month: two, then refused.
    let req = secret_request(&a, None);
    issue(&idp, &req).await.unwrap();
    issue(&idp, &req).await.unwrap();
    let r = issue(&idp, &req).await;
    assert!(matches!(r, Err(Error::QuotaExceeded { .. })), "{r:?}");
    // API calls today: the same.
    idp.admit_api_call(&t.id).await.unwrap();
    idp.admit_api_call(&t.id).await.unwrap();
    let r = idp.admit_api_call(&t.id).await;
    assert!(matches!(r, Err(Error::QuotaExceeded { .. })), "{r:?}");
    let events = seen.take();
    assert_eq!(
        events,
        vec![
            quota(LimitKind::TokenIssuancesPerMonth, 0, 2, true),
            quota(LimitKind::TokenIssuancesPerMonth, 1, 2, true),
            quota(LimitKind::TokenIssuancesPerMonth, 2, 2, false),
            quota(LimitKind::ApiCallsPerDay, 0, 2, true),
            quota(LimitKind::ApiCallsPerDay, 1, 2, true),
            quota(LimitKind::ApiCallsPerDay, 2, 2, false),
        ]
    );
    let ratios: Vec<f64> = events.iter().filter_map(IdpEvent::quota_ratio).collect();
    assert_eq!(ratios, vec![0.5, 1.0, 1.5, 0.5, 1.0, 1.5]);

    // Unlimited tiers check nothing.
    let ent = tenant(&idp, Tier::Enterprise).await;
    let e = agent(&idp, &ent, "e").await;
    issue(&idp, &secret_request(&e, None)).await.unwrap();
    idp.admit_api_call(&ent.id).await.unwrap();
    assert_eq!(seen.take(), vec![]);
}

#[tokio::test]
async fn agents_by_state_reads_the_store_at_most_once_per_max_age() {
    let clock = clock();
    let Some(idp) = idp_with(&clock, |c| {
        c.agent_counts_max_age = Duration::from_secs(10);
    })
    .await
    else {
        return;
    };
    assert_eq!(
        idp.agents_by_state().await.unwrap(),
        AgentStateCounts::default()
    );
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "a").await;
    agent(&idp, &t, "b").await;
    let draft = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "draft".into(),
                state: Some(LifecycleState::Draft),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    idp.transition_agent(&Caller::system(), &a.agent.id, LifecycleState::Retired)
        .await
        .unwrap();
    // Within the max age: the figures read before.
    clock.advance(Duration::from_secs(9));
    assert_eq!(idp.agents_by_state().await.unwrap().total(), 0);
    // Past it: the store's.
    clock.advance(Duration::from_secs(1));
    let counts = idp.agents_by_state().await.unwrap();
    let expected: AgentStateCounts = [
        LifecycleState::Active,
        LifecycleState::Draft,
        LifecycleState::Retired,
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, expected, "{counts:?}");
    // Read again only after another max age.
    idp.transition_agent(&Caller::system(), &draft.agent.id, LifecycleState::Deployed)
        .await
        .unwrap();
    assert_eq!(idp.agents_by_state().await.unwrap(), expected);
    clock.advance(Duration::from_secs(10));
    let counts = idp.agents_by_state().await.unwrap();
    assert_eq!(counts.get(LifecycleState::Draft), 0);
    assert_eq!(counts.get(LifecycleState::Deployed), 1);
    assert_eq!(counts.total(), 3);
}
