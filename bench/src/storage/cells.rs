//! Running one cell: the engine alone on one executor of the backend's runtime, or the keel
//! broker started with the cell's flags and loaded over the Kafka protocol.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use keel_engine::storage::AnyStorage;
use keel_engine::FsyncPolicy;

use super::cpu::CpuSample;
use super::matrix::{BrokerPart, Cell, EnginePart};
use super::summary::CellRun;
use crate::engine::append::{run_append, LogSettings, Tuning};
use crate::engine::scenario::{on_executor, AppendScenario};
use crate::histogram::LatencySummary;
use crate::kafka::broker::{RunningBroker, SystemSpec};
use crate::kafka::run::{run, RunSpec};
use crate::kafka::workload::Workload;

/// What a cell needs besides its settings.
#[derive(Debug, Clone)]
pub struct CellContext {
    /// Scratch directory on the disk under test (a fresh subdirectory per cell).
    pub scratch: PathBuf,
    /// The engine executor's CPU, if pinned.
    pub cpu: Option<usize>,
    /// The keel binary (broker cells).
    pub keel: Option<String>,
    /// Where broker logs go.
    pub log_dir: PathBuf,
}

/// One pass of one cell: its figures and its latency histogram (µs).
pub type CellOutcome = (CellRun, Option<Histogram<u64>>);

fn seconds(value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{value} is not a duration"))
}

/// Runs an engine cell: the baseline's scenario shape with the cell's settings.
pub fn run_engine_cell(
    ctx: &CellContext,
    part: &EnginePart,
    cell: &Cell,
    pass: usize,
) -> anyhow::Result<CellOutcome> {
    let s = &cell.settings;
    let (backend, mut options) = s.backend()?;
    let fsync = s.fsync_policy()?;
    // As the shard does: a linked fdatasync after every write only pays when every write is
    // synced.
    options.uring.linked_sync &= fsync == FsyncPolicy::Always;
    let batch_bytes = s.batch_bytes.map_or(part.batch_bytes.0, |b| b.0);
    let mut scenario = AppendScenario::new(
        usize::try_from(batch_bytes)?,
        part.partitions,
        part.appenders_per_partition,
        fsync,
    );
    scenario.name.clone_from(&cell.key);
    let log = LogSettings {
        segment_bytes_max: s.segment_bytes_max.0,
        retention_bytes: part.retention_bytes.0,
        cache_bytes: usize::try_from(s.batch_cache_bytes_max.0)?,
        tuning: Tuning {
            write_bytes_max: usize::try_from(s.write_bytes_max.0)?,
            preallocate_bytes: s.preallocate_bytes.0,
            group_commit: s.group_commit,
            ..Tuning::default()
        },
    };
    let (warmup, duration) = (seconds(part.warmup_seconds)?, seconds(part.seconds)?);
    let dir = ctx.scratch.join(format!("{}-{pass}", cell.key));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let run_dir = dir.clone();
    let result = on_executor(backend.runtime(), ctx.cpu, move || async move {
        let storage = AnyStorage::new(backend, &options)
            .with_context(|| format!("setting up the {backend} backend"))?;
        run_append(storage, &run_dir, &scenario, warmup, duration, &log).await
    });
    let removed = std::fs::remove_dir_all(&dir);
    let m = result?;
    removed.with_context(|| format!("removing {}", dir.display()))?;
    let cpu = m.cpu.as_ref().map(|(start, end)| start.until(end));
    let figures = CellRun {
        pass,
        started_at_unix_s: super::unix_now_s(),
        error: None,
        mb_per_s: m.mb_per_s(),
        bytes: m.bytes,
        window_s: m.elapsed.as_secs_f64(),
        latency: Some(LatencySummary::from_histogram(&m.histogram_us, 1.0)),
        cpu,
        broker_window_cpu_s: None,
        executor_on_cpu_fraction: m.executor.map(|e| e.on_cpu_fraction),
        executor_runqueue_fraction: m.executor.map(|e| e.runqueue_fraction),
        produce_errors: None,
        segments_deleted: Some(m.segments_deleted),
    };
    Ok((figures, Some(m.histogram_us)))
}

/// A loopback port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The command that starts keel for a cell.
pub fn broker_command(
    keel: &str,
    part: &BrokerPart,
    cell: &Cell,
    port: u16,
) -> anyhow::Result<String> {
    let mut args = vec![
        keel.to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--data-dir".to_owned(),
        "{data_dir}".to_owned(),
    ];
    args.extend(cell.settings.broker_flags()?);
    args.extend(part.extra_args.iter().cloned());
    Ok(args
        .iter()
        .map(|a| crate::report::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Runs a broker cell: keel started afresh with the cell's flags on an empty data dir, the
/// Kafka workload with the cell's batch size and linger at the maximum rate, keel stopped.
pub fn run_broker_cell(
    ctx: &CellContext,
    part: &BrokerPart,
    cell: &Cell,
    pass: usize,
) -> anyhow::Result<CellOutcome> {
    let keel = ctx
        .keel
        .as_deref()
        .context("broker cells need the keel binary (--keel)")?;
    let port = free_port()?;
    let system = SystemSpec {
        name: "keel".to_owned(),
        bootstrap: format!("127.0.0.1:{port}"),
        start: Some(broker_command(keel, part, cell, port)?),
        data_dir: Some(ctx.scratch.join("broker-data")),
    };
    let s = &cell.settings;
    let mut workload = Workload {
        duration_s: part.seconds,
        warmup_s: part.warmup_seconds,
        rate: 0,
        ..part.workload.clone()
    };
    if let Some(b) = s.batch_bytes {
        workload.batch_bytes = usize::try_from(b.0)?;
    }
    if let Some(l) = s.linger_ms {
        workload.linger_ms = l;
    }
    let broker = RunningBroker::start(&system, &ctx.log_dir)?
        .context("the broker cell has a start command, so a broker must have started")?;
    let pid = broker.pid();
    let cpu_start = pid.and_then(CpuSample::of_process);
    let spec = RunSpec {
        label: cell.key.clone(),
        bootstrap: crate::kafka::client::resolve(&system.bootstrap)?,
        rate: 0,
        workload,
        broker_pid: pid,
        progress: false,
        intervals: None,
    };
    let outcome =
        run(&spec).map_err(|e| e.context(format!("broker log ends:\n{}", broker.log_tail())))?;
    let cpu_end = pid.and_then(CpuSample::of_process);
    broker.stop()?;
    let s = outcome.summary;
    let histogram = outcome
        .histograms
        .into_iter()
        .find(|(role, _)| role == "produce")
        .map(|(_, h)| h);
    let figures = CellRun {
        pass,
        started_at_unix_s: super::unix_now_s(),
        error: s.first_error.clone().filter(|_| s.produce_errors > 0),
        mb_per_s: s.acked_mb_per_s,
        bytes: (s.acked_mb_per_s * s.window_s * 1e6) as u64,
        window_s: s.window_s,
        latency: Some(s.produce_latency.clone()),
        cpu: cpu_start.zip(cpu_end).map(|(a, b)| a.until(&b)),
        broker_window_cpu_s: s.broker_cpu_s,
        executor_on_cpu_fraction: None,
        executor_runqueue_fraction: None,
        produce_errors: Some(s.produce_errors),
        segments_deleted: None,
    };
    Ok((figures, histogram))
}

/// A failed pass of a cell, kept in the report with its cause.
pub fn failed_run(pass: usize, error: &anyhow::Error) -> CellRun {
    CellRun {
        pass,
        started_at_unix_s: super::unix_now_s(),
        error: Some(format!("{error:#}")),
        mb_per_s: 0.0,
        bytes: 0,
        window_s: 0.0,
        latency: None,
        cpu: None,
        broker_window_cpu_s: None,
        executor_on_cpu_fraction: None,
        executor_runqueue_fraction: None,
        produce_errors: None,
        segments_deleted: None,
    }
}
