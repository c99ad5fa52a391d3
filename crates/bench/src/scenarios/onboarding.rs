//! Onboarding: N users, then G groups, then memberships pushed with PATCH
//! in batches, all through the SCIM gateway — the order Okta and Entra use
//! for a first sync.

use std::sync::Arc;

use crate::cli::BenchArgs;
use crate::env::Env;
use crate::load::{self, Timed};
use crate::report::{Measurement, Report};
use crate::scim::{Created, ScimClient, group_body, members_patch, user_body};

/// Name of the user-creation row; `limit` and `all` compare against it.
pub const POST_USERS: &str = "POST /Users";

/// Measures the scenario on `env`, a fresh environment.
pub async fn measure(env: &Env, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut report = env.report("onboarding");
    let (_, client) = env.directory("onboarding", args.concurrency).await?;
    let c = args.concurrency;

    let meter = env.cpu_meter();
    let cpu = meter.snapshot().await?;
    let mut users = create_users(&client, "u", args.users, c).await?;
    let cpu = meter.per_op(&cpu, args.users).await?;
    let m = Measurement::of(POST_USERS, c, &mut users);
    report.measurements.push(m.with_cpu(cpu));
    let user_ids: Vec<String> = users.results.into_iter().map(|u| u.id).collect();

    let mut groups = create_groups(&client, args.groups, c).await?;
    report
        .measurements
        .push(Measurement::of("POST /Groups", c, &mut groups));
    let group_ids: Vec<String> = groups.results.into_iter().map(|g| g.id).collect();

    let batches = membership_batches(&user_ids, &group_ids, args.patch_batch);
    let mut patches = add_members(&client, batches, c).await?;
    let name = format!("PATCH /Groups (add {} members)", args.patch_batch);
    report
        .measurements
        .push(Measurement::of(name, c, &mut patches));

    let total = users.elapsed + groups.elapsed + patches.elapsed;
    report.figure(
        "users_per_s",
        round1(args.users as f64 / users.elapsed.as_secs_f64()),
    );
    report.figure("total_secs", round1(total.as_secs_f64()));
    report.figure("memberships", user_ids.len());
    report.figure("activity_log", args.activity_log);
    Ok(report)
}

/// POST /Users for `prefix` users `0..n` at concurrency `c`.
pub async fn create_users(
    client: &ScimClient,
    prefix: &str,
    n: usize,
    c: usize,
) -> anyhow::Result<Timed<Created>> {
    eprintln!(
        "[{}] POST /Users × {n} at concurrency {c}",
        crate::elapsed_tag()
    );
    let client = client.clone();
    let prefix = prefix.to_owned();
    load::run(n, c, move |i| {
        let (client, body) = (client.clone(), user_body(&prefix, i));
        async move { client.create_user(&body).await }
    })
    .await
}

async fn create_groups(client: &ScimClient, n: usize, c: usize) -> anyhow::Result<Timed<Created>> {
    eprintln!("[{}] POST /Groups × {n}", crate::elapsed_tag());
    let client = client.clone();
    load::run(n, c, move |i| {
        let (client, body) = (client.clone(), group_body("", i));
        async move { client.create_group(&body).await }
    })
    .await
}

/// User `i` joins group `i % groups`; each group's members go in PATCHes of `batch`.
fn membership_batches(
    users: &[String],
    groups: &[String],
    batch: usize,
) -> Vec<(String, Vec<String>)> {
    if groups.is_empty() {
        return Vec::new();
    }
    let mut per_group: Vec<Vec<String>> = vec![Vec::new(); groups.len()];
    for (i, user) in users.iter().enumerate() {
        per_group[i % groups.len()].push(user.clone());
    }
    per_group
        .into_iter()
        .zip(groups)
        .flat_map(|(members, group)| {
            members
                .chunks(batch.max(1))
                .map(|c| (group.clone(), c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn add_members(
    client: &ScimClient,
    batches: Vec<(String, Vec<String>)>,
    c: usize,
) -> anyhow::Result<Timed<()>> {
    eprintln!(
        "[{}] PATCH /Groups × {}",
        crate::elapsed_tag(),
        batches.len()
    );
    let client = client.clone();
    let batches = Arc::new(batches);
    load::run(batches.len(), c, move |i| {
        let (client, batches) = (client.clone(), Arc::clone(&batches));
        async move {
            let (group, members) = &batches[i];
            client
                .patch_group(group, &members_patch(true, members))
                .await
        }
    })
    .await
}

pub(crate) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_lands_in_one_batch() {
        let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        let groups = vec!["g0".to_string(), "g1".to_string()];
        let batches = membership_batches(&users, &groups, 2);
        assert_eq!(batches.len(), 6);
        let mut all: Vec<String> = batches.iter().flat_map(|(_, m)| m.clone()).collect();
        all.sort();
        let mut expected = users.clone();
        expected.sort();
        assert_eq!(all, expected);
        assert!(batches.iter().all(|(g, m)| {
            m.iter()
                .all(|u| (u[1..].parse::<usize>().unwrap() % 2 == 0) == (g == "g0"))
        }));
    }
}
