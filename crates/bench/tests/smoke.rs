//! Smoke runs of every scenario with tiny sizes against real PostgreSQL, so
//! the benchmark code cannot rot. Figures are checked for shape and sanity
//! only: benchmarks are not tests, and no timing is asserted.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Tiny sizes for every scenario.
const TINY: &[&str] = &[
    "--concurrency",
    "4",
    "--seed-concurrency",
    "4",
    "--server-db-connections",
    "4",
    "--users",
    "50",
    "--groups",
    "3",
    "--patch-batch",
    "10",
    "--lookup-users",
    "50",
    "--directories",
    "3",
    "--users-per-directory",
    "20",
    "--lookups",
    "20",
    "--group-size",
    "20",
    "--small-group-size",
    "5",
    "--churn-ops",
    "20",
    "--streams",
    "3",
    "--streams-per-connection",
    "2",
    "--fanout-writes",
    "10",
    "--sample-streams",
    "2",
    "--webhook-endpoints",
    "2",
    "--webhook-events",
    "20",
    "--webhook-rate",
    "200",
    "--ldap-users",
    "50",
    "--ldap-groups",
    "3",
];

/// Runs `roster-bench <scenario>` with [`TINY`] sizes and returns its JSON report.
async fn run(scenario: &str) -> Value {
    let server = roster_testkit::postgres().await;
    let json = json_path(scenario);
    let output = Command::new(env!("CARGO_BIN_EXE_roster-bench"))
        .arg(scenario)
        .args(TINY)
        .arg("--database-url")
        .arg(server.url())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("cannot run roster-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "roster-bench {scenario} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("cores:"), "no table header in:\n{stdout}");
    let text = std::fs::read_to_string(&json).expect("the JSON report was not written");
    serde_json::from_str(&text).expect("the JSON report does not parse")
}

fn json_path(scenario: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "roster-bench-smoke-{scenario}-{}.json",
        std::process::id()
    ))
}

/// The report carries the machine, PostgreSQL settings and sane measurements.
/// Runs `name` and checks the report's common shape, with `rows` measurements.
async fn scenario(name: &str, rows: usize) -> Value {
    let report = run(name).await;
    assert_report(&report, name, rows);
    report
}

fn assert_report(report: &Value, scenario: &str, rows: usize) {
    assert_eq!(report["scenario"], scenario);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(
        report["machine"]["load_average"].as_array().unwrap().len(),
        3
    );
    for key in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "shared_buffers",
        "max_connections",
        "wal_level",
    ] {
        assert!(
            !report["postgres"][key].as_str().unwrap().is_empty(),
            "postgres.{key} missing"
        );
    }
    let measurements = report["measurements"].as_array().unwrap();
    assert_eq!(
        measurements.len(),
        rows,
        "measurements of {scenario}: {measurements:#?}"
    );
    for m in measurements {
        assert!(m["n"].as_u64().unwrap() > 0, "{m}");
        assert!(m["concurrency"].as_u64().unwrap() > 0, "{m}");
        assert!(m["throughput_per_s"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["total_secs"].as_f64().unwrap() > 0.0, "{m}");
        let l = &m["latency"];
        let (p50, p99, max) = (
            l["p50_ms"].as_f64().unwrap(),
            l["p99_ms"].as_f64().unwrap(),
            l["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{m}");
    }
}

/// Panics unless measurement `row` of `report` counted `n` samples.
fn assert_rows(report: &Value, row: usize, n: u64, what: &str) {
    assert_eq!(report["measurements"][row]["n"], n, "{what}");
}

fn figure(report: &Value, key: &str) -> f64 {
    report["figures"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("figure {key} missing: {}", report["figures"]))
}

/// Every figure named in `keys` is there and above zero.
fn assert_positive(report: &Value, keys: &[&str]) {
    for key in keys {
        assert!(figure(report, key) > 0.0, "{key}");
    }
}

#[tokio::test]
async fn onboarding() {
    let report = scenario("onboarding", 3).await;
    assert_eq!(report["measurements"][0]["n"], 50);
    assert_eq!(report["measurements"][1]["n"], 3);
    assert_eq!(figure(&report, "memberships"), 50.0);
    let cpu = &report["measurements"][0]["cpu_per_op"];
    let total: f64 = ["client_ms", "server_ms", "postgres_ms"]
        .iter()
        .map(|k| cpu[k].as_f64().unwrap())
        .sum();
    assert!(total > 0.0, "CPU per POST /Users: {cpu}");
    assert!(figure(&report, "users_per_s") > 0.0);
}

#[tokio::test]
async fn lookup() {
    // Seeding plus four filters at concurrency 1 and 4, and at 4 the two
    // raw baselines (pooled, held) after each `eq` filter, for each of the
    // two layouts.
    let report = scenario("lookup", 26).await;
    let m = &report["measurements"];
    assert_eq!(m[0]["n"], 50);
    assert_eq!(m[13]["n"], 60);
    assert_eq!((&m[1]["n"], &m[1]["concurrency"]), (&20.into(), &1.into()));
    assert_eq!((&m[5]["n"], &m[5]["concurrency"]), (&20.into(), &4.into()));
    for (i, name) in [
        (6, "raw SELECT userName eq (pooled)"),
        (7, "raw SELECT userName eq (held)"),
        (9, "raw SELECT externalId eq (pooled)"),
        (10, "raw SELECT externalId eq (held)"),
    ] {
        // Four times `--lookups`: the raw probes are faster.
        assert_eq!((&m[i]["n"], &m[i]["concurrency"]), (&80.into(), &4.into()));
        assert!(m[i]["name"].as_str().unwrap().starts_with(name), "{i}");
    }
    let fractions = report["figures"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("lookup_fraction_of_raw"))
        .map(|(_, v)| v.as_f64().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(fractions.len(), 8);
    assert!(fractions.iter().all(|f| *f > 0.0));
}

#[tokio::test]
async fn churn() {
    let report = scenario("churn", 3).await;
    assert!(
        report["measurements"][1]["name"]
            .as_str()
            .unwrap()
            .contains("group of 20")
    );
    assert_positive(
        &report,
        &["big_vs_small_p99_ratio", "big_vs_small_throughput_ratio"],
    );
}

#[tokio::test]
async fn hot_group() {
    let report = scenario("hot-group", 2).await;
    assert_rows(&report, 0, 20, "one add per newcomer");
    assert_rows(&report, 1, 20, "one remove per newcomer");
}

#[tokio::test]
async fn watch_latency() {
    let report = scenario("watch-latency", 2).await;
    assert_rows(&report, 1, 50, "one latency per created user");
    assert!(figure(&report, "events_before_http_response") >= 0.0);
}

#[tokio::test]
async fn fanout() {
    let report = scenario("fanout", 3).await;
    assert_rows(&report, 1, 20, "2 sampled streams × 10 writes");
    assert_eq!(figure(&report, "streams"), 3.0);
    assert_eq!(figure(&report, "connections"), 2.0);
    assert!(figure(&report, "server_rss_mib_no_streams") > 0.0);
    assert!(figure(&report, "server_rss_kib_per_stream") >= 0.0);
}

#[tokio::test]
async fn limit() {
    // POST /Users, POST /Bulk, and the two raw baselines.
    let report = scenario("limit", 4).await;
    assert_positive(
        &report,
        &[
            "onboarding_fraction_of_limit",
            "onboarding_fraction_of_user_and_change_rows",
            "bulk_users_per_s",
            "bulk_fraction_of_limit",
        ],
    );
}

#[tokio::test]
async fn webhooks() {
    // The paced writes, then every endpoint's deliveries (2 × 20).
    let report = scenario("webhooks", 2).await;
    assert_rows(&report, 0, 20, "paced user creations");
    assert_rows(&report, 1, 40, "deliveries to every endpoint");
    assert!(figure(&report, "events_per_s_to_every_endpoint") > 0.0);
}

#[tokio::test]
async fn ldap_sync() {
    let report = scenario("ldap-sync", 2).await;
    assert_eq!(
        figure(&report, "first_sync_created"),
        53.0,
        "50 users, 3 groups"
    );
    assert_eq!(figure(&report, "resync_writes"), 0.0);
    assert_eq!(figure(&report, "resync_change_log_rows"), 0.0);
    assert!(figure(&report, "peak_rss_during_first_sync_mb") > 0.0);
}
