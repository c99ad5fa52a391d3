//! End-to-end: the real gateway over HTTP, the real directory service over
//! loopback gRPC, real PostgreSQL.

mod common;

use common::{Stack, group, member_ids, user};
use roster_proto::admin::DeprovisionPolicy;
use serde_json::json;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

#[tokio::test]
async fn user_provisioning_lifecycle() {
    let stack = Stack::start("gw_users").await;
    let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;

    // The IdP's probe before creating: nothing matches.
    let probe = scim
        .get("/Users?filter=userName%20eq%20%22alice%40example.com%22")
        .await;
    assert_eq!(probe.status, 200, "{:?}", probe.body);
    assert_eq!(probe.body["totalResults"], 0);
    assert_eq!(probe.body["startIndex"], 1);
    assert_eq!(probe.body["itemsPerPage"], 0);
    assert!(probe.resources().is_empty());

    // Create.
    let created = scim.post("/Users", &user("alice@example.com")).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = format!("{}/Users/{id}", scim.base);
    assert_eq!(created.header("location"), Some(location.as_str()));
    assert_eq!(created.body["meta"]["location"], location);
    assert_eq!(created.body["meta"]["resourceType"], "User");
    assert_eq!(
        created.header("etag"),
        created.body["meta"]["version"].as_str()
    );
    assert!(created.header("etag").unwrap().starts_with("W/\""));
    assert_eq!(created.body["userName"], "alice@example.com");
    assert_eq!(created.body["active"], true);
    assert!(
        created.body["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(USER_SCHEMA))
    );

    // A second user with the same userName, in another case, conflicts.
    let conflict = scim.post("/Users", &user("ALICE@Example.com")).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.scim_type(), "uniqueness");
    assert_eq!(conflict.body["status"], "409");

    // The probe now finds her, whatever the case of the value.
    let found = scim
        .get("/Users?filter=userName%20eq%20%22ALICE%40example.com%22")
        .await;
    assert_eq!(found.body["totalResults"], 1, "{:?}", found.body);
    assert_eq!(found.resources()[0]["id"], id.as_str());

    // Read back.
    let fetched = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body["externalId"], "ext-alice@example.com");
    assert_eq!(fetched.header("etag"), created.header("etag"));

    // PUT replaces.
    let mut replacement = user("alice@example.com");
    replacement["displayName"] = json!("Alice Liddell");
    replacement["title"] = json!("Engineer");
    let put = scim.put(&format!("/Users/{id}"), &replacement).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(put.body["displayName"], "Alice Liddell");
    assert_eq!(put.body["title"], "Engineer");
    assert_ne!(put.header("etag"), created.header("etag"));

    // PATCH without a path (Entra's shape).
    let patched = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"title": "Manager", "displayName": "Alice L."}}]),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["title"], "Manager");
    assert_eq!(patched.body["displayName"], "Alice L.");

    // PATCH with a value-filter path.
    let patched = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "alice@new.example.com"}]),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["emails"][0]["value"], "alice@new.example.com");

    // Deactivate, then reactivate (Okta's shape: path "active").
    let off = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    assert_eq!(off.body["active"], false);
    assert_eq!(
        scim.get(&format!("/Users/{id}")).await.body["active"],
        false
    );
    let on = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": true}}]),
        )
        .await;
    assert_eq!(on.status, 200, "{:?}", on.body);
    assert_eq!(on.body["active"], true);

    // Delete, then it is gone.
    let deleted = scim.delete(&format!("/Users/{id}")).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.body, serde_json::Value::Null);
    let gone = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body["status"], "404");
    assert_eq!(scim.delete(&format!("/Users/{id}")).await.status, 404);
}

#[tokio::test]
async fn lists_filter_page_sort_and_project() {
    let stack = Stack::start("gw_lists").await;
    let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    for name in ["carol", "alice", "bob", "bert", "dave"] {
        scim.create_user(&format!("{name}@example.com")).await;
    }

    let all = scim.get("/Users").await;
    assert_eq!(all.body["totalResults"], 5);
    assert_eq!(all.body["itemsPerPage"], 5);
    assert_eq!(
        all.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );

    let b = scim.get("/Users?filter=userName%20sw%20%22b%22").await;
    assert_eq!(b.body["totalResults"], 2, "{:?}", b.body);

    // Pages in creation order without sortBy.
    let page1 = scim.get("/Users?startIndex=1&count=2").await;
    assert_eq!(
        (
            page1.body["totalResults"].as_i64(),
            page1.body["itemsPerPage"].as_i64(),
            page1.body["startIndex"].as_i64()
        ),
        (Some(5), Some(2), Some(1))
    );
    assert_eq!(page1.resources()[0]["userName"], "carol@example.com");
    let page3 = scim.get("/Users?startIndex=5&count=2").await;
    assert_eq!(
        (
            page3.body["totalResults"].as_i64(),
            page3.body["itemsPerPage"].as_i64(),
            page3.body["startIndex"].as_i64()
        ),
        (Some(5), Some(1), Some(5))
    );
    assert_eq!(page3.resources()[0]["userName"], "dave@example.com");
    let past_end = scim.get("/Users?startIndex=50").await;
    assert_eq!(
        (
            past_end.body["totalResults"].as_i64(),
            past_end.body["itemsPerPage"].as_i64()
        ),
        (Some(5), Some(0))
    );

    // count=0: only the total.
    let count_only = scim.get("/Users?count=0").await;
    assert_eq!(count_only.body["totalResults"], 5);
    assert_eq!(count_only.body["itemsPerPage"], 0);
    assert!(count_only.resources().is_empty());

    // Absurd values are clamped; non-numeric ones are invalidValue.
    let clamped = scim.get("/Users?startIndex=-4&count=100000").await;
    assert_eq!(
        (
            clamped.body["startIndex"].as_i64(),
            clamped.body["itemsPerPage"].as_i64()
        ),
        (Some(1), Some(5))
    );
    let bad = scim.get("/Users?count=many").await;
    assert_eq!((bad.status, bad.scim_type()), (400, "invalidValue"));
    let bad_filter = scim.get("/Users?filter=userName%20eq").await;
    assert_eq!(
        (bad_filter.status, bad_filter.scim_type()),
        (400, "invalidFilter")
    );

    // Sorting.
    let sorted = scim
        .get("/Users?sortBy=userName&sortOrder=descending&count=2")
        .await;
    let names: Vec<_> = sorted
        .resources()
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["dave@example.com", "carol@example.com"]);

    // Projection keeps id and schemas, drops the rest.
    let projected = scim.get("/Users?attributes=userName&count=1").await;
    let first = &projected.resources()[0];
    assert!(first.get("userName").is_some() && first.get("id").is_some());
    assert!(
        first.get("emails").is_none() && first.get("name").is_none(),
        "{first}"
    );
    let excluded = scim.get("/Users?excludedAttributes=emails&count=1").await;
    assert!(excluded.resources()[0].get("emails").is_none());
    assert!(excluded.resources()[0].get("userName").is_some());

    // POST .search takes the same parameters in a body.
    let search = scim
        .post(
            "/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"b\"", "startIndex": 2, "count": 5, "attributes": ["userName"]}),
        )
        .await;
    assert_eq!(search.status, 200, "{:?}", search.body);
    assert_eq!(
        (
            search.body["totalResults"].as_i64(),
            search.body["itemsPerPage"].as_i64(),
            search.body["startIndex"].as_i64()
        ),
        (Some(2), Some(1), Some(2))
    );
    let root = scim
        .post("/.search", &json!({"filter": "userName sw \"a\""}))
        .await;
    assert_eq!(root.status, 200, "{:?}", root.body);
    assert_eq!(root.body["totalResults"], 1);
}

#[tokio::test]
async fn group_membership_lifecycle() {
    let stack = Stack::start("gw_groups").await;
    let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let u1 = scim.create_user("u1@example.com").await;
    let u2 = scim.create_user("u2@example.com").await;
    let u3 = scim.create_user("u3@example.com").await;

    let created = scim.post("/Groups", &group("Engineering", &[&u1])).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let gid = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Groups/{gid}");
    assert_eq!(
        created.header("location"),
        Some(format!("{}{path}", scim.base).as_str())
    );
    assert_eq!(member_ids(&created.body), vec![u1.clone()]);
    assert_eq!(created.body["members"][0]["type"], "User");
    assert_eq!(
        created.body["members"][0]["$ref"],
        format!("{}/Users/{u1}", scim.base)
    );

    let conflict = scim.post("/Groups", &group("Engineering", &[])).await;
    assert_eq!((conflict.status, conflict.scim_type()), (409, "uniqueness"));

    // Add a member: 204, and the user lists the group.
    let add = scim
        .patch(
            &path,
            json!([{"op": "add", "path": "members", "value": [{"value": u2}]}]),
        )
        .await;
    assert_eq!(add.status, 204, "{:?}", add.body);
    assert!(add.header("etag").is_some());
    let mut expected = vec![u1.clone(), u2.clone()];
    expected.sort();
    assert_eq!(member_ids(&scim.get(&path).await.body), expected);
    let u2_doc = scim.get(&format!("/Users/{u2}")).await;
    assert_eq!(u2_doc.body["groups"][0]["value"], gid.as_str());

    // Remove one with a value filter.
    let remove = scim
        .patch(
            &path,
            json!([{"op": "remove", "path": format!("members[value eq \"{u1}\"]")}]),
        )
        .await;
    assert_eq!(remove.status, 204, "{:?}", remove.body);
    assert_eq!(member_ids(&scim.get(&path).await.body), vec![u2.clone()]);

    // Replace the whole list.
    let replace = scim
        .patch(
            &path,
            json!([{"op": "replace", "path": "members", "value": [{"value": u3}]}]),
        )
        .await;
    assert_eq!(replace.status, 204, "{:?}", replace.body);
    assert_eq!(member_ids(&scim.get(&path).await.body), vec![u3.clone()]);

    // Rename; asking for attributes returns the resource.
    let rename = scim
        .patch(
            &format!("{path}?attributes=displayName"),
            json!([{"op": "replace", "path": "displayName", "value": "Eng"}]),
        )
        .await;
    assert_eq!(rename.status, 200, "{:?}", rename.body);
    assert_eq!(rename.body["displayName"], "Eng");
    assert!(rename.body.get("members").is_none());

    // excludedAttributes=members never renders members.
    let slim = scim
        .get(&format!("{path}?excludedAttributes=members"))
        .await;
    assert!(slim.body.get("members").is_none());
    assert_eq!(slim.body["displayName"], "Eng");
    let listed = scim.get("/Groups?excludedAttributes=members").await;
    assert_eq!(listed.body["totalResults"], 1);
    assert!(listed.resources()[0].get("members").is_none());
    let filtered = scim
        .get("/Groups?filter=displayName%20eq%20%22Eng%22")
        .await;
    assert_eq!(filtered.body["totalResults"], 1);

    // PUT replaces members too.
    let put = scim.put(&path, &group("Eng", &[&u1, &u2])).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let mut expected = vec![u1.clone(), u2.clone()];
    expected.sort();
    assert_eq!(member_ids(&put.body), expected);

    // Deleting a user removes it from the group.
    assert_eq!(scim.delete(&format!("/Users/{u1}")).await.status, 204);
    assert_eq!(member_ids(&scim.get(&path).await.body), vec![u2.clone()]);

    assert_eq!(scim.delete(&path).await.status, 204);
    assert_eq!(scim.get(&path).await.status, 404);
    assert!(
        scim.get(&format!("/Users/{u2}"))
            .await
            .body
            .get("groups")
            .is_none()
    );
}
