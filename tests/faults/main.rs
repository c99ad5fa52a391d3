//! Faults under a sustained SCIM load, with an IdP-like client that retries
//! 5xx answers and transport errors (and reconciles a 409 on a retried POST
//! by looking the user up): afterwards every resource the IdP was told about
//! is stored exactly once, nothing else is, and a `WatchChanges` consumer
//! that resumes from its last cursor has received every committed change
//! exactly once, in order (compared with one uninterrupted read of the log).
//!
//! - `kill -9` of the directory service (separate process), restarted on the
//!   same port;
//! - PostgreSQL stopped and restarted (503 + `Retry-After` meanwhile);
//! - a consumer that disconnects and resumes dozens of times;
//! - `kill -9` of the gateway, restarted on the same port.
//!
//! `ROSTER_SOAK=1` runs ten times the load and five faults per test
//! (see docs/reliability.md).

mod webhooks;

use roster_testkit::app;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use roster_proto::directory::ChangeKind;
use roster_testkit::app::{
    CONVERGE, Process, ResumingWatcher, RetryingIdp, Seen, assert_exactly_once_in_order,
    create_directory, free_port, patch_op, spawn_directory, spawn_gateway, wait_for_grpc,
    wait_for_http,
};
use serde_json::json;

/// IdP connections in flight at once.
const CONCURRENCY: usize = 6;

/// Whether the long soak variant was asked for.
fn soak() -> bool {
    std::env::var("ROSTER_SOAK").is_ok_and(|v| v == "1")
}

/// Users provisioned per test (three requests each).
fn users() -> usize {
    if soak() { 1500 } else { 120 }
}

/// Faults injected per test.
fn faults() -> usize {
    if soak() { 5 } else { 1 }
}

/// The user name of the `i`-th provisioned user.
fn user_name(i: usize) -> String {
    format!("load{i}@example.com")
}

/// An IdP provisioning run: every user is created, given a title, and added
/// to one group, by `CONCURRENCY` workers, each step retried until it lands.
struct Load {
    idp: RetryingIdp,
    group: String,
    done: Arc<AtomicUsize>,
}

impl Load {
    async fn start(idp: RetryingIdp) -> (Self, tokio::task::JoinHandle<BTreeMap<String, String>>) {
        let group = idp.create_group("everyone").await;
        let done = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(provision(idp.clone(), group.clone(), done.clone()));
        (Self { idp, group, done }, task)
    }

    /// Waits until the `n`-th of `faults()` fault points of the run is reached.
    async fn reach_fault_point(&self, n: usize) {
        let at = users() * (n + 1) / (faults() + 2);
        roster_testkit::eventually("the load reaches the fault point", CONVERGE, || async {
            (self.done.load(Ordering::SeqCst) >= at).then_some(())
        })
        .await;
    }
}

async fn provision(
    idp: RetryingIdp,
    group: String,
    done: Arc<AtomicUsize>,
) -> BTreeMap<String, String> {
    futures::stream::iter(0..users())
        .map(|i| {
            let (idp, group, done) = (idp.clone(), group.clone(), done.clone());
            async move {
                let name = user_name(i);
                let id = idp.create_user(&name).await;
                let title =
                    patch_op(json!([{"op": "replace", "path": "title", "value": format!("t{i}")}]));
                idp.patch_ok(&format!("/Users/{id}"), &title).await;
                let member =
                    patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
                idp.patch_ok(&format!("/Groups/{group}"), &member).await;
                done.fetch_add(1, Ordering::SeqCst);
                (name, id)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// Checks the stored state and the change log after a faulty run of `load`.
async fn verify(load: &Load, provisioned: &BTreeMap<String, String>, watcher: &ResumingWatcher) {
    let (scim, group) = (&load.idp.scim, load.group.as_str());
    // Stored exactly once, nothing else.
    let stored = scim.list_all("/Users").await;
    assert_eq!(
        stored.len(),
        users(),
        "users stored (expected exactly the provisioned ones)"
    );
    let mut seen_names = BTreeSet::new();
    for u in &stored {
        let name = u["userName"].as_str().expect("userName").to_string();
        assert!(seen_names.insert(name.clone()), "{name} stored twice");
        let i: usize = name
            .trim_start_matches("load")
            .trim_end_matches("@example.com")
            .parse()
            .expect("a load user");
        assert_eq!(
            u["id"].as_str(),
            provisioned.get(&name).map(String::as_str),
            "{name}: id"
        );
        assert_eq!(
            u["title"],
            format!("t{i}"),
            "{name}: the title PATCH was lost"
        );
    }
    let members = scim
        .get(&format!("/Groups/{group}"))
        .await
        .expect(200, "group")
        .body;
    let member_ids: BTreeSet<String> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["value"].as_str().expect("member value").to_string())
        .collect();
    let ids: BTreeSet<String> = provisioned.values().cloned().collect();
    assert_eq!(member_ids, ids, "group membership");

    // The log holds one user.created per user; the resuming consumer saw the log exactly.
    let (head, reference) = watcher.reference_log().await;
    let created: Vec<&Seen> = reference
        .iter()
        .filter(|s| s.kind == ChangeKind::UserCreated as i32)
        .collect();
    assert_eq!(created.len(), users(), "user.created events in the log");
    assert_eq!(
        created
            .iter()
            .map(|s| s.resource_id.clone())
            .collect::<BTreeSet<_>>(),
        ids
    );
    watcher.wait_for(head).await;
    let delivered: Vec<Seen> = watcher
        .changes()
        .into_iter()
        .filter(|s| s.revision <= head)
        .collect();
    assert_exactly_once_in_order(&delivered, &reference, "resuming consumer");
}

/// The directory service and the gateway as separate processes on fixed ports.
struct Split {
    database_url: String,
    grpc_port: u16,
    http_port: u16,
    directory: Process,
    gateway: Process,
}

impl Split {
    /// Starts both processes, each on a port from `free_port`. Such a port
    /// is released before the child binds it, so a process of a test running
    /// alongside can take it first — and would then answer in this one's
    /// place — hence a child that could not bind is started again elsewhere.
    async fn start(prefix: &str) -> Self {
        let database_url = roster_testkit::fresh_database(prefix).await;
        let (grpc_port, directory) = on_a_free_port(DIRECTORY_LISTENING, |port| {
            spawn_directory(&database_url, port, &[])
        })
        .await;
        wait_for_grpc(&format!("127.0.0.1:{grpc_port}")).await;
        let (http_port, gateway) = on_a_free_port(GATEWAY_LISTENING, |port| {
            spawn_gateway(grpc_port, port, &[])
        })
        .await;
        wait_for_http(&format!("http://127.0.0.1:{http_port}")).await;
        Self {
            database_url,
            grpc_port,
            http_port,
            directory,
            gateway,
        }
    }

    fn grpc(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    fn base_url(&self, directory_id: &str) -> String {
        format!("http://127.0.0.1:{}/scim/v2/{directory_id}", self.http_port)
    }

    async fn restart_directory(&mut self) {
        self.directory.kill9();
        let directory = spawn_directory(&self.database_url, self.grpc_port, &[]);
        self.directory = listening(directory, DIRECTORY_LISTENING)
            .await
            .unwrap_or_else(|log| panic!("the restarted directory service lost its port:\n{log}"));
        wait_for_grpc(&self.grpc()).await;
    }

    async fn restart_gateway(&mut self) {
        self.gateway.kill9();
        let gateway = spawn_gateway(self.grpc_port, self.http_port, &[]);
        self.gateway = listening(gateway, GATEWAY_LISTENING)
            .await
            .unwrap_or_else(|log| panic!("the restarted gateway lost its port:\n{log}"));
        wait_for_http(&format!("http://127.0.0.1:{}", self.http_port)).await;
    }

    fn assert_no_panics(&self) {
        for p in [&self.directory, &self.gateway] {
            assert!(!p.logs().contains("panicked"), "a panic:\n{}", p.logs());
        }
    }
}

/// What `roster directory` and `roster gateway` log once they hold their port.
const DIRECTORY_LISTENING: &str = "directory service listening";
const GATEWAY_LISTENING: &str = "gateway listening";

/// `spawn(port)` on ports from `free_port` until one process logs `marker`
/// (a few tries: a process that exits for another reason would exit again).
async fn on_a_free_port(marker: &str, spawn: impl Fn(u16) -> Process) -> (u16, Process) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        match listening(spawn(port), marker).await {
            Ok(process) => return (port, process),
            Err(log) => last = log,
        }
    }
    panic!("no process logged {marker:?} on any of 5 ports; the last one's log:\n{last}");
}

/// `process` once it logged `marker`, or its log when it exited first (its
/// port was taken).
async fn listening(mut process: Process, marker: &str) -> Result<Process, String> {
    let started = std::time::Instant::now();
    loop {
        if process.logs().contains(marker) {
            return Ok(process);
        }
        if process.child.try_wait().expect("child status").is_some() {
            return Err(process.logs());
        }
        assert!(
            started.elapsed() < CONVERGE,
            "no {marker:?} in {CONVERGE:?}; log:\n{}",
            process.logs()
        );
        // Polls a file the child appends to; nothing to wait on instead.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn assert_clean_retries(idp: &RetryingIdp) {
    let log = idp.log.lock().unwrap();
    assert!(
        log.other_5xx.is_empty(),
        "5xx other than 503 + Retry-After: {:?}",
        log.other_5xx
    );
}

/// The process of a split deployment a test kills.
#[derive(Clone, Copy)]
enum Killed {
    DirectoryService,
    Gateway,
}

/// Runs the load on a split deployment, `kill -9`s `killed` at every fault
/// point and restarts it on its port; the IdP must have felt the kills and
/// retried cleanly, and nothing may be lost or duplicated. Returns the
/// deployment and the run for the test's own checks.
async fn kill_9_under_load(
    prefix: &str,
    killed: Killed,
) -> (Split, Load, BTreeMap<String, String>, ResumingWatcher) {
    let mut split = Split::start(prefix).await;
    let (directory_id, token) = create_directory(&split.grpc(), "faults", &[]);
    let watcher = ResumingWatcher::start(&split.grpc(), &directory_id, None);
    let idp = RetryingIdp::new(&split.base_url(&directory_id), &token);
    let (load, task) = Load::start(idp).await;
    for n in 0..faults() {
        load.reach_fault_point(n).await;
        match killed {
            Killed::DirectoryService => split.restart_directory().await,
            Killed::Gateway => split.restart_gateway().await,
        }
    }
    let provisioned = task.await.expect("load");
    assert!(
        load.idp.log.lock().unwrap().retries > 0,
        "the kill was not felt by the IdP"
    );
    assert_clean_retries(&load.idp);
    verify(&load, &provisioned, &watcher).await;
    split.assert_no_panics();
    (split, load, provisioned, watcher)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_directory_service_loses_and_duplicates_nothing() {
    let (_, _, _, watcher) = kill_9_under_load("fault_kill_dir", Killed::DirectoryService).await;
    assert!(watcher.connects() > 1, "the consumer never had to resume");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_answers_503_meanwhile_and_loses_and_duplicates_nothing() {
    let pg = Arc::new(roster_testkit::owned_cluster().await);
    let served = app::serve_database(&pg.url(), &[("ROSTER_PROGRESS_INTERVAL_MS", "200")]);
    let token = served.token.clone().expect("token");
    let watcher = ResumingWatcher::start(&served.grpc, &served.directory_id, None);
    let idp = RetryingIdp::new(&served.base_url, &token);
    let (load, task) = Load::start(idp).await;
    for n in 0..faults() {
        load.reach_fault_point(n).await;
        let seen_before = load.idp.log.lock().unwrap().unavailable_with_retry_after;
        let stopping = pg.clone();
        tokio::task::spawn_blocking(move || stopping.stop())
            .await
            .expect("stop");
        roster_testkit::eventually(
            "a 503 with Retry-After while PostgreSQL is down",
            CONVERGE,
            || async {
                (load.idp.log.lock().unwrap().unavailable_with_retry_after > seen_before)
                    .then_some(())
            },
        )
        .await;
        pg.start().await;
    }
    let provisioned = task.await.expect("load");
    assert_clean_retries(&load.idp);
    verify(&load, &provisioned, &watcher).await;
    assert!(!served.logs().contains("panicked"), "{}", served.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_resuming_dozens_of_times_sees_every_change_once() {
    let served =
        app::serve_postgres_with("fault_resume", &[("ROSTER_PROGRESS_INTERVAL_MS", "200")]).await;
    let token = served.token.clone().expect("token");
    // About 3 changes per user: disconnecting every 10 messages makes 30+ resumes.
    let watcher = ResumingWatcher::start(&served.grpc, &served.directory_id, Some(10));
    let idp = RetryingIdp::new(&served.base_url, &token);
    let (load, task) = Load::start(idp).await;
    let provisioned = task.await.expect("load");
    verify(&load, &provisioned, &watcher).await;
    assert!(
        watcher.connects() >= 30,
        "only {} connections",
        watcher.connects()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_gateway_with_requests_in_flight_converges() {
    let (split, load, provisioned, _) = kill_9_under_load("fault_kill_gw", Killed::Gateway).await;

    // What a retried POST whose first attempt landed looks like to the IdP.
    let again = load
        .idp
        .scim
        .post("/Users", &app::bare_user(&user_name(0)))
        .await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(again.body["scimType"], "uniqueness");
    assert_eq!(
        load.idp.lookup_user(&user_name(0)).await,
        provisioned[&user_name(0)]
    );
    split.assert_no_panics();
}
