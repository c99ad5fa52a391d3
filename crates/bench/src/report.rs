//! Figures of a run: latency summaries, the printed table and the JSON file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::cpu::CpuPerOp;
use crate::db::PgSettings;
use crate::load::Timed;

/// p50/p99/max of a set of samples. Every sample is kept and sorted, so the
/// percentiles are exact (nearest-rank), not bucketed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarizes `samples` (sorted in place).
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        Self {
            p50_ms: ms(percentile(samples, 50.0)),
            p99_ms: ms(percentile(samples, 99.0)),
            max_ms: ms(percentile(samples, 100.0)),
        }
    }
}

/// Nearest-rank percentile of sorted samples; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// One row of the table: `n` operations of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured, e.g. `POST /Users`.
    pub name: String,
    /// Operations done.
    pub n: usize,
    /// Operations in flight at once.
    pub concurrency: usize,
    /// Operations per second over `total_secs`.
    pub throughput_per_s: f64,
    /// Per-operation latency.
    pub latency: LatencySummary,
    /// Wall time of the whole phase.
    pub total_secs: f64,
    /// CPU per operation of the client, the server and PostgreSQL, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_per_op: Option<CpuPerOp>,
}

impl Measurement {
    /// A measurement from every operation's latency and the phase's wall time.
    pub fn new(
        name: impl Into<String>,
        concurrency: usize,
        samples: &mut [Duration],
        elapsed: Duration,
    ) -> Self {
        let n = samples.len();
        let secs = elapsed.as_secs_f64();
        Self {
            name: name.into(),
            n,
            concurrency,
            throughput_per_s: if secs > 0.0 {
                (n as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            },
            latency: LatencySummary::of(samples),
            total_secs: (secs * 1000.0).round() / 1000.0,
            cpu_per_op: None,
        }
    }

    /// A measurement of a timed run of operations (see [`crate::load::run`]).
    pub fn of<T>(name: impl Into<String>, concurrency: usize, timed: &mut Timed<T>) -> Self {
        Self::new(name, concurrency, &mut timed.latencies, timed.elapsed)
    }

    /// The same, with the CPU each party spent per operation.
    pub fn with_cpu(mut self, cpu: CpuPerOp) -> Self {
        self.cpu_per_op = Some(cpu);
        self
    }
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `std::thread::available_parallelism`.
    pub cores: usize,
    /// 1, 5 and 15-minute load averages when the scenario started.
    pub load_average: [f64; 3],
}

impl Machine {
    /// The current machine.
    pub fn current() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_average: load_average().unwrap_or_default(),
        }
    }
}

fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Everything one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// Seconds since the Unix epoch when the scenario started.
    pub started_at_unix: u64,
    pub machine: Machine,
    pub postgres: PgSettings,
    pub measurements: Vec<Measurement>,
    /// Scenario-specific figures (RSS per stream, ratios, seeding method…).
    pub figures: BTreeMap<String, serde_json::Value>,
}

impl Report {
    /// An empty report for `scenario`, stamped with the machine and settings.
    pub fn new(scenario: &str, postgres: PgSettings) -> Self {
        Self {
            scenario: scenario.to_owned(),
            started_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine: Machine::current(),
            postgres,
            measurements: Vec::new(),
            figures: BTreeMap::new(),
        }
    }

    /// Records a scenario-specific figure.
    pub fn figure(&mut self, key: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.figures.insert(key.to_owned(), value);
    }

    /// The measurement named `name`.
    pub fn measurement(&self, name: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.name == name)
    }

    /// Prints the table.
    pub fn print(&self) {
        let pg = &self.postgres;
        let [l1, l5, l15] = self.machine.load_average;
        println!();
        println!(
            "== {} == cores: {}, load average: {l1:.2} {l5:.2} {l15:.2}",
            self.scenario, self.machine.cores
        );
        println!(
            "PostgreSQL {}: synchronous_commit={} fsync={} shared_buffers={} max_connections={} wal_level={}",
            pg.server_version,
            pg.synchronous_commit,
            pg.fsync,
            pg.shared_buffers,
            pg.max_connections,
            pg.wal_level
        );
        println!(
            "{:<44} {:>9} {:>5} {:>12} {:>9} {:>9} {:>9} {:>9}  CPU ms/op client/server/pg",
            "measurement", "N", "conc", "ops/s", "p50 ms", "p99 ms", "max ms", "total s"
        );
        for m in &self.measurements {
            let cpu = m
                .cpu_per_op
                .map(|c| format!("{:.3}/{:.3}/{:.3}", c.client_ms, c.server_ms, c.postgres_ms))
                .unwrap_or_default();
            println!(
                "{:<44} {:>9} {:>5} {:>12.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  {cpu}",
                m.name,
                m.n,
                m.concurrency,
                m.throughput_per_s,
                m.latency.p50_ms,
                m.latency.p99_ms,
                m.latency.max_ms,
                m.total_secs
            );
        }
        for (key, value) in &self.figures {
            println!("  {key}: {value}");
        }
    }
}

/// Writes `value` as pretty JSON to `path`, creating its directory.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = LatencySummary::of(&mut samples);
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 50.0),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn throughput_is_ops_over_wall_time() {
        let mut samples = vec![Duration::from_millis(1); 10];
        let m = Measurement::new("x", 2, &mut samples, Duration::from_secs(2));
        assert_eq!(m.n, 10);
        assert_eq!(m.throughput_per_s, 5.0);
    }
}
