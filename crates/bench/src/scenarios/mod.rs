//! The benchmark scenarios (docs/performance.md).

pub mod churn;
pub mod fanout;
pub mod hot_group;
pub mod ldap_sync;
pub mod limit;
pub mod lookup;
pub mod onboarding;
pub mod watch;
pub mod webhooks;

use serde_json::{Value, json};

use crate::cli::BenchArgs;
use crate::env::Env;
use crate::report::Report;

/// Every scenario, in the order `all` runs them.
pub const ALL: [&str; 9] = [
    "onboarding",
    "limit",
    "lookup",
    "churn",
    "hot-group",
    "watch-latency",
    "fanout",
    "webhooks",
    "ldap-sync",
];

/// Runs scenario `name` (or `all`), prints its tables and returns its JSON.
pub async fn run(name: &str, args: &BenchArgs) -> anyhow::Result<Value> {
    if name == "all" {
        return run_all(args).await;
    }
    let report = run_one(name, args).await?;
    report.print();
    Ok(serde_json::to_value(report)?)
}

async fn run_one(name: &str, args: &BenchArgs) -> anyhow::Result<Report> {
    match name {
        "onboarding" => on_fresh_env(args, onboarding::measure).await,
        "lookup" => lookup::run(args).await,
        "churn" => on_fresh_env(args, churn::measure).await,
        "hot-group" => on_fresh_env(args, hot_group::measure).await,
        "watch-latency" => watch::run(args).await,
        "fanout" => on_fresh_env(args, fanout::measure).await,
        "limit" => limit::run(args).await,
        "webhooks" => webhooks::run(args).await,
        "ldap-sync" => ldap_sync::run(args).await,
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

/// Measures a scenario that needs one environment, started for it and
/// torn down after.
async fn on_fresh_env(
    args: &BenchArgs,
    measure: impl AsyncFnOnce(&Env, &BenchArgs) -> anyhow::Result<Report>,
) -> anyhow::Result<Report> {
    Env::with(args, async |env| measure(env, args).await).await
}

/// Runs every scenario; prints Roster's onboarding rate as a fraction of
/// the raw-insert limit, measured in this same run.
async fn run_all(args: &BenchArgs) -> anyhow::Result<Value> {
    let mut reports = Vec::new();
    for name in ALL {
        let report = run_one(name, args).await?;
        report.print();
        reports.push(report);
    }
    let rate = |scenario: &str, row: &str| {
        reports
            .iter()
            .find(|r| r.scenario == scenario)
            .and_then(|r| r.measurement(row))
            .map(|m| m.throughput_per_s)
    };
    let onboarding = rate("onboarding", onboarding::POST_USERS);
    let raw = rate("limit", limit::RAW_INSERT);
    let fraction = match (onboarding, raw) {
        (Some(o), Some(r)) if r > 0.0 => Some((o / r * 1000.0).round() / 1000.0),
        _ => None,
    };
    println!();
    let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
    println!(
        "onboarding POST /Users {} users/s vs raw-insert limit {} rows/s: Roster at {} of the limit",
        show(onboarding),
        show(raw),
        show(fraction)
    );
    Ok(json!({ "scenarios": reports, "onboarding_fraction_of_limit": fraction }))
}
