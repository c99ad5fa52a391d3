//! `roster watch --follow`: the same JSON lines, through `roster-client`'s
//! follower, so a disconnect or a restarted replica costs a pause, not the
//! place (`--cursor-file` keeps it across runs too).

use std::time::Duration;

use async_trait::async_trait;
use roster_client::{
    BoxError, Consumer, CursorStore, FileCursor, FollowConfig, Follower, MemoryCursor, Observer,
    Position, SnapshotReason, Start,
};
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{Change, Progress, Synced, WatchChangesResponse};
use tokio::sync::watch;

use super::{kind_from_name, message_json};
use crate::config::WatchArgs;

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let mut config = FollowConfig::new(
        endpoints(&args)?,
        args.directory.clone().unwrap_or_default(),
    );
    config.secret = args.client.internal_secret.clone();
    config.kinds = args
        .kinds
        .iter()
        .map(|k| kind_from_name(k).ok_or_else(|| anyhow::anyhow!("unknown change kind {k:?}")))
        .collect::<anyhow::Result<_>>()?;
    config.start = if args.initial_state {
        Start::InitialState
    } else if let Some(r) = args.after_revision {
        Start::AfterRevision(r)
    } else {
        Start::FromNow
    };
    let mut cursors: Box<dyn CursorStore> = match &args.cursor_file {
        Some(path) => Box::new(FileCursor::new(path)),
        None => Box::new(MemoryCursor(None)),
    };
    if let Some(cursor) = &args.cursor {
        cursors.save(cursor).await.map_err(|e| anyhow::anyhow!(e))?;
    }
    let (done, mut stop) = watch::channel(false);
    let mut printer = Printer {
        progress: args.progress,
        remaining: args.count,
        done,
    };
    let shutdown = async move {
        tokio::select! {
            _ = stop.wait_for(|done| *done) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    Follower::with_observer(config, Narrator)
        .run(&mut printer, cursors.as_mut(), shutdown)
        .await?;
    Ok(())
}

/// `--endpoint` may name several replicas, comma-separated.
fn endpoints(args: &WatchArgs) -> anyhow::Result<Vec<tonic::transport::Endpoint>> {
    args.client
        .endpoint
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|address| super::super::endpoint(&args.client, address))
        .collect()
}

/// Prints each message as `roster watch` does, and asks to stop after
/// `--count` changes.
struct Printer {
    progress: bool,
    remaining: Option<u64>,
    done: watch::Sender<bool>,
}

impl Printer {
    fn print(&self, payload: Payload, at: Position<'_>) {
        let message = WatchChangesResponse {
            cursor: at.cursor.to_owned(),
            revision: at.revision,
            payload: Some(payload),
        };
        println!("{}", message_json(&message));
    }
}

#[async_trait]
impl Consumer for Printer {
    async fn snapshot_begins(&mut self, _reason: SnapshotReason) -> Result<(), BoxError> {
        Ok(())
    }

    async fn apply(&mut self, change: &Change, at: Position<'_>) -> Result<(), BoxError> {
        if self.remaining == Some(0) {
            return Ok(());
        }
        self.print(Payload::Change(change.clone()), at);
        if let Some(n) = self.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                let _ = self.done.send(true);
            }
        }
        Ok(())
    }

    async fn synced(&mut self, at: Position<'_>) -> Result<(), BoxError> {
        self.print(Payload::Synced(Synced {}), at);
        Ok(())
    }

    async fn progress(&mut self, at: Position<'_>) -> Result<(), BoxError> {
        if self.progress {
            self.print(Payload::Progress(Progress {}), at);
        }
        Ok(())
    }
}

/// Tells the operator on stderr where the watch went and came back.
struct Narrator;

impl Observer for Narrator {
    fn connected(&self, endpoint: &str, resumed_after: Option<&str>) {
        match resumed_after {
            Some(cursor) => eprintln!("roster watch: resumed after cursor {cursor} on {endpoint}"),
            None => eprintln!("roster watch: watching on {endpoint}"),
        }
    }

    fn disconnected(&self, endpoint: &str, status: &tonic::Status, retry_in: Duration) {
        eprintln!(
            "roster watch: disconnected from {endpoint} ({:?}: {}); retrying in {} ms",
            status.code(),
            status.message(),
            retry_in.as_millis()
        );
    }

    fn snapshot(&self, reason: SnapshotReason) {
        if reason == SnapshotReason::CursorOutOfRange {
            eprintln!(
                "roster watch: the saved cursor is out of range; starting from a new snapshot"
            );
        }
    }
}
