//! WatchChanges over real gRPC: ordering, resume, list-then-watch, initial
//! state, progress, retention, slow consumers — on PostgreSQL and on the
//! embedded SQLite store — and, on PostgreSQL, replicas and out-of-order
//! commits.

use std::time::Duration;

use roster_directory::DirectoryConfig;
use roster_directory::cursor;
use roster_directory::error::OLDEST_CURSOR_KEY;
use roster_proto::directory::change::Resource;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{ChangeKind, ListOptions, WatchChangesRequest};
use roster_store::Cursor;
use roster_testkit::app::*;
use roster_testkit::on_both_backends;

on_both_backends!(from_now_delivers_later_changes_in_order_with_cursors);
async fn from_now_delivers_later_changes_in_order_with_cursors(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_from_now", "from-now").await;
    let before = env.user(&d, "before@example.com").await;
    let mut stream = watch(&mut env.dir, &d, &[], Start::FromNow(())).await;
    let a = env.user(&d, "a@example.com").await;
    let b = env.user(&d, "b@example.com").await;

    let [(m1, c1), (m2, c2)] = next_changes(&mut stream).await;
    assert_eq!(
        (kind(&c1), c1.resource_id.as_str()),
        (ChangeKind::UserCreated, a.id.as_str())
    );
    assert_eq!(
        (kind(&c2), c2.resource_id.as_str()),
        (ChangeKind::UserCreated, b.id.as_str())
    );
    assert_ne!(
        c1.resource_id, before.id,
        "from_now must not replay earlier changes"
    );
    assert!(m1.revision < m2.revision);
    assert!(!m1.cursor.is_empty() && m1.cursor != m2.cursor);
    assert_eq!(c1.directory_id, d);
    assert_eq!(c1.version, 1);
    assert!(!c1.synthetic && !c1.tombstone);
    match c1.resource {
        Some(Resource::User(u)) => assert_eq!(u.user_name, "a@example.com"),
        other => panic!("expected the user payload, got {other:?}"),
    }
}

on_both_backends!(resuming_from_a_cursor_has_no_gap_and_no_duplicate);
async fn resuming_from_a_cursor_has_no_gap_and_no_duplicate(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_resume", "resume").await;
    let mut stream = watch(&mut env.dir, &d, &[], Start::FromNow(())).await;
    let u1 = env.user(&d, "u1@example.com").await;
    let u2 = env.user(&d, "u2@example.com").await;
    let [(m1, c1), (_, c2)] = next_changes(&mut stream).await;
    assert_eq!(
        (c1.resource_id.as_str(), c2.resource_id.as_str()),
        (u1.id.as_str(), u2.id.as_str())
    );
    drop(stream); // the consumer disconnects having persisted m1's cursor

    let u3 = env.user(&d, "u3@example.com").await;
    let mut resumed = watch(&mut env.dir, &d, &[], Start::AfterCursor(m1.cursor.clone())).await;
    let [(_, r1), (_, r2)] = next_changes(&mut resumed).await;
    assert_eq!(
        r1.resource_id, u2.id,
        "the first change after the cursor comes next"
    );
    assert_eq!(r1.event_id, c2.event_id, "redelivered events keep their id");
    assert_eq!(r2.resource_id, u3.id);
    let rest = messages_during(&mut resumed, Duration::from_millis(500)).await;
    assert!(
        rest.iter()
            .all(|m| !matches!(m.payload, Some(Payload::Change(_)))),
        "no duplicates: {rest:?}"
    );
}

on_both_backends!(list_then_watch_is_exact);
async fn list_then_watch_is_exact(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_list_then", "list-then-watch").await;
    env.user(&d, "listed@example.com").await;
    let list = env.list_users(&d, Some(ListOptions::default())).await;
    assert_eq!(list.users.len(), 1);
    assert!(!list.cursor.is_empty());
    let after_list = env.user(&d, "after@example.com").await;

    let mut stream = watch(
        &mut env.dir,
        &d,
        &[],
        Start::AfterCursor(list.cursor.clone()),
    )
    .await;
    let (_, c) = next_change(&mut stream).await;
    assert_eq!(
        c.resource_id, after_list.id,
        "the listed user is not delivered again"
    );

    let mut by_revision = watch(&mut env.dir, &d, &[], Start::AfterRevision(list.revision)).await;
    assert_next_change_of(&mut by_revision, &after_list.id).await;
}

on_both_backends!(initial_state_then_synced_then_live_changes);
async fn initial_state_then_synced_then_live_changes(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_initial", "initial").await;
    let other = env.directory("other").await;
    let u1 = env.user(&d, "u1@example.com").await;
    let u2 = env.user(&d, "u2@example.com").await;
    env.user(&other, "elsewhere@example.com").await;
    let group = serde_json::json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": "Engineering",
        "members": [{"value": u1.id, "type": "User"}]
    });
    let g = create_group(&mut env.dir, &d, group.to_string()).await;

    let mut stream = watch(&mut env.dir, &d, &[], Start::InitialState(())).await;
    let mut synthetic = Vec::new();
    let synced = loop {
        let msg = next_message(&mut stream).await;
        match msg.payload.clone() {
            Some(Payload::Change(c)) => {
                assert!(c.synthetic, "initial-state events are synthetic");
                assert_eq!(c.directory_id, d);
                synthetic.push(c);
            }
            Some(Payload::Synced(_)) => break msg,
            other => panic!("unexpected message before SYNCED: {other:?}"),
        }
    };
    let mut users: Vec<_> = synthetic
        .iter()
        .filter(|c| kind(c) == ChangeKind::UserCreated)
        .map(|c| c.resource_id.clone())
        .collect();
    users.sort();
    let mut expected = vec![u1.id.clone(), u2.id.clone()];
    expected.sort();
    assert_eq!(users, expected, "exactly this directory's users");
    assert!(
        synthetic
            .iter()
            .any(|c| kind(c) == ChangeKind::GroupCreated && c.resource_id == g.id)
    );
    let memberships: Vec<_> = synthetic
        .iter()
        .filter_map(|c| match &c.resource {
            Some(Resource::Membership(m)) if kind(c) == ChangeKind::MemberAdded => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(memberships.len(), 1);
    assert_eq!(
        (
            memberships[0].group_id.as_str(),
            memberships[0].member_id.as_str()
        ),
        (g.id.as_str(), u1.id.as_str())
    );
    assert!(!synced.cursor.is_empty());

    let live = env.user(&d, "live@example.com").await;
    let (_, c) = next_change(&mut stream).await;
    assert_eq!(
        (c.resource_id.as_str(), c.synthetic),
        (live.id.as_str(), false)
    );

    // The SYNCED cursor resumes right after the snapshot.
    let mut resumed = watch(&mut env.dir, &d, &[], Start::AfterCursor(synced.cursor)).await;
    assert_next_change_of(&mut resumed, &live.id).await;
}

on_both_backends!(progress_markers_advance_past_filtered_out_events);
async fn progress_markers_advance_past_filtered_out_events(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_progress", "progress").await;
    let mut stream = watch(
        &mut env.dir,
        &d,
        &[ChangeKind::GroupDeleted],
        Start::FromNow(()),
    )
    .await;
    env.user(&d, "hidden@example.com").await;
    let revision = env.list_users(&d, None).await.revision;
    assert!(revision > 0);
    let progressed = tokio::time::timeout(PROMPTLY, async {
        loop {
            let msg = stream.message().await.unwrap().unwrap();
            match msg.payload {
                Some(Payload::Progress(_)) if msg.revision >= revision => return msg,
                Some(Payload::Progress(_)) => {}
                other => panic!("only progress markers pass this filter, got {other:?}"),
            }
        }
    })
    .await
    .expect("a progress marker past the hidden change");
    // Resuming from the marker does not replay the hidden change either.
    let mut all_kinds = watch(&mut env.dir, &d, &[], Start::AfterCursor(progressed.cursor)).await;
    let later = env.user(&d, "later@example.com").await;
    assert_next_change_of(&mut all_kinds, &later.id).await;
}

on_both_backends!(a_pruned_cursor_is_out_of_range_with_the_oldest_valid_cursor);
async fn a_pruned_cursor_is_out_of_range_with_the_oldest_valid_cursor(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_pruned", "pruned").await;
    env.users(&d, "u", 3).await;
    let pruned_through = env.store.prune_changes(0).await.expect("pruning");
    assert!(
        pruned_through > 1,
        "the test needs pruned changes (pruned through {pruned_through})"
    );

    let req = WatchChangesRequest {
        directory_id: d.clone(),
        kinds: vec![],
        start: Some(Start::AfterRevision(1)),
    };
    let status = env
        .dir
        .watch_changes(req)
        .await
        .expect_err("an expired cursor must fail");
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    let oldest = status
        .metadata()
        .get(OLDEST_CURSOR_KEY)
        .expect("oldest cursor metadata")
        .to_str()
        .unwrap()
        .to_string();
    assert!(status.message().contains(&oldest), "{}", status.message());

    // The oldest valid cursor is accepted and delivers what follows.
    let mut stream = watch(&mut env.dir, &d, &[], Start::AfterCursor(oldest)).await;
    let next = env.user(&d, "next@example.com").await;
    assert_next_change_of(&mut stream, &next.id).await;
}

on_both_backends!(malformed_watch_requests_are_invalid_arguments);
async fn malformed_watch_requests_are_invalid_arguments(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_invalid", "invalid").await;
    for start in [
        Start::AfterCursor("garbage".into()),
        Start::AfterRevision(-5),
    ] {
        let req = WatchChangesRequest {
            directory_id: d.clone(),
            kinds: vec![],
            start: Some(start),
        };
        let status = env.dir.watch_changes(req).await.expect_err("must fail");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    let req = WatchChangesRequest {
        directory_id: d.clone(),
        kinds: vec![999],
        start: None,
    };
    assert_eq!(
        env.dir.watch_changes(req).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
}

/// The status a watch request fails with.
async fn refused(env: &mut Env, directory: &str, start: Start) -> tonic::Status {
    let req = WatchChangesRequest {
        directory_id: directory.to_owned(),
        kinds: vec![],
        start: Some(start),
    };
    env.dir
        .watch_changes(req)
        .await
        .expect_err("the watch must be refused")
}

/// The cursor a watch issues with a change: the creation of a user in `d`.
async fn an_issued_cursor(env: &mut Env, d: &str) -> String {
    let mut stream = watch(&mut env.dir, d, &[], Start::FromNow(())).await;
    env.user(d, "issued@example.com").await;
    next_change(&mut stream).await.0.cursor
}

on_both_backends!(a_position_beyond_the_log_is_out_of_range);
async fn a_position_beyond_the_log_is_out_of_range(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_future", "future").await;
    let issued = cursor::decode(&an_issued_cursor(&mut env, &d).await).unwrap();
    assert!(issued.epoch.is_some(), "issued cursors carry the epoch");
    let newest = env.store.log_bounds().await.unwrap().allocated_head;

    let ahead = Cursor {
        after: newest + 100,
        ..issued.clone()
    };
    let seen_ahead = Cursor {
        also_seen: vec![newest + 1],
        ..issued.clone()
    };
    let legacy_ahead = format!("r{}", newest + 100);
    for start in [
        Start::AfterRevision(newest + 1),
        Start::AfterCursor(cursor::encode(&ahead)),
        Start::AfterCursor(cursor::encode(&seen_ahead)),
        Start::AfterCursor(legacy_ahead),
    ] {
        let status = refused(&mut env, &d, start.clone()).await;
        assert_eq!(
            status.code(),
            tonic::Code::OutOfRange,
            "{start:?}: {status:?}"
        );
        assert!(status.message().contains("ahead"), "{}", status.message());
    }
    // The newest revision itself, and cursors without an epoch (issued
    // before epochs existed), are still fine.
    let starts: [fn(i64) -> Start; 2] = [Start::AfterRevision, |r| {
        Start::AfterCursor(format!("r{r}"))
    }];
    for (i, start) in starts.into_iter().enumerate() {
        let newest = env.store.log_bounds().await.unwrap().allocated_head;
        let mut resumed = watch(&mut env.dir, &d, &[], start(newest)).await;
        let later = env.user(&d, &format!("later{i}@example.com")).await;
        assert_next_change_of(&mut resumed, &later.id).await;
    }
}

on_both_backends!(a_cursor_from_before_a_restore_is_out_of_range);
async fn a_cursor_from_before_a_restore_is_out_of_range(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_restore", "restore").await;
    let issued = an_issued_cursor(&mut env, &d).await;
    let list = env.list_users(&d, Some(ListOptions::default())).await;

    // The restore step: the log gets a new epoch. Both cursors' revisions
    // are still in range; they name the old history.
    env.store.renew_log_epoch().await.unwrap();
    for old in [issued, list.cursor] {
        let status = refused(&mut env, &d, Start::AfterCursor(old.clone())).await;
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{old}: {status:?}");
        assert!(status.message().contains("history"), "{}", status.message());
    }

    // Starting again works, and its cursors resume.
    let mut fresh = watch(&mut env.dir, &d, &[], Start::InitialState(())).await;
    let synced = loop {
        let msg = next_message(&mut fresh).await;
        if matches!(msg.payload, Some(Payload::Synced(_))) {
            break msg;
        }
    };
    drop(fresh);
    let after = env.user(&d, "after@example.com").await;
    let mut resumed = watch(&mut env.dir, &d, &[], Start::AfterCursor(synced.cursor)).await;
    assert_next_change_of(&mut resumed, &after.id).await;
}

#[tokio::test]
async fn a_write_through_one_replica_reaches_a_watcher_on_another_promptly() {
    // With a 30 s fallback poll, only the cross-process notification can
    // deliver the change within the 10 s the test waits.
    let config = DirectoryConfig {
        poll_interval: Duration::from_secs(30),
        ..test_config()
    };
    let (store_a, url) = pg_store("watch_replicas").await;
    let store_b = replica_store(&url).await;
    let replica_a = Server::start(store_a, config.clone()).await;
    let replica_b = Server::start(store_b, config).await;
    let mut admin_a = replica_a.admin().await;
    let mut dir_a = replica_a.directory().await;
    let mut dir_b = replica_b.directory().await;
    let d = create_directory_named(&mut admin_a, "replicas").await;

    let mut on_b = watch(&mut dir_b, &d, &[], Start::FromNow(())).await;
    // A first message proves B's watcher is established before the write.
    next_message(&mut on_b).await;
    let started = tokio::time::Instant::now();
    let u = create_user(&mut dir_a, &d, "cross@example.com").await;
    let (_, c) = next_change(&mut on_b).await;
    assert_eq!(c.resource_id, u.id);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "arrived only by the fallback poll"
    );

    replica_a.shutdown().await;
    replica_b.shutdown().await;
}

/// Opens a raw transaction that takes a revision and writes a change row for
/// `directory`, as a slow writer would; returns it uncommitted.
async fn hold_revision(
    url: &str,
    directory: &str,
) -> (sqlx::Transaction<'static, sqlx::Postgres>, i64, uuid::Uuid) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("raw connection");
    let mut tx = pool.begin().await.expect("begin");
    // Like the store's writers: hold a transaction id before taking a revision.
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .expect("assigning an xid");
    let event_id = uuid::Uuid::new_v4();
    let directory: uuid::Uuid = directory.parse().unwrap();
    let revision: i64 = sqlx::query_scalar(
        "INSERT INTO changes (revision, event_id, directory_id, kind, resource_id, version, payload) \
         VALUES (nextval('change_revision'), $1, $2, 'user.updated', $3, 1, '{}'::jsonb) RETURNING revision",
    )
    .bind(event_id)
    .bind(directory)
    .bind(uuid::Uuid::new_v4())
    .fetch_one(&mut *tx)
    .await
    .expect("taking a revision");
    (tx, revision, event_id)
}

#[tokio::test]
async fn out_of_order_commits_are_delivered_in_revision_order() {
    let (mut env, d) =
        Env::on_with_directory(Backend::Postgres, "watch_out_of_order", "out-of-order").await;
    let mut stream = watch(&mut env.dir, &d, &[], Start::FromNow(())).await;

    let (slow_tx, early_revision, early_event) = hold_revision(&env.url, &d).await;
    let later = env.users(&d, "later", 3).await;
    // Longer than the 1 s fallback poll: the tailer has re-read the log
    // meanwhile, and must still hold the later commits back.
    let held = messages_during(&mut stream, Duration::from_millis(1500)).await;
    for m in &held {
        assert!(
            !matches!(m.payload, Some(Payload::Change(_))),
            "delivered past an open revision: {m:?}"
        );
        assert!(
            m.revision < early_revision,
            "progress past an open revision: {m:?}"
        );
    }

    slow_tx.commit().await.expect("commit");
    let (m0, c0) = next_change(&mut stream).await;
    assert_eq!(
        (m0.revision, c0.event_id.as_str()),
        (early_revision, early_event.to_string().as_str())
    );
    let mut last = m0.revision;
    for u in &later {
        let (m, c) = next_change(&mut stream).await;
        assert_eq!(c.resource_id, u.id);
        assert!(m.revision > last, "revision order");
        last = m.revision;
    }
}

#[tokio::test]
async fn an_aborted_revision_is_skipped() {
    let (mut env, d) = Env::on_with_directory(Backend::Postgres, "watch_aborted", "aborted").await;
    let mut stream = watch(&mut env.dir, &d, &[], Start::FromNow(())).await;

    let (slow_tx, aborted_revision, _) = hold_revision(&env.url, &d).await;
    let after = env.user(&d, "after-hole@example.com").await;
    slow_tx.rollback().await.expect("rollback");
    let (m, c) = next_change(&mut stream).await;
    assert_eq!(
        c.resource_id, after.id,
        "the aborted revision is never delivered"
    );
    assert!(m.revision > aborted_revision);
}

/// Opens a transaction on `url` that wrote a row (so it has a transaction
/// id) and leaves it open: another application idle in transaction.
async fn idle_writer(url: &str, table: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("raw connection");
    for sql in [
        format!("CREATE TABLE IF NOT EXISTS {table} (x int)"),
        "BEGIN".to_owned(),
        format!("INSERT INTO {table} VALUES (1)"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("idle writer");
    }
    conn
}

/// Leaves a permanent hole in the change log: a revision taken and rolled back.
async fn aborted_revision(url: &str, directory: &str) -> i64 {
    let (tx, revision, _) = hold_revision(url, directory).await;
    tx.rollback().await.expect("rollback");
    revision
}

/// A session idle in a transaction on `idle_database(env)` must not hold
/// back a watcher: a write after a hole in the change log arrives while the
/// session stays open (it is rolled back only afterwards).
async fn watch_past_a_hole_beside(prefix: &str, idle_database: impl AsyncFnOnce(&Env) -> String) {
    let mut env = Env::new(prefix).await;
    let d = env.directory(prefix).await;
    let mut stream = watch(&mut env.dir, &d, &[], Start::FromNow(())).await;
    let url = idle_database(&env).await;
    let mut idle = idle_writer(&url, &format!("{prefix}_notes")).await;

    // A hole can only be skipped once every transaction that might hold it
    // has ended; the idle transaction never does.
    let hole = aborted_revision(&env.url, &d).await;
    let u = env.user(&d, "past-the-hole@example.com").await;
    let (m, c) = next_change(&mut stream).await;
    assert_eq!(c.resource_id, u.id);
    assert!(m.revision > hole);

    // Still open: the change above arrived while it was.
    sqlx::query("ROLLBACK").execute(&mut idle).await.unwrap();
}

#[tokio::test]
async fn an_open_transaction_in_another_database_does_not_hold_the_head() {
    // Another application's database on the same server, with a session
    // idle in a transaction that holds a transaction id.
    watch_past_a_hole_beside("watch_other_database", async |_| {
        roster_testkit::fresh_database("other_app").await
    })
    .await;
}

#[tokio::test]
async fn an_open_transaction_that_takes_no_revision_does_not_hold_the_head() {
    // A session of another tool in Roster's own database, idle in a
    // transaction that wrote something but never took a revision.
    watch_past_a_hole_beside("watch_bystander", async |env| env.url.clone()).await;
}

#[tokio::test]
async fn watchers_end_with_unavailable_on_shutdown() {
    let (store, _) = pg_store("watch_shutdown").await;
    let server = Server::start(store, test_config()).await;
    let mut client = server.directory().await;
    let mut stream = watch(&mut client, "", &[], Start::FromNow(())).await;
    server.shutdown().await;
    let end = tokio::time::timeout(PROMPTLY, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .expect("the stream must end on shutdown");
    assert_eq!(end, Some(tonic::Code::Unavailable));
}

on_both_backends!(a_consumer_that_stops_reading_is_cut_off_and_resumes_without_loss);
async fn a_consumer_that_stops_reading_is_cut_off_and_resumes_without_loss(backend: Backend) {
    let config = DirectoryConfig {
        watch_buffer: 1,
        slow_consumer_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let mut env = Env::on_with_config(backend, "watch_slow", config).await;
    let d = env.directory("slow").await;
    let mut narrow = DirectoryServiceClient::new(env.server.narrow_channel().await);
    let mut stream = watch(
        &mut narrow,
        &d,
        &[ChangeKind::UserCreated],
        Start::FromNow(()),
    )
    .await;
    // Big payloads fill the HTTP/2 window and the server's send buffer
    // quickly; then the watcher's own buffer stays full.
    let padding = "x".repeat(16 * 1024);
    let mut created = Vec::new();
    for i in 0..64 {
        let resource = serde_json::json!({
            "schemas": [USER_SCHEMA],
            "userName": format!("slow{i}@example.com"),
            "nickName": padding,
        });
        let req = roster_proto::directory::CreateUserRequest {
            directory_id: d.clone(),
            resource: resource.to_string(),
        };
        created.push(
            env.dir
                .create_user(req)
                .await
                .unwrap()
                .into_inner()
                .user
                .unwrap()
                .id,
        );
    }
    let hub = env.server.hub.clone();
    roster_testkit::eventually("the slow consumer to be cut off", PROMPTLY, || {
        let hub = hub.clone();
        async move { (hub.stats().slow_consumers_cut == 1).then_some(()) }
    })
    .await;

    // What was already on the wire still arrives, then the error.
    let mut received = Vec::new();
    let mut last_cursor = String::new();
    let status = loop {
        match tokio::time::timeout(PROMPTLY, stream.message())
            .await
            .expect("stream stalled")
        {
            Ok(Some(msg)) => {
                if let Some(Payload::Change(c)) = &msg.payload {
                    received.push(c.resource_id.clone());
                }
                last_cursor = msg.cursor;
            }
            Ok(None) => panic!("the stream must end with an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("resume from your last cursor"),
        "{}",
        status.message()
    );
    assert!(
        received.len() < created.len(),
        "the consumer was cut off early"
    );

    let mut resumed = watch(
        &mut env.dir,
        &d,
        &[ChangeKind::UserCreated],
        Start::AfterCursor(last_cursor),
    )
    .await;
    while received.len() < created.len() {
        let (_, c) = next_change(&mut resumed).await;
        received.push(c.resource_id);
    }
    assert_eq!(received, created, "every change exactly once, in order");
}

on_both_backends!(a_watcher_ends_when_its_client_goes_away);
async fn a_watcher_ends_when_its_client_goes_away(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_disconnect", "disconnect").await;
    let stream = watch(&mut env.dir, &d, &[], Start::FromNow(())).await;
    let hub = env.server.hub.clone();
    let open = |n: usize| {
        let hub = hub.clone();
        move || {
            let hub = hub.clone();
            async move { (hub.stats().open_watchers == n).then_some(()) }
        }
    };
    roster_testkit::eventually("one open watcher", PROMPTLY, open(1)).await;
    drop(stream);
    roster_testkit::eventually("the watcher to end", PROMPTLY, open(0)).await;
}

on_both_backends!(lifecycle_events_carry_changed_fields_and_tombstones);
async fn lifecycle_events_carry_changed_fields_and_tombstones(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_lifecycle", "lifecycle").await;
    let u = env.user(&d, "life@example.com").await;
    let group = serde_json::json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": "Ops",
        "members": [{"value": u.id}]
    });
    let g = create_group(&mut env.dir, &d, group.to_string()).await;
    let mut stream = watch(&mut env.dir, &d, &[], Start::FromNow(())).await;

    let deactivate = roster_proto::directory::PatchUserRequest {
        directory_id: d.clone(),
        id: u.id.clone(),
        patch: roster_directory::service::DEACTIVATE_PATCH.into(),
        if_version: None,
    };
    env.dir.patch_user(deactivate).await.unwrap();
    let (_, c) = next_change(&mut stream).await;
    assert_eq!(kind(&c), ChangeKind::UserDeactivated);
    let active = c
        .changed_fields
        .iter()
        .find(|f| f.field == "active")
        .expect("active in changed_fields");
    assert_eq!(
        (active.previous.as_str(), active.current.as_str()),
        ("true", "false")
    );
    assert!(matches!(c.resource, Some(Resource::User(ref user)) if !user.active));

    let delete = roster_proto::directory::DeleteUserRequest {
        directory_id: d.clone(),
        id: u.id.clone(),
        if_version: None,
    };
    env.dir.delete_user(delete).await.unwrap();
    let (_, removed) = next_change(&mut stream).await;
    assert_eq!(kind(&removed), ChangeKind::MemberRemoved);
    match &removed.resource {
        Some(Resource::Membership(m)) => assert_eq!(
            (m.group_id.as_str(), m.member_id.as_str()),
            (g.id.as_str(), u.id.as_str())
        ),
        other => panic!("expected a membership, got {other:?}"),
    }
    let (_, deleted) = next_change(&mut stream).await;
    assert_eq!(kind(&deleted), ChangeKind::UserDeleted);
    assert!(deleted.tombstone);
    assert!(
        matches!(deleted.resource, Some(Resource::User(ref user)) if user.id == u.id),
        "the last state"
    );
}

#[tokio::test]
async fn list_then_watch_is_exact_across_an_out_of_order_commit() {
    let (mut env, d) =
        Env::on_with_directory(Backend::Postgres, "watch_list_out_of_order", "list-ooo").await;
    let (slow_tx, early_revision, early_event) = hold_revision(&env.url, &d).await;
    // Committed with a later revision while the early one is still open:
    // the list sees this user, the stable head cannot pass the hole.
    let listed = env.user(&d, "listed@example.com").await;
    let list = env.list_users(&d, None).await;
    assert!(list.users.iter().any(|u| u.id == listed.id));
    assert!(
        list.revision < early_revision,
        "the list's revision stops below the open one"
    );
    slow_tx.commit().await.expect("commit");
    let after = env.user(&d, "after@example.com").await;

    let mut stream = watch(&mut env.dir, &d, &[], Start::AfterCursor(list.cursor)).await;
    let (m, c) = next_change(&mut stream).await;
    assert_eq!(
        (m.revision, c.event_id.as_str()),
        (early_revision, early_event.to_string().as_str())
    );
    let (_, c) = next_change(&mut stream).await;
    assert_eq!(
        c.resource_id, after.id,
        "the listed user is not delivered again"
    );

    // A consumer that only kept the revision gets the listed user again
    // (documented; harmless when upserting by version).
    let mut by_revision = watch(&mut env.dir, &d, &[], Start::AfterRevision(list.revision)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(next_change(&mut by_revision).await.1.resource_id);
    }
    assert!(
        ids.contains(&listed.id) && ids.contains(&after.id),
        "{ids:?}"
    );
}

on_both_backends!(a_deleted_directory_can_still_be_resumed_to_its_tombstone);
async fn a_deleted_directory_can_still_be_resumed_to_its_tombstone(backend: Backend) {
    let (mut env, d) = Env::on_with_directory(backend, "watch_deleted_dir", "doomed").await;
    let list = env.list_users(&d, None).await;
    env.admin
        .delete_directory(roster_proto::admin::DeleteDirectoryRequest { id: d.clone() })
        .await
        .unwrap();
    let mut stream = watch(&mut env.dir, &d, &[], Start::AfterCursor(list.cursor)).await;
    let (_, c) = next_change(&mut stream).await;
    assert_eq!(kind(&c), ChangeKind::DirectoryDeleted);
    assert!(c.tombstone);
    let fresh = WatchChangesRequest {
        directory_id: d.clone(),
        kinds: vec![],
        start: Some(Start::InitialState(())),
    };
    assert_eq!(
        env.dir.watch_changes(fresh).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
}

on_both_backends!(an_admin_watch_spans_every_directory);
async fn an_admin_watch_spans_every_directory(backend: Backend) {
    let mut env = Env::on(backend, "watch_all_dirs").await;
    let first = env.directory("first").await;
    let u = env.user(&first, "one@example.com").await;
    let group = serde_json::json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": "G",
        "members": [{"value": u.id}]
    });
    env.dir
        .create_group(roster_proto::directory::CreateGroupRequest {
            directory_id: first.clone(),
            resource: group.to_string(),
        })
        .await
        .unwrap();

    // Initial state across directories, memberships only: they carry the
    // directory of their group.
    let mut initial = watch(
        &mut env.dir,
        "",
        &[ChangeKind::MemberAdded],
        Start::InitialState(()),
    )
    .await;
    let (_, m) = next_change(&mut initial).await;
    assert_eq!(
        (kind(&m), m.directory_id.as_str(), m.synthetic),
        (ChangeKind::MemberAdded, first.as_str(), true)
    );
    let synced = next_message(&mut initial).await;
    assert!(
        matches!(synced.payload, Some(Payload::Synced(_))),
        "{synced:?}"
    );

    let mut all = watch(&mut env.dir, "", &[], Start::FromNow(())).await;
    let second = env.directory("second").await;
    let v = env.user(&second, "two@example.com").await;
    let (_, created) = next_change(&mut all).await;
    assert_eq!(
        (kind(&created), created.resource_id.as_str()),
        (ChangeKind::DirectoryCreated, second.as_str())
    );
    assert!(matches!(created.resource, Some(Resource::Directory(ref d)) if d.name == "second"));
    let (_, user) = next_change(&mut all).await;
    assert_eq!(
        (user.directory_id.as_str(), user.resource_id.as_str()),
        (second.as_str(), v.id.as_str())
    );
}
