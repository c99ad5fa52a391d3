//! Membership churn: single-member PATCH add/remove through the gateway on
//! a group of `--group-size` members and on one of `--small-group-size`.
//! The cost of a PATCH must not grow with the group: both rows should match.

use std::sync::Arc;

use uuid::Uuid;

use crate::cli::BenchArgs;
use crate::env::Env;
use crate::load;
use crate::report::{Measurement, Report};
use crate::scim::{ScimClient, members_patch};
use crate::seed::Seeder;

/// Users added and removed by the churn (never members at the start).
const SPARE_USERS: usize = 256;

/// Measures the scenario on `env`, a fresh environment.
pub async fn measure(env: &Env, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut report = env.report("churn");
    let (dir, client) = env.directory("churn", args.concurrency).await?;
    let seeder = Seeder::connect(&env.database.url, args.seed_concurrency).await?;
    let members = args.group_size.max(args.small_group_size);
    eprintln!(
        "[{}] seeding {} users and the two groups",
        crate::elapsed_tag(),
        members + SPARE_USERS
    );
    let users = seeder
        .users(&dir, "c", 0..members + SPARE_USERS)
        .await?
        .results;
    let (members, spares) = users.split_at(members);
    let big = seeder.group(&dir, "c", 0, members).await?;
    let small = seeder
        .group(&dir, "c", 1, &members[..args.small_group_size])
        .await?;
    env.settle().await?;
    let spares: Arc<Vec<String>> = Arc::new(spares.iter().map(Uuid::to_string).collect());

    // Small first, then big, then small again: a drift of the machine shows
    // up as a difference between the two small runs.
    let mut rows = Vec::new();
    let runs = [
        (small, args.small_group_size, " (1st)"),
        (big, args.group_size, ""),
        (small, args.small_group_size, " (2nd)"),
    ];
    for (group, size, run) in runs {
        let label = format!("PATCH 1 member, group of {size}{run}");
        rows.push(churn(&client, group, &label, Arc::clone(&spares), args).await?);
    }
    let ratio = |f: fn(&Measurement) -> f64| {
        (f(&rows[1]) / f(&rows[0]).max(f(&rows[2])).max(1e-9) * 100.0).round() / 100.0
    };
    report.figure("big_vs_small_p99_ratio", ratio(|m| m.latency.p99_ms));
    report.figure(
        "big_vs_small_throughput_ratio",
        ratio(|m| m.throughput_per_s),
    );
    report.measurements = rows;
    Ok(report)
}

/// `--churn-ops` PATCHes on `group`, alternately adding and removing a
/// spare user (each worker's pair touches its own user).
async fn churn(
    client: &ScimClient,
    group: Uuid,
    label: &str,
    spares: Arc<Vec<String>>,
    args: &BenchArgs,
) -> anyhow::Result<Measurement> {
    eprintln!("[{}] {label} × {}", crate::elapsed_tag(), args.churn_ops);
    let client = client.clone();
    let group = group.to_string();
    let mut timed = load::run(args.churn_ops, args.concurrency, move |i| {
        let (client, group, spares) = (client.clone(), group.clone(), Arc::clone(&spares));
        async move {
            let user = spares[(i / 2) % spares.len()].clone();
            client
                .patch_group(&group, &members_patch(i % 2 == 0, &[user]))
                .await
        }
    })
    .await?;
    Ok(Measurement::of(label, args.concurrency, &mut timed))
}
