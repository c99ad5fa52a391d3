//! Keyed lookups from the gateway to a directory service in another process
//! (`roster_gateway::lookups`): those that arrive together travel in one
//! `BatchListUsers` call over real HTTP/2 to the real directory service on
//! PostgreSQL, and each comes back with its own answer or its own error.

use std::net::SocketAddr;

use futures::future::join_all;
use roster_directory::{Directory, DirectoryConfig};
use roster_gateway::lookups::LookupCounts;
use roster_gateway::pool::Pool;
use roster_gateway::remote::RemoteDirectory;
use roster_gateway::upstream::Upstream;
use roster_proto::directory as pd;
use roster_proto::directory::directory_service_server::DirectoryService;
use roster_store::{NewDirectory, Store, UserFields, UserWrite};
use roster_testkit::app::{Stack, USER_SCHEMA, sqlite_store};

fn remote(addr: SocketAddr) -> RemoteDirectory {
    RemoteDirectory::new(Upstream::Pool(Pool::new(crate::pool::config(addr))))
}

fn lookup(
    directory_id: &str,
    filter: &str,
    request_id: &str,
) -> tonic::Request<pd::ListUsersRequest> {
    let mut request = tonic::Request::new(pd::ListUsersRequest {
        directory_id: directory_id.into(),
        options: Some(pd::ListOptions {
            filter: filter.into(),
            count: 1,
            omit_cursor: true,
            ..Default::default()
        }),
    });
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    request
}

fn user_names(
    reply: &Result<tonic::Response<pd::ListUsersResponse>, tonic::Status>,
) -> Vec<String> {
    let response = reply.as_ref().expect("the lookup succeeds");
    response
        .get_ref()
        .users
        .iter()
        .map(|u| u.user_name.clone())
        .collect()
}

/// `#[tokio::test]` runs on one thread: every lookup below is queued before
/// the first lane runs, so the lane takes them all in one call.
#[tokio::test]
async fn lookups_that_arrive_together_share_one_call_and_each_gets_its_answer() {
    let (stack, scim) = Stack::with_directory("gw_lookups").await;
    let names: Vec<String> = (0..6).map(|i| format!("batched{i}@example.com")).collect();
    for name in &names {
        scim.create_user(name).await;
    }
    let directory = remote(stack.server.addr);
    let dir = scim.directory_id.as_str();

    let mut requests: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| lookup(dir, &format!("userName eq \"{name}\""), &format!("r{i}")))
        .collect();
    requests.push(lookup(dir, r#"userName eq "nobody@example.com""#, "r-none"));
    requests.push(lookup(
        "not-a-directory",
        r#"userName eq "batched0@example.com""#,
        "r-missing-directory",
    ));
    requests.push(lookup(
        dir,
        r#"userName eq "batched1@example.com""#,
        "r-again",
    ));
    let n = requests.len() as u64;
    let replies = join_all(requests.into_iter().map(|r| directory.list_users(r))).await;

    assert_eq!(
        directory.lookup_counts(),
        LookupCounts {
            batches: 1,
            batched: n
        },
        "one BatchListUsers call carried every lookup"
    );
    for (name, reply) in names.iter().zip(&replies) {
        assert_eq!(user_names(reply), vec![name.clone()]);
    }
    let [none, missing, again] = &replies[names.len()..] else {
        panic!("three more replies");
    };
    assert!(user_names(none).is_empty());
    let status = missing
        .as_ref()
        .expect_err("a directory that cannot exist is an error");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("roster-scim-status")
            .map(|v| v.to_str().unwrap()),
        Some("404"),
        "the SCIM error travels with the status: {status:?}"
    );
    assert_eq!(user_names(again), vec!["batched1@example.com".to_string()]);
}

/// A lookup alone, and a search that is not a keyed lookup, go as plain
/// `ListUsers` calls: nothing waits for company.
#[tokio::test]
async fn a_lone_lookup_and_other_searches_go_alone() {
    let (stack, scim) = Stack::with_directory("gw_lookups_alone").await;
    scim.create_user("alone@example.com").await;
    let directory = remote(stack.server.addr);
    let dir = scim.directory_id.as_str();

    let one = directory
        .list_users(lookup(dir, r#"userName eq "alone@example.com""#, "r1"))
        .await;
    assert_eq!(user_names(&one), vec!["alone@example.com".to_string()]);
    let searches = join_all(
        ["co", "sw"]
            .map(|op| directory.list_users(lookup(dir, &format!("userName {op} \"alone\""), op))),
    )
    .await;
    for reply in &searches {
        assert_eq!(user_names(reply), vec!["alone@example.com".to_string()]);
    }
    assert_eq!(
        directory.lookup_counts(),
        LookupCounts {
            batches: 0,
            batched: 0
        }
    );
}

/// Users sharing an `externalId` and large resources: nine lookups' answers
/// together exceed what one batch answer may hold (16 MiB), though each
/// alone fits in a message: the batch is sent again call by call, and every
/// lookup gets its ten users.
#[tokio::test]
async fn a_batch_whose_answer_is_too_large_is_answered_call_by_call() {
    let (stack, scim) = Stack::with_directory("gw_lookups_large").await;
    let dir_id = roster_store::DirectoryId(scim.directory_id.parse().unwrap());
    let padding = "x".repeat(200 * 1024);
    let writes: Vec<UserWrite> = (0..10)
        .map(|i| {
            let name = format!("large{i}@example.com");
            UserWrite {
                fields: UserFields {
                    user_name: name.clone(),
                    external_id: Some("shared".into()),
                    active: true,
                    ..Default::default()
                },
                raw: serde_json::json!({
                    "schemas": [USER_SCHEMA],
                    "userName": name,
                    "externalId": "shared",
                    "nickName": padding,
                }),
            }
        })
        .collect();
    stack.store.import_users(dir_id, &writes).await.unwrap();
    let directory = remote(stack.server.addr);
    let dir = scim.directory_id.as_str();

    let replies = join_all((0..9).map(|i| {
        let mut request = lookup(dir, r#"externalId eq "shared""#, &format!("r{i}"));
        request.get_mut().options.as_mut().unwrap().count = 100;
        directory.list_users(request)
    }))
    .await;
    for reply in &replies {
        assert_eq!(
            user_names(reply).len(),
            10,
            "each lookup finds the ten users"
        );
    }
    assert_eq!(
        directory.lookup_counts(),
        LookupCounts {
            batches: 1,
            batched: 9
        },
        "the batch was tried once"
    );
}

/// A directory service without `BatchListUsers` (an older version during a
/// rolling upgrade: the real service's routes, with that method answered
/// UNIMPLEMENTED as a router that never heard of it answers) makes the
/// batch's lookups go alone, each answered; the lookups after it go alone
/// without trying a batch again.
#[tokio::test]
async fn an_older_directory_service_without_batches_still_answers_every_lookup() {
    let store = sqlite_store("gw_lookups_old").await;
    let dir = store
        .create_directory(NewDirectory {
            name: "Old".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    for i in 0..3 {
        let name = format!("old{i}@example.com");
        let user = UserWrite {
            fields: UserFields {
                user_name: name.clone(),
                active: true,
                ..Default::default()
            },
            raw: serde_json::json!({ "schemas": [USER_SCHEMA], "userName": name }),
        };
        store.create_user(dir, user).await.unwrap();
    }
    let server = Directory::new(store, DirectoryConfig::default()).unwrap();
    let addr = serve_without_batches(server.direct_service()).await;
    let older = remote(addr);
    let dir = dir.to_string();

    for round in ["first", "second"] {
        let replies = join_all((0..3).map(|i| {
            let filter = format!("userName eq \"old{i}@example.com\"");
            older.list_users(lookup(&dir, &filter, "r"))
        }))
        .await;
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(user_names(reply), vec![format!("old{i}@example.com")]);
        }
        // One batch was tried in the first round, none again in the second.
        assert_eq!(
            older.lookup_counts(),
            LookupCounts {
                batches: 1,
                batched: 3
            },
            "after the {round} round"
        );
    }
}

/// Serves `service` over HTTP/2 on a loopback port, answering
/// `BatchListUsers` UNIMPLEMENTED as a server built before it would.
async fn serve_without_batches(service: roster_directory::DirectService) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            let call =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    async move {
                        if request.uri().path().ends_with("/BatchListUsers") {
                            let status = tonic::Status::unimplemented("");
                            return Ok(status.into_http::<tonic::body::Body>());
                        }
                        service.oneshot(request.map(tonic::body::Body::new)).await
                    }
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), call),
            );
        }
    });
    addr
}
