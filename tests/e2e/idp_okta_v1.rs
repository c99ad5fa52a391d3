//! Okta over SCIM 1.1: the provisioning lifecycle as Okta's SCIM 1.1
//! client sends it, against `/scim/v1/{directory_id}`, checked through 1.1
//! reads and `WatchChanges`.
//!
//! Source of every request shape: Okta, "SCIM 1.1 Protocol Reference"
//! (developer.okta.com/docs/api/openapi/okta-scim/guides/scim-11;
//! okta/okta-developer-docs, docs/reference/scim/scim-11/index.md), cited
//! below as [OKTA11]. See docs/scim.md, "SCIM 1.1".

use reqwest::Method;
use roster_testkit::app;
use roster_testkit::app::{Of, Reply, Scim};
use serde_json::{Value, json};

const CORE_1: &str = "urn:scim:schemas:core:1.0";

/// [OKTA11] "Create the User": the body Okta posts.
fn okta_user(user_name: &str, okta_id: &str) -> Value {
    json!({
        "schemas": [CORE_1],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Test User",
        "locale": "en_US",
        "externalId": okta_id,
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

fn assert_1_1_list(reply: &Reply, total: i64) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["schemas"], json!([CORE_1]));
    assert_eq!(reply.body["totalResults"], total);
    // [OKTA11] "itemsPerPage, startIndex, and totalResults … as integers".
    assert!(reply.body["itemsPerPage"].is_i64(), "{}", reply.body);
    assert!(reply.body["startIndex"].is_i64(), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_over_scim_1_1_provisions_users_and_pushed_groups() {
    let (served, v2) = app::replay("okta", "delete").await;
    // Okta's 1.1 client: `User-Agent: Okta SCIM Client 1.0.0`, JSON bodies.
    let okta = Scim::new(&v2.base_url, &v2.token);
    let idp = okta
        .with_headers(&[("user-agent", "Okta SCIM Client 1.0.0")])
        .v1();

    // 1. [OKTA11] Test connector: two constant requests.
    assert_1_1_list(&idp.get("/Users?startIndex=1&count=2").await, 0);
    assert_1_1_list(&idp.get("/Groups?startIndex=1&count=100").await, 0);

    // 2. [OKTA11] "Determine if the User already exists", then "Create the User".
    let lookup =
        "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100";
    assert_1_1_list(&idp.get(lookup).await, 0);
    let created = idp
        .post(
            "/Users",
            &okta_user("test.user@okta.local", "00b443dd40SOK2eup0h7"),
        )
        .await
        .expect(201, "create user");
    let user = created.id();
    assert_eq!(created.body["schemas"], json!([CORE_1]));
    assert!(created.body.get("password").is_none(), "{}", created.body);
    assert!(created.body["meta"].get("resourceType").is_none());
    assert_1_1_list(&idp.get(lookup).await, 1);

    // 3. [OKTA11] "respond with an error schema to stop the provisioning job".
    let conflict = idp
        .post("/Users", &okta_user("TEST.USER@okta.local", "00bother"))
        .await
        .expect(409, "duplicate");
    assert_eq!(
        conflict.body["Errors"][0]["code"], "409",
        "{}",
        conflict.text
    );

    // 4. [OKTA11] "Update a specific User (PUT)": GET, then PUT with `id`, `meta` and `groups`.
    let u = format!("/Users/{user}");
    let mut current = idp.get(&u).await.expect(200, "read user").body;
    current["name"]["givenName"] = json!("Test1");
    current["displayName"] = json!("Test1 User");
    current["meta"]["version"] = json!("a7fc04c68e3f5551e29a448031d45425");
    current["groups"] = json!([]);
    let put = idp.put(&u, &current).await.expect(200, "PUT user");
    assert_eq!(put.body["name"]["givenName"], "Test1");

    // 5. [OKTA11] "Create Groups" (Push Groups), with and without a description.
    let group = idp
        .post(
            "/Groups",
            &json!({"schemas": [CORE_1], "displayName": "Test SCIMv1"}),
        )
        .await
        .expect(201, "push group")
        .id();
    let described = json!({
        "schemas": [CORE_1, "urn:okta:custom:group:1.0"],
        "displayName": "Group 10",
        "urn:okta:custom:group:1.0": {"description": "All Users West of the Rockies"}
    });
    let west = idp
        .post("/Groups", &described)
        .await
        .expect(201, "described group");
    assert_eq!(
        west.body["urn:okta:custom:group:1.0"]["description"],
        "All Users West of the Rockies"
    );
    let g = format!("/Groups/{group}");

    // 6. [OKTA11] "Update a specific Group name": the group's own id in the body.
    let rename = json!({"schemas": [CORE_1], "id": group, "displayName": "Test SCIMv11"});
    idp.patch(&g, &rename).await.expect(204, "rename");

    // 7. [OKTA11] "Update specific Group membership": add, then remove with "operation": "delete".
    let add = json!({"schemas": [CORE_1],
                     "members": [{"value": user, "display": "test.user@okta.local"}]});
    idp.patch(&g, &add).await.expect(204, "add member");
    let read = idp.get(&g).await.expect(200, "read group");
    assert_eq!(read.body["displayName"], "Test SCIMv11");
    // `display` is the member's current name, not the one sent (docs/scim.md).
    assert_eq!(
        read.body["members"],
        json!([{"value": user, "type": "User", "display": "Test1 User"}])
    );
    let remove = json!({"schemas": [CORE_1], "members": [
        {"value": user, "display": "test.user@okta.local", "operation": "delete"}
    ]});
    idp.patch(&g, &remove).await.expect(204, "remove member");
    assert!(idp.get(&g).await.body.get("members").is_none());

    // 8. [OKTA11] "Update a specific User (PATCH)": deactivation, the user's id in the body.
    let deactivate = json!({"schemas": [CORE_1], "id": user, "active": false});
    let off = idp.patch(&u, &deactivate).await.expect(200, "deactivate");
    assert_eq!(off.body["active"], false);

    // 9. [OKTA11] "Delete a specific Group".
    let deleted = idp.send(Method::DELETE, &g, None).await;
    assert_eq!(deleted.status, 204);
    let gone = idp.get(&g).await.expect(404, "deleted group");
    assert_eq!(gone.body["Errors"][0]["code"], "404");

    // The same directory over 2.0 sees what Okta wrote over 1.1.
    let over_v2 = v2.get_ok(&u).await;
    assert_eq!(over_v2["active"], false);
    assert_eq!(over_v2["name"]["givenName"], "Test1");

    served
        .watch_sequences(
            &v2,
            Of::User,
            &[(
                user.as_str(),
                &[
                    "user.created",
                    "user.updated",
                    "member.added",
                    "member.removed",
                    "user.deactivated",
                ],
            )],
        )
        .await;
    served
        .watch_sequences(
            &v2,
            Of::Group,
            &[(
                group.as_str(),
                &[
                    "group.created",
                    "group.updated",
                    "member.added",
                    "member.removed",
                    "group.deleted",
                ],
            )],
        )
        .await;
}
