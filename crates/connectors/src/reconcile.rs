//! The diff between a source's snapshot and the stored directory, the
//! mass-deletion safeguard, and the writes — through the same `Store`
//! methods the SCIM gateway calls, so events, versions and order are those
//! of a SCIM directory.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::StreamExt;
use roster_store::{
    DeprovisionPolicy, DirectoryId, Group, GroupOp, GroupWrite, ListQuery, MemberKind, MemberRef,
    Store, StoreError, User, UserFields, UserWrite,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::SyncError;
use crate::snapshot::{SourceGroup, SourceMember, SourceSnapshot, SourceUser};

/// Rows read or created per store call: bounds both a transaction and the
/// memory of one page.
pub const BATCH: usize = 500;

/// The directory as stored, keyed by external id (the source's stable id).
#[derive(Debug, Default)]
pub struct Stored {
    pub users: HashMap<String, User>,
    pub groups: HashMap<String, Group>,
    /// Each stored group's members.
    pub members: HashMap<Uuid, HashSet<(Uuid, MemberKind)>>,
}

/// Reads the stored users, groups and memberships of `dir` page by page.
pub async fn load(store: &dyn Store, dir: DirectoryId) -> Result<Stored, StoreError> {
    let mut stored = Stored::default();
    let mut query = ListQuery {
        count: BATCH as i64,
        omit_cursor: true,
        ..ListQuery::default()
    };
    loop {
        let page = store.list_users(dir, &query).await?;
        for user in page.items {
            if let Some(ext) = user.fields.external_id.clone() {
                stored.users.insert(ext, user);
            }
        }
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => break,
        }
    }
    query.page_token = None;
    loop {
        let page = store.list_groups(dir, &query).await?;
        for group in page.items {
            let (_, mut pages) = store.read_group(dir, group.id, BATCH as i64).await?;
            let mut members = HashSet::new();
            while let Some(page) = pages.next().await {
                members.extend(page?.into_iter().map(|m| (m.id, m.kind)));
            }
            stored.members.insert(group.id.0, members);
            if let Some(ext) = group.external_id.clone() {
                stored.groups.insert(ext, group);
            }
        }
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => break,
        }
    }
    Ok(stored)
}

/// The writes a sync will make (memberships are diffed while applying,
/// once every user and group has its stored id).
#[derive(Debug, Default)]
pub struct Plan {
    pub create_users: Vec<SourceUser>,
    /// Changed in the source (renamed, disabled, reactivated…).
    pub update_users: Vec<(User, UserFields)>,
    /// Gone from the source: deleted or deactivated per the policy.
    pub remove_users: Vec<User>,
    pub create_groups: Vec<SourceGroup>,
    pub rename_groups: Vec<(Group, String)>,
    pub delete_groups: Vec<Group>,
}

/// Compares the snapshot with the stored state. An incomplete snapshot
/// (an incremental read) holds only what changed: nothing is removed for
/// being absent from it.
pub fn plan(
    stored: &Stored,
    snapshot: &SourceSnapshot,
    complete: bool,
    policy: DeprovisionPolicy,
) -> Plan {
    let mut plan = Plan::default();
    let mut seen = BTreeSet::new();
    for user in &snapshot.users {
        seen.insert(user.external_id.as_str());
        match stored.users.get(&user.external_id) {
            None => plan.create_users.push(user.clone()),
            Some(old) if old.fields != user.fields => {
                plan.update_users.push((old.clone(), user.fields.clone()))
            }
            Some(_) => {}
        }
    }
    for (ext, user) in stored.users.iter().filter(|_| complete) {
        let gone = !seen.contains(ext.as_str());
        let already_done = policy == DeprovisionPolicy::Deactivate && !user.fields.active;
        if gone && !already_done {
            plan.remove_users.push(user.clone());
        }
    }
    let mut seen_groups = BTreeSet::new();
    for group in &snapshot.groups {
        seen_groups.insert(group.external_id.as_str());
        match stored.groups.get(&group.external_id) {
            None => plan.create_groups.push(group.clone()),
            Some(old) if old.display_name != group.display_name => plan
                .rename_groups
                .push((old.clone(), group.display_name.clone())),
            Some(_) => {}
        }
    }
    plan.delete_groups = stored
        .groups
        .iter()
        .filter(|(ext, _)| complete && !seen_groups.contains(ext.as_str()))
        .map(|(_, g)| g.clone())
        .collect();
    // Stable write order (the change log's order follows it), whatever
    // order the source listed its entries in.
    plan.create_users
        .sort_by(|a, b| a.fields.user_name.cmp(&b.fields.user_name));
    plan.update_users
        .sort_by(|a, b| a.1.user_name.cmp(&b.1.user_name));
    plan.create_groups
        .sort_by(|a, b| a.display_name.cmp(&b.display_name));
    plan.remove_users
        .sort_by(|a, b| a.fields.user_name.cmp(&b.fields.user_name));
    plan.delete_groups
        .sort_by(|a, b| a.display_name.cmp(&b.display_name));
    plan
}

/// The users this plan removes or deactivates.
pub fn removals(plan: &Plan) -> usize {
    let disabled = plan
        .update_users
        .iter()
        .filter(|(old, new)| old.fields.active && !new.active)
        .count();
    plan.remove_users.len() + disabled
}

/// The mass-deletion safeguard: `Err(reason)` when the plan removes or
/// deactivates more than `percent` % of the directory's active users.
pub fn safeguard(stored: &Stored, plan: &Plan, percent: i32) -> Result<(), String> {
    let active = stored.users.values().filter(|u| u.fields.active).count();
    let removing = removals(plan);
    if active == 0 || removing * 100 <= active * usize::try_from(percent.max(0)).unwrap_or(0) {
        return Ok(());
    }
    Err(format!(
        "this sync would remove or deactivate {removing} of {active} active users \
         (more than {percent} %); nothing was written. Check the source's scope \
         (base DN, filter, scopes), then confirm the sync to apply it"
    ))
}

/// What a run wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub created: i64,
    pub updated: i64,
    pub removed: i64,
}

/// Writes the plan: users first (so groups can reference them), then
/// groups, then memberships, then the removals.
pub async fn apply(
    store: &dyn Store,
    dir: DirectoryId,
    policy: DeprovisionPolicy,
    stored: &Stored,
    snapshot: &SourceSnapshot,
    plan: Plan,
) -> Result<Counts, SyncError> {
    let mut counts = Counts::default();
    let mut user_ids: HashMap<&str, Uuid> = stored
        .users
        .iter()
        .map(|(ext, u)| (ext.as_str(), u.id.0))
        .collect();
    for chunk in plan.create_users.chunks(BATCH) {
        let writes = chunk.iter().map(|u| user_write(&u.fields)).collect();
        for (source, created) in chunk.iter().zip(store.create_users(dir, writes).await) {
            user_ids.insert(source.external_id.as_str(), created?.id.0);
            counts.created += 1;
        }
        tracing::info!(directory = %dir, created = counts.created, "sync progress");
    }
    for (old, fields) in &plan.update_users {
        store
            .replace_user(dir, old.id, Some(old.version), user_write(fields))
            .await?;
        counts.updated += 1;
    }
    let group_ids = write_groups(store, dir, stored, &plan, &mut counts).await?;
    sync_members(store, dir, stored, snapshot, &user_ids, &group_ids).await?;
    for group in &plan.delete_groups {
        store.delete_group(dir, group.id, None).await?;
        counts.removed += 1;
    }
    for user in &plan.remove_users {
        remove_user(store, dir, policy, user).await?;
        counts.removed += 1;
    }
    Ok(counts)
}

async fn write_groups<'a>(
    store: &dyn Store,
    dir: DirectoryId,
    stored: &'a Stored,
    plan: &'a Plan,
    counts: &mut Counts,
) -> Result<HashMap<&'a str, Uuid>, SyncError> {
    let mut ids: HashMap<&str, Uuid> = stored
        .groups
        .iter()
        .map(|(ext, g)| (ext.as_str(), g.id.0))
        .collect();
    for group in &plan.create_groups {
        let write = GroupWrite {
            display_name: group.display_name.clone(),
            external_id: Some(group.external_id.clone()),
            raw: group_json(&group.display_name, &group.external_id),
            members: None,
        };
        let created = store.create_group(dir, write).await?;
        ids.insert(group.external_id.as_str(), created.id.0);
        counts.created += 1;
    }
    for (old, name) in &plan.rename_groups {
        let ext = old.external_id.clone().unwrap_or_default();
        let (name, raw) = (name.clone(), group_json(name, &ext));
        let op = move |_: &Group| {
            Ok(vec![GroupOp::SetAttributes {
                display_name: name.clone(),
                external_id: Some(ext.clone()),
                raw: raw.clone(),
            }])
        };
        store
            .update_group(dir, old.id, Some(old.version), Box::new(op))
            .await?;
        counts.updated += 1;
    }
    Ok(ids)
}

/// Per group of the snapshot: removes the members the source no longer
/// lists, then adds the new ones (one call each, as an IdP's PATCH would).
async fn sync_members(
    store: &dyn Store,
    dir: DirectoryId,
    stored: &Stored,
    snapshot: &SourceSnapshot,
    user_ids: &HashMap<&str, Uuid>,
    group_ids: &HashMap<&str, Uuid>,
) -> Result<(), SyncError> {
    let empty = HashSet::new();
    let as_user = |ext: &String| user_ids.get(ext.as_str()).map(|&id| (id, MemberKind::User));
    let as_group = |ext: &String| {
        group_ids
            .get(ext.as_str())
            .map(|&id| (id, MemberKind::Group))
    };
    for group in &snapshot.groups {
        let Some(&gid) = group_ids.get(group.external_id.as_str()) else {
            continue;
        };
        let wanted: HashSet<(Uuid, MemberKind)> = group
            .members
            .iter()
            .filter_map(|m| match m {
                SourceMember::User(ext) => as_user(ext),
                SourceMember::Group(ext) => as_group(ext),
                SourceMember::Any(ext) => as_user(ext).or_else(|| as_group(ext)),
            })
            .collect();
        let have = stored.members.get(&gid).unwrap_or(&empty);
        // Sorted: the order of the member events must not depend on hashing.
        let mut gone: Vec<Uuid> = have.difference(&wanted).map(|(id, _)| *id).collect();
        gone.sort_unstable();
        let mut new: Vec<MemberRef> = wanted
            .difference(have)
            .map(|&(id, kind)| MemberRef { id, kind })
            .collect();
        new.sort_unstable_by_key(|m| m.id);
        for chunk in gone.chunks(BATCH) {
            store
                .remove_members(dir, roster_store::GroupId(gid), chunk)
                .await?;
        }
        for chunk in new.chunks(BATCH) {
            store
                .add_members(dir, roster_store::GroupId(gid), chunk)
                .await?;
        }
    }
    Ok(())
}

async fn remove_user(
    store: &dyn Store,
    dir: DirectoryId,
    policy: DeprovisionPolicy,
    user: &User,
) -> Result<(), SyncError> {
    match policy {
        DeprovisionPolicy::Delete => store.delete_user(dir, user.id, Some(user.version)).await?,
        DeprovisionPolicy::Deactivate => {
            let fields = UserFields {
                active: false,
                ..user.fields.clone()
            };
            store
                .replace_user(dir, user.id, Some(user.version), user_write(&fields))
                .await?;
        }
    }
    Ok(())
}

/// The stored form of a pulled user: its fields and the SCIM JSON an IdP
/// would have sent for them (the `raw` every event payload is built from).
pub fn user_write(fields: &UserFields) -> UserWrite {
    UserWrite {
        fields: fields.clone(),
        raw: user_json(fields),
    }
}

fn user_json(f: &UserFields) -> Value {
    let mut raw = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": f.user_name,
        "active": f.active,
    });
    let set = |raw: &mut Value, key: &str, value: &Option<String>| {
        if let Some(v) = value {
            raw[key] = json!(v);
        }
    };
    set(&mut raw, "externalId", &f.external_id);
    set(&mut raw, "displayName", &f.display_name);
    set(&mut raw, "title", &f.title);
    if f.given_name.is_some() || f.family_name.is_some() {
        raw["name"] = json!({"givenName": f.given_name, "familyName": f.family_name});
    }
    if !f.emails.is_empty() {
        raw["emails"] = json!(
            f.emails
                .iter()
                .map(|e| json!({"value": e.value, "type": e.r#type, "primary": e.primary}))
                .collect::<Vec<_>>()
        );
    }
    raw
}

fn group_json(display_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": display_name,
        "externalId": external_id,
    })
}
