//! `keel-bench storage`: a matrix of storage settings (I/O backend, fsync policy, segment
//! size, write size, preallocation step, batch cache, group commit, producer batch size and
//! linger) run against the engine alone and against the whole broker, each cell a fraction
//! of the raw disk limit measured in the same run, with its latency and its CPU cost per MiB.
//!
//! ```text
//!   for pass in 1..=passes:                       (odd passes run the cells in reverse order)
//!     raw probes at every write size: O_DIRECT write QD32, write+fdatasync QD1; fdatasync 4 KiB
//!     engine cells: partitions on one executor of the backend's runtime, closed-loop appenders
//!     broker cells: keel started with the cell's flags, Kafka producers at the maximum rate
//!   raw probes once more (so the limit is bracketed before and after every cell)
//! ```
//!
//! Files: [`matrix`] (the workload file and its cells: one axis at a time around a baseline),
//! [`cells`] (running one cell), [`cpu`] (process and thread CPU time), [`summary`] (what is
//! kept), [`markdown`] and [`files`] (the report folder, and `keel-bench report DIR`).

pub mod cells;
pub mod cpu;
pub mod files;
pub mod markdown;
pub mod matrix;
pub mod summary;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use keel_engine::storage::align_up;

use crate::histogram::{new_histogram, LatencySummary};
use crate::limits::{self, DiskWriteParams};
use crate::report;
use cells::{failed_run, run_broker_cell, run_engine_cell, CellContext, CellOutcome};
use matrix::{Cell, StorageWorkload, Target};
use summary::{CellResult, CellRun, RawLimit, RawPass, Spread, StorageSummary, KIND};

/// Everything `keel-bench storage` needs.
#[derive(Debug, Clone)]
pub struct StorageBenchConfig {
    pub workload: StorageWorkload,
    /// The workload file as given on the command line.
    pub workload_file: String,
    /// A fresh directory is made (and removed) under it: on the disk under test.
    pub dir: PathBuf,
    /// The engine executor's CPU; `None` leaves it unbound.
    pub cpu: Option<usize>,
    /// The keel binary for the broker cells.
    pub keel: Option<String>,
    /// Run only the cells of this target.
    pub only: Option<Target>,
}

/// A finished run: the summary and every histogram, by file name.
#[derive(Debug)]
pub struct StorageRun {
    pub summary: StorageSummary,
    pub histograms: Vec<(String, Histogram<u64>)>,
}

pub(crate) fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the whole matrix. `command` is recorded as the exact argv.
pub fn run_storage_bench(
    config: &StorageBenchConfig,
    command: Vec<String>,
) -> anyhow::Result<StorageRun> {
    let cells: Vec<Cell> = config
        .workload
        .cells()
        .into_iter()
        .filter(|c| config.only.is_none_or(|t| t == c.target))
        .collect();
    anyhow::ensure!(!cells.is_empty(), "the workload has no cells to run");
    if cells.iter().any(|c| c.target == Target::Broker) {
        let keel = config.keel.as_deref().context("broker cells need --keel")?;
        anyhow::ensure!(
            Path::new(keel).is_file(),
            "--keel {keel}: no such file (cargo build --release -p keel-server)"
        );
    }
    let started_at_unix_s = unix_now_s();
    let load_average_start = report::load_average();
    let git = report::git_ref(Path::new("."));
    let scratch = config.dir.join(format!(
        "keel-storage-bench-{}-{started_at_unix_s}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    // Named relative to where the bench ran (limits::storage_info), as reports are committed.
    let machine = limits::machine_info(&scratch)?;
    let result = run_passes(config, &cells, &scratch);
    let removed = std::fs::remove_dir_all(&scratch);
    let (raw_passes, fsync_histogram, runs) = result?;
    removed.with_context(|| format!("removing {}", scratch.display()))?;
    let raw_limits = raw_limits(&raw_passes);
    let mut histograms = Vec::new();
    let raw_fdatasync = (!fsync_histogram.is_empty())
        .then(|| LatencySummary::from_histogram(&fsync_histogram, 1.0));
    let raw_fdatasync_histogram_file = raw_fdatasync.as_ref().map(|_| {
        histograms.push(("raw_fdatasync_4k.hdr".to_owned(), fsync_histogram));
        "raw_fdatasync_4k.hdr".to_owned()
    });
    let mut results = Vec::new();
    for (cell, cell_runs) in cells.into_iter().zip(runs) {
        let (result, histogram) = aggregate(cell, cell_runs, &raw_limits)?;
        if let (Some(file), Some(h)) = (&result.histogram_file, histogram) {
            histograms.push((file.clone(), h));
        }
        results.push(result);
    }
    let summary = StorageSummary {
        kind: KIND.to_owned(),
        keel_bench_version: env!("CARGO_PKG_VERSION").to_owned(),
        command,
        git,
        started_at_unix_s,
        finished_at_unix_s: unix_now_s(),
        machine,
        load_average_start,
        load_average_end: report::load_average(),
        workload_file: config.workload_file.clone(),
        workload: config.workload.clone(),
        keel_command: config.keel.clone(),
        raw_passes,
        raw_limits,
        raw_fdatasync,
        raw_fdatasync_histogram_file,
        cells: results,
    };
    Ok(StorageRun {
        summary,
        histograms,
    })
}

type PassesOutcome = (Vec<RawPass>, Histogram<u64>, Vec<Vec<CellOutcome>>);

/// The raw passes and every pass of every cell, in run order.
fn run_passes(
    config: &StorageBenchConfig,
    cells: &[Cell],
    scratch: &Path,
) -> anyhow::Result<PassesOutcome> {
    let sizes: BTreeSet<usize> = cells.iter().map(raw_block_bytes).collect();
    let mut fsync_histogram = new_histogram(limits::FSYNC_LATENCY_US_MAX)?;
    let mut raw_passes = Vec::new();
    let mut runs: Vec<Vec<CellOutcome>> = cells.iter().map(|_| Vec::new()).collect();
    let ctx = CellContext {
        scratch: scratch.to_path_buf(),
        cpu: config.cpu,
        keel: config.keel.clone(),
        log_dir: scratch.to_path_buf(),
    };
    let w = &config.workload;
    for pass in 0..w.passes {
        raw_passes.push(raw_pass(w, scratch, &sizes, &mut fsync_histogram)?);
        let mut order: Vec<usize> = (0..cells.len()).collect();
        if pass % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let cell = &cells[index];
            tracing::info!(cell = %cell.key, pass, "cell");
            let outcome = match (cell.target, &w.engine, &w.broker) {
                (Target::Engine, Some(part), _) => run_engine_cell(&ctx, part, cell, pass),
                (Target::Broker, _, Some(part)) => run_broker_cell(&ctx, part, cell, pass),
                _ => Err(anyhow::anyhow!("no part for a {} cell", cell.target.name())),
            };
            let outcome = outcome.unwrap_or_else(|error| {
                tracing::warn!(cell = %cell.key, pass, error = format!("{error:#}"), "cell failed");
                (failed_run(pass, &error), None)
            });
            if let Some(l) = &outcome.0.latency {
                tracing::info!(
                    cell = %cell.key,
                    mb_per_s = format!("{:.1}", outcome.0.mb_per_s),
                    p99_us = l.p99_us,
                    "cell done"
                );
            }
            runs[index].push(outcome);
        }
    }
    raw_passes.push(raw_pass(w, scratch, &sizes, &mut fsync_histogram)?);
    Ok((raw_passes, fsync_histogram, runs))
}

/// The raw write size a cell is compared with: its batch rounded up to the 4 KiB block.
fn raw_block_bytes(cell: &Cell) -> usize {
    let batch = cell.settings.batch_bytes.map_or(4096, |b| b.0);
    usize::try_from(align_up(batch)).unwrap_or(usize::MAX)
}

/// One pass of the raw probes at every size, and the fdatasync latency probe.
fn raw_pass(
    w: &StorageWorkload,
    scratch: &Path,
    sizes: &BTreeSet<usize>,
    fsync_histogram: &mut Histogram<u64>,
) -> anyhow::Result<RawPass> {
    let duration = Duration::try_from_secs_f64(w.raw_seconds)?;
    let at_unix_s = unix_now_s();
    let mut writes = Vec::new();
    for &block_bytes in sizes {
        // QD32 overwriting the file: the device's ceiling. QD1 with an fdatasync per write
        // into fresh blocks: what a log that syncs every write could do at best.
        for (queue_depth, fsync_each) in [(32, false), (1, true)] {
            let params = DiskWriteParams {
                block_bytes,
                queue_depth,
                duration,
                fsync_each,
                file_bytes: w.probe_file_bytes.0,
                blocks: if fsync_each {
                    limits::Blocks::Unwritten
                } else {
                    limits::Blocks::Reused
                },
                data: limits::Data::Same,
            };
            let result = limits::disk_write_logged(scratch, &params)?;
            writes.push(result);
        }
    }
    let histogram = limits::fsync_latency_with(scratch, 4096, duration, w.probe_file_bytes.0)
        .context("raw fdatasync latency probe")?;
    fsync_histogram.add(&histogram)?;
    Ok(RawPass {
        at_unix_s,
        writes,
        fdatasync_4k: LatencySummary::from_histogram(&histogram, 1.0),
    })
}

/// Per size, the spread of each probe over the passes.
fn raw_limits(passes: &[RawPass]) -> Vec<RawLimit> {
    let sizes: BTreeSet<usize> = passes
        .iter()
        .flat_map(|p| p.writes.iter().map(|w| w.block_bytes))
        .collect();
    sizes
        .into_iter()
        .filter_map(|block_bytes| {
            let of = |fsync_each: bool| {
                let values: Vec<f64> = passes
                    .iter()
                    .flat_map(|p| &p.writes)
                    .filter(|w| w.block_bytes == block_bytes && w.fsync_each == fsync_each)
                    .map(|w| w.mb_per_s)
                    .collect();
                Spread::of(&values)
            };
            Some(RawLimit {
                block_bytes,
                write_qd32_mb_per_s: of(false)?,
                write_fsync_qd1_mb_per_s: of(true)?,
            })
        })
        .collect()
}

/// One cell's figures over its passes, and its merged histogram.
fn aggregate(
    cell: Cell,
    outcomes: Vec<CellOutcome>,
    raw: &[RawLimit],
) -> anyhow::Result<(CellResult, Option<Histogram<u64>>)> {
    let mut merged: Option<Histogram<u64>> = None;
    let mut runs: Vec<CellRun> = Vec::new();
    for (run, histogram) in outcomes {
        if let Some(h) = histogram {
            match merged.as_mut() {
                Some(m) => m.add(&h)?,
                None => merged = Some(h),
            }
        }
        runs.push(run);
    }
    let ok: Vec<&CellRun> = runs.iter().filter(|r| r.latency.is_some()).collect();
    let mb_per_s = Spread::of(&ok.iter().map(|r| r.mb_per_s).collect::<Vec<_>>());
    let raw_block_bytes = raw_block_bytes(&cell);
    let limit = raw.iter().find(|r| r.block_bytes == raw_block_bytes);
    let fraction = |of: fn(&RawLimit) -> f64| {
        let m = mb_per_s?;
        let l = of(limit?);
        (l > 0.0).then(|| m.mean / l)
    };
    let mib: f64 = ok.iter().map(|r| r.bytes as f64).sum::<f64>() / f64::from(1u32 << 20);
    let per_mib = |seconds: f64| (mib > 0.0).then(|| seconds * 1e3 / mib);
    let cpu = |pick: fn(&CellRun) -> Option<f64>| -> Option<f64> {
        let values: Vec<f64> = ok.iter().map(|r| pick(r)).collect::<Option<Vec<_>>>()?;
        per_mib(values.iter().sum())
    };
    let (cpu_ms_per_mib, executor, io_threads) = match cell.target {
        Target::Engine => (
            cpu(|r| r.cpu.as_ref().map(|c| c.process_s)),
            cpu(|r| r.cpu.as_ref().and_then(|c| c.caller_s)),
            cpu(|r| {
                let c = r.cpu.as_ref()?;
                Some((c.process_s - c.caller_s?).max(0.0))
            }),
        ),
        Target::Broker => (cpu(|r| r.broker_window_cpu_s), None, None),
    };
    let latency = merged
        .as_ref()
        .map(|h| LatencySummary::from_histogram(h, 1.0));
    let histogram_file = merged.as_ref().map(|_| format!("{}.hdr", cell.key));
    Ok((
        CellResult {
            cell,
            runs,
            mb_per_s,
            fraction_of_raw_qd32: fraction(|l| l.write_qd32_mb_per_s.mean),
            fraction_of_raw_fsync_qd1: fraction(|l| l.write_fsync_qd1_mb_per_s.mean),
            raw_block_bytes,
            latency,
            histogram_file,
            cpu_ms_per_mib,
            executor_cpu_ms_per_mib: executor,
            io_threads_cpu_ms_per_mib: io_threads,
        },
        merged,
    ))
}
