//! Which change-log rows a write committed, for the caller that wants to
//! say so (the audit trail records, per SCIM request, the events it
//! produced: docs/portal.md).
//!
//! The revisions are taken inside the commit, far below the `Store` calls'
//! return values, and one request may commit several writes; so instead of
//! widening every write's signature, a caller runs its writes inside
//! [`collect`], and every commit made in that task reports the rows it
//! appended, once the commit succeeded. Writes outside `collect` (the
//! syncer, imports, tests) report to nobody, at no cost.

use std::cell::RefCell;
use std::future::Future;

use uuid::Uuid;

use crate::model::ChangeKind;

/// A change-log row a committed write appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub kind: ChangeKind,
    /// The resource the row is about (a membership's is its group).
    pub resource_id: Uuid,
    /// The resource's version the write produced.
    pub version: i64,
    pub revision: i64,
}

tokio::task_local! {
    static PRODUCED: RefCell<Vec<Produced>>;
}

/// Runs `work` and returns, with its output, the rows committed by the
/// writes it made in this task, in commit order.
pub async fn collect<F: Future>(work: F) -> (F::Output, Vec<Produced>) {
    PRODUCED
        .scope(RefCell::new(Vec::new()), async {
            let output = work.await;
            (output, PRODUCED.with(RefCell::take))
        })
        .await
}

/// Adds committed rows to the enclosing [`collect`], if any. Called by the
/// backends after a commit, and by whoever commits on another task's behalf
/// (group commit hands each request its own rows back this way).
pub fn report(rows: impl IntoIterator<Item = Produced>) {
    let _ = PRODUCED.try_with(|produced| produced.borrow_mut().extend(rows));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(revision: i64) -> Produced {
        Produced {
            kind: ChangeKind::UserCreated,
            resource_id: Uuid::nil(),
            version: 1,
            revision,
        }
    }

    #[tokio::test]
    async fn rows_reach_the_enclosing_collect_only() {
        report([row(1)]);
        let ((), rows) = collect(async {
            report([row(2)]);
            report([row(3)]);
        })
        .await;
        assert_eq!(rows, [row(2), row(3)]);
        let ((), none) = collect(async {}).await;
        assert!(none.is_empty());
    }
}
