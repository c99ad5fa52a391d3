//! GetStateDigest: the directory's users and groups (with their members)
//! read from one snapshot and folded into a [`roster_digest::Tree`].

use std::collections::HashMap;

use futures::StreamExt;
use roster_digest::{Item, Kind, Tree};
use roster_proto::directory::{
    DigestBucket, DigestItem, GetStateDigestRequest, GetStateDigestResponse,
};
use roster_store::SnapshotItem;

use super::{DirectoryApi, directory_id};
use crate::cursor;
use crate::error::{ServiceError, ServiceResult};

/// Most items one answer lists.
const MAX_ITEMS: i32 = 1_000;

impl DirectoryApi {
    pub async fn get_state_digest(
        &self,
        req: GetStateDigestRequest,
    ) -> ServiceResult<GetStateDigestResponse> {
        let dir = directory_id(&req.directory_id)?;
        let prefix = checked_prefix(&req.prefix)?;
        let depth = match req.depth {
            0 | 1 => 1,
            2 => 2,
            _ => return Err(invalid("depth must be 1 or 2")),
        };
        let max_items = usize::try_from(req.max_items.clamp(0, MAX_ITEMS)).unwrap_or(0);
        self.store().get_directory(dir).await?;
        let (at, items) = self.store().snapshot(Some(dir)).await?;
        let tree = fold(items).await?;
        let bucket = tree.bucket(&prefix);
        let items = if bucket.count as usize <= max_items {
            tree.leaves(&prefix).map(item).collect()
        } else {
            Vec::new()
        };
        Ok(GetStateDigestResponse {
            revision: at.after,
            cursor: cursor::encode(&at),
            bucket: Some(wire(bucket)),
            children: tree
                .children(&prefix, depth)
                .into_iter()
                .map(wire)
                .collect(),
            items,
        })
    }
}

/// Users as they come; groups once all their members are known.
async fn fold(
    mut items: futures::stream::BoxStream<'static, roster_store::StoreResult<SnapshotItem>>,
) -> ServiceResult<Tree> {
    let mut tree = Tree::new();
    let mut groups: HashMap<uuid::Uuid, Item> = HashMap::new();
    while let Some(item) = items.next().await {
        match item? {
            SnapshotItem::User(u) => tree.insert(&Item {
                kind: Kind::User,
                id: u.id.0.to_string(),
                version: u.version,
                members: Vec::new(),
            }),
            SnapshotItem::Group(g) => {
                groups.insert(
                    g.id.0,
                    Item {
                        kind: Kind::Group,
                        id: g.id.0.to_string(),
                        version: g.version,
                        members: Vec::new(),
                    },
                );
            }
            SnapshotItem::Membership(m) => {
                if let Some(group) = groups.get_mut(&m.group_id.0) {
                    group.members.push(m.member_id.to_string());
                }
            }
        }
    }
    groups.values().for_each(|g| tree.insert(g));
    Ok(tree)
}

fn checked_prefix(prefix: &str) -> ServiceResult<String> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.len() > 32 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid("prefix must be at most 32 hex digits"));
    }
    Ok(prefix)
}

fn invalid(message: &str) -> ServiceError {
    ServiceError::InvalidArgument(message.into())
}

fn wire(bucket: roster_digest::Bucket) -> DigestBucket {
    DigestBucket {
        prefix: bucket.prefix,
        count: bucket.count as i64,
        digest: bucket.digest,
    }
}

fn item(leaf: &roster_digest::Leaf) -> DigestItem {
    DigestItem {
        kind: leaf.kind.as_str().into(),
        id: leaf.id.clone(),
        version: leaf.version,
        digest: roster_digest::hex(&leaf.hash),
    }
}
