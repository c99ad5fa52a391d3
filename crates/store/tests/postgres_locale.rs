//! userName keys on PostgreSQL do not depend on the server's locale, and
//! existing rows get their keys when migration 0003 runs. The databases
//! here are created with `LC_CTYPE = 'C'`, under which `lower()` folds ASCII
//! only (the locale of many container images' `initdb`).

use roster_store::postgres::PgStore;
use roster_store::*;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

/// A fresh, empty database with the C locale; returns its URL.
async fn c_locale_database(prefix: &str) -> String {
    let server = roster_testkit::postgres().await;
    let name = format!(
        "roster_test_{prefix}_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let mut admin = PgConnection::connect(server.url())
        .await
        .expect("admin connection");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    )))
    .execute(&mut admin)
    .await
    .expect("create a C-locale database");
    server.database_url(&name)
}

fn user(name: &str) -> UserWrite {
    UserWrite {
        fields: UserFields {
            user_name: name.into(),
            active: true,
            ..Default::default()
        },
        raw: json!({"userName": name}),
    }
}

fn by_filter(text: &str) -> ListQuery {
    ListQuery {
        filter: Some(roster_scim::filter::parse(text).unwrap()),
        start_index: 1,
        count: 100,
        ..Default::default()
    }
}

async fn directory(store: &PgStore) -> DirectoryId {
    store
        .create_directory(NewDirectory {
            name: "locale".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id
}

fn is_user_name_conflict(result: &StoreResult<User>) -> bool {
    matches!(result, Err(StoreError::Conflict(m)) if m.contains("userName"))
}

#[tokio::test]
async fn user_names_fold_beyond_ascii_under_the_c_locale() {
    let url = c_locale_database("clocale").await;
    let store = PgStore::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let d = directory(&store).await;
    let eva = store
        .create_user(d, user("\u{c9}va@example.com"))
        .await
        .unwrap();
    assert!(is_user_name_conflict(
        &store.create_user(d, user("\u{e9}VA@example.com")).await
    ));
    assert!(is_user_name_conflict(
        &store.create_user(d, user("E\u{301}va@example.com")).await
    ));
    for f in [
        "userName eq \"\u{e9}va@EXAMPLE.com\"",
        "userName sw \"\u{c9}V\"",
        "userName co \"\u{e9}va@\"",
    ] {
        let page = store.list_users(d, &by_filter(f)).await.unwrap();
        assert_eq!(
            page.items.iter().map(|u| u.id).collect::<Vec<_>>(),
            [eva.id],
            "{f}"
        );
    }
}

/// Applies the migrations before 0003 (the schema of the previous release).
async fn migrate_to_previous_release(url: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::migrate!("../../migrations/postgres")
        .run_to(2, &mut conn)
        .await
        .expect("migrations up to 0002");
    conn
}

/// Inserts users the way the previous release stored them (no key column).
async fn insert_old_users(conn: &mut PgConnection, dir: Uuid, names: &[&str]) {
    for name in names {
        sqlx::query(
            "INSERT INTO users (id, directory_id, user_name, active, raw) VALUES ($1, $2, $3, true, $4)",
        )
        .bind(Uuid::new_v4())
        .bind(dir)
        .bind(name)
        .bind(json!({"userName": name}))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

async fn insert_old_directory(conn: &mut PgConnection) -> Uuid {
    let dir = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO directories (id, name, organization, provider, deprovision_policy) \
         VALUES ($1, 'old', 'old', 'generic', 'delete')",
    )
    .bind(dir)
    .execute(&mut *conn)
    .await
    .unwrap();
    dir
}

#[tokio::test]
async fn existing_users_are_keyed_by_the_migration() {
    let url = c_locale_database("rekey").await;
    let mut conn = migrate_to_previous_release(&url).await;
    let dir = insert_old_directory(&mut conn).await;
    // More rows than one keying batch.
    sqlx::query(
        "INSERT INTO users (id, directory_id, user_name, active, raw) \
         SELECT gen_random_uuid(), $1, 'user' || g || '@example.com', true, '{}'::jsonb \
         FROM generate_series(0, 11999) AS g",
    )
    .bind(dir)
    .execute(&mut conn)
    .await
    .unwrap();
    insert_old_users(&mut conn, dir, &["Zo\u{eb}@Example.com", "ALICE"]).await;

    let store = PgStore::connect(&url, 4).await.unwrap();
    store.migrate().await.expect("migrate existing data");
    store.migrate().await.expect("migrating again is a no-op");
    let d = DirectoryId(dir);
    assert!(is_user_name_conflict(
        &store.create_user(d, user("ZOE\u{308}@example.com")).await
    ));
    assert!(is_user_name_conflict(
        &store.create_user(d, user("alice")).await
    ));
    assert!(is_user_name_conflict(
        &store.create_user(d, user("USER11999@example.com")).await
    ));
    let page = store
        .list_users(d, &by_filter("userName eq \"zo\u{eb}@example.COM\""))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].fields.user_name, "Zo\u{eb}@Example.com");
    let total = store
        .list_users(d, &by_filter("userName sw \"user\""))
        .await
        .unwrap()
        .total;
    assert_eq!(total, 12_000);

    // A pod of the previous release, still running during the rollout,
    // inserts without the key: the row gets one and stays unique.
    insert_old_users(&mut conn, dir, &["Late@Example.com"]).await;
    assert!(is_user_name_conflict(
        &store.create_user(d, user("late@example.com")).await
    ));
    let late = by_filter("userName eq \"LATE@example.com\"");
    assert_eq!(store.list_users(d, &late).await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn names_equal_only_after_normalization_stop_the_migration_with_a_clear_error() {
    let url = c_locale_database("rekeyclash").await;
    let mut conn = migrate_to_previous_release(&url).await;
    let dir = insert_old_directory(&mut conn).await;
    insert_old_users(&mut conn, dir, &["Jos\u{e9}", "Jose\u{301}"]).await;
    let store = PgStore::connect(&url, 4).await.unwrap();
    match store.migrate().await {
        Err(StoreError::Internal(message)) => {
            assert!(message.contains("Unicode normalization"), "{message}")
        }
        other => panic!("expected a migration failure, got {other:?}"),
    }
    // Nothing half-done: after renaming one, the migration completes.
    sqlx::query("UPDATE users SET user_name = 'Jose2' WHERE user_name = $1")
        .bind("Jose\u{301}")
        .execute(&mut conn)
        .await
        .unwrap();
    store.migrate().await.expect("migrate after the rename");
    assert!(is_user_name_conflict(
        &store.create_user(DirectoryId(dir), user("JOS\u{c9}")).await
    ));
}
