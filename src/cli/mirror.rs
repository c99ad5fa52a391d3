//! `roster mirror`: `roster_client::mirror::PgMirror` behind a follower, as
//! a process — the example consumer, ready to run (docs/consumers.md).

use anyhow::Context;
use roster_client::mirror::PgMirror;
use roster_client::postgres::PgCursor;
use roster_client::{FollowConfig, Follower, Observer, SnapshotReason, Start};

use crate::config::MirrorArgs;

pub async fn run(args: MirrorArgs) -> anyhow::Result<()> {
    let endpoints = args
        .client
        .endpoint
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|address| super::endpoint(&args.client, address))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = FollowConfig::new(endpoints, args.directory.clone());
    config.secret = args.client.internal_secret.clone();
    config.start = if args.list_then_watch {
        Start::ListThenWatch
    } else {
        Start::InitialState
    };
    let pool = sqlx::PgPool::connect(&args.mirror_database_url)
        .await
        .context("cannot connect to the mirror database")?;
    let mut mirror = PgMirror::open(pool.clone(), args.name.clone()).await?;
    let mut cursor = PgCursor::open(pool, args.name).await?.saved_by_consumer();
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Follower::with_observer(config, Logged)
        .run(&mut mirror, &mut cursor, shutdown)
        .await?;
    Ok(())
}

/// What the follower does, in the process's log.
struct Logged;

impl Observer for Logged {
    fn connected(&self, endpoint: &str, resumed_after: Option<&str>) {
        tracing::info!(endpoint, resumed_after, "mirroring");
    }

    fn disconnected(&self, endpoint: &str, status: &tonic::Status, retry_in: std::time::Duration) {
        tracing::warn!(endpoint, code = ?status.code(), reason = status.message(), retry_in_ms = retry_in.as_millis() as u64, "disconnected; reconnecting");
    }

    fn snapshot(&self, reason: SnapshotReason) {
        tracing::info!(?reason, "taking a snapshot");
    }
}
