//! `keel-bench engine`: the storage engine's benchmark report for issue 3, measured in one run
//! against the raw disk limit on the same file system.
//!
//! The engine is driven directly (`Partition<AnyStorage>`, no network) on one executor of the
//! chosen backend's runtime (`--io-backend`, glommio by default), pinned to one core. The run goes in phases, and each raw probe runs right before the
//! engine scenarios it is compared with, so a drifting machine (this disk sits on a host
//! write-back cache) moves both sides of a fraction together:
//!
//! ```text
//!   1 MiB    raw write 1 MiB QD1, QD32; write+fdatasync 1 MiB QD1, 4 MiB QD1
//!            engine 1 MiB: fsync always ×1, ×4 appenders; fsync never ×1, ×4      (a, d)
//!   16 KiB   raw write 16 KiB QD1, QD32; write+fdatasync 16 KiB QD1
//!            raw fdatasync latency 4 KiB, 16 KiB
//!            engine 16 KiB, 64 appenders over 8 partitions: fsync always, never   (b, d)
//!   reads    1 MiB reads at random offsets: from the batch cache, from disk      (c)
//!   where    CPU pieces per batch; the fsync-always scenarios on timed storage
//! ```
//!
//! Files: [`scenario`] (what runs, the executor), [`append`] and [`read`] (the loops),
//! [`breakdown`] with [`timed_storage`] (where the time goes), [`summary`] (figures and
//! checks), [`markdown`] and [`files`] (the report folder, and `keel-bench report DIR`).

pub mod append;
pub mod breakdown;
pub mod files;
pub mod markdown;
pub mod read;
pub mod scenario;
pub mod summary;
pub mod thread_sched;
pub mod timed_storage;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use keel_engine::storage::{AnyStorage, BackendOptions, IoBackend};
use keel_engine::{EngineConfig, FsyncPolicy};

use crate::histogram::LatencySummary;
use crate::limits::{self, Blocks, Data, DiskWriteParams};
use crate::report;
use append::{run_append, LogSettings};
use scenario::{append_scenarios, on_executor, read_scenarios, AppendScenario, ReadScenario};
use summary::{
    AppendFigures, Breakdown, EngineSummary, RawFsync, RawProbe, RawWrite, ReadFigures, Settings,
};

/// Everything `keel-bench engine` needs.
#[derive(Debug, Clone)]
pub struct EngineBenchConfig {
    /// A fresh directory is made (and removed) under it: put it on the disk under test.
    pub dir: PathBuf,
    /// Measured time of every engine scenario and every raw probe.
    pub duration: Duration,
    /// Unrecorded time before each engine scenario's window.
    pub warmup: Duration,
    /// Measured time of each timed-storage breakdown run.
    pub breakdown_duration: Duration,
    /// CPU to pin the engine's executor to; `None` leaves it unbound.
    pub cpu: Option<usize>,
    /// Size of the raw probes' preallocated files.
    pub probe_file_bytes: u64,
    /// Bytes appended before the read scenarios.
    pub read_fill_bytes: usize,
    pub log: LogSettings,
    /// The I/O backend the engine runs on (with its runtime), and its settings, parsed from
    /// `backend_spec` (`glommio`, `uring+fixed_buffers+fixed_files`, ...), which the report
    /// names.
    pub backend: IoBackend,
    pub backend_options: BackendOptions,
    pub backend_spec: String,
    /// Run only these parts (scenario names, `raw`, `breakdown`); `None` runs everything.
    /// For investigations: a partial run's report lacks the figures it skipped.
    pub only: Option<Vec<String>>,
}

impl EngineBenchConfig {
    /// The storage of the chosen backend, for the calling executor thread.
    ///
    /// # Errors
    /// The backend cannot be set up here (io_uring refused, say).
    pub fn storage(&self) -> anyhow::Result<AnyStorage> {
        AnyStorage::new(self.backend, &self.backend_options)
            .with_context(|| format!("setting up the {} backend", self.backend))
    }

    /// Whether the part named `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name))
    }
}

/// A finished run: the summary and the raw histograms it names, by file name.
#[derive(Debug)]
pub struct EngineRun {
    pub summary: EngineSummary,
    pub histograms: Vec<(String, Histogram<u64>)>,
}

/// Runs every phase and returns the figures. `command` is recorded as the exact argv.
pub fn run_engine_bench(
    config: &EngineBenchConfig,
    command: Vec<String>,
) -> anyhow::Result<EngineRun> {
    let started_at_unix_s = unix_now_s();
    let load_average_start = report::load_average();
    let scratch = config.dir.join(format!(
        "keel-engine-bench-{}-{started_at_unix_s}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let machine = limits::machine_info(&scratch)?;
    let result = run_phases(config, &scratch);
    let removed = std::fs::remove_dir_all(&scratch);
    let measured = result?;
    removed.with_context(|| format!("removing {}", scratch.display()))?;
    let mut summary = EngineSummary {
        keel_bench_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at_unix_s,
        finished_at_unix_s: unix_now_s(),
        command,
        git: report::git_ref(Path::new(".")),
        machine,
        load_average_start,
        load_average_end: report::load_average(),
        settings: settings(config),
        raw_writes: measured.raw_writes,
        raw_fdatasync: measured.raw_fdatasync,
        appends: measured.appends,
        reads: measured.reads,
        breakdown: measured.breakdown,
        checks: Vec::new(),
    };
    summary.checks = summary::compute_checks(&summary);
    Ok(EngineRun {
        summary,
        histograms: measured.histograms,
    })
}

fn settings(config: &EngineBenchConfig) -> Settings {
    let defaults = EngineConfig::new(&config.dir);
    Settings {
        seconds: config.duration.as_secs_f64(),
        warmup_seconds: config.warmup.as_secs_f64(),
        breakdown_seconds: config.breakdown_duration.as_secs_f64(),
        cpu: config.cpu,
        probe_file_bytes: config.probe_file_bytes,
        read_fill_bytes: config.read_fill_bytes,
        segment_bytes_max: config.log.segment_bytes_max,
        retention_bytes: config.log.retention_bytes,
        batch_cache_bytes: config.log.cache_bytes,
        write_bytes_max: defaults.write_bytes_max,
        append_queue_bytes_max: defaults.append_queue_bytes_max,
        io_memory_bytes: defaults.io_memory_bytes,
        io_backend: config.backend_spec.clone(),
        segment_spares_max: config.log.tuning.segment_spares_max,
    }
}

/// What the phases measured, before the run's facts are added.
#[derive(Debug)]
struct Measured {
    raw_writes: Vec<RawWrite>,
    raw_fdatasync: Vec<RawFsync>,
    appends: Vec<AppendFigures>,
    reads: Vec<ReadFigures>,
    breakdown: Breakdown,
    histograms: Vec<(String, Histogram<u64>)>,
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One batch size: the raw probes and then the engine scenarios compared with them.
struct Phase<'a> {
    batch_bytes: usize,
    raw: Vec<RawProbe>,
    scenarios: Vec<&'a AppendScenario>,
}

/// One pass of a phase's raw probes: the writes, then (16 KiB phase) fdatasync latency.
#[derive(Debug)]
struct RawPass {
    writes: Vec<limits::DiskWriteResult>,
    fsyncs: Vec<(usize, Histogram<u64>)>,
}

fn raw_pass(config: &EngineBenchConfig, scratch: &Path, phase: &Phase) -> anyhow::Result<RawPass> {
    let mut pass = RawPass {
        writes: Vec::new(),
        fsyncs: Vec::new(),
    };
    for p in &phase.raw {
        pass.writes.push(raw_write(config, scratch, *p)?);
    }
    if phase.batch_bytes == 16 << 10 {
        for block_bytes in [4 << 10, 16 << 10] {
            pass.fsyncs
                .push((block_bytes, raw_fsync(config, scratch, block_bytes)?));
        }
    }
    Ok(pass)
}

/// The phases, in order.
fn run_phases(config: &EngineBenchConfig, scratch: &Path) -> anyhow::Result<Measured> {
    let mut raw_writes = Vec::new();
    let mut appends = Vec::new();
    let mut histograms = Vec::new();
    let always = append_scenarios(FsyncPolicy::Always);
    let never = append_scenarios(FsyncPolicy::Never);
    let write_bytes_max = EngineConfig::new(scratch).write_bytes_max;
    let probe = |block_bytes, queue_depth, fsync_each, blocks| RawProbe {
        block_bytes,
        queue_depth,
        fsync_each,
        blocks,
        data: Data::Same,
    };
    // New files are the fair pattern (a log's segments); reused blocks are what earlier
    // reports and `limits` call the plain probes; unwritten blocks (zero-range) stay for
    // comparison with the reports before the new-files probe existed.
    let (reused, unwritten, new_files) = (Blocks::Reused, Blocks::Unwritten, Blocks::NewFiles);
    let phases = [
        Phase {
            batch_bytes: 1 << 20,
            raw: vec![
                probe(1 << 20, 1, false, reused),
                probe(1 << 20, 32, false, reused),
                probe(1 << 20, 1, true, reused),
                probe(1 << 20, 1, true, unwritten),
                probe(1 << 20, 1, false, new_files),
                probe(1 << 20, 1, true, new_files),
                probe(write_bytes_max, 1, true, new_files),
                // Recycled segments overwrite: the 4 appenders' fair limit is then this one.
                probe(write_bytes_max, 1, true, reused),
                // New data in every write, copied in first as the engine copies each batch:
                // what one appender's cycle costs without the engine (investigation, section 9).
                RawProbe {
                    data: Data::Fresh,
                    ..probe(1 << 20, 1, true, reused)
                },
            ],
            scenarios: vec![&always[0], &always[1], &never[0], &never[1]],
        },
        Phase {
            batch_bytes: 16 << 10,
            raw: vec![
                probe(16 << 10, 1, false, reused),
                probe(16 << 10, 32, false, reused),
                probe(16 << 10, 1, true, reused),
                probe(16 << 10, 32, false, new_files),
                probe(16 << 10, 1, true, new_files),
            ],
            scenarios: vec![&always[2], &never[2]],
        },
    ];
    let mut raw_fdatasync = Vec::new();
    for mut phase in phases {
        phase.scenarios.retain(|sc| config.runs(&sc.name));
        if phase.scenarios.is_empty() {
            continue;
        }
        if !config.runs("raw") {
            phase.raw.clear();
        }
        // The raw probes bracket the engine scenarios: before and after, so the drift of a
        // shared machine shows, and the limit is their mean.
        let before = raw_pass(config, scratch, &phase)?;
        for scenario in &phase.scenarios {
            let (figures, histogram) = engine_append(config, scratch, scenario)?;
            histograms.push((figures.histogram_file.clone(), histogram));
            appends.push(figures);
        }
        let after = raw_pass(config, scratch, &phase)?;
        for (b, a) in before.writes.into_iter().zip(after.writes) {
            raw_writes.push(RawWrite::new(phase.batch_bytes, b, Some(a)));
        }
        for ((block_bytes, b), (_, a)) in before.fsyncs.into_iter().zip(after.fsyncs) {
            let (probe, both) = RawFsync::new(block_bytes, &b, Some(&a))?;
            histograms.push((probe.histogram_file.clone(), both));
            raw_fdatasync.push(probe);
        }
    }
    for a in &mut appends {
        a.fractions = summary::fractions(&raw_writes, a.batch_bytes, a.mb_per_s);
    }
    let mut reads = Vec::new();
    for scenario in read_scenarios(config.read_fill_bytes) {
        if !config.runs(&scenario.name) {
            continue;
        }
        let (figures, histogram) = engine_read(config, scratch, &scenario)?;
        histograms.push((figures.histogram_file.clone(), histogram));
        reads.push(figures);
    }
    let breakdown = if config.runs("breakdown") {
        // fsync never too: its tail shows what a segment roll costs when nothing was synced.
        let timed = [&always[0], &always[1], &always[2], &never[0]];
        run_breakdown(config, scratch, &timed)?
    } else {
        Breakdown::default()
    };
    Ok(Measured {
        raw_writes,
        raw_fdatasync,
        appends,
        reads,
        breakdown,
        histograms,
    })
}

fn raw_write(
    config: &EngineBenchConfig,
    scratch: &Path,
    probe: RawProbe,
) -> anyhow::Result<limits::DiskWriteResult> {
    let params = DiskWriteParams {
        block_bytes: probe.block_bytes,
        queue_depth: probe.queue_depth,
        duration: config.duration,
        fsync_each: probe.fsync_each,
        file_bytes: config.probe_file_bytes,
        blocks: probe.blocks,
        data: probe.data,
    };
    let result = limits::disk_write_with(scratch, &params)
        .with_context(|| format!("{} probe", probe.label()))?;
    tracing::info!(
        probe = %probe.label(),
        mb_per_s = format!("{:.0}", result.mb_per_s),
        "raw sequential write"
    );
    Ok(result)
}

fn raw_fsync(
    config: &EngineBenchConfig,
    scratch: &Path,
    block_bytes: usize,
) -> anyhow::Result<Histogram<u64>> {
    let histogram = limits::fsync_latency_with(
        scratch,
        block_bytes,
        config.duration,
        config.probe_file_bytes,
    )
    .with_context(|| format!("fdatasync latency probe, {block_bytes} bytes"))?;
    tracing::info!(
        block_bytes,
        p99_us = histogram.value_at_quantile(0.99),
        "raw fdatasync latency"
    );
    Ok(histogram)
}

/// Runs `fut_gen`'s future on the engine's executor in a fresh directory `scratch/name`,
/// removed afterwards.
fn in_fresh_dir<G, F, T>(
    config: &EngineBenchConfig,
    scratch: &Path,
    name: &str,
    fut_gen: G,
) -> anyhow::Result<T>
where
    G: FnOnce(PathBuf) -> F + Send + 'static,
    F: std::future::Future<Output = anyhow::Result<T>> + 'static,
    T: Send + 'static,
{
    let dir = scratch.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let run_dir = dir.clone();
    let result = on_executor(config.backend.runtime(), config.cpu, move || {
        fut_gen(run_dir)
    });
    let removed = std::fs::remove_dir_all(&dir);
    let value = result?;
    removed.with_context(|| format!("removing {}", dir.display()))?;
    Ok(value)
}

/// One append scenario; its fractions of the raw limits are filled in once both passes ran.
fn engine_append(
    config: &EngineBenchConfig,
    scratch: &Path,
    scenario: &AppendScenario,
) -> anyhow::Result<(AppendFigures, Histogram<u64>)> {
    let (sc, log) = (scenario.clone(), config.log.clone());
    let (warmup, duration) = (config.warmup, config.duration);
    let c = config.clone();
    let m = in_fresh_dir(config, scratch, &scenario.name, move |dir| async move {
        run_append(c.storage()?, &dir, &sc, warmup, duration, &log).await
    })?;
    let mb_per_s = m.mb_per_s();
    let figures = AppendFigures {
        name: scenario.name.clone(),
        title: scenario.title(),
        batch_bytes: scenario.batch_bytes,
        partitions: scenario.partitions,
        appenders: scenario.appenders(),
        fsync: scenario.fsync.to_string(),
        appends: m.appends,
        bytes: m.bytes,
        elapsed_s: m.elapsed.as_secs_f64(),
        mb_per_s,
        latency: LatencySummary::from_histogram(&m.histogram_us, 1.0),
        histogram_file: format!("{}.hdr", scenario.name),
        segments_deleted: m.segments_deleted,
        executor_on_cpu_fraction: m.executor.map(|e| e.on_cpu_fraction),
        executor_runqueue_fraction: m.executor.map(|e| e.runqueue_fraction),
        io_workers_on_cpu_fraction: m.executor.map(|e| e.io_workers_on_cpu_fraction),
        executor_user_fraction: m.executor.map(|e| e.user_fraction),
        executor_system_fraction: m.executor.map(|e| e.system_fraction),
        minor_faults_per_append: m
            .executor
            .map(|e| e.minor_faults as f64 / m.appends.max(1) as f64),
        fractions: Vec::new(),
    };
    tracing::info!(
        scenario = %scenario.name,
        mb_per_s = format!("{mb_per_s:.0}"),
        p99_us = figures.latency.p99_us,
        "engine append"
    );
    Ok((figures, m.histogram_us))
}

fn engine_read(
    config: &EngineBenchConfig,
    scratch: &Path,
    scenario: &ReadScenario,
) -> anyhow::Result<(ReadFigures, Histogram<u64>)> {
    let (sc, log) = (scenario.clone(), config.log.clone());
    let (warmup, duration) = (config.warmup, config.duration);
    let c = config.clone();
    let m = in_fresh_dir(config, scratch, &scenario.name, move |dir| async move {
        read::run_read(c.storage()?, &dir, &sc, warmup, duration, &log).await
    })?;
    let figures = ReadFigures {
        name: scenario.name.clone(),
        cache_bytes: scenario.cache_bytes,
        filled_bytes: m.filled_bytes,
        batch_bytes: scenario.batch_bytes,
        read_bytes: scenario.read_bytes,
        reads: m.reads,
        bytes: m.bytes,
        elapsed_s: m.elapsed.as_secs_f64(),
        gb_per_s: m.gb_per_s(),
        reads_per_s: m.reads as f64 / m.elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        latency: LatencySummary::from_histogram(&m.histogram_ns, 0.001),
        histogram_file: format!("{}.hdr", scenario.name),
    };
    tracing::info!(
        scenario = %scenario.name,
        gb_per_s = format!("{:.2}", figures.gb_per_s),
        "engine read"
    );
    Ok((figures, m.histogram_ns))
}

fn run_breakdown(
    config: &EngineBenchConfig,
    scratch: &Path,
    timed: &[&AppendScenario],
) -> anyhow::Result<Breakdown> {
    let budget = (config.breakdown_duration / 8).min(Duration::from_millis(500));
    let c = config.clone();
    let cpu = in_fresh_dir(config, scratch, "cpu_pieces", move |dir| async move {
        let storage = c.storage()?;
        let mut pieces = Vec::new();
        for batch_bytes in [16 << 10, 1 << 20, 4 << 20] {
            pieces.push(breakdown::cpu_pieces(&storage, &dir, batch_bytes, budget).await?);
        }
        Ok(pieces)
    })?;
    let (warmup, duration) = (config.warmup, config.breakdown_duration);
    let mut floors = Vec::new();
    for (files, block_bytes) in [(1, 1 << 20), (1, 4 << 20), (8, 16 << 10)] {
        let name = format!("floor_{files}_{block_bytes}");
        let c = config.clone();
        let floor = in_fresh_dir(config, scratch, &name, move |dir| async move {
            breakdown::storage_floor(c.storage()?, &dir, files, block_bytes, warmup, duration).await
        })?;
        tracing::info!(floor = %floor.key, mb_per_s = format!("{:.0}", floor.mb_per_s), "storage floor");
        floors.push(floor);
    }
    let mut io = Vec::new();
    for scenario in timed {
        let (sc, log) = (AppendScenario::clone(scenario), config.log.clone());
        let name = format!("timed_{}", scenario.name);
        let c = config.clone();
        let b = in_fresh_dir(config, scratch, &name, move |dir| async move {
            breakdown::io_breakdown(c.storage()?, &dir, &sc, warmup, duration, &log).await
        })?;
        tracing::info!(scenario = %scenario.name, busy = b.log_io_busy_fraction, "breakdown");
        io.push(b);
    }
    Ok(Breakdown { cpu, io, floors })
}
