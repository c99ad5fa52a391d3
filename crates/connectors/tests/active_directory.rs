//! Active Directory semantics against a real Samba AD domain controller
//! provisioned by the test (`samba-tool domain provision`, ~4 s):
//! `objectGUID` ids in their usual text form, the `userAccountControl`
//! disabled bit, group `member` DNs, removals by diff, and incremental
//! reads by `uSNChanged` (same events as full reads; only the changed
//! entries read; a full read on another DC or invocationID). Samba listens
//! on the fixed port 389, so this file holds one test only.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_connectors::runner::{SyncerOptions, sync_directory};
use roster_store::*;
use roster_webhook::SealingKey;
use serde_json::json;

mod common;

const ADMIN_PW: &str = "Passw0rd!Roster";
const BASE: &str = "CN=Users,DC=corp,DC=example";
const NO_SAMBA: &str = "samba-tool not found: install the Debian packages `samba` and \
     `samba-dsdb-modules` (.ci/run does)";

struct Samba {
    dir: PathBuf,
    child: Child,
}

impl Samba {
    fn start() -> Samba {
        let dir = std::env::temp_dir().join(format!("roster-samba-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("samba dir");
        let provisioned = Command::new("samba-tool")
            .args(["domain", "provision", "--server-role=dc", "--use-rfc2307"])
            .args([
                "--dns-backend=NONE",
                "--realm=CORP.EXAMPLE",
                "--domain=CORP",
            ])
            .arg(format!("--adminpass={ADMIN_PW}"))
            .arg(format!("--targetdir={}", dir.display()))
            .args([
                "--option=interfaces = lo",
                "--option=bind interfaces only = yes",
            ])
            .arg("--option=server services = ldap")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect(NO_SAMBA);
        assert!(provisioned.success(), "samba-tool domain provision failed");
        // Not persisted by --option: allows a simple bind over plain LDAP.
        let conf = dir.join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).expect("smb.conf");
        let text = text.replacen(
            "[global]",
            "[global]\n\tldap server require strong auth = no",
            1,
        );
        std::fs::write(&conf, text).expect("smb.conf");
        let child = Command::new("samba")
            .args(["-i", "-s"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(NO_SAMBA);
        let samba = Samba { dir, child };
        samba.wait_until_bindable();
        samba
    }

    fn wait_until_bindable(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let bound = Command::new("ldapsearch")
                .args([
                    "-x",
                    "-H",
                    "ldap://127.0.0.1:389",
                    "-D",
                    "Administrator@corp.example",
                ])
                .args(["-w", ADMIN_PW, "-b", "", "-s", "base"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if bound {
                return;
            }
            assert!(Instant::now() < deadline, "samba never accepted a bind");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `samba-tool <args> -H sam.ldb -s smb.conf` (works while samba runs).
    fn tool(&self, args: &[&str]) -> String {
        let out = Command::new("samba-tool")
            .args(args)
            .arg("-H")
            .arg(self.dir.join("private/sam.ldb"))
            .arg("-s")
            .arg(self.dir.join("etc/smb.conf"))
            .output()
            .expect(NO_SAMBA);
        assert!(
            out.status.success(),
            "samba-tool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn guid_of(&self, user: &str) -> String {
        let shown = self.tool(&["user", "show", user, "--attributes=objectGUID"]);
        shown
            .lines()
            .find_map(|l| l.strip_prefix("objectGUID: "))
            .expect("objectGUID")
            .trim()
            .to_string()
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn changes(store: &dyn Store, dir: DirectoryId, after: i64) -> Vec<ChangeRecord> {
    let head = store.advance_stable_head(0).await.expect("advance");
    let filter = ChangeFilter {
        directory_id: Some(dir),
        kinds: Vec::new(),
    };
    store
        .read_changes(&filter, after, head, 1_000_000)
        .await
        .expect("changes")
}

/// What a consumer sees of an event, without the ids that differ between
/// two directories: its kind and the changed fields.
fn seen(changes: &[ChangeRecord]) -> Vec<(&'static str, Vec<(String, String)>)> {
    changes
        .iter()
        .map(|c| {
            let fields = c
                .changed_fields
                .iter()
                .map(|f| (f.field.clone(), format!("{} → {}", f.previous, f.current)))
                .collect();
            (c.kind.as_str(), fields)
        })
        .collect()
}

fn kinds(changes: &[ChangeRecord]) -> Vec<&'static str> {
    changes.iter().map(|c| c.kind.as_str()).collect()
}

/// A directory synced from the Samba DC, with its last seen revision.
struct Synced {
    dir: DirectoryId,
    head: i64,
}

struct Env {
    store: Arc<dyn Store>,
    key: SealingKey,
    options: SyncerOptions,
}

impl Env {
    async fn directory(&self, name: &str, full_sync_every: u32) -> Synced {
        let settings = json!({
            "url": "ldap://127.0.0.1:389",
            "bind_dn": "Administrator@corp.example",
            "users_base_dn": BASE,
            "groups_base_dn": BASE,
            "groups_filter": "(&(objectClass=group)(cn=eng))",
            "full_sync_every": full_sync_every,
        });
        let dir =
            common::ad_directory(self.store.as_ref(), &self.key, name, settings, ADMIN_PW).await;
        Synced { dir, head: 0 }
    }

    /// One sync of `d`: its report and the events it wrote.
    async fn sync(&self, d: &mut Synced) -> (SyncStatus, Vec<ChangeRecord>) {
        let status = sync_directory(&self.store, &self.key, &self.options, d.dir)
            .await
            .expect("sync")
            .expect("lease");
        let events = changes(self.store.as_ref(), d.dir, d.head).await;
        if let Some(last) = events.last() {
            d.head = last.revision;
        }
        (status, events)
    }

    /// Replaces the stored AD watermark's `key` with `value`, as another
    /// replica recording a run would.
    async fn tamper_cursor(&self, d: &Synced, key: &str, value: serde_json::Value) {
        let owner = "tamper";
        let ttl = Duration::from_secs(30);
        let row = self
            .store
            .acquire_sync_lease(d.dir, owner, ttl)
            .await
            .expect("lease")
            .expect("free lease");
        let mut status = row.status.clone();
        status.cursor.as_mut().expect("a cursor")[key] = value;
        let record = SyncRecord {
            status,
            next_run_at: chrono::Utc::now(),
            used_confirmation: false,
        };
        assert!(self.store.record_sync(d.dir, owner, &record).await.unwrap());
        self.store.release_sync_lease(d.dir, owner).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_on_samba() {
    let samba = Samba::start();
    for (user, given) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
        samba.tool(&[
            "user",
            "create",
            user,
            "Passw0rd!User1",
            &format!("--given-name={given}"),
            "--surname=Test",
        ]);
    }
    samba.tool(&["group", "add", "eng"]);
    samba.tool(&["group", "addmembers", "eng", "alice,bob"]);

    let scratch = common::sqlite("roster-ad").await;
    let env = Env {
        store: scratch.store.clone(),
        key: SealingKey::from_bytes(&[3u8; 32]).expect("key"),
        options: SyncerOptions {
            owner: "replica-a".into(),
            ..SyncerOptions::default()
        },
    };
    // The same domain twice: `full` reads everything every time, `incr`
    // reads by uSNChanged with a full read every 4th sync. Both must give
    // consumers the same events.
    let mut full = env.directory("corp ad (full)", 1).await;
    let mut incr = env.directory("corp ad (incremental)", 4).await;

    let (status, _) = env.sync(&mut full).await;
    assert!(!status.incremental);
    let (first, _) = env.sync(&mut incr).await;
    assert!(!first.incremental, "no watermark yet: a full read");
    assert_eq!(first.read, status.read);
    let users = env
        .store
        .list_users(
            incr.dir,
            &ListQuery {
                count: 100,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap()
        .items;
    let alice = users
        .iter()
        .find(|u| u.fields.user_name == "alice@corp.example")
        .expect("alice, by userPrincipalName");
    assert_eq!(
        alice.fields.external_id.as_deref(),
        Some(samba.guid_of("alice").as_str())
    );
    assert!(alice.fields.active);

    samba.tool(&["user", "disable", "carol"]);
    samba.tool(&["group", "addmembers", "eng", "carol"]);
    let (_, by_full) = env.sync(&mut full).await;
    let (status, by_incr) = env.sync(&mut incr).await;
    assert_eq!(
        kinds(&by_full),
        ["user.deactivated", "member.added"],
        "userAccountControl 514"
    );
    assert_eq!(seen(&by_incr), seen(&by_full));
    assert!(status.incremental);
    assert_eq!(status.read, 2, "only carol and eng changed");

    samba.tool(&["user", "create", "dave", "Passw0rd!User1", "--surname=Test"]);
    samba.tool(&["group", "addmembers", "eng", "dave"]);
    let (_, by_full) = env.sync(&mut full).await;
    let (status, by_incr) = env.sync(&mut incr).await;
    assert_eq!(kinds(&by_full), ["user.created", "member.added"]);
    assert_eq!(seen(&by_incr), seen(&by_full));
    assert_eq!((status.incremental, status.read), (true, 2));

    // A deletion leaves only a tombstone, outside the base, and Samba
    // removes the member link without touching the group's uSNChanged: an
    // incremental read sees nothing; the next full read (the 4th sync
    // after the last full one) sees it all.
    samba.tool(&["user", "delete", "bob"]);
    let (_, by_full) = env.sync(&mut full).await;
    assert_eq!(kinds(&by_full), ["member.removed", "user.deleted"]);
    let (status, by_incr) = env.sync(&mut incr).await;
    assert_eq!((status.incremental, status.read), (true, 0));
    assert!(by_incr.is_empty());
    let (status, by_incr) = env.sync(&mut incr).await;
    assert!(!status.incremental, "the periodic full read");
    assert_eq!(status.read, first.read, "-bob +dave");
    assert_eq!(seen(&by_incr), seen(&by_full));

    // Nothing changed: an incremental read reads and writes nothing.
    let (status, events) = env.sync(&mut incr).await;
    assert_eq!((status.incremental, status.read), (true, 0));
    assert!(events.is_empty());

    // A restored DC (another invocationID) or another DC behind the same
    // name: USNs from before mean nothing there, so a full read.
    for (key, value) in [
        (
            "invocation_id",
            json!("00000000-0000-0000-0000-000000000000"),
        ),
        ("server", json!("CN=NTDS Settings,CN=OTHER-DC")),
    ] {
        env.tamper_cursor(&incr, key, value).await;
        let (status, events) = env.sync(&mut incr).await;
        assert!(!status.incremental, "{key} changed: a full read");
        assert_eq!(status.read, first.read);
        assert!(
            events.is_empty(),
            "a full read of an unchanged domain writes nothing"
        );
    }
}
