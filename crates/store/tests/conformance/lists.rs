//! Lists: pagination, sorting, cursors and filters.

use std::collections::HashSet;
use std::sync::Arc;

use roster_store::*;
use serde_json::json;

use super::{all_changes, directory, filter, group_with, page, query, user, users};

async fn users_named(store: &dyn Store, dir: DirectoryId, names: &[&str]) -> Vec<User> {
    let mut out = Vec::new();
    for n in names {
        out.push(store.create_user(dir, user(n)).await.unwrap());
    }
    out
}

pub async fn list_offset_pagination_and_totals(store: Arc<dyn Store>) {
    let dir = directory(&*store, "page").await;
    let other = directory(&*store, "page2").await;
    let names: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let users = users_named(&*store, dir.id, &names).await;
    store.create_user(other.id, user("p0")).await.unwrap();

    let mut q = query(None);
    q.count = 3;
    q.start_index = 3;
    let page = store.list_users(dir.id, &q).await.unwrap();
    assert_eq!(page.total, 7);
    let got: Vec<UserId> = page.items.iter().map(|u| u.id).collect();
    assert_eq!(
        got,
        users[2..5].iter().map(|u| u.id).collect::<Vec<_>>(),
        "creation order"
    );

    // The same page without a change-log cursor (the SCIM gateway's lists).
    q.omit_cursor = true;
    let cheap = store.list_users(dir.id, &q).await.unwrap();
    assert_eq!(cheap.total, 7);
    assert_eq!(cheap.items.iter().map(|u| u.id).collect::<Vec<_>>(), got);

    // Past the end: no rows, the total still counts every match.
    for omit_cursor in [false, true] {
        let mut q = query(None);
        (q.start_index, q.omit_cursor) = (50, omit_cursor);
        let past = store.list_users(dir.id, &q).await.unwrap();
        assert_eq!((past.total, past.items.len()), (7, 0), "{omit_cursor}");
    }

    let mut q = query(Some(r#"userName sw "p" and not (userName eq "p3")"#));
    q.count = 0;
    let page = store.list_users(dir.id, &q).await.unwrap();
    assert_eq!((page.total, page.items.len()), (6, 0));

    // A search: its total from a page that is not full, from a count when
    // the page is full, and past the end, with and without a cursor.
    for omit_cursor in [false, true] {
        for (start, count, rows) in [
            (1, 10, 6),
            (2, 10, 5),
            (1, 3, 3),
            (4, 3, 3),
            (5, 3, 2),
            (9, 3, 0),
        ] {
            let mut q = query(Some(r#"userName sw "p" and not (userName eq "p3")"#));
            (q.start_index, q.count, q.omit_cursor) = (start, count, omit_cursor);
            let page = store.list_users(dir.id, &q).await.unwrap();
            let case = format!("start {start}, count {count}, omit_cursor {omit_cursor}");
            assert_eq!((page.total, page.items.len()), (6, rows), "{case}");
        }
    }

    let groups = store.list_groups(dir.id, &query(None)).await.unwrap();
    assert_eq!((groups.total, groups.items.len()), (0, 0));
}

pub async fn list_keyset_pagination_survives_inserts(store: Arc<dyn Store>) {
    let dir = directory(&*store, "keyset").await;
    let names: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    users_named(&*store, dir.id, &names).await;

    let sorts = [None, Some(("userName", false)), Some(("userName", true))];
    for (round, sort) in sorts.into_iter().enumerate() {
        let mut q = query(Some(r#"userName sw "k""#));
        q.count = 2;
        q.sort = sort.map(|(p, descending)| Sort {
            path: roster_scim::filter::parse_attr_path(p).unwrap(),
            descending,
        });
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.list_users(dir.id, &q).await.unwrap();
            seen.extend(page.items.iter().map(|u| u.fields.user_name.clone()));
            pages += 1;
            if pages == 1 {
                // Rows inserted between pages, sorting before and after the
                // page boundary: offset paging would repeat a row, keyset
                // paging must not.
                for prefix in ["k0a", "kz"] {
                    let name = format!("{prefix}{round}");
                    store.create_user(dir.id, user(&name)).await.unwrap();
                }
            }
            match page.next_page_token {
                Some(t) => q.page_token = Some(t),
                None => break,
            }
            assert!(pages < 20, "pagination does not end");
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "no duplicates across pages: {seen:?}"
        );
        for n in &names {
            assert!(
                seen.iter().any(|s| s == n),
                "{n} missing from {seen:?} ({sort:?})"
            );
        }
        let mut sorted = seen.clone();
        match sort {
            Some((_, false)) => {
                sorted.sort();
                assert_eq!(seen, sorted);
            }
            Some((_, true)) => {
                sorted.sort();
                sorted.reverse();
                assert_eq!(seen, sorted);
            }
            None => {}
        }
    }
    let mut q = query(None);
    q.page_token = Some("not a token".into());
    assert!(matches!(
        store.list_users(dir.id, &q).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn list_sorting(store: Arc<dyn Store>) {
    let dir = directory(&*store, "sort").await;
    for (name, title) in [("b", Some("Zed")), ("a", None), ("c", Some("alpha"))] {
        let mut w = user(name);
        w.fields.title = title.map(str::to_string);
        if let Some(t) = title {
            w.raw["title"] = json!(t);
        }
        store.create_user(dir.id, w).await.unwrap();
    }
    let sorted = |path: &str, descending: bool| {
        let mut q = query(None);
        q.sort = Some(Sort {
            path: roster_scim::filter::parse_attr_path(path).unwrap(),
            descending,
        });
        q
    };
    // Paths and values compare case-insensitively ("alpha" before "Zed"); a
    // missing title sorts first ascending.
    let cases = [
        ("userName", false, ["a", "b", "c"]),
        ("USERNAME", true, ["c", "b", "a"]),
        ("title", false, ["a", "c", "b"]),
        ("meta.created", true, ["c", "a", "b"]),
    ];
    for (path, descending, expected) in cases {
        let page = store
            .list_users(dir.id, &sorted(path, descending))
            .await
            .unwrap();
        let names: Vec<String> = page.items.into_iter().map(|u| u.fields.user_name).collect();
        assert_eq!(
            names, expected,
            "sorted by {path}, descending: {descending}"
        );
    }
}

pub async fn list_cursor_is_exact(store: Arc<dyn Store>) {
    let dir = directory(&*store, "cursor").await;
    store.create_user(dir.id, user("before")).await.unwrap();
    let page = store.list_users(dir.id, &query(None)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let cursor = page.cursor.expect("a list cursor");
    let after_list = store.create_user(dir.id, user("after")).await.unwrap();

    let head = store.advance_stable_head(0).await.unwrap();
    let changes = store
        .read_changes(&ChangeFilter::default(), cursor.after, head, 1000)
        .await
        .unwrap();
    let unseen: Vec<&ChangeRecord> = changes
        .iter()
        .filter(|c| !cursor.also_seen.contains(&c.revision))
        .collect();
    assert_eq!(
        unseen.len(),
        1,
        "exactly the change after the list: {unseen:?}"
    );
    assert_eq!(unseen[0].resource_id, after_list.id.0);
    // Everything the list reflects is at or below the cursor.
    let all = all_changes(&*store, None).await;
    let reflected: Vec<i64> = all
        .iter()
        .filter(|c| c.revision <= cursor.after || cursor.also_seen.contains(&c.revision))
        .map(|c| c.revision)
        .collect();
    assert_eq!(reflected.len(), all.len() - 1);
}

pub async fn filters_agree_with_the_evaluator(store: Arc<dyn Store>) {
    super::oracle::check_filters_against_evaluator(&*store).await;
}

pub async fn invalid_filters_are_typed_errors(store: Arc<dyn Store>) {
    let dir = directory(&*store, "badfilter").await;
    store.create_user(dir.id, user("x")).await.unwrap();
    for f in [
        "userName eq true",
        "active eq \"yes\"",
        "meta.created gt \"yesterday\"",
        "displayName gt 3",
    ] {
        let err = store.list_users(dir.id, &query(Some(f))).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidFilter(_)), "{f}: {err:?}");
    }
    let _ = filter("userName pr");
}

pub async fn lists_page_by_offset_and_keyset_in_creation_order(store: Arc<dyn Store>) {
    let d = directory(&*store, "Acme").await;
    let names: Vec<String> = users(&*store, d.id, "user", 5)
        .await
        .into_iter()
        .map(|u| u.fields.user_name)
        .collect();
    let bounds = store.log_bounds().await.unwrap();

    let first = store.list_users(d.id, &page(2)).await.unwrap();
    assert_eq!(first.total, 5);
    assert_eq!(
        first.cursor,
        Some(Cursor {
            after: bounds.stable_head,
            also_seen: vec![],
            epoch: Some(bounds.epoch),
        })
    );
    let by_offset = store
        .list_users(
            d.id,
            &ListQuery {
                start_index: 3,
                ..page(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_offset
            .items
            .iter()
            .map(|u| &u.fields.user_name)
            .collect::<Vec<_>>(),
        [&names[2], &names[3]]
    );

    // Keyset pages stay exact while rows are inserted and deleted between pages.
    store
        .delete_user(d.id, first.items[0].id, None)
        .await
        .unwrap();
    let late = store.create_user(d.id, user("late")).await.unwrap();
    let mut seen: Vec<String> = first
        .items
        .iter()
        .map(|u| u.fields.user_name.clone())
        .collect();
    let mut token = first.next_page_token.clone();
    while let Some(t) = token {
        let page = store
            .list_users(
                d.id,
                &ListQuery {
                    page_token: Some(t),
                    ..page(2)
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|u| u.fields.user_name.clone()));
        token = page.next_page_token;
    }
    let mut expected = names.clone();
    expected.push(late.fields.user_name);
    assert_eq!(seen, expected);

    let empty = store.list_users(d.id, &page(0)).await.unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(empty.total, 5);
    let bad = store
        .list_users(
            d.id,
            &ListQuery {
                page_token: Some("%%%".into()),
                ..page(2)
            },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))));

    let g = store
        .create_group(
            d.id,
            group_with(
                "g",
                vec![MemberRef {
                    id: late.id.0,
                    kind: MemberKind::User,
                }],
            ),
        )
        .await;
    let groups = store
        .list_groups(
            d.id,
            &ListQuery {
                include_members: true,
                ..page(10)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        groups.items,
        vec![Group {
            members: groups.items[0].members.clone(),
            ..g.unwrap()
        }]
    );
    assert_eq!(groups.items[0].members.as_ref().map(Vec::len), Some(1));
}
