//! Watch latency: a WatchChanges consumer (gRPC) follows the directory while
//! users are onboarded through the gateway; the latency of a user is the
//! time from its POST's HTTP response to its `user.created` event arriving.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{ChangeKind, WatchChangesRequest, WatchChangesResponse};
use tonic::Streaming;
use tonic::transport::Channel;

use crate::cli::BenchArgs;
use crate::env::Env;
use crate::report::{Measurement, Report};
use crate::scenarios::onboarding::{POST_USERS, create_users};
use crate::scim::Created;

/// How long events may keep arriving after the last write.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the scenario on a fresh environment.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    Env::with(args, async |env| measure(env, args).await).await
}

async fn measure(env: &Env, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut report = env.report("watch-latency");
    let (dir, client) = env.directory("watch", args.concurrency).await?;
    let mut stream = open_watch(env.server.channel().await?, &dir).await?;
    let n = args.users;
    let consumer = tokio::spawn(async move { collect_arrivals(&mut stream, n, true).await });

    let mut users = create_users(&client, "w", n, args.concurrency).await?;
    report
        .measurements
        .push(Measurement::of(POST_USERS, args.concurrency, &mut users));
    let arrivals = tokio::time::timeout(DRAIN_DEADLINE, consumer)
        .await
        .with_context(|| {
            format!("not every event arrived within {DRAIN_DEADLINE:?} of the last write")
        })???;

    let (mut latencies, early) = delivery_latencies(&users.results, &arrivals)?;
    // Throughput of this row: events delivered per second of onboarding.
    report.measurements.push(Measurement::new(
        "write response → event",
        1,
        &mut latencies,
        users.elapsed,
    ));
    report.figure("events_before_http_response", early);
    Ok(report)
}

/// A `user.created` stream of `directory`, from now.
pub async fn open_watch(
    channel: Channel,
    directory: &str,
) -> anyhow::Result<Streaming<WatchChangesResponse>> {
    let mut client = DirectoryServiceClient::new(channel);
    let request = WatchChangesRequest {
        directory_id: directory.to_owned(),
        kinds: vec![ChangeKind::UserCreated as i32],
        start: Some(Start::FromNow(())),
    };
    Ok(client
        .watch_changes(request)
        .await
        .context("cannot open WatchChanges")?
        .into_inner())
}

/// Reads the stream until `n` changes arrived; returns each resource id's
/// arrival time when `record` is set (else an empty map: only counts).
pub async fn collect_arrivals(
    stream: &mut Streaming<WatchChangesResponse>,
    n: usize,
    record: bool,
) -> anyhow::Result<HashMap<String, Instant>> {
    let mut arrivals = HashMap::with_capacity(if record { n } else { 0 });
    let mut seen = 0;
    while seen < n {
        let Some(message) = stream.next().await else {
            bail!("the watch stream ended after {seen} events")
        };
        let now = Instant::now();
        if let Some(Payload::Change(change)) = message?.payload {
            seen += 1;
            if record {
                arrivals.insert(change.resource_id, now);
            }
        }
    }
    Ok(arrivals)
}

/// Arrival minus HTTP response per write, and how many events arrived
/// before the response did (counted as zero latency).
pub fn delivery_latencies(
    writes: &[Created],
    arrivals: &HashMap<String, Instant>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut early = 0;
    let mut latencies = Vec::with_capacity(writes.len());
    for w in writes {
        let arrived = arrivals
            .get(&w.id)
            .with_context(|| format!("no event for user {}", w.id))?;
        if *arrived < w.responded_at {
            early += 1;
        }
        latencies.push(arrived.saturating_duration_since(w.responded_at));
    }
    Ok((latencies, early))
}
