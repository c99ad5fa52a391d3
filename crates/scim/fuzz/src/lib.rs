//! The fuzz harnesses, shared by the `cargo fuzz` targets and the stable
//! driver. Each one panics only when an invariant is broken.

pub mod generate;

use roster_scim::filter::{matches, parse, parse_attr_path};
use roster_scim::patch::{PatchRequest, ResourceKind, apply, plan_group_patch};
use roster_scim::path::parse_patch_path;
use roster_scim::projection::{parse_attribute_list, project};
use roster_scim::v1;
use serde_json::{Value, json};

/// A user with every kind of attribute, to evaluate and patch against.
pub fn sample_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "u1", "externalId": "E1", "userName": "bjensen", "active": true,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "b@example.com", "type": "work", "primary": true},
                   {"value": "b@home.org", "type": "home"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z", "version": "W/\"1\""},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
            {"employeeNumber": "7", "manager": {"value": "m"}},
        "x-count": 3
    })
}

/// A group with members.
pub fn sample_group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "g1", "displayName": "Admins",
        "members": [{"value": "u1", "type": "User"}, {"value": "u2"}]
    })
}

/// Filter parser: no panic; anything that parses renders to text that
/// parses back to the same AST; evaluation terminates.
pub fn filter_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = parse(text) {
        let rendered = f.to_string();
        match parse(&rendered) {
            Ok(again) => assert_eq!(again, f, "round trip changed the AST: {rendered}"),
            Err(e) => panic!("rendered filter {rendered:?} does not parse: {e}"),
        }
        let _ = matches(&f, &sample_user());
        let _ = matches(&f, &sample_group());
    }
    let _ = parse_attr_path(text);
    let _ = parse_patch_path(text);
    if let Ok(list) = parse_attribute_list(text) {
        let mut user = sample_user();
        project(&mut user, ResourceKind::User, &list, &list);
        assert_eq!(user["id"], "u1", "id is returned always");
    }
}

/// PATCH engine: no panic; a successful apply never changes `id` or
/// `meta` and never loses `userName`/`displayName`.
pub fn patch_apply(data: &[u8]) {
    let body = match serde_json::from_slice::<Value>(data) {
        Ok(v) => v,
        // Non-JSON input still exercises paths: use it as one.
        Err(_) => json!({"Operations": [
            {"op": "add", "path": String::from_utf8_lossy(data), "value": "x"}
        ]}),
    };
    let Ok(req) = PatchRequest::parse(&body) else {
        return;
    };
    let _ = plan_group_patch(&req);
    for (resource, kind, required) in [
        (sample_user(), ResourceKind::User, "userName"),
        (sample_group(), ResourceKind::Group, "displayName"),
    ] {
        if let Ok(out) = apply(&resource, kind, &req.operations) {
            assert_eq!(out["id"], resource["id"], "id changed");
            assert_eq!(out.get("meta"), resource.get("meta"), "meta changed");
            assert!(
                out[required].as_str().is_some_and(|s| !s.trim().is_empty()),
                "{required} lost"
            );
            if kind == ResourceKind::User {
                let _ = roster_scim::resource::normalize_user(&out);
            }
        }
    }
}

/// SCIM 1.1 codec: no panic on any input; JSON is read as a 1.1 resource
/// and as a 1.1 PATCH, text as a 1.1 filter and attribute list.
/// Invariants: what translates is valid 2.0 for the one engine (a PatchOp
/// that parses and keeps the 2.0 PATCH invariants, a filter that parses),
/// translating a filter twice changes nothing, and rendering to 1.1 is
/// idempotent.
pub fn v1_codec(data: &[u8]) {
    match serde_json::from_slice::<Value>(data) {
        Ok(body) => v1_bodies(body),
        Err(_) => {
            if let Ok(text) = std::str::from_utf8(data) {
                v1_text(text);
            }
        }
    }
}

fn v1_bodies(body: Value) {
    for kind in [ResourceKind::User, ResourceKind::Group] {
        if let Ok(v2) = v1::resource::resource_to_v2(kind, body.clone()) {
            assert!(v2.is_object(), "a translated resource is an object");
            let once = v1::resource::resource_to_v1(v2);
            let twice = v1::resource::resource_to_v1(once.clone());
            assert_eq!(once, twice, "rendering to 1.1 is not idempotent");
        }
        if let Ok(Some(op)) = v1::patch::patch_to_v2(kind, body.clone()) {
            let ops = op["Operations"].as_array().map_or(0, Vec::len);
            assert!(ops > 0, "a translated PATCH has operations: {op}");
            patch_apply(op.to_string().as_bytes());
        }
    }
    let _ = v1::resource::member_to_v1(body);
}

fn v1_text(text: &str) {
    if let Ok(f) = v1::names::filter_to_v2(text) {
        if let Err(e) = parse(&f) {
            panic!("translated filter {f:?} does not parse: {e}");
        }
        match v1::names::filter_to_v2(&f) {
            Ok(again) => assert_eq!(again, f, "translating twice changed {text:?}"),
            Err(e) => panic!("translated filter {f:?} is not 1.1 any more: {e}"),
        }
    }
    let _ = v1::names::names_to_v2(text);
}

/// The JSON reader that refuses repeated member names: no panic on any
/// input, and it agrees with serde_json wherever no name repeats — the same
/// `Value` when it accepts, and a repeat (a data error) only for documents
/// serde_json reads, a syntax error only for those it refuses.
pub fn json_unique(data: &[u8]) {
    let plain = serde_json::from_slice::<Value>(data);
    match (roster_scim::from_slice_unique(data), plain) {
        (Ok(strict), Ok(plain)) => assert_eq!(strict, plain, "read differently"),
        (Ok(strict), Err(e)) => panic!("accepted {strict} that serde_json refuses: {e}"),
        (Err(e), Ok(_)) => assert!(e.is_data(), "refused valid JSON for {e}"),
        // A repeat before the syntax error is found first: either error is right.
        (Err(_), Err(_)) => {}
    }
}
