//! The limit: the same user rows Roster writes, inserted straight into
//! PostgreSQL — same table and indexes (Roster's migrations), same server
//! and durability settings, same concurrency, one autocommit INSERT per row
//! — a lower bound on what any service on this database can do. Roster's
//! POST /Users rate is measured in the same run, each on an empty table,
//! and reported as a fraction of it.

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

/// This is the one SQL statement of Roster outside `crates/store`: it is
/// the baseline being compared against, not Roster's data path. Columns and
/// values are exactly those of `PgStore::create_user`.
const RAW_INSERT_SQL: &str = "INSERT INTO users (id, directory_id, user_name, external_id, active, display_name, \
     given_name, family_name, emails, title, department, manager_id, employee_number, custom_attributes, raw) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// Runs Roster's user creation, then the raw inserts, each on a fresh database.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let env = Env::start(args).await?;
    let mut report = env.report("limit");
    let roster = roster_users(&env, args).await;
    env.finish().await?;
    report.measurements.push(roster?);

    let database = BenchDatabase::create(&args.database_url).await?;
    let raw = raw_inserts(&database.url, args).await;
    if !args.keep_database {
        database.drop_database().await?;
    }
    report.measurements.push(raw?);

    let fraction =
        report.measurements[0].throughput_per_s / report.measurements[1].throughput_per_s.max(1e-9);
    report.figure(
        "onboarding_fraction_of_limit",
        (fraction * 1000.0).round() / 1000.0,
    );
    Ok(report)
}

async fn roster_users(env: &Env, args: &BenchArgs) -> anyhow::Result<Measurement> {
    let (_, client) = env.directory("limit", args.concurrency).await?;
    let meter = CpuMeter::new(env.server.pid(), &env.database.url);
    let cpu = meter.snapshot().await?;
    let mut users = create_users(&client, "u", args.users, args.concurrency).await?;
    let cpu = meter.per_op(&cpu, args.users).await?;
    let m = Measurement::new(
        POST_USERS,
        args.concurrency,
        &mut users.latencies,
        users.elapsed,
    );
    Ok(m.with_cpu(cpu))
}

async fn raw_inserts(url: &str, args: &BenchArgs) -> anyhow::Result<Measurement> {
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
        "[{}] raw INSERT × {} at concurrency {}",
        crate::elapsed_tag(),
        args.users,
        args.concurrency
    );
    let meter = CpuMeter::new(None, url);
    let cpu = meter.snapshot().await?;
    let mut timed = insert_rows(pool.clone(), dir.id.0, args.users, args.concurrency).await?;
    // The pool is still open here, so its backends' CPU is counted.
    let cpu = meter.per_op(&cpu, args.users).await?;
    pool.close().await;
    let m = Measurement::new(
        RAW_INSERT,
        args.concurrency,
        &mut timed.latencies,
        timed.elapsed,
    );
    Ok(m.with_cpu(cpu))
}

async fn insert_rows(
    pool: PgPool,
    dir: Uuid,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Timed<()>> {
    let pool = Arc::new(pool);
    load::run(n, concurrency, move |i| {
        let pool = Arc::clone(&pool);
        async move {
            let write = user_write("u", i)?;
            let f = &write.fields;
            sqlx::query::<Postgres>(RAW_INSERT_SQL)
                .bind(Uuid::new_v4())
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
                .execute(&*pool)
                .await?;
            Ok(())
        }
    })
    .await
}
