//! The scenarios of issue #9.

pub mod onboarding;

use serde_json::Value;

use crate::cli::BenchArgs;
use crate::report::Report;

/// Runs scenario `name`, prints its table and returns its JSON.
pub async fn run(name: &str, args: &BenchArgs) -> anyhow::Result<Value> {
    let report = match name {
        "onboarding" => onboarding::run(args).await?,
        other => anyhow::bail!("unknown scenario {other}"),
    };
    report.print();
    Ok(serde_json::to_value(report)?)
}
