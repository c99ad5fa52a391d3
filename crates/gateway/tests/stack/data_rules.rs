//! Exact data rules over the real stack (gateway over HTTP, directory service
//! over gRPC, PostgreSQL): timestamps, type errors, extensions, NUL
//! characters, `active` removal and Entra ID's matching queries. The store
//! conformance suite checks the store-level parts on both backends.

use roster_testkit::app;
use roster_testkit::app::{
    ENTERPRISE_USER_SCHEMA, ERROR_SCHEMA, GROUP_SCHEMA, SEARCH_REQUEST_SCHEMA, USER_SCHEMA,
};
use roster_testkit::app::{Reply, Scim, Stack, user};
use serde_json::{Value, json};

fn encode(filter: &str) -> String {
    let mut out = String::new();
    for b in filter.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn search(scim: &Scim, endpoint: &str, filter: &str) -> Reply {
    scim.get(&format!("/{endpoint}?filter={}", encode(filter)))
        .await
}

async fn ids_matching(scim: &Scim, endpoint: &str, filter: &str) -> Vec<String> {
    let r = search(scim, endpoint, filter).await;
    assert_eq!(r.status, 200, "{filter}: {:?}", r.body);
    r.resources()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_scim_error(r: &Reply, status: u16, scim_type: &str, what: &str) {
    assert_eq!(
        (r.status, r.scim_type()),
        (status, scim_type),
        "{what}: {:?}",
        r.body
    );
    assert_eq!(r.body["schemas"], json!([ERROR_SCHEMA]), "{what}");
    let detail = r.body["detail"].as_str().unwrap_or_default().to_lowercase();
    for word in ["sqlstate", "sql", "postgres", "sqlite", "database"] {
        assert!(!detail.contains(word), "{what}: detail {detail:?}");
    }
}

#[tokio::test]
async fn datetime_filters_compare_at_the_rendered_precision() {
    let (_stack, scim) = Stack::with_directory("gw_dt_precision").await;
    let id = scim.create_user("precise@example.com").await;
    let got = scim.get(&format!("/Users/{id}")).await;
    let modified = got.body["meta"]["lastModified"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = got.body["meta"]["created"].as_str().unwrap().to_owned();

    for (filter, expected) in [
        (format!(r#"meta.lastModified gt "{modified}""#), vec![]),
        (
            format!(r#"meta.lastModified ge "{modified}""#),
            vec![id.clone()],
        ),
        (
            format!(r#"meta.lastModified eq "{modified}""#),
            vec![id.clone()],
        ),
        (format!(r#"meta.lastModified lt "{modified}""#), vec![]),
        (format!(r#"meta.created gt "{created}""#), vec![]),
        (format!(r#"meta.created le "{created}""#), vec![id.clone()]),
    ] {
        assert_eq!(
            ids_matching(&scim, "Users", &filter).await,
            expected,
            "{filter}"
        );
    }
}

#[tokio::test]
async fn values_of_the_wrong_json_type_are_rejected_and_never_stored() {
    let (_stack, scim) = Stack::with_directory("gw_types").await;
    let with = |key: &str, value: Value| {
        let mut body = user("typed@example.com");
        body[key] = value;
        body
    };
    for (body, what) in [
        (with("name", json!("Alice Anders")), "name as a string"),
        (with("emails", json!("a@example.com")), "emails as a string"),
        (with("emails", json!([42])), "an email as a number"),
        (
            with("displayName", json!({"x": 1})),
            "displayName as an object",
        ),
        (with("title", json!(["a", "b"])), "title as an array"),
        (with("nickName", json!(true)), "nickName as a boolean"),
        (with("userName", json!(12)), "userName as a number"),
        (
            with("active", json!("maybe")),
            "active as a non-boolean string",
        ),
        (
            with("phoneNumbers", json!([{"value": {"n": 1}}])),
            "phone value as an object",
        ),
        (with("schemas", json!(USER_SCHEMA)), "schemas as a string"),
        (
            with(ENTERPRISE_USER_SCHEMA, json!("Sales")),
            "the enterprise extension as a string",
        ),
    ] {
        let r = scim.post("/Users", &body).await;
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
        assert!(
            matches!(r.scim_type(), "invalidValue" | "invalidSyntax"),
            "{what}: {:?}",
            r.body
        );
    }
    let none = ids_matching(&scim, "Users", r#"userName eq "typed@example.com""#).await;
    assert!(none.is_empty(), "nothing was stored");

    let id = scim.create_user("typed@example.com").await;
    let replace = |value: Value| json!([{"op": "replace", "path": "name", "value": value}]);
    let r = scim
        .patch_ops(&format!("/Users/{id}"), replace(json!("Alice Anders")))
        .await;
    assert_scim_error(&r, 400, "invalidValue", "PATCH name with a string");
    let r = scim
        .patch_ops(
            &format!("/Users/{id}"),
            json!({"op": "replace", "path": "title", "value": "x"}),
        )
        .await;
    assert_eq!(r.status, 400, "Operations as an object: {:?}", r.body);
    let got = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(
        got.body["name"],
        json!({"givenName": "Given", "familyName": "Family"})
    );

    // Documented IdP shapes stay accepted: Entra ID's string booleans and
    // bare-string manager.
    let mut entra = user("entra-shapes@example.com");
    entra["active"] = json!("True");
    entra[ENTERPRISE_USER_SCHEMA] = json!({"manager": "some-manager-id"});
    let r = scim.post("/Users", &entra).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["active"], true);
}

#[tokio::test]
async fn undefined_extensions_are_kept_verbatim() {
    let (_stack, scim) = Stack::with_directory("gw_ext").await;
    let urn = "urn:example:params:scim:schemas:extension:acme:2.0:User";
    let mut body = user("ext@example.com");
    body["schemas"] = json!([USER_SCHEMA, urn]);
    body[urn] = json!({"costCenter": "CC-42", "badges": [{"value": "b1"}], "level": 3});
    let created = scim.post("/Users", &body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let got = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(got.body[urn], body[urn], "{:?}", got.body);
    assert!(
        got.body["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(urn))
    );
    let found = ids_matching(&scim, "Users", &format!(r#"{urn}:costCenter eq "CC-42""#)).await;
    assert_eq!(found, [id]);

    // Declared in `schemas` but its data is not an object: not storable as
    // an extension.
    let mut bad = user("ext2@example.com");
    bad["schemas"] = json!([USER_SCHEMA, urn]);
    bad[urn] = json!("CC-42");
    let r = scim.post("/Users", &bad).await;
    assert_scim_error(
        &r,
        400,
        "invalidValue",
        "an extension that is not an object",
    );
}

#[tokio::test]
async fn nul_characters_are_rejected_before_the_database() {
    let (_stack, scim) = Stack::with_directory("gw_nul").await;
    let id = scim.create_user("nul@example.com").await;
    for filter in [
        "userName eq \"a\u{0}b\"",
        r#"userName eq "a\u0000b""#,
        r#"nickName eq "\u0000""#,
        r#"emails[type eq "work"].value co "\u0000""#,
    ] {
        let r = search(&scim, "Users", filter).await;
        assert_scim_error(&r, 400, "invalidFilter", filter);
    }
    let r = search(&scim, "Groups", r#"displayName co "\u0000""#).await;
    assert_scim_error(&r, 400, "invalidFilter", "NUL in a group filter");

    let mut body = user("nul2@example.com");
    body["nickName"] = json!("a\u{0}b");
    let r = scim.post("/Users", &body).await;
    assert_scim_error(&r, 400, "invalidValue", "NUL in a body string");
    let r = scim
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "title", "value": "x\u{0}"}]),
        )
        .await;
    assert_scim_error(&r, 400, "invalidValue", "NUL in a PATCH value");
    let r = scim
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA],
                    "displayName": "g\u{0}"}),
        )
        .await;
    assert_scim_error(&r, 400, "invalidValue", "NUL in a group body");
}

#[tokio::test]
async fn a_filter_beyond_the_bind_parameter_limit_is_a_400() {
    let (_stack, scim) = Stack::with_directory("gw_bindlimit").await;
    scim.create_user("bind@example.com").await;
    // Above PostgreSQL's 65,535 bind parameters (a term on an attribute
    // without a column binds its JSON path and its value), below the 1 MiB
    // body limit.
    let filter = (0..45_000)
        .map(|i| format!("x eq {i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    assert!(filter.len() < 1024 * 1024);
    let r = scim
        .post(
            "/Users/.search",
            &json!({"schemas": [SEARCH_REQUEST_SCHEMA],
                    "filter": filter}),
        )
        .await;
    assert_scim_error(&r, 400, "invalidFilter", "a filter with 70,000 terms");
}

#[tokio::test]
async fn removing_active_deactivates_the_user() {
    let (_stack, scim) = Stack::with_directory("gw_rm_active").await;
    let id = scim.create_user("rm-active@example.com").await;
    let r = scim
        .patch_ok(
            &format!("/Users/{id}"),
            json!([{"op": "remove", "path": "active"}]),
        )
        .await;
    assert_eq!(r["active"], false);
    let got = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(got.body["active"], false, "{:?}", got.body);
    assert_eq!(ids_matching(&scim, "Users", "active eq false").await, [id]);
}

#[tokio::test]
async fn entra_id_matching_queries_find_the_user() {
    let (_stack, scim) = Stack::with_directory("gw_entra_match").await;
    let ent = ENTERPRISE_USER_SCHEMA;
    let mut body = user("jdoe@contoso.com");
    body["emails"] = json!([
        {"value": "jdoe@contoso.com", "type": "work", "primary": true},
        {"value": "jd@home.example", "type": "home"}
    ]);
    body["phoneNumbers"] = json!([{"value": "+1 555 0100", "type": "work"}]);
    body["addresses"] =
        json!([{"type": "work", "streetAddress": "1 Main St", "locality": "Redmond"}]);
    body[ent] = json!({"employeeNumber": "701984"});
    let created = scim.post("/Users", &body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    scim.create_user("other@contoso.com").await;

    for filter in [
        r#"userName eq "JDOE@contoso.com""#.to_string(),
        r#"externalId eq "ext-jdoe@contoso.com""#.to_string(),
        r#"displayName eq "jdoe@contoso.com""#.to_string(),
        r#"emails[type eq "work"].value eq "jdoe@contoso.com""#.to_string(),
        r#"emails[type eq "home"].value eq "jd@home.example""#.to_string(),
        r#"phoneNumbers[type eq "work"].value eq "+1 555 0100""#.to_string(),
        r#"addresses[type eq "work"].streetAddress eq "1 Main St""#.to_string(),
        format!(r#"{ent}:employeeNumber eq "701984""#),
    ] {
        assert_eq!(
            ids_matching(&scim, "Users", &filter).await,
            std::slice::from_ref(&id),
            "{filter}"
        );
    }
    assert!(
        ids_matching(
            &scim,
            "Users",
            r#"emails[type eq "home"].value eq "jdoe@contoso.com""#
        )
        .await
        .is_empty()
    );

    let group = scim.post("/Groups", &app::group("Sales", &[&id])).await;
    assert_eq!(group.status, 201, "{:?}", group.body);
    let gid = group.body["id"].as_str().unwrap().to_owned();
    let r = scim
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            encode(r#"displayName eq "Sales""#)
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.resources()[0]["id"], gid.as_str());
    assert_eq!(
        ids_matching(&scim, "Groups", &format!(r#"members[value eq "{id}"]"#)).await,
        [gid]
    );
}
