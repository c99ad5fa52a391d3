//! Memberships: idempotent adds and removes, counts, deletions of members.

use std::collections::HashSet;
use std::sync::Arc;

use roster_store::*;

use super::{
    add, all_changes, assert_not_found, changes_after, directory, group, group_ids, group_with,
    kinds, member, member_count, member_group, page, query, user, users,
};

pub async fn membership_changes_are_idempotent_and_counted(store: Arc<dyn Store>) {
    let dir = directory(&*store, "members").await;
    let a = store.create_user(dir.id, user("a")).await.unwrap();
    let b = store.create_user(dir.id, user("b")).await.unwrap();
    let g = store.create_group(dir.id, group("g")).await.unwrap();

    assert_eq!(
        add(&*store, dir.id, g.id, &[member(&a), member(&b)]).await,
        (2, 2)
    );
    // IdPs retry: adding again adds nothing and bumps nothing.
    assert_eq!(add(&*store, dir.id, g.id, &[member(&a)]).await, (0, 2));
    assert_eq!(
        store
            .remove_members(dir.id, g.id, &[a.id.0, a.id.0])
            .await
            .unwrap(),
        (1, 3)
    );
    assert_eq!(
        store.remove_members(dir.id, g.id, &[a.id.0]).await.unwrap(),
        (0, 3)
    );

    let got = store.get_group(dir.id, g.id, true).await.unwrap();
    assert_eq!(got.member_count, 1);
    let members = got.members.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].id, members[0].kind), (b.id.0, MemberKind::User));
    assert_eq!(group_ids(&*store, dir.id, b.id).await, vec![g.id]);
    // Lists carry each user's groups too, with and without a cursor.
    let filter = format!("userName eq \"{}\"", b.fields.user_name);
    for omit_cursor in [false, true] {
        let mut q = query(Some(&filter));
        q.omit_cursor = omit_cursor;
        let listed = store.list_users(dir.id, &q).await.unwrap();
        assert_eq!(listed.items[0].group_ids, vec![g.id], "{omit_cursor}");
    }
    assert!(group_ids(&*store, dir.id, a.id).await.is_empty());

    let changes = all_changes(&*store, Some(dir.id)).await;
    let member_events: Vec<&ChangeRecord> = changes
        .iter()
        .filter(|c| c.kind.as_str().starts_with("member."))
        .collect();
    assert_eq!(
        kinds(
            &member_events
                .iter()
                .map(|c| (*c).clone())
                .collect::<Vec<_>>()
        ),
        ["member.added", "member.added", "member.removed"]
    );
    let m: Membership = serde_json::from_value(member_events[2].payload.clone()).unwrap();
    assert_eq!((m.group_id, m.member_id), (g.id, a.id.0));
    assert_eq!(member_events[2].version, 3);
    assert!(member_events.iter().all(|c| c.resource_id == g.id.0));

    // Paged member listing by member id.
    add(&*store, dir.id, g.id, &[member(&a)]).await;
    let first = store.list_members(dir.id, g.id, None, 1).await.unwrap();
    let rest = store
        .list_members(dir.id, g.id, Some(first[0].id), 10)
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 2);
    assert!(first[0].id < rest[0].id);
}

pub async fn unknown_members_are_invalid(store: Arc<dyn Store>) {
    let dir = directory(&*store, "unknown").await;
    let other = directory(&*store, "elsewhere").await;
    let stranger = store.create_user(other.id, user("stranger")).await.unwrap();
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    for bad in [
        MemberRef {
            id: uuid::Uuid::new_v4(),
            kind: MemberKind::User,
        },
        member(&stranger),
        member_group(&g),
    ] {
        let err = store.add_members(dir.id, g.id, &[bad]).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
    }
    assert_eq!(member_count(&*store, dir.id, g.id).await, 0);
    assert_not_found(store.add_members(dir.id, GroupId::new(), &[]).await);
}

pub async fn concurrent_member_changes_lose_nothing(store: Arc<dyn Store>) {
    let dir = directory(&*store, "concurrent").await;
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    let users = users(&*store, dir.id, "user", 50).await;
    // Users 0..10 start as members; tasks add 10..50 and remove 0..10 at once.
    let initial: Vec<MemberRef> = users[..10].iter().map(member).collect();
    add(&*store, dir.id, g.id, &initial).await;
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let (store, dir, g, u) = (store.clone(), dir.id, g.id, u.clone());
        tasks.push(tokio::spawn(async move {
            if i < 10 {
                store.remove_members(dir, g, &[u.id.0]).await
            } else {
                store.add_members(dir, g, &[member(&u)]).await
            }
        }));
    }
    for t in tasks {
        let (changed, _) = t.await.unwrap().expect("member change");
        assert_eq!(changed, 1);
    }
    let got = store.get_group(dir.id, g.id, true).await.unwrap();
    let ids: HashSet<uuid::Uuid> = got.members.unwrap().iter().map(|m| m.id).collect();
    let expected: HashSet<uuid::Uuid> = users[10..].iter().map(|u| u.id.0).collect();
    assert_eq!(ids, expected);
    assert_eq!(got.member_count, 40);
    // 1 (create) + 1 (initial add) + 50 single changes.
    assert_eq!(got.version, 52);
    let changes = all_changes(&*store, Some(dir.id)).await;
    let added = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::MemberAdded)
        .count();
    let removed = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::MemberRemoved)
        .count();
    assert_eq!((added, removed), (50, 10));
}

pub async fn user_delete_removes_memberships_with_events(store: Arc<dyn Store>) {
    let dir = directory(&*store, "udel").await;
    let u = store.create_user(dir.id, user("gone")).await.unwrap();
    let keep = store.create_user(dir.id, user("keep")).await.unwrap();
    let g1 = store.create_group(dir.id, group("g1")).await.unwrap();
    let g2 = store.create_group(dir.id, group("g2")).await.unwrap();
    add(&*store, dir.id, g1.id, &[member(&u), member(&keep)]).await;
    add(&*store, dir.id, g2.id, &[member(&u)]).await;
    let before = all_changes(&*store, Some(dir.id)).await.len();

    store.delete_user(dir.id, u.id, None).await.unwrap();
    let g1 = store.get_group(dir.id, g1.id, true).await.unwrap();
    assert_eq!((g1.member_count, g1.version), (1, 3));
    assert_eq!(g1.members.unwrap().len(), 1);
    let g2 = store.get_group(dir.id, g2.id, false).await.unwrap();
    assert_eq!((g2.member_count, g2.version), (0, 3));

    let changes = all_changes(&*store, Some(dir.id)).await;
    let new = &changes[before..];
    assert_eq!(
        kinds(new),
        ["member.removed", "member.removed", "user.deleted"]
    );
    let groups: HashSet<uuid::Uuid> = new[..2].iter().map(|c| c.resource_id).collect();
    assert_eq!(groups, HashSet::from([g1.id.0, g2.id.0]));
    assert!(new[..2].iter().all(|c| c.version == 3));
}

pub async fn new_groups_dedupe_members_and_members_carry_display_names(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
    let alice = store.create_user(d.id, user("alice")).await.unwrap();
    let mut displayed = user("bob");
    displayed.fields.display_name = Some("bob display".into());
    let bob = store.create_user(d.id, displayed).await.unwrap();
    let carol = store.create_user(d.id, user("carol")).await.unwrap();
    let g = store
        .create_group(
            d.id,
            group_with("eng", vec![member(&alice), member(&alice)]),
        )
        .await
        .unwrap();
    assert_eq!((g.member_count, g.version), (1, 1));

    assert_eq!(
        add(&*store, d.id, g.id, &[member(&alice), member(&bob)]).await,
        (1, 2)
    );
    assert_eq!(
        add(&*store, d.id, g.id, &[member(&bob)]).await,
        (0, 2),
        "re-adding is a no-op"
    );
    assert_eq!(
        store
            .remove_members(d.id, g.id, &[carol.id.0])
            .await
            .unwrap(),
        (0, 2),
        "absent member is a no-op"
    );
    let stored = store.get_group(d.id, g.id, true).await.unwrap();
    assert_eq!(stored.member_count, 2);
    let members = stored.members.unwrap();
    assert_eq!(members.len(), 2);
    assert!(
        members
            .iter()
            .any(|m| m.id == bob.id.0 && m.display.as_deref() == Some("bob display"))
    );
    assert_eq!(group_ids(&*store, d.id, alice.id).await, vec![g.id]);
    let listed = store.list_users(d.id, &page(10)).await.unwrap().items;
    let groups_of: Vec<Vec<GroupId>> = listed.iter().map(|u| u.group_ids.clone()).collect();
    assert_eq!(
        groups_of,
        [vec![g.id], vec![g.id], vec![]],
        "lists carry group ids"
    );
    assert_eq!(
        store.get_group(d.id, g.id, false).await.unwrap().members,
        None
    );

    assert_eq!(
        store
            .remove_members(d.id, g.id, &[alice.id.0])
            .await
            .unwrap(),
        (1, 3)
    );
    assert!(group_ids(&*store, d.id, alice.id).await.is_empty());

    let changes = all_changes(&*store, Some(d.id)).await;
    let member_events: Vec<_> = changes
        .iter()
        .filter(|c| matches!(c.kind, ChangeKind::MemberAdded | ChangeKind::MemberRemoved))
        .collect();
    assert_eq!(member_events.len(), 3, "one event per actual change");
    let removed: Membership = serde_json::from_value(member_events[2].payload.clone()).unwrap();
    assert_eq!(
        removed,
        Membership {
            group_id: g.id,
            member_id: alice.id.0,
            member_kind: MemberKind::User
        }
    );
    assert_eq!(member_events[2].version, 3);
}

pub async fn deleting_users_and_groups_removes_their_memberships_with_events(
    store: Arc<dyn Store>,
) {
    let d = directory(&*store, "Acme").await;
    let alice = store.create_user(d.id, user("alice")).await.unwrap();
    let inner = store
        .create_group(d.id, group_with("inner", vec![member(&alice)]))
        .await
        .unwrap();
    let nested = member_group(&inner);
    let outer = store
        .create_group(d.id, group_with("outer", vec![member(&alice), nested]))
        .await
        .unwrap();
    assert_eq!(outer.member_count, 2);

    let head = store.log_bounds().await.unwrap().stable_head;
    store.delete_user(d.id, alice.id, None).await.unwrap();
    let changes = changes_after(&*store, head).await;
    assert_eq!(
        kinds(&changes),
        ["member.removed", "member.removed", "user.deleted"]
    );
    assert_eq!(member_count(&*store, d.id, inner.id).await, 0);
    let outer_now = store.get_group(d.id, outer.id, false).await.unwrap();
    assert_eq!((outer_now.member_count, outer_now.version), (1, 2));

    let head = store.log_bounds().await.unwrap().stable_head;
    store.delete_group(d.id, inner.id, Some(2)).await.unwrap();
    let changes = changes_after(&*store, head).await;
    assert_eq!(kinds(&changes), ["member.removed", "group.deleted"]);
    assert_eq!(
        store.get_group(d.id, outer.id, true).await.unwrap().members,
        Some(vec![])
    );
    assert!(matches!(
        store.get_group(d.id, inner.id, false).await,
        Err(StoreError::NotFound("group"))
    ));
}

pub async fn list_members_is_keyset_paginated_by_member_id(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
    let g = store.create_group(d.id, group("all")).await.unwrap();
    let mut ids = Vec::new();
    for u in users(&*store, d.id, "u", 7).await {
        add(&*store, d.id, g.id, &[member(&u)]).await;
        ids.push(u.id.0);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_members(d.id, g.id, after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|m| m.id);
        seen.extend(page.into_iter().map(|m| m.id));
    }
    assert_eq!(seen, ids);
    assert!(matches!(
        store.list_members(d.id, GroupId::new(), None, 3).await,
        Err(StoreError::NotFound("group"))
    ));
}
