//! Closed-loop load: `concurrency` workers take operation indexes from a
//! shared counter until `n` are done, timing each one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The outcome of a run: each operation's result and latency, in index order.
pub struct Timed<T> {
    pub results: Vec<T>,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// Runs `op(0..n)` on `concurrency` workers. The first error stops every
/// worker and is returned.
pub async fn run<T, F, Fut>(n: usize, concurrency: usize, op: F) -> anyhow::Result<Timed<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency.clamp(1, n.max(1)))
        .map(|_| {
            tokio::spawn(worker(
                n,
                Arc::clone(&op),
                Arc::clone(&next),
                Arc::clone(&failed),
            ))
        })
        .collect();
    let mut done: Vec<(usize, T, Duration)> = Vec::with_capacity(n);
    let mut first_error = None;
    for w in workers {
        match w.await? {
            Ok(part) => done.extend(part),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = first_error {
        return Err(e);
    }
    done.sort_unstable_by_key(|(i, _, _)| *i);
    let (results, latencies) = done.into_iter().map(|(_, t, d)| (t, d)).unzip();
    Ok(Timed {
        results,
        latencies,
        elapsed,
    })
}

async fn worker<T, F, Fut>(
    n: usize,
    op: Arc<F>,
    next: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
) -> anyhow::Result<Vec<(usize, T, Duration)>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut done = Vec::new();
    while !failed.load(Ordering::Relaxed) {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        let started = Instant::now();
        match op(i).await {
            Ok(t) => done.push((i, t, started.elapsed())),
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                return Err(e.context(format!("operation {i}")));
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_index_runs_once_in_order() {
        let timed = run(100, 7, |i| async move { Ok(i * 2) }).await.unwrap();
        assert_eq!(timed.results, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(timed.latencies.len(), 100);
    }

    #[tokio::test]
    async fn first_error_is_returned() {
        let r = run(50, 4, |i| async move {
            if i == 10 {
                anyhow::bail!("boom")
            } else {
                Ok(())
            }
        })
        .await;
        assert!(format!("{:#}", r.err().unwrap()).contains("boom"));
    }
}
