//! The PostgreSQL store against a real server (from `roster_testkit`): the
//! shared conformance suite, plus the change-log ordering tests that only
//! make sense with concurrent transactions.

mod conformance;

use std::sync::Arc;

use conformance::Fixture;
use roster_store::postgres::PgStore;

async fn store() -> PgStore {
    let url = roster_testkit::fresh_database("store").await;
    let store = PgStore::connect(&url, 8).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

async fn fixture() -> Fixture {
    Fixture {
        store: Arc::new(store().await),
        guard: Box::new(()),
    }
}

conformance::conformance_suite!(fixture);
