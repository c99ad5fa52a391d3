//! A PostgreSQL cluster owned by one test, which it may stop and start again
//! (readiness and fault tests). Stopped and removed when the test process
//! exits, like the shared throwaway cluster.

use std::path::PathBuf;

use super::{
    NO_POSTGRES, as_user, chown, find_server_binaries, free_port, is_root, run_ok, server_options,
    spawn_watchdog, unprivileged_user, wait_until_accepting,
};

/// A private cluster: `url()` reaches its `postgres` database.
#[derive(Debug)]
pub struct OwnedCluster {
    bin: PathBuf,
    data: PathBuf,
    root: PathBuf,
    port: u16,
    run_as: Option<String>,
}

impl OwnedCluster {
    /// URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        let ok = as_user(self.run_as.as_deref(), &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "cannot stop the owned PostgreSQL cluster");
    }

    /// Starts the server again on the same port and waits until it accepts connections.
    pub async fn start(&self) {
        let opts = server_options(self.port, &self.root);
        run_ok(
            as_user(self.run_as.as_deref(), &self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(self.root.join("log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"]),
            "cannot restart the owned cluster",
        );
        wait_until_accepting(&self.url()).await;
    }
}

/// Starts a private cluster from the PostgreSQL server binaries (needed even
/// when `DATABASE_URL` is set: the shared server must not be stopped).
pub async fn owned_cluster() -> OwnedCluster {
    let cluster = tokio::task::spawn_blocking(start_cluster)
        .await
        .expect("starting an owned cluster panicked");
    wait_until_accepting(&cluster.url()).await;
    cluster
}

/// `initdb` into a temp dir, then start under a watchdog that stops the
/// cluster and removes the dir when this process is gone. Blocking; the
/// server may not accept connections yet when this returns.
pub(crate) fn start_cluster() -> OwnedCluster {
    let bin = find_server_binaries().unwrap_or_else(|| panic!("{NO_POSTGRES}"));
    let root =
        std::env::temp_dir().join(format!("roster-testkit-{}", uuid::Uuid::new_v4().simple()));
    let data = root.join("data");
    std::fs::create_dir_all(&root).expect("cannot create a temp dir for PostgreSQL");
    // PostgreSQL refuses to run as root: run it as an unprivileged user.
    let run_as = is_root().then(unprivileged_user);
    if let Some(user) = &run_as {
        chown(&root, user);
    }
    run_ok(
        as_user(run_as.as_deref(), &bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data),
        &format!("{NO_POSTGRES}\ninitdb failed"),
    );
    let port = free_port();
    spawn_watchdog(&bin, &root, &data, port, run_as.as_deref());
    OwnedCluster {
        bin,
        data,
        root,
        port,
        run_as,
    }
}
