//! The audit trail's events (docs/portal.md): each SCIM request is recorded
//! with the change-log events its writes committed — carried from the
//! directory service to the gateway with each write's reply — and a failed
//! request with none.

use std::time::Duration;

use roster_proto::admin::{ActivityEvents, DeprovisionPolicy, ListActivityRequest};
use roster_store::{ChangeFilter, ChangeKind, DirectoryId, Store};
use roster_testkit::app::{Stack, group, user};
use serde_json::json;

/// The directory's change log as the runs the audit trail records.
async fn log_of(stack: &Stack, dir: DirectoryId, kind: ChangeKind) -> Vec<i64> {
    let head = stack.store.advance_stable_head(0).await.expect("head");
    let filter = ChangeFilter {
        directory_id: Some(dir),
        kinds: vec![kind],
    };
    let changes = stack
        .store
        .read_changes(&filter, 0, head, 1_000)
        .await
        .expect("log");
    changes.iter().map(|c| c.revision).collect()
}

fn run(kind: &str, revision: i64, count: i64) -> ActivityEvents {
    ActivityEvents {
        kind: kind.into(),
        revision,
        count,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_request_is_recorded_with_the_events_it_produced() {
    let stack = Stack::start("gw_activity_events").await;
    let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let dir: DirectoryId = scim.directory_id.parse().expect("directory id");

    let ann = scim.create_user("ann@example.com").await;
    let bob = scim.create_user("bob@example.com").await;
    let eng = scim.post("/Groups", &group("Engineering", &[])).await;
    assert_eq!(eng.status, 201, "{}", eng.text);
    let eng = eng.id();
    let added = scim
        .patch_ops(
            &format!("/Groups/{eng}"),
            json!([{"op": "add", "path": "members", "value": [{"value": ann}, {"value": bob}]}]),
        )
        .await;
    assert!(added.status < 300, "{}", added.text);
    let taken = scim.post("/Users", &user("ann@example.com")).await;
    assert_eq!(taken.status, 409, "{}", taken.text);

    let admin = stack.admin();
    let entries = roster_testkit::eventually("five entries", Duration::from_secs(20), || {
        let mut admin = admin.clone();
        let directory_id = scim.directory_id.clone();
        async move {
            let listed = admin
                .list_activity(ListActivityRequest {
                    directory_id,
                    ..Default::default()
                })
                .await
                .expect("list activity")
                .into_inner();
            (listed.entries.len() >= 5).then_some(listed.entries)
        }
    })
    .await;
    // Newest first: the conflict, the PATCH, the three creations.
    let statuses: Vec<i32> = entries.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [409, 204, 201, 201, 201], "{entries:#?}");

    let users = log_of(&stack, dir, ChangeKind::UserCreated).await;
    let groups = log_of(&stack, dir, ChangeKind::GroupCreated).await;
    let members = log_of(&stack, dir, ChangeKind::MemberAdded).await;
    assert_eq!((users.len(), groups.len(), members.len()), (2, 1, 2));

    let conflict = &entries[0];
    assert!(conflict.events.is_empty(), "{conflict:?}");
    assert_eq!(conflict.revision, 0);

    let patch = &entries[1];
    assert_eq!(
        patch.events,
        [run("member.added", members[0], 2)],
        "two member adds, one run"
    );
    assert_eq!(members[1], members[0] + 1);
    assert_eq!(patch.revision, members[1]);

    assert_eq!(entries[2].events, [run("group.created", groups[0], 1)]);
    assert_eq!(entries[2].revision, groups[0]);
    assert_eq!(entries[3].events, [run("user.created", users[1], 1)]);
    assert_eq!(entries[3].resource_id, bob);
    assert_eq!(entries[4].events, [run("user.created", users[0], 1)]);
    assert_eq!(entries[4].revision, users[0]);
    assert!(entries.iter().all(|e| e.events_omitted == 0));
}
