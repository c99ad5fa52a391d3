//! Property tests: generated filter ASTs round-trip through render/parse,
//! the parser and PATCH engine never panic on arbitrary input, and the
//! evaluator's boolean structure is consistent.

use proptest::prelude::*;
use roster_scim::filter::{self, AttrPath, CompValue, CompareOp, Filter};
use roster_scim::patch::{PatchRequest, ResourceKind, apply, plan_group_patch};
use serde_json::{Value, json};

#[allow(dead_code)] // each includer takes what it needs
#[path = "../fuzz/src/generate.rs"]
mod generate;
use generate::{FILTER_TOKENS, JSON_KEYS, PATCH_PATHS};

const URNS: &[&str] = &[
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "urn:example:x",
];

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        Just("$ref".to_owned()),
        // Keywords are valid attribute names too.
        prop::sample::select(vec!["and", "or", "not", "pr", "eq", "true", "null"])
            .prop_map(str::to_owned),
    ]
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    (
        prop::option::weighted(0.2, prop::sample::select(URNS)),
        attr_name().prop_filter("$ref is only a sub-attribute here", |n| n != "$ref"),
        prop::option::weighted(0.3, attr_name()),
    )
        .prop_map(|(schema, name, sub_attr)| AttrPath {
            schema: schema.map(str::to_owned),
            name,
            sub_attr,
        })
}

fn number() -> impl Strategy<Value = serde_json::Number> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Number::from),
        any::<u64>().prop_map(serde_json::Number::from),
        (-1e300f64..1e300).prop_filter_map("finite", serde_json::Number::from_f64),
    ]
}

fn comparison() -> impl Strategy<Value = Filter> {
    let string = any::<String>().prop_map(CompValue::String);
    let any_value = prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        number().prop_map(CompValue::Number),
        any::<String>().prop_map(CompValue::String),
    ];
    let ordered = prop_oneof![
        number().prop_map(CompValue::Number),
        any::<String>().prop_map(CompValue::String)
    ];
    let op_value = prop_oneof![
        (
            prop::sample::select(vec![CompareOp::Eq, CompareOp::Ne]),
            any_value
        ),
        (
            prop::sample::select(vec![CompareOp::Co, CompareOp::Sw, CompareOp::Ew]),
            string
        ),
        (
            prop::sample::select(vec![
                CompareOp::Gt,
                CompareOp::Ge,
                CompareOp::Lt,
                CompareOp::Le
            ]),
            ordered
        ),
    ];
    (attr_path(), op_value).prop_map(|(path, (op, value))| Filter::Compare { path, op, value })
}

fn simple_filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![attr_path().prop_map(Filter::Present), comparison()];
    leaf.prop_recursive(4, 24, 2, combined)
}

/// `and`, `or` and `not` over filters from `inner`.
fn combined(inner: BoxedStrategy<Filter>) -> impl Strategy<Value = Filter> {
    prop_oneof![
        (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
        (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
        inner.prop_map(|f| Filter::Not(Box::new(f))),
    ]
}

/// Any filter: value paths may appear anywhere except inside value paths.
fn any_filter() -> impl Strategy<Value = Filter> {
    let value_path = (attr_path(), simple_filter()).prop_map(|(attr, f)| Filter::ValuePath {
        attr,
        filter: Box::new(f),
    });
    let leaf = prop_oneof![3 => simple_filter(), 1 => value_path];
    leaf.prop_recursive(3, 16, 2, combined)
}

/// Random text built from filter tokens, to reach deep parser states.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(FILTER_TOKENS);
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

fn sample_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "u1", "userName": "bjensen", "active": true, "title": "Guide",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "b@example.com", "type": "work", "primary": true}, {"value": "b@home.org", "type": "home"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7", "manager": {"value": "m"}}
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "True",
            "false",
            "x",
            "{\"title\":\"t\"}",
            "[{\"value\":\"g\"}]",
            ""
        ])
        .prop_map(|s| json!(s)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(JSON_KEYS).prop_map(str::to_owned),
                inner,
                0..3
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn patch_op() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(vec!["add", "Replace", "REMOVE", "remove", "merge"]);
    let path = prop::option::of(prop_oneof![
        prop::sample::select(PATCH_PATHS).prop_map(str::to_owned),
        token_soup(),
    ]);
    (op, path, prop::option::of(json_value())).prop_map(|(op, path, value)| {
        let mut o = serde_json::Map::new();
        o.insert("op".into(), json!(op));
        if let Some(p) = path {
            o.insert("path".into(), json!(p));
        }
        if let Some(v) = value {
            o.insert("value".into(), v);
        }
        Value::Object(o)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_filters_round_trip(f in any_filter()) {
        let text = f.to_string();
        let parsed = filter::parse(&text);
        let reparsed = parsed.as_ref().map(|p| p.to_string()).unwrap_or_default();
        prop_assert_eq!(parsed.as_ref(), Ok(&f), "rendered: {}\nre-rendered: {}", text, reparsed);
    }

    #[test]
    fn rendering_parsed_filters_is_a_fixed_point(src in token_soup()) {
        if let Ok(f) = filter::parse(&src) {
            let text = f.to_string();
            let again = filter::parse(&text).expect("rendered filter parses");
            prop_assert_eq!(&again, &f);
            prop_assert_eq!(again.to_string(), text);
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(src in any::<String>()) {
        let _ = filter::parse(&src);
        let _ = filter::parse_attr_path(&src);
        let _ = roster_scim::path::parse_patch_path(&src);
    }

    #[test]
    fn evaluator_is_boolean_consistent(f in any_filter(), g in any_filter()) {
        let u = sample_user();
        let (a, b) = (filter::matches(&f, &u), filter::matches(&g, &u));
        prop_assert_eq!(filter::matches(&Filter::Not(Box::new(f.clone())), &u), !a);
        prop_assert_eq!(filter::matches(&Filter::And(Box::new(f.clone()), Box::new(g.clone())), &u), a && b);
        prop_assert_eq!(filter::matches(&Filter::Or(Box::new(f), Box::new(g)), &u), a || b);
    }

    #[test]
    fn ne_is_the_negation_of_eq(path in attr_path(), value in any::<String>()) {
        let u = sample_user();
        let eq = Filter::Compare { path: path.clone(), op: CompareOp::Eq, value: CompValue::String(value.clone()) };
        let ne = Filter::Compare { path, op: CompareOp::Ne, value: CompValue::String(value) };
        prop_assert_eq!(filter::matches(&ne, &u), !filter::matches(&eq, &u));
    }

    #[test]
    fn patch_never_panics_and_keeps_invariants(ops in prop::collection::vec(patch_op(), 1..5)) {
        let body = json!({"Operations": ops});
        let Ok(req) = PatchRequest::parse(&body) else { return Ok(()) };
        let _ = plan_group_patch(&req);
        let before = sample_user();
        if let Ok(after) = apply(&before, ResourceKind::User, &req.operations) {
            prop_assert_eq!(&after["id"], &before["id"], "id never changes");
            prop_assert!(after["userName"].as_str().is_some_and(|s| !s.is_empty()));
            prop_assert!(after.get("meta") == before.get("meta"), "meta is readOnly");
            prop_assert!(roster_scim::resource::normalize_user(&after).is_ok() || after.get("emails").is_some());
        }
    }

    #[test]
    fn long_chains_stay_shallow(n in 1usize..3000) {
        let src = vec!["a pr"; n].join(" and ");
        let f = filter::parse(&src).expect("parses");
        prop_assert!(f.depth() <= (usize::BITS - n.leading_zeros()) as usize + 1);
        prop_assert_eq!(f.to_string(), src);
    }

    #[test]
    fn patched_values_are_found_by_filters(
        attr in prop::sample::select(vec!["title", "nickName", "name.middleName", "emails[type eq \"work\"].value",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"]),
        value in "[^\u{0}]{1,20}",
    ) {
        let user = sample_user();
        let body = json!({"Operations": [{"op": "replace", "path": attr, "value": value}]});
        let req = PatchRequest::parse(&body).expect("valid PATCH");
        let out = apply(&user, ResourceKind::User, &req.operations).expect("applies");
        let filter_path = attr.replace("[type eq \"work\"].value", "[type eq \"work\" and value eq X]");
        let text = if filter_path.contains(" X]") {
            filter_path.replace('X', &CompValue::String(value.clone()).to_string())
        } else {
            format!("{attr} eq {}", CompValue::String(value.clone()))
        };
        let f = filter::parse(&text).expect("filter parses");
        prop_assert!(filter::matches(&f, &out), "{} on {}", text, out);
        let removed = apply(&out, ResourceKind::User, &PatchRequest::parse(
            &json!({"Operations": [{"op": "remove", "path": attr}]})).expect("valid").operations).expect("removes");
        prop_assert!(!filter::matches(&f, &removed), "{} still matches {}", text, removed);
    }
}
