//! The store conformance suite: written once against `Arc<dyn Store>`,
//! stamped into one `#[tokio::test]` per case for each backend by
//! [`conformance_suite!`]. A backend's test file provides
//! `async fn fixture() -> Fixture` (a fresh, migrated, empty store) and
//! calls `conformance::conformance_suite!(fixture);`.

#![allow(
    dead_code,
    reason = "each backend's test binary uses the suite through the macro"
)]

pub mod batches;
pub mod changes;
pub mod contention;
pub mod data_rules;
pub mod directories;
pub mod groups;
pub mod lists;
pub mod members;
pub mod oracle;
pub mod portal;
pub mod sources;
pub mod users;
pub mod webhooks;

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use roster_store::*;
use serde_json::json;

/// A fresh store and whatever must live as long as it (a temp dir, ...).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub guard: Box<dyn Any + Send + Sync>,
}

/// Stamps one test per conformance case, each on a fresh store from `$make`.
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance::conformance_suite!(@in batches $make;
            a_group_batch_gives_each_edit_its_own_result_version_and_events,
            a_batched_add_naming_an_unknown_member_adds_none_of_its_members,
            concurrent_group_batches_lose_nothing_and_keep_versions_in_order,
            a_user_batch_creates_each_user_alone_and_fails_only_the_taken_ones,
        );
        $crate::conformance::conformance_suite!(@in contention $make;
            membership_edits_race_user_deletes_without_conflicts,
            nested_group_deletes_race_user_deletes_without_conflicts,
            open_snapshots_are_capped_and_spare_reads_and_writes,
        );
        $crate::conformance::conformance_suite!(@in directories $make;
            directories_crud_and_events,
            token_limit_revoke_and_lookup,
            token_last_use_is_recorded_to_the_minute,
            service_credentials_are_scoped_listed_and_revoked,
            directory_delete_removes_everything,
            directories_are_created_updated_listed_and_deleted_with_events,
        );
        $crate::conformance::conformance_suite!(@in users $make;
            user_crud_versions_and_events,
            no_op_update_changes_nothing,
            user_name_is_unique_case_insensitively,
            version_mismatch_is_rejected,
            rejected_patch_leaves_state_unchanged,
            users_round_trip_and_updates_bump_versions_with_field_changes,
            resources_of_other_directories_are_not_found,
        );
        $crate::conformance::conformance_suite!(@in groups $make;
            group_display_name_is_unique_case_insensitively,
            group_patch_applies_ops_in_one_version,
            group_members_read_in_pages_from_one_snapshot,
            group_delete_removes_its_memberships,
            group_patch_and_replace_touch_only_changed_members,
        );
        $crate::conformance::conformance_suite!(@in members $make;
            membership_changes_are_idempotent_and_counted,
            unknown_members_are_invalid,
            concurrent_member_changes_lose_nothing,
            user_delete_removes_memberships_with_events,
            new_groups_dedupe_members_and_members_carry_display_names,
            deleting_users_and_groups_removes_their_memberships_with_events,
            list_members_is_keyset_paginated_by_member_id,
        );
        $crate::conformance::conformance_suite!(@in lists $make;
            list_offset_pagination_and_totals,
            list_keyset_pagination_survives_inserts,
            list_sorting,
            list_cursor_is_exact,
            filters_agree_with_the_evaluator,
            invalid_filters_are_typed_errors,
            lists_page_by_offset_and_keyset_in_creation_order,
        );
        $crate::conformance::conformance_suite!(@in changes $make;
            read_changes_filters,
            count_changes_agrees_with_read_changes,
            the_log_epoch_names_its_history,
            snapshot_streams_current_state,
            snapshot_streams_a_consistent_state_with_its_cursor,
            snapshot_pages_through_many_rows,
        );
        $crate::conformance::conformance_suite!(@in portal $make;
            activity_is_recorded_listed_filtered_paged_and_pruned,
            portal_links_open_once_and_sessions_are_revocable,
            committed_writes_report_the_events_they_produced,
        );
        $crate::conformance::conformance_suite!(@in data_rules $make;
            user_name_is_unique_under_unicode_normalization_and_case,
            datetime_filters_compare_at_the_stored_precision,
            entra_matching_filters_find_the_user,
            nul_is_rejected_before_the_database,
            oversized_filters_are_invalid_filters,
            sorted_lists_page_by_keyset_in_both_directions,
            removing_active_by_patch_is_stored_as_inactive,
            filters_are_evaluated_in_sql,
        );
        $crate::conformance::conformance_suite!(@in webhooks $make;
            webhook_endpoints_are_created_filtered_updated_and_deleted,
            one_owner_holds_a_webhook_lease_until_it_expires_or_is_released,
            webhook_progress_needs_the_lease_and_the_current_generation,
            webhook_attempts_keep_the_newest_per_endpoint,
            batched_webhook_progress_is_guarded_per_endpoint,
        );
        $crate::conformance::conformance_suite!(@in sources $make;
            directory_sources_are_put_read_and_scheduled,
            one_replica_holds_a_sync_lease_and_only_it_records,
        );
    };
    (@in $module:ident $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $make().await;
                $crate::conformance::$module::$case(fixture.store.clone()).await;
                drop(fixture);
            }
        )*
    };
}
pub(crate) use conformance_suite;

/// A directory for tests.
pub async fn directory(store: &dyn Store, name: &str) -> Directory {
    store
        .create_directory(NewDirectory {
            name: name.into(),
            organization: format!("org-{name}"),
            provider: ProviderKind::Okta,
            ..Default::default()
        })
        .await
        .expect("create directory")
}

/// A user write whose normalized fields match its SCIM JSON.
pub fn user(name: &str) -> UserWrite {
    UserWrite {
        fields: UserFields {
            user_name: name.into(),
            active: true,
            emails: vec![Email {
                value: format!("{name}@example.com"),
                r#type: "work".into(),
                primary: true,
            }],
            ..Default::default()
        },
        raw: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
            "active": true,
            "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
        }),
    }
}

pub fn group(name: &str) -> GroupWrite {
    GroupWrite {
        display_name: name.into(),
        external_id: None,
        raw: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
        }),
        members: None,
    }
}

/// A group write with `members`.
pub fn group_with(name: &str, members: Vec<MemberRef>) -> GroupWrite {
    GroupWrite {
        members: Some(members),
        ..group(name)
    }
}

pub fn member(user: &User) -> MemberRef {
    MemberRef {
        id: user.id.0,
        kind: MemberKind::User,
    }
}

/// Adds `members` to `group`, which must succeed: (added, the group's new
/// version).
pub async fn add(
    store: &dyn Store,
    dir: DirectoryId,
    group: GroupId,
    members: &[MemberRef],
) -> (i64, i64) {
    store
        .add_members(dir, group, members)
        .await
        .expect("add members")
}

/// The groups `user` is a member of, as `get_user` reads them.
pub async fn group_ids(store: &dyn Store, dir: DirectoryId, user: UserId) -> Vec<GroupId> {
    store.get_user(dir, user).await.expect("get user").group_ids
}

/// A user `u` and a group `g` of `dir`, `u` added to `g`.
pub async fn user_in_group(store: &dyn Store, dir: DirectoryId) -> (User, Group) {
    let u = store
        .create_user(dir, user("u"))
        .await
        .expect("create user");
    let g = store
        .create_group(dir, group("g"))
        .await
        .expect("create group");
    add(store, dir, g.id, &[member(&u)]).await;
    (u, g)
}

/// The stored member count of `group`.
pub async fn member_count(store: &dyn Store, dir: DirectoryId, group: GroupId) -> i64 {
    let got = store.get_group(dir, group, false).await.expect("get group");
    got.member_count
}

/// The names of the fields `change` lists as changed.
pub fn changed(change: &ChangeRecord) -> BTreeSet<&str> {
    change
        .changed_fields
        .iter()
        .map(|f| f.field.as_str())
        .collect()
}

/// Fails unless `result` is `NotFound`.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(result: StoreResult<T>) {
    assert!(
        matches!(result, Err(StoreError::NotFound(_))),
        "expected NotFound: {result:?}"
    );
}

/// `count` users of `dir` named `{prefix}0`, `{prefix}1`, ..., created one
/// after the other.
pub async fn users(store: &dyn Store, dir: DirectoryId, prefix: &str, count: usize) -> Vec<User> {
    let mut users = Vec::with_capacity(count);
    for i in 0..count {
        let write = user(&format!("{prefix}{i}"));
        users.push(store.create_user(dir, write).await.expect("create user"));
    }
    users
}

/// A group as a member of another.
pub fn member_group(group: &Group) -> MemberRef {
    MemberRef {
        id: group.id.0,
        kind: MemberKind::Group,
    }
}

/// The changes after revision `after`, up to the stable head.
pub async fn changes_after(store: &dyn Store, after: i64) -> Vec<ChangeRecord> {
    let head = store.advance_stable_head(0).await.expect("advance");
    store
        .read_changes(&ChangeFilter::default(), after, head, 1_000_000)
        .await
        .expect("read changes")
}

/// Every change of the log up to the stable head, optionally of one directory.
pub async fn all_changes(store: &dyn Store, dir: Option<DirectoryId>) -> Vec<ChangeRecord> {
    let head = store.advance_stable_head(0).await.expect("advance");
    let filter = ChangeFilter {
        directory_id: dir,
        kinds: Vec::new(),
    };
    store
        .read_changes(&filter, 0, head, 1_000_000)
        .await
        .expect("read changes")
}

/// The kinds of `changes`, in order.
pub fn kinds(changes: &[ChangeRecord]) -> Vec<&'static str> {
    changes.iter().map(|c| c.kind.as_str()).collect()
}

/// Parses a filter with the SCIM crate's parser.
pub fn filter(text: &str) -> roster_scim::filter::Filter {
    roster_scim::filter::parse(text).unwrap_or_else(|e| panic!("bad test filter {text:?}: {e:?}"))
}

pub fn query(filter_text: Option<&str>) -> ListQuery {
    ListQuery {
        filter: filter_text.map(filter),
        sort: None,
        start_index: 1,
        count: 1000,
        page_token: None,
        include_members: false,
        omit_cursor: false,
    }
}

/// The first page of `count` items, in creation order.
pub fn page(count: i64) -> ListQuery {
    ListQuery {
        count,
        ..query(None)
    }
}
