//! `roster-client` and `roster watch --follow` against real `roster
//! directory` processes that are killed with SIGKILL while followed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use roster_client::mirror::PgMirror;
use roster_client::postgres::PgCursor;
use roster_client::verify::{Item, LocalState, verify};
use roster_client::{Backoff, FollowConfig, Follower, Observer, SnapshotReason, Start};
use roster_digest::Kind;
use roster_proto::contract::DEACTIVATE_PATCH;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::*;
use roster_testkit::app;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::{Channel, Endpoint};

const CONVERGE: Duration = Duration::from_secs(60);

/// One `roster directory` on a fixed port, so it can be killed and come
/// back where its clients expect it.
struct Roster {
    url: String,
    port: u16,
    grpc: String,
    process: app::Process,
}

impl Roster {
    async fn start(prefix: &str) -> Roster {
        let url = roster_testkit::fresh_database(prefix).await;
        let port = app::free_port();
        let process = app::spawn_directory(&url, port, &[]);
        let grpc = format!("127.0.0.1:{port}");
        app::wait_for_grpc(&grpc).await;
        Roster {
            url,
            port,
            grpc,
            process,
        }
    }

    async fn kill_and_restart(&mut self) {
        self.process.kill9();
        self.start_again().await;
    }

    /// After the process was killed.
    async fn start_again(&mut self) {
        self.process = app::spawn_directory(&self.url, self.port, &[]);
        app::wait_for_grpc(&self.grpc).await;
    }

    fn client(&self) -> DirectoryServiceClient<Channel> {
        let channel = Endpoint::from_shared(format!("http://{}", self.grpc))
            .expect("endpoint")
            .connect_lazy();
        DirectoryServiceClient::new(channel)
    }

    fn follow_config(&self, directory: &str) -> FollowConfig {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.grpc)).expect("endpoint");
        let mut config = FollowConfig::new(vec![endpoint], directory);
        config.backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(200));
        config
    }
}

async fn create_user(
    client: &mut DirectoryServiceClient<Channel>,
    dir: &str,
    name: &str,
) -> Result<User, tonic::Status> {
    let req = CreateUserRequest {
        directory_id: dir.into(),
        resource: app::user_json(name),
    };
    Ok(client
        .create_user(req)
        .await?
        .into_inner()
        .user
        .expect("user"))
}

/// A follower command, started as `spawn(grpc, directory, cursor file,
/// count)`, prints every change once, in order, across a SIGKILL of the
/// replica it follows; returns its stderr.
async fn follows_across_a_killed_replica(
    roster: &mut Roster,
    dir: &str,
    cursor_file: &Path,
    spawn: impl Fn(&str, &str, &Path, &str) -> tokio::process::Child,
) -> String {
    // A follower that stops printing fails the test with what it said,
    // instead of holding the suite.
    let scenario = follow_across_a_kill(roster, dir, cursor_file, spawn);
    match tokio::time::timeout(FOLLOW_DEADLINE, scenario).await {
        Ok(stderr) => stderr,
        Err(_) => panic!(
            "the follower did not finish within {FOLLOW_DEADLINE:?}; its stderr:\n{}",
            std::fs::read_to_string(stderr_of(cursor_file)).unwrap_or_default()
        ),
    }
}

/// How long a follower scenario may take, kills and restarts included.
const FOLLOW_DEADLINE: Duration = Duration::from_secs(120);

async fn follow_across_a_kill(
    roster: &mut Roster,
    dir: &str,
    cursor_file: &Path,
    spawn: impl Fn(&str, &str, &Path, &str) -> tokio::process::Child,
) -> String {
    let mut client = roster.client();
    for i in 0..3 {
        create_user(&mut client, dir, &format!("before{i}@example.com"))
            .await
            .unwrap();
    }
    let mut child = spawn(&roster.grpc, dir, cursor_file, "6");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut user_names = Vec::new();
    let next_user = async |lines: &mut tokio::io::Lines<_>| loop {
        let line = lines.next_line().await.unwrap()?;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(name) = v["change"]["resource"]["user_name"]
            .as_str()
            .or(v["user_name"].as_str())
        {
            return Some(name.to_owned());
        }
    };
    while user_names.len() < 3 {
        user_names.push(
            next_user(&mut lines)
                .await
                .expect("a change before the kill"),
        );
    }
    // The snapshot's SYNCED message has a cursor; the file holds it once
    // the follower is past it.
    roster_testkit::eventually("the cursor file is written", CONVERGE, || async {
        std::fs::read_to_string(cursor_file)
            .ok()
            .filter(|c| !c.trim().is_empty())
    })
    .await;
    roster.kill_and_restart().await;
    let mut client = roster.client();
    for i in 0..3 {
        create_user(&mut client, dir, &format!("after{i}@example.com"))
            .await
            .unwrap();
    }
    while let Some(name) = next_user(&mut lines).await {
        user_names.push(name);
    }
    let status = child.wait().await.unwrap();
    let stderr = std::fs::read_to_string(stderr_of(cursor_file)).unwrap_or_default();
    assert!(status.success(), "the follower failed: {stderr}");
    assert_eq!(
        user_names,
        [
            "before0", "before1", "before2", "after0", "after1", "after2"
        ]
        .map(|n| format!("{n}@example.com")),
        "every change once, in order, across the kill"
    );
    assert!(
        stderr.contains("resumed after cursor"),
        "says where it resumed: {stderr}"
    );
    stderr
}

/// Starts a follower with its stdout piped and its stderr in a file beside
/// its cursor file (readable even when the test gives up on it).
fn piped(cmd: std::process::Command, cursor_file: &Path) -> tokio::process::Child {
    let stderr = std::fs::File::create(stderr_of(cursor_file)).expect("stderr file");
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true);
    cmd.spawn().expect("the follower starts")
}

fn stderr_of(cursor_file: &Path) -> std::path::PathBuf {
    cursor_file.with_extension("stderr")
}

fn roster_watch(grpc: &str, dir: &str, cursor_file: &Path, count: &str) -> tokio::process::Child {
    let mut cmd = app::roster();
    cmd.args([
        "watch",
        "--follow",
        "--initial-state",
        "--endpoint",
        grpc,
        "--directory",
        dir,
    ])
    .args([
        "--count",
        count,
        "--cursor-file",
        cursor_file.to_str().unwrap(),
    ]);
    piped(cmd, cursor_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follow_resumes_across_a_killed_replica_and_keeps_its_place_in_a_cursor_file() {
    let mut roster = Roster::start("watch_follow").await;
    let (dir, _) = app::create_directory(&roster.grpc, "follow", &[]);
    let cursor_file = app::temp_dir("watch-follow").join("cursor");
    follows_across_a_killed_replica(&mut roster, &dir, &cursor_file, roster_watch).await;

    // A new run resumes from the file: only what came after.
    create_user(&mut roster.client(), &dir, "later@example.com")
        .await
        .unwrap();
    let output = roster_watch(&roster.grpc, &dir, &cursor_file, "1")
        .wait_with_output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(
        lines[0]["change"]["resource"]["user_name"],
        "later@example.com"
    );
    assert_eq!(lines[0]["change"]["synthetic"], false);
}

/// The Python consumer of docs/consumers.md (grpcio, stubs generated from
/// proto/ the way `buf generate` does) resumes the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_consumer_resumes_across_a_killed_replica() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stubs = app::temp_dir("python-stubs");
    let generated = std::process::Command::new("python3")
        .current_dir(root)
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg("proto/roster/directory/v1/directory.proto")
        .output()
        .expect("python3 runs");
    assert!(
        generated.status.success(),
        "cannot generate the Python stubs (needs python3 with grpcio and grpcio-tools: \
         `python3 -m pip install grpcio grpcio-tools`, as .ci/run does): {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let mut roster = Roster::start("python_consumer").await;
    let (dir, _) = app::create_directory(&roster.grpc, "python", &[]);
    let cursor_file = app::temp_dir("python-consumer").join("cursor");
    let consumer = root.join("examples/python/consumer.py");
    follows_across_a_killed_replica(
        &mut roster,
        &dir,
        &cursor_file,
        |grpc, dir, cursor, count| {
            let mut cmd = std::process::Command::new("python3");
            cmd.arg(&consumer)
                .args(["--endpoint", grpc, "--directory", dir, "--count", count])
                .arg("--cursor-file")
                .arg(cursor)
                .arg("--stubs")
                .arg(&stubs);
            piped(cmd, cursor)
        },
    )
    .await;
}

/// The example consumer mirrors a directory exactly once per change while
/// both Roster (SIGKILL) and the consumer (its task aborted mid-flight) die
/// at random points; at the end the mirror equals the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_equals_the_directory_after_roster_and_the_consumer_die_at_random_points() {
    mirror_through_random_deaths(Start::InitialState).await;
}

/// The same with the snapshot read through the list RPCs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_then_watch_mirror_equals_the_directory_after_random_deaths() {
    mirror_through_random_deaths(Start::ListThenWatch).await;
}

async fn mirror_through_random_deaths(start: Start) {
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut roster = Roster::start("client_mirror_src").await;
    let (dir, _) = app::create_directory(&roster.grpc, "mirror", &[]);
    let mirror_url = roster_testkit::fresh_database("client_mirror").await;
    let pool = PgPool::connect(&mirror_url).await.unwrap();

    // Some state before the consumer's first snapshot.
    let mut client = roster.client();
    for i in 0..10 {
        create_user(&mut client, &dir, &format!("first{i}@example.com"))
            .await
            .unwrap();
    }
    // The consumer is `roster mirror`, a process of its own, SIGKILLed too.
    let consumer = |grpc: &str| {
        let mut args: Vec<String> = ["mirror", "--endpoint", grpc, "--directory", &dir]
            .map(str::to_owned)
            .into();
        args.extend(["--mirror-database-url".to_owned(), mirror_url.clone()]);
        if start == Start::ListThenWatch {
            args.push("--list-then-watch".to_owned());
        }
        app::Process::spawn("mirror", &args, &[])
    };
    let mut follower = consumer(&roster.grpc);
    let mut users: Vec<String> = Vec::new();
    let (mut kills, mut aborts) = (0, 0);
    for step in 0..60 {
        // Calls cut by a kill may or may not have committed: the directory
        // is what it is, and the mirror must equal it.
        if let Ok(user) = create_user(&mut client, &dir, &format!("u{step}@example.com")).await {
            users.push(user.id);
        }
        if step % 3 == 2 {
            let members = users
                .iter()
                .rev()
                .take(3)
                .map(|id| serde_json::json!({"value": id}))
                .collect::<Vec<_>>();
            let resource = serde_json::json!({"schemas": [app::GROUP_SCHEMA], "displayName": format!("g{step}"), "members": members});
            let _ = client
                .create_group(CreateGroupRequest {
                    directory_id: dir.clone(),
                    resource: resource.to_string(),
                })
                .await;
        }
        if step % 5 == 4 {
            let id = users[rng.random_range(0..users.len())].clone();
            let _ = client
                .patch_user(PatchUserRequest {
                    directory_id: dir.clone(),
                    id,
                    patch: DEACTIVATE_PATCH.into(),
                    if_version: None,
                })
                .await;
        }
        if step % 7 == 6 {
            let id = users.swap_remove(rng.random_range(0..users.len()));
            let _ = client
                .delete_user(DeleteUserRequest {
                    directory_id: dir.clone(),
                    id,
                    if_version: None,
                })
                .await;
        }
        // At random points, and at least twice each.
        if rng.random_ratio(1, 12) || step == 20 || step == 45 {
            kills += 1;
            roster.kill_and_restart().await;
            client = roster.client();
        }
        if rng.random_ratio(1, 6) || step % 20 == 7 {
            aborts += 1;
            follower.kill9();
            follower = consumer(&roster.grpc);
        }
    }

    eprintln!("roster and the consumer SIGKILLed {kills} and {aborts} times");
    let expected = directory_state(&mut client, &dir).await;
    let mirrored =
        roster_testkit::eventually("the mirror equals the directory", CONVERGE, || async {
            let mirrored = mirror_state(&pool).await;
            (mirrored == expected).then_some(mirrored)
        })
        .await;
    assert!(
        follower.child.try_wait().unwrap().is_none(),
        "roster mirror keeps running: {}",
        follower.logs()
    );
    // Versions too: the mirror's state digest equals Roster's.
    let mirror = PgMirror::open(pool.clone(), "mirror").await.unwrap();
    let report = verify(&mut client, &dir, &mirror.state().await.unwrap())
        .await
        .unwrap();
    assert_eq!(report.differences, [], "the mirror's digest matches");
    assert!(
        mirrored.0.len() > 20,
        "users were mirrored: {}",
        mirrored.0.len()
    );
    follower.kill9();
}

type State = (
    BTreeSet<(String, String, bool)>,
    BTreeSet<(String, String)>,
    BTreeSet<(String, String)>,
);

async fn directory_state(client: &mut DirectoryServiceClient<Channel>, dir: &str) -> State {
    let (users, groups) = listing(client, dir).await;
    let members = groups
        .iter()
        .flat_map(|(g, members)| members.iter().map(|m| (g.id.clone(), m.id.clone())))
        .collect();
    (
        users
            .into_iter()
            .map(|u| (u.id, u.user_name, u.active))
            .collect(),
        groups
            .into_iter()
            .map(|(g, _)| (g.id, g.display_name))
            .collect(),
        members,
    )
}

/// The directory's users, and its groups with their members, through the
/// list RPCs (one page each: the tests' directories are small).
async fn listing(
    client: &mut DirectoryServiceClient<Channel>,
    dir: &str,
) -> (Vec<User>, Vec<(Group, Vec<Member>)>) {
    let options = ListOptions {
        count: 1000,
        ..Default::default()
    };
    let users = client
        .list_users(ListUsersRequest {
            directory_id: dir.into(),
            options: Some(options.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    let groups = client
        .list_groups(ListGroupsRequest {
            directory_id: dir.into(),
            options: Some(options),
            exclude_members: true,
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    let mut with_members = Vec::with_capacity(groups.len());
    for g in groups {
        let members = client
            .list_group_members(ListGroupMembersRequest {
                directory_id: dir.into(),
                group_id: g.id.clone(),
                count: 1000,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .members;
        with_members.push((g, members));
    }
    (users, with_members)
}

async fn mirror_state(pool: &PgPool) -> State {
    let users: Vec<(String, String, bool)> =
        sqlx::query_as("SELECT id, user_name, active FROM mirror_users")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let groups: Vec<(String, String)> =
        sqlx::query_as("SELECT id, display_name FROM mirror_groups")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let members: Vec<(String, String)> =
        sqlx::query_as("SELECT group_id, member_id FROM mirror_memberships")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    (
        users.into_iter().collect(),
        groups.into_iter().collect(),
        members.into_iter().collect(),
    )
}

/// A copy with injected differences: each is found, and only those, by
/// `roster_client::verify` and by `roster verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_missing_extra_and_stale_users_and_a_missing_membership() {
    let roster = Roster::start("client_verify").await;
    let (dir, _) = app::create_directory(&roster.grpc, "verify", &[]);
    let mut client = roster.client();
    let mut ids = Vec::new();
    // Enough items that the walk descends below the root.
    for i in 0..150 {
        ids.push(
            create_user(&mut client, &dir, &format!("v{i}@example.com"))
                .await
                .unwrap()
                .id,
        );
    }
    for g in 0..3 {
        let members: Vec<_> = ids[g * 5..g * 5 + 5]
            .iter()
            .map(|id| serde_json::json!({"value": id}))
            .collect();
        let resource = serde_json::json!({"schemas": [app::GROUP_SCHEMA], "displayName": format!("team{g}"), "members": members});
        client
            .create_group(CreateGroupRequest {
                directory_id: dir.clone(),
                resource: resource.to_string(),
            })
            .await
            .unwrap();
    }
    let mut items = exported_items(&mut client, &dir).await;
    assert_eq!(
        verify(&mut client, &dir, &state(&items))
            .await
            .unwrap()
            .differences,
        []
    );

    let missing = items.iter().position(|i| i.kind == Kind::User).unwrap();
    let missing = items.remove(missing).id;
    let extra = uuid::Uuid::new_v4().to_string();
    items.push(Item {
        kind: Kind::User,
        id: extra.clone(),
        version: 1,
        members: vec![],
    });
    let stale = items
        .iter_mut()
        .find(|i| i.kind == Kind::User && i.id != extra)
        .unwrap();
    stale.version += 1;
    let stale = stale.id.clone();
    let group = items.iter_mut().find(|i| i.kind == Kind::Group).unwrap();
    group.members.pop();
    let group = group.id.clone();

    let report = verify(&mut client, &dir, &state(&items)).await.unwrap();
    let found = |f: fn(&roster_client::verify::Difference) -> bool| {
        report
            .differences
            .iter()
            .filter(|d| f(d))
            .map(|d| d.id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(found(|d| d.is_missing()), BTreeSet::from([missing.clone()]));
    assert_eq!(found(|d| d.is_extra()), BTreeSet::from([extra.clone()]));
    assert_eq!(
        found(|d| !d.is_missing() && !d.is_extra()),
        BTreeSet::from([stale.clone(), group.clone()])
    );
    assert!(
        report.calls < 10,
        "a few round trips, not a full listing: {}",
        report.calls
    );

    // The same through the command line, from a JSON-lines export.
    let file = app::temp_dir("verify").join("mirror.jsonl");
    let lines: Vec<String> = items
        .iter()
        .map(|i| serde_json::json!({"kind": i.kind.as_str(), "id": i.id, "version": i.version, "members": i.members}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = app::roster()
        .args([
            "verify",
            "--endpoint",
            &roster.grpc,
            "--directory",
            &dir,
            "--mirror",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "drift exits 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["missing"][0]["id"], missing.as_str());
    assert_eq!(printed["extra"][0]["id"], extra.as_str());
    assert_eq!(printed["differing"].as_array().unwrap().len(), 2);
}

fn state(items: &[Item]) -> LocalState {
    let mut state = LocalState::new();
    items.iter().for_each(|i| state.insert(i));
    state
}

/// The directory as a consumer would have mirrored it.
async fn exported_items(client: &mut DirectoryServiceClient<Channel>, dir: &str) -> Vec<Item> {
    let (users, groups) = listing(client, dir).await;
    let version = |meta: &Option<Meta>| meta.as_ref().map(|m| m.version).unwrap();
    let users = users.iter().map(|u| Item {
        kind: Kind::User,
        id: u.id.clone(),
        version: version(&u.meta),
        members: vec![],
    });
    let groups = groups.into_iter().map(|(g, members)| Item {
        kind: Kind::Group,
        id: g.id,
        version: version(&g.meta),
        members: members.into_iter().map(|m| m.id).collect(),
    });
    users.chain(groups).collect()
}

/// Records the snapshots a follower takes.
#[derive(Clone, Default)]
struct Snapshots(std::sync::Arc<std::sync::Mutex<Vec<SnapshotReason>>>);

impl Observer for Snapshots {
    fn snapshot(&self, reason: SnapshotReason) {
        self.0.lock().unwrap().push(reason);
    }
}

/// After a restore (`roster admin new-epoch`), the follower's saved cursor
/// is out of range: it takes a new snapshot, and the mirror drops what the
/// restored directory no longer has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_cursor_is_out_of_range_takes_a_new_snapshot() {
    let mut roster = Roster::start("client_out_of_range").await;
    let (dir, _) = app::create_directory(&roster.grpc, "epoch", &[]);
    let mut client = roster.client();
    let kept = create_user(&mut client, &dir, "kept@example.com")
        .await
        .unwrap();
    let pool = PgPool::connect(&roster_testkit::fresh_database("client_epoch_mirror").await)
        .await
        .unwrap();
    let snapshots = Snapshots::default();
    let follower = {
        let (config, pool, snapshots) =
            (roster.follow_config(&dir), pool.clone(), snapshots.clone());
        tokio::spawn(async move {
            let mut mirror = PgMirror::open(pool.clone(), "m").await.unwrap();
            let mut cursor = PgCursor::open(pool, "m").await.unwrap().saved_by_consumer();
            Follower::with_observer(config, snapshots)
                .run(&mut mirror, &mut cursor, std::future::pending())
                .await
        })
    };
    let gone = create_user(&mut client, &dir, "gone@example.com")
        .await
        .unwrap();
    let mirrored = |n: usize| {
        let pool = pool.clone();
        async move {
            roster_testkit::eventually("the mirror catches up", CONVERGE, || async {
                let count: i64 = sqlx::query_scalar("SELECT count(*) FROM mirror_users")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                (count as usize == n).then_some(())
            })
            .await
        }
    };
    mirrored(2).await;

    // "Restore a backup" that predates `gone`: delete it behind the log's
    // back, then renew the epoch as the restore runbook says.
    roster.process.kill9();
    let db = PgPool::connect(&roster.url).await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1::uuid")
        .bind(&gone.id)
        .execute(&db)
        .await
        .unwrap();
    roster_testkit::run_ok(
        app::roster().args(["admin", "new-epoch", "--database-url", &roster.url]),
        "roster admin new-epoch",
    );
    roster.start_again().await;

    mirrored(1).await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM mirror_users")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, [kept.id]);
    let reasons = snapshots.0.lock().unwrap().clone();
    assert_eq!(
        reasons,
        [SnapshotReason::NoCursor, SnapshotReason::CursorOutOfRange]
    );
    assert!(!follower.is_finished());
    follower.abort();
}
