//! Active Directory semantics against a real Samba AD domain controller
//! provisioned by the test (`samba-tool domain provision`, ~4 s), synced
//! into a PostgreSQL and a SQLite store:
//! `objectGUID` ids in their usual text form, the `userAccountControl`
//! disabled bit, group `member` DNs, and removals by diff. Samba listens
//! on the fixed port 389, so this file holds one test only.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster_connectors::credentials;
use roster_connectors::runner::{SyncerOptions, sync_directory};
use roster_store::*;
use roster_webhook::SealingKey;
use serde_json::json;

// One test, not one per backend (Samba holds a fixed port): the macro
// that stamps per-backend tests is not used here.
#[allow(unused_macros)]
mod support;
use support::{changes, kinds, user_named};

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

    // Samba holds the fixed port 389, so one server serves both stores:
    // every step is synced into a PostgreSQL and a SQLite store.
    let envs = [support::postgres().await, support::sqlite().await];
    let key = SealingKey::from_bytes(&[3u8; 32]).expect("key");
    let mut dirs = Vec::new();
    for env in &envs {
        dirs.push(pulled_directory(env.store.as_ref(), &key).await);
    }
    let options = SyncerOptions {
        owner: "replica-a".into(),
        ..SyncerOptions::default()
    };
    let mut heads = vec![0; envs.len()];
    // Syncs each store and returns, per store, the kinds written.
    let mut sync = async || {
        let mut written = Vec::new();
        for ((env, dir), head) in envs.iter().zip(&dirs).zip(heads.iter_mut()) {
            sync_directory(&env.store, &key, &options, *dir)
                .await
                .expect("sync")
                .expect("lease");
            let events = changes(env.store.as_ref(), *dir, *head).await;
            *head = events.last().map_or(*head, |e| e.revision);
            written.push(kinds(&events));
        }
        written
    };

    sync().await;
    for (env, dir) in envs.iter().zip(&dirs) {
        let alice = user_named(env.store.as_ref(), *dir, "alice@corp.example").await;
        assert_eq!(
            alice.fields.external_id.as_deref(),
            Some(samba.guid_of("alice").as_str())
        );
        assert!(alice.fields.active);
    }

    samba.tool(&["user", "disable", "carol"]);
    for written in sync().await {
        assert_eq!(written, ["user.deactivated"], "userAccountControl 514");
    }

    samba.tool(&["user", "delete", "bob"]);
    for written in sync().await {
        assert_eq!(written, ["member.removed", "user.deleted"]);
    }
}

async fn pulled_directory(store: &dyn Store, key: &SealingKey) -> DirectoryId {
    let dir = store
        .create_directory(NewDirectory {
            name: "corp ad".into(),
            organization: "corp".into(),
            provider: ProviderKind::Generic,
            deprovision_policy: DeprovisionPolicy::Delete,
            attribute_mappings: Vec::new(),
        })
        .await
        .expect("directory")
        .id;
    store
        .put_source(
            dir,
            SourceSettings {
                kind: SourceKind::ActiveDirectory,
                settings: json!({
                    "url": "ldap://127.0.0.1:389",
                    "bind_dn": "Administrator@corp.example",
                    "users_base_dn": BASE,
                    "groups_base_dn": BASE,
                    "groups_filter": "(&(objectClass=group)(cn=eng))",
                }),
                sealed_credentials: Some(credentials::seal(key, dir, ADMIN_PW).unwrap()),
                interval_secs: 900,
                mass_delete_percent: 100,
            },
        )
        .await
        .expect("source");
    dir
}
