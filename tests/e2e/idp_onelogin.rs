//! OneLogin replay: a "SCIM Provisioner with SAML (SCIM v2 Enterprise)" app
//! whose SCIM JSON Template fills enterprise attributes (some empty), groups
//! from Rules, suspend/unsuspend, and the *Delete* deprovisioning action on a
//! directory whose policy turns DELETE into deactivation. Also checks an
//! attribute mapping made with `roster admin map-attribute`.
//!
//! Sources, cited below: [TEMPLATE] the SCIM JSON Template published in
//! livingsecurity.com/migration/support/configuring-scim-for-onelogin (same
//! fields as scim.dev/guide/applications/onelogin); [SETTINGS] OneLogin app
//! Provisioning tab actions (Delete / Suspend / Do nothing), as described in
//! the setup guides listed in docs/idp/onelogin.md. OneLogin does not publish
//! request bodies; where it is silent the requests follow RFC 7644.

use roster_testkit::app;
use roster_testkit::app::Of;
use roster_testkit::app::{
    ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA, last_user_payload, member_ids, patch_op,
    sorted,
};
use serde_json::{Value, json};

/// [TEMPLATE] rendered for one person: parameters OneLogin has no value for arrive as "".
fn template_user(user_name: &str, first: &str, last: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        "userName": user_name,
        "name": {"familyName": last, "givenName": first},
        "title": "",
        "userType": "",
        "timezone": "",
        "emails": [{"value": user_name.to_lowercase(), "type": "work", "primary": true}],
        "addresses": [{"locality": "Berlin", "region": "", "country": "DE"}],
        ENTERPRISE_USER_SCHEMA: {
            "organization": "Acme GmbH",
            "division": "Platform",
            "department": "Engineering",
            "manager": {"value": "", "displayName": " "}
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn onelogin_template_users_rules_groups_and_delete_as_deactivation() {
    // OneLogin's client: plain SCIM JSON.
    let (served, idp) = app::replay("onelogin", "deactivate").await;

    // 0. The operator maps an enterprise attribute without a normalized home.
    let endpoint = format!("http://{}", served.grpc);
    app::admin(
        &endpoint,
        &[
            "map-attribute",
            &idp.directory_id,
            &format!("{ENTERPRISE_USER_SCHEMA}:division"),
            "custom:division",
        ],
    );

    // 1. "API Status → Enable": OneLogin checks URL and token with a list request.
    assert_eq!(idp.count("/Users").await, 0, "connection check");

    // 2. Assignment: lookup by the scimusername parameter (mixed-case e-mail), then create from
    //    the template. Empty placeholders must not fail the create.
    let lookup = idp
        .get("/Users?filter=userName eq \"Jane.Roe@Example.com\"")
        .await;
    assert_eq!(lookup.expect(200, "lookup").total_results(), 0);
    let created = idp
        .post(
            "/Users",
            &template_user("Jane.Roe@Example.com", "Jane", "Roe"),
        )
        .await;
    let jane = created.expect(201, "create from template").id();
    let u = format!("/Users/{jane}");
    let read = idp.get_ok(&u).await;
    assert_eq!(read[ENTERPRISE_USER_SCHEMA]["department"], "Engineering");
    assert_eq!(read["addresses"][0]["locality"], "Berlin", "{read}");

    // 3. OneLogin looks users up again on every sync; userName matches case-insensitively.
    let again = idp
        .get("/Users?filter=userName eq \"jane.roe@example.com\"")
        .await
        .expect(200, "relookup");
    assert_eq!(again.total_results(), 1);
    assert_eq!(again.resources()[0]["id"], jane.as_str());

    // 4. Profile update: a replace of the changed attribute.
    let title = patch_op(json!([{"op": "replace", "path": "title", "value": "Staff Engineer"}]));
    idp.patch(&u, &title).await.expect_success("update title");
    assert_eq!(idp.get_ok(&u).await["title"], "Staff Engineer");

    // 5. Groups from Rules: lookup, create empty, add the member; the next sync adds it again.
    let lookup = idp.get("/Groups?filter=displayName eq \"Platform\"").await;
    assert_eq!(lookup.expect(200, "group lookup").total_results(), 0);
    let group = json!({"schemas": [GROUP_SCHEMA], "displayName": "Platform", "members": []});
    let platform = idp.create("/Groups", &group).await;
    let g = format!("/Groups/{platform}");
    let add = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": jane}]}]));
    idp.patch(&g, &add).await.expect_success("add member");
    idp.patch(&g, &add).await.expect_success("re-add member");
    assert_eq!(member_ids(&idp.get_ok(&g).await), sorted(&[&jane]));

    // 6. [SETTINGS] "When user accounts are suspended in OneLogin: Suspend", then unsuspended.
    let suspend = patch_op(json!([{"op": "replace", "path": "active", "value": false}]));
    idp.patch(&u, &suspend).await.expect_success("suspend");
    let unsuspend = patch_op(json!([{"op": "replace", "path": "active", "value": true}]));
    idp.patch(&u, &unsuspend).await.expect_success("unsuspend");

    // 7. [SETTINGS] "When users are deleted in OneLogin, or the user's app access is removed:
    //    Delete". This directory's policy is `deactivate`: the user is kept, inactive, and stays
    //    in its groups (docs/events.md).
    idp.delete(&u).await.expect(204, "delete");
    let kept = idp.get_ok(&u).await;
    assert_eq!(kept["active"], false);
    assert_eq!(member_ids(&idp.get_ok(&g).await), sorted(&[&jane]));

    let events = served
        .watch_sequences(
            &idp,
            Of::User,
            &[(
                jane.as_str(),
                &[
                    "user.created",
                    "user.updated",
                    "member.added",
                    "user.deactivated",
                    "user.reactivated",
                    "user.deactivated",
                ],
            )],
        )
        .await;
    let last = last_user_payload(&events, &jane).expect("user payload");
    assert_eq!(
        last.custom_attributes.get("division").map(String::as_str),
        Some("Platform")
    );
    assert_eq!(last.department, "Engineering");
    assert!(
        last.manager_id.is_empty(),
        "empty manager.value must mean no manager: {:?}",
        last.manager_id
    );
    assert!(!last.active);
}
