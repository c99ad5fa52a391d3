//! Checking a watch request: its filter, and the position it starts from.

use roster_proto::directory::WatchChangesRequest;
use roster_proto::directory::watch_changes_request::Start;
use roster_store::{ChangeFilter, Cursor, DirectoryId, StoreError};

use super::ChangeHub;
use crate::convert;
use crate::cursor;
use crate::error::{ServiceError, ServiceResult};

/// Where a validated watch request starts.
#[derive(Debug, Clone)]
pub(super) enum StartAt {
    Position(Cursor),
    InitialState,
}

/// The validated parts of a `WatchChangesRequest`.
#[derive(Debug, Clone)]
pub(super) struct WatchPlan {
    pub(super) filter: ChangeFilter,
    pub(super) start: StartAt,
}

pub(super) async fn plan(hub: &ChangeHub, req: WatchChangesRequest) -> ServiceResult<WatchPlan> {
    let directory_id = match req.directory_id.as_str() {
        "" => None,
        id => Some(id.parse::<DirectoryId>().map_err(|_| {
            ServiceError::InvalidArgument(format!("malformed directory_id {id:?}"))
        })?),
    };
    // Resuming needs no live directory: the log still holds the events of a
    // deleted one (down to its `directory.deleted` tombstone).
    let resumes = matches!(
        req.start,
        Some(Start::AfterCursor(_) | Start::AfterRevision(_))
    );
    if let (Some(dir), false) = (directory_id, resumes) {
        hub.store.get_directory(dir).await?;
    }
    let kinds = req
        .kinds
        .iter()
        .map(|k| {
            convert::store_change_kind(*k)
                .ok_or_else(|| ServiceError::InvalidArgument(format!("unknown change kind {k}")))
        })
        .collect::<ServiceResult<Vec<_>>>()?;
    let start = match req.start {
        None | Some(Start::FromNow(())) => {
            let bounds = hub.store.log_bounds().await?;
            StartAt::Position(Cursor {
                after: bounds.stable_head.max(hub.head()),
                also_seen: Vec::new(),
                epoch: Some(bounds.epoch),
            })
        }
        Some(Start::AfterCursor(text)) => {
            StartAt::Position(checked(hub, cursor::decode(&text)?).await?)
        }
        Some(Start::AfterRevision(after)) if after >= 0 => StartAt::Position(
            checked(
                hub,
                Cursor {
                    after,
                    ..Cursor::default()
                },
            )
            .await?,
        ),
        Some(Start::AfterRevision(r)) => {
            return Err(ServiceError::InvalidArgument(format!(
                "after_revision must not be negative, got {r}"
            )));
        }
        Some(Start::InitialState(())) => StartAt::InitialState,
    };
    Ok(WatchPlan {
        filter: ChangeFilter {
            directory_id,
            kinds,
        },
        start,
    })
}

/// Rejects a resume position the change log does not cover: of another
/// history (epoch), beyond what it has handed out, or pruned. Returns it
/// with the log's epoch, which every cursor of the stream then carries.
///
/// "Beyond" compares with the *allocated* head, not the stable one: a
/// cursor from a replica whose stable head is ahead of this one's is valid
/// here too, and the watcher simply waits for this replica to catch up.
async fn checked(hub: &ChangeHub, pos: Cursor) -> ServiceResult<Cursor> {
    let bounds = hub.store.log_bounds().await?;
    if pos.epoch.is_some_and(|epoch| epoch != bounds.epoch) {
        return Err(ServiceError::CursorOfAnotherHistory);
    }
    let newest = pos.also_seen.iter().copied().fold(pos.after, i64::max);
    if newest > bounds.allocated_head {
        return Err(ServiceError::CursorAhead {
            requested: newest,
            newest: bounds.allocated_head,
        });
    }
    if pos.after < bounds.pruned_through {
        return Err(StoreError::CursorExpired {
            requested: pos.after,
            oldest: bounds.pruned_through,
        }
        .into());
    }
    Ok(Cursor {
        epoch: Some(bounds.epoch),
        ..pos
    })
}
