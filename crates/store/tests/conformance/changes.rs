//! The change log: reads, epochs and snapshots.

use std::sync::Arc;

use futures::TryStreamExt;
use roster_store::*;

use super::{
    add, all_changes, directory, group, group_with, kinds, member, query, user, user_in_group,
    users,
};

pub async fn read_changes_filters(store: Arc<dyn Store>) {
    let a = directory(&*store, "ra").await;
    let b = directory(&*store, "rb").await;
    store.create_user(a.id, user("x")).await.unwrap();
    store.create_user(b.id, user("y")).await.unwrap();
    store.create_group(a.id, group("g")).await.unwrap();
    let head = store.advance_stable_head(0).await.unwrap();
    let only_a = store
        .read_changes(
            &ChangeFilter {
                directory_id: Some(a.id),
                kinds: Vec::new(),
            },
            0,
            head,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        kinds(&only_a),
        ["directory.created", "user.created", "group.created"]
    );
    let users_only = store
        .read_changes(
            &ChangeFilter {
                directory_id: None,
                kinds: vec![ChangeKind::UserCreated],
            },
            0,
            head,
            100,
        )
        .await
        .unwrap();
    assert_eq!(users_only.len(), 2);
    let limited = store
        .read_changes(&ChangeFilter::default(), 0, head, 2)
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    let rest = store
        .read_changes(&ChangeFilter::default(), limited[1].revision, head, 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    let bounded = store
        .read_changes(&ChangeFilter::default(), 0, limited[0].revision, 100)
        .await
        .unwrap();
    assert_eq!(bounded.len(), 1);
    let bounds = store.log_bounds().await.unwrap();
    assert_eq!(bounds.stable_head, head);
    assert_eq!(bounds.pruned_through, 0);
    // Nothing is old enough to prune; everything stays readable.
    store.prune_changes(3600).await.unwrap();
    assert_eq!(all_changes(&*store, None).await.len(), 5);
    // Pruning everything expires older cursors.
    let pruned = store.prune_changes(0).await.unwrap();
    assert_eq!(pruned, head);
    let err = store
        .read_changes(&ChangeFilter::default(), 0, head, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::CursorExpired { oldest, .. } if oldest == head),
        "{err:?}"
    );
}

pub async fn the_log_epoch_names_its_history(store: Arc<dyn Store>) {
    assert_eq!(store.log_bounds().await.unwrap().allocated_head, 0);
    let dir = directory(&*store, "epoch").await;
    store.create_user(dir.id, user("e")).await.unwrap();
    let bounds = store.log_bounds().await.unwrap();
    assert_eq!(
        (bounds.stable_head, bounds.allocated_head),
        (2, 2),
        "{bounds:?}"
    );
    // Lists and snapshots say which history their cursor belongs to.
    let page = store.list_users(dir.id, &query(None)).await.unwrap();
    assert_eq!(page.cursor.unwrap().epoch, Some(bounds.epoch));
    let (snapshot, _) = store.snapshot(Some(dir.id)).await.unwrap();
    assert_eq!(snapshot.epoch, Some(bounds.epoch));
    // Renewing it (the restore step) changes the epoch and nothing else.
    let renewed = store.renew_log_epoch().await.unwrap();
    assert_ne!(renewed, bounds.epoch);
    let after = store.log_bounds().await.unwrap();
    assert_eq!(
        after,
        LogBounds {
            epoch: renewed,
            ..bounds
        }
    );
    let page = store.list_users(dir.id, &query(None)).await.unwrap();
    assert_eq!(page.cursor.unwrap().epoch, Some(renewed));
}

pub async fn snapshot_streams_current_state(store: Arc<dyn Store>) {
    let dir = directory(&*store, "snap").await;
    let other = directory(&*store, "snap-other").await;
    let (u, g) = user_in_group(&*store, dir.id).await;
    store
        .create_user(other.id, user("elsewhere"))
        .await
        .unwrap();

    let (cursor, items) = store.snapshot(Some(dir.id)).await.unwrap();
    let items: Vec<SnapshotItem> = items.try_collect().await.unwrap();
    assert_eq!(items.len(), 3, "{items:?}");
    match &items[0] {
        SnapshotItem::User(got) => {
            assert_eq!(got.id, u.id);
            assert_eq!(got.group_ids, vec![g.id]);
        }
        other => panic!("users come first: {other:?}"),
    }
    assert!(
        matches!(&items[1], SnapshotItem::Group(got) if got.id == g.id && got.member_count == 1)
    );
    assert!(
        matches!(&items[2], SnapshotItem::Membership(m) if m.group_id == g.id && m.member_id == u.id.0)
    );
    // The cursor covers every change so far.
    let head = store.advance_stable_head(0).await.unwrap();
    let newer = store
        .read_changes(&ChangeFilter::default(), cursor.after, head, 100)
        .await
        .unwrap();
    assert!(
        newer.iter().all(|c| cursor.also_seen.contains(&c.revision)),
        "{cursor:?} {newer:?}"
    );

    let (_, everything) = store.snapshot(None).await.unwrap();
    let everything: Vec<SnapshotItem> = everything.try_collect().await.unwrap();
    assert_eq!(everything.len(), 4);
}

pub async fn snapshot_streams_a_consistent_state_with_its_cursor(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
    let other = directory(&*store, "Acme").await;
    let alice = store.create_user(d.id, user("alice")).await.unwrap();
    store.create_user(other.id, user("bob")).await.unwrap();
    let g = store
        .create_group(d.id, group_with("g", vec![member(&alice)]))
        .await
        .unwrap();
    let bounds = store.log_bounds().await.unwrap();
    let head = bounds.stable_head;

    let (cursor, items) = store.snapshot(Some(d.id)).await.unwrap();
    // A write after the snapshot started is not in it.
    store.create_user(d.id, user("late")).await.unwrap();
    let items: Vec<SnapshotItem> = items.try_collect().await.unwrap();
    assert_eq!(
        cursor,
        Cursor {
            after: head,
            also_seen: vec![],
            epoch: Some(bounds.epoch),
        }
    );
    let alice_now = store.get_user(d.id, alice.id).await.unwrap();
    assert_eq!(
        items,
        vec![
            SnapshotItem::User(alice_now),
            SnapshotItem::Group(g.clone()),
            SnapshotItem::Membership(Membership {
                group_id: g.id,
                member_id: alice.id.0,
                member_kind: MemberKind::User
            }),
        ]
    );
    let (_, everything) = store.snapshot(None).await.unwrap();
    let everything: Vec<SnapshotItem> = everything.try_collect().await.unwrap();
    assert_eq!(
        everything
            .iter()
            .filter(|i| matches!(i, SnapshotItem::User(_)))
            .count(),
        3
    );
}

pub async fn snapshot_pages_through_many_rows(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
    let g = store.create_group(d.id, group("big")).await.unwrap();
    let members: Vec<MemberRef> = users(&*store, d.id, "u", 1_200)
        .await
        .iter()
        .map(member)
        .collect();
    add(&*store, d.id, g.id, &members).await;
    let (_, items) = store.snapshot(Some(d.id)).await.unwrap();
    let items: Vec<SnapshotItem> = items.try_collect().await.unwrap();
    let users = items
        .iter()
        .filter(|i| matches!(i, SnapshotItem::User(_)))
        .count();
    let memberships = items
        .iter()
        .filter(|i| matches!(i, SnapshotItem::Membership(_)))
        .count();
    assert_eq!((users, memberships), (1_200, 1_200));
}

/// Counting changes agrees with reading them, per filter, range and cap.
pub async fn count_changes_agrees_with_read_changes(store: Arc<dyn Store>) {
    let a = directory(&*store, "ca").await;
    let b = directory(&*store, "cb").await;
    for name in ["x1", "x2", "x3"] {
        store.create_user(a.id, user(name)).await.unwrap();
    }
    store.create_user(b.id, user("y")).await.unwrap();
    store.create_group(a.id, group("g")).await.unwrap();
    let head = store.advance_stable_head(0).await.unwrap();
    let filters = [
        ChangeFilter::default(),
        ChangeFilter {
            directory_id: Some(a.id),
            kinds: Vec::new(),
        },
        ChangeFilter {
            directory_id: Some(a.id),
            kinds: vec![ChangeKind::UserCreated],
        },
        ChangeFilter {
            directory_id: None,
            kinds: vec![ChangeKind::UserCreated, ChangeKind::GroupCreated],
        },
    ];
    for filter in &filters {
        for after in [0, 2, head] {
            let read = store
                .read_changes(filter, after, head, 1_000)
                .await
                .unwrap();
            let counted = store
                .count_changes(filter, after, head, 1_000)
                .await
                .unwrap();
            assert_eq!(counted, read.len() as i64, "{filter:?} after {after}");
        }
    }
    let capped = store
        .count_changes(&ChangeFilter::default(), 0, head, 2)
        .await
        .unwrap();
    assert_eq!(capped, 2);
    let users_of_a = store
        .count_changes(&filters[2], 0, head, 1_000)
        .await
        .unwrap();
    assert_eq!(users_of_a, 3);
}
