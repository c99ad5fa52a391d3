//! Side by side, on PostgreSQL and SQLite: the same changes sent as SCIM
//! requests (through the real gateway) to a SCIM directory and pulled from
//! Google Workspace (`roster_testkit::google`) give the same event kinds in
//! the same order, and the same users, groups and memberships — ids aside.
//! A consumer of `WatchChanges` cannot tell how a change arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use roster_connectors::credentials;
use roster_connectors::google::SCOPES;
use roster_connectors::reconcile;
use roster_connectors::runner::{SyncerOptions, sync_directory};
use roster_gateway::GatewayConfig;
use roster_proto::admin::DeprovisionPolicy as ProtoPolicy;
use roster_store::{
    ChangeFilter, DeprovisionPolicy, DirectoryId, NewDirectory, ProviderKind, SourceKind,
    SourceSettings, Store, UserFields,
};
use roster_testkit::app::{Backend, Env, Gateway, Scim, USER_SCHEMA, directory_with_token};
use roster_testkit::google::{self as fake_google, Shared, member};
use roster_testkit::on_both_backends;
use roster_webhook::SealingKey;
use serde_json::{Value, json};

fn key() -> SealingKey {
    SealingKey::from_bytes(&[9u8; 32]).expect("key")
}

/// A Google user with the fields both paths carry.
fn google_user(id: &str, email: &str, given: &str) -> Value {
    json!({"kind": "admin#directory#user", "id": id, "primaryEmail": email,
        "name": {"givenName": given, "familyName": "Test", "fullName": format!("{given} Test")},
        "suspended": false, "archived": false})
}

/// What an IdP would push for the same person.
fn scim_user(id: &str, email: &str, given: &str, active: bool) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": email, "externalId": id, "active": active,
        "displayName": format!("{given} Test"),
        "name": {"givenName": given, "familyName": "Test"},
        "emails": [{"value": email, "type": "work", "primary": true}]})
}

fn scim_group(id: &str, name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name, "externalId": id})
}

/// The two directories, and where each one's change log has been read to.
struct Pair {
    store: Arc<dyn Store>,
    scim: Scim,
    scim_dir: DirectoryId,
    pulled: DirectoryId,
    fake: Shared,
    heads: [i64; 2],
    /// SCIM ids by Google id.
    ids: BTreeMap<&'static str, String>,
}

impl Pair {
    /// The event kinds each directory logged since the last call.
    async fn since(&mut self) -> [Vec<&'static str>; 2] {
        let head = self.store.advance_stable_head(0).await.expect("head");
        let mut out = [Vec::new(), Vec::new()];
        for (i, dir) in [self.scim_dir, self.pulled].into_iter().enumerate() {
            let filter = ChangeFilter {
                directory_id: Some(dir),
                kinds: Vec::new(),
            };
            let changes = self
                .store
                .read_changes(&filter, self.heads[i], head, 10_000)
                .await
                .expect("changes");
            self.heads[i] = changes.last().map_or(self.heads[i], |c| c.revision);
            out[i] = changes.iter().map(|c| c.kind.as_str()).collect();
        }
        out
    }

    async fn sync(&self) {
        let options = SyncerOptions {
            owner: "parity".into(),
            ..SyncerOptions::default()
        };
        sync_directory(&self.store, &key(), &options, self.pulled)
            .await
            .expect("sync")
            .expect("lease");
    }

    /// Syncs the pulled directory and checks that both logged `expected`.
    async fn step(&mut self, what: &str, expected: &[&str]) {
        self.sync().await;
        let [pushed, pulled] = self.since().await;
        assert_eq!(pushed, expected, "{what}: SCIM");
        assert_eq!(pulled, expected, "{what}: pulled from Google");
    }

    async fn add_user(&mut self, id: &'static str, email: &str, given: &str) {
        let scim_id = self
            .scim
            .create("/Users", &scim_user(id, email, given, true))
            .await;
        self.ids.insert(id, scim_id);
        self.fake
            .lock()
            .unwrap()
            .users
            .push(google_user(id, email, given));
    }

    async fn add_group(&mut self, id: &'static str, name: &str) {
        let scim_id = self.scim.create("/Groups", &scim_group(id, name)).await;
        self.ids.insert(id, scim_id);
        let group = fake_google::group(id, name);
        self.fake.lock().unwrap().groups.push((group, Vec::new()));
    }

    /// Adds (`op` = `add`) or removes members of a group, as one PATCH.
    async fn members(&mut self, op: &str, group: &str, users: &[&str]) {
        let ops = users
            .iter()
            .map(|u| {
                let id = &self.ids[u];
                match op {
                    "add" => json!({"op": "add", "path": "members", "value": [{"value": id}]}),
                    _ => json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}),
                }
            })
            .collect();
        let path = format!("/Groups/{}", self.ids[group]);
        let reply = self.scim.patch_ops(&path, Value::Array(ops)).await;
        assert!(reply.status < 300, "{op} members: {}", reply.status);
        let mut fake = self.fake.lock().unwrap();
        let (_, members) = fake
            .groups
            .iter_mut()
            .find(|(g, _)| g["id"] == group)
            .expect("group");
        for user in users {
            match op {
                "add" => members.push(member(user, "USER")),
                _ => members.retain(|m| m["id"] != *user),
            }
        }
    }

    /// Users by external id, groups by external id with their members'
    /// external ids: the directory without Roster's own ids.
    async fn state(&self, dir: DirectoryId) -> (Vec<UserFields>, BTreeMap<String, Value>) {
        let stored = reconcile::load(self.store.as_ref(), dir)
            .await
            .expect("load");
        let ext_of: BTreeMap<uuid::Uuid, String> = stored
            .users
            .iter()
            .map(|(ext, u)| (u.id.0, ext.clone()))
            .collect();
        let users = stored
            .users
            .iter()
            .map(|(ext, u)| (ext.clone(), u.fields.clone()))
            .collect::<BTreeMap<_, _>>();
        let groups = stored
            .groups
            .iter()
            .map(|(ext, g)| {
                let members: BTreeSet<&String> = stored.members[&g.id.0]
                    .iter()
                    .filter_map(|(id, _)| ext_of.get(id))
                    .collect();
                (
                    ext.clone(),
                    json!({"name": g.display_name, "members": members}),
                )
            })
            .collect();
        (users.into_values().collect(), groups)
    }
}

async fn scim_and_google_give_the_same_events(backend: Backend) {
    let env = Env::on(backend, "parity").await;
    let gateway = Gateway::start(GatewayConfig {
        directory_endpoint: format!("http://{}", env.server.addr),
        ..GatewayConfig::default()
    })
    .await;
    let scim = directory_with_token(
        env.server.channel().await,
        &gateway.root,
        ProtoPolicy::Delete,
    )
    .await;
    let scim_dir: DirectoryId = scim.directory_id.parse().expect("directory id");
    let fake = fake_google::start(SCOPES).await;
    let base = fake.lock().unwrap().base.clone();
    let store = env.store.clone();
    let pulled = store
        .create_directory(NewDirectory {
            name: "workspace".into(),
            organization: "acme".into(),
            provider: ProviderKind::Google,
            deprovision_policy: DeprovisionPolicy::Delete,
            attribute_mappings: Vec::new(),
        })
        .await
        .expect("directory")
        .id;
    let sealed = credentials::seal(&key(), pulled, &fake_google::key_json(&base)).unwrap();
    store
        .put_source(
            pulled,
            SourceSettings {
                kind: SourceKind::Google,
                settings: fake_google::settings(&base),
                sealed_credentials: Some(sealed),
                interval_secs: 1800,
                // The scenario removes and disables on purpose.
                mass_delete_percent: 100,
            },
        )
        .await
        .expect("source");
    let mut pair = Pair {
        store,
        scim,
        scim_dir,
        pulled,
        fake,
        heads: [0, 0],
        ids: BTreeMap::new(),
    };
    pair.since().await;

    // Added: users in userName order, groups by name, then memberships —
    // the order the sync writes in, which is also an IdP's.
    pair.add_user("101", "alice@example.com", "Alice").await;
    pair.add_user("102", "bob@example.com", "Bob").await;
    pair.add_user("103", "carol@example.com", "Carol").await;
    pair.add_group("g1", "eng").await;
    pair.add_group("g2", "ops").await;
    pair.members("add", "g1", &["101", "102"]).await;
    pair.members("add", "g2", &["103"]).await;
    let mut added = vec!["user.created"; 3];
    added.extend(["group.created"; 2]);
    added.extend(["member.added"; 3]);
    pair.step("added", &added).await;

    // Renamed: bob becomes robert (same id).
    let bob = &pair.ids["102"];
    pair.scim
        .put(
            &format!("/Users/{bob}"),
            &scim_user("102", "robert@example.com", "Robert", true),
        )
        .await
        .expect(200, "rename");
    pair.fake.lock().unwrap().users[1] = google_user("102", "robert@example.com", "Robert");
    pair.step("renamed", &["user.updated"]).await;

    // Moved: alice leaves eng for ops.
    pair.members("remove", "g1", &["101"]).await;
    pair.members("add", "g2", &["101"]).await;
    pair.step("moved", &["member.removed", "member.added"])
        .await;

    // Disabled: carol suspended.
    let carol = &pair.ids["103"];
    pair.scim
        .patch_ops(
            &format!("/Users/{carol}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await
        .expect(200, "deactivate");
    pair.fake.lock().unwrap().users[2]["suspended"] = json!(true);
    pair.step("disabled", &["user.deactivated"]).await;

    // Removed: robert leaves his group and is deleted.
    pair.members("remove", "g1", &["102"]).await;
    let bob = pair.ids["102"].clone();
    pair.scim
        .delete(&format!("/Users/{bob}"))
        .await
        .expect(204, "delete");
    pair.fake.lock().unwrap().users.remove(1);
    pair.step("removed", &["member.removed", "user.deleted"])
        .await;

    let (pushed, pulled) = (
        pair.state(pair.scim_dir).await,
        pair.state(pair.pulled).await,
    );
    assert_eq!(pushed.0.len(), 2, "{pushed:?}");
    assert_eq!(pushed, pulled, "the same users, groups and members");
}

on_both_backends!(scim_and_google_give_the_same_events);
