//! The admin portal's state: the audit trail, portal links and sessions.

use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use roster_store::portal::*;
use roster_store::produced::{Produced, collect};
use roster_store::*;

use super::directory;

fn entry(dir: DirectoryId, status: i32, resource: &str, at: chrono::DateTime<Utc>) -> NewActivity {
    NewActivity {
        directory_id: dir,
        at: at.trunc_subsecs(6),
        request_id: format!("req-{status}"),
        method: "POST".into(),
        path: format!("/scim/v2/{dir}/{resource}s"),
        status,
        scim_type: (status == 409).then(|| "uniqueness".into()),
        detail: (status >= 400).then(|| "userName is already taken".into()),
        user_agent: Some("Okta SCIM Client 1.0.0".into()),
        client_address: Some("203.0.113.7".into()),
        resource_type: Some(resource.into()),
        resource_id: None,
        revision: (status < 400).then_some(42),
        events: (status < 400).then(|| "user.created:41,member.added:42".into()),
        duration_ms: 3,
    }
}

fn query(dir: DirectoryId) -> ActivityQuery {
    ActivityQuery {
        directory: dir,
        status: None,
        resource_type: None,
        before: None,
        after: None,
        limit: 100,
    }
}

/// The statuses of `listed`, in list order.
fn statuses(listed: &[Activity]) -> Vec<i32> {
    listed.iter().map(|x| x.entry.status).collect()
}

pub async fn activity_is_recorded_listed_filtered_paged_and_pruned(store: Arc<dyn Store>) {
    let a = directory(&*store, "audited").await;
    let b = directory(&*store, "other").await;
    let now = Utc::now();
    let old = now - Duration::days(40);
    let entries = vec![
        entry(a.id, 201, "User", old),
        entry(a.id, 409, "User", now),
        entry(a.id, 200, "Group", now),
        entry(a.id, 503, "Group", now),
        entry(b.id, 201, "User", now),
        // A mistyped directory id in the URL: nothing to attach it to.
        entry(DirectoryId::new(), 401, "User", now),
    ];
    assert_eq!(store.record_activity(&entries).await.unwrap(), 5);

    let all = store.list_activity(&query(a.id)).await.unwrap();
    assert_eq!(
        statuses(&all),
        [503, 200, 409, 201],
        "newest first, one directory"
    );
    assert_eq!(all[1].entry, entries[2], "recorded as sent");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));

    let failures = ActivityQuery {
        status: Some(StatusClass::Failure),
        ..query(a.id)
    };
    let found = store.list_activity(&failures).await.unwrap();
    assert_eq!(statuses(&found), [503, 409]);
    let client = ActivityQuery {
        status: Some(StatusClass::ClientError),
        resource_type: Some("User".into()),
        ..query(a.id)
    };
    let found = store.list_activity(&client).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].entry.scim_type.as_deref(), Some("uniqueness"));

    // Pages: below the last id seen; a live view: above the newest seen.
    let first = store
        .list_activity(&ActivityQuery {
            limit: 2,
            ..query(a.id)
        })
        .await
        .unwrap();
    let next = ActivityQuery {
        before: Some(first[1].id),
        ..query(a.id)
    };
    let rest = store.list_activity(&next).await.unwrap();
    assert_eq!(statuses(&rest), [409, 201]);
    let live = ActivityQuery {
        after: Some(all[2].id),
        ..query(a.id)
    };
    let newer = store.list_activity(&live).await.unwrap();
    assert_eq!(statuses(&newer), [200, 503], "oldest first");

    let pruned = store
        .prune_activity(now - Duration::days(30))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(store.list_activity(&query(a.id)).await.unwrap().len(), 3);

    store.delete_directory(b.id).await.unwrap();
    assert!(store.list_activity(&query(b.id)).await.unwrap().is_empty());
}

fn session(hash: u8, hours: i64) -> NewPortalSession {
    NewPortalSession {
        hash: [hash; 32],
        expires_at: Utc::now() + Duration::hours(hours),
    }
}

/// Link `hash` of `dir`: its hash is `[hash; 32]`.
fn new_link(dir: DirectoryId, hash: u8, expires_at: DateTime<Utc>) -> NewPortalLink {
    NewPortalLink {
        directory_id: dir,
        hash: [hash; 32],
        expires_at,
    }
}

/// Opens link `link` at `now` into a four-hour session `session_hash`.
async fn open(store: &dyn Store, link: u8, session_hash: u8, now: DateTime<Utc>) -> LinkExchange {
    let session = session(session_hash, 4);
    store
        .open_portal_link([link; 32], session, now)
        .await
        .unwrap()
}

pub async fn portal_links_open_once_and_sessions_are_revocable(store: Arc<dyn Store>) {
    let dir = directory(&*store, "portal").await;
    let in_a_day = Utc::now() + Duration::hours(24);
    let link = store
        .create_portal_link(new_link(dir.id, 1, in_a_day))
        .await
        .unwrap();
    assert_eq!(link.directory_id, dir.id);
    assert_eq!(link.used_at, None);

    let now = Utc::now();
    let opened = open(&*store, 1, 11, now).await;
    let LinkExchange::Opened(s, stored) = opened else {
        panic!("a live link opens: {opened:?}");
    };
    assert_eq!(stored, [1; 32]);
    assert_eq!((s.directory_id, s.link_id), (dir.id, link.id));
    let again = open(&*store, 1, 12, now).await;
    assert_eq!(again, LinkExchange::AlreadyUsed);
    assert_eq!(store.find_portal_session([12; 32]).await.unwrap(), None);
    let unknown = open(&*store, 9, 13, now).await;
    assert_eq!(unknown, LinkExchange::Unknown);

    let (found, hash) = store.find_portal_session([11; 32]).await.unwrap().unwrap();
    assert_eq!((found.id, hash), (s.id, [11; 32]));

    // Expired links stay closed.
    store
        .create_portal_link(new_link(dir.id, 2, now - Duration::seconds(1)))
        .await
        .unwrap();
    let late = open(&*store, 2, 14, now).await;
    assert_eq!(late, LinkExchange::Expired);

    // Signing out ends one session.
    store.end_portal_session([11; 32]).await.unwrap();
    assert_eq!(store.find_portal_session([11; 32]).await.unwrap(), None);

    // Revoking a link closes it and every session opened with it.
    let third = store
        .create_portal_link(new_link(dir.id, 3, in_a_day))
        .await
        .unwrap();
    let opened = open(&*store, 3, 15, now).await;
    assert!(matches!(opened, LinkExchange::Opened(..)));
    assert!(store.find_portal_session([15; 32]).await.unwrap().is_some());
    let revoked = store
        .revoke_portal_links(dir.id, Some(third.id))
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    assert_eq!(store.find_portal_session([15; 32]).await.unwrap(), None);
    store
        .create_portal_link(new_link(dir.id, 4, in_a_day))
        .await
        .unwrap();
    assert_eq!(store.revoke_portal_links(dir.id, None).await.unwrap(), 4);
    let closed = open(&*store, 4, 16, now).await;
    assert_eq!(closed, LinkExchange::Revoked);

    let missing = store
        .create_portal_link(new_link(DirectoryId::new(), 5, in_a_day))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

/// The change-log rows of `dir` after revision `after`, as a committed
/// write reports them.
async fn logged(store: &dyn Store, dir: DirectoryId, after: i64) -> Vec<Produced> {
    super::all_changes(store, Some(dir))
        .await
        .into_iter()
        .filter(|c| c.revision > after)
        .map(|c| Produced {
            kind: c.kind,
            resource_id: c.resource_id,
            version: c.version,
            revision: c.revision,
        })
        .collect()
}

/// What the audit trail records as the events of a request: every commit
/// made inside `produced::collect` reports the rows it appended — a
/// creation, a membership change of two members, a batch of creations —
/// and a failed write reports nothing.
pub async fn committed_writes_report_the_events_they_produced(store: Arc<dyn Store>) {
    use super::{group, member, user};
    let dir = directory(&*store, "produced").await.id;
    let head = |rows: &[Produced]| rows.iter().map(|r| r.revision).max().unwrap_or(0);
    let before = head(&logged(&*store, dir, 0).await);

    let (ann, rows) = collect(store.create_user(dir, user("ann"))).await;
    let ann = ann.expect("ann");
    assert_eq!(rows, logged(&*store, dir, before).await);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].kind, rows[0].resource_id),
        (ChangeKind::UserCreated, ann.id.0)
    );

    // Outside `collect` nobody hears of the rows.
    let bob = store.create_user(dir, user("bob")).await.expect("bob");
    let eng = store.create_group(dir, group("eng")).await.expect("eng");
    let before = head(&logged(&*store, dir, 0).await);

    let (added, mut rows) =
        collect(store.add_members(dir, eng.id, &[member(&ann), member(&bob)])).await;
    rows.sort_by_key(|r| r.revision);
    let (count, version) = added.expect("members added");
    assert_eq!(count, 2);
    assert_eq!(rows, logged(&*store, dir, before).await);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            (row.kind, row.resource_id, row.version),
            (ChangeKind::MemberAdded, eng.id.0, version)
        );
    }

    let before = head(&rows);
    let (taken, rows) = collect(store.create_user(dir, user("ann"))).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert!(rows.is_empty(), "a failed write produced {rows:?}");
    assert!(logged(&*store, dir, before).await.is_empty());

    let (batch, mut rows) = collect(store.create_users(dir, vec![user("cy"), user("di")])).await;
    rows.sort_by_key(|r| r.revision);
    let ids: Vec<_> = batch
        .into_iter()
        .map(|u| u.expect("created").id.0)
        .collect();
    assert_eq!(rows, logged(&*store, dir, before).await);
    let mut created: Vec<_> = rows.iter().map(|r| r.resource_id).collect();
    created.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(created, expected);
}
