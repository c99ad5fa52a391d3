//! Generic SCIM 2.0 client replay: a client that follows RFC 7644 to the
//! letter — discovery, create with Location/ETag, conditional reads and
//! writes, PATCH with value-filtered paths, search by POST, groups, delete.
//!
//! Source: RFC 7644 (www.rfc-editor.org/rfc/rfc7644) and RFC 7643; section
//! numbers are cited at each step. See docs/idp/generic.md.

use reqwest::Method;
use roster_proto::directory::change;
use roster_testkit::app;
use roster_testkit::app::Of;
use roster_testkit::app::SEARCH_REQUEST_SCHEMA;
use roster_testkit::app::{GROUP_SCHEMA, USER_SCHEMA, patch_op};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn generic_rfc7644_client_lifecycle() {
    // A client sending RFC 7644 §3.1 media types.
    let (served, idp) = app::replay("generic", "delete").await;

    // 1. Discovery (§4): the three endpoints answer, and PATCH and filtering are advertised.
    let config = idp.get_ok("/ServiceProviderConfig").await;
    assert_eq!(config["patch"]["supported"], true);
    assert!(
        config["filter"]["maxResults"]
            .as_i64()
            .is_some_and(|n| n > 0),
        "{config}"
    );
    idp.get("/ResourceTypes").await.expect(200, "ResourceTypes");
    idp.get("/Schemas").await.expect(200, "Schemas");

    // 2. Create (§3.3): 201 with Location and ETag equal to meta.version (§3.14).
    let body = json!({
        "schemas": [USER_SCHEMA],
        "userName": "bjensen",
        "externalId": "bjensen",
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ]
    });
    let created = idp.post("/Users", &body).await.expect(201, "create");
    let id = created.id();
    let u = format!("/Users/{id}");
    let etag = created.header("etag").expect("ETag on create");
    assert_eq!(created.body["meta"]["version"].as_str(), Some(etag));
    assert!(
        created.header("location").is_some_and(|l| l.ends_with(&u)),
        "Location: {:?}",
        created.header("location")
    );
    // RFC 7643 §4.1.1 leaves `active` to the service provider; Roster treats an absent
    // `active` as active (checked on the event payload below), so it must not read as false.
    assert_ne!(created.body["active"], false);

    // 3. Conditional read (§3.14): If-None-Match with the current ETag is 304.
    let not_modified = idp.with_header("if-none-match", etag).get(&u).await;
    assert_eq!(not_modified.status, 304);

    // 4. PATCH (§3.5.2): remove the home e-mail by value filter, add a nickname; the ETag changes.
    let patch = patch_op(json!([
        {"op": "remove", "path": "emails[type eq \"home\"]"},
        {"op": "add", "path": "nickName", "value": "Babs"}
    ]));
    let patched = idp.patch(&u, &patch).await.expect_success("PATCH");
    let read = idp.get(&u).await.expect(200, "after PATCH");
    assert_eq!(
        read.body["emails"].as_array().map(Vec::len),
        Some(1),
        "{}",
        read.body
    );
    assert_eq!(read.body["nickName"], "Babs");
    let new_etag = read.header("etag").expect("ETag");
    assert_ne!(new_etag, etag);
    drop(patched);

    // 5. Conditional replace (§3.5.1, §3.14): the stale ETag is 412, the current one succeeds.
    let mut replacement = read.body.clone();
    replacement["title"] = json!("Tour Guide");
    let stale = idp
        .with_header("if-match", etag)
        .put(&u, &replacement)
        .await;
    assert_eq!(stale.status, 412);
    let fresh = idp
        .with_header("if-match", new_etag)
        .put(&u, &replacement)
        .await;
    assert_eq!(fresh.status, 200);

    // 6. Search by POST (§3.4.3) with a case-insensitive userName match (RFC 7643 §4.1.1).
    let search = json!({
        "schemas": [SEARCH_REQUEST_SCHEMA],
        "filter": "userName eq \"BJENSEN\"",
        "startIndex": 1,
        "count": 10
    });
    let found = idp
        .send(Method::POST, "/Users/.search", Some(&search))
        .await
        .expect(200, ".search");
    assert_eq!(found.total_results(), 1);
    assert_eq!(found.resources()[0]["id"], id.as_str());

    // 7. A group created with its member (§3.3), then deleted (§3.6).
    let group = json!({"schemas": [GROUP_SCHEMA], "displayName": "Tour Guides", "members": [{"value": id}]});
    let group = idp.create("/Groups", &group).await;
    idp.delete(&format!("/Groups/{group}"))
        .await
        .expect(204, "delete group");

    // 8. Delete (§3.6): 204, then 404 for the resource and an empty filter result.
    idp.delete(&u).await.expect(204, "delete");
    idp.get(&u).await.expect(404, "deleted");
    assert_eq!(
        idp.count("/Users?filter=userName eq \"bjensen\"").await,
        0,
        "filter after delete"
    );

    let events = served
        .watch_sequences(
            &idp,
            Of::User,
            &[(
                id.as_str(),
                &[
                    "user.created",
                    "user.updated",
                    "user.updated",
                    "member.added",
                    "member.removed",
                    "user.deleted",
                ],
            )],
        )
        .await;
    let created_event = events.iter().find_map(|e| match &e.resource {
        Some(change::Resource::User(user)) if e.resource_id == id => Some(user.clone()),
        _ => None,
    });
    assert!(
        created_event.expect("user payload").active,
        "a user created without `active` is active"
    );
    served
        .watch_sequences(
            &idp,
            Of::Group,
            &[(
                &group,
                &[
                    "group.created",
                    "member.added",
                    "member.removed",
                    "group.deleted",
                ],
            )],
        )
        .await;
}
