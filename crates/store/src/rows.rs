//! Running a read and decoding its rows, for either backend: the one place
//! readers turn driver rows and driver errors into model values and
//! [`StoreError`]s.

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use uuid::Uuid;

use crate::error::{StoreError, StoreResult, stored_hash};

/// What the shared readers need to know of a backend's database: how its
/// errors read (unique violations, serialization failures …) and how its
/// SQL names a statement's first parameter.
pub(crate) trait Dialect: Database {
    const FIRST_PARAM: &'static str;
    /// How an id is bound and stored (PostgreSQL `uuid`, SQLite text).
    type Id: for<'q> Encode<'q, Self> + Type<Self> + Send + 'static;
    fn map_db(error: sqlx::Error) -> StoreError;
    /// The `n`th (1-based) statement parameter.
    fn param(n: usize) -> String;
    fn id(id: Uuid) -> Self::Id;
    fn read_id(row: &Self::Row, column: &str) -> StoreResult<Uuid>;
}

impl Dialect for sqlx::Postgres {
    const FIRST_PARAM: &'static str = "$1";
    type Id = Uuid;
    fn map_db(error: sqlx::Error) -> StoreError {
        crate::postgres::errors::map_db(error)
    }
    fn param(n: usize) -> String {
        format!("${n}")
    }
    fn id(id: Uuid) -> Uuid {
        id
    }
    fn read_id(row: &sqlx::postgres::PgRow, column: &str) -> StoreResult<Uuid> {
        row.try_get(column).map_err(Self::map_db)
    }
}

impl Dialect for sqlx::Sqlite {
    const FIRST_PARAM: &'static str = "?";
    type Id = String;
    fn map_db(error: sqlx::Error) -> StoreError {
        crate::sqlite::errors::map_db(error)
    }
    fn param(n: usize) -> String {
        format!("?{n}")
    }
    fn id(id: Uuid) -> String {
        crate::sqlite::codec::id_text(id)
    }
    fn read_id(row: &sqlx::sqlite::SqliteRow, column: &str) -> StoreResult<Uuid> {
        use crate::sqlite::codec::Col;
        row.id(column)
    }
}

/// Every row the query returns, decoded.
pub(crate) async fn all<'c, DB, T>(
    query: Query<'_, DB, DB::Arguments>,
    conn: impl Executor<'c, Database = DB>,
    decode: impl Fn(&DB::Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
{
    let rows = query.fetch_all(conn).await.map_err(DB::map_db)?;
    rows.iter().map(decode).collect()
}

/// The one row the query returns, decoded, or `NotFound(what)`.
pub(crate) async fn one<'c, DB, T>(
    query: Query<'_, DB, DB::Arguments>,
    conn: impl Executor<'c, Database = DB>,
    what: &'static str,
    decode: impl FnOnce(&DB::Row) -> StoreResult<T>,
) -> StoreResult<T>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
{
    match query.fetch_optional(conn).await.map_err(DB::map_db)? {
        Some(row) => decode(&row),
        None => Err(StoreError::NotFound(what)),
    }
}

/// The live (unrevoked) secret of `table` (tokens, service credentials)
/// whose hash is `hash`, decoded from `columns`, with the hash as stored for
/// the caller's constant-time comparison.
pub(crate) async fn live_secret<'c, DB, T>(
    conn: impl Executor<'c, Database = DB>,
    table: &str,
    columns: &str,
    hash: &[u8; 32],
    decode: impl Fn(&DB::Row) -> StoreResult<T>,
) -> StoreResult<Option<(T, [u8; 32])>>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    Vec<u8>: for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let sql = format!(
        "SELECT {columns}, hash FROM {table} WHERE hash = {} AND revoked_at IS NULL",
        DB::FIRST_PARAM
    );
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&hash[..]);
    let Some(row) = query.fetch_optional(conn).await.map_err(DB::map_db)? else {
        return Ok(None);
    };
    let hash = stored_hash(row.try_get("hash").map_err(DB::map_db)?)?;
    Ok(Some((decode(&row)?, hash)))
}

/// Whether the database behind `pool` answers (a connection from the pool,
/// pinged).
pub(crate) async fn ping<DB: Dialect>(pool: &sqlx::Pool<DB>) -> StoreResult<()> {
    use sqlx::Connection;
    let mut conn = pool.acquire().await.map_err(DB::map_db)?;
    conn.ping().await.map_err(DB::map_db)
}

/// Streams the rows of one statement run in `tx`'s snapshot, cut into pages
/// of `size`: the statement is planned and sorted once (a keyset statement
/// per page would re-plan, and with stale statistics re-read the whole
/// result, for every page). A task starts on the first poll, sends a page at
/// a time, and commits (ends the snapshot) after the last row; dropping the
/// stream stops it and rolls the snapshot back.
pub(crate) fn pages<DB, T>(
    tx: sqlx::Transaction<'static, DB>,
    query: Query<'static, DB, DB::Arguments>,
    size: i64,
    decode: fn(&DB::Row) -> StoreResult<T>,
) -> futures::stream::BoxStream<'static, StoreResult<Vec<T>>>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB> + Send,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    T: Send + 'static,
{
    use futures::{SinkExt, StreamExt};
    let size = usize::try_from(size.max(1)).unwrap_or(usize::MAX);
    let start = async move {
        let (mut sender, receiver) = futures::channel::mpsc::channel(1);
        tokio::spawn(async move {
            if let Err(e) = send_pages(tx, query, size, decode, &mut sender).await {
                let _ = sender.send(Err(e)).await;
            }
        });
        receiver
    };
    futures::stream::once(start).flatten().boxed()
}

async fn send_pages<DB, T>(
    mut tx: sqlx::Transaction<'static, DB>,
    query: Query<'static, DB, DB::Arguments>,
    size: usize,
    decode: fn(&DB::Row) -> StoreResult<T>,
    pages: &mut futures::channel::mpsc::Sender<StoreResult<Vec<T>>>,
) -> StoreResult<()>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB> + Send,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    T: Send + 'static,
{
    use futures::{SinkExt, TryStreamExt};
    let mut page = Vec::with_capacity(size.min(PAGE_PREALLOCATION));
    {
        let mut rows = query.fetch(&mut *tx);
        while let Some(row) = rows.try_next().await.map_err(DB::map_db)? {
            page.push(decode(&row)?);
            if page.len() == size && pages.send(Ok(std::mem::take(&mut page))).await.is_err() {
                // The reader went away: dropping `tx` rolls the snapshot back.
                return Ok(());
            }
        }
    }
    tx.commit().await.map_err(DB::map_db)?;
    if !page.is_empty() {
        let _ = pages.send(Ok(page)).await;
    }
    Ok(())
}

/// Rows reserved up front for a page (a caller's page size may be huge).
const PAGE_PREALLOCATION: usize = 5_000;
