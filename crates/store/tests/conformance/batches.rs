//! Group commit: several PATCHes of one group in one transaction
//! (`Store::update_group_batch`), each with its own result, version and
//! events, a failing edit failing only itself.

use std::sync::Arc;

use roster_store::*;
use serde_json::json;

use super::{all_changes, directory, group, member, users};

fn add(m: MemberRef) -> GroupEdit {
    edit(None, move |_| Ok(vec![GroupOp::AddMembers(vec![m])]))
}

fn edit(
    if_version: Option<i64>,
    f: impl Fn(&Group) -> Result<Vec<GroupOp>, Box<dyn std::error::Error + Send + Sync>>
    + Send
    + Sync
    + 'static,
) -> GroupEdit {
    GroupEdit {
        if_version,
        update: Box::new(f),
    }
}

fn rename(name: &str) -> GroupOp {
    GroupOp::SetAttributes {
        display_name: name.into(),
        external_id: None,
        raw: json!({"displayName": name}),
    }
}

pub async fn a_group_batch_gives_each_edit_its_own_result_version_and_events(
    store: Arc<dyn Store>,
) {
    let dir = directory(&*store, "batch").await;
    let u = users(&*store, dir.id, "b", 3).await;
    let (a, b, c) = (member(&u[0]), member(&u[1]), member(&u[2]));
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    store.create_group(dir.id, group("taken")).await.unwrap();
    let before = all_changes(&*store, Some(dir.id)).await.len();
    let stranger = MemberRef {
        id: uuid::Uuid::new_v4(),
        kind: MemberKind::User,
    };

    let edits = vec![
        add(a),                                                          // 0: v2
        edit(Some(99), move |_| Ok(vec![GroupOp::AddMembers(vec![c])])), // 1: 412
        edit(None, |_| Err("rejected by the PATCH engine".into())),      // 2: rejected
        add(stranger), // 3: unknown member (fails while writing)
        add(b),        // 4: v3
        add(a),        // 5: no-op, stays v3
        edit(None, move |_| {
            Ok(vec![rename("G2"), GroupOp::AddMembers(vec![c])])
        }), // 6: v4
        edit(None, |_| Ok(vec![rename("TAKEN")])), // 7: uniqueness conflict
        edit(Some(4), move |_| {
            Ok(vec![GroupOp::RemoveMembers(vec![b.id])])
        }), // 8: v5
    ];
    let results = store.update_group_batch(dir.id, g.id, edits).await;
    assert_eq!(results.len(), 9);
    let ok = |i: usize| -> (i64, i64) {
        let g = results[i]
            .as_ref()
            .unwrap_or_else(|e| panic!("edit {i}: {e:?}"));
        (g.version, g.member_count)
    };
    assert_eq!(ok(0), (2, 1));
    assert!(matches!(
        results[1],
        Err(StoreError::VersionMismatch {
            expected: 99,
            actual: 2
        })
    ));
    assert!(matches!(results[2], Err(StoreError::Rejected(_))));
    assert!(
        matches!(results[3], Err(StoreError::Invalid(_))),
        "{:?}",
        results[3]
    );
    assert_eq!(ok(4), (3, 2));
    assert_eq!(ok(5), (3, 2));
    assert_eq!(ok(6), (4, 3));
    assert_eq!(results[6].as_ref().unwrap().display_name, "G2");
    assert!(
        matches!(results[7], Err(StoreError::Conflict(_))),
        "{:?}",
        results[7]
    );
    assert_eq!(ok(8), (5, 2));

    let stored = store.get_group(dir.id, g.id, true).await.unwrap();
    assert_eq!(
        (
            stored.version,
            stored.member_count,
            stored.display_name.as_str()
        ),
        (5, 2, "G2")
    );
    let mut ids: Vec<uuid::Uuid> = stored.members.unwrap().iter().map(|m| m.id).collect();
    ids.sort();
    let mut want = vec![a.id, c.id];
    want.sort();
    assert_eq!(ids, want);

    // The events: each edit's, in order, stamped with its version.
    let changes = all_changes(&*store, Some(dir.id)).await;
    let events: Vec<(String, i64, Option<uuid::Uuid>)> = changes[before..]
        .iter()
        .map(|c| {
            let member = serde_json::from_value::<Membership>(c.payload.clone())
                .ok()
                .filter(|_| c.kind.as_str().starts_with("member."))
                .map(|m| m.member_id);
            (c.kind.as_str().to_string(), c.version, member)
        })
        .collect();
    assert_eq!(
        events,
        vec![
            ("member.added".to_string(), 2, Some(a.id)),
            ("member.added".to_string(), 3, Some(b.id)),
            ("group.updated".to_string(), 4, None),
            ("member.added".to_string(), 4, Some(c.id)),
            ("member.removed".to_string(), 5, Some(b.id)),
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].revision < w[1].revision));
}

/// Adds batched together are each all or nothing: one naming an unknown
/// member adds none of its members, and the adds beside it are written.
pub async fn a_batched_add_naming_an_unknown_member_adds_none_of_its_members(
    store: Arc<dyn Store>,
) {
    let dir = directory(&*store, "partial").await;
    let u = users(&*store, dir.id, "p", 4).await;
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    let stranger = MemberRef {
        id: uuid::Uuid::new_v4(),
        kind: MemberKind::User,
    };
    let (a, b, c, d) = (member(&u[0]), member(&u[1]), member(&u[2]), member(&u[3]));
    let adds = |members: Vec<MemberRef>| {
        edit(None, move |_| {
            Ok(vec![GroupOp::AddMembers(members.clone())])
        })
    };
    let edits = vec![adds(vec![a]), adds(vec![b, stranger, c]), adds(vec![d])];
    let results = store.update_group_batch(dir.id, g.id, edits).await;
    assert_eq!(results[0].as_ref().unwrap().version, 2);
    let error = results[1].as_ref().unwrap_err();
    assert!(
        matches!(error, StoreError::Invalid(m) if m.contains(&stranger.id.to_string())),
        "{error:?}"
    );
    assert_eq!(results[2].as_ref().unwrap().version, 3);
    let stored = store.get_group(dir.id, g.id, true).await.unwrap();
    let mut ids: Vec<uuid::Uuid> = stored.members.unwrap().iter().map(|m| m.id).collect();
    ids.sort();
    let mut want = vec![a.id, d.id];
    want.sort();
    assert_eq!(ids, want, "b and c came with the unknown member");
    assert_eq!((stored.version, stored.member_count), (3, 2));
    assert_eq!(
        results[2].as_ref().unwrap().updated_at,
        stored.updated_at,
        "the last edit's result carries the time stored"
    );

    // Alone, the same add fails whole too.
    let alone = store
        .update_group_batch(dir.id, g.id, vec![adds(vec![b, stranger])])
        .await;
    assert!(matches!(alone[0], Err(StoreError::Invalid(_))));
    let stored = store.get_group(dir.id, g.id, false).await.unwrap();
    assert_eq!((stored.version, stored.member_count), (3, 2));
}

pub async fn concurrent_group_batches_lose_nothing_and_keep_versions_in_order(
    store: Arc<dyn Store>,
) {
    let dir = directory(&*store, "batches").await;
    let u = users(&*store, dir.id, "c", 32).await;
    let g = store.create_group(dir.id, group("hot")).await.unwrap();
    let tasks: Vec<_> = u
        .chunks(8)
        .map(|chunk| {
            let (store, chunk) = (Arc::clone(&store), chunk.to_vec());
            tokio::spawn(async move {
                let edits = chunk.iter().map(|u| add(member(u))).collect();
                store.update_group_batch(dir.id, g.id, edits).await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        for result in task.await.unwrap() {
            versions.push(result.unwrap().version);
        }
    }
    versions.sort();
    // The group's creation is version 1; each of the 32 edits takes one more.
    let edit_versions: Vec<i64> = (2..=33).collect();
    assert_eq!(versions, edit_versions, "one version per edit");
    let stored = store.get_group(dir.id, g.id, false).await.unwrap();
    assert_eq!((stored.version, stored.member_count), (33, 32));
    let added: Vec<i64> = all_changes(&*store, Some(dir.id))
        .await
        .iter()
        .filter(|c| c.kind.as_str() == "member.added")
        .map(|c| c.version)
        .collect();
    assert_eq!(added, edit_versions, "events in version order");
}

/// Group commit of creations: each user is created as `create_user` would
/// create it; a taken `userName` (taken before, or earlier in the same
/// batch, case-insensitively) fails that user alone, with `create_user`'s
/// error. `externalId` is not unique, in a batch as alone.
pub async fn a_user_batch_creates_each_user_alone_and_fails_only_the_taken_ones(
    store: Arc<dyn Store>,
) {
    let dir = directory(&*store, "user-batch").await;
    store
        .create_user(dir.id, super::user("taken"))
        .await
        .unwrap();
    let mut with_external = super::user("ext-a");
    with_external.fields.external_id = Some("E1".into());
    let mut same_external = super::user("ext-b");
    same_external.fields.external_id = Some("E1".into());
    let writes = vec![
        super::user("first"),
        super::user("TAKEN"),
        super::user("twice"),
        super::user("Twice"),
        with_external,
        same_external,
        super::user("last"),
    ];
    let single_error = store
        .create_user(dir.id, super::user("Taken"))
        .await
        .unwrap_err();
    let results = store.create_users(dir.id, writes).await;
    assert_eq!(results.len(), 7);
    let outcome: Vec<Result<&str, String>> = results
        .iter()
        .map(|r| match r {
            Ok(u) => Ok(u.fields.user_name.as_str()),
            Err(e) => Err(e.to_string()),
        })
        .collect();
    assert_eq!(outcome[0], Ok("first"));
    assert_eq!(
        outcome[1],
        Err(single_error.to_string()),
        "create_user's own error"
    );
    assert_eq!(outcome[2], Ok("twice"));
    assert!(
        matches!(results[3], Err(StoreError::Conflict(_))),
        "{:?}",
        outcome[3]
    );
    assert_eq!(outcome[4], Ok("ext-a"));
    assert_eq!(outcome[5], Ok("ext-b"));
    assert_eq!(outcome[6], Ok("last"));
    for created in results.iter().flatten() {
        assert_eq!(created.version, 1);
        assert_eq!(&store.get_user(dir.id, created.id).await.unwrap(), created);
    }
    let created: Vec<String> = all_changes(&*store, Some(dir.id))
        .await
        .iter()
        .filter(|c| c.kind.as_str() == "user.created")
        .map(|c| c.resource_id.to_string())
        .collect();
    let mut expected: Vec<String> = results
        .iter()
        .flatten()
        .map(|u| u.id.0.to_string())
        .collect();
    assert_eq!(
        created.len(),
        1 + expected.len(),
        "one event per user created, none for the failed"
    );
    expected.sort();
    let mut batch_events = created[1..].to_vec();
    batch_events.sort();
    assert_eq!(batch_events, expected);
}
