//! What the engine benchmark runs: the append and read scenarios of issue 3, the batches they
//! append, and the pinned executor they run on (either runtime of `keel_engine::rt`).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use keel_engine::{batch, rt, EngineConfig, FsyncPolicy};

/// Bytes of one record's value in a benchmark batch; a batch holds as many as fit.
const RECORD_VALUE_BYTES: usize = 1000;

/// One append scenario: `partitions` partitions on one executor, each with
/// `appenders_per_partition` tasks appending the same batch in a closed loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendScenario {
    /// File-name-safe key, e.g. `append_1m_always_x1`.
    pub name: String,
    pub batch_bytes: usize,
    pub partitions: usize,
    pub appenders_per_partition: usize,
    pub fsync: FsyncPolicy,
}

impl AppendScenario {
    pub fn new(
        batch_bytes: usize,
        partitions: usize,
        appenders_per_partition: usize,
        fsync: FsyncPolicy,
    ) -> Self {
        let appenders = partitions * appenders_per_partition;
        let name = format!(
            "append_{}_{fsync}_x{appenders}",
            crate::units::size_tag(batch_bytes)
        );
        Self {
            name,
            batch_bytes,
            partitions,
            appenders_per_partition,
            fsync,
        }
    }

    pub fn appenders(&self) -> usize {
        self.partitions * self.appenders_per_partition
    }

    /// For people: `1 MiB batches, fsync always, 4 appenders on 1 partition`.
    pub fn title(&self) -> String {
        format!(
            "{} batches, fsync {}, {} appender{} on {} partition{}",
            crate::units::format_bytes_human(self.batch_bytes),
            self.fsync,
            self.appenders(),
            if self.appenders() == 1 { "" } else { "s" },
            self.partitions,
            if self.partitions == 1 { "" } else { "s" },
        )
    }
}

/// Issue 3's append scenarios: (a) 1 MiB, one partition, 1 and 4 appenders; (b) 16 KiB, 64
/// appenders over 8 partitions; each with fsync always, then (d) the same with fsync never.
pub fn append_scenarios(fsync: FsyncPolicy) -> [AppendScenario; 3] {
    [
        AppendScenario::new(1 << 20, 1, 1, fsync),
        AppendScenario::new(1 << 20, 1, 4, fsync),
        AppendScenario::new(16 << 10, 8, 8, fsync),
    ]
}

/// One read scenario (c): fill a partition, then read `read_bytes` at random offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadScenario {
    /// `read_cache` or `read_disk`.
    pub name: String,
    /// Batch cache size; 0 sends every read to the disk.
    pub cache_bytes: usize,
    /// Bytes appended before the reads start.
    pub fill_bytes: usize,
    /// Size of each appended batch.
    pub batch_bytes: usize,
    /// `max_bytes` of each read.
    pub read_bytes: usize,
}

/// Issue 3's read scenarios: 1 MiB reads of a partition of 16 KiB batches (a producer's
/// default batch size), from a batch cache that holds it all, then from disk.
pub fn read_scenarios(fill_bytes: usize) -> [ReadScenario; 2] {
    let read = |name: &str, cache_bytes: usize| ReadScenario {
        name: name.to_owned(),
        cache_bytes,
        fill_bytes,
        batch_bytes: 16 << 10,
        read_bytes: 1 << 20,
    };
    // Room for the fill and the cache's own bookkeeping, so nothing is evicted.
    [
        read("read_cache", 2 * fill_bytes + (1 << 20)),
        read("read_disk", 0),
    ]
}

/// When a scenario measures: appends that start before `measure_from` are the unrecorded
/// warm-up; none start at or after `end`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
}

impl Window {
    /// A window that opens after `warmup` from now and lasts `duration`.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Self {
            measure_from,
            end: measure_from + duration,
        }
    }
}

/// A valid RecordBatch v2 of exactly `batch_bytes` bytes (at least one record), whose values
/// are a non-repeating pattern. Exact sizes make a "1 MiB batch" mean the same bytes as the
/// raw probe's 1 MiB block.
pub fn make_batch(batch_bytes: usize, timestamp_ms: i64) -> Bytes {
    let count = (batch_bytes / (RECORD_VALUE_BYTES + 10)).max(1);
    let mut lens = vec![RECORD_VALUE_BYTES; count];
    let mut pattern = Vec::new();
    let mut built = Bytes::new();
    // Varint widths can shift by a byte as the last value's length moves: a few rounds settle.
    for _ in 0..4 {
        let total: usize = lens.iter().sum();
        if pattern.len() < total {
            pattern = pattern_bytes(total);
        }
        let mut values: Vec<&[u8]> = Vec::with_capacity(count);
        let mut at = 0;
        for &len in &lens {
            values.push(&pattern[at..at + len]);
            at += len;
        }
        built = batch::build(timestamp_ms, &values);
        let Some(last) = lens.last_mut() else { break };
        match built.len().cmp(&batch_bytes) {
            std::cmp::Ordering::Equal => break,
            std::cmp::Ordering::Less => *last += batch_bytes - built.len(),
            std::cmp::Ordering::Greater => *last = last.saturating_sub(built.len() - batch_bytes),
        }
    }
    built
}

/// xorshift64 bytes, so no layer below can compress or deduplicate the batches.
fn pattern_bytes(len: usize) -> Vec<u8> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tiny deterministic generator for payloads and read offsets.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..bound` (`bound` > 0); the modulo bias is negligible for our bounds.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// Runs `fut_gen`'s future on a new executor thread of `runtime` (glommio for the `glommio`
/// backend, the poll runtime for `uring` and `pwrite`: see `IoBackend::runtime`), pinned to
/// `cpu` when given, with the engine's default io memory and ring depth, and waits for its
/// result.
pub fn on_executor<G, F, T>(
    runtime: rt::Runtime,
    cpu: Option<usize>,
    fut_gen: G,
) -> anyhow::Result<T>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = anyhow::Result<T>> + 'static,
    T: Send + 'static,
{
    let defaults = EngineConfig::new(".");
    let spec = rt::ExecutorSpec {
        name: "keel-bench-engine".to_owned(),
        cpu,
        io_memory_bytes: defaults.io_memory_bytes,
        ring_depth: defaults.ring_depth,
    };
    let handle = rt::spawn_executor(runtime, &spec, fut_gen)
        .with_context(|| format!("starting the engine executor ({runtime:?}, cpu {cpu:?})"))?;
    handle.join().context("the engine executor failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_have_the_exact_size_and_validate() {
        for size in [100, 4096, 16 << 10, 1 << 20] {
            let b = make_batch(size, 1);
            assert_eq!(b.len(), size);
            let info = batch::validate(&b, usize::MAX).expect("valid batch");
            assert!(info.record_count >= 1);
        }
    }

    #[test]
    fn names_scenarios() {
        let [a1, a4, b] = append_scenarios(FsyncPolicy::Always);
        assert_eq!(a1.name, "append_1m_always_x1");
        assert_eq!(a4.name, "append_1m_always_x4");
        assert_eq!(b.name, "append_16k_always_x64");
        assert_eq!(
            b.title(),
            "16 KiB batches, fsync always, 64 appenders on 8 partitions"
        );
    }
}
