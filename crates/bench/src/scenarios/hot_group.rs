//! One hot group: `--concurrency` connections each PATCH-adding one member
//! (a different user per request) to the SAME group, `--churn-ops` times,
//! then removing them again the same way. Every request contends for the
//! one group row (target: ≥ 2,000 adds/s, p99 < 50 ms at 16 connections;
//! docs/performance.md).

use std::sync::Arc;

use uuid::Uuid;

use crate::cli::BenchArgs;
use crate::env::Env;
use crate::load;
use crate::report::{Measurement, Report};
use crate::scim::{ScimClient, members_patch};
use crate::seed::Seeder;

/// Row names (the smoke test and docs refer to them).
pub const ADD: &str = "PATCH add 1 member, one group";
pub const REMOVE: &str = "PATCH remove 1 member, one group";

/// Measures the scenario on `env`, a fresh environment.
pub async fn measure(env: &Env, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut report = env.report("hot-group");
    let (dir, client) = env.directory("hot", args.concurrency).await?;
    let seeder = Seeder::connect(&env.database.url, args.seed_concurrency).await?;
    let initial = args.small_group_size;
    let ops = args.churn_ops;
    // Users outside the group and the newcomers pad the directory to
    // `--hot-group-directory-users`, so two group sizes can be compared
    // in directories of one size: only the group's size differs.
    let seeded = (initial + ops).max(args.hot_group_directory_users);
    eprintln!(
        "[{}] seeding {seeded} users and the group ({initial} members)",
        crate::elapsed_tag(),
    );
    let users = seeder.users(&dir, "h", 0..seeded).await?.results;
    let (members, rest) = users.split_at(initial);
    let newcomers = &rest[..ops];
    let group = seeder.group(&dir, "h", 0, members).await?;
    env.settle().await?;
    let newcomers: Arc<Vec<String>> = Arc::new(newcomers.iter().map(Uuid::to_string).collect());
    let meter = env.cpu_meter();
    let mut rows = Vec::new();
    for (add, label) in [(true, ADD), (false, REMOVE)] {
        let start = meter.snapshot().await?;
        let m = patches(&client, group, label, add, Arc::clone(&newcomers), args).await?;
        rows.push(m.with_cpu(meter.per_op(&start, newcomers.len()).await?));
    }
    report.measurements = rows;
    Ok(report)
}

/// One PATCH per newcomer, each adding (or removing) just that user.
async fn patches(
    client: &ScimClient,
    group: Uuid,
    label: &str,
    add: bool,
    users: Arc<Vec<String>>,
    args: &BenchArgs,
) -> anyhow::Result<Measurement> {
    eprintln!("[{}] {label} × {}", crate::elapsed_tag(), users.len());
    let client = client.clone();
    let group = group.to_string();
    let mut timed = load::run(users.len(), args.concurrency, move |i| {
        let (client, group, users) = (client.clone(), group.clone(), Arc::clone(&users));
        async move {
            client
                .patch_group(&group, &members_patch(add, &[users[i].clone()]))
                .await
        }
    })
    .await?;
    Ok(Measurement::new(
        label,
        args.concurrency,
        &mut timed.latencies,
        timed.elapsed,
    ))
}
