//! A group with more members than fit in one gRPC message (tonic decodes at
//! most 4 MiB per message), read and written over SCIM through the real
//! gateway and directory service on PostgreSQL.

use roster_testkit::app::{GROUP_SCHEMA, USER_SCHEMA};
use std::collections::BTreeSet;
use std::time::Duration;

use roster_store::{
    DirectoryId, GroupWrite, MemberKind, MemberRef, Store, UserFields, UserId, UserWrite,
};
use roster_testkit::app::{Reply, Scim, Stack};
use serde_json::{Value, json};

/// Members of the big group: about 10 MiB of members in protobuf.
const MEMBERS: usize = 150_000;
/// Users per store import statement.
const IMPORT_BATCH: usize = 25_000;

fn user_write(i: usize) -> UserWrite {
    let name = format!("member{i:06}@example.com");
    UserWrite {
        fields: UserFields {
            user_name: name.clone(),
            display_name: Some(format!("Member Number {i:06}")),
            active: true,
            ..Default::default()
        },
        raw: json!({
            "schemas": [USER_SCHEMA],
            "userName": name,
            "displayName": format!("Member Number {i:06}"),
            "active": true,
        }),
    }
}

/// Seeds the users and a group holding all of them through the store (a
/// few statements instead of 150,000 HTTP calls); returns the group id and
/// the member ids.
async fn seed(stack: &Stack, scim: &Scim) -> (String, BTreeSet<String>) {
    let dir = DirectoryId(scim.directory_id.parse().unwrap());
    let writes: Vec<UserWrite> = (0..MEMBERS).map(user_write).collect();
    let imports = writes
        .chunks(IMPORT_BATCH)
        .map(|batch| stack.store.import_users(dir, batch));
    let ids: Vec<UserId> = futures::future::try_join_all(imports)
        .await
        .expect("import users")
        .into_iter()
        .flatten()
        .collect();
    let members: Vec<MemberRef> = ids
        .iter()
        .map(|id| MemberRef {
            id: id.0,
            kind: MemberKind::User,
        })
        .collect();
    let group = stack
        .store
        .create_group(
            dir,
            GroupWrite {
                display_name: "Everyone".into(),
                external_id: None,
                raw: json!({
                    "schemas": [GROUP_SCHEMA],
                    "displayName": "Everyone",
                }),
                members: Some(members),
            },
        )
        .await
        .expect("create the big group");
    let ids = ids.iter().map(|id| id.to_string()).collect();
    (group.id.to_string(), ids)
}

fn member_ids(group: &Value) -> BTreeSet<String> {
    group["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A group answer that carries every member once, with its ETag matching
/// the version in the body.
fn assert_all_members(resp: &Reply, expected: &BTreeSet<String>, what: &str) {
    assert_eq!(resp.status, 200, "{what}: {}", resp.body);
    let members = resp.body["members"].as_array().expect("members");
    assert_eq!(members.len(), MEMBERS, "{what}: member count");
    assert_eq!(&member_ids(&resp.body), expected, "{what}: member ids");
    assert_eq!(members[0]["type"], "User", "{what}");
    assert!(
        members[0]["display"]
            .as_str()
            .unwrap()
            .starts_with("Member Number"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_150_000_members_is_read_and_written_over_scim() {
    let (stack, scim) = Stack::with_directory("gw_large_group").await;
    // Reading 30 MB of JSON takes a while in debug builds on a busy machine.
    let scim = scim.with_http(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap(),
    );
    let (id, expected) = seed(&stack, &scim).await;
    let path = format!("/Groups/{id}");

    // GET streams every member; the ETag is the version the members belong to.
    let got = scim.get(&path).await;
    assert_all_members(&got, &expected, "GET");
    assert_eq!(got.header("etag"), got.body["meta"]["version"].as_str());
    assert_eq!(got.body["displayName"], "Everyone");

    // excludedAttributes=members answers without any member.
    let bare = scim
        .get(&format!("{path}?excludedAttributes=members"))
        .await;
    assert_eq!(bare.status, 200, "{}", bare.body);
    assert!(bare.body.get("members").is_none());
    assert_eq!(bare.body["id"], id);

    // A list page including the group carries all its members, next to a
    // small group whose members come inline.
    let small = scim
        .post(
            "/Groups",
            &json!({
                "schemas": [GROUP_SCHEMA],
                "displayName": "Few",
                "members": [{"value": expected.iter().next().unwrap()}],
            }),
        )
        .await;
    assert_eq!(small.status, 201, "{}", small.body);
    assert_eq!(member_ids(&small.body).len(), 1);
    let listed = scim.get("/Groups?sortBy=displayName").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["totalResults"], 2);
    assert_eq!(listed.body["itemsPerPage"], 2);
    let resources = listed.resources();
    assert_eq!(resources[0]["displayName"], "Everyone");
    assert_eq!(member_ids(&resources[0]).len(), MEMBERS);
    assert_eq!(member_ids(&resources[0]), expected);
    assert_eq!(member_ids(&resources[1]).len(), 1);
    let filtered = scim
        .get("/Groups?filter=displayName%20eq%20%22Everyone%22&excludedAttributes=members")
        .await;
    assert_eq!(filtered.status, 200, "{}", filtered.body);
    assert!(filtered.resources()[0].get("members").is_none());

    // PUT without members keeps them and answers the renamed group with all
    // of them (the read-back of a committed write).
    let put = scim
        .put(
            &path,
            &json!({
                "schemas": [GROUP_SCHEMA],
                "displayName": "All Staff",
            }),
        )
        .await;
    assert_all_members(&put, &expected, "PUT");
    assert_eq!(put.body["displayName"], "All Staff");
    assert_eq!(put.header("etag"), put.body["meta"]["version"].as_str());

    // PATCH asking for the resource back answers it with all its members,
    // the projection applying to each member.
    let patched = scim
        .patch_ok(
            &format!("{path}?attributes=displayName,members.value"),
            json!([{"op": "replace", "path": "displayName", "value": "Staff"}]),
        )
        .await;
    assert_eq!(member_ids(&patched), expected, "PATCH");
    assert_eq!(
        patched["members"][0],
        json!({"value": patched["members"][0]["value"]})
    );
    assert_eq!(patched["displayName"], "Staff");
    assert!(patched.get("externalId").is_none());

    // POST of a group with more members than a reply carries inline (as
    // many as a 1 MiB request body holds) answers them all.
    let many: Vec<&String> = expected.iter().take(15_000).collect();
    let posted = scim
        .post(
            "/Groups",
            &json!({
                "schemas": [GROUP_SCHEMA],
                "displayName": "Many",
                "members": many.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
            }),
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    let posted_ids = member_ids(&posted.body);
    assert_eq!(posted_ids.len(), many.len());
    assert!(many.iter().all(|id| posted_ids.contains(*id)));
}
