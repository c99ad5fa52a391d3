//! Running a read and decoding its rows, for either backend: the one place
//! readers turn driver rows and driver errors into model values and
//! [`StoreError`]s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use uuid::Uuid;

use crate::error::{StoreError, StoreResult, stored_hash};

/// A statement of `DB` whose SQL it owns.
pub type Stmt<DB> = Query<'static, DB, <DB as Database>::Arguments>;

/// What the shared readers and statements need to know of a backend's
/// database: how its errors read (unique violations, serialization
/// failures …) and how it stores what the column types of the two do not
/// share (ids, times). Both read parameters written `$n`.
///
/// The supertraits say which values bind and decode without conversion; as
/// supertraits (unlike where clauses on those types) they follow
/// `DB: Dialect` into every generic caller.
pub trait Dialect:
    Database
    + Run
    + Binds<Option<String>>
    + Binds<Option<i64>>
    + Binds<Option<i32>>
    + Binds<Option<bool>>
    + Binds<Option<Vec<u8>>>
    + Gets<String>
    + Gets<Option<String>>
    + Gets<i64>
    + Gets<Option<i64>>
    + Gets<i32>
    + Gets<Option<i32>>
    + Gets<bool>
    + Gets<Option<Vec<u8>>>
{
    /// How an id is bound and stored (PostgreSQL `uuid`, SQLite text).
    type Id: for<'q> Encode<'q, Self> + Type<Self> + Send + 'static;
    fn map_db(error: sqlx::Error) -> StoreError;
    fn id(id: Uuid) -> Self::Id;
    fn read_id(row: &Self::Row, column: &str) -> StoreResult<Uuid>;
    fn read_opt_id(row: &Self::Row, column: &str) -> StoreResult<Option<Uuid>>;
    fn read_time(row: &Self::Row, column: &str) -> StoreResult<Option<DateTime<Utc>>>;
    fn bind_id(query: Stmt<Self>, id: Option<Uuid>) -> Stmt<Self>;
    fn bind_time(query: Stmt<Self>, time: Option<DateTime<Utc>>) -> Stmt<Self>;
    /// SQL for the statement's time plus parameter `n` (a [`Arg::Later`]):
    /// PostgreSQL's `now()`, the database's clock; SQLite, which keeps
    /// times as text and has no clock of that form, gets `now` bound.
    fn later(n: usize) -> String;
    fn bind_later(query: Stmt<Self>, after: Duration, now: DateTime<Utc>) -> Stmt<Self>;
    fn rows_affected(result: &Self::QueryResult) -> u64;
    /// How a write transaction starts.
    const BEGIN_WRITE: &'static str;
    /// How the rows of a table with a creation time sort oldest first.
    const BY_AGE: &'static str;
    /// A JSON document column (PostgreSQL `jsonb`, SQLite text).
    fn read_json(row: &Self::Row, column: &str) -> StoreResult<serde_json::Value>;
    /// What a `SELECT` of rows the transaction will change ends with.
    const FOR_UPDATE: &'static str;
}

impl Dialect for sqlx::Postgres {
    type Id = Uuid;
    fn map_db(error: sqlx::Error) -> StoreError {
        crate::postgres::errors::map_db(error)
    }
    fn id(id: Uuid) -> Uuid {
        id
    }
    fn read_id(row: &sqlx::postgres::PgRow, column: &str) -> StoreResult<Uuid> {
        row.try_get(column).map_err(Self::map_db)
    }
    fn read_opt_id(row: &sqlx::postgres::PgRow, column: &str) -> StoreResult<Option<Uuid>> {
        row.try_get(column).map_err(Self::map_db)
    }
    fn read_time(row: &sqlx::postgres::PgRow, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        row.try_get(column).map_err(Self::map_db)
    }
    fn bind_id(query: Stmt<Self>, id: Option<Uuid>) -> Stmt<Self> {
        query.bind(id)
    }
    fn bind_time(query: Stmt<Self>, time: Option<DateTime<Utc>>) -> Stmt<Self> {
        query.bind(time)
    }
    fn later(n: usize) -> String {
        format!("(now() + make_interval(secs => ${n}))")
    }
    fn bind_later(query: Stmt<Self>, after: Duration, _: DateTime<Utc>) -> Stmt<Self> {
        query.bind(after.as_secs_f64())
    }
    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }
    const BEGIN_WRITE: &'static str = "BEGIN";
    const BY_AGE: &'static str = "created_at, id";
    fn read_json(row: &sqlx::postgres::PgRow, column: &str) -> StoreResult<serde_json::Value> {
        row.try_get(column).map_err(Self::map_db)
    }
    /// The row lock makes concurrent writers of the row take turns.
    const FOR_UPDATE: &'static str = "FOR UPDATE";
}

impl Dialect for sqlx::Sqlite {
    type Id = String;
    fn map_db(error: sqlx::Error) -> StoreError {
        crate::sqlite::errors::map_db(error)
    }
    fn id(id: Uuid) -> String {
        crate::sqlite::codec::id_text(id)
    }
    fn read_id(row: &sqlx::sqlite::SqliteRow, column: &str) -> StoreResult<Uuid> {
        use crate::sqlite::codec::Col;
        row.id(column)
    }
    fn read_opt_id(row: &sqlx::sqlite::SqliteRow, column: &str) -> StoreResult<Option<Uuid>> {
        use crate::sqlite::codec::{Col, parse_id};
        row.opt_text(column)?.map(|t| parse_id(&t)).transpose()
    }
    fn read_time(
        row: &sqlx::sqlite::SqliteRow,
        column: &str,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        use crate::sqlite::codec::Col;
        row.opt_time(column)
    }
    fn bind_id(query: Stmt<Self>, id: Option<Uuid>) -> Stmt<Self> {
        query.bind(id.map(crate::sqlite::codec::id_text))
    }
    fn bind_time(query: Stmt<Self>, time: Option<DateTime<Utc>>) -> Stmt<Self> {
        query.bind(time.map(crate::sqlite::codec::time_text))
    }
    fn later(n: usize) -> String {
        format!("${n}")
    }
    fn bind_later(query: Stmt<Self>, after: Duration, now: DateTime<Utc>) -> Stmt<Self> {
        let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
        query.bind(crate::sqlite::codec::time_text(now + after))
    }
    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
    /// Takes the write lock up front, so a transaction never has to
    /// upgrade a read lock (which fails with SQLITE_BUSY instead of
    /// waiting).
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// The insertion order: two rows created in one microsecond (or across
    /// a clock step back) still list in the order they were made.
    const BY_AGE: &'static str = "created_seq";
    fn read_json(row: &sqlx::sqlite::SqliteRow, column: &str) -> StoreResult<serde_json::Value> {
        use crate::sqlite::codec::Col;
        row.json(column)
    }
    /// The single writer makes writers take turns; SQLite has no row locks.
    const FOR_UPDATE: &'static str = "";
}

/// `T` binds as a parameter of this database's statements as it is.
pub trait Binds<T>: Database {
    fn bind_value(query: Stmt<Self>, value: T) -> Stmt<Self>;
}

impl<DB: Database, T> Binds<T> for DB
where
    T: for<'t> Encode<'t, DB> + Type<DB>,
{
    fn bind_value(query: Stmt<Self>, value: T) -> Stmt<Self> {
        query.bind(value)
    }
}

/// A column of this database's rows decodes as `T` as it is.
pub trait Gets<T>: Database {
    fn get(row: &Self::Row, column: &str) -> Result<T, sqlx::Error>;
}

impl<DB: Database, T> Gets<T> for DB
where
    T: for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    fn get(row: &Self::Row, column: &str) -> Result<T, sqlx::Error> {
        row.try_get(column)
    }
}

/// Where a statement runs: on a pool, as its own transaction, or in an
/// open transaction.
pub enum On<'e, DB: Database> {
    Pool(&'e Pool<DB>),
    Tx(&'e mut DB::Connection),
}

impl<'e, DB: Database> From<&'e Pool<DB>> for On<'e, DB> {
    fn from(pool: &'e Pool<DB>) -> Self {
        On::Pool(pool)
    }
}

impl<'e, DB: Database> From<&'e mut sqlx::Transaction<'static, DB>> for On<'e, DB> {
    fn from(tx: &'e mut sqlx::Transaction<'static, DB>) -> Self {
        On::Tx(&mut **tx)
    }
}

/// Runs an owned statement of this database.
pub trait Run: Database {
    fn fetch_all(on: On<'_, Self>, query: Stmt<Self>) -> RunFuture<'_, Vec<Self::Row>>;
    fn fetch_optional(on: On<'_, Self>, query: Stmt<Self>) -> RunFuture<'_, Option<Self::Row>>;
    fn execute(on: On<'_, Self>, query: Stmt<Self>) -> RunFuture<'_, Self::QueryResult>;
}

pub type RunFuture<'p, T> = BoxFuture<'p, Result<T, sqlx::Error>>;

impl<DB: Database> Run for DB
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
{
    fn fetch_all(on: On<'_, Self>, query: Stmt<Self>) -> RunFuture<'_, Vec<Self::Row>> {
        match on {
            On::Pool(pool) => Box::pin(query.fetch_all(pool)),
            On::Tx(conn) => Box::pin(query.fetch_all(conn)),
        }
    }
    fn fetch_optional(on: On<'_, Self>, query: Stmt<Self>) -> RunFuture<'_, Option<Self::Row>> {
        match on {
            On::Pool(pool) => Box::pin(query.fetch_optional(pool)),
            On::Tx(conn) => Box::pin(query.fetch_optional(conn)),
        }
    }
    fn execute(on: On<'_, Self>, query: Stmt<Self>) -> RunFuture<'_, Self::QueryResult> {
        match on {
            On::Pool(pool) => Box::pin(query.execute(pool)),
            On::Tx(conn) => Box::pin(query.execute(conn)),
        }
    }
}

/// Opens a write transaction on `writer` the backend's way
/// ([`Dialect::BEGIN_WRITE`]).
pub(crate) async fn begin_write<DB: Dialect>(
    writer: &Pool<DB>,
) -> StoreResult<sqlx::Transaction<'static, DB>> {
    writer.begin_with(DB::BEGIN_WRITE).await.map_err(DB::map_db)
}

/// Commits a transaction opened by [`begin_write`].
pub(crate) async fn commit<DB: Dialect>(tx: sqlx::Transaction<'static, DB>) -> StoreResult<()> {
    tx.commit().await.map_err(DB::map_db)
}

/// One argument of a [`Sql`] statement, bound in the backend's own column
/// type where the backends differ (ids, times).
pub(crate) enum Arg {
    Id(Option<Uuid>),
    Text(Option<String>),
    Int(Option<i64>),
    Int32(Option<i32>),
    Flag(Option<bool>),
    Blob(Option<Vec<u8>>),
    Time(Option<DateTime<Utc>>),
    /// The statement's time plus this much; its parameter is written
    /// [`Dialect::later`] in the SQL.
    Later(Duration),
}

impl Arg {
    /// The statement's time.
    pub(crate) const NOW: Arg = Arg::Later(Duration::ZERO);
}

macro_rules! arg_from {
    ($($variant:ident: $t:ty => $v:ident $(=> $conv:expr)?;)*) => {$(
        impl From<$t> for Arg {
            fn from($v: $t) -> Arg {
                Arg::$variant($($conv)?)
            }
        }
    )*};
}

arg_from! {
    Id: Uuid => v => Some(v);
    Id: Option<Uuid> => v => v;
    Text: String => v => Some(v);
    Text: &str => v => Some(v.to_owned());
    Text: Option<String> => v => v;
    Text: Option<&str> => v => v.map(str::to_owned);
    Int: i64 => v => Some(v);
    Int: Option<i64> => v => v;
    Int32: i32 => v => Some(v);
    Int32: Option<i32> => v => v;
    Flag: bool => v => Some(v);
    Flag: Option<bool> => v => v;
    Blob: Vec<u8> => v => Some(v);
    Blob: &[u8] => v => Some(v.to_vec());
    Blob: Option<Vec<u8>> => v => v;
    Time: DateTime<Utc> => v => Some(v);
    Time: Option<DateTime<Utc>> => v => v;
}

/// A statement written once for both backends: SQL with `$n` parameters
/// (PostgreSQL's style, which SQLite reads too) and its arguments in order.
/// Run on a pool, each statement is its own transaction; SQLite runs the
/// writes on its single writer connection.
pub(crate) struct Sql {
    sql: String,
    args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(sql: impl Into<String>) -> Sql {
        Sql {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Sql {
        self.args.push(arg.into());
        self
    }

    fn query<DB: Dialect>(self) -> Stmt<DB> {
        // One reading of the clock for every time of the statement (used
        // where the database has none of its own: SQLite).
        let now = crate::sqlite::codec::now();
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for arg in self.args {
            query = match arg {
                Arg::Id(v) => DB::bind_id(query, v),
                Arg::Text(v) => <DB as Binds<_>>::bind_value(query, v),
                Arg::Int(v) => <DB as Binds<_>>::bind_value(query, v),
                Arg::Int32(v) => <DB as Binds<_>>::bind_value(query, v),
                Arg::Flag(v) => <DB as Binds<_>>::bind_value(query, v),
                Arg::Blob(v) => <DB as Binds<_>>::bind_value(query, v),
                Arg::Time(v) => DB::bind_time(query, v),
                Arg::Later(after) => DB::bind_later(query, after, now),
            };
        }
        query
    }

    /// Every row, decoded.
    pub(crate) async fn all<'e, DB: Dialect, T>(
        self,
        on: impl Into<On<'e, DB>>,
        decode: fn(&DB::Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let rows = DB::fetch_all(on.into(), self.query()).await;
        rows.map_err(DB::map_db)?.iter().map(decode).collect()
    }

    /// The row, if there is one, decoded.
    pub(crate) async fn optional<'e, DB: Dialect, T>(
        self,
        on: impl Into<On<'e, DB>>,
        decode: fn(&DB::Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let row = DB::fetch_optional(on.into(), self.query()).await;
        row.map_err(DB::map_db)?.as_ref().map(decode).transpose()
    }

    /// The one row, decoded, or `NotFound(what)`.
    pub(crate) async fn one<'e, DB: Dialect, T>(
        self,
        on: impl Into<On<'e, DB>>,
        what: &'static str,
        decode: fn(&DB::Row) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let row = self.optional(on, decode).await?;
        row.ok_or(StoreError::NotFound(what))
    }

    /// Runs it; returns how many rows it changed.
    pub(crate) async fn execute<'e, DB: Dialect>(
        self,
        on: impl Into<On<'e, DB>>,
    ) -> StoreResult<u64> {
        let done = DB::execute(on.into(), self.query()).await;
        Ok(DB::rows_affected(&done.map_err(DB::map_db)?))
    }
}

/// The columns of a row, typed, whichever backend it comes from.
pub(crate) struct Cols<'r, DB: Database>(pub &'r DB::Row);

impl<DB: Dialect> Cols<'_, DB> {
    /// A column whose type both databases decode alike (text, integers,
    /// booleans, bytes; optional or not).
    pub(crate) fn get<T>(&self, name: &str) -> StoreResult<T>
    where
        DB: Gets<T>,
    {
        <DB as Gets<T>>::get(self.0, name).map_err(DB::map_db)
    }
    pub(crate) fn id(&self, name: &str) -> StoreResult<Uuid> {
        DB::read_id(self.0, name)
    }
    pub(crate) fn opt_id(&self, name: &str) -> StoreResult<Option<Uuid>> {
        DB::read_opt_id(self.0, name)
    }
    pub(crate) fn opt_time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
        DB::read_time(self.0, name)
    }
    pub(crate) fn time(&self, name: &str) -> StoreResult<DateTime<Utc>> {
        self.opt_time(name)?.ok_or_else(|| null(name))
    }
    /// A text column holding a value's stable name.
    pub(crate) fn parsed<T: std::str::FromStr<Err = String>>(&self, name: &str) -> StoreResult<T> {
        self.get::<String>(name)?
            .parse()
            .map_err(StoreError::Internal)
    }
    /// A text column holding JSON.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> StoreResult<T> {
        crate::sqlite::codec::parse_json(&self.get::<String>(name)?)
    }
}

fn null(column: &str) -> StoreError {
    StoreError::Internal(format!("column {column} is unexpectedly null"))
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
pub(crate) async fn live_secret<DB: Dialect, T>(
    readers: &Pool<DB>,
    table: &str,
    columns: &str,
    hash: &[u8; 32],
    decode: impl Fn(&DB::Row) -> StoreResult<T>,
) -> StoreResult<Option<(T, [u8; 32])>> {
    let sql = format!("SELECT {columns}, hash FROM {table} WHERE hash = $1 AND revoked_at IS NULL");
    let query = Sql::new(sql).bind(&hash[..]).query();
    let row = DB::fetch_optional(readers.into(), query).await;
    let Some(row) = row.map_err(DB::map_db)? else {
        return Ok(None);
    };
    let hash = stored_hash(
        Cols::<DB>(&row)
            .get::<Option<Vec<u8>>>("hash")?
            .unwrap_or_default(),
    )?;
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
