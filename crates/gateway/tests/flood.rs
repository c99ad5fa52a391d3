//! Unauthenticated floods are bounded: requests with random bearer tokens,
//! from one address and from many, reach the directory service (and its
//! database) only within the configured budgets, leave the gateway's caches
//! within their caps, and never stop a valid IdP — from the flood's own
//! address or another — from being served meanwhile.
//!
//! This is its own test binary because it reads the process-wide gRPC
//! metrics, which no other test may move meanwhile.

use roster_testkit::app::ERROR_SCHEMA;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use roster_proto::admin::DeprovisionPolicy;
use roster_testkit::app;
use roster_testkit::app::Stack;

/// Requests of the flood: 100,000 random tokens (about 50 s in a debug
/// build on two cores). The bounds asserted below follow from the budgets
/// and the elapsed time, not from the count.
const FLOOD: usize = 100_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 64;
/// The gateway's global budget of token lookups per second in this test
/// (twice as many may come at once).
const LOOKUPS_PER_SECOND: u32 = 20;
/// The cache capacity: far below the number of distinct random tokens.
const CACHE_CAPACITY: usize = 1_000;
const TTL: Duration = Duration::from_secs(1);

/// AuthenticateToken calls the directory service has answered so far (each
/// one is a database query).
fn token_lookups_served() -> u64 {
    roster_telemetry::metrics::metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with("roster_grpc_requests_total") && l.contains("/AuthenticateToken"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One flood request: a random token, from the peer address or (four times
/// in five) from a random address a trusted proxy reported.
async fn flood_request(http: &reqwest::Client, url: &str, i: usize) -> (u16, bool) {
    let mut request = http
        .get(url)
        .bearer_auth(format!("rst_{}", uuid::Uuid::new_v4().simple()));
    if !i.is_multiple_of(5) {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + i as u32);
        request = request.header("x-forwarded-for", ip.to_string());
    }
    let response = request.send().await.expect("flood request");
    let status = response.status().as_u16();
    let has_retry_after = response.headers().contains_key("retry-after");
    let body = response.text().await.expect("flood body");
    assert!(
        body.contains(ERROR_SCHEMA),
        "not a SCIM error: {status} {body}"
    );
    assert!(status != 429 || has_retry_after, "429 without Retry-After");
    (status, has_retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_token_floods_cost_bounded_lookups_and_never_stop_a_valid_idp() {
    let stack = Stack::start_with("flood", |c| {
        c.token_lookups_per_second = LOOKUPS_PER_SECOND;
        c.token_cache_capacity = CACHE_CAPACITY;
        c.auth_cache_ttl = TTL;
        c.client_address_header = Some("x-forwarded-for".into());
    })
    .await;
    let idp = stack.directory_with_token(DeprovisionPolicy::Delete).await;
    assert_eq!(idp.get("/Users").await.status, 200, "IdP before the flood");
    let lookups_before = token_lookups_served();
    let flood_url = format!("{}/Users", idp.base_url);

    let stop = Arc::new(AtomicBool::new(false));
    let idp_task = {
        let (idp, stop) = (idp.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                // The flood's own address, then another one.
                let same = idp.get("/Users").await;
                assert_eq!(
                    same.status, 200,
                    "IdP from the flood's address: {:?}",
                    same.body
                );
                let other = read_other(&idp).await;
                assert_eq!(other, 200, "IdP from another address");
                served += 2;
            }
            served
        })
    };

    let started = Instant::now();
    let http = stack.http().clone();
    let statuses: Vec<(u16, bool)> = futures::stream::iter(0..FLOOD)
        .map(|i| {
            let (http, url) = (http.clone(), flood_url.clone());
            async move { flood_request(&http, &url, i).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let idp_served = idp_task.await.expect("IdP task");

    let lookups = token_lookups_served() - lookups_before;
    let rejected = statuses.iter().filter(|(s, _)| *s == 401).count();
    let throttled = statuses.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(
        rejected + throttled,
        FLOOD,
        "every flood request is 401 or 429"
    );
    // The global budget: a burst of two seconds' worth, then the rate; plus
    // the valid IdP's own re-checks, one per TTL.
    let secs = elapsed.as_secs_f64().ceil() as u64 + 1;
    let budget = u64::from(LOOKUPS_PER_SECOND) * (2 + secs) + secs / TTL.as_secs() + 1;
    assert!(
        lookups <= budget,
        "{lookups} token lookups for {FLOOD} random tokens in {elapsed:?} (budget {budget})"
    );
    assert!(lookups < FLOOD as u64 / 10, "{lookups} lookups");
    assert!(idp_served >= 2, "the IdP was not served during the flood");

    // Memory stays flat: every map is within its cap.
    let state = &stack.gateway.state;
    for (what, (held, cap)) in [
        ("valid tokens", state.tokens().valid_entries()),
        ("rejected tokens", state.tokens().rejected_entries()),
    ] {
        assert!(
            held <= cap && cap < CACHE_CAPACITY + 32,
            "{what}: {held} of {cap}"
        );
    }
    let addresses = state
        .auth_limits()
        .per_address()
        .expect("per-address limit");
    assert!(
        addresses.len() <= addresses.capacity(),
        "{} addresses tracked, cap {}",
        addresses.len(),
        addresses.capacity()
    );
    eprintln!(
        "flood: {FLOOD} requests in {elapsed:?}: {rejected} × 401, {throttled} × 429, \
         {lookups} token lookups, IdP served {idp_served}, {} addresses tracked",
        addresses.len()
    );
}

/// GET /Users with the IdP's token from an address no flood request uses.
async fn read_other(idp: &app::Scim) -> u16 {
    idp.request(reqwest::Method::GET, "/Users")
        .header("x-forwarded-for", "192.0.2.77")
        .send()
        .await
        .expect("IdP request")
        .status()
        .as_u16()
}
