//! Machine-limit probes: what this hardware can do at best, measured with the same kernel
//! interfaces keel uses, so that every benchmark can state its throughput as a fraction of it.
//!
//! One file per probe, each a plain function that other bench code can call in the same run:
//!
//! | probe | function | measures |
//! |---|---|---|
//! | `disk_write` | [`disk_write`] | io_uring O_DIRECT sequential writes, any block size and queue depth, optionally write+fdatasync per block |
//! | `fsync_latency` | [`fsync_latency`] | the latency of every fdatasync after an O_DIRECT block write |
//! | `loopback` | [`loopback_throughput`], [`loopback_rtt`] | 127.0.0.1 TCP streaming throughput and ping-pong round trips |
//! | `machine` | [`machine_info`] | CPU, cores, memory, kernel, file system and device of the probe directory |
//! | `disk_irq` | [`disk_interrupts`] | which CPU takes the completion interrupts of the disk under a directory |
//!
//! [`run_limits`] runs them all from a [`LimitsConfig`] (what `keel-bench limits` does), and
//! `summary` turns the result into the JSON, Markdown, HDR and PNG files of a report.

mod disk_irq;
mod disk_write;
mod fsync_latency;
mod loopback;
mod machine;
mod probe_file;
mod summary;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

pub use disk_irq::{default_pin_cpu, disk_interrupts, parse_interrupts, DiskInterrupts};
pub use disk_write::{
    disk_write, disk_write_with, Blocks, Data, DiskWriteParams, DiskWriteResult,
    DEFAULT_PROBE_FILE_BYTES, QUEUE_DEPTH_MAX,
};
pub use fsync_latency::{fsync_latency, fsync_latency_with, FSYNC_LATENCY_US_MAX};
pub use loopback::{
    loopback_rtt, loopback_throughput, LoopbackThroughput, RECEIVE_BUFFER_BYTES, RTT_MESSAGE_BYTES,
    RTT_NS_MAX, THROUGHPUT_CHUNK_BYTES,
};
pub use machine::{
    count_processors, find_mount, fs_magic_name, machine_info, parse_cpu_model,
    parse_mem_total_bytes, storage_info, MachineInfo, MountEntry, StorageInfo,
};
pub use probe_file::{AlignedBuf, DIRECT_IO_ALIGN_BYTES};
pub use summary::{LatencyProbe, LimitsReport, LimitsRun};

/// Which probes a limits run includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSet {
    /// Sequential writes for every block size and queue depth.
    pub disk_write: bool,
    /// Sequential write+fdatasync per block, queue depth 1, every block size.
    pub disk_write_fsync_each: bool,
    /// fdatasync latency distribution.
    pub fsync_latency: bool,
    /// Loopback TCP throughput and round trip.
    pub loopback: bool,
}

impl ProbeSet {
    pub const ALL: Self = Self {
        disk_write: true,
        disk_write_fsync_each: true,
        fsync_latency: true,
        loopback: true,
    };
}

/// What `keel-bench limits` runs.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Directory for the probe files; it should be on the disk the broker will use.
    pub dir: PathBuf,
    pub block_sizes_bytes: Vec<usize>,
    pub queue_depths: Vec<usize>,
    /// How long each single probe runs.
    pub probe_duration: Duration,
    /// Block size of the fdatasync latency probe.
    pub fsync_block_bytes: usize,
    /// Size of each preallocated probe file.
    pub file_bytes: u64,
    /// Where the sequential write probes' blocks come from.
    pub blocks: Blocks,
    /// What the sequential write probes' writes send.
    pub data: Data,
    pub probes: ProbeSet,
}

/// Runs every selected probe one after the other and collects the figures, the machine facts
/// and the raw histograms. Progress is logged with `tracing` at info level. The probe
/// directory is created if it does not exist yet, as the other benches create theirs.
pub fn run_limits(config: &LimitsConfig) -> anyhow::Result<LimitsRun> {
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("creating {}", config.dir.display()))?;
    let started_at_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = machine_info(&config.dir)?;
    let disk_write = run_disk_writes(config)?;
    let fsync_histogram_us = if config.probes.fsync_latency {
        let histogram = fsync_latency_with(
            &config.dir,
            config.fsync_block_bytes,
            config.probe_duration,
            config.file_bytes,
        )
        .context("fdatasync latency probe")?;
        Some(histogram)
    } else {
        None
    };
    let fsync_latency = fsync_histogram_us.as_ref().map(|histogram| {
        LatencyProbe::new("fdatasync", config.fsync_block_bytes, "us", histogram, 1.0)
    });
    if let Some(probe) = &fsync_latency {
        tracing::info!(summary = ?probe.latency, "fdatasync latency");
    }
    let (loopback_throughput, rtt_histogram_ns) = if config.probes.loopback {
        let throughput =
            loopback_throughput(config.probe_duration).context("loopback throughput probe")?;
        tracing::info!(gbit_per_s = throughput.gbit_per_s, "loopback throughput");
        let rtt = loopback_rtt(RTT_MESSAGE_BYTES, config.probe_duration)
            .context("loopback round-trip probe")?;
        (Some(throughput), Some(rtt))
    } else {
        (None, None)
    };
    let loopback_rtt = rtt_histogram_ns.as_ref().map(|histogram| {
        LatencyProbe::new(
            "loopback round trip",
            RTT_MESSAGE_BYTES,
            "ns",
            histogram,
            0.001,
        )
    });
    if let Some(probe) = &loopback_rtt {
        tracing::info!(summary = ?probe.latency, "loopback round trip");
    }
    let report = LimitsReport {
        keel_bench_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at_unix_s,
        probe_seconds: config.probe_duration.as_secs_f64(),
        machine,
        seq_write_mb_per_s_max: summary::seq_write_mb_per_s_max(&disk_write),
        disk_write,
        fsync_latency,
        loopback_throughput,
        loopback_rtt,
        histogram_files: Vec::new(),
    };
    Ok(LimitsRun {
        report,
        fsync_histogram_us,
        rtt_histogram_ns,
    })
}

/// The sequential write matrix: every size at every queue depth, then write+fdatasync at QD1.
/// One sequential write probe ([`disk_write_with`]), its figures logged, its error saying
/// which probe failed.
pub fn disk_write_logged(dir: &Path, params: &DiskWriteParams) -> anyhow::Result<DiskWriteResult> {
    let (block_bytes, queue_depth, fsync_each) =
        (params.block_bytes, params.queue_depth, params.fsync_each);
    let result = disk_write_with(dir, params).with_context(|| {
        format!("disk write probe: {block_bytes} bytes, QD{queue_depth}, fsync_each={fsync_each}")
    })?;
    tracing::info!(
        block_bytes,
        queue_depth,
        fsync_each,
        mb_per_s = format!("{:.0}", result.mb_per_s),
        iops = format!("{:.0}", result.iops),
        "sequential write"
    );
    Ok(result)
}

fn run_disk_writes(config: &LimitsConfig) -> anyhow::Result<Vec<DiskWriteResult>> {
    let mut plan: Vec<(usize, usize, bool)> = Vec::new();
    for &block_bytes in &config.block_sizes_bytes {
        if config.probes.disk_write {
            plan.extend(
                config
                    .queue_depths
                    .iter()
                    .map(|&qd| (block_bytes, qd, false)),
            );
        }
        if config.probes.disk_write_fsync_each {
            plan.push((block_bytes, 1, true));
        }
    }
    let mut results = Vec::with_capacity(plan.len());
    for (block_bytes, queue_depth, fsync_each) in plan {
        let params = DiskWriteParams {
            block_bytes,
            queue_depth,
            duration: config.probe_duration,
            fsync_each,
            file_bytes: config.file_bytes,
            blocks: config.blocks,
            data: config.data,
        };
        let result = disk_write_logged(&config.dir, &params)?;
        results.push(result);
    }
    Ok(results)
}
