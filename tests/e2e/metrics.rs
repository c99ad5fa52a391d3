//! Prometheus metrics on their own port reflect real traffic: SCIM requests
//! by route template and status, directory-service calls by method and code,
//! open WatchChanges streams, the change-log head and the database pool.

use roster_testkit::app;
use roster_testkit::app::bare_user;
use std::time::Duration;

use roster_proto::directory::WatchChangesRequest;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_reflect_requests_streams_head_and_pool() {
    let served = app::serve_postgres("metrics").await;
    let metrics_url = served
        .metrics_url
        .clone()
        .expect("banner prints the metrics address");
    let token = served.token.clone().expect("token");
    let http = reqwest::Client::new();

    let mut client = DirectoryServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    let _stream = client
        .watch_changes(WatchChangesRequest {
            directory_id: served.directory_id.clone(),
            kinds: vec![],
            start: Some(Start::FromNow(())),
        })
        .await
        .unwrap()
        .into_inner();
    served
        .scim()
        .create("/Users", &bare_user("metered@example.com"))
        .await;
    let missing = http
        .get(format!(
            "{}/Users/{}",
            served.base_url,
            uuid::Uuid::new_v4()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let text = roster_testkit::eventually("gauges published", Duration::from_secs(30), || {
        let http = http.clone();
        let url = metrics_url.clone();
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            let ready = sample(&text, "roster_watch_streams ").is_some_and(|v| v >= 1.0)
                && sample(&text, "roster_change_log_head_revision ").is_some_and(|v| v >= 1.0);
            ready.then_some(text)
        }
    })
    .await;
    let route = r#"route="/scim/v2/{directory_id}/Users""#;
    assert!(
        text.lines()
            .any(|l| l.starts_with("roster_http_requests_total")
                && l.contains(route)
                && l.contains(r#"status="201""#)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("roster_http_requests_total") && l.contains(r#"status="404""#)),
        "{text}"
    );
    assert!(
        text.contains("roster_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("roster_grpc_requests_total")
                && l.contains("/roster.directory.v1.DirectoryService/CreateUser")
                && l.contains(r#"code="OK""#)),
        "{text}"
    );
    assert!(
        sample(&text, r#"roster_db_pool_connections{state="max"}"#).is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("roster_rate_limited_requests_total"),
        "{text}"
    );
}

/// Waits until the metric `name` (unlabelled) satisfies `ok`; returns its value.
async fn metric_until(url: &str, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let http = reqwest::Client::new();
    let what = format!("{name} to reach the expected value");
    let ok = &ok;
    roster_testkit::eventually(&what, Duration::from_secs(30), || {
        let http = http.clone();
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            sample(&text, &format!("{name} ")).filter(|v| ok(*v))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_head_lag_shows_a_revision_held_open() {
    let served = app::serve_postgres("head_lag").await;
    let url = served.database_url.clone().expect("database");
    let metrics_url = served.metrics_url.clone().expect("metrics address");
    let lag = "roster_watch_head_lag_revisions";
    let waited = "roster_watch_head_lag_seconds";
    metric_until(&metrics_url, lag, |v| v == 0.0).await;

    // A writer takes a revision and stays open; a later write commits.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut slow = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *slow)
        .await
        .unwrap();
    sqlx::query("SELECT nextval('change_revision')")
        .execute(&mut *slow)
        .await
        .unwrap();
    served
        .scim()
        .create("/Users", &bare_user("lag@example.com"))
        .await;
    // The user's revision waits behind the open one: both count, and the
    // wait grows.
    metric_until(&metrics_url, lag, |v| v >= 2.0).await;
    metric_until(&metrics_url, waited, |v| v > 0.0).await;

    slow.rollback().await.unwrap();
    metric_until(&metrics_url, lag, |v| v == 0.0).await;
    metric_until(&metrics_url, waited, |v| v == 0.0).await;
}
