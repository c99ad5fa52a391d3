//! Groups: attributes, PATCH, reads in pages, deletion.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryStreamExt;
use roster_store::*;
use serde_json::json;

use super::{
    add, all_changes, changed, changes_after, directory, group, group_ids, group_with, kinds,
    member, member_count, member_group, user, users,
};

pub async fn group_display_name_is_unique_case_insensitively(store: Arc<dyn Store>) {
    let dir = directory(&*store, "guniq").await;
    store
        .create_group(dir.id, group("Engineering"))
        .await
        .unwrap();
    let err = store
        .create_group(dir.id, group("engineering"))
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict(msg) => assert!(msg.contains("displayName"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn group_patch_applies_ops_in_one_version(store: Arc<dyn Store>) {
    let dir = directory(&*store, "gpatch").await;
    let a = store.create_user(dir.id, user("a")).await.unwrap();
    let b = store.create_user(dir.id, user("b")).await.unwrap();
    let mut with_a = group("team");
    with_a.members = Some(vec![member(&a)]);
    let g = store.create_group(dir.id, with_a).await.unwrap();
    assert_eq!((g.version, g.member_count), (1, 1));

    let (ma, mb) = (member(&a), member(&b));
    let patched = store
        .update_group(
            dir.id,
            g.id,
            Some(1),
            Box::new(move |old| {
                Ok(vec![
                    GroupOp::SetAttributes {
                        display_name: "Team".into(),
                        external_id: Some("ext".into()),
                        raw: json!({"displayName": "Team", "externalId": "ext", "note": old.display_name}),
                    },
                    GroupOp::AddMembers(vec![mb]),
                    GroupOp::RemoveMembers(vec![ma.id]),
                ])
            }),
        )
        .await
        .unwrap();
    assert_eq!((patched.version, patched.member_count), (2, 1));
    assert_eq!(patched.display_name, "Team");

    let replaced = store
        .replace_group(
            dir.id,
            g.id,
            Some(2),
            GroupWrite {
                members: Some(vec![ma]),
                ..group("Team")
            },
        )
        .await
        .unwrap();
    assert_eq!((replaced.version, replaced.member_count), (3, 1));
    let members = store.list_members(dir.id, g.id, None, 10).await.unwrap();
    assert_eq!(
        members.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![a.id.0]
    );

    let changes = all_changes(&*store, Some(dir.id)).await;
    let after_users: Vec<&str> = kinds(&changes).into_iter().skip(3).collect();
    assert_eq!(
        after_users,
        [
            "group.created",
            "member.added",
            "group.updated",
            "member.added",
            "member.removed",
            "group.updated",
            "member.removed",
            "member.added"
        ]
    );
    let updated = &changes[5];
    assert_eq!(
        changed(updated),
        BTreeSet::from(["display_name", "external_id"])
    );
    assert!(changes[5..8].iter().all(|c| c.version == 2));
}

/// A group's members read page by page come from one snapshot: writes that
/// commit while the pages are read do not show up in them, and the pages
/// match the version the read returned.
pub async fn group_members_read_in_pages_from_one_snapshot(store: Arc<dyn Store>) {
    let dir = directory(&*store, "paged-members").await;
    let users = users(&*store, dir.id, "m", 25).await;
    let mut write = group("big");
    write.members = Some(users.iter().map(member).collect());
    let g = store.create_group(dir.id, write).await.unwrap();

    let (read, mut pages) = store.read_group(dir.id, g.id, 10).await.unwrap();
    assert_eq!((read.version, read.member_count), (g.version, 25));
    assert!(read.members.is_none());
    let first = pages.try_next().await.unwrap().expect("a first page");
    assert_eq!(first.len(), 10);
    // Writes that commit mid-read: remove a member the read has not reached
    // yet, add a new one (a new version).
    let mut ids: Vec<uuid::Uuid> = users.iter().map(|u| u.id.0).collect();
    ids.sort();
    let later = *ids.last().unwrap();
    let newcomer = store.create_user(dir.id, user("newcomer")).await.unwrap();
    store.remove_members(dir.id, g.id, &[later]).await.unwrap();
    add(&*store, dir.id, g.id, &[member(&newcomer)]).await;

    let rest: Vec<Vec<Member>> = pages.try_collect().await.unwrap();
    let sizes: Vec<usize> = rest.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![10, 5], "pages after the first");
    let read_ids: Vec<uuid::Uuid> = first
        .iter()
        .chain(rest.iter().flatten())
        .map(|m| m.id)
        .collect();
    assert_eq!(
        read_ids, ids,
        "every member of the version read, in id order"
    );

    // A new read sees the new version, and an empty group reads no page.
    let (now, pages) = store.read_group(dir.id, g.id, 10).await.unwrap();
    assert_eq!((now.version, now.member_count), (g.version + 2, 25));
    let now_ids: BTreeSet<uuid::Uuid> = pages
        .try_concat()
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert!(now_ids.contains(&newcomer.id.0) && !now_ids.contains(&later));
    let empty = store.create_group(dir.id, group("empty")).await.unwrap();
    let (_, pages) = store.read_group(dir.id, empty.id, 10).await.unwrap();
    assert!(pages.try_collect::<Vec<_>>().await.unwrap().is_empty());
    let missing = store.read_group(dir.id, GroupId::new(), 10).await;
    assert!(matches!(missing, Err(StoreError::NotFound("group"))));
}

pub async fn group_delete_removes_its_memberships(store: Arc<dyn Store>) {
    let dir = directory(&*store, "gdel").await;
    let u = store.create_user(dir.id, user("u")).await.unwrap();
    let parent = store.create_group(dir.id, group("parent")).await.unwrap();
    let child = store.create_group(dir.id, group("child")).await.unwrap();
    add(&*store, dir.id, child.id, &[member(&u)]).await;
    let nested = member_group(&child);
    add(&*store, dir.id, parent.id, &[nested]).await;
    store.delete_group(dir.id, child.id, None).await.unwrap();
    assert!(group_ids(&*store, dir.id, u.id).await.is_empty());
    assert_eq!(member_count(&*store, dir.id, parent.id).await, 0);
    let changes = all_changes(&*store, Some(dir.id)).await;
    let tail: Vec<&str> = kinds(&changes).into_iter().rev().take(3).collect();
    assert_eq!(tail, ["group.deleted", "member.removed", "member.removed"]);
}

pub async fn group_patch_and_replace_touch_only_changed_members(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
    let users = users(&*store, d.id, "u", 4).await;
    let g = store
        .create_group(
            d.id,
            group_with("eng", vec![member(&users[0]), member(&users[1])]),
        )
        .await
        .unwrap();
    let head = store.log_bounds().await.unwrap().stable_head;

    let ops = vec![
        GroupOp::SetAttributes {
            display_name: "Engineering".into(),
            external_id: Some("x1".into()),
            raw: json!({}),
        },
        GroupOp::AddMembers(vec![member(&users[2])]),
        GroupOp::RemoveMembers(vec![users[0].id.0]),
    ];
    let patched = store
        .update_group(d.id, g.id, Some(1), Box::new(move |_| Ok(ops.clone())))
        .await
        .unwrap();
    assert_eq!(
        (
            patched.display_name.as_str(),
            patched.member_count,
            patched.version
        ),
        ("Engineering", 2, 2)
    );
    let changes = changes_after(&*store, head).await;
    assert_eq!(
        kinds(&changes),
        ["group.updated", "member.added", "member.removed"]
    );
    assert!(changes.iter().all(|c| c.version == 2));
    assert_eq!(
        changes[0].payload["member_count"],
        json!(2),
        "group.updated carries the post-change state"
    );
    assert_eq!(
        changed(&changes[0]),
        BTreeSet::from(["display_name", "external_id"])
    );

    let head = store.log_bounds().await.unwrap().stable_head;
    let write = group_with("Engineering", vec![member(&users[1]), member(&users[3])]);
    let replaced = store
        .replace_group(d.id, g.id, Some(2), write)
        .await
        .unwrap();
    assert_eq!((replaced.member_count, replaced.version), (2, 3));
    let changes = changes_after(&*store, head).await;
    assert_eq!(
        kinds(&changes),
        ["group.updated", "member.removed", "member.added"],
        "only u2 leaves and u3 joins"
    );

    let cleared = store
        .update_group(
            d.id,
            g.id,
            None,
            Box::new(|_| Ok(vec![GroupOp::RemoveAllMembers])),
        )
        .await
        .unwrap();
    assert_eq!(cleared.member_count, 0);
    assert!(matches!(
        store
            .update_group(d.id, g.id, None, Box::new(|_| Err("bad patch".into())))
            .await,
        Err(StoreError::Rejected(_))
    ));
    assert!(matches!(
        store.replace_group(d.id, g.id, Some(1), group("x")).await,
        Err(StoreError::VersionMismatch { .. })
    ));
}
