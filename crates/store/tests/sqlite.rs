//! The SQLite store against real database files: every test opens a fresh
//! file in its own temporary directory. The shared conformance suite runs
//! first (module `conformance_suite`), then the SQLite-specific tests.

mod conformance;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use roster_store::sqlite::SqliteStore;
use roster_store::*;
use serde_json::json;

/// A temporary directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("roster-sqlite-test-{}", uuid::Uuid::new_v4()));
        Self(path)
    }

    fn db(&self) -> PathBuf {
        // A nested path: open() must create the missing parent directory.
        self.0.join("data").join("roster.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, migrated store for the conformance suite; the temporary
/// directory lives as long as the fixture.
async fn fixture() -> conformance::Fixture {
    let dir = TempDir::new();
    let store = open(&dir).await;
    conformance::Fixture {
        store: Arc::new(store),
        guard: Box::new(dir),
    }
}

mod conformance_suite {
    crate::conformance::conformance_suite!(super::fixture);
}

async fn open(dir: &TempDir) -> SqliteStore {
    let store = SqliteStore::open(&dir.db()).await.expect("open");
    store.migrate().await.expect("migrate");
    store
}

async fn fresh() -> (SqliteStore, TempDir) {
    let dir = TempDir::new();
    (open(&dir).await, dir)
}

async fn directory(store: &SqliteStore) -> Directory {
    store
        .create_directory(NewDirectory {
            name: "Acme".into(),
            organization: "acme".into(),
            provider: ProviderKind::Okta,
            ..Default::default()
        })
        .await
        .expect("create directory")
}

fn user(name: &str) -> UserWrite {
    UserWrite {
        fields: UserFields {
            user_name: name.into(),
            active: true,
            display_name: Some(format!("{name} display")),
            emails: vec![Email {
                value: format!("{name}@example.com"),
                r#type: "work".into(),
                primary: true,
            }],
            ..Default::default()
        },
        raw: json!({ "userName": name }),
    }
}

fn group(name: &str, members: Option<Vec<MemberRef>>) -> GroupWrite {
    GroupWrite {
        display_name: name.into(),
        external_id: None,
        raw: json!({ "displayName": name }),
        members,
    }
}

fn member(user: &User) -> MemberRef {
    MemberRef {
        id: user.id.0,
        kind: MemberKind::User,
    }
}

fn list(count: i64) -> ListQuery {
    ListQuery {
        start_index: 1,
        count,
        ..Default::default()
    }
}

async fn all_changes(store: &SqliteStore, filter: &ChangeFilter) -> Vec<ChangeRecord> {
    let head = store.log_bounds().await.unwrap().stable_head;
    store.read_changes(filter, 0, head, 10_000).await.unwrap()
}

fn kinds(changes: &[ChangeRecord]) -> Vec<ChangeKind> {
    changes.iter().map(|c| c.kind).collect()
}

#[tokio::test]
async fn open_creates_the_file_in_wal_mode() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    assert!(
        dir.db().exists(),
        "database file created with its parent directory"
    );
    store.ping().await.unwrap();
    store
        .create_directory(NewDirectory::default())
        .await
        .unwrap();
    assert!(
        dir.db().with_extension("db-wal").exists(),
        "WAL journal in use"
    );
}

#[tokio::test]
async fn directories_are_created_updated_listed_and_deleted_with_events() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    assert_eq!(store.get_directory(d.id).await.unwrap(), d);
    let other = store
        .create_directory(NewDirectory {
            name: "Other".into(),
            organization: "other".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.list_directories(None).await.unwrap(),
        vec![d.clone(), other.clone()]
    );
    assert_eq!(
        store.list_directories(Some("other")).await.unwrap(),
        vec![other.clone()]
    );

    let update = DirectoryUpdate {
        name: Some("Acme Corp".into()),
        ..Default::default()
    };
    let updated = store.update_directory(d.id, update).await.unwrap();
    assert_eq!(updated.name, "Acme Corp");
    assert_eq!(updated.provider, ProviderKind::Okta);
    assert_eq!(store.get_directory(d.id).await.unwrap(), updated);

    let u = store.create_user(d.id, user("alice")).await.unwrap();
    store.delete_directory(d.id).await.unwrap();
    assert!(matches!(
        store.get_directory(d.id).await,
        Err(StoreError::NotFound("directory"))
    ));
    assert!(matches!(
        store.get_user(d.id, u.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_directory(d.id).await,
        Err(StoreError::NotFound(_))
    ));

    let filter = ChangeFilter {
        directory_id: Some(d.id),
        kinds: vec![],
    };
    let changes = all_changes(&store, &filter).await;
    assert_eq!(
        kinds(&changes),
        [
            ChangeKind::DirectoryCreated,
            ChangeKind::DirectoryUpdated,
            ChangeKind::UserCreated,
            ChangeKind::DirectoryDeleted
        ]
    );
    assert_eq!(changes[1].changed_fields.len(), 1);
    assert_eq!(changes[1].changed_fields[0].previous, json!("Acme"));
    assert_eq!(changes[1].changed_fields[0].current, json!("Acme Corp"));
}

#[tokio::test]
async fn a_directory_holds_two_live_tokens_found_by_hash() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let token = |n: u8| NewToken {
        directory_id: d.id,
        name: format!("t{n}"),
        prefix: format!("rst_{n}"),
        hash: [n; 32],
    };
    let first = store.create_token(token(1)).await.unwrap();
    store.create_token(token(2)).await.unwrap();
    assert!(matches!(
        store.create_token(token(3)).await,
        Err(StoreError::Limit(_))
    ));

    let (found, hash) = store
        .find_token([1; 32])
        .await
        .unwrap()
        .expect("live token found");
    assert_eq!((found, hash), (first.clone(), [1; 32]));
    assert!(store.find_token([9; 32]).await.unwrap().is_none());

    store.revoke_token(d.id, first.id).await.unwrap();
    store
        .revoke_token(d.id, first.id)
        .await
        .expect("revoking twice is idempotent");
    assert!(
        store.find_token([1; 32]).await.unwrap().is_none(),
        "revoked token no longer authenticates"
    );
    store
        .create_token(token(3))
        .await
        .expect("a slot is free after revocation");

    assert_eq!(store.list_tokens(d.id, false).await.unwrap().len(), 2);
    let all = store.list_tokens(d.id, true).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].revoked_at.is_some());
    assert!(matches!(
        store.revoke_token(d.id, TokenId::new()).await,
        Err(StoreError::NotFound("token"))
    ));

    store.delete_directory(d.id).await.unwrap();
    assert!(
        store.find_token([2; 32]).await.unwrap().is_none(),
        "deleting a directory revokes its tokens"
    );
}

#[tokio::test]
async fn users_round_trip_and_updates_bump_versions_with_field_changes() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let mut write = user("alice");
    write
        .fields
        .custom_attributes
        .insert("costCenter".into(), "42".into());
    let created = store.create_user(d.id, write.clone()).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.fields, write.fields);
    assert_eq!(store.get_user(d.id, created.id).await.unwrap(), created);

    let mut renamed = write.clone();
    renamed.fields.title = Some("Engineer".into());
    let replaced = store
        .replace_user(d.id, created.id, Some(1), renamed)
        .await
        .unwrap();
    assert_eq!(replaced.version, 2);
    assert_eq!(replaced.fields.title.as_deref(), Some("Engineer"));
    assert_eq!(store.get_user(d.id, created.id).await.unwrap(), replaced);

    let stale = store
        .replace_user(d.id, created.id, Some(1), write.clone())
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::VersionMismatch {
            expected: 1,
            actual: 2
        })
    ));

    let deactivated = store
        .update_user(
            d.id,
            created.id,
            None,
            Box::new(|u: &User| {
                let mut fields = u.fields.clone();
                fields.active = false;
                Ok(UserWrite {
                    fields,
                    raw: u.raw.clone(),
                })
            }),
        )
        .await
        .unwrap();
    assert!(!deactivated.fields.active);
    let rejected = store
        .update_user(
            d.id,
            created.id,
            None,
            Box::new(|_: &User| Err("no".into())),
        )
        .await;
    assert!(matches!(rejected, Err(StoreError::Rejected(_))));
    store
        .replace_user(d.id, created.id, None, write)
        .await
        .unwrap();

    let changes = all_changes(
        &store,
        &ChangeFilter {
            directory_id: Some(d.id),
            kinds: vec![],
        },
    )
    .await;
    assert_eq!(
        kinds(&changes)[1..],
        [
            ChangeKind::UserCreated,
            ChangeKind::UserUpdated,
            ChangeKind::UserDeactivated,
            ChangeKind::UserReactivated
        ]
    );
    let update = &changes[2];
    assert_eq!(update.version, 2);
    assert_eq!(update.resource_id, created.id.0);
    assert_eq!(update.changed_fields.len(), 1);
    assert_eq!(update.changed_fields[0].previous, serde_json::Value::Null);
    assert_eq!(update.changed_fields[0].current, json!("Engineer"));
    let payload: User = serde_json::from_value(update.payload.clone()).unwrap();
    assert_eq!(payload, replaced);

    store.delete_user(d.id, created.id, Some(4)).await.unwrap();
    assert!(matches!(
        store.get_user(d.id, created.id).await,
        Err(StoreError::NotFound("user"))
    ));
    let last = all_changes(&store, &ChangeFilter::default())
        .await
        .pop()
        .unwrap();
    assert_eq!(last.kind, ChangeKind::UserDeleted);
    assert_eq!(
        last.payload["user_name"],
        json!("alice"),
        "tombstone carries the last state"
    );
}

#[tokio::test]
async fn unchanged_writes_are_not_events() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let created = store.create_user(d.id, user("alice")).await.unwrap();
    let head = store.log_bounds().await.unwrap().stable_head;
    let same = store
        .replace_user(d.id, created.id, Some(1), user("alice"))
        .await
        .unwrap();
    assert_eq!(same.version, 1);
    assert_eq!(store.log_bounds().await.unwrap().stable_head, head);
}

#[tokio::test]
async fn resources_of_other_directories_are_not_found() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let other = store
        .create_directory(NewDirectory::default())
        .await
        .unwrap();
    let u = store.create_user(d.id, user("alice")).await.unwrap();
    let g = store.create_group(d.id, group("g", None)).await.unwrap();
    assert!(matches!(
        store.get_user(other.id, u.id).await,
        Err(StoreError::NotFound("user"))
    ));
    assert!(matches!(
        store.get_group(other.id, g.id, true).await,
        Err(StoreError::NotFound("group"))
    ));
    assert!(matches!(
        store.delete_user(other.id, u.id, None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.create_user(DirectoryId::new(), user("x")).await,
        Err(StoreError::NotFound("directory"))
    ));
    let foreign = store.create_user(other.id, user("mallory")).await.unwrap();
    let added = store.add_members(d.id, g.id, &[member(&foreign)]).await;
    assert!(
        matches!(added, Err(StoreError::Invalid(_))),
        "members must belong to the directory"
    );
    let myself = MemberRef {
        id: g.id.0,
        kind: MemberKind::Group,
    };
    assert!(matches!(
        store.add_members(d.id, g.id, &[myself]).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn membership_changes_are_idempotent_and_counted() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let alice = store.create_user(d.id, user("alice")).await.unwrap();
    let bob = store.create_user(d.id, user("bob")).await.unwrap();
    let carol = store.create_user(d.id, user("carol")).await.unwrap();
    let g = store
        .create_group(
            d.id,
            group("eng", Some(vec![member(&alice), member(&alice)])),
        )
        .await
        .unwrap();
    assert_eq!((g.member_count, g.version), (1, 1));

    assert_eq!(
        store
            .add_members(d.id, g.id, &[member(&alice), member(&bob)])
            .await
            .unwrap(),
        (1, 2)
    );
    assert_eq!(
        store
            .add_members(d.id, g.id, &[member(&bob)])
            .await
            .unwrap(),
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
    assert_eq!(
        store.get_user(d.id, alice.id).await.unwrap().group_ids,
        vec![g.id]
    );
    let listed = store.list_users(d.id, &list(10)).await.unwrap().items;
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
    assert!(
        store
            .get_user(d.id, alice.id)
            .await
            .unwrap()
            .group_ids
            .is_empty()
    );

    let changes = all_changes(
        &store,
        &ChangeFilter {
            directory_id: Some(d.id),
            kinds: vec![],
        },
    )
    .await;
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

#[tokio::test]
async fn group_patch_and_replace_touch_only_changed_members() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let users: Vec<User> = futures::future::try_join_all(
        (0..4).map(|i| store.create_user(d.id, user(&format!("u{i}")))),
    )
    .await
    .unwrap();
    let g = store
        .create_group(
            d.id,
            group("eng", Some(vec![member(&users[0]), member(&users[1])])),
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
    let changes = store
        .read_changes(&ChangeFilter::default(), head, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(
        kinds(&changes),
        [
            ChangeKind::GroupUpdated,
            ChangeKind::MemberAdded,
            ChangeKind::MemberRemoved
        ]
    );
    assert!(changes.iter().all(|c| c.version == 2));
    assert_eq!(
        changes[0].payload["member_count"],
        json!(2),
        "group.updated carries the post-change state"
    );
    let fields: HashSet<_> = changes[0]
        .changed_fields
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(fields, HashSet::from(["display_name", "external_id"]));

    let head = store.log_bounds().await.unwrap().stable_head;
    let write = group(
        "Engineering",
        Some(vec![member(&users[1]), member(&users[3])]),
    );
    let replaced = store
        .replace_group(d.id, g.id, Some(2), write)
        .await
        .unwrap();
    assert_eq!((replaced.member_count, replaced.version), (2, 3));
    let changes = store
        .read_changes(&ChangeFilter::default(), head, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(
        kinds(&changes),
        [
            ChangeKind::GroupUpdated,
            ChangeKind::MemberRemoved,
            ChangeKind::MemberAdded
        ],
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
        store
            .replace_group(d.id, g.id, Some(1), group("x", None))
            .await,
        Err(StoreError::VersionMismatch { .. })
    ));
}

#[tokio::test]
async fn deleting_users_and_groups_removes_their_memberships_with_events() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let alice = store.create_user(d.id, user("alice")).await.unwrap();
    let inner = store
        .create_group(d.id, group("inner", Some(vec![member(&alice)])))
        .await
        .unwrap();
    let nested = MemberRef {
        id: inner.id.0,
        kind: MemberKind::Group,
    };
    let outer = store
        .create_group(d.id, group("outer", Some(vec![member(&alice), nested])))
        .await
        .unwrap();
    assert_eq!(outer.member_count, 2);

    let head = store.log_bounds().await.unwrap().stable_head;
    store.delete_user(d.id, alice.id, None).await.unwrap();
    let changes = store
        .read_changes(&ChangeFilter::default(), head, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(
        kinds(&changes),
        [
            ChangeKind::MemberRemoved,
            ChangeKind::MemberRemoved,
            ChangeKind::UserDeleted
        ]
    );
    assert_eq!(
        store
            .get_group(d.id, inner.id, false)
            .await
            .unwrap()
            .member_count,
        0
    );
    let outer_now = store.get_group(d.id, outer.id, false).await.unwrap();
    assert_eq!((outer_now.member_count, outer_now.version), (1, 2));

    let head = store.log_bounds().await.unwrap().stable_head;
    store.delete_group(d.id, inner.id, Some(2)).await.unwrap();
    let changes = store
        .read_changes(&ChangeFilter::default(), head, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(
        kinds(&changes),
        [ChangeKind::MemberRemoved, ChangeKind::GroupDeleted]
    );
    assert_eq!(
        store.get_group(d.id, outer.id, true).await.unwrap().members,
        Some(vec![])
    );
    assert!(matches!(
        store.get_group(d.id, inner.id, false).await,
        Err(StoreError::NotFound("group"))
    ));
}

#[tokio::test]
async fn list_members_is_keyset_paginated_by_member_id() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let mut ids = Vec::new();
    let g = store.create_group(d.id, group("all", None)).await.unwrap();
    for i in 0..7 {
        let u = store
            .create_user(d.id, user(&format!("u{i}")))
            .await
            .unwrap();
        store.add_members(d.id, g.id, &[member(&u)]).await.unwrap();
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

#[tokio::test]
async fn lists_page_by_offset_and_keyset_in_creation_order() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let mut names = Vec::new();
    for i in 0..5 {
        names.push(
            store
                .create_user(d.id, user(&format!("user{i}")))
                .await
                .unwrap()
                .fields
                .user_name,
        );
    }
    let bounds = store.log_bounds().await.unwrap();

    let first = store.list_users(d.id, &list(2)).await.unwrap();
    assert_eq!(first.total, 5);
    assert_eq!(
        first.cursor,
        Some(Cursor {
            after: bounds.stable_head,
            also_seen: vec![],
            epoch: Some(bounds.epoch),
        })
    );
    let by_offset = store
        .list_users(
            d.id,
            &ListQuery {
                start_index: 3,
                ..list(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_offset
            .items
            .iter()
            .map(|u| &u.fields.user_name)
            .collect::<Vec<_>>(),
        [&names[2], &names[3]]
    );

    // Keyset pages stay exact while rows are inserted and deleted between pages.
    store
        .delete_user(d.id, first.items[0].id, None)
        .await
        .unwrap();
    let late = store.create_user(d.id, user("late")).await.unwrap();
    let mut seen: Vec<String> = first
        .items
        .iter()
        .map(|u| u.fields.user_name.clone())
        .collect();
    let mut token = first.next_page_token.clone();
    while let Some(t) = token {
        let page = store
            .list_users(
                d.id,
                &ListQuery {
                    page_token: Some(t),
                    ..list(2)
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|u| u.fields.user_name.clone()));
        token = page.next_page_token;
    }
    let mut expected = names.clone();
    expected.push(late.fields.user_name);
    assert_eq!(seen, expected);

    let empty = store.list_users(d.id, &list(0)).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.total, 5);
    let bad = store
        .list_users(
            d.id,
            &ListQuery {
                page_token: Some("%%%".into()),
                ..list(2)
            },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))));

    let g = store
        .create_group(
            d.id,
            group(
                "g",
                Some(vec![MemberRef {
                    id: late.id.0,
                    kind: MemberKind::User,
                }]),
            ),
        )
        .await;
    let groups = store
        .list_groups(
            d.id,
            &ListQuery {
                include_members: true,
                ..list(10)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        groups.items,
        vec![Group {
            members: groups.items[0].members.clone(),
            ..g.unwrap()
        }]
    );
    assert_eq!(groups.items[0].members.as_ref().map(Vec::len), Some(1));
}

#[tokio::test]
async fn change_log_is_dense_filterable_and_prunable() {
    let (store, _dir) = fresh().await;
    let a = directory(&store).await;
    let b = directory(&store).await;
    store.create_user(a.id, user("alice")).await.unwrap();
    store.create_user(b.id, user("bob")).await.unwrap();
    store.create_group(a.id, group("g", None)).await.unwrap();

    let all = all_changes(&store, &ChangeFilter::default()).await;
    let revisions: Vec<i64> = all.iter().map(|c| c.revision).collect();
    assert_eq!(
        revisions,
        (1..=5).collect::<Vec<_>>(),
        "dense, in commit order"
    );
    assert_eq!(
        all.iter().map(|c| c.event_id).collect::<HashSet<_>>().len(),
        5
    );

    let only_a_users = ChangeFilter {
        directory_id: Some(a.id),
        kinds: vec![ChangeKind::UserCreated],
    };
    let filtered = all_changes(&store, &only_a_users).await;
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].payload["user_name"], json!("alice"));
    assert_eq!(
        store
            .read_changes(&ChangeFilter::default(), 1, 3, 10)
            .await
            .unwrap()
            .len(),
        2,
        "bounded by up_to"
    );
    assert_eq!(
        store
            .read_changes(&ChangeFilter::default(), 0, 5, 2)
            .await
            .unwrap()
            .len(),
        2,
        "bounded by limit"
    );

    assert_eq!(store.advance_stable_head(0).await.unwrap(), 5);
    assert_eq!(
        store.prune_changes(3600).await.unwrap(),
        0,
        "nothing is old enough"
    );
    assert_eq!(store.prune_changes(0).await.unwrap(), 5);
    let bounds = store.log_bounds().await.unwrap();
    assert_eq!(
        bounds,
        LogBounds {
            pruned_through: 5,
            stable_head: 5,
            allocated_head: 5,
            epoch: bounds.epoch,
        }
    );
    match store.read_changes(&ChangeFilter::default(), 2, 5, 10).await {
        Err(StoreError::CursorExpired {
            requested: 2,
            oldest: 5,
        }) => {}
        other => panic!("expected CursorExpired, got {other:?}"),
    }
    assert!(
        store
            .read_changes(&ChangeFilter::default(), 5, 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.create_user(a.id, user("carol")).await.unwrap();
    assert_eq!(
        all_changes_after(&store, 5).await[0].revision,
        6,
        "revisions are never reused"
    );
}

async fn all_changes_after(store: &SqliteStore, after: i64) -> Vec<ChangeRecord> {
    let head = store.log_bounds().await.unwrap().stable_head;
    store
        .read_changes(&ChangeFilter::default(), after, head, 1000)
        .await
        .unwrap()
}

#[tokio::test]
async fn snapshot_streams_a_consistent_state_with_its_cursor() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let other = directory(&store).await;
    let alice = store.create_user(d.id, user("alice")).await.unwrap();
    store.create_user(other.id, user("bob")).await.unwrap();
    let g = store
        .create_group(d.id, group("g", Some(vec![member(&alice)])))
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

#[tokio::test]
async fn snapshot_pages_through_many_rows() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let g = store.create_group(d.id, group("big", None)).await.unwrap();
    let mut members = Vec::new();
    for i in 0..1_200 {
        members.push(member(
            &store
                .create_user(d.id, user(&format!("u{i}")))
                .await
                .unwrap(),
        ));
    }
    store.add_members(d.id, g.id, &members).await.unwrap();
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

#[tokio::test]
async fn wait_for_changes_wakes_on_commit() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let head = store.advance_stable_head(0).await.unwrap();

    // Nothing new: returns after the timeout.
    store
        .wait_for_changes(Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(store.log_bounds().await.unwrap().stable_head, head);

    // A commit wakes a waiter long before its (very long) timeout.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_changes(Duration::from_secs(3600)).await })
    };
    store.create_user(d.id, user("alice")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken by the commit")
        .unwrap()
        .unwrap();

    // A commit before the wait (not yet seen by advance_stable_head) does
    // not get lost either.
    store.create_user(d.id, user("bob")).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        store.wait_for_changes(Duration::from_secs(3600)),
    )
    .await
    .expect("returns at once for an unseen commit")
    .unwrap();
    store.notify_changes().await.unwrap();
}

#[tokio::test]
async fn reopening_the_file_keeps_state_and_revisions() {
    let dir = TempDir::new();
    let (d, alice) = {
        let store = open(&dir).await;
        let d = directory(&store).await;
        let alice = store.create_user(d.id, user("alice")).await.unwrap();
        store.close().await;
        (d, alice)
    };
    let store = open(&dir).await;
    assert_eq!(store.get_user(d.id, alice.id).await.unwrap(), alice);
    assert_eq!(store.log_bounds().await.unwrap().stable_head, 2);
    store.create_user(d.id, user("bob")).await.unwrap();
    let changes = all_changes(&store, &ChangeFilter::default()).await;
    assert_eq!(
        changes.iter().map(|c| c.revision).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_neither_fail_nor_lose_members() {
    let (store, _dir) = fresh().await;
    let store = Arc::new(store);
    let d = directory(&store).await;
    let g = store
        .create_group(d.id, group("crowd", None))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let u = store.create_user(d.id, user(&format!("user{i}"))).await?;
                store.add_members(d.id, g.id, &[member(&u)]).await?;
                // Concurrent readers alongside the writers.
                store.list_users(d.id, &list(10)).await?;
                if i % 4 == 0 {
                    store.remove_members(d.id, g.id, &[u.id.0]).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap()
            .expect("no SQLITE_BUSY or other failure under concurrency");
    }
    let stored = store.get_group(d.id, g.id, true).await.unwrap();
    assert_eq!(stored.member_count, 48);
    assert_eq!(stored.members.unwrap().len(), 48);
    let changes = all_changes(&store, &ChangeFilter::default()).await;
    let revisions: Vec<i64> = changes.iter().map(|c| c.revision).collect();
    assert_eq!(
        revisions,
        (1..=revisions.len() as i64).collect::<Vec<_>>(),
        "no holes"
    );
}

#[tokio::test]
async fn open_url_and_bad_urls() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    let url = format!("sqlite://{}", dir.0.join("by-url.db").display());
    let store = SqliteStore::open_url(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert!(SqliteStore::open_url("postgres://nope").await.is_err());
    for memory in ["sqlite::memory:", "sqlite://file.db?mode=memory"] {
        assert!(
            matches!(
                SqliteStore::open_url(memory).await,
                Err(StoreError::Invalid(_))
            ),
            "{memory}"
        );
    }
    let nested = format!(
        "sqlite://{}",
        dir.0.join("a").join("b").join("nested.db").display()
    );
    SqliteStore::open_url(&nested)
        .await
        .expect("open_url creates missing parent directories");
    let unwritable = SqliteStore::open(std::path::Path::new("/proc/roster/none.db")).await;
    assert!(unwritable.is_err(), "an unusable path is an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_wait_for_each_other() {
    let dir = TempDir::new();
    let first = open(&dir).await;
    let second = open(&dir).await;
    let d = directory(&first).await;
    let writes = |store: SqliteStore, prefix: &'static str| {
        tokio::spawn(async move {
            for i in 0..25 {
                store
                    .create_user(d.id, user(&format!("{prefix}{i}")))
                    .await?;
            }
            Ok::<_, StoreError>(())
        })
    };
    let (a, b) = (writes(first.clone(), "a"), writes(second.clone(), "b"));
    a.await
        .unwrap()
        .expect("no SQLITE_BUSY for the first store");
    b.await
        .unwrap()
        .expect("no SQLITE_BUSY for the second store");
    assert_eq!(second.list_users(d.id, &list(0)).await.unwrap().total, 50);
    let revisions: Vec<i64> = all_changes(&first, &ChangeFilter::default())
        .await
        .iter()
        .map(|c| c.revision)
        .collect();
    assert_eq!(
        revisions,
        (1..=51).collect::<Vec<_>>(),
        "one dense log across both"
    );
}

#[tokio::test]
async fn an_unusable_path_is_a_clear_error() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    // A file where the data directory should be.
    let blocker = dir.0.join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    match SqliteStore::open(&blocker.join("roster.db")).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("blocker"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A file that is not a database.
    let garbage = dir.0.join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let opened = SqliteStore::open(&garbage).await;
    let migrated = match opened {
        Ok(store) => store.migrate().await,
        Err(e) => Err(e),
    };
    assert!(migrated.is_err(), "a corrupt file is refused");
}

#[tokio::test]
async fn pruning_removes_old_rows_of_large_transactions_and_keeps_young_ones() {
    let (store, _dir) = fresh().await;
    let d = directory(&store).await;
    let g = store.create_group(d.id, group("big", None)).await.unwrap();
    // One transaction with more events than a pruning batch.
    let mut members = Vec::new();
    for i in 0..120 {
        members.push(member(
            &store
                .create_user(d.id, user(&format!("u{i}")))
                .await
                .unwrap(),
        ));
    }
    store.add_members(d.id, g.id, &members).await.unwrap();
    let head = store.log_bounds().await.unwrap().stable_head;
    assert_eq!(head, 2 + 120 + 120);
    assert_eq!(store.prune_changes(0).await.unwrap(), head);
    assert_eq!(store.log_bounds().await.unwrap().pruned_through, head);
    assert!(
        store
            .read_changes(&ChangeFilter::default(), head, head, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Rows younger than the window stay, and so does everything after them.
    store.create_user(d.id, user("young")).await.unwrap();
    assert_eq!(store.prune_changes(3600).await.unwrap(), head);
    assert_eq!(
        store
            .read_changes(&ChangeFilter::default(), head, head + 1, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Set in the child process of `acknowledged_writes_survive_a_crash`: the
/// database file the child writes to before it aborts.
const CRASH_CHILD_DB: &str = "ROSTER_SQLITE_CRASH_CHILD_DB";

#[tokio::test]
async fn acknowledged_writes_survive_a_crash() {
    if let Ok(path) = std::env::var(CRASH_CHILD_DB) {
        return write_then_abort(PathBuf::from(path)).await;
    }
    let dir = TempDir::new();
    let store = open(&dir).await;
    let d = directory(&store).await;
    store.close().await;

    // The child writes users, prints each id once the write is acknowledged,
    // then dies without closing anything (no checkpoint, no clean shutdown).
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_writes_survive_a_crash",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DB, dir.db())
        .env("ROSTER_SQLITE_CRASH_CHILD_DIRECTORY", d.id.to_string())
        .output()
        .expect("run the child");
    assert!(!output.status.success(), "the child aborts");
    let acknowledged: Vec<UserId> = String::from_utf8_lossy(&output.stdout)
        .lines()
        // The test harness may print on the same line before the child does.
        .filter_map(|line| line.split_once("acknowledged:").map(|(_, id)| id.trim()))
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(
        acknowledged.len(),
        20,
        "child output: {}",
        String::from_utf8_lossy(&output.stdout)
    );

    let store = open(&dir).await;
    for id in &acknowledged {
        store
            .get_user(d.id, *id)
            .await
            .expect("an acknowledged user survives the crash");
    }
    let revisions: Vec<i64> = all_changes(&store, &ChangeFilter::default())
        .await
        .iter()
        .map(|c| c.revision)
        .collect();
    assert_eq!(revisions, (1..=21).collect::<Vec<_>>());
}

/// The child side: acknowledged writes, then an abrupt end.
async fn write_then_abort(path: PathBuf) {
    use std::io::Write;
    let dir: DirectoryId = std::env::var("ROSTER_SQLITE_CRASH_CHILD_DIRECTORY")
        .unwrap()
        .parse()
        .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    for i in 0..20 {
        let created = store
            .create_user(dir, user(&format!("crash{i}")))
            .await
            .unwrap();
        let mut out = std::io::stdout().lock();
        writeln!(out, "acknowledged:{}", created.id).unwrap();
        out.flush().unwrap();
    }
    std::process::abort();
}

#[tokio::test]
async fn pool_stats_count_every_connection() {
    let (store, _dir) = fresh().await;
    store.ping().await.unwrap();
    let stats = store.pool_stats().expect("SQLite reports its pools");
    assert!(
        stats.size >= 2,
        "the writer and at least one reader are open: {stats:?}"
    );
    assert!(
        stats.idle <= stats.size && stats.size <= stats.max,
        "{stats:?}"
    );
}
