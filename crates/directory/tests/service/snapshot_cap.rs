//! Initial-state watches that nobody reads hold their snapshots, but only up
//! to the store's snapshot cap, and never at the expense of writes.

use std::time::Duration;

use futures::StreamExt;
use roster_directory::DirectoryConfig;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::{AddGroupMembersRequest, DeleteUserRequest, MemberRef, MemberType};
use roster_store::{DEFAULT_SNAPSHOT_CONNECTIONS, DirectoryId, UserFields, UserWrite};
use roster_testkit::app::*;
use roster_testkit::on_both_backends;
use serde_json::json;

/// Watchers opened with `initial_state` and then never read.
const STALLED_WATCHERS: usize = 50;

/// Users in the watched directory: more snapshot items than the store
/// buffers ahead of a watcher (1,024 on PostgreSQL) plus what the watch
/// buffer and a 64 KiB HTTP/2 window take, so a snapshot nobody reads
/// stays open.
const USERS: usize = 1_300;

on_both_backends!(stalled_initial_state_watchers_do_not_block_writes);
async fn stalled_initial_state_watchers_do_not_block_writes(backend: Backend) {
    let config = DirectoryConfig {
        // The stalled watchers must stay open for the whole test.
        slow_consumer_timeout: Duration::from_secs(600),
        ..test_config()
    };
    let mut env = Env::on_with_config(backend, "snapcap", config).await;
    let d = env.directory("snapcap").await;
    seed_users(&env, &d).await;

    let mut stalled = Vec::new();
    for _ in 0..STALLED_WATCHERS {
        let mut client = DirectoryServiceClient::new(env.server.narrow_channel().await);
        let stream = watch(&mut client, &d, &[], Start::InitialState(())).await;
        stalled.push((client, stream));
    }
    // Each watcher either streams its snapshot (then stalls: nobody reads
    // beyond this first message) or is refused with a retry hint.
    let mut refused = Vec::new();
    for (_, stream) in &mut stalled {
        let first = tokio::time::timeout(PROMPTLY, stream.message())
            .await
            .expect("each watcher answers promptly");
        match first {
            Ok(Some(_)) => {}
            Ok(None) => panic!("an initial-state stream ended"),
            Err(status) => refused.push(status),
        }
    }
    assert_eq!(
        STALLED_WATCHERS - refused.len(),
        DEFAULT_SNAPSHOT_CONNECTIONS as usize,
        "as many snapshots as the cap are streaming"
    );
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        let retry_after = status
            .metadata()
            .get("retry-after")
            .map(|v| v.to_str().unwrap());
        assert_eq!(retry_after, Some("2"), "{status:?}");
        assert!(status.metadata().contains_key("grpc-retry-pushback-ms"));
    }

    // Writes of every shape succeed while the snapshots stay open.
    let alice = env.user(&d, "alice@example.com").await;
    let group = json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": "Stalled",
        "members": [{"value": alice.id, "type": "User"}]
    });
    let g = create_group(&mut env.dir, &d, group.to_string()).await;
    let bob = env.user(&d, "bob@example.com").await;
    env.dir
        .add_group_members(AddGroupMembersRequest {
            directory_id: d.clone(),
            group_id: g.id.clone(),
            members: vec![MemberRef {
                id: bob.id.clone(),
                r#type: MemberType::User as i32,
            }],
        })
        .await
        .expect("AddGroupMembers");
    env.dir
        .delete_user(DeleteUserRequest {
            directory_id: d.clone(),
            id: alice.id.clone(),
            ..Default::default()
        })
        .await
        .expect("DeleteUser");

    // Stalled watchers that go away free their slots.
    drop(stalled);
    let mut again = roster_testkit::eventually("a snapshot slot to free up", PROMPTLY, || {
        let mut client = env.dir.clone();
        let d = d.clone();
        async move {
            let mut stream = watch(&mut client, &d, &[], Start::InitialState(())).await;
            stream.message().await.ok().flatten().map(|_| stream)
        }
    })
    .await;
    assert!(again.message().await.unwrap().is_some());
}

/// Seeds [`USERS`] users through the store (the gRPC path is not under test).
async fn seed_users(env: &Env, directory_id: &str) {
    let dir = DirectoryId(directory_id.parse().unwrap());
    futures::stream::iter(0..USERS)
        .map(|i| {
            let store = env.store.clone();
            async move {
                let name = format!("seed{i}@example.com");
                let write = UserWrite {
                    fields: UserFields {
                        user_name: name.clone(),
                        active: true,
                        ..Default::default()
                    },
                    raw: json!({
                        "schemas": [USER_SCHEMA],
                        "userName": name,
                        "active": true,
                    }),
                };
                store.create_user(dir, write).await.expect("seeding a user");
            }
        })
        .buffer_unordered(4)
        .collect::<()>()
        .await;
}
