//! Webhook endpoints: configuration, the delivery lease, guarded progress
//! and the bounded attempt history.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use roster_store::*;

use super::{assert_not_found, directory};

fn new_endpoint(dir: Option<DirectoryId>, url: &str, cursor: i64) -> NewWebhook {
    NewWebhook {
        id: WebhookId::new(),
        directory_id: dir,
        url: url.into(),
        kinds: vec![ChangeKind::UserCreated, ChangeKind::UserDeactivated],
        description: "billing".into(),
        enabled: true,
        sealed_secret: vec![1, 2, 3],
        cursor,
    }
}

/// Creates [`new_endpoint`], which must succeed.
async fn endpoint(store: &dyn Store, dir: Option<DirectoryId>, url: &str, cursor: i64) -> Webhook {
    let new = new_endpoint(dir, url, cursor);
    store.create_webhook(new).await.expect("create webhook")
}

fn success(revision: i64) -> WebhookProgress {
    WebhookProgress {
        cursor: revision,
        attempts: 0,
        failing_since: None,
        next_attempt_at: None,
        status: WebhookStatus::Active,
        disable: None,
        attempt: Some(NewWebhookAttempt {
            revision,
            event_id: format!("evt-{revision}"),
            status_code: Some(200),
            latency_ms: 3,
            detail: "ok".into(),
            succeeded: true,
        }),
    }
}

pub async fn webhook_endpoints_are_created_filtered_updated_and_deleted(store: Arc<dyn Store>) {
    let a = directory(store.as_ref(), "a").await;
    let b = directory(store.as_ref(), "b").await;
    let of_a = endpoint(&*store, Some(a.id), "https://a.example/hook", 7).await;
    let of_b = endpoint(&*store, Some(b.id), "https://b.example/hook", 0).await;
    let of_all = endpoint(&*store, None, "https://all.example/hook", 0).await;
    assert_eq!(
        (of_a.cursor, of_a.status, of_a.enabled, of_a.generation),
        (7, WebhookStatus::Active, true, 1)
    );
    assert_eq!(
        of_a.kinds,
        vec![ChangeKind::UserCreated, ChangeKind::UserDeactivated]
    );
    assert_eq!(of_a.sealed_secret, vec![1, 2, 3]);
    assert_eq!(store.get_webhook(of_a.id).await.unwrap(), of_a);

    let unknown = store
        .create_webhook(new_endpoint(Some(DirectoryId::new()), "https://x", 0))
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound("directory"))));

    // A directory's endpoints include the all-directories ones.
    let ids = |hooks: Vec<Webhook>| hooks.into_iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_webhooks(Some(a.id)).await.unwrap()),
        vec![of_a.id, of_all.id]
    );
    assert_eq!(
        ids(store.list_webhooks(None).await.unwrap()),
        vec![of_a.id, of_b.id, of_all.id]
    );

    let updated = store
        .update_webhook(
            of_a.id,
            WebhookUpdate {
                url: Some("https://a.example/v2".into()),
                kinds: Some(vec![]),
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            updated.url.as_str(),
            updated.kinds.len(),
            updated.enabled,
            updated.description.as_str(),
            updated.generation
        ),
        ("https://a.example/v2", 0, false, "billing", 2)
    );

    let until = Utc::now() + chrono::Duration::hours(1);
    let rotated = store
        .rotate_webhook_secret(of_a.id, vec![9, 9], until)
        .await
        .unwrap();
    assert_eq!(rotated.sealed_secret, vec![9, 9]);
    assert_eq!(rotated.sealed_previous_secret, Some(vec![1, 2, 3]));
    assert!(rotated.previous_secret_until.is_some());
    assert_eq!(rotated.generation, 3);

    // The generations delivery reads after each range of the log: those of
    // the endpoints `list_webhooks` returns, as every admin change left them.
    let mut generations = store.webhook_generations(Some(a.id)).await.unwrap();
    generations.sort();
    let mut expected = vec![(of_a.id, 3), (of_all.id, 1)];
    expected.sort();
    assert_eq!(generations, expected);
    assert_eq!(store.webhook_generations(None).await.unwrap().len(), 3);

    // Deleting an endpoint deletes its attempts too.
    let ttl = Duration::from_secs(60);
    let held = lease(&*store, of_a.id, "w", ttl).await.expect("lease");
    assert!(
        store
            .record_webhook_progress(of_a.id, "w", held.generation, &success(9))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .list_webhook_attempts(of_a.id, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store.delete_webhook(of_a.id).await.unwrap();
    assert!(
        store
            .list_webhook_attempts(of_a.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        lease(&*store, of_a.id, "w", ttl).await.is_none(),
        "no lease of a deleted endpoint"
    );
    assert!(matches!(
        store.get_webhook(of_a.id).await,
        Err(StoreError::NotFound("webhook endpoint"))
    ));
    assert_not_found(store.delete_webhook(of_a.id).await);
}

pub async fn one_owner_holds_a_webhook_lease_until_it_expires_or_is_released(
    store: Arc<dyn Store>,
) {
    let hook = endpoint(&*store, None, "https://x.example", 0).await;
    let long = Duration::from_secs(60);
    let held = lease(&*store, hook.id, "replica-1", long)
        .await
        .expect("a free lease is taken");
    assert_eq!(held.lease_owner.as_deref(), Some("replica-1"));
    assert!(
        lease(&*store, hook.id, "replica-2", long).await.is_none(),
        "a live lease of another owner is refused"
    );
    // The holder extends its own lease.
    assert!(lease(&*store, hook.id, "replica-1", long).await.is_some());

    // Many contenders at once: exactly one wins a released lease.
    store
        .release_webhook_lease(hook.id, "replica-1")
        .await
        .unwrap();
    let contenders = (0..8).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            lease(&*store, hook.id, &format!("contender-{i}"), long)
                .await
                .is_some()
        })
    });
    let mut winners = 0;
    for c in contenders {
        winners += usize::from(c.await.unwrap());
    }
    assert_eq!(winners, 1);

    // An expired lease (a crashed holder) is taken over.
    let crashed = endpoint(&*store, None, "https://y.example", 0).await;
    lease(&*store, crashed.id, "crashed", Duration::from_millis(1))
        .await
        .expect("taken");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let taken = lease(&*store, crashed.id, "survivor", long).await;
        if let Some(t) = taken {
            assert_eq!(t.lease_owner.as_deref(), Some("survivor"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn webhook_progress_needs_the_lease_and_the_current_generation(store: Arc<dyn Store>) {
    let hook = endpoint(&*store, None, "https://x.example", 0).await;
    let ttl = Duration::from_secs(60);
    let held = lease(&*store, hook.id, "w1", ttl).await.expect("lease");
    let g = held.generation;
    assert!(
        !store
            .record_webhook_progress(hook.id, "w2", g, &success(5))
            .await
            .unwrap(),
        "only the lease holder records progress"
    );
    assert!(
        store
            .record_webhook_progress(hook.id, "w1", g, &success(5))
            .await
            .unwrap()
    );
    let failing = WebhookProgress {
        cursor: 5,
        attempts: 3,
        failing_since: Some(Utc::now()),
        next_attempt_at: Some(Utc::now()),
        status: WebhookStatus::DeadLetter,
        disable: None,
        attempt: None,
    };
    assert!(
        store
            .record_webhook_progress(hook.id, "w1", g, &failing)
            .await
            .unwrap()
    );
    let stored = store.get_webhook(hook.id).await.unwrap();
    assert_eq!(
        (stored.cursor, stored.attempts, stored.status),
        (5, 3, WebhookStatus::DeadLetter)
    );
    assert!(stored.failing_since.is_some());

    // An admin replay moves the cursor and bumps the generation: the
    // holder's stale progress can no longer overwrite it.
    let replayed = store.reposition_webhook(hook.id, 2).await.unwrap();
    assert_eq!(
        (replayed.cursor, replayed.attempts, replayed.status),
        (2, 0, WebhookStatus::Active)
    );
    assert_eq!(replayed.failing_since, None);
    assert!(
        !store
            .record_webhook_progress(hook.id, "w1", g, &success(6))
            .await
            .unwrap()
    );
    assert_eq!(store.get_webhook(hook.id).await.unwrap().cursor, 2);

    // 410 Gone: the holder turns the endpoint off with a reason; enabling
    // it again clears the reason.
    let gone = WebhookProgress {
        disable: Some("410 Gone".into()),
        attempt: None,
        ..success(2)
    };
    assert!(
        store
            .record_webhook_progress(hook.id, "w1", replayed.generation, &gone)
            .await
            .unwrap()
    );
    let off = store.get_webhook(hook.id).await.unwrap();
    assert_eq!(
        (off.enabled, off.disabled_reason.as_deref()),
        (false, Some("410 Gone"))
    );
    let on = store
        .update_webhook(
            hook.id,
            WebhookUpdate {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((on.enabled, on.disabled_reason), (true, None));
}

pub async fn webhook_attempts_keep_the_newest_per_endpoint(store: Arc<dyn Store>) {
    let one = endpoint(&*store, None, "https://one.example", 0).await;
    let two = endpoint(&*store, None, "https://two.example", 0).await;
    let ttl = Duration::from_secs(60);
    for hook in [&one, &two] {
        lease(&*store, hook.id, "w", ttl).await.expect("lease");
    }
    // Interleaved, so a bound on ids alone would cut one endpoint short;
    // every other revision written as a batch of both endpoints.
    // Listings show the newest KEPT whether a batch pruned or not.
    let total = WEBHOOK_ATTEMPTS_KEPT + 20;
    for revision in 1..=total {
        if revision % 2 == 0 {
            let batch: Vec<EndpointProgress> = [&one, &two]
                .iter()
                .map(|hook| EndpointProgress {
                    id: hook.id,
                    generation: 1,
                    progress: success(revision),
                    // Some batches leave the pruning to a later one.
                    prune: revision % 4 == 0,
                })
                .collect();
            let written = store.record_webhooks_progress("w", &batch).await;
            assert_eq!(
                written.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
                [true, true]
            );
            continue;
        }
        for hook in [&one, &two] {
            let ok = store
                .record_webhook_progress(hook.id, "w", 1, &success(revision))
                .await
                .unwrap();
            assert!(ok);
        }
    }
    for hook in [&one, &two] {
        let attempts = store.list_webhook_attempts(hook.id, 1_000).await.unwrap();
        assert_eq!(attempts.len() as i64, WEBHOOK_ATTEMPTS_KEPT);
        assert_eq!(attempts[0].attempt.revision, total, "newest first");
        assert_eq!(
            attempts.last().unwrap().attempt.revision,
            total - WEBHOOK_ATTEMPTS_KEPT + 1
        );
        assert_eq!(attempts[0].attempt.status_code, Some(200));
    }
    let few = store.list_webhook_attempts(one.id, 3).await.unwrap();
    assert_eq!(few.len(), 3);
}

/// The endpoint's delivery lease for `owner`, if it gets it.
async fn lease(store: &dyn Store, id: WebhookId, owner: &str, ttl: Duration) -> Option<Webhook> {
    store.acquire_webhook_lease(id, owner, ttl).await.unwrap()
}

pub async fn batched_webhook_progress_is_guarded_per_endpoint(store: Arc<dyn Store>) {
    let ttl = Duration::from_secs(60);
    let mut hooks = Vec::new();
    for (url, owner) in [
        ("https://gone.example", "w"),
        ("https://ok.example", "w"),
        ("https://stale.example", "w"),
        ("https://elsewhere.example", "other"),
    ] {
        let hook = endpoint(&*store, None, url, 0).await;
        store
            .acquire_webhook_lease(hook.id, owner, ttl)
            .await
            .unwrap()
            .expect("lease");
        hooks.push(hook);
    }
    let [gone, ok, stale, elsewhere] = &hooks[..] else {
        unreachable!()
    };
    let answered_gone = WebhookProgress {
        attempts: 1,
        failing_since: Some(Utc::now()),
        disable: Some("410 Gone".into()),
        attempt: Some(NewWebhookAttempt {
            status_code: Some(410),
            succeeded: false,
            ..success(1).attempt.unwrap()
        }),
        ..success(0)
    };
    let item = |hook: &Webhook, generation: i64, progress: WebhookProgress| EndpointProgress {
        id: hook.id,
        generation,
        progress,
        prune: true,
    };
    let batch = [
        item(gone, gone.generation, answered_gone),
        item(ok, ok.generation, success(4)),
        item(stale, stale.generation + 1, success(4)),
        item(elsewhere, elsewhere.generation, success(4)),
    ];
    let written: Vec<bool> = store
        .record_webhooks_progress("w", &batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(written, [true, true, false, false], "each guarded alone");

    let off = store.get_webhook(gone.id).await.unwrap();
    assert_eq!(
        (
            off.enabled,
            off.disabled_reason.as_deref(),
            off.attempts,
            off.cursor
        ),
        (false, Some("410 Gone"), 1, 0)
    );
    let attempts = store.list_webhook_attempts(gone.id, 10).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt.status_code, a.attempt.succeeded))
            .collect::<Vec<_>>(),
        [(Some(410), false)]
    );
    assert_eq!(store.get_webhook(ok.id).await.unwrap().cursor, 4);
    assert_eq!(
        store.list_webhook_attempts(ok.id, 10).await.unwrap().len(),
        1
    );
    for untouched in [stale, elsewhere] {
        assert_eq!(store.get_webhook(untouched.id).await.unwrap().cursor, 0);
        assert!(
            store
                .list_webhook_attempts(untouched.id, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
