//! Conformance cases for the exact data rules (docs/scim.md, "Data rules"):
//! Unicode-normalized userName keys, datetime precision, Entra ID's
//! matching filters, NUL characters, statement limits, keyset pages of
//! sorted lists and `active` removal. Moved here from the SQLite-only tests
//! where they were not about SQLite itself, so PostgreSQL runs them too.

use std::sync::Arc;

use chrono::SecondsFormat;
use roster_store::*;
use serde_json::json;

use super::{directory, group, member, query, user};

async fn user_names(store: &dyn Store, dir: DirectoryId, q: &ListQuery) -> Vec<String> {
    store
        .list_users(dir, q)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|u| u.fields.user_name)
        .collect()
}

fn expect_conflict(result: StoreResult<User>, what: &str) {
    match result {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("userName"), "{what}: {message}")
        }
        other => panic!("{what}: expected a userName conflict, got {other:?}"),
    }
}

/// The ids of the users of `dir` that `filter` matches, in list order.
async fn matching_users(store: &dyn Store, dir: DirectoryId, filter: &str) -> Vec<UserId> {
    let page = store.list_users(dir, &query(Some(filter))).await.unwrap();
    page.items.iter().map(|u| u.id).collect()
}

pub async fn user_name_is_unique_under_unicode_normalization_and_case(store: Arc<dyn Store>) {
    let d = directory(&*store, "unicode").await;
    let nfc = "Jos\u{e9}.Z\u{f6}e@example.com";
    let nfd = "Jose\u{301}.Zo\u{308}e@example.com";
    let upper_nfd = "JOSE\u{301}.ZO\u{308}E@EXAMPLE.COM";
    let jose = store.create_user(d.id, user(nfc)).await.unwrap();
    expect_conflict(store.create_user(d.id, user(nfd)).await, "NFD spelling");
    expect_conflict(
        store.create_user(d.id, user(upper_nfd)).await,
        "upper-case NFD spelling",
    );
    // Case beyond ASCII (was SQLite-only).
    store
        .create_user(d.id, user("\u{c9}va@Example.com"))
        .await
        .unwrap();
    expect_conflict(
        store.create_user(d.id, user("\u{e9}va@example.COM")).await,
        "lower-case É",
    );
    let bob = store.create_user(d.id, user("bob")).await.unwrap();
    expect_conflict(
        store.replace_user(d.id, bob.id, None, user(nfd)).await,
        "renaming onto the NFD spelling",
    );
    // Another directory may reuse the name.
    let other = directory(&*store, "unicode2").await;
    store.create_user(other.id, user(nfd)).await.unwrap();

    // Filters see one name whatever the spelling of the operand.
    for f in [
        format!(r#"userName eq "{nfd}""#),
        format!(r#"userName eq "{upper_nfd}""#),
        "userName sw \"JOSE\u{301}\"".to_string(),
        "userName co \"ZO\u{308}E@\"".to_string(),
        "userName ew \"\u{f6}e@example.com\"".to_string(),
    ] {
        assert_eq!(matching_users(&*store, d.id, &f).await, [jose.id], "{f}");
    }
    // The name is stored as the client sent it.
    assert_eq!(
        store
            .get_user(d.id, jose.id)
            .await
            .unwrap()
            .fields
            .user_name,
        nfc
    );
    let found = user_names(
        &*store,
        d.id,
        &query(Some("userName eq \"\u{c9}VA@EXAMPLE.COM\"")),
    )
    .await;
    assert_eq!(found, ["\u{c9}va@Example.com"]);

    // Group displayName folds beyond ASCII (was SQLite-only).
    store
        .create_group(d.id, group("\u{c9}quipe"))
        .await
        .unwrap();
    match store.create_group(d.id, group("\u{e9}QUIPE")).await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("displayName"), "{message}"),
        other => panic!("expected a displayName conflict, got {other:?}"),
    }
}

/// A timestamp as a client sees it: RFC 3339 at the precision the store
/// keeps and the gateway renders (microseconds).
fn rendered(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub async fn datetime_filters_compare_at_the_stored_precision(store: Arc<dyn Store>) {
    let d = directory(&*store, "dates").await;
    let u = store.create_user(d.id, user("timely")).await.unwrap();
    let read = store.get_user(d.id, u.id).await.unwrap();
    assert_eq!(
        read.updated_at, u.updated_at,
        "a write returns what is read back"
    );
    let modified = rendered(read.updated_at);
    let created = rendered(read.created_at);
    for (f, expected) in [
        (format!(r#"meta.lastModified gt "{modified}""#), 0),
        (format!(r#"meta.lastModified ge "{modified}""#), 1),
        (format!(r#"meta.lastModified eq "{modified}""#), 1),
        (format!(r#"meta.lastModified lt "{modified}""#), 0),
        (format!(r#"meta.created gt "{created}""#), 0),
        (format!(r#"meta.created le "{created}""#), 1),
    ] {
        let page = store.list_users(d.id, &query(Some(&f))).await.unwrap();
        assert_eq!(page.total, expected, "{f}");
    }
}

pub async fn entra_matching_filters_find_the_user(store: Arc<dyn Store>) {
    let d = directory(&*store, "entra").await;
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let mut jdoe = user("jdoe@contoso.com");
    jdoe.fields.external_id = Some("0b6e-guid".into());
    jdoe.fields.display_name = Some("John Doe".into());
    jdoe.fields.employee_number = Some("701984".into());
    jdoe.fields.emails = vec![
        Email {
            value: "jdoe@contoso.com".into(),
            r#type: "work".into(),
            primary: true,
        },
        Email {
            value: "jd@home.example".into(),
            r#type: "home".into(),
            primary: false,
        },
    ];
    jdoe.raw = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ent],
        "userName": "jdoe@contoso.com",
        "externalId": "0b6e-guid",
        "displayName": "John Doe",
        "emails": [{"value": "jdoe@contoso.com", "type": "work", "primary": true},
                   {"value": "jd@home.example", "type": "home"}],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "work"},
                         {"value": "+1 555 0199", "type": "mobile"}],
        "addresses": [{"type": "work", "streetAddress": "1 Main St", "locality": "Redmond"}],
        ent: {"employeeNumber": "701984"},
    });
    let jdoe = store.create_user(d.id, jdoe).await.unwrap();
    store
        .create_user(d.id, user("other@contoso.com"))
        .await
        .unwrap();

    let matching = [
        r#"userName eq "JDoe@Contoso.com""#.to_string(),
        r#"externalId eq "0b6e-guid""#.to_string(),
        r#"displayName eq "john doe""#.to_string(),
        r#"emails[type eq "work"].value eq "jdoe@contoso.com""#.to_string(),
        r#"emails[type eq "home"].value eq "JD@home.example""#.to_string(),
        r#"emails[type eq "work" and primary eq true].value eq "jdoe@contoso.com""#.to_string(),
        r#"phoneNumbers[type eq "work"].value eq "+1 555 0100""#.to_string(),
        r#"phoneNumbers[type eq "mobile"].value pr"#.to_string(),
        r#"addresses[type eq "work"].streetAddress eq "1 Main St""#.to_string(),
        r#"addresses[type eq "work"].locality eq "Redmond""#.to_string(),
        format!(r#"{ent}:employeeNumber eq "701984""#),
    ];
    for f in &matching {
        assert_eq!(matching_users(&*store, d.id, f).await, [jdoe.id], "{f}");
    }
    for f in [
        r#"emails[type eq "home"].value eq "jdoe@contoso.com""#,
        r#"phoneNumbers[type eq "work"].value eq "+1 555 0199""#,
        r#"addresses[type eq "home"].streetAddress eq "1 Main St""#,
    ] {
        let page = store.list_users(d.id, &query(Some(f))).await.unwrap();
        assert_eq!(page.total, 0, "{f}");
    }

    let sales = store.create_group(d.id, group("Sales")).await.unwrap();
    let page = store
        .list_groups(d.id, &query(Some(r#"displayName eq "sales""#)))
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|g| g.id).collect::<Vec<_>>(),
        [sales.id]
    );
}

pub async fn nul_is_rejected_before_the_database(store: Arc<dyn Store>) {
    let d = directory(&*store, "nul").await;
    let alice = store.create_user(d.id, user("alice")).await.unwrap();
    let g = store.create_group(d.id, group("g")).await.unwrap();
    let head = store.log_bounds().await.unwrap().stable_head;

    // The filter grammar's strings are JSON strings: NUL arrives escaped.
    for f in [
        r#"userName eq "a\u0000b""#,
        r#"displayName co "\u0000""#,
        r#"nickName eq "x\u0000""#,
        r#"emails[type eq "work\u0000"]"#,
    ] {
        match store.list_users(d.id, &query(Some(f))).await {
            Err(StoreError::InvalidFilter(message)) => {
                assert!(!message.contains("SQL"), "{message}")
            }
            other => panic!("{f:?}: expected an invalid filter, got {other:?}"),
        }
    }
    let err = store
        .list_groups(d.id, &query(Some(r#"displayName eq "\u0000""#)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidFilter(_)), "{err:?}");

    // Bodies (was SQLite-only): nothing is written.
    assert!(matches!(
        store.create_user(d.id, user("nul\u{0}name")).await,
        Err(StoreError::Invalid(_))
    ));
    let mut raw_nul = user("fine");
    raw_nul.raw = json!({"userName": "fine", "nickName": "a\u{0}b"});
    assert!(matches!(
        store.create_user(d.id, raw_nul.clone()).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.replace_user(d.id, alice.id, None, raw_nul).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.create_group(d.id, group("g\u{0}")).await,
        Err(StoreError::Invalid(_))
    ));
    let rename = GroupOp::SetAttributes {
        display_name: "x\u{0}".into(),
        external_id: None,
        raw: json!({}),
    };
    let patched = store
        .update_group(
            d.id,
            g.id,
            None,
            Box::new(move |_| Ok(vec![rename.clone()])),
        )
        .await;
    assert!(
        matches!(patched, Err(StoreError::Invalid(_))),
        "{patched:?}"
    );
    assert!(matches!(
        store
            .create_directory(NewDirectory {
                name: "a\u{0}".into(),
                ..Default::default()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
    for result in [
        store.create_user(d.id, user("x\u{0}")).await.map(|_| ()),
        store.create_group(d.id, group("y\u{0}")).await.map(|_| ()),
    ] {
        if let Err(StoreError::Invalid(message)) = result {
            assert!(!message.contains("SQLSTATE"), "{message}");
        }
    }
    assert_eq!(
        store.log_bounds().await.unwrap().stable_head,
        head,
        "nothing was written"
    );
    assert_eq!(store.get_user(d.id, alice.id).await.unwrap(), alice);
}

pub async fn oversized_filters_are_invalid_filters(store: Arc<dyn Store>) {
    let d = directory(&*store, "oversized").await;
    store.create_user(d.id, user("alice")).await.unwrap();
    let long_value = "x".repeat(60_000);
    // More values than SQLite binds in one statement (32,766), and more
    // than PostgreSQL does (65,535: a term on an attribute without a column
    // binds its JSON path and its value), each under the 1 MiB filter limit.
    let many_terms = (0..33_000)
        .map(|i| format!(r#"userName eq "u{i}""#))
        .collect::<Vec<_>>()
        .join(" or ");
    let many_json_terms = (0..45_000)
        .map(|i| format!(r#"x eq "{i}""#))
        .collect::<Vec<_>>()
        .join(" or ");
    match store
        .list_users(
            d.id,
            &query(Some(&format!(r#"userName co "{long_value}""#))),
        )
        .await
    {
        Ok(page) => assert_eq!(page.total, 0),
        Err(StoreError::InvalidFilter(_)) => {}
        Err(other) => panic!("a long value: {other:?}"),
    }
    for text in [many_terms, many_json_terms] {
        match store.list_users(d.id, &query(Some(&text))).await {
            Err(StoreError::InvalidFilter(message)) => {
                assert!(!message.contains("SQL"), "{message}")
            }
            other => panic!("{}...: {other:?}", &text[..40]),
        }
    }
    // Just below the cap still works.
    let fitting = (0..5_000)
        .map(|i| format!(r#"userName eq "u{i}""#))
        .chain(std::iter::once(r#"userName eq "ALICE""#.to_string()))
        .collect::<Vec<_>>()
        .join(" or ");
    assert_eq!(
        user_names(&*store, d.id, &query(Some(&fitting))).await,
        ["alice"]
    );
}

pub async fn sorted_lists_page_by_keyset_in_both_directions(store: Arc<dyn Store>) {
    let d = directory(&*store, "sorted").await;
    for name in ["delta", "Alpha", "charlie", "bravo", "echo"] {
        store.create_user(d.id, user(name)).await.unwrap();
    }
    let sort = |descending| Sort {
        path: roster_scim::filter::parse_attr_path("userName").unwrap(),
        descending,
    };
    let list = |count| ListQuery {
        count,
        ..query(None)
    };
    for (descending, expected) in [
        (false, ["Alpha", "bravo", "charlie", "delta", "echo"]),
        (true, ["echo", "delta", "charlie", "bravo", "Alpha"]),
    ] {
        let q = ListQuery {
            sort: Some(sort(descending)),
            ..list(2)
        };
        assert_eq!(
            all_pages(&*store, d.id, &q).await,
            expected,
            "descending: {descending}"
        );
        let third = store
            .list_users(
                d.id,
                &ListQuery {
                    start_index: 3,
                    count: 1,
                    ..q.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(third.items[0].fields.user_name, expected[2]);
    }

    // A user inserted behind the keyset position is not repeated; existing
    // users are neither skipped nor repeated.
    let q = ListQuery {
        sort: Some(sort(false)),
        ..list(2)
    };
    let first = store.list_users(d.id, &q).await.unwrap();
    store.create_user(d.id, user("aaron")).await.unwrap();
    store.create_user(d.id, user("zulu")).await.unwrap();
    let mut seen: Vec<String> = first
        .items
        .iter()
        .map(|u| u.fields.user_name.clone())
        .collect();
    let rest = ListQuery {
        page_token: first.next_page_token,
        ..q.clone()
    };
    seen.extend(all_pages(&*store, d.id, &rest).await);
    assert_eq!(seen, ["Alpha", "bravo", "charlie", "delta", "echo", "zulu"]);

    let by_created = ListQuery {
        sort: Some(Sort {
            path: roster_scim::filter::parse_attr_path("meta.created").unwrap(),
            descending: true,
        }),
        ..list(1)
    };
    let newest = store.list_users(d.id, &by_created).await.unwrap();
    assert_eq!(newest.items[0].fields.user_name, "zulu");
    let next = ListQuery {
        page_token: newest.next_page_token,
        ..by_created
    };
    let next = store.list_users(d.id, &next).await.unwrap();
    assert_eq!(next.items[0].fields.user_name, "aaron");

    // Boolean sort keys continue by keyset too (ties in creation order).
    let bravo = store
        .list_users(d.id, &query(Some(r#"userName eq "bravo""#)))
        .await
        .unwrap()
        .items
        .remove(0);
    let mut inactive = user("bravo");
    inactive.fields.active = false;
    store
        .replace_user(d.id, bravo.id, None, inactive)
        .await
        .unwrap();
    let by_active = ListQuery {
        sort: Some(Sort {
            path: roster_scim::filter::parse_attr_path("active").unwrap(),
            descending: false,
        }),
        ..list(3)
    };
    assert_eq!(
        all_pages(&*store, d.id, &by_active).await,
        [
            "bravo", "delta", "Alpha", "charlie", "echo", "aaron", "zulu"
        ]
    );

    // A page token of one sort order is refused by another.
    let first = store.list_users(d.id, &by_active).await.unwrap();
    let mismatched = ListQuery {
        sort: Some(sort(true)),
        page_token: first.next_page_token,
        ..list(3)
    };
    match store.list_users(d.id, &mismatched).await {
        Err(StoreError::InvalidFilter(_) | StoreError::Invalid(_)) => {}
        other => panic!(
            "a token of another sort order: {:?}",
            other.map(|p| p.items.len())
        ),
    }
}

/// Every user name from `q`'s first page on, following page tokens.
async fn all_pages(store: &dyn Store, dir: DirectoryId, q: &ListQuery) -> Vec<String> {
    let mut seen = Vec::new();
    let mut page = store.list_users(dir, q).await.unwrap();
    loop {
        seen.extend(page.items.iter().map(|u| u.fields.user_name.clone()));
        let Some(token) = page.next_page_token.take() else {
            return seen;
        };
        let next = ListQuery {
            page_token: Some(token),
            ..q.clone()
        };
        page = store.list_users(dir, &next).await.unwrap();
    }
}

pub async fn removing_active_by_patch_is_stored_as_inactive(store: Arc<dyn Store>) {
    let d = directory(&*store, "rmactive").await;
    let u = store.create_user(d.id, user("leaver")).await.unwrap();
    let ops = roster_scim::patch::PatchRequest::parse(
        &json!({"Operations": [{"op": "remove", "path": "active"}]}),
    )
    .unwrap()
    .operations;
    let update: UserUpdateFn = Box::new(move |old: &User| {
        let raw =
            roster_scim::patch::apply(&old.raw.to_value(), roster_scim::ResourceKind::User, &ops)?;
        let n = roster_scim::resource::normalize_user(&raw)?;
        let mut fields = old.fields.clone();
        fields.active = n.active;
        Ok(UserWrite { fields, raw })
    });
    let updated = store.update_user(d.id, u.id, None, update).await.unwrap();
    assert!(!updated.fields.active);
    let read = store.get_user(d.id, u.id).await.unwrap();
    assert!(!read.fields.active);
    assert_eq!(read.raw.to_value()["active"], false);
    let inactive = matching_users(&*store, d.id, "active eq false").await;
    assert_eq!(inactive, [u.id]);
}

/// General filter semantics evaluated in SQL (was SQLite-only).
pub async fn filters_are_evaluated_in_sql(store: Arc<dyn Store>) {
    let store = &*store;
    let d = directory(store, "insql").await;
    let mut alice = user("Alice@Example.com");
    alice.fields.department = Some("Eng".into());
    alice.raw = json!({ "userName": "Alice@Example.com", "nickName": "ally", "x": { "level": 3 } });
    let alice = store.create_user(d.id, alice).await.unwrap();
    let mut bob = user("bob@example.org");
    bob.fields.active = false;
    bob.fields.emails[0].r#type = "home".into();
    store.create_user(d.id, bob).await.unwrap();
    store
        .create_user(d.id, user("carol_x@example.com"))
        .await
        .unwrap();
    let g = store
        .create_group(
            d.id,
            GroupWrite {
                members: Some(vec![member(&alice)]),
                ..group("Admins")
            },
        )
        .await
        .unwrap();

    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "alice@example.com""#, &["Alice@Example.com"]),
        (
            r#"userName ne "alice@example.com""#,
            &["bob@example.org", "carol_x@example.com"],
        ),
        (
            r#"userName co "EXAMPLE.COM""#,
            &["Alice@Example.com", "carol_x@example.com"],
        ),
        (r#"userName sw "b""#, &["bob@example.org"]),
        (r#"userName ew ".org""#, &["bob@example.org"]),
        (r#"userName co "_""#, &["carol_x@example.com"]),
        (
            r#"userName gt "bob""#,
            &["bob@example.org", "carol_x@example.com"],
        ),
        ("active eq false", &["bob@example.org"]),
        (
            r#"emails[type eq "work" and value co "alice"]"#,
            &["Alice@Example.com"],
        ),
        (r#"emails.type eq "home""#, &["bob@example.org"]),
        (
            r#"not (emails.type eq "home")"#,
            &["Alice@Example.com", "carol_x@example.com"],
        ),
        (
            r#"userName sw "a" or userName sw "c""#,
            &["Alice@Example.com", "carol_x@example.com"],
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "eng""#,
            &["Alice@Example.com"],
        ),
        ("title pr", &[]),
        (r#"nickName eq "ally""#, &["Alice@Example.com"]),
        ("x.level ge 3", &["Alice@Example.com"]),
        (
            r#"meta.created gt "2000-01-01T00:00:00Z""#,
            &[
                "Alice@Example.com",
                "bob@example.org",
                "carol_x@example.com",
            ],
        ),
        (r#"meta.created lt "2000-01-01T00:00:00Z""#, &[]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            user_names(store, d.id, &query(Some(filter))).await,
            *expected,
            "{filter}"
        );
    }
    // Case-insensitive beyond ASCII on both backends.
    store
        .create_user(d.id, user("Éva@Example.com"))
        .await
        .unwrap();
    for filter in [r#"userName eq "éVA@example.COM""#, r#"userName sw "éva""#] {
        assert_eq!(
            user_names(store, d.id, &query(Some(filter))).await,
            ["Éva@Example.com"],
            "{filter}"
        );
    }
    store.create_group(d.id, group("Ärzte")).await.unwrap();
    let doctors = ListQuery {
        filter: query(Some(r#"displayName eq "ärzte""#)).filter,
        ..query(None)
    };
    assert_eq!(store.list_groups(d.id, &doctors).await.unwrap().total, 1);

    let by_group = query(Some(&format!(r#"groups.value eq "{}""#, g.id)));
    assert_eq!(
        user_names(store, d.id, &by_group).await,
        ["Alice@Example.com"]
    );
    let page = store
        .list_users(
            d.id,
            &ListQuery {
                count: 1,
                ..query(Some(r#"userName co "example""#))
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (page.items.len(), page.total),
        (1, 4),
        "total counts every match"
    );

    let groups = store
        .list_groups(
            d.id,
            &ListQuery {
                filter: query(Some(&format!(r#"members.value eq "{}""#, alice.id))).filter,
                ..query(None)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        groups
            .items
            .iter()
            .map(|g| g.display_name.as_str())
            .collect::<Vec<_>>(),
        ["Admins"]
    );
    let admins = ListQuery {
        filter: query(Some(r#"displayName eq "admins""#)).filter,
        ..query(None)
    };
    assert_eq!(store.list_groups(d.id, &admins).await.unwrap().total, 1);

    let bad = store
        .list_users(d.id, &query(Some("active eq \"yes\"")))
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidFilter(_))), "{bad:?}");
}
