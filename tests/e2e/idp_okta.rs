//! Okta replay: the whole provisioning lifecycle exactly as Okta's SCIM 2.0
//! client sends it, checked through SCIM reads and `WatchChanges`.
//!
//! Source of every request shape unless noted: Okta, "SCIM 2.0 Protocol
//! Reference" (developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20;
//! okta/okta-developer-docs, docs/reference/scim/scim-20/index.md), cited
//! below as [OKTA]. Headers: Okta's Runscope suite (okta-scim-beta,
//! SCIM_tests_for_Runscope.json) and oktadeveloper/okta-blog-archive#1956.
//! See docs/idp/okta.md.

use roster_testkit::app;
use roster_testkit::app::Of;
use roster_testkit::app::{
    GROUP_SCHEMA, LIST_RESPONSE_SCHEMA, Scim, USER_SCHEMA, member_ids, patch_op, sorted,
};
use serde_json::{Value, json};

/// [OKTA] "Create Users": the body Okta posts, `password` and `groups` included.
fn okta_user(user_name: &str, given: &str, family: &str, okta_id: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": format!("{given} {family}"),
        "locale": "en-US",
        "externalId": okta_id,
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

/// Okta's assignment flow: look the user up by `userName`, then create it.
async fn assign(idp: &Scim, user_name: &str, given: &str, family: &str, okta_id: &str) -> String {
    // [OKTA] "Determine if the User already exists": filter on userName, startIndex=1&count=100.
    let lookup = idp
        .get(&format!(
            "/Users?filter=userName eq \"{user_name}\"&startIndex=1&count=100"
        ))
        .await;
    assert_eq!(lookup.expect(200, "lookup").total_results(), 0);
    let created = idp
        .post("/Users", &okta_user(user_name, given, family, okta_id))
        .await
        .expect(201, "create user");
    assert_eq!(created.body["userName"], user_name);
    assert_eq!(created.body["active"], true);
    assert!(
        created.body.get("password").is_none(),
        "password echoed: {}",
        created.body
    );
    created.id()
}

/// [OKTA] "Update specific Group membership": one member added per PATCH.
fn add_member(user_id: &str, display: &str) -> Value {
    patch_op(
        json!([{"op": "add", "path": "members", "value": [{"value": user_id, "display": display}]}]),
    )
}

/// [OKTA] "Update specific Group membership": a filtered remove.
fn remove_member(user_id: &str) -> Value {
    patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{user_id}\"]")}]))
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_provisions_users_and_pushed_groups_end_to_end() {
    // Okta's client: `User-Agent: Okta SCIM Client 1.0.0`, SCIM media types with a charset.
    let (served, idp) = app::replay("okta", "delete").await;
    let idp = idp
        .with_headers(&[
            ("user-agent", "Okta SCIM Client 1.0.0"),
            ("accept", "application/scim+json"),
            ("accept-charset", "utf-8"),
        ])
        .with_content_type("application/scim+json; charset=utf-8");

    // 1. Test Connector Configuration: [OKTA] "Okta makes two requests … The query parameters that
    //    Okta sends at this point are always constant." Pagination numbers must be integers.
    let users = idp
        .get("/Users?startIndex=1&count=2")
        .await
        .expect(200, "test connector users");
    assert!(
        users.body["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(LIST_RESPONSE_SCHEMA))),
        "{}",
        users.body
    );
    assert_eq!(users.total_results(), 0);
    assert_eq!(users.body["startIndex"], 1);
    assert!(
        users.body["itemsPerPage"].is_i64(),
        "itemsPerPage: {}",
        users.body
    );
    let groups = idp
        .get("/Groups?startIndex=1&count=100")
        .await
        .expect(200, "test connector groups");
    assert_eq!(groups.total_results(), 0);

    // 2. Assignments: lookup + create, as Okta does for each assigned person.
    let jdoe = assign(
        &idp,
        "jdoe@example.com",
        "John",
        "Doe",
        "00ujl29u0le5T6Aj10h7",
    )
    .await;
    let asmith = assign(&idp, "asmith", "Alice", "Smith", "00ujl29u0le5T6Aj10h8").await;

    // 3. [OKTA] "respond with an error schema" 409 when the user exists; userName is
    //    case-insensitive (RFC 7643 §4.1.1 caseExact=false), so other casing conflicts too.
    let conflict = idp
        .post(
            "/Users",
            &okta_user("JDoe@Example.com", "John", "Doe", "00uother"),
        )
        .await;
    let conflict = conflict.expect(409, "duplicate userName");
    assert_eq!(conflict.body["scimType"], "uniqueness");

    // 4. The lookup Okta uses to link accounts matches case-insensitively and never falls back to
    //    e-mail: asmith's e-mail is not a userName.
    let found = idp
        .get("/Users?filter=userName eq \"JDoe@Example.com\"&startIndex=1&count=100")
        .await;
    let found = found.expect(200, "case-insensitive lookup");
    assert_eq!(found.total_results(), 1);
    assert_eq!(found.resources()[0]["id"], jdoe.as_str());
    let by_mail = idp
        .get("/Users?filter=userName eq \"asmith@example.com\"&startIndex=1&count=100")
        .await;
    assert_eq!(by_mail.expect(200, "no e-mail fallback").total_results(), 0);

    // 5. Import: [OKTA] "Retrieve Users" pages with startIndex/count=100 until totalResults.
    let page = idp.get("/Users?startIndex=1&count=100").await;
    let page = page.expect(200, "import");
    assert_eq!(
        page.paging()[..2],
        [Some(2), Some(2)],
        "totalResults, itemsPerPage"
    );
    assert_eq!(page.resources().len(), 2);

    // 6. Profile update: [OKTA] "Update a specific User (PUT)": GET, then PUT the whole user.
    let mut current = idp.get_ok(&format!("/Users/{jdoe}")).await;
    current["name"] = json!({"givenName": "Johnny", "middleName": "Excited", "familyName": "Doe"});
    current["groups"] = json!([]);
    let put = idp
        .put(&format!("/Users/{jdoe}"), &current)
        .await
        .expect(200, "PUT user");
    assert_eq!(put.body["name"]["givenName"], "Johnny");
    assert_eq!(put.body["active"], true);

    // 7. Push group: [OKTA] "Retrieve Groups" filter on displayName, then "Create Groups".
    let lookup = idp
        .get("/Groups?filter=displayName eq \"Engineering\"&startIndex=1&count=100")
        .await;
    assert_eq!(lookup.expect(200, "group lookup").total_results(), 0);
    let group = json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering", "members": []});
    let engineering = idp.create("/Groups", &group).await;
    let g = format!("/Groups/{engineering}");

    // 8. Membership: [OKTA] sends a remove and an add in one PATCH; the removed member is not in
    //    the group (a retried removal) and must not fail the add.
    let combined = patch_op(json!([
        {"op": "remove", "path": format!("members[value eq \"{asmith}\"]")},
        {"op": "add", "path": "members", "value": [{"value": jdoe, "display": "jdoe@example.com"}]}
    ]));
    idp.patch(&g, &combined)
        .await
        .expect_success("membership PATCH");
    let read = idp.get(&g).await.expect(200, "read group");
    assert_eq!(member_ids(&read.body), sorted(&[&jdoe]));

    // 9. Rename: [OKTA] "Update a specific Group name" — path-less replace carrying the group's own
    //    id, "triggered each time there's a group membership update": first unchanged, then renamed.
    let same = patch_op(
        json!([{"op": "replace", "value": {"id": engineering, "displayName": "Engineering"}}]),
    );
    idp.patch(&g, &same)
        .await
        .expect_success("unchanged rename");
    let rename = patch_op(
        json!([{"op": "replace", "value": {"id": engineering, "displayName": "Engineering Team"}}]),
    );
    idp.patch(&g, &rename).await.expect_success("rename");
    assert_eq!(idp.get_ok(&g).await["displayName"], "Engineering Team");

    // 10. Group Push sends membership PATCHes for one group concurrently (okta/okta-developer-docs#2105
    //     batches them; fleetdm/fleet#50724 lost members this way). The final membership must be exact.
    let u3 = assign(&idp, "carol@example.com", "Carol", "Three", "00u3").await;
    let u4 = assign(&idp, "dave@example.com", "Dave", "Four", "00u4").await;
    let u5 = assign(&idp, "erin@example.com", "Erin", "Five", "00u5").await;
    let adds = [
        add_member(&asmith, "asmith"),
        add_member(&u3, "carol@example.com"),
        add_member(&u4, "dave@example.com"),
        add_member(&u5, "erin@example.com"),
    ];
    for reply in idp.patch_concurrently(&g, &adds).await {
        reply.expect_success("parallel add");
    }
    let read = idp.get(&g).await.expect(200, "after parallel adds");
    assert_eq!(
        member_ids(&read.body),
        sorted(&[&jdoe, &asmith, &u3, &u4, &u5])
    );

    // 11. Parallel removals, then a retried removal of a member already removed: 2xx, no change.
    for reply in idp
        .patch_concurrently(&g, &[remove_member(&u4), remove_member(&u5)])
        .await
    {
        reply.expect_success("parallel remove");
    }
    idp.patch(&g, &remove_member(&u4))
        .await
        .expect_success("retried removal");
    let read = idp.get(&g).await.expect(200, "after removals");
    assert_eq!(member_ids(&read.body), sorted(&[&jdoe, &asmith, &u3]));

    // 12. Unassign jdoe: [OKTA] "Update a specific User (PATCH)" — deactivation is a path-less
    //     replace of active; "Okta doesn't perform DELETE operations on User objects". The pushed
    //     group keeps the member: Okta removes memberships only when the person leaves the Okta group.
    let deactivate = patch_op(json!([{"op": "replace", "value": {"active": false}}]));
    idp.patch(&format!("/Users/{jdoe}"), &deactivate)
        .await
        .expect_success("deactivate");
    assert_eq!(idp.get_ok(&format!("/Users/{jdoe}")).await["active"], false);

    // 13. Re-assign: the same PATCH with active true, then jdoe leaves the Okta group, then is
    //     unassigned again.
    let reactivate = patch_op(json!([{"op": "replace", "value": {"active": true}}]));
    idp.patch(&format!("/Users/{jdoe}"), &reactivate)
        .await
        .expect_success("reactivate");
    idp.patch(&g, &remove_member(&jdoe))
        .await
        .expect_success("leave group");
    idp.patch(&format!("/Users/{jdoe}"), &deactivate)
        .await
        .expect_success("deactivate again");

    // 14. Full membership push: [OKTA] "replace" of path members with the complete list.
    let full = patch_op(json!([{"op": "replace", "path": "members", "value": [
        {"value": asmith, "display": "asmith"},
        {"value": u3, "display": "carol@example.com"},
        {"value": u4, "display": "dave@example.com"}
    ]}]));
    idp.patch(&g, &full)
        .await
        .expect_success("full membership push");
    assert_eq!(
        member_ids(&idp.get_ok(&g).await),
        sorted(&[&asmith, &u3, &u4])
    );

    // 15. AIW integrations push groups with the member list on POST and PUT ([OKTA] PUT example;
    //     bitwarden/server#2139 "Okta sends group membership relationships during the Group POST/PUT").
    let sales = json!({"schemas": [GROUP_SCHEMA], "displayName": "Sales", "members": [{"value": asmith, "display": "asmith"}]});
    let sales = idp.create("/Groups", &sales).await;
    let put_group = json!({"schemas": [GROUP_SCHEMA], "id": sales, "displayName": "Sales",
        "members": [{"value": asmith, "display": "asmith"}, {"value": u3, "display": "carol@example.com"}]});
    idp.put(&format!("/Groups/{sales}"), &put_group)
        .await
        .expect(200, "PUT group");
    let read = idp
        .get(&format!("/Groups/{sales}"))
        .await
        .expect(200, "read Sales");
    assert_eq!(member_ids(&read.body), sorted(&[&asmith, &u3]));

    // 16. Unlink pushed group with "Delete the group in the target app": [OKTA] "Delete a specific Group".
    idp.delete(&g).await.expect(204, "delete group");
    idp.get(&g).await.expect(404, "deleted group");

    // Final state through standard reads: jdoe is kept, inactive, in no group.
    let jdoe_now = idp.get_ok(&format!("/Users/{jdoe}")).await;
    assert_eq!(jdoe_now["active"], false);
    assert_eq!(jdoe_now["name"]["givenName"], "Johnny");
    assert_eq!(
        idp.count("/Users?filter=active eq false").await,
        1,
        "inactive users"
    );

    // The change stream: jdoe's life in order, and the pushed group's.
    let _events = served
        .watch_sequences(
            &idp,
            Of::User,
            &[(
                jdoe.as_str(),
                &[
                    "user.created",
                    "user.updated",
                    "member.added",
                    "user.deactivated",
                    "user.reactivated",
                    "member.removed",
                    "user.deactivated",
                ],
            )],
        )
        .await;
    served
        .watch_sequences(
            &idp,
            Of::Group,
            &[(
                &engineering,
                &[
                    "group.created",
                    "member.added",
                    "group.updated",
                    "member.added",
                    "member.added",
                    "member.added",
                    "member.added",
                    "member.removed",
                    "member.removed",
                    "member.removed",
                    "member.added",
                    "member.removed",
                    "member.removed",
                    "member.removed",
                    "group.deleted",
                ],
            )],
        )
        .await;
}
