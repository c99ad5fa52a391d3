//! The PostgreSQL store against a real server (from `roster_testkit`): the
//! shared conformance suite, plus the change-log ordering tests that only
//! make sense with concurrent transactions.

mod conformance;

use std::sync::Arc;

use conformance::Fixture;
use roster_store::postgres::PgStore;

async fn store() -> PgStore {
    store_and_url().await.0
}

/// A migrated store on a fresh database, and the database's URL (for a
/// second store: another replica).
async fn store_and_url() -> (PgStore, String) {
    let url = roster_testkit::fresh_database("store").await;
    let store = PgStore::connect(&url, 8).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, url)
}

async fn fixture() -> Fixture {
    Fixture {
        store: Arc::new(store().await),
        guard: Box::new(()),
    }
}

conformance::conformance_suite!(fixture);

use std::collections::BTreeSet;
use std::time::Duration;

use roster_store::{ChangeFilter, Store};
use sqlx::{Connection, PgConnection};

/// How long a test waits for a condition before failing.
const DEADLINE: Duration = Duration::from_secs(60);

/// Opens a raw connection to the store's database (to drive transactions by hand).
async fn raw(store: &PgStore) -> PgConnection {
    let options = store.pool().connect_options();
    PgConnection::connect_with(&options)
        .await
        .expect("raw connection")
}

/// Mimics the store's write path by hand: gets an xid, then appends one
/// change taking a revision; returns the revision. The transaction stays open.
async fn take_revision(conn: &mut PgConnection) -> i64 {
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_scalar(
        "INSERT INTO changes (revision, event_id, directory_id, kind, resource_id, version, payload) \
         VALUES (nextval('change_revision'), gen_random_uuid(), gen_random_uuid(), 'directory.updated', \
                 gen_random_uuid(), 1, '{}'::jsonb) RETURNING revision",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

async fn finish(conn: &mut PgConnection, commit: bool) {
    let sql = if commit { "COMMIT" } else { "ROLLBACK" };
    sqlx::query(sql).execute(&mut *conn).await.unwrap();
}

/// Polls the stable head until it reaches `at_least`.
async fn head_reaches(store: &PgStore, at_least: i64) -> i64 {
    roster_testkit::eventually("the stable head to advance", DEADLINE, || async {
        let head = store.advance_stable_head(0).await.unwrap();
        (head >= at_least).then_some(head)
    })
    .await
}

/// The revisions of the changes after `after` up to `up_to` a reader gets.
async fn revisions(store: &PgStore, after: i64, up_to: i64) -> Vec<i64> {
    let every = ChangeFilter::default();
    let changes = store.read_changes(&every, after, up_to, 100).await.unwrap();
    changes.iter().map(|c| c.revision).collect()
}

#[tokio::test]
async fn stable_head_waits_for_out_of_order_commits_and_skips_aborted_holes() {
    let (store, url) = store_and_url().await;
    conformance::directory(&store, "d").await;
    let base = head_reaches(&store, 1).await;

    // A takes a revision; B takes a later one and commits first.
    let (mut a, mut b) = (raw(&store).await, raw(&store).await);
    let ra = take_revision(&mut a).await;
    let rb = take_revision(&mut b).await;
    assert!(rb > ra);
    finish(&mut b, true).await;
    for _ in 0..3 {
        // B's revision is visible, but A may still commit below it.
        assert_eq!(store.advance_stable_head(0).await.unwrap(), ra - 1);
        assert!(revisions(&store, base, ra - 1).await.is_empty());
    }
    finish(&mut a, true).await;
    assert_eq!(head_reaches(&store, rb).await, rb);
    assert_eq!(revisions(&store, base, rb).await, vec![ra, rb]);

    // C takes a revision and will abort; D commits after it.
    let (mut c, mut d) = (raw(&store).await, raw(&store).await);
    let rc = take_revision(&mut c).await;
    let rd = take_revision(&mut d).await;
    finish(&mut d, true).await;
    assert_eq!(store.advance_stable_head(0).await.unwrap(), rc - 1);
    finish(&mut c, false).await;
    // The hole left by C is permanent: the head moves past it.
    assert_eq!(head_reaches(&store, rd).await, rd);
    assert_eq!(revisions(&store, rb, rd).await, vec![rd]);
    // A second store (another replica) computes the same head from scratch.
    let replica = PgStore::connect(&url, 2).await.unwrap();
    assert_eq!(head_reaches(&replica, rd).await, rd);
}

#[tokio::test]
async fn a_transaction_of_another_database_does_not_hold_the_stable_head() {
    let store = store().await;
    conformance::directory(&store, "d").await;
    head_reaches(&store, 1).await;
    // Another application's database on the same server, idle in a
    // transaction that holds a transaction id.
    let other_url = roster_testkit::fresh_database("store_other_app").await;
    let mut other = PgConnection::connect(&other_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut other)
        .await
        .unwrap();

    // C takes a revision and aborts; D commits after it: a hole whose
    // possible takers have all ended, except the other database's.
    let (mut c, mut d) = (raw(&store).await, raw(&store).await);
    take_revision(&mut c).await;
    let rd = take_revision(&mut d).await;
    finish(&mut d, true).await;
    finish(&mut c, false).await;
    assert_eq!(head_reaches(&store, rd).await, rd);

    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_are_delivered_exactly_once_in_order() {
    let store = store().await;
    let dir = conformance::directory(&store, "busy").await;
    let writers_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let reader = {
        let (store, done) = (store.clone(), writers_done.clone());
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut position = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let head = store.advance_stable_head(position).await.unwrap();
                let batch = store
                    .read_changes(&ChangeFilter::default(), position, head, 100_000)
                    .await
                    .unwrap();
                seen.extend(batch.iter().map(|c| c.revision));
                position = head;
                if finished {
                    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
                        .fetch_one(store.pool())
                        .await
                        .unwrap();
                    if seen.len() as i64 == all {
                        return seen;
                    }
                }
                store
                    .wait_for_changes(Duration::from_millis(20))
                    .await
                    .unwrap();
            }
        })
    };

    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                let u = store
                    .create_user(dir.id, conformance::user(&format!("w{w}-{i}")))
                    .await
                    .unwrap();
                store.delete_user(dir.id, u.id, None).await.unwrap();
            }
        }));
    }
    // Aborted transactions that took revisions: holes interleaved with commits.
    let aborter = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut conn = raw(&store).await;
            for _ in 0..40 {
                take_revision(&mut conn).await;
                tokio::task::yield_now().await;
                finish(&mut conn, false).await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    aborter.await.unwrap();
    writers_done.store(true, std::sync::atomic::Ordering::Release);

    let seen = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("reader caught up")
        .unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    let committed: BTreeSet<i64> = sqlx::query_scalar("SELECT revision FROM changes")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), committed);
    assert_eq!(committed.len(), 1 + 4 * 40 * 2);
}

#[tokio::test]
async fn a_write_through_one_replica_wakes_a_watcher_on_another() {
    let (writer, url) = store_and_url().await;
    let watcher = PgStore::connect(&url, 2).await.unwrap();
    let long = Duration::from_secs(3600);
    // The first wait returns once the LISTEN connection is up.
    tokio::time::timeout(DEADLINE, watcher.wait_for_changes(long))
        .await
        .expect("listener connects")
        .unwrap();
    let waiting = {
        let watcher = watcher.clone();
        tokio::spawn(async move { watcher.wait_for_changes(long).await })
    };
    conformance::directory(&writer, "wake").await;
    writer.notify_changes().await.unwrap();
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the watcher was woken by NOTIFY")
        .unwrap()
        .unwrap();
    assert!(watcher.advance_stable_head(0).await.unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_cursors_stay_exact_under_concurrent_writes() {
    let store = store().await;
    let dir = conformance::directory(&store, "racy").await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..30 {
                store
                    .create_user(dir.id, conformance::user(&format!("r{w}-{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    let mut checked = 0;
    while writers.iter().any(|w| !w.is_finished()) || checked < 3 {
        let page = store
            .list_users(dir.id, &conformance::query(None))
            .await
            .unwrap();
        let listed: BTreeSet<uuid::Uuid> = page.items.iter().map(|u| u.id.0).collect();
        let cursor = page.cursor.clone().expect("a list cursor");
        // Every change the cursor claims must be readable, then the users it
        // claims are exactly the users the list returned.
        let top = cursor
            .also_seen
            .iter()
            .copied()
            .max()
            .unwrap_or(cursor.after);
        let head = head_reaches(&store, top).await;
        let claimed: BTreeSet<uuid::Uuid> = store
            .read_changes(&ChangeFilter::default(), 0, head, 100_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.revision <= cursor.after || cursor.also_seen.contains(&c.revision))
            .filter(|c| c.kind == roster_store::ChangeKind::UserCreated)
            .map(|c| c.resource_id)
            .collect();
        assert_eq!(listed, claimed, "cursor {cursor:?}");
        checked += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
}

/// A number the server keeps about the database at `url`, read on a
/// connection of its own (not one of the store's).
async fn statistic(url: &str, sql: &'static str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

/// The contention cases of the conformance suite pass on PostgreSQL even
/// if some of their transactions deadlock (the store replays them); this
/// asks the server whether any did. With one lock order, none may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_and_delete_races_deadlock_nowhere() {
    let (store, url) = store_and_url().await;
    let store = Arc::new(store);
    conformance::contention::membership_edits_race_user_deletes_without_conflicts(store.clone())
        .await;
    conformance::contention::nested_group_deletes_race_user_deletes_without_conflicts(
        store.clone(),
    )
    .await;
    store.close().await;
    // A backend flushes its statistics before it leaves pg_stat_activity.
    roster_testkit::eventually("the store's sessions to end", DEADLINE, || {
        let others = statistic(
            &url,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        );
        async move { (others.await == 0).then_some(()) }
    })
    .await;
    let deadlocks = statistic(
        &url,
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    );
    assert_eq!(deadlocks.await, 0, "deadlocks detected by PostgreSQL");
}

/// The process that commits change rows hands them to its own log reads
/// (the change tailer's) without reading them back: exactly the rows the
/// database holds, every column, for each way a write appends them.
#[tokio::test]
async fn the_rows_a_process_committed_read_back_as_the_database_has_them() {
    let (store, url) = store_and_url().await;
    let dir = conformance::directory(&store, "recent").await;
    let alone = store
        .create_user(dir.id, conformance::user("alone"))
        .await
        .unwrap();
    let batch = store
        .create_users(
            dir.id,
            vec![conformance::user("first"), conformance::user("second")],
        )
        .await;
    assert!(batch.iter().all(Result::is_ok), "{batch:?}");
    store
        .create_group(
            dir.id,
            conformance::group_with("team", vec![conformance::member(&alone)]),
        )
        .await
        .unwrap();
    store.delete_user(dir.id, alone.id, None).await.unwrap();

    let head = store.advance_stable_head(0).await.unwrap();
    let all = ChangeFilter::default();
    // Another replica has no rows of its own: it reads the database.
    let replica = PgStore::connect(&url, 2).await.unwrap();
    let stored = replica.read_changes(&all, 0, head, 1000).await.unwrap();
    assert!(stored.len() >= 7, "{} rows", stored.len());
    assert_eq!(stored.last().map(|c| c.revision), Some(head));

    // Gone from the database behind the store's back, the rows still come
    // back from the process that committed them: the read never reached it.
    sqlx::query("DELETE FROM changes")
        .execute(store.pool())
        .await
        .unwrap();
    let filtered = ChangeFilter {
        directory_id: Some(dir.id),
        kinds: vec![roster_store::ChangeKind::UserCreated],
    };
    let created = store.read_changes(&filtered, 0, head, 1000).await.unwrap();
    let expected: Vec<_> = stored
        .iter()
        .filter(|c| filtered.matches(c))
        .cloned()
        .collect();
    assert_eq!(created.len(), 3);
    assert_eq!(created, expected);
    assert_eq!(
        store.read_changes(&all, 0, head, 1000).await.unwrap(),
        stored
    );
}

/// Webhook progress is written after every delivery, by a statement each
/// progress connection prepares once and then runs from its cached generic
/// plan. On a table of a page or two the planner would scan the delivery
/// state rows whole (and keep that plan however the table grows); on the
/// progress connections it finds them by primary key.
#[tokio::test]
async fn the_webhook_progress_batch_finds_its_rows_by_primary_key() {
    use roster_store::{NewWebhook, WebhookId};
    let store = store().await;
    for i in 0..10 {
        let new = NewWebhook {
            id: WebhookId::new(),
            directory_id: None,
            url: format!("https://{i}.example/hook"),
            kinds: Vec::new(),
            description: String::new(),
            enabled: true,
            sealed_secret: vec![1],
            cursor: 0,
        };
        store.create_webhook(new).await.expect("create webhook");
    }
    let plan = store.webhook_progress_plan().await.expect("plan");
    assert!(
        plan.contains("Index Scan using webhook_progress_pkey on webhook_progress"),
        "{plan}"
    );
    assert!(!plan.contains("Seq Scan on webhook_progress"), "{plan}");
    // The pruning's search for the 100th newest attempt runs in its own
    // materialized CTE, only for the endpoints that asked for pruning
    // (inlined, a plan without hash joins ran it for every attempt).
    assert!(plan.contains("CTE kept"), "{plan}");
}

/// Every user read carries the user's group ids, in `group_id` order. With
/// enough memberships for the planner to prefer an index, that is one
/// index-only scan of `memberships_member_groups`, already in order: no
/// bitmap heap scan and no sort per user row (migration 0500).
#[tokio::test]
async fn a_users_groups_are_read_in_order_from_one_index() {
    let store = store().await;
    let dir = conformance::directory(&store, "groups-of-a-user").await;
    let user = store
        .create_user(dir.id, conformance::user("member"))
        .await
        .unwrap();
    for i in 0..40 {
        let group = conformance::group_with(&format!("team-{i}"), vec![conformance::member(&user)]);
        store.create_group(dir.id, group).await.unwrap();
    }
    // Other members, so that the user's rows are a small part of the table.
    sqlx::query(
        "INSERT INTO memberships (directory_id, group_id, member_id, member_kind) \
         SELECT g.directory_id, g.id, gen_random_uuid(), 'user' \
         FROM groups g, generate_series(1, 200)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE memberships")
        .execute(store.pool())
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT m.group_id FROM memberships m \
         WHERE m.member_id = $1 AND m.member_kind = 'user' ORDER BY m.group_id",
    )
    .bind(user.id.0)
    .fetch_all(store.pool())
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Only Scan using memberships_member_groups"),
        "{plan}"
    );
    assert!(!plan.contains("Sort"), "{plan}");
    let read = store.get_user(dir.id, user.id).await.unwrap();
    assert_eq!(read.group_ids.len(), 40);
    assert!(read.group_ids.windows(2).all(|w| w[0] <= w[1]));
}

/// `warm_up` leaves that many connections open (never more than the pool
/// may hold), so the first requests after a start find them ready.
#[tokio::test]
async fn warm_up_opens_connections_up_to_the_pool_size() {
    let (cold, url) = store_and_url().await;
    let before = cold.pool().size();
    assert!(before < 4, "a new pool opens one connection, not {before}");
    cold.warm_up(4).await.unwrap();
    // At least four: the connection migrations used may still be on its
    // way back to the pool when the four are taken.
    assert!(cold.pool().size() >= 4, "{} open", cold.pool().size());
    let small = PgStore::connect(&url, 3).await.unwrap();
    small.warm_up(10).await.unwrap();
    assert_eq!(small.pool().size(), 3, "capped at the pool's size");
}
