//! The figures of an engine benchmark run, as written to `summary.json`, and the checks that
//! hold them against issue 3's targets. Everything a report shows is in here or in the raw
//! HDR files it names, so `keel-bench report DIR` can redraw the report from the folder alone.

use serde::{Deserialize, Serialize};

use crate::histogram::LatencySummary;
use crate::limits::{Blocks, Data, DiskWriteResult, MachineInfo};
use crate::report::GitRef;
use crate::units::{format_bytes_human, size_tag};

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSummary {
    pub keel_bench_version: String,
    pub started_at_unix_s: u64,
    pub finished_at_unix_s: u64,
    /// The exact argv.
    pub command: Vec<String>,
    pub git: GitRef,
    pub machine: MachineInfo,
    /// /proc/loadavg (1, 5, 15 minutes) when the run started and ended: the machine is shared.
    pub load_average_start: Option<[f64; 3]>,
    pub load_average_end: Option<[f64; 3]>,
    pub settings: Settings,
    pub raw_writes: Vec<RawWrite>,
    pub raw_fdatasync: Vec<RawFsync>,
    pub appends: Vec<AppendFigures>,
    pub reads: Vec<ReadFigures>,
    pub breakdown: Breakdown,
    pub checks: Vec<Check>,
}

/// How the run was set up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Measured seconds of every engine scenario and every raw probe.
    pub seconds: f64,
    /// Unrecorded seconds before each engine scenario's window.
    pub warmup_seconds: f64,
    /// Measured seconds of each timed-storage breakdown run.
    pub breakdown_seconds: f64,
    /// The CPU the engine's executor was pinned to (none: unbound).
    pub cpu: Option<usize>,
    pub probe_file_bytes: u64,
    pub read_fill_bytes: usize,
    pub segment_bytes_max: u64,
    pub retention_bytes: u64,
    pub batch_cache_bytes: usize,
    /// The engine's defaults that shape the write path.
    pub write_bytes_max: usize,
    pub append_queue_bytes_max: usize,
    pub io_memory_bytes: usize,
    /// The I/O backend the engine ran on, with its settings (`uring+fixed`: registered
    /// buffers and files).
    #[serde(default)]
    pub io_backend: String,
    /// Deleted segments each partition kept and reused as new segments (0: deleted).
    #[serde(default)]
    pub segment_spares_max: usize,
}

impl Settings {
    /// The backend the run used: reports from before it was recorded ran on glommio.
    #[must_use]
    pub fn backend_name(&self) -> &str {
        if self.io_backend.is_empty() {
            "glommio"
        } else {
            &self.io_backend
        }
    }
}

/// One raw sequential write probe, run before and after the engine scenarios of its phase,
/// and the batch size of that phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawWrite {
    /// `raw_write_1m_qd32`, `raw_write_fdatasync_1m_qd1`.
    pub key: String,
    pub phase_batch_bytes: usize,
    /// The pass before the engine scenarios.
    pub result: DiskWriteResult,
    /// The pass after them.
    pub after: Option<DiskWriteResult>,
}

/// The shape of one raw write probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawProbe {
    pub block_bytes: usize,
    pub queue_depth: usize,
    pub fsync_each: bool,
    pub blocks: Blocks,
    pub data: Data,
}

impl RawProbe {
    /// `raw_write_1m_qd32`, `raw_write_fdatasync_fresh_1m_qd1` (unwritten blocks, the key of
    /// earlier reports), `raw_write_fdatasync_newfiles_1m_qd1`,
    /// `raw_write_fdatasync_freshdata_1m_qd1` (new data copied in before each write).
    pub fn key(&self) -> String {
        format!(
            "raw_write{}{}{}_{}_qd{}",
            if self.fsync_each { "_fdatasync" } else { "" },
            match self.blocks {
                Blocks::Reused => "",
                Blocks::Unwritten => "_fresh",
                Blocks::NewFiles => "_newfiles",
            },
            match self.data {
                Data::Same => "",
                Data::Fresh => "_freshdata",
            },
            size_tag(self.block_bytes),
            self.queue_depth
        )
    }

    /// `raw write 1 MiB QD32`, `raw write+fdatasync 1 MiB QD1, unwritten blocks`,
    /// `raw write+fdatasync 1 MiB QD1, new files`.
    pub fn label(&self) -> String {
        format!(
            "raw write{} {} QD{}{}{}",
            if self.fsync_each { "+fdatasync" } else { "" },
            format_bytes_human(self.block_bytes),
            self.queue_depth,
            match self.blocks {
                Blocks::Reused => "",
                Blocks::Unwritten => ", unwritten blocks",
                Blocks::NewFiles => ", new files",
            },
            match self.data {
                Data::Same => "",
                Data::Fresh => ", new data copied in",
            }
        )
    }
}

impl RawWrite {
    pub fn new(
        phase_batch_bytes: usize,
        result: DiskWriteResult,
        after: Option<DiskWriteResult>,
    ) -> Self {
        Self {
            key: Self::probe_of(&result).key(),
            phase_batch_bytes,
            result,
            after,
        }
    }

    /// The limit: the mean of the passes before and after the engine scenarios.
    pub fn mb_per_s(&self) -> f64 {
        match &self.after {
            Some(after) => (self.result.mb_per_s + after.mb_per_s) / 2.0,
            None => self.result.mb_per_s,
        }
    }

    fn probe_of(r: &DiskWriteResult) -> RawProbe {
        RawProbe {
            block_bytes: r.block_bytes,
            queue_depth: r.queue_depth,
            fsync_each: r.fsync_each,
            blocks: Blocks::of(r),
            data: Data::of(r),
        }
    }

    pub fn label(&self) -> String {
        Self::probe_of(&self.result).label()
    }
}

/// One raw fdatasync latency probe, run before and after the engine scenarios of its phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawFsync {
    /// `raw_fdatasync_4k`.
    pub key: String,
    pub block_bytes: usize,
    /// Both passes together: the reference the targets use.
    pub latency: LatencySummary,
    pub before: LatencySummary,
    pub after: Option<LatencySummary>,
    /// The raw histogram of both passes (microseconds) next to the summary.
    pub histogram_file: String,
}

impl RawFsync {
    /// The summary of `before` and `after` (histograms in microseconds), and their sum.
    pub fn new(
        block_bytes: usize,
        before: &hdrhistogram::Histogram<u64>,
        after: Option<&hdrhistogram::Histogram<u64>>,
    ) -> anyhow::Result<(Self, hdrhistogram::Histogram<u64>)> {
        let mut both = before.clone();
        if let Some(after) = after {
            both.add(after)
                .map_err(|e| anyhow::anyhow!("merging fdatasync histograms: {e:?}"))?;
        }
        let key = format!("raw_fdatasync_{}", size_tag(block_bytes));
        let probe = Self {
            histogram_file: format!("{key}.hdr"),
            key,
            block_bytes,
            latency: LatencySummary::from_histogram(&both, 1.0),
            before: LatencySummary::from_histogram(before, 1.0),
            after: after.map(|h| LatencySummary::from_histogram(h, 1.0)),
        };
        Ok((probe, both))
    }
}

/// One append scenario's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendFigures {
    pub name: String,
    pub title: String,
    pub batch_bytes: usize,
    pub partitions: usize,
    pub appenders: usize,
    pub fsync: String,
    pub appends: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    /// Decimal MB of acknowledged batches per second.
    pub mb_per_s: f64,
    pub latency: LatencySummary,
    /// The raw histogram (microseconds) next to the summary.
    pub histogram_file: String,
    pub segments_deleted: usize,
    /// Share of the window the executor thread ran on its CPU, and spent runnable but waiting
    /// for it (another process had it), from /proc/thread-self/schedstat.
    pub executor_on_cpu_fraction: Option<f64>,
    pub executor_runqueue_fraction: Option<f64>,
    /// CPU time of the process's io_uring worker threads (pinned with the executor).
    pub io_workers_on_cpu_fraction: Option<f64>,
    /// The executor's user and system (kernel) time as shares of the window.
    pub executor_user_fraction: Option<f64>,
    pub executor_system_fraction: Option<f64>,
    /// Minor page faults the executor took per measured append.
    pub minor_faults_per_append: Option<f64>,
    /// The throughput as a fraction of every raw write probe of the same phase.
    pub fractions: Vec<Fraction>,
}

/// A throughput over a raw limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fraction {
    pub limit_key: String,
    pub limit_label: String,
    pub limit_mb_per_s: f64,
    pub fraction: f64,
}

/// One read scenario's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadFigures {
    pub name: String,
    pub cache_bytes: usize,
    pub filled_bytes: u64,
    pub batch_bytes: usize,
    pub read_bytes: usize,
    pub reads: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    /// Decimal GB handed out as `Bytes` per second.
    pub gb_per_s: f64,
    pub reads_per_s: f64,
    pub latency: LatencySummary,
    /// The raw histogram (nanoseconds) next to the summary.
    pub histogram_file: String,
}

/// Where the time of an append goes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Breakdown {
    pub cpu: Vec<CpuPieces>,
    pub io: Vec<IoBreakdown>,
    pub floors: Vec<FloorFigures>,
}

/// The engine's I/O pattern without the engine: tasks on the pinned executor, each writing
/// its own preallocated file through the same storage layer (glommio DMA files), one aligned
/// block then one fdatasync, in a loop. What the runtime and the disk allow before any log
/// logic runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloorFigures {
    /// `floor_1m_x1`.
    pub key: String,
    pub files: usize,
    pub block_bytes: usize,
    pub mb_per_s: f64,
    /// One write plus its fdatasync, µs.
    pub cycle: LatencySummary,
    pub write_us_mean: f64,
    pub sync_us_mean: f64,
}

/// The CPU work the append path does per batch (or per write, for the DMA buffer), timed
/// alone on the pinned executor, in microseconds per operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuPieces {
    pub batch_bytes: usize,
    /// `batch::split`: header checks and CRC-32C of the batch.
    pub validate_us: f64,
    /// `StorageFile::alloc_unzeroed`: the write buffer (per write, a group of batches), as
    /// the append path takes it. (Reports before 735ecba timed a zeroed one, and a separate
    /// patch copy that the append path no longer makes.)
    #[serde(alias = "dma_alloc_zero_us")]
    pub dma_alloc_us: f64,
    /// Copying the batch into the write buffer and patching its baseOffset there: the one
    /// copy of the append path.
    pub dma_copy_us: f64,
    /// All three in sequence over a working set far past the CPU caches (each alone above
    /// runs hot in cache).
    #[serde(default)]
    pub cold_total_us: f64,
    /// Minor page faults per batch in the cold pass (fresh memory the allocator mapped).
    #[serde(default)]
    pub cold_minor_faults_per_batch: Option<f64>,
}

impl CpuPieces {
    pub fn total_us(&self) -> f64 {
        self.validate_us + self.dma_alloc_us + self.dma_copy_us
    }
}

/// One fsync-always scenario run again on storage that times every operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoBreakdown {
    pub scenario: String,
    pub elapsed_s: f64,
    pub appends: u64,
    pub mb_per_s: f64,
    pub append_us_mean: f64,
    pub log_write: OpStats,
    pub log_sync: OpStats,
    pub log_preallocate: OpStats,
    /// Index page writes and syncs.
    pub index_io: OpStats,
    /// Opens, closes, truncates, directory syncs, atomic writes (segment rolls, retention).
    pub other_io: OpStats,
    /// Which other operation took longest (`truncate of a log file`).
    #[serde(default)]
    pub slowest_other: Option<String>,
    /// Share of the window with at least one log write, fdatasync or fallocate in flight.
    pub log_io_busy_fraction: f64,
    /// Batches merged into one log write, and acknowledged by one fdatasync.
    pub batches_per_write: f64,
    pub batches_per_sync: f64,
    /// How many log writes held 1, 2, 3, ... batches: (batches, writes), ascending.
    pub writes_by_batch_count: Vec<(u64, u64)>,
}

/// Counts and times of one kind of operation inside the window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OpStats {
    pub count: u64,
    pub per_s: f64,
    pub bytes_mean: f64,
    pub us_mean: f64,
    pub us_p50: f64,
    pub us_p99: f64,
    pub us_max: f64,
}

/// A target: the figure must be at least, or at most, this multiple of the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Bound {
    pub fn holds(self, fraction: f64) -> bool {
        match self {
            Bound::AtLeast(min) => fraction >= min,
            Bound::AtMost(max) => fraction <= max,
        }
    }

    /// `≥ 90%` or `≤ 2×`.
    pub fn describe(self) -> String {
        match self {
            Bound::AtLeast(min) => format!("≥ {:.0}%", min * 100.0),
            Bound::AtMost(max) => format!("≤ {max}×"),
        }
    }
}

/// One figure held against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub scenario: String,
    /// `throughput`, `p99 latency`, `read throughput`.
    pub what: String,
    pub figure: f64,
    pub figure_unit: String,
    pub reference_label: String,
    pub reference: f64,
    pub bound: Bound,
    pub fraction: f64,
    pub pass: bool,
    /// The comparison the verdict rests on (others are shown for context).
    pub fair: bool,
}

/// Issue 3's target for reads from the batch cache, GB/s per core.
pub const CACHE_READ_GB_PER_S_TARGET: f64 = 5.0;

impl EngineSummary {
    /// The raw write probe with this key.
    pub fn raw_write(&self, key: &str) -> Option<&RawWrite> {
        self.raw_writes.iter().find(|w| w.key == key)
    }

    pub fn append(&self, name: &str) -> Option<&AppendFigures> {
        self.appends.iter().find(|a| a.name == name)
    }

    pub fn fsync_probe(&self, block_bytes: usize) -> Option<&RawFsync> {
        self.raw_fdatasync
            .iter()
            .find(|f| f.block_bytes == block_bytes)
    }
}

/// The fraction of every raw write of `phase_batch_bytes` that `mb_per_s` reaches.
pub fn fractions(raw: &[RawWrite], phase_batch_bytes: usize, mb_per_s: f64) -> Vec<Fraction> {
    raw.iter()
        .filter(|w| w.phase_batch_bytes == phase_batch_bytes)
        .map(|w| Fraction {
            limit_key: w.key.clone(),
            limit_label: w.label(),
            limit_mb_per_s: w.mb_per_s(),
            fraction: mb_per_s / w.mb_per_s().max(f64::MIN_POSITIVE),
        })
        .collect()
}

/// The fair raw limit of each fsync-always append scenario (see the report's text for why),
/// always into new files, as a log writes (segments are new files, grown ahead of the writes
/// and deleted by retention; see `docs/engine-x1-investigation.md`): 1 appender, write+fdatasync of one batch at QD1,
/// exactly what it asks of the disk; 4 appenders, write+fdatasync of the largest group
/// (4 MiB, the engine's `write_bytes_max`); 64 appenders of 16 KiB, the device's 16 KiB
/// limit at QD32.
///
/// With spare segments recycled (`recycled`) the log overwrites allocated blocks once
/// retention runs, as the reused-block probes do, so those are the fair limits.
pub fn fair_limit_key(scenario: &str, recycled: bool) -> Option<String> {
    let blocks = if recycled {
        Blocks::Reused
    } else {
        Blocks::NewFiles
    };
    let probe = |block_bytes, queue_depth, fsync_each| RawProbe {
        block_bytes,
        queue_depth,
        fsync_each,
        blocks,
        data: Data::Same,
    };
    let p = match scenario {
        "append_1m_always_x1" => probe(1 << 20, 1, true),
        "append_1m_always_x4" => probe(4 << 20, 1, true),
        "append_16k_always_x64" => probe(16 << 10, 32, false),
        _ => return None,
    };
    Some(p.key())
}

/// Whether an append scenario recycled spare segments: spares were on and retention deleted
/// segments in its window (without deletions there is nothing to recycle, and it wrote new
/// files throughout).
pub fn recycled(a: &AppendFigures, settings: &Settings) -> bool {
    settings.segment_spares_max > 0 && a.segments_deleted > 0
}

/// Every check of issue 3's targets that the run has the figures for.
pub fn compute_checks(s: &EngineSummary) -> Vec<Check> {
    let mut checks = Vec::new();
    for (name, min) in [
        ("append_1m_always_x1", 0.9),
        ("append_1m_always_x4", 0.9),
        ("append_16k_always_x64", 0.5),
    ] {
        let Some(a) = s.append(name) else { continue };
        let fair = fair_limit_key(name, recycled(a, &s.settings));
        for f in &a.fractions {
            checks.push(Check {
                scenario: name.to_owned(),
                what: "throughput".to_owned(),
                figure: a.mb_per_s,
                figure_unit: "MB/s".to_owned(),
                reference_label: f.limit_label.clone(),
                reference: f.limit_mb_per_s,
                bound: Bound::AtLeast(min),
                fraction: f.fraction,
                pass: Bound::AtLeast(min).holds(f.fraction),
                fair: fair.as_deref() == Some(f.limit_key.as_str()),
            });
        }
    }
    if let Some(a) = s.append("append_16k_always_x64") {
        for probe in &s.raw_fdatasync {
            let fraction = a.latency.p99_us / probe.latency.p99_us.max(f64::MIN_POSITIVE);
            checks.push(Check {
                scenario: a.name.clone(),
                what: "p99 append latency".to_owned(),
                figure: a.latency.p99_us,
                figure_unit: "µs".to_owned(),
                reference_label: format!(
                    "raw fdatasync p99 ({})",
                    format_bytes_human(probe.block_bytes)
                ),
                reference: probe.latency.p99_us,
                bound: Bound::AtMost(2.0),
                fraction,
                pass: Bound::AtMost(2.0).holds(fraction),
                fair: probe.block_bytes == a.batch_bytes,
            });
        }
    }
    if let Some(r) = s.reads.iter().find(|r| r.name == "read_cache") {
        let fraction = r.gb_per_s / CACHE_READ_GB_PER_S_TARGET;
        checks.push(Check {
            scenario: r.name.clone(),
            what: "read throughput, one core".to_owned(),
            figure: r.gb_per_s,
            figure_unit: "GB/s".to_owned(),
            reference_label: "target 5 GB/s".to_owned(),
            reference: CACHE_READ_GB_PER_S_TARGET,
            bound: Bound::AtLeast(1.0),
            fraction,
            pass: Bound::AtLeast(1.0).holds(fraction),
            fair: true,
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bounds() {
        let probe = RawProbe {
            block_bytes: 1 << 20,
            queue_depth: 32,
            fsync_each: false,
            blocks: Blocks::Reused,
            data: Data::Same,
        };
        assert_eq!(probe.key(), "raw_write_1m_qd32");
        let fresh = RawProbe {
            block_bytes: 16 << 10,
            queue_depth: 1,
            fsync_each: true,
            blocks: Blocks::Unwritten,
            data: Data::Same,
        };
        assert_eq!(fresh.key(), "raw_write_fdatasync_fresh_16k_qd1");
        assert_eq!(
            fresh.label(),
            "raw write+fdatasync 16 KiB QD1, unwritten blocks"
        );
        let new_files = RawProbe {
            blocks: Blocks::NewFiles,
            ..fresh
        };
        assert_eq!(new_files.key(), "raw_write_fdatasync_newfiles_16k_qd1");
        let fresh_data = RawProbe {
            blocks: Blocks::Reused,
            data: Data::Fresh,
            ..fresh
        };
        assert_eq!(fresh_data.key(), "raw_write_fdatasync_freshdata_16k_qd1");
        assert_eq!(
            fresh_data.label(),
            "raw write+fdatasync 16 KiB QD1, new data copied in"
        );
        assert_eq!(
            fair_limit_key("append_1m_always_x1", false).as_deref(),
            Some("raw_write_fdatasync_newfiles_1m_qd1")
        );
        assert_eq!(
            fair_limit_key("append_1m_always_x4", true).as_deref(),
            Some("raw_write_fdatasync_4m_qd1")
        );
        assert!(Bound::AtLeast(0.9).holds(0.95) && !Bound::AtLeast(0.9).holds(0.85));
        assert!(Bound::AtMost(2.0).holds(1.5) && !Bound::AtMost(2.0).holds(2.5));
        assert_eq!(Bound::AtLeast(0.5).describe(), "≥ 50%");
        assert_eq!(Bound::AtMost(2.0).describe(), "≤ 2×");
    }
}
