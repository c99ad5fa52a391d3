//! The stable head of the change log: the highest revision below which no
//! revision can still appear. See the module docs of `postgres.rs` for why
//! this is needed; this file holds the bookkeeping and its proof sketch.
//!
//! Facts the algorithm relies on (enforced by the write path):
//! 1. every writing transaction has a transaction id *before* it takes a
//!    revision (`nextval`), and takes its revisions as its last statement;
//! 2. `change_revision` hands out values in call order (CACHE 1);
//! 3. change rows are only deleted by pruning, at or below a stable head;
//! 4. (PostgreSQL) `nextval` takes a `RowExclusiveLock` on the sequence for
//!    the top-level transaction, held until it ends.
//!
//! Claim: in a snapshot S, if revision M is visible, every absent revision
//! h < M belongs to a transaction that was running when S was taken, or that
//! aborted. Proof: the taker T of h called `nextval` before the taker of M
//! did (2), and M's transaction committed before S; T had an xid before
//! that (1). T is not committed in S (h would be visible, 3), so T was
//! running at S or aborted.
//!
//! Careful: "running at S" is *not* "in S's `xip`": PostgreSQL computes a
//! snapshot's `xmax` as the latest *completed* xid + 1 and lists in `xip`
//! only running xids below it, so a running T whose xid is above every
//! completed one is in neither. The observation therefore also reads the
//! xids running right after S from `pg_locks` (every transaction holds an
//! exclusive lock on its own xid from assignment to end): T is there unless
//! it already finished, in which case any later snapshot sees its outcome.
//!
//! Xids are cluster-wide, so `xip` and `pg_locks` also list transactions of
//! every other database on the server, and of other tools in this one; one
//! of them idle in a transaction would hold every barrier forever. The same
//! `pg_locks` read therefore says which transactions hold a lock on this
//! database's `change_revision` (fact 4): a transaction seen there with its
//! xid but *without* that lock, and still in progress once the read is over,
//! is a *bystander*: it took no revision before S, since it would have held
//! the lock from then until its end. (The in-progress check comes after the
//! read because a transaction leaves the proc array before releasing its
//! locks one partition at a time: one that ended during the read may show
//! its xid lock without its sequence lock. `pg_locks` reads the
//! per-backend fast-path locks, where the sequence lock usually lives,
//! before the shared table, where xid locks always live; a lock moves
//! between the two only under the backend's fast-path lock, which that read
//! takes too. So a taker still running after the read was seen with its
//! lock.) Bystanders are left out of barriers; every other xid stays in,
//! which is only conservative.
//!
//! Hence a *barrier* (M, running xids): once every one of them has finished
//! in a *later* observation (xid < xmax and not in xip), each revision <= M
//! is committed (visible to that observation's snapshot and every later
//! one) or will never exist, and the head may jump to M. A barrier is never
//! resolved by the observation that created it. Between barriers, the head
//! also walks over revisions present consecutively (they are committed).
//!
//! The process's own commits need no observation: a revision whose
//! transaction's COMMIT returned here is committed (and visible to every
//! snapshot taken afterwards), so the head walks over consecutive revisions
//! this process committed as soon as they are reported
//! ([`HeadState::committed_locally`]). Only a hole in them (a revision of
//! another process, a transaction still committing, an aborted one) needs
//! the observations above.

use std::collections::{BTreeSet, VecDeque};

/// At most this many barriers are remembered; more are dropped (they only
/// speed things up: a later call records a new one).
const MAX_BARRIERS: usize = 32;

/// At most this many local commits above the head are remembered; more are
/// forgotten (the observations still find them in the log).
const MAX_LOCAL: usize = 100_000;

/// What one query saw, all in one snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observation {
    /// `pg_snapshot_xmax` of the snapshot: the first xid not yet assigned.
    pub xmax: i64,
    /// `pg_snapshot_xip`: xids in progress at the snapshot (below `xmax`).
    pub xip: Vec<i64>,
    /// Full xids running right after the snapshot (from `pg_locks`),
    /// including those at or above `xmax`, except the bystanders.
    pub running: Vec<i64>,
    /// Full xids running right after the snapshot without a lock on
    /// `change_revision`: they hold no revision below the snapshot's.
    pub bystanders: Vec<i64>,
    /// Visible revisions above the head the query started from, ascending
    /// (possibly truncated to a limit).
    pub revisions: Vec<i64>,
    /// The highest visible revision, if any.
    pub max_revision: Option<i64>,
    /// Revisions at or below this are pruned (so resolved).
    pub pruned_through: i64,
}

impl Observation {
    /// Whether transaction `xid` had finished (committed or aborted) when
    /// this snapshot was taken.
    fn finished(&self, xid: i64) -> bool {
        xid < self.xmax && !self.xip.contains(&xid)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Barrier {
    up_to: i64,
    xids: Vec<i64>,
}

/// The stable head and the barriers that will let it move past holes.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadState {
    head: i64,
    barriers: VecDeque<Barrier>,
    /// The highest committed revision an observation saw.
    newest: i64,
    /// Revisions above the head committed by this process.
    local: BTreeSet<i64>,
    /// Whether local commits moved the head since the last
    /// [`HeadState::take_local_progress`].
    local_progress: bool,
}

impl HeadState {
    /// The current stable head.
    pub fn head(&self) -> i64 {
        self.head
    }

    /// The highest committed revision an observation saw.
    pub fn newest(&self) -> i64 {
        self.newest
    }

    /// Folds an observation in and returns the new head. Observations may
    /// come from concurrent callers in any order: each one is sound on its
    /// own and the head only moves forward.
    pub fn observe(&mut self, obs: &Observation) -> i64 {
        self.head = self.head.max(obs.pruned_through);
        self.newest = self.newest.max(obs.max_revision.unwrap_or(0));
        let head = &mut self.head;
        self.barriers.retain(|b| {
            if b.xids.iter().all(|x| obs.finished(*x)) {
                *head = (*head).max(b.up_to);
                false
            } else {
                b.up_to > *head
            }
        });
        for &r in &obs.revisions {
            if r <= self.head {
                continue;
            }
            if r == self.head + 1 {
                self.head = r;
            } else {
                break;
            }
        }
        if let Some(max) = obs.max_revision.filter(|m| *m > self.head) {
            let mut xids: Vec<i64> = obs
                .xip
                .iter()
                .chain(&obs.running)
                .filter(|x| !obs.bystanders.contains(x))
                .copied()
                .collect();
            xids.sort_unstable();
            xids.dedup();
            self.push_barrier(Barrier { up_to: max, xids });
        }
        self.walk_local();
        let head = self.head;
        self.barriers.retain(|b| b.up_to > head);
        self.head
    }

    /// Records revisions whose transaction this process committed (its
    /// COMMIT returned) and returns the new head.
    pub fn committed_locally(&mut self, revisions: &[i64]) -> i64 {
        for &r in revisions {
            self.newest = self.newest.max(r);
            if r > self.head && self.local.len() < MAX_LOCAL {
                self.local.insert(r);
            }
        }
        let before = self.head;
        self.walk_local();
        let head = self.head;
        self.local_progress |= head > before;
        self.barriers.retain(|b| b.up_to > head);
        head
    }

    /// Whether local commits moved the head since the last call.
    pub fn take_local_progress(&mut self) -> bool {
        std::mem::take(&mut self.local_progress)
    }

    /// Whether local commits wait above a hole at the head.
    pub fn local_pending(&self) -> bool {
        !self.local.is_empty()
    }

    /// Walks the head over consecutive local commits and forgets those at
    /// or below it.
    fn walk_local(&mut self) {
        while let Some(&first) = self.local.first() {
            if first <= self.head {
                self.local.pop_first();
            } else if first == self.head + 1 {
                self.local.pop_first();
                self.head = first;
            } else {
                break;
            }
        }
    }

    fn push_barrier(&mut self, barrier: Barrier) {
        if self
            .barriers
            .back()
            .is_some_and(|b| b.up_to >= barrier.up_to)
        {
            return;
        }
        if self.barriers.len() < MAX_BARRIERS {
            self.barriers.push_back(barrier);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(xmax: i64, xip: &[i64], revisions: &[i64]) -> Observation {
        Observation {
            xmax,
            xip: xip.to_vec(),
            running: xip.to_vec(),
            bystanders: Vec::new(),
            revisions: revisions.to_vec(),
            max_revision: revisions.iter().copied().max(),
            pruned_through: 0,
        }
    }

    #[test]
    fn walks_over_consecutive_revisions() {
        let mut s = HeadState::default();
        assert_eq!(s.observe(&obs(100, &[50], &[1, 2, 3])), 3);
    }

    #[test]
    fn stops_at_a_hole_while_its_taker_may_be_in_progress() {
        let mut s = HeadState::default();
        // 2 is missing and xid 50 was in progress: it may hold revision 2.
        assert_eq!(s.observe(&obs(100, &[50], &[1, 3])), 1);
        // Still in progress in a later snapshot.
        assert_eq!(s.observe(&obs(110, &[50, 105], &[1, 3, 4])), 1);
        // 50 committed revision 2: consecutive again.
        assert_eq!(s.observe(&obs(120, &[105], &[2, 3, 4])), 4);
    }

    #[test]
    fn skips_a_hole_once_every_possible_taker_finished() {
        let mut s = HeadState::default();
        assert_eq!(s.observe(&obs(100, &[50], &[1, 3])), 1);
        // 50 aborted: 2 never appears; 60 (started later) is irrelevant.
        assert_eq!(s.observe(&obs(130, &[120], &[3, 5])), 3);
        // Revision 4 (beyond the first barrier) waits for the new barrier.
        assert_eq!(s.observe(&obs(140, &[], &[3, 5])), 5);
        assert_eq!(s.observe(&obs(150, &[], &[3, 5, 8])), 5);
    }

    #[test]
    fn nothing_in_progress_resolves_everything_visible_on_the_next_look() {
        let mut s = HeadState::default();
        assert_eq!(s.observe(&obs(100, &[], &[2, 7])), 0);
        assert_eq!(s.observe(&obs(100, &[], &[2, 7])), 7);
    }

    #[test]
    fn a_running_xid_above_xmax_holds_the_barrier() {
        let mut s = HeadState::default();
        // Xid 100 runs (took revision 1) but is above xmax, so not in xip.
        let mut first = obs(100, &[], &[2]);
        first.running = vec![100];
        assert_eq!(s.observe(&first), 0);
        // Still running: xid 100 >= xmax of the next snapshot too.
        assert_eq!(s.observe(&obs(100, &[], &[2])), 0);
        // Finished (xmax moved past it, not in xip): the hole is resolved.
        assert_eq!(s.observe(&obs(101, &[], &[2])), 2);
    }

    #[test]
    fn a_bystander_does_not_hold_the_barrier() {
        let mut s = HeadState::default();
        // Xid 50 (another database) runs throughout and holds no revision.
        let mut first = obs(100, &[50], &[2]);
        first.running = vec![];
        first.bystanders = vec![50];
        assert_eq!(s.observe(&first), 0);
        let mut later = obs(110, &[50], &[2]);
        later.running = vec![];
        later.bystanders = vec![50];
        assert_eq!(s.observe(&later), 2);
    }

    #[test]
    fn a_stale_observation_never_moves_the_head_back() {
        let mut s = HeadState::default();
        assert_eq!(s.observe(&obs(100, &[50], &[1, 2, 3])), 3);
        assert_eq!(s.observe(&obs(90, &[80], &[1])), 3);
    }

    #[test]
    fn local_commits_move_the_head_without_an_observation() {
        let mut s = HeadState::default();
        assert_eq!(s.observe(&obs(100, &[], &[1, 2])), 2);
        // 4 committed here first: 3 may still be committing elsewhere.
        assert_eq!(s.committed_locally(&[4]), 2);
        assert!(s.local_pending());
        assert!(!s.take_local_progress());
        assert_eq!(s.committed_locally(&[3, 5]), 5);
        assert!(!s.local_pending());
        assert_eq!(s.newest(), 5);
        assert!(s.take_local_progress());
        assert!(!s.take_local_progress());
    }

    #[test]
    fn an_observation_fills_the_hole_below_local_commits() {
        let mut s = HeadState::default();
        // Revision 1 is another process's; 2 and 3 are ours.
        assert_eq!(s.committed_locally(&[2, 3]), 0);
        assert_eq!(s.observe(&obs(100, &[], &[1, 2, 3])), 3);
        assert!(!s.local_pending());
        // An aborted revision (4): the barrier, not the local commits, skips it.
        assert_eq!(s.committed_locally(&[5]), 3);
        assert_eq!(s.observe(&obs(110, &[105], &[5])), 3);
        assert_eq!(s.observe(&obs(120, &[], &[5])), 5);
        assert!(!s.local_pending());
    }

    #[test]
    fn pruned_revisions_count_as_resolved() {
        let mut s = HeadState::default();
        let mut o = obs(100, &[99], &[11, 12]);
        o.pruned_through = 10;
        assert_eq!(s.observe(&o), 12);
    }
}
