//! JumpCloud replay: the connection test that creates and deletes a test user
//! and group, user provisioning, group management with `value`-array member
//! operations, and unbind (deactivate) then delete.
//!
//! Sources, cited below: [JC] JumpCloud, "Identity Management using a Custom
//! SCIM Integration" (jumpcloud.com/support/provision-and-manage-users-and-
//! groups-in-apps-using-custom-scim-identity-management-integration) and its
//! "Group Management Considerations"; [DI] JumpCloud Directory Insights SCIM
//! events (user_deprovision, user_delete_provision); [UNIMONI] a SCIM server
//! vendor's note that JumpCloud sends member PATCHes as "value=[{value:uid}]
//! without an RFC filter" (app.uni-moni.com/en/kb/sso-setup-jumpcloud).
//! JumpCloud does not publish bodies; elsewhere the requests follow RFC 7644.

use roster_testkit::app;
use roster_testkit::app::Of;
use roster_testkit::app::{GROUP_SCHEMA, Scim, USER_SCHEMA, member_ids, patch_op, sorted};
use serde_json::{Value, json};

/// The user JumpCloud creates from its mapped properties (username, firstname, lastname, email).
fn jc_user(user_name: &str, first: &str, last: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": first, "familyName": last},
        "displayName": format!("{first} {last}"),
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true
    })
}

/// [UNIMONI] member operations with a `value` array on path `members`.
fn members_op(op: &str, user_id: &str) -> Value {
    patch_op(json!([{"op": op, "path": "members", "value": [{"value": user_id}]}]))
}

/// Lookup then create, as JumpCloud does on bind.
async fn bind(idp: &Scim, user_name: &str, first: &str, last: &str) -> String {
    let lookup = idp
        .get(&format!("/Users?filter=userName eq \"{user_name}\""))
        .await;
    assert_eq!(lookup.expect(200, "lookup").total_results(), 0);
    idp.create("/Users", &jc_user(user_name, first, last)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn jumpcloud_connection_test_group_management_and_deprovisioning() {
    // JumpCloud's client.
    let (served, idp) = app::replay("jumpcloud", "delete").await;

    // 1. Test Connection: [JC] "A test user and test group are created to test the integration.
    //    Both will be deleted if the DELETE method is supported."
    let test_user = bind(&idp, "scim-test@example.com", "Test", "User").await;
    let test_group =
        json!({"schemas": [GROUP_SCHEMA], "displayName": "JumpCloud Test Group", "members": []});
    let test_group = idp.create("/Groups", &test_group).await;
    idp.delete(&format!("/Groups/{test_group}"))
        .await
        .expect(204, "delete test group");
    idp.delete(&format!("/Users/{test_user}"))
        .await
        .expect(204, "delete test user");
    idp.get(&format!("/Users/{test_user}"))
        .await
        .expect(404, "test user gone");

    // 2. Bind two people.
    let ann = bind(&idp, "ann@example.com", "Ann", "Lee").await;
    let ben = bind(&idp, "ben@example.com", "Ben", "Kim").await;
    let u = format!("/Users/{ann}");

    // 3. Attribute change pushed as a full replacement of the user.
    let mut changed = jc_user("ann@example.com", "Ann", "Lee-Park");
    changed["id"] = json!(ann);
    idp.put(&u, &changed).await.expect(200, "PUT user");
    assert_eq!(idp.get_ok(&u).await["name"]["familyName"], "Lee-Park");

    // 4. Group push: [JC] "Empty groups are not created", so the group arrives with its members;
    //    a second member is added and removed with value arrays, the removal retried.
    let lookup = idp.get("/Groups?filter=displayName eq \"Designers\"").await;
    assert_eq!(lookup.expect(200, "group lookup").total_results(), 0);
    let group =
        json!({"schemas": [GROUP_SCHEMA], "displayName": "Designers", "members": [{"value": ann}]});
    let designers = idp.create("/Groups", &group).await;
    let g = format!("/Groups/{designers}");
    idp.patch(&g, &members_op("add", &ben))
        .await
        .expect_success("add ben");
    assert_eq!(member_ids(&idp.get_ok(&g).await), sorted(&[&ann, &ben]));
    idp.patch(&g, &members_op("remove", &ben))
        .await
        .expect_success("remove ben");
    idp.patch(&g, &members_op("remove", &ben))
        .await
        .expect_success("retried remove");
    assert_eq!(member_ids(&idp.get_ok(&g).await), sorted(&[&ann]));

    // 5. [JC] "Group renaming is supported"; JumpCloud takes over an existing group "when the user
    //    group name in JumpCloud matches", so the name lookup ignores case.
    let rename =
        patch_op(json!([{"op": "replace", "path": "displayName", "value": "Product Designers"}]));
    idp.patch(&g, &rename).await.expect_success("rename");
    assert_eq!(
        idp.count("/Groups?filter=displayName eq \"PRODUCT DESIGNERS\"")
            .await,
        1,
        "find group"
    );

    // 6. Unbind ann: [DI] user_deprovision "change an existing user to inactive"; her group
    //    membership is left alone. Then she is deleted in JumpCloud: [DI] user_delete_provision.
    let deactivate = patch_op(json!([{"op": "replace", "path": "active", "value": false}]));
    idp.patch(&u, &deactivate)
        .await
        .expect_success("deactivate");
    assert_eq!(member_ids(&idp.get_ok(&g).await), sorted(&[&ann]));
    idp.delete(&u).await.expect(204, "delete user");
    idp.get(&u).await.expect(404, "deleted");
    assert!(member_ids(&idp.get_ok(&g).await).is_empty());

    let _events = served
        .watch_sequences(
            &idp,
            Of::User,
            &[
                (test_user.as_str(), &["user.created", "user.deleted"]),
                (
                    ann.as_str(),
                    &[
                        "user.created",
                        "user.updated",
                        "member.added",
                        "user.deactivated",
                        "member.removed",
                        "user.deleted",
                    ],
                ),
                (
                    ben.as_str(),
                    &["user.created", "member.added", "member.removed"],
                ),
            ],
        )
        .await;
    let designers_events: &[&str] = &[
        "group.created",
        "member.added",
        "member.added",
        "member.removed",
        "group.updated",
        "member.removed",
    ];
    served
        .watch_sequences(
            &idp,
            Of::Group,
            &[
                (&test_group, &["group.created", "group.deleted"]),
                (&designers, designers_events),
            ],
        )
        .await;
}
