//! Rippling replay: a custom app declaring groups, pagination, "Create &
//! Delete Groups" and "Use PATCH to edit Groups" with mutually exclusive
//! groups — discovery, hire with a retried create, profile changes, a move
//! between groups, termination, then DELETE on a directory that keeps users.
//!
//! Sources, cited below: [SETUP] WorkOS "Rippling SCIM" and Kombo "Rippling
//! SCIM" setup guides (declared features and supported attributes
//! externalId, emails.primary, name.givenName, name.familyName,
//! employeeNumber); [AUTHN] authn.sh "SCIM 2.0 with Rippling" (Test connection
//! probes /ServiceProviderConfig); [RETRY] integration notes that Rippling
//! retries and may POST the same person twice. Rippling does not publish
//! bodies; the requests follow RFC 7644 otherwise.

use roster_testkit::app;
use roster_testkit::app::Of;
use roster_testkit::app::{
    ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA, member_ids, patch_op, sorted,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn rippling_hires_moves_and_terminates() {
    // Rippling's client.
    let (served, idp) = app::replay("rippling", "deactivate").await;

    // 1. Test connection: [AUTHN] GET /ServiceProviderConfig; the declared features must be there.
    let config = idp.get_ok("/ServiceProviderConfig").await;
    assert_eq!(config["patch"]["supported"], true);
    assert_eq!(config["filter"]["supported"], true);
    assert_eq!(
        idp.count("/Users?startIndex=1&count=100").await,
        0,
        "import"
    );

    // 2. Hire: [SETUP] attributes externalId, emails.primary, names, employeeNumber.
    let manager = json!({"schemas": [USER_SCHEMA], "userName": "ceo@acme.io", "externalId": "rp-1",
        "name": {"givenName": "Chris", "familyName": "Eo"},
        "emails": [{"value": "ceo@acme.io", "primary": true}], "active": true});
    let manager = idp.create("/Users", &manager).await;
    let hire = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        "externalId": "rp-42",
        "userName": "noor@acme.io",
        "name": {"givenName": "Noor", "familyName": "Haddad"},
        "emails": [{"value": "noor@acme.io", "primary": true}],
        "title": "Analyst",
        "active": true,
        ENTERPRISE_USER_SCHEMA: {"employeeNumber": "42"}
    });
    let noor = idp.create("/Users", &hire).await;
    let u = format!("/Users/{noor}");

    // 3. [RETRY] the same hire posted again: 409 uniqueness, and the filter finds the existing user.
    let retry = idp.post("/Users", &hire).await.expect(409, "retried hire");
    assert_eq!(retry.body["scimType"], "uniqueness");
    let found = idp
        .get("/Users?filter=userName eq \"noor@acme.io\"")
        .await
        .expect(200, "find");
    assert_eq!(found.resources()[0]["id"], noor.as_str());

    // 4. Promotion with a new manager (object form) and department, in one PATCH.
    let promote = patch_op(json!([
        {"op": "replace", "path": "title", "value": "Senior Analyst"},
        {"op": "replace", "path": format!("{ENTERPRISE_USER_SCHEMA}:manager"), "value": {"value": manager}},
        {"op": "add", "path": format!("{ENTERPRISE_USER_SCHEMA}:department"), "value": "Finance"}
    ]));
    idp.patch(&u, &promote).await.expect_success("promotion");
    let read = idp.get_ok(&u).await;
    assert_eq!(read["title"], "Senior Analyst");
    assert_eq!(
        read[ENTERPRISE_USER_SCHEMA]["manager"]["value"],
        manager.as_str()
    );

    // 5. Mutually exclusive groups ([SETUP]): groups are created by Rippling, a move is a remove
    //    from one group and an add to the other.
    let mut groups = Vec::new();
    for name in ["Finance", "Strategy"] {
        let group = json!({"schemas": [GROUP_SCHEMA], "displayName": name});
        groups.push(format!("/Groups/{}", idp.create("/Groups", &group).await));
    }
    let add = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": noor}]}]));
    idp.patch(&groups[0], &add)
        .await
        .expect_success("join Finance");
    let remove =
        patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{noor}\"]")}]));
    idp.patch(&groups[0], &remove)
        .await
        .expect_success("leave Finance");
    idp.patch(&groups[1], &add)
        .await
        .expect_success("join Strategy");
    assert!(member_ids(&idp.get_ok(&groups[0]).await).is_empty());
    assert_eq!(member_ids(&idp.get_ok(&groups[1]).await), sorted(&[&noor]));

    // 6. Termination: active false; Rippling's later DELETE changes nothing more on a directory
    //    that keeps users (policy deactivate) and emits nothing.
    let terminate = patch_op(json!([{"op": "replace", "path": "active", "value": false}]));
    idp.patch(&u, &terminate).await.expect_success("terminate");
    idp.delete(&u).await.expect(204, "delete after termination");
    assert_eq!(idp.get_ok(&u).await["active"], false);

    // 7. The Strategy group is deleted ("Create & Delete Groups").
    idp.delete(&groups[1]).await.expect(204, "delete group");

    served
        .watch_sequences(
            &idp,
            Of::User,
            &[(
                noor.as_str(),
                &[
                    "user.created",
                    "user.updated",
                    "member.added",
                    "member.removed",
                    "member.added",
                    "user.deactivated",
                    "member.removed",
                ],
            )],
        )
        .await;
}
