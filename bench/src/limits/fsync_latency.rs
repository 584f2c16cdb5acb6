//! fdatasync latency: write one block with O_DIRECT, then fdatasync, and time the fdatasync
//! alone; repeat for the duration. With fsync=always and acks=all, this is the floor under
//! every acknowledged produce: no broker can answer faster than the disk makes a block durable.
//!
//! The writes are sequential through a preallocated file, as a segment append is, and use plain
//! `pwrite` and `fdatasync` syscalls, as `fio --ioengine=sync --fdatasync=1` does, so the two
//! tools measure the same thing.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use hdrhistogram::Histogram;

use super::disk_write::DEFAULT_PROBE_FILE_BYTES;
use super::probe_file::{AlignedBuf, ProbeFile, WrappingCursor};
use crate::histogram::new_histogram;

/// The largest fdatasync latency kept exactly; a slower one is recorded as this (60 s).
pub const FSYNC_LATENCY_US_MAX: u64 = 60_000_000;

/// Records every fdatasync latency, in microseconds, of a block-write-then-fdatasync loop that
/// runs for `duration` in `dir`. The probe file is removed before returning.
pub fn fsync_latency(
    dir: &Path,
    block_bytes: usize,
    duration: Duration,
) -> anyhow::Result<Histogram<u64>> {
    fsync_latency_with(dir, block_bytes, duration, DEFAULT_PROBE_FILE_BYTES)
}

/// [`fsync_latency`] on a probe file of `file_bytes`.
pub fn fsync_latency_with(
    dir: &Path,
    block_bytes: usize,
    duration: Duration,
    file_bytes: u64,
) -> anyhow::Result<Histogram<u64>> {
    let probe = ProbeFile::create(dir, "fsync", file_bytes)?;
    probe.check_block(block_bytes, 1)?;
    let buf = AlignedBuf::new(block_bytes)?;
    let mut cursor = WrappingCursor::new(block_bytes, probe.len_bytes());
    let mut histogram = new_histogram(FSYNC_LATENCY_US_MAX)?;
    let deadline = Instant::now() + duration;
    // At least one round, so a tiny duration still yields a sample.
    loop {
        let pos = cursor.next_pos();
        let written = probe
            .file()
            .write_at(buf.as_slice(), pos)
            .with_context(|| format!("O_DIRECT write at {pos} in {}", probe.path().display()))?;
        ensure!(
            written == block_bytes,
            "short O_DIRECT write at {pos} in {}: {written} of {block_bytes} bytes",
            probe.path().display()
        );
        let sync_start = Instant::now();
        probe
            .file()
            .sync_data()
            .with_context(|| format!("fdatasync {}", probe.path().display()))?;
        let sync_end = Instant::now();
        let latency_us = (sync_end - sync_start).as_micros();
        histogram.saturating_record(u64::try_from(latency_us).unwrap_or(u64::MAX).max(1));
        if sync_end >= deadline {
            return Ok(histogram);
        }
    }
}
