//! LDAP sync: a slapd seeded offline (`slapadd`) with `--ldap-users` users
//! and `--ldap-groups` groupOfNames (user i in group i mod G), synced into a
//! fresh PostgreSQL database by the LDAP connector running in this process
//! (`roster_connectors::runner::sync_directory`, as a replica's syncer runs
//! it); then the same sync again with nothing changed, which must write
//! nothing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_connectors::credentials;
use roster_connectors::runner::{SyncerOptions, sync_directory};
use roster_store::postgres::PgStore;
use roster_store::{
    DeprovisionPolicy, DirectoryId, NewDirectory, ProviderKind, SourceKind, SourceSettings, Store,
    SyncStatus,
};
use roster_testkit::slapd::{self, ROOT_DN, ROOT_PW, SUFFIX, Slapd};
use roster_webhook::SealingKey;
use serde_json::json;

use crate::cli::BenchArgs;
use crate::db::{BenchDatabase, PgSettings};
use crate::report::{Measurement, Report};
use crate::scenarios::onboarding::round1;
use crate::server::memory_of;

/// Runs the scenario on a fresh slapd and database.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let (users, groups) = (args.ldap_users, args.ldap_groups);
    eprintln!(
        "[{}] slapadd {users} users, {groups} groups",
        crate::elapsed_tag()
    );
    let clock = Instant::now();
    let slapd = tokio::task::spawn_blocking(move || Slapd::start(&ldif(users, groups))).await?;
    let seeded = clock.elapsed();
    let database = BenchDatabase::create(&args.database_url).await?;
    let result = measure(&database, &slapd, args, seeded).await;
    if args.keep_database {
        eprintln!("kept database {}", database.name);
        database.keep();
    } else {
        database.drop_database().await?;
    }
    result
}

async fn measure(
    database: &BenchDatabase,
    slapd: &Slapd,
    args: &BenchArgs,
    seeded: Duration,
) -> anyhow::Result<Report> {
    let mut report = Report::new("ldap-sync", PgSettings::read(&database.url).await?);
    let pg = PgStore::connect(&database.url, args.server_db_connections).await?;
    pg.migrate().await?;
    let store: Arc<dyn Store> = Arc::new(pg);
    let key = SealingKey::from_bytes(&rand::random::<[u8; 32]>())?;
    let dir = ldap_directory(store.as_ref(), &key, &slapd.url).await?;
    let options = SyncerOptions {
        owner: "bench".into(),
        // A first sync of 100,000 users outlasts the default lease; the
        // heartbeat renews it, this only spares renewals.
        lease_ttl: Duration::from_secs(600),
        ..SyncerOptions::default()
    };
    let sync = async || -> anyhow::Result<(SyncStatus, Duration)> {
        let clock = Instant::now();
        let status = sync_directory(&store, &key, &options, dir)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the sync lease is taken"))?;
        Ok((status, clock.elapsed()))
    };

    let rss_before = memory_of(std::process::id(), "VmRSS")?;
    // Resets VmHWM (the peak RSS) to the current RSS, so the peak read
    // after the sync is the sync's.
    std::fs::write("/proc/self/clear_refs", "5")?;
    eprintln!("[{}] first sync", crate::elapsed_tag());
    let (first, took) = sync().await?;
    let peak = memory_of(std::process::id(), "VmHWM")?;
    let name = format!(
        "first sync ({} users, {} groups)",
        args.ldap_users, args.ldap_groups
    );
    report
        .measurements
        .push(Measurement::new(name, 1, &mut [took], took));
    report.figure(
        "users_per_s",
        round1(args.ldap_users as f64 / took.as_secs_f64()),
    );
    report.figure("first_sync_secs", round1(took.as_secs_f64()));
    report.figure("first_sync_created", first.created);
    report.figure("rss_before_sync_mb", mib(rss_before));
    report.figure("peak_rss_during_first_sync_mb", mib(peak));

    let head = store.advance_stable_head(0).await?;
    eprintln!("[{}] no-change re-sync", crate::elapsed_tag());
    let (again, took) = sync().await?;
    let written = store.advance_stable_head(0).await? - head;
    report
        .measurements
        .push(Measurement::new("no-change re-sync", 1, &mut [took], took));
    report.figure("resync_secs", round1(took.as_secs_f64()));
    let writes = again.created + again.updated + again.removed;
    report.figure("resync_writes", writes);
    report.figure("resync_change_log_rows", written);
    report.figure("slapadd_secs", round1(seeded.as_secs_f64()));
    anyhow::ensure!(
        writes == 0 && written == 0,
        "the no-change re-sync wrote {writes} resources and {written} change-log rows"
    );
    Ok(report)
}

async fn ldap_directory(
    store: &dyn Store,
    key: &SealingKey,
    url: &str,
) -> anyhow::Result<DirectoryId> {
    let dir = store
        .create_directory(NewDirectory {
            name: "ldap bench".into(),
            organization: "bench".into(),
            provider: ProviderKind::Generic,
            deprovision_policy: DeprovisionPolicy::Delete,
            attribute_mappings: Vec::new(),
        })
        .await?
        .id;
    store
        .put_source(
            dir,
            SourceSettings {
                kind: SourceKind::Ldap,
                settings: json!({
                    "url": url,
                    "bind_dn": ROOT_DN,
                    "users_base_dn": format!("ou=people,{SUFFIX}"),
                    "groups_base_dn": format!("ou=groups,{SUFFIX}"),
                }),
                sealed_credentials: Some(credentials::seal(key, dir, ROOT_PW)?),
                interval_secs: 1800,
                mass_delete_percent: 20,
            },
        )
        .await?;
    Ok(dir)
}

/// `users` inetOrgPersons and `groups` groupOfNames, user i in group i mod G.
fn ldif(users: usize, groups: usize) -> String {
    let mut body = String::with_capacity(users * 400);
    for i in 0..users {
        body.push_str(&slapd::person(
            &format!("user{i:06}"),
            "User",
            &format!("N{i}"),
        ));
    }
    for g in 0..groups {
        let _ = write!(
            body,
            "dn: cn=group{g:04},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: group{g:04}\n"
        );
        for i in (g..users).step_by(groups.max(1)) {
            let _ = writeln!(body, "member: uid=user{i:06},ou=people,{SUFFIX}");
        }
        body.push('\n');
    }
    slapd::seed(&body)
}

fn mib(bytes: u64) -> f64 {
    round1(bytes as f64 / (1024.0 * 1024.0))
}
