//! Active Directory semantics against a real Samba AD domain controller
//! provisioned by the test (`samba-tool domain provision`, ~4 s), synced
//! into a PostgreSQL and a SQLite store at every step:
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

use crate::support;
use crate::support::{changes, kinds, user_named};

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

/// A directory synced from the Samba DC into one store, with its last
/// seen revision.
struct Synced {
    store: Arc<dyn Store>,
    dir: DirectoryId,
    head: i64,
}

struct Env {
    key: SealingKey,
    options: SyncerOptions,
}

impl Env {
    async fn directory(&self, store: &Arc<dyn Store>, name: &str, full_sync_every: u32) -> Synced {
        let settings = json!({
            "url": "ldap://127.0.0.1:389",
            "bind_dn": "Administrator@corp.example",
            "users_base_dn": BASE,
            "groups_base_dn": BASE,
            "groups_filter": "(&(objectClass=group)(cn=eng))",
            "full_sync_every": full_sync_every,
        });
        let dir = support::ad_directory(store.as_ref(), &self.key, name, settings, ADMIN_PW).await;
        Synced {
            store: store.clone(),
            dir,
            head: 0,
        }
    }

    /// One sync of `d`: its report and the events it wrote.
    async fn sync(&self, d: &mut Synced) -> (SyncStatus, Vec<ChangeRecord>) {
        let status = sync_directory(&d.store, &self.key, &self.options, d.dir)
            .await
            .expect("sync")
            .expect("lease");
        let events = changes(d.store.as_ref(), d.dir, d.head).await;
        if let Some(last) = events.last() {
            d.head = last.revision;
        }
        (status, events)
    }

    /// Syncs the full-read and the incremental directory of each store and
    /// checks that all of them wrote what the first full one did; returns
    /// that, and the incremental directories' reports.
    async fn sync_all(
        &self,
        pairs: &mut [(Synced, Synced)],
    ) -> (Vec<ChangeRecord>, Vec<SyncStatus>) {
        let mut reference: Option<Vec<ChangeRecord>> = None;
        let mut reports = Vec::new();
        for (full, incr) in pairs.iter_mut() {
            let (_, by_full) = self.sync(full).await;
            let (status, by_incr) = self.sync(incr).await;
            let expected = reference.get_or_insert_with(|| by_full.clone());
            assert_eq!(seen(&by_full), seen(expected), "both stores alike");
            assert_eq!(seen(&by_incr), seen(&by_full), "incremental as full");
            reports.push(status);
        }
        (reference.unwrap_or_default(), reports)
    }

    /// Replaces the stored AD watermark's `key` with `value`, as another
    /// replica recording a run would.
    async fn tamper_cursor(&self, d: &Synced, key: &str, value: serde_json::Value) {
        let owner = "tamper";
        let ttl = Duration::from_secs(30);
        let row = d
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
        assert!(d.store.record_sync(d.dir, owner, &record).await.unwrap());
        d.store.release_sync_lease(d.dir, owner).await.unwrap();
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

    let stores = [support::postgres().await, support::sqlite().await];
    let env = Env {
        key: SealingKey::from_bytes(&[3u8; 32]).expect("key"),
        options: SyncerOptions {
            owner: "replica-a".into(),
            ..SyncerOptions::default()
        },
    };
    // The same domain twice in each store: the first directory reads
    // everything every time, the second reads by uSNChanged with a full
    // read every 4th sync. All four must give consumers the same events.
    let mut pairs = Vec::new();
    for s in &stores {
        pairs.push((
            env.directory(&s.store, "corp ad (full)", 1).await,
            env.directory(&s.store, "corp ad (incremental)", 4).await,
        ));
    }

    let (_, firsts) = env.sync_all(&mut pairs).await;
    for ((_, incr), first) in pairs.iter().zip(&firsts) {
        assert!(!first.incremental, "no watermark yet: a full read");
        let alice = user_named(incr.store.as_ref(), incr.dir, "alice@corp.example").await;
        assert_eq!(
            alice.fields.external_id.as_deref(),
            Some(samba.guid_of("alice").as_str())
        );
        assert!(alice.fields.active);
    }
    let first_read = firsts[0].read;

    samba.tool(&["user", "disable", "carol"]);
    samba.tool(&["group", "addmembers", "eng", "carol"]);
    let (written, reports) = env.sync_all(&mut pairs).await;
    assert_eq!(
        kinds(&written),
        ["user.deactivated", "member.added"],
        "userAccountControl 514"
    );
    for status in reports {
        assert_eq!(
            (status.incremental, status.read),
            (true, 2),
            "only carol and eng changed"
        );
    }

    samba.tool(&["user", "create", "dave", "Passw0rd!User1", "--surname=Test"]);
    samba.tool(&["group", "addmembers", "eng", "dave"]);
    let (written, reports) = env.sync_all(&mut pairs).await;
    assert_eq!(kinds(&written), ["user.created", "member.added"]);
    for status in reports {
        assert_eq!((status.incremental, status.read), (true, 2));
    }

    // A deletion leaves only a tombstone, outside the base, and Samba
    // removes the member link without touching the group's uSNChanged: an
    // incremental read sees nothing; the next full read (the 4th sync
    // after the last full one) sees it all.
    samba.tool(&["user", "delete", "bob"]);
    for (full, incr) in pairs.iter_mut() {
        let (_, by_full) = env.sync(full).await;
        assert_eq!(kinds(&by_full), ["member.removed", "user.deleted"]);
        let (status, by_incr) = env.sync(incr).await;
        assert_eq!((status.incremental, status.read), (true, 0));
        assert!(by_incr.is_empty());
        let (status, by_incr) = env.sync(incr).await;
        assert!(!status.incremental, "the periodic full read");
        assert_eq!(status.read, first_read, "-bob +dave");
        assert_eq!(seen(&by_incr), seen(&by_full));

        // Nothing changed: an incremental read reads and writes nothing.
        let (status, events) = env.sync(incr).await;
        assert_eq!((status.incremental, status.read), (true, 0));
        assert!(events.is_empty());

        // A restored DC (another invocationID) or another DC behind the
        // same name: USNs from before mean nothing there, so a full read.
        for (key, value) in [
            (
                "invocation_id",
                json!("00000000-0000-0000-0000-000000000000"),
            ),
            ("server", json!("CN=NTDS Settings,CN=OTHER-DC")),
        ] {
            env.tamper_cursor(incr, key, value).await;
            let (status, events) = env.sync(incr).await;
            assert!(!status.incremental, "{key} changed: a full read");
            assert_eq!(status.read, first_read);
            assert!(
                events.is_empty(),
                "a full read of an unchanged domain writes nothing"
            );
        }
    }
}
