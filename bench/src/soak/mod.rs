//! `keel-bench soak` (issue 7): a long run of mixed load against a keel it starts itself,
//! watched from outside, to show that memory, open files and latency stay flat while
//! retention keeps deleting segments.
//!
//! ```text
//!   keel (started here, small segments, size retention)
//!     ^  produce + tailing fetch: kafka::run, fixed rate, acks=all, HDR per interval
//!     ^  group: members join, sync, heartbeat, commit, leave, join again   (group.rs)
//!     ^  admin: create, produce, list offsets, metadata, configs, delete   (admin.rs)
//!   main thread: every second /proc/<pid> and the data dir (sample.rs) -> samples.csv;
//!                every interval the latency histograms -> latency.hlog, intervals.csv
//! ```
//!
//! At the end the broker is stopped by its PID and its data directory removed; the report
//! (`files.rs`) checks flatness (`summary.rs`) and draws the plots.
//!
//! - [`config`]: the settings file. [`load`]: what the load threads share, and their tallies.
//! - [`csv`]: the raw rows. [`summary`]: the figures and the checks. [`files`]: the folder,
//!   [`markdown`]: its report.md.

pub mod admin;
pub mod config;
pub mod csv;
pub mod files;
pub mod group;
pub mod load;
pub mod markdown;
pub mod sample;
pub mod summary;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use self::config::SoakConfig;
use self::csv::{CsvWriter, IntervalRow, Sample};
use self::load::LoadCtx;
use self::sample::Sampler;
use self::summary::{LogFindings, SoakSummary};
use crate::kafka::broker::{RunningBroker, SystemSpec};
use crate::kafka::client::Connection;
use crate::kafka::run::{run, IntervalRecorder, RunOutcome, RunSpec, RunSummary};
use crate::report::{git_ref, shell_quote, RunIdentity};

/// Raw data files of a soak folder.
pub const SAMPLES_FILE: &str = "samples.csv";
pub const INTERVALS_FILE: &str = "intervals.csv";
pub const HLOG_FILE: &str = "latency.hlog";

/// Tags of the interval histograms in the HDR log.
pub const TAGS: [&str; 3] = ["produce", "e2e", "admin"];

/// How long the soak waits, past the end of load, for the producers' last answers and the
/// consumers' drain before it stops the broker anyway.
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(60);

const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Where and how the soak runs, beside its settings file.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The `keel` binary.
    pub keel: PathBuf,
    /// The broker's data directory: emptied at the start, removed at the end.
    pub data_dir: PathBuf,
    /// Address for the broker; a free loopback port when `None`.
    pub listen: Option<SocketAddr>,
    /// The bench's own argv, for the report.
    pub command: Vec<String>,
    pub progress: bool,
}

/// A finished soak: its summary and the run's whole-run histograms, by file name.
#[derive(Debug)]
pub struct SoakRun {
    pub summary: SoakSummary,
    pub samples: Vec<Sample>,
    pub intervals: Vec<IntervalRow>,
    pub histograms: Vec<(String, Histogram<u64>)>,
}

/// Runs the soak, writing its raw data into `run_dir` as it goes.
pub fn run_soak(
    config: &SoakConfig,
    options: &SoakOptions,
    run_dir: &Path,
) -> anyhow::Result<SoakRun> {
    config.check()?;
    let started_at_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The code measured is the code at the start: the tree may change during a long soak.
    let git = git_ref(Path::new("."));
    let addr = match options.listen {
        Some(addr) => addr,
        None => TcpListener::bind("127.0.0.1:0")?.local_addr()?,
    };
    let broker_command = broker_command(config, options, addr);
    let (broker, pid) = start_broker(&broker_command, options, addr)?;
    let mut machine = crate::limits::machine_info(&options.data_dir)?;
    // Reports are committed: the data directory is named as given, not as resolved here.
    machine.storage.dir = options.data_dir.clone();
    let topic = config.topic()?;
    Connection::connect(addr, Duration::from_secs(5))?
        .create_topic(&topic, i32::try_from(config.workload.partitions)?)?;
    let recorder = Arc::new(IntervalRecorder::new()?);
    let ctx = Arc::new(LoadCtx::new(addr, config.clone(), topic)?);
    let threads = start_load(&ctx, &recorder, pid)?;
    let observed = observe(&ctx, &recorder, pid, run_dir, options, &threads.run);
    ctx.stop();
    let failure = observed.as_ref().err().map(|e| format!("{e:#}"));
    let (outcome, run_failure) = threads.join();
    let log = broker.log_path().to_path_buf();
    broker.stop()?;
    remove_data_dir(&options.data_dir)?;
    let (samples, intervals) = observed.unwrap_or_default();
    let (run_summary, histograms) = match outcome {
        Some(outcome) => {
            let (summary, histograms) = name_histograms(outcome);
            (Some(summary), histograms)
        }
        None => (None, Vec::new()),
    };
    let mut summary = SoakSummary {
        identity: RunIdentity {
            kind: summary::KIND.to_owned(),
            keel_bench_version: env!("CARGO_PKG_VERSION").to_owned(),
            command: options.command.clone(),
            git,
            started_at_unix_s,
            machine,
        },
        config: config.clone(),
        broker_command,
        elapsed_s: samples.last().map_or(0.0, |s| s.t_s),
        run: run_summary,
        failure: failure.or(run_failure),
        group: ctx.group_figures(),
        admin: ctx.admin_figures(),
        broker_log: scan_log(&log),
        analysis: summary::Analysis::default(),
    };
    summary.analysis = files::analysis_of(&summary, &samples, &intervals);
    Ok(SoakRun {
        summary,
        samples,
        intervals,
        histograms,
    })
}

/// Starts the broker on an empty data directory; returns it and its process id.
fn start_broker(
    command: &str,
    options: &SoakOptions,
    addr: SocketAddr,
) -> anyhow::Result<(RunningBroker, u32)> {
    let system = SystemSpec {
        name: "keel-soak".to_owned(),
        bootstrap: addr.to_string(),
        start: Some(command.to_owned()),
        data_dir: Some(options.data_dir.clone()),
    };
    // The broker's log goes beside its data directory, not into the committed report.
    let log_dir = match options.data_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let broker =
        RunningBroker::start(&system, &log_dir)?.context("the soak's broker was not started")?;
    let pid = broker
        .pid()
        .context("the soak's broker has no process id")?;
    Ok((broker, pid))
}

/// The run's summary with the file names its whole-run histograms are saved under.
fn name_histograms(outcome: RunOutcome) -> (RunSummary, Vec<(String, Histogram<u64>)>) {
    let mut summary = outcome.summary;
    let mut histograms = Vec::new();
    for (role, histogram) in outcome.histograms {
        let file = format!("soak_{role}.hdr");
        summary.histogram_files.push((role, file.clone()));
        histograms.push((file, histogram));
    }
    (summary, histograms)
}

/// The broker's command line: the settings file's retention and group settings, loopback.
fn broker_command(config: &SoakConfig, options: &SoakOptions, addr: SocketAddr) -> String {
    let b = &config.broker;
    let mut args: Vec<String> = vec![
        options.keel.display().to_string(),
        "--listen".into(),
        addr.to_string(),
        "--data-dir".into(),
        "{data_dir}".into(),
        "--fsync".into(),
        b.fsync.clone(),
        "--segment-bytes-max".into(),
        b.segment_bytes_max.to_string(),
        "--retention-bytes".into(),
        b.retention_bytes.to_string(),
        "--retention-check-ms".into(),
        b.retention_check_ms.to_string(),
        "--group-initial-rebalance-delay-ms".into(),
        b.group_initial_rebalance_delay_ms.to_string(),
    ];
    args.extend(b.extra_args.iter().cloned());
    args.iter()
        .map(|a| {
            if a == "{data_dir}" {
                a.clone()
            } else {
                shell_quote(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The load threads: the produce/fetch run, the group's members, the admin cycle.
struct LoadThreads {
    run: JoinHandle<anyhow::Result<RunOutcome>>,
    others: Vec<JoinHandle<()>>,
}

impl LoadThreads {
    /// Joins every thread: the run's outcome, or why it failed.
    fn join(self) -> (Option<RunOutcome>, Option<String>) {
        for handle in self.others {
            if handle.join().is_err() {
                tracing::warn!("a group or admin thread panicked");
            }
        }
        match self.run.join() {
            Ok(Ok(outcome)) => (Some(outcome), None),
            Ok(Err(error)) => (None, Some(format!("{error:#}"))),
            Err(_) => (None, Some("the produce/fetch run panicked".to_owned())),
        }
    }
}

fn start_load(
    ctx: &Arc<LoadCtx>,
    recorder: &Arc<IntervalRecorder>,
    pid: u32,
) -> anyhow::Result<LoadThreads> {
    let config = &ctx.config;
    let spec = RunSpec {
        label: "keel".to_owned(),
        bootstrap: ctx.bootstrap,
        workload: config.workload.clone(),
        rate: config.workload.rate,
        broker_pid: Some(pid),
        progress: false,
        intervals: Some(recorder.clone()),
    };
    let run = thread::Builder::new()
        .name("soak-run".into())
        .spawn(move || run(&spec))?;
    let mut others = Vec::new();
    for index in 0..config.groups.members {
        let ctx = ctx.clone();
        others.push(
            thread::Builder::new()
                .name(format!("member-{index}"))
                .spawn(move || group::member_loop(&ctx, index))?,
        );
    }
    let admin_ctx = ctx.clone();
    others.push(
        thread::Builder::new()
            .name("admin".into())
            .spawn(move || admin::admin_loop(&admin_ctx))?,
    );
    Ok(LoadThreads { run, others })
}

/// The main thread's part: a sample every second, an interval row and HDR log entries every
/// interval, until the run has finished (or the drain takes too long).
fn observe(
    ctx: &LoadCtx,
    recorder: &IntervalRecorder,
    pid: u32,
    run_dir: &Path,
    options: &SoakOptions,
    run_thread: &JoinHandle<anyhow::Result<RunOutcome>>,
) -> anyhow::Result<(Vec<Sample>, Vec<IntervalRow>)> {
    let r = &ctx.config.report;
    let mut sampler = Sampler::new(pid, &options.data_dir, &ctx.topic, admin::TOPIC_PREFIX);
    let mut samples_csv = CsvWriter::create::<Sample>(&run_dir.join(SAMPLES_FILE))?;
    let mut intervals_csv = CsvWriter::create::<IntervalRow>(&run_dir.join(INTERVALS_FILE))?;
    let hlog_path = run_dir.join(HLOG_FILE);
    let mut hlog_file = std::fs::File::create(&hlog_path)
        .with_context(|| format!("creating {}", hlog_path.display()))?;
    let mut serializer = V2DeflateSerializer::new();
    let start_time = SystemTime::now() - ctx.start.elapsed();
    let mut hlog = begin_hlog(&mut hlog_file, &mut serializer, start_time)
        .with_context(|| format!("writing {}", hlog_path.display()))?;
    let (mut samples, mut intervals) = (Vec::new(), Vec::new());
    let load_s = ctx.config.load_s();
    let interval = Duration::from_secs_f64(r.interval_s);
    let mut next_interval = ctx.start + interval;
    let mut interval_start_s = 0.0;
    let mut next_sample = ctx.start + SAMPLE_EVERY;
    let give_up = ctx.end + DRAIN_WAIT_MAX;
    loop {
        if let Some(wait) = next_sample.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        next_sample += SAMPLE_EVERY;
        let t_s = ctx.t_s();
        let sample = sampler.sample(t_s);
        samples_csv.write(&sample)?;
        samples.push(sample);
        let finished = run_thread.is_finished() || Instant::now() >= give_up;
        // The interval holding the end of load is cut there, so the drain after it is an
        // interval of its own, which the checks leave out.
        let load_ended = t_s >= load_s && interval_start_s < load_s;
        if Instant::now() >= next_interval || load_ended || finished {
            // Interval ends stay on the grid of the start, whatever a sample's lateness.
            while next_interval <= Instant::now() {
                next_interval += interval;
            }
            let (produce, e2e) = recorder.take()?;
            let admin = ctx.take_admin_latency()?;
            let start = Duration::from_secs_f64(interval_start_s);
            let length = Duration::from_secs_f64((t_s - interval_start_s).max(0.0));
            for (histogram, tag) in [&produce, &e2e, &admin].into_iter().zip(TAGS) {
                hlog.write_histogram(histogram, start, length, Tag::new(tag))
                    .map_err(|e| anyhow::anyhow!("writing {}: {e:?}", hlog_path.display()))?;
            }
            let row = files::interval_row(ctx, interval_start_s, t_s, [&produce, &e2e, &admin]);
            intervals_csv.write(&row)?;
            if options.progress {
                eprintln!("{}", files::progress_line(&sample, &row));
            }
            intervals.push(row);
            interval_start_s = t_s;
        }
        if finished {
            return Ok((samples, intervals));
        }
    }
}

/// Starts the HDR interval log: its comments, and the start and base time (the load's start,
/// so each interval's timestamp is seconds since it), with maxima shown in milliseconds.
fn begin_hlog<'a, 'b>(
    file: &'a mut std::fs::File,
    serializer: &'b mut V2DeflateSerializer,
    start_time: SystemTime,
) -> std::io::Result<IntervalLogWriter<'a, 'b, std::fs::File, V2DeflateSerializer>> {
    IntervalLogWriterBuilder::new()
        .add_comment(
            "keel-bench soak: latencies in microseconds, from each message's intended send time",
        )
        .add_comment("tags: produce (send to ack), e2e (send to consumed), admin (one request)")
        .with_start_time(start_time)
        .with_base_time(start_time)
        .with_max_value_divisor(1000.0)
        .begin_log_with(file, serializer)
}

fn remove_data_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Lines kept of the broker's warnings and errors.
const LOG_LINES_KEPT: usize = 10;

/// Counts the broker log's warnings and errors, leaving out the harmless iopoll notice that
/// every DmaFile open logs on a virtio disk.
fn scan_log(path: &Path) -> LogFindings {
    let mut findings = LogFindings::default();
    let Ok(text) = std::fs::read_to_string(path) else {
        return findings;
    };
    for line in text.lines() {
        findings.lines += 1;
        let plain = strip_ansi(line);
        if plain.contains("iopoll") {
            continue;
        }
        let error = plain.contains(" ERROR ");
        let warning = plain.contains(" WARN ");
        findings.errors += u64::from(error);
        findings.warnings += u64::from(warning);
        if (error || warning) && findings.first.len() < LOG_LINES_KEPT {
            findings.first.push(plain);
        }
    }
    findings
}

/// `line` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        assert_eq!(strip_ansi("\u{1b}[33m WARN\u{1b}[0m x"), " WARN x");
    }
}
