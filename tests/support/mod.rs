//! Runs the real `roster` binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `roster serve` and what its banner said.
pub struct Served {
    pub child: Child,
    pub base_url: String,
    pub token: Option<String>,
    pub directory_id: String,
    pub grpc: String,
    pub banner: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `roster` binary built for this test run.
pub fn roster() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roster"));
    // The embedded default must not pick up the CI's PostgreSQL.
    cmd.env_remove("DATABASE_URL");
    cmd
}

/// A fresh, empty data directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("roster-test-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts `roster serve` on free ports and waits for its banner.
pub fn serve(data_dir: &Path) -> Served {
    let mut child = roster()
        .args(["serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn roster serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("roster serve printed no complete banner; got {banner:?}"));
        let done = line.trim_start().starts_with("Store:");
        banner.push(line);
        if done {
            break;
        }
    }
    let field = |label: &str| {
        banner
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("banner has no {label:?}: {banner:?}"))
    };
    let base_url = field("SCIM base URL:");
    let token = Some(field("Bearer token:")).filter(|t| t.starts_with("rst_"));
    let directory_id = field("Directory id:");
    let grpc = field("gRPC:").split_whitespace().next().unwrap_or_default().to_string();
    Served { child, base_url, token, directory_id, grpc, banner }
}
