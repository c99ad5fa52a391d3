use super::*;
use crate::ScimType;
use serde_json::json;

const ID: &str = "2819c223-7f76-453a-919d-413861904646";

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": ID,
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"}],
        "meta": {"resourceType": "User", "version": "W/\"1\""}
    })
}

fn req(ops: Value) -> PatchRequest {
    PatchRequest::parse(&json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops}))
        .unwrap_or_else(|e| panic!("parse failed: {e}"))
}

fn run(resource: &Value, ops: Value) -> Result<Value, ScimError> {
    apply(resource, ResourceKind::User, &req(ops).operations)
}

fn ok(ops: Value) -> Value {
    run(&user(), ops).unwrap_or_else(|e| panic!("apply failed: {e}"))
}

fn fails(ops: Value) -> ScimError {
    match run(&user(), ops) {
        Ok(v) => panic!("unexpectedly applied: {v}"),
        Err(e) => e,
    }
}

/// Asserts that each PATCH of `cases` fails with `scim_type`.
fn each_fails_with<const N: usize>(scim_type: ScimType, cases: [Value; N]) {
    for ops in cases {
        assert_eq!(fails(ops.clone()).scim_type, Some(scim_type), "{ops}");
    }
}

// ---- RFC 7644 §3.5.2.1 (add) ----

#[test]
fn rfc_add_without_path() {
    let out = ok(json!([{"op": "add", "value": {
        "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "b@new.org", "type": "other"}],
        "nickname": "Babs"}}]));
    // The RFC's example spells it `nickname`; stored as the schema spells it.
    assert_eq!(out["nickName"], "Babs", "{out}");
    let emails = out["emails"].as_array().unwrap();
    assert_eq!(
        emails.len(),
        3,
        "existing equal value not duplicated: {emails:?}"
    );
    assert_eq!(emails[2]["value"], "b@new.org");
}

#[test]
fn rfc_add_members_to_group() {
    let group = json!({"schemas": [crate::schema::GROUP_SCHEMA], "displayName": "Tour Guides"});
    let ops = req(json!([{"op": "add", "path": "members", "value": [{
        "display": "Babs Jensen", "$ref": format!("https://example.com/v2/Users/{ID}"), "value": ID}]}]));
    let out = apply(&group, ResourceKind::Group, &ops.operations).unwrap();
    assert_eq!(out["members"][0]["value"], ID);
    let plan = plan_group_patch(&ops).unwrap();
    assert_eq!(
        plan,
        vec![GroupPatchStep::AddMembers(vec![MemberValue {
            value: ID.into(),
            r#type: None,
            display: Some("Babs Jensen".into())
        }])]
    );
}

#[test]
fn add_to_single_valued_and_complex_attributes() {
    let out = ok(json!([
        {"op": "add", "path": "title", "value": "Tour Guide"},
        {"op": "add", "path": "name", "value": {"middleName": "Jane"}},
        {"op": "add", "path": "name.honorificPrefix", "value": "Ms."}
    ]));
    assert_eq!(out["title"], "Tour Guide");
    assert_eq!(
        out["name"],
        json!({"givenName": "Barbara", "familyName": "Jensen", "middleName": "Jane", "honorificPrefix": "Ms."})
    );
}

// ---- RFC 7644 §3.5.2.2 (remove) ----

#[test]
fn rfc_remove_single_member_and_all_members() {
    let group = json!({"schemas": [crate::schema::GROUP_SCHEMA], "displayName": "G",
        "members": [{"value": ID}, {"value": "902c246b-6245-4190-8e05-00816be7344a"}]});
    let one = req(json!([{"op": "remove", "path": format!("members[value eq \"{ID}\"]")}]));
    let out = apply(&group, ResourceKind::Group, &one.operations).unwrap();
    assert_eq!(
        out["members"],
        json!([{"value": "902c246b-6245-4190-8e05-00816be7344a"}])
    );
    assert_eq!(
        plan_group_patch(&one).unwrap(),
        vec![GroupPatchStep::RemoveMembers(vec![ID.into()])]
    );
    let all = req(json!([{"op": "remove", "path": "members"}]));
    let out = apply(&group, ResourceKind::Group, &all.operations).unwrap();
    assert!(out.get("members").is_none());
    assert_eq!(
        plan_group_patch(&all).unwrap(),
        vec![GroupPatchStep::RemoveAllMembers]
    );
}

#[test]
fn rfc_remove_with_complex_filter() {
    let out = ok(
        json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]),
    );
    assert_eq!(
        out["emails"],
        json!([{"value": "babs@jensen.org", "type": "home"}])
    );
}

#[test]
fn rfc_replace_one_member_by_remove_then_add() {
    let ops = req(json!([
        {"op": "remove", "path": format!("members[value eq \"{ID}\"]")},
        {"op": "add", "path": "members", "value": [{"display": "James Smith", "value": "08e1d05d"}]}
    ]));
    let plan = plan_group_patch(&ops).unwrap();
    assert_eq!(plan.len(), 2);
    assert!(matches!(&plan[1], GroupPatchStep::AddMembers(m) if m[0].value == "08e1d05d"));
}

#[test]
fn remove_of_absent_things_is_a_no_op() {
    let before = user();
    assert_eq!(ok(json!([{"op": "remove", "path": "nickName"}])), before);
    assert_eq!(
        ok(json!([{"op": "remove", "path": "emails[type eq \"fax\"]"}])),
        before
    );
    assert_eq!(
        ok(
            json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}])
        ),
        before
    );
}

#[test]
fn remove_sub_attributes() {
    let out = ok(json!([
        {"op": "remove", "path": "name.givenName"},
        {"op": "remove", "path": "emails[type eq \"work\"].primary"}
    ]));
    assert_eq!(out["name"], json!({"familyName": "Jensen"}));
    assert!(out["emails"][0].get("primary").is_none());
}

#[test]
fn remove_without_path_is_no_target() {
    let e = PatchRequest::parse(&json!({"Operations": [{"op": "remove"}]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
}

// ---- RFC 7644 §3.5.2.3 (replace) ----

#[test]
fn rfc_replace_members() {
    let group = json!({"schemas": [crate::schema::GROUP_SCHEMA], "displayName": "G", "members": [{"value": "old"}]});
    let ops = req(json!([{"op": "replace", "path": "members", "value": [
        {"display": "Babs Jensen", "value": ID}, {"display": "James Smith", "value": "08e1d05d"}]}]));
    let out = apply(&group, ResourceKind::Group, &ops.operations).unwrap();
    assert_eq!(out["members"].as_array().unwrap().len(), 2);
    assert!(
        matches!(&plan_group_patch(&ops).unwrap()[0], GroupPatchStep::ReplaceMembers(m) if m.len() == 2)
    );
}

#[test]
fn rfc_replace_filtered_element_and_sub_attribute() {
    let address = json!({"type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood",
        "region": "CA", "postalCode": "91608", "country": "US",
        "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US", "primary": true});
    let out =
        ok(json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": address}]));
    assert_eq!(out["addresses"], json!([address]));
    let out = ok(
        json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]),
    );
    assert_eq!(out["addresses"][0]["streetAddress"], "1010 Broadway Ave");
    assert_eq!(out["addresses"][0]["locality"], "Hollywood");
}

#[test]
fn rfc_replace_without_path() {
    let out = ok(json!([{"op": "replace", "value": {
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                   {"value": "babs@jensen.org", "type": "home"}],
        "nickname": "Babs"}}]));
    assert_eq!(out["emails"].as_array().unwrap().len(), 2);
    assert_eq!(out["nickName"], "Babs", "{out}");
}

#[test]
fn replace_complex_merges_and_multi_valued_replaces() {
    let out = ok(json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs"}}]));
    assert_eq!(
        out["name"],
        json!({"givenName": "Babs", "familyName": "Jensen"})
    );
    let out = ok(json!([{"op": "replace", "path": "emails", "value": [{"value": "x@y"}]}]));
    assert_eq!(out["emails"], json!([{"value": "x@y"}]));
}

#[test]
fn replace_with_null_removes() {
    let out = ok(json!([{"op": "replace", "path": "name.givenName", "value": null}]));
    assert_eq!(out["name"], json!({"familyName": "Jensen"}));
}

// ---- extensions ----

#[test]
fn extension_qualified_paths() {
    let ext = crate::schema::ENTERPRISE_USER_SCHEMA;
    let out = ok(json!([
        {"op": "add", "path": format!("{ext}:manager"), "value": {"value": "m1"}},
        {"op": "replace", "path": format!("{ext}:manager.value"), "value": "m2"},
        {"op": "add", "path": format!("{ext}:employeeNumber"), "value": "701984"}
    ]));
    assert_eq!(
        out[ext],
        json!({"manager": {"value": "m2"}, "employeeNumber": "701984"})
    );
    assert!(
        out["schemas"].as_array().unwrap().contains(&json!(ext)),
        "extension listed in schemas"
    );
    let out = run(
        &out,
        json!([{"op": "remove", "path": format!("{ext}:manager")}]),
    )
    .unwrap();
    assert_eq!(out[ext], json!({"employeeNumber": "701984"}));
}

#[test]
fn pathless_urn_keys_and_dotted_keys() {
    let ext = crate::schema::ENTERPRISE_USER_SCHEMA;
    let out = ok(json!([{"op": "replace", "value": {
        ext: {"department": "Tours", "manager": {"value": "m1"}},
        format!("{ext}:costCenter"): "4130",
        "name.familyName": "Jensen-Smith",
        "emails[type eq \"work\"].value": "babs@work.example",
        "urn:example:custom:2.0:User": {"badge": "42"}
    }}]));
    assert_eq!(
        out[ext],
        json!({"department": "Tours", "manager": {"value": "m1"}, "costCenter": "4130"})
    );
    assert_eq!(out["name"]["familyName"], "Jensen-Smith");
    assert_eq!(out["emails"][0]["value"], "babs@work.example");
    assert_eq!(
        out["urn:example:custom:2.0:User"],
        json!({"badge": "42"}),
        "unknown extension preserved"
    );
}

#[test]
fn whole_extension_path() {
    let ext = crate::schema::ENTERPRISE_USER_SCHEMA;
    let out = ok(json!([{"op": "add", "path": ext, "value": {"division": "West"}}]));
    assert_eq!(out[ext], json!({"division": "West"}));
    let out = run(&out, json!([{"op": "remove", "path": ext}])).unwrap();
    assert!(out.get(ext).is_none());
}

#[test]
fn names_are_case_insensitive() {
    let out = ok(
        json!([{"op": "replace", "path": "NAME.GIVENNAME", "value": "Babs"},
                       {"op": "replace", "path": "Emails[TYPE eq \"work\"].Value", "value": "x@y"}]),
    );
    assert_eq!(out["name"]["givenName"], "Babs");
    assert!(out["name"].get("GIVENNAME").is_none());
    assert_eq!(out["emails"][0]["value"], "x@y");
}

// ---- mutability, atomicity, required ----

#[test]
fn read_only_attributes_are_mutability_errors() {
    each_fails_with(
        ScimType::Mutability,
        [
            json!([{"op": "replace", "path": "id", "value": "other"}]),
            json!([{"op": "replace", "path": "meta.version", "value": "W/\"9\""}]),
            json!([{"op": "remove", "path": "meta"}]),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]),
            json!([{"op": "replace", "value": {"id": "other"}}]),
        ],
    );
}

#[test]
fn user_name_cannot_be_removed() {
    each_fails_with(
        ScimType::InvalidValue,
        [
            json!([{"op": "remove", "path": "userName"}]),
            json!([{"op": "replace", "path": "userName", "value": ""}]),
            json!([{"op": "replace", "value": {"userName": null}}]),
        ],
    );
}

#[test]
fn apply_is_atomic() {
    let before = user();
    let ops = req(json!([
        {"op": "replace", "path": "title", "value": "changed"},
        {"op": "replace", "path": "id", "value": "nope"}
    ]));
    let e = apply(&before, ResourceKind::User, &ops.operations).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
    assert!(e.detail.starts_with("Operations[1]: "), "{}", e.detail);
    assert_eq!(before, user(), "input untouched");
}

#[test]
fn replace_filter_without_match_and_without_eq_is_no_target() {
    let e = fails(
        json!([{"op": "replace", "path": "emails[value co \"nothing\"].value", "value": "x"}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
}

// ---- parse errors ----

#[test]
fn malformed_bodies_are_typed_errors() {
    let cases = [
        (json!([]), ScimType::InvalidSyntax),
        (
            json!({"schemas": ["urn:wrong"], "Operations": [{"op": "add", "value": {}}]}),
            ScimType::InvalidSyntax,
        ),
        (json!({"Operations": []}), ScimType::InvalidSyntax),
        (
            json!({"Operations": [{"op": "merge", "value": {}}]}),
            ScimType::InvalidSyntax,
        ),
        (
            json!({"Operations": [{"op": "add", "path": "title"}]}),
            ScimType::InvalidValue,
        ),
        (
            json!({"Operations": [{"op": "add", "value": "x"}]}),
            ScimType::InvalidValue,
        ),
        (
            json!({"Operations": [{"op": "add", "path": "emails[type eq", "value": "x"}]}),
            ScimType::InvalidPath,
        ),
        (
            json!({"Operations": [{"op": "add", "path": 3, "value": "x"}]}),
            ScimType::InvalidPath,
        ),
        (json!({"Operations": [3]}), ScimType::InvalidSyntax),
    ];
    for (body, want) in cases {
        let e = PatchRequest::parse(&body).unwrap_err();
        assert_eq!(e.scim_type, Some(want), "{body}: {}", e.detail);
        assert_eq!(e.status, 400);
    }
}

// ---- group plan ----

#[test]
fn group_plan_merges_consecutive_steps_and_keeps_order() {
    let ops = req(json!([
        {"op": "replace", "path": "displayName", "value": "A"},
        {"op": "replace", "path": "externalId", "value": "B"},
        {"op": "add", "path": "members", "value": [{"value": "1"}]},
        {"op": "add", "path": "members", "value": {"value": "2"}},
        {"op": "remove", "path": "members", "value": [{"value": "3"}]},
        {"op": "remove", "path": "members[value eq \"4\"]"},
        {"op": "replace", "value": {"displayName": "C", "members": [{"value": "5"}]}}
    ]));
    let plan = plan_group_patch(&ops).unwrap();
    assert_eq!(plan.len(), 5, "{plan:?}");
    assert!(matches!(&plan[0], GroupPatchStep::Attributes(o) if o.len() == 2));
    assert!(matches!(&plan[1], GroupPatchStep::AddMembers(m) if m.len() == 2));
    assert_eq!(
        plan[2],
        GroupPatchStep::RemoveMembers(vec!["3".into(), "4".into()])
    );
    assert!(
        matches!(&plan[3], GroupPatchStep::Attributes(o) if o[0].value == Some(json!({"displayName": "C"})))
    );
    assert!(matches!(&plan[4], GroupPatchStep::ReplaceMembers(m) if m[0].value == "5"));
}

#[test]
fn group_plan_rejects_unsupported_member_filters() {
    let e = plan_group_patch(&req(
        json!([{"op": "remove", "path": "members[display eq \"Bob\"]"}]),
    ))
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
    assert!(e.detail.contains("only 'value eq"), "{}", e.detail);
    let e = plan_group_patch(&req(
        json!([{"op": "replace", "path": "members[value eq \"1\"]", "value": {"value": "2"}}]),
    ))
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
    let e = plan_group_patch(&req(
        json!([{"op": "add", "path": "members", "value": [{"display": "Bob"}]}]),
    ))
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

// ---- IdP tolerances through the full pipeline ----

#[test]
fn entra_capitalised_ops_and_string_booleans() {
    let out = ok(
        json!([{"op": "Replace", "path": "active", "value": "False"},
                       {"op": "Add", "path": "emails[type eq \"work\"].primary", "value": "True"}]),
    );
    assert_eq!(out["active"], false);
    assert_eq!(out["emails"][0]["primary"], true);
}

#[test]
fn entra_add_filtered_value_creates_the_attribute() {
    let mut u = user();
    u.as_object_mut().unwrap().remove("emails");
    let out = run(
        &u,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@b.c"}]),
    )
    .unwrap();
    assert_eq!(out["emails"], json!([{"type": "work", "value": "a@b.c"}]));
    let out = run(
        &u,
        json!([{"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1"}]),
    )
    .unwrap();
    assert_eq!(
        out["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1"}])
    );
}

#[test]
fn okta_replace_with_own_id_is_accepted() {
    let out = ok(json!([{"op": "replace", "value": {"id": ID, "active": false}}]));
    assert_eq!(out["id"], ID);
    assert_eq!(out["active"], false);
}

#[test]
fn json_encoded_values_are_type_errors_and_schemas_may_be_missing() {
    // No IdP is documented to double-encode values: a string where an
    // object of attributes belongs is rejected.
    let body = json!({"Operations": [{"op": "replace", "value": "{\"title\": \"Boss\"}"}]});
    let e = PatchRequest::parse(&body).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    let body =
        json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": "u9"}]}]});
    let r = PatchRequest::parse(&body).unwrap();
    assert_eq!(
        plan_group_patch(&r).unwrap()[0],
        GroupPatchStep::AddMembers(vec![MemberValue {
            value: "u9".into(),
            r#type: None,
            display: None
        }])
    );
    let r = PatchRequest::parse(
        &json!({"Operations": [{"op": "replace", "path": "title", "value": "{x}"}]}),
    )
    .unwrap();
    assert_eq!(
        r.operations[0].value,
        Some(json!("{x}")),
        "strings stay strings"
    );
}

#[test]
fn pathless_value_array_is_applied_in_order() {
    let out = ok(json!([{"op": "replace", "value": [{"active": false}, {"title": "T"}]}]));
    assert_eq!(
        (out["active"].clone(), out["title"].clone()),
        (json!(false), json!("T"))
    );
}

#[test]
fn remove_multi_valued_by_value_array() {
    let out =
        ok(json!([{"op": "remove", "path": "emails", "value": [{"value": "babs@jensen.org"}]}]));
    assert_eq!(out["emails"].as_array().unwrap().len(), 1);
}

#[test]
fn okta_replace_members_with_empty_array_empties_the_group() {
    // Okta's "Push now" for an empty group (Captain-P-Goldfish/SCIM-SDK#757).
    let ops = req(json!([{"op": "replace", "path": "members", "value": []}]));
    assert_eq!(
        plan_group_patch(&ops).unwrap(),
        vec![GroupPatchStep::ReplaceMembers(vec![])]
    );
}

#[test]
fn entra_members_with_null_ref_and_capitalised_remove() {
    let ops = req(json!([
        {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u1"}]},
        {"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "u2"}]}
    ]));
    let plan = plan_group_patch(&ops).unwrap();
    assert!(matches!(&plan[0], GroupPatchStep::AddMembers(m) if m[0].value == "u1"));
    assert_eq!(plan[1], GroupPatchStep::RemoveMembers(vec!["u2".into()]));
}

#[test]
fn add_on_existing_single_valued_replaces() {
    // Entra ID deprovisions with `Add` on `active`; add on a filtered
    // sub-attribute that exists replaces it (pingidentity/scim2#281).
    let out = ok(json!([{"op": "Add", "path": "active", "value": "False"},
                       {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Beaver"}]));
    assert_eq!(out["active"], false);
    assert_eq!(out["addresses"][0]["locality"], "Beaver");
}

#[test]
fn entra_manager_as_bare_id_is_stored_as_complex() {
    let ext = crate::schema::ENTERPRISE_USER_SCHEMA;
    let out = ok(json!([{"op": "Add", "path": format!("{ext}:manager"), "value": "m-42"}]));
    assert_eq!(out[ext]["manager"], json!({"value": "m-42"}));
    let n = crate::resource::normalize_user(&out).unwrap();
    assert_eq!(n.manager_id.as_deref(), Some("m-42"));
}

#[test]
fn values_of_the_wrong_type_are_invalid_values() {
    // No IdP is documented to send these shapes: they are type errors.
    for ops in [
        json!([{"op": "add", "path": "phoneNumbers", "value": "+1 555"}]),
        json!([{"op": "replace", "path": "name", "value": "Alice Anders"}]),
        json!([{"op": "replace", "path": "title", "value": 42}]),
        json!([{"op": "replace", "value": {"emails": "a@example.com"}}]),
    ] {
        let e = run(&user(), ops.clone()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{ops}: {e:?}");
    }
}

#[test]
fn removing_active_makes_the_user_inactive() {
    let out = ok(json!([{"op": "remove", "path": "active"}]));
    assert_eq!(out["active"], false);
    let out =
        ok(json!([{"op": "Remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User:Active"}]));
    assert_eq!(out["active"], false);
    assert!(!crate::resource::normalize_user(&out).unwrap().active);
}

#[test]
fn new_custom_extension_by_whole_urn_path() {
    let out =
        ok(json!([{"op": "add", "path": "urn:example:custom:2.0:User", "value": {"badge": "42"}}]));
    assert_eq!(out["urn:example:custom:2.0:User"], json!({"badge": "42"}));
    assert!(
        out["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:example:custom:2.0:User"))
    );
    let out = run(
        &out,
        json!([{"op": "replace", "path": "urn:example:custom:2.0:User:badge", "value": "43"}]),
    )
    .unwrap();
    assert_eq!(out["urn:example:custom:2.0:User"], json!({"badge": "43"}));
}

#[test]
fn core_urn_objects_hold_top_level_attributes() {
    let core = crate::schema::USER_SCHEMA;
    let out = ok(
        json!([{"op": "replace", "value": {core: {"displayName": "Babs"}}},
                       {"op": "replace", "path": core, "value": {"title": "T"}}]),
    );
    assert_eq!(
        (out["displayName"].clone(), out["title"].clone()),
        (json!("Babs"), json!("T"))
    );
    assert!(out.get(core).is_none());
    assert_eq!(
        fails(json!([{"op": "remove", "path": core}])).scim_type,
        Some(ScimType::InvalidPath)
    );
}

#[test]
fn error_details_quoting_filters_stay_short() {
    let long = "x".repeat(5000);
    let e = plan_group_patch(&req(
        json!([{"op": "remove", "path": format!("members[display eq \"{long}\"]")}]),
    ))
    .unwrap_err();
    assert!(e.detail.len() < 400, "{} bytes", e.detail.len());
}

#[test]
fn regression_fuzz_path_with_bogus_schema_cannot_overwrite_id() {
    // cargo fuzz (patch_apply) input `id:n\r` used as a path: it replaced `id`.
    let e = PatchRequest::parse(
        &json!({"Operations": [{"op": "add", "path": "id:n\r", "value": "x"}]}),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
}

#[test]
fn primary_appears_at_most_once() {
    // The sample user's work email is primary.
    let out = ok(
        json!([{"op": "add", "path": "emails", "value": [{"value": "new@x", "primary": true}]}]),
    );
    let primaries: Vec<bool> = out["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["primary"] == true)
        .collect();
    assert_eq!(primaries, [false, false, true]);
    let out =
        ok(json!([{"op": "Add", "path": "emails[type eq \"home\"].primary", "value": "True"}]));
    assert_eq!(out["emails"][0]["primary"], false);
    assert_eq!(out["emails"][1]["primary"], true);
    let out = ok(
        json!([{"op": "add", "path": "phoneNumbers[type eq \"work\"]", "value": {"value": "+1", "primary": true}}]),
    );
    assert_eq!(out["phoneNumbers"][0]["primary"], true);
    assert_eq!(
        out["emails"][0]["primary"], true,
        "other attributes untouched"
    );
}

#[test]
fn a_user_stored_before_the_type_checks_can_still_be_deactivated() {
    let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let legacy = json!({"schemas": [USER_SCHEMA, ext], "id": ID, "userName": "old",
                        "active": true, ext: {"employeeNumber": 701984}});
    let out = run(
        &legacy,
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .unwrap();
    let user = crate::resource::normalize_user(&out).unwrap();
    assert!(!user.active);
    assert_eq!(user.employee_number.as_deref(), Some("701984"));
    // Writing a wrongly typed value is still refused.
    let e = run(
        &legacy,
        json!([{"op": "replace", "path": format!("{ext}:employeeNumber"), "value": 5}]),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn another_resource_types_core_urn_names_nothing() {
    use crate::schema::GROUP_SCHEMA;
    let group = json!({"schemas": [GROUP_SCHEMA], "id": "g1", "displayName": "Ops",
                       "meta": {"version": "W/\"1\""}});
    for path in [
        format!("{USER_SCHEMA}:id"),
        format!("{USER_SCHEMA}:meta.lastModified"),
        format!("{USER_SCHEMA}:displayName"),
    ] {
        let ops = PatchRequest::parse(&json!({"Operations": [
            {"op": "add", "path": path, "value": "x"}
        ]}))
        .unwrap();
        let e = apply(&group, ResourceKind::Group, &ops.operations).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{path}");
    }
    // A path-less value naming it the same way is refused too.
    let ops = PatchRequest::parse(&json!({"Operations": [
        {"op": "replace", "value": {format!("{USER_SCHEMA}:meta"): {}}}
    ]}))
    .unwrap();
    assert!(apply(&group, ResourceKind::Group, &ops.operations).is_err());
    // The resource's own core URN still qualifies its attributes.
    let ops = PatchRequest::parse(&json!({"Operations": [
        {"op": "replace", "path": format!("{GROUP_SCHEMA}:displayName"), "value": "Dev"}
    ]}))
    .unwrap();
    let out = apply(&group, ResourceKind::Group, &ops.operations).unwrap();
    assert_eq!(out["displayName"], "Dev");
}

/// Found by `stable_fuzz patch_apply`: a group's `displayName` removed and
/// added back as `dIsplayName` was stored under that spelling, so clients
/// reading `displayName` by its exact name lost it.
#[test]
fn new_attributes_take_the_schemas_spelling() {
    let group = json!({"schemas": [crate::schema::GROUP_SCHEMA], "id": ID, "displayName": "Eng"});
    let ops = req(json!([
        {"op": "remove", "path": "displayName"},
        {"op": "add", "path": "dIsplayName", "value": "Platform"},
    ]));
    let out = apply(&group, ResourceKind::Group, &ops.operations).unwrap();
    assert_eq!(out["displayName"], "Platform", "{out}");
    assert!(out.get("dIsplayName").is_none(), "{out}");

    let out = ok(json!([
        {"op": "add", "path": "NICKNAME", "value": "Babs"},
        {"op": "add", "path": "NAME.MIDDLENAME", "value": "Jane"},
        {"op": "add", "path": "x-custom", "value": 1},
    ]));
    assert_eq!(out["nickName"], "Babs", "{out}");
    assert_eq!(out["name"]["middleName"], "Jane", "{out}");
    assert_eq!(
        out["x-custom"], 1,
        "unknown names keep their spelling: {out}"
    );
    // An existing key keeps the spelling it has.
    let out = ok(json!([{"op": "replace", "path": "USERNAME", "value": "b"}]));
    assert_eq!(out["userName"], "b", "{out}");
}
