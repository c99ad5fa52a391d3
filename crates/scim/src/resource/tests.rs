use super::*;
use crate::ScimType;
use serde_json::json;

#[test]
fn prepare_user_cleans_and_normalizes() {
    let (raw, u) = prepare_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "client-id", "meta": {"version": "x"}, "groups": [{"value": "g"}], "password": "hunter2",
        "userName": "bjensen@example.com", "externalId": "ext-1", "displayName": "Babs",
        "name": {"givenName": "Barbara", "familyName": "Jensen"}, "title": "Guide",
        "emails": [{"value": "b@example.com", "type": "work", "primary": "True"}, {"value": "c@example.com"}],
        ENTERPRISE_USER_SCHEMA: {"department": "Tours", "employeeNumber": "701984", "manager": {"value": "m1"}},
        "urn:example:custom:2.0:User": {"badge": "42"}
    }))
    .unwrap();
    for gone in ["id", "meta", "groups", "password"] {
        assert!(raw.get(gone).is_none(), "{gone} dropped");
    }
    assert_eq!(raw["urn:example:custom:2.0:User"], json!({"badge": "42"}));
    assert!(
        raw["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE_USER_SCHEMA))
    );
    assert_eq!(raw["emails"][0]["primary"], true);
    assert_eq!(
        u,
        NormalizedUser {
            user_name: "bjensen@example.com".into(),
            external_id: Some("ext-1".into()),
            active: true,
            display_name: Some("Babs".into()),
            given_name: Some("Barbara".into()),
            family_name: Some("Jensen".into()),
            emails: vec![
                NormalizedEmail {
                    value: "b@example.com".into(),
                    r#type: "work".into(),
                    primary: true
                },
                NormalizedEmail {
                    value: "c@example.com".into(),
                    r#type: String::new(),
                    primary: false
                },
            ],
            title: Some("Guide".into()),
            department: Some("Tours".into()),
            manager_id: Some("m1".into()),
            employee_number: Some("701984".into()),
            custom_attributes: Default::default(),
        }
    );
}

#[test]
fn user_name_is_required() {
    for body in [
        json!({"schemas": [USER_SCHEMA]}),
        json!({"schemas": [USER_SCHEMA], "userName": ""}),
        json!({"schemas": [USER_SCHEMA], "userName": {"x": 1}}),
    ] {
        let e = prepare_user(body).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    }
}

#[test]
fn schemas_rules() {
    // Missing schemas: tolerated and filled in.
    let (raw, _) = prepare_user(json!({"userName": "a"})).unwrap();
    assert_eq!(raw["schemas"], json!([USER_SCHEMA]));
    // A single string: a type error (no IdP is documented to send it).
    let e = prepare_user(json!({"schemas": USER_SCHEMA, "userName": "a"})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    // Case-insensitive URN.
    assert!(
        prepare_user(json!({"schemas": [USER_SCHEMA.to_uppercase()], "userName": "a"})).is_ok()
    );
    // Wrong resource type.
    let e = prepare_user(json!({"schemas": [GROUP_SCHEMA], "userName": "a"})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    let e = prepare_user(json!("nope")).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
}

#[test]
fn active_defaults_to_true_and_accepts_string_booleans() {
    let (_, u) = prepare_user(json!({"userName": "a"})).unwrap();
    assert!(u.active);
    let (_, u) = prepare_user(json!({"userName": "a", "active": "false"})).unwrap();
    assert!(!u.active);
    let e = prepare_user(json!({"userName": "a", "active": "maybe"})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn attribute_names_are_case_insensitive() {
    let (_, u) = prepare_user(json!({"USERNAME": "a", "Name": {"GivenName": "B"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"Department": "D"}}))
    .unwrap();
    assert_eq!(u.user_name, "a");
    assert_eq!(u.given_name.as_deref(), Some("B"));
    assert_eq!(u.department.as_deref(), Some("D"));
}

#[test]
fn prepare_group_splits_members() {
    let (raw, g) = prepare_group(
        json!({"schemas": [GROUP_SCHEMA], "id": "x", "displayName": "Admins",
        "externalId": "e", "members": [{"value": "u1", "type": "User", "display": "Bob"}, "u2",
        {"$ref": "https://h/scim/v2/Groups/g7"}]}),
    )
    .unwrap();
    assert_eq!(
        raw,
        json!({"schemas": [GROUP_SCHEMA], "displayName": "Admins", "externalId": "e"})
    );
    assert_eq!(g.display_name, "Admins");
    let ids: Vec<&str> = g.members.iter().map(|m| m.value.as_str()).collect();
    assert_eq!(ids, ["u1", "u2", "g7"]);
    assert_eq!(g.members[0].r#type.as_deref(), Some("User"));
    assert_eq!(
        member_json(&g.members[0]),
        json!({"value": "u1", "type": "User", "display": "Bob"})
    );
}

#[test]
fn prepare_group_errors() {
    let e = prepare_group(json!({"schemas": [GROUP_SCHEMA]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    let e =
        prepare_group(json!({"displayName": "G", "members": [{"display": "Bob"}]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    assert!(e.detail.contains("display"));
    // A single member object instead of an array: a type error (no IdP is
    // documented to send it in a Group body).
    let e = prepare_group(json!({"displayName": "G", "members": {"value": "u1"}})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn lookup_prefers_primary() {
    let u = json!({"emails": [{"value": "a"}, {"value": "b", "primary": "true"}], "name": {"givenName": "G"}});
    assert_eq!(
        lookup(&u, &AttrPath::with_sub("emails", "value")),
        Some(&json!("b"))
    );
    assert_eq!(
        lookup(&u, &AttrPath::with_sub("NAME", "givenname")),
        Some(&json!("G"))
    );
    assert_eq!(lookup(&u, &AttrPath::new("missing")), None);
    let no_primary = json!({"emails": [{"type": "x"}, {"value": "c"}]});
    assert_eq!(
        lookup(&no_primary, &AttrPath::with_sub("emails", "value")),
        Some(&json!("c"))
    );
}

#[test]
fn normalize_user_after_patch() {
    let raw = json!({"userName": "a", ENTERPRISE_USER_SCHEMA: {"manager": "m9"}});
    assert_eq!(
        normalize_user(&raw).unwrap().manager_id.as_deref(),
        Some("m9")
    );
    let e = normalize_user(&json!({"userName": "a", "emails": ["x"]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn onelogin_template_blanks_normalize_to_absent() {
    let (raw, u) = prepare_user(json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], "userName": "Jane@Example.com",
        "name": {"familyName": "Doe", "givenName": ""}, "title": "", "userType": "",
        "emails": [{"value": "jane@example.com", "type": "work", "primary": true}, {"value": ""}],
        ENTERPRISE_USER_SCHEMA: {"department": "Engineering", "manager": {"value": "", "displayName": " "}}
    }))
    .unwrap();
    assert_eq!(u.title, None);
    assert_eq!(u.given_name, None);
    assert_eq!(u.manager_id, None);
    assert_eq!(u.emails.len(), 1);
    assert_eq!(u.department.as_deref(), Some("Engineering"));
    assert_eq!(raw["title"], "", "raw keeps what the IdP sent");
}
