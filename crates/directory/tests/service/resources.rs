//! Users, groups and memberships through real gRPC on a real PostgreSQL,
//! including the error codes and SCIM metadata the gateway relies on.

use roster_directory::error::{SCIM_STATUS_KEY, SCIM_TYPE_KEY};
use roster_proto::directory::*;
use roster_testkit::app::*;
use serde_json::json;
use tonic::Code;

fn meta(status: &tonic::Status, key: &str) -> Option<String> {
    status
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
async fn user_crud_round_trips_normalized_fields() {
    let mut env = Env::new("res_user_crud").await;
    let d = env.directory("users").await;
    let created = env.user(&d, "ada@example.com").await;
    assert_eq!(created.user_name, "ada@example.com");
    assert_eq!(
        (created.given_name.as_str(), created.family_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert!(created.active);
    assert_eq!(created.emails.len(), 1);
    assert!(created.emails[0].primary);
    assert_eq!(created.meta.as_ref().unwrap().version, 1);
    let raw: serde_json::Value = serde_json::from_str(&created.raw).unwrap();
    assert_eq!(raw["userName"], "ada@example.com");

    let got = env.get_user(&d, &created.id).await.unwrap();
    assert_eq!(got.id, created.id);

    let replacement = json!({
        "schemas": [USER_SCHEMA],
        "userName": "ada@example.com",
        "title": "Countess",
        "active": false
    });
    let replace = ReplaceUserRequest {
        directory_id: d.clone(),
        id: created.id.clone(),
        resource: replacement.to_string(),
        if_version: Some(1),
    };
    let replaced = succeeded(env.dir.replace_user(replace.clone()).await)
        .user
        .unwrap();
    assert_eq!(
        (replaced.title.as_str(), replaced.active),
        ("Countess", false)
    );
    assert_eq!(replaced.meta.unwrap().version, 2);

    // The same replacement again names a stale version: FAILED_PRECONDITION (SCIM 412).
    let stale = env.dir.replace_user(replace).await.unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert_eq!(meta(&stale, SCIM_STATUS_KEY).as_deref(), Some("412"));

    let delete = DeleteUserRequest {
        directory_id: d.clone(),
        id: created.id.clone(),
        if_version: None,
    };
    succeeded(env.dir.delete_user(delete).await);
    let gone = env.get_user(&d, &created.id).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(meta(&gone, SCIM_STATUS_KEY).as_deref(), Some("404"));
}

#[tokio::test]
async fn duplicate_user_names_are_already_exists_with_uniqueness() {
    let mut env = Env::new("res_user_dup").await;
    let d = env.directory("dups").await;
    env.user(&d, "dup@example.com").await;
    let status = env
        .create_user(&d, user_json("DUP@example.com"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(meta(&status, SCIM_TYPE_KEY).as_deref(), Some("uniqueness"));
    assert_eq!(meta(&status, SCIM_STATUS_KEY).as_deref(), Some("409"));
}

#[tokio::test]
async fn bad_input_is_a_typed_error_never_internal() {
    let mut env = Env::new("res_bad_input").await;
    let d = env.directory("bad").await;
    let cases = [
        ("{not json", Code::InvalidArgument),
        ("[]", Code::InvalidArgument),
        (
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}"#,
            Code::InvalidArgument,
        ),
    ];
    for (resource, code) in cases {
        let status = env.create_user(&d, resource.into()).await.unwrap_err();
        assert_eq!(status.code(), code, "{resource}: {status:?}");
        assert_eq!(
            meta(&status, SCIM_STATUS_KEY).as_deref(),
            Some("400"),
            "{resource}"
        );
    }
    let bad_filter = ListUsersRequest {
        directory_id: d.clone(),
        options: Some(ListOptions {
            filter: "userName eq".into(),
            ..Default::default()
        }),
    };
    let status = env.dir.list_users(bad_filter).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        meta(&status, SCIM_TYPE_KEY).as_deref(),
        Some("invalidFilter")
    );

    let unknown = env.get_user(&d, "not-a-uuid").await;
    assert_eq!(failure_code(unknown), Code::NotFound);
    let unknown_dir = uuid::Uuid::new_v4().to_string();
    let created = env.create_user(&unknown_dir, user_json("x@y.z")).await;
    assert_eq!(failure_code(created), Code::NotFound);
}

#[tokio::test]
async fn patch_user_applies_scim_operations_atomically() {
    let mut env = Env::new("res_patch_user").await;
    let d = env.directory("patch").await;
    let u = env.user(&d, "grace@example.com").await;
    let patch = patch_op(json!([
        {"op": "replace", "path": "active", "value": false},
        {"op": "add", "path": "title", "value": "Rear Admiral"}
    ]));
    let patched = env.patch_user(&d, &u.id, &patch, Some(1)).await.unwrap();
    assert!(!patched.active);
    assert_eq!(patched.title, "Rear Admiral");
    assert_eq!(patched.user_name, "grace@example.com");

    let bad_path = patch_op(json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]));
    let status = env
        .patch_user(&d, &u.id, &bad_path, None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        meta(&status, SCIM_TYPE_KEY).is_some(),
        "a PATCH error carries its scimType: {status:?}"
    );

    // The rejected PATCH changed nothing.
    let after = env.get_user(&d, &u.id).await.unwrap();
    assert_eq!(after.meta.unwrap().version, 2);
}

#[tokio::test]
async fn attribute_mappings_fill_fields_and_custom_attributes() {
    let mut env = Env::new("res_mappings").await;
    let d = env.directory("mappings").await;
    let enterprise = ENTERPRISE_USER_SCHEMA;
    let cost_center = format!("{enterprise}:costCenter");
    let mappings = [
        (cost_center.as_str(), "custom:cost_center"),
        ("nickName", "display_name"),
    ];
    set_mappings(&mut env.admin, &d, &mappings).await.unwrap();
    let resource = json!({
        "schemas": [USER_SCHEMA, enterprise],
        "userName": "mapped@example.com",
        "nickName": "Mappy",
        enterprise: {"costCenter": "CC-42"}
    });
    let u = env.create_user(&d, resource.to_string()).await.unwrap();
    assert_eq!(
        u.custom_attributes.get("cost_center").map(String::as_str),
        Some("CC-42")
    );
    assert_eq!(u.display_name, "Mappy");
}

#[tokio::test]
async fn group_crud_with_members_and_patch() {
    let mut env = Env::new("res_groups").await;
    let d = env.directory("groups").await;
    let a = env.user(&d, "a@example.com").await;
    let b = env.user(&d, "b@example.com").await;
    let g = env.group(&d, "Eng", &[&a.id]).await;
    assert_eq!((g.display_name.as_str(), g.member_count), ("Eng", 1));

    let got = env.get_group(&d, &g.id, false).await.unwrap();
    assert_eq!(got.members.len(), 1);
    assert_eq!(
        (got.members[0].id.as_str(), got.members[0].r#type),
        (a.id.as_str(), MemberType::User as i32)
    );

    // Okta-style PATCH: rename plus add a member without a type.
    let patch = patch_op(json!([
        {"op": "replace", "value": {"displayName": "Engineering"}},
        {"op": "add", "path": "members", "value": [{"value": b.id}]},
        {"op": "remove", "path": format!("members[value eq \"{}\"]", a.id)}
    ]));
    let req = PatchGroupRequest {
        directory_id: d.clone(),
        id: g.id.clone(),
        patch: patch.to_string(),
        if_version: None,
        exclude_members: false,
    };
    let patched = succeeded(env.dir.patch_group(req).await).group.unwrap();
    assert_eq!(patched.display_name, "Engineering");
    let ids: Vec<_> = patched.members.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, vec![b.id.clone()]);

    // Duplicate display names are a uniqueness conflict.
    let req = CreateGroupRequest {
        directory_id: d.clone(),
        resource: group_json("engineering", &[]),
    };
    let dup = env.dir.create_group(req).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert_eq!(meta(&dup, SCIM_TYPE_KEY).as_deref(), Some("uniqueness"));

    // PUT without `members` keeps them; PUT with `members` replaces them.
    let renamed = json!({"schemas": [GROUP_SCHEMA], "displayName": "Eng2"}).to_string();
    let with_members = group_json("Eng2", &[&a.id, &b.id]);
    for (resource, member_count) in [(renamed, 1), (with_members, 2)] {
        let req = ReplaceGroupRequest {
            directory_id: d.clone(),
            id: g.id.clone(),
            resource,
            if_version: None,
        };
        let replaced = env.dir.replace_group(req).await.unwrap().into_inner();
        assert_eq!(replaced.group.unwrap().member_count, member_count);
    }

    let delete = DeleteGroupRequest {
        directory_id: d.clone(),
        id: g.id.clone(),
        if_version: None,
    };
    succeeded(env.dir.delete_group(delete).await);
    let gone = env.get_group(&d, &g.id, true).await;
    assert_eq!(failure_code(gone), Code::NotFound);
}

#[tokio::test]
async fn nested_groups_without_a_type_are_resolved() {
    let mut env = Env::new("res_nested").await;
    let d = env.directory("nested").await;
    let child = env.group(&d, "child", &[]).await;
    let parent = env.group(&d, "parent", &[&child.id]).await;
    let members = env
        .group_members(&d, &parent.id, 0, String::new())
        .await
        .members;
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].id.as_str(), members[0].r#type),
        (child.id.as_str(), MemberType::Group as i32)
    );

    let unknown = uuid::Uuid::new_v4().to_string();
    let req = CreateGroupRequest {
        directory_id: d.clone(),
        resource: group_json("ghosts", &[&unknown]),
    };
    let status = env.dir.create_group(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn member_rpcs_are_idempotent_and_paginate() {
    let mut env = Env::new("res_members").await;
    let d = env.directory("members").await;
    let users = env.users(&d, "m", 5).await;
    let g = env.group(&d, "team", &[]).await;
    let refs: Vec<MemberRef> = users
        .iter()
        .map(|u| MemberRef {
            id: u.id.clone(),
            r#type: MemberType::User as i32,
        })
        .collect();
    assert_eq!(env.add_members(&d, &g.id, refs.clone()).await, 5);
    assert_eq!(
        env.add_members(&d, &g.id, refs).await,
        0,
        "re-adding present members is a no-op"
    );

    // Untyped members are resolved too.
    let untyped = vec![MemberRef {
        id: users[0].id.clone(),
        r#type: MemberType::Unspecified as i32,
    }];
    assert_eq!(env.add_members(&d, &g.id, untyped).await, 0);

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = env.group_members(&d, &g.id, 2, token).await;
        assert!(page.members.len() <= 2);
        seen.extend(page.members.into_iter().map(|m| m.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<_> = users.iter().map(|u| u.id.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected, "every member once, ordered by id");

    let remove = |ids: Vec<String>| RemoveGroupMembersRequest {
        directory_id: d.clone(),
        group_id: g.id.clone(),
        member_ids: ids,
    };
    let first = users[0].id.clone();
    let both = vec![first.clone(), "not-a-uuid".into()];
    let removed = env.dir.remove_group_members(remove(both)).await;
    assert_eq!(succeeded(removed).removed, 1);
    let again = env.dir.remove_group_members(remove(vec![first])).await;
    assert_eq!(
        succeeded(again).removed,
        0,
        "removing an absent member is a no-op"
    );
}

#[tokio::test]
async fn list_users_filters_sorts_and_pages() {
    let mut env = Env::new("res_list").await;
    let d = env.directory("list").await;
    for name in ["carol", "alice", "bob", "dave"] {
        env.user(&d, &format!("{name}@example.com")).await;
    }
    let list = |options: ListOptions| ListUsersRequest {
        directory_id: d.clone(),
        options: Some(options),
    };
    let filtered = env
        .dir
        .list_users(list(ListOptions {
            filter: r#"userName sw "b" or userName sw "d""#.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.total_results, 2);

    let sorted = env
        .dir
        .list_users(list(ListOptions {
            sort_by: "userName".into(),
            sort_order: SortOrder::Descending as i32,
            count: 2,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = sorted.users.iter().map(|u| u.user_name.clone()).collect();
    assert_eq!(names, vec!["dave@example.com", "carol@example.com"]);
    assert_eq!(sorted.total_results, 4);
    assert!(sorted.revision > 0);

    // Keyset pages in creation order cover every user exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = env
            .dir
            .list_users(list(ListOptions {
                count: 3,
                page_token: token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.users.into_iter().map(|u| u.user_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        vec![
            "carol@example.com",
            "alice@example.com",
            "bob@example.com",
            "dave@example.com"
        ]
    );
}

#[tokio::test]
async fn concurrent_member_changes_lose_nothing() {
    let mut env = Env::new("res_concurrent_members").await;
    let d = env.directory("concurrent").await;
    let users: Vec<String> = env
        .users(&d, "c", 20)
        .await
        .into_iter()
        .map(|u| u.id)
        .collect();
    let g = env.group(&d, "crowd", &[]).await;

    // Half through AddGroupMembers, half through SCIM PATCH, all at once.
    let adds = users.iter().enumerate().map(|(i, id)| {
        let mut client = env.dir.clone();
        let (d, g, id) = (d.clone(), g.id.clone(), id.clone());
        tokio::spawn(async move {
            if i % 2 == 0 {
                let members = vec![MemberRef {
                    id,
                    r#type: MemberType::User as i32,
                }];
                client
                    .add_group_members(AddGroupMembersRequest {
                        directory_id: d,
                        group_id: g,
                        members,
                    })
                    .await
                    .map(|_| ())
            } else {
                let patch =
                    patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
                let req = PatchGroupRequest {
                    directory_id: d,
                    id: g,
                    patch: patch.to_string(),
                    if_version: None,
                    exclude_members: true,
                };
                client.patch_group(req).await.map(|_| ())
            }
        })
    });
    for result in futures::future::join_all(adds).await {
        result.unwrap().unwrap();
    }
    let full = env.get_group(&d, &g.id, false).await.unwrap();
    assert_eq!(full.member_count, 20);
    assert_eq!(full.members.len(), 20);

    let removes = users[..10].iter().map(|id| {
        let mut client = env.dir.clone();
        let req = RemoveGroupMembersRequest {
            directory_id: d.clone(),
            group_id: g.id.clone(),
            member_ids: vec![id.clone()],
        };
        tokio::spawn(async move {
            client
                .remove_group_members(req)
                .await
                .map(|r| r.into_inner().removed)
        })
    });
    let removed: i64 = futures::future::join_all(removes)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .sum();
    assert_eq!(removed, 10);
    let after = env.get_group(&d, &g.id, false).await.unwrap();
    assert_eq!(after.member_count, 10);
    let mut left: Vec<_> = after.members.into_iter().map(|m| m.id).collect();
    left.sort();
    let mut expected = users[10..].to_vec();
    expected.sort();
    assert_eq!(left, expected);
}

/// Directories are cached per process: a mapping changed through replica A
/// must reach replica B (whose cache already holds the directory) through the
/// `directory.updated` event, well before the cache's TTL.
#[tokio::test]
async fn a_directory_change_on_one_replica_reaches_the_other_replicas_cache() {
    let (store_a, url) = pg_store("res_dir_cache").await;
    let store_b = replica_store(&url).await;
    let replica_a = Server::start(store_a, test_config()).await;
    let replica_b = Server::start(store_b, test_config()).await;
    let mut admin_a = replica_a.admin().await;
    let mut dir_b = replica_b.directory().await;
    let d = create_directory_named(&mut admin_a, "cached").await;
    // Warm B's cache with the mapping-less directory.
    let before = create_user(&mut dir_b, &d, "before@example.com").await;
    assert_eq!(before.display_name, "");

    set_mappings(&mut admin_a, &d, &[("nickName", "display_name")])
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let mut attempt = 0;
    let mapped = roster_testkit::eventually(
        "replica B applies the new mapping",
        std::time::Duration::from_secs(5),
        || {
            attempt += 1;
            let mut dir_b = dir_b.clone();
            let d = d.clone();
            async move {
                let resource = json!({
                    "schemas": [USER_SCHEMA],
                    "userName": format!("after{attempt}@example.com"),
                    "nickName": "Mapped",
                });
                let u = dir_b
                    .create_user(CreateUserRequest {
                        directory_id: d,
                        resource: resource.to_string(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .user?;
                (u.display_name == "Mapped").then_some(u)
            }
        },
    )
    .await;
    assert_eq!(mapped.display_name, "Mapped");
    // The cache's TTL is 10 s: arriving sooner proves the event invalidated it.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    replica_a.shutdown().await;
    replica_b.shutdown().await;
}

/// Concurrent creations in one directory are written in batches (group
/// commit): each request still gets its own answer — a taken userName,
/// taken before or by a request of the same batch, fails only that request
/// with ALREADY_EXISTS — and each user created has its one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creations_each_get_their_own_answer() {
    let mut env = Env::new("res_concurrent_creates").await;
    let d = env.directory("creates").await;
    env.user(&d, "taken@example.com").await;
    // 48 requests: 40 distinct names, 4 of them twice, and 4 taken names.
    let names: Vec<String> = (0..40)
        .map(|i| format!("n{i}@example.com"))
        .chain((0..4).map(|i| format!("N{i}@EXAMPLE.COM")))
        .chain((0..4).map(|_| "Taken@example.com".to_owned()))
        .collect();
    let creates = names.iter().map(|name| {
        let (mut client, d) = (env.dir.clone(), d.clone());
        let resource = user_json(name);
        tokio::spawn(async move {
            client
                .create_user(CreateUserRequest {
                    directory_id: d,
                    resource,
                })
                .await
                .map(|r| r.into_inner().user.unwrap().user_name)
        })
    });
    let results: Vec<_> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let created: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let refused: Vec<Code> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|s| s.code()))
        .collect();
    assert_eq!(created.len(), 40, "each distinct free name once");
    assert_eq!(refused, vec![Code::AlreadyExists; 8]);
    let users = env.list_users(&d, None).await.users;
    assert_eq!(users.len(), 41);
    let db = sqlx::PgPool::connect(&env.url).await.unwrap();
    let user_created: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM changes WHERE directory_id = $1::uuid AND kind = 'user.created'",
    )
    .bind(&d)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        user_created, 41,
        "one event per user, none for a refused request"
    );
}
