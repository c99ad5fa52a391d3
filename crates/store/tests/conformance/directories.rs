//! Directories, bearer tokens and service credentials.

use std::collections::BTreeSet;
use std::sync::Arc;

use roster_store::*;
use serde_json::json;

use super::{all_changes, assert_not_found, changed, directory, kinds, user, user_in_group};

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
    assert_eq!(
        changed(&changes[1]),
        BTreeSet::from(["name", "deprovision_policy"])
    );
    let name = changes[1]
        .changed_fields
        .iter()
        .find(|f| f.field == "name")
        .unwrap();
    assert_eq!(
        (name.previous.clone(), name.current.clone()),
        (json!("a"), json!("renamed"))
    );

    assert_not_found(store.get_directory(DirectoryId::new()).await);
}

/// Token `n` of `dir`: its hash is `[n; 32]`.
fn new_token(dir: DirectoryId, n: u8) -> NewToken {
    NewToken {
        directory_id: dir,
        name: format!("token {n}"),
        prefix: format!("rst_{n}"),
        hash: [n; 32],
    }
}

pub async fn token_limit_revoke_and_lookup(store: Arc<dyn Store>) {
    let dir = directory(&*store, "t").await;
    let new = |n: u8| new_token(dir.id, n);
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
    assert_eq!((found, hash), (t1.clone(), [1; 32]));
    assert!(store.find_token([9; 32]).await.unwrap().is_none());

    store.revoke_token(dir.id, t1.id).await.unwrap();
    store
        .revoke_token(dir.id, t1.id)
        .await
        .expect("revoking twice is idempotent");
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
    let all = store.list_tokens(dir.id, true).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].revoked_at.is_some(), "oldest first");
    assert!(matches!(
        store.revoke_token(dir.id, TokenId::new()).await,
        Err(StoreError::NotFound("token"))
    ));

    store.delete_directory(dir.id).await.unwrap();
    assert!(
        store.find_token([2; 32]).await.unwrap().is_none(),
        "deleting a directory revokes its tokens"
    );
}

pub async fn token_last_use_is_recorded_to_the_minute(store: Arc<dyn Store>) {
    let dir = directory(&*store, "used").await;
    let token = store.create_token(new_token(dir.id, 3)).await.unwrap();
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
    assert_not_found(store.revoke_credential(CredentialId::new()).await);
}

pub async fn directory_delete_removes_everything(store: Arc<dyn Store>) {
    let dir = directory(&*store, "ddel").await;
    let other = directory(&*store, "survivor").await;
    let (u, _) = user_in_group(&*store, dir.id).await;
    store.create_token(new_token(dir.id, 7)).await.unwrap();
    let survivor = store.create_user(other.id, user("u")).await.unwrap();
    let before = all_changes(&*store, Some(dir.id)).await.len();

    store.delete_directory(dir.id).await.unwrap();
    assert_not_found(store.get_directory(dir.id).await);
    assert_not_found(store.get_user(dir.id, u.id).await);
    assert!(store.find_token([7; 32]).await.unwrap().is_none());
    assert_eq!(
        store.get_user(other.id, survivor.id).await.unwrap(),
        survivor
    );
    let changes = all_changes(&*store, Some(dir.id)).await;
    assert_eq!(kinds(&changes[before..]), ["directory.deleted"]);
    assert_not_found(store.create_user(dir.id, user("late")).await);
}

pub async fn directories_are_created_updated_listed_and_deleted_with_events(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
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
    assert_not_found(store.get_user(d.id, u.id).await);
    assert_not_found(store.delete_directory(d.id).await);

    let changes = all_changes(&*store, Some(d.id)).await;
    assert_eq!(
        kinds(&changes),
        [
            "directory.created",
            "directory.updated",
            "user.created",
            "directory.deleted"
        ]
    );
    assert_eq!(changes[1].changed_fields.len(), 1);
    assert_eq!(changes[1].changed_fields[0].previous, json!("Acme"));
    assert_eq!(changes[1].changed_fields[0].current, json!("Acme Corp"));
}
