//! PingOne / PingFederate replay: the SCIM provisioner with an admin-written
//! filter expression, full-user PUTs (no user PATCH), disable and re-enable by
//! PUT, a user provisioned already disabled, groups found by paging through
//! every group, group PATCH for membership, and Remove User Action = Delete.
//!
//! Sources, cited below: [SETTINGS] Ping Identity, "SCIM provisioner settings
//! reference" (docs.pingidentity.com/integrations/scim/setup/pf_scim_connector_
//! scim_connector_settings_reference.html); [FEATURES] "SCIM Provisioner"
//! feature table (…/integrations/scim/pf_scim_connector.html: PATCH — Users:
//! No, Groups: Yes; groups filtered "by retrieving all groups and finding a
//! match"); [FILTERS] PingOne "SCIM filter expressions" (examples
//! `username Eq "%s"`).

use roster_testkit::app;
use roster_testkit::app::Of;
use roster_testkit::app::{GROUP_SCHEMA, Scim, USER_SCHEMA, member_ids, patch_op, sorted};
use serde_json::{Value, json};

/// The user Ping writes on create and on every update: the whole mapped user.
fn ping_user(user_name: &str, first: &str, last: &str, active: bool) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": first, "familyName": last},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": active
    })
}

/// [FILTERS] the admin's own filter expression `username Eq "%s"`.
async fn find_user(idp: &Scim, user_name: &str) -> Vec<Value> {
    idp.get(&format!("/Users?filter=username Eq \"{user_name}\""))
        .await
        .expect(200, "find user")
        .resources()
}

#[tokio::test(flavor = "multi_thread")]
async fn pingone_puts_users_pages_groups_and_deletes() {
    // Ping's client (Apache HttpClient based; plain JSON).
    let (served, idp) = app::replay("pingone", "delete").await;
    let idp = idp.with_content_type("application/json");

    // 1. Create after a miss with the differently-cased filter expression.
    assert!(find_user(&idp, "kim@example.net").await.is_empty());
    let kim = idp
        .create("/Users", &ping_user("kim@example.net", "Kim", "Park", true))
        .await;
    let u = format!("/Users/{kim}");
    assert_eq!(find_user(&idp, "KIM@example.net").await.len(), 1);

    // 2. [SETTINGS] "Provision Disabled Users": a user that is disabled at the source is created disabled.
    let lee = ping_user("lee@example.net", "Lee", "Cho", false);
    let lee = idp
        .post("/Users", &lee)
        .await
        .expect(201, "create disabled");
    assert_eq!(lee.body["active"], false);
    let lee = lee.id();

    // 3. [FEATURES] no user PATCH: updates, disable ("Remove User Action: Disable") and re-enable
    //    ("PingFederate can also re-enable disabled users") are full PUTs.
    idp.put(&u, &ping_user("kim@example.net", "Kim", "Park-Lee", true))
        .await
        .expect(200, "update");
    idp.put(&u, &ping_user("kim@example.net", "Kim", "Park-Lee", false))
        .await
        .expect(200, "disable");
    assert_eq!(idp.get_ok(&u).await["active"], false);
    idp.put(&u, &ping_user("kim@example.net", "Kim", "Park-Lee", true))
        .await
        .expect(200, "re-enable");

    // 4. Groups: [FEATURES] "group filtering by retrieving all groups and finding a match" — Ping
    //    pages through /Groups, so pages must be stable and totalResults exact.
    for name in ["Admins", "Auditors", "Engineering"] {
        let group = json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []});
        idp.post("/Groups", &group)
            .await
            .expect(201, "create group");
    }
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let page = idp
            .get(&format!("/Groups?startIndex={start}&count=2"))
            .await
            .expect(200, "groups page");
        assert_eq!(page.total_results(), 3);
        let resources = page.resources();
        if resources.is_empty() {
            break;
        }
        seen.extend(resources);
        start += 2;
    }
    let mut names: Vec<&str> = seen
        .iter()
        .filter_map(|g| g["displayName"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["Admins", "Auditors", "Engineering"]);
    let engineering = seen
        .iter()
        .find(|g| g["displayName"] == "Engineering")
        .expect("found by paging");
    let g = format!("/Groups/{}", engineering["id"].as_str().expect("group id"));

    // 5. [FEATURES] PATCH for groups: add both users, remove the disabled one.
    let add = patch_op(
        json!([{"op": "add", "path": "members", "value": [{"value": kim}, {"value": lee}]}]),
    );
    idp.patch(&g, &add).await.expect_success("add members");
    let remove =
        patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{lee}\"]")}]));
    idp.patch(&g, &remove).await.expect_success("remove member");
    assert_eq!(member_ids(&idp.get_ok(&g).await), sorted(&[&kim]));

    // 6. [SETTINGS] "Remove User Action: Delete" when kim leaves the provisioning rule.
    idp.delete(&u).await.expect(204, "delete user");
    idp.get(&u).await.expect(404, "deleted");
    assert!(member_ids(&idp.get_ok(&g).await).is_empty());

    served
        .watch_sequences(
            &idp,
            Of::User,
            &[
                (
                    kim.as_str(),
                    &[
                        "user.created",
                        "user.updated",
                        "user.deactivated",
                        "user.reactivated",
                        "member.added",
                        "member.removed",
                        "user.deleted",
                    ],
                ),
                (
                    lee.as_str(),
                    &["user.created", "member.added", "member.removed"],
                ),
            ],
        )
        .await;
}
