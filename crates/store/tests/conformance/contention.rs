//! Conformance cases about concurrent writers and held resources: the lock
//! order of membership edits against deletions, and the snapshot cap.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use roster_store::*;

use super::{add, assert_not_found, directory, group, member, member_group, user, users};

/// Four groups named `{prefix}0` to `{prefix}3`, the groups both races edit.
async fn four_groups(store: &dyn Store, dir: DirectoryId, prefix: &str) -> Vec<Group> {
    let mut groups = Vec::new();
    for i in 0..4 {
        let created = store.create_group(dir, group(&format!("{prefix}{i}")));
        groups.push(created.await.unwrap());
    }
    groups
}

/// Users raced in the membership/delete case.
const RACED_USERS: usize = 40;
/// Users whose races run at once (each race is four concurrent calls).
const RACES_AT_ONCE: usize = 2;

/// Each user (already a member of two of four groups) is raced by two
/// group PATCHes adding it, a direct add (the gRPC path) and its own
/// deletion. Whatever order the database picks, no call may fail with a
/// lock conflict, and no membership of a deleted user may survive.
pub async fn membership_edits_race_user_deletes_without_conflicts(store: Arc<dyn Store>) {
    let dir = directory(&*store, "race").await;
    let groups = four_groups(&*store, dir.id, "g").await;
    let users = users(&*store, dir.id, "racer", RACED_USERS).await;
    for (i, u) in users.iter().enumerate() {
        for g in &groups[i % 2..i % 2 + 2] {
            add(&*store, dir.id, g.id, &[member(u)]).await;
        }
    }
    let group_ids: Vec<GroupId> = groups.iter().map(|g| g.id).collect();
    race_without_failures(users.iter().enumerate(), |(i, u)| {
        race_one_user(store.clone(), dir.id, &group_ids, i, u)
    })
    .await;

    let deleted: HashSet<uuid::Uuid> = users.iter().map(|u| u.id.0).collect();
    assert_groups_keep_none_of(&*store, &groups, &deleted).await;
    for u in &users {
        assert_not_found(store.get_user(dir.id, u.id).await);
    }
}

/// How one raced call ended: as it may (done, or what it names was
/// already gone), or with any other error.
#[derive(Debug)]
enum Outcome {
    Done,
    Gone,
    Failed(String),
}

impl<T> From<StoreResult<T>> for Outcome {
    fn from(result: StoreResult<T>) -> Outcome {
        match result {
            Ok(_) => Outcome::Done,
            // An add that lost the race names the missing member; an edit
            // of a group deleted meanwhile finds no group.
            Err(StoreError::Invalid(m)) if m.starts_with("no ") => Outcome::Gone,
            Err(StoreError::NotFound(_)) => Outcome::Gone,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// Runs `race` on each item, [`RACES_AT_ONCE`] at a time: none of the
/// raced calls may fail.
async fn race_without_failures<T, F>(items: impl Iterator<Item = T>, race: impl FnMut(T) -> F)
where
    F: Future<Output = Vec<Outcome>>,
{
    let outcomes: Vec<Vec<Outcome>> = futures::stream::iter(items)
        .map(race)
        .buffer_unordered(RACES_AT_ONCE)
        .collect()
        .await;
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .flatten()
        .filter(|o| matches!(o, Outcome::Failed(_)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:?}",
        failed.len()
    );
}

/// Each of `groups` as stored lists no member of `gone`, and counts the
/// members it lists.
async fn assert_groups_keep_none_of(
    store: &dyn Store,
    groups: &[Group],
    gone: &HashSet<uuid::Uuid>,
) {
    for g in groups {
        let got = store.get_group(g.directory_id, g.id, true).await.unwrap();
        let members = got.members.unwrap();
        assert!(
            members.iter().all(|m| !gone.contains(&m.id)),
            "group {} keeps deleted members: {members:?}",
            got.display_name
        );
        assert_eq!(
            got.member_count,
            members.len() as i64,
            "member_count of {}",
            got.display_name
        );
    }
}

/// Runs the four calls on user `i` at once.
async fn race_one_user(
    store: Arc<dyn Store>,
    dir: DirectoryId,
    groups: &[GroupId],
    i: usize,
    u: &User,
) -> Vec<Outcome> {
    let m = member(u);
    let patch = |g: GroupId| {
        let store = store.clone();
        async move {
            let add: GroupUpdateFn = Box::new(move |_| Ok(vec![GroupOp::AddMembers(vec![m])]));
            Outcome::from(store.update_group(dir, g, None, add).await)
        }
    };
    let (a, b, c, d) = tokio::join!(
        patch(groups[(i + 1) % 4]),
        patch(groups[(i + 2) % 4]),
        async { Outcome::from(store.add_members(dir, groups[(i + 3) % 4], &[m]).await) },
        async { Outcome::from(store.delete_user(dir, u.id, None).await) },
    );
    vec![a, b, c, d]
}

/// More snapshots than any store's cap, none of them read.
const UNREAD_SNAPSHOTS: usize = 64;

/// Snapshots that nobody reads keep their connections, but only up to the
/// store's cap: one more is refused at once with a retry hint, and reads
/// and writes carry on meanwhile (on connections of their own).
pub async fn open_snapshots_are_capped_and_spare_reads_and_writes(store: Arc<dyn Store>) {
    let dir = directory(&*store, "snapcap").await;
    let alice = store.create_user(dir.id, user("alice")).await.unwrap();
    let mut held = Vec::new();
    let refused = loop {
        match store.snapshot(Some(dir.id)).await {
            Ok(snapshot) => held.push(snapshot),
            Err(e) => break e,
        }
        assert!(
            held.len() < UNREAD_SNAPSHOTS,
            "{UNREAD_SNAPSHOTS} snapshots open at once: no cap"
        );
    };
    assert!(
        matches!(&refused, StoreError::Busy { retry_after, .. } if !retry_after.is_zero()),
        "past the cap: {refused:?}"
    );

    let page = store.list_users(dir.id, &super::query(None)).await.unwrap();
    assert_eq!(page.total, 1);
    let bob = store
        .create_user(dir.id, user("bob"))
        .await
        .expect("writes proceed");
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    store
        .add_members(dir.id, g.id, &[member(&alice), member(&bob)])
        .await
        .expect("multi-row writes proceed");
    store
        .delete_user(dir.id, alice.id, None)
        .await
        .expect("deletes proceed");

    let (_, items) = held.pop().unwrap();
    let items: Vec<SnapshotItem> = items.try_collect().await.unwrap();
    assert!(
        matches!(&items[..], [SnapshotItem::User(u)] if u.id == alice.id),
        "the snapshot predates bob: {items:?}"
    );
    let (_, items) = store
        .snapshot(Some(dir.id))
        .await
        .expect("a slot is free again");
    let items: Vec<SnapshotItem> = items.try_collect().await.unwrap();
    assert_eq!(items.len(), 3, "bob, g and bob's membership: {items:?}");
}

/// Child groups raced in the nested-groups case.
const RACED_CHILDREN: usize = 24;

/// Nested groups: each child group sits in two of four parents, and its
/// one user in the child and in the child's first parent. Each child is
/// raced by its own deletion, its user's deletion, a PATCH of the parent
/// holding both and a direct add of the child to another parent: the
/// deletions lock overlapping sets of groups, in one order or deadlock.
pub async fn nested_group_deletes_race_user_deletes_without_conflicts(store: Arc<dyn Store>) {
    let dir = directory(&*store, "nested").await;
    let parents = four_groups(&*store, dir.id, "parent").await;
    let mut children = Vec::new();
    for (i, u) in users(&*store, dir.id, "nested", RACED_CHILDREN)
        .await
        .into_iter()
        .enumerate()
    {
        let c = store
            .create_group(dir.id, group(&format!("child{i}")))
            .await
            .unwrap();
        add(&*store, dir.id, c.id, &[member(&u)]).await;
        let as_member = member_group(&c);
        for p in [&parents[i % 4], &parents[(i + 1) % 4]] {
            add(&*store, dir.id, p.id, &[as_member]).await;
        }
        add(&*store, dir.id, parents[i % 4].id, &[member(&u)]).await;
        children.push((c, u));
    }
    let parent_ids: Vec<GroupId> = parents.iter().map(|g| g.id).collect();
    race_without_failures(children.iter().enumerate(), |(i, (c, u))| {
        let (store, parents) = (store.clone(), &parent_ids);
        async move {
            let child = member_group(c);
            let (m, children) = (member(u), [child]);
            let add: GroupUpdateFn = Box::new(move |_| Ok(vec![GroupOp::AddMembers(vec![m])]));
            let (a, b, p, d) = tokio::join!(
                store.delete_group(dir.id, c.id, None),
                store.delete_user(dir.id, u.id, None),
                store.update_group(dir.id, parents[i % 4], None, add),
                store.add_members(dir.id, parents[(i + 2) % 4], &children),
            );
            vec![a.into(), b.into(), p.into(), d.into()]
        }
    })
    .await;

    let gone: HashSet<uuid::Uuid> = children
        .iter()
        .flat_map(|(c, u)| [c.id.0, u.id.0])
        .collect();
    assert_groups_keep_none_of(&*store, &parents, &gone).await;
}
