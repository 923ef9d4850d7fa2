//! The [`UserStore`] conformance suite.

use std::sync::Arc;

use super::{sample_user, unique};
use crate::store::UserStore;
use crate::{Error, UserId};

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn UserStore>) {
    users(store.as_ref()).await;
    race_emails(store.clone()).await;
}

/// Accounts: unique id and email, lookups, optimistic updates, a fixed
/// email.
pub async fn users(store: &dyn UserStore) {
    let u = sample_user("Ada");
    store.create_user(&u).await.unwrap();
    check!(
        store,
        store.get_user(&u.id).await.unwrap() == u,
        "get by id"
    );
    check!(
        store,
        store.get_user_by_email(&u.email).await.unwrap() == u,
        "get by email"
    );
    let mut same_id = sample_user("Other");
    same_id.id = u.id.clone();
    let r = store.create_user(&same_id).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "taken id: {r:?}"
    );
    let mut same_email = sample_user("Other");
    same_email.email = u.email.clone();
    let r = store.create_user(&same_email).await;
    check!(
        store,
        matches!(r, Err(Error::AlreadyExists { .. })),
        "taken email: {r:?}"
    );
    let r = store.get_user(&UserId::generate()).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing id: {r:?}"
    );
    let r = store
        .get_user_by_email(&format!("nobody-{}@example.com", unique()))
        .await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "missing email: {r:?}"
    );

    let mut changed = u.clone();
    changed.display_name = "Ada L.".into();
    let stored = store.update_user(&changed).await.unwrap();
    check!(
        store,
        stored.revision == 1 && stored.display_name == "Ada L.",
        "update bumps the revision: {stored:?}"
    );
    check!(
        store,
        store.get_user_by_email(&u.email).await.unwrap() == stored,
        "the email index sees the update"
    );
    let r = store.update_user(&changed).await;
    check!(
        store,
        matches!(r, Err(Error::Conflict { .. })),
        "stale update: {r:?}"
    );
    let mut moved = stored.clone();
    moved.email = format!("moved-{}@example.com", unique());
    let r = store.update_user(&moved).await;
    check!(
        store,
        matches!(r, Err(Error::Invalid { .. })),
        "email change: {r:?}"
    );
    let r = store.update_user(&sample_user("Ghost")).await;
    check!(
        store,
        matches!(r, Err(Error::NotFound { .. })),
        "update missing: {r:?}"
    );

    let mut accented = sample_user("Elodie");
    accented.email = format!("élodie-{}@exemple.fr", unique());
    store.create_user(&accented).await.unwrap();
    check!(
        store,
        store.get_user_by_email(&accented.email).await.unwrap().id == accented.id,
        "non-ASCII emails round trip"
    );
}

/// Concurrent creates of accounts with one email: exactly one succeeds.
pub async fn race_emails(store: Arc<dyn UserStore>) {
    let email = format!("race-{}@example.com", unique());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let mut u = sample_user("Racer");
        u.email = email.clone();
        tasks.push(tokio::spawn(async move {
            let r = store.create_user(&u).await;
            (u.id, r)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (id, Ok(())) => winners.push(id),
            (_, Err(Error::AlreadyExists { .. })) => {}
            (_, Err(e)) => panic!("[{}] racing create_user: {e}", store.name()),
        }
    }
    check!(
        store,
        winners.len() == 1,
        "exactly one of 16 concurrent accounts with one email is created, got {}",
        winners.len()
    );
    check!(
        store,
        store.get_user_by_email(&email).await.unwrap().id == winners[0],
        "the email names the winner"
    );
}
