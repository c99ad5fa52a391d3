//! Users: versions, events, uniqueness and rejected changes.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use roster_store::*;
use serde_json::json;

use super::{
    all_changes, assert_not_found, changed, directory, group, kinds, member, member_group, user,
};

pub async fn user_crud_versions_and_events(store: Arc<dyn Store>) {
    let dir = directory(&*store, "u").await;
    let created = store.create_user(dir.id, user("alice")).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.fields.user_name, "alice");
    assert_eq!(store.get_user(dir.id, created.id).await.unwrap(), created);
    let other_dir = directory(&*store, "other").await;
    assert_not_found(store.get_user(other_dir.id, created.id).await);

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
    assert_not_found(store.get_user(dir.id, created.id).await);

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
    assert_eq!(
        changed(&changes[3]),
        BTreeSet::from(["active", "display_name"])
    );
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
                    raw: old.raw.to_value(),
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

pub async fn users_round_trip_and_updates_bump_versions_with_field_changes(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
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
                    raw: u.raw.to_value(),
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

    let changes = all_changes(&*store, Some(d.id)).await;
    assert_eq!(
        kinds(&changes)[1..],
        [
            "user.created",
            "user.updated",
            "user.deactivated",
            "user.reactivated"
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
    let last = all_changes(&*store, None).await.pop().unwrap();
    assert_eq!(last.kind, ChangeKind::UserDeleted);
    assert_eq!(
        last.payload["user_name"],
        json!("alice"),
        "tombstone carries the last state"
    );
}

pub async fn resources_of_other_directories_are_not_found(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
    let other = store
        .create_directory(NewDirectory::default())
        .await
        .unwrap();
    let u = store.create_user(d.id, user("alice")).await.unwrap();
    let g = store.create_group(d.id, group("g")).await.unwrap();
    assert!(matches!(
        store.get_user(other.id, u.id).await,
        Err(StoreError::NotFound("user"))
    ));
    assert!(matches!(
        store.get_group(other.id, g.id, true).await,
        Err(StoreError::NotFound("group"))
    ));
    assert_not_found(store.delete_user(other.id, u.id, None).await);
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
    let myself = member_group(&g);
    assert!(matches!(
        store.add_members(d.id, g.id, &[myself]).await,
        Err(StoreError::Invalid(_))
    ));
}
