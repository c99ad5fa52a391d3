//! The conformance cases. Each gets a fresh, empty, migrated store.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use roster_store::*;
use serde_json::json;

use super::{all_changes, directory, filter, group, kinds, member, query, user};

pub use super::data_rules::*;

pub async fn directories_crud_and_events(store: Arc<dyn Store>) {
    let a = directory(&*store, "a").await;
    let b = directory(&*store, "b").await;
    assert_eq!(store.get_directory(a.id).await.unwrap(), a);
    let listed = store.list_directories(None).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    let only_a = store.list_directories(Some("org-a")).await.unwrap();
    assert_eq!(only_a, vec![a.clone()]);

    let renamed = store
        .update_directory(
            a.id,
            DirectoryUpdate {
                name: Some("renamed".into()),
                deprovision_policy: Some(DeprovisionPolicy::Deactivate),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    assert_eq!(renamed.deprovision_policy, DeprovisionPolicy::Deactivate);
    assert_eq!(store.get_directory(a.id).await.unwrap(), renamed);

    let changes = all_changes(&*store, Some(a.id)).await;
    assert_eq!(kinds(&changes), ["directory.created", "directory.updated"]);
    let fields: BTreeSet<&str> = changes[1]
        .changed_fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(fields, BTreeSet::from(["name", "deprovision_policy"]));
    let name = changes[1]
        .changed_fields
        .iter()
        .find(|f| f.field == "name")
        .unwrap();
    assert_eq!(
        (name.previous.clone(), name.current.clone()),
        (json!("a"), json!("renamed"))
    );

    assert!(matches!(
        store.get_directory(DirectoryId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn token_limit_revoke_and_lookup(store: Arc<dyn Store>) {
    let dir = directory(&*store, "t").await;
    let new = |n: u8| NewToken {
        directory_id: dir.id,
        name: format!("token {n}"),
        prefix: format!("rst_{n}"),
        hash: [n; 32],
    };
    let t1 = store.create_token(new(1)).await.unwrap();
    let t2 = store.create_token(new(2)).await.unwrap();
    assert!(matches!(
        store.create_token(new(3)).await,
        Err(StoreError::Limit(_))
    ));

    let (found, hash) = store
        .find_token([1; 32])
        .await
        .unwrap()
        .expect("live token found");
    assert_eq!((found.id, hash), (t1.id, [1; 32]));
    assert!(store.find_token([9; 32]).await.unwrap().is_none());

    store.revoke_token(dir.id, t1.id).await.unwrap();
    assert!(
        store.find_token([1; 32]).await.unwrap().is_none(),
        "a revoked token never authenticates"
    );
    let live = store.list_tokens(dir.id, false).await.unwrap();
    assert_eq!(live.iter().map(|t| t.id).collect::<Vec<_>>(), vec![t2.id]);
    let all = store.list_tokens(dir.id, true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .find(|t| t.id == t1.id)
            .unwrap()
            .revoked_at
            .is_some()
    );

    // Room again after the revocation.
    store.create_token(new(3)).await.unwrap();
    assert!(matches!(
        store.revoke_token(dir.id, TokenId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn token_last_use_is_recorded_to_the_minute(store: Arc<dyn Store>) {
    let dir = directory(&*store, "used").await;
    let token = store
        .create_token(NewToken {
            directory_id: dir.id,
            name: "idp".into(),
            prefix: "rst_used".into(),
            hash: [3; 32],
        })
        .await
        .unwrap();
    assert_eq!(token.last_used_at, None, "a new token was never used");
    let last_used = |store: Arc<dyn Store>| async move {
        let (found, _) = store.find_token([3; 32]).await.unwrap().unwrap();
        found.last_used_at
    };

    let first = chrono::Utc::now() - chrono::Duration::minutes(10);
    store.mark_token_used(token.id, first).await.unwrap();
    let recorded = last_used(store.clone()).await.expect("recorded");
    assert!(
        (recorded - first).num_milliseconds().abs() < 1,
        "{recorded} vs {first}"
    );

    // Within the granularity nothing is written; past it, the new time is.
    store
        .mark_token_used(token.id, first + chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(last_used(store.clone()).await, Some(recorded));
    let later = first + chrono::Duration::minutes(5);
    store.mark_token_used(token.id, later).await.unwrap();
    let listed = store.list_tokens(dir.id, false).await.unwrap();
    let shown = listed[0].last_used_at.expect("listed with its last use");
    assert!(
        (shown - later).num_milliseconds().abs() < 1,
        "{shown} vs {later}"
    );
}

pub async fn service_credentials_are_scoped_listed_and_revoked(store: Arc<dyn Store>) {
    let new = |n: u8, scope| NewCredential {
        name: format!("consumer {n}"),
        scope,
        prefix: format!("rsc_{n}"),
        hash: [n; 32],
    };
    let reader = store
        .create_credential(new(1, CredentialScope::Read))
        .await
        .unwrap();
    let admin = store
        .create_credential(new(2, CredentialScope::Admin))
        .await
        .unwrap();
    assert_eq!(
        (reader.scope, reader.revoked_at),
        (CredentialScope::Read, None)
    );

    let (found, hash) = store.find_credential([1; 32]).await.unwrap().expect("live");
    assert_eq!(
        (found.id, found.scope, hash),
        (reader.id, CredentialScope::Read, [1; 32])
    );
    assert!(store.find_credential([9; 32]).await.unwrap().is_none());

    store.revoke_credential(reader.id).await.unwrap();
    store.revoke_credential(reader.id).await.unwrap();
    assert!(
        store.find_credential([1; 32]).await.unwrap().is_none(),
        "revoked"
    );
    let live = store.list_credentials(false).await.unwrap();
    assert_eq!(
        live.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![admin.id]
    );
    let all = store.list_credentials(true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .any(|c| c.id == reader.id && c.revoked_at.is_some())
    );
    assert!(matches!(
        store.revoke_credential(CredentialId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn user_crud_versions_and_events(store: Arc<dyn Store>) {
    let dir = directory(&*store, "u").await;
    let created = store.create_user(dir.id, user("alice")).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.fields.user_name, "alice");
    assert_eq!(store.get_user(dir.id, created.id).await.unwrap(), created);
    let other_dir = directory(&*store, "other").await;
    assert!(matches!(
        store.get_user(other_dir.id, created.id).await,
        Err(StoreError::NotFound(_))
    ));

    let mut write = user("alice");
    write.fields.title = Some("Engineer".into());
    write.raw["title"] = json!("Engineer");
    let updated = store
        .replace_user(dir.id, created.id, Some(1), write.clone())
        .await
        .unwrap();
    assert_eq!(
        (updated.version, updated.fields.title.as_deref()),
        (2, Some("Engineer"))
    );

    let mut off = write.clone();
    off.fields.active = false;
    off.raw["active"] = json!(false);
    off.fields.display_name = Some("Alice".into());
    let deactivated = store
        .replace_user(dir.id, created.id, None, off.clone())
        .await
        .unwrap();
    assert_eq!(deactivated.version, 3);
    let on = store
        .replace_user(dir.id, created.id, None, write)
        .await
        .unwrap();
    assert_eq!(on.version, 4);

    store
        .delete_user(dir.id, created.id, Some(4))
        .await
        .unwrap();
    assert!(matches!(
        store.get_user(dir.id, created.id).await,
        Err(StoreError::NotFound(_))
    ));

    let changes = all_changes(&*store, Some(dir.id)).await;
    assert_eq!(
        kinds(&changes),
        [
            "directory.created",
            "user.created",
            "user.updated",
            "user.deactivated",
            "user.reactivated",
            "user.deleted"
        ]
    );
    let versions: Vec<i64> = changes[1..].iter().map(|c| c.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 4]);
    assert!(changes.windows(2).all(|w| w[0].revision < w[1].revision));
    assert!(
        changes
            .iter()
            .skip(1)
            .all(|c| c.resource_id == created.id.0)
    );

    let title = &changes[2].changed_fields;
    assert_eq!(title.len(), 1, "{title:?}");
    assert_eq!(
        (
            title[0].field.as_str(),
            &title[0].previous,
            &title[0].current
        ),
        ("title", &json!(null), &json!("Engineer"))
    );
    // A deactivation lists every changed field, not just `active`.
    let fields: BTreeSet<&str> = changes[3]
        .changed_fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(fields, BTreeSet::from(["active", "display_name"]));
    // The creation's payload is the user as created (both backends build it
    // their own way: it must still decode to the same user).
    let born: User = serde_json::from_value(changes[1].payload.clone()).unwrap();
    assert_eq!(born, created);
    // Payloads are the post-change user; the tombstone is the last state.
    let payload: User = serde_json::from_value(changes[4].payload.clone()).unwrap();
    assert_eq!((payload.version, payload.fields.active), (4, true));
    let tombstone: User = serde_json::from_value(changes[5].payload.clone()).unwrap();
    assert_eq!(tombstone.id, created.id);
    let event_ids: HashSet<uuid::Uuid> = changes.iter().map(|c| c.event_id).collect();
    assert_eq!(event_ids.len(), changes.len(), "event ids are unique");
}

pub async fn no_op_update_changes_nothing(store: Arc<dyn Store>) {
    let dir = directory(&*store, "noop").await;
    let u = store.create_user(dir.id, user("bob")).await.unwrap();
    let same = store
        .replace_user(dir.id, u.id, Some(1), user("bob"))
        .await
        .unwrap();
    assert_eq!(same.version, 1);
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    let same = store
        .replace_group(dir.id, g.id, Some(1), group("g"))
        .await
        .unwrap();
    assert_eq!(same.version, 1);
    let (added, v) = store.add_members(dir.id, g.id, &[]).await.unwrap();
    assert_eq!((added, v), (0, 1));
    assert_eq!(
        kinds(&all_changes(&*store, Some(dir.id)).await),
        ["directory.created", "user.created", "group.created"]
    );
}

pub async fn user_name_is_unique_case_insensitively(store: Arc<dyn Store>) {
    let dir = directory(&*store, "uniq").await;
    let other = directory(&*store, "uniq2").await;
    store.create_user(dir.id, user("Carol")).await.unwrap();
    let err = store.create_user(dir.id, user("cAROL")).await.unwrap_err();
    match err {
        StoreError::Conflict(msg) => assert!(msg.contains("userName"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Another directory may reuse the name.
    store.create_user(other.id, user("carol")).await.unwrap();
    // Renaming onto a taken name conflicts too and changes nothing.
    let dave = store.create_user(dir.id, user("dave")).await.unwrap();
    let err = store
        .replace_user(dir.id, dave.id, None, user("CAROL"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store
            .get_user(dir.id, dave.id)
            .await
            .unwrap()
            .fields
            .user_name,
        "dave"
    );
}

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

pub async fn version_mismatch_is_rejected(store: Arc<dyn Store>) {
    let dir = directory(&*store, "ver").await;
    let u = store.create_user(dir.id, user("erin")).await.unwrap();
    let mut w = user("erin");
    w.fields.title = Some("x".into());
    let err = store
        .replace_user(dir.id, u.id, Some(7), w)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::VersionMismatch {
                expected: 7,
                actual: 1
            }
        ),
        "{err:?}"
    );
    let err = store.delete_user(dir.id, u.id, Some(2)).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { .. }), "{err:?}");
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    let err = store.delete_group(dir.id, g.id, Some(5)).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { .. }), "{err:?}");
    assert_eq!(store.get_user(dir.id, u.id).await.unwrap().version, 1);
}

pub async fn rejected_patch_leaves_state_unchanged(store: Arc<dyn Store>) {
    let dir = directory(&*store, "patch").await;
    let u = store.create_user(dir.id, user("frank")).await.unwrap();
    let err = store
        .update_user(dir.id, u.id, None, Box::new(|_| Err("no such path".into())))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    assert_eq!(store.get_user(dir.id, u.id).await.unwrap(), u);

    let patched = store
        .update_user(
            dir.id,
            u.id,
            Some(1),
            Box::new(|old| {
                let mut w = UserWrite {
                    fields: old.fields.clone(),
                    raw: old.raw.clone(),
                };
                w.fields.title = Some("Boss".into());
                w.raw["title"] = json!("Boss");
                Ok(w)
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        (patched.version, patched.fields.title.as_deref()),
        (2, Some("Boss"))
    );

    let g = store.create_group(dir.id, group("g")).await.unwrap();
    let err = store
        .update_group(dir.id, g.id, None, Box::new(|_| Err("bad op".into())))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    assert_eq!(
        kinds(&all_changes(&*store, Some(dir.id)).await),
        [
            "directory.created",
            "user.created",
            "user.updated",
            "group.created"
        ]
    );
}

pub async fn membership_changes_are_idempotent_and_counted(store: Arc<dyn Store>) {
    let dir = directory(&*store, "members").await;
    let a = store.create_user(dir.id, user("a")).await.unwrap();
    let b = store.create_user(dir.id, user("b")).await.unwrap();
    let g = store.create_group(dir.id, group("g")).await.unwrap();

    assert_eq!(
        store
            .add_members(dir.id, g.id, &[member(&a), member(&b)])
            .await
            .unwrap(),
        (2, 2)
    );
    // IdPs retry: adding again adds nothing and bumps nothing.
    assert_eq!(
        store
            .add_members(dir.id, g.id, &[member(&a)])
            .await
            .unwrap(),
        (0, 2)
    );
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
    assert_eq!(
        store.get_user(dir.id, b.id).await.unwrap().group_ids,
        vec![g.id]
    );
    // Lists carry each user's groups too, with and without a cursor.
    let filter = format!("userName eq \"{}\"", b.fields.user_name);
    for omit_cursor in [false, true] {
        let mut q = query(Some(&filter));
        q.omit_cursor = omit_cursor;
        let listed = store.list_users(dir.id, &q).await.unwrap();
        assert_eq!(listed.items[0].group_ids, vec![g.id], "{omit_cursor}");
    }
    assert!(
        store
            .get_user(dir.id, a.id)
            .await
            .unwrap()
            .group_ids
            .is_empty()
    );

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
    store
        .add_members(dir.id, g.id, &[member(&a)])
        .await
        .unwrap();
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
        MemberRef {
            id: g.id.0,
            kind: MemberKind::Group,
        },
    ] {
        let err = store.add_members(dir.id, g.id, &[bad]).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
    }
    assert_eq!(
        store
            .get_group(dir.id, g.id, false)
            .await
            .unwrap()
            .member_count,
        0
    );
    assert!(matches!(
        store.add_members(dir.id, GroupId::new(), &[]).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn concurrent_member_changes_lose_nothing(store: Arc<dyn Store>) {
    let dir = directory(&*store, "concurrent").await;
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(
            store
                .create_user(dir.id, user(&format!("user{i}")))
                .await
                .unwrap(),
        );
    }
    // Users 0..10 start as members; tasks add 10..50 and remove 0..10 at once.
    let initial: Vec<MemberRef> = users[..10].iter().map(member).collect();
    store.add_members(dir.id, g.id, &initial).await.unwrap();
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
    let fields: BTreeSet<&str> = updated
        .changed_fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(fields, BTreeSet::from(["display_name", "external_id"]));
    assert!(changes[5..8].iter().all(|c| c.version == 2));
}

pub async fn user_delete_removes_memberships_with_events(store: Arc<dyn Store>) {
    let dir = directory(&*store, "udel").await;
    let u = store.create_user(dir.id, user("gone")).await.unwrap();
    let keep = store.create_user(dir.id, user("keep")).await.unwrap();
    let g1 = store.create_group(dir.id, group("g1")).await.unwrap();
    let g2 = store.create_group(dir.id, group("g2")).await.unwrap();
    store
        .add_members(dir.id, g1.id, &[member(&u), member(&keep)])
        .await
        .unwrap();
    store
        .add_members(dir.id, g2.id, &[member(&u)])
        .await
        .unwrap();
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

/// A group's members read page by page come from one snapshot: writes that
/// commit while the pages are read do not show up in them, and the pages
/// match the version the read returned.
pub async fn group_members_read_in_pages_from_one_snapshot(store: Arc<dyn Store>) {
    let dir = directory(&*store, "paged-members").await;
    let mut users = Vec::new();
    for i in 0..25 {
        users.push(
            store
                .create_user(dir.id, user(&format!("m{i}")))
                .await
                .unwrap(),
        );
    }
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
    store
        .add_members(dir.id, g.id, &[member(&newcomer)])
        .await
        .unwrap();

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
    store
        .add_members(dir.id, child.id, &[member(&u)])
        .await
        .unwrap();
    let nested = MemberRef {
        id: child.id.0,
        kind: MemberKind::Group,
    };
    store
        .add_members(dir.id, parent.id, &[nested])
        .await
        .unwrap();
    store.delete_group(dir.id, child.id, None).await.unwrap();
    assert!(
        store
            .get_user(dir.id, u.id)
            .await
            .unwrap()
            .group_ids
            .is_empty()
    );
    assert_eq!(
        store
            .get_group(dir.id, parent.id, false)
            .await
            .unwrap()
            .member_count,
        0
    );
    let changes = all_changes(&*store, Some(dir.id)).await;
    let tail: Vec<&str> = kinds(&changes).into_iter().rev().take(3).collect();
    assert_eq!(tail, ["group.deleted", "member.removed", "member.removed"]);
}

pub async fn directory_delete_removes_everything(store: Arc<dyn Store>) {
    let dir = directory(&*store, "ddel").await;
    let other = directory(&*store, "survivor").await;
    let u = store.create_user(dir.id, user("u")).await.unwrap();
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    store
        .add_members(dir.id, g.id, &[member(&u)])
        .await
        .unwrap();
    store
        .create_token(NewToken {
            directory_id: dir.id,
            name: "t".into(),
            prefix: "p".into(),
            hash: [7; 32],
        })
        .await
        .unwrap();
    let survivor = store.create_user(other.id, user("u")).await.unwrap();
    let before = all_changes(&*store, Some(dir.id)).await.len();

    store.delete_directory(dir.id).await.unwrap();
    assert!(matches!(
        store.get_directory(dir.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_user(dir.id, u.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.find_token([7; 32]).await.unwrap().is_none());
    assert_eq!(
        store.get_user(other.id, survivor.id).await.unwrap(),
        survivor
    );
    let changes = all_changes(&*store, Some(dir.id)).await;
    assert_eq!(kinds(&changes[before..]), ["directory.deleted"]);
    assert!(matches!(
        store.create_user(dir.id, user("late")).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn users_named(store: &dyn Store, dir: DirectoryId, names: &[&str]) -> Vec<User> {
    let mut out = Vec::new();
    for n in names {
        out.push(store.create_user(dir, user(n)).await.unwrap());
    }
    out
}

pub async fn list_offset_pagination_and_totals(store: Arc<dyn Store>) {
    let dir = directory(&*store, "page").await;
    let other = directory(&*store, "page2").await;
    let names: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let users = users_named(&*store, dir.id, &names).await;
    store.create_user(other.id, user("p0")).await.unwrap();

    let mut q = query(None);
    q.count = 3;
    q.start_index = 3;
    let page = store.list_users(dir.id, &q).await.unwrap();
    assert_eq!(page.total, 7);
    let got: Vec<UserId> = page.items.iter().map(|u| u.id).collect();
    assert_eq!(
        got,
        users[2..5].iter().map(|u| u.id).collect::<Vec<_>>(),
        "creation order"
    );

    // The same page without a change-log cursor (the SCIM gateway's lists).
    q.omit_cursor = true;
    let cheap = store.list_users(dir.id, &q).await.unwrap();
    assert_eq!(cheap.total, 7);
    assert_eq!(cheap.items.iter().map(|u| u.id).collect::<Vec<_>>(), got);

    // Past the end: no rows, the total still counts every match.
    for omit_cursor in [false, true] {
        let mut q = query(None);
        (q.start_index, q.omit_cursor) = (50, omit_cursor);
        let past = store.list_users(dir.id, &q).await.unwrap();
        assert_eq!((past.total, past.items.len()), (7, 0), "{omit_cursor}");
    }

    let mut q = query(Some(r#"userName sw "p" and not (userName eq "p3")"#));
    q.count = 0;
    let page = store.list_users(dir.id, &q).await.unwrap();
    assert_eq!((page.total, page.items.len()), (6, 0));

    let groups = store.list_groups(dir.id, &query(None)).await.unwrap();
    assert_eq!((groups.total, groups.items.len()), (0, 0));
}

pub async fn list_keyset_pagination_survives_inserts(store: Arc<dyn Store>) {
    let dir = directory(&*store, "keyset").await;
    let names: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    users_named(&*store, dir.id, &names).await;

    let sorts = [None, Some(("userName", false)), Some(("userName", true))];
    for (round, sort) in sorts.into_iter().enumerate() {
        let mut q = query(Some(r#"userName sw "k""#));
        q.count = 2;
        q.sort = sort.map(|(p, descending)| Sort {
            path: roster_scim::filter::parse_attr_path(p).unwrap(),
            descending,
        });
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.list_users(dir.id, &q).await.unwrap();
            seen.extend(page.items.iter().map(|u| u.fields.user_name.clone()));
            pages += 1;
            if pages == 1 {
                // Rows inserted between pages, sorting before and after the
                // page boundary: offset paging would repeat a row, keyset
                // paging must not.
                for prefix in ["k0a", "kz"] {
                    let name = format!("{prefix}{round}");
                    store.create_user(dir.id, user(&name)).await.unwrap();
                }
            }
            match page.next_page_token {
                Some(t) => q.page_token = Some(t),
                None => break,
            }
            assert!(pages < 20, "pagination does not end");
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "no duplicates across pages: {seen:?}"
        );
        for n in &names {
            assert!(
                seen.iter().any(|s| s == n),
                "{n} missing from {seen:?} ({sort:?})"
            );
        }
        let mut sorted = seen.clone();
        match sort {
            Some((_, false)) => {
                sorted.sort();
                assert_eq!(seen, sorted);
            }
            Some((_, true)) => {
                sorted.sort();
                sorted.reverse();
                assert_eq!(seen, sorted);
            }
            None => {}
        }
    }
    let mut q = query(None);
    q.page_token = Some("not a token".into());
    assert!(matches!(
        store.list_users(dir.id, &q).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn list_sorting(store: Arc<dyn Store>) {
    let dir = directory(&*store, "sort").await;
    for (name, title) in [("b", Some("Zed")), ("a", None), ("c", Some("alpha"))] {
        let mut w = user(name);
        w.fields.title = title.map(str::to_string);
        if let Some(t) = title {
            w.raw["title"] = json!(t);
        }
        store.create_user(dir.id, w).await.unwrap();
    }
    let sorted = |path: &str, descending: bool| {
        let mut q = query(None);
        q.sort = Some(Sort {
            path: roster_scim::filter::parse_attr_path(path).unwrap(),
            descending,
        });
        q
    };
    let names = |page: Page<User>| {
        page.items
            .into_iter()
            .map(|u| u.fields.user_name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            store
                .list_users(dir.id, &sorted("userName", false))
                .await
                .unwrap()
        ),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(
            store
                .list_users(dir.id, &sorted("USERNAME", true))
                .await
                .unwrap()
        ),
        ["c", "b", "a"]
    );
    // Case-insensitive; a missing title sorts first ascending.
    assert_eq!(
        names(
            store
                .list_users(dir.id, &sorted("title", false))
                .await
                .unwrap()
        ),
        ["a", "c", "b"]
    );
    assert_eq!(
        names(
            store
                .list_users(dir.id, &sorted("meta.created", true))
                .await
                .unwrap()
        ),
        ["c", "a", "b"]
    );
}

pub async fn list_cursor_is_exact(store: Arc<dyn Store>) {
    let dir = directory(&*store, "cursor").await;
    store.create_user(dir.id, user("before")).await.unwrap();
    let page = store.list_users(dir.id, &query(None)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let cursor = page.cursor.expect("a list cursor");
    let after_list = store.create_user(dir.id, user("after")).await.unwrap();

    let head = store.advance_stable_head(0).await.unwrap();
    let changes = store
        .read_changes(&ChangeFilter::default(), cursor.after, head, 1000)
        .await
        .unwrap();
    let unseen: Vec<&ChangeRecord> = changes
        .iter()
        .filter(|c| !cursor.also_seen.contains(&c.revision))
        .collect();
    assert_eq!(
        unseen.len(),
        1,
        "exactly the change after the list: {unseen:?}"
    );
    assert_eq!(unseen[0].resource_id, after_list.id.0);
    // Everything the list reflects is at or below the cursor.
    let all = all_changes(&*store, None).await;
    let reflected: Vec<i64> = all
        .iter()
        .filter(|c| c.revision <= cursor.after || cursor.also_seen.contains(&c.revision))
        .map(|c| c.revision)
        .collect();
    assert_eq!(reflected.len(), all.len() - 1);
}

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
    let u = store.create_user(dir.id, user("u")).await.unwrap();
    let g = store.create_group(dir.id, group("g")).await.unwrap();
    store
        .add_members(dir.id, g.id, &[member(&u)])
        .await
        .unwrap();
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

pub async fn filters_agree_with_the_evaluator(store: Arc<dyn Store>) {
    super::oracle::check_filters_against_evaluator(&*store).await;
}

pub async fn invalid_filters_are_typed_errors(store: Arc<dyn Store>) {
    let dir = directory(&*store, "badfilter").await;
    store.create_user(dir.id, user("x")).await.unwrap();
    for f in [
        "userName eq true",
        "active eq \"yes\"",
        "meta.created gt \"yesterday\"",
        "displayName gt 3",
    ] {
        let err = store.list_users(dir.id, &query(Some(f))).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidFilter(_)), "{f}: {err:?}");
    }
    let _ = filter("userName pr");
}
