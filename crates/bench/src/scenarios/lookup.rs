//! Lookup: SCIM filters through the gateway at scale — `userName eq` and
//! `externalId eq` (what an IdP sends before every create), plus `co` and
//! `sw` — first with every user in one directory, then spread over many.
//!
//! Rows are seeded through the `roster_store::Store` API (one transaction
//! per user with its change row, as the directory service writes them) at
//! `--seed-concurrency`, which skips only the HTTP and gRPC hops.

use std::sync::Arc;

use anyhow::ensure;
use rand::Rng;

use crate::cli::BenchArgs;
use crate::cpu::CpuMeter;
use crate::env::Env;
use crate::load;
use crate::report::{Measurement, Report};
use crate::scim::{ScimClient, external_id, user_name};
use crate::seed::{Seeder, analyze_users};

/// Prefix of seeded user names.
const PREFIX: &str = "l";

/// The filters measured, by name.
#[derive(Debug, Clone, Copy)]
enum Probe {
    UserNameEq,
    ExternalIdEq,
    UserNameCo,
    UserNameSw,
}

impl Probe {
    const ALL: [Probe; 4] = [
        Self::UserNameEq,
        Self::ExternalIdEq,
        Self::UserNameCo,
        Self::UserNameSw,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::UserNameEq => "userName eq",
            Self::ExternalIdEq => "externalId eq",
            Self::UserNameCo => "userName co",
            Self::UserNameSw => "userName sw",
        }
    }

    /// How many searches of this probe to time.
    fn requests(self, args: &BenchArgs) -> usize {
        match self {
            Self::UserNameCo | Self::UserNameSw => args
                .pattern_lookups
                .unwrap_or(args.lookups)
                .min(args.lookups),
            Self::UserNameEq | Self::ExternalIdEq => args.lookups,
        }
    }

    /// The filter for seeded user `i`, and the fewest results it must match.
    fn filter(self, i: usize) -> String {
        let name = user_name(PREFIX, i);
        match self {
            Self::UserNameEq => format!("userName eq \"{name}\""),
            Self::ExternalIdEq => format!("externalId eq \"{}\"", external_id(PREFIX, i)),
            // The digits and the `@`: unique, and in the middle of the value.
            Self::UserNameCo => format!("userName co \"{i:08}@\""),
            // All but the last digit: up to ten users.
            Self::UserNameSw => format!("userName sw \"{}\"", &name[..PREFIX.len() + 7]),
        }
    }
}

/// Runs both layouts, each on a fresh environment.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let mut report = Env::with(args, async |env| {
        let mut report = env.report("lookup");
        one_directory(env, args, &mut report).await?;
        Ok(report)
    })
    .await?;
    Env::with(args, async |env| {
        many_directories(env, args, &mut report).await
    })
    .await?;
    report.figure(
        "seeding",
        "roster_store::Store::create_user, one transaction per user, --seed-concurrency workers",
    );
    Ok(report)
}

async fn one_directory(env: &Env, args: &BenchArgs, report: &mut Report) -> anyhow::Result<()> {
    let (dir, client) = env.directory("lookup", args.concurrency).await?;
    let seeder = Seeder::connect(&env.database.url, args.seed_concurrency).await?;
    eprintln!(
        "[{}] seeding {} users in one directory",
        crate::elapsed_tag(),
        args.lookup_users
    );
    let mut seeded = seeder.users(&dir, PREFIX, 0..args.lookup_users).await?;
    analyze_users(&env.database.url).await?;
    let label = format!("seed {} users (Store API)", args.lookup_users);
    report.measurements.push(Measurement::new(
        label,
        args.seed_concurrency,
        &mut seeded.latencies,
        seeded.elapsed,
    ));
    let clients = Arc::new(vec![(client, args.lookup_users)]);
    let layout = format!("{} users, 1 directory", args.lookup_users);
    measure_all(env, &layout, clients, args, report).await
}

async fn many_directories(env: &Env, args: &BenchArgs, report: &mut Report) -> anyhow::Result<()> {
    let seeder = Seeder::connect(&env.database.url, args.seed_concurrency).await?;
    let total = args.directories * args.users_per_directory;
    eprintln!(
        "[{}] seeding {} directories × {} users",
        crate::elapsed_tag(),
        args.directories,
        args.users_per_directory
    );
    let mut clients = Vec::with_capacity(args.directories);
    let (mut latencies, mut elapsed) = (Vec::with_capacity(total), std::time::Duration::ZERO);
    for d in 0..args.directories {
        // One connection pool per directory would multiply sockets; a few
        // idle connections each is what many IdP tenants look like anyway.
        let (dir, client) = env.directory(&format!("lookup-{d}"), 2).await?;
        let seeded = seeder
            .users(&dir, PREFIX, 0..args.users_per_directory)
            .await?;
        latencies.extend(seeded.latencies);
        elapsed += seeded.elapsed;
        clients.push((client, args.users_per_directory));
    }
    let label = format!(
        "seed {} × {} users (Store API)",
        args.directories, args.users_per_directory
    );
    report.measurements.push(Measurement::new(
        label,
        args.seed_concurrency,
        &mut latencies,
        elapsed,
    ));
    let layout = format!(
        "{} dirs × {} users",
        args.directories, args.users_per_directory
    );
    measure_all(env, &layout, Arc::new(clients), args, report).await
}

/// Every probe, first one request at a time (the latency of a lookup on
/// its own), then at `--concurrency` (throughput, and latency under load).
async fn measure_all(
    env: &Env,
    layout: &str,
    clients: Arc<Vec<(ScimClient, usize)>>,
    args: &BenchArgs,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut levels = vec![1, args.concurrency];
    levels.dedup();
    for concurrency in levels {
        for probe in Probe::ALL {
            let label = format!("{} @ {layout}", probe.label());
            let m = measure(
                env,
                probe,
                &label,
                Arc::clone(&clients),
                probe.requests(args),
                concurrency,
            )
            .await?;
            report.measurements.push(m);
        }
    }
    Ok(())
}

/// `lookups` searches with `probe`, each for a random seeded user of a
/// random directory; every search must find its user.
async fn measure(
    env: &Env,
    probe: Probe,
    label: &str,
    clients: Arc<Vec<(ScimClient, usize)>>,
    lookups: usize,
    concurrency: usize,
) -> anyhow::Result<Measurement> {
    eprintln!(
        "[{}] {label} × {lookups} at concurrency {concurrency}",
        crate::elapsed_tag()
    );
    let meter = CpuMeter::new(env.server.pid(), &env.database.url);
    let cpu = meter.snapshot().await?;
    let mut timed = load::run(lookups, concurrency, move |_| {
        let clients = Arc::clone(&clients);
        async move {
            let (client, users, i) = {
                let mut rng = rand::rng();
                let (client, users) = &clients[rng.random_range(0..clients.len())];
                (client.clone(), *users, rng.random_range(0..*users))
            };
            let filter = probe.filter(i);
            let found = client.search_users(&filter).await?;
            ensure!(
                found >= 1
                    && (found == 1 || matches!(probe, Probe::UserNameSw))
                    && found <= users as i64,
                "{filter} found {found} users"
            );
            Ok(())
        }
    })
    .await?;
    let cpu = meter.per_op(&cpu, lookups).await?;
    Ok(Measurement::new(label, concurrency, &mut timed.latencies, timed.elapsed).with_cpu(cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_target_one_user() {
        assert_eq!(
            Probe::UserNameEq.filter(42),
            r#"userName eq "l00000042@bench.example""#
        );
        assert_eq!(
            Probe::ExternalIdEq.filter(42),
            r#"externalId eq "ext-l00000042""#
        );
        assert_eq!(Probe::UserNameCo.filter(42), r#"userName co "00000042@""#);
        assert_eq!(Probe::UserNameSw.filter(42), r#"userName sw "l0000004""#);
    }
}
