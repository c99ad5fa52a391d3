use super::*;
use serde_json::json;

fn p(s: &str) -> Filter {
    match parse(s) {
        Ok(f) => f,
        Err(e) => panic!("{s:?} failed to parse: {e}"),
    }
}

fn cmp(path: AttrPath, op: CompareOp, value: CompValue) -> Filter {
    Filter::Compare { path, op, value }
}

fn s(v: &str) -> CompValue {
    CompValue::String(v.to_owned())
}

fn and(l: Filter, r: Filter) -> Filter {
    Filter::And(Box::new(l), Box::new(r))
}

fn or(l: Filter, r: Filter) -> Filter {
    Filter::Or(Box::new(l), Box::new(r))
}

/// Every example filter of RFC 7644 §3.4.2.2.
const RFC_EXAMPLES: &[&str] = &[
    r#"userName eq "bjensen""#,
    r#"name.familyName co "O'Malley""#,
    r#"userName sw "J""#,
    r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
    r#"title pr"#,
    r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
    r#"title pr and userType eq "Employee""#,
    r#"title pr or userType eq "Intern""#,
    r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
    r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
    r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
    r#"userType eq "Employee" and (emails.type eq "work")"#,
    r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
    r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
];

#[test]
fn every_rfc_example_parses_and_round_trips() {
    for src in RFC_EXAMPLES {
        let f = p(src);
        let rendered = f.to_string();
        assert_eq!(p(&rendered), f, "{src} rendered as {rendered}");
    }
}

#[test]
fn rfc_examples_parse_to_the_expected_trees() {
    let user_name = AttrPath {
        schema: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
        name: "userName".into(),
        sub_attr: None,
    };
    let employee = |op| cmp(AttrPath::new("userType"), op, s("Employee"));
    let cases = [
        (
            r#"userName eq "bjensen""#,
            cmp(AttrPath::new("userName"), CompareOp::Eq, s("bjensen")),
        ),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            cmp(user_name, CompareOp::Sw, s("J")),
        ),
        (
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            and(
                employee(CompareOp::Eq),
                cmp(
                    AttrPath::with_sub("emails", "type"),
                    CompareOp::Eq,
                    s("work"),
                ),
            ),
        ),
        (
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            and(
                employee(CompareOp::Ne),
                Filter::Not(Box::new(or(
                    cmp(AttrPath::new("emails"), CompareOp::Co, s("example.com")),
                    cmp(
                        AttrPath::with_sub("emails", "value"),
                        CompareOp::Co,
                        s("example.org"),
                    ),
                ))),
            ),
        ),
        (
            r#"emails[type eq "work" and value co "@example.com"]"#,
            Filter::ValuePath {
                attr: AttrPath::new("emails"),
                filter: Box::new(and(
                    cmp(AttrPath::new("type"), CompareOp::Eq, s("work")),
                    cmp(AttrPath::new("value"), CompareOp::Co, s("@example.com")),
                )),
            },
        ),
    ];
    for (src, expected) in cases {
        assert_eq!(p(src), expected, "{src}");
    }
}

#[test]
fn and_binds_tighter_than_or() {
    let a = || Filter::Present(AttrPath::new("a"));
    let b = || Filter::Present(AttrPath::new("b"));
    let c = || Filter::Present(AttrPath::new("c"));
    assert_eq!(p("a pr or b pr and c pr"), or(a(), and(b(), c())));
    assert_eq!(p("a pr and b pr or c pr"), or(and(a(), b()), c()));
    assert_eq!(p("(a pr or b pr) and c pr"), and(or(a(), b()), c()));
}

#[test]
fn keywords_and_operators_are_case_insensitive() {
    assert_eq!(
        p(r#"userName EQ "x" AND title Pr OR NOT (active eq TRUE)"#),
        p(r#"userName eq "x" and title pr or not (active eq true)"#)
    );
}

#[test]
fn values_follow_json_rules() {
    assert_eq!(
        p(r#"a eq "tab\there \"q\" \u00e9""#),
        cmp(AttrPath::new("a"), CompareOp::Eq, s("tab\there \"q\" é"))
    );
    assert_eq!(
        p("a eq null"),
        cmp(AttrPath::new("a"), CompareOp::Eq, CompValue::Null)
    );
    assert_eq!(
        p("a eq false"),
        cmp(AttrPath::new("a"), CompareOp::Eq, CompValue::Bool(false))
    );
    assert_eq!(
        p("a gt -1.5e3"),
        cmp(
            AttrPath::new("a"),
            CompareOp::Gt,
            CompValue::Number(serde_json::Number::from_f64(-1500.0).unwrap())
        )
    );
    assert_eq!(
        p("a ge 10"),
        cmp(
            AttrPath::new("a"),
            CompareOp::Ge,
            CompValue::Number(10.into())
        )
    );
}

#[test]
fn urn_ends_at_the_last_colon() {
    let f =
        p(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#);
    let Filter::Compare { path, .. } = f else {
        panic!("not a comparison")
    };
    assert_eq!(
        path.schema.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(path.name, "employeeNumber");
    let f = p(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "1""#);
    let Filter::Compare { path, .. } = f else {
        panic!("not a comparison")
    };
    assert_eq!(path.sub_attr.as_deref(), Some("value"));
}

fn err(s: &str) -> String {
    match parse(s) {
        Ok(f) => panic!("{s:?} unexpectedly parsed as {f:?}"),
        Err(e) => {
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter), "{s:?}");
            assert_eq!(e.status, 400);
            e.detail
        }
    }
}

#[test]
fn errors_are_positioned_and_say_what_was_expected() {
    assert_eq!(err(""), "invalid filter: the filter is empty");
    assert_eq!(
        err(r#"userName xx "a""#),
        "invalid filter at byte 9: expected an operator (eq ne co sw ew gt ge lt le pr), found 'xx'"
    );
    assert_eq!(
        err(r#"userName eq "a" and"#),
        "invalid filter at byte 19: expected an attribute path, '(' or 'not (', found the end of the input"
    );
    assert_eq!(
        err(r#"(a pr"#),
        "invalid filter at byte 5: expected ')', found the end of the input"
    );
    assert_eq!(
        err(r#"a eq "x"#),
        "invalid filter at byte 5: unterminated string"
    );
    assert!(err(r#"a eq "\q""#).starts_with("invalid filter at byte 5: invalid string"));
    assert_eq!(
        err("a eq 01"),
        "invalid filter at byte 5: invalid number '01'"
    );
    assert_eq!(
        err("a eq b"),
        "invalid filter at byte 5: expected a value (string, number, true, false or null), found 'b'"
    );
    assert_eq!(
        err("a pr b pr"),
        "invalid filter at byte 5: expected 'and', 'or' or the end of the input, found 'b'"
    );
    assert_eq!(
        err("a gt true"),
        "invalid filter at byte 5: operator 'gt' cannot compare with true"
    );
    assert_eq!(
        err("a co 1"),
        "invalid filter at byte 5: operator 'co' cannot compare with 1"
    );
    assert_eq!(
        err("a eq \"x\" # 1"),
        "invalid filter at byte 9: unexpected character '#'"
    );
    assert_eq!(
        err("1abc pr"),
        "invalid filter at byte 0: expected an attribute path, '(' or 'not (', found the number 1"
    );
    assert_eq!(
        err(r#"emails[value[type eq "x"] pr]"#),
        "invalid filter at byte 12: value paths cannot be nested"
    );
    assert_eq!(
        err("not a pr"),
        "invalid filter at byte 4: expected an operator (eq ne co sw ew gt ge lt le pr), found 'a' ('not' must be followed by '(')"
    );
    assert_eq!(
        err("urn:x: pr"),
        "invalid filter at byte 0: '' is not a valid attribute name"
    );
    assert_eq!(
        err("a.b.c pr"),
        "invalid filter at byte 0: 'b.c' is not a valid sub-attribute name"
    );
}

#[test]
fn non_ascii_input_never_panics() {
    for src in [
        "é",
        "a eq \"é",
        "a eq é",
        "ü pr",
        "a[b eq \"€\"",
        "a eq \"\u{0}\"",
    ] {
        assert!(parse(src).is_err(), "{src:?}");
    }
    assert!(parse("a eq \"€\"").is_ok());
}

#[test]
fn deep_nesting_is_rejected_with_a_clear_error() {
    let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(parse(&ok).is_ok());
    let too_deep = format!(
        "{}a pr{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(err(&too_deep).contains(&format!("nesting deeper than {MAX_DEPTH} levels")));
    let nots = format!(
        "{}a pr{}",
        "not (".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(err(&nots).contains("nesting deeper"));
    // A megabyte of open parentheses is rejected early, without recursion.
    let huge = "(".repeat(MAX_FILTER_LEN);
    assert!(err(&huge).contains("nesting deeper"));
}

#[test]
fn a_one_megabyte_filter_parses_in_linear_work_into_a_shallow_tree() {
    let clause = r#"userName eq "someone@example.com" or "#;
    let mut src = clause.repeat((MAX_FILTER_LEN - 20) / clause.len());
    src.push_str("title pr");
    assert!(src.len() > 1_000_000 && src.len() <= MAX_FILTER_LEN);
    let mut parser = Parser::new(&src, Mode::Filter);
    let f = parser.parse_complete_filter().expect("parses");
    let clauses = src.len() / clause.len();
    // Four tokens per clause plus the end: work proportional to the input.
    assert!(
        parser.tokens_lexed <= 4 * clauses + 4,
        "lexed {} tokens",
        parser.tokens_lexed
    );
    // ~27k operands become a tree of depth ~16, safe to evaluate and drop.
    assert!(f.depth() <= 20, "depth {}", f.depth());
    assert!(matches(&f, &json!({"title": "x"})));
    // Chains render flat again, so the text stays within the limit.
    let rendered = f.to_string();
    assert!(
        rendered.len() <= src.len(),
        "rendered {} bytes",
        rendered.len()
    );
    assert_eq!(p(&rendered), f);
    let too_long = "a".repeat(MAX_FILTER_LEN + 1);
    assert!(err(&too_long).contains("longer than"));
}

// ---- evaluator ----

fn user() -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "BJensen-Ext",
        "userName": "bjensen",
        "name": {"familyName": "O'Malley", "givenName": "Barbara"},
        "title": "Tour Guide",
        "userType": "Employee",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "ims": [{"value": "someone@foo.com", "type": "xmpp"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z", "created": "2010-01-23T04:56:22Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        },
        "x-count": 5
    })
}

fn m(src: &str) -> bool {
    matches(&p(src), &user())
}

#[test]
fn rfc_examples_evaluate_as_expected() {
    let expected = [
        true, true, false, false, true, false, true, false, true, true, true, true, true, false,
        true, true, true,
    ];
    for (src, want) in RFC_EXAMPLES.iter().zip(expected) {
        assert_eq!(m(src), want, "{src}");
    }
}

#[test]
fn case_exactness_follows_the_schema() {
    assert!(
        m(r#"USERNAME eq "BJENSEN""#),
        "userName is caseExact=false, names case-insensitive"
    );
    assert!(m(r#"externalId eq "BJensen-Ext""#));
    assert!(
        !m(r#"externalId eq "bjensen-ext""#),
        "externalId is caseExact"
    );
    assert!(
        !m(r#"id eq "2819C223-7F76-453A-919D-413861904646""#),
        "id is caseExact"
    );
    assert!(m(r#"emails.value eq "BJENSEN@example.com""#));
    assert!(m(r#"title co "guide""#));
}

#[test]
fn multi_valued_attributes_match_if_any_value_matches() {
    assert!(m(r#"emails.type eq "home""#));
    assert!(m(r#"emails[type eq "home" and value ew ".org"]"#));
    assert!(!m(r#"emails[type eq "home" and value ew ".com"]"#));
    assert!(m(r#"emails[not (type eq "home")]"#));
}

#[test]
fn ne_is_not_eq_including_missing_attributes() {
    assert!(m(r#"nickName ne "x""#), "missing attribute matches ne");
    assert!(!m(r#"emails.type ne "home""#), "some value equals");
    assert!(m(r#"userName ne "other""#));
}

#[test]
fn presence_ignores_null_empty_and_missing() {
    let r = json!({"a": null, "b": [], "c": "", "d": {}, "e": [{"x": null}], "f": false, "g": 0});
    for (attr, want) in [
        ("a", false),
        ("b", false),
        ("c", false),
        ("d", false),
        ("e", false),
        ("f", true),
        ("g", true),
        ("z", false),
    ] {
        assert_eq!(matches(&p(&format!("{attr} pr")), &r), want, "{attr}");
    }
    assert!(matches(&p("a eq null"), &r));
    assert!(matches(&p("z eq null"), &r));
    assert!(matches(&p("b eq null"), &r));
    assert!(!matches(&p("f eq null"), &r));
    assert!(matches(&p("f ne null"), &r));
}

#[test]
fn ordering_uses_types_and_dates() {
    assert!(
        m(r#"meta.lastModified ge "2011-05-13T06:42:34+02:00""#),
        "same instant"
    );
    assert!(!m(r#"meta.lastModified gt "2011-05-13T06:42:34+02:00""#));
    assert!(m(r#"meta.created lt "2011-01-01T00:00:00Z""#));
    assert!(m("x-count gt 4"));
    assert!(m("x-count le 5.0"));
    assert!(!m("x-count gt 5"));
    assert!(!m(r#"x-count gt "4""#), "mismatched types never match");
    assert!(!m("active gt 0"), "booleans are not ordered");
    assert!(m("active eq true"));
    assert!(!m("active eq false"));
    assert!(m(r#"userName gt "A""#));
}

#[test]
fn extension_paths_resolve_case_insensitively() {
    assert!(m(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:EMPLOYEENUMBER eq "701984""#
    ));
    assert!(m(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr"#
    ));
    assert!(!m(r#"urn:example:other:1.0:User:employeeNumber pr"#));
}

#[test]
fn group_members_use_group_rules() {
    let g = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Admins",
                   "members": [{"value": "u1", "type": "User"}]});
    assert!(matches(&p(r#"displayName eq "admins""#), &g));
    assert!(matches(&p(r#"members[value eq "u1"]"#), &g));
    assert!(matches(&p(r#"members.value eq "u1""#), &g));
    assert!(!matches(&p(r#"members[value eq "u2"]"#), &g));
}

#[test]
fn parse_attr_path_accepts_only_a_path() {
    assert_eq!(
        parse_attr_path("name.familyName").unwrap(),
        AttrPath::with_sub("name", "familyName")
    );
    assert_eq!(
        parse_attr_path(" userName ").unwrap(),
        AttrPath::new("userName")
    );
    let e = parse_attr_path("userName eq").unwrap_err();
    assert_eq!(e.scim_type, Some(crate::ScimType::InvalidPath));
    assert!(parse_attr_path("").is_err());
    assert!(parse_attr_path("emails[type eq \"x\"]").is_err());
}

#[test]
fn parsed_chains_render_flat_and_other_shapes_keep_parentheses() {
    assert_eq!(
        p("a pr or b pr or c pr or d pr or e pr").to_string(),
        "a pr or b pr or c pr or d pr or e pr"
    );
    assert_eq!(
        p("a pr and b pr or c pr and d pr").to_string(),
        "a pr and b pr or c pr and d pr"
    );
    let a = || Filter::Present(AttrPath::new("a"));
    let right_deep = and(a(), and(a(), a()));
    assert_eq!(right_deep.to_string(), "a pr and (a pr and a pr)");
    assert_eq!(p(&right_deep.to_string()), right_deep);
    let left_deep4 = and(and(and(a(), a()), a()), a());
    assert_eq!(p(&left_deep4.to_string()), left_deep4);
}

#[test]
fn schema_prefix_must_be_a_uri() {
    // Regression (cargo fuzz, patch_apply): `id:n` must not address `id`.
    assert!(err("id:n pr").contains("'id' is not a valid schema URN"));
    assert!(parse("urn:x:n pr").is_ok());
}

#[test]
fn value_filter_followed_by_a_sub_attribute_comparison() {
    // Entra ID matches users with `emails[type eq "work"].value eq "…"`.
    let f = p(r#"emails[type eq "work"].value eq "bjensen@example.com""#);
    assert_eq!(
        f,
        Filter::ValuePath {
            attr: AttrPath::new("emails"),
            filter: Box::new(and(
                cmp(AttrPath::new("type"), CompareOp::Eq, s("work")),
                cmp(
                    AttrPath::new("value"),
                    CompareOp::Eq,
                    s("bjensen@example.com")
                ),
            )),
        }
    );
    assert!(m(
        r#"emails[type eq "work"].value eq "BJENSEN@example.com""#
    ));
    assert!(!m(
        r#"emails[type eq "home"].value eq "bjensen@example.com""#
    ));
    assert!(m(r#"emails[type eq "home"].value pr"#));
    assert!(m(
        r#"userName eq "bjensen" and emails[type eq "work"].value ew ".com""#
    ));
    assert!(err(r#"emails[type eq "work"].value"#).contains("expected an operator"));
    assert!(err(r#"emails[type eq "work"]."#).contains("expected a sub-attribute name"));
    assert!(err(r#"emails[type eq "work"].value eq"#).contains("expected a value"));
}
