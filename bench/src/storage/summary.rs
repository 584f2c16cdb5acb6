//! Everything a storage run measured, as written to `summary.json` and read back by
//! `keel-bench report DIR`.

use serde::{Deserialize, Serialize};

use super::cpu::CpuUse;
use super::matrix::{Cell, StorageWorkload, Target};
use crate::histogram::LatencySummary;
use crate::limits::{DiskWriteResult, MachineInfo};
use crate::report::GitRef;

/// The `kind` of a storage summary, which tells `keel-bench report` what folder it is.
pub const KIND: &str = "storage";

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageSummary {
    pub kind: String,
    pub keel_bench_version: String,
    pub command: Vec<String>,
    pub git: GitRef,
    pub started_at_unix_s: u64,
    pub finished_at_unix_s: u64,
    pub machine: MachineInfo,
    pub load_average_start: Option<[f64; 3]>,
    pub load_average_end: Option<[f64; 3]>,
    /// The workload file's path as given, and its contents.
    pub workload_file: String,
    pub workload: StorageWorkload,
    /// The broker's command (binary and fixed flags) the broker cells started.
    pub keel_command: Option<String>,
    /// The raw probes, pass by pass (one before each pass of the cells, one after the last).
    pub raw_passes: Vec<RawPass>,
    /// Per write size, the limits over every raw pass.
    pub raw_limits: Vec<RawLimit>,
    /// The raw 4 KiB fdatasync latency over every raw pass, and its histogram file.
    pub raw_fdatasync: Option<LatencySummary>,
    pub raw_fdatasync_histogram_file: Option<String>,
    pub cells: Vec<CellResult>,
}

/// One pass of the raw probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawPass {
    pub at_unix_s: u64,
    /// Per size: O_DIRECT sequential write at QD32 (the disk's ceiling) and write +
    /// fdatasync per write at QD1 (each write made durable before the next).
    pub writes: Vec<DiskWriteResult>,
    pub fdatasync_4k: LatencySummary,
}

/// The limits at one write size, over every raw pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawLimit {
    pub block_bytes: usize,
    /// Sequential write QD32: mean, least and most over the passes, MB/s.
    pub write_qd32_mb_per_s: Spread,
    /// Write + fdatasync QD1.
    pub write_fsync_qd1_mb_per_s: Spread,
}

/// The mean, least and most of one figure over passes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread { mean, min, max })
    }

    /// (max - min) / mean: how far the passes disagree.
    pub fn relative_range(&self) -> f64 {
        if self.mean > 0.0 {
            (self.max - self.min) / self.mean
        } else {
            0.0
        }
    }
}

/// One cell, over every pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub cell: Cell,
    pub runs: Vec<CellRun>,
    /// Throughput over the passes that succeeded, MB/s (10^6 bytes) of batch bytes
    /// acknowledged (engine) or of message values acknowledged (broker).
    pub mb_per_s: Option<Spread>,
    /// Mean throughput over the raw QD32 write at the cell's write size (mean of the raw
    /// passes), and over the raw write + fdatasync QD1 at that size.
    pub fraction_of_raw_qd32: Option<f64>,
    pub fraction_of_raw_fsync_qd1: Option<f64>,
    /// The raw size compared with: the batch size rounded up to the 4 KiB block.
    pub raw_block_bytes: usize,
    /// Latency over every pass (merged histograms): append latency (engine) or produce
    /// latency from the schedule (broker), µs.
    pub latency: Option<LatencySummary>,
    pub histogram_file: Option<String>,
    /// CPU milliseconds per MiB acknowledged: the process (engine: keel-bench, whose only
    /// busy threads during a cell are the executor and its I/O threads; broker: the broker
    /// process), summed over the passes.
    pub cpu_ms_per_mib: Option<f64>,
    /// Engine cells: the executor thread alone, and the other threads (I/O workers).
    pub executor_cpu_ms_per_mib: Option<f64>,
    pub io_threads_cpu_ms_per_mib: Option<f64>,
}

/// One pass of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRun {
    pub pass: usize,
    pub started_at_unix_s: u64,
    /// Why the cell failed in this pass (the run goes on with the next cell).
    pub error: Option<String>,
    pub mb_per_s: f64,
    pub bytes: u64,
    pub window_s: f64,
    pub latency: Option<LatencySummary>,
    /// CPU over the measured window (engine) or over the whole run (broker threads).
    pub cpu: Option<CpuUse>,
    /// Broker cells: broker CPU seconds over the measured window (from /proc/PID/stat).
    pub broker_window_cpu_s: Option<f64>,
    /// Engine cells: the executor thread's share of the window on the CPU and waiting for it.
    pub executor_on_cpu_fraction: Option<f64>,
    pub executor_runqueue_fraction: Option<f64>,
    /// Broker cells: produce errors and the first of them.
    pub produce_errors: Option<u64>,
    /// Engine cells: segments retention deleted during the cell (a deletion stalls the
    /// executor: see the storage report's notes).
    #[serde(default)]
    pub segments_deleted: Option<usize>,
}

impl StorageSummary {
    pub fn cells_of(&self, target: Target) -> impl Iterator<Item = &CellResult> {
        self.cells.iter().filter(move |c| c.cell.target == target)
    }

    pub fn raw_limit(&self, block_bytes: usize) -> Option<&RawLimit> {
        self.raw_limits
            .iter()
            .find(|r| r.block_bytes == block_bytes)
    }
}
