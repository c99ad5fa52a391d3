//! The limit: the same user rows Roster writes, inserted straight into
//! PostgreSQL — same table and indexes (Roster's migrations), same server
//! and durability settings, same concurrency, one autocommit INSERT per row
//! — a lower bound on what any service on this database can do. Roster's
//! POST /Users rate is measured in the same run, each on an empty table,
//! and reported as a fraction of it.
//!
//! A second baseline inserts what Roster really writes per user: the user
//! row *and* its change-log row, in one autocommit statement (as
//! `PgStore::create_user` does). Against the first, the fraction is the
//! whole price of Roster (change log + service); against the second, only
//! the service's (HTTP, gRPC, JSON, the change tailer).

use std::sync::Arc;

use anyhow::anyhow;
use roster_store::{NewDirectory, Store};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::cli::BenchArgs;
use crate::cpu::CpuMeter;
use crate::db::BenchDatabase;
use crate::env::Env;
use crate::load::{self, Timed};
use crate::report::{Measurement, Report};
use crate::scenarios::onboarding::{POST_USERS, create_users};
use crate::seed::user_write;

/// Name of the raw-insert row.
pub const RAW_INSERT: &str = "raw INSERT users (1 row/statement)";
/// Name of the raw user + change row measurement.
pub const RAW_INSERT_WITH_CHANGE: &str = "raw INSERT user + change row (1 stmt)";

/// This is the one SQL statement of Roster outside `crates/store`: it is
/// the baseline being compared against, not Roster's data path. Columns and
/// values are exactly those of `PgStore::create_user`.
const RAW_INSERT_SQL: &str = "INSERT INTO users (id, directory_id, user_name, external_id, active, display_name, \
     given_name, family_name, emails, title, department, manager_id, employee_number, custom_attributes, raw, \
     user_name_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// [`RAW_INSERT_SQL`] plus the change row, shaped as in `PgStore::create_user`
/// (without the revision bookkeeping that needs only the sequence).
const RAW_INSERT_WITH_CHANGE_SQL: &str = "WITH u AS (INSERT INTO users (id, directory_id, user_name, external_id, \
     active, display_name, given_name, family_name, emails, title, department, manager_id, employee_number, \
     custom_attributes, raw, user_name_key) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
     RETURNING id, directory_id, version) \
     INSERT INTO changes (revision, event_id, directory_id, kind, resource_id, version, payload) \
     SELECT nextval('change_revision'), $17, u.directory_id, 'user.created', u.id, u.version, $18 FROM u";

/// Which rows a raw baseline inserts per user.
#[derive(Debug, Clone, Copy)]
enum RawRows {
    User,
    UserAndChange,
}

impl RawRows {
    fn sql(self) -> &'static str {
        match self {
            Self::User => RAW_INSERT_SQL,
            Self::UserAndChange => RAW_INSERT_WITH_CHANGE_SQL,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::User => RAW_INSERT,
            Self::UserAndChange => RAW_INSERT_WITH_CHANGE,
        }
    }
}

/// Name of Roster's POST /Bulk measurement.
pub const BULK_USERS: &str = "POST /Bulk (100 users/request)";
const BULK_SIZE: usize = 100;

/// Runs Roster's user creation (POST /Users, then POST /Bulk), then the raw
/// inserts, each on a fresh database.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let mut report = Env::with(args, async |env| {
        let mut report = env.report("limit");
        report.measurements.push(roster_users(env, args).await?);
        Ok(report)
    })
    .await?;
    let bulk = Env::with(args, async |env| roster_bulk_users(env, args).await).await?;
    let bulk_users_per_s = bulk_users_rate(&bulk);
    report.measurements.push(bulk);

    for rows in [RawRows::User, RawRows::UserAndChange] {
        let database = BenchDatabase::create(&args.database_url).await?;
        let raw = raw_inserts(&database.url, args, rows).await;
        if args.keep_database {
            database.keep();
        } else {
            database.drop_database().await?;
        }
        report.measurements.push(raw?);
    }

    let roster = report.measurements[0].throughput_per_s;
    let ratio = |of: f64, rate: f64| (rate / of.max(1e-9) * 1000.0).round() / 1000.0;
    let (users_only, with_change) = (
        report.measurements[2].throughput_per_s,
        report.measurements[3].throughput_per_s,
    );
    report.figure("onboarding_fraction_of_limit", ratio(users_only, roster));
    report.figure(
        "onboarding_fraction_of_user_and_change_rows",
        ratio(with_change, roster),
    );
    report.figure("bulk_users_per_s", bulk_users_per_s);
    report.figure(
        "bulk_fraction_of_limit",
        ratio(users_only, bulk_users_per_s),
    );
    Ok(report)
}

/// Users created per second by the POST /Bulk measurement (its
/// throughput is in requests).
fn bulk_users_rate(bulk: &Measurement) -> f64 {
    (bulk.throughput_per_s * BULK_SIZE as f64 * 10.0).round() / 10.0
}

/// The same users as [`roster_users`], 100 per POST /Bulk request.
async fn roster_bulk_users(env: &Env, args: &BenchArgs) -> anyhow::Result<Measurement> {
    let (_, client) = env.directory("limit-bulk", args.concurrency).await?;
    let requests = args.users.div_ceil(BULK_SIZE);
    eprintln!(
        "[{}] POST /Bulk × {requests} ({BULK_SIZE} users each) at concurrency {}",
        crate::elapsed_tag(),
        args.concurrency
    );
    let meter = env.cpu_meter();
    let cpu = meter.snapshot().await?;
    let n = args.users;
    let mut timed = load::run(requests, args.concurrency, move |r| {
        let client = client.clone();
        let users: Vec<_> = (r * BULK_SIZE..((r + 1) * BULK_SIZE).min(n))
            .map(|i| crate::scim::user_body("u", i))
            .collect();
        async move { client.bulk_create_users(&users).await }
    })
    .await?;
    let cpu = meter.per_op(&cpu, requests).await?;
    let m = Measurement::of(BULK_USERS, args.concurrency, &mut timed);
    Ok(m.with_cpu(cpu))
}

async fn roster_users(env: &Env, args: &BenchArgs) -> anyhow::Result<Measurement> {
    let (_, client) = env.directory("limit", args.concurrency).await?;
    let meter = env.cpu_meter();
    let cpu = meter.snapshot().await?;
    let mut users = create_users(&client, "u", args.users, args.concurrency).await?;
    let cpu = meter.per_op(&cpu, args.users).await?;
    let m = Measurement::of(POST_USERS, args.concurrency, &mut users);
    Ok(m.with_cpu(cpu))
}

async fn raw_inserts(url: &str, args: &BenchArgs, rows: RawRows) -> anyhow::Result<Measurement> {
    // Roster's schema and a directory row, through the store as Roster makes them.
    let store = roster_store::postgres::PgStore::connect(url, 2)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    store.migrate().await.map_err(|e| anyhow!("{e}"))?;
    let dir = store
        .create_directory(NewDirectory {
            name: "limit".into(),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;
    drop(store);

    let pool = PgPoolOptions::new()
        .max_connections(args.concurrency as u32)
        .connect(url)
        .await?;
    eprintln!(
        "[{}] {} × {} at concurrency {}",
        crate::elapsed_tag(),
        rows.label(),
        args.users,
        args.concurrency
    );
    let meter = CpuMeter::new(Vec::new(), url);
    let cpu = meter.snapshot().await?;
    let mut timed = insert_rows(pool.clone(), dir.id.0, args.users, args.concurrency, rows).await?;
    // The pool is still open here, so its backends' CPU is counted.
    let cpu = meter.per_op(&cpu, args.users).await?;
    pool.close().await;
    let m = Measurement::of(rows.label(), args.concurrency, &mut timed);
    Ok(m.with_cpu(cpu))
}

async fn insert_rows(
    pool: PgPool,
    dir: Uuid,
    n: usize,
    concurrency: usize,
    rows: RawRows,
) -> anyhow::Result<Timed<()>> {
    let pool = Arc::new(pool);
    load::run(n, concurrency, move |i| {
        let pool = Arc::clone(&pool);
        async move {
            let write = user_write("u", i)?;
            let id = Uuid::new_v4();
            let f = &write.fields;
            let mut query = sqlx::query::<Postgres>(rows.sql())
                .bind(id)
                .bind(dir)
                .bind(&f.user_name)
                .bind(&f.external_id)
                .bind(f.active)
                .bind(&f.display_name)
                .bind(&f.given_name)
                .bind(&f.family_name)
                .bind(serde_json::to_value(&f.emails)?)
                .bind(&f.title)
                .bind(&f.department)
                .bind(&f.manager_id)
                .bind(&f.employee_number)
                .bind(serde_json::to_value(&f.custom_attributes)?)
                .bind(&write.raw)
                .bind(roster_scim::text::fold(&f.user_name));
            if let RawRows::UserAndChange = rows {
                let payload = change_payload(dir, id, &write)?;
                query = query.bind(Uuid::new_v4()).bind(payload);
            }
            query.execute(&*pool).await?;
            Ok(())
        }
    })
    .await
}

/// The `user.created` payload Roster stores for `write`: the whole user.
fn change_payload(
    dir: Uuid,
    id: Uuid,
    write: &roster_store::UserWrite,
) -> anyhow::Result<serde_json::Value> {
    let now = chrono::Utc::now();
    let user = roster_store::User {
        id: roster_store::UserId(id),
        directory_id: roster_store::DirectoryId(dir),
        fields: write.fields.clone(),
        raw: roster_store::Document::from_value(&write.raw),
        group_ids: Vec::new(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    Ok(serde_json::to_value(user)?)
}
