//! Where the time of an append goes, measured two ways in the same run:
//!
//! - CPU: each piece of work the append path does per batch, timed alone in a loop on the
//!   pinned executor: validation with its CRC, the write buffer, and the one copy, into that
//!   buffer, with baseOffset patched there.
//! - The floor: the engine's I/O pattern (write a block, fdatasync, repeat; one file per
//!   partition) through the same storage layer, without any log logic, so the gap from the
//!   raw io_uring probe to the engine splits into runtime and disk on one side, engine on
//!   the other.
//! - I/O: the fsync-always scenarios again on [`Timed`] storage, which times every write,
//!   fdatasync and fallocate the engine issues. Their sizes show how many batches group
//!   commit merged; the share of the window with log I/O in flight shows how much of the
//!   time the disk was the one working. The rest is CPU and wake-ups on the critical path.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use keel_engine::storage::{align_up, AnyStorage, BlockBuf, Storage, StorageFile};
use keel_engine::{batch, rt};

use super::append::{run_append, AppendMeasurement, LogSettings};
use super::scenario::{make_batch, AppendScenario, Window};
use super::summary::{CpuPieces, FloorFigures, IoBreakdown, OpStats};
use super::thread_sched::minor_faults;
use super::timed_storage::{busy_time, FileKind, IoEvent, OpKind, Timed};
use crate::histogram::{new_histogram, LatencySummary};

/// Times each CPU piece for `batch_bytes` batches for about `budget` each.
pub async fn cpu_pieces(
    storage: &AnyStorage,
    dir: &Path,
    batch_bytes: usize,
    budget: Duration,
) -> anyhow::Result<CpuPieces> {
    storage.prepare(dir).await.context("preparing")?;
    let path = dir.join(format!("cpu-pieces-{batch_bytes}.dat"));
    let file = storage
        .open(&path, true)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let b = make_batch(batch_bytes, 0);
    let dma_len = usize::try_from(align_up(batch_bytes as u64))?;
    let validate_us = mean_us(budget, || {
        black_box(
            batch::split(&b, usize::MAX)
                .map(|parts| parts.len())
                .unwrap_or(0),
        );
    });
    let dma_alloc_us = mean_us(budget, || {
        black_box(file.alloc_unzeroed(dma_len));
    });
    let mut buf = file.alloc(dma_len);
    let dma_copy_us = mean_us(budget, || {
        copy_patched(buf.bytes_mut(), &b);
        black_box(&mut buf);
    });
    drop(buf);
    let faults_before = minor_faults();
    let (cold_total_us, cold_runs) = cold_total_us(&file, batch_bytes, dma_len, budget);
    let cold_minor_faults_per_batch = faults_before
        .zip(minor_faults())
        .map(|(before, after)| after.saturating_sub(before) as f64 / cold_runs.max(1) as f64);
    file.close().await.context("closing the CPU probe file")?;
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(CpuPieces {
        batch_bytes,
        validate_us,
        dma_alloc_us,
        dma_copy_us,
        cold_total_us,
        cold_minor_faults_per_batch,
    })
}

/// Memory the cold pass cycles through, well past the CPU caches.
const COLD_SET_BYTES: usize = 128 << 20;

/// The append path's copy: the batch into the write buffer, baseOffset patched there.
fn copy_patched(buf: &mut [u8], batch: &[u8]) {
    let to = &mut buf[..batch.len()];
    to.copy_from_slice(batch);
    batch::set_base_offset(to, 1);
}

/// The three pieces in sequence, as one append does them, on batches and retained write
/// buffers (the batch cache keeps slices of them) that together far exceed the CPU caches, so
/// every pass goes to memory: mean µs per batch, and the batches timed.
fn cold_total_us<F: StorageFile>(
    file: &F,
    batch_bytes: usize,
    dma_len: usize,
    budget: Duration,
) -> (f64, u64) {
    let count = (COLD_SET_BYTES / batch_bytes).max(2);
    let batch = make_batch(batch_bytes, 0);
    // Distinct allocations of the same valid batch.
    let sources: Vec<bytes::Bytes> = (0..count)
        .map(|_| bytes::Bytes::copy_from_slice(&batch))
        .collect();
    let mut retained = std::collections::VecDeque::with_capacity(count + 1);
    let mut next = 0;
    let mean = mean_us(budget, || {
        let source = &sources[next % count];
        next += 1;
        black_box(
            batch::split(source, usize::MAX)
                .map(|p| p.len())
                .unwrap_or(0),
        );
        let mut buf = file.alloc_unzeroed(dma_len);
        copy_patched(buf.bytes_mut(), source);
        black_box(&mut buf);
        retained.push_back(buf);
        if retained.len() > count {
            retained.pop_front();
        }
    });
    // mean_us runs the operation once unrecorded before its timed runs.
    (mean, next.saturating_sub(1) as u64)
}

/// Mean microseconds of `op`, run for about `budget` (at least 3 times, the first unrecorded).
fn mean_us(budget: Duration, mut op: impl FnMut()) -> f64 {
    op();
    let start = Instant::now();
    let mut runs = 0u64;
    while runs < 3 || start.elapsed() < budget {
        op();
        runs += 1;
    }
    start.elapsed().as_secs_f64() * 1e6 / runs as f64
}

/// Runs `scenario` on timed storage in `dir` and says where its time went.
pub async fn io_breakdown(
    storage: AnyStorage,
    dir: &Path,
    scenario: &AppendScenario,
    warmup: Duration,
    duration: Duration,
    log: &LogSettings,
) -> anyhow::Result<IoBreakdown> {
    let storage = Timed::new(storage);
    let events = storage.events();
    let m = run_append(storage, dir, scenario, warmup, duration, log).await?;
    let events = events.borrow();
    summarize(scenario, &m, &events)
}

fn summarize(
    scenario: &AppendScenario,
    m: &AppendMeasurement,
    events: &[IoEvent],
) -> anyhow::Result<IoBreakdown> {
    let from = m.window.measure_from;
    let to = from + m.elapsed;
    let inside: Vec<&IoEvent> = events
        .iter()
        .filter(|e| e.start >= from && e.start < to)
        .collect();
    let elapsed_s = m.elapsed.as_secs_f64();
    let pick = |file: FileKind, ops: &[OpKind]| -> anyhow::Result<OpStats> {
        op_stats(
            inside
                .iter()
                .filter(|e| e.file == file && ops.contains(&e.op))
                .copied(),
            elapsed_s,
        )
    };
    let log_write = pick(FileKind::Log, &[OpKind::Write])?;
    let log_sync = pick(FileKind::Log, &[OpKind::Sync])?;
    let log_preallocate = pick(FileKind::Log, &[OpKind::Preallocate])?;
    let index_io = pick(FileKind::Index, &[OpKind::Write, OpKind::Sync])?;
    let other = inside.iter().filter(|e| !counted_apart(e));
    let other: Vec<&IoEvent> = other.copied().collect();
    let other_io = op_stats(other.iter().copied(), elapsed_s)?;
    let slowest_other = other
        .iter()
        .max_by_key(|e| e.duration)
        .map(|e| format!("{:?} of a {:?} file", e.op, e.file).to_lowercase());
    let log_io = events.iter().filter(|e| is_log_io(e));
    let busy = busy_time(log_io, from, to);
    let batches = m.appends as f64;
    let writes_by_batch_count = batch_counts(
        inside
            .iter()
            .filter(|e| e.file == FileKind::Log && e.op == OpKind::Write),
        scenario.batch_bytes,
    );
    Ok(IoBreakdown {
        writes_by_batch_count,
        scenario: scenario.name.clone(),
        elapsed_s,
        appends: m.appends,
        mb_per_s: m.mb_per_s(),
        append_us_mean: m.histogram_us.mean(),
        batches_per_write: log_write.bytes_mean / scenario.batch_bytes as f64,
        batches_per_sync: batches / (log_sync.count.max(1) as f64),
        log_io_busy_fraction: busy.as_secs_f64() / elapsed_s.max(f64::MIN_POSITIVE),
        log_write,
        log_sync,
        log_preallocate,
        index_io,
        other_io,
        slowest_other,
    })
}

/// How many writes held 1, 2, 3, ... batches, from their sizes (a write may carry one extra
/// block: the rewritten tail).
fn batch_counts<'a>(
    writes: impl Iterator<Item = &'a &'a IoEvent>,
    batch_bytes: usize,
) -> Vec<(u64, u64)> {
    let mut counts = std::collections::BTreeMap::new();
    for w in writes {
        let batches = (w.bytes / batch_bytes.max(1) as u64).max(1);
        *counts.entry(batches).or_insert(0u64) += 1;
    }
    counts.into_iter().collect()
}

/// A log write, fdatasync or fallocate: the disk work an append waits for.
fn is_log_io(e: &IoEvent) -> bool {
    e.file == FileKind::Log && matches!(e.op, OpKind::Write | OpKind::Sync | OpKind::Preallocate)
}

/// The operations the breakdown shows in their own columns.
fn counted_apart(e: &IoEvent) -> bool {
    is_log_io(e) || (e.file == FileKind::Index && matches!(e.op, OpKind::Write | OpKind::Sync))
}

fn op_stats<'a>(
    events: impl Iterator<Item = &'a IoEvent>,
    elapsed_s: f64,
) -> anyhow::Result<OpStats> {
    let mut histogram: Histogram<u64> = new_histogram(60_000_000)?;
    let mut bytes = 0u64;
    for e in events {
        let us = u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(us.max(1));
        bytes += e.bytes;
    }
    let count = histogram.len();
    if count == 0 {
        return Ok(OpStats::default());
    }
    Ok(OpStats {
        count,
        per_s: count as f64 / elapsed_s.max(f64::MIN_POSITIVE),
        bytes_mean: bytes as f64 / count as f64,
        us_mean: histogram.mean(),
        us_p50: histogram.value_at_quantile(0.5) as f64,
        us_p99: histogram.value_at_quantile(0.99) as f64,
        us_max: histogram.max() as f64,
    })
}

/// The engine's I/O pattern without the engine: `files` tasks, each writing its own file
/// through the engine's storage backend as a segment does (a fresh zeroed buffer per write, the file
/// grown by fallocate 32 MiB ahead), `block_bytes` then fdatasync, in a loop.
pub async fn storage_floor(
    storage: AnyStorage,
    dir: &Path,
    files: usize,
    block_bytes: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<FloorFigures> {
    storage.prepare(dir).await.context("preparing")?;
    let window = Window::starting_now(warmup, duration);
    let mut tasks = Vec::with_capacity(files);
    for index in 0..files {
        let path = dir.join(format!("floor-{index}.log"));
        tasks.push(rt::spawn_local(floor_task(
            storage.clone(),
            path,
            block_bytes,
            window,
        )));
    }
    let mut cycle = new_histogram(60_000_000)?;
    let (mut bytes, mut write_us, mut sync_us) = (0u64, 0f64, 0f64);
    let mut last_done = window.measure_from;
    for task in tasks {
        let t = task.await?;
        cycle.add(&t.cycle).context("merging histograms")?;
        bytes += t.bytes;
        write_us += t.write_us_total;
        sync_us += t.sync_us_total;
        last_done = last_done.max(t.last_done);
    }
    let elapsed_s = (last_done - window.measure_from)
        .as_secs_f64()
        .max(f64::MIN_POSITIVE);
    let cycles = cycle.len().max(1) as f64;
    Ok(FloorFigures {
        key: format!("floor_{}_x{files}", crate::units::size_tag(block_bytes)),
        files,
        block_bytes,
        mb_per_s: bytes as f64 / 1e6 / elapsed_s,
        cycle: LatencySummary::from_histogram(&cycle, 1.0),
        write_us_mean: write_us / cycles,
        sync_us_mean: sync_us / cycles,
    })
}

#[derive(Debug)]
struct FloorTally {
    cycle: Histogram<u64>,
    bytes: u64,
    write_us_total: f64,
    sync_us_total: f64,
    last_done: Instant,
}

/// Preallocation step of the floor's files, the engine's default.
const FLOOR_PREALLOCATE_BYTES: u64 = 32 << 20;

async fn floor_task(
    storage: AnyStorage,
    path: std::path::PathBuf,
    block_bytes: usize,
    window: Window,
) -> anyhow::Result<FloorTally> {
    let file = storage
        .open(&path, true)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let mut tally = FloorTally {
        cycle: new_histogram(60_000_000)?,
        bytes: 0,
        write_us_total: 0.0,
        sync_us_total: 0.0,
        last_done: window.measure_from,
    };
    let (mut pos, mut preallocated) = (0u64, 0u64);
    loop {
        let start = Instant::now();
        if start >= window.end {
            break;
        }
        if pos + block_bytes as u64 > preallocated {
            preallocated = align_up(pos + block_bytes as u64 + FLOOR_PREALLOCATE_BYTES);
            file.preallocate(preallocated).await.context("fallocate")?;
        }
        let buf = file.alloc(block_bytes);
        let written = file.write_at(buf, pos).await.context("write")?;
        anyhow::ensure!(
            written == block_bytes,
            "short write: {written} of {block_bytes}"
        );
        let synced_from = Instant::now();
        file.sync().await.context("fdatasync")?;
        let done = Instant::now();
        pos += block_bytes as u64;
        if start >= window.measure_from {
            let us = u64::try_from((done - start).as_micros()).unwrap_or(u64::MAX);
            tally.cycle.saturating_record(us.max(1));
            tally.bytes += block_bytes as u64;
            tally.write_us_total += (synced_from - start).as_secs_f64() * 1e6;
            tally.sync_us_total += (done - synced_from).as_secs_f64() * 1e6;
            tally.last_done = done;
        }
    }
    file.close().await.context("close")?;
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(tally)
}
