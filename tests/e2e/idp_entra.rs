//! Microsoft Entra ID replay: the provisioning service's requests in both of
//! its PATCH dialects (the default one, and the one enabled by the
//! `aadOptscim062020` flag), checked through SCIM reads and `WatchChanges`.
//!
//! Sources, cited below:
//! [TUTORIAL] "Tutorial: Develop and plan provisioning for a SCIM endpoint in
//!   Microsoft Entra ID", section "SCIM protocol requests and responses"
//!   (learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups).
//! [COMPAT] "Known issues and resolutions with SCIM 2.0 protocol compliance"
//!   (…/application-provisioning-config-problem-scim-compatibility), requests
//!   "without feature flag" and "with feature flag".
//! See docs/idp/entra.md.

use roster_testkit::app;
use roster_testkit::app::Of;
use roster_testkit::app::{
    ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, Scim, USER_SCHEMA, member_ids, patch_op, sorted,
    work_email,
};
use serde_json::{Value, json};

/// [TUTORIAL] "Create User": both schemas, client-sent `meta`, empty `roles`,
/// plus the enterprise attributes of the default mapping.
fn entra_user(user_name: &str, email: Option<&str>, object_id: &str) -> Value {
    let mut user = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        "externalId": object_id,
        "userName": user_name,
        "active": true,
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE_USER_SCHEMA: {"department": "Sales", "employeeNumber": "1001"}
    });
    if let Some(email) = email {
        user["emails"] = json!([{"primary": true, "type": "work", "value": email}]);
    }
    user
}

/// Entra's matching query then create, as in [TUTORIAL] "Get User by query" / "Create User".
async fn provision(idp: &Scim, user_name: &str, email: Option<&str>, object_id: &str) -> String {
    let lookup = idp
        .get(&format!("/Users?filter=userName eq \"{user_name}\""))
        .await;
    assert_eq!(lookup.expect(200, "match user").total_results(), 0);
    let created = idp
        .post("/Users", &entra_user(user_name, email, object_id))
        .await
        .expect(201, "create user");
    assert_eq!(created.body["externalId"], object_id);
    created.id()
}

/// [TUTORIAL] "Update Group [Add Members]": capitalised op, `$ref: null`.
fn add_member(user_id: &str) -> Value {
    patch_op(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": user_id}]}]))
}

/// [COMPAT] "Requests made to remove a group member", without feature flag: a `value` array.
fn remove_member_by_value(user_id: &str) -> Value {
    patch_op(
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": user_id}]}]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_provisions_with_both_patch_dialects_end_to_end() {
    // Entra's client: SCIM media type with a charset (pond/scimitar#123 shows the header as received).
    let (served, idp) = app::replay("entra", "delete").await;
    let idp = idp.with_content_type("application/scim+json; charset=utf-8");

    // 1. Test Connection: [TUTORIAL] "makes requests to fetch a random user and group"; groups are
    //    always read with excludedAttributes=members. Both must be an empty ListResponse.
    let probe = "6f0dcbc9-6d8f-4b7e-b3b3-1ad1f3a0c3d2";
    assert_eq!(
        idp.count(&format!("/Users?filter=userName eq \"{probe}\""))
            .await,
        0,
        "probe users"
    );
    let groups = idp
        .get(&format!(
            "/Groups?excludedAttributes=members&filter=displayName eq \"{probe}\""
        ))
        .await;
    assert_eq!(groups.expect(200, "probe groups").total_results(), 0);

    // 2. Provision: the person, their manager, and a user without a mail attribute.
    let upn = "Test_User_ab6490ee@contoso.com";
    let user = provision(
        &idp,
        upn,
        Some("Test_User_fd0ea19b@testuser.com"),
        "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    )
    .await;
    let manager = provision(
        &idp,
        "boss@contoso.com",
        Some("boss@contoso.com"),
        "7fce0092-d52e-4f76-b727-3955bd72c939",
    )
    .await;
    let no_mail = provision(
        &idp,
        "nomail@contoso.com",
        None,
        "58342554-38d6-4ec8-948c-50044d0a33fd",
    )
    .await;
    let u = format!("/Users/{user}");

    // 3. Manager as a bare string (Captain-P-Goldfish/SCIM-SDK#686, apache/directory-scimple#1244).
    let set_manager = patch_op(
        json!([{"op": "Add", "path": format!("{ENTERPRISE_USER_SCHEMA}:manager"), "value": manager}]),
    );
    idp.patch(&u, &set_manager)
        .await
        .expect_success("manager as string");
    let read = idp.get_ok(&u).await;
    assert_eq!(
        read[ENTERPRISE_USER_SCHEMA]["manager"]["value"],
        manager.as_str(),
        "{read}"
    );

    // 4. Default dialect: [TUTORIAL] "Update User [Multi-valued properties]" with capitalised ops,
    //    plus the default mapping's addresses and phone numbers (Table 2) a strict server rejects.
    let update = patch_op(json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Microsoft Way"},
        {"op": "Add", "path": "addresses[type eq \"work\"].postalCode", "value": "98052"},
        {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 425 555 0100"}
    ]));
    idp.patch(&u, &update)
        .await
        .expect_success("multi-valued update");
    let read = idp.get_ok(&u).await;
    assert_eq!(read["name"]["familyName"], "updatedFamilyName");
    assert_eq!(
        work_email(&read).as_deref(),
        Some("updatedEmail@microsoft.com")
    );
    assert_eq!(
        read["addresses"][0]["streetAddress"], "1 Microsoft Way",
        "{read}"
    );

    // 5. A value-filtered replace on a multi-valued attribute the user does not have yet
    //    (default mapping mail → emails[type eq "work"].value; SCIM-SDK#416).
    let first_mail = patch_op(json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "nomail@contoso.com"}
    ]));
    idp.patch(&format!("/Users/{no_mail}"), &first_mail)
        .await
        .expect_success("filter on missing emails");
    let read = idp.get_ok(&format!("/Users/{no_mail}")).await;
    assert_eq!(
        work_email(&read).as_deref(),
        Some("nomail@contoso.com"),
        "{read}"
    );

    // 6. Flag dialect: [COMPAT] "Requests to replace multiple attributes" — a path-less replace
    //    whose keys are dotted sub-attribute paths and an extension URN path.
    let flagged = patch_op(json!([{"op": "replace", "value": {
        "displayName": "Bjfe",
        "name.givenName": "Kkom",
        "name.familyName": "Unua",
        format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber"): "Aklq"
    }}]));
    idp.patch(&u, &flagged)
        .await
        .expect_success("path-less replace with dotted keys");
    let read = idp.get_ok(&u).await;
    assert_eq!(read["name"]["givenName"], "Kkom", "{read}");
    assert_eq!(read["name"]["familyName"], "Unua");
    assert_eq!(read["displayName"], "Bjfe");
    assert_eq!(read[ENTERPRISE_USER_SCHEMA]["employeeNumber"], "Aklq");
    assert!(
        read.get("name.givenName").is_none(),
        "dotted key stored literally: {read}"
    );

    // 7. Disable and re-enable: [COMPAT] "Requests made to disable users" without the flag sends
    //    the string "False" (AzureAD/SCIMReferenceCode#21: "our service sends it as a string").
    let disable = patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    idp.patch(&u, &disable)
        .await
        .expect_success("disable with string");
    assert_eq!(idp.get_ok(&u).await["active"], false);
    let enable = patch_op(json!([{"op": "Replace", "path": "active", "value": "True"}]));
    idp.patch(&u, &enable)
        .await
        .expect_success("enable with string");
    assert_eq!(idp.get_ok(&u).await["active"], true);

    // 8. Groups: [TUTORIAL] "Get Group by displayName" and "Create Group" (non-standard schema URN,
    //    client meta, externalId, no members), then "Get Group" with excludedAttributes=members.
    let lookup = idp
        .get("/Groups?excludedAttributes=members&filter=displayName eq \"Sales\"")
        .await;
    assert_eq!(lookup.expect(200, "match group").total_results(), 0);
    let group = json!({
        "schemas": [GROUP_SCHEMA, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "Sales",
        "meta": {"resourceType": "Group"}
    });
    let sales = idp.create("/Groups", &group).await;
    let g = format!("/Groups/{sales}");
    let read = idp
        .get(&format!("{g}?excludedAttributes=members"))
        .await
        .expect(200, "get group");
    assert_eq!(read.body["displayName"], "Sales");
    assert!(member_ids(&read.body).is_empty());

    // 9. Members added one PATCH each, concurrently (Infisical/infisical#6471: "Entra sometimes sends
    //    group membership update as individual concurrent request"; scimmyjs/scimmy#79).
    let adds = [
        add_member(&user),
        add_member(&manager),
        add_member(&no_mail),
    ];
    for reply in idp.patch_concurrently(&g, &adds).await {
        reply.expect_success("concurrent Add");
    }
    assert_eq!(
        member_ids(&idp.get_ok(&g).await),
        sorted(&[&user, &manager, &no_mail])
    );

    // 10. Removal in both dialects, and a retried removal of a member already gone (2xx).
    idp.patch(&g, &remove_member_by_value(&manager))
        .await
        .expect_success("Remove by value array");
    idp.patch(&g, &remove_member_by_value(&manager))
        .await
        .expect_success("retried Remove");
    let filtered =
        patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{no_mail}\"]")}]));
    idp.patch(&g, &filtered)
        .await
        .expect_success("remove by filter");
    assert_eq!(member_ids(&idp.get_ok(&g).await), sorted(&[&user]));

    // 11. [TUTORIAL] "Update Group [Non-member attributes]".
    let rename = patch_op(json!([{"op": "Replace", "path": "displayName", "value": "Sales EMEA"}]));
    idp.patch(&g, &rename).await.expect_success("rename group");
    let renamed = idp
        .get("/Groups?excludedAttributes=members&filter=displayName eq \"sales emea\"")
        .await;
    assert_eq!(renamed.expect(200, "renamed lookup").total_results(), 1);

    // 12. Unassign: soft delete → active=false, sent as op "Add" with a string (rancher/rancher#54025).
    let unassign = patch_op(json!([{"op": "Add", "path": "active", "value": "False"}]));
    idp.patch(&u, &unassign).await.expect_success("unassign");
    assert_eq!(idp.get_ok(&u).await["active"], false);

    // 13. Hard delete after the 30-day soft-delete window: [TUTORIAL] "Delete User", then the
    //     group ("Delete Group"). The user leaves the group with the delete.
    idp.delete(&u).await.expect(204, "delete user");
    idp.get(&u).await.expect(404, "deleted user");
    assert!(member_ids(&idp.get_ok(&g).await).is_empty());
    idp.delete(&g).await.expect(204, "delete group");

    // Final state: two users left, both active, the manager link intact.
    assert_eq!(
        idp.count("/Users?startIndex=1&count=100").await,
        2,
        "final users"
    );

    served
        .watch_sequences(
            &idp,
            Of::User,
            &[
                (
                    user.as_str(),
                    &[
                        "user.created",
                        "user.updated",
                        "user.updated",
                        "user.updated",
                        "user.deactivated",
                        "user.reactivated",
                        "member.added",
                        "user.deactivated",
                        "member.removed",
                        "user.deleted",
                    ],
                ),
                (
                    manager.as_str(),
                    &["user.created", "member.added", "member.removed"],
                ),
                (
                    no_mail.as_str(),
                    &[
                        "user.created",
                        "user.updated",
                        "member.added",
                        "member.removed",
                    ],
                ),
            ],
        )
        .await;
}
