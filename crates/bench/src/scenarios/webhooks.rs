//! Webhooks: `--webhook-endpoints` endpoints on one directory, each
//! receiving every event, while users are created through the gateway at
//! `--webhook-rate` per second. Measures the delivery rate and the latency
//! from a write's HTTP response to each endpoint's request arriving at a
//! receiver in this process (every endpoint must receive every event, in
//! order).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use roster_proto::admin::CreateWebhookEndpointRequest;
use roster_proto::admin::admin_service_client::AdminServiceClient;
use tokio::net::TcpListener;

use crate::cli::BenchArgs;
use crate::cpu::CpuMeter;
use crate::env::Env;
use crate::load;
use crate::report::{Measurement, Report};
use crate::scim::{ScimClient, user_body};

/// How long every endpoint may take to receive every event after the last write.
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);

/// Each endpoint's arrivals: (revision, user id, when).
type Arrivals = Arc<Mutex<Vec<Vec<(i64, String, Instant)>>>>;

/// Runs the scenario on a fresh environment whose server has webhooks on.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let mut args = args.clone();
    args.webhook_key = Some(roster_webhook::SealingKey::generate_text()?);
    Env::with(&args, async |env| measure(env, &args).await).await
}

async fn measure(env: &Env, args: &BenchArgs) -> anyhow::Result<Report> {
    let mut report = env.report("webhooks");
    let (dir, client) = env.directory("webhooks", args.concurrency).await?;
    let endpoints = args.webhook_endpoints.max(1);
    let arrivals: Arrivals = Arc::new(Mutex::new(vec![Vec::new(); endpoints]));
    let root = receive(Arc::clone(&arrivals)).await?;
    let mut admin = AdminServiceClient::new(env.server.channel().await?);
    for i in 0..endpoints {
        admin
            .create_webhook_endpoint(CreateWebhookEndpointRequest {
                directory_id: dir.clone(),
                url: format!("{root}/hook/{i}"),
                kinds: vec!["user.created".into()],
                ..Default::default()
            })
            .await
            .context("cannot create a webhook endpoint")?;
    }
    let n = args.webhook_events;
    eprintln!(
        "[{}] {n} users at {}/s to {endpoints} endpoints",
        crate::elapsed_tag(),
        args.webhook_rate
    );
    let meter = CpuMeter::new(env.server.pids(), &env.database.url);
    let cpu = meter.snapshot().await?;
    let started = Instant::now();
    let paced = paced_users(&client, n, args.webhook_rate.max(1), args.concurrency).await?;
    // Each write's own latency, without the wait for its slot.
    let mut write_latencies: Vec<Duration> = paced.results.iter().map(|(_, d)| *d).collect();
    report.measurements.push(Measurement::new(
        "POST /Users (paced)",
        args.concurrency,
        &mut write_latencies,
        paced.elapsed,
    ));
    let created: Vec<crate::scim::Created> = paced.results.into_iter().map(|(c, _)| c).collect();
    drained(&arrivals, n).await?;
    let elapsed = started.elapsed();
    // Writes and deliveries together, per delivery: who the rate waits on.
    let cpu = meter.per_op(&cpu, n * endpoints).await?;
    let by_id: HashMap<&str, Instant> = created
        .iter()
        .map(|c| (c.id.as_str(), c.responded_at))
        .collect();
    let mut latencies = delivery_latencies(&arrivals, &by_id)?;
    let deliveries = Measurement::new(
        format!("webhook deliveries ({endpoints} endpoints, write response → request)"),
        endpoints,
        &mut latencies,
        elapsed,
    );
    report.measurements.push(deliveries.with_cpu(cpu));
    report.figure("endpoints", endpoints);
    report.figure("events", n);
    report.figure(
        "events_per_s_to_every_endpoint",
        (n as f64 / elapsed.as_secs_f64()).round(),
    );
    Ok(report)
}

/// POST /Users `0..n`, the i-th sent no earlier than `i / rate` seconds
/// in; each with its latency from being sent.
async fn paced_users(
    client: &ScimClient,
    n: usize,
    rate: usize,
    concurrency: usize,
) -> anyhow::Result<load::Timed<(crate::scim::Created, Duration)>> {
    let client = client.clone();
    let start = tokio::time::Instant::now();
    load::run(n, concurrency, move |i| {
        let (client, body) = (client.clone(), user_body("wh", i));
        let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
        async move {
            tokio::time::sleep_until(at).await;
            let sent = Instant::now();
            let created = client.create_user(&body).await?;
            Ok((created, sent.elapsed()))
        }
    })
    .await
}

/// Waits until every endpoint received `n` events.
async fn drained(arrivals: &Arrivals, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let least = arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("receiver lock poisoned"))?
            .iter()
            .map(Vec::len)
            .min()
            .unwrap_or(0);
        if least >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("an endpoint received only {least} of {n} events within {DRAIN_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Arrival minus write response, for every (endpoint, event); checks that
/// each endpoint got each event once, in revision order.
fn delivery_latencies(
    arrivals: &Arrivals,
    responded: &HashMap<&str, Instant>,
) -> anyhow::Result<Vec<Duration>> {
    let arrivals = arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("receiver lock poisoned"))?;
    let mut latencies = Vec::new();
    for (endpoint, got) in arrivals.iter().enumerate() {
        if !got.windows(2).all(|w| w[0].0 < w[1].0) {
            bail!("endpoint {endpoint} received events out of order or twice");
        }
        for (_, id, at) in got {
            let write = responded
                .get(id.as_str())
                .with_context(|| format!("endpoint {endpoint}: unknown user {id}"))?;
            latencies.push(at.saturating_duration_since(*write));
        }
    }
    Ok(latencies)
}

/// Starts the receiver on loopback; returns its root URL.
async fn receive(arrivals: Arrivals) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let root = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let arrivals = Arc::clone(&arrivals);
            tokio::spawn(async move {
                let service = service_fn(move |req| record(req, Arc::clone(&arrivals)));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(root)
}

/// The two fields the receiver needs: read without building the whole
/// document, so the receiver's CPU stays small next to the server's.
#[derive(serde::Deserialize)]
struct Arrival<'a> {
    #[serde(borrow)]
    data: ArrivalData<'a>,
}

#[derive(serde::Deserialize)]
struct ArrivalData<'a> {
    revision: i64,
    resource_id: &'a str,
}

async fn record(
    req: Request<Incoming>,
    arrivals: Arrivals,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let endpoint: usize = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or(usize::MAX);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (revision, id) = match serde_json::from_slice::<Arrival>(&body) {
        Ok(a) => (a.data.revision, a.data.resource_id.to_owned()),
        Err(_) => (-1, String::new()),
    };
    if let Ok(mut all) = arrivals.lock()
        && let Some(got) = all.get_mut(endpoint)
    {
        got.push((revision, id, at));
    }
    Ok(Response::new(Full::new(Bytes::new())))
}
