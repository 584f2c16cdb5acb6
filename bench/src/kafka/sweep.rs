//! `keel-bench sweep`: the machine limits, then for each system its maximum rate and
//! fixed-rate latency runs at fractions of it, plus one run at a rate common to all systems.
//!
//! ```text
//!   limits (raw write at the batch size, fdatasync, loopback)
//!   for each system:  max-rate run                       -> max_i
//!   same_rate = 0.5 * min(max_i)
//!   for each system:  runs at 25, 50, 75, 90% of max_i, then one at same_rate
//! ```
//!
//! Every run starts its broker afresh (data dir emptied) when the system has a start command.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::broker::{RunningBroker, SystemSpec};
use super::client::resolve;
use super::run::{run, RunOutcome, RunSpec, RunSummary};
use super::summary::{SweepSummary, SystemResult, KIND};
use super::workload::Workload;
use crate::limits::{self, LimitsConfig, ProbeSet};
use crate::report::{git_ref, load_average, RunIdentity};

/// What a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub systems: Vec<SystemSpec>,
    pub workload: Workload,
    pub fractions: Vec<f64>,
    /// Where the limit probes write (the disk the brokers use).
    pub limits_dir: PathBuf,
    pub limits_seconds: f64,
    /// Where broker logs go.
    pub log_dir: PathBuf,
    pub progress: bool,
}

/// A finished sweep: the summary and every histogram, by file name.
#[derive(Debug)]
pub struct SweepRun {
    pub summary: SweepSummary,
    pub histograms: Vec<(String, Histogram<u64>)>,
}

/// Runs the whole sweep.
pub fn run_sweep(config: &SweepConfig, command: Vec<String>) -> anyhow::Result<SweepRun> {
    anyhow::ensure!(!config.systems.is_empty(), "name at least one --system");
    for system in &config.systems {
        resolve(&system.bootstrap).with_context(|| format!("system {}", system.name))?;
    }
    let started_at_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load_average_start = load_average();
    // The code measured is the code at the start (the tree may change during a long sweep).
    let git = git_ref(std::path::Path::new("."));
    let mut histograms = Vec::new();
    let (limits, fsync_histogram_file) = measure_limits(config, &mut histograms)?;
    let mut maxima = Vec::new();
    for system in &config.systems {
        let outcome = run_managed(config, system, "max", 0, &mut histograms)?;
        tracing::info!(
            system = system.name,
            msg_per_s = format!("{:.0}", outcome.acked_msg_per_s),
            mb_per_s = format!("{:.1}", outcome.acked_mb_per_s),
            "maximum rate"
        );
        maxima.push(outcome);
    }
    let same_rate = maxima
        .iter()
        .map(|m| m.acked_msg_per_s)
        .reduce(f64::min)
        .map(|least| (least * 0.5) as u64)
        .filter(|rate| *rate > 0 && config.systems.len() > 1);
    let mut systems = Vec::new();
    for (system, max) in config.systems.iter().zip(maxima) {
        let mut fixed = Vec::new();
        for &fraction in &config.fractions {
            let rate = ((max.acked_msg_per_s * fraction) as u64).max(1);
            let label = format!("r{:.0}", fraction * 100.0);
            fixed.push(run_managed(config, system, &label, rate, &mut histograms)?);
        }
        let same = match same_rate {
            Some(rate) => Some(run_managed(config, system, "same", rate, &mut histograms)?),
            None => None,
        };
        systems.push(SystemResult {
            system: system.clone(),
            max,
            fixed,
            same_rate: same,
        });
    }
    let summary = SweepSummary {
        identity: RunIdentity {
            kind: KIND.to_owned(),
            keel_bench_version: env!("CARGO_PKG_VERSION").to_owned(),
            command,
            git,
            started_at_unix_s,
            machine: limits.machine.clone(),
        },
        load_average_start,
        load_average_end: load_average(),
        workload: config.workload.clone(),
        fractions: config.fractions.clone(),
        limits,
        fsync_histogram_file,
        systems,
        same_rate,
    };
    Ok(SweepRun {
        summary,
        histograms,
    })
}

/// The limits at the workload's write size: sequential O_DIRECT writes at QD1 and QD32, write
/// + fdatasync per block, fdatasync latency of 4 KiB writes, loopback.
fn measure_limits(
    config: &SweepConfig,
    histograms: &mut Vec<(String, Histogram<u64>)>,
) -> anyhow::Result<(limits::LimitsReport, Option<String>)> {
    let write_bytes = config.workload.batch_bytes.div_ceil(4096) * 4096;
    let mut sizes = vec![write_bytes];
    if write_bytes != 1 << 20 {
        sizes.push(1 << 20);
    }
    let probe_duration = Duration::try_from_secs_f64(config.limits_seconds)
        .context("--limits-seconds is not a duration")?;
    let limits_config = LimitsConfig {
        dir: config.limits_dir.clone(),
        block_sizes_bytes: sizes,
        queue_depths: vec![1, 32],
        probe_duration,
        fsync_block_bytes: 4096,
        file_bytes: 1 << 30,
        blocks: limits::Blocks::Reused,
        data: limits::Data::Same,
        probes: ProbeSet::ALL,
    };
    tracing::info!(dir = %config.limits_dir.display(), "measuring the machine's limits");
    // The probe directory is named relative to where the bench ran (limits::storage_info).
    let limits_run = limits::run_limits(&limits_config)?;
    let file = limits_run.fsync_histogram_us.map(|histogram| {
        let name = "limits_fdatasync_4k.hdr".to_owned();
        histograms.push((name.clone(), histogram));
        name
    });
    Ok((limits_run.report, file))
}

/// One run of `system` at `rate` (0 = max), its broker started before and stopped after.
fn run_managed(
    config: &SweepConfig,
    system: &SystemSpec,
    label: &str,
    rate: u64,
    histograms: &mut Vec<(String, Histogram<u64>)>,
) -> anyhow::Result<RunSummary> {
    let broker = RunningBroker::start(system, &config.log_dir)?;
    let spec = RunSpec {
        label: format!("{} {label}", system.name),
        bootstrap: resolve(&system.bootstrap)?,
        workload: Workload {
            rate,
            ..config.workload.clone()
        },
        rate,
        broker_pid: broker.as_ref().and_then(RunningBroker::pid),
        progress: config.progress,
        intervals: None,
    };
    tracing::info!(run = spec.label, rate, "starting run");
    let outcome = run(&spec);
    let outcome: RunOutcome = match (outcome, &broker) {
        (Ok(outcome), _) => outcome,
        (Err(error), Some(broker)) => {
            return Err(error.context(format!("broker log ends:\n{}", broker.log_tail())))
        }
        (Err(error), None) => return Err(error),
    };
    if let Some(broker) = broker {
        broker.stop()?;
    }
    let mut summary = outcome.summary;
    for (role, histogram) in outcome.histograms {
        let file = format!("{}_{label}_{role}.hdr", system.name);
        summary.histogram_files.push((role, file.clone()));
        histograms.push((file, histogram));
    }
    tracing::info!(
        run = spec.label,
        msg_per_s = format!("{:.0}", summary.acked_msg_per_s),
        p99_ms = format!("{:.2}", summary.produce_latency.p99_us / 1000.0),
        p99_9_ms = format!("{:.2}", summary.produce_latency.p99_9_us / 1000.0),
        errors = summary.produce_errors,
        "run done"
    );
    Ok(summary)
}
