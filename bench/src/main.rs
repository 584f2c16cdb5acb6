//! `keel-bench`: command-line front end of the keel-bench library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use keel_bench::engine::{self, append::LogSettings, EngineBenchConfig};
use keel_bench::limits::{self, LimitsConfig, ProbeSet};
use keel_bench::report;
use keel_bench::units::parse_bytes;

#[derive(Debug, Parser)]
#[command(
    name = "keel-bench",
    version,
    about = "keel benchmarks and machine limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the machine's limits: raw io_uring O_DIRECT sequential writes, fdatasync
    /// latency, loopback TCP throughput and round trip.
    Limits(LimitsArgs),
    /// The storage engine's benchmark (issue 3): keel-engine partitions driven directly on one
    /// pinned core, against the raw disk limit measured in the same run.
    Engine(EngineArgs),
    /// Redraw report.md and the plots of an engine run folder from its summary.json and
    /// .hdr files.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Probe {
    /// Sequential writes, every size at every queue depth.
    Write,
    /// Sequential write + fdatasync per block, queue depth 1, every size.
    WriteFsync,
    /// fdatasync latency distribution.
    Fsync,
    /// Loopback TCP throughput and 64-byte round trip.
    Loopback,
}

#[derive(Debug, Args)]
struct LimitsArgs {
    /// Directory for the probe files: put it on the disk the broker will use.
    #[arg(long)]
    dir: PathBuf,
    /// Block sizes of the sequential write probes (k, m suffixes; multiples of 4k).
    #[arg(long, value_delimiter = ',', value_parser = parse_bytes, default_value = "4k,16k,64k,1m")]
    sizes: Vec<usize>,
    /// Seconds each single probe runs.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Queue depths of the sequential write probes.
    #[arg(long = "queue-depth", value_delimiter = ',', default_value = "1,32")]
    queue_depth: Vec<usize>,
    /// Block written before each fdatasync in the latency probe.
    #[arg(long, value_parser = parse_bytes, default_value = "4k")]
    fsync_size: usize,
    /// Size of each preallocated probe file; writes wrap around inside it.
    #[arg(long, value_parser = parse_bytes, default_value = "1g")]
    file_size: usize,
    /// Which probes to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "write,write-fsync,fsync,loopback"
    )]
    probes: Vec<Probe>,
    /// Write the JSON summary here, with the raw HDR histograms (V2), a Markdown page and
    /// PNG plots next to it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a full report folder results/<date>_<gitsha>_<host>/ under this directory
    /// (command.txt, machine.json, limits.json and the files next to it).
    #[arg(long)]
    results: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EngineArgs {
    /// Scratch directory on the disk under test; a fresh directory is made and removed in it.
    #[arg(long)]
    dir: PathBuf,
    /// Measured seconds of every engine scenario and every raw probe.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Unrecorded warm-up seconds before each engine scenario.
    #[arg(long, default_value_t = 2.0)]
    warmup_seconds: f64,
    /// Measured seconds of each timed-storage breakdown run (default: half of --seconds).
    #[arg(long)]
    breakdown_seconds: Option<f64>,
    /// CPU to pin the engine's executor to.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// Leave the engine's executor unpinned.
    #[arg(long, conflicts_with = "cpu")]
    unpinned: bool,
    /// Size of each raw probe's preallocated file (writes wrap around inside it).
    #[arg(long, value_parser = parse_bytes, default_value = "1g")]
    file_size: usize,
    /// Bytes appended to the partition the read scenarios read.
    #[arg(long, value_parser = parse_bytes, default_value = "256m")]
    read_fill: usize,
    /// Segment size of the engine's partitions.
    #[arg(long, value_parser = parse_bytes, default_value = "1g")]
    segment_size: usize,
    /// Retention per partition: older segments are deleted, as a shard's ticker would, so a
    /// long run does not fill the disk.
    #[arg(long, value_parser = parse_bytes, default_value = "2g")]
    retention: usize,
    /// Batch cache of the append scenarios' shard.
    #[arg(long, value_parser = parse_bytes, default_value = "256m")]
    cache: usize,
    /// Run only these parts, for investigations: scenario names (append_1m_always_x1, ...,
    /// read_cache, read_disk), `raw` (the raw probes of the phases that run), `breakdown`.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Write a report folder results/<date>_<gitsha>_<host>/ under this directory.
    #[arg(long, required_unless_present = "out")]
    results: Option<PathBuf>,
    /// Write the report into this directory instead (created if missing).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// An engine run folder (holding summary.json).
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Limits(args) => run_limits(&args),
        Command::Engine(args) => run_engine(&args),
        Command::Report(args) => {
            log_written(&engine::files::regenerate(&args.dir)?);
            Ok(())
        }
    }
}

fn run_limits(args: &LimitsArgs) -> anyhow::Result<()> {
    let probe_duration = Duration::try_from_secs_f64(args.seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--seconds {} is not a positive duration", args.seconds))?;
    let config = LimitsConfig {
        dir: args.dir.clone(),
        block_sizes_bytes: args.sizes.clone(),
        queue_depths: args.queue_depth.clone(),
        probe_duration,
        fsync_block_bytes: args.fsync_size,
        file_bytes: args.file_size as u64,
        probes: ProbeSet {
            disk_write: args.probes.contains(&Probe::Write),
            disk_write_fsync_each: args.probes.contains(&Probe::WriteFsync),
            fsync_latency: args.probes.contains(&Probe::Fsync),
            loopback: args.probes.contains(&Probe::Loopback),
        },
    };
    let mut run = limits::run_limits(&config)?;
    if let Some(out) = &args.out {
        let written = run.write_files(out)?;
        log_written(&written);
    }
    if let Some(results_root) = &args.results {
        let run_dir = report::create_run_dir(results_root)?;
        let argv: Vec<String> = std::env::args().collect();
        let mut written = vec![report::write_command_txt(&run_dir, &argv)?];
        let machine_path = run_dir.join("machine.json");
        report::write_json(&machine_path, &run.report.machine)?;
        written.push(machine_path);
        written.extend(run.write_files(&run_dir.join("limits.json"))?);
        log_written(&written);
    }
    // The files written above embed the plots; the terminal gets the tables.
    println!("{}", run.report.to_markdown(&[]));
    Ok(())
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} {value} is not a positive duration"))
}

fn run_engine(args: &EngineArgs) -> anyhow::Result<()> {
    let duration = seconds(args.seconds, "--seconds")?;
    let config = EngineBenchConfig {
        dir: args.dir.clone(),
        duration,
        warmup: Duration::try_from_secs_f64(args.warmup_seconds)
            .with_context(|| format!("--warmup-seconds {}", args.warmup_seconds))?,
        breakdown_duration: match args.breakdown_seconds {
            Some(s) => seconds(s, "--breakdown-seconds")?,
            None => duration / 2,
        },
        cpu: (!args.unpinned).then_some(args.cpu),
        probe_file_bytes: args.file_size as u64,
        read_fill_bytes: args.read_fill,
        log: LogSettings {
            segment_bytes_max: args.segment_size as u64,
            retention_bytes: args.retention as u64,
            cache_bytes: args.cache,
        },
        only: args.only.clone(),
    };
    let run_dir = match (&args.out, &args.results) {
        (Some(out), _) => {
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            out.clone()
        }
        (None, Some(results)) => report::create_run_dir(results)?,
        (None, None) => anyhow::bail!("give --results or --out"),
    };
    let argv: Vec<String> = std::env::args().collect();
    let run = engine::run_engine_bench(&config, argv)?;
    log_written(&engine::files::write_run(&run_dir, &run)?);
    for check in run.summary.checks.iter().filter(|c| c.fair) {
        println!(
            "{:<24} {:<26} {:>10.2} {:<5} vs {:<40} {:>7.3} {}",
            check.scenario,
            check.what,
            check.figure,
            check.figure_unit,
            check.reference_label,
            check.fraction,
            if check.pass { "pass" } else { "short" }
        );
    }
    println!("report: {}", run_dir.join("report.md").display());
    Ok(())
}

fn log_written(paths: &[PathBuf]) {
    for path in paths {
        tracing::info!(path = %path.display(), "wrote");
    }
}
