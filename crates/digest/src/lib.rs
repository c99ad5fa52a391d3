//! The state digest of a directory: a hash tree over its users and groups
//! (a group with its members), keyed by id, so two copies of a directory can
//! find where they differ in a few round trips and re-fetch only that.
//!
//! The algorithm (docs/digest.md, precise enough to implement elsewhere):
//! - An item's **key** is its id's 32 hex digits, lowercase, hyphens removed.
//! - A user's **leaf** is `SHA-256("user\n" id "\n" version "\n")`; a group's
//!   is `SHA-256("group\n" id "\n" version "\n" m1 "\n" m2 "\n" …)` over its
//!   member ids in ascending order. `id` is the lowercase hyphenated UUID,
//!   `version` in decimal.
//! - The **digest of a prefix** (hex, 0 to 32 digits) is SHA-256 over the
//!   32-byte leaves of every item whose key starts with it, concatenated in
//!   ascending (key, kind) order with `group` before `user`; with its
//!   **count** of items. The root is the empty prefix. Digests are written
//!   as lowercase hex.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// What kind of item a leaf stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Group,
    User,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "group" => Some(Kind::Group),
            "user" => Some(Kind::User),
            _ => None,
        }
    }
}

/// One item of a directory's state, as the digest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    /// Lowercase hyphenated UUID.
    pub id: String,
    pub version: i64,
    /// Member ids of a group (any order); empty for users.
    pub members: Vec<String>,
}

/// An item's leaf, with what it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub kind: Kind,
    pub id: String,
    pub version: i64,
    pub hash: [u8; 32],
}

/// The digest and item count of one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub prefix: String,
    pub count: u64,
    pub digest: String,
}

/// Every leaf of a state, ordered by (key, kind): the tree is computed
/// from it on demand.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    leaves: BTreeMap<(String, Kind), Leaf>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, item: &Item) {
        let leaf = leaf(item);
        self.leaves.insert((key(&item.id), item.kind), leaf);
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The leaves under `prefix`, in order.
    pub fn leaves(&self, prefix: &str) -> impl Iterator<Item = &Leaf> {
        let prefix = prefix.to_ascii_lowercase();
        self.leaves
            .range((prefix.clone(), Kind::Group)..)
            .take_while(move |((k, _), _)| k.starts_with(&prefix))
            .map(|(_, leaf)| leaf)
    }

    /// The digest of `prefix`.
    pub fn bucket(&self, prefix: &str) -> Bucket {
        let mut hasher = Sha256::new();
        let mut count = 0;
        for leaf in self.leaves(prefix) {
            hasher.update(leaf.hash);
            count += 1;
        }
        Bucket {
            prefix: prefix.to_ascii_lowercase(),
            count,
            digest: hex(&hasher.finalize()),
        }
    }

    /// The buckets `depth` hex digits below `prefix` (16^depth of them,
    /// empty ones included), in order.
    pub fn children(&self, prefix: &str, depth: u32) -> Vec<Bucket> {
        let room = 32usize.saturating_sub(prefix.len());
        let depth = depth.min(room as u32);
        (0..16u64.pow(depth))
            .map(|n| {
                let digits = format!("{n:0width$x}", width = depth as usize);
                self.bucket(&format!("{}{}", prefix.to_ascii_lowercase(), digits))
            })
            .collect()
    }
}

/// The 32 hex digits of an id, the order and prefixes of the tree.
pub fn key(id: &str) -> String {
    id.chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The leaf of one item.
pub fn leaf(item: &Item) -> Leaf {
    let mut hasher = Sha256::new();
    let id = item.id.to_ascii_lowercase();
    hasher.update(format!("{}\n{id}\n{}\n", item.kind.as_str(), item.version));
    if item.kind == Kind::Group {
        let mut members: Vec<String> = item
            .members
            .iter()
            .map(|m| m.to_ascii_lowercase())
            .collect();
        members.sort();
        for member in members {
            hasher.update(member);
            hasher.update("\n");
        }
    }
    Leaf {
        kind: item.kind,
        id,
        version: item.version,
        hash: hasher.finalize().into(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0a3c2b1e-0000-4000-8000-000000000001";
    const B: &str = "0a9d0000-0000-4000-8000-000000000002";
    const C: &str = "f1000000-0000-4000-8000-000000000003";

    fn user(id: &str, version: i64) -> Item {
        Item {
            kind: Kind::User,
            id: id.into(),
            version,
            members: vec![],
        }
    }

    fn tree(items: &[Item]) -> Tree {
        let mut tree = Tree::new();
        items.iter().for_each(|i| tree.insert(i));
        tree
    }

    #[test]
    fn the_documented_vectors_hold() {
        // docs/digest.md quotes these; another implementation checks against them.
        let u = leaf(&user(A, 3));
        assert_eq!(
            hex(&u.hash),
            hex(&Sha256::digest(format!("user\n{A}\n3\n")))
        );
        let g = leaf(&Item {
            kind: Kind::Group,
            id: B.into(),
            version: 2,
            members: vec![C.into(), A.into()],
        });
        assert_eq!(
            hex(&g.hash),
            hex(&Sha256::digest(format!("group\n{B}\n2\n{A}\n{C}\n")))
        );
        let empty = Tree::new().bucket("");
        assert_eq!(
            (empty.count, empty.digest.as_str()),
            (
                0,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }

    #[test]
    fn a_difference_shows_in_every_bucket_above_it_and_nowhere_else() {
        let ours = tree(&[user(A, 1), user(B, 1), user(C, 1)]);
        let theirs = tree(&[user(A, 1), user(B, 2), user(C, 1)]);
        assert_ne!(ours.bucket(""), theirs.bucket(""));
        assert_ne!(ours.bucket("0"), theirs.bucket("0"));
        assert_eq!(ours.bucket("f"), theirs.bucket("f"));
        let differing: Vec<String> = ours
            .children("0", 1)
            .into_iter()
            .zip(theirs.children("0", 1))
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.prefix)
            .collect();
        assert_eq!(differing, ["0a"]);
        assert_eq!(
            ours.children("0a", 1)
                .iter()
                .filter(|b| b.count > 0)
                .count(),
            2
        );
    }

    #[test]
    fn members_count_but_not_their_order() {
        let group = |members: &[&str]| Item {
            kind: Kind::Group,
            id: A.into(),
            version: 1,
            members: members.iter().map(|m| m.to_string()).collect(),
        };
        assert_eq!(leaf(&group(&[B, C])), leaf(&group(&[C, B])));
        assert_ne!(leaf(&group(&[B, C])).hash, leaf(&group(&[B])).hash);
    }

    #[test]
    fn ids_are_keyed_without_hyphens_or_case() {
        assert_eq!(key(&A.to_uppercase()), "0a3c2b1e000040008000000000000001");
        let t = tree(&[user(A, 1)]);
        assert_eq!(t.leaves("0A3C").count(), 1);
        assert_eq!(t.children("", 1).len(), 16);
        assert_eq!(t.children("", 2).len(), 256);
    }
}
