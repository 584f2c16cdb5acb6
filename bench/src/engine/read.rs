//! The read scenarios (c): fill one partition with batches, then read `read_bytes` at a time
//! from random offsets in a loop on one core, and count the bytes handed out as `Bytes`.
//!
//! From the batch cache a read is a map lookup and one reference-count increment per batch:
//! no byte is copied, which is what a consumer near the tail gets. From disk (cache 0) it is
//! an O_DIRECT read, a copy out of the DMA buffer and a CRC check of every batch.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use hdrhistogram::Histogram;
use keel_engine::storage::{AnyStorage, Storage};
use keel_engine::{FsyncPolicy, Offset, TimestampMs};

use super::append::{open_partitions, LogSettings};
use super::scenario::{make_batch, ReadScenario, Window, XorShift};
use crate::histogram::new_histogram;

/// The largest read latency kept exactly, in nanoseconds (10 s).
pub const READ_LATENCY_NS_MAX: u64 = 10_000_000_000;

/// What one read scenario measured.
#[derive(Debug)]
pub struct ReadMeasurement {
    /// Every measured read, nanoseconds.
    pub histogram_ns: Histogram<u64>,
    pub reads: u64,
    /// Bytes of the batches handed out.
    pub bytes: u64,
    pub elapsed: Duration,
    /// Bytes in the partition when the reads started.
    pub filled_bytes: u64,
}

impl ReadMeasurement {
    /// Decimal gigabytes handed out per second.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e9 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Fills a fresh partition in `dir`, then reads from random offsets for the warm-up then
/// `duration`.
pub async fn run_read(
    storage: AnyStorage,
    dir: &Path,
    scenario: &ReadScenario,
    warmup: Duration,
    duration: Duration,
    log: &LogSettings,
) -> anyhow::Result<ReadMeasurement> {
    storage
        .prepare(dir)
        .await
        .with_context(|| format!("preparing {}", dir.display()))?;
    let log = LogSettings {
        cache_bytes: scenario.cache_bytes,
        ..log.clone()
    };
    let parts = open_partitions(&storage, dir, 1, FsyncPolicy::Never, &log).await?;
    let p = &parts[0];
    let batch = make_batch(scenario.batch_bytes, TimestampMs::now().0);
    let mut filled_bytes = 0u64;
    while filled_bytes < scenario.fill_bytes as u64 {
        p.append(&batch).await.context("filling the partition")?;
        filled_bytes += batch.len() as u64;
    }
    let end_offset = p.offsets().high_watermark.0;
    ensure!(end_offset > 0, "the filled partition is empty");
    let result = read_loop(p, end_offset, scenario.read_bytes, warmup, duration).await;
    p.close().await.context("closing the read partition")?;
    let (histogram_ns, reads, bytes, elapsed) = result?;
    Ok(ReadMeasurement {
        histogram_ns,
        reads,
        bytes,
        elapsed,
        filled_bytes,
    })
}

async fn read_loop<S: Storage>(
    p: &keel_engine::partition::Partition<S>,
    end_offset: i64,
    read_bytes: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Histogram<u64>, u64, u64, Duration)> {
    let mut histogram = new_histogram(READ_LATENCY_NS_MAX)?;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let (mut reads, mut bytes) = (0u64, 0u64);
    let mut last_done = None;
    let window = Window::starting_now(warmup, duration);
    loop {
        let offset = Offset(i64::try_from(rng.below(end_offset as u64))?);
        let start = Instant::now();
        if start >= window.end {
            break;
        }
        let out = p.read(offset, read_bytes).await.context("read")?;
        let done = Instant::now();
        ensure!(!out.batches.is_empty(), "read at {offset} returned nothing");
        if start >= window.measure_from {
            let ns = u64::try_from((done - start).as_nanos()).unwrap_or(u64::MAX);
            histogram.saturating_record(ns.max(1));
            reads += 1;
            bytes += out.batches.iter().map(|b| b.len() as u64).sum::<u64>();
            last_done = Some(done);
        }
    }
    let elapsed = last_done
        .map(|d| d - window.measure_from)
        .filter(|d| !d.is_zero())
        .context("no read completed inside the measured window")?;
    Ok((histogram, reads, bytes, elapsed))
}
