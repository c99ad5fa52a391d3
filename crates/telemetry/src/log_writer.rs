//! Log lines handed to a thread of their own and written many at a time.
//!
//! Every Roster process logs one access line per request by default
//! (docs/operations.md). Written straight to stderr, each line is a `write`
//! system call on the thread that served the request: under load, a few
//! per cent of the server's CPU and a wake-up of whoever reads the pipe per
//! line. Here the subscriber formats each event on its own thread as before
//! and appends the line to a shared queue; a writer thread writes whatever
//! queued in one `write` per [`TICK`] while lines keep coming, and sleeps
//! without a timer once they stop (the next line wakes it).
//!
//! Nothing is dropped: a full queue (a reader of stderr that does not keep
//! up) makes the logging thread wait, as the blocking write did.
//! [`LogWriter::flush`] waits until every line queued so far is written;
//! [`crate::Telemetry`] calls it when the process shuts down.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long the writer lets lines gather while they keep coming: the most
/// a line waits before it is written.
const TICK: Duration = Duration::from_millis(5);

/// Bytes queued before a logging thread waits for the writer.
const QUEUE_LIMIT: usize = 1 << 20;

/// A `MakeWriter` for `tracing_subscriber::fmt`; see the module docs.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer from its untimed sleep.
    wake: Condvar,
    /// Tells waiting loggers (queue full) and flushes that a batch was written.
    written: Condvar,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
    /// The writer sleeps until woken (it found the queue empty).
    asleep: bool,
}

impl LogWriter {
    /// Starts the writer thread, writing to `out`.
    pub fn spawn(out: impl Write + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: Condvar::new(),
            written: Condvar::new(),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("roster-log".into())
            .spawn(move || write_loop(&writer, out))?;
        Ok(Self { shared })
    }

    /// Waits until every line queued before the call is written.
    pub fn flush(&self) {
        let mut queue = self.shared.lock();
        while !queue.bytes.is_empty() || queue.writing {
            queue = wait(&self.shared.written, queue);
        }
    }

    fn push(&self, line: &[u8]) {
        let mut queue = self.shared.lock();
        while queue.bytes.len() >= QUEUE_LIMIT {
            queue = wait(&self.shared.written, queue);
        }
        queue.bytes.extend_from_slice(line);
        if queue.asleep {
            queue.asleep = false;
            self.shared.wake.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Plain bytes and flags: a panic elsewhere leaves them usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn wait<'a>(condvar: &Condvar, guard: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
    condvar.wait(guard).unwrap_or_else(|e| e.into_inner())
}

fn write_loop(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        {
            let mut queue = shared.lock();
            queue.writing = false;
            shared.written.notify_all();
            while queue.bytes.is_empty() {
                queue.asleep = true;
                queue = wait(&shared.wake, queue);
            }
            std::mem::swap(&mut queue.bytes, &mut batch);
            queue.writing = true;
        }
        // A log line that cannot be written has nowhere else to go.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        std::thread::sleep(TICK);
    }
}

/// One event's output: `tracing_subscriber::fmt` writes each formatted
/// line in one `write_all`, so each write is queued whole.
pub struct EventWriter<'a>(&'a LogWriter);

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// Collects what the writer thread writes, and in how many writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(buf);
            sink.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_whole_and_in_each_threads_order() {
        let sink = Sink::default();
        let writer = LogWriter::spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 300));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        writer.flush();
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let (t, i): (usize, usize) = (words[1].parse().unwrap(), words[3].parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines in order");
            assert_eq!(words.get(4).map_or(0, |x| x.len()), i % 300, "line whole");
            next[t] += 1;
        }
        assert_eq!(next, [2_000; 4], "every line written");
        assert!(writes < 8_000, "lines share writes ({writes} writes)");
    }

    #[test]
    fn flush_waits_for_lines_queued_while_the_writer_slept() {
        let sink = Sink::default();
        let writer = LogWriter::spawn(sink.clone()).unwrap();
        for round in 0..3 {
            let line = format!("round {round}\n");
            writer.make_writer().write_all(line.as_bytes()).unwrap();
            writer.flush();
            let written = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
            assert!(written.ends_with(&line), "{written:?}");
        }
    }
}
