//! Shaping replies: page descriptions, and groups whose members do not fit
//! one message.

use prost::Message;
use roster_proto::directory as pd;
use roster_store::Page;

use crate::cursor;

/// Most bytes of groups a unary reply carries (tonic decodes at most 4 MiB
/// per message by default).
const MAX_INLINE_BYTES: usize = 3 * 1024 * 1024;

/// What a list reply says about its page besides the items.
pub(super) struct PageInfo {
    pub(super) total_results: i64,
    pub(super) next_page_token: String,
    pub(super) revision: i64,
    pub(super) cursor: String,
}

pub(super) fn page_info<T>(page: &Page<T>) -> PageInfo {
    PageInfo {
        total_results: page.total,
        next_page_token: page.next_page_token.clone().unwrap_or_default(),
        // Everything up to `after` is in the page; the cursor also names
        // the few later revisions the page already reflects.
        revision: page.cursor.as_ref().map_or(0, |c| c.after),
        cursor: page.cursor.as_ref().map(cursor::encode).unwrap_or_default(),
    }
}

/// A group reply whose requested members are not inline: a group with
/// members says so (they are read with ReadGroup).
pub(super) fn omitting_members(mut group: pd::Group) -> pd::Group {
    group.members.clear();
    group.members_omitted = group.member_count > 0;
    group
}

/// Keeps a unary reply under tonic's default 4 MiB decode limit, whatever
/// the members' display names weigh: omits the members of the largest
/// groups until the groups encode in [`MAX_INLINE_BYTES`].
pub(super) fn fit_inline(groups: &mut [pd::Group]) {
    let mut size: usize = groups.iter().map(Message::encoded_len).sum();
    while size > MAX_INLINE_BYTES {
        let Some(largest) = groups
            .iter_mut()
            .filter(|g| !g.members.is_empty())
            .max_by_key(|g| g.members.len())
        else {
            return;
        };
        let before = largest.encoded_len();
        *largest = omitting_members(std::mem::take(largest));
        size = size - before + largest.encoded_len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unary_replies_omit_members_that_do_not_fit() {
        let group = |members: usize, display: usize| pd::Group {
            id: format!("g{members}"),
            member_count: members as i64,
            members: (0..members)
                .map(|i| pd::Member {
                    id: uuid::Uuid::from_u128(i as u128).to_string(),
                    r#type: pd::MemberType::User as i32,
                    display: "x".repeat(display),
                })
                .collect(),
            ..Default::default()
        };
        // Long display names: 5,000 members of ~1 KiB do not fit 3 MiB.
        let mut page = vec![group(3, 10), group(5_000, 1_000), group(0, 0)];
        fit_inline(&mut page);
        assert_eq!(page[1].members.len(), 0);
        assert!(page[1].members_omitted);
        assert_eq!(page[0].members.len(), 3);
        assert!(!page[0].members_omitted && !page[2].members_omitted);
        let size: usize = page.iter().map(Message::encoded_len).sum();
        assert!(size <= MAX_INLINE_BYTES);
    }
}
