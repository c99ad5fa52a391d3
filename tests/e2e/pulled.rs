//! Pulled directories across processes: two `roster serve` replicas on one
//! PostgreSQL database and a real slapd. `roster admin set-source` makes a
//! directory pulled; the two replicas never sync it at once (each user is
//! created exactly once), and when the replica holding the sync lease is
//! killed in the middle of writing, the other takes over after the lease
//! expires and the directory converges with nothing lost or duplicated; the
//! survivor's metrics endpoint shows the sync.

use std::collections::HashMap;
use std::time::Duration;

use roster_store::postgres::PgStore;
use roster_store::{ChangeFilter, ChangeKind, DirectoryId, ListQuery, Store};
use roster_testkit::app;
use roster_testkit::eventually;
use roster_testkit::slapd::{self, SUFFIX, Slapd, person, seed};

/// Enough users that the first sync's writes span many batches (seconds).
const USERS: usize = 6_000;
const DEADLINE: Duration = Duration::from_secs(180);

fn seeded() -> Slapd {
    let people: String = (0..USERS)
        .map(|i| person(&format!("u{i:05}"), "User", &format!("N{i}")))
        .collect();
    let members: String = (0..50)
        .map(|i| format!("member: uid=u{i:05},ou=people,{SUFFIX}\n"))
        .collect();
    let group =
        format!("dn: cn=all,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: all\n{members}\n");
    Slapd::start(&seed(&format!("{people}{group}")))
}

async fn user_count(store: &PgStore, dir: DirectoryId) -> i64 {
    let query = ListQuery {
        count: 1,
        ..ListQuery::default()
    };
    store.list_users(dir, &query).await.expect("list").total
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_sync_a_directory_once_and_survive_a_kill_mid_sync() {
    let slapd = seeded();
    let url = roster_testkit::fresh_database("pulled").await;
    let key = roster_webhook::SealingKey::generate_text().expect("key");
    let env = [
        ("ROSTER_SECRET_KEY", key.as_str()),
        ("ROSTER_SYNC_POLL_SECS", "1"),
        ("ROSTER_SYNC_LEASE_SECS", "3"),
    ];
    let mut replicas = [
        app::serve_database(&url, &env),
        app::serve_database(&url, &env),
    ];
    let store = PgStore::connect(&url, 4).await.expect("connect");

    let grpc = replicas[0].grpc.clone();
    let created = app::admin(&grpc, &["create-directory", "--name", "corp-ldap"]);
    let dir_text = created["id"].as_str().expect("id").to_string();
    let dir: DirectoryId = dir_text.parse().expect("directory id");
    let settings = serde_json::json!({
        "url": slapd.url, "bind_dn": slapd::ROOT_DN,
        "users_base_dn": format!("ou=people,{SUFFIX}"), "groups_base_dn": format!("ou=groups,{SUFFIX}"),
    })
    .to_string();
    let set = app::set_ldap_source(
        &grpc,
        &dir_text,
        &settings,
        slapd::ROOT_PW,
        &["--interval-secs", "3600"],
    );
    assert_eq!(set["has_credentials"], true);
    assert!(
        !set.to_string().contains(slapd::ROOT_PW),
        "credentials never returned"
    );

    // Kill the lease holder once some, not all, users are written.
    let holder = eventually("a replica writing the first sync", DEADLINE, || {
        let store = &store;
        async move {
            let source = store.get_source(dir).await.expect("source");
            let owner = source.lease_owner?;
            let written = user_count(store, dir).await;
            (written > 0 && written < USERS as i64).then_some(owner)
        }
    })
    .await;
    let pid: u32 = holder
        .strip_prefix("pid-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse().ok())
        .expect("lease owner names its pid");
    let index = replicas
        .iter()
        .position(|r| r.child.id() == pid)
        .expect("the lease holder is one of the two replicas");
    replicas[index].child.kill().expect("SIGKILL");
    let _ = replicas[index].child.wait();
    let survivor = &replicas[1 - index];

    let status = eventually("the survivor to finish the sync", DEADLINE, || {
        let store = &store;
        async move {
            let source = store.get_source(dir).await.expect("source");
            let done = source.lease_owner.is_none() && user_count(store, dir).await == USERS as i64;
            done.then_some(source.status)
        }
    })
    .await;
    assert_eq!(status.last_error, None, "{status:?}");

    // Every user created exactly once, by whichever replica wrote it.
    let head = store.advance_stable_head(0).await.expect("head");
    let filter = ChangeFilter {
        directory_id: Some(dir),
        kinds: vec![ChangeKind::UserCreated],
    };
    let mut per_user: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut after = 0;
    loop {
        let page = store
            .read_changes(&filter, after, head, 5_000)
            .await
            .expect("changes");
        let Some(last) = page.last() else { break };
        after = last.revision;
        for change in &page {
            *per_user.entry(change.resource_id).or_default() += 1;
        }
    }
    assert_eq!(per_user.len(), USERS);
    assert!(per_user.values().all(|n| *n == 1), "a user created twice");
    let shown = app::admin(&survivor.grpc, &["get-source", &dir_text]);
    assert_eq!(shown["status"]["last_error"], "");
    assert_eq!(shown["kind"], "ldap");

    // The survivor's metrics endpoint counts the run that finished the
    // sync, what it wrote, how long it took and when it succeeded.
    let url = survivor.metrics_url.clone().expect("a metrics address");
    let scraped = reqwest::get(url)
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let source = format!(r#"kind="ldap",directory="{dir_text}""#);
    let sample = |name: &str, labels: &str| -> f64 {
        let prefix = format!("{name}{{{labels}}} ");
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{scraped}"))
    };
    let ok = format!(r#"{source},outcome="ok""#);
    assert!(sample("roster_sync_runs_total", &ok) >= 1.0);
    let created = format!(r#"{source},change="created""#);
    assert!(sample("roster_sync_changes_total", &created) >= 1.0);
    assert!(sample("roster_sync_duration_seconds_count", &source) >= 1.0);
    let last = sample("roster_sync_last_success_timestamp_seconds", &source);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - 600.0..=now).contains(&last), "{last} vs {now}");
}
