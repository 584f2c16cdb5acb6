//! `keel-bench`: command-line front end of the keel-bench library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use keel_bench::engine::{self, append::LogSettings, EngineBenchConfig};
use keel_bench::kafka::{self, broker, workload::Workload};
use keel_bench::limits::{self, LimitsConfig, ProbeSet};
use keel_bench::report;
use keel_bench::soak;
use keel_bench::storage::{self, matrix::StorageWorkload, matrix::Target};
use keel_bench::units::parse_bytes;

/// The broker's allocator below its lazy-reservation size, so that the engine is measured as
/// the broker runs it (see `keel_server::alloc`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// One Kafka workload against one broker (any Kafka-compatible bootstrap address).
    Run(RunArgs),
    /// The machine limits, then per system its maximum rate and fixed-rate latency runs at
    /// fractions of it, and one run at a rate common to all: the report of issue 6.
    Sweep(SweepArgs),
    /// A long mixed load (produce, tailing fetch, a consumer group, admin) against a keel it
    /// starts, with retention deleting segments: RSS, open files and latency over time (issue 7).
    Soak(SoakArgs),
    /// A matrix of storage settings (issue 8), one axis at a time around a baseline, against
    /// the engine alone and the keel broker, with the raw disk limit of the same run.
    Storage(StorageArgs),
    /// Redraw report.md and the plots of a run folder (engine, sweep, soak or storage) from
    /// its summary.json and raw data.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct SystemArgs {
    /// A system to measure, NAME=HOST:PORT (repeat for each; the system named `keel` gets the
    /// issue's target checks, against the first system whose name does not start with `keel`).
    #[arg(long = "system", required = true)]
    systems: Vec<String>,
    /// NAME=COMMAND that starts the system (run with sh -c; `{data_dir}` is replaced). With
    /// it, keel-bench starts the broker before each run and stops it (SIGTERM) after.
    #[arg(long = "start")]
    starts: Vec<String>,
    /// NAME=DIR, the system's data directory: emptied before each start and after each stop.
    #[arg(long = "data-dir")]
    data_dirs: Vec<String>,
    /// Directory for the started brokers' logs (default: the report folder).
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Workload file (TOML, see bench/workloads/).
    #[arg(long)]
    workload: PathBuf,
    /// Override the workload's rate (messages/s over all producers; 0 = max rate).
    #[arg(long)]
    rate: Option<u64>,
    /// Override the workload's measured seconds.
    #[arg(long)]
    seconds: Option<f64>,
    #[command(flatten)]
    systems: SystemArgs,
    /// Write the summary JSON and the histograms into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SweepArgs {
    /// Workload file (TOML); its rate is ignored (the sweep sets it).
    #[arg(long)]
    workload: PathBuf,
    /// Override the workload's measured seconds per run.
    #[arg(long)]
    seconds: Option<f64>,
    /// Fractions of each system's maximum rate for the fixed-rate runs.
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75,0.9")]
    fractions: Vec<f64>,
    #[command(flatten)]
    systems: SystemArgs,
    /// Directory for the limit probes' files: on the disk the brokers use.
    #[arg(long)]
    limits_dir: PathBuf,
    /// Seconds of each limit probe.
    #[arg(long, default_value_t = 5.0)]
    limits_seconds: f64,
    /// Write a report folder results/<date>_<gitsha>_<host>/ under this directory.
    #[arg(long, required_unless_present = "out")]
    results: Option<PathBuf>,
    /// Write the report into this directory instead (created if missing).
    #[arg(long)]
    out: Option<PathBuf>,
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

/// `limits::Blocks` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BlocksArg {
    /// One preallocated file, overwritten after its first pass.
    Reused,
    /// One preallocated file, its chunk after next turned back into unwritten extents.
    Unwritten,
    /// New files grown by fallocate ahead of the writes, older ones deleted, as a log's
    /// segments.
    NewFiles,
}

/// What the sequential write probes send (`limits::Data`).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DataArg {
    /// Each slot sends its one buffer, written once before the run.
    Same,
    /// Each write copies its block into the next buffer of a 256 MiB pool first, as a log
    /// copies each batch into its write buffer.
    Fresh,
}

impl From<DataArg> for limits::Data {
    fn from(arg: DataArg) -> Self {
        match arg {
            DataArg::Same => limits::Data::Same,
            DataArg::Fresh => limits::Data::Fresh,
        }
    }
}

impl From<BlocksArg> for limits::Blocks {
    fn from(arg: BlocksArg) -> Self {
        match arg {
            BlocksArg::Reused => limits::Blocks::Reused,
            BlocksArg::Unwritten => limits::Blocks::Unwritten,
            BlocksArg::NewFiles => limits::Blocks::NewFiles,
        }
    }
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
    /// Where the sequential write probes' blocks come from.
    #[arg(long, value_enum, default_value_t = BlocksArg::Reused)]
    blocks: BlocksArg,
    /// What the sequential write probes' writes send.
    #[arg(long, value_enum, default_value_t = DataArg::Same)]
    data: DataArg,
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
    /// CPU to pin the engine's executor to (default: the CPU that takes the completion
    /// interrupts of the disk under --dir, else 0; see bench/src/limits/disk_irq.rs).
    #[arg(long)]
    cpu: Option<usize>,
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
    /// Deleted segments each partition keeps and reuses as new segments (the engine's
    /// segment_spares_max; its default, 0, deletes them).
    #[arg(long, default_value_t = keel_engine::EngineConfig::new(".").segment_spares_max)]
    segment_spares: usize,
    /// I/O backend the engine runs on, with its options as in the storage matrix: glommio
    /// (glommio's executor and DMA files), uring (the poll runtime and a ring per shard; options
    /// fixed_buffers, fixed_files, sqpoll, linked_sync) or pwrite (buffered, direct); for
    /// example `uring+fixed_buffers+fixed_files`.
    #[arg(long, default_value_t = keel_engine::storage::IoBackend::default().to_string())]
    io_backend: String,
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
struct SoakArgs {
    /// Settings file (TOML, see bench/workloads/soak-30min.toml).
    #[arg(long)]
    config: PathBuf,
    /// Override the load's seconds (the workload's duration_s).
    #[arg(long)]
    seconds: Option<f64>,
    /// Override the seconds the flatness checks skip at the start.
    #[arg(long)]
    warmup_seconds: Option<f64>,
    /// The keel binary to start.
    #[arg(long, default_value = "target/release/keel")]
    keel: PathBuf,
    /// The broker's data directory: emptied at the start, removed at the end.
    #[arg(long, default_value = "target/soak-data")]
    data_dir: PathBuf,
    /// Address for the broker (default: a free port on 127.0.0.1).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// One more flag for keel, after the settings file's (repeat for each; give it as
    /// `--broker-arg=--batch-cache-bytes-max=8388608`).
    #[arg(long = "broker-arg", allow_hyphen_values = true)]
    broker_args: Vec<String>,
    /// Write a report folder results/<date>_<gitsha>_<host>_soak/ under this directory.
    #[arg(long, required_unless_present = "out")]
    results: Option<PathBuf>,
    /// Write the report into this directory instead (created if missing).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct StorageArgs {
    /// Storage workload file (TOML, see bench/workloads/storage-*.toml).
    #[arg(long)]
    workload: PathBuf,
    /// Scratch directory on the disk under test (engine cells, broker data, raw probes); a
    /// fresh directory is made and removed in it.
    #[arg(long)]
    dir: PathBuf,
    /// The keel binary the broker cells start.
    #[arg(long, default_value = "target/release/keel")]
    keel: String,
    /// CPU to pin the engine cells' executor to (default: the CPU that takes the completion
    /// interrupts of the disk under --dir, else 0).
    #[arg(long)]
    cpu: Option<usize>,
    /// Leave the engine cells' executor unpinned.
    #[arg(long, conflicts_with = "cpu")]
    unpinned: bool,
    /// Run only the engine or only the broker cells.
    #[arg(long, value_parser = ["engine", "broker"])]
    only: Option<String>,
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
        Command::Run(args) => run_one(&args),
        Command::Sweep(args) => run_sweep(&args),
        Command::Soak(args) => run_soak(&args),
        Command::Storage(args) => run_storage(&args),
        Command::Report(args) => {
            let written = if soak::files::is_soak_dir(&args.dir) {
                soak::files::regenerate(&args.dir)?
            } else if storage::files::is_storage_dir(&args.dir) {
                storage::files::regenerate(&args.dir)?
            } else if kafka::files::is_sweep_dir(&args.dir) {
                kafka::files::regenerate(&args.dir)?
            } else {
                engine::files::regenerate(&args.dir)?
            };
            log_written(&written);
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
        blocks: args.blocks.into(),
        data: args.data.into(),
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
    let (backend, backend_options) = storage::matrix::parse_backend(&args.io_backend)
        .with_context(|| format!("--io-backend {}", args.io_backend))?;
    let config = EngineBenchConfig {
        dir: args.dir.clone(),
        duration,
        warmup: Duration::try_from_secs_f64(args.warmup_seconds)
            .with_context(|| format!("--warmup-seconds {}", args.warmup_seconds))?,
        breakdown_duration: match args.breakdown_seconds {
            Some(s) => seconds(s, "--breakdown-seconds")?,
            None => duration / 2,
        },
        cpu: (!args.unpinned).then(|| {
            args.cpu
                .unwrap_or_else(|| limits::default_pin_cpu(&args.dir))
        }),
        probe_file_bytes: args.file_size as u64,
        read_fill_bytes: args.read_fill,
        log: LogSettings {
            segment_bytes_max: args.segment_size as u64,
            retention_bytes: args.retention as u64,
            cache_bytes: args.cache,
            tuning: engine::append::Tuning {
                segment_spares_max: args.segment_spares,
                ..engine::append::Tuning::default()
            },
        },
        backend,
        backend_options,
        backend_spec: args.io_backend.clone(),
        only: args.only.clone(),
    };
    let run_dir = run_dir(args.out.as_ref(), args.results.as_ref())?;
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

fn load_workload(path: &std::path::Path, seconds: Option<f64>) -> anyhow::Result<Workload> {
    let mut workload = Workload::load(path)?;
    if let Some(seconds) = seconds {
        workload.duration_s = seconds;
    }
    workload.check()?;
    Ok(workload)
}

fn run_one(args: &RunArgs) -> anyhow::Result<()> {
    let mut workload = load_workload(&args.workload, args.seconds)?;
    if let Some(rate) = args.rate {
        workload.rate = rate;
    }
    let systems = broker::systems_from_args(
        &args.systems.systems,
        &args.systems.starts,
        &args.systems.data_dirs,
    )?;
    let log_dir = args
        .systems
        .log_dir
        .clone()
        .or_else(|| args.out.clone())
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&log_dir)?;
    for system in systems {
        let running = broker::RunningBroker::start(&system, &log_dir)?;
        let spec = kafka::run::RunSpec {
            label: system.name.clone(),
            bootstrap: kafka::client::resolve(&system.bootstrap)?,
            workload: workload.clone(),
            rate: workload.rate,
            broker_pid: running.as_ref().and_then(broker::RunningBroker::pid),
            progress: true,
            intervals: None,
        };
        let outcome = kafka::run::run(&spec)?;
        if let Some(running) = running {
            running.stop()?;
        }
        let s = &outcome.summary;
        println!(
            "{}: {:.0} msg/s, {:.1} MB/s acked; produce p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms \
             (uncorrected p99 {:.2}); e2e p99 {}; errors {}, late {}; bench CPU {:.2} cores",
            s.label,
            s.acked_msg_per_s,
            s.acked_mb_per_s,
            s.produce_latency.p50_us / 1e3,
            s.produce_latency.p99_us / 1e3,
            s.produce_latency.p99_9_us / 1e3,
            s.produce_latency.max_us / 1e3,
            s.produce_latency_uncorrected.p99_us / 1e3,
            s.e2e_latency
                .as_ref()
                .map_or("-".to_owned(), |e| format!("{:.2} ms", e.p99_us / 1e3)),
            s.produce_errors,
            s.unsent_at_end,
            s.bench_cpu_s / s.window_s.max(1e-9),
        );
        if let Some(out) = &args.out {
            std::fs::create_dir_all(out)?;
            let mut summary = outcome.summary.clone();
            for (role, histogram) in &outcome.histograms {
                let file = format!("{}_{role}.hdr", system.name);
                keel_bench::histogram::save_v2(histogram, &out.join(&file))?;
                summary.histogram_files.push((role.clone(), file));
            }
            report::write_json(&out.join(format!("{}.json", system.name)), &summary)?;
        }
    }
    Ok(())
}

fn run_sweep(args: &SweepArgs) -> anyhow::Result<()> {
    let workload = load_workload(&args.workload, args.seconds)?;
    let systems = broker::systems_from_args(
        &args.systems.systems,
        &args.systems.starts,
        &args.systems.data_dirs,
    )?;
    let run_dir = run_dir(args.out.as_ref(), args.results.as_ref())?;
    let log_dir = args
        .systems
        .log_dir
        .clone()
        .unwrap_or_else(|| run_dir.join("logs"));
    std::fs::create_dir_all(&log_dir)?;
    let config = kafka::sweep::SweepConfig {
        systems,
        workload,
        fractions: args.fractions.clone(),
        limits_dir: args.limits_dir.clone(),
        limits_seconds: args.limits_seconds,
        log_dir,
        progress: true,
    };
    let argv: Vec<String> = std::env::args().collect();
    let run = kafka::sweep::run_sweep(&config, argv)?;
    log_written(&kafka::files::write_sweep(&run_dir, &run)?);
    for check in run.summary.checks() {
        println!(
            "{:<60} {:<40} {:<14} {}",
            check.what,
            check.figure,
            check.target,
            if check.pass { "met" } else { "short" }
        );
    }
    println!("report: {}", run_dir.join("report.md").display());
    Ok(())
}

fn run_soak(args: &SoakArgs) -> anyhow::Result<()> {
    let mut config = soak::config::SoakConfig::load(&args.config)?;
    if let Some(seconds) = args.seconds {
        config.workload.duration_s = seconds;
    }
    if let Some(seconds) = args.warmup_seconds {
        config.report.warmup_s = seconds;
    }
    config
        .broker
        .extra_args
        .extend(args.broker_args.iter().cloned());
    config.check()?;
    let run_dir = match (&args.out, &args.results) {
        (None, Some(results)) => {
            report::create_run_dir_with_suffix(results, soak::files::DIR_SUFFIX)?
        }
        (out, results) => run_dir(out.as_ref(), results.as_ref())?,
    };
    let options = soak::SoakOptions {
        keel: args.keel.clone(),
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        command: std::env::args().collect(),
        progress: true,
    };
    let run = soak::run_soak(&config, &options, &run_dir)?;
    log_written(&soak::files::write_soak(&run_dir, &run)?);
    for check in &run.summary.analysis.checks {
        println!(
            "{:<50} {:<44} {}",
            check.what,
            check.figure,
            if check.pass { "pass" } else { "FAIL" }
        );
    }
    println!(
        "{}; report: {}",
        if run.summary.analysis.flat {
            "flat"
        } else {
            "NOT flat"
        },
        run_dir.join("report.md").display()
    );
    Ok(())
}

fn run_storage(args: &StorageArgs) -> anyhow::Result<()> {
    let workload = StorageWorkload::load(&args.workload)?;
    let config = storage::StorageBenchConfig {
        workload,
        workload_file: args.workload.display().to_string(),
        dir: args.dir.clone(),
        cpu: (!args.unpinned).then(|| {
            args.cpu
                .unwrap_or_else(|| limits::default_pin_cpu(&args.dir))
        }),
        keel: Some(args.keel.clone()),
        only: args.only.as_deref().map(|t| match t {
            "broker" => Target::Broker,
            _ => Target::Engine,
        }),
    };
    let run_dir = run_dir(args.out.as_ref(), args.results.as_ref())?;
    let argv: Vec<String> = std::env::args().collect();
    let run = storage::run_storage_bench(&config, argv)?;
    log_written(&storage::files::write_run(&run_dir, &run)?);
    println!("report: {}", run_dir.join("report.md").display());
    Ok(())
}

/// The report folder: `--out` as given (created), or a new `<date>_<gitsha>_<host>` folder
/// under `--results`.
fn run_dir(out: Option<&PathBuf>, results: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    match (out, results) {
        (Some(out), _) => {
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            Ok(out.clone())
        }
        (None, Some(results)) => report::create_run_dir(results),
        (None, None) => anyhow::bail!("give --results or --out"),
    }
}

fn log_written(paths: &[PathBuf]) {
    for path in paths {
        tracing::info!(path = %path.display(), "wrote");
    }
}
