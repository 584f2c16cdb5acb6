//! The soak's report folder, and its regeneration by `keel-bench report DIR`:
//!
//! ```text
//!   results/<date>_<gitsha>_<host>_soak/
//!     command.txt, machine.json         the exact argv; CPU, memory, kernel, disk
//!     summary.json                      settings, totals, thirds, checks (SoakSummary)
//!     samples.csv                       the broker every second: RSS, open files, load, disk
//!     intervals.csv                     per interval: latency percentiles, group/admin totals
//!     latency.hlog                      HDR interval log (tags produce, e2e, admin), µs
//!     soak_<role>.hdr                   the whole run's latencies (HDR V2), µs
//!     report.md                         verdict, checks, figures, plots, notes.md
//!     rss_over_time.png, open_files_over_time.png, latency_over_time.png,
//!     e2e_latency_over_time.png, throughput_over_time.png, retention_over_time.png,
//!     load_over_time.png, spectrum.png
//!     notes.md                          optional, hand-written analysis
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::csv::{read_rows, IntervalRow, Sample};
use super::load::LoadCtx;
use super::markdown::report_markdown;
use super::summary::{analyze, Analysis, Inputs, SoakSummary, KIND};
use super::{SoakRun, INTERVALS_FILE, SAMPLES_FILE};
use crate::histogram::load_v2;
use crate::histogram::LatencySummary;
use crate::plot::{plot_percentile_spectrum, plot_xy, SpectrumSeries, XySeries};
use crate::report::{write_json, write_raw_run, HistogramsByFile};

const MIB: f64 = (1u64 << 20) as f64;

/// Samples over which the broker's CPU use is averaged in the load plot.
const CPU_WINDOW_SAMPLES: usize = 10;

/// The folder name's suffix, so a soak's report reads apart from a sweep's of the same commit.
pub const DIR_SUFFIX: &str = "_soak";

/// Writes summary.json, the whole-run histograms, report.md and the plots into `dir` (the raw
/// CSV and HDR interval log are there already, written as the soak went).
pub fn write_soak(dir: &Path, run: &SoakRun) -> anyhow::Result<Vec<PathBuf>> {
    let s = &run.summary;
    let (mut written, histograms) = write_raw_run(
        dir,
        &s.identity.command,
        &s.identity.machine,
        &run.histograms,
        s,
    )?;
    for file in [SAMPLES_FILE, INTERVALS_FILE, super::HLOG_FILE] {
        written.push(dir.join(file));
    }
    written.extend(render(dir, s, &run.samples, &run.intervals, &histograms)?);
    Ok(written)
}

/// Whether `dir/summary.json` is a soak's.
pub fn is_soak_dir(dir: &Path) -> bool {
    crate::report::summary_kind_is(dir, KIND)
}

/// `keel-bench report DIR` for a soak: reads summary.json (settings and totals), the CSVs and
/// the histograms, checks flatness again from the raw rows, and writes the checks into
/// summary.json, and report.md and the plots.
pub fn regenerate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let path = dir.join("summary.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut summary: SoakSummary =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let samples = read_rows::<Sample>(&dir.join(SAMPLES_FILE))?;
    let intervals = read_rows::<IntervalRow>(&dir.join(INTERVALS_FILE))?;
    summary.analysis = analysis_of(&summary, &samples, &intervals);
    // The checks are derived data: summary.json gets them as this code computes them.
    write_json(&path, &summary)?;
    let mut loaded = Vec::new();
    for (_, file) in summary.run.iter().flat_map(|r| r.histogram_files.iter()) {
        loaded.push((file.clone(), load_v2(&dir.join(file))?));
    }
    let histograms: HistogramsByFile<'_> = loaded.iter().map(|(f, h)| (f.as_str(), h)).collect();
    let mut written = vec![path];
    written.extend(render(dir, &summary, &samples, &intervals, &histograms)?);
    Ok(written)
}

/// The flatness analysis of a summary's rows.
pub fn analysis_of(
    summary: &SoakSummary,
    samples: &[Sample],
    intervals: &[IntervalRow],
) -> Analysis {
    analyze(&Inputs {
        config: &summary.config,
        samples,
        intervals,
        run: summary.run.as_ref(),
        failure: summary.failure.as_deref(),
        group: &summary.group,
        admin: &summary.admin,
    })
}

/// One interval's row: the percentiles of its histograms and the load totals at its end.
pub fn interval_row(
    ctx: &LoadCtx,
    t_start_s: f64,
    t_end_s: f64,
    [produce, e2e, admin]: [&Histogram<u64>; 3],
) -> IntervalRow {
    let p = LatencySummary::from_histogram(produce, 1.0);
    let e = LatencySummary::from_histogram(e2e, 1.0);
    let a = LatencySummary::from_histogram(admin, 1.0);
    let group = ctx.group_figures();
    let admin_figures = ctx.admin_figures();
    IntervalRow {
        t_start_s,
        t_end_s,
        produce_count: p.count as f64,
        produce_p50_us: p.p50_us,
        produce_p99_us: p.p99_us,
        produce_p99_9_us: p.p99_9_us,
        produce_max_us: p.max_us,
        e2e_count: e.count as f64,
        e2e_p50_us: e.p50_us,
        e2e_p99_us: e.p99_us,
        e2e_p99_9_us: e.p99_9_us,
        e2e_max_us: e.max_us,
        admin_count: a.count as f64,
        admin_p99_us: a.p99_us,
        admin_max_us: a.max_us,
        group_generation: group.generation_max as f64,
        group_joins: group.joins as f64,
        group_commits: group.commits as f64,
        group_rebalances: group.rebalances as f64,
        group_errors: group.errors as f64,
        admin_cycles: admin_figures.cycles as f64,
        admin_errors: admin_figures.errors as f64,
    }
}

/// The line printed at every interval's end.
pub fn progress_line(sample: &Sample, row: &IntervalRow) -> String {
    format!(
        "soak {:>6.0} s: RSS {:.1} MiB, {:.0} open files, {:.0} segments deleted; produce p99 \
         {:.1} ms, e2e p99 {:.1} ms; group generation {:.0}, admin cycles {:.0}, errors {:.0}; \
         load {:.1}",
        sample.t_s,
        sample.rss_bytes / MIB,
        sample.open_files,
        sample.segments_deleted,
        row.produce_p99_us / 1e3,
        row.e2e_p99_us / 1e3,
        row.group_generation,
        row.admin_cycles,
        row.group_errors + row.admin_errors,
        sample.load1,
    )
}

fn minutes(t_s: f64) -> f64 {
    t_s / 60.0
}

/// One line of samples over time.
fn sample_series(label: &str, samples: &[Sample], pick: impl Fn(&Sample) -> f64) -> XySeries {
    XySeries {
        label: label.to_owned(),
        points: samples.iter().map(|s| (minutes(s.t_s), pick(s))).collect(),
    }
}

/// One line of intervals over time, at each interval's end; empty intervals are left out.
fn interval_series(
    label: &str,
    intervals: &[IntervalRow],
    pick: impl Fn(&IntervalRow) -> f64,
) -> XySeries {
    XySeries {
        label: label.to_owned(),
        points: intervals
            .iter()
            .map(|i| (minutes(i.t_end_s), pick(i)))
            .filter(|(_, y)| *y > 0.0)
            .collect(),
    }
}

/// The broker's CPU use in cores, averaged over [`CPU_WINDOW_SAMPLES`] samples.
fn cpu_series(samples: &[Sample]) -> XySeries {
    XySeries {
        label: "broker CPU (cores)".to_owned(),
        points: samples
            .windows(CPU_WINDOW_SAMPLES + 1)
            .filter_map(|w| {
                let (a, b) = (w.first()?, w.last()?);
                let dt = b.t_s - a.t_s;
                (dt > 0.0).then(|| (minutes(b.t_s), (b.broker_cpu_s - a.broker_cpu_s) / dt))
            })
            .collect(),
    }
}

/// Every plot: (title, file, x-y lines, log y).
fn plots(summary: &SoakSummary, samples: &[Sample], intervals: &[IntervalRow]) -> Vec<Plot> {
    let message_mb = summary.config.workload.message_bytes as f64 / 1e6;
    let rate = |count: fn(&IntervalRow) -> f64| {
        move |i: &IntervalRow| count(i) * message_mb / (i.t_end_s - i.t_start_s).max(1e-9)
    };
    let latency = |what: &str, cols: [fn(&IntervalRow) -> f64; 4]| -> Vec<XySeries> {
        ["p50", "p99", "p99.9", "max"]
            .into_iter()
            .zip(cols)
            .map(|(q, pick)| interval_series(&format!("{what} {q}"), intervals, |i| pick(i) / 1e3))
            .collect()
    };
    vec![
        Plot {
            title: "broker RSS (VmRSS, sampled every second)",
            file: "rss_over_time.png",
            axes: ("minutes", "MiB"),
            series: vec![sample_series("VmRSS", samples, |s| s.rss_bytes / MIB)],
            log_y: false,
        },
        Plot {
            title: "broker open files (/proc/<pid>/fd) and segment files on disk",
            file: "open_files_over_time.png",
            axes: ("minutes", "count"),
            series: vec![
                sample_series("open files", samples, |s| s.open_files),
                sample_series("segment files of the soak topic", samples, |s| {
                    s.segment_files
                }),
                sample_series("all files in the data dir", samples, |s| s.data_files),
            ],
            log_y: false,
        },
        Plot {
            title: "produce latency per interval (from intended send time)",
            file: "latency_over_time.png",
            axes: ("minutes", "ms"),
            series: latency(
                "produce",
                [
                    |i| i.produce_p50_us,
                    |i| i.produce_p99_us,
                    |i| i.produce_p99_9_us,
                    |i| i.produce_max_us,
                ],
            ),
            log_y: true,
        },
        Plot {
            title: "end-to-end latency per interval (from intended send time)",
            file: "e2e_latency_over_time.png",
            axes: ("minutes", "ms"),
            series: latency(
                "end-to-end",
                [
                    |i| i.e2e_p50_us,
                    |i| i.e2e_p99_us,
                    |i| i.e2e_p99_9_us,
                    |i| i.e2e_max_us,
                ],
            ),
            log_y: true,
        },
        Plot {
            title: "throughput per interval",
            file: "throughput_over_time.png",
            axes: ("minutes", "MB/s"),
            series: vec![
                interval_series("acknowledged", intervals, rate(|i| i.produce_count)),
                interval_series("consumed", intervals, rate(|i| i.e2e_count)),
            ],
            log_y: false,
        },
        Plot {
            title: "retention: segments deleted (total) and the soak topic on disk",
            file: "retention_over_time.png",
            axes: ("minutes", "segments / MiB"),
            series: vec![
                sample_series("segments deleted so far", samples, |s| s.segments_deleted),
                sample_series("soak topic on disk (MiB)", samples, |s| s.log_bytes / MIB),
            ],
            log_y: false,
        },
        Plot {
            title: "machine load (1-minute load average) and broker CPU",
            file: "load_over_time.png",
            axes: ("minutes", "load / cores"),
            series: vec![
                sample_series("load average (1 min)", samples, |s| s.load1),
                cpu_series(samples),
            ],
            log_y: false,
        },
    ]
}

struct Plot {
    title: &'static str,
    file: &'static str,
    axes: (&'static str, &'static str),
    series: Vec<XySeries>,
    log_y: bool,
}

/// Draws the plots and writes report.md.
fn render(
    dir: &Path,
    summary: &SoakSummary,
    samples: &[Sample],
    intervals: &[IntervalRow],
    histograms: &HistogramsByFile<'_>,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut shown: Vec<(String, String)> = Vec::new();
    for plot in plots(summary, samples, intervals) {
        if plot.series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let path = dir.join(plot.file);
        plot_xy(&path, plot.title, plot.axes, &plot.series, plot.log_y)?;
        written.push(path);
        shown.push((plot.title.to_owned(), plot.file.to_owned()));
    }
    let histogram = |role: &str| {
        let run = summary.run.as_ref()?;
        let file = run.histogram_files.iter().find(|(r, _)| r == role)?;
        histograms.get(file.1.as_str()).copied()
    };
    let series: Vec<SpectrumSeries<'_>> = [("produce", "produce"), ("e2e", "end-to-end")]
        .into_iter()
        .filter_map(|(role, label)| {
            histogram(role).map(|histogram| SpectrumSeries {
                label: format!("{label}, whole run"),
                histogram,
                unit_us: 1.0,
            })
        })
        .collect();
    if !series.is_empty() {
        let path = dir.join("spectrum.png");
        plot_percentile_spectrum(&path, "latency over the whole soak", &series)?;
        written.push(path);
        shown.push((
            "Latency over the whole soak".to_owned(),
            "spectrum.png".to_owned(),
        ));
    }
    let notes = std::fs::read_to_string(dir.join("notes.md")).ok();
    let report = dir.join("report.md");
    std::fs::write(&report, report_markdown(summary, &shown, notes.as_deref()))
        .with_context(|| format!("writing {}", report.display()))?;
    written.push(report);
    Ok(written)
}
