//! Running a read and decoding its rows, for either backend: the one place
//! readers turn driver rows and driver errors into model values and
//! [`StoreError`]s.

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use crate::error::{StoreError, StoreResult, stored_hash};

/// What the shared readers need to know of a backend's database: how its
/// errors read (unique violations, serialization failures …) and how its
/// SQL names a statement's first parameter.
pub(crate) trait Dialect: Database {
    const FIRST_PARAM: &'static str;
    fn map_db(error: sqlx::Error) -> StoreError;
}

impl Dialect for sqlx::Postgres {
    const FIRST_PARAM: &'static str = "$1";
    fn map_db(error: sqlx::Error) -> StoreError {
        crate::postgres::errors::map_db(error)
    }
}

impl Dialect for sqlx::Sqlite {
    const FIRST_PARAM: &'static str = "?";
    fn map_db(error: sqlx::Error) -> StoreError {
        crate::sqlite::errors::map_db(error)
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
