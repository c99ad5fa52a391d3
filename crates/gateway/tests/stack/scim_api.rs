//! End-to-end: the real gateway over HTTP, the real directory service over
//! loopback gRPC, real PostgreSQL.

use roster_proto::admin::DeprovisionPolicy;
use roster_testkit::app::{
    BULK_REQUEST_SCHEMA, BULK_RESPONSE_SCHEMA, ERROR_SCHEMA, GROUP_SCHEMA, LIST_RESPONSE_SCHEMA,
    PATCH_OP_SCHEMA, SEARCH_REQUEST_SCHEMA, USER_SCHEMA,
};
use roster_testkit::app::{Reply, Stack, group, member_ids, user};
use serde_json::json;

#[tokio::test]
async fn user_provisioning_lifecycle() {
    let (_stack, scim) = Stack::with_directory("gw_users").await;

    // The IdP's probe before creating: nothing matches.
    let probe = scim
        .get("/Users?filter=userName%20eq%20%22alice%40example.com%22")
        .await;
    assert_eq!(probe.status, 200, "{:?}", probe.body);
    assert_eq!(probe.paging(), [Some(0), Some(0), Some(1)]);
    assert!(probe.resources().is_empty());

    // Create.
    let created = scim.post("/Users", &user("alice@example.com")).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = format!("{}/Users/{id}", scim.base_url);
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
        .patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"title": "Manager", "displayName": "Alice L."}}]),
        )
        .await;
    assert_eq!(patched["title"], "Manager");
    assert_eq!(patched["displayName"], "Alice L.");

    // PATCH with a value-filter path.
    let patched = scim
        .patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "alice@new.example.com"}]),
        )
        .await;
    assert_eq!(patched["emails"][0]["value"], "alice@new.example.com");

    // Deactivate, then reactivate (Okta's shape: path "active").
    let off = scim
        .patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(off["active"], false);
    assert_eq!(
        scim.get(&format!("/Users/{id}")).await.body["active"],
        false
    );
    let on = scim
        .patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": true}}]),
        )
        .await;
    assert_eq!(on["active"], true);

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
    let (_stack, scim) = Stack::with_directory("gw_lists").await;
    for name in ["carol", "alice", "bob", "bert", "dave"] {
        scim.create_user(&format!("{name}@example.com")).await;
    }

    let all = scim.get("/Users").await;
    assert_eq!(all.body["totalResults"], 5);
    assert_eq!(all.body["itemsPerPage"], 5);
    assert_eq!(all.body["schemas"][0], LIST_RESPONSE_SCHEMA);

    let b = scim.get("/Users?filter=userName%20sw%20%22b%22").await;
    assert_eq!(b.body["totalResults"], 2, "{:?}", b.body);

    // Pages in creation order without sortBy.
    let page1 = scim.get("/Users?startIndex=1&count=2").await;
    assert_eq!(page1.paging(), [Some(5), Some(2), Some(1)]);
    assert_eq!(page1.resources()[0]["userName"], "carol@example.com");
    let page3 = scim.get("/Users?startIndex=5&count=2").await;
    assert_eq!(page3.paging(), [Some(5), Some(1), Some(5)]);
    assert_eq!(page3.resources()[0]["userName"], "dave@example.com");
    let past_end = scim.get("/Users?startIndex=50").await;
    assert_eq!(past_end.paging()[..2], [Some(5), Some(0)]);

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
            &json!({"schemas": [SEARCH_REQUEST_SCHEMA], "filter": "userName sw \"b\"", "startIndex": 2, "count": 5, "attributes": ["userName"]}),
        )
        .await;
    assert_eq!(search.status, 200, "{:?}", search.body);
    assert_eq!(search.paging(), [Some(2), Some(1), Some(2)]);
    let root = scim
        .post("/.search", &json!({"filter": "userName sw \"a\""}))
        .await;
    assert_eq!(root.status, 200, "{:?}", root.body);
    assert_eq!(root.body["totalResults"], 1);
}

#[tokio::test]
async fn group_membership_lifecycle() {
    let (_stack, scim) = Stack::with_directory("gw_groups").await;
    let u1 = scim.create_user("u1@example.com").await;
    let u2 = scim.create_user("u2@example.com").await;
    let u3 = scim.create_user("u3@example.com").await;

    let created = scim.post("/Groups", &group("Engineering", &[&u1])).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let gid = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Groups/{gid}");
    assert_eq!(
        created.header("location"),
        Some(format!("{}{path}", scim.base_url).as_str())
    );
    assert_eq!(member_ids(&created.body), vec![u1.clone()]);
    assert_eq!(created.body["members"][0]["type"], "User");
    assert_eq!(
        created.body["members"][0]["$ref"],
        format!("{}/Users/{u1}", scim.base_url)
    );

    let conflict = scim.post("/Groups", &group("Engineering", &[])).await;
    assert_eq!((conflict.status, conflict.scim_type()), (409, "uniqueness"));

    // Add a member: 204, and the user lists the group.
    let add = scim
        .patch_ops(
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
        .patch_ops(
            &path,
            json!([{"op": "remove", "path": format!("members[value eq \"{u1}\"]")}]),
        )
        .await;
    assert_eq!(remove.status, 204, "{:?}", remove.body);
    assert_eq!(member_ids(&scim.get(&path).await.body), vec![u2.clone()]);

    // Replace the whole list.
    let replace = scim
        .patch_ops(
            &path,
            json!([{"op": "replace", "path": "members", "value": [{"value": u3}]}]),
        )
        .await;
    assert_eq!(replace.status, 204, "{:?}", replace.body);
    assert_eq!(member_ids(&scim.get(&path).await.body), vec![u3.clone()]);

    // Rename; asking for attributes returns the resource.
    let rename = scim
        .patch_ok(
            &format!("{path}?attributes=displayName"),
            json!([{"op": "replace", "path": "displayName", "value": "Eng"}]),
        )
        .await;
    assert_eq!(rename["displayName"], "Eng");
    assert!(rename.get("members").is_none());

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

/// Independent user creations of one Bulk request are sent together (and
/// written in one transaction): each still gets its own answer, in request
/// order, and `failOnErrors` still stops exactly where it should.
#[tokio::test]
async fn bulk_user_creations_go_together_and_answer_in_order() {
    let (_stack, scim) = Stack::with_directory("gw_bulk_together").await;
    assert_eq!(
        scim.post("/Users", &user("taken@example.com")).await.status,
        201
    );

    let mut operations: Vec<serde_json::Value> = (0..40)
        .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": user(&format!("many{i}@example.com"))}))
        .collect();
    operations[7]["data"] = user("Taken@example.com");
    operations[20]["data"] = user("MANY19@example.com");
    let response = scim
        .post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": operations}),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let ops = response.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    let mut expected = vec!["201"; 40];
    expected[7] = "409";
    expected[20] = "409";
    assert_eq!(statuses, expected);
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op["bulkId"], format!("u{i}"), "in request order");
    }
    let listed = scim.get("/Users?count=100").await;
    assert_eq!(listed.body["totalResults"], 39);

    // failOnErrors 2: the first error comes in a batch, the second stops
    // the request before "after" is created.
    let stop = scim
        .post(
            "/Bulk",
            &json!({"failOnErrors": 2, "Operations": [
                {"method": "POST", "path": "/Users", "data": user("a@example.com")},
                {"method": "POST", "path": "/Users", "data": user("taken@example.com")},
                {"method": "POST", "path": "/Users", "data": user("b@example.com")},
                {"method": "POST", "path": "/Users", "data": user("B@example.com")},
                {"method": "POST", "path": "/Users", "data": user("after@example.com")}
            ]}),
        )
        .await;
    let statuses = stop.texts("Operations", "status");
    assert_eq!(statuses, ["201", "409", "201", "409"]);
    let after = scim
        .get("/Users?filter=userName%20eq%20%22after%40example.com%22")
        .await;
    assert_eq!(after.body["totalResults"], 0);
}

#[tokio::test]
async fn bulk_with_references_and_fail_on_errors() {
    let (_stack, scim) = Stack::with_directory("gw_bulk").await;

    // The group is listed first but references the user created after it.
    let request = json!({
        "schemas": [BULK_REQUEST_SCHEMA],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": group("Sales", &["bulkId:u1"])},
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": user("bulk1@example.com")},
            {"method": "POST", "path": "/Users", "bulkId": "u2", "data": user("bulk2@example.com")},
            {"method": "PATCH", "path": "/Groups/bulkId:g1", "data": {
                "schemas": [PATCH_OP_SCHEMA],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": "bulkId:u2"}]}]}},
            {"method": "DELETE", "path": "/Users/00000000-0000-4000-8000-000000000000"},
            {"method": "DELETE", "path": "/Users/bulkId:nobody"}
        ]
    });
    let response = scim.post("/Bulk", &request).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["schemas"][0], BULK_RESPONSE_SCHEMA);
    let ops = response.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["201", "201", "201", "204", "404", "409"],
        "{ops:?}"
    );
    assert_eq!(ops[0]["bulkId"], "g1");
    let group_location = ops[0]["location"].as_str().unwrap();
    let user1_location = ops[1]["location"].as_str().unwrap();
    assert!(ops[1]["version"].as_str().unwrap().starts_with("W/"));
    assert_eq!(ops[4]["response"]["status"], "404");

    let group_doc = scim
        .get(group_location.strip_prefix(scim.base_url.as_str()).unwrap())
        .await;
    let user1_id = user1_location.rsplit('/').next().unwrap();
    let user2_id = ops[2]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let mut expected = vec![user1_id.to_owned(), user2_id.to_owned()];
    expected.sort();
    assert_eq!(member_ids(&group_doc.body), expected);

    // failOnErrors stops at the first error.
    let stop = scim
        .post(
            "/Bulk",
            &json!({"failOnErrors": 1, "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "dup", "data": user("bulk1@example.com")},
                {"method": "POST", "path": "/Users", "bulkId": "new", "data": user("bulk3@example.com")}
            ]}),
        )
        .await;
    assert_eq!(stop.status, 200);
    let ops = stop.body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["status"], "409");
    assert_eq!(ops[0]["response"]["scimType"], "uniqueness");
    let third = scim
        .get("/Users?filter=userName%20eq%20%22bulk3%40example.com%22")
        .await;
    assert_eq!(third.body["totalResults"], 0);

    // Too many operations for the advertised maximum: 413 for the request.
    let ops: Vec<_> = (0..1001)
        .map(|_| json!({"method": "DELETE", "path": "/Users/x"}))
        .collect();
    let too_many = scim.post("/Bulk", &json!({"Operations": ops})).await;
    assert_eq!(too_many.status, 413, "{:?}", too_many.body);
}

#[tokio::test]
async fn discovery_endpoints() {
    let (_stack, scim) = Stack::with_directory("gw_discovery").await;

    let spc = scim.get("/ServiceProviderConfig").await;
    assert_eq!(spc.status, 200, "{:?}", spc.body);
    assert_eq!(spc.body["patch"]["supported"], true);
    assert_eq!(spc.body["bulk"]["supported"], true);
    assert_eq!(spc.body["bulk"]["maxOperations"], 1000);
    assert_eq!(spc.body["bulk"]["maxPayloadSize"], 4 * 1024 * 1024);
    assert_eq!(spc.body["filter"]["supported"], true);
    assert_eq!(spc.body["filter"]["maxResults"], 1000);
    assert_eq!(spc.body["etag"]["supported"], true);
    assert_eq!(spc.body["sort"]["supported"], true);
    assert_eq!(spc.body["changePassword"]["supported"], false);
    assert_eq!(
        spc.body["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );
    assert_eq!(
        spc.body["meta"]["location"],
        format!("{}/ServiceProviderConfig", scim.base_url)
    );

    let schemas = scim.get("/Schemas").await;
    assert_eq!(schemas.status, 200);
    let ids: Vec<_> = schemas
        .resources()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&USER_SCHEMA.to_owned()), "{ids:?}");
    assert!(ids.contains(&GROUP_SCHEMA.to_owned()));
    assert_eq!(
        schemas.body["totalResults"].as_u64(),
        Some(ids.len() as u64)
    );
    let user_schema = scim.get(&format!("/Schemas/{USER_SCHEMA}")).await;
    assert_eq!(user_schema.status, 200);
    assert_eq!(user_schema.body["id"], USER_SCHEMA);
    assert_eq!(scim.get("/Schemas/urn:nope").await.status, 404);

    let types = scim.get("/ResourceTypes").await;
    assert_eq!(types.body["totalResults"], 2);
    let user_type = scim.get("/ResourceTypes/User").await;
    assert_eq!(user_type.status, 200);
    assert_eq!(user_type.body["endpoint"], "/Users");
    assert_eq!(scim.get("/ResourceTypes/Printer").await.status, 404);
    assert_eq!(scim.get("/Me").await.status, 501);
}

#[tokio::test]
async fn authentication_failures_and_revocation() {
    let stack = Stack::start_with("gw_auth", |c| {
        c.auth_cache_ttl = std::time::Duration::from_millis(200)
    })
    .await;
    let a = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let b = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    assert_eq!(a.get("/Users").await.status, 200);

    let anonymous = Reply::scim(
        stack
            .http()
            .get(format!("{}/Users", a.base_url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some("Bearer realm=\"roster\"")
    );
    assert_eq!(anonymous.body["schemas"][0], ERROR_SCHEMA);

    let wrong = a.with_token("not-a-real-token").get("/Users").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("www-authenticate").is_some());

    // B's token is live, but not for A's directory.
    let foreign = a.with_token(&b.token).get("/Users").await;
    assert_eq!(foreign.status, 401);
    assert!(foreign.header("www-authenticate").is_some());
    let foreign_discovery = a.with_token(&b.token).get("/ServiceProviderConfig").await;
    assert_eq!(foreign_discovery.status, 401);

    // An unknown directory id looks the same as a foreign one.
    let unknown = Reply::scim(
        stack
            .http()
            .get(format!(
                "{}/scim/v2/00000000-0000-4000-8000-000000000000/Users",
                stack.base()
            ))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(unknown.status, 401);

    // A revoked token stops working once the cache entry expires.
    let mut admin = stack.admin();
    admin
        .revoke_token(roster_proto::admin::RevokeTokenRequest {
            directory_id: a.directory_id.clone(),
            token_id: a.token_id.clone(),
        })
        .await
        .expect("revoke");
    roster_testkit::eventually(
        "revoked token rejected",
        std::time::Duration::from_secs(10),
        || {
            let a = a.clone();
            async move { (a.get("/Users").await.status == 401).then_some(()) }
        },
    )
    .await;
    assert_eq!(b.get("/Users").await.status, 200);
}

#[tokio::test]
async fn conditional_requests() {
    let (_stack, scim) = Stack::with_directory("gw_etag").await;
    let id = scim.create_user("etag@example.com").await;
    let path = format!("/Users/{id}");
    let v1 = scim.get(&path).await.header("etag").unwrap().to_owned();

    let not_modified = scim.with_header("if-none-match", &v1).get(&path).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(v1.as_str()));

    let patch = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]});
    let matched = scim.with_header("if-match", &v1).patch(&path, &patch).await;
    assert_eq!(matched.status, 200, "{:?}", matched.body);
    let v2 = matched.header("etag").unwrap().to_owned();
    assert_ne!(v1, v2);

    let modified = scim.with_header("if-none-match", &v1).get(&path).await;
    assert_eq!(modified.status, 200);

    let stale = scim
        .with_header("if-match", &v1)
        .put(&path, &user("etag@example.com"))
        .await;
    assert_eq!(stale.status, 412, "{:?}", stale.body);
    assert_eq!(stale.body["status"], "412");

    let stale_delete = scim
        .with_header("if-match", "W/\"999\"")
        .delete(&path)
        .await;
    assert_eq!(stale_delete.status, 412);
    let any = scim.with_header("if-match", "*").delete(&path).await;
    assert_eq!(any.status, 204);
}

#[tokio::test]
async fn deactivate_policy_turns_delete_into_deactivation() {
    let stack = Stack::start("gw_deprov").await;
    let scim = stack
        .directory_with_token(DeprovisionPolicy::Deactivate)
        .await;
    let id = scim.create_user("leaver@example.com").await;
    let deleted = scim.delete(&format!("/Users/{id}")).await;
    assert_eq!(deleted.status, 204);
    let still_there = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(still_there.status, 200);
    assert_eq!(still_there.body["active"], false);
    // Groups are still deleted.
    let g = scim.post("/Groups", &group("Temp", &[&id])).await;
    let gid = g.body["id"].as_str().unwrap();
    assert_eq!(scim.delete(&format!("/Groups/{gid}")).await.status, 204);
    assert_eq!(scim.get(&format!("/Groups/{gid}")).await.status, 404);
}

#[tokio::test]
async fn bad_input_is_a_scim_400_never_a_500() {
    let stack = Stack::start_with("gw_badinput", |c| c.max_body_bytes = 64 * 1024).await;
    let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let raw = |body: &'static [u8], content_type: &'static str| {
        let scim = scim.clone();
        async move {
            Reply::scim(
                scim.request(reqwest::Method::POST, "/Users")
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    for (body, what) in [
        (&b"{\"userName\":"[..], "truncated JSON"),
        (b"\xff\xfe{}", "invalid UTF-8"),
        (b"", "empty body"),
    ] {
        let r = raw(body, "application/scim+json").await;
        assert_eq!(
            (r.status, r.scim_type()),
            (400, "invalidSyntax"),
            "{what}: {:?}",
            r.body
        );
    }
    let deep: &'static [u8] = Box::leak(
        format!("{}{}", "[".repeat(100), "]".repeat(100))
            .into_bytes()
            .into_boxed_slice(),
    );
    let r = raw(deep, "application/json").await;
    assert_eq!((r.status, r.scim_type()), (400, "invalidSyntax"));
    let r = raw(b"[1,2]", "application/json").await;
    assert_eq!(r.status, 400);
    let r = raw(b"{\"displayName\": \"no userName\"}", "application/json").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = raw(b"<user/>", "application/xml").await;
    assert_eq!(r.status, 415);

    // No Content-Type at all is tolerated when the body is JSON.
    let untyped = Reply::scim(
        scim.request(reqwest::Method::POST, "/Users")
            .body(user("untyped@example.com").to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(untyped.status, 201, "{:?}", untyped.body);

    let big: &'static [u8] = Box::leak(
        format!("{{\"userName\":\"{}\"}}", "x".repeat(70 * 1024))
            .into_bytes()
            .into_boxed_slice(),
    );
    let r = raw(big, "application/scim+json").await;
    assert_eq!(r.status, 413, "{:?}", r.body);

    let bad_patch = scim
        .patch_ops(
            "/Users/00000000-0000-4000-8000-000000000000",
            json!("nonsense"),
        )
        .await;
    assert_eq!(bad_patch.status, 400, "{:?}", bad_patch.body);
    let bad_id = scim.get("/Users/not-a-uuid").await;
    assert_eq!(bad_id.status, 404);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let stack = Stack::start_with("gw_ratelimit", |c| {
        c.rate_limit_per_directory = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let limited = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let other = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..10 {
        let r = limited.get("/Users?count=1").await;
        if r.status == 429 {
            retry_after = r.header("retry-after").map(str::to_owned);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    // Another directory has its own budget.
    assert_eq!(other.get("/Users?count=1").await.status, 200);
}

#[tokio::test]
async fn every_change_appears_in_order_on_watch_changes() {
    use roster_proto::directory::ChangeKind;
    use roster_proto::directory::watch_changes_request::Start;
    use roster_testkit::app::{next_change, watch};

    let (stack, scim) = Stack::with_directory("gw_watch").await;
    let id = scim.create_user("watched@example.com").await;
    let path = format!("/Users/{id}");
    scim.patch_ops(
        &path,
        json!([{"op": "replace", "path": "title", "value": "Dev"}]),
    )
    .await;
    scim.patch_ops(
        &path,
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    scim.patch_ops(
        &path,
        json!([{"op": "replace", "path": "active", "value": true}]),
    )
    .await;
    let gid = scim.post("/Groups", &group("Watchers", &[])).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    scim.patch_ops(
        &format!("/Groups/{gid}"),
        json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
    )
    .await;
    assert_eq!(scim.delete(&path).await.status, 204);

    let expected = [
        ChangeKind::UserCreated,
        ChangeKind::UserUpdated,
        ChangeKind::UserDeactivated,
        ChangeKind::UserReactivated,
        ChangeKind::GroupCreated,
        ChangeKind::MemberAdded,
        ChangeKind::MemberRemoved,
        ChangeKind::UserDeleted,
    ];
    let mut directory = stack.directory();
    // Resource changes only; the directory's own creation is not ours.
    let mut stream = watch(
        &mut directory,
        &scim.directory_id,
        &expected,
        Start::AfterRevision(0),
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        seen.push(next_change(&mut stream).await.1.kind());
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn ready_when_the_directory_service_serves_and_request_ids_echo() {
    let stack = Stack::start("gw_ready").await;
    let http = stack.http().clone();
    let url = format!("{}/readyz", stack.base());
    roster_testkit::eventually("gateway ready", std::time::Duration::from_secs(20), || {
        let (http, url) = (http.clone(), url.clone());
        async move { (http.get(&url).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;

    let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let echoed = scim
        .request(reqwest::Method::GET, "/Users")
        .header("x-request-id", "idp-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "idp-req-42");
    let generated = scim.get("/Users").await;
    assert_eq!(generated.header("x-request-id").map(str::len), Some(32));
}

#[tokio::test]
async fn base_urls_pasted_with_trailing_or_doubled_slashes_work() {
    let (_stack, scim) = Stack::with_directory("gw_slashes").await;
    let id = scim.create_user("slash@example.com").await;

    // `$BASE/` pasted into an IdP gives `$BASE//Users`.
    let doubled = scim.get("//Users").await;
    assert_eq!(doubled.status, 200, "{:?}", doubled.body);
    assert_eq!(doubled.body["totalResults"], 1);
    let trailing = scim
        .get("/Users/?filter=userName%20eq%20%22slash%40example.com%22")
        .await;
    assert_eq!(trailing.status, 200, "{:?}", trailing.body);
    assert_eq!(trailing.resources()[0]["id"], id.as_str());
    let one = scim.get(&format!("//Users/{id}/")).await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    let created = scim.post("//Groups/", &group("Slashes", &[&id])).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let config = scim.get("/ServiceProviderConfig/").await;
    assert_eq!(config.status, 200, "{:?}", config.body);

    // A path that does not exist is still a SCIM 404.
    let missing = scim.get("//Nope/").await;
    assert_eq!(missing.status, 404);
    // The token is still checked on the normalized path.
    let wrong = scim.with_token("rst_wrong").get("//Users/").await;
    assert_eq!(wrong.status, 401);
}
