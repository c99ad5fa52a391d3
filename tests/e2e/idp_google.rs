//! Google Workspace replay: automated user provisioning of a custom SAML app —
//! users only, a count=1 activation check, full-user updates, suspension and
//! unsuspension, and the *Delete* deprovisioning choice on a directory whose
//! policy keeps users (deactivate).
//!
//! Sources, cited below: [GOOGLE] Google Workspace Admin Help, automated user
//! provisioning (support.google.com/a/answer/7681608: users only, "synced every
//! few hours", active/suspended/deleted users; deprovisioning triggers Suspend
//! or Delete with a delay); [AUTHN] authn.sh, "SCIM 2.0 with Google Workspace"
//! (the `/Users?count=1` probe). Google does not publish request bodies; the
//! requests follow RFC 7644 otherwise.

use roster_testkit::app;
use roster_testkit::app::Of;
use roster_testkit::app::{ENTERPRISE_USER_SCHEMA, USER_SCHEMA};
use serde_json::{Value, json};

/// A user as mapped from Google's directory: primary e-mail as userName, names, department, employee id.
fn google_user(primary_email: &str, first: &str, last: &str, employee_id: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        "userName": primary_email,
        "name": {"givenName": first, "familyName": last},
        "emails": [{"value": primary_email, "type": "work", "primary": true}],
        "active": true,
        ENTERPRISE_USER_SCHEMA: {"department": "Finance", "employeeNumber": employee_id}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn google_provisions_users_suspends_and_deletes_as_deactivation() {
    // Google's client.
    let (served, idp) = app::replay("google", "deactivate").await;
    let idp = idp.with_content_type("application/json");

    // 1. Activation: [AUTHN] "Google fires a probe against /scim/v2/Users?count=1".
    assert_eq!(idp.count("/Users?count=1").await, 0, "probe");

    // 2. Sync: lookup by primary e-mail, then create, for three people in scope.
    let mut ids = Vec::new();
    for (mail, first, last, employee) in [
        ("Maria.Garcia@Example.org", "Maria", "Garcia", "E100"),
        ("li.wei@example.org", "Li", "Wei", "E101"),
        ("sam.o@example.org", "Sam", "Okafor", "E102"),
    ] {
        let lookup = idp
            .get(&format!("/Users?filter=userName eq \"{mail}\""))
            .await;
        assert_eq!(lookup.expect(200, "lookup").total_results(), 0);
        let created = idp
            .post("/Users", &google_user(mail, first, last, employee))
            .await;
        ids.push(created.expect(201, "create").id());
    }
    let maria = ids[0].clone();
    let u = format!("/Users/{maria}");

    // 3. The next sync reads page by page; pages are stable and counted exactly.
    let page = idp.get("/Users?startIndex=2&count=1").await;
    let page = page.expect(200, "page 2");
    let paging = [Some(3), Some(1), Some(2)];
    assert_eq!(
        page.paging(),
        paging,
        "totalResults, itemsPerPage, startIndex"
    );
    assert_eq!(page.resources()[0]["id"], ids[1].as_str());

    // 4. A changed department arrives as the whole mapped user.
    let mut update = google_user("Maria.Garcia@Example.org", "Maria", "Garcia", "E100");
    update[ENTERPRISE_USER_SCHEMA]["department"] = json!("Treasury");
    idp.put(&u, &update).await.expect(200, "PUT user");
    assert_eq!(
        idp.get_ok(&u).await[ENTERPRISE_USER_SCHEMA]["department"],
        "Treasury"
    );

    // 5. [GOOGLE] "When a user is suspended on Google: Suspend", later unsuspended.
    let suspend = app::patch_op(json!([{"op": "replace", "path": "active", "value": false}]));
    idp.patch(&u, &suspend).await.expect_success("suspend");
    let restore = app::patch_op(json!([{"op": "replace", "path": "active", "value": true}]));
    idp.patch(&u, &restore).await.expect_success("unsuspend");

    // 6. [GOOGLE] "When a user is deleted from Google: Delete" — the directory keeps the user
    //    (policy deactivate); a repeated DELETE (Google retries) changes nothing.
    idp.delete(&u).await.expect(204, "delete");
    idp.delete(&u).await.expect(204, "repeated delete");
    let kept = idp.get_ok(&u).await;
    assert_eq!(kept["active"], false);
    assert_eq!(
        idp.count("/Users?filter=active eq true").await,
        2,
        "active users"
    );

    served
        .watch_sequences(
            &idp,
            Of::User,
            &[(
                maria.as_str(),
                &[
                    "user.created",
                    "user.updated",
                    "user.deactivated",
                    "user.reactivated",
                    "user.deactivated",
                ],
            )],
        )
        .await;
}
