//! Fan-out: `--streams` concurrent WatchChanges streams on one directory
//! service process, multiplexed over a few HTTP/2 connections, while users
//! are created through the gateway. Measures delivery latency (write
//! response → event, on a sample of the streams; every stream must receive
//! every event) and the server's RSS per open stream.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use roster_proto::directory::WatchChangesResponse;
use tokio::task::JoinHandle;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::cli::BenchArgs;
use crate::env::Env;
use crate::report::{Measurement, Report};
use crate::scenarios::onboarding::create_users;
use crate::scenarios::watch::{collect_arrivals, delivery_latencies, open_watch};

/// Streams being opened at once.
const OPENING_PARALLELISM: usize = 256;
/// Writes before the baseline RSS, so pools and buffers are warm.
const WARM_UP_WRITES: usize = 20;
/// How long every stream may take to receive every event after the last write.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

type Watch = Streaming<WatchChangesResponse>;
/// A stream's reader: its arrival times and the stream itself, kept open
/// until the RSS is read.
type Reader = JoinHandle<anyhow::Result<(HashMap<String, Instant>, Watch)>>;

/// Measures the scenario on `env`, a fresh environment.
pub async fn measure(env: &Env, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut report = env.report("fanout");
    let (dir, client) = env.directory("fanout", args.concurrency).await?;
    create_users(&client, "warm", WARM_UP_WRITES, args.concurrency).await?;
    let rss_base = env.server.rss_bytes()?;

    let connections = args
        .streams
        .div_ceil(args.streams_per_connection.max(1))
        .max(1);
    let channels = open_channels(env, connections).await?;
    eprintln!(
        "[{}] opening {} streams over {connections} connections",
        crate::elapsed_tag(),
        args.streams
    );
    let streams = open_streams(&channels, &dir, args.streams).await?;
    let rss_open = env.server.rss_bytes()?;

    let writes = args.fanout_writes;
    let sample = sample_indexes(args.streams, args.sample_streams);
    let readers: Vec<Reader> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(read_all(s, writes, sample.binary_search(&i).is_ok())))
        .collect();
    let mut created = create_users(&client, "f", writes, args.concurrency).await?;
    report.measurements.push(Measurement::new(
        format!("POST /Users with {} streams open", args.streams),
        args.concurrency,
        &mut created.latencies,
        created.elapsed,
    ));
    let delivered = tokio::time::timeout(DRAIN_DEADLINE, futures::future::try_join_all(readers))
        .await
        .with_context(|| {
            format!("not every stream received every event within {DRAIN_DEADLINE:?}")
        })?
        .context("a stream reader panicked")?;
    let rss_after = env.server.rss_bytes()?;

    let mut per_stream = Vec::new();
    let mut worst_per_write = vec![Duration::ZERO; created.results.len()];
    for i in &sample {
        let arrivals = match &delivered[*i] {
            Ok((arrivals, _)) => arrivals,
            Err(e) => anyhow::bail!("stream {i}: {e:#}"),
        };
        let (latencies, _) = delivery_latencies(&created.results, arrivals)?;
        for (worst, l) in worst_per_write.iter_mut().zip(&latencies) {
            *worst = (*worst).max(*l);
        }
        per_stream.extend(latencies);
    }
    if let Some((i, Err(e))) = delivered.iter().enumerate().find(|(_, r)| r.is_err()) {
        anyhow::bail!("stream {i}: {e:#}");
    }
    let label = format!(
        "delivery, {} sampled streams × {writes} writes",
        sample.len()
    );
    report.measurements.push(Measurement::new(
        label,
        args.streams,
        &mut per_stream,
        created.elapsed,
    ));
    let label = "delivery to every sampled stream (per write)";
    report.measurements.push(Measurement::new(
        label,
        args.streams,
        &mut worst_per_write,
        created.elapsed,
    ));
    drop(delivered);

    let mib = |b: u64| (b as f64 / 1048576.0 * 10.0).round() / 10.0;
    let per_stream_kib = |b: u64| {
        (b.saturating_sub(rss_base) as f64 / args.streams.max(1) as f64 / 1024.0 * 100.0).round()
            / 100.0
    };
    report.figure("streams", args.streams);
    report.figure("connections", connections);
    report.figure("server_rss_mib_no_streams", mib(rss_base));
    report.figure("server_rss_mib_streams_open", mib(rss_open));
    report.figure("server_rss_mib_after_writes", mib(rss_after));
    report.figure(
        "server_rss_kib_per_stream",
        per_stream_kib(rss_after.max(rss_open)),
    );
    Ok(report)
}

async fn open_channels(env: &Env, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        // `connect` on separate endpoints: each Channel is its own HTTP/2 connection.
        channels.push(env.server.channel().await?);
    }
    Ok(channels)
}

async fn open_streams(channels: &[Channel], dir: &str, n: usize) -> anyhow::Result<Vec<Watch>> {
    futures::stream::iter(0..n)
        .map(|i| open_watch(channels[i % channels.len()].clone(), dir))
        .buffered(OPENING_PARALLELISM)
        .try_collect()
        .await
}

async fn read_all(
    mut stream: Watch,
    events: usize,
    record: bool,
) -> anyhow::Result<(HashMap<String, Instant>, Watch)> {
    let arrivals = collect_arrivals(&mut stream, events, record).await?;
    Ok((arrivals, stream))
}

/// `k` stream indexes spread evenly over `0..n`.
fn sample_indexes(n: usize, k: usize) -> Vec<usize> {
    let k = k.clamp(1, n.max(1));
    (0..k).map(|j| j * n / k).filter(|&i| i < n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_spread_and_distinct() {
        assert_eq!(sample_indexes(10, 3), vec![0, 3, 6]);
        assert_eq!(sample_indexes(3, 100), vec![0, 1, 2]);
        assert_eq!(sample_indexes(10_000, 100).len(), 100);
    }
}
