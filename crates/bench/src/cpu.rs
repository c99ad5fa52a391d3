//! CPU time per operation, split between the bench (the client), the
//! server under test and the PostgreSQL backends of the bench database —
//! on a shared 2-core machine this says who a figure is waiting for.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::{Connection, PgConnection};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// CPU time a process has used so far (user + system), from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SEC,
    ))
}

/// CPU times of the three parties at one instant.
pub struct CpuSnapshot {
    client: Duration,
    server: Duration,
    backends: HashMap<u32, Duration>,
}

/// CPU milliseconds per operation of each party over a phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuPerOp {
    pub client_ms: f64,
    pub server_ms: f64,
    pub postgres_ms: f64,
}

/// Measures the CPU of the bench itself, process `server` and the
/// PostgreSQL backends connected to the database at `url`.
pub struct CpuMeter {
    server: Vec<u32>,
    url: String,
}

impl CpuMeter {
    /// A meter for the `server` processes (none when no server takes part)
    /// and the database at `url`.
    pub fn new(server: Vec<u32>, url: &str) -> Self {
        Self {
            server,
            url: url.to_owned(),
        }
    }

    /// The CPU used so far.
    pub async fn snapshot(&self) -> anyhow::Result<CpuSnapshot> {
        let backends = backend_pids(&self.url).await?;
        Ok(CpuSnapshot {
            client: process_cpu(std::process::id()).unwrap_or_default(),
            server: self.server.iter().filter_map(|&p| process_cpu(p)).sum(),
            backends: backends
                .into_iter()
                .filter_map(|pid| Some((pid, process_cpu(pid)?)))
                .collect(),
        })
    }

    /// CPU per operation between `start` and now, over `ops` operations.
    /// Backends that appeared meanwhile count from zero; backends that
    /// ended meanwhile are lost (connection pools keep theirs open).
    pub async fn per_op(&self, start: &CpuSnapshot, ops: usize) -> anyhow::Result<CpuPerOp> {
        let end = self.snapshot().await?;
        let postgres: Duration = end
            .backends
            .iter()
            .map(|(pid, t)| t.saturating_sub(start.backends.get(pid).copied().unwrap_or_default()))
            .sum();
        let per =
            |d: Duration| (d.as_secs_f64() * 1000.0 / ops.max(1) as f64 * 1000.0).round() / 1000.0;
        Ok(CpuPerOp {
            client_ms: per(end.client.saturating_sub(start.client)),
            server_ms: per(end.server.saturating_sub(start.server)),
            postgres_ms: per(postgres),
        })
    }
}

/// Pids of the backends connected to the database of `url` (this query's own included).
async fn backend_pids(url: &str) -> anyhow::Result<Vec<u32>> {
    let mut conn = PgConnection::connect(url).await?;
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(&mut conn)
            .await?;
    let _ = conn.close().await;
    Ok(pids
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_is_readable_and_grows() {
        let before = process_cpu(std::process::id()).expect("own /proc stat");
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu(std::process::id()).unwrap() >= before);
        assert!(process_cpu(u32::MAX).is_none());
    }
}
