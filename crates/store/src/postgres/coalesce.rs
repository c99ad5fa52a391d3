//! Keyed user searches gathered into one statement.
//!
//! An IdP searches `userName eq "…"` (or `externalId eq "…"`) before nearly
//! every write, and many such searches arrive at once. Each one alone is an
//! index probe whose cost is almost all per-statement overhead on both
//! sides: the message, the wake-up of a PostgreSQL backend, executor
//! start-up, and the same again in sqlx (docs/performance.md, issue #15).
//! Here searches queue, and a few *lanes* — tasks each holding a lookup
//! connection while there is work — run the queue a batch at a time: one
//! statement with a `LATERAL` index probe per key, one round trip, and each
//! search gets its own rows. A search that arrives while a lane is free
//! starts one and runs at once, so a lone search waits for nothing; under
//! load the searches that arrive while the lanes are busy share the next
//! statement (the same trade as group commit for writes, `write/`).
//!
//! Nothing is cached: every search's rows come from a statement that
//! started after the search arrived, so it sees every write acknowledged
//! before it. A search whose batch failed, or found no connection, runs
//! alone on the ordinary path, which then reports its own error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use sqlx::Row;
use sqlx::postgres::PgRow;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::errors::map_db;
use super::lookups::Lookups;
use super::users::USER_COLUMNS;
use super::warm::Warm;
use crate::error::StoreResult;
use crate::filter_sql::{Dialect, ResourceTable, SqlArg, to_sql};
use crate::model::{DirectoryId, ListQuery};

/// Searches one statement answers at most.
const MAX_BATCH: usize = 16;

/// Lanes for so many lookup connections: half of them, so that `get_user`
/// keeps the others and batches grow under load (with a lane per
/// connection the bench's searches cost PostgreSQL more CPU each and ran
/// no faster: docs/performance.md, "eighth session").
fn lanes(connections: usize) -> usize {
    (connections / 2).max(1)
}

/// The key a batchable search compares, as its filter translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyColumn {
    /// `userName eq`: the folded key, unique in a directory.
    UserName,
    /// `externalId eq`: exact, not unique.
    ExternalId,
}

impl KeyColumn {
    /// What `to_sql` makes of `eq` on this key as a directory's only
    /// filter, its operand being the first argument.
    fn translated(self) -> &'static str {
        match self {
            Self::UserName => "(users.user_name_key = $1::text)",
            Self::ExternalId => "(users.external_id = $1::text)",
        }
    }

    /// The per-key probe: a `LATERAL` subquery with a `LIMIT`, so that
    /// PostgreSQL cannot turn it into a join whose generic plan might
    /// scan the table; each key is one index probe, as alone. `userName`
    /// matches one row at most and needs no order.
    fn statement(self) -> &'static str {
        static USER_NAME: LazyLock<String> =
            LazyLock::new(|| batch_sql("users.user_name_key = k.key LIMIT k.lim"));
        static EXTERNAL_ID: LazyLock<String> = LazyLock::new(|| {
            batch_sql("users.external_id = k.key ORDER BY users.created_seq LIMIT k.lim")
        });
        match self {
            Self::UserName => &USER_NAME,
            Self::ExternalId => &EXTERNAL_ID,
        }
    }
}

fn batch_sql(probe: &str) -> String {
    format!(
        "SELECT k.i, {USER_COLUMNS}, {groups} \
         FROM unnest($1::uuid[], $2::text[], $3::int8[]) WITH ORDINALITY AS k(dir, key, lim, i) \
         CROSS JOIN LATERAL (SELECT * FROM users WHERE users.directory_id = k.dir AND {probe}) AS users",
        groups = super::lists::USER_GROUP_IDS,
    )
}

/// A search the queue can answer: `eq` on a key of a user, as the
/// directory's first page, nothing else asked of it. `Some((column, key,
/// limit))` — the key as the filter binds it (folded for `userName`) and
/// the rows to read (one more than the page, to tell whether it is full).
pub(super) fn batchable(query: &ListQuery) -> Option<(KeyColumn, String, i64)> {
    let plain = query.omit_cursor
        && query.page_token.is_none()
        && query.sort.is_none()
        && query.start_index <= 1
        && query.count >= 1;
    let filter = query.filter.as_ref()?;
    // The cheap test first: most filters are not a lone `eq` on a key.
    if !plain || !super::lists::eq_on_one_of(filter, &["userName", "externalId"]) {
        return None;
    }
    let mut args = Vec::new();
    let sql = to_sql(filter, ResourceTable::Users, Dialect::Postgres, &mut args).ok()?;
    let column = [KeyColumn::UserName, KeyColumn::ExternalId]
        .into_iter()
        .find(|c| c.translated() == sql)?;
    match args.as_slice() {
        [SqlArg::Text(key)] => Some((column, key.clone(), query.count.saturating_add(1))),
        _ => None,
    }
}

/// One waiting search.
struct Pending {
    column: KeyColumn,
    dir: Uuid,
    key: String,
    limit: i64,
    /// `None`: run alone (the batch failed).
    reply: oneshot::Sender<Option<Vec<PgRow>>>,
}

/// The queue of searches and the lanes draining it.
///
/// A lane is a task that holds one lookup connection while the queue has
/// searches, running them a batch at a time. A search that arrives with
/// fewer than [`lanes`] running starts one; otherwise it waits for a
/// running lane's next batch. Lanes are tasks of their own, so a search
/// whose caller goes away never strands the others of its batch.
pub(super) struct Coalescer {
    lookups: Arc<Lookups>,
    state: Mutex<State>,
    /// Batch statements run, and the searches they answered.
    statements: AtomicU64,
    answered: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: Vec<Pending>,
    lanes: usize,
}

impl Coalescer {
    pub(super) fn new(lookups: Arc<Lookups>) -> Self {
        Self {
            lookups,
            state: Mutex::default(),
            statements: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }

    /// Batch statements run so far, and the searches they answered.
    #[cfg(test)]
    fn counts(&self) -> (u64, u64) {
        (
            self.statements.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
        )
    }

    /// The rows of `column = key` in `dir` (at most `limit`, in creation
    /// order), or `None` when the search must run alone.
    pub(super) async fn search(
        self: &Arc<Self>,
        column: KeyColumn,
        dir: DirectoryId,
        key: String,
        limit: i64,
    ) -> Option<Vec<PgRow>> {
        let (reply, answer) = oneshot::channel();
        let start_lane = {
            let mut state = self.lock();
            state.queue.push(Pending {
                column,
                dir: dir.0,
                key,
                limit,
                reply,
            });
            let start = state.lanes < lanes(self.lookups.size());
            state.lanes += usize::from(start);
            start
        };
        if start_lane {
            tokio::spawn(Arc::clone(self).lane());
        }
        answer.await.ok().flatten()
    }

    /// Runs batches until the queue is empty. The lane ends in the same
    /// critical section that finds the queue empty, so a search queued
    /// after that starts a lane of its own: none is left waiting.
    async fn lane(self: Arc<Self>) {
        let _ending = LaneEnd(&self);
        let mut conn: Option<Warm<'_>> = None;
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                if let Some(conn) = conn {
                    conn.park();
                }
                return;
            }
            let taken = match conn.take() {
                Some(conn) => Ok(conn),
                None => self.lookups.take().await,
            };
            conn = match taken {
                Ok(taken) => self.run(taken, batch).await,
                Err(error) => {
                    tracing::debug!(%error, "no lookup connection; the searches run alone");
                    answer_alone(batch);
                    None
                }
            };
        }
    }

    /// Runs `batch`, one statement per key column in it, and answers every
    /// search; gives the connection back only if every statement completed.
    async fn run<'a>(&self, mut conn: Warm<'a>, batch: Vec<Pending>) -> Option<Warm<'a>> {
        let (user_names, external_ids): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|p| p.column == KeyColumn::UserName);
        let mut healthy = true;
        for part in [user_names, external_ids] {
            if part.is_empty() {
                continue;
            }
            // After a failure the connection is not trusted with another
            // statement: the rest run alone, on connections of their own.
            if !healthy {
                answer_alone(part);
                continue;
            }
            match rows_of(&mut conn, &part).await {
                Ok(rows) => {
                    self.statements.fetch_add(1, Ordering::Relaxed);
                    self.answered
                        .fetch_add(part.len() as u64, Ordering::Relaxed);
                    for (pending, rows) in part.into_iter().zip(rows) {
                        let _ = pending.reply.send(Some(rows));
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "batched search failed; its searches run alone");
                    healthy = false;
                    answer_alone(part);
                }
            }
        }
        healthy.then_some(conn)
    }

    /// The oldest searches, at most [`MAX_BATCH`]; when there are none the
    /// calling lane has ended.
    fn next_batch(&self) -> Vec<Pending> {
        let mut state = self.lock();
        let upto = state.queue.len().min(MAX_BATCH);
        let batch: Vec<Pending> = state.queue.drain(..upto).collect();
        if batch.is_empty() {
            state.lanes -= 1;
        }
        batch
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ends a lane that panicked (its searches' senders are dropped with it,
/// so they run alone); a lane that returned has ended in `next_batch`.
struct LaneEnd<'a>(&'a Coalescer);

impl Drop for LaneEnd<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().lanes -= 1;
        }
    }
}

fn answer_alone(batch: Vec<Pending>) {
    for pending in batch {
        let _ = pending.reply.send(None);
    }
}

/// The rows of each search of `part` (all of one column), in its order.
async fn rows_of(conn: &mut Warm<'_>, part: &[Pending]) -> StoreResult<Vec<Vec<PgRow>>> {
    let dirs: Vec<Uuid> = part.iter().map(|p| p.dir).collect();
    let keys: Vec<&str> = part.iter().map(|p| p.key.as_str()).collect();
    let limits: Vec<i64> = part.iter().map(|p| p.limit).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(part[0].column.statement()))
        .bind(dirs)
        .bind(keys)
        .bind(limits)
        .fetch_all(&mut **conn)
        .await
        .map_err(map_db)?;
    let mut out: Vec<Vec<PgRow>> = part.iter().map(|_| Vec::new()).collect();
    for row in rows {
        let i: i64 = row.try_get("i").map_err(map_db)?;
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| crate::error::StoreError::Internal(format!("batch row {i}")))?;
        slot.push(row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::model::{NewDirectory, ProviderKind, User, UserFields, UserWrite};
    use crate::postgres::PgStore;

    fn search(filter: &str) -> ListQuery {
        ListQuery {
            filter: Some(roster_scim::filter::parse(filter).unwrap()),
            start_index: 1,
            count: 10,
            omit_cursor: true,
            ..ListQuery::default()
        }
    }

    #[test]
    fn only_a_plain_first_page_of_eq_on_a_user_key_is_batched() {
        let batched = batchable;
        assert_eq!(
            batched(&search(r#"userName eq "Ann@Example.COM""#)),
            Some((KeyColumn::UserName, "ann@example.com".into(), 11)),
            "userName's key is folded, as the filter binds it"
        );
        assert_eq!(
            batched(&search(
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#
            )),
            Some((KeyColumn::UserName, "a".into(), 11))
        );
        assert_eq!(
            batched(&search(r#"externalId eq "E-1""#)),
            Some((KeyColumn::ExternalId, "E-1".into(), 11)),
            "externalId is case-exact"
        );
        for other in [
            r#"userName eq "a" and active eq true"#,
            r#"id eq "a""#,
            r#"userName sw "a""#,
            r#"displayName eq "a""#,
            r#"emails.value eq "a""#,
        ] {
            assert_eq!(batched(&search(other)), None, "{other}");
        }
        let not_plain = [
            ListQuery {
                start_index: 2,
                ..search(r#"userName eq "a""#)
            },
            ListQuery {
                count: 0,
                ..search(r#"userName eq "a""#)
            },
            ListQuery {
                omit_cursor: false,
                ..search(r#"userName eq "a""#)
            },
            ListQuery {
                page_token: Some("t".into()),
                ..search(r#"userName eq "a""#)
            },
        ];
        for query in not_plain {
            assert_eq!(batched(&query), None, "{query:?}");
        }
    }

    fn user(name: &str, external_id: Option<&str>) -> UserWrite {
        UserWrite {
            fields: UserFields {
                user_name: name.into(),
                external_id: external_id.map(Into::into),
                active: true,
                ..Default::default()
            },
            raw: serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name,
                "externalId": external_id,
            }),
        }
    }

    fn names(users: &[User]) -> Vec<&str> {
        users.iter().map(|u| u.fields.user_name.as_str()).collect()
    }

    /// A migrated store on a fresh database, with one directory per name.
    async fn store_with(prefix: &str, names: &[&str]) -> (PgStore, Vec<DirectoryId>) {
        let url = roster_testkit::fresh_database(prefix).await;
        let store = PgStore::connect(&url, 8).await.expect("connect");
        store.migrate().await.expect("migrate");
        let mut dirs = Vec::new();
        for name in names {
            let directory = NewDirectory {
                name: (*name).into(),
                organization: format!("org-{name}"),
                provider: ProviderKind::Okta,
                ..Default::default()
            };
            dirs.push(store.create_directory(directory).await.unwrap().id);
        }
        (store, dirs)
    }

    /// Searches sent together in two directories — hits, misses, a key
    /// shared by several users, one with more matches than its page — are
    /// answered by fewer statements than searches, each with exactly what
    /// it would find alone.
    #[tokio::test]
    async fn searches_sent_together_share_statements_and_each_gets_its_own_rows() {
        let (store, dirs) = store_with("coalesce", &["a", "b"]).await;
        for (dir, name) in dirs.iter().zip(["a", "b"]) {
            for i in 0..20 {
                let shared = (i % 5 == 0).then_some("shared");
                store
                    .create_user(*dir, user(&format!("{name}-user-{i}"), shared))
                    .await
                    .unwrap();
            }
        }
        let mut searches = Vec::new();
        for (d, dir) in dirs.iter().enumerate() {
            let name = ["a", "b"][d];
            for i in 0..30 {
                // i ≥ 20: nobody; upper case: the same user (folded key).
                let filter = match i % 2 {
                    0 => format!(r#"userName eq "{name}-user-{i}""#),
                    _ => format!(r#"userName eq "{}-USER-{i}""#, name.to_uppercase()),
                };
                let expect = (i < 20).then(|| format!("{name}-user-{i}"));
                searches.push((
                    *dir,
                    search(&filter),
                    expect.into_iter().collect::<Vec<_>>(),
                    None,
                ));
            }
            let shared: Vec<String> = (0..20)
                .step_by(5)
                .map(|i| format!("{name}-user-{i}"))
                .collect();
            searches.push((
                *dir,
                search(r#"externalId eq "shared""#),
                shared.clone(),
                None,
            ));
            searches.push((*dir, search(r#"externalId eq "SHARED""#), vec![], None));
            let two = ListQuery {
                count: 2,
                ..search(r#"externalId eq "shared""#)
            };
            searches.push((*dir, two, shared[..2].to_vec(), Some(4)));
        }
        // One task polls every search before any lane runs: they all queue.
        let results = futures::future::join_all(
            searches
                .iter()
                .map(|(dir, query, ..)| store.list_users(*dir, query)),
        )
        .await;
        for ((_, query, expect, total), page) in searches.iter().zip(results) {
            let page = page.unwrap();
            assert_eq!(names(&page.items), *expect, "{query:?}");
            let total = total.unwrap_or(expect.len() as i64);
            assert_eq!(page.total, total, "{query:?}");
            assert_eq!(page.next_page_token.is_some(), total > expect.len() as i64);
        }
        let (statements, answered) = store.coalescer.counts();
        assert_eq!(
            answered,
            searches.len() as u64,
            "every search went through a batch"
        );
        assert!(
            statements < answered / 4,
            "{statements} statements for {answered} searches"
        );
    }

    /// Each key of an `externalId` batch is one index range scan already
    /// in creation order: no sort node per key.
    #[tokio::test]
    async fn an_external_id_probe_needs_no_sort() {
        let (store, dirs) = store_with("coalesce_plan", &["plan"]).await;
        let dir = dirs[0];
        for i in 0..300 {
            let external_id = format!("e-{}", i % 100);
            store
                .create_user(dir, user(&format!("u-{i}"), Some(&external_id)))
                .await
                .unwrap();
        }
        sqlx::query("ANALYZE users")
            .execute(store.pool())
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN {}",
            KeyColumn::ExternalId.statement()
        )))
        .bind(vec![dir.0, dir.0])
        .bind(vec!["e-1", "e-2"])
        .bind(vec![11_i64, 11])
        .fetch_all(store.pool())
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("users_external_id_created"), "{plan}");
        assert!(!plan.contains("Sort Key: users.created_seq"), "{plan}");
    }
}
