//! SCIM 1.1 over real HTTP: the same directory, token and directory
//! service as 2.0, with the 1.1 shapes at the edge — and the same stored
//! state and `WatchChanges` events whichever dialect wrote it.

use std::collections::HashMap;

use reqwest::Method;
use roster_proto::admin::DeprovisionPolicy;
use roster_proto::directory::{Change, change};
use roster_testkit::app::{
    Reply, Scim, Stack, USER_SCHEMA, changes_up_to, head_revision, kind_name, user,
};
use serde_json::{Value, json};

const CORE_1: &str = "urn:scim:schemas:core:1.0";
const ENTERPRISE_1: &str = "urn:scim:schemas:extension:enterprise:1.0";
const ENTERPRISE_2: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Panics unless `reply` is a 1.1 error with `status`: `{"Errors":
/// [{"description", "code"}]}` and nothing of the 2.0 error.
fn assert_v1_error(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    let errors = reply.body["Errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not a 1.1 error: {}", reply.text));
    assert_eq!(errors.len(), 1, "{what}");
    assert_eq!(errors[0]["code"], status.to_string(), "{what}");
    assert!(
        errors[0]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}"
    );
    assert!(
        reply.body.get("schemas").is_none(),
        "{what}: {}",
        reply.text
    );
    assert!(reply.body.get("status").is_none(), "{what}: {}", reply.text);
}

fn v1_user(user_name: &str) -> Value {
    json!({
        "schemas": [CORE_1, ENTERPRISE_1],
        "userName": user_name,
        "externalId": format!("ext-{user_name}"),
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "displayName": "Babs Jensen",
        "emails": [
            {"value": user_name, "type": "work", "primary": true},
            {"value": "babs@home.example.com", "type": "home"}
        ],
        "entitlements": [{"value": "tour-admin"}],
        "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAw"}],
        ENTERPRISE_1: {"employeeNumber": "701984", "manager": {"managerId": "m-1", "displayName": "John"}},
        "active": true
    })
}

/// What a 2.0 client sends for the same user.
fn v2_user(user_name: &str) -> Value {
    let mut user = v1_user(user_name);
    let extension = user.as_object_mut().unwrap().remove(ENTERPRISE_1).unwrap();
    user["schemas"] = json!([USER_SCHEMA, ENTERPRISE_2]);
    user[ENTERPRISE_2] = extension;
    user[ENTERPRISE_2]["manager"] = json!({"value": "m-1", "displayName": "John"});
    user
}

#[tokio::test]
async fn users_over_1_1_have_the_1_1_shapes() {
    let (_stack, scim) = Stack::with_directory("gw_v1_users").await;
    let v1 = scim.v1();

    let created = v1.post("/Users", &v1_user("bjensen@example.com")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = format!("{}/Users/{id}", v1.base_url);
    assert!(location.contains("/scim/v1/"));
    assert_eq!(created.header("location"), Some(location.as_str()));
    assert_eq!(created.body["schemas"], json!([CORE_1, ENTERPRISE_1]));
    let meta = created.body["meta"].as_object().unwrap();
    assert!(!meta.contains_key("resourceType"), "1.1 meta: {meta:?}");
    for key in ["created", "lastModified", "location", "version"] {
        assert!(meta.contains_key(key), "1.1 meta has {key}: {meta:?}");
    }
    assert_eq!(created.header("etag"), meta["version"].as_str());
    assert_eq!(
        created.body[ENTERPRISE_1]["manager"],
        json!({"managerId": "m-1", "displayName": "John"})
    );
    assert!(created.body.get(ENTERPRISE_2).is_none());
    assert_eq!(
        created.body["x509Certificates"],
        v1_user("x")["x509Certificates"]
    );

    // The same user over 2.0: stored in the 2.0 form.
    let v2 = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(v2.body[ENTERPRISE_2]["manager"]["value"], "m-1");
    assert_eq!(v2.body["meta"]["resourceType"], "User");

    // Lists: 1.1 shape, 1.1 filter (names and operators in any case).
    let listed = v1
        .get("/Users?filter=USERNAME%20Eq%20%22BJENSEN%40example.com%22&sortBy=userName&sortOrder=ascending")
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body["schemas"], json!([CORE_1]));
    assert_eq!(listed.paging(), [Some(1), Some(1), Some(1)]);
    assert_eq!(listed.body["Resources"][0]["id"], id.as_str());
    assert_eq!(
        listed.body["Resources"][0]["schemas"],
        json!([CORE_1, ENTERPRISE_1])
    );

    // An enterprise attribute named the 1.1 way, in a filter and in `attributes`.
    let by_number = v1
        .get("/Users?filter=urn:scim:schemas:extension:enterprise:1.0.employeeNumber%20eq%20%22701984%22&attributes=urn:scim:schemas:extension:enterprise:1.0.employeeNumber")
        .await;
    assert_eq!(by_number.body["totalResults"], 1, "{}", by_number.text);
    let only = &by_number.body["Resources"][0];
    assert_eq!(only[ENTERPRISE_1], json!({"employeeNumber": "701984"}));
    assert!(only.get("emails").is_none(), "{only}");

    // PATCH: meta.attributes, a delete, a merge, a complex replace.
    let patched = v1
        .patch(
            &format!("/Users/{id}"),
            &json!({
                "schemas": [CORE_1],
                "meta": {"attributes": ["nickName", "x509Certificates"]},
                "name": {"givenName": "Babs"},
                "emails": [
                    {"value": "babs@home.example.com", "operation": "delete"},
                    {"value": "BJENSEN@example.com", "display": "Work"}
                ],
                ENTERPRISE_1: {"manager": {"managerId": "m-2"}}
            }),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        patched.body["name"],
        json!({"givenName": "Babs", "familyName": "Jensen"})
    );
    // Matched case-insensitively (emails are not caseExact), then merged:
    // the sent sub-attributes win, the others stay.
    assert_eq!(
        patched.body["emails"],
        json!([{"value": "BJENSEN@example.com", "type": "work", "primary": true, "display": "Work"}])
    );
    assert!(patched.body.get("x509Certificates").is_none());
    assert_eq!(patched.body[ENTERPRISE_1]["manager"]["managerId"], "m-2");

    // PUT replaces; a stale If-Match is 412 in the 1.1 shape.
    let stale = created.header("etag").unwrap().to_owned();
    let put = v1
        .with_header("if-match", &stale)
        .put(&format!("/Users/{id}"), &v1_user("bjensen@example.com"))
        .await;
    assert_v1_error(&put, 412, "stale If-Match");
    let put = v1
        .send(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(
                &json!({"schemas": [CORE_1], "userName": "bjensen@example.com", "title": "Guide"}),
            ),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["title"], "Guide");
    assert!(put.body.get("emails").is_none());

    let deleted = v1.send(Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(deleted.status, 204);
    assert_v1_error(&v1.get(&format!("/Users/{id}")).await, 404, "deleted user");
}

#[tokio::test]
async fn groups_over_1_1_have_1_1_members() {
    let (_stack, scim) = Stack::with_directory("gw_v1_groups").await;
    let v1 = scim.v1();
    let u1 = scim.create_user("u1@example.com").await;
    let u2 = scim.create_user("u2@example.com").await;
    let u3 = scim.create_user("u3@example.com").await;

    let created = v1
        .post(
            "/Groups",
            &json!({"schemas": [CORE_1], "displayName": "Tour Guides",
                    "members": [{"value": u1, "display": "stale"}, {"value": u2}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let gid = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["schemas"], json!([CORE_1]));
    for member in created.body["members"].as_array().unwrap() {
        assert!(member.get("$ref").is_none(), "{member}");
        assert_eq!(member["type"], "User");
    }

    // 1.1 member changes: add one, delete one; 204 as for 2.0 groups.
    let patched = v1
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [CORE_1],
                    "members": [{"value": u3}, {"value": u1, "operation": "delete"}]}),
        )
        .await;
    assert_eq!(patched.status, 204, "{}", patched.text);
    let read = v1.get(&format!("/Groups/{gid}")).await;
    let mut ids: Vec<&str> = read.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![u2.as_str(), u3.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert!(!read.text.contains("$ref"), "{}", read.text);

    // Replace all members: clear them, then add (the 1.1 idiom).
    let replaced = v1
        .patch(
            &format!("/Groups/{gid}?attributes=members"),
            &json!({"meta": {"attributes": ["members"]}, "members": [{"value": u1}]}),
        )
        .await;
    assert_eq!(
        replaced.status, 200,
        "attributes asks for the group: {}",
        replaced.text
    );
    assert_eq!(
        replaced.body["members"],
        json!([{"value": u1, "type": "User", "display": "u1@example.com"}])
    );

    // A user's groups over 1.1 carry no $ref either.
    let user = v1.get(&format!("/Users/{u1}")).await;
    assert_eq!(
        user.body["groups"],
        json!([{"value": gid, "type": "direct"}])
    );

    // The list of groups, excluding members, by a 1.1 filter.
    let listed = v1
        .get("/Groups?filter=displayName%20sw%20%22tour%22&attributes=displayName")
        .await;
    assert_eq!(listed.body["totalResults"], 1, "{}", listed.text);
    assert!(listed.body["Resources"][0].get("members").is_none());
}

#[tokio::test]
async fn discovery_and_the_1_1_path_spellings() {
    let (_stack, scim) = Stack::with_directory("gw_v1_discovery").await;
    let v1 = scim.v1();

    let config = v1.get("/ServiceProviderConfigs").await;
    assert_eq!(config.status, 200, "{}", config.text);
    assert_eq!(config.body["schemas"], json!([CORE_1]));
    assert_eq!(config.body["patch"]["supported"], true);
    assert_eq!(config.body["bulk"]["supported"], false);
    assert_eq!(config.body["xmlDataFormat"]["supported"], false);

    let schemas = v1.get("/Schemas").await;
    assert_eq!(schemas.body["totalResults"], 3, "{}", schemas.text);
    let users = v1.get("/Schemas/Users").await;
    assert_eq!(users.body["id"], "urn:scim:schemas:core:1.0:User");
    assert_eq!(users.body["endpoint"], "/Users");
    assert_v1_error(&v1.get("/Schemas/Nothing").await, 404, "unknown schema");

    // `…/v1/Users` and `.json`, as 1.1 clients write them.
    let id = v1.post("/v1/Users", &v1_user("spell@example.com")).await;
    assert_eq!(id.status, 201, "{}", id.text);
    let id = id.body["id"].as_str().unwrap().to_owned();
    let read = v1.get(&format!("/v1/Users/{id}.json")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["id"], id.as_str());
    assert_eq!(v1.get("/Users.json").await.body["totalResults"], 1);
}

#[tokio::test]
async fn malformed_1_1_requests_get_1_1_errors() {
    let (_stack, scim) = Stack::with_directory("gw_v1_errors").await;
    let v1 = scim.v1();
    let id = v1.post("/Users", &v1_user("taken@example.com")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = format!("/Users/{id}");

    let raw = |body: &'static str| {
        let v1 = v1.clone();
        let user = user.clone();
        async move {
            let response = v1
                .request(Method::PATCH, &user)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            Reply::read(response).await.unwrap()
        }
    };
    for (body, what) in [
        ("{", "truncated JSON"),
        ("", "empty body"),
        ("\"x\"", "a string"),
    ] {
        assert_v1_error(&raw(body).await, 400, what);
    }
    let cases: Vec<(Method, &str, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/Users",
            json!({"schemas": [CORE_1], "userName": "taken@example.com"}),
            409,
            "uniqueness",
        ),
        (
            Method::POST,
            "/Users",
            json!({"schemas": [CORE_1]}),
            400,
            "no userName",
        ),
        (
            Method::POST,
            "/Users",
            json!({"userName": "x", "emails": [{"value": "a@b", "operation": "delete"}]}),
            400,
            "operation in a POST",
        ),
        (
            Method::POST,
            "/Users",
            json!({"userName": "y", "name": "Alice"}),
            400,
            "wrong type",
        ),
        (
            Method::PATCH,
            user.as_str(),
            json!({"meta": {"attributes": "title"}}),
            400,
            "meta.attributes not a list",
        ),
        (
            Method::PATCH,
            user.as_str(),
            json!({"meta": {"attributes": ["emails[type"]}}),
            400,
            "bad attribute name",
        ),
        (
            Method::PATCH,
            user.as_str(),
            json!({"emails": [{"value": "a@b", "operation": "merge"}]}),
            400,
            "unknown operation",
        ),
        (
            Method::PATCH,
            user.as_str(),
            json!({"meta": {"attributes": ["userName"]}}),
            400,
            "required attribute removed",
        ),
        (
            Method::PATCH,
            user.as_str(),
            json!({ENTERPRISE_1: "x"}),
            400,
            "extension not an object",
        ),
        (
            Method::PATCH,
            "/Users/no-such-user",
            json!({"title": "x"}),
            404,
            "unknown user",
        ),
        (
            Method::PATCH,
            "/Groups/no-such-group",
            json!({"members": [{"display": "x"}]}),
            400,
            "member without value",
        ),
        (
            Method::POST,
            "/Bulk",
            json!({"Operations": []}),
            501,
            "1.1 bulk",
        ),
        (
            Method::DELETE,
            "/Users",
            json!({}),
            405,
            "method not allowed",
        ),
        (Method::GET, "/Nothing", json!({}), 404, "unknown endpoint"),
    ];
    for (method, path, body, status, what) in cases {
        let body = (method != Method::GET).then_some(&body);
        assert_v1_error(&v1.send(method, path, body).await, status, what);
    }
    for filter in [
        "userName%20ne%20%22x%22",
        "not%20(userName%20eq%20%22x%22)",
        "emails%5Btype%20eq%20%22work%22%5D",
        "userName%20eq",
    ] {
        let reply = v1.get(&format!("/Users?filter={filter}")).await;
        assert_v1_error(&reply, 400, filter);
    }
    assert_v1_error(&v1.get("/Users?count=ten").await, 400, "bad count");

    // A PATCH that changes nothing answers the resource unchanged (no
    // write, no event), after the same If-Match check as any PATCH.
    let before = v1.get(&user).await;
    let nothing = json!({"schemas": [CORE_1], "id": id, "groups": []});
    let same = v1.patch(&user, &nothing).await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.header("etag"), before.header("etag"));
    assert_eq!(same.body, before.body);
    let stale = v1
        .with_header("if-match", "W/\"999\"")
        .patch(&user, &nothing)
        .await;
    assert_v1_error(&stale, 412, "stale If-Match on a no-op PATCH");
    assert_v1_error(
        &v1.patch("/Users/no-such-user", &nothing).await,
        404,
        "no-op PATCH of an unknown user",
    );

    // Authentication failures are 1.1 errors too, with their header.
    let anonymous = Scim::new(&v1.base_url, "rst_not-a-token").v1();
    let denied = anonymous.get("/Users").await;
    assert_v1_error(&denied, 401, "bad token");
    assert!(denied.header("www-authenticate").is_some());
    let unknown_directory = Scim::new(
        &v1.base_url
            .replace(&scim.directory_id, "00000000-0000-0000-0000-000000000000"),
        &scim.token,
    )
    .v1();
    assert_v1_error(
        &unknown_directory.get("/Users").await,
        401,
        "another directory",
    );

    // 2.0 is untouched: its errors keep the 2.0 shape.
    let v2 = scim
        .post("/Users", &json!({"userName": "taken@example.com"}))
        .await;
    assert_eq!(v2.status, 409);
    assert_eq!(v2.body["status"], "409");
}

/// A change with everything that names the directory, the resource or the
/// time left out: what must be equal when the same thing happened in two
/// directories.
fn comparable(change: &Change) -> Value {
    let resource = match &change.resource {
        Some(change::Resource::User(u)) => {
            let mut raw: Value = serde_json::from_str(&u.raw).unwrap_or(Value::Null);
            if let Some(obj) = raw.as_object_mut() {
                obj.remove("id");
                obj.remove("meta");
            }
            json!({
                "user_name": u.user_name, "external_id": u.external_id,
                "display_name": u.display_name, "given_name": u.given_name,
                "family_name": u.family_name, "active": u.active, "title": u.title,
                "department": u.department, "manager_id": u.manager_id,
                "employee_number": u.employee_number,
                "emails": u.emails.iter().map(|e| json!([e.value, e.r#type, e.primary])).collect::<Vec<_>>(),
                "raw": raw,
            })
        }
        other => json!(format!("{other:?}")),
    };
    let fields: Vec<Value> = change
        .changed_fields
        .iter()
        .map(|f| json!([f.field, f.previous, f.current]))
        .collect();
    json!({
        "kind": kind_name(change.kind),
        "version": change.version,
        "tombstone": change.tombstone,
        "changed_fields": fields,
        "resource": resource,
    })
}

/// A user written in two steps, each in the dialect given, then read
/// back over 2.0 and from the change stream.
async fn write_in(stack: &Stack, create_v1: bool, patch_v1: bool) -> (Value, Vec<Value>) {
    let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let v1 = scim.v1();
    let name = "mixed@example.com";
    let id = match create_v1 {
        true => v1.post("/Users", &v1_user(name)).await,
        false => scim.post("/Users", &v2_user(name)).await,
    }
    .expect(201, "create")
    .id();
    let path = format!("/Users/{id}");
    // One change, spelled in each dialect: drop the home e-mail, set the
    // title, clear the nick name, move the manager.
    let patched = match patch_v1 {
        true => {
            v1.patch(
                &path,
                &json!({
                    "meta": {"attributes": ["nickName"]},
                    "title": "Guide",
                    "emails": [{"value": "babs@home.example.com", "operation": "delete"}],
                    ENTERPRISE_1: {"manager": {"managerId": "m-2"}}
                }),
            )
            .await
        }
        false => {
            scim.patch_ops(
                &path,
                json!([
                    {"op": "remove", "path": "nickName"},
                    {"op": "replace", "path": "title", "value": "Guide"},
                    {"op": "remove", "path": "emails[value eq \"babs@home.example.com\"]"},
                    {"op": "replace", "path": format!("{ENTERPRISE_2}:manager"), "value": {"value": "m-2"}}
                ]),
            )
            .await
        }
    };
    patched.expect(200, "patch");
    let mut state = scim.get(&path).await.body;
    let obj = state.as_object_mut().unwrap();
    obj.remove("id");
    obj.remove("meta");
    let grpc = stack.server.addr.to_string();
    let head = head_revision(&grpc, &scim.directory_id).await;
    let events = changes_up_to(&grpc, &scim.directory_id, head)
        .await
        .iter()
        .filter(|c| c.resource_id == id)
        .map(comparable)
        .collect();
    (state, events)
}

#[tokio::test]
async fn either_dialect_writes_the_same_state_and_events() {
    let stack = Stack::start("gw_v1_mixed").await;
    let (state, events) = write_in(&stack, false, false).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["kind"], "user.created");
    assert_eq!(events[1]["kind"], "user.updated");
    for (create_v1, patch_v1) in [(true, false), (false, true), (true, true)] {
        let (other_state, other_events) = write_in(&stack, create_v1, patch_v1).await;
        let what = format!(
            "created over {}, patched over {}",
            if create_v1 { "1.1" } else { "2.0" },
            if patch_v1 { "1.1" } else { "2.0" }
        );
        assert_eq!(other_state, state, "{what}");
        assert_eq!(other_events, events, "{what}");
    }
}

#[tokio::test]
async fn sorting_paging_and_multi_valued_attributes_over_1_1() {
    let (_stack, scim) = Stack::with_directory("gw_v1_sorting").await;
    let v1 = scim.v1();
    for (name, number) in [
        ("a@example.com", "3"),
        ("b@example.com", "1"),
        ("c@example.com", "2"),
    ] {
        let mut body = v1_user(name);
        body[ENTERPRISE_1]["employeeNumber"] = json!(number);
        v1.post("/Users", &body).await.expect(201, name);
    }
    let sorted = v1
        .get("/Users?sortBy=urn:scim:schemas:extension:enterprise:1.0.employeeNumber&sortOrder=descending&startIndex=2&count=1")
        .await;
    assert_eq!(sorted.status, 200, "{}", sorted.text);
    assert_eq!(sorted.paging(), [Some(3), Some(1), Some(2)]);
    // Descending by employeeNumber: a (3), c (2), b (1); the second is c.
    assert_eq!(sorted.body["Resources"][0]["userName"], "c@example.com");

    // 1.1 sorts strings case-insensitively ("String type attributes are
    // case-insensitive by default", draft-scim-api-01 "Sorting").
    for (name, display) in [
        ("d@example.com", "alpha"),
        ("e@example.com", "Beta"),
        ("f@example.com", "gamma"),
    ] {
        let mut body = v1_user(name);
        body["displayName"] = json!(display);
        v1.post("/Users", &body).await.expect(201, name);
    }
    let by_name = v1
        .get("/Users?filter=userName%20sw%20%22d%22%20or%20userName%20sw%20%22e%22%20or%20userName%20sw%20%22f%22&sortBy=displayName")
        .await;
    let names = by_name.texts("Resources", "displayName");
    assert_eq!(names, ["alpha", "Beta", "gamma"], "{}", by_name.text);

    // entitlements and x509Certificates: the same attributes in both
    // versions, kept as sent and patched the 1.1 way.
    let found = v1
        .get("/Users?filter=userName%20eq%20%22a%40example.com%22")
        .await;
    let id = found.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patched = v1
        .patch(
            &format!("/Users/{id}"),
            &json!({"entitlements": [
                {"value": "tour-admin", "operation": "delete"},
                {"value": "billing", "display": "Billing", "primary": true}
            ]}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        patched.body["entitlements"],
        json!([{"value": "billing", "display": "Billing", "primary": true}])
    );
    let v2 = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(v2.body["entitlements"], patched.body["entitlements"]);
    assert_eq!(
        v2.body["x509Certificates"],
        v1_user("x")["x509Certificates"]
    );
}

/// A group's change with its directory's ids replaced by user names.
fn comparable_group_change(change: &Change, names: &HashMap<String, String>) -> Value {
    let name = |id: &str| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| "the group".to_owned())
    };
    let resource = match &change.resource {
        Some(change::Resource::Membership(m)) => json!({"member": name(&m.member_id)}),
        Some(change::Resource::Group(g)) => {
            let mut raw: Value = serde_json::from_str(&g.raw).unwrap_or(Value::Null);
            if let Some(obj) = raw.as_object_mut() {
                obj.remove("id");
                obj.remove("meta");
                obj.remove("members");
            }
            json!({"display_name": g.display_name, "member_count": g.member_count, "raw": raw})
        }
        other => json!(format!("{other:?}")),
    };
    json!({"kind": kind_name(change.kind), "version": change.version, "resource": resource})
}

/// A group created with two members and then changed (one member in, one
/// out, a new name), each step in the dialect given; its events.
async fn group_written_in(stack: &Stack, create_v1: bool, patch_v1: bool) -> Vec<Value> {
    let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    let v1 = scim.v1();
    let mut names = HashMap::new();
    let mut ids = Vec::new();
    for name in ["u1@example.com", "u2@example.com", "u3@example.com"] {
        let id = scim.create("/Users", &user(name)).await;
        names.insert(id.clone(), name.to_owned());
        ids.push(id);
    }
    let (u1, u2, u3) = (&ids[0], &ids[1], &ids[2]);
    let gid = match create_v1 {
        true => {
            let body = json!({"schemas": [CORE_1], "displayName": "Guides",
                              "members": [{"value": u1}, {"value": u2}]});
            v1.post("/Groups", &body).await
        }
        false => {
            let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                              "displayName": "Guides", "members": [{"value": u1}, {"value": u2}]});
            scim.post("/Groups", &body).await
        }
    }
    .expect(201, "create group")
    .id();
    let path = format!("/Groups/{gid}");
    let patched = match patch_v1 {
        true => {
            let body = json!({"displayName": "Tour Guides",
                              "members": [{"value": u3}, {"value": u1, "operation": "delete"}]});
            v1.patch(&path, &body).await
        }
        false => {
            let ops = json!([
                {"op": "replace", "path": "displayName", "value": "Tour Guides"},
                {"op": "add", "path": "members", "value": [{"value": u3}]},
                {"op": "remove", "path": "members", "value": [{"value": u1}]}
            ]);
            scim.patch_ops(&path, ops).await
        }
    };
    patched.expect(204, "patch group");
    let grpc = stack.server.addr.to_string();
    let head = head_revision(&grpc, &scim.directory_id).await;
    changes_up_to(&grpc, &scim.directory_id, head)
        .await
        .iter()
        .filter(|c| match &c.resource {
            Some(change::Resource::Membership(m)) => m.group_id == gid,
            _ => c.resource_id == gid,
        })
        .map(|c| comparable_group_change(c, &names))
        .collect()
}

#[tokio::test]
async fn either_dialect_writes_the_same_group_events() {
    let stack = Stack::start("gw_v1_group_events").await;
    let events = group_written_in(&stack, false, false).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"member.removed"), "{events:#?}");
    assert!(kinds.contains(&"group.updated"), "{events:#?}");
    for (create_v1, patch_v1) in [(true, false), (false, true), (true, true)] {
        let other = group_written_in(&stack, create_v1, patch_v1).await;
        assert_eq!(
            other, events,
            "group created over 1.1: {create_v1}, patched over 1.1: {patch_v1}"
        );
    }
}
