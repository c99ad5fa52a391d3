//! "Verify my mirror": compare a local copy of a directory with Roster's
//! state digest (`GetStateDigest`, docs/digest.md), descending only into
//! the id prefixes whose digests differ, and say which items differ.

use roster_digest::{Kind, Leaf, Tree};
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::{DigestItem, GetStateDigestRequest};
use tonic::Status;
use tonic::transport::Channel;

pub use roster_digest::{Item, Tree as LocalState};

/// Below this many items a prefix is compared item by item.
const LIST_AT: i32 = 64;

/// One item that differs between the local copy and Roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub kind: Kind,
    pub id: String,
    /// The version held locally (`None`: missing locally).
    pub local_version: Option<i64>,
    /// The version Roster holds (`None`: not in Roster, extra locally).
    pub remote_version: Option<i64>,
}

impl Difference {
    pub fn is_missing(&self) -> bool {
        self.local_version.is_none()
    }
    pub fn is_extra(&self) -> bool {
        self.remote_version.is_none()
    }
}

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Items to re-fetch (or drop, when extra), in id order.
    pub differences: Vec<Difference>,
    /// The revision of Roster's first answer: a local copy caught up to it
    /// should show no difference that a later change does not explain.
    pub revision: i64,
    /// GetStateDigest calls made.
    pub calls: usize,
}

/// Compares `local` with the state of `directory`.
pub async fn verify(
    client: &mut DirectoryServiceClient<Channel>,
    directory: &str,
    local: &Tree,
) -> Result<Report, Status> {
    let mut report = Report::default();
    let mut pending = vec![String::new()];
    while let Some(prefix) = pending.pop() {
        let answer = client
            .get_state_digest(GetStateDigestRequest {
                directory_id: directory.into(),
                prefix: prefix.clone(),
                depth: 1,
                max_items: LIST_AT,
            })
            .await?
            .into_inner();
        if report.calls == 0 {
            report.revision = answer.revision;
        }
        report.calls += 1;
        let remote = answer.bucket.unwrap_or_default();
        if remote.digest == local.bucket(&prefix).digest {
            continue;
        }
        if remote.count as i32 <= LIST_AT {
            let locals: Vec<&Leaf> = local.leaves(&prefix).collect();
            report.differences.extend(compare(&locals, &answer.items));
            continue;
        }
        // Deepest last, so the walk stays in id order.
        for child in answer.children.iter().rev() {
            if child.digest != local.bucket(&child.prefix).digest {
                pending.push(child.prefix.clone());
            }
        }
    }
    report.differences.sort_by(|a, b| {
        (roster_digest::key(&a.id), a.kind).cmp(&(roster_digest::key(&b.id), b.kind))
    });
    Ok(report)
}

/// Item by item, within one prefix.
fn compare(locals: &[&Leaf], remotes: &[DigestItem]) -> Vec<Difference> {
    let mut out = Vec::new();
    for remote in remotes {
        let kind = Kind::parse(&remote.kind).unwrap_or(Kind::User);
        let local = locals.iter().find(|l| l.kind == kind && l.id == remote.id);
        match local {
            Some(l) if roster_digest::hex(&l.hash) == remote.digest => {}
            _ => out.push(Difference {
                kind,
                id: remote.id.clone(),
                local_version: local.map(|l| l.version),
                remote_version: Some(remote.version),
            }),
        }
    }
    for local in locals {
        let known = remotes
            .iter()
            .any(|r| r.id == local.id && Kind::parse(&r.kind) == Some(local.kind));
        if !known {
            out.push(Difference {
                kind: local.kind,
                id: local.id.clone(),
                local_version: Some(local.version),
                remote_version: None,
            });
        }
    }
    out
}
